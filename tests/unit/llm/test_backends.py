"""The pure parts of LLM backends: spec validation, the backoff schedule, Retry-After, which failures retry."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from mlpilot.errors import InferenceError, InvalidArgument, Unavailable
from mlpilot.llm.backends import (
    MAX_BACKOFF_S,
    BackendSpec,
    OpenAIBackend,
    backoff_delay,
    is_retryable_status,
    parse_retry_after,
)

OK_CHAT = {
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1},
}
MESSAGES = [{"role": "user", "content": "hello"}]


def spec(**kw: Any) -> BackendSpec:
    return BackendSpec(**{"name": "p", "base_url": "http://llm.test/v1", "model": "m", **kw})


class Recorder:
    """A MockTransport handler that answers from a script and records the requests."""

    def __init__(self, *answers: httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer) and not isinstance(answer, httpx.Response):
            return answer(request)
        return answer


def backend(rec: Recorder, sleeps: list[float], seed: int = 7, **kw: Any) -> OpenAIBackend:
    return OpenAIBackend(spec(**kw), transport=httpx.MockTransport(rec), sleep=sleeps.append, rng=random.Random(seed))


# ----------------------------------------------------------------------------------------------- spec validation


def test_authorization_header_is_refused_pointing_to_api_key_env() -> None:
    for name in ("Authorization", "authorization", "X-Api-Key"):
        with pytest.raises(ValidationError, match="api_key_env") as info:
            spec(headers={name: "Bearer sk-secret"})
        assert "sk-secret" not in str(info.value).split("input_value")[0]
    assert spec(headers={"X-Team": "search"}).headers == {"X-Team": "search"}


def test_api_key_env_must_be_a_variable_name_not_a_key() -> None:
    with pytest.raises(ValidationError, match="NAME of an environment variable"):
        spec(api_key_env="sk-proj-abc123")
    assert spec(api_key_env="OPENAI_API_KEY").api_key_env == "OPENAI_API_KEY"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://host/v1", "http:// or https://"),
        ("http://user:pw@host/v1", "credentials"),
        ("http://host/v1?key=1", "query"),
        ("not a url", "http:// or https://"),
    ],
)
def test_bad_base_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        spec(base_url=url)


def test_spec_defaults_are_frozen_and_trailing_slash_dropped() -> None:
    s = spec(base_url="https://api.example.com/v1/")
    assert (s.base_url, s.timeout_s, s.max_retries, s.backoff_s) == ("https://api.example.com/v1", 30, 2, 0.5)
    with pytest.raises(ValidationError):
        s.model = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        spec(max_retries=-1)
    with pytest.raises(ValidationError, match="extra"):
        BackendSpec(name="p", base_url="http://h/v1", model="m", api_key="sk-1")  # type: ignore[call-arg]


def test_fallback_chain_names_must_differ() -> None:
    with pytest.raises(ValidationError, match="twice in the fallback chain"):
        spec(fallback=spec())
    chained = spec(fallback=spec(name="local", base_url="http://127.0.0.1:9/v1"))
    assert chained.fallback is not None and chained.fallback.name == "local"


# ----------------------------------------------------------------------------------------------- backoff


def test_backoff_is_full_jitter_exponential_and_capped() -> None:
    rng, ref = random.Random(3), random.Random(3)
    delays = [backoff_delay(n, 0.5, rng) for n in range(8)]
    expected = [ref.uniform(0, min(MAX_BACKOFF_S, 0.5 * 2**n)) for n in range(8)]
    assert delays == expected
    assert all(0 <= d <= min(MAX_BACKOFF_S, 0.5 * 2**n) for n, d in enumerate(delays))
    big = [backoff_delay(n, 4.0, random.Random(n)) for n in range(2, 40)]
    assert max(big) <= MAX_BACKOFF_S and max(big) > 4.0
    assert backoff_delay(5, 0.0, random.Random(1)) == 0.0


def test_retries_sleep_the_seeded_backoff_schedule() -> None:
    rec, sleeps = Recorder(httpx.Response(500, json={"error": "boom"})), list[float]()
    with backend(rec, sleeps, seed=11, max_retries=3, backoff_s=0.5) as llm, pytest.raises(Unavailable) as info:
        llm.chat(MESSAGES)
    ref = random.Random(11)
    assert sleeps == [ref.uniform(0, 0.5), ref.uniform(0, 1.0), ref.uniform(0, 2.0)]
    assert len(rec.requests) == 4
    assert "backend 'p' unavailable after 4 attempts" in info.value.message
    assert "500 from /chat/completions: boom" in info.value.message


def test_no_sleep_after_the_last_attempt_or_on_success() -> None:
    rec, sleeps = Recorder(httpx.Response(503), httpx.Response(200, json=OK_CHAT)), list[float]()
    with backend(rec, sleeps, max_retries=1) as llm:
        result = llm.chat(MESSAGES)
    assert (result.text, result.attempts, len(sleeps)) == ("hi", 2, 1)


# ----------------------------------------------------------------------------------------------- Retry-After


def test_parse_retry_after_seconds_dates_and_cap() -> None:
    now = datetime(2024, 1, 1, tzinfo=timezone.utc)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("120") == 30.0
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=7), usegmt=True), now=now) == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None


@pytest.mark.parametrize(("status", "header", "expected"), [(429, "3", 3.0), (503, "100", 30.0), (429, "0", 0.0)])
def test_retry_after_is_honoured_on_429_and_503(status: int, header: str, expected: float) -> None:
    answers = (httpx.Response(status, headers={"Retry-After": header}), httpx.Response(200, json=OK_CHAT))
    rec, sleeps = Recorder(*answers), list[float]()
    with backend(rec, sleeps) as llm:
        assert llm.chat(MESSAGES).attempts == 2
    assert sleeps == [expected]


def test_retry_after_is_ignored_on_500() -> None:
    answers = (httpx.Response(500, headers={"Retry-After": "20"}), httpx.Response(200, json=OK_CHAT))
    rec, sleeps = Recorder(*answers), list[float]()
    with backend(rec, sleeps, seed=5) as llm:
        llm.chat(MESSAGES)
    assert sleeps == [random.Random(5).uniform(0, 0.5)]


# ----------------------------------------------------------------------------------------------- what retries


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
def test_retryable_statuses_are_retried_then_unavailable(status: int) -> None:
    assert is_retryable_status(status)
    rec, sleeps = Recorder(httpx.Response(status, text="busy")), list[float]()
    with backend(rec, sleeps, max_retries=2, backoff_s=0) as llm, pytest.raises(Unavailable, match=f"{status} from"):
        llm.chat(MESSAGES)
    assert len(rec.requests) == 3 and sleeps == [0.0, 0.0]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
def test_other_4xx_are_not_retried_and_quote_the_provider(status: int) -> None:
    assert not is_retryable_status(status)
    body = {"error": {"message": "model 'm' does not exist", "type": "invalid_request_error"}}
    rec, sleeps = Recorder(httpx.Response(status, json=body)), list[float]()
    with backend(rec, sleeps, max_retries=3) as llm, pytest.raises(InvalidArgument) as info:
        llm.chat(MESSAGES)
    assert info.value.message == f"backend 'p': {status} from /chat/completions: model 'm' does not exist"
    assert info.value.detail["status"] == status
    assert len(rec.requests) == 1 and sleeps == []


@pytest.mark.parametrize(
    "exc",
    [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("hung up")],
)
def test_transport_failures_are_retried(exc: Exception) -> None:
    rec, sleeps = Recorder(exc, httpx.Response(200, json=OK_CHAT)), list[float]()
    with backend(rec, sleeps) as llm:
        result = llm.chat(MESSAGES)
    assert (result.text, result.attempts, len(rec.requests)) == ("hi", 2, 2)


def test_fallback_error_names_every_backend() -> None:
    rec, sleeps = Recorder(httpx.ConnectError("refused")), list[float]()
    fb = BackendSpec(name="local", base_url="http://fallback.test/v1", model="small", max_retries=0)
    with backend(rec, sleeps, max_retries=1, fallback=fb) as llm, pytest.raises(Unavailable) as info:
        llm.models()
    assert "backend 'p' unavailable after 2 attempts: connection failed" in info.value.message
    assert "backend 'local' unavailable after 1 attempts" in info.value.message
    assert [r.url.host for r in rec.requests] == ["llm.test", "llm.test", "fallback.test"]
    assert [b["name"] for b in info.value.detail["backends"]] == ["p", "local"]


def test_fallback_sends_its_own_model() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.host == "llm.test":
            return httpx.Response(502)
        return httpx.Response(200, json={**OK_CHAT, "model": json.loads(request.content)["model"]})

    rec, sleeps = Recorder(answer), list[float]()
    fb = BackendSpec(name="local", base_url="http://fallback.test/v1", model="small")
    with backend(rec, sleeps, max_retries=0, fallback=fb) as llm:
        result = llm.chat(MESSAGES, temperature=0)
    assert (result.backend, result.model, result.attempts) == ("local", "small", 2)
    assert json.loads(rec.requests[-1].content)["temperature"] == 0


def test_malformed_success_is_an_inference_error_not_retried() -> None:
    rec, sleeps = Recorder(httpx.Response(200, json={"object": "chat.completion"})), list[float]()
    with backend(rec, sleeps) as llm, pytest.raises(InferenceError, match="no choices"):
        llm.chat(MESSAGES)
    assert len(rec.requests) == 1


def test_bad_arguments_are_refused_before_any_request() -> None:
    rec, sleeps = Recorder(httpx.Response(200, json=OK_CHAT)), list[float]()
    with backend(rec, sleeps) as llm:
        with pytest.raises(InvalidArgument, match="model cannot be passed"):
            llm.chat(MESSAGES, model="other")
        with pytest.raises(InvalidArgument, match="messages"):
            llm.chat([])
        with pytest.raises(InvalidArgument, match="inputs"):
            llm.embed("one string")
    assert rec.requests == []


def test_base64_embeddings_are_decoded() -> None:
    import base64
    import struct

    raw = base64.b64encode(struct.pack("<3f", 1.0, 0.5, -2.0)).decode()
    rows = {"data": [{"index": 1, "embedding": [3, 4]}, {"index": 0, "embedding": raw}]}
    rec, sleeps = Recorder(httpx.Response(200, json=rows)), list[float]()
    with backend(rec, sleeps) as llm:
        assert llm.embed(["a", "b"]) == [[1.0, 0.5, -2.0], [3.0, 4.0]]
    assert json.loads(rec.requests[0].content)["encoding_format"] == "float"
