"""Builds the RCA :class:`~mlpilot.incidents.evidence.Case` of an incident from the platform: the symptom from its
alerts' SLOs, the request rows (with labels joined) from the request log, and the changes from the event log —
deployment revisions (what serves = a release, traffic, runtime options = config), rollouts, releases and alias
moves of prompts, indexes, tools and models.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from mlpilot.errors import NotFound
from mlpilot.incidents.evidence import Case, Change, Symptom
from mlpilot.monitors.alerts import slo_of
from mlpilot.monitors.feedback import FeedbackService
from mlpilot.records import Alert, Event, Incident
from mlpilot.store import Store

__all__ = ["LOOKBACK", "changes_of", "frame_of", "gather", "symptom_of"]

#: how much history before the onset RCA reads (the baseline)
LOOKBACK = timedelta(minutes=90)
_INDICATOR_SYMPTOM = {
    "availability": "errors",
    "latency": "latency",
    "accuracy": "accuracy",
    "estimated_accuracy": "accuracy",
    "drift": "drift",
}
_LLM_SIGNALS = (
    "groundedness",
    "top_score",
    "refusal",
    "tool_errors",
    "prompt",
    "index",
    "backend",
    "llm_model",
    "cost",
    "ttft_s",
)
_LLM_STAGES = {"retrieve_s": "retrieve", "generate_s": "generate", "tool_s": "tool", "render_s": "render"}


def symptom_of(store: Store, incident: Incident) -> Symptom:
    """The incident's main symptom: its most severe alert that is not about drift (drift only when nothing else
    fired), its onset a few minutes before that alert fired (the change-point collector refines it)."""
    alerts: list[tuple[Alert, str, timedelta]] = []
    for alert_id in incident.alerts:
        try:
            a = store.get_alert(alert_id)
        except NotFound:
            continue
        lag = timedelta(minutes=5)
        try:
            slo = store.get_slo(a.deployment, a.slo)
            lag = min(r.short for r in slo_of(slo).rules)  # the symptom is about as old as the shortest window
            indicator = slo.spec.indicator.value
            kind = _INDICATOR_SYMPTOM.get(indicator, "errors")
            if indicator == "monitor" and slo.spec.monitor:
                mon = store.get_monitor(a.deployment, slo.spec.monitor)
                kind = "quality" if mon.spec.kind == "llm" else "drift" if mon.spec.kind == "drift" else "errors"
        except NotFound:
            kind = "errors"
        alerts.append((a, kind, lag))
    if not alerts:
        return Symptom("errors", incident.opened_at - timedelta(minutes=5), incident.title, incident.severity)
    alerts.sort(key=lambda x: (x[1] == "drift", x[0].severity != "page", x[0].fired_at))
    a, kind, lag = alerts[0]
    return Symptom(kind, a.fired_at - lag, f"{a.deployment}/{a.slo}", a.severity)


def frame_of(feedback: FeedbackService, deployment: str, since: datetime, until: datetime) -> pd.DataFrame:
    """Logged rows (shadows excluded) with labels joined, in RCA's columns (see ``Case``)."""
    raw = feedback.joined(deployment, since=since, until=until)
    if raw.empty:
        return pd.DataFrame({"ts": pd.Series([], dtype="datetime64[ns, UTC]")})
    f = pd.DataFrame({"ts": pd.to_datetime(raw["ts"], utc=True)})
    f["variant"] = raw["variant"].astype(str).to_numpy()
    status = raw["status"].astype(str)
    f["status"] = np.where(status == "ok", "ok", np.where(status == "quarantined", "quarantined", "error"))
    f["error"] = raw["error"].fillna("").astype(str).to_numpy() if "error" in raw else ""
    f["latency_s"] = raw["latency_s"].astype(float).to_numpy()
    if "decode_s" in raw:
        f["stage.decode_s"] = raw["decode_s"].astype(float).to_numpy()
    llm = "out.groundedness" in raw
    for c in raw.columns:
        c = str(c)
        if c.startswith("in.") and not llm:
            f[c] = raw[c].to_numpy()
        elif llm and c.startswith("out.") and c[4:] in _LLM_SIGNALS:
            f[f"llm.{c[4:]}"] = raw[c].to_numpy()
        elif llm and c.startswith("out.") and c[4:] in _LLM_STAGES:
            f[f"stage.{_LLM_STAGES[c[4:]]}_s"] = raw[c].astype(float).to_numpy()
    if llm and "out.topic" in raw:
        f["in.topic"] = raw["out.topic"].to_numpy()
    if not llm:
        f["stage.predict_s"] = f["latency_s"]  # the data plane's latency_s of a model is the model call itself
        outs = [str(c) for c in raw.columns if str(c).startswith("out.")]
        label_like = [c for c in outs if "proba" not in c and "[" not in c] or [c for c in outs if "proba" not in c]
        if label_like:
            f["pred"] = raw[label_like[0]].to_numpy()
        proba = sorted(c for c in outs if "proba" in c)
        if len(proba) == 2:
            f["score"] = raw[proba[1]].astype(float).to_numpy()
        if "label" in raw:
            labels = raw["label"].where(raw.get("has_label", raw["label"].notna()), None)
            f["label"] = _same_type(labels, f.get("pred"))
    return f.sort_values("ts", kind="stable").reset_index(drop=True)


