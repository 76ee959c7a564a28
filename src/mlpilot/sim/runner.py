"""One scenario run: the simulated service, minute by minute on a virtual clock, watched by the real machinery —
SLO burn-rate evaluation and alert deduplication (:mod:`mlpilot.monitors.slo`), a drift monitor
(:class:`mlpilot.monitoring.TableDrift`), incident placement and lifecycle (:mod:`mlpilot.incidents.policy`), the
RCA engine (:mod:`mlpilot.incidents.rca`), the healing decision, verification and revert
(:mod:`mlpilot.incidents.healing`) — with a simulated actuator that changes the world instead of the platform.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd

from mlpilot.incidents import healing, rca
from mlpilot.incidents.collectors import collect, nanmean, symptom_values
from mlpilot.incidents.evidence import Case, Diagnosis, Symptom
from mlpilot.incidents.healing import Action, HealingPolicy, PastAction
from mlpilot.incidents.policy import IncidentState, Signal, place, transition
from mlpilot.monitors.slo import SLO, AlertTracker, BurnRateRule, EventCounts, evaluate
from mlpilot.records import IncidentStatus
from mlpilot.sim.scenarios import DURATION, FAULT_AT, Scenario, add_distractors
from mlpilot.sim.world import LLM_STAGES, ML_STAGES, World

START = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
LABEL_DELAY = 2  # minutes
FAST = (
    BurnRateRule(timedelta(minutes=10), timedelta(minutes=2), 6.0, "page"),
    BurnRateRule(timedelta(minutes=30), timedelta(minutes=5), 2.0, "ticket"),
)
#: symptom kind -> (objective, burn-rate rules); good events per request. Accuracy has a high base error rate, so
#: its rules burn slower (1.6x the budget pages, 1.25x tickets).
SLOS: dict[str, dict[str, tuple[float, tuple[BurnRateRule, ...]]]] = {
    "ml": {
        "errors": (0.999, FAST),
        "latency": (0.99, FAST),
        "accuracy": (
            0.82,
            (
                BurnRateRule(timedelta(minutes=10), timedelta(minutes=2), 1.6, "page"),
                BurnRateRule(timedelta(minutes=30), timedelta(minutes=5), 1.25, "ticket"),
            ),
        ),
    },
    "llm": {"errors": (0.999, FAST), "latency": (0.99, FAST), "quality": (0.97, FAST)},
}
LATENCY_S = {"ml": 0.08, "llm": 1.2}
POLICY = HealingPolicy(
    mode="auto", min_confidence=0.6, cooldown=timedelta(minutes=10), verify_after=timedelta(minutes=6)
)


@dataclass
class ActionRecord:
    minute: int
    action: Action
    confidence: float
    helped: bool | None = None
    reverted: bool = False


@dataclass
class RunResult:
    scenario: str
    severity: str
    seed: int
    control: bool
    truth: str
    fault_minute: int
    paged: bool = False
    detected_minute: int | None = None
    diagnosis: Diagnosis | None = None
    ranking: list[str] = field(default_factory=list)
    baselines: dict[str, list[str]] = field(default_factory=dict)
    actions: list[ActionRecord] = field(default_factory=list)
    mitigated_minute: int | None = None
    affected: int = 0
    total_after: int = 0
    seconds: float = 0.0
    diagnosis_dict: dict[str, Any] | None = None

    @property
    def detected(self) -> bool:
        return self.detected_minute is not None


class SimActuator:
    """Applies healing actions to the simulated world; returns what ``healing.inverse`` needs."""

    def __init__(self, world: World) -> None:
        self.w = world

    def blast_radius(self, action: Action, recent: pd.DataFrame) -> float:
        if action.kind in ("abort_rollout", "shift_traffic", "disable_variant"):
            return self.w.state.canary_weight
        if action.kind == "quarantine_inputs":
            return float(self.w._quarantined(_values(recent), len(recent)).mean()) if len(recent) else 0.0
        return 0.0 if action.kind in ("scale", "notify") else 1.0

    def apply(self, action: Action) -> dict[str, Any]:
        st, k, p = self.w.state, action.kind, action.params
        before: dict[str, Any]
        if k in ("abort_rollout", "shift_traffic", "disable_variant"):
            before = {
                "traffic": {"canary": round(st.canary_weight * 100), "stable": 100 - round(st.canary_weight * 100)}
            }
            if "traffic" in p:
                st.canary_weight = float(p["traffic"].get("canary", 0)) / 100.0
            elif action.target == "variant:canary":
                st.canary_weight = 0.0
            return before
        if k == "rollback_release":
            before = {"release": st.release}
            st.release = int(p["to"]) if p.get("to") else max(st.release - 1, 1)
            st.rss_mb = 900.0  # a redeploy starts fresh runtimes
            return before
        if k == "revert_config":
            before = {"revision": st.config_rev}
            st.config_rev = int(p["revision"]) if p.get("revision") else max(st.config_rev - 1, 1)
            return before
        if k in ("rollback_alias", "switch_index_alias"):
            kind = action.target.split(":", 1)[0]
            attr = {"prompt": "prompt_version", "index": "index_version", "tool": "tool_version"}.get(kind)
            if attr is None:
                return {}
            before = {"version": getattr(st, attr)}
            setattr(st, attr, int(p["version"]) if p.get("version") else getattr(st, attr) - 1)
            return before
        if k in ("failover_backend", "pin_backend"):
            before = {"app": st.backend}
            st.backend = str(p["restore"]) if p.get("restore") else "fallback"
            return before
        if k == "scale":
            before = {"replicas": st.replicas}
            st.replicas = int(p["replicas"]) if p.get("replicas") else st.replicas * int(p.get("factor", 2))
            return before
        if k == "quarantine_inputs":
            feature = action.target.split(":", 1)[1]
            before = {"quarantine": dict(st.quarantine)}
            if p.get("lift"):
                st.quarantine.pop(feature, None)
            else:
                st.quarantine[feature] = {x: p[x] for x in ("low", "high", "allowed", "nulls") if x in p}
            return before
        if k == "restart_runtime":
            st.rss_mb = 900.0
            return {}
        return {}


def _values(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    return {c[3:]: frame[c].to_numpy() for c in frame.columns if c.startswith("in.")}


class Run:
    def __init__(self, scenario: Scenario, severity: str, seed: int, *, baselines: bool = True) -> None:
        self.s = scenario
        self.severity = severity
        self.seed = seed
        rng = np.random.default_rng(
            [seed, zlib.crc32(scenario.name.encode()), ("low", "medium", "high").index(severity)]
        )
        self.world = World(scenario.service, int(rng.integers(2**31)), START)
        self.fault_minute = FAULT_AT + int(rng.integers(0, 10))
        self.distractors = add_distractors(self.world, rng)
        self.size = scenario.sizes[("low", "medium", "high").index(severity)]
        self.frames: list[pd.DataFrame] = []
        self.counts = {k: EventCounts(timedelta(minutes=1)) for k in SLOS[scenario.service]}
        self.slos = {
            k: SLO(f"{self.world.deployment}/{k}", obj, timedelta(days=1), rules)
            for k, (obj, rules) in SLOS[scenario.service].items()
        }
        self.trackers = {k: AlertTracker() for k in self.slos}
        self.drift_trackers: dict[str, AlertTracker] = {}
        self.incident: IncidentState | None = None
        self.symptom: Symptom | None = None
        self.result = RunResult(scenario.name, severity, seed, scenario.control, scenario.truth, self.fault_minute)
        self.actuator = SimActuator(self.world)
        self.pending: tuple[ActionRecord, dict[str, Any], float, float] | None = None
        self.history: list[PastAction] = []
        self.with_baselines = baselines
        self.next_diagnosis: int | None = None
        self._reference: Any = None

    # ------------------------------------------------------------------------------------------------- loop

    def run(self) -> RunResult:
        t0 = time.perf_counter()
        w = self.world
        for minute in range(DURATION):
            for at, fn in self.distractors:
                if at == minute:
                    fn(w)
            if minute == self.fault_minute:
                self.s.inject(w, self.size)
            frame = w.step()
            self.frames.append(frame)
            if minute >= self.fault_minute:
                served = frame[frame["status"] != "rejected"]
                self.result.affected += int(frame["_affected"].sum())
                self.result.total_after += len(served) + int((frame["status"] == "rejected").sum())
            self._count(minute, frame)
            now = w.now
            if minute >= 30:
                self._evaluate(minute, now)
            if minute >= 45 and minute % 5 == 0:
                self._drift(minute, now)
            if self.next_diagnosis is not None and minute >= self.next_diagnosis:
                self._diagnose(minute, now)
            if self.pending is not None and now >= self._verify_at():
                self._verify(minute, now)
        self.result.seconds = time.perf_counter() - t0
        return self.result

    def _count(self, minute: int, frame: pd.DataFrame) -> None:
        start = self.world.start + timedelta(minutes=minute)
        served = frame[frame["status"] != "rejected"]
        n = float(len(served))
        for kind, counts in self.counts.items():
            if kind == "errors":
                counts.add(start, n - float((served["status"] == "error").sum()), n)
            elif kind == "latency":
                counts.add(start, float((served["latency_s"] <= LATENCY_S[self.s.service]).sum()), n)
            elif kind == "quality":
                g = served["llm.groundedness"].dropna()
                counts.add(start, float((g >= 0.5).sum()), float(len(g)))
            elif kind == "accuracy" and minute >= LABEL_DELAY:
                old = self.frames[minute - LABEL_DELAY]
                bad = symptom_values(old, "accuracy")
                ok = ~np.isnan(bad)
                counts.add(start - timedelta(minutes=LABEL_DELAY), float((bad[ok] == 0).sum()), float(ok.sum()))

    def _evaluate(self, minute: int, now: datetime) -> None:
        for kind, slo in self.slos.items():
            t = self.trackers[kind].step(evaluate(slo, self.counts[kind], now, min_events=50))
            if t.action == "fire" and t.severity:
                self._signal(minute, now, kind, t.severity)

    def _drift(self, minute: int, now: datetime) -> None:
        from mlpilot.monitoring import TableDrift

        cols = [c for c in self.frames[0].columns if c.startswith("in.")]
        if self._reference is None:
            ref = pd.concat(self.frames[5:40], ignore_index=True)[cols]
            self._reference = TableDrift(categorical_test="jensenshannon", correction="holm").fit(
                ref.sample(min(len(ref), 3000), random_state=0)
            )
        cur = pd.concat(self.frames[-15:], ignore_index=True)[cols]
        res = self._reference.predict(cur)
        for f in res.features:
            drifted = f.is_drift and (f.test != "ks" or f.statistic > 0.1)
            tracker = self.drift_trackers.setdefault(f.feature, AlertTracker())
            t = tracker.step(_ticket(now) if drifted else _quiet(now))
            if t.action == "fire":
                self._signal(minute, now, f"drift:{f.feature[3:]}", "ticket")

    @staticmethod
    def _effect(res: Any, feature: str) -> float:
        for f in res.features:
            if f.feature == feature:
                return float(f.statistic)
        return 0.0

    # ------------------------------------------------------------------------------------------------- incidents

    def _signal(self, minute: int, now: datetime, kind: str, severity: str) -> None:
        sig = Signal(f"alert:{self.world.deployment}/{kind}", self.world.deployment, severity, now, kind)
        live = [self.incident] if self.incident else []
        p = place(sig, live, timedelta(minutes=30))
        if severity == "page" and minute >= 30:
            self.result.paged = True
        first = self.incident is None
        if p.action == "open":
            self.incident = IncidentState(1, sig.deployment, IncidentStatus.OPEN, p.severity, now, frozenset({sig.key}))
        elif self.incident is not None:
            status = self.incident.status
            if p.action == "reopen":
                status = transition(status, "relapse")
            self.incident = IncidentState(1, sig.deployment, status, p.severity, now, self.incident.keys | {sig.key})
        if self.result.detected_minute is None and minute >= self.fault_minute and not self.s.control:
            self.result.detected_minute = minute
        if self.s.control and self.result.detected_minute is None:
            self.result.detected_minute = minute
        # diagnose on a new incident, and again when a stronger or different symptom arrives before any action
        new_key = p.action != "duplicate"
        kind = "drift" if kind.startswith("drift:") else kind
        better = (
            self.symptom is None
            or (kind != "drift" and (self.symptom.kind == "drift" or severity == "page"))
            or (kind == self.symptom.kind == "drift" and new_key)  # another feature drifts: look again
        )
        if (first or better) and not self.result.actions:
            onset = now - timedelta(minutes=5)
            self.symptom = Symptom(kind, onset, f"{self.world.deployment}/{kind}", severity)
            self.next_diagnosis = minute

    def case(self, now: datetime) -> Case:
        assert self.symptom is not None
        frames = self.frames[-120:]
        frame = pd.concat(frames, ignore_index=True)
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
        if "label" in frame:  # labels arrive LABEL_DELAY minutes after the prediction
            late = frame["ts"] > pd.Timestamp(now - timedelta(minutes=LABEL_DELAY))
            frame.loc[late, "label"] = np.nan
        w = self.world
        return Case(
            w.deployment,
            self.symptom,
            now,
            frame.drop(columns=["_affected"]),
            changes=list(w.changes),
            resources=w.resource_frame(),
            stable_variant="stable",
            rollout_variants=["canary"] if w.state.canary_weight > 0 else [],
            segments=["in.country", "in.device"] if w.service == "ml" else ["in.topic"],
            stage_components=ML_STAGES if w.service == "ml" else LLM_STAGES,
        )

    def _diagnose(self, minute: int, now: datetime) -> None:
        case = self.case(now)
        onset, evidence = collect(case)
        d = rca.rank(case, onset, evidence)
        if self.result.diagnosis is None or self.result.diagnosis.verdict != "diagnosed" or not self.result.actions:
            self.result.diagnosis = d
            self.result.ranking = [h.component for h in d.hypotheses]
            if self.with_baselines:
                from mlpilot.sim.baselines import all_baselines

                self.result.baselines = all_baselines(case, onset, self.seed)
        self.next_diagnosis = minute + 5 if d.verdict == "inconclusive" else None
        if self.pending is not None:
            return
        recent = pd.concat(self.frames[-5:], ignore_index=True)
        decision = healing.decide(d, POLICY, self.history, now, blast_radius=self._radius(d, recent))
        if decision.outcome == "execute" and decision.action is not None and decision.action.kind != "notify":
            self._act(minute, now, decision.action, decision.confidence, case)

    def _radius(self, d: Diagnosis, recent: pd.DataFrame) -> float:
        top = d.top
        if top is None or top.suggestion is None:
            return 0.0
        s = top.suggestion
        return self.actuator.blast_radius(Action(s.action, s.target, dict(s.params)), recent)

    def _act(self, minute: int, now: datetime, action: Action, confidence: float, case: Case) -> None:
        before = self.actuator.apply(action)
        rec = ActionRecord(minute, action, confidence)
        self.result.actions.append(rec)
        self.history.append(PastAction(now, action.kind))
        assert self.incident is not None and self.symptom is not None
        self.incident = _with_status(self.incident, transition(self.incident.status, "mitigate"))
        vals = symptom_values(case.frame, self.symptom.kind)
        ts = case.frame["ts"]
        onset = pd.Timestamp(self.symptom.onset)
        base = float(nanmean(vals[(ts < onset).to_numpy()])) if (ts < onset).any() else float("nan")
        during = float(nanmean(vals[(ts >= onset).to_numpy()])) if (ts >= onset).any() else float("nan")
        self.pending = (rec, before, base, during)

    def _verify_at(self) -> datetime:
        assert self.pending is not None
        return START + timedelta(minutes=self.pending[0].minute) + POLICY.verify_after

    def _verify(self, minute: int, now: datetime) -> None:
        assert self.pending is not None and self.symptom is not None and self.incident is not None
        rec, before, base, during = self.pending
        self.pending = None
        case = self.case(now)
        since = pd.Timestamp(START + timedelta(minutes=rec.minute + 1))
        after_rows = case.frame[case.frame["ts"] >= since]
        after = float(nanmean(symptom_values(after_rows, self.symptom.kind))) if len(after_rows) else float("nan")
        v = healing.verify(base, during, after, higher_is_worse=True)
        rec.helped = v.helped
        if v.helped:
            self.incident = _with_status(self.incident, transition(self.incident.status, "verified"))
            if self.result.mitigated_minute is None:
                self.result.mitigated_minute = rec.minute
        else:
            inv = healing.inverse(rec.action, before)
            if inv is not None:
                self.actuator.apply(inv)
            rec.reverted = True
            self.incident = _with_status(self.incident, transition(self.incident.status, "verification_failed"))
            self.next_diagnosis = minute + 1


def _with_status(inc: IncidentState, status: IncidentStatus) -> IncidentState:
    return IncidentState(inc.id, inc.deployment, status, inc.severity, inc.last_signal_at, inc.keys)


def _ticket(now: datetime) -> Any:
    from mlpilot.monitors.slo import BurnRate, Evaluation

    rule = BurnRateRule(timedelta(minutes=15), timedelta(minutes=5), 1.0, "ticket")
    return Evaluation("drift", now, (BurnRate(rule, 1.0, 1.0, True),))


def _quiet(now: datetime) -> Any:
    from mlpilot.monitors.slo import Evaluation

    return Evaluation("drift", now, ())


def run_one(scenario: Scenario, severity: str, seed: int, baselines: bool = True) -> RunResult:
    return Run(scenario, severity, seed, baselines=baselines).run()
