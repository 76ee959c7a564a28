"""Typed, frozen results of the detectors.

Every result has ``to_dict()`` (JSON-ready: plain Python types, non-finite floats as ``None``); the ones with
rows have ``to_frame()`` (a pandas DataFrame). Mappings inside results are read-only views.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import pandas as pd


def plain(value: Any) -> Any:
    """``value`` as JSON-ready Python: numpy scalars and arrays unwrapped, NaN/inf as ``None``."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _freeze(obj: object, name: str) -> None:
    value = getattr(obj, name)
    object.__setattr__(obj, name, MappingProxyType(dict(value)))


def _readonly(obj: object, name: str, dtype: Any) -> None:
    array = np.array(getattr(obj, name), dtype=dtype)  # a private copy, so nobody else can write it either
    array.setflags(write=False)
    object.__setattr__(obj, name, array)


@dataclass(frozen=True)
class FeatureDrift:
    """The drift verdict for one feature (or one model output).

    Attributes:
        feature: the column name.
        test: the test that produced it (``ks``, ``wasserstein``, ``psi``, ``jensenshannon``, ``chi2``, …).
        statistic: the test statistic or distance.
        p_value: the p-value for hypothesis tests (after any multiple-testing correction), ``None`` for distances.
        threshold: ``alpha`` for hypothesis tests (drift if ``p_value < alpha``); the distance threshold
            otherwise (drift if ``statistic > threshold``).
        is_drift: the verdict.
        detail: test-specific context (sample sizes, method, raw p-value …), JSON-ready.
    """

    feature: str
    test: str
    statistic: float
    p_value: float | None
    threshold: float
    is_drift: bool
    detail: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _freeze(self, "detail")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field."""
        return {f.name: plain(getattr(self, f.name)) for f in fields(self)}


_FEATURE_COLUMNS = ["feature", "test", "statistic", "p_value", "threshold", "is_drift"]


@dataclass(frozen=True)
class DriftResult:
    """A drift verdict over several features (table drift) or over all of them at once (multivariate drift).

    Attributes:
        test: the test(s) used, e.g. ``"ks+chi2"``, ``"mmd"``.
        is_drift: the overall verdict (for tables: ``share_drifted >= drift_share``).
        share_drifted: the share of ``features`` flagged as drifting; 0.0 when there are no per-feature rows.
        features: the per-feature verdicts, in column order.
        correction: the multiple-testing correction applied to the p-values (``holm``, ``bonferroni``,
            ``fdr_bh`` or ``none``).
        statistic: the overall statistic of a multivariate test, else ``None``.
        p_value: the overall p-value of a multivariate test, else ``None``.
        threshold: the overall threshold (``drift_share`` for tables, the test threshold otherwise).
        detail: test-specific context, JSON-ready.
    """

    test: str
    is_drift: bool
    share_drifted: float
    features: tuple[FeatureDrift, ...] = ()
    correction: str = "none"
    statistic: float | None = None
    p_value: float | None = None
    threshold: float | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _freeze(self, "detail")
        object.__setattr__(self, "features", tuple(self.features))

    @property
    def drifted_features(self) -> tuple[str, ...]:
        """Names of the features flagged as drifting."""
        return tuple(f.feature for f in self.features if f.is_drift)

    def __getitem__(self, feature: str) -> FeatureDrift:
        for f in self.features:
            if f.feature == feature:
                return f
        raise KeyError(feature)

    def to_frame(self) -> pd.DataFrame:
        """One row per feature: feature, test, statistic, p_value, threshold, is_drift."""
        rows = [{c: getattr(f, c) for c in _FEATURE_COLUMNS} for f in self.features]
        return pd.DataFrame(rows, columns=_FEATURE_COLUMNS)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; ``features`` is a list of :meth:`FeatureDrift.to_dict`."""
        out = {f.name: plain(getattr(self, f.name)) for f in fields(self) if f.name != "features"}
        out["features"] = [f.to_dict() for f in self.features]
        return out


@dataclass(frozen=True, eq=False)
class OutlierResult:
    """Per-row outlier scores of a window (compared by identity: the arrays are large).

    Attributes:
        method: ``isolation_forest`` or ``mahalanobis``.
        scores: shape ``(n_rows,)``, higher is more anomalous (read-only).
        is_outlier: shape ``(n_rows,)`` booleans (read-only).
        threshold: the score above which a row is an outlier.
        outlier_share: the share of rows flagged.
    """

    method: str
    scores: np.ndarray
    is_outlier: np.ndarray
    threshold: float
    outlier_share: float

    def __post_init__(self) -> None:
        _readonly(self, "scores", np.float64)
        _readonly(self, "is_outlier", np.bool_)

    @property
    def n_outliers(self) -> int:
        """The number of rows flagged."""
        return int(self.is_outlier.sum())

    def to_frame(self) -> pd.DataFrame:
        """One row per input row: score, is_outlier."""
        return pd.DataFrame({"score": self.scores, "is_outlier": self.is_outlier})

    def to_dict(self, *, include_rows: bool = False) -> dict[str, Any]:
        """JSON-ready summary; per-row scores and flags only with ``include_rows=True``."""
        out: dict[str, Any] = {
            "method": self.method,
            "threshold": plain(self.threshold),
            "outlier_share": plain(self.outlier_share),
            "n_rows": int(self.scores.size),
            "n_outliers": self.n_outliers,
        }
        if include_rows:
            out["scores"] = plain(self.scores)
            out["is_outlier"] = plain(self.is_outlier)
        return out


