"""Store methods for leases: a named lease is held by one holder until it expires, taken and renewed by
compare-and-set in one statement, so two processes racing for it never both win.

Invariants:

* At most one holder has an unexpired lease ``name`` at any instant of the store's clock.
* The ``epoch`` (fencing token) grows by one at every new tenure — a free, expired or released lease taken again,
  by anyone — and never goes back: a released lease keeps its row, expired. Renewing an unexpired lease keeps it.
* Only the holder of the current epoch renews or releases it; an expired lease cannot be renewed (its holder must
  acquire it again, getting a new epoch): nobody acts on a stale lease.

Time is the store's clock (``Store.clock``); processes on several machines must keep their clocks in sync to well
under the lease's time to live (NTP does).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from mlpilot.errors import InvalidArgument
from mlpilot.records import Record
from mlpilot.store import tables as t
from mlpilot.store.mixin import StoreMixin, utc

_NAME_MAX = 64
_HOLDER_MAX = 256
_TTL_MAX_S = 86_400.0


class Lease(Record):
    """A lease as stored. ``active`` is whether it was unexpired when it was read."""

    name: str
    holder: str
    epoch: int
    acquired_at: datetime
    renewed_at: datetime
    expires_at: datetime
    active: bool


def _lease(row: Any, now: datetime) -> Lease:
    expires = utc(row.expires_at)
    return Lease(
        name=row.name,
        holder=row.holder,
        epoch=int(row.epoch),
        acquired_at=utc(row.acquired_at),
        renewed_at=utc(row.renewed_at),
        expires_at=expires,
        active=expires > now,
    )


def _check(name: str, holder: str | None = None, ttl_s: float | None = None) -> None:
    if not name or len(name) > _NAME_MAX:
        raise InvalidArgument(f"a lease name has 1 to {_NAME_MAX} characters, got {len(name)}")
    if holder is not None and (not holder or len(holder) > _HOLDER_MAX):
        raise InvalidArgument(f"a lease holder has 1 to {_HOLDER_MAX} characters, got {len(holder)}")
    if ttl_s is not None and not (0 < ttl_s <= _TTL_MAX_S):
        raise InvalidArgument(f"a lease's time to live is more than 0 and at most {_TTL_MAX_S:.0f} s, got {ttl_s}")


class LeasesMixin(StoreMixin):
    """Mixed into :class:`~mlpilot.store.Store`; uses its transaction helpers."""

    _pg: bool

    def acquire_lease(self, name: str, holder: str, ttl_s: float) -> Lease | None:
        """Take lease ``name`` for ``ttl_s`` seconds if it is free, expired or released (a new epoch), or renew it
        if ``holder`` already holds it (same epoch). Returns the lease, or ``None`` when someone else holds it.

        One ``INSERT … ON CONFLICT DO UPDATE … WHERE`` statement: on PostgreSQL the conflicting row is locked and
        the condition evaluated on its newest version, on SQLite writers are serialised, so of two processes racing
        for a free lease exactly one gets it.

        Raises:
            InvalidArgument: an empty or too long name or holder, a time to live not in (0, 86400].
        """
        _check(name, holder, ttl_s)
        ls = t.leases
        now = self.clock.now()
        expires = now + timedelta(seconds=ttl_s)
        ins = (pg_dialect.insert if self._pg else sqlite_dialect.insert)(ls).values(
            name=name, holder=holder, epoch=1, acquired_at=now, renewed_at=now, expires_at=expires
        )
        renewal = sa.and_(ls.c.holder == holder, ls.c.expires_at > now)
        stmt = ins.on_conflict_do_update(
            index_elements=[ls.c.name],
            set_={
                "holder": holder,
                "epoch": sa.case((renewal, ls.c.epoch), else_=ls.c.epoch + 1),
                "acquired_at": sa.case((renewal, ls.c.acquired_at), else_=sa.literal(now, t.Ts)),
                "renewed_at": now,
                "expires_at": expires,
            },
            where=sa.or_(ls.c.holder == holder, ls.c.expires_at <= now),
        ).returning(*ls.c)
        with self._write() as conn:
            row = conn.execute(stmt).first()
        return _lease(row, now) if row is not None else None

    def renew_lease(self, name: str, holder: str, epoch: int, ttl_s: float) -> bool:
        """Extend the lease to ``ttl_s`` seconds from now if ``holder`` still holds it at ``epoch`` and it has not
        expired; ``False`` otherwise (taken, released or expired: acquire it again).

        Raises:
            InvalidArgument: as :meth:`acquire_lease`.
        """
        _check(name, holder, ttl_s)
        ls = t.leases
        now = self.clock.now()
        with self._write() as conn:
            res = conn.execute(
                ls.update()
                .where(ls.c.name == name, ls.c.holder == holder, ls.c.epoch == epoch, ls.c.expires_at > now)
                .values(renewed_at=now, expires_at=now + timedelta(seconds=ttl_s))
            )
            return bool(res.rowcount == 1)

    def release_lease(self, name: str, holder: str, epoch: int) -> bool:
        """Give the lease up now (it expires; the next :meth:`acquire_lease` by anyone gets a new epoch). ``False``
        when ``holder`` did not hold it at ``epoch`` any more (nothing changes)."""
        _check(name, holder)
        ls = t.leases
        now = self.clock.now()
        with self._write() as conn:
            res = conn.execute(
                ls.update()
                .where(ls.c.name == name, ls.c.holder == holder, ls.c.epoch == epoch, ls.c.expires_at > now)
                .values(expires_at=now, renewed_at=now)
            )
            return bool(res.rowcount == 1)

    def get_lease(self, name: str) -> Lease | None:
        """The lease ``name`` as stored (expired ones too, with ``active`` false), or ``None`` if never taken."""
        _check(name)
        with self._read() as conn:
            row = conn.execute(sa.select(t.leases).where(t.leases.c.name == name)).first()
        return _lease(row, self.clock.now()) if row is not None else None
