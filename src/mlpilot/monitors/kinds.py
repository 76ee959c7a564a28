"""What each monitor kind computes over one window. Pure functions of DataFrames (no store, no clock, no I/O).

Each returns an :class:`Outcome`: status, the headline value of the time series, a one-line message, and the
JSON-ready detail (per-feature statistics, metrics …).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from mlpilot.errors import InvalidArgument
from mlpilot.records import MonitorSpec, MonitorStatus
from mlpilot.telemetry.redact import redacted_columns

__all__ = [
    "TARGET_COLUMNS",
    "Outcome",
    "align_reference",
    "apply_segment",
    "drift_outcome",
    "estimated_performance_outcome",
    "input_frame",
    "output_columns",
    "performance_outcome",
    "proba_columns",
    "quality_outcome",
    "traffic_outcome",
]


@dataclass(frozen=True)
class Outcome:
    status: MonitorStatus
    value: float | None
    message: str
    detail: dict[str, Any] = field(default_factory=dict)


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _above(value: float | None, threshold: float | None, default: bool) -> bool:
    return default if threshold is None or value is None else value >= threshold


#: labels in a reference dataset: the first of these columns that exists (or ``params.target``).
TARGET_COLUMNS = ("target", "label", "y", "class")


def align_reference(reference: pd.DataFrame, current: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Match reference columns to logged columns by name, or by position for one unnamed array input (the label
    column of a reference is never a feature).

    Raises:
        InvalidArgument: neither matches.
    """
    shared = [c for c in current.columns if c in reference.columns]
    if shared:
        return reference[shared], current[shared]
    positional = [c for c in current.columns if "[" in str(c)]
    usable = [c for c in reference.columns if c not in TARGET_COLUMNS]
    if positional and len(positional) <= len(usable):
        return reference[usable[: len(positional)]].set_axis(positional, axis=1), current[positional]
    raise InvalidArgument(
        f"the reference has columns {list(reference.columns)[:8]} but the window has {list(current.columns)[:8]}; "
        "register a reference with the model's input columns"
    )


def input_frame(logged: pd.DataFrame, features: Sequence[str] | None = None) -> pd.DataFrame:
    """The ``in.*`` columns of logged rows, named without the prefix (optionally only ``features``), without the
    columns the request log redacted (``logs.redact_fields``: their values are gone, nothing to compare).

    Raises:
        InvalidArgument: a feature is not logged, or is redacted.
    """
    cols = {c: c[3:] for c in logged.columns if str(c).startswith("in.")}
    frame = logged[list(cols)].rename(columns=cols)
    redacted = redacted_columns(frame)
    if features:
        hidden = [f for f in features if f in redacted]
        if hidden:
            raise InvalidArgument(
                f"features {hidden} are redacted in the request log (logs.redact_fields): their values are not "
                "logged, so they cannot be monitored; leave them out of the monitor's features"
            )
        missing = [f for f in features if f not in frame.columns]
        if missing:
            raise InvalidArgument(f"features {missing} are not in the logged inputs {list(frame.columns)[:20]}")
        return frame[list(features)]
    return frame.drop(columns=redacted) if redacted else frame


def output_columns(logged: pd.DataFrame) -> pd.DataFrame:
    """The ``out.*`` columns of logged rows, named without the prefix, without redacted ones."""
    cols = {c: c[4:] for c in logged.columns if str(c).startswith("out.")}
    frame = logged[list(cols)].rename(columns=cols)
    redacted = redacted_columns(frame)
    return frame.drop(columns=redacted) if redacted else frame


def proba_columns(columns: Sequence[str], output: str | None = None) -> list[str]:
    """Logged probability columns (``out.predict_proba[0]`` …), in class order."""
    names = [output] if output else ["predict_proba", "probabilities", "probability", "output_probability"]
    for name in names:
        found = [c for c in columns if str(c).startswith(f"out.{name}[")]
        if found:
            return sorted(found, key=lambda c: int(str(c).rsplit("[", 1)[1].rstrip("]")))
    return []


# ---------------------------------------------------------------------------------------------- traffic


def traffic_outcome(spec: MonitorSpec, logged: pd.DataFrame, window_s: float) -> Outcome:
    """Requests, error rate and latency percentiles (one count per request, not per row)."""
    first = logged[logged["row"] == 0] if "row" in logged.columns else logged
    ok_latency = first.loc[first["status"] == "ok", "latency_s"].to_numpy(dtype=float)
    stats = {
        "requests": len(first),
        "rows": len(logged),
        "errors": int((first["status"] != "ok").sum()),
        "latency_s": {q: np.percentile(ok_latency, q) for q in (50, 95, 99)} if len(ok_latency) else {},
        "top_errors": _top_errors(first),
    }
    return traffic_outcome_from_stats(spec, stats, window_s)


