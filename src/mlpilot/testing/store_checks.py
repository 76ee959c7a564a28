"""Store conformance checks. Each takes ``make_store(clock) -> Store`` (fresh, migrated, empty) and raises
``AssertionError`` when the adapter misbehaves. They use only the public ``Store`` API."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

from mlpilot.clock import Clock, VirtualClock
from mlpilot.errors import Conflict, InvalidArgument, NotFound
from mlpilot.records import ArtifactKind, DeploymentSpec, VariantSpec
from mlpilot.store import Store

StoreFactory = Callable[[Clock], Store]
D = "sha256:" + "0" * 64


def _version(store: Store, name: str = "m", kind: ArtifactKind = ArtifactKind.MODEL, **kw: object) -> int:
    v = store.create_version(name=name, kind=kind, digest=D, size=1, filename="f", actor="t", **kw)  # type: ignore[arg-type]
    return v.version


def check_schema_matches_tables(make_store: StoreFactory) -> None:
    """Migrations are idempotent and produce exactly the tables the code declares."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from mlpilot.store.tables import metadata

    store = make_store(VirtualClock())
    store.migrate()  # a second run is a no-op
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert not diff, f"schema drift between migrations and tables: {diff}"


def check_versions_are_consecutive(make_store: StoreFactory) -> None:
    store = make_store(VirtualClock())
    assert [_version(store) for _ in range(3)] == [1, 2, 3]
    assert _version(store, "other") == 1
    assert store.get_version("m").version == 3
    assert store.get_version("m:2").version == 2
    assert [v.version for v in store.list_versions("m")] == [1, 2, 3]
    assert store.get_artifact("m").latest_version == 3


def check_concurrent_versions(make_store: StoreFactory) -> None:
    """Threads registering at once get every version exactly once."""
    store = make_store(VirtualClock())
    got: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(5):
                got.append(_version(store, "race"))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    assert sorted(got) == list(range(1, 31)), sorted(got)


def check_lineage_tags_and_events(make_store: StoreFactory) -> None:
    clock = VirtualClock()
    store = make_store(clock)
    _version(store, "data", ArtifactKind.DATASET)
    clock.advance(60)
    v = store.create_version(
        name="m",
        kind=ArtifactKind.MODEL,
        digest=D,
        size=1,
        filename="f",
        actor="alice",
        parents=["data:1"],
        metadata={"a": [1, 2]},
        tags={"team": "x"},
    )
    assert v.parents == ["data:1"] and v.metadata == {"a": [1, 2]} and v.tags == {"team": "x"}
    assert v.created_at == clock.now() and v.created_by == "alice"
    v = store.set_tags("m:1", {"team": None, "stage": "prod"}, "bob")
    assert v.tags == {"stage": "prod"}
    ev = store.list_events(subject="artifact:m*")
    assert [e.action for e in ev] == ["artifact.created", "version.created", "version.tagged"]
    assert ev[-1].actor == "bob" and ev[-1].before == {"tags": {"team": "x"}}
    assert store.list_events(after_id=ev[-1].id) == []
    assert [e.action for e in store.list_events(action="version.*")] == ["version.created"] * 2 + ["version.tagged"]


def check_failed_writes_change_nothing(make_store: StoreFactory) -> None:
    store = make_store(VirtualClock())
    _version(store, "m")
    before = store.list_events()
    for bad in (
        lambda: store.create_version(
            name="n", kind=ArtifactKind.MODEL, digest=D, size=1, filename="f", actor="t", parents=["ghost:1"]
        ),
        lambda: store.create_version(name="m", kind=ArtifactKind.DATASET, digest=D, size=1, filename="f", actor="t"),
        lambda: store.set_alias("m", "champion", 9, "t"),
        lambda: store.bind("m:1", "reference", "ghost:1", "t"),
    ):
        try:
            bad()
        except (NotFound, Conflict, InvalidArgument):
            pass
        else:
            raise AssertionError("a bad write was accepted")
    assert store.list_events() == before
    assert [a.name for a in store.list_artifacts()] == ["m"]
    assert store.get_artifact("m").latest_version == 1


