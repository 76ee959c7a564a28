"""The actuator against a real embedded platform (SQLite store, registry, deployments, rollout controller, request
log; sklearn models, a local-embedder index and LLM apps registered for real): every action kind plans, applies,
changes what it should, records events with the actor, and its inverse restores the previous state; the refusals
are the right error kinds with messages that say why."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlpilot.app import Platform, build_platform
from mlpilot.clock import VirtualClock
from mlpilot.errors import FailedPrecondition, InvalidArgument, MlpilotError, NotFound
from mlpilot.incidents.actuator import Applied, PlatformActuator
from mlpilot.incidents.healing import ACTIONS, Action
from mlpilot.records import DeploymentSpec
from mlpilot.serving.dataplane import DataPlane, InferenceRecord
from mlpilot.settings import Settings
from mlpilot.telemetry.reqlog import RequestLog
from tests.factories import iris_frame

START = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)
ACTOR = "healer"
PRIMARY = {"name": "primary", "base_url": "http://127.0.0.1:9/v1", "model": "big"}
SECONDARY = {"name": "secondary", "base_url": "http://127.0.0.1:10/v1", "model": "small"}


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with everything registered once (copied per test): iris:1..3, prompt greet:1..2 (greet@prod moved
    1 → 2), index kb:1..2 (kb@prod → 1), app helper:1 (greet@prod, kb@prod, primary with fallback secondary)."""
    from sklearn.linear_model import LogisticRegression

    from mlpilot import Client

    home = tmp_path_factory.mktemp("actuator") / "home"
    X, y = iris_frame()
    docs = [{"id": "a", "text": "Refunds take five days."}, {"id": "b", "text": "Parcels ship from Berlin."}]
    with Client(home=home, actor="tester") as c:
        for C in (1.0, 0.5, 0.25):
            c.register_model("iris", LogisticRegression(C=C, max_iter=300).fit(X, y), sample=X.head(3))
        for text in ("Answer: {{question}}", "Answer briefly: {{question}}"):
            c.register_prompt("greet", {"type": "chat", "template": [{"role": "user", "content": text}]})
        c.set_alias("greet", "prod", 1)
        c.set_alias("greet", "prod", 2)
        c.build_index("kb", docs)
        c.build_index("kb", [*docs, {"id": "c", "text": "Returns are free."}])
        c.set_alias("kb", "prod", 1)
        c.register_app(
            "helper",
            {
                "prompt": "greet@prod",
                "retriever": {"index": "kb@prod", "k": 1},
                "generator": {**PRIMARY, "fallback": SECONDARY},
            },
        )
    return home


@pytest.fixture
def platform(seed: Path, tmp_path: Path) -> Iterator[Platform]:
    home = tmp_path / "home"
    shutil.copytree(seed, home)
    p = build_platform(Settings(home=home), clock=VirtualClock(START))
    try:
        yield p
    finally:
        p.close()


@pytest.fixture
def act(platform: Platform) -> PlatformActuator:
    return PlatformActuator(platform.store, platform.deployments, platform.rollouts, platform.registry, platform.clock)


def _apply(act: PlatformActuator, dep: str, action: Action) -> Applied:
    applied = act.apply(dep, action, ACTOR)
    events = act.store.list_events(limit=1000)
    assert applied.event_ids, f"{action.describe()} recorded no event"
    by_id = {e.id: e for e in events}
    assert all(by_id[i].actor in (ACTOR, "mlpilot-rollouts") for i in applied.event_ids)
    assert any(by_id[i].actor == ACTOR for i in applied.event_ids)
    return applied


def _undo(act: PlatformActuator, dep: str, applied: Applied) -> Applied:
    assert applied.inverse is not None
    return _apply(act, dep, applied.inverse)


def _traffic(p: Platform, dep: str) -> dict[str, int]:
    return dict(p.store.get_deployment(dep).spec.traffic)


def _two_variants(p: Platform, dep: str = "iris") -> None:
    p.deployments.deploy(dep, "iris:1", "tester", variant="stable")
    p.deployments.deploy(dep, "iris:2", "tester", variant="canary")
    p.deployments.set_traffic(dep, {"stable": 90, "canary": 10}, "tester")


