"""The numpy Llama engine on a tiny random model: forward pass vs a naive reference, KV cache, sampling, stops.

The reference below recomputes the whole sequence for every token with explicit loops (per head, per position,
rotary pairs with cos/sin), in float64, from separate (unfused, untransposed) weights. The real model
(SmolLM2-135M) is tested in ``tests/integration/llm/test_local_models.py``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from mlpilot.errors import InvalidArgument
from mlpilot.llm import llama
from mlpilot.llm.llama import ByteBPETokenizer, LlamaConfig, LlamaModel, TokenTextStream, _bytes_to_unicode, _Layer

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def tiny_tokenizer() -> ByteBPETokenizer:
    byte_chars = [_bytes_to_unicode()[b] for b in range(256)]
    tokens = [*SPECIALS, *byte_chars, "he", "Ġt", "Ġthe"]
    merges = ["h e", "Ġ t", "Ġt he"]
    types = [3] * len(SPECIALS) + [1] * (len(tokens) - len(SPECIALS))
    return ByteBPETokenizer(tokens, merges, types, digits_alone=True)


def tiny_model(seed: int = 0) -> tuple[LlamaModel, dict[str, Any]]:
    """A 2-layer model with GQA (4 query heads over 2 kv heads) and random weights; also its raw weights."""
    tok = tiny_tokenizer()
    cfg = LlamaConfig(
        name="tiny",
        n_layers=2,
        dim=32,
        n_heads=4,
        n_kv_heads=2,
        ffn_dim=48,
        vocab_size=tok.vocab_size,
        context_length=64,
        rope_base=10000.0,
        norm_eps=1e-5,
        eos_id=2,
    )
    rng = np.random.default_rng(seed)

    def w(*shape: int, scale: float = 0.3) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    kv = cfg.n_kv_heads * cfg.head_dim
    raw: dict[str, Any] = {"emb": w(cfg.vocab_size, cfg.dim, scale=1.0), "out_norm": 1 + w(cfg.dim), "layers": []}
    raw["emb"][: len(SPECIALS)] *= 0.2  # control tokens (ends of text) rarely sampled, so generations run on
    layers = []
    for _ in range(cfg.n_layers):
        lw = {
            "attn_norm": 1 + w(cfg.dim),
            "q": w(cfg.dim, cfg.dim),
            "k": w(kv, cfg.dim),
            "v": w(kv, cfg.dim),
            "o": w(cfg.dim, cfg.dim),
            "ffn_norm": 1 + w(cfg.dim),
            "gate": w(cfg.ffn_dim, cfg.dim),
            "up": w(cfg.ffn_dim, cfg.dim),
            "down": w(cfg.dim, cfg.ffn_dim),
        }
        raw["layers"].append(lw)
        layers.append(
            _Layer(
                attn_norm=lw["attn_norm"],
                wqkv=np.ascontiguousarray(np.concatenate([lw["q"], lw["k"], lw["v"]]).T),
                wo=np.ascontiguousarray(lw["o"].T),
                ffn_norm=lw["ffn_norm"],
                w_gate_up=np.ascontiguousarray(np.concatenate([lw["gate"], lw["up"]]).T),
                w_down=np.ascontiguousarray(lw["down"].T),
            )
        )
    model = LlamaModel(cfg, tok, raw["emb"], layers, raw["out_norm"], np.ascontiguousarray(raw["emb"].T))
    return model, raw


def reference_logits(model: LlamaModel, raw: dict[str, Any], ids: list[int]) -> np.ndarray:
    """Next-token logits after ``ids``, the slow and obvious way."""
    c = model.config
    hd, group = c.head_dim, c.n_heads // c.n_kv_heads

    def norm(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
        return x / np.sqrt((x * x).mean() + c.norm_eps) * weight

    def rope(vec: np.ndarray, pos: int) -> np.ndarray:
        out = vec.copy()
        for i in range(hd // 2):
            angle = pos * c.rope_base ** (-2.0 * i / hd)
            a, b = vec[2 * i], vec[2 * i + 1]
            out[2 * i] = a * math.cos(angle) - b * math.sin(angle)
            out[2 * i + 1] = a * math.sin(angle) + b * math.cos(angle)
        return out

    x = raw["emb"][ids].astype(np.float64)
    for lw in raw["layers"]:
        h = np.stack([norm(row, lw["attn_norm"]) for row in x])
        q, k, v = h @ lw["q"].T, h @ lw["k"].T, h @ lw["v"].T
        attn = np.zeros_like(x)
        for head in range(c.n_heads):
            kvh = head // group
            for p in range(len(ids)):
                qp = rope(q[p, head * hd : (head + 1) * hd], p)
                scores = np.array([qp @ rope(k[j, kvh * hd : (kvh + 1) * hd], j) / math.sqrt(hd) for j in range(p + 1)])
                weights = np.exp(scores - scores.max())
                weights /= weights.sum()
                attn[p, head * hd : (head + 1) * hd] = weights @ v[: p + 1, kvh * hd : (kvh + 1) * hd]
        x = x + attn @ lw["o"].T
        h = np.stack([norm(row, lw["ffn_norm"]) for row in x])
        gate, up = h @ lw["gate"].T, h @ lw["up"].T
        x = x + (gate / (1 + np.exp(-gate)) * up) @ lw["down"].T
    return norm(x[-1], raw["out_norm"]) @ raw["emb"].T.astype(np.float64)


@pytest.fixture(scope="module")
def tiny() -> tuple[LlamaModel, dict[str, Any]]:
    return tiny_model()


IDS = [1, 80, 120, 33, 200, 45, 7, 99, 150, 3, 60]


def test_forward_matches_the_naive_reference(tiny: tuple[LlamaModel, dict[str, Any]]) -> None:
    model, raw = tiny
    got = model.logits(IDS)
    want = reference_logits(model, raw, IDS)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_prefill_in_chunks_gives_the_same_logits(
    tiny: tuple[LlamaModel, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    model, _ = tiny
    whole = model.logits(IDS)
    monkeypatch.setattr(llama, "PREFILL_CHUNK", 3)
    np.testing.assert_allclose(model.logits(IDS), whole, rtol=1e-5, atol=1e-5)


def test_greedy_decoding_with_the_kv_cache_matches_recomputing_everything(
    tiny: tuple[LlamaModel, dict[str, Any]],
) -> None:
    model, raw = tiny
    prompt = IDS[:5]
    expected: list[int] = []
    context = list(prompt)
    for _ in range(6):
        nxt = int(np.argmax(reference_logits(model, raw, context)))
        if nxt in model.stop_ids:
            break
        expected.append(nxt)
        context.append(nxt)
    gen = model.generate(prompt, max_tokens=6)
    text = "".join(gen)
    assert text == model.tokenizer.decode(expected)
    assert gen.completion_tokens == len(expected)
    assert gen.finish_reason == ("length" if len(expected) == 6 else "stop")
    assert gen.prompt_tokens == 5


def test_seeded_sampling_is_reproducible_and_a_tiny_top_p_is_greedy(tiny: tuple[LlamaModel, dict[str, Any]]) -> None:
    model, _ = tiny
    runs = [model.generate(IDS, temperature=1.0, seed=11, max_tokens=12) for _ in range(2)]
    texts = ["".join(g) for g in runs]
    assert texts[0] == texts[1]
    other = "".join(model.generate(IDS, temperature=1.0, seed=12, max_tokens=12))
    assert other != texts[0]
    greedy = "".join(model.generate(IDS, max_tokens=8))
    assert "".join(model.generate(IDS, temperature=1.5, top_p=1e-6, seed=3, max_tokens=8)) == greedy


@pytest.mark.parametrize("start", [0, 7, 15])
def test_a_stop_string_cuts_the_text_where_it_first_appears(
    tiny: tuple[LlamaModel, dict[str, Any]], start: int
) -> None:
    model, _ = tiny
    params: dict[str, Any] = {"temperature": 1.0, "seed": 5, "max_tokens": 40}
    full = model.generate(IDS, **params)
    text = "".join(full)
    assert len(text) > 25 and full.finish_reason == "length"
    stop = text[start : start + 3]
    gen = model.generate(IDS, stop=["never-there", stop], **params)
    pieces = list(gen)
    assert "".join(pieces) == gen.text == text[: text.find(stop)]
    assert gen.finish_reason == "stop"


def test_generation_holds_the_model_lock_until_it_ends_or_is_closed(tiny: tuple[LlamaModel, dict[str, Any]]) -> None:
    model, _ = tiny
    gen = model.generate(IDS, temperature=1.0, seed=5, max_tokens=30)
    assert not model.lock.locked()
    next(gen)
    assert model.lock.locked()
    gen.close()
    assert not model.lock.locked()


def test_max_tokens_is_cut_to_the_room_left_in_the_context(tiny: tuple[LlamaModel, dict[str, Any]]) -> None:
    model, _ = tiny
    prompt = (IDS * 6)[:60]
    gen = model.generate(prompt, temperature=1.0, seed=5, max_tokens=100)
    list(gen)
    assert gen.completion_tokens <= 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": -1.0}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"stop": [3]}, "stop"),
    ],
)
def test_bad_parameters_are_refused(
    tiny: tuple[LlamaModel, dict[str, Any]], kwargs: dict[str, Any], message: str
) -> None:
    model, _ = tiny
    with pytest.raises(InvalidArgument, match=message):
        model.generate(IDS, **kwargs)


def test_an_empty_or_oversized_prompt_is_refused(tiny: tuple[LlamaModel, dict[str, Any]]) -> None:
    model, _ = tiny
    with pytest.raises(InvalidArgument, match="empty"):
        model.generate([])
    with pytest.raises(InvalidArgument, match="context window is 64"):
        model.generate([5] * 64)


# ------------------------------------------------------------------------------------------------ tokenizer


@pytest.mark.parametrize(
    "text", ["hello the world", "Ünïcödé café", "emoji 😀👍🏽", "digits 1234567890", " a\n\n\tb  "]
)
def test_tokenizer_round_trip(text: str) -> None:
    tok = tiny_tokenizer()
    assert tok.decode(tok.encode(text)) == text


def test_control_tokens_are_single_ids_only_when_asked() -> None:
    tok = tiny_tokenizer()
    assert tok.encode("<|im_start|>hi<|im_end|>", special=True) == [1, *tok.encode("hi"), 2]
    plain = tok.encode("<|im_end|>")
    assert len(plain) > 1 and 2 not in plain
    assert tok.decode(plain) == "<|im_end|>"


def test_merges_and_single_digits() -> None:
    tok = tiny_tokenizer()
    assert tok.encode(" the") == [tok.token_id("Ġthe")]
    assert len(tok.encode("123")) == 3


def test_the_text_stream_hands_out_whole_characters_only() -> None:
    tok = tiny_tokenizer()
    text = "é😀x"
    ids = tok.encode(text)
    assert len(ids) == len(text.encode())  # one token per byte in the tiny vocabulary
    stream = TokenTextStream(tok)
    pieces = [stream.push(i) for i in ids]
    assert pieces == ["", "é", "", "", "", "😀", "x"]
    assert stream.flush() == ""
    broken = TokenTextStream(tok)
    assert broken.push(ids[2]) == ""
    assert broken.flush() == "\ufffd"