def check_aliases_compare_and_set(make_store: StoreFactory) -> None:
    store = make_store(VirtualClock())
    for _ in range(3):
        _version(store)
    store.set_alias("m", "champion", 1, "t", expect=None)
    assert store.get_version("m@champion").version == 1
    try:
        store.set_alias("m", "champion", 2, "t", expect=None)
        raise AssertionError("expect=None accepted an existing alias")
    except Conflict:
        pass
    try:
        store.set_alias("m", "champion", 3, "t", expect=2)
        raise AssertionError("a stale compare-and-set was accepted")
    except Conflict:
        pass
    assert store.get_version("m@champion").version == 1
    store.set_alias("m", "champion", 2, "t", expect=1)
    store.set_alias("m", "champion", 3, "t")
    assert store.get_artifact("m").aliases == {"champion": 3}
    assert store.get_version("m:3").aliases == ["champion"]
    moves = store.list_events(action="alias.moved")
    assert [(e.before, e.after) for e in moves] == [
        (None, {"version": 1}),
        ({"version": 1}, {"version": 2}),
        ({"version": 2}, {"version": 3}),
    ]
    store.delete_alias("m", "champion", "t")
    try:
        store.get_version("m@champion")
        raise AssertionError("deleted alias still resolves")
    except NotFound:
        pass


def check_alias_race(make_store: StoreFactory) -> None:
    """Two writers compare-and-set the same alias from the same state: exactly one wins."""
    store = make_store(VirtualClock())
    for _ in range(3):
        _version(store)
    store.set_alias("m", "prod", 1, "t")
    for _round in range(5):
        current = store.get_version("m@prod").version
        barrier = threading.Barrier(2)
        outcome: dict[int, str] = {}

        def writer(
            target: int, expect: int = current, barrier: threading.Barrier = barrier, outcome: dict[int, str] = outcome
        ) -> None:
            barrier.wait()
            try:
                store.set_alias("m", "prod", target, f"w{target}", expect=expect)
                outcome[target] = "won"
            except Conflict:
                outcome[target] = "conflict"

        targets = [v for v in (1, 2, 3) if v != current][:2]
        threads = [threading.Thread(target=writer, args=(v,)) for v in targets]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert sorted(outcome.values()) == ["conflict", "won"], outcome
        winner = next(v for v, o in outcome.items() if o == "won")
        assert store.get_version("m@prod").version == winner


def check_bindings(make_store: StoreFactory) -> None:
    store = make_store(VirtualClock())
    _version(store, "m")
    _version(store, "ref", ArtifactKind.DATASET)
    _version(store, "ref", ArtifactKind.DATASET)
    store.bind("m:1", "reference", "ref:1", "t")
    assert store.get_version("m:1").bindings == {"reference": "ref:1"}
    store.bind("m:1", "reference", "ref:2", "t")
    assert store.get_version("m:1").bindings == {"reference": "ref:2"}


def _spec(model: str = "m:1", **kw: object) -> DeploymentSpec:
    return DeploymentSpec(variants=[VariantSpec(name="a", model=model)], traffic={"a": 100}, **kw)


def check_deployments(make_store: StoreFactory) -> None:
    clock = VirtualClock()
    store = make_store(clock)
    assert store.snapshot_version() == 0
    d = store.put_deployment("dep", _spec(), "t", create=True)
    assert (d.revision, d.snapshot_version) == (1, 1)
    clock.advance(timedelta(minutes=5).total_seconds())
    d = store.put_deployment("dep", _spec("m:2", sticky_header="x-user"), "t", expect_revision=1)
    assert (d.revision, d.spec.sticky_header, d.updated_at) == (2, "x-user", clock.now())
    assert store.snapshot_version() == 2
    for kwargs, exc in (({"create": True}, Conflict), ({"expect_revision": 1}, Conflict)):
        try:
            store.put_deployment("dep", _spec(), "t", **kwargs)
            raise AssertionError(f"put_deployment accepted {kwargs}")
        except exc:
            pass
    try:
        store.put_deployment("nope", _spec(), "t", create=False)
        raise AssertionError("update of a missing deployment accepted")
    except NotFound:
        pass
    assert store.snapshot_version() == 2
    assert [r for r, _ in store.deployment_revisions("dep")] == [1, 2]
    assert [x.name for x in store.list_deployments()] == ["dep"]
    ev = store.list_events(subject="deployment:dep")
    assert [e.action for e in ev] == ["deployment.created", "deployment.updated"]
    assert ev[1].before is not None and ev[1].before["variants"][0]["model"] == "m:1"
    store.delete_deployment("dep", "t")
    assert store.list_deployments() == [] and store.snapshot_version() == 3


