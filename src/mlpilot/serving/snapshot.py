"""``RoutingSnapshot``: everything the data plane needs to serve, compiled by the control plane and pushed.

A snapshot is immutable and versioned; the data plane swaps to a newer one atomically and keeps serving its last
one when the control plane is away. It is plain data (JSON round-trip) so it can cross a process or network
boundary (workers, remote data-plane hosts).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ModelBinding:
    """A pinned model version: where its bytes are (by digest) and how to load and validate it."""

    name: str
    version: int
    digest: str
    flavor: str
    flavor_metadata: Mapping[str, Any] = field(default_factory=dict)
    signature: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class VariantRoute:
    name: str
    model: ModelBinding
    max_batch_size: int = 1
    max_wait_ms: float | None = None  # None: adaptive
    replicas: int = 1
    timeout_s: float = 30.0
    generation: int = 0  # a new generation loads the runtime anew (a restart)


@dataclass(frozen=True)
class QuarantineRoute:
    """An input quarantine rule of a deployment (``DeploymentSpec.quarantine``), checked before the model runs:
    ``action`` is ``reject`` or ``route`` (to ``variant``); one condition: ``low``/``high``, ``allowed`` or
    ``nulls``."""

    feature: str
    action: str = "reject"
    low: float | None = None
    high: float | None = None
    allowed: tuple[str, ...] | None = None
    nulls: bool = False
    variant: str | None = None
    reason: str = ""


@dataclass(frozen=True)
class DeploymentRoute:
    name: str
    revision: int
    variants: tuple[VariantRoute, ...]
    weights: Mapping[str, int]
    shadows: tuple[str, ...] = ()
    sticky_header: str | None = None
    quarantine: tuple[QuarantineRoute, ...] = ()


@dataclass(frozen=True)
class RoutingSnapshot:
    version: int
    deployments: Mapping[str, DeploymentRoute] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "version": self.version,
            "deployments": {
                name: {
                    "name": d.name,
                    "revision": d.revision,
                    "weights": dict(d.weights),
                    "shadows": list(d.shadows),
                    "sticky_header": d.sticky_header,
                    "quarantine": [
                        {**asdict(q), "allowed": list(q.allowed) if q.allowed is not None else None}
                        for q in d.quarantine
                    ],
                    "variants": [
                        {
                            "name": v.name,
                            "max_batch_size": v.max_batch_size,
                            "max_wait_ms": v.max_wait_ms,
                            "replicas": v.replicas,
                            "timeout_s": v.timeout_s,
                            "generation": v.generation,
                            "model": {
                                "name": v.model.name,
                                "version": v.model.version,
                                "digest": v.model.digest,
                                "flavor": v.model.flavor,
                                "flavor_metadata": dict(v.model.flavor_metadata),
                                "signature": dict(v.model.signature) if v.model.signature else None,
                            },
                        }
                        for v in d.variants
                    ],
                }
                for name, d in self.deployments.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RoutingSnapshot:
        if data.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"unsupported snapshot schema_version {data.get('schema_version')!r}")
        deployments = {}
        for name, d in data["deployments"].items():
            variants = tuple(
                VariantRoute(
                    name=v["name"],
                    model=ModelBinding(**v["model"]),
                    max_batch_size=v["max_batch_size"],
                    max_wait_ms=v["max_wait_ms"],
                    replicas=v["replicas"],
                    timeout_s=v["timeout_s"],
                    generation=int(v.get("generation", 0)),
                )
                for v in d["variants"]
            )
            deployments[name] = DeploymentRoute(
                name=d["name"],
                revision=d["revision"],
                variants=variants,
                weights=d["weights"],
                shadows=tuple(d["shadows"]),
                sticky_header=d["sticky_header"],
                quarantine=tuple(
                    QuarantineRoute(**{**q, "allowed": tuple(q["allowed"]) if q.get("allowed") is not None else None})
                    for q in d.get("quarantine", ())
                ),
            )
        return cls(version=int(data["version"]), deployments=deployments)
