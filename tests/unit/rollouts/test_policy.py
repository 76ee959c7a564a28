"""The rollout policy is pure: table-driven tests of decide() and desired_traffic()."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from mlpilot.records import AnalysisKind, Rollout, RolloutPhase, RolloutSpec, Verdict
from mlpilot.rollouts.policy import Context, Gate, alpha_per_analysis, decide, desired_traffic

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
PASS, FAIL, INC = Verdict.PASS, Verdict.FAIL, Verdict.INCONCLUSIVE


def rollout(phase: RolloutPhase = RolloutPhase.CANARY, step: int = 0, **spec: Any) -> Rollout:
    body = {
        "candidate": "m:2",
        "steps": [{"weight": w, "min_duration": "5m", "min_samples": 100} for w in (10, 50, 100)],
        **spec,
    }
    return Rollout(
        id=1,
        deployment="d",
        spec=RolloutSpec.model_validate(body),
        phase=phase,
        step=step,
        baseline="a",
        candidate="b",
        started_at=T0,
        phase_started_at=T0,
        step_started_at=T0,
        updated_at=T0,
        revision=1,
        created_by="t",
        state={"original": {"a": 100}},
    )


def gate(verdict: Verdict, required: bool = True, kind: AnalysisKind = AnalysisKind.ERROR_RATE) -> Gate:
    return Gate(kind.value, kind, verdict, required, f"{kind.value} {verdict.value}")


@pytest.mark.parametrize(
    ("phase", "step", "minutes", "samples", "gates", "want"),
    [
        # fail fast: before the minimum duration, any failure rolls back
        (RolloutPhase.CANARY, 0, 1, 10, [gate(FAIL)], ("rollback", RolloutPhase.ROLLED_BACK, 0)),
        # everything green but too early or too few samples: hold
        (RolloutPhase.CANARY, 0, 4, 500, [gate(PASS)], ("hold", RolloutPhase.CANARY, 0)),
        (RolloutPhase.CANARY, 0, 6, 99, [gate(PASS)], ("hold", RolloutPhase.CANARY, 0)),
        # green, long enough, enough samples: next step; after the last, promote
        (RolloutPhase.CANARY, 0, 6, 100, [gate(PASS)], ("advance", RolloutPhase.CANARY, 1)),
        (RolloutPhase.CANARY, 2, 6, 100, [gate(PASS)], ("promote", RolloutPhase.PROMOTING, 2)),
        # a required gate still inconclusive: hold until the maximum (10 x minimum), then on_inconclusive=advance
        (RolloutPhase.CANARY, 0, 6, 100, [gate(PASS), gate(INC)], ("hold", RolloutPhase.CANARY, 0)),
        (RolloutPhase.CANARY, 0, 50, 100, [gate(INC)], ("advance", RolloutPhase.CANARY, 1)),
        # ... also short of the step's samples (a slow candidate answered some) ...
        (RolloutPhase.CANARY, 0, 50, 1, [gate(INC)], ("advance", RolloutPhase.CANARY, 1)),
        # ... but a candidate that answered nothing by the maximum (not ready, no traffic) is not advanced
        (RolloutPhase.CANARY, 0, 50, 0, [gate(INC)], ("pause", RolloutPhase.PAUSED, 0)),
        (RolloutPhase.CANARY, 2, 50, 0, [], ("pause", RolloutPhase.PAUSED, 2)),
        # an optional gate does not block
        (RolloutPhase.CANARY, 0, 6, 100, [gate(PASS), gate(INC, required=False)], ("advance", RolloutPhase.CANARY, 1)),
        # but an optional gate that fails still rolls back
        (
            RolloutPhase.CANARY,
            1,
            6,
            100,
            [gate(PASS), gate(FAIL, required=False)],
            ("rollback", RolloutPhase.ROLLED_BACK, 1),
        ),
        (RolloutPhase.PENDING, 0, 0, 0, [], ("begin", RolloutPhase.CANARY, 0)),
        (RolloutPhase.PROMOTING, 2, 0, 0, [], ("complete", RolloutPhase.PROMOTED, 2)),
        (RolloutPhase.PAUSED, 1, 99, 9999, [gate(FAIL)], ("hold", RolloutPhase.PAUSED, 1)),
        (RolloutPhase.ROLLED_BACK, 1, 99, 9999, [gate(PASS)], ("hold", RolloutPhase.ROLLED_BACK, 1)),
    ],
)
def test_decide(
    phase: RolloutPhase, step: int, minutes: float, samples: int, gates: list[Gate], want: tuple[str, RolloutPhase, int]
) -> None:
    d = decide(Context(rollout(phase, step), T0 + timedelta(minutes=minutes), gates, samples))
    assert (d.action, d.phase, d.step) == want


@pytest.mark.parametrize(
    ("on_fail", "on_inconclusive", "gates", "minutes", "want"),
    [
        ("pause", "advance", [gate(FAIL)], 1, "pause"),
        ("rollback", "pause", [gate(INC)], 51, "pause"),
        ("rollback", "rollback", [gate(INC)], 51, "rollback"),
    ],
)
def test_configured_reactions(on_fail: str, on_inconclusive: str, gates: list[Gate], minutes: float, want: str) -> None:
    r = rollout(on_fail=on_fail, on_inconclusive=on_inconclusive)
    assert decide(Context(r, T0 + timedelta(minutes=minutes), gates, 1000)).action == want


def test_the_first_phase_follows_the_strategy_and_the_shadow_option() -> None:
    assert (
        decide(Context(rollout(RolloutPhase.PENDING, shadow={"min_duration": "1m"}), T0)).phase is RolloutPhase.SHADOW
    )
    assert decide(Context(rollout(RolloutPhase.PENDING, strategy="blue_green"), T0)).phase is RolloutPhase.BAKE
    assert decide(Context(rollout(RolloutPhase.PENDING, strategy="ab"), T0)).phase is RolloutPhase.EXPERIMENT
    shadow = rollout(RolloutPhase.SHADOW, shadow={"min_duration": "1m", "min_samples": 10})
    d = decide(Context(shadow, T0 + timedelta(minutes=2), [gate(PASS, kind=AnalysisKind.AGREEMENT)], 10))
    assert (d.action, d.phase, d.step) == ("advance", RolloutPhase.CANARY, 0)


def test_ab_decides_on_the_primary_analysis_and_guards_fail_fast() -> None:
    r = rollout(RolloutPhase.EXPERIMENT, strategy="ab")
    perf = AnalysisKind.PERFORMANCE
    now = T0 + timedelta(minutes=1)
    assert decide(Context(r, now, [gate(PASS, kind=perf), gate(PASS)], 1000)).action == "promote"
    assert decide(Context(r, now, [gate(FAIL, kind=perf), gate(PASS)], 1000)).action == "rollback"
    assert decide(Context(r, now, [gate(PASS, kind=perf), gate(FAIL)], 1000)).action == "rollback"
    assert decide(Context(r, now, [gate(INC, kind=perf)], 1000)).action == "hold"
    assert decide(Context(r, T0 + timedelta(days=2), [gate(INC, kind=perf)], 1000)).action == "abort"


def test_bandit_reweights_when_due_and_ends_after_its_duration() -> None:
    r = rollout(RolloutPhase.EXPERIMENT, strategy="bandit", bandit={"duration": "1h"})
    assert decide(Context(r, T0 + timedelta(minutes=5), bandit_due=True)).action == "reweight"
    assert decide(Context(r, T0 + timedelta(minutes=5), bandit_due=False)).action == "hold"
    assert decide(Context(r, T0 + timedelta(hours=1))).action == "promote"


def test_alpha_is_shared_by_the_statistical_analyses() -> None:
    kinds = [AnalysisKind.ERROR_RATE, AnalysisKind.LATENCY, AnalysisKind.CUSTOM]
    assert alpha_per_analysis(0.05, kinds) == pytest.approx(0.025)
    assert alpha_per_analysis(0.05, []) == 0.05


def test_desired_traffic_per_phase() -> None:
    def at(phase: RolloutPhase, step: int = 0, **kw: Any) -> tuple[dict[str, int], tuple[str, ...], tuple[str, ...]]:
        r = rollout(phase, step, **kw)
        t = desired_traffic(r)
        return t.weights, t.shadows, t.remove

    assert at(RolloutPhase.PENDING) == ({"a": 100, "b": 0}, (), ())
    assert at(RolloutPhase.SHADOW) == ({"a": 100, "b": 0}, ("b",), ())
    assert at(RolloutPhase.CANARY, 1) == ({"a": 50, "b": 50}, (), ())
    assert at(RolloutPhase.BAKE, strategy="blue_green") == ({"a": 0, "b": 100}, (), ())
    assert at(RolloutPhase.EXPERIMENT, strategy="ab", split=30) == ({"a": 70, "b": 30}, (), ())
    assert at(RolloutPhase.PROMOTED) == ({"b": 100}, (), ("a",))
    assert at(RolloutPhase.ROLLED_BACK) == ({"a": 100}, (), ("b",))
    assert at(RolloutPhase.ABORTED) == ({"a": 100}, (), ("b",))


def test_desired_traffic_keeps_other_live_variants_in_proportion() -> None:
    r = rollout(RolloutPhase.CANARY, 0).model_copy(update={"state": {"original": {"a": 75, "c": 25}}})
    assert desired_traffic(r).weights == {"a": 68, "c": 22, "b": 10}
    done = r.model_copy(update={"phase": RolloutPhase.PROMOTED})
    assert desired_traffic(done).weights == {"c": 25, "b": 75}
    paused = r.model_copy(update={"phase": RolloutPhase.PAUSED, "paused_phase": RolloutPhase.CANARY, "step": 1})
    assert desired_traffic(paused).weights == {"a": 38, "c": 12, "b": 50}


def test_the_shadow_phase_adds_agreement_and_output_drift_unless_the_spec_has_them() -> None:
    from mlpilot.rollouts.policy import phase_analyses

    shadow = rollout(RolloutPhase.SHADOW, shadow={"min_duration": "1m"}, analyses=[{"kind": "error_rate"}])
    kinds = [(a.kind.value, a.required) for a in phase_analyses(shadow)]
    assert kinds == [("error_rate", True), ("agreement", False), ("output_drift", False)]
    own = rollout(
        RolloutPhase.SHADOW,
        shadow={"min_duration": "1m"},
        analyses=[{"kind": "agreement", "params": {"min_agreement": 0.99}}],
    )
    assert [a.params for a in phase_analyses(own) if a.kind is AnalysisKind.AGREEMENT] == [{"min_agreement": 0.99}]
    canary = own.model_copy(update={"phase": RolloutPhase.CANARY})
    assert phase_analyses(canary) == []  # paired answers exist only in the shadow phase


def test_latency_informs_but_does_not_gate_in_the_shadow_phase() -> None:
    from mlpilot.records import AnalysisSpec
    from mlpilot.rollouts.analyses import AnalysisResult
    from mlpilot.rollouts.policy import gate as to_gate

    spec = AnalysisSpec(kind=AnalysisKind.LATENCY)
    slow = AnalysisResult("latency", "latency", FAIL, "body slower", {}, {})
    shadow = to_gate(rollout(RolloutPhase.SHADOW, shadow={"min_duration": "1m"}), spec, slow)
    assert (shadow.verdict, shadow.required) == (INC, False) and "not gating" in shadow.message
    live = to_gate(rollout(RolloutPhase.CANARY), spec, slow)
    assert (live.verdict, live.required) == (FAIL, True)
