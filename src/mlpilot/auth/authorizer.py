"""Who is calling and what they may do: API keys from request headers, verified against the store (or, on a remote
data plane, by its control plane: :mod:`.remote`), and bearer JWTs from an OIDC provider (:mod:`.oidc`), checked
against the scope a route declares and the deployments a caller is granted.

A bearer credential that looks like an mlpilot key (``mlp_…``) is always checked as a key; anything else, when
``auth.oidc`` is configured, as a JWT. A valid token is cached like a key, but never past its expiry; refused tokens
are not cached (a key rotation at the provider must take effect at once).

Verifying a key's hash costs ~50 ms (scrypt), so a verified key is cached in memory by a fast digest of the whole
presented key and re-read from the store (not re-hashed) every ``cache_s`` seconds: a revocation made by another
process is seen within ``cache_s``, one made through :meth:`Authorizer.forget` at once. Unknown and wrong keys are
cached as refused for as long, so a flood of bad keys costs one hash per distinct key and period.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Protocol

from mlpilot.auth.keys import (
    KEY_PREFIX,
    ApiKey,
    CreatedApiKey,
    Scope,
    allows,
    check_key_name,
    fingerprint,
    hash_secret,
    new_key,
    parse_scopes,
    split_key,
    verify_secret,
)
from mlpilot.auth.principal import Principal, credentials
from mlpilot.errors import InvalidArgument, PermissionDenied, Unauthenticated, Unavailable

if TYPE_CHECKING:
    from mlpilot.auth.oidc import OidcValidator
    from mlpilot.settings import Settings
    from mlpilot.store import Store

_MAX_CACHED = 10_000
HOW_TO = (
    "send `Authorization: Bearer <key>` (or `X-Api-Key: <key>`); an admin creates keys with `mlpilot auth create-key`"
)

UNKNOWN_KEY = f"unknown API key (keys look like mlp_<prefix>_<secret>): {HOW_TO}"


class KeyVerifier(Protocol):
    """Checks an API key: ``(principal, "")`` or ``(None, why it was refused)``; ``previous`` is the principal the
    same key had at its last check, if any. Raises :class:`~mlpilot.errors.Unavailable` when it cannot tell."""

    def __call__(self, key: str, previous: Principal | None) -> tuple[Principal | None, str]: ...


class StoreKeys:
    """Keys verified against the store's hashes (a control plane)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def __call__(self, key: str, previous: Principal | None) -> tuple[Principal | None, str]:
        parts = split_key(key)
        if parts is None:
            return None, UNKNOWN_KEY
        prefix, secret = parts
        found = self.store.api_key_by_prefix(prefix)
        if found is None:
            return None, UNKNOWN_KEY
        record, stored_hash = found
        # keys never change their hash: one verified before, for this very row, needs no second scrypt
        verified = previous is not None and previous.kind == "key" and previous.key_id == record.id
        if not verified and not verify_secret(secret, stored_hash):
            return None, UNKNOWN_KEY
        if not record.active:
            return None, f"the API key {record.name!r} was revoked: {HOW_TO}"
        self._touch(record)
        return Principal(record.name, tuple(record.scopes), tuple(record.deployments), record.id), ""

    def _touch(self, record: ApiKey) -> None:
        now = datetime.now(timezone.utc)
        if record.last_used_at is None or now - record.last_used_at >= timedelta(seconds=60):
            self.store.touch_api_key(record.id)


@dataclass
class _Entry:
    principal: Principal | None  # None: refused
    checked: float
    reason: str = ""
    until: float = math.inf  # a token's principal is not used past the token's expiry (monotonic seconds)


