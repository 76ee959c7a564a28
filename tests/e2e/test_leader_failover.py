"""Three real `mlpilot up` processes on one PostgreSQL schema elect one leader for the reconcile loops. The leader is
killed (SIGKILL) in the middle of a rollout while an SLO alert fires: another process takes the lease within 10 s
(issue 9's acceptance bound), the rollout reaches its end, and nothing is done twice — every transition, the alert,
the incident and each monitor run are recorded once."""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from mlpilot import Client, MlpilotError
from mlpilot.records import RolloutPhase
from tests.factories import iris_frame
from tests.helpers import ServerProcess, free_port

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

LEASE_S = 3.0
STEPS = [10, 20, 40, 60, 80, 100]
ENV = {
    "MLPILOT_SERVER__LEADER_LEASE_S": str(LEASE_S),
    "MLPILOT_ROLLOUTS__TICK_S": "0.3",
    "MLPILOT_MONITORS__TICK_S": "0.3",
    "MLPILOT_LOGS__FLUSH_INTERVAL_S": "0.2",
    "MLPILOT_INCIDENTS__RCA": "false",  # diagnosis is not what is tested here; it would only load the 2 cores
}
ALWAYS_SLOW = {  # every request is slower than 1 µs: the SLO burns at 10x and pages within a few ticks
    "indicator": "latency",
    "objective": 0.9,
    "threshold": 0.001,
    "rules": [{"long": "60s", "short": "10s", "burn_rate": 2, "severity": "page"}],
    "min_events": 5,
}


@pytest.fixture
def pg_schema_url(pg_url: str) -> Iterator[str]:
    """A fresh schema for the processes (dropped afterwards), as a store URL."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in pg_url else "?"
    try:
        yield f"{pg_url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


class Traffic(threading.Thread):
    """Predictions through every live server in turn (errors from a killed one are expected and skipped)."""

    def __init__(self, urls: list[str]) -> None:
        super().__init__(daemon=True)
        self.urls = urls
        self.stop = threading.Event()
        self.sent = 0

    def run(self) -> None:
        X, _ = iris_frame()
        while not self.stop.is_set():
            for url in list(self.urls):
                try:
                    with Client(url) as c:
                        c.predict("iris", X.sample(3, random_state=self.sent))
                        self.sent += 1
                except (MlpilotError, httpx.HTTPError, OSError):
                    pass
                time.sleep(0.05)


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _leaders(servers: list[ServerProcess]) -> dict[str, str]:
    """url -> this process's holder id, for the processes that say they lead now."""
    out = {}
    for s in servers:
        try:
            status = httpx.get(f"{s.url}/api/v1/leader", timeout=2).json()
        except httpx.HTTPError:
            continue
        if status["this_process_leads"]:
            out[s.url] = status["this_process"]
    return out


