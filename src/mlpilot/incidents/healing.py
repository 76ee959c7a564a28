"""Remediation as data: typed, reversible actions, the per-deployment policy that says which of them may run on
their own, the decision for one diagnosis, and the verification that the action helped. Pure: no store, no clock.

An :class:`Action` names *what* to do (``kind``), *to what* (``target``, a component as in
:mod:`mlpilot.incidents.evidence`) and the numbers it needs (``params``). Every action except ``notify`` has an
inverse, computed from what the actuator observed before acting (``Applied.before``), so a remediation that did not
help can be undone exactly.

The decision (:func:`decide`) follows the policy's mode: ``observe`` records the diagnosis only, ``suggest`` records
a suggestion a person approves (``mlpilot incidents approve``), ``auto`` acts when the diagnosis is confident
(``min_confidence``), the action is allowed, no action ran on the deployment within ``cooldown``, fewer than
``max_actions_per_hour`` ran in the last hour, and the action moves at most ``max_blast_radius`` of the
deployment's traffic. An action the policy holds for approval, or one outside the guardrails, becomes a suggestion.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from mlpilot.errors import InvalidArgument
from mlpilot.incidents.evidence import Diagnosis

__all__ = [
    "ACTIONS",
    "MODES",
    "NO_MODEL_ACTION",
    "Action",
    "Decision",
    "HealingPolicy",
    "PastAction",
    "Verification",
    "decide",
    "verify",
]

#: action kind -> (what its target names, whether it changes what serves)
ACTIONS: dict[str, str] = {
    "rollback_alias": "an artifact alias (prompt:, index:, tool:, model:) moved back to its previous version",
    "rollback_release": "the deployment goes back to its previous release",
    "revert_config": "the deployment's spec goes back to the revision before a configuration change",
    "abort_rollout": "the running rollout is aborted: the stable variant takes all traffic",
    "shift_traffic": "traffic moves to the stable (or a fallback) variant",
    "disable_variant": "a variant gets no traffic",
    "restart_runtime": "the variant's runtime is restarted",
    "scale": "the variant's replicas change",
    "pin_backend": "an LLM app pins one backend (no fallback chain)",
    "failover_backend": "an LLM app answers from its fallback backend",
    "switch_index_alias": "an index alias moves to another version",
    "quarantine_inputs": "rows with outlying values of a feature are rejected or routed to a fallback",
    "notify": "people are told; nothing changes",
}
MODES = ("observe", "suggest", "auto")
#: actions that change nothing that serves
NO_MODEL_ACTION = frozenset({"notify"})


@dataclass(frozen=True)
class Action:
    kind: str
    target: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ACTIONS:
            raise InvalidArgument(f"unknown action {self.kind!r}; actions are {sorted(ACTIONS)}")

    @property
    def reversible(self) -> bool:
        return self.kind not in NO_MODEL_ACTION

    def describe(self) -> str:
        extra = ", ".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.kind} {self.target}" + (f" ({extra})" if extra else "")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "target": self.target, "params": dict(self.params)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Action:
        return cls(str(data["kind"]), str(data["target"]), dict(data.get("params") or {}))


def inverse(action: Action, before: Mapping[str, Any]) -> Action | None:
    """The action that undoes ``action``, given the state the actuator saw before it (``None`` for ``notify``).
    ``before`` holds what the actuator recorded: ``version`` (alias), ``release``, ``traffic``, ``replicas``,
    ``app``, ``quarantine`` …"""
    k = action.kind
    if k == "notify":
        return None
    if k in ("rollback_alias", "switch_index_alias"):
        return Action(k, action.target, {"version": before.get("version")})
    if k == "revert_config":
        return Action("revert_config", action.target, {"revision": before.get("revision")})
    if k in ("rollback_release",):
        return Action("rollback_release", action.target, {"to": before.get("release")})
    if k in ("abort_rollout", "shift_traffic", "disable_variant"):
        return Action("shift_traffic", action.target, {"traffic": dict(before.get("traffic") or {})})
    if k == "scale":
        return Action("scale", action.target, {"replicas": before.get("replicas")})
    if k in ("pin_backend", "failover_backend"):
        return Action(k, action.target, {"restore": before.get("app")})
    if k == "quarantine_inputs":
        return Action("quarantine_inputs", action.target, {"lift": True})
    if k == "restart_runtime":
        return None  # a restart cannot be undone and needs no undoing
    raise InvalidArgument(f"no inverse for {k!r}")


@dataclass(frozen=True)
class HealingPolicy:
    """Per deployment. ``approval``: action kinds that always wait for a person even in ``auto`` mode."""

    mode: str = "suggest"
    min_confidence: float = 0.7
    max_actions_per_hour: int = 3
    cooldown: timedelta = timedelta(minutes=10)
    max_blast_radius: float = 1.0
    allowed: frozenset[str] = frozenset(ACTIONS)
    approval: frozenset[str] = frozenset()
    verify_after: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InvalidArgument(f"healing mode must be one of {list(MODES)}, got {self.mode!r}")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise InvalidArgument(f"min_confidence must be in [0, 1], got {self.min_confidence}")
        if not 0.0 <= self.max_blast_radius <= 1.0:
            raise InvalidArgument(f"max_blast_radius must be in [0, 1], got {self.max_blast_radius}")
        if self.max_actions_per_hour < 0:
            raise InvalidArgument("max_actions_per_hour must be >= 0")
        unknown = sorted((set(self.allowed) | set(self.approval)) - set(ACTIONS))
        if unknown:
            raise InvalidArgument(f"unknown actions {unknown}; actions are {sorted(ACTIONS)}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "min_confidence": self.min_confidence,
            "max_actions_per_hour": self.max_actions_per_hour,
            "cooldown_s": self.cooldown.total_seconds(),
            "max_blast_radius": self.max_blast_radius,
            "allowed": sorted(self.allowed),
            "approval": sorted(self.approval),
            "verify_after_s": self.verify_after.total_seconds(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HealingPolicy:
        known = {
            "mode",
            "min_confidence",
            "max_actions_per_hour",
            "cooldown_s",
            "max_blast_radius",
            "allowed",
            "approval",
            "verify_after_s",
        }
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidArgument(f"unknown healing policy fields {unknown}; fields are {sorted(known)}")
        for name in ("allowed", "approval"):
            if name in data and (
                isinstance(data[name], str) or not isinstance(data[name], (list, tuple, set, frozenset))
            ):
                raise InvalidArgument(f"healing policy {name!r} must be a list of action names, got {data[name]!r}")
        try:
            return cls(
                mode=str(data.get("mode", "suggest")),
                min_confidence=float(data.get("min_confidence", 0.7)),
                max_actions_per_hour=int(data.get("max_actions_per_hour", 3)),
                cooldown=timedelta(seconds=float(data.get("cooldown_s", 600))),
                max_blast_radius=float(data.get("max_blast_radius", 1.0)),
                allowed=frozenset(data.get("allowed", ACTIONS)),
                approval=frozenset(data.get("approval", ())),
                verify_after=timedelta(seconds=float(data.get("verify_after_s", 300))),
            )
        except (TypeError, ValueError) as e:
            raise InvalidArgument(f"invalid healing policy: {e}") from None


@dataclass(frozen=True)
class PastAction:
    at: datetime
    kind: str


@dataclass(frozen=True)
class Decision:
    """``outcome``: ``execute``, ``suggest`` (waits for approval), ``record`` (observe mode, or nothing to do).
    ``reason`` says which rule decided; ``checks`` every guardrail with its verdict (the decision record)."""

    outcome: str
    action: Action | None
    confidence: float
    reason: str
    checks: Mapping[str, bool] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "action": self.action.to_dict() if self.action else None,
            "confidence": round(self.confidence, 4),
            "reason": self.reason,
            "checks": dict(self.checks),
        }


def decide(
    diagnosis: Diagnosis,
    policy: HealingPolicy,
    history: Sequence[PastAction],
    now: datetime,
    *,
    blast_radius: float = 1.0,
) -> Decision:
    """What to do about ``diagnosis`` under ``policy`` given the actions already taken on the deployment
    (``history``). ``blast_radius``: the share of the deployment's traffic the action would move (from the actuator's
    plan)."""
    top = diagnosis.top
    if diagnosis.verdict != "diagnosed" or top is None or top.suggestion is None:
        why = f"diagnosis is {diagnosis.verdict}" if diagnosis.verdict != "diagnosed" else "no remediation suggested"
        return Decision("record", None, top.confidence if top else 0.0, why)
    s = top.suggestion
    action = Action(s.action, s.target, dict(s.params))
    if action.kind in NO_MODEL_ACTION:  # telling people changes nothing that serves: no guardrail but the mode
        checks = {"no_model_action": True, "allowed": action.kind in policy.allowed}
        if policy.mode == "observe" or not checks["allowed"]:
            why = "observe mode: diagnosis recorded" if policy.mode == "observe" else f"{action.kind} is not allowed"
            return Decision("record", action, top.confidence, why, checks)
        return Decision("execute", action, top.confidence, s.why or "notify only", checks)
    recent = [p for p in history if p.kind not in NO_MODEL_ACTION and now - p.at < timedelta(hours=1)]
    checks = {
        "mode_auto": policy.mode == "auto",
        "confident": top.confidence >= policy.min_confidence,
        "allowed": action.kind in policy.allowed,
        "no_approval_needed": action.kind not in policy.approval,
        "cooldown_over": all(now - p.at >= policy.cooldown for p in recent),
        "rate_ok": len(recent) < policy.max_actions_per_hour,
        "blast_radius_ok": blast_radius <= policy.max_blast_radius + 1e-9,
    }
    if policy.mode == "observe":
        return Decision("record", action, top.confidence, "observe mode: diagnosis recorded, no action", checks)
    if not checks["allowed"]:
        return Decision("record", action, top.confidence, f"{action.kind} is not allowed by the policy", checks)
    if all(checks.values()):
        return Decision("execute", action, top.confidence, s.why or "confident diagnosis within guardrails", checks)
    failed = [k for k, ok in checks.items() if not ok]
    return Decision("suggest", action, top.confidence, "waits for approval: " + ", ".join(failed), checks)


@dataclass(frozen=True)
class Verification:
    helped: bool
    before: float
    after: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"helped": self.helped, "before": self.before, "after": self.after, "reason": self.reason}


def verify(
    baseline: float, during: float, after: float, *, higher_is_worse: bool = True, recovered_share: float = 0.5
) -> Verification:
    """Did the action help? ``baseline``: the symptom metric before the incident; ``during``: while it was open;
    ``after``: since the action. Helped when at least ``recovered_share`` of the gap to the baseline closed (NaN
    after: no traffic since the action, undecided → not helped). With no baseline (no traffic before the
    incident) the gap is measured to zero: the symptom must fall by ``recovered_share`` of its level."""
    if after != after:
        return Verification(False, during, after, "no measurements since the action")
    if during != during:
        return Verification(False, during, after, "no measurement of the symptom while the incident was open")
    if baseline != baseline:
        baseline = 0.0
    sign = 1.0 if higher_is_worse else -1.0
    gap = sign * (during - baseline)
    if gap <= 0:
        return Verification(True, during, after, "the symptom was already back to its baseline")
    closed = (sign * (during - after)) / gap
    ok = closed >= recovered_share
    return Verification(
        ok,
        during,
        after,
        f"{closed:.0%} of the gap to the baseline closed" + ("" if ok else f" (< {recovered_share:.0%})"),
    )