def test_shift_traffic_and_disable_variant_and_their_inverses(platform: Platform, act: PlatformActuator) -> None:
    _two_variants(platform)
    shift = Action("shift_traffic", "variant:canary", {"to": "stable"})
    plan = act.plan("iris", shift)
    assert plan.blast_radius == pytest.approx(0.1) and plan.before == {"traffic": {"stable": 90, "canary": 10}}
    applied = _apply(act, "iris", shift)
    assert _traffic(platform, "iris") == {"stable": 100, "canary": 0}
    assert applied.after == {"traffic": {"stable": 100, "canary": 0}, "shadows": []}
    assert applied.inverse == Action("shift_traffic", "variant:canary", {"traffic": {"stable": 90, "canary": 10}})
    _undo(act, "iris", applied)
    assert _traffic(platform, "iris") == {"stable": 90, "canary": 10}

    full = _apply(act, "iris", Action("shift_traffic", "traffic:iris", {"traffic": {"stable": 50, "canary": 50}}))
    assert _traffic(platform, "iris") == {"stable": 50, "canary": 50} and full.before["traffic"]["stable"] == 90
    _undo(act, "iris", full)

    disable = Action("disable_variant", "variant:canary")
    assert act.plan("iris", disable).blast_radius == pytest.approx(0.1)
    applied = _apply(act, "iris", disable)
    assert _traffic(platform, "iris") == {"stable": 100, "canary": 0}
    _undo(act, "iris", applied)
    assert _traffic(platform, "iris") == {"stable": 90, "canary": 10}

    platform.deployments.deploy("iris", "iris:3", "tester", variant="third")
    platform.deployments.set_traffic("iris", {"stable": 50, "canary": 30, "third": 20}, "tester")
    _apply(act, "iris", Action("disable_variant", "variant:canary"))
    assert _traffic(platform, "iris") == {"stable": 71, "canary": 0, "third": 29}  # proportionally to the others

    platform.deployments.set_traffic("iris", {"stable": 100}, "tester")
    with pytest.raises(FailedPrecondition, match="'stable' is the only live variant of 'iris'"):
        act.plan("iris", Action("disable_variant", "variant:stable"))
    with pytest.raises(NotFound, match="has no variant 'ghost'; its variants are"):
        act.plan("iris", Action("disable_variant", "variant:ghost"))
    with pytest.raises(NotFound, match="no variant 'ghost'"):
        act.plan("iris", Action("shift_traffic", "variant:x", {"to": "ghost"}))
    with pytest.raises(InvalidArgument, match="weights must sum to 100"):
        act.plan("iris", Action("shift_traffic", "variant:x", {"traffic": {"stable": 60}}))
    with pytest.raises(InvalidArgument, match=r"either params\.traffic"):
        act.plan("iris", Action("shift_traffic", "variant:x"))
    with pytest.raises(InvalidArgument, match="targets variant:NAME"):
        act.plan("iris", Action("disable_variant", "feature:amount"))
    with pytest.raises(NotFound, match="no deployment named 'nope'"):
        act.plan("nope", Action("disable_variant", "variant:stable"))
    noop = act.apply("iris", Action("disable_variant", "variant:canary"), ACTOR)  # already at 0: nothing to do
    assert noop.after == noop.before and noop.event_ids == []

    platform.deployments.deploy("iris", "iris:3", "tester", variant="mirror", shadow=True)
    applied = _apply(act, "iris", Action("disable_variant", "variant:mirror"))  # a shadow stops mirroring
    assert platform.store.get_deployment("iris").spec.shadows == [] and applied.before["shadows"] == ["mirror"]
    _undo(act, "iris", applied)
    assert platform.store.get_deployment("iris").spec.shadows == ["mirror"]