def check_leases(make_store: StoreFactory) -> None:
    """A lease is held by one holder until it expires; renewing keeps the epoch, every new tenure bumps it, only the
    current holder renews or releases, an expired lease cannot be renewed, a released one is free at once."""
    clock = VirtualClock()
    store = make_store(clock)
    assert store.get_lease("scheduler") is None
    a = store.acquire_lease("scheduler", "a", 6)
    assert a is not None and (a.holder, a.epoch, a.active) == ("a", 1, True)
    assert a.expires_at == clock.now() + timedelta(seconds=6) == a.renewed_at + timedelta(seconds=6)
    assert store.acquire_lease("scheduler", "b", 6) is None  # held
    clock.advance(2)
    again = store.acquire_lease("scheduler", "a", 6)  # the holder acquiring again renews: same epoch
    assert again is not None and (again.epoch, again.acquired_at, again.renewed_at) == (1, a.acquired_at, clock.now())
    assert store.renew_lease("scheduler", "a", 1, 6)
    assert not store.renew_lease("scheduler", "b", 1, 6)  # not the holder
    assert not store.renew_lease("scheduler", "a", 2, 6)  # not the current epoch
    assert not store.release_lease("scheduler", "b", 1)
    clock.advance(5.9)
    assert store.acquire_lease("scheduler", "b", 6) is None  # 0.1 s left
    clock.advance(0.1)  # expired: renewing is refused, anyone may take it
    assert not store.renew_lease("scheduler", "a", 1, 6)
    expired = store.get_lease("scheduler")
    assert expired is not None and (expired.holder, expired.active) == ("a", False)
    b = store.acquire_lease("scheduler", "b", 6)
    assert b is not None and (b.holder, b.epoch, b.acquired_at) == ("b", 2, clock.now())
    assert not store.release_lease("scheduler", "a", 1)  # a stale holder changes nothing
    assert store.release_lease("scheduler", "b", 2)
    released = store.get_lease("scheduler")
    assert released is not None and (released.holder, released.epoch, released.active) == ("b", 2, False)
    assert not store.renew_lease("scheduler", "b", 2, 6)  # released means gone, even for its holder
    a3 = store.acquire_lease("scheduler", "a", 6)
    assert a3 is not None and (a3.holder, a3.epoch) == ("a", 3)  # at once, with a new epoch
    b4 = store.acquire_lease("scheduler", "b", 6)
    assert b4 is None
    other = store.acquire_lease("other", "b", 1)  # leases are independent
    assert other is not None and other.epoch == 1
    lease = store.get_lease("scheduler")
    assert lease is not None and (lease.holder, lease.epoch, lease.active) == ("a", 3, True)


def check_lease_arguments(make_store: StoreFactory) -> None:
    """Bad lease arguments are ``InvalidArgument`` and change nothing."""
    store = make_store(VirtualClock())
    bad: list[tuple[str, str, float]] = [("", "a", 5), ("x" * 65, "a", 5), ("s", "", 5), ("s", "h" * 257, 5)]
    bad += [("s", "a", 0), ("s", "a", -1), ("s", "a", 86_401), ("s", "a", float("nan"))]
    for name, holder, ttl in bad:
        try:
            store.acquire_lease(name, holder, ttl)
            raise AssertionError(f"acquire_lease accepted {(name[:8], holder[:8], ttl)}")
        except InvalidArgument:
            pass
    for call in (lambda: store.renew_lease("s", "a", 1, 0), lambda: store.release_lease("s", "", 1)):
        try:
            call()
            raise AssertionError("a bad renew or release was accepted")
        except InvalidArgument:
            pass
    assert store.get_lease("s") is None


def check_lease_race(make_store: StoreFactory) -> None:
    """Threads racing for a free lease, then for the expired one: exactly one wins each round, epochs 1, 2, 3 …"""
    clock = VirtualClock()
    store = make_store(clock)
    errors: list[BaseException] = []
    for round_ in range(1, 6):
        barrier = threading.Barrier(6)
        winners: list[str] = []

        def racer(holder: str, barrier: threading.Barrier = barrier, winners: list[str] = winners) -> None:
            barrier.wait()
            try:
                if store.acquire_lease("scheduler", holder, 5) is not None:
                    winners.append(holder)
            except BaseException as exc:  # collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=racer, args=(f"p{round_}-{i}",)) for i in range(6)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert not errors, errors
        assert len(winners) == 1, winners
        lease = store.get_lease("scheduler")
        assert lease is not None and (lease.holder, lease.epoch) == (winners[0], round_)
        clock.advance(5)


