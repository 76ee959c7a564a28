"""The model-flavor contract: how a kind of model file is recognised, serialised, loaded and called.

A flavor is stateless; a loaded model is a :class:`LoadedModel`. The registry uses flavors at registration
(validate the file by loading it from the store, infer the signature from a sample); the data plane's runtimes
use them to serve. Failures raise :class:`~mlpilot.errors.LoadError` / :class:`~mlpilot.errors.InferenceError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mlpilot.blobs import VerifiedBlob
from mlpilot.protocol.signature import Signature


def reason(exc: BaseException) -> str:
    """One line naming an exception and the first line of its message (for error messages to users)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__


def require_verified(blob: object, flavor: str) -> None:
    """Refuse anything but a :class:`VerifiedBlob`: models load only from the registry's digest-checked store."""
    if not isinstance(blob, VerifiedBlob):
        raise TypeError(
            f"{flavor} models load from a VerifiedBlob (BlobStore.open_verified), not {type(blob).__name__}"
        )


@dataclass(frozen=True)
class Serialized:
    """An in-memory model turned into bytes by a flavor, plus what the flavor needs to load it again."""

    data: bytes
    filename: str
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FlavorTags:
    """Capabilities of a flavor (scikit-learn-style tags, not if-chains)."""

    unsafe: bool = False  # loading executes arbitrary code (pickle, Python source)
    needs_sample: bool = True  # the signature cannot be read from the file itself
    extra: str = ""  # the pip extra that provides its library


class LoadedModel(Protocol):
    def predict(self, inputs: Any) -> dict[str, np.ndarray]:
        """Named output batches for an input batch (ndarray, or DataFrame for columnar signatures)."""
        ...

    def native_signature(self) -> Signature | None:
        """The signature the file itself declares (ONNX), or ``None`` when it must be inferred from a sample."""
        ...


class Flavor(Protocol):
    name: str

    def tags(self, metadata: Mapping[str, Any]) -> FlavorTags:
        """Tags of this flavor for a version with this metadata (e.g. sklearn/skops is safe, joblib is not)."""
        ...

    def matches_object(self, obj: Any) -> bool:
        """True if this flavor can serialise the in-memory object."""
        ...

    def serialize(self, obj: Any) -> Serialized: ...

    def sniff(self, path: Path) -> dict[str, Any] | None:
        """Metadata (at least ``format``) if the file looks like this flavor's, else ``None``. Never loads code."""
        ...

    def load(self, blob: VerifiedBlob, metadata: Mapping[str, Any]) -> LoadedModel:
        """Load from a verified blob of the registry's own store. Raises ``LoadError``."""
        ...
