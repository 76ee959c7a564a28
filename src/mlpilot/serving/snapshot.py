"""``RoutingSnapshot``: everything the data plane needs to serve, compiled by the control plane and pushed.

A snapshot is immutable and versioned; the data plane swaps to a newer one atomically and keeps serving its last
one when the control plane is away. It is plain data (JSON round-trip) so it can cross a process or network
boundary (workers, remote data-plane hosts).
"""

from __future__ import annotations

import functools
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any

import orjson

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
class AutoscalingRoute:
    """Replicas between ``min_replicas`` and ``max_replicas`` following the requests in flight per replica."""

    min_replicas: int = 1
    max_replicas: int = 1
    target_ongoing_requests: float = 2.0


@dataclass(frozen=True)
class VariantRoute:
    name: str
    model: ModelBinding
    max_batch_size: int = 1
    max_wait_ms: float | None = None  # None: adaptive
    replicas: int = 1
    timeout_s: float = 30.0
    generation: int = 0  # a new generation loads the runtime anew (a restart)
    autoscaling: AutoscalingRoute | None = None  # replicas follow the load (executors that scale); None: ``replicas``


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
class LimitsRoute:
    """A deployment's limits (``DeploymentSpec.limits``; see ``serving/limits.py``)."""

    rate_per_s: float | None = None
    burst: int | None = None
    max_in_flight: int | None = None
    fallback: str | None = None
    breaker_failures: int = 5
    breaker_open_s: float = 30.0


@dataclass(frozen=True)
class DeploymentRoute:
    name: str
    revision: int
    variants: tuple[VariantRoute, ...]
    weights: Mapping[str, int]
    shadows: tuple[str, ...] = ()
    sticky_header: str | None = None
    quarantine: tuple[QuarantineRoute, ...] = ()
    limits: LimitsRoute | None = None


@dataclass(frozen=True)
class RoutingSnapshot:
    version: int
    deployments: Mapping[str, DeploymentRoute] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The wire form (JSON-ready): every field of every route, tuples as lists."""
        return {"schema_version": SCHEMA_VERSION, **_encode(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RoutingSnapshot:
        """The snapshot ``to_dict`` made. Fields it lacks take their defaults (snapshots of older control planes);
        fields it does not know are ignored (newer ones add only optional fields within a schema version).

        Raises:
            ValueError: another schema version, or a malformed snapshot (a required field missing, a wrong type).
        """
        if not isinstance(data, Mapping) or data.get("schema_version") != SCHEMA_VERSION:
            found = data.get("schema_version") if isinstance(data, Mapping) else type(data).__name__
            raise ValueError(f"unsupported snapshot schema_version {found!r}; this data plane reads {SCHEMA_VERSION}")
        snapshot = _decode(cls, data, "snapshot")
        assert isinstance(snapshot, cls)
        return snapshot

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_json(cls, raw: bytes | str) -> RoutingSnapshot:
        """Raises ``ValueError`` for invalid JSON or a malformed snapshot (see :meth:`from_dict`)."""
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"snapshot is not valid JSON: {exc}") from exc
        return cls.from_dict(data)


def _encode(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _decode(tp: Any, value: Any, where: str) -> Any:
    """``value`` (parsed JSON) as type ``tp``: dataclasses field by field, tuples from lists, optional types."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _decode(args[0], value, where) if len(args) == 1 else value
    if isinstance(tp, type) and is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: expected an object, got {type(value).__name__}")
        hints = _hints(tp)
        kwargs = {}
        for f in fields(tp):
            if f.name in value:
                kwargs[f.name] = _decode(hints[f.name], value[f.name], f"{where}.{f.name}")
            elif f.default is MISSING and f.default_factory is MISSING:
                raise ValueError(f"{where}: the field {f.name!r} is missing")
        return tp(**kwargs)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {type(value).__name__}")
        item = typing.get_args(tp)[0]
        return tuple(_decode(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (Mapping, dict):
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: expected an object, got {type(value).__name__}")
        item = typing.get_args(tp)[1]
        return {str(k): _decode(item, v, f"{where}.{k}") for k, v in value.items()}
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str or tp is bool:
        if not isinstance(value, tp):
            raise ValueError(f"{where}: expected a {tp.__name__}, got {value!r}")
        return value
    return value  # Any: plain JSON data
