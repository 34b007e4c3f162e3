"""Who is asking, and whether a form really came from our page: the web view's access rules.

- **Basic auth** (``--basic-auth user:password[,user2:password2]`` or ``EXECUTIONER_WEB_BASIC_AUTH``),
  as ``executioner flower`` takes it; **a bearer token** (``EXECUTIONER_WEB_TOKEN``, for scripts:
  the token's user is ``token``). Every page and API call needs one of them, except ``/healthz`` and
  the static assets; comparisons are constant-time.
- ``--unauthenticated`` (loopback addresses only, checked on the address uvicorn really binds): every
  request acts as the OS user that started the server. The ``Host`` header must then name a loopback
  host too, so a page elsewhere cannot reach it by DNS rebinding.
- **CSRF**: every state-changing request carries a token bound to its user (an HMAC under a key that
  lives as long as the server, or ``EXECUTIONER_SECRET_KEY`` when several servers share the load), in
  the form or an ``X-CSRF-Token`` header. Browsers send basic-auth credentials to any site that
  posts to us; they cannot read our pages to learn the token. A bearer token is never sent by a
  browser on its own, so a request authenticated by one needs no CSRF token.
"""

from __future__ import annotations

import base64
import binascii
import getpass
import hashlib
import hmac
import ipaddress
import os
import secrets
import socket
from dataclasses import dataclass, field

from orchestrator.errors import UserError

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")


@dataclass(frozen=True, slots=True)
class Identity:
    user: str
    by: str  # "basic", "token" or "loopback"

    @property
    def needs_csrf(self) -> bool:
        return self.by != "token"


@dataclass(slots=True)
class WebAuth:
    users: dict[str, str] = field(default_factory=dict)  # name -> password
    token: str | None = None
    unauthenticated: bool = False
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    def __repr__(self) -> str:  # never the passwords, the token or the key
        return f"WebAuth(users={sorted(self.users)}, token={'set' if self.token else None})"

    @classmethod
    def configure(
        cls,
        basic_auth: str | None,
        token: str | None,
        unauthenticated: bool,
        host: str,
        secret_key: bytes | None,
    ) -> WebAuth:
        """From the ``web`` command's options; ``UserError`` for what cannot be served safely."""
        users = parse_basic_auth(basic_auth) if basic_auth else {}
        if token is not None and len(token) < 16:
            raise UserError("EXECUTIONER_WEB_TOKEN: at least 16 characters")
        if unauthenticated:
            if not is_loopback(host):
                raise UserError(f"--unauthenticated is only allowed on a loopback --host, not {host!r}")
        elif not users and not token:
            raise UserError(
                "web needs --basic-auth user:password (or EXECUTIONER_WEB_BASIC_AUTH), "
                "EXECUTIONER_WEB_TOKEN, or --unauthenticated on a loopback address"
            )
        auth = cls(users, token, unauthenticated)
        if secret_key:  # several servers behind one address accept each other's forms
            auth.key = hashlib.sha256(b"executioner-web-csrf\0" + secret_key).digest()
        return auth

    def identify(self, authorization: str | None) -> Identity | None:
        """The caller named by an ``Authorization`` header, or the loopback user; None: refused."""
        scheme, _, value = (authorization or "").partition(" ")
        if scheme.lower() == "basic" and self.users:
            name, password = _decode_basic(value)
            expected = self.users.get(name or "")
            if name is not None and expected is not None and _same(password, expected):
                return Identity(name, "basic")
        elif scheme.lower() == "bearer" and self.token and _same(value.strip(), self.token):
            return Identity("token", "token")
        if self.unauthenticated:
            return Identity(getpass.getuser(), "loopback")
        return None

    def csrf_token(self, identity: Identity) -> str:
        return hmac.new(self.key, f"csrf:{identity.by}:{identity.user}".encode(), "sha256").hexdigest()

    def csrf_ok(self, identity: Identity, given: str | None) -> bool:
        return not identity.needs_csrf or (bool(given) and _same(given or "", self.csrf_token(identity)))

    def host_ok(self, host_header: str | None) -> bool:
        """Without authentication only a loopback ``Host`` is served (no DNS rebinding)."""
        if not self.unauthenticated:
            return True
        host = (host_header or "").rsplit(":", 1)[0] if not (host_header or "").endswith("]") else host_header
        return (host or "") in LOOPBACK_NAMES


def parse_basic_auth(text: str) -> dict[str, str]:
    users: dict[str, str] = {}
    for pair in text.split(","):
        name, sep, password = pair.strip().partition(":")
        if not sep or not name or not password:
            raise UserError("--basic-auth: expected user:password[,user2:password2]")
        users[name] = password
    return users


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` binds to is a loopback one (a name is resolved, as the server
    will resolve it: "localhost" that some resolver maps elsewhere is not loopback)."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        found = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except (OSError, UnicodeError):
        return False
    return bool(found) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in found)


def _decode_basic(value: str) -> tuple[str | None, str]:
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None, ""
    name, sep, password = decoded.partition(":")
    return (name, password) if sep else (None, "")


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


def configured_token() -> str | None:
    return os.environ.get("EXECUTIONER_WEB_TOKEN") or None
