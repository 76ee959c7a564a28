"""The ``llm`` monitor kind: what an LLM app's logged requests say about cost, speed, retrieval and answers.

A pure function of DataFrames (no store, no clock, no I/O), like :mod:`mlpilot.monitors.kinds`. It reads the typed
``out.*`` columns the request log keeps for every chat request (:mod:`mlpilot.serving.llmlog`), the feedback
scores joined by request id, and optionally a reference window of the same columns (for query and topic drift).

Params (``MonitorSpec.params``)::

    {"max": {"cost_mean": 0.002, "refusal_rate": 0.2, "latency_p95": 3.0},
     "min": {"groundedness_mean": 0.5, "feedback_mean": 0.6},
     "value": "groundedness_mean",     # the metric of the time series (default: see below)
     "drift": true,                    # query and topic drift against the reference (default true)
     "alpha": 0.05,                    # significance of each drift test
     "query_test": "ks",               # "ks" (per dimension, Holm-corrected) or "mmd" (joint, permutation test)
     "max_topics": 20}                 # the reference's most frequent topics kept; the rest pooled as "(other)"

``max.METRIC=X`` / ``min.METRIC=X`` keys are the same as the nested form (handy with ``--param`` on the CLI).
``spec.threshold`` is a bound on ``params.value`` (which must then be named) in the metric's bad direction: a
minimum for :data:`HIGHER_IS_BETTER` metrics, a maximum for the others.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlpilot.errors import InvalidArgument
from mlpilot.monitoring.results import plain
from mlpilot.monitors.kinds import Outcome, output_columns
from mlpilot.records import MonitorSpec, MonitorStatus

__all__ = ["HIGHER_IS_BETTER", "METRICS", "OTHER_TOPIC", "LLMParams", "llm_metrics", "llm_outcome", "llm_params"]

#: every metric of a window, in report order. Latencies are in seconds; rates are shares of the ok requests.
METRICS: tuple[str, ...] = (
    "requests",  # answered (ok) requests: the base of every other metric but error_rate
    "error_rate",  # failed requests / all requests
    "input_tokens_mean",
    "output_tokens_mean",
    "tokens_p95",  # input + output tokens per request
    "cost_mean",  # over the requests with a price (NaN cost = no price)
    "cost_total",
    "latency_p50",
    "latency_p95",
    "ttft_p50",  # over the streamed requests
    "ttft_p95",
    "top_score_mean",  # best retrieval similarity, over the requests that retrieved
    "refusal_rate",  # refusals (empty answers included)
    "empty_rate",
    "answer_tokens_mean",
    "groundedness_mean",  # over the requests with retrieved context
    "citation_rate",  # answers citing a retrieved document, over the requests that retrieved
    "tool_error_rate",  # failed tool calls / tool calls the app ran
    "feedback_mean",  # feedback labels or scores (1 = thumbs up, 0 = thumbs down, or any number)
    "feedback_n",
)
#: the metrics where a low value is bad (``spec.threshold`` is a minimum for these, a maximum for the others).
HIGHER_IS_BETTER = frozenset(
    {"requests", "top_score_mean", "groundedness_mean", "citation_rate", "feedback_mean", "feedback_n"}
)
#: the pooled topic of the reference's rare topics (and of topics it never saw).
OTHER_TOPIC = "(other)"
QUERY_TESTS = ("ks", "mmd")
_PARAMS = ("max", "min", "value", "drift", "alpha", "query_test", "max_topics")


@dataclass(frozen=True)
class LLMParams:
    """Validated params of an ``llm`` monitor (``spec.threshold`` already folded into ``max``/``min``)."""

    max: dict[str, float]
    min: dict[str, float]
    value: str | None = None
    drift: bool = True
    alpha: float = 0.05
    query_test: str = "ks"
    max_topics: int = 20


def _number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def _metric(name: Any, where: str) -> str:
    if name not in METRICS:
        raise InvalidArgument(f"unknown llm metric {name!r} in {where}; metrics: {', '.join(METRICS)}")
    return str(name)


def llm_params(spec: MonitorSpec) -> LLMParams:
    """Validate an ``llm`` monitor's params (see the module doc).

    Raises:
        InvalidArgument: an unknown param or metric, a bound that is not a finite number, a bad option, or a
            ``threshold`` without ``params.value`` (or contradicting an explicit bound of that metric).
    """
    bounds: dict[str, dict[str, float]] = {"max": {}, "min": {}}
    p = spec.params
    for key, given in p.items():
        bound, dot, name = key.partition(".")
        if dot and bound in bounds:
            items: Mapping[str, Any] = {name: given}
        elif key in bounds:
            if not isinstance(given, Mapping):
                raise InvalidArgument(f'llm params.{key} must map metrics to limits, e.g. {{"cost_mean": 0.002}}')
            items = given
        elif key in _PARAMS:
            continue
        else:
            raise InvalidArgument(
                f"unknown llm monitor param {key!r}; params: {', '.join(_PARAMS)}, max.METRIC, min.METRIC"
            )
        for metric, limit in items.items():
            _metric(metric, f"params.{bound}")
            if not _number(limit) or not math.isfinite(float(limit)):
                raise InvalidArgument(f"llm params.{bound}.{metric} must be a finite number, got {limit!r}")
            bounds[bound][str(metric)] = float(limit)
    value = _metric(p["value"], "params.value") if p.get("value") is not None else None
    drift = p.get("drift", True)
    if not isinstance(drift, bool):
        raise InvalidArgument(f"llm params.drift must be true or false, got {drift!r}")
    alpha = p.get("alpha", 0.05)
    if not _number(alpha) or not 0.0 < float(alpha) < 1.0:
        raise InvalidArgument(f"llm params.alpha must be a number in (0, 1), got {alpha!r}")
    query_test = p.get("query_test", "ks")
    if query_test not in QUERY_TESTS:
        raise InvalidArgument(f"llm params.query_test must be one of {list(QUERY_TESTS)}, got {query_test!r}")
    max_topics = p.get("max_topics", 20)
    if not isinstance(max_topics, (int, np.integer)) or isinstance(max_topics, bool) or max_topics < 1:
        raise InvalidArgument(f"llm params.max_topics must be a positive integer, got {max_topics!r}")
    if spec.threshold is not None:
        if value is None:
            raise InvalidArgument(
                "an llm monitor's threshold bounds params.value: name the metric (e.g. value=groundedness_mean), "
                "or give the limits as params.max / params.min"
            )
        bound = "min" if value in HIGHER_IS_BETTER else "max"
        if bounds[bound].get(value, spec.threshold) != spec.threshold:
            raise InvalidArgument(
                f"threshold {spec.threshold:g} contradicts params.{bound}.{value} = {bounds[bound][value]:g}"
            )
        bounds[bound][value] = float(spec.threshold)
    return LLMParams(bounds["max"], bounds["min"], value, drift, float(alpha), str(query_test), int(max_topics))


# ---------------------------------------------------------------------------------------------- metrics


def _finite(values: Any) -> np.ndarray:
    arr = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64)
    return arr[np.isfinite(arr)]


def _mean(arr: np.ndarray | None) -> float | None:
    return float(arr.mean()) if arr is not None and len(arr) else None


def _pct(arr: np.ndarray | None, q: float) -> float | None:
    return float(np.percentile(arr, q)) if arr is not None and len(arr) else None


def _retrieved(out: pd.DataFrame) -> pd.Series | None:
    """Which rows retrieved documents (a topic, else a finite top score), or ``None`` if the log cannot tell."""
    if "topic" in out.columns:
        return out["topic"].fillna("").astype(str) != ""
    if "top_score" in out.columns:
        return pd.Series(np.isfinite(pd.to_numeric(out["top_score"], errors="coerce")), index=out.index)
    return None


def _tool_error_rate(out: pd.DataFrame) -> float | None:
    """Failed tool calls over the tool calls the app ran (client-side calls handed back do not count)."""
    if "tool_calls" not in out.columns:
        return None
    ran = failed = 0
    for text in out["tool_calls"].dropna():
        try:
            calls = json.loads(text) if text else []
        except (TypeError, ValueError):
            continue
        for c in calls if isinstance(calls, list) else []:
            if isinstance(c, dict) and not c.get("client"):
                ran += 1
                failed += bool(c.get("error"))
    return failed / ran if ran else None


def _score(v: Any) -> float:
    if isinstance(v, (bool, np.bool_)):
        return float(v)
    if _number(v):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return math.nan
    return math.nan


def _feedback(ok: pd.DataFrame, feedback: pd.DataFrame | None) -> tuple[float | None, int | None]:
    """Mean and count of the numeric feedback on the window's answered requests (the latest value per request)."""
    if feedback is None:
        return None, None
    if feedback.empty or "request_id" not in ok.columns:
        return None, 0
    fb = feedback.sort_values("ts", kind="stable") if "ts" in feedback.columns else feedback
    keys = ["request_id", "row"] if "row" in fb.columns and "row" in ok.columns else ["request_id"]
    fb = fb.drop_duplicates(keys, keep="last")
    fb = fb.assign(_score=[_score(v) for v in fb["value"]])[[*keys, "_score"]]
    joined = ok[keys].merge(fb, on=keys, how="inner")
    scores = _finite(joined["_score"])
    return _mean(scores), len(scores)


