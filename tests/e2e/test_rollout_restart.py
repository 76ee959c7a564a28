"""A real `mlpilot up` advances a rollout on its own; killed (SIGKILL) mid-rollout and restarted, it resumes where it
was — same phase, step and revision, the same split — and no transition is recorded twice."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from mlpilot import Client, MlpilotError
from mlpilot.records import RolloutPhase
from tests.factories import iris_frame
from tests.helpers import ServerProcess, free_port

pytestmark = pytest.mark.slow

ENV = {
    "MLPILOT_ROLLOUTS__TICK_S": "0.3",
    "MLPILOT_LOGS__FLUSH_INTERVAL_S": "0.2",
    "MLPILOT_MONITORS__ENABLED": "false",
}


class Traffic(threading.Thread):
    """Predictions against whichever server is up (errors while it restarts are expected and skipped)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.url = ""
        self.stop = threading.Event()
        self.sent = 0

    def run(self) -> None:
        X, _ = iris_frame()
        while not self.stop.is_set():
            try:
                with Client(self.url) as c:
                    while not self.stop.is_set():
                        c.predict("iris", X.sample(3, random_state=self.sent))
                        self.sent += 1
                        time.sleep(0.02)
            except (MlpilotError, httpx.HTTPError, OSError):
                time.sleep(0.1)


def _wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_killed_control_plane_resumes_the_rollout_without_repeating_a_transition(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    X, y = iris_frame()
    home = tmp_path / "home"
    server = ServerProcess(home, extra_env=ENV, args=("--grpc-port", str(free_port())))
    traffic = Traffic()
    try:
        with Client(server.url) as c:
            v1 = c.register_model("iris", LogisticRegression(max_iter=300).fit(X, y), sample=X.head(3))
            v2 = c.register_model("iris", LogisticRegression(C=0.5, max_iter=300).fit(X, y), sample=X.head(3))
            c.deploy("iris", v1.ref)
            traffic.url = server.url
            traffic.start()
            _wait(lambda: traffic.sent > 5, 20, "the first predictions")
            r = c.start_rollout(
                "iris",
                candidate=v2.ref,
                steps=[
                    {"weight": 20, "min_duration": "1s", "min_samples": 5},
                    {"weight": 50, "min_duration": "1h", "min_samples": 5},  # long: the server dies in this step
                    {"weight": 100, "min_duration": "1s", "min_samples": 5},
                ],
                analyses=[{"kind": "error_rate", "min_samples": 5}],
            )
            # the server's own scheduler advances it (nobody ticks by hand)
            _wait(lambda: c.rollout(rollout_id=r.id).step == 1, 60, "the rollout to reach step 2")
            before = c.rollout(rollout_id=r.id)
            events_before = [e.id for e in c.rollout_decisions(r.id)]

        os.kill(server.proc.pid, signal.SIGKILL)  # a hard crash: no shutdown hooks
        server.proc.wait(10)
        server.stop()
        server = ServerProcess(home, extra_env=ENV, args=("--grpc-port", str(free_port())))
        traffic.url = server.url
        with Client(server.url) as c:
            time.sleep(3)  # ten ticks of the restarted controller
            after = c.rollout(rollout_id=r.id)
            assert (after.phase, after.step, after.revision) == (RolloutPhase.CANARY, 1, before.revision)
            assert [e.id for e in c.rollout_decisions(r.id)] == events_before  # nothing repeated, nothing new
            assert c.get_deployment("iris").spec.traffic == {"iris-v1": 50, "iris-v2": 50}
            done = c.promote_rollout(r.id)
            assert (done.phase, done.active) == (RolloutPhase.PROMOTED, False)
            actions = [e.action.removeprefix("rollout.") for e in c.rollout_decisions(r.id)]
            assert actions == ["started", "begin", "advance", "promote", "complete"], actions
            assert all(n == 1 for n in Counter(actions).values())
            assert c.get_deployment("iris").spec.traffic == {"iris-v2": 100}
    finally:
        traffic.stop.set()
        traffic.join(10)
        server.stop()
