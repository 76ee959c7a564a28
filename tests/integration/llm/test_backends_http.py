"""OpenAI-compatible backends against a real local HTTP server on 127.0.0.1.

The fake server routes on a path prefix that picks its behaviour: ``/ok/v1`` answers, ``/flaky/v1`` fails once
with 500 then answers, ``/bad/v1`` refuses with 400, ``/slow/v1`` does not answer in time, ``/broken/v1`` cuts a
stream after its first chunk.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from mlpilot.errors import FailedPrecondition, InvalidArgument, Unavailable
from mlpilot.llm.backends import BackendSpec, ChatChunk, OpenAIBackend

MESSAGES = [{"role": "user", "content": "What is the weather in Oslo?"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


class LLMServer(ThreadingHTTPServer):
    """A tiny OpenAI-compatible server; ``seen`` records (method, path, headers, body) of every request."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.seen: list[tuple[str, str, dict[str, str], Any]] = []
        self.release = threading.Event()
        self.flaky_failures = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients of /slow hang up on purpose


class Handler(BaseHTTPRequestHandler):
    server: LLMServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _sse(self, events: list[Any], *, done: bool = True) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        for event in events:
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
            self.wfile.flush()
        if done:
            self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    def do_GET(self) -> None:
        self.server.seen.append(("GET", self.path, dict(self.headers), None))
        if self.path.endswith("/v1/models"):
            self._json(200, {"object": "list", "data": [{"id": "tiny-chat"}, {"id": "tiny-embed"}]})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"null")
        self.server.seen.append(("POST", self.path, dict(self.headers), body))
        mode, _, endpoint = self.path.strip("/").partition("/v1/")
        if mode == "bad":
            self._json(400, {"error": {"message": "max_tokens must be positive", "type": "invalid_request_error"}})
        elif mode == "slow":
            self.server.release.wait(5)
            self._json(200, {})
        elif mode == "flaky" and self.server.flaky_failures == 0:
            self.server.flaky_failures += 1
            self._json(500, {"error": {"message": "engine restarting"}})
        elif mode == "auth":
            self._json(200, _chat_answer(body["model"], self.headers.get("Authorization") or "none"))
        elif endpoint == "chat/completions" and body.get("stream"):
            self._stream(body, broken=mode == "broken")
        elif endpoint == "chat/completions":
            if body.get("tools"):
                self._json(200, _tool_answer(body["model"]))
            else:
                self._json(200, _chat_answer(body["model"], f"echo: {body['messages'][-1]['content']}"))
        elif endpoint == "completions":
            text = f" after {body['prompt']!r}"
            answer = {"model": body["model"], "choices": [{"index": 0, "text": text, "finish_reason": "length"}]}
            self._json(200, {**answer, "usage": {"prompt_tokens": 2, "completion_tokens": 4}})
        elif endpoint == "embeddings":
            rows = [{"index": i, "embedding": [float(len(t)), float(i)]} for i, t in enumerate(body["input"])]
            self._json(200, {"object": "list", "data": rows[::-1], "model": body["model"]})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}"}})

    def _stream(self, body: dict[str, Any], *, broken: bool) -> None:
        def event(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {"model": body["model"], "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        events = [event({"role": "assistant", "content": ""}), event({"content": "Hel"})]
        if broken:
            self._sse(events[:2], done=False)
            return
        events += [event({"content": "lo"}), event({}, "stop")]
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append(
                {"model": body["model"], "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2}}
            )
        self._sse(events)


def _chat_answer(model: str, text: str) -> dict[str, Any]:
    return {
        "id": "c1",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5},
    }


def _tool_answer(model: str) -> dict[str, Any]:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
    message = {"role": "assistant", "content": None, "tool_calls": [call]}
    choice = {"index": 0, "message": message, "finish_reason": "tool_calls"}
    return {"model": model, "choices": [choice], "usage": {"prompt_tokens": 30, "completion_tokens": 8}}


@pytest.fixture
def server() -> Iterator[LLMServer]:
    srv = LLMServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.release.set()
        srv.shutdown()
        srv.server_close()
        thread.join(5)


def make(server: LLMServer, mode: str = "ok", **kw: Any) -> OpenAIBackend:
    spec = BackendSpec(**{"name": "primary", "base_url": f"{server.url}/{mode}/v1", "model": "tiny-chat", **kw})
    return OpenAIBackend(spec, sleep=lambda s: None)


def dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_chat_text_with_usage(server: LLMServer) -> None:
    with make(server) as llm:
        result = llm.chat(MESSAGES, temperature=0.2, max_tokens=20)
    assert result.text == "echo: What is the weather in Oslo?"
    assert (result.finish_reason, result.input_tokens, result.output_tokens) == ("stop", 12, 5)
    assert (result.backend, result.attempts, result.model, result.tool_calls) == ("primary", 1, "tiny-chat", [])
    assert result.latency_s > 0
    method, path, headers, body = server.seen[-1]
    assert (method, path) == ("POST", "/ok/v1/chat/completions")
    assert body == {"model": "tiny-chat", "messages": MESSAGES, "temperature": 0.2, "max_tokens": 20}
    assert "authorization" not in {k.lower() for k in headers}


def test_chat_tool_call(server: LLMServer) -> None:
    with make(server) as llm:
        result = llm.chat(MESSAGES, tools=[WEATHER_TOOL], tool_choice="auto")
    assert result.finish_reason == "tool_calls" and result.text == ""
    assert result.tool_calls == [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
    ]
    body = server.seen[-1][3]
    assert body["tools"] == [WEATHER_TOOL] and body["tool_choice"] == "auto"


def test_stream_until_done_with_usage_and_time_to_first_token(server: LLMServer) -> None:
    with make(server) as llm:
        stream = llm.stream_chat(MESSAGES)
        chunks: list[ChatChunk] = list(stream)
    assert "".join(c.text for c in chunks) == "Hello"
    assert [c.finish_reason for c in chunks if c.finish_reason] == ["stop"]
    assert (chunks[-1].input_tokens, chunks[-1].output_tokens) == (9, 2)
    assert stream.time_to_first_token_s is not None and stream.time_to_first_token_s > 0
    assert stream.time_to_first_token_s == chunks[1].elapsed_s  # the role-only chunk carries no token
    result = stream.result()
    assert (result.text, result.finish_reason, result.input_tokens, result.output_tokens) == ("Hello", "stop", 9, 2)
    assert (result.backend, result.attempts, result.model) == ("primary", 1, "tiny-chat")
    body = server.seen[-1][3]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_stream_failing_after_first_chunk_is_not_retried(server: LLMServer) -> None:
    with make(server, "broken", max_retries=3) as llm:
        stream = llm.stream_chat(MESSAGES)
        texts: list[str] = []
        with pytest.raises(Unavailable, match=r"stream broke after 2 chunks \(not retried\)"):
            for chunk in stream:
                texts.append(chunk.text)
    assert texts == ["", "Hel"]
    assert len(server.seen) == 1


def test_completions(server: LLMServer) -> None:
    with make(server) as llm:
        result = llm.complete("Once upon", max_tokens=4)
    assert result.text == " after 'Once upon'"
    assert (result.finish_reason, result.input_tokens, result.output_tokens) == ("length", 2, 4)
    assert server.seen[-1][1:4:2] == (
        "/ok/v1/completions",
        {"model": "tiny-chat", "prompt": "Once upon", "max_tokens": 4},
    )


def test_embeddings_in_input_order(server: LLMServer) -> None:
    with make(server, model="tiny-embed") as llm:
        vectors = llm.embed(["a", "bbb", "cc"])
    assert vectors == [[1.0, 0.0], [3.0, 1.0], [2.0, 2.0]]
    assert server.seen[-1][3] == {"model": "tiny-embed", "input": ["a", "bbb", "cc"], "encoding_format": "float"}


def test_models(server: LLMServer) -> None:
    with make(server) as llm:
        assert llm.models() == ["tiny-chat", "tiny-embed"]
    assert server.seen[-1][:2] == ("GET", "/ok/v1/models")


def test_500_then_200_is_retried(server: LLMServer) -> None:
    with make(server, "flaky") as llm:
        result = llm.chat(MESSAGES)
    assert result.text.startswith("echo:") and result.attempts == 2
    assert [s[1] for s in server.seen] == ["/flaky/v1/chat/completions"] * 2


def test_400_is_not_retried_and_says_why(server: LLMServer) -> None:
    with make(server, "bad", max_retries=3) as llm, pytest.raises(InvalidArgument) as info:
        llm.chat(MESSAGES, max_tokens=-1)
    assert info.value.message == "backend 'primary': 400 from /chat/completions: max_tokens must be positive"
    assert len(server.seen) == 1


def test_slow_endpoint_times_out_is_retried_then_unavailable(server: LLMServer) -> None:
    started = time.perf_counter()
    with make(server, "slow", timeout_s=0.2, max_retries=1) as llm, pytest.raises(Unavailable) as info:
        llm.chat(MESSAGES)
    assert "backend 'primary' unavailable after 2 attempts: timed out" in info.value.message
    assert len(server.seen) == 2
    assert time.perf_counter() - started < 3


def test_dead_primary_falls_back(server: LLMServer) -> None:
    fallback = BackendSpec(name="local", base_url=f"{server.url}/ok/v1", model="tiny-fallback")
    spec = BackendSpec(
        name="primary", base_url=f"http://127.0.0.1:{dead_port()}/v1", model="big", max_retries=1, fallback=fallback
    )
    sleeps: list[float] = []
    with OpenAIBackend(spec, sleep=sleeps.append) as llm:
        result = llm.chat(MESSAGES)
        stream = llm.stream_chat(MESSAGES)
        streamed = stream.result()
    assert (result.backend, result.model, result.attempts) == ("local", "tiny-fallback", 3)
    assert (streamed.backend, streamed.text, streamed.attempts) == ("local", "Hello", 3)
    assert len(sleeps) == 2  # one backoff per failed primary, none on the fallback
    assert [s[3]["model"] for s in server.seen] == ["tiny-fallback", "tiny-fallback"]


def test_api_key_env_is_sent_as_bearer_and_missing_is_clear(server: LLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLPILOT_TEST_LLM_KEY", "sk-test-123")
    with make(server, "auth", api_key_env="MLPILOT_TEST_LLM_KEY") as llm:
        assert llm.chat(MESSAGES).text == "Bearer sk-test-123"
        monkeypatch.delenv("MLPILOT_TEST_LLM_KEY")
        with pytest.raises(FailedPrecondition) as info:
            llm.chat(MESSAGES)
    assert "MLPILOT_TEST_LLM_KEY" in info.value.message and "not set" in info.value.message
    assert len(server.seen) == 1