def llm_metrics(logged: pd.DataFrame, feedback: pd.DataFrame | None = None) -> dict[str, Any]:
    """Every metric of :data:`METRICS` over the window (``None`` where the window has no values for it)."""
    first = logged[logged["row"] == 0] if "row" in logged.columns else logged
    ok = first[first["status"] == "ok"] if "status" in first.columns else first
    out = output_columns(ok)

    def col(name: str) -> np.ndarray | None:
        return _finite(out[name]) if name in out.columns else None

    m: dict[str, Any] = dict.fromkeys(METRICS)
    m["requests"] = len(ok)
    m["error_rate"] = (len(first) - len(ok)) / len(first) if len(first) else None
    inp, outp = col("input_tokens"), col("output_tokens")
    m["input_tokens_mean"], m["output_tokens_mean"] = _mean(inp), _mean(outp)
    if "input_tokens" in out.columns and "output_tokens" in out.columns:
        total = pd.to_numeric(out["input_tokens"], errors="coerce") + pd.to_numeric(
            out["output_tokens"], errors="coerce"
        )
        m["tokens_p95"] = _pct(_finite(total), 95)
    cost = col("cost")
    m["cost_mean"] = _mean(cost)
    m["cost_total"] = float(cost.sum()) if cost is not None and len(cost) else None
    latency = _finite(ok["latency_s"]) if "latency_s" in ok.columns else None
    ttft = col("ttft_s")
    m["latency_p50"], m["latency_p95"] = _pct(latency, 50), _pct(latency, 95)
    m["ttft_p50"], m["ttft_p95"] = _pct(ttft, 50), _pct(ttft, 95)
    m["top_score_mean"] = _mean(col("top_score"))
    m["refusal_rate"], m["empty_rate"] = _mean(col("refusal")), _mean(col("empty"))
    m["answer_tokens_mean"] = _mean(col("answer_tokens"))
    m["groundedness_mean"] = _mean(col("groundedness"))
    retrieved = _retrieved(out)
    if retrieved is not None and "cited" in out.columns:
        m["citation_rate"] = _mean(_finite(out.loc[retrieved, "cited"]))
    m["tool_error_rate"] = _tool_error_rate(out)
    m["feedback_mean"], m["feedback_n"] = _feedback(ok, feedback)
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in m.items()}


