"""Test support: real servers for integration tests: redis-server, PostgreSQL and `executioner worker`.

Each waits for readiness by polling with a deadline (never a fixed sleep) and cleans up after itself.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from conftest import require_binary

EXECUTIONER = str(Path(sys.executable).parent / "executioner")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def collect(events, n: int, seconds: float = 5) -> list:
    """Up to ``n`` items from a queue, waiting at most ``seconds`` in all."""
    import contextlib
    import queue

    out = []
    deadline = time.monotonic() + seconds
    while len(out) < n and time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty):
            out.append(events.get(timeout=0.05))
    return out


def poll(predicate, seconds: float) -> bool:
    """True as soon as ``predicate()`` is; False once ``seconds`` passed without it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def wait_until(predicate, seconds: float, what: str) -> None:
    if not poll(predicate, seconds):
        raise TimeoutError(f"timed out after {seconds}s waiting for {what}")


class RedisServer:
    """A redis-server of the tests. On another host (``prefix``: a network namespace) it listens on
    ``bind`` for that network, and on a unix socket for the test itself."""

    def __init__(
        self, workdir: Path, *, appendonly: bool = False, bind: str = "127.0.0.1", prefix: list[str] = ()
    ) -> None:
        self.binary = require_binary("redis-server")
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.appendonly = appendonly
        self.bind, self.prefix = bind, list(prefix)
        self.socket = str(workdir / "redis.sock") if prefix else None
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.bind}:{self.port}/0"

    def start(self) -> RedisServer:
        args = [
            *self.prefix,
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            self.bind,
            "--dir",
            str(self.workdir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "always",
            "--protected-mode",
            "no",
            *(["--unixsocket", self.socket, "--unixsocketperm", "700"] if self.socket else []),
        ]
        with open(self.workdir / "redis.log", "ab") as log:  # the child keeps its own copy of the fd
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        wait_until(self.ping, 20, f"redis-server on port {self.port}")
        return self

    def ping(self) -> bool:
        import redis

        try:
            client = redis.Redis(port=self.port, unix_socket_path=self.socket, socket_timeout=1)
            return bool(client.ping())
        except redis.RedisError:
            return False

    def client(self):
        import redis

        if self.socket:
            return redis.Redis(unix_socket_path=self.socket)
        return redis.Redis.from_url(self.url)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: redis flushes the AOF and exits
            self.proc.wait(20)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: connections stay open and nothing answers, as when a link is cut (no reset)."""
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def reset(self) -> None:
        """Forget everything a previous test left (jobs, streams, leases, locks) but the queue bindings."""
        r = self.client()
        doomed = [
            k
            for pattern in ("executioner:*", "redlock:*", "unacked*", "celery*")
            for k in r.scan_iter(pattern)
        ]
        doomed += [k for k in r.scan_iter("*") if r.type(k) == b"list"]  # queued tasks
        if doomed:
            r.delete(*doomed)
        r.close()


class Worker:
    """One `executioner worker` process."""

    def __init__(
        self,
        broker_url: str,
        logdir: Path,
        name: str,
        *args: str,
        env: dict | None = None,
        prefix: list[str] = (),
    ) -> None:
        self.name = name
        self.log = logdir / f"worker-{name}.log"
        full_env = {**os.environ, "EXECUTIONER_BROKER_URL": broker_url, **(env or {})}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    *prefix,
                    EXECUTIONER,
                    "worker",
                    "-n",
                    f"{name}@%h",
                    "--without-mingle",
                    "--without-gossip",
                    *args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=full_env,
                start_new_session=True,
            )
        wait_until(self.ready, 60, f"worker {name} to be ready")

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"worker {self.name} exited: {self.log.read_text()[-2000:]}")
        return self.log.exists() and " ready." in self.log.read_text()

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool children): a lost host."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(20)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


class PostgresServer:
    """A throwaway PostgreSQL cluster (initdb + pg_ctl) on a free loopback port.

    As root the server runs as the `postgres` user (PostgreSQL refuses to run as root). Databases for
    tests are cloned from a migrated template, so each test gets a fresh, current schema in
    milliseconds.
    """

    def __init__(self, *, listen: str = "127.0.0.1", prefix: list[str] = ()) -> None:
        import tempfile

        self.initdb = require_binary("initdb")
        self.pg_ctl = require_binary("pg_ctl")
        self.root = Path(tempfile.mkdtemp(prefix="executioner-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            import shutil

            shutil.chown(self.root, "postgres", "postgres")
        self.counter = 0
        # On another host (a network namespace) it listens there; the test reaches it by its socket.
        self.listen, self.prefix = listen, list(prefix)

    def _run(self, *args: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_postgres else []
        subprocess.run([*self.prefix, *prefix, *args], check=True, capture_output=True, cwd=self.root)

    def start(self) -> PostgresServer:
        self._run(
            self.initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"
        )
        if self.listen != "127.0.0.1":  # its network's other hosts (trust: test clusters only)
            network = ".".join(self.listen.split(".")[:3]) + ".0/24"
            with open(self.data / "pg_hba.conf", "a") as hba:
                hba.write(f"host all all {network} trust\n")
        self.resume_server()
        self._admin("CREATE DATABASE executioner_template")
        from orchestrator.db.engine import make_engine, upgrade

        engine = make_engine(self.url("executioner_template", local=True))
        upgrade(engine)
        engine.dispose()
        return self

    def resume_server(self) -> None:
        """Start the server on its data (again, after ``pause_server``)."""
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses={self.listen} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        self._run(
            self.pg_ctl, "-D", str(self.data), "-o", options, "-l", str(self.root / "pg.log"), "-w", "start"
        )

    def pause_server(self) -> None:
        """Stop the server, keeping its data: a database outage."""
        self._run(self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self, database: str, *, local: bool = False) -> str:
        """The database's URL on the server's network; ``local``: through its unix socket."""
        if local:
            return f"postgresql://postgres@/{database}?host={self.root}&port={self.port}"
        return f"postgresql://postgres@{self.listen}:{self.port}/{database}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres", local=True), autocommit=True) as conn:
            conn.execute(sql)

    def new_database(self, migrated: bool = True, *, local: bool = False) -> str:
        self.counter += 1
        name = f"test_{self.counter}"
        template = " TEMPLATE executioner_template" if migrated else ""
        self._admin(f"CREATE DATABASE {name}{template}")
        return self.url(name, local=local)

    def stop(self) -> None:
        import shutil

        try:
            self._run(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
