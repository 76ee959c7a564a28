"""Properties of the OIP v2 codecs (``serving/codec.py``) and signatures (``protocol``): every datatype and shape
survives encode → decode (JSON: finite values, text as BYTES; the binary extension: bit for bit, NaN and arbitrary
bytes included), and malformed input of any kind raises ``InvalidArgument`` / ``SignatureError``, never another
exception (which the HTTP edge would answer with a 500)."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mlpilot.errors import InvalidArgument, SignatureError
from mlpilot.protocol.signature import DATATYPES, Signature, TensorSpec
from mlpilot.serving.codec import decode_request, encode_response, tensor_from_bytes, tensor_to_bytes
from mlpilot.serving.validate import InputValidator

SETTINGS = settings(deadline=None, derandomize=True, max_examples=150)
NAMES = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=8)
SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)


def _elements(datatype: str, finite: bool) -> st.SearchStrategy[Any] | None:
    dt = DATATYPES[datatype]
    if dt.kind == "f":
        return st.floats(width=dt.itemsize * 8, allow_nan=not finite, allow_infinity=not finite)
    return None  # numpy's own: every value of the integer or bool dtype


@st.composite
def tensors(draw: st.DrawFn, finite: bool = True, text: bool = True) -> tuple[str, np.ndarray]:
    """``(datatype, array)`` of any OIP datatype and shape; BYTES elements are UTF-8 text when ``text``."""
    datatype = draw(st.sampled_from(list(DATATYPES)))
    shape = draw(SHAPES)
    if datatype == "BYTES":
        n = math.prod(shape)
        item = st.text(max_size=6).map(str.encode) if text else st.binary(max_size=6)
        arr = np.empty(n, dtype=object)
        arr[:] = draw(st.lists(item, min_size=n, max_size=n))
        return datatype, arr.reshape(shape)
    return datatype, draw(hnp.arrays(DATATYPES[datatype], shape, elements=_elements(datatype, finite)))


def _named(draw: st.DrawFn, strategy: st.SearchStrategy[tuple[str, np.ndarray]]) -> dict[str, tuple[str, np.ndarray]]:
    names = draw(st.lists(NAMES, min_size=1, max_size=3, unique=True))
    return {n: draw(strategy) for n in names}


def _same(datatype: str, got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    if datatype == "BYTES":
        as_bytes = [v if isinstance(v, bytes) else v.encode() for v in got.ravel()]
        assert as_bytes == list(want.ravel())
    else:
        assert got.dtype == want.dtype
        assert got.tobytes() == want.tobytes()  # bit for bit: -0.0, NaN payloads, the largest integers


@SETTINGS
@given(st.data())
def test_json_round_trip_of_every_datatype_and_shape(data: st.DataObject) -> None:
    named = _named(data.draw, tensors(finite=True, text=True))
    body, header = encode_response("m", "1", [(n, a, False) for n, (_, a) in named.items()], "rid")
    assert header is None
    response = orjson.loads(body)
    assert [o["datatype"] for o in response["outputs"]] == [d for d, _ in named.values()]
    decoded = decode_request(orjson.dumps({"id": response["id"], "inputs": response["outputs"]}))
    assert decoded.id == "rid" and list(decoded.inputs) == list(named)
    for name, (datatype, arr) in named.items():
        _same(datatype, decoded.inputs[name], arr)


@SETTINGS
@given(st.data())
def test_binary_round_trip_is_bit_exact_nan_and_raw_bytes_included(data: st.DataObject) -> None:
    named = _named(data.draw, tensors(finite=False, text=False))
    body, header = encode_response("m", "1", [(n, a, True) for n, (_, a) in named.items()], None)
    assert header is not None
    head = orjson.loads(body[:header])
    request_head = orjson.dumps({"inputs": head["outputs"]})
    decoded = decode_request(request_head + body[header:], len(request_head))
    for name, (datatype, arr) in named.items():
        _same(datatype, decoded.inputs[name], arr)


@SETTINGS
@given(tensors(finite=False, text=False))
def test_raw_tensor_bytes_round_trip(tensor: tuple[str, np.ndarray]) -> None:
    datatype, arr = tensor
    _same(datatype, tensor_from_bytes("x", datatype, arr.shape, tensor_to_bytes(arr, datatype)), arr)


# ------------------------------------------------------------------------------------------------ malformed input

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
DIMS = st.integers(-3, 5) | st.integers(-(2**64), 2**66) | st.just(2**32)


@st.composite
def near_requests(draw: st.DrawFn) -> tuple[bytes, int | None]:
    """Requests shaped like valid ones with something off: datatypes, shapes, data, parameters, binary sizes."""
    inputs = []
    for _ in range(draw(st.integers(0, 3))):
        tensor: dict[str, Any] = {
            "name": draw(st.one_of(NAMES, JSON)),
            "datatype": draw(st.sampled_from([*DATATYPES, "FP8", "", "fp32"]) | JSON),
            "shape": draw(st.lists(DIMS, max_size=4) | JSON),
        }
        if draw(st.booleans()):
            tensor["data"] = draw(JSON | st.lists(st.floats() | st.integers(-(2**65), 2**65), max_size=6))
        if draw(st.booleans()):
            size = draw(st.integers(-2, 40) | JSON)
            tensor["parameters"] = draw(st.just({"binary_data_size": size}) | JSON)
        inputs.append(draw(st.sampled_from([tensor, {k: v for k, v in tensor.items() if k != "name"}])))
    request: dict[str, Any] = {"inputs": inputs}
    for key in ("outputs", "parameters", "id"):
        if draw(st.booleans()):
            request[key] = draw(JSON | st.lists(st.fixed_dictionaries({"name": NAMES, "parameters": JSON})))
    head = json.dumps(request).encode()  # the stdlib's: integers past 64 bits, NaN and Infinity tokens too
    if draw(st.booleans()):
        return head, None
    tail = draw(st.binary(max_size=48))
    return head + tail, draw(st.just(len(head)) | st.integers(-5, len(head) + len(tail) + 5))


def _decodes_or_refuses(body: bytes, header: int | None) -> None:
    try:
        decode_request(body, header)
    except InvalidArgument as exc:
        assert exc.message  # says what is wrong


@SETTINGS
@given(st.binary(max_size=200), st.none() | st.integers(-5, 205))
def test_arbitrary_bytes_decode_or_raise_invalid_argument(body: bytes, header: int | None) -> None:
    _decodes_or_refuses(body, header)


@settings(deadline=None, derandomize=True, max_examples=400)
@given(near_requests())
def test_malformed_requests_raise_invalid_argument_only(request: tuple[bytes, int | None]) -> None:
    _decodes_or_refuses(*request)


@settings(deadline=None, derandomize=True, max_examples=300)
@given(
    JSON
    | st.fixed_dictionaries(
        {
            "inputs": st.lists(
                JSON
                | st.fixed_dictionaries(
                    {"name": JSON, "datatype": st.sampled_from(list(DATATYPES)) | JSON, "shape": st.lists(DIMS) | JSON}
                ),
                max_size=3,
            )
        }
    )
)
def test_malformed_signatures_raise_signature_error_only(raw: Any) -> None:
    try:
        sig = Signature.from_dict(raw)
    except SignatureError as exc:
        assert exc.message
        return
    assert Signature.from_dict(sig.to_dict()) == sig  # what is accepted round-trips


SPECS = st.builds(
    TensorSpec,
    name=NAMES,
    datatype=st.sampled_from(list(DATATYPES)),
    shape=st.lists(st.sampled_from([-1, 1, 2, 3]), min_size=1, max_size=3).map(tuple),
    allow_nan=st.booleans(),
)


@SETTINGS
@given(st.lists(SPECS, min_size=1, max_size=3, unique_by=lambda s: s.name), st.booleans(), st.data())
def test_validation_accepts_or_raises_invalid_argument(specs: list[TensorSpec], columnar: bool, data: Any) -> None:
    validator = InputValidator(Signature(inputs=tuple(specs), columnar=columnar))
    names = [s.name for s in specs] + ["other"]
    inputs = {n: data.draw(tensors(finite=False))[1] for n in data.draw(st.lists(st.sampled_from(names), unique=True))}
    try:
        validator(inputs)
    except InvalidArgument as exc:
        assert exc.message


@pytest.mark.parametrize(
    ("shape", "needle"),
    [([2**32, 2**32], "too large"), ([0, 2**62], "too large"), ([1, -1], "negative dimension")],
    ids=["wraps-int64", "empty-but-huge", "negative"],
)
def test_raw_tensors_with_impossible_shapes_are_refused(shape: list[int], needle: str) -> None:
    """Found by the properties above: int64 wrap-around in the element count, then numpy refusing the layout."""
    with pytest.raises(InvalidArgument, match=needle):
        tensor_from_bytes("x", "FP32", tuple(shape), b"")
