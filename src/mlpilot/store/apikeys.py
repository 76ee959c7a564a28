"""Store methods for API keys (see :mod:`mlpilot.auth.keys` for the key format and hashing).

Invariants: the secret is never stored, only its salted hash; a key's name and prefix are unique forever (a revoked
key keeps its row, so its name cannot be reused to inherit its audit trail); creating and revoking a key are events
on ``apikey:<name>``; ``last_used_at`` is written at most once a minute per key.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from mlpilot.auth.keys import ApiKey
from mlpilot.errors import Conflict, NotFound
from mlpilot.store import tables as t
from mlpilot.store.mixin import StoreMixin, utc

#: how stale ``last_used_at`` may be before a use writes it again
TOUCH_EVERY = timedelta(seconds=60)


def _key(row: Any) -> ApiKey:
    return ApiKey(
        id=int(row.id),
        name=row.name,
        prefix=row.prefix,
        scopes=list(row.scopes),
        deployments=list(row.deployments),
        created_at=utc(row.created_at),
        created_by=row.created_by,
        revoked_at=utc(row.revoked_at),
        last_used_at=utc(row.last_used_at),
    )


class ApiKeysMixin(StoreMixin):
    """Mixed into :class:`~mlpilot.store.Store`; uses its transaction helpers."""

    def create_api_key(
        self, name: str, prefix: str, secret_hash: str, scopes: list[str], deployments: list[str], actor: str
    ) -> ApiKey:
        """Store a new key (already checked and hashed by the caller).

        Raises:
            Conflict: a key (active or revoked) already has this name, or this prefix.
        """
        k = t.api_keys
        with self._write() as conn:
            if conn.execute(sa.select(k.c.id).where(k.c.name == name)).first() is not None:
                raise Conflict(f"an API key named {name!r} exists (revoked keys keep their names); pick another name")
            row = conn.execute(
                k.insert()
                .values(
                    name=name,
                    prefix=prefix,
                    hash=secret_hash,
                    scopes=list(scopes),
                    deployments=list(deployments),
                    created_at=self.clock.now(),
                    created_by=actor,
                )
                .returning(*k.c)
            ).one()
            after = {"prefix": prefix, "scopes": list(scopes), "deployments": list(deployments)}
            self._event(conn, actor, "apikey.created", f"apikey:{name}", None, after)
        return _key(row)

    def list_api_keys(self, include_revoked: bool = False) -> list[ApiKey]:
        k = t.api_keys
        stmt = sa.select(k).order_by(k.c.id)
        if not include_revoked:
            stmt = stmt.where(k.c.revoked_at.is_(None))
        with self._read() as conn:
            return [_key(r) for r in conn.execute(stmt)]

    def count_api_keys(self) -> int:
        """How many keys are active (not revoked)."""
        k = t.api_keys
        with self._read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).where(k.c.revoked_at.is_(None))).scalar_one())

    def get_api_key(self, name: str) -> ApiKey:
        """The key ``name`` (revoked ones too). Raises ``NotFound``."""
        k = t.api_keys
        with self._read() as conn:
            row = conn.execute(sa.select(k).where(k.c.name == name)).first()
        if row is None:
            raise NotFound(f"no API key named {name!r}; `mlpilot auth list` shows them")
        return _key(row)

    def api_key_by_prefix(self, prefix: str) -> tuple[ApiKey, str] | None:
        """The key with ``prefix`` and its stored hash, or ``None`` (what authentication looks up)."""
        k = t.api_keys
        with self._read() as conn:
            row = conn.execute(sa.select(k).where(k.c.prefix == prefix)).first()
        return (_key(row), str(row.hash)) if row is not None else None

    def revoke_api_key(self, name: str, actor: str) -> ApiKey:
        """Revoke ``name`` now (idempotent: a revoked key stays as it was, without a second event).

        Raises:
            NotFound: no key has this name.
        """
        k = t.api_keys
        with self._write() as conn:
            row = conn.execute(self._lock(sa.select(k).where(k.c.name == name))).first()
            if row is None:
                raise NotFound(f"no API key named {name!r}; `mlpilot auth list` shows them")
            if row.revoked_at is not None:
                return _key(row)
            now = self.clock.now()
            row = conn.execute(k.update().where(k.c.id == row.id).values(revoked_at=now).returning(*k.c)).one()
            self._event(conn, actor, "apikey.revoked", f"apikey:{name}", {"prefix": row.prefix}, None)
        return _key(row)

    def touch_api_key(self, key_id: int, now: datetime | None = None) -> bool:
        """Record a use of the key: writes ``last_used_at`` only when it is unset or older than a minute (one
        conditional UPDATE; ``True`` when it wrote)."""
        k = t.api_keys
        now = now or self.clock.now()
        with self._write() as conn:
            res = conn.execute(
                k.update()
                .where(k.c.id == key_id, sa.or_(k.c.last_used_at.is_(None), k.c.last_used_at <= now - TOUCH_EVERY))
                .values(last_used_at=now)
            )
            return bool(res.rowcount == 1)
