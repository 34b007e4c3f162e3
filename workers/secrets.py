"""Keeping secrets out of sight: which values are secret, references to them, and masking.

A job's ``env`` value is secret when its name looks like one (``*PASSWORD*``, ``*TOKEN*``,
``*SECRET*``, ``*KEY*``, ... plus the comma-separated patterns in ``EXECUTIONER_SECRET_NAMES``) or
when it is a *reference*, ``{from_env: NAME}``: then the value is taken from the environment of the
process that runs the job (a worker, the local pool) and is never stored, sent or shown anywhere.
Secret values are shown as ``***`` in change lists, refusals, ``--json``, Flower's task arguments and
in the captured output of the job itself.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "***"
SECRET_PATTERNS = ("*PASSWORD*", "*PASSWD*", "*TOKEN*", "*SECRET*", "*KEY*", "*CREDENTIAL*", "*PRIVATE*")
REF = "from_env"
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/\s:@]*):(?P<pw>[^@\s/]+)@")


def secret_patterns(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    extra = (os.environ if env is None else env).get("EXECUTIONER_SECRET_NAMES", "")
    return SECRET_PATTERNS + tuple(p.strip().upper() for p in extra.split(",") if p.strip())


def is_secret_name(name: str, patterns: Iterable[str] | None = None) -> bool:
    upper = name.upper()
    return any(fnmatch.fnmatchcase(upper, p) for p in (patterns or secret_patterns()))


def is_ref(value: Any) -> bool:
    """``{"from_env": "NAME"}``: a secret resolved where the job runs."""
    return isinstance(value, dict) and set(value) == {REF} and isinstance(value[REF], str)


def mask_env(env: Any, patterns: Iterable[str] | None = None) -> Any:
    """``env`` with every secret value replaced by ``***`` (references are shown as they are: they
    name a variable, they hold no secret)."""
    if not isinstance(env, dict):
        return env
    patterns = tuple(patterns or secret_patterns())
    return {k: v if is_ref(v) else (MASK if is_secret_name(str(k), patterns) else v) for k, v in env.items()}


def secret_names(env: Mapping[str, Any], patterns: Iterable[str]) -> list[str]:
    """Names in a job's ``env`` whose values are secret: references, and secret-looking names."""
    patterns = tuple(patterns)
    return [k for k, v in env.items() if is_ref(v) or is_secret_name(k, patterns)]


def secret_values(env: Mapping[bytes, bytes], names: Iterable[str]) -> list[bytes]:
    """The values of ``names`` in a job's final environment: never to appear in its captured output.
    Values shorter than 4 bytes are left alone (masking every "1" would garble any output)."""
    values = (env.get(os.fsencode(name)) for name in names)
    return [v for v in values if v and len(v) >= 4]


def mask_output(data: bytes | bytearray, secrets: Iterable[bytes]) -> bytes:
    out = bytes(data)
    for value in sorted(set(secrets), key=len, reverse=True):  # longest first: no partial leftovers
        out = out.replace(value, MASK.encode())
    return out


def redact_urls(text: str) -> str:
    """Credentials in URLs (``redis://:pw@host``, ``postgresql://user:pw@host``) become ``***``."""
    return _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
