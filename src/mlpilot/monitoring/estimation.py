"""Label-free performance estimation: confidence-based performance estimation (CBPE, after NannyML).

While labels are missing, a calibrated classifier's confidence *is* its expected accuracy: if the calibrated
probability that the predicted class is right is ``c_i``, the expected accuracy of a window is ``mean(c_i)``.
This holds under covariate shift (``P(x)`` changes, ``P(y | x)`` does not) as long as the calibration learned on
the reference still holds where the window lives; it fails under concept shift.

Decisions (documented choices):

- **Top-label calibration.** We calibrate the confidence ``max_k p_k`` against "the prediction was right" on the
  reference, one 1-D map for binary and multiclass alike — exactly the quantity accuracy needs.
- **Isotonic by default** (as NannyML): monotone, no shape assumption; it needs a reference of a few hundred rows
  the model was *not* trained on. ``calibration="platt"`` fits a logistic curve on ``logit(confidence)``
  instead: smoother, better for small references.
- **Interval**: with independent rows and a correct calibration, the realized accuracy of the window is a sum of
  Bernoulli(``c_i``) over ``n``: variance ``sum c_i (1 - c_i) / n**2``. The interval is the normal approximation
  ``estimate ± z * sqrt(variance)``, clipped to ``[0, 1]``. It ignores the calibration's own estimation error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any, TypeVar

import numpy as np

from mlpilot.monitoring._extras import needs_extra
from mlpilot.monitoring._inputs import check_fitted, check_interval, check_one_of
from mlpilot.monitoring.base import Detector
from mlpilot.monitoring.metrics import encode_labels, proba_matrix
from mlpilot.monitoring.performance import infer_classes
from mlpilot.monitoring.results import EstimateResult

_E = TypeVar("_E", bound="CBPE")
_LOGIT_CLIP = 1e-12


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _LOGIT_CLIP, 1 - _LOGIT_CLIP)
    return np.log(p / (1 - p)).reshape(-1, 1)


class CBPE(Detector):
    """Estimate a classifier's accuracy on an unlabelled window from its calibrated confidence.

    Args:
        calibration: ``isotonic`` (default) or ``platt``.
        confidence_level: nominal coverage of the interval, in ``(0, 1)``.
        tolerance: degraded when the estimate falls more than this below the reference accuracy.
        classes: labels in probability-column order; default: the sorted labels seen at fit.

    Attributes:
        classes_: the class labels.
        calibrator_: the fitted scikit-learn calibrator (``IsotonicRegression`` or ``LogisticRegression``).
        reference_accuracy_: the realized accuracy on the reference.
        z_: the normal quantile of ``confidence_level``.
    """

    def __init__(
        self,
        calibration: str = "isotonic",
        confidence_level: float = 0.95,
        tolerance: float = 0.05,
        classes: Sequence[Any] | None = None,
    ) -> None:
        self.calibration = calibration
        self.confidence_level = confidence_level
        self.tolerance = tolerance
        self.classes = classes

    def fit(self: _E, y_true: Any, y_proba: Any) -> _E:
        """Learn the calibration of the confidence on a labelled reference the model was not trained on.

        Args:
            y_true: reference labels, shape ``(n,)``.
            y_proba: reference probabilities, shape ``(n, k)`` or ``(n,)`` for a binary model.

        Returns:
            self, fitted.

        Raises:
            InvalidArgument: bad hyperparameters, mismatched shapes, unknown labels, invalid probabilities.
            MissingExtra: scikit-learn is not installed.
        """
        check_one_of(self, "calibration", self.calibration, ("isotonic", "platt"))
        check_interval(self, "confidence_level", self.confidence_level, 0.0, 1.0, closed="neither")
        check_interval(self, "tolerance", self.tolerance, 0.0, 1.0)
        classes = infer_classes(y_true, y_proba, self.classes)
        codes = encode_labels(y_true, classes)
        proba = proba_matrix(y_proba, classes.size, codes.size)
        confidence = proba.max(axis=1)
        correct = (proba.argmax(axis=1) == codes).astype(np.float64)
        with needs_extra("CBPE performance estimation"):
            from sklearn.isotonic import IsotonicRegression
            from sklearn.linear_model import LogisticRegression

        calibrator: Any
        # Platt needs both outcomes; a reference where the model is always (or never) right calibrates to that.
        if self.calibration == "isotonic" or correct.min() == correct.max():
            calibrator = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(confidence, correct)
        else:
            calibrator = LogisticRegression(C=1e6, max_iter=1000).fit(_logit(confidence), correct.astype(int))
        self.classes_ = classes
        self.calibrator_ = calibrator
        self.reference_accuracy_ = float(correct.mean())
        self.z_ = NormalDist().inv_cdf((1 + self.confidence_level) / 2)
        return self

    def calibrated_confidence(self, y_proba: Any) -> np.ndarray:
        """Per-row probability that the predicted class is right.

        Args:
            y_proba: probabilities, shape ``(n, k)`` or ``(n,)``.

        Returns:
            shape ``(n,)``, values in ``[0, 1]``.

        Raises:
            InvalidArgument: not fitted, wrong shape or invalid probabilities.
        """
        check_fitted(self, "calibrator_")
        confidence = proba_matrix(y_proba, self.classes_.size).max(axis=1)
        if hasattr(self.calibrator_, "predict_proba"):
            return np.asarray(self.calibrator_.predict_proba(_logit(confidence))[:, 1], dtype=np.float64)
        return np.asarray(self.calibrator_.predict(confidence), dtype=np.float64)

    def score(self, y_proba: Any) -> float:
        """The estimated accuracy of an unlabelled window.

        Args:
            y_proba: the window's probabilities, shape ``(n, k)`` or ``(n,)``.

        Returns:
            the mean calibrated confidence, in ``[0, 1]``.

        Raises:
            InvalidArgument: not fitted, wrong shape or invalid probabilities.
        """
        return float(self.calibrated_confidence(y_proba).mean())

    def predict(self, y_proba: Any) -> EstimateResult:
        """Estimate the accuracy of an unlabelled window.

        Args:
            y_proba: the window's probabilities, shape ``(n, k)`` or ``(n,)``.

        Returns:
            an :class:`EstimateResult`; degraded when ``estimate < reference_accuracy_ - tolerance``.

        Raises:
            InvalidArgument: not fitted, wrong shape or invalid probabilities.
        """
        c = self.calibrated_confidence(y_proba)
        n = c.size
        estimate = float(c.mean())
        half_width = self.z_ * math.sqrt(float(np.sum(c * (1 - c)))) / n
        threshold = self.reference_accuracy_ - self.tolerance
        return EstimateResult(
            metric="accuracy",
            estimate=estimate,
            lower=max(0.0, estimate - half_width),
            upper=min(1.0, estimate + half_width),
            confidence_level=float(self.confidence_level),
            reference_value=self.reference_accuracy_,
            threshold=threshold,
            is_degraded=estimate < threshold,
            n=n,
            detail={"calibration": self.calibration, "interval": "normal (Poisson-binomial variance)"},
        )
