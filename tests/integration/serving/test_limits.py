"""Limits on a real ``mlpilot up`` (HTTP over TCP with httpx, gRPC over a real channel): a deployment's rate limit
(429 + Retry-After), per-key rate limits (each key its own bucket), load shedding when a variant's in-flight limit is
reached (503 + Retry-After), the variant timeout (504; the server answers the next request), and a circuit breaker
that sends a failing variant's traffic to the fallback and closes again once the variant recovers. Refusals and
breaker states are checked in /metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import orjson
import pandas as pd
import pytest

from mlpilot import Client
from mlpilot.app import build_platform
from mlpilot.auth.authorizer import issue_key
from mlpilot.serving.grpc import _messages
from mlpilot.settings import Settings
from tests.helpers import ServerProcess, free_port, run_cli

pytestmark = pytest.mark.slow

# One input column ``x``: x < 0 raises (a failing runtime), x >= 1000 sleeps x/1000 s (a slow one), else x * 2.
# The model reads a file beside the home to fail on request: ``broken`` exists → every call raises.
FLAKY_SOURCE = """
import os
import time

import numpy as np

BROKEN = os.environ.get("FLAKY_BROKEN_FILE", "")


class Flaky:
    def predict(self, X):
        X = np.asarray(X, dtype=float)
        v = float(X[0, 0])
        if v < 0 or (BROKEN and os.path.exists(BROKEN)):
            raise ValueError("the flaky model failed")
        if v >= 1000:
            time.sleep(v / 1000.0)
        return X.sum(axis=1) * 2
"""

STEADY_SOURCE = """
import numpy as np


class Steady:
    def predict(self, X):
        return np.asarray(X, dtype=float).sum(axis=1) * 2
