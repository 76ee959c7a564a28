"""The ``pyfunc`` flavor: any Python object with a ``predict`` method (both formats run code; unsafe).

Formats: ``cloudpickle`` (an in-memory object, or a pickle file that needs cloudpickle) and ``python`` (a ``.py``
file defining a class with ``predict``, instantiated with no arguments).
"""

from __future__ import annotations

import ast
import importlib.util
import itertools
import pickle
import sys
from collections.abc import Mapping
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from mlpilot.blobs import VerifiedBlob
from mlpilot.errors import InferenceError, InvalidArgument, LoadError, MissingExtra
from mlpilot.flavors.base import FlavorTags, Serialized, reason, require_verified
from mlpilot.protocol.signature import Signature

_module_ids = itertools.count()


def _cloudpickle() -> ModuleType:
    try:
        import cloudpickle
    except ImportError as exc:
        raise MissingExtra("pyfunc models", "pyfunc") from exc
    return cloudpickle


def predict_classes(tree: ast.Module) -> list[str]:
    """Names of the module-level classes that define ``predict``."""
    return [
        node.name
        for node in tree.body
        if isinstance(node, ast.ClassDef)
        and any(
            isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name == "predict" for item in node.body
        )
    ]


class PyfuncModel:
    """A loaded object whose ``predict`` is called as is."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj
        self._has_proba = callable(getattr(obj, "predict_proba", None))

    def predict(self, inputs: Any) -> dict[str, np.ndarray]:
        """The object's ``predict`` (a mapping it returns is kept as named outputs) and any ``predict_proba``."""
        try:
            result = self.obj.predict(inputs)
            if isinstance(result, Mapping):
                return {str(k): np.asarray(v) for k, v in result.items()}
            out = {"predict": np.asarray(result)}
            if self._has_proba:
                out["predict_proba"] = np.asarray(self.obj.predict_proba(inputs), dtype=np.float64)
        except Exception as exc:
            raise InferenceError(f"the pyfunc model failed to predict: {reason(exc)}") from exc
        return out

    def native_signature(self) -> Signature | None:
        """``None``: Python objects do not declare inputs; the signature comes from a sample."""
        return None


class PyfuncFlavor:
    """Plain Python models: cloudpickled objects or ``.py`` files with a class that defines ``predict``."""

    name = "pyfunc"
    file_hint = "expected a .py file defining one class with a predict method, or a (cloud)pickle file"

    def tags(self, metadata: Mapping[str, Any]) -> FlavorTags:
        """Always unsafe: unpickling and importing both execute code."""
        return FlavorTags(unsafe=True, needs_sample=True, extra="pyfunc")

    def matches_object(self, obj: Any) -> bool:
        """True for any instance with a callable ``predict`` (the catch-all flavor)."""
        return not isinstance(obj, type) and callable(getattr(obj, "predict", None))

    def serialize(self, obj: Any) -> Serialized:
        """cloudpickle bytes (``model.pkl``), which also carry classes defined in ``__main__`` or a notebook."""
        cloudpickle = _cloudpickle()
        try:
            data = cloudpickle.dumps(obj)
        except Exception as exc:
            raise InvalidArgument(f"cannot pickle the {type(obj).__name__}: {reason(exc)}") from exc
        return Serialized(data=data, filename="model.pkl", metadata={"format": "cloudpickle"})

    def sniff(self, path: Path) -> dict[str, Any] | None:
        """``python`` (+ ``class_name``) for a ``.py`` file, read with ``ast`` only; ``cloudpickle`` for a pickle.

        Raises ``LoadError`` for a ``.py`` file that does not parse or has no single class with ``predict``.
        """
        path = Path(path)
        if path.suffix == ".py":
            return {"format": "python", "class_name": self._sniff_source(path)}
        with open(path, "rb") as f:
            head = f.read(2)
        if len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5:  # pickle protocol 2-5
            return {"format": "cloudpickle"}
        return None

    @staticmethod
    def _sniff_source(path: Path) -> str:
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError) as exc:
            raise LoadError(f"pyfunc model file {path} is not valid Python: {reason(exc)}") from exc
        classes = predict_classes(tree)
        if len(classes) != 1:
            found = f"several ({', '.join(classes)})" if classes else "none"
            raise LoadError(f"pyfunc model file {path} needs exactly one class with a predict method; found {found}")
        return classes[0]

    def load(self, blob: VerifiedBlob, metadata: Mapping[str, Any]) -> PyfuncModel:
        """Unpickle, or import the source and instantiate its class; the result must have ``predict``."""
        require_verified(blob, "pyfunc")
        fmt = metadata.get("format", "cloudpickle")
        if fmt == "cloudpickle":
            _cloudpickle()  # pickles of by-value classes refer to cloudpickle's helpers
            try:
                with open(blob.path, "rb") as f:
                    obj = pickle.load(f)
            except Exception as exc:
                raise LoadError(f"cannot load pyfunc (cloudpickle) model file {blob.path}: {reason(exc)}") from exc
        elif fmt == "python":
            obj = self._load_source(blob, metadata.get("class_name"))
        else:
            raise LoadError(f"pyfunc model file {blob.path}: unknown format {fmt!r}; expected cloudpickle or python")
        if not callable(getattr(obj, "predict", None)):
            raise LoadError(f"pyfunc model file {blob.path} holds a {type(obj).__name__}, which has no predict method")
        return PyfuncModel(obj)

    @staticmethod
    def _load_source(blob: VerifiedBlob, class_name: Any) -> Any:
        where = f"pyfunc (python) model file {blob.path}"
        try:
            source = blob.path.read_bytes()
            tree = ast.parse(source, filename=str(blob.path))
        except (SyntaxError, ValueError) as exc:
            raise LoadError(f"cannot load {where}: {reason(exc)}") from exc
        if not class_name:
            candidates = predict_classes(tree)
            if len(candidates) != 1:
                raise LoadError(f"{where}: name the class to use (class_name); candidates: {candidates}")
            class_name = candidates[0]
        # A unique name per load: two versions of one file must not share (or replace) each other's module.
        name = f"mlpilot_pyfunc_{blob.digest.partition(':')[2][:16]}_{next(_module_ids)}"
        module = importlib.util.module_from_spec(ModuleSpec(name, None, origin=str(blob.path)))
        module.__file__ = str(blob.path)
        sys.modules[name] = module  # dataclasses, typing and pickle look classes' modules up here
        try:
            return _instantiate(module, tree, str(class_name), where)
        except LoadError:
            sys.modules.pop(name, None)  # a failed load leaves no half-run module behind
            raise


def _instantiate(module: ModuleType, tree: ast.Module, class_name: str, where: str) -> Any:
    """Run the module's code, then call its class ``class_name`` with no arguments."""
    try:
        exec(compile(tree, str(module.__file__), "exec"), module.__dict__)
    except Exception as exc:
        raise LoadError(f"cannot load {where}: running it raised {reason(exc)}") from exc
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise LoadError(f"{where} defines no class {class_name!r}")
    try:
        return cls()
    except Exception as exc:
        raise LoadError(f"cannot load {where}: {class_name}() raised {reason(exc)}") from exc
