"""The plain data and pure helpers of the actuator (:mod:`mlpilot.incidents.actuator`): plans, applied actions, the
prepared run of an action, split arithmetic, parameter checks, quarantine rules from action params and the
configuration diff ``revert_config`` reverts."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from mlpilot.errors import InvalidArgument
from mlpilot.incidents.healing import Action
from mlpilot.records import DeploymentSpec, QuarantineRule

__all__ = ["Applied", "Plan"]


@dataclass(frozen=True)
class Plan:
    """What an action would do, before doing it."""

    action: Action
    blast_radius: float  # share of the deployment's traffic it moves, 0..1
    before: dict[str, Any]  # the state inverse() needs (see healing.inverse)
    description: str


@dataclass(frozen=True)
class Applied:
    action: Action
    before: dict[str, Any]
    after: dict[str, Any]
    inverse: Action | None
    event_ids: list[int] = field(default_factory=list)


_DEFAULT: Any = object()  # "the inverse is healing.inverse(action, before)"


@dataclass
class _Prepared:
    plan: Plan
    run: Callable[[str], dict[str, Any]]  # actor -> after
    inverse: Any = _DEFAULT


def _noop(action: Action, before: dict[str, Any], why: str, undo: Any = _DEFAULT) -> _Prepared:
    """Nothing to do: the end state already holds (``after`` equals ``before``, no event)."""
    return _Prepared(Plan(action, 0.0, before, why), lambda actor: dict(before), undo)


def _largest_remainder(weights: Mapping[str, float], total: int) -> dict[str, int]:
    """Integers proportional to ``weights`` summing to ``total`` (largest remainders get the spare units)."""
    s = sum(weights.values())
    raw = {k: total * w / s for k, w in weights.items()}
    out = {k: math.floor(v) for k, v in raw.items()}
    spare = total - sum(out.values())
    for k in sorted(raw, key=lambda k: (out[k] - raw[k], list(raw).index(k)))[:spare]:
        out[k] += 1
    return out


def _moved(old: Mapping[str, int], new: Mapping[str, int]) -> float:
    """Share of traffic that changes variant between two splits."""
    keys = set(old) | set(new)
    return sum(abs(new.get(k, 0) - old.get(k, 0)) for k in keys) / 200.0


def _int_param(action: Action, name: str, low: int = 1, high: int | None = None) -> int:
    value = action.params.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise InvalidArgument(f"{action.kind}: {name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f"{low}..{high}" if high is not None else f">= {low}"
        raise InvalidArgument(f"{action.kind}: {name} must be {bounds}, got {value}")
    return int(value)


def _rule(feature: str, params: Mapping[str, Any]) -> QuarantineRule:
    known = {"low", "high", "allowed", "nulls", "mode", "variant", "reason", "lift"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise InvalidArgument(f"quarantine_inputs: unknown params {unknown}; params are {sorted(known - {'lift'})}")
    mode = params.get("mode", "reject")
    if mode not in ("reject", "route"):
        raise InvalidArgument(f"quarantine_inputs: mode must be reject or route, got {mode!r}")
    allowed = params.get("allowed")
    if allowed is not None and not isinstance(allowed, (list, tuple)):
        raise InvalidArgument(f"quarantine_inputs: allowed must be a list of values, got {allowed!r}")
    try:
        return QuarantineRule(
            feature=feature,
            low=params.get("low"),
            high=params.get("high"),
            allowed=[str(a) for a in allowed] if allowed is not None else None,
            nulls=bool(params.get("nulls", False)),
            action=mode,
            variant=params.get("variant"),
            reason=str(params.get("reason", "")),
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
        raise InvalidArgument(f"quarantine_inputs: {problems}") from None


def _rule_params(rule: QuarantineRule) -> dict[str, Any]:
    """The params of a quarantine_inputs action that adds ``rule`` back."""
    kept = {"low", "high", "allowed", "nulls", "variant", "reason"}
    return {"mode": rule.action, **rule.model_dump(include=kept, exclude_defaults=True)}


def _config_diff(old: DeploymentSpec, now: DeploymentSpec) -> tuple[list[str], bool]:
    """What ``revert_config`` reverts: the variants of ``now`` whose runtime options differ in ``old`` (the restart
    generation aside), and whether the sticky header does."""
    was = {v.name: v.runtime.model_dump(exclude={"generation"}) for v in old.variants}
    changed = [v.name for v in now.variants if was.get(v.name, v.runtime.model_dump(exclude={"generation"}))
               != v.runtime.model_dump(exclude={"generation"})]  # fmt: skip
    return changed, old.sticky_header != now.sticky_header
