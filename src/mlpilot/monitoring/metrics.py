"""Model-quality metrics in plain numpy, equal to scikit-learn's on the same data.

Classification functions take ``y_true`` (labels) and ``y_proba``: shape ``(n, k)`` with columns in the order of
``classes``, or shape ``(n,)`` for a binary model, read as the probability of ``classes[1]``. The predicted
label is ``classes[argmax]``. Undefined values (ROC AUC of a window with a single class) are NaN, not errors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from mlpilot.errors import InvalidArgument


def encode_labels(y_true: Any, classes: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Indices of ``y_true`` in ``classes``.

    Args:
        y_true: labels, shape ``(n,)``.
        classes: the class labels in probability-column order.

    Returns:
        int array of shape ``(n,)``.

    Raises:
        InvalidArgument: a label that is not one of ``classes``, or an empty input.
    """
    labels = np.asarray(y_true)
    if labels.ndim != 1 or labels.size == 0:
        raise InvalidArgument(f"labels must be a non-empty 1-D array, got shape {labels.shape}")
    codes = pd.Index(list(classes)).get_indexer(labels)
    if (codes < 0).any():
        unknown = sorted({str(v) for v in labels[codes < 0]})[:5]
        raise InvalidArgument(f"labels {unknown} are not among the classes {list(classes)}; pass classes=…")
    return codes


def proba_matrix(y_proba: Any, n_classes: int, n_rows: int | None = None) -> np.ndarray:
    """``y_proba`` as an ``(n, n_classes)`` float matrix (a 1-D binary input becomes ``[1 - p, p]``).

    Args:
        y_proba: probabilities, shape ``(n, n_classes)`` or ``(n,)`` when ``n_classes == 2``.
        n_classes: the number of classes.
        n_rows: the expected number of rows (the number of labels), if known.

    Returns:
        float array of shape ``(n, n_classes)``.

    Raises:
        InvalidArgument: wrong shape, non-numeric values, values outside ``[0, 1]`` or NaN.
    """
    proba = np.asarray(y_proba)
    if not np.issubdtype(proba.dtype, np.number) or np.issubdtype(proba.dtype, np.complexfloating):
        raise InvalidArgument(f"probabilities must be numeric, got dtype {proba.dtype}")
    proba = proba.astype(np.float64, copy=False)
    if proba.ndim == 1 and n_classes == 2:
        proba = np.column_stack((1.0 - proba, proba))
    if proba.ndim != 2 or proba.shape[1] != n_classes:
        raise InvalidArgument(f"probabilities must have shape (n, {n_classes}), a column per class; got {proba.shape}")
    if proba.shape[0] == 0:
        raise InvalidArgument("the window is empty (0 rows)")
    if n_rows is not None and proba.shape[0] != n_rows:
        raise InvalidArgument(f"{n_rows} labels but {proba.shape[0]} rows of probabilities")
    if np.isnan(proba).any() or (proba < 0).any() or (proba > 1).any():
        raise InvalidArgument("probabilities must lie in [0, 1] and not be NaN")
    return proba


