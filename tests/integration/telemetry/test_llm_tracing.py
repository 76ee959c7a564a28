"""A RAG request with a tool call is traced with one span per stage under the OpenTelemetry GenAI conventions."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from mlpilot import Client
from mlpilot.app import build_platform
from mlpilot.server import PlatformServer
from mlpilot.settings import Settings
from tests.helpers import FakeLLMProcess

pytest.importorskip("opentelemetry.sdk")

ORDER_TOOL = {
    "name": "order_status",
    "description": "Order status by id",
    "inputSchema": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]},
    "implementation": {"type": "python", "callable": "mlpilot.demo_llm.tools:order_status"},
}


def test_rag_stages_are_genai_spans(tmp_path: Path) -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    fake = FakeLLMProcess()
    home = tmp_path / "home"
    try:
        backend = {"base_url": fake.base_url, "model": "fake-llm"}
        with Client(home=home) as c:
            c.build_index("kb", [{"id": "orders", "text": "Orders ship in two days."}], embedder=backend)
            c.register_prompt(
                "p",
                {
                    "type": "chat",
                    "template": [
                        {"role": "system", "content": "{{context}}"},
                        {"role": "user", "content": "{{question}}"},
                    ],
                },
            )
            c.register_tool("order-status", ORDER_TOOL)
            c.register_app(
                "rag",
                {
                    "prompt": "p",
                    "retriever": {"index": "kb"},
                    "embedder": backend,
                    "generator": backend,
                    "tools": ["order-status"],
                },
            )
            c.deploy("rag", "rag:1")
        exporter = InMemorySpanExporter()
        body = {"model": "rag", "messages": [{"role": "user", "content": 'call:order_status {"order_id": "A1001"}'}]}

        async def run() -> httpx.Response:
            platform = build_platform(Settings(home=home, tracing={"enabled": True, "sample_ratio": 1.0}))
            server = PlatformServer(platform)
            assert server.tracer_provider is not None
            server.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
            await server.start()
            try:
                async with httpx.AsyncClient(transport=httpx.ASGITransport(app=server), base_url="http://t") as http:
                    return await http.post("/v1/chat/completions", json=body, timeout=30)
            finally:
                await server.stop()
                platform.close()

        response = asyncio.run(run())
    finally:
        fake.stop()
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"].startswith("The tool returned: ")
    spans = exporter.get_finished_spans()
    root = next(s for s in spans if s.parent is None)
    children = sorted(
        (s for s in spans if s.parent is not None and s.parent.span_id == root.context.span_id),
        key=lambda s: s.start_time,
    )
    names = [s.name for s in children]
    # embed the query, search, render the prompt, then the model asks for the tool, runs it, and answers
    assert names[:3] == ["decode", "embeddings fake-llm", "retrieve"]
    assert names[3:] == ["render", "chat fake-llm", "execute_tool order_status", "chat fake-llm"], names
    attrs = {s.name: dict(s.attributes or {}) for s in children}
    assert attrs["chat fake-llm"]["gen_ai.operation.name"] == "chat"
    assert attrs["execute_tool order_status"]["gen_ai.tool.name"] == "order_status"
    assert attrs["embeddings fake-llm"]["gen_ai.operation.name"] == "embeddings"
    assert all(root.start_time <= s.start_time <= s.end_time <= root.end_time for s in children)