def traffic_outcome_from_stats(spec: MonitorSpec, stats: Mapping[str, Any], window_s: float) -> Outcome:
    """The traffic outcome from a window's aggregates (``telemetry.query.traffic_stats``' shape)."""
    n = int(stats["requests"])
    if n < spec.min_rows:
        return Outcome(MonitorStatus.NO_DATA, None, f"{n} requests in the window (fewer than {spec.min_rows})")
    errors = int(stats["errors"])
    latency = stats["latency_s"]
    pct = {f"p{q}_ms": _finite(latency[q] * 1000.0) if q in latency else None for q in (50, 95, 99)}
    rate = errors / n
    limit = spec.threshold if spec.threshold is not None else 0.05
    status = MonitorStatus.ALERT if rate > limit else MonitorStatus.OK
    detail = {
        "requests": n,
        "rows": int(stats["rows"]),
        "errors": errors,
        "error_rate": rate,
        "requests_per_s": n / window_s if window_s > 0 else None,
        **pct,
        "top_errors": dict(stats["top_errors"]),
    }
    p99 = pct["p99_ms"]
    msg = f"{n} requests, error rate {rate:.2%} (limit {limit:.2%})" + (f", p99 {p99:.1f} ms" if p99 else "")
    return Outcome(status, rate, msg, detail)


def _top_errors(first: pd.DataFrame, n: int = 5) -> dict[str, int]:
    """The most frequent error messages of the failed requests (first 120 characters of each)."""
    if "error" not in first.columns:
        return {}
    failed = first.loc[first["status"] != "ok", "error"].dropna().astype(str).str.slice(0, 120)
    return {str(k): int(v) for k, v in failed.value_counts().head(n).items()}


# ---------------------------------------------------------------------------------------------- drift


def drift_outcome(spec: MonitorSpec, detector: Any, current: pd.DataFrame) -> Outcome:
    """Per-feature drift of ``current`` against the reference ``detector`` was fitted on (a ``TableDrift``)."""
    if len(current) < spec.min_rows:
        return Outcome(MonitorStatus.NO_DATA, None, f"{len(current)} rows in the window (fewer than {spec.min_rows})")
    result = detector.predict(current)
    value = float(result.share_drifted)
    drifted = list(result.drifted_features)
    # default: any feature drifting after the multiple-testing correction (the family-wise error stays at alpha)
    alert = bool(drifted) if spec.threshold is None else value >= spec.threshold
    msg = f"{len(drifted)} of {len(result.features)} features drifted ({value:.0%})" + (
        f": {', '.join(map(str, drifted[:5]))}" + (" …" if len(drifted) > 5 else "") if drifted else ""
    )
    return Outcome(MonitorStatus.ALERT if alert else MonitorStatus.OK, value, msg, result.to_dict())


# ---------------------------------------------------------------------------------------------- performance


def _is_classification(labels: pd.Series, proba: list[str], task: str | None) -> bool:
    if task is not None:
        if task not in ("classification", "regression"):
            raise InvalidArgument(f"params.task must be classification or regression, got {task!r}")
        return task == "classification"
    if proba:
        return True
    return bool(labels.map(lambda v: isinstance(v, str) or float(v).is_integer()).all())


