"""What :class:`~mlpilot.store.Store` provides to the mixins that hold its methods by topic (observations,
monitoring, rollouts): the clock and the transaction helpers, declared once."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, overload

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mlpilot.clock import Clock


@overload
def utc(ts: datetime) -> datetime: ...
@overload
def utc(ts: None) -> None: ...
def utc(ts: datetime | None) -> datetime | None:
    """A stored timestamp as aware UTC (SQLite returns naive datetimes)."""
    if ts is None:
        return None
    return ts.replace(tzinfo=timezone.utc) if ts.tzinfo is None else ts.astimezone(timezone.utc)


class StoreMixin:
    """The base of the store's mixins; :class:`~mlpilot.store.Store` implements these."""

    clock: Clock

    def _write(self) -> contextlib.AbstractContextManager[Connection]:
        raise NotImplementedError

    def _read(self) -> contextlib.AbstractContextManager[Connection]:
        raise NotImplementedError

    def _lock(self, stmt: sa.Select[Any]) -> sa.Select[Any]:
        raise NotImplementedError

    def _event(
        self,
        conn: Connection,
        actor: str,
        action: str,
        subject: str,
        before: Mapping[str, Any] | None,
        after: Mapping[str, Any] | None,
    ) -> int:
        raise NotImplementedError
