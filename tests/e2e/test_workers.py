"""Multi-worker mode: several processes share the port and every one follows the snapshot feed."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import orjson
import pytest

from mlpilot import Client
from tests.factories import iris_frame
from tests.helpers import ServerProcess

pytestmark = pytest.mark.slow


def _children(pid: int) -> list[int]:
    out = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        ppid = next((ln.split()[1] for ln in text.splitlines() if ln.startswith("PPid:")), None)
        if ppid == str(pid):
            out.append(int(status.parent.name))
    return out


def test_workers_share_the_port_and_all_follow_the_feed(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    X, y = iris_frame()
    Xn = X.to_numpy()
    home = tmp_path / "home"
    with Client(home=home) as c:
        c.register_model("iris", LogisticRegression(max_iter=300).fit(Xn, y), sample=Xn[:2])
        c.register_model("iris", LogisticRegression(C=0.01, max_iter=300).fit(Xn, y), sample=Xn[:2])
        c.deploy("iris", "iris:1", variant="a")
        c.deploy("iris", "iris:2", variant="b")
    server = ServerProcess(home, args=("--workers", "2", "--no-grpc"))
    body = orjson.dumps({"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 4], "data": Xn[0].tolist()}]})
    try:
        deadline = time.monotonic() + 30
        while len(_children(server.proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        workers = _children(server.proc.pid)
        assert len(workers) >= 2, workers

        def variants(n: int) -> set[str]:
            seen = set()
            for _ in range(n):  # a new connection each time: the kernel spreads them over the workers
                r = httpx.post(f"{server.url}/v2/models/iris/infer", content=body, timeout=10)
                assert r.status_code == 200, r.text
                seen.add(r.headers["x-mlpilot-variant"])
            return seen

        # Wait until both workers have loaded (readiness is per process; poll through new connections).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if all(httpx.get(f"{server.url}/v2/health/ready").status_code == 200 for _ in range(10)):
                break
            time.sleep(0.2)
        assert variants(30) == {"a"}
        with Client(server.url) as c:
            c.set_traffic("iris", {"b": 100})
        time.sleep(1.0)
        assert variants(60) == {"b"}
    finally:
        server.stop()
    deadline = time.monotonic() + 15
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [w for w in workers if _alive(w)], "workers outlived the server"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in state
