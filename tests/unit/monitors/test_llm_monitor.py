"""The ``llm`` monitor kind on hand-built request-log frames: metrics, thresholds, NaN handling, apps without
retrieval, query and topic drift, feedback, params validation."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlpilot.errors import InvalidArgument
from mlpilot.monitors.llm import HIGHER_IS_BETTER, METRICS, OTHER_TOPIC, llm_metrics, llm_outcome, llm_params
from mlpilot.records import MonitorKind, MonitorSpec, MonitorStatus

TOPICS = [f"doc-{i}" for i in range(6)]
EVEN = [1 / 6] * 6


def rows(
    n: int,
    *,
    seed: int = 0,
    topic_p: list[float] | None = None,
    qshift: float = 0.0,
    retrieval: bool = True,
    embedder: bool = True,
    **columns: Any,
) -> pd.DataFrame:
    """``n`` logged chat requests shaped like the request log's (``out.*`` typed columns, one row per request)."""
    rng = np.random.default_rng(seed)
    topics = rng.choice(TOPICS, size=n, p=topic_p or EVEN) if retrieval else np.array([""] * n)
    answer_tokens = rng.integers(5, 60, n)
    frame = pd.DataFrame(
        {
            "ts": pd.date_range("2026-03-02 08:00", periods=n, freq="s", tz="UTC"),
            "row": 0,
            "status": "ok",
            "request_id": [f"r{seed}-{i}" for i in range(n)],
            "latency_s": rng.uniform(0.2, 1.0, n),
            "out.text": "an answer",
            "out.finish_reason": "stop",
            "out.input_tokens": rng.integers(50, 150, n),
            "out.output_tokens": answer_tokens + 2,
            "out.cost": rng.uniform(0.0005, 0.0015, n),
            "out.ttft_s": rng.uniform(0.05, 0.15, n),
            "out.top_score": rng.uniform(0.5, 0.9, n) if retrieval else np.nan,
            "out.topic": topics,
            "out.refusal": 0,
            "out.empty": 0,
            "out.answer_tokens": answer_tokens,
            "out.groundedness": rng.uniform(0.6, 1.0, n) if retrieval else np.nan,
            "out.cited": 1 if retrieval else 0,
            "out.tool_calls": "[]",
            "out.tool_errors": 0,
        }
    )
    for j in range(8):
        frame[f"out.qproj[{j}]"] = rng.normal(qshift if j == 0 else 0.0, 1.0, n) if embedder else np.nan
    for name, value in columns.items():
        frame[name] = value
    return frame


def spec(**params: Any) -> MonitorSpec:
    threshold = params.pop("threshold", None)
    min_rows = params.pop("min_rows", 30)
    return MonitorSpec(kind=MonitorKind.LLM, params=params, threshold=threshold, min_rows=min_rows)


def assert_json_clean(detail: dict[str, Any]) -> None:
    json.dumps(detail, allow_nan=False)  # raises on NaN / inf anywhere


# ------------------------------------------------------------------------------------------------ metrics


def test_metrics_of_a_small_window_are_exact() -> None:
    f = pd.DataFrame(
        {
            "row": 0,
            "status": ["ok", "ok", "ok", "error"],
            "request_id": ["a", "b", "c", "d"],
            "latency_s": [1.0, 2.0, 3.0, 9.0],
            "out.input_tokens": [100, 200, 300, np.nan],
            "out.output_tokens": [10, 20, 30, np.nan],
            "out.cost": [0.001, np.nan, 0.003, np.nan],  # b had no price
            "out.ttft_s": [0.1, 0.3, np.nan, np.nan],  # c did not stream
            "out.top_score": [0.8, 0.6, np.nan, np.nan],  # c retrieved nothing
            "out.topic": ["doc-1", "doc-2", "", None],
            "out.refusal": [0, 1, 1, np.nan],
            "out.empty": [0, 0, 1, np.nan],
            "out.answer_tokens": [8, 18, 0, np.nan],
            "out.groundedness": [1.0, 0.5, np.nan, np.nan],
            "out.cited": [1, 0, 0, np.nan],
            "out.tool_calls": [
                json.dumps([{"name": "t", "error": None}, {"name": "t", "error": "boom"}]),
                json.dumps([{"name": "t", "error": None}, {"name": "w", "client": True}]),
                "[]",
                None,
            ],
            "out.tool_errors": [1, 0, 0, np.nan],
        }
    )
    m = llm_metrics(f)
    assert list(m) == list(METRICS)
    assert m["requests"] == 3 and m["error_rate"] == pytest.approx(0.25)
    assert m["input_tokens_mean"] == pytest.approx(200.0) and m["output_tokens_mean"] == pytest.approx(20.0)
    assert m["tokens_p95"] == pytest.approx(np.percentile([110, 220, 330], 95))
    assert m["cost_mean"] == pytest.approx(0.002) and m["cost_total"] == pytest.approx(0.004)
    assert m["latency_p50"] == pytest.approx(2.0)  # the failed request's 9 s does not count
    assert m["latency_p95"] == pytest.approx(np.percentile([1.0, 2.0, 3.0], 95))
    assert m["ttft_p50"] == pytest.approx(0.2)
    assert m["top_score_mean"] == pytest.approx(0.7)
    assert m["refusal_rate"] == pytest.approx(2 / 3) and m["empty_rate"] == pytest.approx(1 / 3)
    assert m["answer_tokens_mean"] == pytest.approx(26 / 3)
    assert m["groundedness_mean"] == pytest.approx(0.75)
    assert m["citation_rate"] == pytest.approx(0.5)  # over a and b, which retrieved
    assert m["tool_error_rate"] == pytest.approx(1 / 3)  # 1 of the 3 calls the app ran; the client call is not one
    assert m["feedback_mean"] is None and m["feedback_n"] is None  # no feedback frame given


