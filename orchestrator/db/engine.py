"""Engines built from settings (never module globals), SQLite tuning, write transactions, migrations."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.pool import StaticPool

from orchestrator.db.schema import HEAD_REVISION
from orchestrator.errors import ServiceUnavailableError, UserError
from workers.secrets import redact_urls

SQLITE_BUSY_TIMEOUT_MS = 15_000  # at most; a coordinator passes a third of its lock's TTL


def normalize_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here (the driver we ship), not SQLAlchemy's psycopg2 default."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def safe_url(url: str | URL) -> str:
    """A database or broker URL fit to print or store: the password never appears (one rule for
    every URL, ``workers.secrets.redact_urls``; a SQLAlchemy URL masks its own already)."""
    return redact_urls(str(url))


def make_engine(url: str, *, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> Engine:
    """An engine for ``url``. On SQLite, a write waits at most ``busy_timeout_ms`` for another
    writer: a coordinator must get back to renewing its lock, so it passes a fraction of the TTL
    (a longer wait is an outage it rides out, see ``orchestrator.history_health``)."""
    url = normalize_url(url)
    every = {"json_serializer": write_json}  # every engine writes its JSON columns the same way
    try:
        parsed = make_url(url)
        if parsed.get_backend_name() != "sqlite":
            # A server that does not answer must not hold a coordinator's loop for minutes.
            connect_args = {"connect_timeout": 10} if parsed.get_backend_name() == "postgresql" else {}
            return create_engine(
                url, pool_pre_ping=True, pool_size=5, max_overflow=10, connect_args=connect_args, **every
            )
        if parsed.database and parsed.database != ":memory:":
            private_file(Path(parsed.database).expanduser())
            engine = create_engine(url, connect_args={"check_same_thread": False}, **every)
        else:  # one shared connection, or every connection would see its own empty in-memory database
            engine = create_engine(
                url, connect_args={"check_same_thread": False}, poolclass=StaticPool, **every
            )
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise UserError(f"database URL {safe_url(url)} is not usable: {_first_line(exc)}") from None
    _tune_sqlite(engine, busy_timeout_ms)
    return engine


@dataclass(frozen=True, slots=True)
class JsonText:
    """A JSON column's value already written as JSON text: a large one (a 100,000-job workflow
    snapshot) is written a piece at a time instead of whole as objects first."""

    text: str


def write_json(value: Any) -> str:
    """How every JSON column is written: ``json.dumps``, or the text of a ``JsonText``."""
    return value.text if isinstance(value, JsonText) else json.dumps(value)


def private_file(path: Path) -> None:
    """Create ``path`` (and its folder) readable by its owner only: history holds job output.

    SQLite gives its -wal and -shm files the database file's permissions, so they follow.
    """
    try:
        private_dir(path.parent)
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        os.close(fd)
        if path.stat().st_uid == os.getuid():
            path.chmod(0o600)
    except OSError as exc:
        raise UserError(f"cannot use {path}: {exc.strerror or exc}") from None


def private_dir(path: Path) -> None:
    """Make ``path`` (0700 if created here). An existing one is tightened only if it is ours alone:
    empty, or holding our database; never a shared folder such as /tmp someone pointed us at."""
    if not path.exists():
        path.mkdir(mode=0o700, parents=True)
        return
    if not path.is_dir():
        raise NotADirectoryError(20, "not a directory", str(path))
    info = path.stat()
    ours = info.st_uid == os.getuid() and (not any(path.iterdir()) or (path / "executioner.db").exists())
    if ours and info.st_mode & 0o077:
        path.chmod(0o700)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def _tune_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # pragma: no cover - exercised by every test
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin (see _on_begin).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        with contextlib.suppress(Exception):  # in-memory databases have no WAL
            cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")  # safe with WAL: a crash loses no committed txn
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        # Writers take the write lock up front: a deferred transaction that reads, then writes, would
        # fail with SQLITE_BUSY instead of waiting when another writer committed in between.
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextlib.contextmanager
def write_tx(engine: Engine) -> Iterator[Connection]:
    """A transaction meant to write: serialized up front on SQLite, a normal one elsewhere."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn = conn.execution_options(sqlite_immediate=True)
        with conn.begin():
            yield conn


@contextlib.contextmanager
def read_tx(engine: Engine) -> Iterator[Connection]:
    """One consistent snapshot for a group of reads (one query per table, then pure code)."""
    with engine.connect() as conn, conn.begin():
        yield conn


def current_revision(engine: Engine) -> str | None:
    """The schema revision (None: an empty database); an unreachable database is said to be one."""
    try:
        conn = engine.connect()
    except DBAPIError as exc:
        raise ServiceUnavailableError(
            f"database {safe_url(engine.url)} is unreachable: {describe(exc)}"
        ) from None
    with conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def describe(exc: DBAPIError) -> str:
    """The driver's own message, first line only: never the SQL statement or its parameters (which
    may carry job output or secrets)."""
    return _first_line(exc.orig if exc.orig is not None else exc)


def alembic_config(engine: Engine):
    from alembic.config import Config

    import migrations

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    # The option goes through configparser interpolation: a URL's %-escapes (a password with "@",
    # a socket path in ?host=) must be doubled, or Alembic refuses the URL.
    url = engine.url.render_as_string(hide_password=False).replace("%", "%%")
    cfg.set_main_option("sqlalchemy.url", url)
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Apply the migrations not yet applied; return (revision before, revision after)."""
    from alembic import command

    before = current_revision(engine)
    command.upgrade(alembic_config(engine), revision)
    return before, current_revision(engine)


def _newer_than_head(revision: str) -> bool:
    # Revisions are numbered "0001", "0002", ...: a larger one comes from a later release.
    return revision.isdigit() and HEAD_REVISION.isdigit() and int(revision) > int(HEAD_REVISION)


def ensure_schema(engine: Engine) -> None:
    """Make sure the schema is current: migrate SQLite on first use, ask for ``db upgrade`` otherwise."""
    revision = current_revision(engine)
    if revision == HEAD_REVISION:
        return
    if revision is not None and _newer_than_head(revision):
        raise UserError(
            f"database {safe_url(engine.url)} is at schema revision {revision}, newer than this "
            f"version of Executioner knows ({HEAD_REVISION}): upgrade Executioner to use it"
        )
    if engine.dialect.name != "sqlite":
        raise UserError(
            f"database {safe_url(engine.url)} is at schema revision "
            f"{revision or 'none'}, this version needs {HEAD_REVISION}: run `executioner db upgrade`"
        )
    database = engine.url.database
    if not database or database == ":memory:":
        upgrade(engine)
        return
    # Many coordinators may start at once on a new home: one migrates, the others wait for it.
    with os.fdopen(os.open(f"{database}.migrate-lock", os.O_CREAT | os.O_RDWR, 0o600), "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        if current_revision(engine) != HEAD_REVISION:
            upgrade(engine)
