"""The fault scenarios and the no-fault controls of the incident benchmark, each with its ground truth.

A scenario injects its fault at ``FAULT_AT`` (plus a seeded jitter) by changing the world: a recorded change for
faults we cause (a release, a config push, a rollout, an alias move), an unrecorded one for faults that come from
outside (upstream data, the provider, a dependency, traffic, the world). ``severity`` (low, medium, high) scales the
fault. ``truth`` is the component RCA should name; ``right`` the action kinds that fix it (empty: the right answer
is to change nothing that serves — harmful if anything is changed); ``auto`` says whether an automatic remediation
is expected (the time to mitigate is measured on those).

Distractors are added at random by seed: an unrelated change before the fault and a benign drift of ``device``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mlpilot.sim.world import World

SEVERITIES = ("low", "medium", "high")
FAULT_AT = 70  # minute of the fault (plus jitter)
DURATION = 140  # minutes per run


@dataclass(frozen=True)
class Scenario:
    name: str
    service: str  # ml | llm
    truth: str  # component
    right: frozenset[str]  # action kinds that fix it; empty = no serving change is right
    auto: bool
    inject: Callable[[World, float], None]
    sizes: tuple[float, float, float]  # the fault's size at low, medium, high
    control: bool = False


def _release(w: World, **fault: float) -> None:
    new = w.state.release + 1
    w.state.release_faults[new] = dict(fault)
    w.state.release = new
    w.state.rss_mb = 900.0
    w.record("release", f"release:{w.deployment}", f"release {new} of {w.deployment} went live", release=new)


def _config(w: World, **fault: float) -> None:
    new = w.state.config_rev + 1
    w.state.config_faults[new] = dict(fault)
    w.record(
        "config",
        f"config:{w.deployment}",
        f"configuration of {w.deployment} changed (revision {new})",
        revision_before=w.state.config_rev,
    )
    w.state.config_rev = new


def _alias(w: World, kind: str, size: float) -> None:
    attr = {"prompt": "prompt_version", "index": "index_version", "tool": "tool_version"}[kind]
    name = {"prompt": "support", "index": "kb", "tool": "order_status"}[kind]
    before = getattr(w.state, attr)
    getattr(w.state, f"{kind}_faults")[before + 1] = size
    setattr(w.state, attr, before + 1)
    w.record(
        "alias",
        f"{kind}:{name}@prod",
        f"{kind} alias {name}@prod moved {before} → {before + 1}",
        version_before=before,
        version_after=before + 1,
    )


def _canary(w: World, size: float) -> None:
    w.state.canary_weight = 0.2
    w.state.canary_bug = size
    w.record("rollout", "variant:canary", "rollout started: canary takes 20% of fraud")


def _up(key: str, field: str) -> Callable[[World, float], None]:
    def inject(w: World, size: float) -> None:
        w.upstream[key] = {field: size, "t0": float(w.minute)}

    return inject


def _surge(w: World, size: float) -> None:
    w.rate_factor = size


FAULTS: list[Scenario] = [
    Scenario(
        "feature_rescaled",
        "ml",
        "feature:merchant_score",
        frozenset({"quarantine_inputs"}),
        True,
        _up("rescale", "share"),
        (0.08, 0.2, 0.4),
    ),
    Scenario(
        "null_spike",
        "ml",
        "feature:n_tx_24h",
        frozenset({"quarantine_inputs"}),
        True,
        _up("nulls", "share"),
        (0.03, 0.1, 0.3),
    ),
    Scenario(
        "encoding_change",
        "ml",
        "feature:country",
        frozenset({"quarantine_inputs"}),
        True,
        _up("encoding", "share"),
        (0.04, 0.15, 0.5),
    ),
    Scenario("stale_feature", "ml", "feature:n_tx_24h", frozenset(), False, _up("stale", "share"), (0.3, 0.6, 1.0)),
    Scenario(
        "canary_segment_bug",
        "ml",
        "variant:canary",
        frozenset({"abort_rollout", "shift_traffic", "disable_variant"}),
        True,
        _canary,
        (0.3, 0.6, 1.0),
    ),
    Scenario(
        "latency_regression",
        "ml",
        "release:fraud",
        frozenset({"rollback_release"}),
        True,
        lambda w, s: _release(w, slow=s),
        (2.0, 3.5, 6.0),
    ),
    Scenario(
        "training_serving_skew",
        "ml",
        "release:fraud",
        frozenset({"rollback_release"}),
        True,
        lambda w, s: _release(w, skew=s),
        (3.0, 6.0, 12.0),
    ),
    Scenario("concept_drift", "ml", "concept:fraud", frozenset(), False, _up("concept", "size"), (0.6, 1.0, 1.6)),
    Scenario("label_pipeline_bug", "ml", "labels:fraud", frozenset(), False, _up("labels", "share"), (0.15, 0.3, 0.6)),
    Scenario(
        "prompt_regression",
        "llm",
        "prompt:support",
        frozenset({"rollback_alias"}),
        True,
        lambda w, s: _alias(w, "prompt", s),
        (0.12, 0.22, 0.4),
    ),
    Scenario(
        "index_wrong_embedding",
        "llm",
        "index:kb",
        frozenset({"rollback_alias", "switch_index_alias"}),
        True,
        lambda w, s: _alias(w, "index", s),
        (0.15, 0.3, 0.5),
    ),
    Scenario(
        "provider_model_change",
        "llm",
        "provider:primary",
        frozenset({"failover_backend", "pin_backend"}),
        True,
        _up("provider_change", "size"),
        (0.12, 0.22, 0.4),
    ),
    Scenario(
        "dependency_latency",
        "ml",
        "dependency:feature_fetch",
        frozenset(),
        False,
        _up("dependency", "factor"),
        (3.0, 6.0, 12.0),
    ),
    Scenario(
        "memory_leak_after_deploy",
        "ml",
        "release:fraud",
        frozenset({"rollback_release"}),
        True,
        lambda w, s: _release(w, leak=s),
        (20.0, 40.0, 80.0),
    ),
    Scenario("traffic_surge", "ml", "traffic:fraud", frozenset({"scale"}), True, _surge, (2.2, 3.0, 4.5)),
    Scenario(
        "bad_config_push",
        "ml",
        "config:fraud",
        frozenset({"revert_config"}),
        True,
        lambda w, s: _config(w, timeout_s=s),
        (0.035, 0.028, 0.022),
    ),
    Scenario(
        "provider_rate_limiting",
        "llm",
        "provider:primary",
        frozenset({"failover_backend", "pin_backend"}),
        True,
        _up("rate_limit", "share"),
        (0.04, 0.12, 0.35),
    ),
    Scenario(
        "tool_regression",
        "llm",
        "tool:order_status",
        frozenset({"rollback_alias"}),
        True,
        lambda w, s: _alias(w, "tool", s),
        (0.15, 0.3, 0.5),
    ),
]


def _benign_deploy(w: World, _size: float) -> None:
    w.upstream["device_mix"] = {"share": 0.35}
    _release(w)


def _harmless_rollout(w: World, _size: float) -> None:
    w.state.canary_weight = 0.2
    w.record("rollout", "variant:canary", "rollout started: canary takes 20% of fraud")


def _wiggle(w: World, _size: float) -> None:
    w.rate_factor = 1.3


def _llm_benign(w: World, _size: float) -> None:
    _alias(w, "prompt", 0.0)


CONTROLS: list[Scenario] = [
    Scenario("control_quiet", "ml", "", frozenset(), False, lambda w, s: None, (0, 0, 0), True),
    Scenario("control_benign_drift_and_deploy", "ml", "", frozenset(), False, _benign_deploy, (0, 0, 0), True),
    Scenario("control_harmless_rollout", "ml", "", frozenset(), False, _harmless_rollout, (0, 0, 0), True),
    Scenario("control_traffic_wiggle", "ml", "", frozenset(), False, _wiggle, (0, 0, 0), True),
    Scenario("control_llm_prompt_change", "llm", "", frozenset(), False, _llm_benign, (0, 0, 0), True),
]


def _noop_apply(w: World) -> None:
    w.record("scale", "variant:stable", "replicas of stable 2 → 2 (no-op apply)")


def add_distractors(w: World, rng: np.random.Generator) -> list[tuple[int, Callable[[World], None]]]:
    """Seeded distractors: (minute, what) — an unrelated harmless change 5-40 min before the fault, a benign drift."""
    out: list[tuple[int, Callable[[World], None]]] = []
    if rng.uniform() < 0.5:
        at = FAULT_AT - int(rng.integers(5, 40))
        if w.service == "ml":
            out.append((at, lambda w: _config(w)))
        else:
            out.append((at, lambda w: _noop_apply(w)))
    if rng.uniform() < 0.5 and w.service == "ml":
        out.append(
            (FAULT_AT - int(rng.integers(0, 30)), lambda w: w.upstream.__setitem__("device_mix", {"share": 0.3}))
        )
    return out


def by_name(name: str) -> Scenario:
    for s in (*FAULTS, *CONTROLS):
        if s.name == name:
            return s
    raise KeyError(name)