"""


def _body(x: float) -> bytes:
    return orjson.dumps({"inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "data": [x]}]})


def _spec(c: Client, name: str, **changes: Any) -> dict[str, Any]:
    spec = c.get_deployment(name).spec.model_dump(mode="json")
    spec.update(changes)
    return spec


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("limits")
    (root / "flaky.py").write_text(FLAKY_SOURCE)
    (root / "steady.py").write_text(STEADY_SOURCE)
    sample = pd.DataFrame({"x": [1.0]})
    with Client(home=root / "home", actor="tester") as c:
        c.register_model("flaky", root / "flaky.py", sample=sample, trust_pickle=True)
        c.register_model("flaky", root / "steady.py", sample=sample, trust_pickle=True)
        for name in ("limited", "narrow", "slow", "breaker"):
            c.deploy(name, "flaky:1", variant="main")
        c.apply_deployment("limited", _spec(c, "limited", limits={"rate_per_s": 1, "burst": 3}))
        narrow = _spec(c, "narrow", limits={"max_in_flight": 2})
        narrow["variants"][0]["runtime"]["batching"] = None
        c.apply_deployment("narrow", narrow)
        slow = _spec(c, "slow")
        slow["variants"][0]["runtime"]["timeout_s"] = 0.3
        c.apply_deployment("slow", slow)
        c.deploy("breaker", "flaky:2", variant="safe")  # weight 0: the fallback
        c.apply_deployment(
            "breaker", _spec(c, "breaker", limits={"fallback": "safe", "breaker_failures": 3, "breaker_open_s": 1.5})
        )
    return root / "home"


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[ServerProcess]:
    env = {"FLAKY_BROKEN_FILE": str(home.parent / "broken"), "MLPILOT_MONITORS__ENABLED": "0"}
    proc = ServerProcess(home, args=("--no-grpc",), extra_env=env)
    try:
        yield proc
    finally:
        proc.stop()


def _metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_deployment_rate_limit_answers_429_with_retry_after(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        codes = [http.post("/v2/models/limited/infer", content=_body(1.0)).status_code for _ in range(3)]
        assert codes == [200, 200, 200]  # the burst
        refused = http.post("/v2/models/limited/infer", content=_body(1.0))
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "1"
        assert "over its rate limit of 1 requests/s" in refused.json()["error"]
        assert http.post("/v2/models/narrow/infer", content=_body(1.0)).status_code == 200  # other deployments not
        time.sleep(1.05)
        assert http.post("/v2/models/limited/infer", content=_body(1.0)).status_code == 200  # a token is back
        metrics = http.get("/metrics").text
    assert _metric(metrics, "mlpilot_requests_refused_total", deployment="limited", reason="rate_deployment") >= 1


def test_in_flight_limit_sheds_with_503_and_retry_after(server: ServerProcess) -> None:
    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            slow = [asyncio.create_task(http.post("/v2/models/narrow/infer", content=_body(1500.0))) for _ in range(2)]
            await asyncio.sleep(0.5)  # both are in the model now
            extra = await http.post("/v2/models/narrow/infer", content=_body(1.0))
            return [*(await asyncio.gather(*slow)), extra]

    first, second, shed = asyncio.run(run())
    assert (first.status_code, second.status_code) == (200, 200)  # the accepted ones are served, not dropped
    assert shed.status_code == 503
    assert shed.headers["retry-after"] == "1"
    assert "serving its limit of 2 requests" in shed.json()["error"]
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.post("/v2/models/narrow/infer", content=_body(2.0)).status_code == 200  # recovered by itself
        metrics = http.get("/metrics").text
    assert _metric(metrics, "mlpilot_requests_refused_total", deployment="narrow", reason="shed") == 1


def test_a_slow_runtime_times_out_with_504_and_the_server_keeps_serving(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        t0 = time.perf_counter()
        r = http.post("/v2/models/slow/infer", content=_body(2000.0), headers={"x-request-id": "slow-1"})
        took = time.perf_counter() - t0
        assert r.status_code == 504
        assert "did not answer within 0.3 s" in r.json()["error"]
        assert took < 1.5  # answered at the timeout, not after the model's 2 s
        # the model's call cannot be interrupted (a thread): other deployments answer meanwhile …
        other = http.post("/v2/models/narrow/infer", content=_body(3.0))
        assert other.status_code == 200 and time.perf_counter() - t0 < 1.9
        # … and the slow variant answers again once its call is over, without a restart
        time.sleep(max(0.0, 2.2 - (time.perf_counter() - t0)))
        ok = http.post("/v2/models/slow/infer", content=_body(3.0))
        assert ok.status_code == 200
        assert ok.json()["outputs"][0]["data"] == [6.0]


def test_breaker_routes_to_the_fallback_and_closes_after_recovery(server: ServerProcess, home: Path) -> None:
    broken = home.parent / "broken"
    with httpx.Client(base_url=server.url, timeout=10) as http:

        def infer() -> httpx.Response:
            return http.post("/v2/models/breaker/infer", content=_body(4.0))

        healthy = infer()
        assert (healthy.status_code, healthy.headers["x-mlpilot-variant"]) == (200, "main")
        broken.touch()
        try:
            failures = [infer() for _ in range(3)]
            assert [r.status_code for r in failures] == [500, 500, 500]
            assert all(r.headers.get("x-mlpilot-variant") is None for r in failures)
            rerouted = [infer() for _ in range(5)]  # open: the fallback answers, correctly
            assert [(r.status_code, r.headers["x-mlpilot-variant"]) for r in rerouted] == [(200, "safe")] * 5
            assert all(r.json()["outputs"][0]["data"] == [8.0] for r in rerouted)
            metrics = http.get("/metrics").text
            assert _metric(metrics, "mlpilot_circuit_breaker_open", deployment="breaker", variant="main") == 1
            assert _metric(metrics, "mlpilot_circuit_breaker_rerouted_total", deployment="breaker", variant="main") == 5
            time.sleep(1.6)
            probe = infer()  # half-open: one probe goes to main, which still fails: open again
            assert probe.status_code == 500
            assert infer().headers["x-mlpilot-variant"] == "safe"
        finally:
            broken.unlink()
        time.sleep(1.6)
        recovered = infer()  # the probe succeeds: closed
        assert (recovered.status_code, recovered.headers["x-mlpilot-variant"]) == (200, "main")
        assert [infer().headers["x-mlpilot-variant"] for _ in range(3)] == ["main"] * 3
        metrics = http.get("/metrics").text
    assert _metric(metrics, "mlpilot_circuit_breaker_open", deployment="breaker", variant="main") == 0


def test_bad_limits_are_400_with_a_message(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        spec = http.get("/api/v1/deployments/breaker").json()["spec"]
        for limits, problem in (
            ({"fallback": "nope"}, "limits.fallback names 'nope', which is not a variant"),
            ({"rate_per_s": 0}, "greater than 0"),
            ({"max_in_flight": 0}, "greater than or equal to 1"),
        ):
            r = http.put("/api/v1/deployments/breaker", json={"spec": {**spec, "limits": limits}})
            assert r.status_code == 400, r.text
            assert problem in r.json()["error"]


def test_cli_sets_shows_and_clears_limits(server: ServerProcess, home: Path) -> None:
    out = run_cli("deployments", "limits", "narrow", "--rate-per-s", "50", "--max-in-flight", "8", home=home,
                  url=server.url).stdout  # fmt: skip
    assert "limits: 50 requests/s (burst 50); ≤8 in flight per variant" in out
    bad = run_cli("deployments", "limits", "narrow", "--fallback", "nope", home=home, url=server.url, check=False)
    assert bad.returncode != 0
    assert "limits.fallback names 'nope', which is not a variant" in bad.stdout + bad.stderr
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.get("/api/v1/deployments/narrow").json()["spec"]["limits"]["max_in_flight"] == 8
        run_cli("deployments", "limits", "narrow", "--clear", home=home, url=server.url)
        assert http.get("/api/v1/deployments/narrow").json()["spec"]["limits"] is None


def test_per_key_rate_limits_over_http_and_grpc(tmp_path: Path) -> None:
    """Auth on: each key has its own bucket (``limits.key_rate_per_s``); gRPC answers RESOURCE_EXHAUSTED with a
    ``retry-after`` trailer."""
    home = tmp_path / "home"
    (tmp_path / "steady.py").write_text(STEADY_SOURCE)
    with Client(home=home, actor="tester") as c:
        c.register_model("steady", tmp_path / "steady.py", sample=pd.DataFrame({"x": [1.0]}), trust_pickle=True)
        c.deploy("steady", "steady:1", variant="main")
    platform = build_platform(Settings(home=home))
    alice = issue_key(platform.store, "alice", ["predict"], [], "test").key
    bob = issue_key(platform.store, "bob", ["predict"], [], "test").key
    platform.close()
    grpc_port = free_port()
    env = {
        "MLPILOT_AUTH__MODE": "on",
        "MLPILOT_LIMITS__KEY_RATE_PER_S": "0.5",
        "MLPILOT_LIMITS__KEY_BURST": "2",
        "MLPILOT_MONITORS__ENABLED": "0",
    }
    server = ServerProcess(home, args=("--grpc-port", str(grpc_port)), extra_env=env)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:

            def infer(key: str) -> httpx.Response:
                return http.post(
                    "/v2/models/steady/infer", content=_body(1.0), headers={"authorization": f"Bearer {key}"}
                )

            assert [infer(alice).status_code for _ in range(2)] == [200, 200]
            refused = infer(alice)
            assert refused.status_code == 429
            assert refused.headers["retry-after"] == "2"  # 0.5 tokens/s: the next one in 2 s
            assert "caller 'key:alice'" in refused.json()["error"]
            assert infer(bob).status_code == 200  # bob has his own bucket
            code, details, trailers = asyncio.run(_grpc_infer(grpc_port, alice))
            assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "caller 'key:alice'" in details
            assert trailers.get("retry-after") in ("1", "2")
            code, _, _ = asyncio.run(_grpc_infer(grpc_port, bob))
            assert code is grpc.StatusCode.OK
            metrics = http.get("/metrics", headers={"authorization": f"Bearer {bob}"})
            assert metrics.status_code == 403  # /metrics needs read: bob only predicts
    finally:
        server.stop()


async def _grpc_infer(port: int, key: str) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    m = _messages()
    req = m["ModelInferRequest"](model_name="steady")
    t = req.inputs.add(name="x", datatype="FP64", shape=[1])
    t.contents.fp64_contents.append(1.0)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=m["ModelInferRequest"].SerializeToString,
            response_deserializer=m["ModelInferResponse"].FromString,
        )(req, metadata=(("authorization", f"Bearer {key}"),))
        try:
            await call
        except grpc.aio.AioRpcError as exc:
            trailers = {k: str(v) for k, v in (exc.trailing_metadata() or ())}
            return exc.code(), exc.details() or "", trailers
        return grpc.StatusCode.OK, "", {}


def test_wrong_methods_on_the_data_plane_are_405(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        for method, path in (("DELETE", "/v2/models/narrow"), ("PUT", "/v2"), ("POST", "/metrics")):
            r = http.request(method, path)
            assert r.status_code == 405, (method, path, r.text)
            assert f"{method} is not allowed on" in r.json()["error"]
        assert http.post("/metrics").headers["allow"] == "GET, HEAD"
        assert http.get("/metrics").status_code == 200
