"""Servers the Celery cases need, on loopback: redis-server, our worker, the raw Celery worker."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


class Stack:
    """redis-server + one `executioner worker` + two raw Celery workers (without and with task events),
    each --concurrency 2. Only one of them works at a time; the idle ones wait on the broker."""

    def __init__(self, scratch: Path, concurrency: int = 2) -> None:
        self.scratch = scratch
        self.concurrency = concurrency
        self.procs: list[subprocess.Popen] = []
        self.port = free_port()
        self.broker = f"redis://127.0.0.1:{self.port}/0"
        self.backend = f"redis://127.0.0.1:{self.port}/1"

    def __enter__(self) -> Stack:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self._spawn(
            "redis",
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        )
        import redis

        wait_until(lambda: self._ping(redis), 20, "redis-server")
        common = [
            "--concurrency",
            str(self.concurrency),
            "--without-mingle",
            "--without-gossip",
            "--loglevel",
            "WARNING",
        ]
        env = {"EXECUTIONER_BROKER_URL": self.broker}
        self._spawn(
            "ours",
            [str(Path(sys.executable).parent / "executioner"), "worker", "-n", "ours@%h", *common],
            env,
        )
        from benchmarks.raw_celery import QUEUES, create_raw_app

        for events, queue in QUEUES.items():
            self._spawn(
                queue,
                [sys.executable, "-m", "benchmarks.raw_celery", "-n", f"{queue}@%h", "-Q", queue, *common],
                {
                    "RAW_BROKER": self.broker,
                    "RAW_BACKEND": self.backend,
                    "RAW_EVENTS": "1" if events else "0",
                },
            )
        app = create_raw_app(self.broker, self.backend)
        wait_until(lambda: len(app.control.ping(timeout=0.5) or []) >= 3, 60, "the three workers")
        return self

    def _ping(self, redis) -> bool:
        try:
            return redis.Redis(port=self.port).ping()
        except redis.RedisError:
            return False

    def _spawn(self, name: str, argv: list[str], env: dict | None = None) -> None:
        with open(self.scratch / f"{name}.log", "ab") as log:
            self.procs.append(
                subprocess.Popen(
                    argv,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **(env or {})},
                    start_new_session=True,
                )
            )

    def __exit__(self, *exc) -> None:
        stop(list(reversed(self.procs)))


def stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM each process group, then SIGKILL what has not exited after 30 s."""
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def flower_watching(stack: Stack):
    """``executioner flower`` attached to the stack's broker for the block, as an operator runs it. It
    turns task events on in every worker (ours and the raw ones); they are turned off again after."""
    import urllib.request

    port = free_port()
    argv = [str(Path(sys.executable).parent / "executioner"), "flower", "--port", str(port)]
    with open(stack.scratch / "flower.log", "ab") as log:
        proc = subprocess.Popen(
            [*argv, "--unauthenticated-api"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "EXECUTIONER_BROKER_URL": stack.broker},
            start_new_session=True,
        )

    def up() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthcheck", timeout=1) as r:
                return r.status == 200
        except OSError:
            return proc.poll() is not None  # it died: stop waiting (the error is below)

    try:
        wait_until(up, 60, "flower")
        if proc.poll() is not None:
            raise RuntimeError(f"flower exited ({proc.returncode}): see {stack.scratch / 'flower.log'}")
        yield
    finally:
        stop([proc])
        from benchmarks.raw_celery import create_raw_app

        with contextlib.suppress(Exception):
            create_raw_app(stack.broker, stack.backend).control.disable_events()
