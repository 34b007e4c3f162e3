"""Settings a worker needs (it is deployed alone, without the orchestrator package's settings)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from workers.lease_timing import LeaseTiming
from workers.retry import MAX_SECONDS


@dataclass(frozen=True)
class WorkerSettings:
    broker_url: str | None = None
    result_backend: str | None = None
    # Redis transport: an unacknowledged task is handed to another worker after this long. It must
    # exceed the longest job (timeout x tries + retry delays) a worker will run, or a long job would be
    # delivered twice; the per-job lease makes such a copy harmless, but it would wait in a slot.
    visibility_timeout: float = 6 * 3600.0
    # A running job's worker renews its heartbeat this often; the coordinator declares the try lost
    # once the heartbeat is older than ``heartbeat_ttl``.
    # A worker that cannot renew a lease stops the job itself before it could expire
    # (workers.lease_timing): the TTL must leave room for that after at least one renewal.
    heartbeat_interval: float = 5.0
    heartbeat_ttl: float = 20.0
    # Signs and checks task payloads (workers.signing); never shown (repr=False).
    secret_key: bytes | None = field(default=None, repr=False)
    # Where every try's complete output goes (workers.logstore): unset = <home>/logs of this machine.
    log_store: str | None = None
    home: Path = field(default_factory=lambda: Path("~/.executioner").expanduser())

    @property
    def lease_timing(self) -> LeaseTiming:
        return LeaseTiming(self.heartbeat_ttl, self.heartbeat_interval)

    def make_log_store(self):
        from workers.logstore import log_store

        return log_store(self.log_store, self.home)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: str | None) -> WorkerSettings:
        env = os.environ if env is None else env
        broker = overrides.get("broker_url") or env.get("EXECUTIONER_BROKER_URL") or None
        backend = overrides.get("result_backend") or env.get("EXECUTIONER_RESULT_BACKEND") or None
        home = Path(
            str(overrides.get("home") or env.get("EXECUTIONER_HOME") or "~/.executioner")
        ).expanduser()
        made = cls(
            broker_url=broker,
            result_backend=backend,
            visibility_timeout=seconds(env, "EXECUTIONER_VISIBILITY_TIMEOUT", cls.visibility_timeout),
            heartbeat_interval=seconds(env, "EXECUTIONER_HEARTBEAT_INTERVAL", cls.heartbeat_interval),
            heartbeat_ttl=seconds(env, "EXECUTIONER_HEARTBEAT_TTL", cls.heartbeat_ttl),
            secret_key=secret_key(env),
            log_store=env.get("EXECUTIONER_LOG_STORE") or None,
            home=home,
        )
        problem = made.lease_timing.problem()
        if problem:
            raise ValueError(problem)
        return made


def secret_key(env: Mapping[str, str]) -> bytes | None:
    """EXECUTIONER_SECRET_KEY, else the content of EXECUTIONER_SECRET_KEY_FILE; ValueError if weak."""
    raw = env.get("EXECUTIONER_SECRET_KEY") or ""
    path = env.get("EXECUTIONER_SECRET_KEY_FILE") or ""
    if not raw and path:
        try:
            raw = Path(path).read_text().strip()
        except OSError as exc:
            raise ValueError(f"EXECUTIONER_SECRET_KEY_FILE: cannot read {path}: {exc.strerror}") from None
    if not raw:
        return None
    if len(raw) < 16:
        raise ValueError("EXECUTIONER_SECRET_KEY: use at least 16 characters (e.g. `openssl rand -hex 32`)")
    return raw.encode()


def seconds(env: Mapping[str, str], name: str, default: float) -> float:
    """A positive number of seconds from the environment, or ``default``; ValueError names the variable."""
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}: must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{name}: must be greater than 0, got {raw!r}")
    if not value <= MAX_SECONDS:  # also nan and inf
        raise ValueError(f"{name}: must be at most {MAX_SECONDS} seconds (a year), got {raw!r}")
    return value