def test_scale_and_restart_runtime(platform: Platform, act: PlatformActuator) -> None:
    _two_variants(platform)
    applied = _apply(act, "iris", Action("scale", "variant:stable", {"replicas": 3}))
    assert applied.before == {"replicas": 1} and applied.after == {"replicas": 3}
    variants = {v.name: v for v in platform.store.get_deployment("iris").spec.variants}
    assert variants["stable"].runtime.replicas == 3 and variants["canary"].runtime.replicas == 1
    assert variants["stable"].runtime.batching == variants["canary"].runtime.batching  # the rest kept
    _undo(act, "iris", applied)
    assert platform.store.get_deployment("iris").spec.variants[0].runtime.replicas == 1
    _apply(act, "iris", Action("scale", "variant:stable", {"factor": 2.5}))
    assert platform.store.get_deployment("iris").spec.variants[0].runtime.replicas == 3
    with pytest.raises(InvalidArgument, match=r"replicas must be 1\.\.1024, got 0"):
        act.plan("iris", Action("scale", "variant:stable", {"replicas": 0}))

    async def reload() -> tuple[bool, bool, int]:
        dp = DataPlane(platform.blobs, unload_grace_s=0.0)
        try:
            await dp.apply(platform.deployments.snapshot())
            old = dict(dp.deployment("iris").variants)
            restart = act.plan("iris", Action("restart_runtime", "variant:stable"))
            assert restart.blast_radius == pytest.approx(0.9) and restart.before == {"generation": 0}
            applied = _apply(act, "iris", Action("restart_runtime", "variant:stable"))
            assert applied.inverse is None and applied.after == {"generation": 1}
            await dp.apply(platform.deployments.snapshot())
            new = dp.deployment("iris").variants
            return new["stable"] is not old["stable"], new["canary"] is old["canary"], new["stable"].route.generation
        finally:
            await dp.close()

    reloaded, kept, generation = asyncio.run(reload())
    assert reloaded and kept and generation == 1  # only the restarted variant's runtime was loaded anew


def test_revert_config_keeps_traffic_models_and_quarantine(platform: Platform, act: PlatformActuator) -> None:
    _two_variants(platform)
    with pytest.raises(FailedPrecondition, match="configuration of 'iris' never changed"):
        act.plan("iris", Action("revert_config", "config:iris"))
    dep = platform.store.get_deployment("iris")
    good = dep.revision
    bad = {"batching": None, "timeout_s": 0.5, "replicas": 1}
    variants = [{**v.model_dump(), "runtime": bad} if v.name == "stable" else v.model_dump() for v in dep.spec.variants]
    bad_spec = DeploymentSpec.model_validate({**dep.spec.model_dump(), "variants": variants})
    platform.deployments.apply("iris", bad_spec, "tester")  # the bad configuration change
    platform.deployments.set_traffic("iris", {"stable": 80, "canary": 20}, "tester")  # a later, unrelated change
    _apply(act, "iris", Action("restart_runtime", "variant:stable"))
    plan = act.plan("iris", Action("revert_config", "config:iris"))
    assert plan.before == {"revision": good + 3} and plan.blast_radius == pytest.approx(0.8)
    assert f"revision {good}" in plan.description
    applied = _apply(act, "iris", Action("revert_config", "config:iris"))
    now = platform.store.get_deployment("iris")
    stable = next(v for v in now.spec.variants if v.name == "stable")
    assert stable.runtime.timeout_s == 30.0 and stable.runtime.batching is not None
    assert stable.runtime.generation == 1  # a restart is not configuration
    assert now.spec.traffic == {"stable": 80, "canary": 20}  # traffic stays
    assert applied.inverse == Action("revert_config", "config:iris", {"revision": good + 3})
    _undo(act, "iris", applied)
    stable = next(v for v in platform.store.get_deployment("iris").spec.variants if v.name == "stable")
    assert stable.runtime.timeout_s == 0.5 and stable.runtime.batching is None
    with pytest.raises(NotFound, match="has no revision 99"):
        act.plan("iris", Action("revert_config", "config:iris", {"revision": 99}))
    with pytest.raises(InvalidArgument, match="targets config:iris"):
        act.plan("iris", Action("revert_config", "config:other"))


def _start(p: Platform, dep: str, model: str) -> int:
    spec = {"candidate": model, "steps": [{"weight": 20}, {"weight": 100}], "analyses": []}
    return p.rollouts.start(dep, spec, "tester").id


