"""Request validation against a model's signature, compiled once when a variant loads.

The compiled :class:`InputValidator` checks names, datatypes (with safe widening casts only), shapes and
non-finite values, and builds the model input: a DataFrame for columnar signatures, the array for a single
tensor input, a dict of arrays otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from mlpilot.errors import InvalidArgument
from mlpilot.protocol.signature import DATATYPES, Signature, TensorSpec, datatype_of

# Casts accepted without loss of meaning: into floats from any number; between ints only when widening.
_FLOAT = {"FP16", "FP32", "FP64"}
_INT = {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}


def _castable(src: str, dst: str) -> bool:
    if src == dst:
        return True
    if dst in _FLOAT:
        return src in _FLOAT or src in _INT
    if dst in _INT and src in _INT:
        return bool(np.can_cast(DATATYPES[src], DATATYPES[dst], casting="safe"))
    return False


class _Check:
    __slots__ = ("columnar", "dtype", "spec")

    def __init__(self, spec: TensorSpec, columnar: bool) -> None:
        self.spec = spec
        self.columnar = columnar
        self.dtype = DATATYPES[spec.datatype]

    def __call__(self, arr: np.ndarray) -> np.ndarray:
        spec = self.spec
        got = datatype_of(arr)
        if got != spec.datatype:
            if not _castable(got, spec.datatype):
                raise InvalidArgument(f"input {spec.name!r}: expected datatype {spec.datatype}, got {got}")
            arr = arr.astype(self.dtype)
        shape = arr.shape
        if self.columnar and len(shape) == 2 and shape[1] == 1:
            arr = arr.reshape(shape[0])  # a column sent as [n, 1]
            shape = arr.shape
        want = spec.shape
        if len(shape) != len(want) or any(w != -1 and w != g for w, g in zip(want, shape, strict=True)):
            raise InvalidArgument(f"input {spec.name!r}: expected shape {list(want)}, got {list(shape)}")
        if not spec.allow_nan and arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise InvalidArgument(f"input {spec.name!r}: NaN or infinite values are not allowed by the signature")
        return arr


class InputValidator:
    """Validate decoded inputs against ``signature`` (``None``: accept anything, as given)."""

    def __init__(self, signature: Signature | Mapping[str, Any] | None) -> None:
        if signature is not None and not isinstance(signature, Signature):
            signature = Signature.from_dict(signature)
        self.signature = signature
        self._checks: dict[str, _Check] = (
            {s.name: _Check(s, signature.columnar) for s in signature.inputs} if signature else {}
        )
        self._names = list(self._checks)
        self._single = len(self._names) == 1 and not (signature and signature.columnar)
        #: the input's name when the model takes one unnamed tensor (for logging it under its name)
        self.single_name = self._names[0] if self._single else None

    def __call__(self, inputs: dict[str, np.ndarray]) -> Any:
        if self.signature is None:
            return next(iter(inputs.values())) if len(inputs) == 1 else inputs
        if self._single:
            name = self._names[0]
            if len(inputs) != 1 or name not in inputs:
                raise self._mismatch(inputs)
            return self._checks[name](inputs[name])
        if inputs.keys() != self._checks.keys():
            raise self._mismatch(inputs)
        checked = {n: self._checks[n](inputs[n]) for n in self._names}
        if self.signature.columnar:
            import pandas as pd

            rows = {len(a) for a in checked.values()}
            if len(rows) > 1:
                raise InvalidArgument(f"columnar inputs must all have the same length, got {sorted(rows)}")
            return pd.DataFrame(checked, columns=self._names)
        return checked

    def _mismatch(self, inputs: Mapping[str, Any]) -> InvalidArgument:
        missing = [n for n in self._names if n not in inputs]
        extra = [n for n in inputs if n not in self._checks]
        parts = []
        if missing:
            parts.append(f"missing inputs {missing}")
        if extra:
            parts.append(f"unexpected inputs {extra}")
        return InvalidArgument("; ".join(parts) + f"; the model expects {self._names}")
