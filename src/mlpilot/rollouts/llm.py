"""Rollout analyses for LLM apps: a per-request LLM signal, the recorded evals, and the judged shadow win rate.

Pure functions of the evidence, like :mod:`mlpilot.rollouts.analyses` (which registers them):

* ``llm_metric`` compares the mean of one per-request signal of the request log (:data:`LLM_METRICS`) with the
  non-inferiority rule of ``performance``: a confidence sequence on the difference, ``margin`` in the metric's
  units (0.05 = five points of groundedness; 0.0001 of cost per request …); lower-is-better metrics are flipped.
* ``eval`` reads what ``mlpilot eval APP:VERSION DATASET`` recorded on each app version (the ``eval/<dataset>``
  tag): it passes when the candidate's mean reaches ``min`` and/or has not dropped more than ``max_drop`` below
  the baseline's; it is inconclusive (the rollout waits) until the candidate has been evaluated on the dataset.
* ``win_rate`` (shadow phase): an LLM judge compared the baseline's and the candidate's answers to the same
  requests (both orders, to cancel position bias); the candidate's win rate counts ties as half. It passes when
  the Wilson lower bound is at least ``min_win_rate``, fails when the upper bound is below it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from mlpilot.records import AnalysisSpec, Verdict
from mlpilot.rollouts.analyses import AnalysisResult, ArmData, Comparison, _compare_scores, _result, _too_few

__all__ = ["LLM_METRICS", "arm_llm_values", "eval_analysis", "llm_frame", "llm_metric_analysis", "win_rate_analysis"]

#: metric -> (request-log column, higher is better)
LLM_METRICS: dict[str, tuple[str, bool]] = {
    "groundedness": ("out.groundedness", True),
    "citation_rate": ("out.cited", True),
    "refusal_rate": ("out.refusal", False),
    "empty_rate": ("out.empty", False),
    "top_score": ("out.top_score", True),
    "cost": ("out.cost", False),
    "input_tokens": ("out.input_tokens", False),
    "output_tokens": ("out.output_tokens", False),
    "answer_tokens": ("out.answer_tokens", False),
    "ttft_s": ("out.ttft_s", False),
    "tool_errors": ("out.tool_errors", False),
}


def llm_frame(ok_requests: pd.DataFrame) -> pd.DataFrame | None:
    """The LLM signals of an arm's answered requests (one row each, columns named as :data:`LLM_METRICS`), or
    None when the rows are not an LLM app's."""
    if "out.finish_reason" not in ok_requests.columns:
        return None
    cols = {col: name for name, (col, _) in LLM_METRICS.items() if col in ok_requests.columns}
    return ok_requests[list(cols)].rename(columns=cols).apply(pd.to_numeric, errors="coerce").reset_index(drop=True)


def _values(arm: ArmData, metric: str) -> np.ndarray:
    if arm.llm is None or metric not in arm.llm.columns:
        return np.empty(0)
    v = arm.llm[metric].to_numpy(dtype=np.float64)
    return v[np.isfinite(v)]


def arm_llm_values(arm: ArmData) -> dict[str, float | None]:
    """Means of the LLM signals (for custom expressions): ``candidate.groundedness >= baseline.groundedness - 0.05``."""
    out: dict[str, float | None] = {}
    for name in LLM_METRICS:
        v = _values(arm, name)
        out[name] = float(v.mean()) if v.size else None
    return out


def llm_metric_analysis(spec: AnalysisSpec, data: Comparison, alpha: float, p: dict[str, Any]) -> AnalysisResult:
    metric = p["metric"]
    higher = LLM_METRICS[metric][1]
    sign = 1.0 if higher else -1.0
    vb, vc = _values(data.baseline, metric), _values(data.candidate, metric)
    strata = [(sign * _values(x.baseline, metric), sign * _values(x.candidate, metric)) for x in data.strata or []]
    values = (float(vb.mean()) if vb.size else math.nan, float(vc.mean()) if vc.size else math.nan)
    return _compare_scores(
        spec,
        alpha,
        p,
        sign * vb,
        sign * vc,
        metric,
        unit="answers",
        values=values,
        flip=not higher,
        metric=metric,
        strata=strata or None,
    )


def eval_analysis(spec: AnalysisSpec, data: Comparison, alpha: float, p: dict[str, Any]) -> AnalysisResult:
    dataset, metric = p["dataset"], p["metric"]
    floor, max_drop = p["min"], p["max_drop"]
    if floor is None and max_drop is None:
        max_drop = 0.0
    cand = ((data.candidate.evals.get(dataset) or {}).get("metrics") or {}).get(metric) or {}
    base = ((data.baseline.evals.get(dataset) or {}).get("metrics") or {}).get(metric) or {}
    statistics: dict[str, Any] = {
        "dataset": dataset,
        "metric": metric,
        "candidate": cand or None,
        "baseline": base or None,
    }
    p = {**p, "max_drop": max_drop}
    if cand.get("mean") is None:
        message = (
            f"inconclusive: no {metric} of the candidate on {dataset} recorded yet "
            f"(run `mlpilot eval <candidate app version> {dataset}`)"
        )
        return _result(spec, Verdict.INCONCLUSIVE, message, statistics, p, alpha)
    c_mean = float(cand["mean"])
    problems: list[str] = []
    notes = [f"candidate {metric} {c_mean:.3f} on {dataset}"]
    if floor is not None:
        (notes if c_mean >= floor else problems).append(f"{'≥' if c_mean >= floor else '<'} the floor {floor:g}")
    if max_drop is not None:
        if base.get("mean") is None:
            if floor is None:
                message = f"inconclusive: the baseline has no {metric} on {dataset} to compare with"
                return _result(spec, Verdict.INCONCLUSIVE, message, statistics, p, alpha)
        else:
            drop = float(base["mean"]) - c_mean
            statistics["drop"] = drop
            text = f"baseline {float(base['mean']):.3f} (drop {drop:+.3f}, at most {max_drop:g})"
            (notes if drop <= max_drop else problems).append(text)
    verdict = Verdict.FAIL if problems else Verdict.PASS
    message = ", ".join(notes + problems) + f" → {verdict.value}"
    return _result(spec, verdict, message, statistics, p, alpha)


def win_rate_analysis(spec: AnalysisSpec, data: Comparison, alpha: float, p: dict[str, Any]) -> AnalysisResult:
    from mlpilot.llm.judge import win_rate

    judged = list(data.judgments or [])
    valid = [j for j in judged if j != "invalid"]
    if few := _too_few(spec, "judged pairs", len(valid), len(valid), p, alpha):
        return few
    rate = win_rate(valid, of="b", confidence=1.0 - alpha)  # b is the candidate (the judge saw baseline as a)
    floor = float(p["min_win_rate"])
    verdict = Verdict.PASS if rate.low >= floor else Verdict.FAIL if rate.high < floor else Verdict.INCONCLUSIVE
    statistics = {
        "pairs": len(judged),
        "wins": rate.wins,
        "ties": rate.ties,
        "losses": rate.losses,
        "invalid": len(judged) - len(valid),
        "win_rate": rate.rate,
        "low": rate.low,
        "high": rate.high,
    }
    word = {Verdict.PASS: "≥", Verdict.FAIL: "<"}.get(verdict, "straddles")
    message = (
        f"candidate win rate {rate.rate:.3f} over {len(valid)} judged pairs ({rate.wins} wins, {rate.ties} ties, "
        f"{rate.losses} losses), interval [{rate.low:.3f}, {rate.high:.3f}] {word} {floor:g} → {verdict.value}"
    )
    return _result(spec, verdict, message, statistics, p, alpha)
