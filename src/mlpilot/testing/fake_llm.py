"""A deterministic OpenAI-compatible LLM server, for tests, benchmarks and offline demos of LLM apps.

It answers from what it is sent, so an app's retrieval, prompt and tool wiring can be tested end to end over real
HTTP without a real model:

* a chat whose last message is a tool result answers ``"The tool returned: <result>"``;
* with ``tools`` offered, a last user message containing ``call:NAME {json}`` calls tool ``NAME`` with those
  arguments, and ``weather in <City>`` calls ``get_weather`` with ``{"city": "<City>"}`` when it is offered;
* a conversation carrying retrieved context (lines ``[doc-id] text``) gets ``"According to [doc-id], <the first
  sentence of that chunk>"``; anything else gets ``"You said: <last user message>"``;
* token counts are whitespace words; ``max_tokens`` truncates (``finish_reason="length"``); ``stream`` sends one
  chunk per word, the usage chunk when asked, then ``[DONE]``; ``/v1/embeddings`` returns hashed bag-of-words
  vectors (64 dimensions, unit length); ``/v1/completions`` answers ``"You said: <prompt>"``;
* a pairwise or rubric judge prompt (``mlpilot.llm.judge``) gets a JSON verdict: an answer citing a ``[document]``
  beats (scores 5) one that does not (2), then the longer answer wins;
* ``GET /v1/_seen`` returns the last 100 request bodies it received (for tests).

Run it with ``python -m mlpilot.testing.fake_llm --port 8089`` (``--token-delay-ms`` to pace streamed tokens).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import numpy as np

__all__ = ["FakeLLM", "answer_for", "embed_text", "main"]

Scope = MutableMapping[str, Any]
_CONTEXT = re.compile(r"\[([^\]\s]+)\]\s+([^\n]+)")
_CALL = re.compile(r"call:([A-Za-z0-9_-]+)\s*(\{.*\})", re.S)
_WEATHER = re.compile(r"weather in ([A-Z][A-Za-z]+)")
_PAIR = re.compile(r"\nAnswer A:\n(.*)\n\nAnswer B:\n(.*)\Z", re.S)
_GRADED = re.compile(r"Answer to grade:\n(.*)\Z", re.S)
EMBED_DIMS = 64


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def embed_text(text: str, dims: int = EMBED_DIMS) -> list[float]:
    v = np.zeros(dims, dtype=np.float64)
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
        v[h % dims] += 1.0 if (h >> 32) & 1 else -1.0
    n = float(np.linalg.norm(v))
    return (v / n if n else np.full(dims, 1 / np.sqrt(dims))).tolist()


def _judge(user: str) -> str | None:
    """A judge's verdict, when ``user`` is a pairwise or rubric judge prompt (``mlpilot.llm.judge``): an answer
    that cites a ``[document]`` beats one that does not, then the longer one wins; a citing answer scores 5, else 2."""
    pair = _PAIR.search(user)
    if pair:
        a, b = pair.group(1).strip(), pair.group(2).strip()
        key_a, key_b = ("[" in a, len(a)), ("[" in b, len(b))
        winner = "A" if key_a > key_b else "B" if key_b > key_a else "tie"
        return json.dumps({"winner": winner, "reason": "cites its source" if winner != "tie" else "alike"})
    graded = _GRADED.search(user)
    if graded:
        score = 5 if "[" in graded.group(1) else 2
        return json.dumps({"score": score, "reason": "cites its source" if score == 5 else "no citation"})
    return None


def answer_for(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> tuple[str, list[dict[str, Any]]]:
    """``(text, tool_calls)`` the fake model answers to ``messages``."""
    last = messages[-1] if messages else {}
    if last.get("role") == "tool":
        return f"The tool returned: {_text(last)}", []
    user = next((_text(m) for m in reversed(messages) if m.get("role") == "user"), "")
    verdict = _judge(user)
    if verdict is not None:
        return verdict, []
    names = {t["function"]["name"] for t in tools or [] if isinstance(t, dict) and "function" in t}
    if names:
        m = _CALL.search(user)
        if m and m.group(1) in names:
            return "", [_call(m.group(1), m.group(2))]
        w = _WEATHER.search(user)
        if w and "get_weather" in names:
            return "", [_call("get_weather", json.dumps({"city": w.group(1)}))]
    for message in messages:
        found = _CONTEXT.search(_text(message)) if message.get("role") in ("system", "user") else None
        if found:
            sentence = re.split(r"(?<=[.!?])\s", found.group(2).strip())[0]
            return f"According to [{found.group(1)}], {sentence}", []
    return f"You said: {user}", []


def _call(name: str, arguments: str) -> dict[str, Any]:
    digest = hashlib.blake2b(f"{name}{arguments}".encode(), digest_size=6).hexdigest()
    return {"id": f"call_{digest}", "type": "function", "function": {"name": name, "arguments": arguments}}


def _count(messages: list[dict[str, Any]]) -> int:
    return sum(len(_text(m).split()) + 3 for m in messages)


class FakeLLM:
    """The ASGI app. ``token_delay_s`` paces streamed chunks; ``seen`` keeps the last requests' bodies."""

    def __init__(self, token_delay_s: float = 0.0, model: str = "fake-llm") -> None:
        self.token_delay_s = token_delay_s
        self.model = model
        self.seen: list[dict[str, Any]] = []

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Any]], send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                kind = (await receive())["type"]
                if kind == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif kind == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        path = scope["path"].rstrip("/")
        if scope["method"] == "GET" and path.endswith("/_seen"):  # for tests: the last request bodies received
            await _json(send, 200, self.seen)
            return
        if scope["method"] == "GET" and path.endswith("/models"):
            await _json(send, 200, {"object": "list", "data": [{"id": self.model, "object": "model", "created": 0,
                                                                 "owned_by": "fake"}]})  # fmt: skip
            return
        try:
            req = json.loads(body or b"{}")
        except json.JSONDecodeError:
            await _json(send, 400, {"error": {"message": "invalid JSON", "type": "invalid_request_error"}})
            return
        self.seen = [*self.seen[-99:], req]
        if path.endswith("/chat/completions"):
            await self._chat(req, send)
        elif path.endswith("/completions"):
            text = f"You said: {req.get('prompt', '')}"
            usage = {"prompt_tokens": len(str(req.get("prompt", "")).split()), "completion_tokens": len(text.split())}
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
            choice = {"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}
            await _json(send, 200, {"id": "cmpl-fake", "object": "text_completion", "created": int(time.time()),
                                    "model": self.model, "choices": [choice], "usage": usage})  # fmt: skip
        elif path.endswith("/embeddings"):
            inputs = req.get("input")
            inputs = [inputs] if isinstance(inputs, str) else inputs or []
            data = [{"object": "embedding", "index": i, "embedding": embed_text(t)} for i, t in enumerate(inputs)]
            tokens = sum(len(t.split()) for t in inputs)
            await _json(send, 200, {"object": "list", "data": data, "model": self.model,
                                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})  # fmt: skip
        else:
            await _json(send, 404, {"error": {"message": f"no route {path}", "type": "not_found_error"}})

    async def _chat(self, req: dict[str, Any], send: Any) -> None:
        messages = req.get("messages") or []
        text, calls = answer_for(messages, req.get("tools"))
        words = text.split(" ") if text else []
        finish = "tool_calls" if calls else "stop"
        limit = req.get("max_tokens") or req.get("max_completion_tokens")
        if isinstance(limit, int) and len(words) > limit:
            words, finish = words[:limit], "length"
            text = " ".join(words)
        usage = {"prompt_tokens": _count(messages), "completion_tokens": len(words) + 8 * len(calls)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        base = {"id": "chatcmpl-fake", "created": int(time.time()), "model": self.model}
        if not req.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": text or None}
            if calls:
                message["tool_calls"] = calls
            choice = {"index": 0, "message": message, "finish_reason": finish}
            await _json(send, 200, {**base, "object": "chat.completion", "choices": [choice], "usage": usage})
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})  # fmt: skip

        async def event(delta: dict[str, Any], finish_reason: str | None = None) -> None:
            chunk = {**base, "object": "chat.completion.chunk",
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}  # fmt: skip
            await send({"type": "http.response.body", "body": b"data: " + json.dumps(chunk).encode() + b"\n\n",
                        "more_body": True})  # fmt: skip

        await event({"role": "assistant", "content": ""})
        for i, word in enumerate(words):
            if self.token_delay_s:
                await asyncio.sleep(self.token_delay_s)
            await event({"content": word if i == 0 else " " + word})
        if calls:
            await event({"tool_calls": [{"index": i, **c} for i, c in enumerate(calls)]})
        await event({}, finish)
        if (req.get("stream_options") or {}).get("include_usage"):
            chunk = {**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}
            await send({"type": "http.response.body", "body": b"data: " + json.dumps(chunk).encode() + b"\n\n",
                        "more_body": True})  # fmt: skip
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})


async def _json(send: Any, status: int, body: Any) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--token-delay-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    app = FakeLLM(token_delay_s=args.token_delay_ms / 1000)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