def test_nan_never_leaks_and_missing_columns_are_none() -> None:
    f = rows(40, **{"out.cost": np.nan, "out.ttft_s": np.nan})  # no price, nothing streamed
    f = f.drop(columns=["out.tool_calls"])
    out = llm_outcome(spec(max={"cost_mean": 0.001, "ttft_p95": 0.5}), f)
    m = out.detail["metrics"]
    assert m["cost_mean"] is None and m["cost_total"] is None and m["ttft_p50"] is None and m["ttft_p95"] is None
    assert m["tool_error_rate"] is None
    # bounds on metrics without values are not breaches; they are listed as unevaluated
    assert out.status is MonitorStatus.OK and sorted(out.detail["unevaluated"]) == ["cost_mean", "ttft_p95"]
    assert_json_clean(out.detail)


def test_an_app_without_retrieval_or_embedder() -> None:
    past, now = rows(60, seed=1, retrieval=False, embedder=False), rows(60, seed=2, retrieval=False, embedder=False)
    out = llm_outcome(spec(min={"groundedness_mean": 0.5, "top_score_mean": 0.3}), now, reference=past)
    m = out.detail["metrics"]
    assert m["top_score_mean"] is None and m["groundedness_mean"] is None and m["citation_rate"] is None
    assert out.status is MonitorStatus.OK, out.message
    assert out.detail["value_metric"] == "error_rate" and out.value == 0.0  # the fallback value
    assert "retrieves nothing" in out.detail["drift"]["topic"]["skipped"]
    assert "query embedding" in out.detail["drift"]["query"]["skipped"]
    assert_json_clean(out.detail)


def test_no_data_under_min_rows_counts_failed_requests() -> None:
    f = rows(20)
    assert llm_outcome(spec(), f).status is MonitorStatus.NO_DATA
    failed = rows(15, seed=3, status="error")
    out = llm_outcome(spec(min_rows=30), pd.concat([f, failed], ignore_index=True))
    assert out.status is MonitorStatus.OK and out.detail["metrics"]["requests"] == 20
    assert out.detail["metrics"]["error_rate"] == pytest.approx(15 / 35)


# ------------------------------------------------------------------------------------------------ thresholds

BOUNDED = [m for m in METRICS if m not in ("feedback_mean", "feedback_n", "tool_error_rate")]


@pytest.mark.parametrize("metric", BOUNDED)
def test_each_bound_alerts_only_when_crossed(metric: str) -> None:
    f = rows(50, seed=4)
    value = llm_metrics(f)[metric]
    assert value is not None
    bound = "min" if metric in HIGHER_IS_BETTER else "max"
    worse = 1.01 if bound == "min" else 0.99  # a limit the window is just on the wrong side of
    bad_limit = value * worse if value else (0.5 if bound == "min" else -0.5)
    crossed = llm_outcome(spec(**{bound: {metric: bad_limit}}, drift=False), f)
    assert crossed.status is MonitorStatus.ALERT and crossed.message.startswith(metric)
    assert crossed.detail["breaches"] == [{"metric": metric, "value": pytest.approx(value), bound: bad_limit}]
    good_limit = value * (2 - worse) if value else (-0.5 if bound == "min" else 0.5)
    assert llm_outcome(spec(**{bound: {metric: good_limit}}, drift=False), f).status is MonitorStatus.OK


