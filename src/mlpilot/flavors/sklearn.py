"""The ``sklearn`` flavor: scikit-learn estimators and pipelines (and other objects with the estimator API).

Formats: ``joblib`` and ``pickle`` (both read with ``joblib.load``, which also reads plain pickles; unsafe) and
``skops`` (a zip archive loaded without running code; safe).
"""

from __future__ import annotations

import io
import pickletools
import zipfile
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from mlpilot.blobs import VerifiedBlob
from mlpilot.errors import InferenceError, LoadError, MissingExtra
from mlpilot.flavors.base import FlavorTags, Serialized, reason, require_verified
from mlpilot.protocol.signature import Signature

_PICKLE_FORMATS = ("joblib", "pickle")
_PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")
# What joblib.dump(compress=...) writes first: zlib, gzip, bz2, lzma, xz, lz4, and joblib's legacy "ZF".
_COMPRESSED_MAGICS = (b"x", b"\x1f\x8b", b"BZh", b"]\x00\x00", b"\xfd7zXZ", b'\x04"M\x18', b"ZF")
_PEEK_OPS = 64  # a by-value cloudpickle class shows up in the first few opcodes


def _joblib() -> ModuleType:
    try:
        import joblib
    except ImportError as exc:
        raise MissingExtra("scikit-learn models", "sklearn") from exc
    return joblib


def _skops_io() -> ModuleType:
    try:
        import skops.io
    except ImportError as exc:
        raise MissingExtra("scikit-learn models in skops format", "sklearn") from exc
    return skops.io


def _is_pickle(head: bytes) -> bool:
    """True when ``head`` starts like a pickle of protocol 2 to 5 (the PROTO opcode)."""
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _needs_cloudpickle(path: Path) -> bool:
    """True when the pickle's first opcodes name cloudpickle (an object pickled by value), without unpickling."""
    with open(path, "rb") as f:
        try:
            for i, (_op, arg, _pos) in enumerate(pickletools.genops(f)):
                if i >= _PEEK_OPS:
                    break
                if isinstance(arg, str) and arg.startswith("cloudpickle"):
                    return True
        except (ValueError, EOFError):  # truncated or not a pickle after all: load() reports it
            pass
    return False


def _predict_is_argmax_of_proba(estimator: Any) -> bool:
    """True for estimators whose ``predict`` is, by definition, ``classes_[argmax(predict_proba)]``.

    Only single-output trees and forests qualify (scikit-learn implements their predict exactly that way); for
    anything else predict and predict_proba are called separately, as the user would.
    """
    try:
        from sklearn.ensemble._forest import ForestClassifier
        from sklearn.tree import DecisionTreeClassifier
    except ImportError:  # a future scikit-learn moved them: fall back to the two calls
        return False

    final = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    return (
        isinstance(final, (ForestClassifier, DecisionTreeClassifier))
        and getattr(final, "n_outputs_", 1) == 1
        and hasattr(estimator, "classes_")
    )


class EstimatorModel:
    """A loaded object with the scikit-learn estimator API (``predict``, optionally ``predict_proba``)."""

    def __init__(self, estimator: Any, flavor: str = "sklearn") -> None:
        self.estimator = estimator
        self._flavor = flavor
        # Pipelines and SVC expose predict_proba conditionally, and hasattr honours that.
        self._has_proba = callable(getattr(estimator, "predict_proba", None))
        self._labels_from_proba = self._has_proba and _predict_is_argmax_of_proba(estimator)

    def predict(self, inputs: Any) -> dict[str, np.ndarray]:
        """``predict`` (labels or values) and, for probabilistic classifiers, ``predict_proba`` (float64)."""
        # DataFrames pass through unchanged so estimators fitted on named features keep working.
        x = inputs if hasattr(inputs, "columns") and hasattr(inputs, "dtypes") else np.asarray(inputs)
        try:
            if self._labels_from_proba:
                # These estimators define predict as the argmax of predict_proba: compute the forest once.
                proba = np.asarray(self.estimator.predict_proba(x), dtype=np.float64)
                out = {
                    "predict": np.asarray(self.estimator.classes_).take(np.argmax(proba, axis=1)),
                    "predict_proba": proba,
                }
            else:
                out = {"predict": np.asarray(self.estimator.predict(x))}
                if self._has_proba:
                    out["predict_proba"] = np.asarray(self.estimator.predict_proba(x), dtype=np.float64)
        except Exception as exc:
            raise InferenceError(f"the {self._flavor} model failed to predict: {reason(exc)}") from exc
        return out

    def native_signature(self) -> Signature | None:
        """``None``: pickled estimators do not declare their inputs; the signature comes from a sample."""
        return None