def _same_type(labels: pd.Series, pred: Any) -> np.ndarray:
    """Labels come back from JSON; make ``2`` and ``2.0`` and ``"2"`` compare like the logged predictions."""
    out = labels.to_numpy(dtype=object)
    if pred is None or len(out) == 0:
        return out
    sample = next((p for p in np.asarray(pred) if p is not None), None)
    if isinstance(sample, (int, float, np.integer, np.floating)):
        conv = pd.to_numeric(labels, errors="coerce")
        return np.asarray([None if v != v else float(v) for v in conv], dtype=object)
    return np.asarray([None if pd.isna(v) else str(v) for v in labels], dtype=object)


def _spec_kind(before: dict[str, Any] | None, after: dict[str, Any]) -> tuple[str, str]:
    """What a deployment revision changed: ``release`` (what serves), ``traffic`` or ``config``."""
    if before is None:
        return "release", "deployment created"
    models_b = {v["name"]: v.get("model") for v in before.get("variants", [])}
    models_a = {v["name"]: v.get("model") for v in after.get("variants", [])}
    if models_b != models_a:
        changed = sorted(k for k in set(models_a) | set(models_b) if models_a.get(k) != models_b.get(k))
        what = [f"{k} removed" if k not in models_a else f"{k} serves {models_a[k]}" for k in changed]
        return "release", "variants changed: " + ", ".join(what)
    if before.get("traffic") != after.get("traffic"):
        return "traffic", f"traffic {before.get('traffic')} → {after.get('traffic')}"
    return "config", "runtime options or rules changed"


def changes_of(store: Store, deployment: str, since: datetime, until: datetime) -> list[Change]:
    """Every recorded change that may matter to ``deployment`` in the window, oldest first."""
    out: list[Change] = []
    for e in store.list_events(subject=f"deployment:{deployment}", limit=10_000):
        if not since <= e.ts <= until:
            continue
        if e.action in ("deployment.created", "deployment.updated") and e.after:
            kind, what = _spec_kind(e.before, e.after)
            comp = {"release": "release", "traffic": "variant", "config": "config"}[kind]
            target = deployment
            if kind == "traffic":
                gained = {
                    k: v - int((e.before or {}).get("traffic", {}).get(k, 0)) for k, v in e.after["traffic"].items()
                }
                target = max(gained, key=lambda k: gained[k]) if gained else deployment
            out.append(
                Change(
                    e.ts,
                    kind,
                    f"{comp}:{target}",
                    f"{deployment} revision {e.after.get('revision')}: {what}",
                    f"event:{e.id}",
                    {"revision": e.after.get("revision"), "revision_before": (e.after.get("revision") or 1) - 1},
                )
            )
        elif e.action.startswith("release.") and e.after:
            out.append(
                Change(
                    e.ts,
                    "release",
                    f"release:{deployment}",
                    f"{e.action} {e.after.get('release', '')}",
                    f"event:{e.id}",
                    dict(e.after),
                )
            )
    for r in store.list_rollouts(deployment, limit=100):
        if since <= r.started_at <= until:
            out.append(
                Change(
                    r.started_at,
                    "rollout",
                    f"variant:{r.candidate}",
                    f"rollout {r.id} started: candidate {r.candidate}",
                    f"rollout:{r.id}",
                    {"rollout": r.id},
                )
            )
    out += _alias_moves(store, since, until)
    return sorted(out, key=lambda c: c.ts)


def _alias_moves(store: Store, since: datetime, until: datetime) -> list[Change]:
    out = []
    kinds: dict[str, str] = {}
    for e in store.list_events(subject="artifact:*", action="alias.moved", limit=10_000):
        if not since <= e.ts <= until:
            continue
        ref = e.subject.split(":", 1)[1]
        name = ref.split("@", 1)[0]
        if name not in kinds:
            try:
                kinds[name] = store.get_artifact(name).kind.value
            except NotFound:
                continue
        kind = {"prompt": "prompt", "index": "index", "tool": "tool"}.get(kinds[name], "model")
        before = (e.before or {}).get("version")
        after = (e.after or {}).get("version")
        out.append(
            Change(
                e.ts,
                "alias",
                f"{kind}:{ref}",
                f"{kind} alias {ref} moved {before} → {after}",
                f"event:{e.id}",
                {"version_before": before, "version_after": after},
            )
        )
    return out


def gather(
    store: Store,
    feedback: FeedbackService,
    incident: Incident,
    now: datetime,
    *,
    lookback: timedelta = LOOKBACK,
    resources: pd.DataFrame | None = None,
) -> Case:
    symptom = symptom_of(store, incident)
    since = symptom.onset - lookback
    frame = frame_of(feedback, incident.deployment, since, now)
    dep = store.get_deployment(incident.deployment)
    rollouts = [r.candidate for r in store.list_rollouts(incident.deployment, limit=10) if r.active]
    spec = dep.spec
    stable = max(spec.traffic, key=lambda k: spec.traffic[k]) if spec.traffic else spec.variants[0].name
    return Case(
        incident.deployment,
        symptom,
        now,
        frame,
        changes=changes_of(store, incident.deployment, since, now),
        resources=resources,
        stable_variant=stable,
        rollout_variants=rollouts,
        serving_variants=[v.name for v in spec.variants],
        # decode waits grow with load; the model call (ML: ``latency_s``) is what a release changes
        stage_components={"decode": f"traffic:{incident.deployment}", "predict": f"release:{incident.deployment}"},
    )


def events_since(events: Sequence[Event], since: datetime) -> list[Event]:
    return [e for e in events if e.ts >= since]
