"""The built-in model flavors and how to pick one: by name, for an in-memory object, or for a file.

Order matters: the XGBoost and LightGBM scikit-learn wrappers are also scikit-learn estimators, and almost
anything is a pyfunc, so the specific flavors are asked first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlpilot.errors import LoadError, UnknownFlavor
from mlpilot.flavors.base import Flavor, FlavorTags, LoadedModel, Serialized, check_trusted, with_trust
from mlpilot.flavors.lightgbm import LightGBMFlavor
from mlpilot.flavors.onnx import OnnxFlavor
from mlpilot.flavors.pyfunc import PyfuncFlavor
from mlpilot.flavors.sklearn import SklearnFlavor
from mlpilot.flavors.xgboost import XGBoostFlavor

BUILTIN_FLAVORS: tuple[Flavor, ...] = (
    XGBoostFlavor(),
    LightGBMFlavor(),
    SklearnFlavor(),
    OnnxFlavor(),
    PyfuncFlavor(),
)


def _names() -> str:
    return ", ".join(f.name for f in BUILTIN_FLAVORS)


def get_flavor(name: str) -> Flavor:
    """The built-in flavor called ``name``.

    Raises:
        UnknownFlavor: no flavor has that name; the message lists the valid names.
    """
    for flavor in BUILTIN_FLAVORS:
        if flavor.name == name:
            return flavor
    raise UnknownFlavor(f"unknown model flavor {name!r}; use one of: {_names()}")


def flavor_for_object(obj: Any) -> Flavor:
    """The first flavor that can serialise the in-memory ``obj``.

    Raises:
        UnknownFlavor: no flavor takes it (it has no ``predict`` method).
    """
    for flavor in BUILTIN_FLAVORS:
        if flavor.matches_object(obj):
            return flavor
    raise UnknownFlavor(
        f"no model flavor can register a {type(obj).__module__}.{type(obj).__qualname__}; the flavors are "
        f"{_names()}, and any object with a predict(inputs) method can be registered as pyfunc"
    )


def sniff_file(path: Path | str, flavor: str | None = None) -> tuple[Flavor, dict[str, Any]]:
    """The flavor of a model file and the metadata it needs to load, judged from the file without running it.

    Args:
        path: the model file.
        flavor: the flavor the user says it is; then only that flavor's check runs.

    Raises:
        LoadError: the file is missing or unreadable, or is not a valid file of the given flavor.
        UnknownFlavor: ``flavor`` is not a flavor name, or no flavor recognises the file.
    """
    path = Path(path)
    if not path.is_file():
        raise LoadError(f"model file {path} does not exist or is not a file")
    candidates = BUILTIN_FLAVORS if flavor is None else (get_flavor(flavor),)
    for candidate in candidates:
        try:
            metadata = candidate.sniff(path)
        except OSError as exc:
            raise LoadError(f"cannot read model file {path}: {exc.strerror or exc}") from exc
        if metadata is not None:
            return candidate, metadata
    if flavor is not None:
        hint = getattr(candidates[0], "file_hint", "its content does not match")
        raise LoadError(f"file {path} is not a valid {flavor} model file: {hint}")
    raise UnknownFlavor(f"cannot tell which kind of model {path} is; pass --flavor with one of: {_names()}")


__all__ = [
    "BUILTIN_FLAVORS",
    "Flavor",
    "FlavorTags",
    "LoadedModel",
    "Serialized",
    "check_trusted",
    "flavor_for_object",
    "get_flavor",
    "sniff_file",
    "with_trust",
]
