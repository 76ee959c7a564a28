"""The ``xgboost`` flavor: XGBoost models in XGBoost's own JSON or UBJSON format (no pickle; safe).

A file saved from the scikit-learn API (``XGBClassifier.save_model``) is restored as that wrapper, so labels and
probabilities match the original; anything else is served as a raw ``Booster``.
"""

from __future__ import annotations

import json
import re
import struct
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from mlpilot.blobs import VerifiedBlob
from mlpilot.errors import InferenceError, InvalidArgument, LoadError, MissingExtra
from mlpilot.flavors.base import FlavorTags, Serialized, require_verified
from mlpilot.protocol.signature import Signature

_SKLEARN_CLASSES = ("XGBClassifier", "XGBRegressor", "XGBRFClassifier", "XGBRFRegressor", "XGBRanker")
_BY_ESTIMATOR_TYPE = {"classifier": "XGBClassifier", "regressor": "XGBRegressor"}
_HEAD = 4096
_LOG_PREFIX = re.compile(r"^\[[\d:]+\] \S+:\d+: ")


def _xgb() -> ModuleType:
    try:
        import xgboost
    except ImportError as exc:
        raise MissingExtra("XGBoost models", "xgboost") from exc
    return xgboost


def _reason(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    # libxgboost prefixes messages with "[12:34:56] /path/to/source.cc:409: ", which tells users nothing.
    return f"{type(exc).__name__}: {_LOG_PREFIX.sub('', lines[0])[:200]}" if lines else type(exc).__name__


def _format_of(head: bytes) -> str | None:
    """``json`` or ``ubj`` when ``head`` (the file's first bytes) looks like an XGBoost model, else ``None``."""
    stripped = head.lstrip()
    if not stripped.startswith(b"{") or b"learner" not in head:
        return None
    return "json" if stripped[1:].lstrip()[:1] == b'"' else "ubj"


# UBJSON markers: fixed payload sizes, and the integer types that may carry a length.
_PAYLOAD = {"Z": 0, "N": 0, "T": 0, "F": 0, "i": 1, "U": 1, "C": 1, "I": 2, "l": 4, "L": 8, "d": 4, "D": 8}
_SIZES = {ord(marker): size for marker, size in _PAYLOAD.items()}
_INTS = {ord("i"): ">b", ord("U"): ">B", ord("I"): ">h", ord("l"): ">i", ord("L"): ">q"}
_MAX_DEPTH = 64


class _UbjChecker:
    """Walks a UBJSON document without building it, to prove every length stays inside the buffer.

    libxgboost's UBJSON reader trusts the lengths it reads and crashes the process on a truncated file, so a
    file must pass this check before it reaches the library.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def check(self) -> None:
        if self._marker() != ord("{"):
            raise ValueError("it does not start with an object")
        self._container(is_object=True, depth=1)
        if self.pos != len(self.data):
            raise ValueError(f"it has {len(self.data) - self.pos} stray bytes after the model")

    def _take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError(f"it ends early, at byte {len(self.data)} (truncated?)")
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def _marker(self) -> int:
        return self._take(1)[0]

    def _length(self, marker: int | None = None) -> int:
        fmt = _INTS.get(self._marker() if marker is None else marker)
        if fmt is None:
            raise ValueError(f"byte {self.pos - 1} should start a length")
        (n,) = struct.unpack(fmt, self._take(struct.calcsize(fmt)))
        if n < 0:
            raise ValueError(f"negative length at byte {self.pos}")
        return int(n)

    def _peek(self, char: bytes) -> bool:
        if self.data[self.pos : self.pos + 1] == char:
            self.pos += 1
            return True
        return False

    def _value(self, marker: int, depth: int) -> None:
        if marker in _SIZES:
            self._take(_SIZES[marker])
        elif marker in (ord("S"), ord("H")):
            self._take(self._length())
        elif marker in (ord("["), ord("{")):
            if depth >= _MAX_DEPTH:
                raise ValueError("it nests too deeply")
            self._container(marker == ord("{"), depth + 1)
        else:
            raise ValueError(f"unknown UBJSON marker {chr(marker)!r} at byte {self.pos - 1}")

    def _container(self, is_object: bool, depth: int) -> None:
        typ = self._marker() if self._peek(b"$") else None
        if typ is not None and self.data[self.pos : self.pos + 1] != b"#":
            raise ValueError(f"a typed container lacks its count at byte {self.pos}")
        count = self._length() if self._peek(b"#") else None
        if count is None:
            close = ord("}") if is_object else ord("]")
            while (marker := self._marker()) != close:
                if marker == ord("N"):
                    continue
                if is_object:  # the marker just read starts the key's length
                    self._take(self._length(marker))
                    marker = self._marker()
                self._value(marker, depth)
        elif typ in _SIZES and not is_object:  # packed numeric array: skip it in one step
            self._take(count * _SIZES[typ])
        else:
            for _ in range(count):
                if is_object:
                    self._take(self._length())
                self._value(typ if typ is not None else self._marker(), depth)


def _check_bytes(data: bytes, fmt: str) -> None:
    """Raise ``ValueError`` unless ``data`` is structurally a model of format ``fmt`` (see :class:`_UbjChecker`)."""
    if _format_of(data[:_HEAD]) != fmt:
        raise ValueError(f"its content is not an XGBoost {fmt} model")
    if fmt == "ubj":
        _UbjChecker(data).check()


class XGBoostModel:
    """A loaded XGBoost model: a scikit-learn wrapper, or a raw ``Booster`` fed through ``DMatrix``."""

    def __init__(self, model: Any, objective: str | None = None) -> None:
        self.model = model
        self._objective = objective  # the training objective of a raw Booster; None for a wrapper

    def predict(self, inputs: Any) -> dict[str, np.ndarray]:
        """``predict`` and, for classifiers, ``predict_proba`` (float64 [n, n_classes])."""
        x = inputs if hasattr(inputs, "columns") and hasattr(inputs, "dtypes") else np.asarray(inputs)
        try:
            if self._objective is not None:
                return self._booster_outputs(np.asarray(self.model.predict(_xgb().DMatrix(x))))
            out = {"predict": np.asarray(self.model.predict(x))}
            if callable(getattr(self.model, "predict_proba", None)):
                out["predict_proba"] = np.asarray(self.model.predict_proba(x), dtype=np.float64)
            return out
        except Exception as exc:
            raise InferenceError(f"the xgboost model failed to predict: {_reason(exc)}") from exc

    def _booster_outputs(self, raw: np.ndarray) -> dict[str, np.ndarray]:
        # A raw Booster returns probabilities for probabilistic objectives; give labels like the wrappers do.
        if self._objective == "multi:softprob":
            proba = raw.astype(np.float64)
            return {"predict": proba.argmax(axis=1), "predict_proba": proba}
        if self._objective == "binary:logistic":
            p = raw.astype(np.float64)
            return {"predict": (p > 0.5).astype(np.int64), "predict_proba": np.column_stack([1 - p, p])}
        if self._objective == "multi:softmax":
            return {"predict": raw.astype(np.int64)}
        return {"predict": raw}

    def native_signature(self) -> Signature | None:
        """``None``: XGBoost files name features at most, without dtypes; the signature comes from a sample."""
        return None


class XGBoostFlavor:
    """XGBoost Boosters and scikit-learn wrappers, stored as UBJSON (or JSON when registered from a file)."""

    name = "xgboost"
    file_hint = "expected an XGBoost model saved with save_model as .json or .ubj"

    def tags(self, metadata: Mapping[str, Any]) -> FlavorTags:
        """Safe: XGBoost's formats are data only."""
        return FlavorTags(unsafe=False, needs_sample=True, extra="xgboost")

    def matches_object(self, obj: Any) -> bool:
        """True for ``xgboost.Booster`` and the XGBoost scikit-learn wrappers."""
        if isinstance(obj, type) or not any(c.__module__.split(".")[0] == "xgboost" for c in type(obj).__mro__):
            return False
        xgb = _xgb()
        return isinstance(obj, (xgb.Booster, xgb.XGBModel))

    def serialize(self, obj: Any) -> Serialized:
        """UBJSON bytes (``model.ubj``); wrappers keep the attributes that restore them on load."""
        metadata = {"format": "ubj", "xgb_class": type(obj).__name__}
        try:
            if isinstance(obj, _xgb().Booster):
                data = bytes(obj.save_raw(raw_format="ubj"))
            else:  # only save_model writes the wrapper's attributes, and it only writes to a path
                with tempfile.TemporaryDirectory(prefix="mlpilot-xgb-") as tmp:
                    target = Path(tmp) / "model.ubj"
                    obj.save_model(target)
                    data = target.read_bytes()
        except Exception as exc:
            raise InvalidArgument(f"cannot save the {type(obj).__name__} (is it fitted?): {_reason(exc)}") from exc
        return Serialized(data=data, filename="model.ubj", metadata=metadata)

    def sniff(self, path: Path) -> dict[str, Any] | None:
        """``format`` json/ubj when the file's first bytes look like an XGBoost model (nothing is parsed)."""
        with open(path, "rb") as f:
            fmt = _format_of(f.read(_HEAD))
        return None if fmt is None else {"format": fmt}

    def load(self, blob: VerifiedBlob, metadata: Mapping[str, Any]) -> XGBoostModel:
        """Restore the scikit-learn wrapper named in the metadata or in the file's attributes, else a Booster."""
        require_verified(blob, "xgboost")
        xgb = _xgb()
        data = blob.path.read_bytes()
        fmt = str(metadata.get("format") or _format_of(data[:_HEAD]) or "ubj")
        try:
            _check_bytes(data, fmt)
            # From memory, not the path: libxgboost guesses the format from the name, and blobs have none.
            booster = xgb.Booster()
            booster.load_model(bytearray(data))
            cls_name = str(metadata.get("xgb_class") or _wrapper_class(booster))
            if cls_name in _SKLEARN_CLASSES:
                model = getattr(xgb, cls_name)()
                model.load_model(bytearray(data))
                return XGBoostModel(model)
            objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
        except Exception as exc:
            raise LoadError(f"cannot load xgboost ({fmt}) model file {blob.path}: {_reason(exc)}") from exc
        return XGBoostModel(booster, objective=str(objective))


def _wrapper_class(booster: Any) -> str:
    """The wrapper class save_model recorded in the ``scikit_learn`` attribute, or ``Booster``."""
    attr = booster.attributes().get("scikit_learn")
    if not attr:
        return "Booster"
    estimator_type = json.loads(attr).get("_estimator_type", "")
    return _BY_ESTIMATOR_TYPE.get(str(estimator_type), "Booster")