QualityCheck = Literal["missing_column", "extra_column", "dtype", "null_rate", "range", "freshness"]


@dataclass(frozen=True)
class QualityIssue:
    """One failed data-quality check.

    Attributes:
        check: which check failed.
        column: the column concerned, ``None`` for table-level checks.
        message: one readable line.
        observed: what the window shows (a rate, a dtype, an age in seconds …).
        expected: what the reference allows.
    """

    check: QualityCheck
    column: str | None
    message: str
    observed: Any = None
    expected: Any = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field."""
        return {f.name: plain(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class QualityResult:
    """Data-quality verdict of a window.

    Attributes:
        passed: no check failed.
        issues: the failed checks.
        n_checks: how many checks ran (``score`` is ``len(issues) / n_checks``).
        null_rates: per-column null rate of the window.
        range_violation_rates: per numeric column, the share of values outside the widened reference range.
        max_age_seconds: age of the newest timestamp relative to ``now``, when freshness is checked.
    """

    passed: bool
    issues: tuple[QualityIssue, ...]
    n_checks: int
    null_rates: Mapping[str, float] = field(default_factory=dict)
    range_violation_rates: Mapping[str, float] = field(default_factory=dict)
    max_age_seconds: float | None = None

    def __post_init__(self) -> None:
        _freeze(self, "null_rates")
        _freeze(self, "range_violation_rates")
        object.__setattr__(self, "issues", tuple(self.issues))

    def to_frame(self) -> pd.DataFrame:
        """One row per issue: check, column, message, observed, expected."""
        columns = ["check", "column", "message", "observed", "expected"]
        return pd.DataFrame([{c: getattr(i, c) for c in columns} for i in self.issues], columns=columns)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; ``issues`` is a list of :meth:`QualityIssue.to_dict`."""
        out = {f.name: plain(getattr(self, f.name)) for f in fields(self) if f.name != "issues"}
        out["issues"] = [i.to_dict() for i in self.issues]
        return out


@dataclass(frozen=True)
class PerformanceResult:
    """Realized model performance on a labelled window, against the reference.

    Attributes:
        task: ``classification`` or ``regression``.
        metric: the metric the verdict is about.
        value: that metric on the window.
        reference_value: that metric on the reference.
        threshold: the degradation limit for ``metric`` (see the detector for its direction).
        is_degraded: the verdict.
        metrics: every metric on the window.
        reference_metrics: every metric on the reference.
        n: the number of rows in the window.
    """

    task: Literal["classification", "regression"]
    metric: str
    value: float
    reference_value: float
    threshold: float
    is_degraded: bool
    metrics: Mapping[str, float]
    reference_metrics: Mapping[str, float]
    n: int

    def __post_init__(self) -> None:
        _freeze(self, "metrics")
        _freeze(self, "reference_metrics")

    def to_frame(self) -> pd.DataFrame:
        """One row per metric: metric, current, reference."""
        names = list(self.metrics)
        return pd.DataFrame(
            {
                "metric": names,
                "current": [self.metrics[m] for m in names],
                "reference": [self.reference_metrics.get(m, math.nan) for m in names],
            }
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field."""
        return {f.name: plain(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class EstimateResult:
    """A label-free performance estimate for a window.

    Attributes:
        metric: the estimated metric (``accuracy``).
        estimate: the point estimate.
        lower: lower bound of the interval.
        upper: upper bound of the interval.
        confidence_level: the interval's nominal coverage, e.g. 0.95.
        reference_value: the realized metric on the reference.
        threshold: the degradation limit: degraded when ``estimate < threshold``.
        is_degraded: the verdict.
        n: the number of rows in the window.
        detail: method context (calibration, interval method …), JSON-ready.
    """

    metric: str
    estimate: float
    lower: float
    upper: float
    confidence_level: float
    reference_value: float
    threshold: float
    is_degraded: bool
    n: int
    detail: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _freeze(self, "detail")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field."""
        return {f.name: plain(getattr(self, f.name)) for f in fields(self)}
