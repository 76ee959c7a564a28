"""The RCA ranker: hypotheses from evidence, ranked, with abstention. Pure: same evidence, same diagnosis.

Each hypothesis template reads the evidence the collectors produced and scores one *(cause, component)* from three
things (see the module docs in ``docs/incidents.md``):

* **temporal alignment** — a recorded change counts only if it happened shortly before the onset
  (``exp(-Δt/τ)``, τ = 15 min; a change after the onset, beyond 3 min of slack, cannot be the cause);
* **effect size** — how large the finding is in its own units (z of a variant against the others, KS of a
  feature, growth of a stage's latency …), squashed to [0, 1) by ``1 - exp(-x)``;
* **specificity** — how narrowly it points (one variant of three, one feature of twenty drifting, the stage that
  carries the extra latency).

Independent findings that point at the same component combine by noisy-or, so a change *and* a finding that
corroborates it outrank either alone, and a change nobody corroborates stays a weak prior (the "nearest change"
heuristic is one input, not the answer). The ranker **abstains**: ``benign`` when the symptom barely moved or the
only symptom is drift that hurts nothing measurable; ``inconclusive`` when the best hypothesis is below
``min_confidence`` or is not clearly ahead of the second one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from mlpilot.incidents.collectors import collect
from mlpilot.incidents.evidence import Case, Diagnosis, Evidence, Hypothesis, Suggestion

__all__ = ["align", "diagnose", "rank"]

TAU = timedelta(minutes=15)
SLACK = timedelta(minutes=3)
#: a variant the deployment no longer serves keeps this share of its confidence (and no suggestion)
GONE_VARIANT = 0.3
#: an error cluster that names a feature but comes from one variant alone keeps this share of its confidence
ONE_VARIANT = 0.5


def align(at: datetime | None, onset: datetime, tau: timedelta = TAU, slack: timedelta = SLACK) -> float:
    """1 for a change right at the onset (or up to ``slack`` after it: the onset is an estimate), decaying with how
    long before it happened (``exp(-dt/tau)``); 0 for a change later than that."""
    if at is None:
        return 0.0
    dt = (onset - at).total_seconds()
    if dt < -slack.total_seconds():
        return 0.0
    return math.exp(-max(dt, 0.0) / tau.total_seconds())


def time_scale(case: Case) -> tuple[timedelta, timedelta]:
    """``(tau, slack)`` for the case's window: 15 and 3 minutes for the usual hours of history, proportionally less
    for a short window (a test, a service that just started), at least 10 and 2 seconds."""
    if case.frame.empty:
        return TAU, SLACK
    span = (case.now - pd.Timestamp(case.frame["ts"].min()).floor("us").to_pydatetime()).total_seconds()
    tau = min(TAU.total_seconds(), max(10.0, span / 8.0))
    return timedelta(seconds=tau), timedelta(seconds=tau / 5.0)


def sat(x: float) -> float:
    return 1.0 - math.exp(-max(x, 0.0)) if math.isfinite(x) else 1.0


def noisy_or(*ps: float) -> float:
    out = 1.0
    for p in ps:
        out *= 1.0 - min(max(p, 0.0), 0.999)
    return 1.0 - out


class _Builder:
    def __init__(self) -> None:
        self.found: dict[tuple[str, str], Hypothesis] = {}

    def add(
        self,
        cause: str,
        component: str,
        confidence: float,
        evidence: Iterable[Evidence],
        rationale: str,
        suggestion: Suggestion | None,
    ) -> None:
        refs = tuple(dict.fromkeys(e.ref for e in evidence))
        h = Hypothesis(cause, component, round(min(max(confidence, 0.0), 0.99), 4), refs, rationale, suggestion)
        key = (cause, component)
        if key not in self.found or self.found[key].confidence < h.confidence:
            self.found[key] = h

    def ranked(self) -> list[Hypothesis]:
        best: dict[str, Hypothesis] = {}
        for h in sorted(self.found.values(), key=lambda h: -h.confidence):
            best.setdefault(h.component, h)  # one hypothesis per component: its strongest cause
        return sorted(best.values(), key=lambda h: (-h.confidence, h.component))


def rank(case: Case, onset: datetime, evidence: Sequence[Evidence], *, min_confidence: float = 0.5) -> Diagnosis:
    """Hypotheses from ``evidence`` (the collectors' output for ``case``), strongest first, and the verdict."""
    by_kind: dict[str, list[Evidence]] = {}
    for e in evidence:
        by_kind.setdefault(e.kind, []).append(e)
    dep = case.deployment
    sym = case.symptom.kind
    cp = next(iter(by_kind.get("changepoint", [])), None)
    b = _Builder()
    changes = by_kind.get("change", [])
    drifts = by_kind.get("drift", [])
    max_drift_impact = max((abs(float(e.data.get("impact", 0.0))) for e in drifts), default=0.0)
    strong_drift = [e for e in drifts if e.effect >= 1.0 and float(e.data.get("impact_z", 0.0)) >= 3.0]

    tau, slack = time_scale(case)
    first = pd.Timestamp(case.frame["ts"].min()).floor("us").to_pydatetime() if len(case.frame) else None
    # a change before the first logged request cannot explain a shift from the baseline: the baseline already has it
    changes = [c for c in changes if first is None or c.at is None or c.at > first]

    def aligned(component_prefix: str, kinds: Sequence[str] = (), exact: bool = False) -> list[tuple[Evidence, float]]:
        return [
            (c, align(c.at, onset, tau, slack))
            for c in changes
            if (c.component == component_prefix if exact else c.component.startswith(component_prefix))
            and (not kinds or c.data.get("change_kind") in kinds)
        ]

    # ---- one variant worse than the others
    for e in by_kind.get("variant", []):
        v = e.component.split(":", 1)[1]
        z = float(e.data.get("z", 0.0))
        if z < 2.0:
            continue
        s_var = sat(e.effect) * (0.55 + 0.45 * e.specificity)
        ch = aligned(f"variant:{v}", exact=True)
        s_ch = max((a for _, a in ch), default=0.0)
        sl = [x for x in by_kind.get("slice", []) if x.component == e.component]
        conf = noisy_or(0.9 * s_var, 0.35 * s_ch, 0.25 * sat(sl[0].effect) if sl else 0.0)
        rationale = e.summary
        if case.serving_variants is not None and v not in case.serving_variants:
            # taken out already (a rolled-back canary): what it did is in the window, but it cannot be what goes on
            conf, sug, rationale = conf * GONE_VARIANT, None, f"{e.summary}; no longer served"
        elif v in case.rollout_variants:
            sug = Suggestion("abort_rollout", f"variant:{v}", {}, f"the rollout's candidate {v} is the worse variant")
        elif case.stable_variant and v != case.stable_variant:
            sug = Suggestion(
                "shift_traffic", f"variant:{v}", {"to": case.stable_variant}, f"move {v}'s traffic to stable"
            )
        elif v == case.stable_variant:
            sug = None  # never take the stable variant out on our own: what would serve instead is not known good
        else:
            sug = Suggestion("disable_variant", f"variant:{v}", {}, f"stop sending traffic to {v}")
        b.add("bad_variant", e.component, conf, [e, *sl, *(c for c, a in ch if a > 0.1)], rationale, sug)

    # ---- releases and config pushes of the deployment
    stages = by_kind.get("stage", [])
    res = by_kind.get("resource", [])
    labs = by_kind.get("labels", [])
    mem = [r for r in res if r.data.get("kind") in ("memory", "restarts") and r.effect >= 1.0]
    variant_specific = any(
        float(e.data.get("z", 0.0)) >= 3.0 and e.specificity >= 0.5 for e in by_kind.get("variant", [])
    )
    leak_at = next((m.at for m in mem if m.ref == "resource:rss_mb"), None)
    for c, a in aligned("release:", ("release",)):
        if mem and leak_at is not None:
            a = max(a, align(c.at, leak_at, tau, slack))
        if a <= 0.0:
            continue
        prior = 0.45 * a
        support: list[Evidence] = []
        cause, extra = "bad_release", 0.0
        model_stage = [s for s in stages if s.component.startswith("release:") and s.effect >= 0.3]
        oom = [x for x in by_kind.get("errors", []) if "memory" in str(x.data.get("template", ""))]
        if mem:
            cause, extra, support = "memory_leak", 0.8 * sat(max(m.effect for m in mem)), [*mem, *oom]
        elif sym == "latency" and model_stage:
            cause, extra, support = "latency_regression", 0.8 * sat(2 * model_stage[0].effect), model_stage
        elif sym in ("accuracy", "errors") and labs and not strong_drift:
            zp = abs(float(labs[0].data.get("z_pred", 0.0)))
            if zp >= 3.0:
                cause, extra, support = "skew", 0.75 * sat(zp / 4.0), labs
        if variant_specific:
            prior *= 0.5
        conf = noisy_or(prior, extra * a)
        b.add(
            cause,
            c.component,
            conf,
            [c, *support],
            f"{c.summary} shortly before the onset",
            Suggestion("rollback_release", f"release:{dep}", {}, f"go back to the release before {c.summary}"),
        )
    for c, a in aligned("config:", ("config",)):
        if a <= 0.0:
            continue
        tout = [x for x in by_kind.get("errors", []) if x.component.startswith("config:") and x.effect >= 0.5]
        broad = not variant_specific
        conf = noisy_or(
            0.5 * a, 0.6 * a * (1.0 if tout else 0.0), 0.3 * a * (1.0 if broad and cp and cp.effect > 3 else 0.0)
        )
        b.add(
            "bad_config",
            c.component,
            conf,
            [c, *tout],
            f"{c.summary} shortly before the onset",
            Suggestion(
                "revert_config",
                f"config:{dep}",
                {"revision": c.data.get("revision_before")},
                "revert the configuration change",
            ),
        )

    # ---- upstream data
    for e in drifts:
        kind = str(e.data.get("kind", "distribution"))
        impact = float(e.data.get("impact", 0.0))
        feature = e.component.split(":", 1)[1]
        cause = {
            "nulls": "null_spike",
            "encoding": "encoding_change",
            "stale": "stale_feature",
            "rescale": "upstream_rescale",
        }.get(kind, "feature_drift")
        scale = _impact_scale(sym)
        s_drift = sat(e.effect / 2) * (0.4 + 0.6 * e.specificity)
        impact_z = float(e.data.get("impact_z", 0.0))
        s_imp = sat(max(impact, 0.0) / scale) * sat(max(impact_z - 2.0, 0.0) / 2.0) if kind != "stale" else 0.0
        s_stale = 0.0
        if kind == "stale":
            s_stale = 0.8 * sat(e.effect / 2) if sym in ("accuracy", "quality") else 0.3
        conf = noisy_or(0.35 * s_drift, 0.85 * s_imp, s_stale)
        if kind == "distribution" and s_imp < 0.3:
            conf *= 0.5
        sug = _quarantine(feature, kind, e, case)
        b.add(cause, e.component, conf, [e], e.summary, sug)

    # ---- LLM apps
    for e in by_kind.get("llm", []):
        kind = e.component.split(":", 1)[0]
        if e.ref in ("llm:prompt", "llm:index", "llm:tool"):
            ch = aligned(f"{kind}:")
            s_ch = max((a for _, a in ch), default=0.0)
            conf = noisy_or(0.6 * sat(e.effect), 0.5 * s_ch)
            target = next((c.component for c, a in ch if a > 0), e.component)
            version = next((c.data.get("version_before") for c, a in ch if a > 0), None)
            action = "switch_index_alias" if kind == "index" else "rollback_alias"
            cause = {"prompt": "prompt_regression", "index": "index_regression", "tool": "tool_regression"}[kind]
            b.add(
                cause,
                _base(target),
                conf,
                [e, *(c for c, a in ch if a > 0)],
                e.summary,
                Suggestion(action, target, {"version": version} if version is not None else {}, f"move {target} back"),
            )
        elif e.ref == "llm:provider":
            ch = aligned("provider:")
            conf = noisy_or(0.75 * sat(e.effect), 0.2)
            b.add(
                "provider_change",
                e.component,
                conf,
                [e],
                e.summary + " (no recorded change)",
                Suggestion("failover_backend", e.component, {}, "answer from the fallback backend"),
            )
        else:  # aggregate retrieval / groundedness moves: weaker, unspecific
            conf = 0.35 * sat(e.effect)
            b.add(
                "index_regression" if kind == "index" else "prompt_regression", e.component, conf, [e], e.summary, None
            )

    # ---- error clusters
    for e in by_kind.get("errors", []):
        if e.component.startswith("provider:") and e.effect >= 0.5:
            b.add(
                "rate_limited",
                e.component,
                noisy_or(0.85 * sat(e.effect) * e.specificity),
                [e],
                e.summary,
                Suggestion(
                    "failover_backend", e.component, {}, "the provider rate-limits: answer from the fallback backend"
                ),
            )
        elif e.component.startswith("feature:") and e.effect >= 0.5:
            feature = e.component.split(":", 1)[1]
            d = next((x for x in drifts if x.component == e.component), None)
            if d is None or (d.effect < 0.5 and float(d.data.get("outside", 0.0)) < 0.01):
                continue  # an error that names a feature whose values did not change says little about it
            conf, rationale = noisy_or(0.7 * sat(e.effect) * e.specificity), e.summary
            if float(e.data.get("variant_errors", 0.0)) >= 0.9 and float(e.data.get("variant_traffic", 1.0)) <= 0.8:
                # the other variants saw the same inputs (the split is random) and did not fail on them
                conf, rationale = conf * ONE_VARIANT, f"{rationale}; only variant {e.data['variant']} fails on them"
            b.add(
                "null_spike" if d is None or d.data.get("kind") == "nulls" else "feature_drift",
                e.component,
                conf,
                [e, *([d] if d else [])],
                rationale,
                _quarantine(feature, str(d.data.get("kind")) if d else "nulls", d, case),
            )

    # ---- latency of a dependency, traffic
    for e in stages:
        if e.component.startswith("dependency:") and e.effect >= 0.3 and sym == "latency":
            conf = noisy_or(0.8 * sat(e.effect) * max(e.specificity, 0.2))
            b.add(
                "dependency_latency",
                e.component,
                conf,
                [e],
                e.summary,
                Suggestion("notify", e.component, {}, f"{e.component} is slower; nothing in mlpilot's control changed"),
            )
    for e in res:
        if e.ref == "resource:request_rate" and e.effect >= 1.0:
            ratio = float(e.data.get("ratio", 1.0))
            queue = [s for s in stages if s.component.startswith("traffic:") and s.effect >= 0.3]
            conf = noisy_or(0.7 * sat(e.effect / 2), 0.4 * (1.0 if queue else 0.0))
            b.add(
                "traffic_surge",
                e.component,
                conf,
                [e, *queue],
                e.summary,
                Suggestion(
                    "scale",
                    f"variant:{case.stable_variant or 'default'}",
                    {"factor": math.ceil(ratio)},
                    "more replicas for more traffic",
                ),
            )

    # ---- labels vs the world
    if sym == "accuracy" and labs:
        e = labs[0]
        z_pred = abs(float(e.data.get("z_pred", 0.0)))
        abrupt = bool(cp.data.get("abrupt")) if cp else False
        het = float(e.data.get("shift_heterogeneity", 0.0))
        uniform = het < 1.5
        if e.effect >= 1.0 and z_pred < 3.0 and uniform:
            conf = noisy_or(0.7 * sat(e.effect), 0.25 if abrupt else 0.0)
            b.add(
                "label_pipeline",
                e.component,
                conf,
                [e, *([cp] if cp else [])],
                e.summary + " — alike across all inputs",
                Suggestion(
                    "notify",
                    e.component,
                    {},
                    "labels moved while predictions did not: check the label pipeline; no model action",
                ),
            )
        elif z_pred < 3.0 and not strong_drift:
            conf = 0.45 + (0.2 if not uniform else 0.0) + (0.1 if not abrupt else 0.0)
            where = str(e.data.get("shift_feature") or "")
            b.add(
                "concept_drift",
                f"concept:{dep}",
                conf,
                [e, *([cp] if cp else [])],
                "accuracy fell while inputs and predictions held"
                + (f"; labels moved most along {where}" if where else ""),
                Suggestion("notify", f"concept:{dep}", {}, "retrain on recent labels; do not roll back"),
            )

    # ---- weak fall-backs so every change and drifting feature is ranked (Avg@5)
    for c, a in aligned(""):
        if a > 0:
            kind = (
                "bad_config"
                if c.component.startswith("config:")
                else "bad_release"
                if c.component.startswith("release:")
                else "bad_variant"
            )
            b.add(kind, _base(c.component), 0.2 * a, [c], c.summary, None)

    hyps = b.ranked()
    return _verdict(case, onset, cp, hyps, evidence, max_drift_impact, min_confidence)


def _impact_scale(symptom: str) -> float:
    return {"errors": 0.05, "accuracy": 0.08, "latency": 0.05, "quality": 0.1}.get(symptom, 0.05)


def _base(component: str) -> str:
    """``prompt:support@prod`` → ``prompt:support`` (hypotheses name the artifact, suggestions the alias)."""
    return component.split("@", 1)[0]


def _quarantine(feature: str, kind: str, e: Evidence | None, case: Case) -> Suggestion:
    """The quarantine rule for a changed feature: one condition per rule (missing values, unseen categories, or
    outside the reference range), or a notification when no rule can separate the changed rows."""
    mode: dict[str, object] = {"mode": "reject"}
    d = dict(e.data) if e is not None else {}
    if kind == "nulls":
        return Suggestion(
            "quarantine_inputs", f"feature:{feature}", {"nulls": True, **mode}, f"reject rows with no {feature}"
        )
    if kind == "encoding" and d.get("allowed") and not d.get("allowed_truncated"):
        return Suggestion(
            "quarantine_inputs",
            f"feature:{feature}",
            {"allowed": d["allowed"], **mode},
            f"reject unseen {feature} values",
        )
    if kind in ("rescale", "distribution") and "low" in d:
        return Suggestion(
            "quarantine_inputs",
            f"feature:{feature}",
            {"low": d["low"], "high": d["high"], **mode},
            f"reject rows with {feature} outside its reference range",
        )
    return Suggestion("notify", f"feature:{feature}", {}, f"{feature} changed upstream ({kind}); tell its owner")


def _verdict(
    case: Case,
    onset: datetime,
    cp: Evidence | None,
    hyps: list[Hypothesis],
    evidence: Sequence[Evidence],
    max_drift_impact: float,
    min_confidence: float,
) -> Diagnosis:
    top = hyps[0] if hyps else None
    if (
        case.symptom.kind == "drift"
        and max_drift_impact < _impact_scale("errors")
        and (top is None or top.cause in ("feature_drift", "stale_feature") or top.confidence < 0.6)
    ):
        return Diagnosis(
            "benign",
            tuple(hyps),
            tuple(evidence),
            onset,
            "inputs drifted but nothing measurable got worse: watch, do not act",
        )
    if cp is not None and cp.effect < 1.0 and (top is None or top.confidence < 0.8):
        return Diagnosis(
            "benign", tuple(hyps), tuple(evidence), onset, "the symptom is within its usual variation: no action"
        )
    if top is None or top.confidence < min_confidence:
        return Diagnosis(
            "inconclusive",
            tuple(hyps),
            tuple(evidence),
            onset,
            "no hypothesis is strong enough"
            + (f" (best: {top.cause} on {top.component}, {top.confidence:.2f})" if top else ""),
        )
    second = hyps[1].confidence if len(hyps) > 1 else 0.0
    if top.confidence - second < 0.05 and top.suggestion is not None and top.suggestion.action != "notify":
        return Diagnosis(
            "inconclusive",
            tuple(hyps),
            tuple(evidence),
            onset,
            f"{top.component} and {hyps[1].component} explain the symptom about equally well",
        )
    return Diagnosis(
        "diagnosed",
        tuple(hyps),
        tuple(evidence),
        onset,
        f"{top.cause.replace('_', ' ')} on {top.component} ({top.confidence:.0%}): {top.rationale}",
    )


def diagnose(case: Case, *, min_confidence: float = 0.5) -> Diagnosis:
    """Collect evidence for ``case`` and rank it (the deterministic engine)."""
    onset, evidence = collect(case)
    return rank(case, onset, evidence, min_confidence=min_confidence)


def summary_rows(d: Diagnosis) -> list[dict[str, Any]]:
    return [{"rank": i + 1, **h.to_dict()} for i, h in enumerate(d.hypotheses)]
