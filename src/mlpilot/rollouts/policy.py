"""The rollout policy (pure): given a rollout, the time and the analyses' verdicts, what happens next — and what
traffic split each state means.

No I/O here: the controller (``service.py``) gathers the evidence, calls :func:`decide`, stores the transition
(compare-and-set) and reconciles the deployment's traffic with :func:`desired_traffic`.

Gate rule of a phase (shadow, a canary step, the blue-green bake, an A/B experiment):

* any analysis FAILS → ``on_fail`` (roll back, or pause) — checked at every look, so a bad candidate is stopped as
  soon as the evidence is strong enough, before the step's minimum duration;
* the minimum duration and minimum candidate samples are met and every *required* analysis PASSES → advance
  (the next step, or promotion after the last);
* the phase's maximum duration is over with analyses still inconclusive → ``on_inconclusive`` (``advance`` pauses
  instead when the candidate answered nothing in the step: no evidence is not inconclusive evidence);
* otherwise hold.

The statistical analyses share the family-wise ``alpha`` (Bonferroni); each is time-uniform (a confidence
sequence), so looking at every tick does not inflate the false-rollback rate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from mlpilot.records import (
    AnalysisKind,
    AnalysisSpec,
    OnFail,
    OnInconclusive,
    Rollout,
    RolloutPhase,
    RolloutStrategy,
    Verdict,
)

# Analyses whose verdict is a statistical test sharing the family-wise alpha.
STATISTICAL = {
    AnalysisKind.ERROR_RATE,
    AnalysisKind.LATENCY,
    AnalysisKind.INPUT_DRIFT,
    AnalysisKind.OUTPUT_DRIFT,
    AnalysisKind.AGREEMENT,
    AnalysisKind.PERFORMANCE,
    AnalysisKind.ESTIMATED_PERFORMANCE,
    AnalysisKind.REWARD,
    AnalysisKind.LLM_METRIC,
    AnalysisKind.WIN_RATE,
}
# Analyses that need paired answers (only meaningful in the shadow phase) and those that need live traffic.
SHADOW_ONLY = {AnalysisKind.AGREEMENT, AnalysisKind.WIN_RATE}
MARGIN_KINDS = (
    AnalysisKind.PERFORMANCE,
    AnalysisKind.REWARD,
    AnalysisKind.ESTIMATED_PERFORMANCE,
    AnalysisKind.LLM_METRIC,
)
# The A/B experiment's primary analysis is the first of these (tested for superiority: margin 0).
PRIMARY_KINDS = (*MARGIN_KINDS, AnalysisKind.CUSTOM)


@dataclass(frozen=True)
class Gate:
    """One analysis' verdict as the policy sees it."""

    name: str
    kind: AnalysisKind
    verdict: Verdict
    required: bool
    message: str = ""
    record: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Context:
    rollout: Rollout
    now: datetime
    gates: Sequence[Gate] = ()
    step_samples: int = 0  # candidate requests since the step (or phase) began
    bandit_due: bool = False


@dataclass(frozen=True)
class Decision:
    """What to do. ``action`` is ``hold`` (nothing), or the transition recorded as event ``rollout.<action>``."""

    action: str
    phase: RolloutPhase
    step: int = 0
    reason: str = ""

    @property
    def changes(self) -> bool:
        return self.action != "hold"


def alpha_per_analysis(alpha: float, kinds: Sequence[AnalysisKind]) -> float:
    """Bonferroni share of the family-wise ``alpha`` for each statistical analysis."""
    k = sum(1 for kind in kinds if kind in STATISTICAL)
    return alpha / max(1, k)


# What the shadow phase always compares, unless the spec has an analysis of that kind: do both answer alike
# (a 10% disagreement — 5% relative difference for numbers — fails it) and are the answers distributed alike.
SHADOW_DEFAULTS = (
    AnalysisSpec(kind=AnalysisKind.AGREEMENT, params={"min_agreement": 0.9, "tolerance": 0.05}, required=False),
    AnalysisSpec(kind=AnalysisKind.OUTPUT_DRIFT, required=False),
)


