"""Monitors (scheduled checks and their time series), SLOs and alerts."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from mlpilot.api.params import Id
from mlpilot.api.scopes import Scope, actor, platform, route
from mlpilot.app import Platform
from mlpilot.records import Alert, Monitor, MonitorResult, MonitorSpec, SLODefinition, SLOSpec

log = logging.getLogger("mlpilot.api")

router = APIRouter(prefix="/api/v1", tags=["monitors"])
P = Annotated[Platform, Depends(platform)]
Actor = Annotated[str, Depends(actor)]


@route(router, "GET", "/monitors", Scope.READ)
def list_all_monitors(p: P) -> list[Monitor]:
    """Every monitor of every deployment."""
    return p.monitors.list_monitors()


@route(router, "GET", "/deployments/{name}/monitors", Scope.READ)
def list_monitors(p: P, name: str) -> list[Monitor]:
    return p.monitors.list_monitors(name)


@route(router, "PUT", "/deployments/{name}/monitors/{monitor}", Scope.WRITE)
def put_monitor(p: P, who: Actor, name: str, monitor: str, spec: MonitorSpec, replace: bool = False) -> Monitor:
    """Create a monitor (``replace=true`` updates an existing one). It first runs at the next scheduler tick."""
    return p.monitors.create(name, monitor, spec, who, replace=replace)


@route(router, "GET", "/deployments/{name}/monitors/{monitor}", Scope.READ)
def get_monitor(p: P, name: str, monitor: str) -> Monitor:
    return p.monitors.get(name, monitor)


@route(router, "DELETE", "/deployments/{name}/monitors/{monitor}", Scope.WRITE, status_code=204)
def delete_monitor(p: P, who: Actor, name: str, monitor: str) -> None:
    p.monitors.delete(name, monitor, who)


@route(router, "GET", "/deployments/{name}/monitors/{monitor}/results", Scope.READ)
def monitor_results(
    p: P,
    name: str,
    monitor: str,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = Query(1000, ge=1, le=100_000),
) -> list[MonitorResult]:
    """The monitor's time series (oldest first; the newest ``limit`` points of the window)."""
    return p.monitors.results(name, monitor, since, until, limit)


@route(router, "POST", "/deployments/{name}/monitors/{monitor}/run", Scope.WRITE)
def run_monitor(p: P, name: str, monitor: str) -> MonitorResult:
    """Run the monitor now and record the result (its schedule is unchanged)."""
    return p.monitors.run(name, monitor)


@route(router, "POST", "/monitors/tick", Scope.ADMIN)
def tick(p: P) -> dict[str, Any]:
    """Run every due monitor and evaluate every SLO now (what the scheduler does on its own every tick)."""
    report = p.monitors.tick()
    return {
        "now": report.now.isoformat(),
        "results": [r.model_dump(mode="json", exclude={"detail"}) for r in report.results],
        "alerts": [{"action": c.action, "alert": c.alert.model_dump(mode="json")} for c in report.alerts],
    }


# ---------------------------------------------------------------------------------------------- SLOs


@route(router, "GET", "/deployments/{name}/slos", Scope.READ)
def list_slos(p: P, name: str) -> list[dict[str, Any]]:
    """Every SLO of the deployment with its current burn rates, budget left and alert."""
    p.store.get_deployment(name)
    return [s.to_dict() for s in p.alerts.list_status(name)]


@route(router, "PUT", "/deployments/{name}/slos/{slo}", Scope.WRITE)
def put_slo(p: P, who: Actor, name: str, slo: str, spec: SLOSpec, replace: bool = False) -> SLODefinition:
    return p.alerts.create(name, slo, spec, who, replace=replace)


@route(router, "GET", "/deployments/{name}/slos/{slo}", Scope.READ)
def get_slo(p: P, name: str, slo: str) -> dict[str, Any]:
    return p.alerts.status(name, slo).to_dict()


@route(router, "DELETE", "/deployments/{name}/slos/{slo}", Scope.WRITE, status_code=204)
def delete_slo(p: P, who: Actor, name: str, slo: str) -> None:
    p.store.delete_slo(name, slo, who)


@route(router, "POST", "/deployments/{name}/slos/{slo}/check", Scope.WRITE)
def check_slo(p: P, name: str, slo: str) -> dict[str, Any]:
    """Evaluate the SLO now and open, escalate or resolve its alert (a fired or escalated alert is placed into an
    incident, as on the scheduler's tick)."""
    changes = p.alerts.check(p.store.get_slo(name, slo), p.clock.now())
    try:
        p.incidents.on_alerts(changes)
    except Exception:  # the alert stands (stored and notified); a broken incident store must not fail the check
        log.exception("placing alerts into incidents")
    return {
        "status": p.alerts.status(name, slo).to_dict(),
        "changes": [{"action": c.action, "alert": c.alert.model_dump(mode="json")} for c in changes],
    }


# ---------------------------------------------------------------------------------------------- alerts


@route(router, "GET", "/alerts", Scope.READ)
def list_alerts(
    p: P,
    deployment: str | None = None,
    status: str | None = Query(None, description="firing or resolved"),
    limit: int = Query(100, ge=1, le=10_000),
) -> list[Alert]:
    """Alerts, newest first."""
    return p.alerts.list_alerts(deployment, status, limit)


@route(router, "GET", "/alerts/{alert_id}", Scope.READ)
def get_alert(p: P, alert_id: Id) -> Alert:
    return p.store.get_alert(alert_id)
