"""Incidents: alerts grouped by deployment and time, with a lifecycle and a timeline."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from mlpilot.api.params import Id
from mlpilot.api.scopes import Scope, actor, platform, route
from mlpilot.app import Platform
from mlpilot.errors import FailedPrecondition
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
def get_incident(p: P, incident_id: Id) -> Incident:
    return p.incidents.get(incident_id)


@route(router, "GET", "/incidents/{incident_id}/timeline", Scope.READ)
def incident_timeline(p: P, incident_id: Id) -> list[Event]:
    """The incident's events and its deployment's (changes, rollouts, alerts) around it, oldest first."""
    return p.incidents.timeline(incident_id)


@route(router, "POST", "/incidents/{incident_id}/ack", Scope.WRITE)
def ack_incident(p: P, who: Actor, incident_id: Id) -> Incident:
    """Acknowledge: someone is on it."""
    return p.incidents.ack(incident_id, who)


@route(router, "POST", "/incidents/{incident_id}/resolve", Scope.WRITE)
def resolve_incident(p: P, who: Actor, incident_id: Id, body: ResolveRequest | None = None) -> Incident:
    return p.incidents.resolve(incident_id, who, body.reason if body else "")


class RejectRequest(BaseModel):
    reason: str = Field("", max_length=2000)


class HealingPolicyBody(BaseModel):
    """Fields of a deployment's healing policy; omitted fields keep the platform defaults."""

    model_config = {"extra": "forbid"}
    mode: str | None = Field(None, description="observe | suggest | auto")
    min_confidence: float | None = Field(None, ge=0, le=1)
    max_actions_per_hour: int | None = Field(None, ge=0, le=1000)
    cooldown_s: float | None = Field(None, ge=0, le=86_400)
    max_blast_radius: float | None = Field(None, ge=0, le=1)
    allowed: list[str] | None = None
    approval: list[str] | None = None
    verify_after_s: float | None = Field(None, ge=1, le=86_400)


def _healer(p: Platform) -> Any:
    if p.incidents.healer is None:
        raise FailedPrecondition("RCA and healing are off (MLPILOT_INCIDENTS__RCA=false)")
    return p.incidents.healer


@route(router, "GET", "/incidents/{incident_id}/diagnosis", Scope.READ)
def incident_diagnosis(p: P, incident_id: Id) -> dict[str, Any]:
    """The latest diagnosis: verdict, ranked hypotheses (each with its evidence refs and suggested remediation) and
    the evidence. 404 before the first diagnosis."""
    p.incidents.get(incident_id)
    d = _healer(p).diagnosis(incident_id)
    if d is None:
        from mlpilot.errors import NotFound

        raise NotFound(f"incident {incident_id} has not been diagnosed yet (POST .../diagnose)")
    return d


@route(router, "POST", "/incidents/{incident_id}/diagnose", Scope.WRITE)
def diagnose_incident(p: P, incident_id: Id) -> dict[str, Any]:
    """Diagnose now (the engine also runs by itself when an incident opens or a symptom joins it)."""
    _healer(p)
    return p.incidents.diagnose(incident_id)


@route(router, "GET", "/incidents/{incident_id}/remediations", Scope.READ)
def incident_remediations(p: P, incident_id: Id) -> list[dict[str, Any]]:
    """Suggested and executed remediations with their decision records, verification and state."""
    p.incidents.get(incident_id)
    return list(_healer(p).remediations(incident_id))


@route(router, "POST", "/incidents/{incident_id}/approve", Scope.DEPLOY)
def approve_remediation(p: P, who: Actor, incident_id: Id) -> dict[str, Any]:
    """Run the incident's suggested remediation now (it is then verified like an automatic one)."""
    return dict(_healer(p).approve(incident_id, who))


@route(router, "POST", "/incidents/{incident_id}/reject", Scope.DEPLOY)
def reject_remediation(p: P, who: Actor, incident_id: Id, body: RejectRequest | None = None) -> dict[str, Any]:
    return dict(_healer(p).reject(incident_id, who, body.reason if body else ""))


@route(router, "GET", "/deployments/{name}/healing", Scope.READ)
def get_healing_policy(p: P, name: str) -> dict[str, Any]:
    """The deployment's healing policy (its own, or the platform defaults)."""
    p.store.get_deployment(name)
    return dict(_healer(p).policy(name).to_dict())


@route(router, "PUT", "/deployments/{name}/healing", Scope.DEPLOY)
def set_healing_policy(p: P, who: Actor, name: str, body: HealingPolicyBody) -> dict[str, Any]:
    """Set the deployment's healing policy (fields not given take the platform defaults)."""
    fields = body.model_dump(exclude_none=True)
    return dict(_healer(p).set_policy(name, fields, who).to_dict())


@route(router, "DELETE", "/deployments/{name}/healing", Scope.DEPLOY)
def reset_healing_policy(p: P, who: Actor, name: str) -> dict[str, Any]:
    return dict(_healer(p).set_policy(name, None, who).to_dict())