def phase_analyses(rollout: Rollout) -> list[AnalysisSpec]:
    """The analyses of the current phase: the spec's (paired-answer ones only in the shadow phase), plus in the
    shadow phase :data:`SHADOW_DEFAULTS` for the kinds the spec leaves out."""
    shadow = rollout.phase is RolloutPhase.SHADOW
    out = [a for a in rollout.spec.analyses if shadow or a.kind not in SHADOW_ONLY]
    if shadow:
        kinds = {a.kind for a in out}
        out += [a for a in SHADOW_DEFAULTS if a.kind not in kinds]
    return out


def gate(rollout: Rollout, spec: AnalysisSpec, result: Any) -> Gate:
    """The policy's view of an analysis result. In the shadow phase latency informs but does not gate: a shadow
    runs after the answer left, on its own worker, competing with the live traffic for the CPU, so its latency is
    not the latency it would have live (the canary steps measure that, like with like)."""
    verdict, required, message = result.verdict, spec.required, result.message
    if rollout.phase is RolloutPhase.SHADOW and spec.kind is AnalysisKind.LATENCY:
        required = False
        if verdict is Verdict.FAIL:
            verdict = Verdict.INCONCLUSIVE
            message = f"{message} (not gating in the shadow phase)"
    return Gate(result.name, spec.kind, verdict, required, message, result.to_dict())


def first_phase(rollout: Rollout) -> tuple[RolloutPhase, int]:
    """The phase after ``pending`` (or after the shadow phase when ``shadow`` is true)."""
    spec = rollout.spec
    if rollout.phase is RolloutPhase.PENDING and spec.shadow is not None:
        return RolloutPhase.SHADOW, 0
    return {
        RolloutStrategy.CANARY: (RolloutPhase.CANARY, 0),
        RolloutStrategy.BLUE_GREEN: (RolloutPhase.BAKE, 0),
        RolloutStrategy.AB: (RolloutPhase.EXPERIMENT, 0),
        RolloutStrategy.BANDIT: (RolloutPhase.EXPERIMENT, 0),
    }[spec.strategy]


def phase_limits(rollout: Rollout) -> tuple[timedelta, int, timedelta]:
    """(minimum duration, minimum candidate samples, maximum duration) of the current phase or step."""
    spec = rollout.spec
    if rollout.phase is RolloutPhase.SHADOW and spec.shadow is not None:
        s = spec.shadow
        return s.min_duration, s.min_samples, s.max_duration or 10 * s.min_duration
    if rollout.phase is RolloutPhase.CANARY:
        st = spec.steps[rollout.step]
        return st.min_duration, st.min_samples, st.max_duration or 10 * st.min_duration
    if rollout.phase is RolloutPhase.BAKE:
        return spec.bake, spec.steps[-1].min_samples if spec.steps else 100, max(spec.bake, spec.max_duration)
    min_samples = spec.steps[0].min_samples if spec.steps else 100
    return timedelta(0), min_samples, spec.max_duration


def _after_pass(rollout: Rollout) -> Decision:
    phase = rollout.phase
    spec = rollout.spec
    if phase is RolloutPhase.SHADOW:
        nxt, step = first_phase(rollout.model_copy(update={"phase": RolloutPhase.CANARY}))
        return Decision("advance", nxt, step, "the shadow phase passed")
    if phase is RolloutPhase.CANARY and rollout.step + 1 < len(spec.steps):
        w = spec.steps[rollout.step + 1].weight
        return Decision("advance", RolloutPhase.CANARY, rollout.step + 1, f"step {rollout.step + 1} passed: {w}% next")
    what = {
        RolloutPhase.CANARY: "the last canary step passed",
        RolloutPhase.BAKE: "the bake time passed with every gate green",
        RolloutPhase.EXPERIMENT: "the candidate won the experiment",
    }.get(phase, "passed")
    return Decision("promote", RolloutPhase.PROMOTING, rollout.step, what)


def _failed(rollout: Rollout, failed: Sequence[Gate]) -> Decision:
    names = ", ".join(g.name for g in failed)
    detail = "; ".join(g.message for g in failed if g.message)
    reason = f"{names} failed" + (f": {detail}" if detail else "")
    if rollout.spec.on_fail is OnFail.PAUSE:
        return Decision("pause", RolloutPhase.PAUSED, rollout.step, reason)
    return Decision("rollback", RolloutPhase.ROLLED_BACK, rollout.step, reason)


