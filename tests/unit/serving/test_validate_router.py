"""Signature validation (compiled) and the pure router."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from mlpilot.errors import InvalidArgument, SignatureError
from mlpilot.protocol.signature import Signature, TensorSpec
from mlpilot.serving.router import SplitTable, sticky_point
from mlpilot.serving.validate import InputValidator

ARRAY = Signature(inputs=(TensorSpec("x", "FP64", (-1, 3)),))
COLS = Signature(
    inputs=(TensorSpec("a", "FP64", (-1,)), TensorSpec("b", "INT64", (-1,), allow_nan=False)), columnar=True
)


def test_array_signature_accepts_and_casts() -> None:
    v = InputValidator(ARRAY)
    out = v({"x": np.ones((2, 3), dtype=np.float32)})
    assert out.dtype == np.float64 and out.shape == (2, 3)
    assert v({"x": np.ones((1, 3), dtype=np.int32)}).dtype == np.float64


@pytest.mark.parametrize(
    "inputs,needle",
    [
        ({"x": np.ones((2, 4))}, "expected shape \\[-1, 3\\]"),
        ({"x": np.ones(3)}, "expected shape"),
        ({"x": np.array([["a", "b", "c"]], dtype=object)}, "expected datatype FP64, got BYTES"),
        ({"y": np.ones((1, 3))}, "missing inputs \\['x'\\]"),
        ({"x": np.ones((1, 3)), "z": np.ones(1)}, "unexpected inputs \\['z'\\]"),
        ({"x": np.array([[1.0, np.nan, 2.0]])}, "NaN"),
        ({"x": np.array([[1.0, np.inf, 2.0]])}, "NaN or infinite"),
    ],
    ids=["wide", "rank", "datatype", "missing", "extra", "nan", "inf"],
)
def test_array_signature_rejects(inputs: dict[str, np.ndarray], needle: str) -> None:
    with pytest.raises(InvalidArgument, match=needle):
        InputValidator(ARRAY)(inputs)


def test_columnar_signature_builds_a_frame() -> None:
    v = InputValidator(COLS)
    df = v({"b": np.array([[1], [2]], dtype=np.int64), "a": np.array([0.5, 1.5])})
    assert isinstance(df, pd.DataFrame) and list(df.columns) == ["a", "b"] and len(df) == 2
    with pytest.raises(InvalidArgument, match="expected datatype INT64, got FP64"):
        v({"a": np.array([1.0]), "b": np.array([1.5])})
    with pytest.raises(InvalidArgument, match="same length"):
        v({"a": np.array([1.0, 2.0]), "b": np.array([1])})
    allow = Signature(inputs=(TensorSpec("a", "FP64", (-1,), allow_nan=True),), columnar=True)
    assert np.isnan(InputValidator(allow)({"a": np.array([np.nan])})["a"][0])


def test_int_narrowing_is_refused_widening_allowed() -> None:
    sig = Signature(inputs=(TensorSpec("x", "INT32", (-1,)),))
    assert InputValidator(sig)({"x": np.array([1], dtype=np.int16)}).dtype == np.int32
    with pytest.raises(InvalidArgument):
        InputValidator(sig)({"x": np.array([1], dtype=np.int64)})


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"inputs": 5}, "'inputs' must be a list"),
        ({"inputs": "ab"}, "'inputs' must be a list"),
        ({"inputs": [5]}, "bad tensor spec 5"),
        ({"inputs": [{"name": "x", "datatype": "FP32"}]}, "name, datatype and shape"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": 4}]}, "must be a list of integers"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1.7]}]}, "must be a list of integers"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [True]}]}, "must be a list of integers"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}], "outputs": 5}, "'outputs' must be a list"),
    ],
    ids=["inputs-int", "inputs-str", "spec-int", "no-shape", "shape-int", "shape-float", "shape-bool", "outputs-int"],
)
def test_malformed_signatures_are_signature_errors(raw: object, needle: str) -> None:
    """Found by tests/unit/properties: these were TypeErrors (a 500 when registering a model with a signature), or a
    float or bool dimension silently truncated to an int."""
    with pytest.raises(SignatureError, match=needle):
        Signature.from_dict(raw)  # type: ignore[arg-type]
    assert Signature.from_dict({"inputs": [{"name": "x", "datatype": "FP32", "shape": [np.int64(-1), 4]}]})


def test_split_follows_weights() -> None:
    table = SplitTable({"a": 70, "b": 20, "c": 10, "idle": 0}, ["a", "b", "c", "idle"])
    rng = random.Random(1)
    counts = {"a": 0, "b": 0, "c": 0}
    for _ in range(20_000):
        counts[table.route(None, rng)] += 1
    assert abs(counts["a"] / 20_000 - 0.7) < 0.02 and abs(counts["c"] / 20_000 - 0.1) < 0.02
    assert "idle" not in counts


def test_sticky_keys_are_stable_and_spread() -> None:
    table = SplitTable({"a": 50, "b": 50}, ["a", "b"])
    first = {f"user-{i}": table.route(f"user-{i}") for i in range(2000)}
    assert all(table.route(k) == v for k, v in first.items())
    share = sum(v == "a" for v in first.values()) / 2000
    assert 0.45 < share < 0.55
    assert 0 <= sticky_point("x") < 1


def test_no_live_variant_is_refused() -> None:
    with pytest.raises(ValueError):
        SplitTable({"a": 0}, ["a"])