def roc_auc_binary(positive: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve from ranks (Mann-Whitney U, ties counted half); NaN with a single class.

    Args:
        positive: booleans, shape ``(n,)``.
        scores: higher means more likely positive, shape ``(n,)``.

    Returns:
        the AUC in ``[0, 1]``, equal to ``sklearn.metrics.roc_auc_score(positive, scores)``.
    """
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = np.argsort(scores, kind="mergesort")
    ordered = scores[order]
    starts = np.concatenate(([0], np.flatnonzero(ordered[1:] != ordered[:-1]) + 1))
    ends = np.append(starts[1:], ordered.size)
    ranks = np.empty(ordered.size)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)  # average 1-based rank per tie group
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_auc(codes: np.ndarray, proba: np.ndarray) -> float:
    """Binary AUC of the last column, or the unweighted mean of one-vs-rest AUCs for more classes.

    Equal to ``roc_auc_score(y, p[:, 1])`` (binary) and ``roc_auc_score(y, p, multi_class="ovr")``; NaN when a
    class is absent from the window.
    """
    if proba.shape[1] == 2:
        return roc_auc_binary(codes == 1, proba[:, 1])
    return float(np.mean([roc_auc_binary(codes == k, proba[:, k]) for k in range(proba.shape[1])]))


def f1_scores(codes: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-class F1 ``2tp / (2tp + fp + fn)``; 0 for a class neither present nor predicted (sklearn's default)."""
    tp = np.bincount(codes[codes == predicted], minlength=n_classes).astype(np.float64)
    true_count = np.bincount(codes, minlength=n_classes)
    pred_count = np.bincount(predicted, minlength=n_classes)
    denominator = true_count + pred_count  # = 2tp + fp + fn
    return np.divide(2 * tp, denominator, out=np.zeros(n_classes), where=denominator > 0)


def log_loss(codes: np.ndarray, proba: np.ndarray) -> float:
    """Mean negative log-likelihood, probabilities clipped to ``[eps, 1 - eps]`` as scikit-learn does."""
    eps = np.finfo(np.float64).eps
    picked = np.clip(proba, eps, 1 - eps)[np.arange(codes.size), codes]
    return float(-np.mean(np.log(picked)))


def expected_calibration_error(codes: np.ndarray, proba: np.ndarray, n_bins: int = 10) -> float:
    """Expected calibration error of the top-label confidence, with equal-width bins.

    The confidence of a row is its largest probability; bin ``b`` holds confidences in ``(b/B, (b+1)/B]`` (a
    confidence of exactly 0 goes to the first bin). ``ECE = sum_b |B_b|/n * |accuracy(B_b) - confidence(B_b)|``.

    Args:
        codes: true class indices, shape ``(n,)``.
        proba: probabilities, shape ``(n, k)``.
        n_bins: number of equal-width bins on ``[0, 1]``.

    Returns:
        the ECE in ``[0, 1]``.
    """
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == codes).astype(np.float64)
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    gap = np.bincount(bins, weights=correct - confidence, minlength=n_bins)  # per bin: sum(correct - confidence)
    return float(np.abs(gap).sum() / codes.size)


def classification_metrics(codes: np.ndarray, proba: np.ndarray, n_bins: int = 10) -> dict[str, float]:
    """Every classification metric of a window.

    Args:
        codes: true class indices (see :func:`encode_labels`), shape ``(n,)``.
        proba: probabilities, shape ``(n, k)`` (see :func:`proba_matrix`).
        n_bins: bins of the expected calibration error.

    Returns:
        ``accuracy``; ``f1`` (of ``classes[1]`` for a binary model, macro otherwise); ``f1_macro``; ``roc_auc``
        (binary, or one-vs-rest macro); ``log_loss``; ``ece``.
    """
    n_classes = proba.shape[1]
    predicted = proba.argmax(axis=1)
    per_class_f1 = f1_scores(codes, predicted, n_classes)
    return {
        "accuracy": float(np.mean(predicted == codes)),
        "f1": float(per_class_f1[1]) if n_classes == 2 else float(per_class_f1.mean()),
        "f1_macro": float(per_class_f1.mean()),
        "roc_auc": roc_auc(codes, proba),
        "log_loss": log_loss(codes, proba),
        "ece": expected_calibration_error(codes, proba, n_bins),
    }


def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    """MAE, RMSE and MAPE of a window.

    Args:
        y_true: observed values, shape ``(n,)``.
        y_pred: predictions, shape ``(n,)``.

    Returns:
        ``mae``, ``rmse`` and ``mape`` (a fraction, not a percentage; ``|y|`` floored at machine epsilon, as
        ``sklearn.metrics.mean_absolute_percentage_error``).

    Raises:
        InvalidArgument: different lengths, an empty window, non-numeric or non-finite values.
    """
    truth, pred = _finite_vector(y_true, "y_true"), _finite_vector(y_pred, "y_pred")
    if truth.size != pred.size:
        raise InvalidArgument(f"y_true has {truth.size} values but y_pred has {pred.size}")
    error = pred - truth
    eps = np.finfo(np.float64).eps
    return {
        "mae": float(np.mean(np.abs(error))),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "mape": float(np.mean(np.abs(error) / np.maximum(np.abs(truth), eps))),
    }


def _finite_vector(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1 or array.size == 0:
        raise InvalidArgument(f"{name} must be a non-empty 1-D array, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise InvalidArgument(f"{name} must be numeric, got dtype {array.dtype}")
    array = array.astype(np.float64, copy=False)
    if not np.isfinite(array).all():
        raise InvalidArgument(f"{name} contains NaN or infinite values")
    return array
