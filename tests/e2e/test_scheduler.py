"""`mlpilot up` runs the monitor scheduler by itself: a monitor's time series grows in a real server process."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mlpilot import Client, InvalidArgument
from tests.factories import iris_frame
from tests.helpers import ServerProcess, free_port

pytestmark = pytest.mark.slow


def test_the_server_runs_due_monitors_on_its_own(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    X, y = iris_frame()
    home = tmp_path / "home"
    env = {"MLPILOT_MONITORS__TICK_S": "0.3", "MLPILOT_LOGS__FLUSH_INTERVAL_S": "0.2"}
    server = ServerProcess(home, extra_env=env, args=("--grpc-port", str(free_port())))
    try:
        with Client(server.url) as c:
            v = c.register_model("iris", LogisticRegression(max_iter=300).fit(X, y), sample=X.head(3))
            c.deploy("iris", v.ref)
            c.create_monitor("iris", "fast-traffic", {"kind": "traffic", "every": "1s", "window": "1h", "min_rows": 1})
            deadline = time.monotonic() + 10
            for i in range(0, 30, 5):
                while True:  # the data plane picks the new deployment up within the snapshot poll (0.2 s)
                    try:
                        c.predict("iris", X.iloc[i : i + 5])
                        break
                    except InvalidArgument:
                        assert time.monotonic() < deadline, "the deployment never reached the data plane"
                        time.sleep(0.1)
            deadline = time.monotonic() + 20
            results = []
            while time.monotonic() < deadline:
                results = [r for r in c.monitor_results("iris", "fast-traffic") if r.status.value == "ok"]
                if len(results) >= 2 and results[-1].detail.get("requests") == 6:
                    break
                time.sleep(0.3)
            assert len(results) >= 2, c.monitor_results("iris", "fast-traffic")
            assert results[-1].detail["requests"] == 6 and results[-1].value == 0.0
            assert results[0].ts < results[-1].ts  # scheduled repeatedly, nobody called run
            assert {m.name for m in c.list_monitors("iris")} == {"traffic", "drift", "fast-traffic"}
    finally:
        server.stop()
