"""Rollout scenarios on the virtual clock: the real controller, request log and store, simulated traffic at
100 requests/s. Each asserts the outcome, the traffic left behind, and that every transition is recorded once."""

from __future__ import annotations

from collections import Counter

import pytest

from mlpilot.records import RolloutPhase
from tests.integration.rollouts.conftest import Arm, World, settled

PERF = {"kind": "performance", "required": True}


def _no_duplicates(w: World, rollout_id: int) -> None:
    events = w.platform.rollouts.decisions(rollout_id)
    transitions = Counter(((e.before or {}).get("phase"), (e.before or {}).get("step"), e.action) for e in events)
    assert all(n == 1 for n in transitions.values()), transitions


def _serving(w: World) -> dict[str, int]:
    dep = w.platform.store.get_deployment(w.deployment)
    return dict(dep.spec.traffic)


@pytest.mark.slow
def test_an_equal_candidate_is_promoted_step_by_step(world: World) -> None:
    r = world.platform.rollouts.start(
        "iris",
        _spec("iris:2", steps=[10, 50, 100], analyses=[{"kind": "error_rate"}, {"kind": "latency"}, PERF]),
        "tester",
    )
    assert (r.phase, r.step, _serving(world)) == (RolloutPhase.CANARY, 0, {"iris-v1": 90, "iris-v2": 10})
    world.run(60 * 60, until_settled=True)
    r = settled(world)
    assert r.phase is RolloutPhase.PROMOTED, r.message
    assert _serving(world) == {"iris-v2": 100}  # the baseline variant is gone
    actions = [a for a, _ in world.phases(r.id)]
    assert actions == ["started", "begin", "advance", "advance", "promote", "complete"]
    _no_duplicates(world, r.id)
    promote = next(e for e in world.platform.rollouts.decisions(r.id) if e.action == "rollout.promote").after or {}
    perf = next(a for a in promote["analyses"] if a["kind"] == "performance")
    assert perf["verdict"] == "pass" and perf["statistics"]  # the decision record carries the statistics


def test_a_candidate_two_points_worse_at_ten_percent_is_rolled_back(world: World) -> None:
    world.arms["iris-v2"] = Arm(accuracy=0.90)
    r = world.platform.rollouts.start(
        "iris", _spec("iris:2", steps=[10, 100], duration="1h", analyses=[{"kind": "error_rate"}, PERF]), "tester"
    )
    started = world.clock.now()
    world.run(60 * 60, until_settled=True)
    r = settled(world)
    assert r.phase is RolloutPhase.ROLLED_BACK, r.message
    assert "performance failed" in r.message
    assert _serving(world) == {"iris-v1": 100}
    detected = (r.updated_at - started).total_seconds() / 60
    assert detected < 60  # typically 5-15 simulated minutes (see docs/rollouts.md)
    perf = next(a for a in (r.last_decision or {})["analyses"] if a["kind"] == "performance")
    assert perf["verdict"] == "fail" and perf["statistics"]["score_difference"]["upper"] < 0


def test_a_bug_on_one_segment_is_rolled_back(world: World) -> None:
    world.arms["iris-v2"] = Arm(segment_accuracy={"eu": 0.5})  # 10% of traffic, 42 points worse there
    r = world.platform.rollouts.start("iris", _spec("iris:2", steps=[10, 50, 100], analyses=[PERF]), "tester")
    world.run(60 * 60, until_settled=True)
    assert settled(world).phase is RolloutPhase.ROLLED_BACK
    _no_duplicates(world, r.id)


def test_a_p99_latency_regression_is_caught(world: World) -> None:
    world.arms["iris-v2"] = Arm(tail=1.3)  # p99 +30%, the median unchanged
    world.platform.rollouts.start(
        "iris", _spec("iris:2", steps=[10, 100], duration="1h", analyses=[{"kind": "latency"}]), "tester"
    )
    world.run(60 * 60, until_settled=True)
    r = settled(world)
    assert r.phase is RolloutPhase.ROLLED_BACK and "latency failed" in r.message


def test_a_bad_canary_at_ten_percent_is_detected_within_five_minutes(world: World) -> None:
    world.arms["iris-v2"] = Arm(error_rate=0.05)
    world.platform.rollouts.start("iris", _spec("iris:2", steps=[10, 100], duration="1h"), "tester")
    started = world.clock.now()
    world.run(5 * 60, until_settled=True)
    r = settled(world)
    assert r.phase is RolloutPhase.ROLLED_BACK and "error_rate failed" in r.message
    assert (r.updated_at - started).total_seconds() <= 5 * 60


def test_the_shadow_phase_stops_a_bad_candidate_before_anyone_sees_it(world: World) -> None:
    world.arms["iris-v2"] = Arm(segment_accuracy={"eu": 0.3})
    spec = _spec("iris:2", steps=[10, 100], analyses=[{"kind": "agreement", "params": {"min_agreement": 0.97}}])
    spec["shadow"] = {"min_duration": "5m", "min_samples": 500}
    r = world.platform.rollouts.start("iris", spec, "tester")
    assert r.phase is RolloutPhase.SHADOW
    assert world.platform.store.get_deployment("iris").spec.shadows == ["iris-v2"]
    world.run(30 * 60, until_settled=True)
    r = settled(world)
    assert r.phase is RolloutPhase.ROLLED_BACK and "agreement failed" in r.message
    assert world.platform.store.get_deployment("iris").spec.shadows == []
    live = world.platform.store.list_rollouts("iris")[0]
    assert live.step == 0 and [a for a, _ in world.phases(r.id)] == ["started", "begin", "rollback"]


