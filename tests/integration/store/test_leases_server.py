"""Leader election in real server apps (PlatformServer, lifespan through TestClient) sharing one SQLite store:
exactly one leads and only it runs the scheduler's jobs, ``GET /api/v1/leader`` says who, a graceful stop hands
over to the other at once, and with ``server.leader_election`` off every process ticks and none claims to lead."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from mlpilot.app import build_platform
from mlpilot.server import PlatformServer
from mlpilot.settings import MonitorSettings, RolloutSettings, ServerSettings, Settings
from mlpilot.store.leader import SCHEDULER_LEASE

LEASE_S = 2.0  # long enough that a loaded machine's stalls do not expire the leader's lease


def _server(home: Path, election: bool = True) -> PlatformServer:
    settings = Settings(
        home=home,
        server=ServerSettings(grpc=False, leader_lease_s=LEASE_S, leader_election=election),
        rollouts=RolloutSettings(tick_s=0.1),
        monitors=MonitorSettings(tick_s=0.1),
    )
    return PlatformServer(build_platform(settings), scheduler=True)


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_one_server_leads_runs_the_jobs_and_hands_over_on_a_graceful_stop(tmp_path: Path) -> None:
    home = tmp_path / "home"
    a, b = _server(home), _server(home)
    ca, cb = TestClient(a), TestClient(b)
    ca.__enter__()
    a_running = True
    try:
        with cb:
            _wait(lambda: ca.get("/api/v1/leader").json()["this_process_leads"], "a to lead")
            sa, sb = ca.get("/api/v1/leader").json(), cb.get("/api/v1/leader").json()
            assert sa["this_process"] == a.leadership.holder == sa["leader"] == sb["leader"]  # type: ignore[union-attr]
            assert (sa["election"], sa["lease"], sa["epoch"]) == (True, SCHEDULER_LEASE, 1)
            assert (sb["this_process"], sb["this_process_leads"]) == (b.leadership.holder, False)  # type: ignore[union-attr]
            _wait(lambda: a.job_runs.get("rollout tick", 0) >= 3, "the leader's rollout ticks")
            time.sleep(3 * LEASE_S)  # the follower stays a follower while the leader renews
            assert not b.leadership.leading()  # type: ignore[union-attr]
            assert b.job_runs == {}, b.job_runs  # it never ran a job
            ca.__exit__(None, None, None)  # graceful: the lease is released
            a_running = False
            released = time.monotonic()
            _wait(lambda: cb.get("/api/v1/leader").json()["this_process_leads"], "b to take over")
            print(f"handover after a graceful stop: {time.monotonic() - released:.2f} s")
            sb = cb.get("/api/v1/leader").json()
            assert (sb["leader"], sb["epoch"]) == (b.leadership.holder, 2)  # type: ignore[union-attr]
            _wait(lambda: b.job_runs.get("rollout tick", 0) >= 1, "the new leader's rollout ticks")
            events = [(e.action, e.actor) for e in b.platform.store.list_events(subject=f"lease:{SCHEDULER_LEASE}")]
            assert events == [
                ("leader.acquired", a.leadership.holder),  # type: ignore[union-attr]
                ("leader.lost", a.leadership.holder),  # type: ignore[union-attr]
                ("leader.acquired", b.leadership.holder),  # type: ignore[union-attr]
            ]
    finally:
        if a_running:
            ca.__exit__(None, None, None)


def test_without_election_every_server_ticks_and_none_leads(tmp_path: Path) -> None:
    home = tmp_path / "home"
    a, b = _server(home, election=False), _server(home, election=False)
    assert a.leadership is None and b.leadership is None
    with TestClient(a) as ca, TestClient(b):
        _wait(lambda: min(s.job_runs.get("rollout tick", 0) for s in (a, b)) >= 2, "both servers to tick")
        status = ca.get("/api/v1/leader").json()
        assert (status["election"], status["leader"], status["holder"]) == (False, None, None)
        assert (status["this_process"], status["this_process_leads"]) == (None, False)
        assert a.platform.store.get_lease(SCHEDULER_LEASE) is None


def test_the_leader_route_without_a_scheduler_and_its_scope(tmp_path: Path) -> None:
    """An SDK-embedded platform (no scheduler) reports the stored lease and that it does not take part."""
    server = PlatformServer(build_platform(Settings(home=tmp_path / "home", server=ServerSettings(grpc=False))))
    assert server.leadership is None
    with TestClient(server) as c:
        assert c.get("/api/v1/leader").json()["leader"] is None
        server.platform.store.acquire_lease(SCHEDULER_LEASE, "elsewhere:1:ab", 60)
        status = c.get("/api/v1/leader").json()
        assert (status["leader"], status["holder"], status["epoch"]) == ("elsewhere:1:ab", "elsewhere:1:ab", 1)
        assert (status["this_process"], status["this_process_leads"]) == (None, False)
        spec = c.get("/openapi.json").json()
        assert spec["paths"]["/api/v1/leader"]["get"]["x-mlpilot-scope"] == "read"


def test_a_bad_lease_setting_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    for bad in ("0", "-1", "3601"):
        monkeypatch.setenv("MLPILOT_SERVER__LEADER_LEASE_S", bad)
        with pytest.raises(ValidationError, match="leader_lease_s"):
            Settings()
    monkeypatch.setenv("MLPILOT_SERVER__LEADER_LEASE_S", "2.5")
    monkeypatch.setenv("MLPILOT_SERVER__LEADER_ELECTION", "false")
    s = Settings()
    assert (s.server.leader_lease_s, s.server.leader_election) == (2.5, False)
