"""Records of the control plane: what the store returns, the API sends and the SDK parses.

They are separate from table rows (``mlpilot.store.tables``) and from the data plane's ``RoutingSnapshot``.
All are frozen pydantic models, so one definition gives validation, JSON and the OpenAPI schema.
"""

from __future__ import annotations

import enum
import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mlpilot.errors import InvalidArgument

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
ALIAS_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


def check_name(name: str, what: str = "name") -> str:
    """Validate an artifact, deployment or variant name (letters, digits, ``.``, ``_``, ``-``; ≤ 128 chars)."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidArgument(
            f"invalid {what} {name!r}: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def check_alias(alias: str) -> str:
    if not isinstance(alias, str) or not ALIAS_RE.match(alias) or alias.isdigit() or alias == "latest":
        raise InvalidArgument(
            f"invalid alias {alias!r}: use a letter then letters, digits, '_' or '-' (and not 'latest')"
        )
    return alias


class ArtifactKind(str, enum.Enum):
    MODEL = "model"
    PROMPT = "prompt"
    INDEX = "index"
    TOOL = "tool"
    DATASET = "dataset"
    APP = "app"


class Record(BaseModel):
    model_config = ConfigDict(frozen=True)


class ArtifactRef(Record):
    """``NAME:VERSION``, ``NAME@ALIAS`` or ``NAME`` (the latest version)."""

    name: str
    version: int | None = None
    alias: str | None = None

    @classmethod
    def parse(cls, text: str) -> ArtifactRef:
        if not isinstance(text, str) or not text:
            raise InvalidArgument("an artifact reference is NAME, NAME:VERSION or NAME@ALIAS")
        if "@" in text:
            name, alias = text.split("@", 1)
            return cls(name=check_name(name, "artifact name"), alias=check_alias(alias))
        if ":" in text:
            name, ver = text.rsplit(":", 1)
            if not ver.isdigit() or int(ver) < 1:
                raise InvalidArgument(f"invalid version in {text!r}: versions are integers starting at 1")
            return cls(name=check_name(name, "artifact name"), version=int(ver))
        return cls(name=check_name(text, "artifact name"))

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}:{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        return self.name


class Artifact(Record):
    name: str
    kind: ArtifactKind
    created_at: datetime
    created_by: str
    latest_version: int | None = None
    aliases: dict[str, int] = Field(default_factory=dict)


class ArtifactVersion(Record):
    """An immutable version of an artifact. ``tags`` are the only mutable part (each change is an event)."""

    name: str
    kind: ArtifactKind
    version: int
    digest: str = Field(description="sha256:<hex> of the stored content")
    size: int = Field(description="bytes")
    filename: str
    flavor: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    signature: dict[str, Any] | None = None
    parents: list[str] = Field(default_factory=list, description="lineage, as NAME:VERSION")
    tags: dict[str, str] = Field(default_factory=dict)
    unsafe: bool = Field(False, description="pickle-based: loading runs code; loads only from the registry store")
    aliases: list[str] = Field(default_factory=list)
    bindings: dict[str, str] = Field(default_factory=dict, description="role -> NAME:VERSION (e.g. reference)")
    created_at: datetime
    created_by: str

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"


class Alias(Record):
    name: str
    alias: str
    version: int
    updated_at: datetime
    updated_by: str


class Event(Record):
    """An append-only audit entry: who did what to which subject, when, with the state before and after."""

    id: int
    ts: datetime
    actor: str
    action: str
    subject: str
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None


# ---------------------------------------------------------------------------------------------- deployments


class BatchingOptions(Record):
    """Adaptive batching: concurrent requests merged into one model call.

    By default (``max_wait_ms=None``) a request never waits when the server is quiet; under concurrency the
    batcher waits a fraction (30%) of the recent model-call time, at most 5 ms, so batches merge. A number fixes
    the wait; ``0`` never waits. ``max_batch_size=1`` turns batching off.
    """

    max_batch_size: int = Field(32, ge=1, le=4096)
    max_wait_ms: float | None = Field(None, ge=0, le=10_000)


class RuntimeOptions(Record):
    batching: BatchingOptions | None = Field(default_factory=BatchingOptions)
    replicas: int = Field(1, ge=1, le=1024)
    timeout_s: float = Field(30.0, gt=0, le=3600)


class VariantSpec(Record):
    """What to run: a model reference plus runtime options. Stored resolved (``model`` pinned to a version)."""

    name: str
    model: str = Field(description="NAME:VERSION, NAME@ALIAS or NAME; pinned to NAME:VERSION when stored")
    requested: str | None = Field(None, description="the reference as the user gave it, e.g. iris@champion")
    runtime: RuntimeOptions = Field(default_factory=RuntimeOptions)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v, "variant name")


class DeploymentSpec(Record):
    """Desired state of a deployment. ``traffic`` maps live variants to integer weights summing to 100."""

    variants: list[VariantSpec]
    traffic: dict[str, int] = Field(default_factory=dict)
    shadows: list[str] = Field(default_factory=list)
    sticky_header: str | None = Field(None, description="route requests with equal values of this header together")
    description: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> DeploymentSpec:
        names = [v.name for v in self.variants]
        if not names:
            raise InvalidArgument("a deployment needs at least one variant")
        if len(set(names)) != len(names):
            raise InvalidArgument(f"duplicate variant names: {names}")
        unknown = sorted((set(self.traffic) | set(self.shadows)) - set(names))
        if unknown:
            raise InvalidArgument(f"traffic or shadows name unknown variants {unknown}; variants are {names}")
        if any(w < 0 or w > 100 for w in self.traffic.values()):
            raise InvalidArgument(f"weights must be integers in 0..100, got {self.traffic}")
        total = sum(self.traffic.values())
        if total != 100:
            raise InvalidArgument(f"traffic weights must sum to 100, got {total} ({self.traffic})")
        both = sorted(set(self.shadows) & {k for k, w in self.traffic.items() if w > 0})
        if both:
            raise InvalidArgument(f"variants {both} cannot be both live (weight > 0) and shadow")
        if self.sticky_header is not None and not re.match(r"^[A-Za-z0-9-]{1,64}$", self.sticky_header):
            raise InvalidArgument(f"invalid sticky header name {self.sticky_header!r}")
        return self


class Deployment(Record):
    name: str
    revision: int
    spec: DeploymentSpec
    created_at: datetime
    updated_at: datetime
    updated_by: str
    snapshot_version: int
