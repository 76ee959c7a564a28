"""SLOs on any indicator, evaluated with multi-window multi-burn-rate rules, turned into deduplicated alerts.

Good/total events per time bucket come from the request log (availability, latency), from feedback joined to
predictions (accuracy) or from a monitor's results (drift, estimated accuracy, any monitor: a windows-based
indicator where each run's verdict holds until the next run). :func:`mlpilot.monitors.slo.evaluate` decides;
this service persists the alert state in the store (at most one firing alert per SLO, also across processes),
records every transition as an event and notifies webhooks.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd

from mlpilot.clock import Clock
from mlpilot.errors import Conflict, InvalidArgument, NotFound
from mlpilot.monitors.feedback import FeedbackService
from mlpilot.monitors.notify import WebhookNotifier
from mlpilot.monitors.slo import DEFAULT_RULES, SLO, BurnRateRule, Evaluation, EventCounts, evaluate
from mlpilot.records import Alert, Indicator, MonitorStatus, SLODefinition, SLOSpec, check_name
from mlpilot.store import Store
from mlpilot.telemetry.segments import LogRoot, as_store
from mlpilot.telemetry.sli import request_buckets

log = logging.getLogger("mlpilot.alerts")

_SEVERITY = {"ticket": 1, "page": 2}


def slo_of(defn: SLODefinition) -> SLO:
    rules = (
        tuple(BurnRateRule(r.long, r.short, r.burn_rate, r.severity) for r in defn.spec.rules)
        if defn.spec.rules
        else DEFAULT_RULES
    )
    return SLO(f"{defn.deployment}/{defn.name}", defn.spec.objective, defn.spec.window, rules)


def bucket_seconds(slo: SLO) -> float:
    """Bucket width: a fifth of the shortest rule window, between 1 s and 60 s."""
    shortest = min(r.short for r in slo.rules).total_seconds()
    return float(min(60.0, max(1.0, shortest / 5.0)))


def same_label(pred: pd.Series, label: pd.Series) -> pd.Series:
    """Whether predictions equal labels: numerically when both are numbers (a label column with gaps comes back
    from the join as floats, ``2.0`` must equal the prediction ``2``), as text otherwise."""
    p, lab = pd.to_numeric(pred, errors="coerce"), pd.to_numeric(label, errors="coerce")
    numeric = p.notna() & lab.notna()
    as_text = pred.astype(str) == label.astype(str)
    return pd.Series(np.where(numeric, p == lab, as_text), index=pred.index)


def monitor_slices(
    results: Sequence[tuple[datetime, str]], every: timedelta, start: datetime, now: datetime, bucket_s: float
) -> pd.DataFrame:
    """Windows-based events from a monitor's runs: each run's verdict holds from its time until the next run (at
    most ``every`` later, and never past ``now``); ``ok`` seconds are good, ``alert`` seconds bad, runs without a
    verdict (``no_data``, ``error``) count as nothing. Returns ``start``/``good``/``total`` per bucket."""
    starts: dict[float, list[float]] = {}
    verdicts = [(ts, st) for ts, st in results if st in (MonitorStatus.OK.value, MonitorStatus.ALERT.value)]
    for i, (ts, status) in enumerate(verdicts):
        end = min(ts + every, now, verdicts[i + 1][0] if i + 1 < len(verdicts) else now)
        a, b = max(ts, start).timestamp(), end.timestamp()
        while a < b:
            bucket = math.floor(a / bucket_s) * bucket_s
            step = min(b, bucket + bucket_s) - a
            cell = starts.setdefault(bucket, [0.0, 0.0])
            cell[1] += step
            if status == MonitorStatus.OK.value:
                cell[0] += step
            a += step
    keys = sorted(starts)
    return pd.DataFrame(
        {
            "start": pd.to_datetime([datetime.fromtimestamp(k, timezone.utc) for k in keys], utc=True),
            "good": [starts[k][0] for k in keys],
            "total": [starts[k][1] for k in keys],
        }
    )


@dataclass(frozen=True)
class SLOStatus:
    """An SLO's state at ``now``: burn rates of every rule, the budget left over its window, its alert."""

    slo: SLODefinition
    evaluation: Evaluation
    good: float
    total: float
    budget_remaining: float | None
    alert: Alert | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "deployment": self.slo.deployment,
            "name": self.slo.name,
            "spec": self.slo.spec.model_dump(mode="json"),
            "now": self.evaluation.now.isoformat(),
            "good": self.good,
            "total": self.total,
            "sli": (self.good / self.total) if self.total else None,
            "budget_remaining": self.budget_remaining,
            "severity": self.evaluation.severity,
            "rules": [
                {
                    "rule": r.rule.name,
                    "severity": r.rule.severity,
                    "burn_rate": r.rule.burn_rate,
                    "long_burn": r.long_burn,
                    "short_burn": r.short_burn,
                    "firing": r.firing,
                }
                for r in self.evaluation.rates
            ],
            "alert": self.alert.model_dump(mode="json") if self.alert else None,
        }


