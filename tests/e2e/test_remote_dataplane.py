"""Remote data planes: a real ``mlpilot up`` control plane and two real ``mlpilot serve --control-url`` processes
(each with its own home) that get snapshots by long-poll and model bytes over the control API.

Deploy → both serve; a traffic change reaches both within 2 s; the control plane killed (-9) → both keep serving;
a data plane restarted while it is down serves its kept snapshot; the control plane back → changes flow again.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import orjson
import pytest

from mlpilot import Client
from tests.factories import iris_frame
from tests.helpers import ServerProcess, free_port

pytestmark = pytest.mark.slow

PROPAGATION_BOUND_S = 2.0  # the brief's acceptance bound


def _data_plane(home: Path, control_url: str, port: int | None = None) -> ServerProcess:
    """A real ``mlpilot serve --control-url`` (its own home), ready once it serves a snapshot."""
    args = ("--control-url", control_url, "--no-grpc")
    home.parent.mkdir(parents=True, exist_ok=True)
    return ServerProcess(home, port=port, args=args, command="serve", ready_path="/v2/health/ready")


def _kill9(server: ServerProcess) -> None:
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(10)
    server._log.close()


def test_remote_data_planes_follow_the_control_plane_and_outlive_it(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    X, y = iris_frame()
    Xn = X.to_numpy()
    body = orjson.dumps({"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 4], "data": Xn[0].tolist()}]})
    control_home = tmp_path / "control"
    control_port = free_port()
    started: list[ServerProcess] = []
    control = ServerProcess(control_home, port=control_port, args=("--no-grpc",))
    try:
        with Client(control.url) as c:
            c.register_model("iris", LogisticRegression(max_iter=300).fit(Xn, y), sample=Xn[:2])
            c.register_model("iris", LogisticRegression(C=0.01, max_iter=300).fit(Xn, y), sample=Xn[:2])
            c.deploy("iris", "iris:1", variant="a")
            c.deploy("iris", "iris:2", variant="b")
        homes = [tmp_path / f"dp{i}" / "home" for i in range(2)]
        planes = []
        for home in homes:
            planes.append(_data_plane(home, control.url))
            started.append(planes[-1])

        def variant(dp: ServerProcess) -> str:
            r = httpx.post(f"{dp.url}/v2/models/iris/infer", content=body, timeout=10)
            assert r.status_code == 200, r.text
            assert r.json()["outputs"], r.text
            return r.headers["x-mlpilot-variant"]

        # 1. both data planes serve the deployment (model bytes came over the control API)
        assert [variant(dp) for dp in planes] == ["a", "a"]
        for dp, home in zip(planes, homes, strict=True):
            assert (home / "snapshot.json").is_file()
            assert list((home / "cache" / "blobs").rglob("*"))
            # no control API here: a clear 404 naming the control plane
            r = httpx.get(f"{dp.url}/api/v1/deployments", timeout=5)
            assert r.status_code == 404 and control.url in r.json()["error"]

        def propagate(weights: dict[str, int], expect: str) -> float:
            with Client(control.url) as c:
                c.set_traffic("iris", weights)
            t0 = time.monotonic()
            pending = set(range(len(planes)))
            while pending and time.monotonic() - t0 < 30:
                pending = {i for i in pending if variant(planes[i]) != expect}
                time.sleep(0.01)
            assert not pending, f"data planes {pending} did not switch to {expect}"
            return time.monotonic() - t0

        # 2. a traffic change reaches both within the bound
        took = propagate({"b": 100}, "b")
        print(f"\ntraffic change propagated to 2 remote data planes in {took * 1000:.0f} ms")
        assert took < PROPAGATION_BOUND_S
        assert [variant(dp) for dp in planes] == ["b", "b"]

        # 3. the control plane dies: both keep serving their last snapshot
        _kill9(control)
        for _ in range(5):
            assert [variant(dp) for dp in planes] == ["b", "b"]
            time.sleep(0.2)
        for dp in planes:
            assert httpx.get(f"{dp.url}/v2/health/ready", timeout=5).status_code == 200

        # 4. a data plane restarted while the control plane is down serves its kept snapshot
        planes[0].stop()
        planes[0] = _data_plane(homes[0], f"http://127.0.0.1:{control_port}", port=planes[0].port)
        started.append(planes[0])
        assert variant(planes[0]) == "b"
        assert b"unreachable" in planes[0].log.read_bytes()

        # 5. the control plane comes back (same home, same port): a new change reaches both again
        control = ServerProcess(control_home, port=control_port, args=("--no-grpc",))
        t0 = time.monotonic()
        while time.monotonic() - t0 < 30 and not all(b"reachable again" in dp.log.read_bytes() for dp in planes):
            time.sleep(0.05)
        assert all(b"reachable again" in dp.log.read_bytes() for dp in planes)  # logged once when back
        print(f"both data planes reconnected {(time.monotonic() - t0) * 1000:.0f} ms after the control plane was up")
        took = propagate({"a": 100}, "a")
        print(f"after the control plane came back: propagated in {took * 1000:.0f} ms")
        assert took < PROPAGATION_BOUND_S
        for dp in planes:  # logged once when it went away (or was away at start), not at every retry
            assert dp.log.read_bytes().count(b"unreachable") == 1, dp.log.read_text()
    finally:
        for dp in started:
            dp.stop()
        control.stop()
