"""Signed task payloads: a worker runs only jobs a coordinator issued.

Anyone who can write to the broker (a password-less Redis, a Flower login with its task API) could
otherwise send ``executioner.run_job`` with any command and get a shell on every worker. Coordinators
and workers share a key (``EXECUTIONER_SECRET_KEY`` or a file named by ``EXECUTIONER_SECRET_KEY_FILE``);
the coordinator adds an HMAC-SHA256 of the payload's canonical JSON and an expiry, the worker checks
both (in constant time) before it claims the job, and refuses anything unsigned, tampered or stale.

Why not Celery's own message signing (``task_serializer='auth'``): it needs an X.509 key pair and
certificate store on every machine and a cryptography stack, to protect the same thing a shared
secret does here; and it signs whole messages, so Flower's ``async-apply`` simply fails instead of
being refused with a reason a worker can log.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from workers.wire import WireError

SIGNATURE = "sig"
EXPIRES = "expires"


def sign(payload: dict[str, Any], key: bytes, ttl: float, now: float | None = None) -> dict[str, Any]:
    """``payload`` with an expiry ``ttl`` seconds from now and its signature."""
    out = {k: v for k, v in payload.items() if k != SIGNATURE}
    out[EXPIRES] = (time.time() if now is None else now) + ttl
    out[SIGNATURE] = _mac(out, key)
    return out


def verify(payload: dict[str, Any], key: bytes | None, now: float | None = None) -> None:
    """Raise ``WireError`` saying why ``payload`` must not run. Without a key, nothing is checked
    (allowed only with a loopback broker: see ``require_key``)."""
    if key is None:
        return
    given = payload.get(SIGNATURE)
    if not isinstance(given, str):
        raise WireError("refused: the task is not signed (it was not issued by a coordinator with the key)")
    if not hmac.compare_digest(given, _mac(payload, key)):
        raise WireError("refused: bad task signature (tampered, or signed with another key)")
    expires = payload.get(EXPIRES)
    if not isinstance(expires, int | float) or (time.time() if now is None else now) > expires:
        raise WireError("refused: the task's signature expired (a replayed message)")


def require_key(broker_url: str | None, key: bytes | None) -> None:
    """A broker others can reach needs signed tasks: raise ``ValueError`` naming what to set."""
    if key is None and broker_url and not is_loopback_url(broker_url):
        raise ValueError(
            "the broker is not on this machine's loopback: set EXECUTIONER_SECRET_KEY (or "
            "EXECUTIONER_SECRET_KEY_FILE) to the same secret on coordinators and workers"
        )


def is_loopback_url(url: str) -> bool:
    import ipaddress
    from urllib.parse import urlsplit

    host = (urlsplit(url).hostname or "").strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _mac(payload: dict[str, Any], key: bytes) -> str:
    body = {k: v for k, v in payload.items() if k != SIGNATURE}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()
