"""Open Inference Protocol v2 tensors on the wire: JSON and the binary tensor data extension.

Decoding turns a request body into named numpy arrays; encoding turns named arrays into a response body. All
malformed input raises :class:`~mlpilot.errors.InvalidArgument` with a message that says what is wrong.

Binary extension (Triton's, which ``tritonclient`` uses by default): the body is a JSON header of
``Inference-Header-Content-Length`` bytes followed by the raw tensors, in input order, each input's JSON carrying
``parameters.binary_data_size``. BYTES elements are each prefixed by a 4-byte little-endian length; BOOL is one
byte per element.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from mlpilot.errors import InvalidArgument
from mlpilot.protocol.signature import DATATYPES, datatype_of

HEADER = "inference-header-content-length"
#: the most elements a shape may describe, zero dimensions counted as one: far beyond any request body, and small
#: enough that numpy can lay the array out (it refuses shapes whose byte size overflows, even empty ones)
MAX_ELEMENTS = 2**48
_LE = {name: dt.newbyteorder("<") for name, dt in DATATYPES.items() if name not in ("BYTES",)}


@dataclass
class RequestedOutput:
    name: str
    binary: bool


@dataclass
class DecodedRequest:
    """A decoded inference request: inputs by name (in request order) and what the caller wants back."""

    inputs: dict[str, np.ndarray]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: list[RequestedOutput] | None = None  # None = all outputs
    binary_output: bool = False  # default for outputs not listed explicitly


def _bytes_from_binary(buf: memoryview, count: int, name: str) -> np.ndarray:
    out = np.empty(count, dtype=object)
    pos = 0
    for i in range(count):
        if pos + 4 > len(buf):
            raise InvalidArgument(f"input {name!r}: BYTES tensor is truncated (element {i} has no length prefix)")
        (n,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        if pos + n > len(buf):
            raise InvalidArgument(f"input {name!r}: BYTES element {i} needs {n} bytes, only {len(buf) - pos} left")
        out[i] = bytes(buf[pos : pos + n])
        pos += n
    if pos != len(buf):
        raise InvalidArgument(f"input {name!r}: {len(buf) - pos} stray bytes after {count} BYTES elements")
    return out


def element_count(shape: tuple[int, ...], name: str) -> int:
    """How many elements ``shape`` holds (exactly: no int64 wrap-around).

    Raises:
        InvalidArgument: a negative dimension, or a shape too large to lay out (see :data:`MAX_ELEMENTS`).
    """
    if any(d < 0 for d in shape):
        raise InvalidArgument(f"input {name!r}: negative dimension in shape {list(shape)}")
    if math.prod(d or 1 for d in shape) > MAX_ELEMENTS:
        raise InvalidArgument(f"input {name!r}: shape {list(shape)} is too large (at most {MAX_ELEMENTS} elements)")
    return math.prod(shape)


def tensor_from_bytes(name: str, datatype: str, shape: tuple[int, ...], chunk: memoryview | bytes) -> np.ndarray:
    """A tensor from its raw little-endian bytes (binary extension, gRPC ``raw_input_contents``)."""
    count = element_count(shape, name)
    if datatype == "BYTES":
        return _bytes_from_binary(memoryview(chunk), count, name).reshape(shape)
    dt = _LE[datatype]
    if len(chunk) != count * dt.itemsize:
        raise InvalidArgument(
            f"input {name!r}: shape {list(shape)} of {datatype} needs {count * dt.itemsize} bytes, got {len(chunk)}"
        )
    return np.frombuffer(chunk, dtype=dt).reshape(shape)


def tensor_to_bytes(arr: np.ndarray, datatype: str) -> bytes:
    """Raw little-endian bytes of a tensor (BYTES: each element prefixed by its 4-byte length)."""
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(b)) + b for b in _bytes_elements(arr))
    return np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()


def _shape(raw: Any, name: str) -> tuple[int, ...]:
    if not isinstance(raw, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in raw):
        raise InvalidArgument(f"input {name!r}: shape must be a list of non-negative integers, got {raw!r}")
    return tuple(raw)


def _from_json_data(data: Any, datatype: str, shape: tuple[int, ...], name: str) -> np.ndarray:
    count = element_count(shape, name)
    try:
        if datatype == "BYTES":
            flat = np.asarray(data, dtype=object).ravel()
            arr = np.empty(flat.size, dtype=object)
            for i, v in enumerate(flat):
                if not isinstance(v, (str, bytes)):
                    raise InvalidArgument(f"input {name!r}: BYTES elements must be strings, got {type(v).__name__}")
                arr[i] = v
        elif datatype == "BOOL":
            arr = np.asarray(data).ravel()
            if arr.dtype != np.bool_ and arr.size:
                raise InvalidArgument(f"input {name!r}: BOOL data must be true/false")
            arr = arr.astype(np.bool_)
        else:
            dt = DATATYPES[datatype]
            arr = np.asarray(data).ravel()
            if arr.size and arr.dtype.kind not in "biuf":
                raise InvalidArgument(f"input {name!r}: {datatype} data must be numbers")
            if arr.dtype.kind == "f" and dt.kind in "iu" and arr.size and not np.all(np.mod(arr, 1) == 0):
                raise InvalidArgument(f"input {name!r}: {datatype} data must be integers")
            if dt.kind in "iu" and arr.size:
                info = np.iinfo(dt)
                if arr.min() < info.min or arr.max() > info.max:
                    raise InvalidArgument(f"input {name!r}: data does not fit {datatype} ({info.min}..{info.max})")
            with np.errstate(over="ignore"):
                cast = arr.astype(dt)
            if dt.kind == "f" and cast.size and not np.isfinite(cast).all():  # JSON numbers are finite: overflow
                raise InvalidArgument(f"input {name!r}: data does not fit {datatype} (|x| <= {np.finfo(dt).max:g})")
            arr = cast
    except (ValueError, TypeError, OverflowError, FloatingPointError) as exc:
        raise InvalidArgument(f"input {name!r}: data does not fit {datatype}: {exc}") from exc
    if arr.size != count:
        raise InvalidArgument(f"input {name!r}: shape {list(shape)} needs {count} elements, data has {arr.size}")
    return arr.reshape(shape)


def decode_request(body: bytes, header_length: int | None = None) -> DecodedRequest:
    """Decode a ``/infer`` body (JSON, or JSON header + binary tensors when ``header_length`` is given)."""
    if header_length is not None:
        if header_length < 0 or header_length > len(body):
            raise InvalidArgument(
                f"Inference-Header-Content-Length is {header_length} but the body has only {len(body)} bytes"
            )
        head, binary = body[:header_length], memoryview(body)[header_length:]
    else:
        head, binary = body, memoryview(b"")
    try:
        req = orjson.loads(head)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument(f"malformed JSON in the request: {exc}") from exc
    if not isinstance(req, dict):
        raise InvalidArgument("the request must be a JSON object with an 'inputs' list")
    raw_inputs = req.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidArgument("the request needs a non-empty 'inputs' list")
    inputs: dict[str, np.ndarray] = {}
    offset = 0
    for raw in raw_inputs:
        if not isinstance(raw, dict):
            raise InvalidArgument("each input must be an object with name, datatype, shape and data")
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidArgument("every input needs a 'name'")
        if name in inputs:
            raise InvalidArgument(f"input {name!r} appears twice")
        datatype = raw.get("datatype")
        if not isinstance(datatype, str) or datatype not in DATATYPES:
            raise InvalidArgument(f"input {name!r}: unknown datatype {datatype!r}; use one of {', '.join(DATATYPES)}")
        shape = _shape(raw.get("shape"), name)
        params = raw.get("parameters") or {}
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is not None:
            if not isinstance(size, int) or size < 0:
                raise InvalidArgument(f"input {name!r}: binary_data_size must be a non-negative integer")
            if offset + size > len(binary):
                raise InvalidArgument(
                    f"input {name!r}: binary_data_size {size} runs past the end of the body "
                    f"({len(binary) - offset} bytes left): the binary tensor is truncated"
                )
            arr = tensor_from_bytes(name, datatype, shape, binary[offset : offset + size])
            offset += size
        else:
            if "data" not in raw:
                raise InvalidArgument(f"input {name!r} has neither 'data' nor parameters.binary_data_size")
            arr = _from_json_data(raw["data"], datatype, shape, name)
        inputs[name] = arr
    if offset != len(binary):
        raise InvalidArgument(f"{len(binary) - offset} bytes of binary data are not claimed by any input")
    params = req.get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidArgument("'parameters' must be an object")
    outputs = None
    raw_outputs = req.get("outputs")
    if raw_outputs is not None:
        if not isinstance(raw_outputs, list):
            raise InvalidArgument("'outputs' must be a list of {name, parameters}")
        outputs = []
        for o in raw_outputs:
            if not isinstance(o, dict) or not isinstance(o.get("name"), str):
                raise InvalidArgument("each requested output needs a 'name'")
            op = o.get("parameters") or {}
            if not isinstance(op, dict):
                raise InvalidArgument(f"output {o['name']!r}: 'parameters' must be an object")
            outputs.append(RequestedOutput(o["name"], bool(op.get("binary_data", False))))
    rid = req.get("id")
    return DecodedRequest(
        inputs=inputs,
        id=str(rid) if rid is not None else None,
        parameters=params,
        outputs=outputs,
        binary_output=bool(params.get("binary_data_output", False)),
    )


def _bytes_elements(arr: np.ndarray) -> list[bytes]:
    return [v if isinstance(v, bytes) else str(v).encode() for v in arr.ravel().tolist()]


def encode_response(
    model_name: str,
    model_version: str,
    outputs: list[tuple[str, np.ndarray, bool]],
    request_id: str | None,
    parameters: dict[str, Any] | None = None,
) -> tuple[bytes, int | None]:
    """Encode ``(name, array, binary?)`` outputs; returns ``(body, json_header_length or None)``."""
    out_json: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for name, arr, binary in outputs:
        datatype = datatype_of(arr)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(arr.shape)}
        if binary:
            raw = tensor_to_bytes(arr, datatype)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        elif datatype == "BYTES":
            entry["data"] = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in arr.ravel()]
        elif datatype == "FP16":
            entry["data"] = arr.astype(np.float32).ravel()
        else:
            entry["data"] = arr.ravel()
        out_json.append(entry)
    body: dict[str, Any] = {"model_name": model_name, "model_version": model_version, "outputs": out_json}
    if request_id is not None:
        body["id"] = request_id
    if parameters:
        body["parameters"] = parameters
    head = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return head, None
    return head + b"".join(chunks), len(head)
