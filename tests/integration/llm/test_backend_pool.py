"""Streamed calls give their connection back to the pool (a real keep-alive server: the fake LLM over uvicorn)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from mlpilot.errors import InvalidArgument
from mlpilot.llm.backends import BackendSpec, OpenAIBackend
from tests.helpers import FakeLLMProcess, free_port


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLMProcess]:
    f = FakeLLMProcess()
    yield f
    f.stop()


def test_streams_reuse_one_connection(fake: FakeLLMProcess) -> None:
    with OpenAIBackend(BackendSpec(name="fake", base_url=fake.base_url, model="fake-llm")) as llm:
        pool = llm._client._transport._pool  # type: ignore[attr-defined]
        seen = []
        for i in range(3):
            stream = llm.stream_chat([{"role": "user", "content": f"hello {i}"}])
            assert "".join(c.text for c in stream) == f"You said: hello {i}"
            seen.append([id(c) for c in pool.connections])
            assert all(c.is_idle() for c in pool.connections)
        assert seen[0] == seen[1] == seen[2] and len(seen[0]) == 1  # one connection, reused by every stream


def test_async_stream_falls_back_and_reuses_its_connection(fake: FakeLLMProcess) -> None:
    from mlpilot.llm.astream import aclose, astream_chat

    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there: connection refused
    spec = BackendSpec(
        name="primary",
        base_url=dead,
        model="m",
        max_retries=1,
        backoff_s=0.01,
        fallback=BackendSpec(name="fake", base_url=fake.base_url, model="fake-llm"),
    )
    llm = OpenAIBackend(spec)

    async def run() -> tuple[str, object, list[int]]:
        texts, pools = [], []
        for i in range(2):
            stream = astream_chat(llm, [{"role": "user", "content": f"hi {i}"}])
            texts.append("".join([c.text async for c in stream]))
            pools.append(len(llm.fallback._aclient._transport._pool.connections))  # type: ignore[union-attr]
        result = stream.result()
        await aclose(llm)
        return " | ".join(texts), result, pools

    try:
        text, result, pools = asyncio.run(run())
    finally:
        llm.close()
    assert text == "You said: hi 0 | You said: hi 1"
    assert result.backend == "fake" and result.attempts == 3  # two refused attempts at the primary, then the fallback
    assert result.finish_reason == "stop" and result.output_tokens == 4
    assert pools == [1, 1]


def test_async_stream_refuses_what_the_backend_refuses(fake: FakeLLMProcess) -> None:
    from mlpilot.llm.astream import astream_chat

    llm = OpenAIBackend(BackendSpec(name="f", base_url=fake.base_url, model="m"))
    with pytest.raises(InvalidArgument, match="model, stream cannot be passed"):
        astream_chat(llm, [{"role": "user", "content": "x"}], stream=True, model="x")
    llm.close()