def test_killing_the_leader_hands_over_within_10_s_and_nothing_is_done_twice(
    tmp_path: Path, pg_schema_url: str
) -> None:
    from sklearn.linear_model import LogisticRegression

    X, y = iris_frame()
    home = tmp_path / "home"
    env = {**ENV, "MLPILOT_STORE__URL": pg_schema_url}
    servers: list[ServerProcess] = []
    started: list[ServerProcess] = []  # every process, stopped by PID at the end (the killed one too)
    traffic: Traffic | None = None
    try:
        for _ in range(3):
            started.append(ServerProcess(home, extra_env=env, args=("--grpc-port", str(free_port()))))
            servers.append(started[-1])
        _wait(lambda: len(_leaders(servers)) == 1, 15, "a leader")
        time.sleep(LEASE_S)  # a full lease later: still exactly one, and every process names the same one
        leaders = _leaders(servers)
        assert len(leaders) == 1, leaders
        statuses = [httpx.get(f"{s.url}/api/v1/leader", timeout=5).json() for s in servers]
        assert {st["leader"] for st in statuses} == set(leaders.values())
        assert len({st["this_process"] for st in statuses}) == 3

        with Client(servers[0].url) as c:
            v1 = c.register_model("iris", LogisticRegression(max_iter=300).fit(X, y), sample=X.head(3))
            v2 = c.register_model("iris", LogisticRegression(C=0.5, max_iter=300).fit(X, y), sample=X.head(3))
            c.deploy("iris", v1.ref)
            c.create_monitor("iris", "fast-traffic", {"kind": "traffic", "every": "1s", "window": "1h", "min_rows": 1})
            c.create_slo("iris", "always-slow", ALWAYS_SLOW)
            traffic = Traffic([s.url for s in servers])
            traffic.start()
            _wait(lambda: any(a.status == "firing" for a in c.alerts("iris")), 60, "the SLO alert")
            r = c.start_rollout(
                "iris",
                candidate=v2.ref,
                steps=[{"weight": w, "min_duration": "1.5s", "min_samples": 0} for w in STEPS],
                analyses=[],
            )
            _wait(lambda: c.rollout(rollout_id=r.id).step >= 2, 60, "the rollout to reach step 3")

        [(leader_url, leader_id)] = _leaders(servers).items()
        victim = next(s for s in servers if s.url == leader_url)
        os.kill(victim.proc.pid, signal.SIGKILL)
        killed = time.monotonic()
        victim.proc.wait(10)
        servers.remove(victim)
        traffic.urls[:] = [s.url for s in servers]
        at_kill = None
        with Client(servers[0].url) as c:
            at_kill = c.rollout(rollout_id=r.id)
        _wait(lambda: len(_leaders(servers)) == 1, 15, "another leader")
        takeover = time.monotonic() - killed
        print(f"\ntakeover after SIGKILL of the leader: {takeover:.2f} s (lease {LEASE_S:g} s)")
        assert takeover < 10.0, takeover  # acceptance bound of issue 9
        [(_, new_id)] = _leaders(servers).items()
        assert new_id != leader_id

        with Client(servers[0].url) as c:
            _wait(lambda: c.rollout(rollout_id=r.id).phase is RolloutPhase.PROMOTED, 60, "the rollout to finish")
            assert at_kill.phase is RolloutPhase.CANARY and at_kill.step < len(STEPS) - 1, at_kill  # killed mid-way
            assert c.get_deployment("iris").spec.traffic == {"iris-v2": 100}
            decisions = c.rollout_decisions(r.id)
            actions = [e.action.removeprefix("rollout.") for e in decisions]
            expected = ["started", "begin", *["advance"] * (len(STEPS) - 1), "promote", "complete"]
            assert actions == expected, actions
            steps = [(e.action, (e.after or {}).get("step")) for e in decisions]
            assert all(n == 1 for n in Counter(steps).values()), steps  # each step's transition once

            time.sleep(3)  # the new leader evaluates the SLO again a few times
            alerts = c.alerts("iris")
            assert [(a.slo, a.status) for a in alerts] == [("always-slow", "firing")], alerts  # fired once
            incidents = c.incidents("iris")
            assert len(incidents) == 1 and incidents[0].alerts == [alerts[0].id], incidents
            opened = c.events(subject=f"incident:{incidents[0].id}", action="incident.opened")
            assert len(opened) == 1
            fired = c.events(subject="deployment:iris", action="alert.fired")
            assert len(fired) == 1, fired

            results = c.monitor_results("iris", "fast-traffic")
            assert len(results) >= 5
            gaps = [(b.ts - a.ts).total_seconds() for a, b in itertools.pairwise(results)]
            # every 1 s, claimed per slot: two processes running one slot tick within one tick period (0.3 s) of
            # each other; a run made late by a busy machine only shortens the gap to the next one (0.48 s in CI)
            assert min(gaps) > 0.3, gaps

            lease_events = [(e.action, e.actor) for e in c.events(subject="lease:scheduler")]
            assert lease_events[-1] == ("leader.acquired", new_id)
            assert ("leader.acquired", leader_id) in lease_events
    finally:
        if traffic is not None:
            traffic.stop.set()
            traffic.join(10)
        for s in started:
            s.stop()