def test_abort_rollout_and_traffic_actions_during_a_rollout(platform: Platform, act: PlatformActuator) -> None:
    platform.deployments.deploy("iris", "iris:1", "tester", variant="stable")
    with pytest.raises(FailedPrecondition, match="'iris' has no running rollout to abort"):
        act.plan("iris", Action("abort_rollout", "variant:stable"))
    rid = _start(platform, "iris", "iris:2")
    assert _traffic(platform, "iris") == {"stable": 80, "iris-v2": 20}
    abort = Action("abort_rollout", "variant:iris-v2")
    plan = act.plan("iris", abort)
    assert plan.blast_radius == pytest.approx(0.2) and plan.before == {"traffic": {"stable": 80, "iris-v2": 20}}
    applied = _apply(act, "iris", abort)
    r = platform.rollouts.get(rid)
    assert not r.active and r.phase.value == "aborted"
    assert _traffic(platform, "iris") == {"stable": 100}  # the candidate left the deployment
    rollout_events = [e for e in platform.store.list_events(subject=f"rollout:{rid}") if e.id in applied.event_ids]
    assert rollout_events and rollout_events[0].actor == ACTOR
    _undo(act, "iris", applied)  # the inverse brings the candidate back from the deployment's history
    assert _traffic(platform, "iris") == {"stable": 80, "iris-v2": 20}
    assert next(v.model for v in platform.store.get_deployment("iris").spec.variants if v.name == "iris-v2") == "iris:2"

    platform.deployments.set_traffic("iris", {"stable": 100}, "tester")
    rid = _start(platform, "iris", "iris:3")
    with pytest.raises(FailedPrecondition, match="'iris-v2' takes no part in rollout"):
        act.plan("iris", Action("abort_rollout", "variant:iris-v2"))
    with pytest.raises(NotFound, match="no rollout"):
        act.plan("iris", Action("abort_rollout", "rollout:999"))
    # shifting traffic during a rollout aborts it first, so the controller does not put its split back
    _apply(act, "iris", Action("shift_traffic", "variant:iris-v3", {"to": "stable"}))
    assert not platform.rollouts.get(rid).active
    platform.rollouts.tick()
    assert _traffic(platform, "iris") == {"stable": 100, "iris-v2": 0}
    with pytest.raises(FailedPrecondition, match=f"rollout {rid} of 'iris' is aborted; it is not running"):
        act.plan("iris", Action("abort_rollout", f"rollout:{rid}"))

    rid = _start(platform, "iris", "iris:3")
    applied = _apply(act, "iris", Action("disable_variant", "variant:iris-v3"))  # a candidate: abort the rollout
    assert not platform.rollouts.get(rid).active and "iris-v3" not in _traffic(platform, "iris")


def test_rollback_release_and_back(platform: Platform, act: PlatformActuator) -> None:
    platform.deployments.deploy("shop", "iris:1", "tester", variant="v")
    with pytest.raises(FailedPrecondition, match="'shop' has no release history and its models never changed"):
        act.plan("shop", Action("rollback_release", "release:shop"))
    for model in ("iris:2", "iris:3"):
        spec = {"release": {"model": model}, "steps": [{"weight": 100}], "analyses": []}
        r = platform.rollouts.start("shop", spec, "tester")
        platform.rollouts.promote(r.id, "tester")
    with pytest.raises(FailedPrecondition, match="abort it before rolling back"):
        _start(platform, "shop", "iris:1")
        act.plan("shop", Action("rollback_release", "release:shop"))
    platform.rollouts.abort(platform.rollouts.current("shop").id, "tester")
    served = lambda: [v.model for v in platform.store.get_deployment("shop").spec.variants]  # noqa: E731
    assert served() == ["iris:3"]
    plan = act.plan("shop", Action("rollback_release", "release:shop"))
    assert plan.before == {"release": 2} and plan.blast_radius == 1.0
    applied = _apply(act, "shop", Action("rollback_release", "release:shop"))
    status = lambda: {r.number: r.status for r in platform.store.list_releases("shop")}  # noqa: E731
    assert served() == ["iris:2"] and status() == {1: "live", 2: "rolled_back"}
    assert applied.inverse == Action("rollback_release", "release:shop", {"to": 2})
    _undo(act, "shop", applied)
    assert served() == ["iris:3"] and status() == {1: "rolled_back", 2: "live"}
    with pytest.raises(FailedPrecondition, match="there is no earlier release to go back to"):
        act.plan("shop", Action("rollback_release", "release:shop"))
    with pytest.raises(NotFound, match="has no release 7"):
        act.plan("shop", Action("rollback_release", "release:shop", {"to": 7}))
    with pytest.raises(InvalidArgument, match="targets release:shop"):
        act.plan("shop", Action("rollback_release", "release:other"))
    route = {"high": 9.0, "mode": "route", "variant": "iris-v3"}  # to the variant a rollback would replace
    _apply(act, "shop", Action("quarantine_inputs", "feature:sepal_length", route))
    with pytest.raises(FailedPrecondition, match="routes to 'iris-v3', which the rollback replaces"):
        act.plan("shop", Action("rollback_release", "release:shop", {"to": 1}))