def test_tool_error_rate_bound() -> None:
    calls = json.dumps([{"name": "lookup", "error": None}, {"name": "lookup", "error": "timeout"}])
    f = rows(40, **{"out.tool_calls": calls, "out.tool_errors": 1})
    out = llm_outcome(spec(max={"tool_error_rate": 0.1}), f)
    assert out.status is MonitorStatus.ALERT and "tool_error_rate 0.5 > 0.1" in out.message


def test_message_names_every_problem() -> None:
    past = rows(300, seed=5)
    now = rows(300, seed=6, topic_p=[0.5, 0.3, 0.05, 0.05, 0.05, 0.05], **{"out.groundedness": 0.31})
    out = llm_outcome(spec(min={"groundedness_mean": 0.5}, max={"refusal_rate": 0.2}), now, reference=past)
    assert out.status is MonitorStatus.ALERT
    assert out.message.startswith("groundedness_mean 0.31 < 0.5; topic drift (p=")
    assert "refusal" not in out.message and "query drift" not in out.message
    assert out.value == pytest.approx(0.31) and out.detail["value_metric"] == "groundedness_mean"


def test_flat_cli_keys_and_threshold_on_the_value_metric() -> None:
    f = rows(40, **{"out.groundedness": 0.4, "out.cost": 0.01})
    flat = MonitorSpec(kind=MonitorKind.LLM, params={"max.cost_mean": 0.002})
    assert llm_params(flat).max == {"cost_mean": 0.002}
    assert "cost_mean 0.01 > 0.002" in llm_outcome(flat, f).message
    # the threshold bounds params.value in its bad direction: a minimum for groundedness, a maximum for cost
    low = spec(value="groundedness_mean", threshold=0.5)
    assert llm_params(low).min == {"groundedness_mean": 0.5}
    assert llm_outcome(low, f).status is MonitorStatus.ALERT
    cheap = spec(value="cost_mean", threshold=0.05)
    assert llm_params(cheap).max == {"cost_mean": 0.05}
    out = llm_outcome(cheap, f)
    assert out.status is MonitorStatus.OK and out.value == pytest.approx(0.01)


@pytest.mark.parametrize(
    ("params", "threshold", "match"),
    [
        ({"max": {"cost_per_request": 1}}, None, "unknown llm metric 'cost_per_request'"),
        ({"min.groundness_mean": 0.5}, None, "unknown llm metric 'groundness_mean'"),
        ({"maximum": {"cost_mean": 1}}, None, "unknown llm monitor param 'maximum'"),
        ({"max": {"cost_mean": "cheap"}}, None, "finite number"),
        ({"max": {"cost_mean": True}}, None, "finite number"),
        ({"max": 0.5}, None, "must map metrics"),
        ({"value": "quality"}, None, "unknown llm metric 'quality'"),
        ({"drift": "yes"}, None, "drift must be true or false"),
        ({"alpha": 1.5}, None, "alpha"),
        ({"query_test": "magic"}, None, "query_test"),
        ({"max_topics": 0}, None, "max_topics"),
        ({}, 0.5, r"threshold bounds params\.value"),
        ({"value": "cost_mean", "max": {"cost_mean": 0.1}}, 0.2, r"contradicts params\.max\.cost_mean"),
    ],
)
def test_bad_params_are_invalid(params: dict[str, Any], threshold: float | None, match: str) -> None:
    s = MonitorSpec(kind=MonitorKind.LLM, params=params, threshold=threshold)
    with pytest.raises(InvalidArgument, match=match):
        llm_params(s)
    with pytest.raises(InvalidArgument, match=match):
        llm_outcome(s, rows(40))


# ------------------------------------------------------------------------------------------------ drift


def test_topic_drift_when_the_topic_mix_shifts_and_not_otherwise() -> None:
    past = rows(400, seed=10)
    same = llm_outcome(spec(), rows(400, seed=11), reference=past)
    assert same.status is MonitorStatus.OK and same.detail["drift"]["topic"]["drifted"] is False
    assert same.detail["drift"]["topic"]["p_value"] > 0.05
    shifted = rows(400, seed=12, topic_p=[0.05, 0.05, 0.05, 0.05, 0.2, 0.6])
    out = llm_outcome(spec(), shifted, reference=past)
    topic = out.detail["drift"]["topic"]
    assert out.status is MonitorStatus.ALERT and topic["drifted"] is True and topic["p_value"] < 0.001
    assert "topic drift" in out.message and "query drift" not in out.message
    assert next(iter(topic["top_shifts"])) == "doc-5"  # the biggest change first
    assert topic["top_shifts"]["doc-5"]["current"] == pytest.approx(0.6, abs=0.06)


