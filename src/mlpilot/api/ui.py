"""The dashboard: its static single-page app at ``/ui`` (files shipped in ``mlpilot/ui/``, no CDN, no build step)
and the few aggregate endpoints it needs beyond the control API (``/api/v1/ui/...``): an overview of every
deployment's health and live traffic, and a deployment's traffic series from the request log."""

from __future__ import annotations

import itertools
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse, RedirectResponse

from mlpilot.api.params import Id
from mlpilot.api.scopes import Scope, platform, route
from mlpilot.app import Platform
from mlpilot.errors import FailedPrecondition, InvalidArgument, NotFound
from mlpilot.records import IncidentStatus
from mlpilot.telemetry.stats import llm_series, traffic, traffic_summary

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
    root = p.logs
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
    frame, summary = traffic(p.logs, name, since, now, bucket_s)
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
        "summary": summary,
    }


@route(router, "GET", "/api/v1/ui/incidents/{incident_id}", Scope.READ)
def incident_page(p: P, incident_id: Id) -> dict[str, Any]:
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


@route(router, "GET", "/api/v1/ui/deployments/{name}/llm", Scope.READ)
def llm_metrics(
    p: P,
    name: str,
    window_s: float = Query(3600.0, gt=0, le=30 * 86_400, description="seconds back from now"),
    buckets: int = Query(60, ge=1, le=1000, description="how many time buckets"),
) -> dict[str, Any]:
    """An LLM app's tokens, cost, time to first token and groundedness per time bucket and variant (answered
    requests); ``available: false`` for a deployment whose records carry no LLM metrics."""
    p.store.get_deployment(name)
    now = p.clock.now()
    since = now - timedelta(seconds=window_s)
    bucket_s = max(window_s / buckets, 1.0)
    frame = llm_series(p.logs, name, since, now, bucket_s)
    if frame is None:
        return {"deployment": name, "available": False, "series": []}
    rows = [
        {**{k: (None if v != v else v) for k, v in r.items() if k != "start"}, "start": r["start"].isoformat()}
        for r in frame.to_dict("records")
    ]
    return {"deployment": name, "available": True, "since": since.isoformat(), "until": now.isoformat(),
            "bucket_s": bucket_s, "series": rows}  # fmt: skip


def _histograms(reference: Any, current: Any, bins: int, top: int = 12) -> list[dict[str, Any]]:
    """Per feature, the reference's and the window's distributions on shared bins (numeric: edges at the
    reference's quantiles, the outer bins open; categorical: the most frequent categories, the rest as 'other')."""
    import numpy as np
    import pandas as pd

    out = []
    for col in reference.columns:
        ref, cur = reference[col].dropna(), current[col].dropna() if col in current else pd.Series(dtype=float)
        if len(ref) == 0:
            continue
        numeric = pd.api.types.is_numeric_dtype(ref.dtype) and not pd.api.types.is_bool_dtype(ref.dtype)
        if numeric and ref.nunique() > top:
            r, c = ref.to_numpy(dtype=float), pd.to_numeric(cur, errors="coerce").dropna().to_numpy(dtype=float)
            edges = np.unique(np.quantile(r, np.linspace(0, 1, bins + 1)))
            inner = edges[1:-1]
            rc = np.bincount(np.searchsorted(inner, r, side="right"), minlength=len(inner) + 1)
            cc = np.bincount(np.searchsorted(inner, c, side="right"), minlength=len(inner) + 1)
            if len(inner):
                labels = [f"< {inner[0]:.4g}"] + [f"{a:.4g} to {b:.4g}" for a, b in itertools.pairwise(inner)]
                labels.append(f">= {inner[-1]:.4g}")
            else:
                labels = [f"{edges[0]:.4g}"]
            kind = "numeric"
        else:
            rs, cs = ref.astype(str), cur.astype(str)
            keys = list(pd.concat([rs, cs]).value_counts().index[:top])
            rc = np.array([int((rs == k).sum()) for k in keys] + [int((~rs.isin(keys)).sum())])
            cc = np.array([int((cs == k).sum()) for k in keys] + [int((~cs.isin(keys)).sum())])
            labels = [*keys, "other"]
            if rc[-1] == 0 and cc[-1] == 0:
                rc, cc, labels = rc[:-1], cc[:-1], labels[:-1]
            kind = "categorical"
        out.append(
            {
                "feature": str(col),
                "kind": kind,
                "bins": labels,
                "reference": (rc / max(rc.sum(), 1)).round(6).tolist(),
                "current": (cc / max(cc.sum(), 1)).round(6).tolist(),
                "rows": [int(rc.sum()), int(cc.sum())],
            }
        )
    return out


@route(router, "GET", "/api/v1/ui/deployments/{name}/distributions", Scope.READ)
def distributions(
    p: P,
    name: str,
    window_s: float = Query(3600.0, gt=0, le=30 * 86_400, description="seconds of traffic back from now"),
    bins: int = Query(12, ge=2, le=50),
    rows: int = Query(20_000, ge=100, le=1_000_000, description="at most this many of the newest records"),
) -> dict[str, Any]:
    """Reference vs current distribution of every input of the deployment's main variant over the window (its newest
    ``rows`` records);
    ``available: false`` with the reason when there is nothing to compare (no reference bound, no traffic)."""
    p.store.get_deployment(name)
    now = p.clock.now()
    try:
        variant, ref_name, reference, current = p.drift.frames(
            name, since=now - timedelta(seconds=window_s), until=now, limit=rows
        )
    except (FailedPrecondition, InvalidArgument) as e:
        return {"deployment": name, "available": False, "reason": e.message, "features": []}
    return {
        "deployment": name,
        "available": True,
        "variant": variant,
        "reference": ref_name,
        "rows": len(current),
        "features": _histograms(reference, current, bins),
    }
