"""The one way Executioner connects to Redis (broker, streams, leases, locks): same options everywhere."""

from __future__ import annotations

from redis import Redis


def connect(url: str, *, timeout: float = 30.0) -> Redis:
    """A client for ``url``. ``timeout`` bounds every call; lock servers use a short one (a lock
    that cannot answer fast is treated as unreachable), streams a long one (blocking reads)."""
    return Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=min(timeout, 10.0),
        health_check_interval=10,
    )
