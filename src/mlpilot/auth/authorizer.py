"""Who is calling and what they may do: API keys from request headers, verified against the store, checked
against the scope a route declares and the deployments a key is granted.

Verifying a key's hash costs ~50 ms (scrypt), so a verified key is cached in memory by a fast digest of the whole
presented key and re-read from the store (not re-hashed) every ``cache_s`` seconds: a revocation made by another
process is seen within ``cache_s``, one made through :meth:`Authorizer.forget` at once. Unknown and wrong keys are
cached as refused for as long, so a flood of bad keys costs one hash per distinct key and period.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from mlpilot.auth.keys import (
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
from mlpilot.errors import InvalidArgument, PermissionDenied, Unauthenticated

if TYPE_CHECKING:
    from mlpilot.store import Store

_MAX_CACHED = 10_000
HOW_TO = (
    "send `Authorization: Bearer <key>` (or `X-Api-Key: <key>`); an admin creates keys with `mlpilot auth create-key`"
)


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: the key's name, scopes and granted deployments (empty = all)."""

    name: str
    scopes: tuple[str, ...]
    deployments: tuple[str, ...]
    key_id: int

    @property
    def actor(self) -> str:
        return f"key:{self.name}"

    @property
    def admin(self) -> bool:
        return Scope.ADMIN.value in self.scopes


def credentials(header: Callable[[str], str | None]) -> str | None:
    """The key a request carries: ``Authorization: Bearer <key>``, else ``X-Api-Key``; ``header(name)`` reads one
    header (lower-case name)."""
    auth = header("authorization")
    if auth:
        kind, _, value = auth.strip().partition(" ")
        if kind.lower() == "bearer" and value.strip():
            return value.strip()
    key = header("x-api-key")
    return key.strip() if key and key.strip() else None


@dataclass
class _Entry:
    principal: Principal | None  # None: refused
    checked: float
    reason: str = ""


class Authorizer:
    """Authenticates keys against ``store`` and checks scopes and grants (thread-safe)."""

    def __init__(self, store: Store, *, cache_s: float = 5.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.cache_s = cache_s
        self._now = monotonic
        self._cache: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def cached(self, key: str | None) -> Principal | None:
        """The principal of ``key`` if it was verified less than ``cache_s`` ago (no I/O; the hot path)."""
        if key is None:
            return None
        entry = self._cache.get(fingerprint(key))
        if entry is not None and entry.principal is not None and self._now() - entry.checked < self.cache_s:
            return entry.principal
        return None

    def authenticate(self, key: str | None) -> Principal:
        """The principal of ``key`` (may read the store and hash: call it off the event loop).

        Raises:
            Unauthenticated: no key, a malformed, unknown or wrong key, or a revoked one.
        """
        if key is None:
            raise Unauthenticated(f"this route needs an API key: {HOW_TO}")
        fp = fingerprint(key)
        now = self._now()
        entry = self._cache.get(fp)
        if entry is not None and now - entry.checked < self.cache_s:
            if entry.principal is None:
                raise Unauthenticated(entry.reason)
            return entry.principal
        principal, reason = self._check(key, entry)
        with self._lock:
            if len(self._cache) >= _MAX_CACHED:
                self._cache.clear()
            self._cache[fp] = _Entry(principal, now, reason)
        if principal is None:
            raise Unauthenticated(reason)
        return principal

    def _check(self, key: str, previous: _Entry | None) -> tuple[Principal | None, str]:
        parts = split_key(key)
        unknown = f"unknown API key (keys look like mlp_<prefix>_<secret>): {HOW_TO}"
        if parts is None:
            return None, unknown
        prefix, secret = parts
        found = self.store.api_key_by_prefix(prefix)
        if found is None:
            return None, unknown
        record, stored_hash = found
        # keys never change their hash: one verified before, for this very row, needs no second scrypt
        verified = previous is not None and previous.principal is not None and previous.principal.key_id == record.id
        if not verified and not verify_secret(secret, stored_hash):
            return None, unknown
        if not record.active:
            return None, f"the API key {record.name!r} was revoked: {HOW_TO}"
        self._touch(record)
        return Principal(record.name, tuple(record.scopes), tuple(record.deployments), record.id), ""

    def _touch(self, record: ApiKey) -> None:
        now = datetime.now(timezone.utc)
        if record.last_used_at is None or now - record.last_used_at >= timedelta(seconds=60):
            self.store.touch_api_key(record.id)

    def forget(self, name: str) -> None:
        """Drop every cached verification of key ``name`` (after revoking it through this process)."""
        with self._lock:
            for fp in [fp for fp, e in self._cache.items() if e.principal is not None and e.principal.name == name]:
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
                f"the API key {principal.name!r} lacks the {needed.value!r} scope this route needs "
                f"(it has {', '.join(principal.scopes)})",
                detail={"needed_scope": needed.value},
            )
        if not principal.deployments:
            return
        if deployment is not None:
            if deployment not in principal.deployments:
                raise PermissionDenied(
                    f"the API key {principal.name!r} is not granted deployment {deployment!r} "
                    f"(it is granted {', '.join(principal.deployments)})",
                    detail={"needed_deployment": deployment},
                )
        elif needed not in (Scope.READ, Scope.PREDICT, Scope.PUBLIC):
            raise PermissionDenied(
                f"the API key {principal.name!r} is granted only deployments {', '.join(principal.deployments)}; "
                f"this {needed.value} route is not about one deployment, so it needs a key granted every deployment",
                detail={"needed_deployment": "*"},
            )


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
