"""Manual control, bad input, releases, aliases and a control-plane restart mid-rollout (on the virtual clock)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from mlpilot.app import build_platform
from mlpilot.errors import Conflict, InvalidArgument, NotFound, SignatureError
from mlpilot.records import RolloutPhase, RolloutSpec
from tests.integration.rollouts.conftest import Arm, World, settled


def _canary(**kw: Any) -> dict[str, Any]:
    return {
        "candidate": "iris:2",
        "steps": [{"weight": w, "min_duration": "2m", "min_samples": 100} for w in (10, 50, 100)],
        "analyses": [{"kind": "error_rate"}],
        **kw,
    }


def _state(w: World) -> tuple[int, int, int]:
    dep = w.platform.store.get_deployment("iris")
    return dep.revision, len(w.platform.store.list_rollouts("iris")), len(w.platform.store.list_events(limit=10_000))


def test_pause_holds_the_split_resume_continues_promote_and_abort(world: World) -> None:
    svc = world.platform.rollouts
    r = svc.start("iris", _canary(), "alice")
    r = svc.pause(r.id, "alice")
    assert r.phase is RolloutPhase.PAUSED and r.paused_phase is RolloutPhase.CANARY
    world.run(10 * 60, rps=30)
    r = svc.get(r.id)
    assert r.phase is RolloutPhase.PAUSED and world.platform.store.get_deployment("iris").spec.traffic["iris-v2"] == 10
    with pytest.raises(InvalidArgument, match="already paused"):
        svc.pause(r.id, "alice")
    r = svc.resume(r.id, "alice")
    assert r.phase is RolloutPhase.CANARY
    with pytest.raises(InvalidArgument, match="not paused"):
        svc.resume(r.id, "alice")
    r = svc.promote(r.id, "alice")
    assert (r.phase, r.active) == (RolloutPhase.PROMOTED, False)
    assert world.platform.store.get_deployment("iris").spec.traffic == {"iris-v2": 100}
    with pytest.raises(InvalidArgument, match="can no longer be changed"):
        svc.abort(r.id, "alice")
    actors = {e.action: e.actor for e in svc.decisions(r.id)}
    assert actors["rollout.pause"] == "alice" and actors["rollout.promote"] == "alice"

    r2 = svc.start("iris", _canary(candidate="iris:3"), "bob")
    assert world.platform.store.get_deployment("iris").spec.traffic == {"iris-v2": 90, "iris-v3": 10}
    r2 = svc.abort(r2.id, "bob")
    assert (r2.phase, r2.active) == (RolloutPhase.ABORTED, False)
    dep = world.platform.store.get_deployment("iris")
    assert dep.spec.traffic == {"iris-v2": 100} and [v.name for v in dep.spec.variants] == ["iris-v2"]


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"steps": [{"weight": 0}]}, ValidationError, "greater than or equal to 1"),
        ({"steps": [{"weight": 150}]}, ValidationError, "less than or equal to 100"),
        ({"steps": [{"weight": 50}, {"weight": 10}]}, InvalidArgument, "must increase"),
        ({"steps": []}, InvalidArgument, "at least one step"),
        ({"split": 100, "strategy": "ab"}, ValidationError, "less than or equal to 99"),
        ({"alpha": 0.9}, ValidationError, "less than 0.5"),
        ({"candidate": None}, InvalidArgument, "give a candidate model or a release"),
        ({"analyses": [{"kind": "latency", "params": {"bogus": 1}}]}, InvalidArgument, "bogus"),
        (
            {"analyses": [{"kind": "custom", "params": {"expression": "__import__('os')"}}]},
            InvalidArgument,
            "is not allowed in an expression",
        ),
        ({"analyses": [{"kind": "nope"}]}, ValidationError, "kind"),
        ({"candidate": "iris:1"}, InvalidArgument, "already serves"),
        ({"candidate": "iris:99"}, NotFound, "iris:99"),
        ({"candidate": "iris-ref:1"}, InvalidArgument, "is a dataset, but the baseline serves a model"),
        ({"baseline": "ghost"}, InvalidArgument, "not a live variant"),
        ({"variant": "iris-v1"}, InvalidArgument, "already has variant"),
        ({"release": {"model": "iris:2", "reference": "iris:3"}, "candidate": None}, InvalidArgument, "not a dataset"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    world: World, change: dict[str, Any], error: type[Exception], message: str
) -> None:
    import pandas as pd

    from mlpilot import Client

    with Client(settings=world.platform.settings) as c:
        c.register_dataset("iris-ref", pd.DataFrame({"x": [1.0, 2.0]}))
    before = _state(world)
    with pytest.raises(error, match=message):
        spec = RolloutSpec.model_validate(_canary(**change))
        world.platform.rollouts.start("iris", spec, "tester")
    assert _state(world) == before


def test_an_incompatible_candidate_and_a_second_rollout_are_refused(world: World) -> None:
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from mlpilot import Client

    X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    with Client(settings=world.platform.settings) as c:
        c.register_model("other", LogisticRegression().fit(X, [0, 1, 0, 1]), sample=X.head(2))
    before = _state(world)
    with pytest.raises(SignatureError, match="does not accept the requests"):
        world.platform.rollouts.start("iris", RolloutSpec.model_validate(_canary(candidate="other:1")), "tester")
    assert _state(world) == before
    with pytest.raises(NotFound, match="no deployment"):
        world.platform.rollouts.start("ghost", RolloutSpec.model_validate(_canary()), "tester")

    first = world.platform.rollouts.start("iris", RolloutSpec.model_validate(_canary()), "tester")
    before = _state(world)
    with pytest.raises(Conflict, match=f"already has rollout {first.id}"):
        world.platform.rollouts.start("iris", RolloutSpec.model_validate(_canary(candidate="iris:3")), "tester")
    assert _state(world) == before


@pytest.mark.slow
def test_a_restarted_control_plane_resumes_where_it_was(world: World) -> None:
    """A new platform on the same home (a restarted process) continues the rollout without repeating a step."""
    r = world.platform.rollouts.start("iris", RolloutSpec.model_validate(_canary()), "tester")
    world.run(3 * 60, rps=50)
    mid = world.platform.rollouts.get(r.id)
    assert mid.phase is RolloutPhase.CANARY and mid.step == 1
    world.platform.close()
    world.platform = build_platform(world.platform.settings, clock=world.clock)
    again = world.platform.rollouts.get(r.id)
    assert (again.phase, again.step, again.revision) == (mid.phase, mid.step, mid.revision)
    assert world.platform.rollouts.tick() == []  # nothing is due yet: no transition repeated
    world.run(30 * 60, rps=50, until_settled=True)
    assert settled(world).phase is RolloutPhase.PROMOTED
    assert [a for a, _ in world.phases(r.id)] == ["started", "begin", "advance", "advance", "promote", "complete"]


@pytest.mark.slow
def test_two_controllers_ticking_at_once_record_each_transition_once(world: World) -> None:
    other = build_platform(world.platform.settings, clock=world.clock)
    try:
        r = world.platform.rollouts.start("iris", RolloutSpec.model_validate(_canary()), "tester")
        for _ in range(40):
            world.serve(750, 15)
            for p in (world.platform, other):
                p.rollouts.tick()
        assert settled(world).phase is RolloutPhase.PROMOTED
        assert [a for a, _ in world.phases(r.id)] == ["started", "begin", "advance", "advance", "promote", "complete"]
    finally:
        other.close()


@pytest.mark.slow
def test_a_release_goes_live_with_its_reference_and_moves_the_alias(world: World) -> None:
    import pandas as pd

    from mlpilot import Client

    with Client(settings=world.platform.settings) as c:
        ref = c.register_dataset("iris-ref", pd.DataFrame({"x": [1.0, 2.0]}))
    spec = _canary(candidate=None, release={"model": "iris:2", "reference": ref.ref}, promote_alias="production")
    r = world.platform.rollouts.start("iris", RolloutSpec.model_validate(spec), "tester")
    assert [(x.number, x.status) for x in world.platform.store.list_releases("iris")] == [(1, "candidate")]
    world.run(30 * 60, rps=50, until_settled=True)
    assert settled(world).phase is RolloutPhase.PROMOTED
    assert [(x.number, x.status) for x in world.platform.store.list_releases("iris")] == [(1, "live")]
    v2 = world.platform.store.get_version("iris:2")
    assert v2.bindings["reference"] == ref.ref and "production" in v2.aliases

    world.arms["iris-v3"] = Arm(error_rate=0.2)
    spec = _canary(candidate=None, release={"model": "iris:3"}, promote_alias="production")
    world.platform.rollouts.start("iris", RolloutSpec.model_validate(spec), "tester")
    world.run(30 * 60, rps=50, until_settled=True)
    assert settled(world).phase is RolloutPhase.ROLLED_BACK
    statuses = [(x.number, x.status) for x in world.platform.store.list_releases("iris")]
    assert statuses == [(2, "rolled_back"), (1, "live")]
    assert "production" in world.platform.store.get_version("iris:2").aliases  # the alias did not move
    assert r.id != world.rollout().id


def test_unknown_rollouts_are_not_found(world: World) -> None:
    with pytest.raises(NotFound, match="no rollout 42"):
        world.platform.rollouts.pause(42, "x")
    with pytest.raises(NotFound, match="has no rollout"):
        world.platform.rollouts.current("iris")


def test_a_live_release_is_rolled_back_as_one_unit(world: World) -> None:
    import pandas as pd

    from mlpilot import Client
    from mlpilot.errors import FailedPrecondition

    svc = world.platform.rollouts
    with Client(settings=world.platform.settings) as c:
        ref1 = c.register_dataset("iris-ref", pd.DataFrame({"x": [1.0, 2.0]}))
        ref2 = c.register_dataset("iris-ref", pd.DataFrame({"x": [3.0, 4.0]}))
    with pytest.raises(FailedPrecondition, match="no live release"):
        svc.rollback_release("iris", "ops")
    for model, ref in (("iris:2", ref1.ref), ("iris:3", ref2.ref)):
        r = svc.start("iris", _canary(candidate=None, release={"model": model, "reference": ref}), "ops")
        svc.promote(r.id, "ops")
    assert [(x.number, x.status) for x in world.platform.store.list_releases("iris")] == [
        (2, "live"),
        (1, "superseded"),
    ]
    before = len(world.platform.store.list_rollouts("iris"))

    back = svc.rollback_release("iris", "ops")
    assert (back.phase, back.active) == (RolloutPhase.PROMOTED, False)
    assert world.platform.store.get_deployment("iris").spec.traffic == {"iris-v2": 100}
    assert [(x.number, x.status) for x in world.platform.store.list_releases("iris")] == [
        (2, "rolled_back"),
        (1, "live"),
    ]
    assert world.platform.store.get_version("iris:2").bindings["reference"] == ref1.ref
    assert len(world.platform.store.list_rollouts("iris")) == before + 1  # recorded as a rollout, with decisions
    with pytest.raises(InvalidArgument, match="is the live one"):
        svc.rollback_release("iris", "ops", to=1)
    with pytest.raises(NotFound, match="has no release 7"):
        svc.rollback_release("iris", "ops", to=7)


def test_a_rollout_settles_only_once_its_split_is_applied(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A concurrent deployment change makes the rollback's traffic change fail once: the rollout stays active (in its
    final phase) and the next tick applies the split, then settles."""
    svc = world.platform.rollouts
    r = svc.start("iris", RolloutSpec.model_validate(_canary()), "tester")
    real_apply = world.platform.deployments.apply
    calls = {"n": 0}

    def racing_apply(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise Conflict("deployment 'iris' changed meanwhile")
        return real_apply(*args, **kwargs)

    monkeypatch.setattr(world.platform.deployments, "apply", racing_apply)
    r = svc.abort(r.id, "tester")
    assert (r.phase, r.active) == (RolloutPhase.ABORTED, True)
    assert world.platform.store.get_deployment("iris").spec.traffic["iris-v2"] == 10  # not applied yet
    svc.tick()
    r = svc.get(r.id)
    assert (r.phase, r.active) == (RolloutPhase.ABORTED, False)
    assert world.platform.store.get_deployment("iris").spec.traffic == {"iris-v1": 100}
