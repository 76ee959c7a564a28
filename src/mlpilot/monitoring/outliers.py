"""Row-level outliers against the reference: isolation forest and Mahalanobis distance.

Both take numeric DataFrames (the fitted columns are selected by name) or 2-D arrays, reject NaN and ±inf
(impute first), and return per-row scores where higher means more anomalous.
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np

from mlpilot.errors import InvalidArgument
from mlpilot.monitoring._extras import needs_extra
from mlpilot.monitoring._inputs import Table, check_fitted, check_int, check_interval, check_one_of, numeric_matrix
from mlpilot.monitoring.base import Detector
from mlpilot.monitoring.results import OutlierResult

_I = TypeVar("_I", bound="IsolationForestOutliers")
_M = TypeVar("_M", bound="MahalanobisOutliers")


class IsolationForestOutliers(Detector):
    """Isolation forest (``sklearn.ensemble.IsolationForest``) trained on the reference.

    The score of a row is ``-score_samples(row)`` (the forest's anomaly score, in ``(0, 1]``); a row is an outlier
    exactly when scikit-learn's ``predict`` says ``-1``, i.e. when its score exceeds ``threshold = -offset_``.

    Args:
        contamination: expected share of outliers in the reference (sets the threshold), or ``"auto"``
            (threshold 0.5, the original paper's).
        n_estimators: number of trees.
        max_samples: rows drawn per tree (``"auto"`` = min(256, n)).
        random_state: seed (int) for reproducible trees.

    Attributes:
        model_: the fitted ``IsolationForest``.
        threshold_: the score above which a row is an outlier.
        feature_names_in_: the column names.
    """

    def __init__(
        self,
        contamination: float | str = "auto",
        n_estimators: int = 100,
        max_samples: int | str = "auto",
        random_state: int | None = None,
    ) -> None:
        self.contamination = contamination
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.random_state = random_state

    def fit(self: _I, reference: Table) -> _I:
        """Train the forest on the reference.

        Args:
            reference: numeric DataFrame or 2-D array, shape ``(n_rows, n_features)``.

        Returns:
            self, fitted.

        Raises:
            InvalidArgument: bad hyperparameters; empty, non-numeric or non-finite data.
            MissingExtra: scikit-learn is not installed.
        """
        if isinstance(self.contamination, str):
            check_one_of(self, "contamination", self.contamination, ("auto",))
        else:
            check_interval(self, "contamination", self.contamination, 0.0, 0.5, closed="right")
        check_int(self, "n_estimators", self.n_estimators, 1)
        if isinstance(self.max_samples, str):
            check_one_of(self, "max_samples", self.max_samples, ("auto",))
        else:
            check_int(self, "max_samples", self.max_samples, 1)
        with needs_extra("isolation-forest outliers"):
            from sklearn.ensemble import IsolationForest

        matrix, names = numeric_matrix(reference, None, role="reference")
        self.model_ = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=self.max_samples,
            contamination=self.contamination,
            random_state=self.random_state,
        ).fit(matrix)
        self.threshold_ = float(-self.model_.offset_)
        self.feature_names_in_ = names
        return self

    def score(self, current: Table) -> np.ndarray:
        """Per-row anomaly scores.

        Args:
            current: numeric DataFrame (with the fitted columns) or 2-D array.

        Returns:
            shape ``(n_rows,)``, higher is more anomalous.

        Raises:
            InvalidArgument: not fitted, missing or non-numeric columns, empty or non-finite data.
        """
        check_fitted(self, "model_")
        matrix, _ = numeric_matrix(current, self.feature_names_in_, role="current")
        return np.asarray(-self.model_.score_samples(matrix), dtype=np.float64)

    def predict(self, current: Table) -> OutlierResult:
        """Score and flag every row.

        Args:
            current: numeric DataFrame (with the fitted columns) or 2-D array.

        Returns:
            an :class:`OutlierResult` with per-row scores and flags and the outlier share.

        Raises:
            InvalidArgument: not fitted, missing or non-numeric columns, empty or non-finite data.
        """
        scores = self.score(current)
        flags = scores - self.threshold_ > 0  # sklearn: outlier iff score_samples - offset_ < 0
        return OutlierResult("isolation_forest", scores, flags, self.threshold_, float(flags.mean()))


class MahalanobisOutliers(Detector):
    """Squared Mahalanobis distance to the reference centre, with a chi-square threshold.

    For Gaussian data the squared distance follows a chi-square with ``n_features`` degrees of freedom, so a row
    is an outlier when its score exceeds ``chi2.ppf(quantile, n_features)``. ``robust=True`` estimates the centre
    and covariance with the minimum covariance determinant (``sklearn.covariance.MinCovDet``), so outliers in the
    reference do not inflate the covariance; otherwise the sample mean and the maximum-likelihood covariance
    (as ``sklearn.covariance.EmpiricalCovariance``).

    Args:
        quantile: the chi-square quantile of the threshold, in ``(0, 1)``.
        robust: use the minimum covariance determinant.
        random_state: seed (int) of ``MinCovDet``.

    Attributes:
        location_: the centre, shape ``(n_features,)``.
        precision_: the (pseudo-)inverse covariance, shape ``(n_features, n_features)``.
        threshold_: the squared-distance threshold.
        feature_names_in_: the column names.
    """

    def __init__(self, quantile: float = 0.975, robust: bool = False, random_state: int | None = None) -> None:
        self.quantile = quantile
        self.robust = robust
        self.random_state = random_state

    def fit(self: _M, reference: Table) -> _M:
        """Estimate the centre and covariance of the reference.

        Args:
            reference: numeric DataFrame or 2-D array, shape ``(n_rows, n_features)``, ``n_rows >= 2``.

        Returns:
            self, fitted.

        Raises:
            InvalidArgument: bad hyperparameters; empty, non-numeric or non-finite data; a single row.
            MissingExtra: scipy/scikit-learn are not installed.
        """
        check_interval(self, "quantile", self.quantile, 0.0, 1.0, closed="neither")
        with needs_extra("Mahalanobis outliers"):
            from scipy import linalg, stats
            from sklearn.covariance import MinCovDet

        matrix, names = numeric_matrix(reference, None, role="reference")
        if matrix.shape[0] < 2:
            raise InvalidArgument(f"MahalanobisOutliers needs at least 2 reference rows, got {matrix.shape[0]}")
        covariance: Any
        if self.robust:
            mcd = MinCovDet(random_state=self.random_state).fit(matrix)
            location, covariance = mcd.location_, mcd.covariance_
        else:
            location = matrix.mean(axis=0)
            covariance = np.atleast_2d(np.cov(matrix, rowvar=False, bias=True))
        self.location_ = np.asarray(location, dtype=np.float64)
        self.precision_ = np.asarray(linalg.pinvh(covariance), dtype=np.float64)
        self.threshold_ = float(stats.chi2.ppf(self.quantile, matrix.shape[1]))
        self.feature_names_in_ = names
        return self

    def score(self, current: Table) -> np.ndarray:
        """Per-row squared Mahalanobis distances to the reference centre.

        Args:
            current: numeric DataFrame (with the fitted columns) or 2-D array.

        Returns:
            shape ``(n_rows,)``, in squared standard deviations.

        Raises:
            InvalidArgument: not fitted, missing or non-numeric columns, empty or non-finite data.
        """
        check_fitted(self, "precision_")
        matrix, _ = numeric_matrix(current, self.feature_names_in_, role="current")
        centred = matrix - self.location_
        return np.asarray(((centred @ self.precision_) * centred).sum(axis=1), dtype=np.float64)

    def predict(self, current: Table) -> OutlierResult:
        """Score and flag every row.

        Args:
            current: numeric DataFrame (with the fitted columns) or 2-D array.

        Returns:
            an :class:`OutlierResult` with per-row squared distances and flags and the outlier share.

        Raises:
            InvalidArgument: not fitted, missing or non-numeric columns, empty or non-finite data.
        """
        scores = self.score(current)
        flags = scores > self.threshold_
        return OutlierResult("mahalanobis", scores, flags, self.threshold_, float(flags.mean()))
