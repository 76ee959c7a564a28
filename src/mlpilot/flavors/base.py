"""The model-flavor contract: how a kind of model file is recognised, serialised, loaded and called.

A flavor is stateless; a loaded model is a :class:`LoadedModel`. The registry uses flavors at registration
(validate the file by loading it from the store, infer the signature from a sample); the data plane's runtimes
use them to serve. Failures raise :class:`~mlpilot.errors.LoadError` / :class:`~mlpilot.errors.InferenceError`.

Formats that run code when loaded (``FlavorTags.unsafe``: pickle, joblib, cloudpickle, Python source) are loaded by
the serving paths only when the version's metadata records a trust decision (:func:`check_trusted`), which only the
registry writes, when the registering user passed ``trust_pickle`` or the server trusts pickles
(``artifacts.trust_pickle``). A flavor's own ``load`` does not check: callers decide.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from mlpilot.blobs import VerifiedBlob
from mlpilot.errors import FailedPrecondition
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


#: the keys of a version's flavor metadata that record the trust decision of a format that runs code when loaded;
#: only the registry writes them (whatever a client sends in its flavor metadata is dropped).
TRUST_KEYS = ("requires_trust", "trusted_by", "trusted_via")

SAFE_FORMATS_HINT = "skops for scikit-learn, ONNX, XGBoost JSON/UBJSON or LightGBM text"


def without_trust(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """``metadata`` without any trust record (what a client may send)."""
    return {k: v for k, v in metadata.items() if k not in TRUST_KEYS}


def with_trust(metadata: Mapping[str, Any], actor: str, via: str) -> dict[str, Any]:
    """``metadata`` recording that ``actor`` trusted a format that runs code (``via``: ``request`` or ``setting``)."""
    return {**without_trust(metadata), "requires_trust": True, "trusted_by": actor, "trusted_via": via}


def check_trusted(flavor: Flavor, metadata: Mapping[str, Any], what: str) -> None:
    """Refuse to load a format that runs code (pickle, Python source) unless its metadata records a trust decision.

    Raises:
        FailedPrecondition: the format runs code and no one trusted this version; the message says how to fix it.
    """
    if not flavor.tags(metadata).unsafe:
        return
    if metadata.get("requires_trust") is True and metadata.get("trusted_by"):
        return
    fmt = metadata.get("format", "?")
    raise FailedPrecondition(
        f"{what} is a {flavor.name} model in {fmt} format, which runs code when it is loaded, and it was registered "
        "without a trust decision: register it again with --trust-pickle (CLI) or trust_pickle=True (SDK) if you "
        f"trust where it came from, or save the model as {SAFE_FORMATS_HINT}",
        detail={"flavor": flavor.name, "format": fmt, "requires_trust": True},
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
