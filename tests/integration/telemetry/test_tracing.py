"""OpenTelemetry spans per request and stage (in-memory exporter), and the trace id in the request log."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

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
        platform = build_platform(Settings(home=home, tracing={"enabled": True, "sample_ratio": 1.0}))
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
    assert (logged.decode_s > 0).all() and (logged.decode_s < 1).all()  # arrival until the model input was ready


def _serve(home: Path, sample_ratio: float, headers: list[dict[str, str]]) -> tuple[list[Any], Any]:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    X, _ = iris_frame()
    body = orjson.dumps(
        {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 4], "data": X.to_numpy()[0].tolist()}]}
    )

    async def run() -> None:
        platform = build_platform(Settings(home=home, tracing={"enabled": True, "sample_ratio": sample_ratio}))
        server = PlatformServer(platform)
        server.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        await server.start()
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=server), base_url="http://t") as http:
                for h in headers:
                    assert (await http.post("/v2/models/iris/infer", content=body, headers=h)).status_code == 200
        finally:
            await server.stop()
            platform.close()

    asyncio.run(run())
    return list(exporter.get_finished_spans()), read_records(home / "logs", "iris")


@pytest.fixture
def iris_home(tmp_path: Path) -> Path:
    from sklearn.linear_model import LogisticRegression

    X, y = iris_frame()
    home = tmp_path / "home"
    with Client(home=home) as c:
        c.register_model("iris", LogisticRegression(max_iter=300).fit(X.to_numpy(), y), sample=X.to_numpy()[:2])
        c.deploy("iris", "iris:1")
    return home


def test_unsampled_requests_make_no_spans_but_have_trace_ids(iris_home: Path) -> None:
    spans, logged = _serve(iris_home, 0.0, [{}] * 20)
    assert spans == []
    assert logged.trace_id.str.fullmatch("[0-9a-f]{32}").all() and logged.trace_id.nunique() == 20


def test_sample_ratio_traces_about_that_share(iris_home: Path) -> None:
    spans, logged = _serve(iris_home, 0.25, [{}] * 200)
    roots = [s for s in spans if s.name == "infer iris"]
    assert 20 <= len(roots) <= 80  # binomial(200, 0.25): mean 50, sd 6.1
    traced = {format(r.context.trace_id, "032x") for r in roots}
    assert traced <= set(logged.trace_id)


def test_traceparent_continues_the_callers_trace(iris_home: Path) -> None:
    trace_id, span_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    sampled = {"traceparent": f"00-{trace_id}-{span_id}-01"}
    not_sampled = {"traceparent": f"00-{'1' * 32}-{span_id}-00"}
    spans, logged = _serve(iris_home, 0.0, [sampled, not_sampled, {"traceparent": "garbage"}])
    roots = [s for s in spans if s.name == "infer iris"]
    assert len(roots) == 1  # the caller sampled it, although our own ratio is 0
    assert format(roots[0].context.trace_id, "032x") == trace_id
    assert roots[0].parent is not None and format(roots[0].parent.span_id, "016x") == span_id
    assert list(logged.sort_values("ts").trace_id[:2]) == [trace_id, "1" * 32]


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "garbage",
        "00-" + "0" * 32 + "-00f067aa0ba902b7-01",
        "ff-" + "1" * 32 + "-00f067aa0ba902b7-01",
        "00-" + "1" * 32 + "-" + "0" * 16 + "-01",
        "00-" + "1" * 31 + "-00f067aa0ba902b7-01",
    ],
)
def test_invalid_traceparent_is_ignored(value: str | None) -> None:
    from mlpilot.serving.tracing import parse_traceparent

    assert parse_traceparent(value) is None
