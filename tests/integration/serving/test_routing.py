"""The server app in-process (real runtimes, real store, real ASGI): split, sticky, shadow, propagation, outages."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from mlpilot import Client
from mlpilot.app import build_platform
from mlpilot.server import PlatformServer
from mlpilot.serving.dataplane import RecentRecords
from mlpilot.settings import Settings
from mlpilot.store import Store
from tests.factories import SlowRowSum, iris_frame
from tests.helpers import ServerProcess


def _train() -> tuple[Any, Any, np.ndarray]:
    from sklearn.linear_model import LogisticRegression

    X, y = iris_frame()
    Xn = X.to_numpy()
    return LogisticRegression(max_iter=300).fit(Xn, y), LogisticRegression(C=0.01, max_iter=300).fit(Xn, y), Xn


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    a, b, X = _train()
    with Client(home=tmp_path / "home") as c:
        c.register_model("iris", a, sample=X[:3])
        c.register_model("iris", b, sample=X[:3])
        c.deploy("iris", "iris:1", variant="a")
        c.deploy("iris", "iris:2", variant="b")
        c.set_traffic("iris", {"a": 70, "b": 30})
    yield tmp_path / "home"


def _body(X: np.ndarray) -> bytes:
    return orjson.dumps(
        {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": list(X.shape), "data": X.ravel().tolist()}]}
    )


async def _serve(home: Path, fn: Any, **settings: Any) -> Any:
    platform = build_platform(Settings(home=home, **settings))
    server = PlatformServer(platform)
    await server.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=server), base_url="http://t") as http:
            return await fn(server, http)
    finally:
        await server.stop()
        platform.close()


def test_split_within_3_points_over_10000_requests_and_sticky(home: Path) -> None:
    body = _body(iris_frame()[0].to_numpy()[:1])

    async def run(server: PlatformServer, http: httpx.AsyncClient) -> tuple[Counter[str], dict[str, set[str]]]:
        counts: Counter[str] = Counter()
        for _ in range(10_000):
            r = await http.post("/v2/models/iris/infer", content=body)
            assert r.status_code == 200
            counts[r.headers["x-mlpilot-variant"]] += 1
        return counts, {}

    counts, _ = asyncio.run(_serve(home, run))
    assert abs(counts["a"] / 10_000 - 0.70) <= 0.03 and abs(counts["b"] / 10_000 - 0.30) <= 0.03, counts

    with Client(home=home) as c:
        c.apply_deployment("iris", {**c.get_deployment("iris").spec.model_dump(mode="json"), "sticky_header": "x-user"})

    async def sticky(server: PlatformServer, http: httpx.AsyncClient) -> dict[str, set[str]]:
        seen: dict[str, set[str]] = {}
        for i in range(300):
            for _ in range(3):
                r = await http.post("/v2/models/iris/infer", content=body, headers={"x-user": f"user-{i}"})
                seen.setdefault(f"user-{i}", set()).add(r.headers["x-mlpilot-variant"])
        return seen

    seen = asyncio.run(_serve(home, sticky))
    assert all(len(v) == 1 for v in seen.values())
    share_a = sum(v == {"a"} for v in seen.values()) / len(seen)
    assert 0.55 < share_a < 0.85


def test_shadow_never_changes_or_delays_the_primary(home: Path) -> None:
    X = iris_frame()[0].to_numpy()
    with Client(home=home) as c:
        c.register_model("iris", _train()[1], sample=X[:3])  # v3 as shadow: same signature
        c.deploy("iris", "iris:3", variant="shadow", shadow=True)
        c.set_traffic("iris", {"a": 100})
    primary = _train()[0].predict(X[:1])

    async def run(server: PlatformServer, http: httpx.AsyncClient) -> tuple[list[float], RecentRecords]:
        latencies = []
        for _ in range(200):
            t0 = time.perf_counter()
            r = await http.post("/v2/models/iris/infer", content=_body(X[:1]))
            latencies.append(time.perf_counter() - t0)
            assert r.status_code == 200 and r.headers["x-mlpilot-variant"] == "a"
            assert r.json()["outputs"][0]["data"] == primary.tolist()
        await asyncio.sleep(0.3)  # let the shadows finish
        sink = server.dataplane.sink
        assert isinstance(sink, RecentRecords)
        return latencies, sink

    latencies, sink = asyncio.run(_serve(home, run, logs={"enabled": False}))  # records kept in memory
    shadows = [r for r in sink.records if r.shadow]
    primaries = [r for r in sink.records if not r.shadow]
    assert len(primaries) == 200 and len(shadows) == 200
    assert {r.request_id for r in shadows} == {r.request_id for r in primaries}  # paired by request id
    assert all(r.variant == "shadow" and r.outputs is not None for r in shadows)
    assert np.median(latencies) < 0.02


def test_a_slow_shadow_is_dropped_not_queued(home: Path) -> None:
    X = iris_frame()[0].to_numpy()
    with Client(home=home) as c:
        c.register_model("iris", SlowRowSum(), sample=X[:2], flavor="pyfunc")  # v3: 50 ms per call
        c.deploy("iris", "iris:3", variant="slow", shadow=True)
        c.set_traffic("iris", {"a": 100})

    async def run(server: PlatformServer, http: httpx.AsyncClient) -> tuple[float, str]:
        t0 = time.perf_counter()
        for _ in range(3):  # waves of 50 concurrent requests: 150 shadows due at once, 64 allowed in flight
            codes = await asyncio.gather(*(http.post("/v2/models/iris/infer", content=_body(X[:1])) for _ in range(50)))
            assert {r.status_code for r in codes} == {200}
        elapsed = time.perf_counter() - t0
        return elapsed, (await http.get("/metrics")).text

    elapsed, metrics = asyncio.run(_serve(home, run))
    assert elapsed < 150 * 0.05 / 2  # far less than running the 50 ms shadows inline (7.5 s)
    dropped = [ln for ln in metrics.splitlines() if ln.startswith("mlpilot_shadow_dropped_total")]
    assert dropped and float(dropped[0].split()[-1]) > 0


def test_data_plane_keeps_serving_when_the_store_is_gone(home: Path, tmp_path: Path) -> None:
    body = _body(iris_frame()[0].to_numpy()[:1])

    async def run(server: PlatformServer, http: httpx.AsyncClient) -> list[int]:
        assert (await http.post("/v2/models/iris/infer", content=body)).status_code == 200
        broken = Store.from_url(f"sqlite:///{tmp_path}/missing/dir/x.db")
        server.platform.deployments.store = broken  # the control plane loses its database
        server.feed.poke()
        await asyncio.sleep(0.6)
        codes = [(await http.post("/v2/models/iris/infer", content=body)).status_code for _ in range(20)]
        codes.append((await http.get("/v2/health/ready")).status_code)
        return codes

    assert set(asyncio.run(_serve(home, run))) == {200}


@pytest.mark.slow
def test_traffic_changes_under_load_fail_nothing_and_propagate_fast(home: Path) -> None:
    server = ServerProcess(home, extra_env={"MLPILOT_SERVER__GRPC": "0"})
    body = _body(iris_frame()[0].to_numpy()[:1])
    stop = threading.Event()
    failures: list[str] = []
    seen: list[tuple[float, str]] = []

    def load() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            while not stop.is_set():
                try:
                    r = http.post("/v2/models/iris/infer", content=body)
                    if r.status_code != 200:
                        failures.append(f"{r.status_code} {r.text}")
                    else:
                        seen.append((time.monotonic(), r.headers["x-mlpilot-variant"]))
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))

    threads = [threading.Thread(target=load) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        delays = []
        with Client(server.url) as c:
            for split in ({"a": 0, "b": 100}, {"a": 100, "b": 0}, {"a": 50, "b": 50}, {"b": 100}, {"a": 100}):
                time.sleep(0.5)
                c.set_traffic("iris", split)
                t_change = time.monotonic()
                only = [k for k, w in split.items() if w == 100]
                if only:
                    deadline = t_change + 5
                    while time.monotonic() < deadline:
                        recent = [v for t, v in seen[-20:] if t > t_change]
                        if len(recent) >= 5 and set(recent[-5:]) == set(only):
                            delays.append(time.monotonic() - t_change)
                            break
                        time.sleep(0.01)
                    else:
                        raise AssertionError(f"split {split} not observed within 5 s")
    finally:
        stop.set()
        for t in threads:
            t.join()
        server.stop()
    assert not failures, failures[:5]
    assert len(seen) > 500
    print(f"\n{len(seen)} requests, 0 failed; traffic-change propagation delays (s): {[round(d, 3) for d in delays]}")
    assert max(delays) < 1.0, delays
