"""Multivariate drift: tests on the joint distribution of all numeric features at once.

Univariate tests miss a change in the *relation* between features (same marginals, different correlation).
These two tests see it:

- :class:`MMDDrift` — maximum mean discrepancy with an RBF kernel and a permutation test.
- :class:`ClassifierDrift` — a domain classifier learns to tell reference rows from current rows; a
  cross-validated ROC AUC well above 0.5 means the windows differ.

Both standardise the features with the reference mean and standard deviation, subsample each window to
``max_samples`` rows (seeded), and return a :class:`DriftResult` without per-feature rows.
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

import numpy as np

from mlpilot.errors import InvalidArgument
from mlpilot.monitoring._extras import needs_extra
from mlpilot.monitoring._inputs import Table, check_fitted, check_int, check_interval, check_one_of, numeric_matrix
from mlpilot.monitoring.base import Detector
from mlpilot.monitoring.metrics import roc_auc_binary
from mlpilot.monitoring.results import DriftResult

_M = TypeVar("_M", bound="_JointDrift")


def _subsample(matrix: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    if matrix.shape[0] <= limit:
        return matrix
    return matrix[np.sort(rng.choice(matrix.shape[0], size=limit, replace=False))]


class _JointDrift(Detector):
    """Shared fit/validation: reference standardisation, subsampling and seeding."""

    max_samples: int
    random_state: int | None

    def _check_params(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _rngs(self) -> tuple[np.random.Generator, np.random.Generator]:
        """Independent streams for fit and predict, the same on every call for a given ``random_state``."""
        fit_seed, predict_seed = np.random.SeedSequence(self.random_state).spawn(2)
        return np.random.default_rng(fit_seed), np.random.default_rng(predict_seed)

    def fit(self: _M, reference: Table) -> _M:
        """Standardise and subsample the reference.

        Args:
            reference: numeric DataFrame or 2-D array, shape ``(n_rows, n_features)``.

        Returns:
            self, fitted.

        Raises:
            InvalidArgument: bad hyperparameters; empty, non-numeric or non-finite data; fewer than 2 rows.
        """
        self._check_params()
        if self.random_state is not None:
            check_int(self, "random_state", self.random_state, 0)
        matrix, names = numeric_matrix(reference, None, role="reference")
        if matrix.shape[0] < 2:
            raise InvalidArgument(f"{type(self).__name__} needs at least 2 reference rows, got {matrix.shape[0]}")
        self.mean_ = matrix.mean(axis=0)
        std = matrix.std(axis=0)
        self.scale_ = np.where(std > 0, std, 1.0)
        self.feature_names_in_ = names
        self.reference_ = _subsample((matrix - self.mean_) / self.scale_, self.max_samples, self._rngs()[0])
        return self

    def _current(self, current: Table) -> tuple[np.ndarray, np.random.Generator]:
        check_fitted(self, "reference_")
        matrix, _ = numeric_matrix(current, self.feature_names_in_, role="current")
        if matrix.shape[0] < 2:
            raise InvalidArgument(f"{type(self).__name__} needs at least 2 current rows, got {matrix.shape[0]}")
        rng = self._rngs()[1]
        return _subsample((matrix - self.mean_) / self.scale_, self.max_samples, rng), rng


def _mmd2_unbiased(kernel: np.ndarray, groups: np.ndarray, m: int) -> np.ndarray:
    """Unbiased MMD² for each column of ``groups`` (0/1 indicators of the first sample, ``m`` ones each)."""
    n = kernel.shape[0] - m
    row_sums = kernel.sum(axis=1)
    total = row_sums.sum()
    s_xx = np.einsum("ib,ib->b", groups, kernel @ groups)  # includes the diagonal: m ones
    s_xy = groups.T @ row_sums - s_xx
    s_yy = total - s_xx - 2 * s_xy
    return np.asarray((s_xx - m) / (m * (m - 1)) + (s_yy - n) / (n * (n - 1)) - 2 * s_xy / (m * n))


class MMDDrift(_JointDrift):
    """Maximum mean discrepancy two-sample test with an RBF kernel.

    The kernel is ``exp(-|a - b|² / (2 sigma²))`` on standardised features, ``sigma`` the median pairwise distance
    of the pooled sample (median heuristic). The statistic is the unbiased MMD²; the p-value is
    ``(1 + #{permuted MMD² >= observed}) / (1 + n_permutations)``. Cost: one ``N x N`` kernel,
    ``N <= 2 * max_samples``, and one matrix product for all permutations.

    Args:
        alpha: drift when ``p_value < alpha``.
        n_permutations: permutations of the pooled sample.
        max_samples: rows kept per window (a seeded random subsample).
        random_state: seed (int) for subsampling and permutations; ``None`` = not reproducible.

    Attributes:
        reference_: the standardised reference subsample.
        mean_: reference column means; scale_: reference column standard deviations (0 replaced by 1).
        feature_names_in_: the column names.
    """

    def __init__(
        self, alpha: float = 0.05, n_permutations: int = 100, max_samples: int = 1000, random_state: int | None = None
    ) -> None:
        self.alpha = alpha
        self.n_permutations = n_permutations
        self.max_samples = max_samples
        self.random_state = random_state

    def _check_params(self) -> None:
        check_interval(self, "alpha", self.alpha, 0.0, 1.0, closed="neither")
        check_int(self, "n_permutations", self.n_permutations, 1)
        check_int(self, "max_samples", self.max_samples, 2)

    def _test(self, current: Table, permutations: int) -> tuple[float, float, dict[str, Any]]:
        values, rng = self._current(current)
        pooled = np.vstack((self.reference_, values))
        norms = np.einsum("ij,ij->i", pooled, pooled)
        squared = np.maximum(norms[:, None] + norms[None, :] - 2 * pooled @ pooled.T, 0.0)
        upper = squared[np.triu_indices_from(squared, k=1)]
        bandwidth = float(np.median(np.sqrt(upper))) if upper.size else 1.0
        bandwidth = bandwidth if bandwidth > 0 else 1.0
        kernel = np.exp(-squared / (2 * bandwidth**2))
        m, size = self.reference_.shape[0], pooled.shape[0]
        groups = np.zeros((size, permutations + 1))
        groups[:m, 0] = 1.0
        for b in range(1, permutations + 1):
            groups[rng.permutation(size)[:m], b] = 1.0
        mmd2 = _mmd2_unbiased(kernel, groups, m)
        p_value = float((1 + np.sum(mmd2[1:] >= mmd2[0])) / (1 + permutations)) if permutations else math.nan
        detail = {"bandwidth": bandwidth, "n_reference": m, "n_current": int(values.shape[0])}
        return float(mmd2[0]), p_value, detail

    def score(self, current: Table) -> float:
        """The unbiased MMD² between the reference and ``current`` (no permutations).

        Args:
            current: numeric DataFrame (with the fitted columns) or 2-D array.

        Returns:
            MMD² (can be slightly negative when the windows match).

        Raises:
            InvalidArgument: not fitted, missing or non-numeric columns, non-finite values, fewer than 2 rows.
        """
        return self._test(current, 0)[0]

    def predict(self, current: Table) -> DriftResult:
        """Permutation test of ``current`` against the reference.

        Args:
            current: numeric DataFrame (with the fitted columns) or 2-D array.

        Returns:
            a :class:`DriftResult` with ``test="mmd"``, statistic MMD², p-value, ``threshold=alpha``.

        Raises:
            InvalidArgument: not fitted, missing or non-numeric columns, non-finite values, fewer than 2 rows.
        """
        statistic, p_value, detail = self._test(current, self.n_permutations)
        detail["n_permutations"] = self.n_permutations
        return DriftResult(
            test="mmd",
            is_drift=p_value < self.alpha,
            share_drifted=0.0,
            statistic=statistic,
            p_value=p_value,
            threshold=float(self.alpha),
            detail=detail,
        )


class ClassifierDrift(_JointDrift):
    """Classifier two-sample test (domain classifier).

    A classifier learns to predict "current" (1) versus "reference" (0) from the features; its out-of-fold
    probabilities (stratified ``cv``-fold cross-validation, pooled) give a ROC AUC. Drift when
    ``AUC > threshold``. The p-value is one-sided from the normal approximation of the Mann-Whitney statistic
    under "the windows are exchangeable": ``AUC ~ N(0.5, (n0 + n1 + 1) / (12 n0 n1))`` — cheap, and
    conservative enough for a monitor; it treats the pooled out-of-fold scores as independent.

    Args:
        threshold: drift when the cross-validated AUC exceeds it.
        model: ``logistic`` (linear; fast) or ``hgb`` (``HistGradientBoostingClassifier``; finds non-linear
            differences).
        cv: number of folds.
        max_samples: rows kept per window (a seeded random subsample).
        random_state: seed (int) for subsampling, folds and the model; ``None`` = not reproducible.

    Attributes:
        reference_: the standardised reference subsample.
        mean_: reference column means; scale_: reference column standard deviations (0 replaced by 1).
        feature_names_in_: the column names.
    """

    def __init__(
        self,
        threshold: float = 0.55,
        model: str = "logistic",
        cv: int = 5,
        max_samples: int = 5000,
        random_state: int | None = None,
    ) -> None:
        self.threshold = threshold
        self.model = model
        self.cv = cv
        self.max_samples = max_samples
        self.random_state = random_state

    def _check_params(self) -> None:
        check_interval(self, "threshold", self.threshold, 0.0, 1.0)
        check_one_of(self, "model", self.model, ("logistic", "hgb"))
        check_int(self, "cv", self.cv, 2)
        check_int(self, "max_samples", self.max_samples, 2)

    def _auc(self, current: Table) -> tuple[float, int, int]:
        with needs_extra("the classifier drift test"):
            from sklearn.ensemble import HistGradientBoostingClassifier
            from sklearn.linear_model import LogisticRegression
            from sklearn.model_selection import StratifiedKFold, cross_val_predict

        values, rng = self._current(current)
        n0, n1 = self.reference_.shape[0], values.shape[0]
        if min(n0, n1) < self.cv:
            raise InvalidArgument(f"ClassifierDrift(cv={self.cv}) needs at least {self.cv} rows in each window")
        features = np.vstack((self.reference_, values))
        target = np.concatenate((np.zeros(n0, dtype=int), np.ones(n1, dtype=int)))
        seed = int(rng.integers(2**31 - 1))
        classifier: Any = (
            LogisticRegression(max_iter=1000)
            if self.model == "logistic"
            else HistGradientBoostingClassifier(random_state=seed)
        )
        folds = StratifiedKFold(n_splits=self.cv, shuffle=True, random_state=seed)
        scores = cross_val_predict(classifier, features, target, cv=folds, method="predict_proba")[:, 1]
        return roc_auc_binary(target == 1, scores), n0, n1

    def score(self, current: Table) -> float:
        """The cross-validated ROC AUC of the domain classifier.

        Args:
            current: numeric DataFrame (with the fitted columns) or 2-D array.

        Returns:
            the AUC in ``[0, 1]``; 0.5 means the classifier cannot tell the windows apart.

        Raises:
            InvalidArgument: not fitted, missing or non-numeric columns, non-finite values, fewer rows than folds.
            MissingExtra: scikit-learn is not installed.
        """
        return self._auc(current)[0]

    def predict(self, current: Table) -> DriftResult:
        """Train the domain classifier and decide.

        Args:
            current: numeric DataFrame (with the fitted columns) or 2-D array.

        Returns:
            a :class:`DriftResult` with ``test="classifier"``, statistic AUC, one-sided p-value,
            ``threshold`` the AUC threshold.

        Raises:
            InvalidArgument: not fitted, missing or non-numeric columns, non-finite values, fewer rows than folds.
            MissingExtra: scikit-learn is not installed.
        """
        auc, n0, n1 = self._auc(current)
        null_sd = math.sqrt((n0 + n1 + 1) / (12 * n0 * n1))
        p_value = 0.5 * math.erfc((auc - 0.5) / null_sd / math.sqrt(2))
        return DriftResult(
            test="classifier",
            is_drift=auc > self.threshold,
            share_drifted=0.0,
            statistic=auc,
            p_value=p_value,
            threshold=float(self.threshold),
            detail={"model": self.model, "cv": self.cv, "n_reference": n0, "n_current": n1, "null_sd": null_sd},
        )
