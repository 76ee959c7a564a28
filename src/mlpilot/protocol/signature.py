"""Model signatures: named, typed, shaped inputs and outputs in Open Inference Protocol v2 terms.

A signature is stored with every model version and compiled by the data plane into a request validator.
Shapes use ``-1`` for a variable dimension (the batch dimension is always variable).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlpilot.errors import SignatureError

#: OIP v2 datatype -> numpy dtype (BYTES is an object array of ``bytes``).
DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
_BY_DTYPE = {dt: name for name, dt in DATATYPES.items() if name != "BYTES"}


def datatype_of(values: Any) -> str:
    """The OIP datatype of a numpy array or pandas Series (strings, bytes and objects are ``BYTES``)."""
    dtype = np.asarray(values).dtype if not hasattr(values, "dtype") else values.dtype
    try:
        dtype = np.dtype(dtype)
    except TypeError:  # pandas extension dtypes (category, string …)
        return "BYTES"
    if dtype in _BY_DTYPE:
        return _BY_DTYPE[dtype]
    if dtype.kind in "OUSM" or dtype.kind == "m":
        return "BYTES"
    raise SignatureError(f"dtype {dtype} has no Open Inference Protocol datatype")


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor: OIP datatype and shape (``-1`` = any size)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    allow_nan: bool = False  # floating inputs: accept NaN/inf (inferred from a sample that has missing values)

    def __post_init__(self) -> None:
        if not self.name:
            raise SignatureError("a tensor needs a non-empty name")
        if self.datatype not in DATATYPES:
            raise SignatureError(
                f"tensor {self.name!r}: unknown datatype {self.datatype!r}; use one of {', '.join(DATATYPES)}"
            )
        if any((not isinstance(d, int)) or d < -1 or d == 0 for d in self.shape):
            raise SignatureError(f"tensor {self.name!r}: shape {list(self.shape)} must hold positive ints or -1")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}
        if self.allow_nan:
            d["allow_nan"] = True
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TensorSpec:
        if not isinstance(d, Mapping) or not {"name", "datatype", "shape"} <= d.keys():
            raise SignatureError(f"bad tensor spec {d!r}: an object with name, datatype and shape")
        shape = d["shape"]
        if not isinstance(shape, (list, tuple)) or not all(_is_int(x) for x in shape):
            raise SignatureError(f"tensor {d['name']!r}: shape {shape!r} must be a list of integers")
        return cls(
            name=str(d["name"]),
            datatype=str(d["datatype"]),
            shape=tuple(int(x) for x in shape),
            allow_nan=bool(d.get("allow_nan", False)),
        )

    def accepts(self, other: TensorSpec) -> bool:
        """True when a tensor described by ``other`` fits this spec (same name/datatype, compatible shape)."""
        if other.name != self.name or other.datatype != self.datatype or len(other.shape) != len(self.shape):
            return False
        return all(a == -1 or b == -1 or a == b for a, b in zip(self.shape, other.shape, strict=True))


@dataclass(frozen=True)
class Signature:
    """Inputs and outputs of a model; ``columnar`` means each input is one column of a table (pandas codec)."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...] = ()
    columnar: bool = False
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.inputs:
            raise SignatureError("a signature needs at least one input")
        for group, specs in (("input", self.inputs), ("output", self.outputs)):
            names = [s.name for s in specs]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise SignatureError(f"duplicate {group} names in signature: {', '.join(dupes)}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
            "columnar": self.columnar,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Signature:
        if not isinstance(d, Mapping) or "inputs" not in d:
            raise SignatureError("a signature is an object with 'inputs' (and optionally 'outputs', 'columnar')")
        for group in ("inputs", "outputs"):
            if not isinstance(d.get(group, ()), (list, tuple)):
                raise SignatureError(f"the signature's {group!r} must be a list of tensor specs")
        return cls(
            inputs=tuple(TensorSpec.from_dict(x) for x in d["inputs"]),
            outputs=tuple(TensorSpec.from_dict(x) for x in d.get("outputs", ())),
            columnar=bool(d.get("columnar", False)),
        )

    def input_names(self) -> list[str]:
        return [s.name for s in self.inputs]

    def incompatibilities(self, other: Signature) -> list[str]:
        """Why requests valid for ``self`` would not be valid for ``other`` (empty list = compatible)."""
        problems: list[str] = []
        theirs = {s.name: s for s in other.inputs}
        for spec in self.inputs:
            match = theirs.get(spec.name)
            if match is None:
                problems.append(f"input {spec.name!r} is missing")
            elif not match.accepts(spec):
                problems.append(
                    f"input {spec.name!r}: {spec.datatype}{list(spec.shape)} vs {match.datatype}{list(match.shape)}"
                )
        for name in theirs.keys() - {s.name for s in self.inputs}:
            problems.append(f"input {name!r} is extra")
        mine_out = {s.name: s for s in self.outputs}
        for spec in other.outputs:
            if spec.name in mine_out and mine_out[spec.name].datatype != spec.datatype:
                problems.append(f"output {spec.name!r}: {mine_out[spec.name].datatype} vs {spec.datatype}")
        return sorted(problems)


def _is_int(x: Any) -> bool:
    """An integer, numpy's included; not a bool, not a float (``1.7`` is no dimension)."""
    return isinstance(x, numbers.Integral) and not isinstance(x, (bool, np.bool_))


def _has_nan(values: Any) -> bool:
    arr = np.asarray(values)
    return bool(arr.dtype.kind == "f" and not np.isfinite(arr).all())


def _batch_shape(arr: np.ndarray) -> tuple[int, ...]:
    return (-1, *arr.shape[1:]) if arr.ndim else (-1,)


def infer_signature(sample: Any, outputs: Mapping[str, Any] | None = None) -> Signature:
    """Infer a signature from a sample input (DataFrame, ndarray, list, or dict of arrays) and sample outputs.

    Args:
        sample: a batch of example inputs. A DataFrame gives one columnar input per column; an array one input
            named ``input-0``; a dict one input per key.
        outputs: name -> sample output batch, as produced by the model on ``sample``.

    Raises:
        SignatureError: the sample is empty or has a type with no OIP datatype.
    """
    inputs: list[TensorSpec] = []
    columnar = False
    if hasattr(sample, "columns") and hasattr(sample, "dtypes"):  # pandas DataFrame, without importing pandas
        columnar = True
        if len(sample) == 0:
            raise SignatureError("the sample has no rows; give at least one example row")
        for col in sample.columns:
            inputs.append(TensorSpec(str(col), datatype_of(sample[col]), (-1,), _has_nan(sample[col])))
    elif isinstance(sample, Mapping):
        for key, value in sample.items():
            arr = np.asarray(value)
            inputs.append(TensorSpec(str(key), datatype_of(arr), _batch_shape(arr), _has_nan(arr)))
    else:
        arr = np.asarray(sample)
        if arr.size == 0:
            raise SignatureError("the sample is empty; give at least one example row")
        if arr.ndim == 1:
            arr = arr.reshape(1, -1)
        inputs.append(TensorSpec("input-0", datatype_of(arr), _batch_shape(arr), _has_nan(arr)))
    outs: list[TensorSpec] = []
    for name, value in (outputs or {}).items():
        arr = np.asarray(value)
        outs.append(TensorSpec(name, datatype_of(arr), _batch_shape(arr)))
    return Signature(inputs=tuple(inputs), outputs=tuple(outs), columnar=columnar)


def signature_from_specs(
    inputs: Sequence[Mapping[str, Any]], outputs: Sequence[Mapping[str, Any]] = (), columnar: bool = False
) -> Signature:
    """Build a signature from plain dicts (the explicit form users give on the CLI or API)."""
    return Signature.from_dict({"inputs": list(inputs), "outputs": list(outputs), "columnar": columnar})