def _gate(ctx: Context, gates: Sequence[Gate]) -> Decision:
    r = ctx.rollout
    failed = [g for g in gates if g.verdict is Verdict.FAIL]
    if failed:
        return _failed(r, failed)
    min_d, min_n, max_d = phase_limits(r)
    elapsed = ctx.now - r.step_started_at
    pending = [g for g in gates if g.required and g.verdict is not Verdict.PASS]
    if elapsed >= min_d and ctx.step_samples >= min_n and not pending:
        return _after_pass(r)
    if elapsed >= max_d:
        waiting = ", ".join(g.name for g in pending) or f"samples ({ctx.step_samples} of {min_n})"
        reason = f"still inconclusive after {elapsed.total_seconds():.0f} s: {waiting}"
        if r.phase is RolloutPhase.EXPERIMENT:
            return Decision("abort", RolloutPhase.ABORTED, r.step, f"no winner: {reason}; the baseline stays")
        n = ctx.step_samples
        short = f"; the candidate answered {n} of the {min_n} requests the step needs" if n < min_n else ""
        if r.spec.on_inconclusive is OnInconclusive.ADVANCE and n == 0 < min_n:
            # no evidence is not inconclusive evidence: a candidate that answered nothing — not ready yet, or no
            # traffic — is never advanced towards more traffic by the clock alone
            return Decision("pause", RolloutPhase.PAUSED, r.step, f"{reason}{short} (on_inconclusive=advance)")
        if r.spec.on_inconclusive is OnInconclusive.ADVANCE:
            d = _after_pass(r)
            return Decision(d.action, d.phase, d.step, f"{reason}{short} (on_inconclusive=advance)")
        if r.spec.on_inconclusive is OnInconclusive.PAUSE:
            return Decision("pause", RolloutPhase.PAUSED, r.step, reason)
        return Decision("rollback", RolloutPhase.ROLLED_BACK, r.step, reason)
    return Decision("hold", r.phase, r.step)


def _experiment(ctx: Context) -> Decision:
    """A/B: guardrails fail fast; the primary analysis (tested for superiority) decides the winner."""
    r = ctx.rollout
    primary = next((g for g in ctx.gates if g.kind in PRIMARY_KINDS), None)
    guards = [g for g in ctx.gates if g is not primary]
    failed = [g for g in guards if g.verdict is Verdict.FAIL]
    if failed:
        return _failed(r, failed)
    if primary is not None and primary.verdict is Verdict.FAIL:
        return Decision("rollback", RolloutPhase.ROLLED_BACK, r.step, f"the baseline won: {primary.message}")
    _min_d, min_n, max_d = phase_limits(r)
    if primary is not None and primary.verdict is Verdict.PASS and ctx.step_samples >= min_n:
        return Decision("promote", RolloutPhase.PROMOTING, r.step, f"the candidate won: {primary.message}")
    if ctx.now - r.step_started_at >= max_d:
        return Decision("abort", RolloutPhase.ABORTED, r.step, "no significant difference by the maximum duration")
    return Decision("hold", r.phase, r.step)


def _bandit(ctx: Context) -> Decision:
    r = ctx.rollout
    if ctx.now - r.phase_started_at >= r.spec.bandit.duration:
        if r.spec.bandit.promote_best:
            return Decision("promote", RolloutPhase.PROMOTING, r.step, "the bandit's time is over: the best arm wins")
        return Decision("abort", RolloutPhase.ABORTED, r.step, "the bandit's time is over; the baseline stays")
    failed = [g for g in ctx.gates if g.verdict is Verdict.FAIL]
    if failed:
        return _failed(r, failed)
    if ctx.bandit_due:
        return Decision("reweight", r.phase, r.step, "new rewards: weights follow the posterior")
    return Decision("hold", r.phase, r.step)


