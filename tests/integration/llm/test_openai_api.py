"""The official ``openai`` client against a real ``mlpilot up``: chat (plain, streaming with usage, tool calls),
completions, embeddings (float and base64), the 4xx cases, and a prompt-alias rollback without a restart.

The LLM behind the app is ``mlpilot.testing.fake_llm`` in its own process: a real OpenAI-compatible HTTP server
whose answers are a deterministic function of what it is sent, so every assertion below is exact.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from mlpilot.client import Client
from mlpilot.testing.fake_llm import embed_text
from tests.helpers import FakeLLMProcess, ServerProcess

ORDER_TOOL = {
    "name": "order_status",
    "description": "The status of an order by its id",
    "inputSchema": {
        "type": "object",
        "properties": {"order_id": {"type": "string", "pattern": "^A[0-9]{4}$"}},
        "required": ["order_id"],
    },
    "implementation": {"type": "python", "callable": "mlpilot.demo_llm.tools:order_status"},
}
WEATHER_TOOL = {  # a client-side tool: the app hands its calls back to the caller
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather now",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


class Env:
    def __init__(self, server: ServerProcess, fake: FakeLLMProcess) -> None:
        self.server, self.fake = server, fake
        self.oai = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        self.client = Client(server.url)


def _wait_served(url: str, names: set[str]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        served = {m["id"] for m in httpx.get(f"{url}/v1/models").json()["data"]}
        if names <= served:
            return
        time.sleep(0.1)
    raise AssertionError(f"apps {names} not served after 20 s")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    home = tmp_path_factory.mktemp("openai") / "home"
    fake = FakeLLMProcess()
    prices = {"fake-llm": {"input_per_million": 10.0, "output_per_million": 20.0}}  # the server's price table
    server = ServerProcess(home, extra_env={"MLPILOT_SERVER__GRPC": "0", "MLPILOT_LLM__PRICES": json.dumps(prices)})
    e = Env(server, fake)
    try:
        c = e.client
        backend = {"base_url": fake.base_url, "model": "fake-llm"}
        system = {"role": "system", "content": "You are the support assistant (prompt v{{v}})."}
        for v in (1, 2):
            c.register_prompt(
                "support",
                {
                    "type": "chat",
                    "template": [system, {"role": "user", "content": "{{question}}"}],
                    "variables": {"v": {"default": str(v)}},
                },
            )
        c.set_alias("support", "prod", 2)
        c.register_prompt(
            "greeting",
            {
                "type": "chat",
                "template": [
                    {"role": "system", "content": "Greet the customer of {{product}}."},
                    {"role": "user", "content": "{{question}}"},
                ],
            },
        )
        c.register_tool("order-status", ORDER_TOOL)
        pricing = {"input_per_million": 1.0, "output_per_million": 2.0}
        c.register_app(
            "assistant",
            {
                "prompt": "support@prod",
                "tools": ["order-status"],
                "generator": backend,
                "pricing": pricing,
                "parameters": {"temperature": 0},
            },
        )
        c.register_app("greeter", {"prompt": "greeting", "generator": backend})
        c.register_app("tiny", {"generator": backend, "context_window": 64})
        c.register_app("vectors", {"type": "embeddings", "embedder": backend})
        for app in ("assistant", "greeter", "tiny", "vectors"):
            c.deploy(app, f"{app}:1")
        _wait_served(server.url, {"assistant", "greeter", "tiny", "vectors"})
        yield e
    finally:
        e.client.close()
        e.oai.close()
        server.stop()
        fake.stop()


# ------------------------------------------------------------------------------------------------ happy paths


def test_models_lists_the_deployed_apps(env: Env) -> None:
    ids = {m.id for m in env.oai.models.list()}
    assert {"assistant", "greeter", "tiny", "vectors"} <= ids
    assert env.oai.models.retrieve("assistant").id == "assistant"
    with pytest.raises(openai.NotFoundError, match="nope"):
        env.oai.models.retrieve("nope")


def test_chat_plain(env: Env) -> None:
    r = env.oai.chat.completions.create(model="assistant", messages=[{"role": "user", "content": "hello there"}])
    assert r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == "You said: hello there"
    assert r.choices[0].finish_reason == "stop"
    # the fake counts whitespace words + 3 per message: system (7 words) + user (2 words)
    assert r.usage is not None and (r.usage.prompt_tokens, r.usage.completion_tokens) == (15, 4)
    assert r.usage.total_tokens == 19


def test_chat_streaming_with_usage(env: Env) -> None:
    stream = env.oai.chat.completions.create(
        model="assistant",
        messages=[{"role": "user", "content": "stream this answer please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "You said: stream this answer please"
    assert len([ch for ch in chunks if ch.choices and ch.choices[0].delta.content]) >= 4  # really streamed
    finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (17, 6)
    assert len({ch.id for ch in chunks}) == 1


def test_stream_ends_with_done_on_the_wire(env: Env) -> None:
    body = {"model": "assistant", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.stream("POST", f"{env.server.url}/v1/chat/completions", json=body, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    assert all("usage" not in json.loads(e[6:]) or json.loads(e[6:])["usage"] is None for e in events[:-1])


def test_server_tool_runs_inside_the_app(env: Env) -> None:
    r = env.oai.chat.completions.create(
        model="assistant", messages=[{"role": "user", "content": 'call:order_status {"order_id": "A1001"}'}]
    )
    message = r.choices[0].message
    assert r.choices[0].finish_reason == "stop" and not message.tool_calls
    assert message.content is not None and message.content.startswith("The tool returned: ")
    assert json.loads(message.content.removeprefix("The tool returned: ")) == {
        "order_id": "A1001",
        "status": "shipped",
        "carrier": "DHL",
        "eta_days": 2,
    }


def test_bad_arguments_from_the_model_go_back_to_the_model(env: Env) -> None:
    r = env.oai.chat.completions.create(
        model="assistant", messages=[{"role": "user", "content": 'call:order_status {"order_id": 5}'}]
    )
    assert "is not of type 'string'" in (r.choices[0].message.content or "")


def test_client_tool_call_is_returned_and_answered(env: Env) -> None:
    first = env.oai.chat.completions.create(
        model="assistant", messages=[{"role": "user", "content": "what is the weather in Paris"}], tools=[WEATHER_TOOL]
    )
    assert first.choices[0].finish_reason == "tool_calls"
    calls = first.choices[0].message.tool_calls
    assert calls is not None and len(calls) == 1
    call = calls[0]
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    second = env.oai.chat.completions.create(
        model="assistant",
        tools=[WEATHER_TOOL],
        messages=[
            {"role": "user", "content": "what is the weather in Paris"},
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"},
        ],
    )
    assert second.choices[0].message.content == "The tool returned: sunny, 21 C"


def test_client_tool_call_streamed(env: Env) -> None:
    stream = env.oai.chat.completions.create(
        model="assistant",
        messages=[{"role": "user", "content": "weather in Oslo"}],
        tools=[WEATHER_TOOL],
        stream=True,
    )
    chunks = list(stream)
    deltas = [tc for ch in chunks if ch.choices for tc in ch.choices[0].delta.tool_calls or []]
    assert [d.function.name for d in deltas if d.function and d.function.name] == ["get_weather"]
    assert json.loads("".join(d.function.arguments or "" for d in deltas if d.function)) == {"city": "Oslo"}
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason] == [
        "tool_calls"
    ]


def test_completions(env: Env) -> None:
    r = env.oai.completions.create(model="assistant", prompt="say hi")
    assert r.object == "text_completion"
    assert r.choices[0].text == "You said: say hi"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None and r.usage.completion_tokens == 4
    chunks = list(env.oai.completions.create(model="assistant", prompt="count to three", stream=True))
    assert "".join(ch.choices[0].text for ch in chunks if ch.choices) == "You said: count to three"


def test_embeddings_float_and_base64(env: Env) -> None:
    texts = ["reset my password", "where is my order"]
    floats = env.oai.embeddings.create(model="vectors", input=texts, encoding_format="float")
    assert [d.index for d in floats.data] == [0, 1]
    for d, text in zip(floats.data, texts, strict=True):
        np.testing.assert_allclose(d.embedding, embed_text(text), atol=1e-6)
    assert floats.usage.prompt_tokens == 10  # a remote embedder's tokens are estimated as ceil(bytes / 4) per text
    encoded = env.oai.embeddings.create(model="vectors", input=texts, encoding_format="base64")
    assert isinstance(encoded.data[1].embedding, str)  # little-endian float32, base64-encoded
    decoded = np.frombuffer(base64.b64decode(encoded.data[1].embedding), dtype="<f4")
    np.testing.assert_allclose(decoded, floats.data[1].embedding, atol=0)
    raw = httpx.post(
        f"{env.server.url}/v1/embeddings", json={"model": "vectors", "input": texts[0], "encoding_format": "base64"}
    ).json()
    vector = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(vector, floats.data[0].embedding, atol=0)


# ------------------------------------------------------------------------------------------------ bad input


def _status(exc: pytest.ExceptionInfo[openai.APIStatusError]) -> tuple[int, str]:
    body = exc.value.body
    assert isinstance(body, dict) and isinstance(body.get("message"), str)  # OpenAI's error shape
    return exc.value.status_code, body["message"]


def test_unknown_app_is_404(env: Env) -> None:
    with pytest.raises(openai.NotFoundError) as exc:
        env.oai.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    code, message = _status(exc)
    assert code == 404 and "nope" in message and "assistant" in message


def test_an_embeddings_app_does_not_chat(env: Env) -> None:
    with pytest.raises(openai.BadRequestError, match="embeddings"):
        env.oai.chat.completions.create(model="vectors", messages=[{"role": "user", "content": "x"}])


@pytest.mark.parametrize(
    ("messages", "needle"),
    [
        ([{"role": "bogus", "content": "x"}], "role"),
        ([], "messages"),
        ([{"role": "user"}], "content"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}], "image_url"),
        ([{"role": "tool", "tool_call_id": "nope", "content": "x"}], "tool_call_id"),
    ],
)
def test_malformed_messages_are_400(env: Env, messages: list[dict[str, Any]], needle: str) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        env.oai.chat.completions.create(model="assistant", messages=messages)  # type: ignore[arg-type]
    code, message = _status(exc)
    assert code == 400 and needle in message


def test_invalid_tool_arguments_are_400(env: Env) -> None:
    def history(arguments: str) -> list[dict[str, Any]]:
        call = {"id": "c1", "type": "function", "function": {"name": "order_status", "arguments": arguments}}
        return [
            {"role": "user", "content": "where is my order"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "{}"},
        ]

    with pytest.raises(openai.BadRequestError, match="not valid JSON"):
        env.oai.chat.completions.create(model="assistant", messages=history('{"order_id": '))  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError) as exc:
        env.oai.chat.completions.create(model="assistant", messages=history('{"order_id": "ZZ"}'))  # type: ignore[arg-type]
    code, message = _status(exc)
    assert code == 400 and "order_status" in message and "order_id" in message


def test_invalid_tool_definitions_are_400(env: Env) -> None:
    bad = {"type": "function", "function": {"name": "x y", "parameters": {"type": "object"}}}
    with pytest.raises(openai.BadRequestError, match="name"):
        env.oai.chat.completions.create(
            model="assistant",
            messages=[{"role": "user", "content": "x"}],
            tools=[bad],  # type: ignore[list-item]
        )
    bad_schema = {"type": "function", "function": {"name": "f", "parameters": {"type": "nonsense"}}}
    with pytest.raises(openai.BadRequestError, match="parameters"):
        env.oai.chat.completions.create(
            model="assistant",
            messages=[{"role": "user", "content": "x"}],
            tools=[bad_schema],  # type: ignore[list-item]
        )


def test_missing_template_variable_is_400(env: Env) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        env.oai.chat.completions.create(model="greeter", messages=[{"role": "user", "content": "hi"}])
    code, message = _status(exc)
    assert code == 400 and "product" in message
    ok = env.oai.chat.completions.create(
        model="greeter", messages=[{"role": "user", "content": "hi"}], extra_body={"variables": {"product": "Acme"}}
    )
    assert ok.choices[0].message.content == "You said: hi"


def test_context_over_the_limit_is_400(env: Env) -> None:
    long = " ".join(["word"] * 400)
    with pytest.raises(openai.BadRequestError) as exc:
        env.oai.chat.completions.create(model="tiny", messages=[{"role": "user", "content": long}])
    code, message = _status(exc)
    assert code == 400 and "64" in message
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        env.oai.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=500)


def test_unsupported_options_are_400(env: Env) -> None:
    with pytest.raises(openai.BadRequestError, match="n"):
        env.oai.chat.completions.create(model="assistant", messages=[{"role": "user", "content": "x"}], n=2)
    r = httpx.post(f"{env.server.url}/v1/chat/completions", content=b"{not json", timeout=10)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert httpx.get(f"{env.server.url}/v1/chat/completions").status_code == 405


# ------------------------------------------------------------------------------------------------ the request log


def test_alias_rollback_takes_effect_without_restart_and_is_logged(env: Env) -> None:
    c = env.client
    ask = {"model": "assistant", "messages": [{"role": "user", "content": "which prompt?"}]}
    seen_before = len(c.logs("assistant", limit=10_000))
    env.oai.chat.completions.create(**ask)  # type: ignore[call-overload]
    sent = env.fake.seen_system()
    assert "prompt v2" in sent
    c.set_alias("support", "prod", 1)  # the rollback: no redeploy, no restart
    deadline = time.monotonic() + 10
    while "prompt v1" not in env.fake.seen_system() and time.monotonic() < deadline:
        env.oai.chat.completions.create(**ask)  # type: ignore[call-overload]
        time.sleep(0.1)
    assert "prompt v1" in env.fake.seen_system(), "the alias move did not reach the served app in 10 s"
    deadline = time.monotonic() + 15  # the request log is written in segments: wait for the flush
    while True:
        rows = c.logs("assistant", limit=10_000)
        if (len(rows) >= seen_before + 2 and (rows["out.prompt"] == "support:1").any()) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert {"support:1", "support:2"} <= set(rows["out.prompt"])
    newest = rows.iloc[0]
    assert newest["out.prompt"] == "support:1" and newest["model"] == "assistant:1"
    assert newest["out.backend"] == "backend" and newest["out.llm_model"] == "fake-llm"
    assert newest["out.input_tokens"] > 0 and newest["out.output_tokens"] == 4
    assert newest["out.cost"] == pytest.approx((newest["out.input_tokens"] * 1 + 4 * 2) / 1e6)
    c.set_alias("support", "prod", 2)


def test_sdk_chat(env: Env) -> None:
    from mlpilot.errors import InvalidArgument, NotFound

    r = env.client.chat("assistant", "hi from the SDK", max_tokens=3)
    assert r["choices"][0]["message"]["content"] == "You said: hi"
    assert r["choices"][0]["finish_reason"] == "length" and r["id"].startswith("chatcmpl-")
    with pytest.raises(NotFound, match="nope"):
        env.client.chat("nope", "x")
    with pytest.raises(InvalidArgument, match="product"):
        env.client.chat("greeter", "hi")
    assert env.client.chat("greeter", "hi", variables={"product": "Acme"})["choices"][0]["message"]["content"]


def test_cost_from_the_server_price_table_when_the_app_has_no_pricing(env: Env) -> None:
    env.client.chat("greeter", "price me", variables={"product": "Acme"})
    deadline = time.monotonic() + 15
    while True:
        rows = env.client.logs("greeter", limit=1000)
        rows = rows[rows["in.query"] == "price me"] if len(rows) else rows
        if len(rows) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    row = rows.iloc[0]
    assert row["out.llm_model"] == "fake-llm"
    assert row["out.cost"] == pytest.approx((row["out.input_tokens"] * 10 + row["out.output_tokens"] * 20) / 1e6)


def test_rate_limited_app_answers_429_in_openais_shape_with_retry_after(env: Env) -> None:
    """A deployment's rate limit on the OpenAI API: the openai client sees a RateLimitError (429, type
    rate_limit_error) with ``Retry-After``; once the limit is lifted the app answers again."""
    c = env.client
    spec = c.get_deployment("greeter").spec.model_dump(mode="json")
    c.apply_deployment("greeter", {**spec, "limits": {"rate_per_s": 0.1, "burst": 1}})
    messages: list[Any] = [{"role": "user", "content": "hi"}]
    extra = {"variables": {"product": "Acme"}}
    try:
        deadline = time.monotonic() + 15
        while True:  # until the data plane serves the new snapshot: its bucket holds one token, then refuses
            try:
                env.oai.chat.completions.create(model="greeter", messages=messages, extra_body=extra)
            except openai.RateLimitError as exc:
                refused = exc
                break
            assert time.monotonic() < deadline, "the rate limit was never applied"
            time.sleep(0.1)
        code, message = _status(pytest.ExceptionInfo.from_exc_info((type(refused), refused, None)))
        assert code == 429 and "over its rate limit of 0.1 requests/s" in message
        assert refused.body["type"] == "rate_limit_error"  # type: ignore[index]
        assert refused.response.headers["retry-after"] in {str(n) for n in range(1, 11)}
    finally:
        c.apply_deployment("greeter", spec)
    deadline = time.monotonic() + 15
    while True:
        try:
            env.oai.chat.completions.create(model="greeter", messages=messages, extra_body=extra)
            break
        except openai.RateLimitError:
            assert time.monotonic() < deadline, "the rate limit was never lifted"
            time.sleep(0.1)