@dataclass(frozen=True)
class AlertChange:
    action: str  # fired | escalated | resolved
    alert: Alert


class AlertService:
    def __init__(
        self,
        store: Store,
        feedback: FeedbackService,
        log_root: LogRoot,
        clock: Clock,
        notifier: WebhookNotifier | None = None,
        webhooks: Sequence[str] = (),
        settle_s: float = 120.0,
    ) -> None:
        self.store = store
        self.feedback = feedback
        self.log_root = as_store(log_root)
        self.clock = clock
        self.notifier = notifier
        self.webhooks = list(webhooks)
        #: request-count buckets known to be final, per SLO: (frame, the time up to which they are final)
        self._settled: dict[str, tuple[pd.DataFrame, datetime]] = {}
        self.settle_s = settle_s

    # ------------------------------------------------------------------------------------------ SLOs

    def create(self, deployment: str, name: str, spec: SLOSpec, actor: str, *, replace: bool = False) -> SLODefinition:
        """Create (or replace) an SLO.

        Raises:
            NotFound: no such deployment or monitor. InvalidArgument: a bad spec. Conflict: it exists.
        """
        check_name(name, "SLO name")
        dep = self.store.get_deployment(deployment)
        if spec.variant is not None and spec.variant not in {v.name for v in dep.spec.variants}:
            raise InvalidArgument(f"deployment {deployment!r} has no variant {spec.variant!r}")
        if spec.monitor:
            mon = self.store.get_monitor(deployment, spec.monitor)
            wanted = {Indicator.DRIFT: "drift", Indicator.ESTIMATED_ACCURACY: "estimated_performance"}
            kind = wanted.get(spec.indicator)
            if kind is not None and mon.spec.kind.value != kind:
                raise InvalidArgument(
                    f"a {spec.indicator.value} SLO counts a {kind} monitor; {spec.monitor!r} is a {mon.spec.kind.value}"
                )
        slo_of(
            SLODefinition(name=name, deployment=deployment, spec=spec, created_at=self.clock.now(), created_by=actor)
        )
        return self.store.put_slo(deployment, name, spec, actor, replace=replace)

    def ensure_defaults(self, deployment: str, actor: str = "mlpilot") -> list[str]:
        """A new deployment's default SLO: 99.9% of requests succeed over 30 days (the SRE default rules)."""
        if self.store.list_slos(deployment):
            return []
        self.store.put_slo(
            deployment, "availability", SLOSpec(indicator=Indicator.AVAILABILITY, objective=0.999), actor
        )
        return ["availability"]

    # ------------------------------------------------------------------------------------------ evaluation

    def counts(self, defn: SLODefinition, now: datetime) -> tuple[EventCounts, SLO]:
        slo = slo_of(defn)
        horizon = max([slo.window, *(r.long for r in slo.rules)])
        bucket = bucket_seconds(slo)
        since = now - horizon - timedelta(seconds=bucket)
        spec = defn.spec
        if spec.indicator in (Indicator.AVAILABILITY, Indicator.LATENCY):
            frame = self._request_buckets(defn, since, now, bucket)
        elif spec.indicator is Indicator.ACCURACY:
            frame = self._accuracy_buckets(defn, since, now, bucket)
        else:
            assert spec.monitor is not None
            mon = self.store.get_monitor(defn.deployment, spec.monitor)
            results = self.store.list_monitor_results(
                defn.deployment, spec.monitor, since=since - mon.spec.every, until=now, limit=100_000, with_detail=False
            )
            frame = monitor_slices([(r.ts, r.status.value) for r in results], mon.spec.every, since, now, bucket)
        counts = EventCounts(timedelta(seconds=bucket))
        for start, good, total in zip(frame["start"], frame["good"], frame["total"], strict=True):
            counts.add(start.to_pydatetime(), float(good), float(total))
        return counts, slo

    def _request_buckets(self, defn: SLODefinition, since: datetime, now: datetime, bucket: float) -> pd.DataFrame:
        """Request counts per bucket. Buckets older than ``settle_s`` are final (records reach the log within a
        second or two), so they are kept between evaluations and only the recent part is read again."""
        spec = defn.spec
        key = json.dumps([defn.deployment, defn.name, spec.model_dump(mode="json")], sort_keys=True)
        cached = self._settled.get(key)

        def read(start: datetime) -> pd.DataFrame:
            return request_buckets(
                self.log_root,
                defn.deployment,
                since=start,
                until=now,
                bucket_s=bucket,
                indicator=spec.indicator.value,
                latency_ms=spec.threshold,
                variant=spec.variant,
            )

        if cached is not None and since <= cached[1] <= now:
            old, settled = cached
            frame = pd.concat([old[old["start"] >= pd.Timestamp(since)], read(settled)], ignore_index=True)
        else:
            frame = read(since)
        cut = math.floor((now.timestamp() - self.settle_s) / bucket) * bucket
        boundary = datetime.fromtimestamp(cut, timezone.utc)
        if boundary > since:
            self._settled[key] = (frame[frame["start"] < pd.Timestamp(boundary)].reset_index(drop=True), boundary)
        return frame

    def _accuracy_buckets(self, defn: SLODefinition, since: datetime, now: datetime, bucket: float) -> pd.DataFrame:
        joined = self.feedback.joined(defn.deployment, since=since, until=now, variant=defn.spec.variant)
        labelled = joined[joined["has_label"]] if len(joined) else joined
        if labelled.empty or "out.predict" not in labelled.columns:
            return pd.DataFrame({"start": pd.Series([], dtype="datetime64[us, UTC]"), "good": [], "total": []})
        pred, label = labelled["out.predict"], labelled["label"]
        if defn.spec.threshold is not None:  # regression: within the tolerance
            good = (pred.astype(float) - label.astype(float)).abs() <= defn.spec.threshold
        else:
            good = same_label(pred, label)
        ts = pd.to_datetime(labelled["ts"], utc=True)
        starts = ts.dt.floor(f"{int(bucket * 1000)}ms")
        frame = pd.DataFrame({"start": starts, "good": good.astype(float), "total": 1.0})
        return frame.groupby("start", as_index=False).sum().sort_values("start")

    def status(self, deployment: str, name: str, now: datetime | None = None) -> SLOStatus:
        return self._status(self.store.get_slo(deployment, name), now or self.clock.now())

    def _status(self, defn: SLODefinition, now: datetime) -> SLOStatus:
        counts, slo = self.counts(defn, now)
        ev = evaluate(slo, counts, now, min_events=defn.spec.min_events)
        share, total = counts.bad_share(now, slo.window)
        budget_left = (1.0 - share / slo.budget) if total else None
        return SLOStatus(
            defn, ev, total * (1 - share), total, budget_left, self.store.active_alert(defn.deployment, defn.name)
        )

    def list_status(self, deployment: str | None = None, now: datetime | None = None) -> list[SLOStatus]:
        now = now or self.clock.now()
        return [self._status(d, now) for d in self.store.list_slos(deployment)]

    def evaluate_all(self, now: datetime | None = None) -> list[AlertChange]:
        """Evaluate every SLO and apply the alert transitions (what the scheduler calls each tick)."""
        now = now or self.clock.now()
        changes: list[AlertChange] = []
        for defn in self.store.list_slos():
            try:
                changes.extend(self.check(defn, now))
            except Exception:  # one broken SLO must not silence the others
                log.exception("evaluating SLO %s/%s", defn.deployment, defn.name)
        return changes

    def check(self, defn: SLODefinition, now: datetime) -> list[AlertChange]:
        """Evaluate one SLO at ``now`` and open, escalate or resolve its alert (deduplicated)."""
        st = self._status(defn, now)
        sev = st.evaluation.severity
        active = st.alert
        detail = st.to_dict()
        detail.pop("alert", None)
        firing = [r for r in detail["rules"] if r["firing"]]
        if sev is not None and active is None:
            summary = _summary(defn, firing)
            try:
                alert = self.store.open_alert(defn.deployment, defn.name, sev, summary, detail, "mlpilot")
            except Conflict:  # another process opened it a moment ago
                return []
            return [self._notify(defn, AlertChange("fired", alert))]
        if active is None:
            return []
        if sev is not None and _SEVERITY[sev] > _SEVERITY.get(active.severity, 0):
            action, summary = "escalated", _summary(defn, firing)
        elif sev is None:
            action, summary = "resolved", f"{defn.deployment}/{defn.name}: burn rate back under every rule"
        else:
            return []
        try:
            alert = self.store.update_alert(active.id, severity=sev, summary=summary, detail=detail, actor="mlpilot")
        except NotFound:  # another process resolved it a moment ago
            return []
        return [self._notify(defn, AlertChange(action, alert))]

    def _notify(self, defn: SLODefinition, change: AlertChange) -> AlertChange:
        urls = [*self.webhooks, *defn.spec.webhooks]
        if self.notifier is not None and urls:
            self.notifier.send(urls, webhook_payload(change))
        return change

    def list_alerts(self, deployment: str | None = None, status: str | None = None, limit: int = 100) -> list[Alert]:
        if status is not None and status not in ("firing", "resolved"):
            raise InvalidArgument(f"alert status must be firing or resolved, got {status!r}")
        if deployment is not None:
            self.store.get_deployment(deployment)
        return self.store.list_alerts(deployment, status, limit)


def _summary(defn: SLODefinition, firing: Sequence[Mapping[str, Any]]) -> str:
    worst = max(firing, key=lambda r: r["long_burn"])
    return (
        f"{defn.deployment}/{defn.name} ({defn.spec.indicator.value}, objective {defn.spec.objective:g}): "
        f"burning the error budget {worst['long_burn']:.1f}x over {worst['rule']}"
    )


def webhook_payload(change: AlertChange) -> dict[str, Any]:
    a = change.alert
    return {
        "type": f"alert.{change.action}",
        "alert": a.model_dump(mode="json"),
        "deployment": a.deployment,
        "slo": a.slo,
        "severity": a.severity,
        "status": a.status,
        "summary": a.summary,
    }
