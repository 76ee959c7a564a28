"""OIP v2 codecs: every datatype in JSON and binary, and every malformed body rejected with a clear message."""

from __future__ import annotations

import struct

import numpy as np
import orjson
import pytest

from mlpilot.errors import InvalidArgument
from mlpilot.protocol.signature import DATATYPES
from mlpilot.serving.codec import decode_request, encode_response

NUMERIC = [d for d in DATATYPES if d not in ("BYTES", "BOOL")]


def _values(datatype: str) -> np.ndarray:
    if datatype == "BOOL":
        return np.array([[True, False], [False, True]])
    if datatype == "BYTES":
        return np.array([[b"a", b"bc"], [b"", "d\u00e9".encode()]], dtype=object)
    return np.arange(4).reshape(2, 2).astype(DATATYPES[datatype])


def _binary_body(inputs: list[tuple[str, str, np.ndarray]]) -> tuple[bytes, int]:
    head = {"inputs": []}
    raw = b""
    for name, dt, arr in inputs:
        if dt == "BYTES":
            chunk = b"".join(struct.pack("<I", len(v)) + v for v in arr.ravel())
        else:
            chunk = arr.astype(DATATYPES[dt].newbyteorder("<")).tobytes()
        head["inputs"].append(
            {"name": name, "datatype": dt, "shape": list(arr.shape), "parameters": {"binary_data_size": len(chunk)}}
        )
        raw += chunk
    h = orjson.dumps(head)
    return h + raw, len(h)


@pytest.mark.parametrize("datatype", list(DATATYPES))
def test_json_round_trip_every_datatype(datatype: str) -> None:
    arr = _values(datatype)
    data = [v.decode() for v in arr.ravel()] if datatype == "BYTES" else arr.ravel().tolist()
    body = orjson.dumps({"inputs": [{"name": "x", "datatype": datatype, "shape": [2, 2], "data": data}]})
    got = decode_request(body).inputs["x"]
    assert got.shape == (2, 2)
    if datatype == "BYTES":
        assert [v.encode() for v in got.ravel()] == list(arr.ravel())
    else:
        assert got.dtype == DATATYPES[datatype]
        np.testing.assert_array_equal(got, arr)


@pytest.mark.parametrize("datatype", list(DATATYPES))
def test_binary_round_trip_every_datatype(datatype: str) -> None:
    arr = _values(datatype)
    body, n = _binary_body([("x", datatype, arr)])
    got = decode_request(body, n).inputs["x"]
    if datatype == "BYTES":
        assert list(got.ravel()) == list(arr.ravel())
    else:
        np.testing.assert_array_equal(got, arr)
    out, json_len = encode_response("m", "1", [("y", got, True)], "id-1")
    assert json_len is not None
    head = orjson.loads(out[:json_len])
    assert head["id"] == "id-1" and head["outputs"][0]["datatype"] == datatype
    assert head["outputs"][0]["parameters"]["binary_data_size"] == len(out) - json_len


def test_json_output_and_nested_data() -> None:
    body = orjson.dumps(
        {
            "id": "r1",
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [[1, 2], [3, 4]]}],
            "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
            "parameters": {"custom": 1},
        }
    )
    req = decode_request(body)
    assert req.id == "r1" and req.outputs and req.outputs[0].binary and req.parameters == {"custom": 1}
    out, n = encode_response("m", "2", [("y", np.array([0.5, 1.5], dtype=np.float16), False)], None)
    assert n is None and orjson.loads(out)["outputs"][0]["data"] == [0.5, 1.5]


BAD = [
    (b"{not json", None, "malformed JSON"),
    (b"[]", None, "JSON object"),
    (b'{"inputs": []}', None, "non-empty 'inputs'"),
    (b'{"inputs": [{"datatype": "FP32", "shape": [1], "data": [1]}]}', None, "needs a 'name'"),
    (b'{"inputs": [{"name": "x", "datatype": "FLOAT", "shape": [1], "data": [1]}]}', None, "unknown datatype"),
    (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1]}]}', None, "needs 2 elements"),
    (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1], "data": [1]}]}', None, "non-negative"),
    (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": ["a"]}]}', None, "must be numbers"),
    (b'{"inputs": [{"name": "x", "datatype": "INT32", "shape": [1], "data": [1.5]}]}', None, "integers"),
    (b'{"inputs": [{"name": "x", "datatype": "UINT8", "shape": [1], "data": [300]}]}', None, "does not fit"),
    (b'{"inputs": [{"name": "x", "datatype": "BOOL", "shape": [1], "data": [3]}]}', None, "true/false"),
    (b'{"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": [3]}]}', None, "strings"),
    (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}]}', None, "neither 'data'"),
    # found by tests/unit/properties: each was a TypeError / ValueError / a silent inf, so a 500 or a wrong answer
    (b'{"inputs": [{"name": "x", "datatype": ["FP32"], "shape": [1], "data": [1]}]}', None, "unknown datatype \\["),
    (b'{"inputs": [{"name": "x", "datatype": "FP16", "shape": [1], "data": [70000]}]}', None, "does not fit FP16"),
    (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1e300]}]}', None, "does not fit FP32"),
    (  # the element count wrapped around int64 to 0
        b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [4294967296, 4294967296], "data": []}]}',
        None,
        "4294967296\\] is too large",
    ),
    (  # empty, yet too large for numpy to lay out
        b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [0, 4611686018427387904], "data": []}]}',
        None,
        "4611686018427387904\\] is too large",
    ),
    (
        b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}],'
        b'"outputs": [{"name": "y", "parameters": 5}]}',
        None,
        "'parameters' must be an object",
    ),
    (
        b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]},'
        b'{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}',
        None,
        "appears twice",
    ),
]


@pytest.mark.parametrize("body,n,needle", BAD, ids=[b[2].replace(" ", "-") for b in BAD])
def test_malformed_json_requests(body: bytes, n: int | None, needle: str) -> None:
    with pytest.raises(InvalidArgument, match=needle):
        decode_request(body, n)


def test_binary_failures() -> None:
    arr = np.ones((2, 2), dtype=np.float32)
    body, n = _binary_body([("x", "FP32", arr)])
    with pytest.raises(InvalidArgument, match="Inference-Header-Content-Length"):
        decode_request(body, len(body) + 5)
    with pytest.raises(InvalidArgument, match="truncated"):
        decode_request(body[:-3], n)
    with pytest.raises(InvalidArgument, match="not claimed"):
        decode_request(body + b"xx", n)
    with pytest.raises(InvalidArgument, match="malformed JSON"):
        decode_request(body, n - 3)
    bad_size = orjson.dumps(
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 2], "parameters": {"binary_data_size": 12}}]}
    )
    with pytest.raises(InvalidArgument, match="needs 16 bytes"):
        decode_request(bad_size + b"\0" * 12, len(bad_size))
    strs = np.array([b"abc"], dtype=object)
    body, n = _binary_body([("s", "BYTES", strs)])
    broken = body[:n] + struct.pack("<I", 10) + body[n + 4 :]
    with pytest.raises(InvalidArgument, match="BYTES element 0 needs 10 bytes"):
        decode_request(broken, n)
