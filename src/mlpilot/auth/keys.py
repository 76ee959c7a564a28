"""API keys and scopes, as pure functions: the scope hierarchy, key generation, parsing, hashing at rest.

A key reads ``mlp_<prefix>_<secret>``: ``prefix`` (8 hex characters) names the key's row and is shown in listings,
``secret`` (32 random bytes, URL-safe base64) is shown once at creation and stored only as a salted scrypt hash
(``scrypt$n$r$p$<salt>$<hash>``, parameters kept with the hash so they can change later). With 256 random bits a
secret cannot be guessed; the slow hash protects secrets in a stolen database copy, not against guessing.

Scopes (docs/security.md): ``admin`` ⊇ ``deploy`` ⊇ ``write`` ⊇ ``read``; ``predict`` (the data plane) is separate,
only ``admin`` includes it; ``public`` routes need no key.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from datetime import datetime

from mlpilot.errors import InvalidArgument
from mlpilot.records import Record

KEY_PREFIX = "mlp_"
_PREFIX_RE = re.compile(r"^[0-9a-f]{8}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SCRYPT = (2**14, 8, 1)  # n, r, p: 16 MiB and ~50 ms per hash


class Scope(str, enum.Enum):
    PUBLIC = "public"  # health and discovery: no credentials ever needed
    READ = "read"
    PREDICT = "predict"
    WRITE = "write"
    DEPLOY = "deploy"
    ADMIN = "admin"


#: what each scope a key holds lets it do
IMPLIES: dict[Scope, frozenset[Scope]] = {
    Scope.READ: frozenset({Scope.READ}),
    Scope.WRITE: frozenset({Scope.WRITE, Scope.READ}),
    Scope.DEPLOY: frozenset({Scope.DEPLOY, Scope.WRITE, Scope.READ}),
    Scope.PREDICT: frozenset({Scope.PREDICT}),
    Scope.ADMIN: frozenset(Scope) - {Scope.PUBLIC},
}
#: the scopes a key can be given
GRANTABLE = (Scope.READ, Scope.PREDICT, Scope.WRITE, Scope.DEPLOY, Scope.ADMIN)


class ApiKey(Record):
    """An API key as stored and listed (never its secret). ``deployments`` empty = every deployment."""

    id: int
    name: str
    prefix: str
    scopes: list[str]
    deployments: list[str]
    created_at: datetime
    created_by: str
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class CreatedApiKey(Record):
    """What creating a key returns, once: the key itself (``mlp_<prefix>_<secret>``) and its record."""

    key: str
    api_key: ApiKey


def allows(held: Iterable[str], needed: Scope) -> bool:
    """Whether a key holding ``held`` may use a route that needs ``needed``."""
    if needed is Scope.PUBLIC:
        return True
    return any(needed in IMPLIES.get(Scope(s), frozenset()) for s in held if s in Scope._value2member_map_)


def parse_scopes(scopes: Iterable[str]) -> list[str]:
    """Scopes as given by a user (``read``, ``predict`` …), checked, deduplicated, in hierarchy order.

    Raises:
        InvalidArgument: an unknown scope, ``public``, or none at all.
    """
    wanted = {s.strip().lower() for s in scopes if s.strip()}
    known = {s.value for s in GRANTABLE}
    bad = sorted(wanted - known)
    if bad:
        raise InvalidArgument(f"unknown scope(s) {', '.join(bad)}; use one or more of {', '.join(sorted(known))}")
    if not wanted:
        raise InvalidArgument(f"a key needs at least one scope: {', '.join(s.value for s in GRANTABLE)}")
    return [s.value for s in GRANTABLE if s.value in wanted]


def check_key_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise InvalidArgument(
            f"bad key name {name!r}: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def new_key() -> tuple[str, str, str]:
    """A fresh key: ``(key, prefix, secret)``; the key is what the caller keeps."""
    prefix = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    return f"{KEY_PREFIX}{prefix}_{secret}", prefix, secret


def split_key(key: str) -> tuple[str, str] | None:
    """``(prefix, secret)`` of a well-formed key, else ``None``."""
    if not key.startswith(KEY_PREFIX):
        return None
    prefix, sep, secret = key[len(KEY_PREFIX) :].partition("_")
    if not sep or not secret or not _PREFIX_RE.match(prefix):
        return None
    return prefix, secret


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_secret(secret: str, *, salt: bytes | None = None) -> str:
    """The at-rest form of ``secret``: salted scrypt, with its parameters."""
    n, r, p = _SCRYPT
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_secret(secret: str, stored: str) -> bool:
    """Whether ``secret`` hashes to ``stored`` (constant-time comparison; a malformed ``stored`` never matches)."""
    try:
        algo, n, r, p, salt, digest = stored.split("$")
        if algo != "scrypt":
            return False
        got = hashlib.scrypt(secret.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, _unb64(digest))


def fingerprint(key: str) -> str:
    """A fast digest of a whole presented key, used only as an in-memory cache key (never stored)."""
    return hashlib.sha256(key.encode()).hexdigest()
