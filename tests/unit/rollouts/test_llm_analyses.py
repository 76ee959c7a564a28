"""The LLM rollout gates: a per-request LLM signal, the recorded evals, the judged shadow win rate."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlpilot.errors import InvalidArgument
from mlpilot.records import AnalysisKind, AnalysisSpec, Verdict
from mlpilot.rollouts.analyses import ArmData, Comparison, arm_values, check_params, run_analysis
from mlpilot.rollouts.expressions import parse_expression

K = AnalysisKind


def spec(kind: AnalysisKind, min_samples: int = 50, **params: Any) -> AnalysisSpec:
    return AnalysisSpec(kind=kind, params=params, min_samples=min_samples)


def llm_arm(name: str, n: int, rng: np.random.Generator, *, grounded: float = 0.8, cost: float = 0.001) -> ArmData:
    frame = pd.DataFrame(
        {
            "groundedness": np.clip(rng.normal(grounded, 0.1, n), 0, 1),
            "cost": np.abs(rng.normal(cost, cost / 10, n)),
            "refusal_rate": (rng.random(n) < 0.05).astype(float),
        }
    )
    return ArmData(name, requests=n, llm=frame)


def test_llm_metric_fails_a_less_grounded_candidate_and_passes_an_equal_one() -> None:
    rng = np.random.default_rng(1)
    base = llm_arm("a", 600, rng, grounded=0.8)
    worse = run_analysis(
        spec(K.LLM_METRIC, metric="groundedness"), Comparison(base, llm_arm("b", 600, rng, grounded=0.6))
    )
    assert worse.verdict is Verdict.FAIL and "groundedness" in worse.message
    same = run_analysis(
        spec(K.LLM_METRIC, metric="groundedness", margin=0.05), Comparison(base, llm_arm("b", 600, rng, grounded=0.8))
    )
    assert same.verdict is Verdict.PASS
    assert same.statistics["groundedness_baseline"] == pytest.approx(0.8, abs=0.02)


def test_llm_metric_lower_is_better_for_cost() -> None:
    rng = np.random.default_rng(2)
    base = llm_arm("a", 400, rng, cost=0.001)
    dearer = run_analysis(
        spec(K.LLM_METRIC, metric="cost", margin=0.00005), Comparison(base, llm_arm("b", 400, rng, cost=0.002))
    )
    assert dearer.verdict is Verdict.FAIL
    cheaper = run_analysis(
        spec(K.LLM_METRIC, metric="cost", margin=0.00005), Comparison(base, llm_arm("b", 400, rng, cost=0.0005))
    )
    assert cheaper.verdict is Verdict.PASS


def test_llm_metric_is_inconclusive_without_llm_rows() -> None:
    r = run_analysis(spec(K.LLM_METRIC, metric="groundedness"), Comparison(ArmData("a", 100), ArmData("b", 100)))
    assert r.verdict is Verdict.INCONCLUSIVE


def _evals(mean: float | None) -> dict[str, Any]:
    if mean is None:
        return {}
    return {"qa:1": {"dataset": "qa:1", "rows": 20, "metrics": {"token_f1": {"mean": mean, "n": 20}}}}


@pytest.mark.parametrize(
    ("base", "cand", "params", "verdict"),
    [
        (0.7, None, {"min": 0.5}, Verdict.INCONCLUSIVE),  # the candidate was not evaluated yet
        (0.7, 0.72, {}, Verdict.PASS),  # default: no drop from the baseline
        (0.7, 0.60, {}, Verdict.FAIL),
        (0.7, 0.66, {"max_drop": 0.05}, Verdict.PASS),
        (None, 0.66, {"min": 0.6}, Verdict.PASS),  # a floor needs no baseline
        (None, 0.55, {"min": 0.6}, Verdict.FAIL),
        (None, 0.66, {"max_drop": 0.05}, Verdict.INCONCLUSIVE),  # nothing to compare with
        (0.9, 0.65, {"min": 0.6, "max_drop": 0.1}, Verdict.FAIL),  # above the floor but dropped too much
    ],
)
def test_eval_gate(base: float | None, cand: float | None, params: dict[str, Any], verdict: Verdict) -> None:
    data = Comparison(ArmData("a", 0, evals=_evals(base)), ArmData("b", 0, evals=_evals(cand)))
    r = run_analysis(spec(K.EVAL, dataset="qa:1", metric="token_f1", **params), data)
    assert r.verdict is verdict, r.message
    if cand is None:
        assert "mlpilot eval" in r.message


@pytest.mark.parametrize(
    ("judgments", "verdict"),
    [
        (["b"] * 40 + ["a"] * 5 + ["tie"] * 5, Verdict.PASS),
        (["a"] * 40 + ["b"] * 5 + ["tie"] * 5, Verdict.FAIL),
        (["a", "b"] * 25, Verdict.INCONCLUSIVE),
        (["b"] * 10, Verdict.INCONCLUSIVE),  # fewer judged pairs than min_samples
        (["b"] * 45 + ["invalid"] * 20, Verdict.INCONCLUSIVE),  # invalid verdicts do not count as pairs
    ],
)
def test_win_rate_gate(judgments: list[str], verdict: Verdict) -> None:
    data = Comparison(ArmData("a"), ArmData("b"), judgments=judgments)
    judge = {"base_url": "http://127.0.0.1:9/v1", "model": "judge"}
    r = run_analysis(spec(K.WIN_RATE, judge=judge), data)
    assert r.verdict is verdict, r.message
    if verdict is not Verdict.INCONCLUSIVE or "straddles" in r.message:
        assert r.statistics["low"] <= r.statistics["win_rate"] <= r.statistics["high"]


@pytest.mark.parametrize(
    ("kind", "params", "needle"),
    [
        (K.LLM_METRIC, {"metric": "vibes"}, "metric"),
        (K.LLM_METRIC, {}, "metric"),
        (K.EVAL, {"metric": "token_f1"}, "dataset"),
        (K.EVAL, {"dataset": "qa:1", "metric": "bleu"}, "metric"),
        (K.WIN_RATE, {"judge": "gpt"}, "judge"),
        (K.WIN_RATE, {"judge": {"base_url": "ftp://x", "model": "m"}}, "judge"),
        (K.WIN_RATE, {"judge": {"base_url": "http://x/v1", "model": "m"}, "min_win_rate": 2}, "min_win_rate"),
    ],
)
def test_bad_params_are_refused(kind: AnalysisKind, params: dict[str, Any], needle: str) -> None:
    with pytest.raises(InvalidArgument, match=needle):
        check_params(spec(kind, **params))


def test_custom_expressions_see_llm_means() -> None:
    rng = np.random.default_rng(3)
    b, c = llm_arm("a", 100, rng, grounded=0.8), llm_arm("b", 100, rng, grounded=0.5)
    values = arm_values(c)
    assert values["groundedness"] == pytest.approx(0.5, abs=0.05) and values["citation_rate"] is None
    parse_expression("candidate.groundedness >= baseline.groundedness - 0.05")
    r = run_analysis(
        spec(K.CUSTOM, expression="candidate.groundedness >= baseline.groundedness - 0.05"), Comparison(b, c)
    )
    assert r.verdict is Verdict.FAIL
