"""The event log (audit trail) and health."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from mlpilot import __version__
from mlpilot.api.params import INT64_MAX
from mlpilot.api.scopes import Scope, platform, route
from mlpilot.app import Platform
from mlpilot.records import Event

router = APIRouter(prefix="/api/v1", tags=["events"])
P = Annotated[Platform, Depends(platform)]


@route(router, "GET", "/events", Scope.READ)
def list_events(
    p: P,
    subject: str | None = Query(None, description="exact subject, or a prefix ending in *"),
    action: str | None = Query(None, description="exact action, or a prefix ending in *"),
    after_id: int = Query(0, ge=0, le=INT64_MAX, description="only events with a larger id (for tailing)"),
    limit: int = Query(100, ge=1, le=10_000, description="the newest N matching events"),
) -> list[Event]:
    return p.store.list_events(subject=subject, action=action, after_id=after_id, limit=limit)


@route(router, "GET", "/health", Scope.PUBLIC)
def health(p: P) -> dict[str, object]:
    return {"status": "ok", "version": __version__, "snapshot_version": p.store.snapshot_version()}