# ---------------------------------------------------------------------------------------------- drift


def _strip(frame: pd.DataFrame) -> pd.DataFrame:
    """A logged frame's ``out.*`` columns without the prefix (a frame without such columns is used as it is)."""
    return output_columns(frame) if any(str(c).startswith("out.") for c in frame.columns) else frame


def _qproj_columns(frame: pd.DataFrame) -> list[str]:
    cols = [str(c) for c in frame.columns if str(c).startswith("qproj[")]
    return sorted(cols, key=lambda c: int(c[6:].rstrip("]")))


def _query_drift(ref: pd.DataFrame, cur: pd.DataFrame, opts: LLMParams, min_rows: int) -> dict[str, Any]:
    from mlpilot.monitoring import MMDDrift, TableDrift

    cols = [c for c in _qproj_columns(cur) if c in ref.columns]
    if not cols:
        return {"skipped": "no query projection in the log (the app embeds no queries)"}
    r = ref[cols].apply(pd.to_numeric, errors="coerce").astype(np.float64)
    c = cur[cols].apply(pd.to_numeric, errors="coerce").astype(np.float64)
    r, c = r[np.isfinite(r).all(axis=1)], c[np.isfinite(c).all(axis=1)]
    if len(r) < min_rows or len(c) < min_rows:
        return {
            "skipped": f"{len(c)} current and {len(r)} reference requests with a query embedding (need {min_rows} each)"
        }
    sizes = {"n_reference": len(r), "n_current": len(c), "alpha": opts.alpha}
    if opts.query_test == "mmd":
        res = MMDDrift(alpha=opts.alpha, n_permutations=200, max_samples=500, random_state=0).fit(r).predict(c)
        return {"test": "mmd", "statistic": res.statistic, "p_value": res.p_value, "drifted": res.is_drift, **sizes}
    table = TableDrift(numeric_test="ks", alpha=opts.alpha, correction="holm").fit(r).predict(c)
    dims = {f.feature: {"statistic": f.statistic, "p_value": f.p_value, "drifted": f.is_drift} for f in table.features}
    return {
        "test": "ks",
        "statistic": max(f.statistic for f in table.features),
        "p_value": min(f.p_value for f in table.features if f.p_value is not None),  # Holm-adjusted
        "drifted": bool(table.drifted_features),
        **sizes,
        "dimensions": dims,
    }


