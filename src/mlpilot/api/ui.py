"""The dashboard: its static single-page app at ``/ui`` (files shipped in ``mlpilot/ui/``, no CDN, no build step)
and the few aggregate endpoints it needs beyond the control API (``/api/v1/ui/...``): an overview of every
deployment's health and live traffic, and a deployment's traffic series from the request log."""

from __future__ import annotations

from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse, RedirectResponse

from mlpilot.api.scopes import Scope, platform, route
from mlpilot.app import Platform
from mlpilot.errors import NotFound
from mlpilot.records import IncidentStatus
from mlpilot.telemetry.stats import traffic_series, traffic_summary

router = APIRouter(tags=["dashboard"])
P = Annotated[Platform, Depends(platform)]

#: a deployment is critical above this error rate over the window, or with an open page incident
CRITICAL_ERROR_RATE = 0.05


def static_root() -> Path:
    """The dashboard's files (``index.html``, ``app.js``, ``style.css``, ``pages/``)."""
    return Path(str(resources.files("mlpilot") / "ui"))


_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".svg": "image/svg+xml"}


@route(router, "GET", "/ui", Scope.PUBLIC, include_in_schema=False)
def ui_root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


@route(router, "GET", "/ui/", Scope.PUBLIC, include_in_schema=False, response_class=FileResponse)
def ui_index() -> FileResponse:
    """The single page; its data comes from the API, which checks the caller's scopes."""
    return FileResponse(static_root() / "index.html", media_type="text/html", headers={"cache-control": "no-cache"})


@route(router, "GET", "/ui/{path:path}", Scope.PUBLIC, include_in_schema=False, response_class=FileResponse)
def ui_file(path: str) -> FileResponse:
    root = static_root().resolve()
    target = (root / path).resolve()
    if root not in target.parents or not target.is_file() or target.suffix not in _TYPES:
        raise NotFound(f"no dashboard file {path!r}")
    return FileResponse(target, media_type=_TYPES[target.suffix], headers={"cache-control": "no-cache"})


def _health(stats: dict[str, Any], alerts: list[Any], incidents: list[Any]) -> str:
    if any(i.severity == "page" for i in incidents) or (stats["error_rate"] or 0.0) > CRITICAL_ERROR_RATE:
        return "critical"
    if alerts or incidents:
        return "warning"
    return "ok"


@route(router, "GET", "/api/v1/ui/overview", Scope.READ)
def overview(p: P, window_s: float = Query(300.0, gt=0, le=86_400, description="seconds of traffic")) -> dict[str, Any]:
    """Every deployment with its split, live traffic over the last ``window_s`` (requests/s, error rate, latency
    percentiles), rollout, firing alerts and open incidents, and a health verdict; plus the firing alerts, the
    unresolved incidents and the latest events of the platform."""
    now = p.clock.now()
    since = now - timedelta(seconds=window_s)
    root = p.settings.log_root()
    alerts = p.store.list_alerts(None, "firing", 1000)
    incidents = [i for i in p.store.list_incidents(None, None, 500) if i.status is not IncidentStatus.RESOLVED]
    out = []
    for d in p.store.list_deployments():
        stats = traffic_summary(root, d.name, since, now)
        mine_a = [a for a in alerts if a.deployment == d.name]
        mine_i = [i for i in incidents if i.deployment == d.name]
        rollout = p.store.active_rollout(d.name)
        out.append(
            {
                "name": d.name,
                "revision": d.revision,
                "traffic": dict(d.spec.traffic),
                "shadows": list(d.spec.shadows),
                "variants": [{"name": v.name, "model": v.model} for v in d.spec.variants],
                "quarantine": len(d.spec.quarantine),
                "stats": stats["overall"],
                "by_variant": stats["variants"],
                "rollout": rollout.model_dump(mode="json") if rollout else None,
                "alerts": len(mine_a),
                "incidents": len(mine_i),
                "health": _health(stats["overall"], mine_a, mine_i),
            }
        )
    return {
        "now": now.isoformat(),
        "window_s": window_s,
        "deployments": out,
        "alerts": [a.model_dump(mode="json") for a in alerts],
        "incidents": [i.model_dump(mode="json") for i in incidents],
        "events": [e.model_dump(mode="json") for e in reversed(p.store.list_events(limit=20))],
    }


@route(router, "GET", "/api/v1/ui/deployments/{name}/series", Scope.READ)
def series(
    p: P,
    name: str,
    window_s: float = Query(3600.0, gt=0, le=30 * 86_400, description="seconds back from now"),
    buckets: int = Query(60, ge=1, le=1000, description="how many time buckets"),
) -> dict[str, Any]:
    """Requests, errors, quarantined requests and latency percentiles per time bucket and variant, and the window's
    totals — aggregated in the request log's query engine, whatever the number of records."""
    p.store.get_deployment(name)
    now = p.clock.now()
    since = now - timedelta(seconds=window_s)
    bucket_s = max(window_s / buckets, 1.0)
    frame = traffic_series(p.settings.log_root(), name, since, now, bucket_s)
    rows = [
        {**{k: (None if v != v else v) for k, v in r.items() if k != "start"}, "start": r["start"].isoformat()}
        for r in frame.to_dict("records")
    ]
    return {
        "deployment": name,
        "since": since.isoformat(),
        "until": now.isoformat(),
        "bucket_s": bucket_s,
        "series": rows,
        "summary": traffic_summary(p.settings.log_root(), name, since, now),
    }


@route(router, "GET", "/api/v1/ui/incidents/{incident_id}", Scope.READ)
def incident_page(p: P, incident_id: int) -> dict[str, Any]:
    """One incident with its timeline, its latest diagnosis (``null`` before the first, or with RCA off) and its
    remediations, in one answer."""
    inc = p.store.get_incident(incident_id)
    healer = p.incidents.healer
    return {
        "incident": inc.model_dump(mode="json"),
        "timeline": [e.model_dump(mode="json") for e in p.incidents.timeline(incident_id)],
        "diagnosis": healer.diagnosis(incident_id) if healer is not None else None,
        "remediations": healer.remediations(incident_id) if healer is not None else [],
    }
