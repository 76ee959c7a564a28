"""The store's rollout and release methods on SQLite and the real PostgreSQL: one active rollout per deployment,
compare-and-set transitions each recorded once, settling, releases numbered per deployment."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

import pytest

from mlpilot.clock import VirtualClock
from mlpilot.errors import Conflict, NotFound
from mlpilot.records import Rollout, RolloutPhase, RolloutSpec
from tests.conftest import StoreMaker

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)


def _rollout(deployment: str = "iris") -> Rollout:
    return Rollout(
        id=0,
        deployment=deployment,
        spec=RolloutSpec(candidate="iris:2"),
        phase=RolloutPhase.PENDING,
        baseline="iris-v1",
        candidate="iris-v2",
        started_at=T0,
        phase_started_at=T0,
        step_started_at=T0,
        updated_at=T0,
        revision=1,
        created_by="ann",
        state={"original": {"iris-v1": 100}},
    )


def test_one_active_rollout_and_compare_and_set_transitions(store_factory: StoreMaker) -> None:
    store = store_factory(VirtualClock(T0))
    r = store.create_rollout(_rollout(), "ann", {"why": "test"})
    assert (r.id, r.revision, r.active, r.phase) == (1, 1, True, RolloutPhase.PENDING)
    assert r.spec.candidate == "iris:2" and r.state == {"original": {"iris-v1": 100}}
    with pytest.raises(Conflict, match="already has rollout 1 in phase pending"):
        store.create_rollout(_rollout(), "bob", {})
    other = store.create_rollout(_rollout("wine"), "ann", {})  # another deployment is independent
    assert other.id == 2

    moved = store.update_rollout(
        r.model_copy(update={"phase": RolloutPhase.CANARY, "message": "go"}),
        expect_revision=1,
        actor="ctl",
        action="begin",
        decision={"reason": "go"},
    )
    assert (moved.revision, moved.phase, moved.message) == (2, RolloutPhase.CANARY, "go")
    with pytest.raises(Conflict, match="changed meanwhile"):  # a stale writer loses, nothing is recorded
        store.update_rollout(r.model_copy(update={"step": 1}), expect_revision=1, actor="x", action="advance")
    assert store.get_rollout(1).step == 0

    done = store.update_rollout(
        moved.model_copy(update={"phase": RolloutPhase.ROLLED_BACK}), expect_revision=2, actor="ctl", action="rollback"
    )
    assert done.finished_at is not None and done.active
    settled = store.update_rollout(done, expect_revision=3, actor="ctl", action=None, settle=True)
    assert not settled.active and store.active_rollout("iris") is None
    assert [x.id for x in store.list_rollouts(active=True)] == [2]
    assert [x.id for x in store.list_rollouts("iris")] == [1]
    actions = [e.action for e in store.list_events(subject="rollout:1")]
    assert actions == ["rollout.started", "rollout.begin", "rollout.rollback"]
    # the deployment is free for a new rollout now
    assert store.create_rollout(_rollout(), "ann", {}).id == 3
    with pytest.raises(NotFound, match="no rollout 99"):
        store.get_rollout(99)


def test_concurrent_transitions_record_one(store_factory: StoreMaker) -> None:
    store = store_factory(VirtualClock(T0))
    r = store.create_rollout(_rollout(), "ann", {})
    wins, losses = [], []

    def attempt(i: int) -> None:
        try:
            store.update_rollout(
                r.model_copy(update={"phase": RolloutPhase.CANARY}), expect_revision=1, actor=f"p{i}", action="begin"
            )
            wins.append(i)
        except Conflict:
            losses.append(i)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and len(losses) == 5
    assert [e.action for e in store.list_events(subject="rollout:1")] == ["rollout.started", "rollout.begin"]


def test_releases_are_numbered_and_one_is_live(store_factory: StoreMaker) -> None:
    store = store_factory(VirtualClock(T0))
    a = store.create_release("iris", {"model": "iris:1"}, "ann")
    b = store.create_release("iris", {"model": "iris:2", "reference": "ref:1"}, "ann", rollout_id=7)
    assert (a.number, b.number, b.rollout_id, b.status) == (1, 2, 7, "candidate")
    assert store.create_release("wine", {"model": "wine:1"}, "ann").number == 1
    store.set_release_status("iris", 1, "live", "ctl")
    store.set_release_status("iris", 2, "live", "ctl")
    assert [(x.number, x.status) for x in store.list_releases("iris")] == [(2, "live"), (1, "superseded")]
    with pytest.raises(NotFound, match="has no release 5"):
        store.set_release_status("iris", 5, "live", "ctl")
    assert store.get_release("iris", 2).artifacts == {"model": "iris:2", "reference": "ref:1"}


def test_deleting_a_deployment_ends_its_rollout(store_factory: StoreMaker) -> None:
    from mlpilot.records import DeploymentSpec, VariantSpec

    store = store_factory(VirtualClock(T0))
    spec = DeploymentSpec(variants=[VariantSpec(name="v", model="m:1")], traffic={"v": 100})
    store.put_deployment("iris", spec, "ann")
    store.create_rollout(_rollout(), "ann", {})
    store.delete_deployment("iris", "ann")
    r = store.get_rollout(1)
    assert (r.phase, r.active) == (RolloutPhase.ABORTED, False)