def test_rollback_release_of_a_deployment_without_releases(platform: Platform, act: PlatformActuator) -> None:
    """Plain deploys make no releases: the models of the revision before the last model change come back."""
    p = platform
    p.deployments.deploy("shop", "iris:1", "tester", variant="main")
    p.deployments.deploy("shop", "iris:1", "tester", variant="side")
    p.deployments.set_traffic("shop", {"main": 70, "side": 30}, "tester")
    p.deployments.deploy("shop", "iris:2", "tester", variant="main")  # the new model
    _apply(act, "shop", Action("quarantine_inputs", "feature:sepal_length", {"high": 9.0}))  # a later change
    models = lambda: {v.name: v.model for v in p.store.get_deployment("shop").spec.variants}  # noqa: E731
    plan = act.plan("shop", Action("rollback_release", "release:shop"))
    assert plan.before == {"models": {"main": "iris:2"}} and plan.blast_radius == pytest.approx(0.7)
    assert "main iris:2 → iris:1" in plan.description
    applied = _apply(act, "shop", Action("rollback_release", "release:shop"))
    dep = p.store.get_deployment("shop")
    assert models() == {"main": "iris:1", "side": "iris:1"} and dep.spec.traffic == {"main": 70, "side": 30}
    assert [r.feature for r in dep.spec.quarantine] == ["sepal_length"]  # what else changed stays
    assert applied.inverse == Action("rollback_release", "release:shop", {"models": {"main": "iris:2"}})
    _undo(act, "shop", applied)
    assert models() == {"main": "iris:2", "side": "iris:1"}
    for params, message in (
        ({"models": {"ghost": "iris:1"}}, "has no variants \\['ghost'\\]"),
        ({"models": ["iris:1"]}, "params.models is"),
    ):
        with pytest.raises(InvalidArgument, match=message):
            act.plan("shop", Action("rollback_release", "release:shop", params))
    with pytest.raises(NotFound):
        act.apply("shop", Action("rollback_release", "release:shop", {"models": {"main": "iris:9"}}), ACTOR)
    assert models() == {"main": "iris:2", "side": "iris:1"}


def test_rollback_alias_of_a_model(platform: Platform, act: PlatformActuator) -> None:
    platform.deployments.deploy("iris", "iris:1", "tester")
    platform.store.set_alias("iris", "champion", 1, "tester")
    with pytest.raises(FailedPrecondition, match="no earlier version to roll back to"):
        act.plan("iris", Action("rollback_alias", "model:iris@champion"))
    platform.store.set_alias("iris", "champion", 3, "tester")
    plan = act.plan("iris", Action("rollback_alias", "model:iris@champion"))
    assert plan.before == {"version": 3} and plan.blast_radius == 0.0 and "pinned" in plan.description
    applied = _apply(act, "iris", Action("rollback_alias", "model:iris@champion"))
    assert platform.store.get_artifact("iris").aliases["champion"] == 1
    _undo(act, "iris", applied)
    assert platform.store.get_artifact("iris").aliases["champion"] == 3
    with pytest.raises(NotFound, match="has no alias 'gold'"):
        act.plan("iris", Action("rollback_alias", "model:iris@gold"))
    with pytest.raises(InvalidArgument, match="'iris' is a model, not a prompt"):
        act.plan("iris", Action("rollback_alias", "prompt:iris@champion"))
    with pytest.raises(NotFound, match="version 9"):
        act.plan("iris", Action("rollback_alias", "model:iris@champion", {"version": 9}))


