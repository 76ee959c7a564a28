"""The ``lightgbm`` flavor: LightGBM models in LightGBM's text format (no pickle; safe).

Everything is served through ``lightgbm.Booster``; classifier labels come from the ``classes`` metadata recorded
at serialisation (files registered from disk, which lack it, get class indices as labels).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from mlpilot.blobs import VerifiedBlob
from mlpilot.errors import InferenceError, InvalidArgument, LoadError, MissingExtra
from mlpilot.flavors.base import FlavorTags, Serialized, reason, require_verified
from mlpilot.protocol.signature import Signature

_CLASSIFIER_OBJECTIVES = ("binary", "multiclass", "multiclassova")


def _lgb() -> ModuleType:
    try:
        import lightgbm
    except ImportError as exc:
        raise MissingExtra("LightGBM models", "lightgbm") from exc
    return lightgbm


def _check_model_text(data: bytes) -> tuple[str, str]:
    """The model text and its objective, after checking the file's structure.

    LightGBM parses trees in parallel at the offsets ``tree_sizes`` promises and crashes the process when a
    truncated file breaks that promise, so the layout is verified here first. Raises ``ValueError``.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError("it is not UTF-8 text") from exc
    if text.partition("\n")[0].strip() != "tree":
        raise ValueError("its first line is not 'tree'")
    start = data.find(b"\nTree=") + 1
    if start == 0:
        raise ValueError("it holds no trees")
    fields: dict[str, str] = {}
    for line in data[:start].decode("utf-8").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key] = value
    try:
        sizes = [int(s) for s in fields["tree_sizes"].split()]
    except (KeyError, ValueError) as exc:
        raise ValueError("it lacks a valid tree_sizes line (saved by LightGBM older than 2.1?)") from exc
    pos = start
    for i, size in enumerate(sizes):
        block = data[pos : pos + size]
        if len(block) != size or not block.startswith(b"Tree=") or b"\nleaf_value=" not in block:
            raise ValueError(f"tree {i} of {len(sizes)} is cut short or malformed (truncated file?)")
        pos += size
    if b"end of trees" not in data[pos:]:
        raise ValueError("it lacks the 'end of trees' marker (truncated file?)")
    params_at = data.find(b"\nparameters:", pos)
    if params_at >= 0 and data.find(b"\nend of parameters", params_at) < 0:
        raise ValueError("its parameters section is cut short (truncated file?)")
    return text, fields.get("objective", "").split(" ")[0]


class LightGBMModel:
    """A loaded LightGBM Booster with classifier semantics when its objective is a classification one."""

    def __init__(self, booster: Any, objective: str, classes: list[Any] | None) -> None:
        self.booster = booster
        self.objective = objective
        self._classes = np.asarray(classes) if classes else None

    @property
    def is_classifier(self) -> bool:
        return self.objective in _CLASSIFIER_OBJECTIVES

    def predict(self, inputs: Any) -> dict[str, np.ndarray]:
        """Classifiers: ``predict`` (labels) and ``predict_proba`` (float64); regressors: ``predict``."""
        x = inputs if hasattr(inputs, "columns") and hasattr(inputs, "dtypes") else np.asarray(inputs)
        try:
            raw = np.asarray(self.booster.predict(x))
        except Exception as exc:
            raise InferenceError(f"the lightgbm model failed to predict: {reason(exc)}") from exc
        if not self.is_classifier:
            return {"predict": raw}
        proba = raw.astype(np.float64)
        if proba.ndim == 1:  # binary objectives give P(positive class) only
            proba = np.column_stack([1.0 - proba, proba])
        index = proba.argmax(axis=1)
        labels = self._classes[index] if self._classes is not None else index
        return {"predict": labels, "predict_proba": proba}

    def native_signature(self) -> Signature | None:
        """``None``: the text format names features but not dtypes; the signature comes from a sample."""
        return None


class LightGBMFlavor:
    """LightGBM Boosters and scikit-learn wrappers, stored as model text."""

    name = "lightgbm"
    file_hint = "expected a LightGBM text model (booster.save_model), whose first line is 'tree'"

    def tags(self, metadata: Mapping[str, Any]) -> FlavorTags:
        """Safe: the text format is data only."""
        return FlavorTags(unsafe=False, needs_sample=True, extra="lightgbm")

    def matches_object(self, obj: Any) -> bool:
        """True for ``lightgbm.Booster`` and the LightGBM scikit-learn wrappers."""
        if isinstance(obj, type) or not any(c.__module__.split(".")[0] == "lightgbm" for c in type(obj).__mro__):
            return False
        lgb = _lgb()
        return isinstance(obj, (lgb.Booster, lgb.LGBMModel))

    def serialize(self, obj: Any) -> Serialized:
        """Model text (``model.txt``); classifiers also record ``classes`` so labels survive."""
        lgb = _lgb()
        metadata: dict[str, Any] = {"format": "text", "lgbm_class": type(obj).__name__}
        try:
            booster = obj if isinstance(obj, lgb.Booster) else obj.booster_
            text = booster.model_to_string()
        except Exception as exc:
            raise InvalidArgument(f"cannot save the {type(obj).__name__} (is it fitted?): {reason(exc)}") from exc
        if isinstance(obj, lgb.LGBMClassifier):
            metadata["classes"] = np.asarray(obj.classes_).tolist()  # tolist() turns numpy scalars into Python
        return Serialized(data=text.encode("utf-8"), filename="model.txt", metadata=metadata)

    def sniff(self, path: Path) -> dict[str, Any] | None:
        """``format`` text when the first line is ``tree`` (nothing is parsed)."""
        with open(path, "rb") as f:
            first = f.readline(64)
        return {"format": "text"} if first.rstrip(b"\r\n") == b"tree" else None

    def load(self, blob: VerifiedBlob, metadata: Mapping[str, Any]) -> LightGBMModel:
        """A ``lightgbm.Booster`` built from the verified blob's text."""
        require_verified(blob, "lightgbm")
        lgb = _lgb()
        try:
            text, objective = _check_model_text(blob.path.read_bytes())
            booster = lgb.Booster(model_str=text)
        except Exception as exc:
            raise LoadError(f"cannot load lightgbm model file {blob.path}: {reason(exc)}") from exc
        classes = metadata.get("classes")
        return LightGBMModel(booster, objective, list(classes) if classes else None)
