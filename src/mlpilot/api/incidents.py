"""Incidents: alerts grouped by deployment and time, with a lifecycle and a timeline."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from mlpilot.api.scopes import Scope, actor, platform, route
from mlpilot.app import Platform
from mlpilot.records import Event, Incident

router = APIRouter(prefix="/api/v1", tags=["incidents"])
P = Annotated[Platform, Depends(platform)]
Actor = Annotated[str, Depends(actor)]


class ResolveRequest(BaseModel):
    reason: str = Field("", max_length=2000)


@route(router, "GET", "/incidents", Scope.READ)
def list_incidents(
    p: P, deployment: str | None = None, status: str | None = None, limit: int = Query(100, ge=1, le=10_000)
) -> list[Incident]:
    """Newest first; ``status`` one of open, mitigating, mitigated, resolved."""
    return p.incidents.list_incidents(deployment, status, limit)


@route(router, "GET", "/incidents/{incident_id}", Scope.READ)
def get_incident(p: P, incident_id: int) -> Incident:
    return p.incidents.get(incident_id)


@route(router, "GET", "/incidents/{incident_id}/timeline", Scope.READ)
def incident_timeline(p: P, incident_id: int) -> list[Event]:
    """The incident's events and its deployment's (changes, rollouts, alerts) around it, oldest first."""
    return p.incidents.timeline(incident_id)


@route(router, "POST", "/incidents/{incident_id}/ack", Scope.WRITE)
def ack_incident(p: P, who: Actor, incident_id: int) -> Incident:
    """Acknowledge: someone is on it."""
    return p.incidents.ack(incident_id, who)


@route(router, "POST", "/incidents/{incident_id}/resolve", Scope.WRITE)
def resolve_incident(p: P, who: Actor, incident_id: int, body: ResolveRequest | None = None) -> Incident:
    return p.incidents.resolve(incident_id, who, body.reason if body else "")
