"""OpenTelemetry spans per request and stage (in-memory exporter), and the trace id in the request log."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import orjson
import pytest

from mlpilot import Client
from mlpilot.app import build_platform
from mlpilot.server import PlatformServer
from mlpilot.settings import Settings
from mlpilot.telemetry.query import read_records
from tests.factories import iris_frame

pytest.importorskip("opentelemetry.sdk")


def test_spans_per_stage_and_trace_id_in_the_log(tmp_path: Path) -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from sklearn.linear_model import LogisticRegression

    X, y = iris_frame()
    Xn = X.to_numpy()
    home = tmp_path / "home"
    with Client(home=home) as c:
        c.register_model("iris", LogisticRegression(max_iter=300).fit(Xn, y), sample=Xn[:2])
        c.deploy("iris", "iris:1")
    exporter = InMemorySpanExporter()
    body = orjson.dumps({"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 4], "data": Xn[0].tolist()}]})

    async def run() -> list[str]:
        platform = build_platform(Settings(home=home, tracing={"enabled": True}))
        server = PlatformServer(platform)
        assert server.tracer_provider is not None
        server.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        await server.start()
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=server), base_url="http://t") as http:
                ids = [
                    (await http.post("/v2/models/iris/infer", content=body)).headers["x-request-id"] for _ in range(3)
                ]
        finally:
            await server.stop()
            platform.close()
        return ids

    ids = asyncio.run(run())
    spans = exporter.get_finished_spans()
    roots = [s for s in spans if s.name == "infer iris"]
    assert len(roots) == 3
    assert {r.attributes["mlpilot.request_id"] for r in roots} == set(ids)
    for root in roots:
        children = [s for s in spans if s.parent is not None and s.parent.span_id == root.context.span_id]
        assert [s.name for s in sorted(children, key=lambda s: s.start_time)] == [
            "decode",
            "route",
            "predict",
            "log",
            "encode",
        ]
        assert all(root.start_time <= s.start_time <= s.end_time <= root.end_time for s in children)
        assert root.attributes["mlpilot.variant"] == "iris-v1" and root.attributes["mlpilot.status"] == "ok"
    logged = read_records(home / "logs", "iris")
    trace_ids = {format(r.context.trace_id, "032x") for r in roots}
    assert set(logged.trace_id) == trace_ids