def test_unseen_and_rare_topics_pool_into_other() -> None:
    past = rows(300, seed=13)
    now = rows(300, seed=14, **{"out.topic": [f"new-{i % 40}" for i in range(300)]})  # documents never retrieved
    topic = llm_outcome(spec(max_topics=3), now, reference=past).detail["drift"]["topic"]
    assert topic["drifted"] is True and topic["topics"] == 3
    assert topic["top_shifts"][OTHER_TOPIC]["current"] == pytest.approx(1.0)


@pytest.mark.parametrize("test", ["ks", "mmd"])
def test_query_drift_on_the_projection_and_not_otherwise(test: str) -> None:
    past = rows(300, seed=20)
    same = llm_outcome(spec(query_test=test), rows(300, seed=21), reference=past)
    assert same.detail["drift"]["query"]["drifted"] is False and same.status is MonitorStatus.OK
    out = llm_outcome(spec(query_test=test), rows(300, seed=22, qshift=0.6), reference=past)
    query = out.detail["drift"]["query"]
    assert query["test"] == test and query["drifted"] is True and query["p_value"] < 0.01
    assert out.status is MonitorStatus.ALERT and "query drift" in out.message and "topic" not in out.message
    if test == "ks":
        assert [d for d, r in query["dimensions"].items() if r["drifted"]] == ["qproj[0]"]


def test_reference_without_the_out_prefix_and_drift_off() -> None:
    past = rows(300, seed=30)
    bare = past[[c for c in past.columns if c.startswith("out.")]].rename(columns=lambda c: c[4:])  # a dataset
    now = rows(300, seed=31, qshift=1.0)
    assert llm_outcome(spec(), now, reference=bare).detail["drift"]["query"]["drifted"] is True
    off = llm_outcome(spec(drift=False), now, reference=past)
    assert off.status is MonitorStatus.OK and off.detail["drift"] == {"enabled": False}
    assert llm_outcome(spec(), now).detail["drift"]["skipped"] == "no reference window"


def test_too_few_reference_rows_skip_drift() -> None:
    out = llm_outcome(spec(), rows(100, seed=32, qshift=2.0), reference=rows(10, seed=33))
    assert out.status is MonitorStatus.OK
    assert "need 30 each" in out.detail["drift"]["query"]["skipped"]
    assert "need 30 each" in out.detail["drift"]["topic"]["skipped"]


# ------------------------------------------------------------------------------------------------ feedback


def test_feedback_mean_over_the_window_requests() -> None:
    f = rows(40, seed=40)
    f.loc[39, "status"] = "error"
    ids = list(f["request_id"])
    fb = pd.DataFrame(
        [
            {"request_id": ids[0], "row": 0, "kind": "label", "value": 0, "ts": 1.0},
            {"request_id": ids[0], "row": 0, "kind": "label", "value": 1, "ts": 2.0},  # corrected: latest wins
            {"request_id": ids[1], "row": 0, "kind": "score", "value": 0.5, "ts": 1.0},
            {"request_id": ids[2], "row": 0, "kind": "label", "value": False, "ts": 1.0},  # thumbs down
            {"request_id": ids[3], "row": 0, "kind": "label", "value": "great", "ts": 1.0},  # not a number: ignored
            {"request_id": ids[39], "row": 0, "kind": "label", "value": 0, "ts": 1.0},  # a failed request
            {"request_id": "elsewhere", "row": 0, "kind": "label", "value": 0, "ts": 1.0},  # not in the window
        ]
    )
    out = llm_outcome(spec(min={"feedback_mean": 0.6}), f, feedback=fb)
    m = out.detail["metrics"]
    assert m["feedback_n"] == 3 and m["feedback_mean"] == pytest.approx(0.5)
    assert out.status is MonitorStatus.ALERT and "feedback_mean 0.5 < 0.6" in out.message
    assert out.detail["breaches"] == [{"metric": "feedback_mean", "value": 0.5, "min": 0.6}]
    empty = llm_outcome(spec(min={"feedback_mean": 0.6}), f, feedback=fb.iloc[:0])
    assert empty.detail["metrics"]["feedback_n"] == 0 and empty.detail["metrics"]["feedback_mean"] is None
    assert empty.status is MonitorStatus.OK and empty.detail["unevaluated"] == ["feedback_mean"]
