"""`mlpilot ship --wait` against a real server under live traffic: register → signature → smoke → offline → shadow →
canary 50% → canary 100% → promote, every gate printed, the deployment left serving the new version."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mlpilot import Client
from mlpilot.errors import InvalidArgument, MlpilotError, NotFound
from tests.factories import iris_frame
from tests.helpers import ServerProcess, free_port, run_cli

pytestmark = pytest.mark.slow

GATE = re.compile(r"^([✔✘–]) (.+?) +(pass|fail|skip)  ", re.MULTILINE)  # noqa: RUF001 - the skip mark
Pending = tuple[float, str, np.ndarray]  # (sent at, request id, the rows' labels)
ENV = {
    "MLPILOT_ROLLOUTS__TICK_S": "0.3",
    "MLPILOT_LOGS__FLUSH_INTERVAL_S": "0.2",
    "MLPILOT_MONITORS__ENABLED": "false",
}


class Traffic(threading.Thread):
    """~50 requests/s of 5 iris rows each; every request's labels follow as feedback once it is in the log."""

    def __init__(self, url: str, rate: float = 50.0) -> None:
        super().__init__(daemon=True)
        self.url, self.period = url, 1.0 / rate
        self.stop_event = threading.Event()
        self.sent = self.labelled = 0
        self.errors: list[str] = []
        self.variants: dict[str, int] = {}

    def run(self) -> None:
        X, y = iris_frame()
        rng = np.random.default_rng(0)
        pending: list[Pending] = []
        last_feedback = time.monotonic()
        with Client(self.url) as c:
            while not self.stop_event.is_set():
                t0 = time.monotonic()
                rows = rng.choice(len(X), size=5, replace=False)
                try:
                    p = c.predict("iris", X.iloc[rows])
                    self.sent += 1
                    self.variants[str(p.variant)] = self.variants.get(str(p.variant), 0) + 1
                    if p.request_id:
                        pending.append((t0, p.request_id, y.to_numpy()[rows]))
                except MlpilotError as exc:  # a variant swap in flight: note it, keep going
                    self.errors.append(exc.message)
                if t0 - last_feedback > 0.5:
                    pending = self._feedback(c, pending, t0)
                    last_feedback = t0
                time.sleep(max(0.0, self.period - (time.monotonic() - t0)))

    def _feedback(self, c: Client, pending: list[Pending], now: float) -> list[Pending]:
        due = [p for p in pending if now - p[0] > 1.0]
        if not due:
            return pending
        items = [
            {"request_id": rid, "row": j, "label": int(label)}
            for _, rid, labels in due
            for j, label in enumerate(labels)
        ]
        try:
            c.feedback("iris", items)
            self.labelled += len(due)
        except NotFound:  # not flushed to the log yet: retry, give up after 10 s
            return [p for p in pending if now - p[0] < 10.0]
        return [p for p in pending if now - p[0] <= 1.0]


def test_ship_promotes_a_compatible_model_through_every_gate(tmp_path: Path) -> None:
    shadow = "2s"
    import joblib
    from sklearn.linear_model import LogisticRegression

    X, y = iris_frame()
    v2_file = tmp_path / "iris-v2.joblib"
    joblib.dump(LogisticRegression(C=2.0, max_iter=500).fit(X, y), v2_file)
    server = ServerProcess(tmp_path / "home", extra_env=ENV, args=("--grpc-port", str(free_port())))
    traffic = Traffic(server.url)
    try:
        with Client(server.url) as c:
            v1 = c.register_model("iris", LogisticRegression(max_iter=300).fit(X, y), sample=X.head(3))
            c.register_dataset("iris-ref", X.assign(target=y.values), bind_to=v1.ref)
            c.deploy("iris", v1.ref)
            deadline = time.monotonic() + 15
            while True:  # the data plane picks the new deployment up within its snapshot poll
                try:
                    c.predict("iris", X.head(2))
                    break
                except InvalidArgument:
                    assert time.monotonic() < deadline, "the deployment never reached the data plane"
                    time.sleep(0.1)
            traffic.start()
            time.sleep(1.5)  # some baseline traffic (and labels) before the candidate arrives
            result = run_cli(
                "ship", str(v2_file), "--deployment", "iris", "--trust-pickle",
                "--shadow", shadow, "--steps", "50,100", "--step-duration", "2s", "--step-samples", "20",
                "--wait", "--timeout", "120",
                home=tmp_path / "cli-home", url=server.url, check=False, timeout=240,
            )  # fmt: skip
            out = result.stdout
            assert result.returncode == 0, f"{out}\n{result.stderr}"
            gates = GATE.findall(out)
            phases = ["shadow"] if shadow != "0" else []
            expected = ["register", "signature", "smoke", "offline", "rollout", *phases, "canary 50%", "canary 100%"]
            assert [name for _, name, _ in gates] == [*expected, "promote"], out
            assert all(mark == "✔" and verdict == "pass" for mark, _, verdict in gates), out
            assert "candidate accuracy" in out and "agreement" in out  # the offline numbers
            assert "error_rate" in out and "latency" in out  # the controller's analyses, per phase
            assert "shipped iris:2" in out.splitlines()[-1]

            dep = c.get_deployment("iris")
            assert dep.spec.traffic == {"iris-v2": 100}
            assert [v.model for v in dep.spec.variants] == ["iris:2"]
            r = c.rollout("iris")
            assert r.phase.value == "promoted" and not r.active
            actions = [e.action for e in c.rollout_decisions(r.id)]
            assert "rollout.promote" in actions and actions[-1] == "rollout.complete", actions
            assert traffic.sent > 100 and traffic.labelled > 0, (traffic.sent, traffic.labelled)
            assert traffic.variants.get("iris-v2", 0) > 0  # the canary really served live requests
    finally:
        traffic.stop_event.set()
        if traffic.is_alive():
            traffic.join(10)
        server.stop()
