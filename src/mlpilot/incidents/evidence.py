"""What root-cause analysis reasons about, as plain data: the case (a symptom, the request rows around it, the
changes and resource samples of the deployment), the evidence collectors find in it, the hypotheses the ranker
builds from the evidence and the diagnosis it returns. Pure: no store, no clock, no I/O.

Components are named ``<kind>:<name>``: ``feature:amount``, ``variant:canary``, ``release:fraud`` (what the
deployment serves, its spec revision), ``config:fraud``, ``prompt:support``, ``index:kb``, ``tool:order_status``,
``provider:primary``, ``dependency:feature_fetch``, ``traffic:fraud``, ``labels:fraud``, ``concept:fraud``.
``concept`` and ``labels`` name causes with no faulty serving component (the world changed; the label pipeline is
wrong): the right remediation touches no model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

__all__ = [
    "CAUSES",
    "SYMPTOMS",
    "Case",
    "Change",
    "Diagnosis",
    "Evidence",
    "Hypothesis",
    "Suggestion",
    "Symptom",
]

#: what a symptom measures (the column of the case frame it is computed from, per request)
SYMPTOMS = ("errors", "latency", "accuracy", "drift", "quality", "cost")

#: cause kinds the ranker can name, with the component kind each points at
CAUSES: dict[str, str] = {
    "bad_variant": "variant",  # one variant (a canary, a candidate) is worse than the others
    "bad_release": "release",  # what the deployment serves changed and the symptom followed
    "bad_config": "config",  # a configuration change of the deployment (batching, timeouts, limits)
    "latency_regression": "release",
    "memory_leak": "release",
    "skew": "release",  # training-serving skew: predictions moved, the logged inputs did not
    "upstream_rescale": "feature",
    "null_spike": "feature",
    "encoding_change": "feature",
    "stale_feature": "feature",
    "feature_drift": "feature",
    "prompt_regression": "prompt",
    "index_regression": "index",
    "tool_regression": "tool",
    "provider_change": "provider",
    "rate_limited": "provider",
    "provider_errors": "provider",
    "dependency_latency": "dependency",
    "traffic_surge": "traffic",
    "label_pipeline": "labels",
    "concept_drift": "concept",
}


@dataclass(frozen=True)
class Change:
    """A recorded change (an event of the deployment, a rollout, an alias move of an artifact it uses)."""

    ts: datetime
    kind: str  # release | config | rollout | alias | traffic | scale | other
    component: str  # what it changed, e.g. "release:fraud", "prompt:support", "variant:canary"
    summary: str
    ref: str  # "event:<id>"
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Symptom:
    """What is wrong: ``kind`` (one of :data:`SYMPTOMS`), since about ``onset`` (as alerted; the change-point
    collector refines it), ``metric`` the name shown to people (e.g. the SLO)."""

    kind: str
    onset: datetime
    metric: str = ""
    severity: str = "page"


@dataclass
class Case:
    """Everything RCA looks at for one incident.

    ``frame``: request rows of the deployment from well before the onset until ``now`` with (when known) ``ts``,
    ``variant``, ``status`` (``ok``/``error``), ``error`` (message), ``latency_s``, ``stage.<name>_s`` (seconds per
    stage), ``in.<feature>`` inputs, ``pred`` (the served prediction, numeric or label), ``label`` (joined
    feedback), ``score`` (probability of the positive class), and for LLM apps ``llm.<signal>`` (``groundedness``,
    ``top_score``, ``refusal``, ``llm_model``, ``prompt``, ``index``, ``backend``, ``tool_errors`` …).
    ``resources``: long-form samples (``ts``, ``metric``, ``value``) such as ``rss_mb``, ``restarts``, ``replicas``,
    ``queue``. ``rollout_variants``: variants that are the candidate of a running or recent rollout;
    ``serving_variants``: the variants the deployment serves now (``None``: not known).
    """

    deployment: str
    symptom: Symptom
    now: datetime
    frame: pd.DataFrame
    changes: Sequence[Change] = ()
    resources: pd.DataFrame | None = None
    stable_variant: str | None = None
    rollout_variants: Sequence[str] = ()
    serving_variants: Sequence[str] | None = None
    features: Sequence[str] | None = None  # input columns to consider (default: every ``in.*``)
    segments: Sequence[str] | None = None  # categorical columns to slice by (default: categorical inputs)
    #: what runs each stage of ``stage.<name>_s`` (default ``dependency:<name>``), e.g. {"predict": "release:fraud"}
    stage_components: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Evidence:
    """One finding, with enough numbers to draw it. ``effect`` is a standardised size (0 = nothing, ~1 = clear,
    larger = strong); ``specificity`` in [0, 1] says how narrowly it points (one variant of three, one feature of
    twenty); ``at`` is when it started, when known."""

    ref: str
    kind: str
    component: str
    summary: str
    effect: float
    specificity: float = 0.5
    at: datetime | None = None
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "kind": self.kind,
            "component": self.component,
            "summary": self.summary,
            "effect": round(float(self.effect), 4),
            "specificity": round(float(self.specificity), 4),
            "at": self.at.isoformat() if self.at else None,
            "data": _jsonable(self.data),
        }


@dataclass(frozen=True)
class Suggestion:
    """A remediation the ranker suggests for a hypothesis: an action kind and its target (see
    :mod:`mlpilot.incidents.healing`); ``params`` are filled from the evidence (the version to go back to …)."""

    action: str
    target: str
    params: Mapping[str, Any] = field(default_factory=dict)
    why: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "target": self.target, "params": _jsonable(self.params), "why": self.why}


@dataclass(frozen=True)
class Hypothesis:
    cause: str  # a key of CAUSES
    component: str
    confidence: float  # 0..1
    evidence: tuple[str, ...]  # refs of the supporting evidence
    rationale: str
    suggestion: Suggestion | None = None
    source: str = "engine"  # or "agent"

    def to_dict(self) -> dict[str, Any]:
        return {
            "cause": self.cause,
            "component": self.component,
            "confidence": round(float(self.confidence), 4),
            "evidence": list(self.evidence),
            "rationale": self.rationale,
            "suggestion": self.suggestion.to_dict() if self.suggestion else None,
            "source": self.source,
        }


@dataclass(frozen=True)
class Diagnosis:
    """``verdict``: ``diagnosed`` (the first hypothesis is confident enough to act on), ``inconclusive`` (evidence
    too weak or too evenly split: look, do not act) or ``benign`` (no impact beyond the alert itself: do nothing)."""

    verdict: str
    hypotheses: tuple[Hypothesis, ...]
    evidence: tuple[Evidence, ...]
    onset: datetime | None
    summary: str

    @property
    def top(self) -> Hypothesis | None:
        return self.hypotheses[0] if self.hypotheses else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "summary": self.summary,
            "onset": self.onset.isoformat() if self.onset else None,
            "hypotheses": [h.to_dict() for h in self.hypotheses],
            "evidence": [e.to_dict() for e in self.evidence],
        }


def _jsonable(value: Any) -> Any:
    """Numbers, strings, lists and dicts only (numpy scalars and timestamps converted)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "item") and callable(value.item):
        return _jsonable(value.item())
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else None
    return value
