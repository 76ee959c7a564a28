"""Data-quality checks of a window against a reference DataFrame: schema, nulls, ranges and freshness.

Freshness needs the current time: pass ``now=`` to ``predict`` (detectors never read the clock; the caller
passes ``clock.now()``). Naive datetimes, in the data or in ``now``, are taken as UTC.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TypeVar

import numpy as np
import pandas as pd

from mlpilot.errors import InvalidArgument
from mlpilot.monitoring._inputs import as_frame, check_fitted, check_interval, is_real_numeric, require_columns
from mlpilot.monitoring.base import Detector
from mlpilot.monitoring.results import QualityIssue, QualityResult

_Q = TypeVar("_Q", bound="DataQuality")


def _utc(moment: datetime) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize(timezone.utc) if stamp.tzinfo is None else stamp.tz_convert(timezone.utc)


class DataQuality(Detector):
    """Schema, null-rate, range and freshness checks learned from a reference DataFrame.

    Checks, each counted once in ``QualityResult.n_checks``:

    - **schema**: every reference column is present (``missing_column``); no column was added
      (``extra_column``, unless ``allow_extra_columns``); each dtype is unchanged (``dtype``, exact dtype
      name — an int column that became float because of NaN counts as a change).
    - **nulls**: null rate ``<=`` reference null rate ``+ null_tolerance`` (``null_rate``).
    - **ranges**: for numeric columns, no value outside ``[min - t * w, max + t * w]`` with ``w = max - min`` of the
      reference (``|max|`` for a constant column) and ``t = range_tolerance`` (``range``).
    - **freshness**: the newest ``timestamp_column`` value is at most ``max_age`` old at ``now`` (``freshness``).

    Args:
        null_tolerance: allowed increase of the null rate (absolute, e.g. 0.05 = 5 points).
        range_tolerance: widening of the reference range, as a share of its width.
        timestamp_column: the event-time column for the freshness check.
        max_age: the freshness limit; needs ``timestamp_column``.
        check_dtypes: report dtype changes.
        allow_extra_columns: do not report columns absent from the reference.

    Attributes:
        columns_: reference column names; dtypes_: their dtype names; null_rates_: their null rates.
        ranges_: ``{column: (min, max)}`` of the numeric reference columns with finite values.
    """

    def __init__(
        self,
        null_tolerance: float = 0.05,
        range_tolerance: float = 0.1,
        timestamp_column: str | None = None,
        max_age: timedelta | None = None,
        check_dtypes: bool = True,
        allow_extra_columns: bool = False,
    ) -> None:
        self.null_tolerance = null_tolerance
        self.range_tolerance = range_tolerance
        self.timestamp_column = timestamp_column
        self.max_age = max_age
        self.check_dtypes = check_dtypes
        self.allow_extra_columns = allow_extra_columns

    def fit(self: _Q, reference: pd.DataFrame) -> _Q:
        """Learn the schema, null rates and ranges of the reference.

        Args:
            reference: a non-empty DataFrame.

        Returns:
            self, fitted.

        Raises:
            InvalidArgument: bad hyperparameters, an empty reference, a missing or non-datetime timestamp column.
        """
        check_interval(self, "null_tolerance", self.null_tolerance, 0.0, 1.0)
        check_interval(self, "range_tolerance", self.range_tolerance, 0.0, float("inf"))
        if self.max_age is not None and (not isinstance(self.max_age, timedelta) or self.timestamp_column is None):
            raise InvalidArgument("DataQuality(max_age=…) must be a timedelta and needs timestamp_column=…")
        frame = as_frame(reference, role="reference")
        if self.timestamp_column is not None:
            require_columns(frame, [self.timestamp_column], role="reference")
            if not pd.api.types.is_datetime64_any_dtype(frame[self.timestamp_column]):
                raise InvalidArgument(f"timestamp column {self.timestamp_column!r} is not a datetime column")
        self.columns_ = tuple(str(c) for c in frame.columns)
        self.dtypes_ = {str(c): str(frame[c].dtype) for c in frame.columns}
        self.null_rates_ = {str(c): float(frame[c].isna().mean()) for c in frame.columns}
        ranges: dict[str, tuple[float, float]] = {}
        for c in frame.columns:
            if is_real_numeric(frame[c].dtype):
                values = frame[c].to_numpy(dtype=np.float64, na_value=np.nan)
                values = values[np.isfinite(values)]
                if values.size:
                    ranges[str(c)] = (float(values.min()), float(values.max()))
        self.ranges_ = ranges
        return self

    def _range_rate(self, series: pd.Series, column: str) -> float:
        low, high = self.ranges_[column]
        width = high - low if high > low else abs(high)
        low, high = low - self.range_tolerance * width, high + self.range_tolerance * width
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        values = values[~np.isnan(values)]
        return float(((values < low) | (values > high)).mean()) if values.size else 0.0

    def _freshness(self, frame: pd.DataFrame, now: datetime | None) -> tuple[float | None, QualityIssue | None]:
        if self.timestamp_column is None or self.max_age is None:
            return None, None
        if now is None:
            raise InvalidArgument("pass now=… to check freshness (detectors never read the clock)")
        if self.timestamp_column not in frame.columns:
            return None, None  # already reported as a missing column
        newest = pd.to_datetime(frame[self.timestamp_column], utc=True).max()
        if pd.isna(newest):
            issue = QualityIssue("freshness", self.timestamp_column, "no timestamp in the window", None, None)
            return None, issue
        age = (_utc(now) - newest).total_seconds()
        limit = self.max_age.total_seconds()
        if age > limit:
            message = f"newest {self.timestamp_column!r} is {age:.0f} s old (limit {limit:.0f} s)"
            return age, QualityIssue("freshness", self.timestamp_column, message, age, limit)
        return age, None

    def predict(self, current: pd.DataFrame, now: datetime | None = None) -> QualityResult:
        """Run every check on a window.

        Args:
            current: the window, a non-empty DataFrame.
            now: the current time, required when ``max_age`` is set.

        Returns:
            a :class:`QualityResult` listing the failed checks and the per-column rates.

        Raises:
            InvalidArgument: not fitted, an empty window, or ``now`` missing for the freshness check.
        """
        check_fitted(self, "columns_")
        frame = as_frame(current, role="current")
        present = {str(c): c for c in frame.columns}
        issues: list[QualityIssue] = []
        n_checks = 0
        null_rates: dict[str, float] = {}
        range_rates: dict[str, float] = {}
        for column in self.columns_:
            n_checks += 1
            if column not in present:
                issues.append(QualityIssue("missing_column", column, f"column {column!r} is missing"))
                continue
            series = frame[present[column]]
            dtype = str(series.dtype)
            if self.check_dtypes:
                n_checks += 1
                if dtype != self.dtypes_[column]:
                    message = f"column {column!r} changed dtype from {self.dtypes_[column]} to {dtype}"
                    issues.append(QualityIssue("dtype", column, message, dtype, self.dtypes_[column]))
            n_checks += 1
            rate = null_rates[column] = float(series.isna().mean())
            limit = self.null_rates_[column] + self.null_tolerance
            if rate > limit:
                message = f"column {column!r} is {rate:.1%} null (reference {self.null_rates_[column]:.1%})"
                issues.append(QualityIssue("null_rate", column, message, rate, limit))
            if column in self.ranges_ and is_real_numeric(series.dtype):
                n_checks += 1
                share = range_rates[column] = self._range_rate(series, column)
                if share > 0:
                    message = f"{share:.2%} of column {column!r} is outside the reference range"
                    issues.append(QualityIssue("range", column, message, share, list(self.ranges_[column])))
        if not self.allow_extra_columns:
            for column in present:
                if column not in self.dtypes_:
                    n_checks += 1
                    issues.append(QualityIssue("extra_column", column, f"column {column!r} is not in the reference"))
        age, stale = self._freshness(frame, now)
        if self.max_age is not None:
            n_checks += 1
            issues.extend([stale] if stale else [])
        return QualityResult(
            passed=not issues,
            issues=tuple(issues),
            n_checks=n_checks,
            null_rates=null_rates,
            range_violation_rates=range_rates,
            max_age_seconds=age,
        )

    def score(self, current: pd.DataFrame, now: datetime | None = None) -> float:
        """The share of checks that failed (0.0 = clean), a single number for time series.

        Args:
            current: the window, a non-empty DataFrame.
            now: the current time, required when ``max_age`` is set.

        Returns:
            ``len(issues) / n_checks`` in ``[0, 1]``.

        Raises:
            InvalidArgument: not fitted, an empty window, or ``now`` missing for the freshness check.
        """
        result = self.predict(current, now)
        return len(result.issues) / result.n_checks if result.n_checks else 0.0