class Authorizer:
    """Authenticates API keys (against ``store``, or with ``keys``) and bearer tokens (``oidc``), and checks scopes
    and grants (thread-safe).

    Args:
        keys: how keys are verified (default: against ``store``; a remote data plane asks its control plane).
        oidc: validates bearer JWTs (``None``: only API keys are accepted).
        offline_grace_s: while ``keys`` cannot tell (``Unavailable``), a key verified less than ``cache_s +
            offline_grace_s`` ago is still accepted; otherwise the request fails with 503 (closed, never open).
    """

    def __init__(
        self,
        store: Store | None = None,
        *,
        cache_s: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
        keys: KeyVerifier | None = None,
        oidc: OidcValidator | None = None,
        offline_grace_s: float = 0.0,
    ) -> None:
        if keys is None:
            if store is None:
                raise ValueError("an Authorizer needs a store or a key verifier")
            keys = StoreKeys(store)
        self.store = store
        self.keys = keys
        self.oidc = oidc
        self.cache_s = cache_s
        self.offline_grace_s = offline_grace_s
        self._now = monotonic
        self._cache: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def cached(self, key: str | None) -> Principal | None:
        """The principal of ``key`` if it was verified less than ``cache_s`` ago (no I/O; the hot path)."""
        if key is None:
            return None
        entry = self._cache.get(fingerprint(key))
        now = self._now()
        if (
            entry is not None
            and entry.principal is not None
            and now - entry.checked < self.cache_s
            and now < entry.until
        ):
            return entry.principal
        return None

    def authenticate(self, key: str | None) -> Principal:
        """The principal of ``key`` (may read the store, hash, or fetch: call it off the event loop).

        Raises:
            Unauthenticated: no credential; a malformed, unknown, wrong or revoked key; an invalid token.
            PermissionDenied: a token whose deployment grants are missing (``auth.oidc.deployments_claim``).
            Unavailable: the credential cannot be checked now (a remote data plane's control plane is unreachable,
                the provider's key set cannot be fetched).
        """
        if key is None:
            raise Unauthenticated(
                f"this route needs {'an API key or a bearer token' if self.oidc else 'an API key'}: {HOW_TO}"
            )
        if self.oidc is not None and not key.startswith(KEY_PREFIX):
            return self._token(key)
        fp = fingerprint(key)
        now = self._now()
        entry = self._cache.get(fp)
        if entry is not None and now - entry.checked < self.cache_s:
            if entry.principal is None:
                raise Unauthenticated(entry.reason)
            return entry.principal
        try:
            principal, reason = self.keys(key, entry.principal if entry is not None else None)
        except Unavailable:
            if (
                entry is not None
                and entry.principal is not None
                and now - entry.checked < self.cache_s + self.offline_grace_s
            ):
                return entry.principal  # verified recently enough: auth.offline_grace_s
            raise
        self._remember(fp, _Entry(principal, now, reason))
        if principal is None:
            raise Unauthenticated(reason)
        return principal

    def _token(self, token: str) -> Principal:
        assert self.oidc is not None
        hit = self.cached(token)
        if hit is not None:
            return hit
        fp = fingerprint(token)
        now = self._now()
        principal, expires = self.oidc.validate(token)
        left = expires + self.oidc.settings.leeway_s - time.time()
        self._remember(fp, _Entry(principal, now, until=now + max(0.0, left)))
        return principal

    def _remember(self, fp: str, entry: _Entry) -> None:
        with self._lock:
            if len(self._cache) >= _MAX_CACHED:
                self._cache.clear()
            self._cache[fp] = entry

    def close(self) -> None:
        """Release what the key verifier holds (a remote data plane's HTTP client)."""
        close = getattr(self.keys, "close", None)
        if close is not None:
            close()

    def forget(self, name: str) -> None:
        """Drop every cached verification of key ``name`` (after revoking it through this process)."""
        with self._lock:
            for fp in [
                fp
                for fp, e in self._cache.items()
                if e.principal is not None and e.principal.kind == "key" and e.principal.name == name
            ]:
                del self._cache[fp]

    @staticmethod
    def authorize(principal: Principal, needed: Scope, deployment: str | None = None) -> None:
        """Check that ``principal`` may use a route needing ``needed``, about ``deployment`` (``None``: the route
        names no deployment).

        A key granted some deployments only may use routes naming one of them, and, among routes naming none,
        those needing ``read`` or ``predict`` (lists, the registry, the OpenAI model list) — never a write,
        deploy or admin route that could reach other deployments.

        Raises:
            PermissionDenied: naming the missing scope or deployment grant.
        """
        if not allows(principal.scopes, needed):
            raise PermissionDenied(
                f"{principal} lacks the {needed.value!r} scope this route needs "
                f"(it has {', '.join(principal.scopes) or 'none'})",
                detail={"needed_scope": needed.value},
            )
        if not principal.deployments:
            return
        if deployment is not None:
            if deployment not in principal.deployments:
                raise PermissionDenied(
                    f"{principal} is not granted deployment {deployment!r} "
                    f"(it is granted {', '.join(principal.deployments)})",
                    detail={"needed_deployment": deployment},
                )
        elif needed not in (Scope.READ, Scope.PREDICT, Scope.PUBLIC):
            raise PermissionDenied(
                f"{principal} is granted only deployments {', '.join(principal.deployments)}; "
                f"this {needed.value} route is not about one deployment, so it needs a key granted every deployment",
                detail={"needed_deployment": "*"},
            )


def store_authorizer(settings: Settings, store: Store) -> Authorizer:
    """A control plane's authorizer: keys verified against ``store``, bearer JWTs when ``auth.oidc`` is set."""
    from mlpilot.auth.oidc import build_validator

    return Authorizer(store, cache_s=settings.auth.cache_s, oidc=build_validator(settings.auth.oidc))


def header_reader(headers: Mapping[str, str]) -> Callable[[str], str | None]:
    return lambda name: headers.get(name)


def issue_key(store: Store, name: str, scopes: list[str], deployments: list[str], actor: str) -> CreatedApiKey:
    """Create key ``name`` in ``store``: checks the name and scopes, hashes the secret; the returned key is the only
    time the secret exists outside its holder.

    Raises:
        InvalidArgument: a bad name, an unknown scope, none, or an empty deployment name.
        Conflict: a key already has this name.
    """
    check_key_name(name)
    checked = parse_scopes(scopes)
    grants = sorted({d.strip() for d in deployments})
    if any(not d for d in grants):
        raise InvalidArgument("an empty deployment name in the key's grants")
    key, prefix, secret = new_key()
    record = store.create_api_key(name, prefix, hash_secret(secret), checked, grants, actor)
    return CreatedApiKey(key=key, api_key=record)


__all__ = [
    "HOW_TO",
    "Authorizer",
    "KeyVerifier",
    "Principal",
    "StoreKeys",
    "credentials",
    "header_reader",
    "issue_key",
    "store_authorizer",
]
