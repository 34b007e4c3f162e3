"""The run lock over Redis masters: pottery's Redlock, plus who holds it and the SQL fencing token.

Redlock alone cannot stop a holder that paused past its TTL from writing (Kleppmann, "How to do
distributed locking"): every acquisition therefore bumps the run's epoch in SQL, history writes check
it in their transaction, and workers compare the epoch a task carries with the one mirrored in Redis.
"""

from __future__ import annotations

import contextlib
import json
import sys
from datetime import UTC, datetime

from pottery import Redlock
from pottery.exceptions import ExtendUnlockedLock, PrimitiveError, QuorumIsImpossible
from redis.exceptions import RedisError
from sqlalchemy import Connection, Engine

from orchestrator.db.engine import safe_url
from orchestrator.db.fencing import bump_epoch_tx
from orchestrator.errors import FencedError, LockedError, ServiceUnavailableError
from orchestrator.locks.base import Holder, LockManager, LockOwner, RunLock
from workers import keys
from workers.redis_client import connect


class RedlockManager(LockManager):
    kind = "redlock"

    def __init__(self, engine: Engine, urls: tuple[str, ...], ttl: float = 30.0, scope: str = "") -> None:
        self.engine = engine
        self.scope = scope
        self.ttl = ttl
        self.urls = urls
        self.masters = [connect(u, timeout=5.0) for u in urls]

    @property
    def servers(self) -> list[str]:
        return sorted(safe_url(u) for u in self.urls)

    def _redlock(self, run_id: int) -> Redlock:
        return Redlock(
            key=keys.run_lock(self.scope, run_id),
            masters=set(self.masters),
            auto_release_time=self.ttl,
            num_extensions=sys.maxsize,  # renewed for as long as the coordinator lives
            raise_on_redis_errors=True,
        )

    def acquire(self, run_id: int, owner: LockOwner, conn: Connection | None = None) -> RunLock:
        redlock = self._redlock(run_id)
        try:
            acquired = redlock.acquire(blocking=False)
        except (QuorumIsImpossible, RedisError) as exc:
            raise ServiceUnavailableError(
                f"lock servers unreachable ({', '.join(self.servers)}): {exc}"
            ) from None
        if not acquired:
            holder = self.holder(run_id)
            if holder is None:
                raise LockedError(run_id, "unknown", 0, datetime.now(UTC))
            raise LockedError(run_id, holder.host, holder.pid, holder.since, holder.what)
        info = json.dumps(
            {"host": owner.host, "pid": owner.pid, "what": owner.what, "since": datetime.now(UTC).isoformat()}
        )
        self._each_master(lambda m: m.set(keys.run_holder(self.scope, run_id), info, px=int(self.ttl * 1000)))
        try:
            epoch = bump_epoch_tx(self.engine, run_id, conn)
        except BaseException:
            _release_quietly(redlock)
            raise
        return RedlockHandle(self, redlock, run_id, epoch)

    def holder(self, run_id: int) -> Holder | None:
        votes, info = 0, None
        for master in self.masters:
            try:
                pipe = master.pipeline(transaction=False)
                pipe.exists(f"redlock:{keys.run_lock(self.scope, run_id)}")
                pipe.get(keys.run_holder(self.scope, run_id))
                held, raw = pipe.execute()
            except RedisError:
                continue
            if held:
                votes += 1
                info = info or raw
        if votes <= len(self.masters) // 2:
            return None
        if info is None:
            return Holder("unknown", 0, "", datetime.now(UTC))
        data = json.loads(info)
        return Holder(data["host"], data["pid"], data["what"], datetime.fromisoformat(data["since"]))

    def _each_master(self, op) -> None:
        for master in self.masters:
            with contextlib.suppress(RedisError):  # a minority of masters down must not fail the lock
                op(master)

    def close(self) -> None:
        for master in self.masters:
            master.close()


class RedlockHandle(RunLock):
    def __init__(self, manager: RedlockManager, redlock: Redlock, run_id: int, epoch: int) -> None:
        self.manager, self.redlock, self.run_id, self.epoch = manager, redlock, run_id, epoch
        self.released = False

    def extend(self) -> None:
        try:
            self.redlock.extend()
        except ExtendUnlockedLock:
            raise FencedError(f"run {self.run_id}: lock lost (expired and taken, or Redis lost it)") from None
        except (QuorumIsImpossible, RedisError):
            return  # lock servers unreachable for now: the fencing token still guards every write
        ttl_ms = int(self.manager.ttl * 1000)
        self.manager._each_master(
            lambda m: m.pexpire(keys.run_holder(self.manager.scope, self.run_id), ttl_ms)
        )

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        _release_quietly(self.redlock)
        self.manager._each_master(lambda m: m.delete(keys.run_holder(self.manager.scope, self.run_id)))


def _release_quietly(redlock: Redlock) -> None:
    with contextlib.suppress(PrimitiveError, RedisError):  # not held any more: it expires on its own
        redlock.release()