class SklearnFlavor:
    """scikit-learn estimators and pipelines as joblib/pickle (unsafe) or skops (safe) files."""

    name = "sklearn"
    file_hint = "expected a joblib/pickle file or a skops archive"

    def tags(self, metadata: Mapping[str, Any]) -> FlavorTags:
        """Unsafe unless the file is skops, which loads without executing code."""
        return FlavorTags(unsafe=metadata.get("format") != "skops", needs_sample=True, extra="sklearn")

    def matches_object(self, obj: Any) -> bool:
        """True for instances of scikit-learn estimator classes (or subclasses) that can predict."""
        if isinstance(obj, type) or not callable(getattr(obj, "predict", None)):
            return False
        return any(cls.__module__.split(".")[0] == "sklearn" for cls in type(obj).__mro__)

    def serialize(self, obj: Any) -> Serialized:
        """The estimator as joblib bytes (``model.joblib``)."""
        buf = io.BytesIO()
        _joblib().dump(obj, buf)
        return Serialized(data=buf.getvalue(), filename="model.joblib", metadata={"format": "joblib"})

    def sniff(self, path: Path) -> dict[str, Any] | None:
        """``format`` joblib/pickle/skops from the file's first bytes and name; never unpickles.

        For skops, also records ``skops_trusted``: the types the archive uses that skops does not trust by
        default, which the registering user vouches for. Pickles written by cloudpickle are left to pyfunc.
        """
        path = Path(path)
        with open(path, "rb") as f:
            head = f.read(8)
        if head.startswith(b"PK") and zipfile.is_zipfile(path):
            return self._sniff_skops(path)
        suffix = path.suffix.lower()
        if _is_pickle(head):
            if _needs_cloudpickle(path):
                return None
            return {"format": "joblib" if suffix == ".joblib" else "pickle"}
        if suffix in _PICKLE_SUFFIXES and head.startswith(_COMPRESSED_MAGICS):
            return {"format": "joblib"}
        return None

    def _sniff_skops(self, path: Path) -> dict[str, Any] | None:
        try:
            with zipfile.ZipFile(path) as zf:
                if "schema.json" not in zf.namelist():
                    return None
        except (zipfile.BadZipFile, OSError):
            return None
        skops_io = _skops_io()
        try:
            untrusted = skops_io.get_untrusted_types(file=path)
        except Exception as exc:
            raise LoadError(f"skops file {path} has an unreadable schema: {reason(exc)}") from exc
        return {"format": "skops", "skops_trusted": [str(t) for t in untrusted]}

    def load(self, blob: VerifiedBlob, metadata: Mapping[str, Any]) -> EstimatorModel:
        """Load from a verified blob; the loaded object must have a ``predict`` method."""
        require_verified(blob, "sklearn")
        fmt = metadata.get("format", "joblib")
        if fmt in _PICKLE_FORMATS:
            loader = _joblib().load
            args: dict[str, Any] = {}
        elif fmt == "skops":
            loader = _skops_io().load
            args = {"trusted": [str(t) for t in metadata.get("skops_trusted", [])]}
        else:
            raise LoadError(f"sklearn model file {blob.path}: unknown format {fmt!r}; expected joblib, pickle or skops")
        try:
            estimator = loader(blob.path, **args)
        except Exception as exc:
            raise LoadError(f"cannot load sklearn ({fmt}) model file {blob.path}: {reason(exc)}") from exc
        if not callable(getattr(estimator, "predict", None)):
            raise LoadError(
                f"sklearn model file {blob.path} holds a {type(estimator).__name__}, which has no predict method"
            )
        return EstimatorModel(estimator)