def _topic_drift(ref: pd.DataFrame, cur: pd.DataFrame, opts: LLMParams, min_rows: int) -> dict[str, Any]:
    from mlpilot.monitoring import ChiSquareDrift

    if "topic" not in ref.columns or "topic" not in cur.columns:
        return {"skipped": "no topic in the log"}
    r = ref["topic"].fillna("").astype(str)
    c = cur["topic"].fillna("").astype(str)
    r, c = r[r != ""], c[c != ""]
    if len(r) < min_rows or len(c) < min_rows:
        why = "the app retrieves nothing" if not len(r) and not len(c) else f"need {min_rows} each"
        return {"skipped": f"{len(c)} current and {len(r)} reference requests with retrieval ({why})"}
    kept = list(r.value_counts().index[: opts.max_topics])
    r = r.where(r.isin(kept), OTHER_TOPIC).astype(object)
    c = c.where(c.isin(kept), OTHER_TOPIC).astype(object)
    res = ChiSquareDrift(alpha=opts.alpha).fit(r.rename("topic")).predict(c.rename("topic"))
    ref_share, cur_share = r.value_counts(normalize=True), c.value_counts(normalize=True)
    topics = ref_share.index.union(cur_share.index)
    diff = (cur_share.reindex(topics, fill_value=0.0) - ref_share.reindex(topics, fill_value=0.0)).sort_values(
        key=np.abs, ascending=False
    )
    shifts = {
        str(t): {"reference": float(ref_share.get(t, 0.0)), "current": float(cur_share.get(t, 0.0))}
        for t in diff.index[:5]
    }
    return {
        "test": "chi2",
        "statistic": res.statistic,
        "p_value": res.p_value,
        "drifted": res.is_drift,
        "n_reference": len(r),
        "n_current": len(c),
        "alpha": opts.alpha,
        "topics": len(kept),
        "top_shifts": shifts,
    }