def check_incident_placement_race(make_store: StoreFactory) -> None:
    """Processes placing the first signals of a deployment at the same instant open one incident, not several."""
    from mlpilot.incidents.policy import Signal

    clock = VirtualClock()
    store = make_store(clock)
    errors: list[BaseException] = []
    for round_ in range(3):
        dep = f"race-{round_}"
        barrier = threading.Barrier(5)
        actions: list[str] = []

        def place(i: int, dep: str = dep, barrier: threading.Barrier = barrier, actions: list[str] = actions) -> None:
            signal = Signal(f"alert:{dep}/slo-{i}", dep, "ticket", clock.now(), "fired")
            barrier.wait()
            try:
                actions.append(store.place_signal(signal, timedelta(minutes=30), "t", alert_id=i)[1].action)
            except BaseException as exc:  # collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=place, args=(i,)) for i in range(5)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert not errors, errors
        incidents = store.list_incidents(dep)
        assert len(incidents) == 1, [(i.id, i.keys) for i in incidents]
        assert sorted(actions) == ["join"] * 4 + ["open"], actions
        assert sorted(incidents[0].alerts) == [0, 1, 2, 3, 4]


def check_api_keys(make_store: StoreFactory) -> None:
    """API keys: created with an event, found by prefix with their hash, listed without revoked ones, names unique
    forever, revoked once (idempotent) with an event, ``last_used_at`` written at most once a minute."""
    clock = VirtualClock()
    store = make_store(clock)
    assert store.count_api_keys() == 0
    a = store.create_api_key("ci", "0a1b2c3d", "scrypt$h", ["read", "predict"], ["iris"], "alice")
    assert (a.name, a.scopes, a.deployments, a.created_by, a.active) == (
        "ci",
        ["read", "predict"],
        ["iris"],
        "alice",
        True,
    )
    found = store.api_key_by_prefix("0a1b2c3d")
    assert found is not None and found[0] == a and found[1] == "scrypt$h"
    assert store.api_key_by_prefix("ffffffff") is None
    for name, prefix in (("ci", "11111111"), ("other", "0a1b2c3d")):
        try:
            store.create_api_key(name, prefix, "h", ["read"], [], "alice")
            raise AssertionError(f"a duplicate key {name}/{prefix} was accepted")
        except Conflict:
            pass
    assert store.touch_api_key(a.id)
    assert not store.touch_api_key(a.id)  # within the minute
    clock.advance(61)
    assert store.touch_api_key(a.id)
    assert store.get_api_key("ci").last_used_at == clock.now()
    revoked = store.revoke_api_key("ci", "bob")
    assert revoked.revoked_at == clock.now() and not revoked.active
    assert store.revoke_api_key("ci", "bob").revoked_at == revoked.revoked_at  # idempotent
    assert store.count_api_keys() == 0 and store.list_api_keys() == []
    assert [k.name for k in store.list_api_keys(include_revoked=True)] == ["ci"]
    try:
        store.revoke_api_key("nope", "bob")
        raise AssertionError("revoking an unknown key succeeded")
    except NotFound:
        pass
    events = store.list_events(subject="apikey:ci")
    assert [(e.action, e.actor) for e in events] == [("apikey.created", "alice"), ("apikey.revoked", "bob")]


STORE_CHECKS: tuple[Callable[[StoreFactory], None], ...] = (
    check_schema_matches_tables,
    check_versions_are_consecutive,
    check_concurrent_versions,
    check_lineage_tags_and_events,
    check_failed_writes_change_nothing,
    check_aliases_compare_and_set,
    check_alias_race,
    check_bindings,
    check_deployments,
    check_leases,
    check_lease_arguments,
    check_lease_race,
    check_incident_placement_race,
    check_api_keys,
)


def check_store(make_store: StoreFactory) -> None:
    """Run every store check against the adapter built by ``make_store``."""
    for check in STORE_CHECKS:
        check(make_store)
