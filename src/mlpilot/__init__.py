"""mlpilot — the autopilot for production ML and LLM systems.

Public API::

    import mlpilot
    with mlpilot.Client(home=".mlpilot") as client:       # or Client(url="http://host:8000")
        v = client.register_model("iris", model, sample=X)
        client.deploy("iris", f"iris:{v.version}")

Importing mlpilot starts no threads and configures no logging.
"""

from __future__ import annotations

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

__version__ = "0.1.0"

from mlpilot.clock import Clock, SystemClock, VirtualClock
from mlpilot.errors import (
    Conflict,
    ErrorKind,
    FailedPrecondition,
    InferenceError,
    IntegrityError,
    InvalidArgument,
    LoadError,
    MissingExtra,
    MlpilotError,
    NotFound,
    PermissionDenied,
    SignatureError,
    Unauthenticated,
    Unavailable,
    UnknownFlavor,
)
from mlpilot.protocol.signature import Signature, TensorSpec
from mlpilot.records import (
    Alias,
    Artifact,
    ArtifactKind,
    ArtifactVersion,
    BatchingOptions,
    Deployment,
    DeploymentSpec,
    Event,
    RuntimeOptions,
    VariantSpec,
)
from mlpilot.settings import Settings

if _TYPE_CHECKING:
    from mlpilot.client import Client


def __getattr__(name: str) -> _Any:
    # The SDK pulls in httpx, pandas and the flavors; load it on first use so `import mlpilot` stays light.
    if name == "Client":
        from mlpilot.client import Client

        return Client
    raise AttributeError(f"module 'mlpilot' has no attribute {name!r}")


__all__ = [
    "Alias",
    "Artifact",
    "ArtifactKind",
    "ArtifactVersion",
    "BatchingOptions",
    "Client",
    "Clock",
    "Conflict",
    "Deployment",
    "DeploymentSpec",
    "ErrorKind",
    "Event",
    "FailedPrecondition",
    "InferenceError",
    "IntegrityError",
    "InvalidArgument",
    "LoadError",
    "MissingExtra",
    "MlpilotError",
    "NotFound",
    "PermissionDenied",
    "RuntimeOptions",
    "Settings",
    "Signature",
    "SignatureError",
    "SystemClock",
    "TensorSpec",
    "Unauthenticated",
    "Unavailable",
    "UnknownFlavor",
    "VariantSpec",
    "VirtualClock",
    "__version__",
]
