"""Leader election (mlpilot.store.leader.Leadership) over a real store, SQLite and PostgreSQL, on a virtual clock:
one leader at a time, takeover once a dead leader's lease expires, a graceful release hands over at once, a leader
cut off from the store stops leading when its lease would expire, and every change of leader is an event."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from mlpilot.clock import VirtualClock
from mlpilot.store import Store
from mlpilot.store.leader import SCHEDULER_LEASE, Leadership, holder_id
from tests.conftest import StoreMaker

TTL = 6.0


def leader_events(store: Store) -> list[tuple[str, str, dict[str, object]]]:
    events = store.list_events(subject=f"lease:{SCHEDULER_LEASE}")
    return [(e.action, e.actor, dict(e.after or {})) for e in events]


def test_one_leader_and_takeover_after_the_lease_expires(store_factory: StoreMaker) -> None:
    clock = VirtualClock()
    store = store_factory(clock)
    a = Leadership(store, ttl_s=TTL, holder="host:1:aa")
    b = Leadership(store, ttl_s=TTL, holder="host:2:bb")
    assert a.interval_s == TTL / 3
    assert a.step() and not b.step()
    assert (a.leading(), b.leading(), a.epoch, b.epoch) == (True, False, 1, None)
    for _ in range(6):  # the leader renews every third of the lease: it keeps leading, the follower never gets it
        clock.advance(TTL / 3)
        assert a.step() and not b.step()
    # a dies (stops stepping): it would not lead any more after its deadline, even without a step
    clock.advance(TTL / 3 + 0.01)
    assert not b.step()  # the lease in the store has 2/3 of the lease left: no takeover yet
    clock.advance(TTL / 3)
    assert a.leading()  # 2/3 + 0.01 of the lease after its last renewal
    clock.advance(TTL / 3)
    assert not a.leading()
    assert b.step() and b.epoch == 2
    assert not a.step() and not a.leading()  # back: its lease expired (an event), and b holds it now
    lease = store.get_lease(SCHEDULER_LEASE)
    assert lease is not None and (lease.holder, lease.epoch, lease.active) == ("host:2:bb", 2, True)
    actions = [(act, actor, after.get("epoch"), after.get("reason")) for act, actor, after in leader_events(store)]
    assert actions == [
        ("leader.acquired", "host:1:aa", 1, None),
        ("leader.acquired", "host:2:bb", 2, None),
        ("leader.lost", "host:1:aa", 1, "expired"),
    ]
    took = store.list_events(subject=f"lease:{SCHEDULER_LEASE}", action="leader.acquired")[1]
    assert took.before is not None and (took.before["holder"], took.before["epoch"]) == ("host:1:aa", 1)


def test_a_graceful_release_hands_over_at_once(store_factory: StoreMaker) -> None:
    clock = VirtualClock()
    store = store_factory(clock)
    a = Leadership(store, ttl_s=TTL, holder="host:1:aa")
    b = Leadership(store, ttl_s=TTL, holder="host:2:bb")
    assert a.step() and not b.step()
    a.release()
    assert not a.leading() and a.epoch is None
    assert b.step() and b.epoch == 2  # no waiting for the lease to expire
    assert not a.step()  # released for good until opened again
    assert store.get_lease(SCHEDULER_LEASE).holder == "host:2:bb"  # type: ignore[union-attr]
    b.release()
    a.open()
    assert a.step() and a.epoch == 3
    assert [(act, after.get("reason")) for act, _, after in leader_events(store)] == [
        ("leader.acquired", None),
        ("leader.lost", "released"),
        ("leader.acquired", None),
        ("leader.lost", "released"),
        ("leader.acquired", None),
    ]


def test_a_leader_whose_lease_was_taken_stops_at_its_next_step(store_factory: StoreMaker) -> None:
    """An operator releasing the leader's lease by hand (or any loss in the store) is seen at the next renewal."""
    clock = VirtualClock()
    store = store_factory(clock)
    a = Leadership(store, ttl_s=TTL, holder="host:1:aa")
    b = Leadership(store, ttl_s=TTL, holder="host:2:bb")
    assert a.step()
    assert store.release_lease(SCHEDULER_LEASE, "host:1:aa", 1)
    assert b.step()
    clock.advance(1)
    assert not a.step() and not a.leading()
    assert leader_events(store)[-1][:2] == ("leader.lost", "host:1:aa")
    assert leader_events(store)[-1][2]["reason"] == "taken"


def test_a_leader_cut_off_from_the_store_stops_when_its_lease_would_expire(tmp_path: Path) -> None:
    """A real outage: another connection holds SQLite's write lock, so renewals fail (``Unavailable``, logged). The
    leader leads on until its local deadline — never past the lease's expiry — and then stops; once the store is
    back it takes the lease again with a new epoch."""
    clock = VirtualClock()
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store.from_url(url, clock, busy_timeout_s=0.05)
    store.migrate()
    a = Leadership(store, ttl_s=TTL, holder="host:1:aa")
    assert a.step()
    blocker = sa.create_engine(url, connect_args={"timeout": 0.05})
    conn = blocker.connect()
    try:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        clock.advance(TTL / 3)
        assert a.step()  # renewal failed, still inside the lease
        clock.advance(TTL / 3)
        assert a.step()
        clock.advance(TTL / 3)
        assert not a.leading()  # the lease would have expired now: no acting on a stale lease
        assert not a.step()  # taking it again fails too while the store is down
    finally:
        conn.exec_driver_sql("ROLLBACK")
        conn.close()
        blocker.dispose()
    assert a.step() and a.epoch == 2
    events = leader_events(store)
    assert [(act, after["epoch"]) for act, _, after in events] == [("leader.acquired", 1), ("leader.acquired", 2)]
    store.close()


def test_holder_ids_name_the_process_and_differ() -> None:
    import os
    import socket

    first, second = holder_id(), holder_id()
    host, pid, rand = first.split(":")
    assert (host, int(pid)) == (socket.gethostname(), os.getpid()) and len(rand) == 6
    assert first != second


@pytest.mark.postgres
def test_processes_racing_for_the_lease_on_postgres_elect_exactly_one(pg_store_factory: StoreMaker) -> None:
    """Leaderships on separate engines (separate connection pools, like separate processes) stepping at once."""
    import threading

    clock = VirtualClock()
    stores = [pg_store_factory(clock)]
    url = stores[0].engine.url
    for _ in range(3):
        s = Store.from_url(url.render_as_string(hide_password=False), clock)
        stores.append(s)
    try:
        leaders = [Leadership(s, ttl_s=TTL, holder=f"host:{i}:x") for i, s in enumerate(stores)]
        for round_ in range(4):
            barrier = threading.Barrier(len(leaders))
            won: list[str] = []

            def step(ld: Leadership, barrier: threading.Barrier = barrier, won: list[str] = won) -> None:
                barrier.wait()
                if ld.step():
                    won.append(ld.holder)

            threads = [threading.Thread(target=step, args=(ld,)) for ld in leaders]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            assert len(won) == 1, (round_, won)
            winner = next(ld for ld in leaders if ld.holder == won[0])
            winner.release()
            winner.open()
    finally:
        for s in stores[1:]:
            s.close()
