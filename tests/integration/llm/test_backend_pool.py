"""Streamed calls give their connection back to the pool (a real keep-alive server: the fake LLM over uvicorn)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mlpilot.llm.backends import BackendSpec, OpenAIBackend
from tests.helpers import FakeLLMProcess


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
