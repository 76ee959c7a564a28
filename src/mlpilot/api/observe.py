"""Observation routes: the request log and feedback."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from mlpilot.api.scopes import Scope, actor, platform, route
from mlpilot.app import Platform
from mlpilot.errors import InvalidArgument
from mlpilot.telemetry.query import read_records

router = APIRouter(prefix="/api/v1/deployments", tags=["observe"])
P = Annotated[Platform, Depends(platform)]
Actor = Annotated[str, Depends(actor)]


class FeedbackItem(BaseModel):
    request_id: str
    row: int = Field(0, ge=0)
    label: str | float | int | bool | None = None
    score: float | None = None
    reward: float | None = None
    ts: datetime | float | None = Field(None, description="event time (ISO 8601 or epoch seconds); default now")


class FeedbackBody(BaseModel):
    items: list[FeedbackItem] = Field(min_length=1, max_length=100_000)


@route(router, "POST", "/{name}/feedback", Scope.WRITE)
def post_feedback(p: P, who: Actor, name: str, body: FeedbackBody) -> dict[str, int]:
    """Labels, scores or rewards for logged predictions (all or nothing)."""
    items = [i.model_dump(exclude_none=True) for i in body.items]
    return {"stored": p.feedback.submit(name, items, who)}


@route(router, "GET", "/{name}/feedback", Scope.READ)
def get_feedback(
    p: P,
    name: str,
    kind: str | None = Query(None, description="label, score or reward"),
    request_id: str | None = Query(None, description="only the feedback on this logged request"),
) -> list[dict[str, Any]]:
    """Stored feedback on the deployment's predictions, oldest first."""
    p.store.get_deployment(name)
    return p.store.list_feedback(name, kind=kind, request_id=request_id)


def _clean(v: Any) -> Any:
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if hasattr(v, "isoformat"):
        return v.isoformat()
    if hasattr(v, "item"):
        return _clean(v.item())
    return v


#: the statuses the request log records (see docs/observability.md)
LOG_STATUSES = ("ok", "error", "quarantined")


@route(router, "GET", "/{name}/logs", Scope.READ)
def get_logs(
    p: P,
    name: str,
    since: datetime | None = None,
    until: datetime | None = None,
    variant: str | None = None,
    status: str | None = None,
    shadow: bool | None = None,
    limit: int = Query(100, ge=1, le=100_000),
) -> list[dict[str, Any]]:
    """Logged rows, newest first (one row per input row)."""
    p.store.get_deployment(name)
    if since and until and since > until:
        raise InvalidArgument("since must be before until")
    if status is not None and status not in LOG_STATUSES:
        raise InvalidArgument(f"status must be one of {list(LOG_STATUSES)}, got {status!r}")
    df = read_records(
        p.logs,
        name,
        since=since,
        until=until,
        variant=variant,
        status=status,
        shadow=shadow,
        limit=limit,
        newest_first=True,
    )
    return [{str(k): _clean(v) for k, v in row.items()} for row in df.to_dict(orient="records")]


@route(router, "GET", "/{name}/drift", Scope.READ)
def get_drift(
    p: P,
    name: str,
    since: datetime | None = None,
    until: datetime | None = None,
    variant: str | None = None,
    numeric_test: str = "ks",
    categorical_test: str = "chi2",
    correction: str = "holm",
    alpha: float = Query(0.05, gt=0, lt=1),
) -> dict[str, Any]:
    """Per-feature drift of the deployment's traffic in the window against its reference dataset."""
    report = p.drift.report(
        name,
        since=since,
        until=until,
        variant=variant,
        numeric_test=numeric_test,
        categorical_test=categorical_test,
        correction=correction,
        alpha=alpha,
    )
    return report.to_dict()
