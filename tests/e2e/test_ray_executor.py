"""A real ``mlpilot up --executor ray`` (a local Ray started by the server): a replica killed under load fails no
request and is replaced; a canary rollout promotes; and the incident loop's automatic remediation (a bad candidate
diagnosed, its rollout aborted, verified) runs the same on Ray replicas. Every Ray process the server started is gone
at the end (killed by PID if the server's own shutdown left any)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mlpilot import Client
from mlpilot.records import RolloutPhase
from tests.e2e.test_incident_loop import ENV as INCIDENT_ENV
from tests.e2e.test_incident_loop import _wait
from tests.e2e.test_incident_loop import test_a_bad_candidate_is_diagnosed_and_its_rollout_aborted as _bad_candidate
from tests.factories import iris_frame
from tests.helpers import ServerProcess
from tests.integration.executors.raytools import descendants, kill_all, replica_pids, session_processes

pytest.importorskip("ray")

RAY_ENV = {
    "MLPILOT_EXECUTOR__NUM_CPUS": "2",
    "MLPILOT_EXECUTOR__HEALTH_CHECK_PERIOD_S": "1",
    "MLPILOT_SERVER__GRPC": "0",
    "MLPILOT_SERVER__UNLOAD_GRACE_S": "1",
    "MLPILOT_MONITORS__ENABLED": "false",
    "MLPILOT_ROLLOUTS__TICK_S": "0.3",
    "MLPILOT_LOGS__FLUSH_INTERVAL_S": "0.2",
}


class RayServer:
    """``mlpilot up --executor ray`` and, at the end, no Ray process left behind."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.server = ServerProcess(home, extra_env=env, args=("--executor", "ray"))
        self.url = self.server.url
        self.pid = self.server.proc.pid

    def said(self, lines: int = 30) -> str:
        """The server log's last lines, access lines left out (what a failed assertion shows)."""
        text = self.server.log.read_text(errors="replace").splitlines()
        return "\n".join([t for t in text if '" 200' not in t and "HTTP/1.1" not in t][-lines:])

    def stop(self) -> list[int]:
        """Stop the server (SIGTERM: a graceful shutdown deletes its applications and its Ray); returns the Ray
        processes that outlived it (then killed)."""
        ray_procs = set(descendants(self.pid)) | session_processes(self.pid)  # reparented workers too
        self.server.stop()
        # a loaded machine can take a while to stop Ray's processes: 30 s before any counts as left behind
        return kill_all(sorted(ray_procs | session_processes(self.pid)), grace_s=30.0)


@pytest.fixture
def ray_server(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], RayServer]]:
    started: list[RayServer] = []

    def start(env: dict[str, str]) -> RayServer:
        started.append(RayServer(tmp_path / "home", env))
        return started[-1]

    yield start
    for s in started:
        s.stop()