def _log_inputs(p: Platform, dep: str, lengths: np.ndarray) -> None:
    log = RequestLog(p.settings.log_root())
    log.start()
    t0 = p.clock.now().timestamp() - 600
    for i, x in enumerate(lengths):
        frame = pd.DataFrame(
            {"sepal_length": [float(x)], "sepal_width": [3.0], "petal_length": [1.4], "petal_width": [0.2]}
        )
        log.append(InferenceRecord(ts=t0 + i, request_id=uuid.uuid4().hex, deployment=dep, variant="stable",
                                   model="iris:1", status="ok", latency_s=0.01, inputs=frame,
                                   outputs={"predict": np.array([0])}))  # fmt: skip
    log.stop()


def test_quarantine_inputs_reject_route_lift(platform: Platform, act: PlatformActuator) -> None:
    _two_variants(platform)
    reject = Action(
        "quarantine_inputs", "feature:sepal_length", {"high": 7.0, "mode": "reject", "reason": "incident 4"}
    )
    plan = act.plan("iris", reject)
    assert plan.blast_radius == 1.0 and "no rows logged" in plan.description  # nothing to estimate from
    _log_inputs(platform, "iris", np.r_[np.full(70, 5.0), np.full(30, 8.0)])
    plan = act.plan("iris", reject)
    assert plan.blast_radius == pytest.approx(0.3) and plan.before == {"quarantine": []}
    applied = _apply(act, "iris", reject)
    rules = platform.store.get_deployment("iris").spec.quarantine
    assert [(r.feature, r.high, r.action, r.reason) for r in rules] == [("sepal_length", 7.0, "reject", "incident 4")]
    route = platform.deployments.snapshot().deployments["iris"].quarantine
    assert route[0].feature == "sepal_length" and route[0].high == 7.0
    routed = Action("quarantine_inputs", "feature:petal_width", {"nulls": True, "mode": "route", "variant": "canary"})
    _apply(act, "iris", routed)
    assert [r.action for r in platform.store.get_deployment("iris").spec.quarantine] == ["reject", "route"]

    assert applied.inverse == Action("quarantine_inputs", "feature:sepal_length", {"lift": True})
    lifted = _undo(act, "iris", applied)
    assert [r.feature for r in platform.store.get_deployment("iris").spec.quarantine] == ["petal_width"]
    assert lifted.inverse == Action(
        "quarantine_inputs", "feature:sepal_length", {"mode": "reject", "high": 7.0, "reason": "incident 4"}
    )
    _undo(act, "iris", lifted)  # the lift's inverse puts the rule back
    assert [r.feature for r in platform.store.get_deployment("iris").spec.quarantine] == ["petal_width", "sepal_length"]

    for params, kind, message in (
        ({"high": 1, "mode": "route", "variant": "ghost"}, InvalidArgument, "routes to variant 'ghost'"),
        ({"high": 1, "mode": "drop"}, InvalidArgument, "mode must be reject or route"),
        ({"high": 1, "low": 2}, InvalidArgument, "low 2 is above high 1"),
        ({"allowed": ["setosa"]}, InvalidArgument, "allowed values must be numbers"),
        ({}, InvalidArgument, "exactly one condition"),
    ):
        with pytest.raises(kind, match=message):
            act.plan("iris", Action("quarantine_inputs", "feature:sepal_length", params))
    with pytest.raises(InvalidArgument, match="no such input of variant 'stable'"):
        act.plan("iris", Action("quarantine_inputs", "feature:amount", {"high": 1}))
    revision = platform.store.get_deployment("iris").revision
    with pytest.raises(MlpilotError):
        act.apply("iris", Action("quarantine_inputs", "feature:amount", {"high": 1}), ACTOR)
    assert platform.store.get_deployment("iris").revision == revision  # a refused action writes nothing