def performance_outcome(
    spec: MonitorSpec, joined: pd.DataFrame, detector: Any | None, classes: Sequence[Any] | None = None
) -> Outcome:
    """Realized metrics on the labelled predictions of the window.

    ``detector`` is a ``ClassificationPerformance`` / ``RegressionPerformance`` fitted on the reference (verdict
    relative to the reference), or ``None`` (metrics only; the verdict comes from ``spec.threshold``).
    """
    from mlpilot.monitoring.metrics import classification_metrics, encode_labels, proba_matrix, regression_metrics

    labelled = joined[joined["has_label"]] if len(joined) else joined
    n, total = len(labelled), len(joined)
    coverage = {"labelled": n, "predictions": total, "label_coverage": (n / total) if total else None}
    if n < spec.min_rows:
        return Outcome(
            MonitorStatus.NO_DATA,
            None,
            f"{n} of {total} predictions in the window have a label yet (fewer than {spec.min_rows})",
            coverage,
        )
    proba = proba_columns(list(labelled.columns), spec.params.get("proba_output"))
    y = labelled["label"]
    if _is_classification(y, proba, spec.params.get("task")):
        if detector is not None and proba:
            res = detector.predict(y.to_numpy(), labelled[proba].to_numpy(dtype=float))
            value, degraded, metrics = float(res.value), bool(res.is_degraded), res.to_dict()
        else:
            predicted = labelled["out.predict"] if "out.predict" in labelled.columns else None
            if predicted is None:
                raise InvalidArgument("a performance monitor needs the model's 'predict' output in the log")
            if proba:
                known = list(classes) if classes is not None else sorted(pd.unique(pd.concat([y, predicted])))
                codes = encode_labels(y.to_numpy(), known)
                metrics = classification_metrics(codes, proba_matrix(labelled[proba].to_numpy(float), len(known)))
            else:
                metrics = {"accuracy": float((predicted.astype(str) == y.astype(str)).mean())}
            value = float(metrics["accuracy"])
            degraded = spec.threshold is not None and value < spec.threshold
        if spec.threshold is not None:
            degraded = value < spec.threshold
        msg = f"accuracy {value:.3f} on {n} labelled predictions ({n / total:.0%} of {total})"
    else:
        predicted = labelled["out.predict"].to_numpy(dtype=float)
        if detector is not None:
            res = detector.predict(y.to_numpy(dtype=float), predicted)
            value, degraded, metrics = float(res.value), bool(res.is_degraded), res.to_dict()
        else:
            metrics = regression_metrics(y.to_numpy(dtype=float), predicted)
            metric = str(spec.params.get("metric", "rmse"))
            value, degraded = float(metrics[metric]), False
        if spec.threshold is not None:
            degraded = value > spec.threshold
        msg = f"error {value:.4g} on {n} labelled predictions ({n / total:.0%} of {total})"
    status = MonitorStatus.ALERT if degraded else MonitorStatus.OK
    return Outcome(status, value, msg, {**coverage, "metrics": metrics})


def estimated_performance_outcome(spec: MonitorSpec, estimator: Any, logged: pd.DataFrame) -> Outcome:
    """Label-free accuracy estimate (CBPE fitted on the labelled reference) from the logged probabilities."""
    proba = proba_columns(list(logged.columns), spec.params.get("proba_output"))
    if not proba:
        raise InvalidArgument(
            "an estimated_performance monitor needs the model's class probabilities in the log "
            "(an output such as predict_proba)"
        )
    if len(logged) < spec.min_rows:
        return Outcome(MonitorStatus.NO_DATA, None, f"{len(logged)} rows in the window (fewer than {spec.min_rows})")
    res = estimator.predict(logged[proba].to_numpy(dtype=float))
    value = float(res.estimate)
    degraded = bool(res.is_degraded) if spec.threshold is None else value < spec.threshold
    msg = (
        f"estimated accuracy {value:.3f} [{res.lower:.3f}, {res.upper:.3f}] on {len(logged)} rows "
        f"(reference {res.reference_value:.3f})"
    )
    return Outcome(MonitorStatus.ALERT if degraded else MonitorStatus.OK, value, msg, res.to_dict())


# ---------------------------------------------------------------------------------------------- quality


def quality_outcome(spec: MonitorSpec, detector: Any, current: pd.DataFrame, now: datetime) -> Outcome:
    if len(current) < spec.min_rows:
        return Outcome(MonitorStatus.NO_DATA, None, f"{len(current)} rows in the window (fewer than {spec.min_rows})")
    res = detector.predict(current, now=now)
    issues = list(res.issues)
    value = len(issues) / max(1, int(res.n_checks))
    alert = bool(issues) if spec.threshold is None else value >= spec.threshold
    msg = f"{len(issues)} of {res.n_checks} checks failed" + (
        ": " + "; ".join(f"{i.check} {i.column}" for i in issues[:4]) if issues else ""
    )
    return Outcome(MonitorStatus.ALERT if alert else MonitorStatus.OK, value, msg, res.to_dict())


def apply_segment(logged: pd.DataFrame, segment: Mapping[str, Any]) -> pd.DataFrame:
    """Rows whose columns equal the segment's values. Raises ``InvalidArgument`` for a column not in the log."""
    if not segment or logged.empty:
        return logged
    missing = [c for c in segment if c not in logged.columns]
    if missing:
        raise InvalidArgument(f"segment columns {missing} are not in the log; columns: {sorted(logged.columns)[:30]}")
    mask = np.ones(len(logged), dtype=bool)
    for col, value in segment.items():
        mask &= (logged[col] == value).to_numpy()
    return logged[mask]