class Load(threading.Thread):
    """Single-row predictions from ``threads`` clients at once, until stopped; every failure is kept."""

    def __init__(self, url: str, threads: int = 4) -> None:
        super().__init__(daemon=True)
        self.url, self.threads = url, threads
        self.stop_event = threading.Event()
        self.ok = 0
        self.variants: set[str] = set()
        self.failures: list[str] = []
        self._lock = threading.Lock()

    def _client(self) -> None:
        X, _ = iris_frame()
        i = 0
        with Client(self.url) as c:
            while not self.stop_event.is_set():
                i += 1
                try:
                    r = c.predict("iris", X.iloc[[i % len(X)]])
                except Exception as exc:  # every failure is a test failure: kept, asserted empty
                    with self._lock:
                        self.failures.append(f"{type(exc).__name__}: {exc}")
                    continue
                with self._lock:
                    self.ok += 1
                    self.variants.add(str(r.variant))

    def run(self) -> None:
        workers = [threading.Thread(target=self._client, daemon=True) for _ in range(self.threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()


def _serving(c: Client) -> None:
    X, _ = iris_frame()

    def answers() -> bool:
        try:
            c.predict("iris", X.head(1))
            return True
        except Exception:
            return False

    _wait("the deployment to serve from Ray", answers, 120)


def test_killing_a_replica_under_load_fails_no_request_and_it_is_replaced(
    ray_server: Callable[[dict[str, str]], RayServer],
) -> None:
    from sklearn.ensemble import RandomForestClassifier

    X, y = iris_frame()
    server = ray_server(RAY_ENV)
    app = "mlpilot.iris.iris-v1."
    with Client(server.url) as c:
        v = c.register_model("iris", RandomForestClassifier(n_estimators=30, random_state=0).fit(X, y), sample=X[:3])
        c.deploy("iris", v.ref, runtime={"replicas": 2, "batching": {"max_batch_size": 8}})
        _serving(c)

    def two_running() -> list[int] | None:
        pids = replica_pids(server.pid, app)
        return pids if len(pids) == 2 else None

    before = _wait("2 running replicas", two_running, 60)
    load = Load(server.url)
    load.start()
    try:
        _wait("traffic", lambda: load.ok >= 50, 60)
        victim = before[0]
        os.kill(victim, signal.SIGKILL)  # the replica's worker process dies at once, requests in flight with it
        at_kill = load.ok

        def replaced() -> list[int] | None:
            pids = replica_pids(server.pid, app)
            return pids if len(pids) == 2 and victim not in pids else None

        after = _wait("Serve to replace the killed replica", replaced, 90)
        _wait("traffic on the replaced replica set", lambda: load.ok >= at_kill + 100, 60)
    finally:
        load.stop_event.set()
        load.join(30)
    assert load.failures == [], load.failures[:5]
    assert load.ok > at_kill + 100
    assert before[1] in after and victim not in after  # the survivor kept serving; the victim has a successor
    assert server.stop() == []  # the server's graceful shutdown took its whole Ray down


def test_a_canary_rollout_promotes_on_ray(ray_server: Callable[[dict[str, str]], RayServer]) -> None:
    from sklearn.linear_model import LogisticRegression

    X, y = iris_frame()
    server = ray_server(RAY_ENV)
    with Client(server.url) as c:
        v1 = c.register_model("iris", LogisticRegression(max_iter=300).fit(X, y), sample=X.head(3))
        v2 = c.register_model("iris", LogisticRegression(C=0.5, max_iter=300).fit(X, y), sample=X.head(3))
        c.deploy("iris", v1.ref)
        _serving(c)
        load = Load(server.url, threads=2)
        load.start()
        try:
            r = c.start_rollout(
                "iris",
                candidate=v2.ref,
                steps=[
                    # the candidate's Ray application may take long to start on a loaded machine (a load that times
                    # out is retried: server.load_retry_s): room for that
                    {"weight": 50, "min_duration": "2s", "min_samples": 10, "max_duration": "300s"},
                    {"weight": 100, "min_duration": "1s", "min_samples": 5, "max_duration": "60s"},
                ],
                analyses=[{"kind": "error_rate", "min_samples": 10}],
            )

            def promoted() -> Any:
                now = c.rollout(rollout_id=r.id)
                settled = now.phase in (RolloutPhase.PAUSED, RolloutPhase.ROLLED_BACK, RolloutPhase.ABORTED)
                assert not settled, (
                    f"{now.phase.value}: {now.message}; variants answered {sorted(load.variants)}; "
                    f"the server said:\n{server.said()}"
                )
                # promoted and settled: the final split applied (the phase turns PROMOTED a tick before that)
                return now if now.phase is RolloutPhase.PROMOTED and not now.active else None

            done = _wait("the rollout to promote", promoted, 420)
            seen_during = set(load.variants)
            load.variants.clear()
            _wait("requests after the promotion", lambda: len(load.variants) > 0 and load.ok > 0, 30)
            time.sleep(2)  # the old variant retires after the unload grace
        finally:
            load.stop_event.set()
            load.join(30)
        assert done.active is False
        assert c.get_deployment("iris").spec.traffic == {"iris-v2": 100}
        assert {"iris-v1", "iris-v2"} <= seen_during  # the canary split traffic over both applications
        assert load.variants == {"iris-v2"}
        assert load.failures == [], load.failures[:5]
    # a replica of the promoted variant runs (Serve may be replacing one that missed a health check under load)
    _wait("a running replica of iris-v2", lambda: replica_pids(server.pid, "mlpilot.iris.iris-v2.") or None, 60)
    assert not replica_pids(server.pid, "mlpilot.iris.iris-v1.")  # retired: its application deleted
    assert server.stop() == []


def test_an_automatic_remediation_runs_on_ray(
    ray_server: Callable[[dict[str, str]], RayServer], tmp_path: Path
) -> None:
    """The incident loop's bad-candidate scenario (tests/e2e/test_incident_loop.py), unchanged, on the Ray executor."""
    server = ray_server({**INCIDENT_ENV, **{k: v for k, v in RAY_ENV.items() if "EXECUTOR" in k}})
    _bad_candidate(server.server, tmp_path)
    # it ran on Ray replicas (Serve may be replacing one that missed a health check on a loaded machine: up to 60 s)
    _wait("a running replica of stable", lambda: replica_pids(server.pid, "mlpilot.iris.stable.") or None, 60)
    assert not replica_pids(server.pid, "mlpilot.iris.candidate.")  # the aborted candidate is gone
    assert server.stop() == []
