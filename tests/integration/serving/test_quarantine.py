"""Input quarantine through a real server (in-process ASGI app + gRPC on a port, real runtimes, real store and
request log): a reject rule answers 422 / INVALID_ARGUMENT with the feature, value and reason; a route rule sends
the request to the fallback variant; a bad rule is a 400 naming the problem; quarantined requests are counted in
/metrics and logged with the status ``quarantined`` (not an outage: the availability SLI leaves them out)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import orjson
import pandas as pd
import pytest

from mlpilot import Client
from mlpilot.app import build_platform
from mlpilot.server import PlatformServer
from mlpilot.serving.grpc import _messages
from mlpilot.settings import Settings
from mlpilot.telemetry.query import read_records
from mlpilot.telemetry.sli import request_buckets
from tests.helpers import free_port


def _data() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"amount": rng.uniform(0, 500, 200), "age": rng.uniform(18, 90, 200)})
    return X, (X["amount"] > 250).to_numpy().astype(int)


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LogisticRegression

    X, y = _data()
    with Client(home=tmp_path / "home", actor="tester") as c:
        c.register_model("fraud", LogisticRegression(max_iter=500).fit(X, y), sample=X.head(3))
        c.register_model("fraud", DummyClassifier(strategy="constant", constant=1).fit(X, y), sample=X.head(3))
        c.deploy("fraud", "fraud:1", variant="main")
        c.deploy("fraud", "fraud:2", variant="safe")  # weight 0: only quarantined requests reach it
        spec = c.get_deployment("fraud").spec.model_dump(mode="json")
        spec["quarantine"] = [
            {"feature": "age", "low": 0, "high": 120, "reason": "incident 12"},
            {"feature": "amount", "high": 1000, "action": "route", "variant": "safe", "reason": "incident 13"},
        ]
        c.apply_deployment("fraud", spec)
    yield tmp_path / "home"


def _body(amount: list[float], age: list[float]) -> bytes:
    return orjson.dumps(
        {
            "inputs": [
                {"name": "amount", "datatype": "FP64", "shape": [len(amount)], "data": amount},
                {"name": "age", "datatype": "FP64", "shape": [len(age)], "data": age},
            ]
        }
    )


async def _grpc_infer(port: int, amount: float, age: float) -> tuple[grpc.StatusCode, str, str | None]:
    m = _messages()
    req = m["ModelInferRequest"](model_name="fraud")
    for name, value in (("amount", amount), ("age", age)):
        t = req.inputs.add(name=name, datatype="FP64", shape=[1])
        t.contents.fp64_contents.append(value)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=m["ModelInferRequest"].SerializeToString,
            response_deserializer=m["ModelInferResponse"].FromString,
        )(req)
        try:
            await call
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details() or "", None
        meta = dict(await call.initial_metadata())
        return grpc.StatusCode.OK, "", meta.get("x-mlpilot-variant")


def test_reject_route_metrics_log_and_bad_rules(home: Path) -> None:
    platform = build_platform(Settings(home=home, actor="tester"))
    port = free_port()

    async def run() -> dict[str, Any]:
        server = PlatformServer(platform, grpc_port=port)
        await server.start()
        out: dict[str, Any] = {}
        try:
            transport = httpx.ASGITransport(app=server)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                ok = await http.post("/v2/models/fraud/infer", content=_body([120.0], [40.0]))
                out["ok"] = (ok.status_code, ok.headers["x-mlpilot-variant"])
                bad = await http.post("/v2/models/fraud/infer", content=_body([10.0, 20.0], [30.0, 150.5]))
                out["reject"] = (bad.status_code, bad.json()["error"], bad.headers.get("x-request-id"))
                routed = await http.post("/v2/models/fraud/infer", content=_body([5000.0], [40.0]))
                out["route"] = (routed.status_code, routed.headers["x-mlpilot-variant"], routed.json())
                out["grpc_reject"] = await _grpc_infer(port, 10.0, -4.0)
                out["grpc_route"] = await _grpc_infer(port, 2000.0, 30.0)
                out["grpc_ok"] = await _grpc_infer(port, 20.0, 30.0)
                out["metrics"] = (await http.get("/metrics")).text
                spec = platform.store.get_deployment("fraud").spec.model_dump(mode="json")
                for rule, problem in (
                    ({"feature": "income", "high": 1}, "no such input of variant 'main'"),
                    (
                        {"feature": "amount", "high": 1, "action": "route", "variant": "nope"},
                        "routes to variant 'nope'",
                    ),
                    ({"feature": "age", "allowed": ["young"]}, "allowed values must be numbers"),
                    ({"feature": "age", "low": 1, "nulls": True}, "exactly one condition"),
                ):
                    r = await http.put("/api/v1/deployments/fraud", json={"spec": {**spec, "quarantine": [rule]}})
                    out.setdefault("bad_rules", []).append((r.status_code, r.json()["error"], problem))
        finally:
            await server.stop()
        return out

    try:
        out = asyncio.run(run())
        revision = platform.store.get_deployment("fraud").revision
    finally:
        platform.close()

    assert out["ok"] == (200, "main")
    status, message, request_id = out["reject"]
    assert status == 422
    assert message == "input quarantined: feature 'age' value 150.5 outside [0, 120] in 1 of 2 rows (incident 12)"
    status, variant, body = out["route"]
    assert (status, variant) == (200, "safe") and body["model_version"] == "2"

    code, details, _ = out["grpc_reject"]
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == "input quarantined: feature 'age' value -4 outside [0, 120] (incident 12)"
    assert out["grpc_route"] == (grpc.StatusCode.OK, "", "safe")
    assert out["grpc_ok"] == (grpc.StatusCode.OK, "", "main")

    counted = {
        ln.split("{")[1].split("}")[0]: float(ln.split()[-1])
        for ln in out["metrics"].splitlines()
        if ln.startswith("mlpilot_quarantined_requests_total{")
    }
    assert counted == {
        'action="reject",deployment="fraud",feature="age"': 2.0,
        'action="route",deployment="fraud",feature="amount"': 2.0,
    }
    client_errors = [
        ln for ln in out["metrics"].splitlines() if ln.startswith("mlpilot_requests_total") and "client_error" in ln
    ]
    assert any('variant="main"' in ln and ln.endswith(" 2.0") for ln in client_errors)

    for status, error, problem in out["bad_rules"]:
        assert status == 400 and problem in error, (status, error)
    assert revision == 3  # none of the bad specs was written

    root = Settings(home=home).log_root()
    rows = read_records(root, "fraud", status="quarantined")
    rejected = rows[rows["request_id"] == request_id]
    assert len(rejected) == 2 and set(rejected["variant"]) == {"main"}  # one logged row per input row
    assert rejected["error"].iloc[0].startswith("input quarantined: feature 'age' value 150.5")
    assert sorted(rejected["in.age"]) == [30.0, 150.5]
    everything = read_records(root, "fraud")
    first_rows = everything[(everything["row"] == 0) & ~everything["shadow"]]
    since, until = pd.Timestamp(0, tz="UTC").to_pydatetime(), pd.Timestamp.now(tz="UTC").to_pydatetime()
    buckets = request_buckets(root, "fraud", since=since, until=until, bucket_s=3600)
    assert buckets["total"].sum() == (first_rows["status"] != "quarantined").sum() < len(first_rows)
    assert buckets["good"].sum() == (first_rows["status"] == "ok").sum()