# ---------------------------------------------------------------------------------------------- outcome


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def llm_outcome(
    spec: MonitorSpec,
    logged: pd.DataFrame,
    reference: pd.DataFrame | None = None,
    feedback: pd.DataFrame | None = None,
) -> Outcome:
    """Metrics, threshold breaches and drift of an LLM app's window of logged requests.

    Args:
        spec: the monitor (``params`` as in the module doc; ``min_rows`` counts requests, failed ones included).
        logged: the window's request-log rows (``status``, ``latency_s``, ``request_id``, ``out.*`` …).
        reference: rows of a reference window with the same ``out.*`` columns (or without the prefix), for query
            and topic drift; ``None``: no drift tests.
        feedback: feedback rows (``request_id``, optional ``row`` and ``ts``, ``value``) joined by request id.

    Returns:
        ``ALERT`` when a threshold is breached or a drift is detected, ``OK`` otherwise, ``NO_DATA`` under
        ``min_rows`` requests. The value is the ``params.value`` metric, by default ``groundedness_mean`` when the
        window has it, else ``error_rate``.

    Raises:
        InvalidArgument: bad params.
    """
    opts = llm_params(spec)
    first = logged[logged["row"] == 0] if "row" in logged.columns else logged
    n = len(first)
    if n < spec.min_rows:
        return Outcome(
            MonitorStatus.NO_DATA, None, f"{n} requests in the window (fewer than {spec.min_rows})", {"requests": n}
        )
    metrics = llm_metrics(logged, feedback)
    breaches: list[dict[str, Any]] = []
    unevaluated: list[str] = []
    for bound, limits in (("max", opts.max), ("min", opts.min)):
        for metric, limit in limits.items():
            v = metrics[metric]
            if v is None:
                unevaluated.append(metric)
            elif (v > limit) if bound == "max" else (v < limit):
                sign = ">" if bound == "max" else "<"
                breaches.append(
                    {"metric": metric, "value": v, bound: limit, "text": f"{metric} {_fmt(v)} {sign} {limit:g}"}
                )
    drift: dict[str, Any] = {"enabled": opts.drift}
    if opts.drift and reference is not None:
        ref = _strip(reference)
        cur = _strip(first[first["status"] == "ok"] if "status" in first.columns else first)
        drift["reference_rows"] = len(ref)
        drift["query"] = _query_drift(ref, cur, opts, spec.min_rows)
        drift["topic"] = _topic_drift(ref, cur, opts, spec.min_rows)
    elif opts.drift:
        drift["skipped"] = "no reference window"
    drifted = [
        f"{name} drift (p={drift[name]['p_value']:.2g})"
        for name in ("query", "topic")
        if drift.get(name, {}).get("drifted")
    ]
    value_metric = opts.value or ("groundedness_mean" if metrics["groundedness_mean"] is not None else "error_rate")
    value = metrics[value_metric]
    problems = [b["text"] for b in breaches] + drifted
    if problems:
        status, msg = MonitorStatus.ALERT, "; ".join(problems) + f" ({n} requests)"
    else:
        shown = "-" if value is None else _fmt(float(value))
        status, msg = MonitorStatus.OK, f"{n} requests, {value_metric} {shown}; within thresholds, no drift"
    detail = {
        "metrics": metrics,
        "value_metric": value_metric,
        "thresholds": {"max": opts.max, "min": opts.min},
        "breaches": [{k: v for k, v in b.items() if k != "text"} for b in breaches],
        "unevaluated": unevaluated,
        "drift": drift,
        "requests_total": n,
    }
    return Outcome(status, None if value is None else float(value), msg, plain(detail))
