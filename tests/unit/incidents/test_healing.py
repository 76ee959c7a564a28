"""Remediation as data (pure): typed actions and their inverses, the healing policy and its validation, the decision
for one diagnosis under the policy's guardrails, and the verification that an action helped."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from mlpilot.errors import InvalidArgument
from mlpilot.incidents.evidence import Diagnosis, Hypothesis, Suggestion
from mlpilot.incidents.healing import (
    ACTIONS,
    Action,
    HealingPolicy,
    PastAction,
    decide,
    inverse,
    verify,
)

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)


def diagnosis(
    action: str | None = "abort_rollout",
    target: str = "variant:canary",
    confidence: float = 0.9,
    verdict: str = "diagnosed",
    params: dict[str, Any] | None = None,
    why: str = "the canary is the worse variant",
) -> Diagnosis:
    sug = Suggestion(action, target, params or {}, why) if action else None
    top = Hypothesis("bad_variant", target, confidence, ("variant:canary",), "canary errors", sug)
    return Diagnosis(verdict, (top,), (), NOW - timedelta(minutes=10), "summary")


def ago(minutes: float, kind: str = "abort_rollout") -> PastAction:
    return PastAction(NOW - timedelta(minutes=minutes), kind)


AUTO = HealingPolicy(mode="auto")


# ---------------------------------------------------------------------------------------------------- Action


def test_action_rejects_unknown_kinds_listing_the_known_ones() -> None:
    with pytest.raises(InvalidArgument) as e:
        Action("reboot_everything", "release:fraud")
    msg = str(e.value)
    assert "'reboot_everything'" in msg
    assert str(sorted(ACTIONS)) in msg


def test_action_round_trips_and_describes() -> None:
    a = Action("scale", "variant:stable", {"factor": 3, "a": 1})
    assert Action.from_dict(json.loads(json.dumps(a.to_dict()))) == a
    assert a.describe() == "scale variant:stable (a=1, factor=3)"
    assert Action("notify", "feature:x").describe() == "notify feature:x"
    assert Action.from_dict({"kind": "notify", "target": "feature:x", "params": None}).params == {}
    assert not Action("notify", "x").reversible
    assert all(Action(k, "x").reversible for k in ACTIONS if k != "notify")


# ---------------------------------------------------------------------------------------------------- inverse

BEFORE: dict[str, Any] = {
    "version": 4,
    "release": 7,
    "revision": 12,
    "traffic": {"stable": 0.8, "canary": 0.2},
    "replicas": 2,
    "app": {"backends": ["primary", "fallback"]},
}


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (Action("rollback_alias", "prompt:support@prod", {"version": 3}), ("rollback_alias", {"version": 4})),
        (Action("switch_index_alias", "index:kb@prod", {"version": 1}), ("switch_index_alias", {"version": 4})),
        (Action("rollback_release", "release:fraud"), ("rollback_release", {"to": 7})),
        (Action("revert_config", "config:fraud", {"revision": 11}), ("revert_config", {"revision": 12})),
        (Action("abort_rollout", "variant:canary"), ("shift_traffic", {"traffic": {"stable": 0.8, "canary": 0.2}})),
        (
            Action("shift_traffic", "variant:canary", {"to": "stable"}),
            ("shift_traffic", {"traffic": {"stable": 0.8, "canary": 0.2}}),
        ),
        (Action("disable_variant", "variant:canary"), ("shift_traffic", {"traffic": {"stable": 0.8, "canary": 0.2}})),
        (Action("scale", "variant:stable", {"factor": 3}), ("scale", {"replicas": 2})),
        (
            Action("failover_backend", "provider:primary"),
            ("failover_backend", {"restore": {"backends": ["primary", "fallback"]}}),
        ),
        (
            Action("pin_backend", "provider:primary"),
            ("pin_backend", {"restore": {"backends": ["primary", "fallback"]}}),
        ),
        (Action("quarantine_inputs", "feature:n_tx", {"nulls": True}), ("quarantine_inputs", {"lift": True})),
    ],
    ids=lambda v: v.kind if isinstance(v, Action) else "",
)
def test_inverse_restores_what_the_actuator_saw_before(action: Action, expected: tuple[str, dict[str, Any]]) -> None:
    inv = inverse(action, BEFORE)
    assert inv is not None
    assert (inv.kind, dict(inv.params)) == expected
    assert inv.target == action.target


def test_inverse_of_a_traffic_move_copies_the_traffic() -> None:
    before = {"traffic": {"stable": 0.8, "canary": 0.2}}
    inv = inverse(Action("abort_rollout", "variant:canary"), before)
    assert inv is not None
    before["traffic"]["canary"] = 0.0  # the actuator's record mutated later must not change the inverse
    assert inv.params["traffic"] == {"stable": 0.8, "canary": 0.2}


@pytest.mark.parametrize("kind", ["notify", "restart_runtime"])
def test_notify_and_restart_have_no_inverse(kind: str) -> None:
    assert inverse(Action(kind, "release:fraud"), BEFORE) is None


def test_every_action_kind_has_an_inverse_rule() -> None:
    for kind in ACTIONS:
        inverse(Action(kind, "x:y"), BEFORE)  # never "no inverse for …"


def test_inverse_without_a_recorded_traffic_gives_an_empty_traffic() -> None:
    inv = inverse(Action("disable_variant", "variant:canary"), {})
    assert inv is not None and inv.params == {"traffic": {}}


# ---------------------------------------------------------------------------------------------------- policy


def test_policy_defaults() -> None:
    p = HealingPolicy()
    assert p.mode == "suggest" and p.min_confidence == 0.7 and p.allowed == frozenset(ACTIONS)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"mode": "yolo"}, "healing mode must be one of ['observe', 'suggest', 'auto'], got 'yolo'"),
        ({"min_confidence": 1.5}, "min_confidence must be in [0, 1], got 1.5"),
        ({"min_confidence": -0.1}, "min_confidence must be in [0, 1]"),
        ({"min_confidence": math.nan}, "min_confidence must be in [0, 1]"),
        ({"max_blast_radius": 2.0}, "max_blast_radius must be in [0, 1]"),
        ({"max_actions_per_hour": -1}, "max_actions_per_hour must be >= 0"),
        ({"allowed": frozenset({"abort_rollout", "nuke"})}, "unknown actions ['nuke']"),
        ({"approval": frozenset({"reboot"})}, "unknown actions ['reboot']"),
    ],
)
def test_policy_validation(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        HealingPolicy(**kwargs)
    assert needle in str(e.value)
    if "unknown actions" in needle:
        assert "actions are" in str(e.value) and "abort_rollout" in str(e.value)


def test_policy_round_trips_through_json() -> None:
    p = HealingPolicy(
        mode="auto",
        min_confidence=0.8,
        max_actions_per_hour=5,
        cooldown=timedelta(minutes=3),
        max_blast_radius=0.5,
        allowed=frozenset({"abort_rollout", "rollback_release", "notify"}),
        approval=frozenset({"rollback_release"}),
        verify_after=timedelta(seconds=90),
    )
    d = json.loads(json.dumps(p.to_dict()))
    assert d["allowed"] == sorted(d["allowed"]) and d["cooldown_s"] == 180.0
    assert HealingPolicy.from_dict(d) == p
    assert HealingPolicy.from_dict({}) == HealingPolicy()
    assert HealingPolicy.from_dict(HealingPolicy().to_dict()) == HealingPolicy()


def test_policy_from_dict_rejects_unknown_fields() -> None:
    with pytest.raises(InvalidArgument) as e:
        HealingPolicy.from_dict({"mode": "auto", "cooldown": 60, "blast": 1})
    msg = str(e.value)
    assert "unknown healing policy fields ['blast', 'cooldown']" in msg
    assert "cooldown_s" in msg  # lists the right names


@pytest.mark.parametrize(
    "data",
    [
        {"min_confidence": "high"},
        {"min_confidence": None},
        {"max_actions_per_hour": "three"},
        {"cooldown_s": [60]},
        {"verify_after_s": {"s": 1}},
    ],
)
def test_policy_from_dict_rejects_bad_types(data: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument) as e:
        HealingPolicy.from_dict(data)
    assert str(e.value).startswith("invalid healing policy: ")


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (
            {"mode": "auto", "allowed": "notify"},
            "healing policy 'allowed' must be a list of action names, got 'notify'",
        ),
        ({"approval": "rollback_release"}, "healing policy 'approval' must be a list of action names"),
        ({"allowed": 7}, "healing policy 'allowed' must be a list of action names, got 7"),
        ({"approval": {"notify": True}}, "healing policy 'approval' must be a list of action names"),
    ],
)
def test_policy_from_dict_wants_lists_of_action_names(data: dict[str, Any], needle: str) -> None:
    """A bare string is not iterated into its characters (that gave "unknown actions ['a', 'f', …]")."""
    with pytest.raises(InvalidArgument) as e:
        HealingPolicy.from_dict(data)
    assert needle in str(e.value)


def test_policy_from_dict_accepts_any_sequence_of_action_names() -> None:
    p = HealingPolicy.from_dict({"allowed": ("notify", "scale"), "approval": {"scale"}})
    assert p.allowed == frozenset({"notify", "scale"}) and p.approval == frozenset({"scale"})
    with pytest.raises(InvalidArgument, match=r"unknown actions \['nuke'\]"):
        HealingPolicy.from_dict({"allowed": ["notify", "nuke"]})


# ---------------------------------------------------------------------------------------------------- decide


@pytest.mark.parametrize("verdict", ["inconclusive", "benign"])
def test_decide_records_what_is_not_diagnosed(verdict: str) -> None:
    d = decide(diagnosis(verdict=verdict), AUTO, [], NOW)
    assert (d.outcome, d.action) == ("record", None)
    assert d.reason == f"diagnosis is {verdict}"
    assert d.confidence == 0.9


def test_decide_records_a_diagnosis_without_suggestion_or_hypotheses() -> None:
    d = decide(diagnosis(action=None), AUTO, [], NOW)
    assert (d.outcome, d.action, d.reason) == ("record", None, "no remediation suggested")
    empty = Diagnosis("inconclusive", (), (), None, "nothing")
    d = decide(empty, AUTO, [], NOW)
    assert (d.outcome, d.confidence) == ("record", 0.0)


def test_decide_observe_records_with_the_action() -> None:
    d = decide(diagnosis(), HealingPolicy(mode="observe"), [], NOW)
    assert d.outcome == "record"
    assert d.action == Action("abort_rollout", "variant:canary")
    assert d.reason.startswith("observe mode")
    assert d.checks["mode_auto"] is False


def test_decide_suggest_mode_waits_for_approval_naming_mode_auto() -> None:
    d = decide(diagnosis(), HealingPolicy(mode="suggest"), [], NOW)
    assert d.outcome == "suggest"
    assert d.reason == "waits for approval: mode_auto"
    assert d.action == Action("abort_rollout", "variant:canary")


def test_decide_auto_confident_allowed_executes() -> None:
    d = decide(diagnosis(params={"to": "stable"}, action="shift_traffic"), AUTO, [], NOW)
    assert d.outcome == "execute"
    assert d.action == Action("shift_traffic", "variant:canary", {"to": "stable"})
    assert d.reason == "the canary is the worse variant"
    assert all(d.checks.values()) and len(d.checks) == 7
    json.dumps(d.to_dict())


def test_decide_auto_without_why_gives_a_default_reason() -> None:
    d = decide(diagnosis(why=""), AUTO, [], NOW)
    assert (d.outcome, d.reason) == ("execute", "confident diagnosis within guardrails")


@pytest.mark.parametrize(
    ("policy", "history", "radius", "failed"),
    [
        (HealingPolicy(mode="auto", min_confidence=0.95), [], 1.0, "confident"),
        (AUTO, [ago(2)], 1.0, "cooldown_over"),
        (AUTO, [ago(20), ago(35), ago(50)], 1.0, "rate_ok"),
        (HealingPolicy(mode="auto", max_blast_radius=0.25), [], 0.3, "blast_radius_ok"),
        (HealingPolicy(mode="auto", approval=frozenset({"abort_rollout"})), [], 1.0, "no_approval_needed"),
    ],
    ids=["low_confidence", "cooldown", "rate_limit", "blast_radius", "approval"],
)
def test_decide_guardrails_turn_execution_into_a_suggestion(
    policy: HealingPolicy, history: list[PastAction], radius: float, failed: str
) -> None:
    d = decide(diagnosis(), policy, history, NOW, blast_radius=radius)
    assert d.outcome == "suggest"
    assert d.reason == f"waits for approval: {failed}"
    assert [k for k, ok in d.checks.items() if not ok] == [failed]


def test_decide_guardrail_edges() -> None:
    # exactly min_confidence, exactly the cooldown ago, the max blast radius: allowed
    p = HealingPolicy(mode="auto", min_confidence=0.9, max_blast_radius=0.3)
    assert decide(diagnosis(confidence=0.9), p, [ago(10)], NOW, blast_radius=0.3).outcome == "execute"
    # actions more than an hour ago and notifications count neither for the rate nor the cooldown
    old = [ago(61), ago(70), ago(90), ago(1, "notify"), ago(2, "notify"), ago(3, "notify")]
    assert decide(diagnosis(), AUTO, old, NOW).outcome == "execute"
    # two actions within the hour, each past the cooldown: still under the rate of 3
    assert decide(diagnosis(), AUTO, [ago(15), ago(40)], NOW).outcome == "execute"
    # max_actions_per_hour=0: never on its own
    assert decide(diagnosis(), HealingPolicy(mode="auto", max_actions_per_hour=0), [], NOW).outcome == "suggest"


def test_decide_reports_every_failed_guardrail() -> None:
    p = HealingPolicy(mode="suggest", min_confidence=0.95)
    d = decide(diagnosis(), p, [ago(1)], NOW)
    assert d.reason == "waits for approval: mode_auto, confident, cooldown_over"


def test_decide_records_an_action_the_policy_does_not_allow() -> None:
    p = HealingPolicy(mode="auto", allowed=frozenset({"rollback_release"}))
    d = decide(diagnosis(), p, [], NOW)
    assert d.outcome == "record"
    assert d.reason == "abort_rollout is not allowed by the policy"
    assert d.checks["allowed"] is False
    # not allowed in suggest mode either: nothing for a person to approve
    p = HealingPolicy(mode="suggest", allowed=frozenset({"rollback_release"}))
    assert decide(diagnosis(), p, [], NOW).outcome == "record"


def test_decide_rejects_a_suggestion_with_an_unknown_action() -> None:
    with pytest.raises(InvalidArgument, match="unknown action 'reboot'"):
        decide(diagnosis(action="reboot"), AUTO, [], NOW)


def test_decide_notify_executes_in_suggest_and_auto_modes() -> None:
    """A ``notify`` suggestion changes nothing that serves, so no guardrail but the mode and ``allowed`` applies:
    it executes even at low confidence, within the cooldown and past the rate limit, without approval."""
    note = diagnosis(action="notify", target="labels:fraud", confidence=0.3, why="check the label pipeline")
    for p in (HealingPolicy(mode="suggest"), AUTO, HealingPolicy(mode="auto", approval=frozenset({"notify"}))):
        d = decide(note, p, [ago(1), ago(2), ago(3)], NOW)
        assert d.outcome == "execute"
        assert d.action == Action("notify", "labels:fraud")
        assert d.reason == "check the label pipeline"
        assert d.checks == {"no_model_action": True, "allowed": True}
    assert decide(diagnosis(action="notify", why=""), AUTO, [], NOW).reason == "notify only"


def test_decide_notify_in_observe_mode_only_records() -> None:
    """The module docstring: observe records the diagnosis only (no remediation.executed event, no webhook)."""
    note = diagnosis(action="notify", target="labels:fraud")
    d = decide(note, HealingPolicy(mode="observe"), [], NOW)
    assert (d.outcome, d.action) == ("record", Action("notify", "labels:fraud"))
    assert d.reason.startswith("observe mode")


def test_decide_notify_respects_allowed() -> None:
    note = diagnosis(action="notify", target="labels:fraud")
    p = HealingPolicy(mode="auto", allowed=frozenset({"abort_rollout"}))
    d = decide(note, p, [], NOW)
    assert d.outcome == "record"
    assert d.reason == "notify is not allowed"
    assert d.checks["allowed"] is False


# ---------------------------------------------------------------------------------------------------- verify


def test_verify_helped_when_half_the_gap_closed() -> None:
    v = verify(0.01, 0.11, 0.06)
    assert v.helped and v.reason == "50% of the gap to the baseline closed"
    v = verify(0.01, 0.11, 0.0)
    assert v.helped  # better than the baseline counts as all of the gap
    json.dumps(v.to_dict())


def test_verify_not_helped_when_less_closed() -> None:
    v = verify(0.01, 0.11, 0.07)
    assert not v.helped
    assert v.reason == "40% of the gap to the baseline closed (< 50%)"
    assert (v.before, v.after) == (0.11, 0.07)
    assert not verify(0.01, 0.11, 0.2).helped  # worse after the action


def test_verify_recovered_share() -> None:
    assert not verify(0.0, 1.0, 0.3, recovered_share=0.8).helped
    assert verify(0.0, 1.0, 0.2, recovered_share=0.8).helped


@pytest.mark.parametrize(
    ("during", "after", "reason"),
    [
        (0.11, math.nan, "no measurements since the action"),
        (math.nan, 0.01, "no measurement of the symptom while the incident was open"),
    ],
)
def test_verify_without_measurements_is_not_helped(during: float, after: float, reason: str) -> None:
    v = verify(0.01, during, after)
    assert not v.helped and v.reason == reason


def test_verify_without_a_baseline_needs_the_symptom_halved() -> None:
    assert verify(math.nan, 0.4, 0.19).helped
    assert not verify(math.nan, 0.4, 0.25).helped


def test_verify_already_back_to_baseline() -> None:
    v = verify(0.05, 0.05, 0.2)
    assert v.helped and "already back" in v.reason
    assert verify(0.05, 0.04, 0.2).helped


def test_verify_lower_is_worse() -> None:
    # accuracy: 0.95 → 0.80 during, 0.90 after (two thirds of the gap closed)
    assert verify(0.95, 0.80, 0.90, higher_is_worse=False).helped
    assert not verify(0.95, 0.80, 0.82, higher_is_worse=False).helped
    assert not verify(0.95, 0.80, 0.70, higher_is_worse=False).helped
    # higher during than the baseline is no gap when lower is worse
    assert verify(0.95, 0.97, 0.5, higher_is_worse=False).helped