def test_llm_app_actions(platform: Platform, act: PlatformActuator) -> None:
    platform.deployments.deploy("bot", "helper:1", "tester", variant="main")
    store = platform.store

    plan = act.plan("bot", Action("switch_index_alias", "index:kb@prod", {"version": 2}))
    assert plan.blast_radius == 1.0 and plan.before == {"version": 1}
    version_before = store.snapshot_version()
    applied = _apply(act, "bot", Action("switch_index_alias", "index:kb@prod", {"version": 2}))
    assert store.get_artifact("kb").aliases["prod"] == 2 and store.snapshot_version() > version_before
    bound = platform.deployments.snapshot().deployments["bot"].variants[0].model.flavor_metadata["bindings"]
    assert bound["index"]["ref"] == "kb:2"  # what the data plane loads moved with the alias
    _undo(act, "bot", applied)
    assert store.get_artifact("kb").aliases["prod"] == 1
    with pytest.raises(InvalidArgument, match=r"needs params\.version"):
        act.plan("bot", Action("switch_index_alias", "index:kb@prod"))
    with pytest.raises(InvalidArgument, match="targets index:NAME"):
        act.plan("bot", Action("switch_index_alias", "prompt:greet@prod", {"version": 1}))

    applied = _apply(act, "bot", Action("rollback_alias", "prompt:greet@prod"))  # back to where it was: 1
    assert applied.before == {"version": 2} and store.get_artifact("greet").aliases["prod"] == 1
    _undo(act, "bot", applied)
    assert store.get_artifact("greet").aliases["prod"] == 2

    model = lambda: store.get_deployment("bot").spec.variants[0].model  # noqa: E731
    generator = lambda: store.get_version(model()).metadata["app"]["generator"]["backend"]  # noqa: E731
    failover = act.plan("bot", Action("failover_backend", "provider:primary"))
    assert failover.before == {"app": "helper:1", "variant": "main"} and failover.blast_radius == 1.0
    applied = _apply(act, "bot", Action("failover_backend", "provider:primary"))
    assert model() == "helper:2" and applied.after == {"app": "helper:2", "variant": "main"}
    assert generator()["name"] == "secondary" and "fallback" not in generator()
    new = store.get_version("helper:2")
    assert new.parents == ["helper:1"] and new.metadata["app"]["prompt"] == "greet@prod"  # the rest is kept
    assert applied.inverse == Action("failover_backend", "provider:primary", {"restore": "helper:1"})
    _undo(act, "bot", applied)
    assert model() == "helper:1"

    applied = _apply(act, "bot", Action("pin_backend", "provider:primary"))
    assert model() == "helper:3" and generator()["name"] == "primary" and "fallback" not in generator()
    with pytest.raises(FailedPrecondition, match="'primary' of helper:3 has no fallback to fail over to"):
        act.plan("bot", Action("failover_backend", "provider:primary"))
    with pytest.raises(NotFound, match="no variant of 'bot' generates with backend 'secondary'"):
        act.plan("bot", Action("pin_backend", "provider:secondary"))
    _undo(act, "bot", applied)
    assert model() == "helper:1"

    platform.deployments.deploy("iris", "iris:1", "tester")
    with pytest.raises(FailedPrecondition, match="serves models, not LLM apps"):
        act.plan("iris", Action("failover_backend", "provider:primary"))
    with pytest.raises(InvalidArgument, match="quarantine rules check the inputs of model deployments"):
        act.plan("bot", Action("quarantine_inputs", "feature:question", {"nulls": True}))


def test_notify_changes_nothing_and_every_kind_has_a_handler(platform: Platform, act: PlatformActuator) -> None:
    routed = {"rollback_alias", "switch_index_alias", "failover_backend", "pin_backend"}  # share a method
    assert all(kind in routed or hasattr(act, f"_{kind}") for kind in ACTIONS)
    platform.deployments.deploy("iris", "iris:1", "tester")
    revision = platform.store.get_deployment("iris").revision
    plan = act.plan("iris", Action("notify", "concept:iris"))
    assert plan.blast_radius == 0.0 and plan.before == {}
    applied = act.apply("iris", Action("notify", "concept:iris"), ACTOR)
    assert applied.inverse is None and applied.event_ids == [] and applied.after == {}
    assert platform.store.get_deployment("iris").revision == revision
