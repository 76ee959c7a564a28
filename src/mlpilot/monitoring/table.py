"""The per-feature drift report of a table: one univariate test per column, corrected for multiple testing.

Example::

    report = TableDrift(numeric_test="ks", categorical_test="chi2", correction="holm").fit(reference_df)
    result = report.predict(current_df)
    result.is_drift, result.drifted_features, result.to_frame()
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Sequence
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from mlpilot.errors import InvalidArgument
from mlpilot.monitoring._inputs import (
    as_frame,
    check_fitted,
    check_interval,
    check_one_of,
    is_real_numeric,
    require_columns,
)
from mlpilot.monitoring.base import Detector, UnivariateDrift, clone
from mlpilot.monitoring.corrections import CORRECTIONS, adjust_p_values
from mlpilot.monitoring.drift_categorical import (
    CategoricalJensenShannonDrift,
    CategoricalPSIDrift,
    ChiSquareDrift,
    UnseenCategoryDrift,
)
from mlpilot.monitoring.drift_numeric import JensenShannonDrift, KSDrift, PSIDrift, WassersteinDrift
from mlpilot.monitoring.results import DriftResult, FeatureDrift

NUMERIC_TESTS: dict[str, type[UnivariateDrift]] = {
    "ks": KSDrift,
    "wasserstein": WassersteinDrift,
    "psi": PSIDrift,
    "jensenshannon": JensenShannonDrift,
}
CATEGORICAL_TESTS: dict[str, type[UnivariateDrift]] = {
    "chi2": ChiSquareDrift,
    "jensenshannon": CategoricalJensenShannonDrift,
    "psi": CategoricalPSIDrift,
    "unseen": UnseenCategoryDrift,
}

_T = TypeVar("_T", bound="TableDrift")


def _is_categorical(dtype: Any) -> bool:
    return bool(
        pd.api.types.is_object_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
        or isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_bool_dtype(dtype)
    )


class TableDrift(Detector):
    """Per-feature drift of a DataFrame with a multiple-testing correction, and a dataset-level verdict.

    Columns are typed at fit: integer and float columns get ``numeric_test``; object, string, category and bool
    columns get ``categorical_test``; other dtypes (datetimes …) are ignored and listed in ``ignored_columns_``.
    Explicit ``numeric_columns``/``categorical_columns`` override the inference (a list left ``None`` is inferred
    from the columns not named in the other list).

    The correction applies to the family of hypothesis tests (KS, chi-square) only; for those, ``alpha`` replaces
    the detector's own alpha, ``FeatureDrift.p_value`` is the adjusted p-value and ``detail["raw_p_value"]`` the
    raw one. Distance tests (Wasserstein, PSI, Jensen-Shannon, unseen) keep their own threshold.

    Args:
        numeric_test: ``ks``, ``wasserstein``, ``psi``, ``jensenshannon``, or a configured numeric detector
            (cloned per column), e.g. ``PSIDrift(threshold=0.2, n_bins=20)``.
        categorical_test: ``chi2``, ``jensenshannon``, ``psi``, ``unseen``, or a configured categorical detector.
        alpha: family significance level of the hypothesis tests.
        correction: ``holm``, ``bonferroni``, ``fdr_bh`` or ``none``.
        drift_share: the dataset drifts when at least this share of features drifts, in ``(0, 1]``.
        numeric_columns: columns to test as numeric, or ``None`` to infer.
        categorical_columns: columns to test as categorical, or ``None`` to infer.

    Attributes:
        detectors_: the fitted detector per column, in reference column order.
        numeric_columns_: the numeric columns.
        categorical_columns_: the categorical columns.
        ignored_columns_: reference columns with a dtype no test applies to.
        n_reference_: number of reference rows.
    """

    def __init__(
        self,
        numeric_test: str | UnivariateDrift = "ks",
        categorical_test: str | UnivariateDrift = "chi2",
        alpha: float = 0.05,
        correction: str = "holm",
        drift_share: float = 0.5,
        numeric_columns: Sequence[Hashable] | None = None,
        categorical_columns: Sequence[Hashable] | None = None,
    ) -> None:
        self.numeric_test = numeric_test
        self.categorical_test = categorical_test
        self.alpha = alpha
        self.correction = correction
        self.drift_share = drift_share
        self.numeric_columns = numeric_columns
        self.categorical_columns = categorical_columns

    def _template(self, param: str, kind: str, registry: dict[str, type[UnivariateDrift]]) -> UnivariateDrift:
        test = getattr(self, param)
        if isinstance(test, str):
            check_one_of(self, param, test, list(registry))
            return registry[test]()
        if not isinstance(test, UnivariateDrift) or test.kind != kind:
            raise InvalidArgument(f"TableDrift({param}=…) must be one of {list(registry)} or a {kind} drift detector")
        return test

    def _resolve_columns(self, frame: pd.DataFrame) -> tuple[list[Hashable], list[Hashable], list[Hashable]]:
        numeric = list(self.numeric_columns) if self.numeric_columns is not None else None
        categorical = list(self.categorical_columns) if self.categorical_columns is not None else None
        for given in (numeric, categorical):
            if given is not None:
                require_columns(frame, given, role="reference")
        if numeric is not None and categorical is not None and set(numeric) & set(categorical):
            raise InvalidArgument(
                f"columns {sorted(map(str, set(numeric) & set(categorical)))} are listed as both "
                "numeric and categorical"
            )
        named = set(numeric or ()) | set(categorical or ())
        columns: list[Hashable] = list(frame.columns)
        rest = [c for c in columns if c not in named]
        if numeric is None:
            numeric = [c for c in rest if is_real_numeric(frame[c].dtype)]
        if categorical is None:
            categorical = [c for c in rest if c not in numeric and _is_categorical(frame[c].dtype)]
        chosen = set(numeric) | set(categorical)
        ignored = [c for c in columns if c not in chosen]
        if not chosen:
            raise InvalidArgument("the reference has no numeric or categorical column to test for drift")
        return numeric, categorical, ignored

    def fit(self: _T, reference: pd.DataFrame) -> _T:
        """Type the columns and fit one detector per column.

        Args:
            reference: the reference DataFrame (e.g. training or validation data).

        Returns:
            self, fitted.

        Raises:
            InvalidArgument: bad hyperparameters, an empty or non-DataFrame reference, unknown or overlapping
                column lists, a non-numeric column given as numeric, a column without values.
        """
        numeric_template = self._template("numeric_test", "numeric", NUMERIC_TESTS)
        categorical_template = self._template("categorical_test", "categorical", CATEGORICAL_TESTS)
        check_interval(self, "alpha", self.alpha, 0.0, 1.0, closed="neither")
        check_one_of(self, "correction", self.correction, CORRECTIONS)
        check_interval(self, "drift_share", self.drift_share, 0.0, 1.0, closed="right")
        frame = as_frame(reference, role="reference")
        numeric, categorical, ignored = self._resolve_columns(frame)
        templates = {**dict.fromkeys(categorical, categorical_template), **dict.fromkeys(numeric, numeric_template)}
        detectors: dict[Hashable, UnivariateDrift] = {}
        for column in frame.columns:  # reference column order
            if column in templates:
                detectors[column] = clone(templates[column]).fit(frame[column].rename(str(column)))
        self.detectors_ = detectors
        self.numeric_columns_ = numeric
        self.categorical_columns_ = categorical
        self.ignored_columns_ = ignored
        self.n_reference_ = len(frame)
        return self

    def _current(self, current: pd.DataFrame) -> pd.DataFrame:
        check_fitted(self, "detectors_")
        frame = as_frame(current, role="current")
        require_columns(frame, list(self.detectors_), role="current")
        return frame

    def score(self, current: pd.DataFrame) -> dict[str, float]:
        """The statistic of every column.

        Args:
            current: the current window, with at least the fitted columns.

        Returns:
            ``{column: statistic}`` in reference column order.

        Raises:
            InvalidArgument: not fitted, an empty window, a missing column or a wrong dtype.
        """
        frame = self._current(current)
        return {str(c): d.score(frame[c]) for c, d in self.detectors_.items()}

    def predict(self, current: pd.DataFrame) -> DriftResult:
        """Test every column, correct the p-values and decide whether the dataset drifts.

        Args:
            current: the current window, with at least the fitted columns (extra columns are ignored).

        Returns:
            a :class:`DriftResult` with one :class:`FeatureDrift` per column; ``threshold`` is ``drift_share``.

        Raises:
            InvalidArgument: not fitted, an empty window, a missing column or a wrong dtype.
        """
        frame = self._current(current)
        features = [d.predict(frame[c]) for c, d in self.detectors_.items()]
        tested = [i for i, f in enumerate(features) if f.p_value is not None]
        adjusted = adjust_p_values(np.array([features[i].p_value for i in tested], dtype=np.float64), self.correction)
        for i, p_adj in zip(tested, adjusted, strict=True):
            f = features[i]
            features[i] = dataclasses.replace(
                f,
                p_value=float(p_adj),
                threshold=float(self.alpha),
                is_drift=bool(p_adj < self.alpha),
                detail={**f.detail, "raw_p_value": f.p_value},
            )
        return self._result(features, len(frame))

    def _result(self, features: list[FeatureDrift], n_current: int) -> DriftResult:
        n_drifted = sum(f.is_drift for f in features)
        share = n_drifted / len(features)
        tests = dict.fromkeys(f.test for f in features)
        return DriftResult(
            test="+".join(tests),
            is_drift=share >= self.drift_share,
            share_drifted=share,
            features=tuple(features),
            correction=self.correction,
            threshold=float(self.drift_share),
            detail={
                "n_features": len(features),
                "n_drifted": n_drifted,
                "alpha": float(self.alpha),
                "n_reference": self.n_reference_,
                "n_current": n_current,
                "ignored_columns": [str(c) for c in self.ignored_columns_],
            },
        )