def decide(ctx: Context) -> Decision:
    """The next transition of ``ctx.rollout`` (``hold`` when nothing is due)."""
    r = ctx.rollout
    if r.phase is RolloutPhase.PENDING:
        phase, step = first_phase(r)
        return Decision("begin", phase, step, f"rollout started: {phase.value}")
    if r.phase is RolloutPhase.PROMOTING:
        return Decision("complete", RolloutPhase.PROMOTED, r.step, f"promoted: {r.message or 'the candidate serves'}")
    if r.phase in (RolloutPhase.PAUSED,) or r.phase.terminal:
        return Decision("hold", r.phase, r.step)
    if r.phase is RolloutPhase.EXPERIMENT:
        if r.spec.strategy is RolloutStrategy.BANDIT:
            return _bandit(ctx)
        return _experiment(ctx)
    return _gate(ctx, ctx.gates)


# ---------------------------------------------------------------------------------------------- traffic


def _largest_remainder(shares: Mapping[str, float], total: int) -> dict[str, int]:
    """Integers summing to ``total`` proportional to ``shares`` (Hamilton's method, ties by name)."""
    mass = sum(shares.values())
    if total <= 0 or mass <= 0:
        return {k: 0 for k in shares}
    exact = {k: v * total / mass for k, v in shares.items()}
    out = {k: int(v) for k, v in exact.items()}
    left = total - sum(out.values())
    for k in sorted(exact, key=lambda k: (-(exact[k] - out[k]), k))[:left]:
        out[k] += 1
    return out


@dataclass(frozen=True)
class Traffic:
    """The deployment state a rollout state means: which variants exist, their weights, the shadows."""

    weights: dict[str, int]
    shadows: tuple[str, ...]
    remove: tuple[str, ...] = ()  # variants to drop from the deployment


def desired_traffic(r: Rollout) -> Traffic:
    """The split for rollout ``r`` in its current phase, from the deployment's split when it started
    (``r.state["original"]`` weights and ``r.state["original_shadows"]``)."""
    original: dict[str, int] = dict(r.state.get("original", {r.baseline: 100}))
    shadows = tuple(s for s in r.state.get("original_shadows", []) if s not in (r.candidate, *r.arms))
    candidates = [r.candidate, *[a for a in r.arms if a != r.candidate]]
    phase = r.paused_phase if r.phase is RolloutPhase.PAUSED and r.paused_phase is not None else r.phase
    step = r.step

    def with_candidate(weight: int) -> dict[str, int]:
        others = {k: v for k, v in original.items() if v > 0 and k not in candidates}
        out = {k: 0 for k in original}
        out.update(_largest_remainder(others, 100 - weight) if others else {})
        out[r.candidate] = weight
        for a in candidates[1:]:
            out.setdefault(a, 0)
        return out

    if phase in (RolloutPhase.PENDING, RolloutPhase.SHADOW):
        w = {**original, **{c: 0 for c in candidates}}
        return Traffic(w, (*shadows, r.candidate) if phase is RolloutPhase.SHADOW else shadows)
    if phase is RolloutPhase.CANARY:
        return Traffic(with_candidate(r.spec.steps[step].weight), shadows)
    if phase is RolloutPhase.BAKE:
        return Traffic(with_candidate(100), shadows)
    if phase is RolloutPhase.EXPERIMENT and r.spec.strategy is RolloutStrategy.AB:
        return Traffic(with_candidate(r.spec.split), shadows)
    if phase is RolloutPhase.EXPERIMENT:  # bandit: the arms (baseline included) share all live traffic
        weights = {k: 0 for k in original}
        weights.update({a: int(w) for a, w in r.state.get("weights", {}).items()})
        if sum(weights.values()) != 100:
            arms = [r.baseline, *candidates]
            weights.update(_largest_remainder({a: 1.0 for a in arms}, 100))
        return Traffic(weights, shadows)
    if phase in (RolloutPhase.PROMOTING, RolloutPhase.PROMOTED):
        winner = str(r.state.get("winner", r.candidate))
        if winner == r.baseline:  # a bandit whose best arm is the baseline: nothing to promote
            return Traffic(original, shadows, tuple(candidates))
        weights = {k: v for k, v in original.items() if k != r.baseline}
        weights[winner] = original.get(r.baseline, 0) + (100 - sum(original.values()))
        if sum(weights.values()) != 100:
            weights[winner] += 100 - sum(weights.values())
        losers = tuple(c for c in candidates if c != winner)
        return Traffic(weights, shadows, (r.baseline, *losers))
    # rolled back or aborted: the split from before, the candidates gone
    return Traffic(original, shadows, tuple(candidates))
