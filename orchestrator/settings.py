"""Settings: from flags, else the environment (SPEC "Settings"), in one frozen object.

Everything with a connection (engine, lock manager, Celery app) is built from this object by
``orchestrator.context``; nothing is created at import time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from orchestrator.errors import UserError
from workers.settings import WorkerSettings, seconds

# Every environment variable Executioner reads (the deploy files are tested against this list).
ENVIRONMENT_VARIABLES = (
    "EXECUTIONER_HOME",
    "EXECUTIONER_DATABASE_URL",
    "EXECUTIONER_BROKER_URL",
    "EXECUTIONER_RESULT_BACKEND",
    "EXECUTIONER_LOCK_URLS",
    "EXECUTIONER_LEASE_TTL",
    "EXECUTIONER_FLUSH_INTERVAL",
    "EXECUTIONER_HISTORY_PATIENCE",
    "EXECUTIONER_VISIBILITY_TIMEOUT",
    "EXECUTIONER_HEARTBEAT_INTERVAL",
    "EXECUTIONER_HEARTBEAT_TTL",
    "EXECUTIONER_SECRET_KEY",
    "EXECUTIONER_SECRET_KEY_FILE",
    "EXECUTIONER_SECRET_NAMES",
    "EXECUTIONER_LOG_STORE",
    "FLOWER_BASIC_AUTH",
    "EXECUTIONER_WEB_BASIC_AUTH",
    "EXECUTIONER_WEB_TOKEN",
)


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    lock_urls: tuple[str, ...] = ()
    # How long a run's lock outlives a coordinator that stopped renewing it (it renews every ttl/3).
    lease_ttl: float = 30.0
    # How long job events may wait in memory before they are committed in one batch.
    flush_interval: float = 0.2
    # How long a coordinator waits out a history database it cannot write (outage, lock, full disk)
    # before it stops with one line; nothing new starts meanwhile and no result is lost.
    history_patience: float = 300.0

    @property
    def broker_url(self) -> str | None:
        return self.worker.broker_url

    @property
    def default_executor(self) -> str:
        return "celery" if self.broker_url else "local"

    @property
    def redlock_urls(self) -> tuple[str, ...]:
        """Redis masters for Redlock: EXECUTIONER_LOCK_URLS, else the broker (if it is Redis)."""
        if self.lock_urls:
            return self.lock_urls
        if self.broker_url and self.broker_url.startswith(("redis://", "rediss://")):
            return (self.broker_url,)
        return ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if env is None else env
        given = {k: v for k, v in overrides.items() if v is not None}
        home = Path(str(given.pop("home", None) or env.get("EXECUTIONER_HOME") or "~/.executioner"))
        home = home.expanduser()
        database_url = str(
            given.pop("database_url", None)
            or env.get("EXECUTIONER_DATABASE_URL")
            or f"sqlite:///{home / 'executioner.db'}"
        )
        lock_urls = given.pop("lock_urls", None) or env.get("EXECUTIONER_LOCK_URLS") or ""
        if isinstance(lock_urls, str):
            lock_urls = tuple(u.strip() for u in lock_urls.split(",") if u.strip())
        try:  # a bad value is the user's mistake: one clear line, exit 2 (also for worker settings)
            worker = WorkerSettings.from_env(
                env,
                broker_url=given.pop("broker_url", None),
                result_backend=given.pop("result_backend", None),
                home=str(home),
            )
            lease_ttl = seconds(env, "EXECUTIONER_LEASE_TTL", 30.0)
            flush_interval = seconds(env, "EXECUTIONER_FLUSH_INTERVAL", cls.flush_interval)
            history_patience = seconds(env, "EXECUTIONER_HISTORY_PATIENCE", cls.history_patience)
        except ValueError as exc:
            raise UserError(f"environment: {exc}") from None
        settings = cls(
            home=home,
            database_url=database_url,
            worker=worker,
            lock_urls=tuple(lock_urls),
            lease_ttl=lease_ttl,
            flush_interval=flush_interval,
            history_patience=history_patience,
        )
        return replace(settings, **given) if given else settings