@pytest.mark.slow
def test_blue_green_bakes_then_promotes(world: World) -> None:
    spec = _spec("iris:2", analyses=[{"kind": "error_rate"}, {"kind": "latency"}])
    spec.update(strategy="blue_green", bake="5m")
    world.run(5 * 60, rps=50)  # the baseline's traffic before the switch is the comparison
    r = world.platform.rollouts.start("iris", spec, "tester")
    assert r.phase is RolloutPhase.BAKE and _serving(world) == {"iris-v1": 0, "iris-v2": 100}
    world.run(30 * 60, rps=50, until_settled=True)
    assert settled(world).phase is RolloutPhase.PROMOTED
    assert _serving(world) == {"iris-v2": 100}


def test_blue_green_switches_back_on_errors(world: World) -> None:
    world.arms["iris-v2"] = Arm(error_rate=0.05)
    spec = _spec("iris:2", analyses=[{"kind": "error_rate"}])
    spec.update(strategy="blue_green", bake="10m")
    world.run(5 * 60)
    world.platform.rollouts.start("iris", spec, "tester")
    world.run(10 * 60, until_settled=True)
    assert settled(world).phase is RolloutPhase.ROLLED_BACK
    assert _serving(world) == {"iris-v1": 100}


def test_ab_stops_when_the_candidate_wins(world: World) -> None:
    world.arms["iris-v2"] = Arm(accuracy=0.96)
    spec = _spec("iris:2", analyses=[{"kind": "performance"}, {"kind": "error_rate"}])
    spec.update(strategy="ab", split=50, max_duration="2h")
    r = world.platform.rollouts.start("iris", spec, "tester")
    assert r.phase is RolloutPhase.EXPERIMENT and _serving(world) == {"iris-v1": 50, "iris-v2": 50}
    world.run(2 * 60 * 60, until_settled=True)
    r = settled(world)
    assert r.phase is RolloutPhase.PROMOTED and "the candidate won" in r.message, r.message


def test_ab_keeps_the_baseline_when_it_wins(world: World) -> None:
    world.arms["iris-v2"] = Arm(accuracy=0.88)
    spec = _spec("iris:2", analyses=[{"kind": "performance"}])
    spec.update(strategy="ab", split=50, max_duration="2h")
    world.platform.rollouts.start("iris", spec, "tester")
    world.run(2 * 60 * 60, until_settled=True)
    r = settled(world)
    assert r.phase is RolloutPhase.ROLLED_BACK and "the baseline won" in r.message
    assert _serving(world) == {"iris-v1": 100}


@pytest.mark.slow
def test_a_bandit_moves_traffic_to_the_best_arm_and_promotes_it(world: World) -> None:
    world.arms.update({"iris-v1": Arm(accuracy=0.80), "iris-v2": Arm(accuracy=0.85), "iris-v3": Arm(accuracy=0.95)})
    spec = {
        "candidate": "iris:2",
        "arms": ["iris:3"],
        "strategy": "bandit",
        "bandit": {"algorithm": "thompson", "update_every": "1m", "duration": "30m"},
        "analyses": [],
    }
    r = world.platform.rollouts.start("iris", spec, "tester")
    assert r.phase is RolloutPhase.EXPERIMENT and sum(_serving(world).values()) == 100
    world.run(20 * 60, rps=20)
    weights = _serving(world)
    assert weights["iris-v3"] == max(weights.values()) and weights["iris-v3"] >= 60, weights
    world.run(15 * 60, rps=20, until_settled=True)
    r = settled(world)
    assert r.phase is RolloutPhase.PROMOTED and r.state["winner"] == "iris-v3"
    assert _serving(world) == {"iris-v3": 100}
    reweights = [e for e in world.platform.rollouts.decisions(r.id) if e.action == "rollout.reweight"]
    assert len(reweights) >= 10 and "bandit" in (reweights[-1].after or {})


def _spec(candidate: str, steps: list[int] | None = None, duration: str = "2m", analyses: list | None = None) -> dict:
    out: dict = {"candidate": candidate}
    if steps is not None:
        out["steps"] = [{"weight": s, "min_duration": duration, "min_samples": 300} for s in steps]
    if analyses is not None:
        out["analyses"] = analyses
    return out


@pytest.mark.slow
def test_a_change_both_arms_share_over_time_is_not_read_as_a_regression(world: World) -> None:
    """Accuracy falls for everyone as the split moves 10 → 50 → 100% (a drifting population): the candidate's data
    are later on average than the baseline's, so pooled evidence would blame it. Compared within each step, it is
    promoted."""
    spec = _spec("iris:2", steps=[10, 50, 100], duration="3m", analyses=[PERF])
    r = world.platform.rollouts.start("iris", spec, "tester")
    for minute in range(60):
        acc = 0.97 - 0.006 * minute  # 0.97 → 0.79 in 30 minutes, the same for both arms
        world.arms["iris-v1"] = Arm(accuracy=acc)
        world.arms["iris-v2"] = Arm(accuracy=acc)
        world.run(60, rps=50, until_settled=True)
        if not world.rollout().active:
            break
    r = settled(world)
    assert r.phase is RolloutPhase.PROMOTED, r.message
    promote = next(e for e in world.platform.rollouts.decisions(r.id) if e.action == "rollout.promote").after or {}
    perf = next(a for a in promote["analyses"] if a["kind"] == "performance")
    assert perf["statistics"]["strata"] == 3 and "within periods" in perf["message"]
