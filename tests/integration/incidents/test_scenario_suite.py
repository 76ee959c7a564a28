"""The scenario suite gates the incident loop: a fixed-seed subset of ``bench/incidents.py`` (every fault at medium
severity, seed 0, and two seeds of every control) must keep the acceptance bars of the full suite. The full suite
(3 severities x 5 seeds + 60 controls, with baselines) is the benchmark; this subset is its regression test."""

from __future__ import annotations

import pytest

from mlpilot.sim.runner import run_one
from mlpilot.sim.scenarios import CONTROLS, FAULTS, by_name
from mlpilot.sim.scorecard import Job, per_scenario, run_suite, score


@pytest.mark.slow
def test_fixed_seed_subset_keeps_the_acceptance_bars() -> None:
    js = [Job(s.name, "medium", 0, False) for s in FAULTS] + [
        Job(c.name, "medium", seed, False) for c in CONTROLS for seed in (0, 1)
    ]
    results = run_suite(js, workers=2)
    card = score(results)
    table = "\n".join(str(row) for row in per_scenario(results))
    assert card["fault_runs"] == len(FAULTS) >= 18 and card["control_runs"] == 2 * len(CONTROLS), table
    assert card["detection_medium"] == 1.0, table
    assert card["controls_paged"] == 0.0, table
    assert card["harmful_actions"] == 0 and card["harmful_runs"] == 0, table
    assert card["correct_abstention"] >= 0.95, table
    assert card["engine"]["ac@1"] >= 0.85, table
    assert card["engine"]["ac@3"] >= 0.94, table  # one miss in 18 is 0.944: the full suite's bar is 0.97 over 270
    assert card["median_time_to_mitigate_min"] is not None and card["median_time_to_mitigate_min"] <= 5, table
    assert card["auto_mitigated"] >= 0.7, table


def test_a_null_spike_is_detected_diagnosed_and_quarantined() -> None:
    r = run_one(by_name("null_spike"), "medium", 0, baselines=False)
    assert r.detected and r.detected_minute is not None and r.detected_minute >= r.fault_minute
    assert r.ranking[0] == r.truth == "feature:" + r.truth.split(":", 1)[1]
    assert r.diagnosis is not None and r.diagnosis.hypotheses[0].cause == "null_spike"
    [act] = [a for a in r.actions if not a.reverted]
    assert act.action.kind == "quarantine_inputs" and act.helped is True
    assert r.mitigated_minute is not None and r.mitigated_minute - r.detected_minute <= 5


def test_benign_drift_and_an_unrelated_deploy_page_nobody_and_change_nothing() -> None:
    r = run_one(by_name("control_benign_drift_and_deploy"), "medium", 0, baselines=False)
    assert r.control and not r.paged and r.actions == []
