"""The ``onnx`` flavor: ONNX models served by onnxruntime on CPU (protobuf, no code; safe).

An ONNX file declares its inputs and outputs, so the signature is read from the model instead of a sample.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from mlpilot.blobs import VerifiedBlob
from mlpilot.errors import InferenceError, InvalidArgument, LoadError, MissingExtra, SignatureError
from mlpilot.flavors.base import FlavorTags, Serialized, reason, require_verified
from mlpilot.protocol.signature import DATATYPES, Signature, TensorSpec

#: ONNX element type (as onnxruntime spells it) -> Open Inference Protocol datatype.
ONNX_DATATYPES: dict[str, str] = {
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(float16)": "FP16",
    "tensor(bool)": "BOOL",
    "tensor(string)": "BYTES",
    **{f"tensor(int{b})": f"INT{b}" for b in (8, 16, 32, 64)},
    **{f"tensor(uint{b})": f"UINT{b}" for b in (8, 16, 32, 64)},
}
# What a classifier converted with ZipMap returns: one {label: probability} dict per row.
_ZIPMAP = re.compile(r"^seq\(map\((\w+),\s*(tensor\(\w+\))\)\)$")


def _module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise MissingExtra("ONNX models", "onnx") from exc


def _datatype(onnx_type: str, what: str) -> str:
    zipmap = _ZIPMAP.match(onnx_type)
    datatype = ONNX_DATATYPES.get(zipmap.group(2) if zipmap else onnx_type)
    if datatype is None:
        raise LoadError(f"its {what} has type {onnx_type}, which mlpilot cannot serve")
    return datatype


def _spec(arg: Any, what: str) -> TensorSpec:
    """The TensorSpec of an onnxruntime NodeArg; symbolic or unknown dimensions become -1."""
    datatype = _datatype(arg.type, f"{what} {arg.name!r}")
    if _ZIPMAP.match(arg.type):
        return TensorSpec(arg.name, datatype, (-1, -1))  # served as a 2-D [rows, labels] array
    shape = tuple(d if isinstance(d, int) and d > 0 else -1 for d in (arg.shape or ()))
    return TensorSpec(arg.name, datatype, shape)


def _cast(values: Any, spec: TensorSpec) -> np.ndarray:
    arr = np.asarray(values)
    if spec.datatype == "BYTES":  # onnxruntime wants str objects for tensor(string)
        flat = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in arr.ravel()]
        return np.array(flat, dtype=object).reshape(arr.shape)
    return arr.astype(DATATYPES[spec.datatype], copy=False)


class OnnxModel:
    """An onnxruntime session with inputs fed by name and outputs named as the model names them."""

    def __init__(self, session: Any) -> None:
        self.session = session
        inputs = tuple(_spec(arg, "input") for arg in session.get_inputs())
        outputs = tuple(_spec(arg, "output") for arg in session.get_outputs())
        # One [n, 1] input per column is how converters (skl2onnx) represent tables.
        columnar = len(inputs) > 1 and all(s.shape in ((-1,), (-1, 1)) for s in inputs)
        self._signature = Signature(inputs=inputs, outputs=outputs, columnar=columnar)

    def native_signature(self) -> Signature:
        """Inputs and outputs as the ONNX graph declares them."""
        return self._signature

    def predict(self, inputs: Any) -> dict[str, np.ndarray]:
        """Run the session; ZipMap outputs become float arrays with one column per label, in sorted order."""
        try:
            feeds = self._feeds(inputs)
            results = self.session.run(None, feeds)
        except InferenceError:
            raise
        except Exception as exc:
            raise InferenceError(f"the onnx model failed to predict: {reason(exc)}") from exc
        outputs = self._signature.outputs
        return {spec.name: self._output(value, spec) for spec, value in zip(outputs, results, strict=True)}

    def _feeds(self, inputs: Any) -> dict[str, np.ndarray]:
        specs = self._signature.inputs
        names = [s.name for s in specs]
        if isinstance(inputs, Mapping):
            missing = [n for n in names if n not in inputs]
            if missing:
                raise InferenceError(f"the onnx model needs inputs {names}; missing {missing}")
            return {s.name: _cast(inputs[s.name], s) for s in specs}
        if hasattr(inputs, "columns") and hasattr(inputs, "dtypes"):
            columns = {str(c) for c in inputs.columns}
            if all(n in columns for n in names):
                return {s.name: _cast(_column(inputs[s.name], s), s) for s in specs}
            if len(specs) == 1:
                return {specs[0].name: _cast(inputs.to_numpy(), specs[0])}
            raise InferenceError(f"the onnx model needs columns {names}; the table has {sorted(columns)}")
        if len(specs) != 1:
            raise InferenceError(f"the onnx model has inputs {names}: send a table or a mapping by input name")
        return {specs[0].name: _cast(inputs, specs[0])}

    @staticmethod
    def _output(value: Any, spec: TensorSpec) -> np.ndarray:
        if isinstance(value, list) and (not value or isinstance(value[0], dict)):
            dtype = DATATYPES[spec.datatype]
            if not value:
                return np.empty((0, 0), dtype=dtype)
            labels = sorted(value[0])
            return np.array([[row[k] for k in labels] for row in value], dtype=dtype)
        return np.asarray(value)


def _column(series: Any, spec: TensorSpec) -> np.ndarray:
    values = np.asarray(series.to_numpy())
    return values.reshape(-1, 1) if len(spec.shape) >= 2 else values


class OnnxFlavor:
    """ONNX models; needs no sample because the file declares its signature."""

    name = "onnx"
    file_hint = "expected an ONNX model (a ModelProto protobuf with a graph)"

    def tags(self, metadata: Mapping[str, Any]) -> FlavorTags:
        """Safe, and the signature comes from the model itself."""
        return FlavorTags(unsafe=False, needs_sample=False, extra="onnx")

    def matches_object(self, obj: Any) -> bool:
        """True for an ``onnx.ModelProto``."""
        if not any(c.__module__.split(".")[0] == "onnx" for c in type(obj).__mro__):
            return False
        return isinstance(obj, _module("onnx").ModelProto)

    def serialize(self, obj: Any) -> Serialized:
        """The ModelProto's protobuf bytes (``model.onnx``)."""
        try:
            data = obj.SerializeToString()
        except Exception as exc:  # protobuf refuses messages over 2 GB
            raise InvalidArgument(f"cannot serialise the ONNX model: {reason(exc)}") from exc
        return Serialized(data=data, filename="model.onnx", metadata={"format": "onnx"})

    def sniff(self, path: Path) -> dict[str, Any] | None:
        """``format`` onnx when the file parses as a ModelProto with a graph (parsing runs no code).

        Raises ``LoadError`` for a model whose weights live in external files, which one blob cannot hold.
        """
        path = Path(path)
        if path.suffix.lower() != ".onnx" and importlib.util.find_spec("onnx") is None:
            return None  # without the extra, only claim (and complain about) files named .onnx
        onnx = _module("onnx")
        try:
            model = onnx.load_model(str(path), load_external_data=False)
        except Exception:
            return None
        # protobuf decodes many arbitrary byte strings; demand what every real model has
        if model.ir_version <= 0 or not model.graph.node or not model.graph.output:
            return None
        if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
            raise LoadError(
                f"ONNX model {path} keeps weights in external files; save it as one file "
                "(onnx.save_model(model, path, save_as_external_data=False))"
            )
        return {"format": "onnx", "ir_version": int(model.ir_version)}

    def load(self, blob: VerifiedBlob, metadata: Mapping[str, Any]) -> OnnxModel:
        """An onnxruntime CPU session over the verified blob."""
        require_verified(blob, "onnx")
        ort = _module("onnxruntime")
        try:
            session = ort.InferenceSession(str(blob.path), providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise LoadError(f"cannot load onnx model file {blob.path}: {reason(exc)}") from exc
        try:
            return OnnxModel(session)
        except (LoadError, SignatureError) as exc:
            raise LoadError(f"cannot serve onnx model file {blob.path}: {exc.message}") from exc
