"""Realized model performance on labelled windows, compared with the reference.

Example::

    perf = ClassificationPerformance(metric="f1", tolerance=0.05).fit(y_ref, proba_ref)
    perf.predict(y_window, proba_window).is_degraded
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np

from mlpilot.errors import InvalidArgument
from mlpilot.monitoring._inputs import check_fitted, check_int, check_interval, check_one_of
from mlpilot.monitoring.base import Detector
from mlpilot.monitoring.metrics import classification_metrics, encode_labels, proba_matrix, regression_metrics
from mlpilot.monitoring.results import PerformanceResult

#: classification metrics where larger is better; the others (``log_loss``, ``ece``) are losses.
HIGHER_IS_BETTER = frozenset({"accuracy", "f1", "f1_macro", "roc_auc"})
CLASSIFICATION_METRICS = ("accuracy", "f1", "f1_macro", "roc_auc", "log_loss", "ece")
REGRESSION_METRICS = ("mae", "rmse", "mape")

_C = TypeVar("_C", bound="ClassificationPerformance")
_R = TypeVar("_R", bound="RegressionPerformance")


def infer_classes(y_true: Any, y_proba: Any, classes: Sequence[Any] | None) -> np.ndarray:
    """The class labels in probability-column order: ``classes`` if given, else the sorted labels of ``y_true``.

    Raises:
        InvalidArgument: the classes cannot be inferred (fewer than two labels, or a count that does not match the
            probability columns).
    """
    if np.asarray(y_true).size == 0:
        raise InvalidArgument("labels must be a non-empty 1-D array; the window is empty")
    if classes is not None:
        found = np.asarray(list(classes))
    else:
        found = np.unique(np.asarray(y_true))
        width = 2 if np.ndim(y_proba) == 1 else np.shape(y_proba)[1]
        if found.size != width:
            raise InvalidArgument(
                f"cannot infer the classes: the labels hold {found.size} distinct values but the probabilities have "
                f"{width} columns; pass classes=[…] in the model's column order"
            )
    if found.size < 2:
        raise InvalidArgument(f"a classifier needs at least two classes, got {found.tolist()}")
    return found


class ClassificationPerformance(Detector):
    """Classification metrics of a labelled window against the reference.

    Degraded when a higher-is-better metric (accuracy, F1, ROC AUC) drops more than ``tolerance`` below its
    reference value, or a loss (log loss, ECE) rises more than ``tolerance`` above it. A NaN metric (ROC AUC of a
    window holding one class) is never "degraded".

    Args:
        metric: the metric judged: ``accuracy``, ``f1``, ``f1_macro``, ``roc_auc``, ``log_loss`` or ``ece``.
        tolerance: allowed absolute change of ``metric`` (in metric units, e.g. 0.05 = 5 accuracy points).
        n_bins: equal-width bins of the expected calibration error.
        classes: labels in probability-column order; default: the sorted labels seen at fit.

    Attributes:
        classes_: the class labels.
        reference_metrics_: every metric on the reference.
    """

    def __init__(
        self, metric: str = "accuracy", tolerance: float = 0.05, n_bins: int = 10, classes: Sequence[Any] | None = None
    ) -> None:
        self.metric = metric
        self.tolerance = tolerance
        self.n_bins = n_bins
        self.classes = classes

    def _metrics(self, y_true: Any, y_proba: Any) -> tuple[dict[str, float], int]:
        codes = encode_labels(y_true, self.classes_)
        proba = proba_matrix(y_proba, self.classes_.size, codes.size)
        return classification_metrics(codes, proba, self.n_bins), codes.size

    def fit(self: _C, y_true: Any, y_proba: Any) -> _C:
        """Compute the reference metrics.

        Args:
            y_true: reference labels, shape ``(n,)``.
            y_proba: reference probabilities, shape ``(n, k)`` or ``(n,)`` for a binary model.

        Returns:
            self, fitted.

        Raises:
            InvalidArgument: bad hyperparameters, mismatched shapes, unknown labels, invalid probabilities.
        """
        check_one_of(self, "metric", self.metric, CLASSIFICATION_METRICS)
        check_interval(self, "tolerance", self.tolerance, 0.0, 1.0)
        check_int(self, "n_bins", self.n_bins, 1)
        self.classes_ = infer_classes(y_true, y_proba, self.classes)
        self.reference_metrics_, _ = self._metrics(y_true, y_proba)
        return self

    def score(self, y_true: Any, y_proba: Any) -> float:
        """The judged metric on a window.

        Args:
            y_true: labels, shape ``(n,)``.
            y_proba: probabilities, shape ``(n, k)`` or ``(n,)``.

        Returns:
            the value of ``metric``.

        Raises:
            InvalidArgument: not fitted, mismatched shapes, unknown labels, invalid probabilities.
        """
        check_fitted(self, "reference_metrics_")
        return self._metrics(y_true, y_proba)[0][self.metric]

    def predict(self, y_true: Any, y_proba: Any) -> PerformanceResult:
        """All metrics of a window and the degradation verdict.

        Args:
            y_true: labels, shape ``(n,)``.
            y_proba: probabilities, shape ``(n, k)`` or ``(n,)``.

        Returns:
            a :class:`PerformanceResult`; ``threshold`` is the limit for ``metric``.

        Raises:
            InvalidArgument: not fitted, mismatched shapes, unknown labels, invalid probabilities.
        """
        check_fitted(self, "reference_metrics_")
        metrics, n = self._metrics(y_true, y_proba)
        reference = self.reference_metrics_[self.metric]
        value = metrics[self.metric]
        if self.metric in HIGHER_IS_BETTER:
            threshold = reference - self.tolerance
            degraded = value < threshold
        else:
            threshold = reference + self.tolerance
            degraded = value > threshold
        return PerformanceResult(
            task="classification",
            metric=self.metric,
            value=value,
            reference_value=reference,
            threshold=threshold,
            is_degraded=bool(degraded and not math.isnan(value)),
            metrics=metrics,
            reference_metrics=self.reference_metrics_,
            n=n,
        )


class RegressionPerformance(Detector):
    """Regression errors (MAE, RMSE, MAPE) of a labelled window against the reference.

    Errors are scale-dependent, so the tolerance is relative: degraded when ``metric`` exceeds
    ``reference * (1 + relative_tolerance)``.

    Args:
        metric: ``mae``, ``rmse`` or ``mape``.
        relative_tolerance: allowed relative increase, e.g. 0.1 = 10% worse than the reference.

    Attributes:
        reference_metrics_: every metric on the reference.
    """

    def __init__(self, metric: str = "rmse", relative_tolerance: float = 0.1) -> None:
        self.metric = metric
        self.relative_tolerance = relative_tolerance

    def fit(self: _R, y_true: Any, y_pred: Any) -> _R:
        """Compute the reference metrics.

        Args:
            y_true: observed values, shape ``(n,)``.
            y_pred: predictions, shape ``(n,)``.

        Returns:
            self, fitted.

        Raises:
            InvalidArgument: bad hyperparameters, mismatched lengths, non-numeric or non-finite values.
        """
        check_one_of(self, "metric", self.metric, REGRESSION_METRICS)
        check_interval(self, "relative_tolerance", self.relative_tolerance, 0.0, float("inf"))
        self.reference_metrics_ = regression_metrics(y_true, y_pred)
        return self

    def score(self, y_true: Any, y_pred: Any) -> float:
        """The judged metric on a window.

        Args:
            y_true: observed values, shape ``(n,)``.
            y_pred: predictions, shape ``(n,)``.

        Returns:
            the value of ``metric``.

        Raises:
            InvalidArgument: not fitted, mismatched lengths, non-numeric or non-finite values.
        """
        check_fitted(self, "reference_metrics_")
        return regression_metrics(y_true, y_pred)[self.metric]

    def predict(self, y_true: Any, y_pred: Any) -> PerformanceResult:
        """All metrics of a window and the degradation verdict.

        Args:
            y_true: observed values, shape ``(n,)``.
            y_pred: predictions, shape ``(n,)``.

        Returns:
            a :class:`PerformanceResult`; ``threshold`` is ``reference * (1 + relative_tolerance)``.

        Raises:
            InvalidArgument: not fitted, mismatched lengths, non-numeric or non-finite values.
        """
        check_fitted(self, "reference_metrics_")
        metrics = regression_metrics(y_true, y_pred)
        reference = self.reference_metrics_[self.metric]
        threshold = reference * (1 + self.relative_tolerance)
        return PerformanceResult(
            task="regression",
            metric=self.metric,
            value=metrics[self.metric],
            reference_value=reference,
            threshold=threshold,
            is_degraded=bool(metrics[self.metric] > threshold),
            metrics=metrics,
            reference_metrics=self.reference_metrics_,
            n=int(np.asarray(y_true).size),
        )
