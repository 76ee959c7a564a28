"""Metrics against scikit-learn on fixed data; ECE by hand; performance detectors' verdicts and errors."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from mlpilot.errors import InvalidArgument
from mlpilot.monitoring import (
    ClassificationPerformance,
    RegressionPerformance,
    classification_metrics,
    expected_calibration_error,
    regression_metrics,
)
from mlpilot.monitoring.metrics import encode_labels, proba_matrix


def binary_data(seed: int = 0, n: int = 500) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.uniform(size=n)
    y = (rng.uniform(size=n) < p).astype(int)
    return y, np.round(p, 2)  # rounded so that the AUC has ties


def multiclass_data(seed: int = 1, n: int = 600) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    proba = rng.dirichlet([1.0, 1.0, 1.0], size=n)
    y = np.array([rng.choice(3, p=row) for row in proba])
    return np.array(["cat", "dog", "owl"])[y], proba


def test_binary_metrics_match_sklearn() -> None:
    y, p = binary_data()
    codes = encode_labels(y, [0, 1])
    got = classification_metrics(codes, proba_matrix(p, 2))
    pred = (p > 0.5).astype(int)  # argmax of [1 - p, p]: ties at 0.5 go to class 0
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-15)
    assert got["f1"] == pytest.approx(skm.f1_score(y, pred), abs=1e-15)
    assert got["f1_macro"] == pytest.approx(skm.f1_score(y, pred, average="macro"), abs=1e-15)
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, p), rel=1e-12)


def test_multiclass_metrics_match_sklearn() -> None:
    y, proba = multiclass_data()
    classes = ["cat", "dog", "owl"]
    got = classification_metrics(encode_labels(y, classes), proba_matrix(proba, 3))
    pred = np.array(classes)[proba.argmax(1)]
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-15)
    assert got["f1"] == got["f1_macro"] == pytest.approx(skm.f1_score(y, pred, average="macro"), abs=1e-15)
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr", labels=classes), abs=1e-12)
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, proba, labels=classes), rel=1e-12)


def test_log_loss_clips_like_sklearn() -> None:
    y, p = np.array([0, 1, 1]), np.array([0.0, 1.0, 0.0])
    got = classification_metrics(encode_labels(y, [0, 1]), proba_matrix(p, 2))["log_loss"]
    assert got == pytest.approx(skm.log_loss(y, p), rel=1e-12)


def test_expected_calibration_error_hand_computed() -> None:
    # Top-label confidences 0.95, 0.9, 0.85 (bin 0.8-0.9] holds 0.85 and 0.9; (0.9-1.0] holds 0.95),
    # 0.6, 0.55 (bin (0.5-0.6]) and 0.3 (bin (0.2-0.3]).
    proba = np.array([[0.05, 0.95], [0.9, 0.1], [0.15, 0.85], [0.4, 0.6], [0.55, 0.45], [0.3, 0.7]])
    proba[5] = [0.7, 0.3]  # confidence 0.7 -> bin (0.6-0.7]
    codes = np.array([1, 0, 0, 0, 0, 1])
    # bins: (0.9,1.0]: {0.95 right} acc 1, conf .95 -> |1 - .95| * 1
    #       (0.8,0.9]: {0.9 right, 0.85 wrong} acc .5, conf .875 -> |.5 - .875| * 2
    #       (0.6,0.7]: {0.7 wrong} acc 0, conf .7 -> .7 * 1
    #       (0.5,0.6]: {0.6 wrong (pred 1, true 0), 0.55 right} acc .5, conf .575 -> .075 * 2
    expected = (0.05 + 0.375 * 2 + 0.7 + 0.075 * 2) / 6
    assert expected_calibration_error(codes, proba, n_bins=10) == pytest.approx(expected, abs=1e-12)


def test_expected_calibration_error_of_a_calibrated_model_is_small() -> None:
    y, p = binary_data(seed=3, n=20_000)
    assert expected_calibration_error(encode_labels(y, [0, 1]), proba_matrix(p, 2)) < 0.02


def test_regression_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(4)
    y = rng.normal(10, 3, 300)
    y[0] = 0.0  # MAPE floors |y| at machine epsilon, as sklearn does
    pred = y + rng.normal(0, 1, 300)
    got = regression_metrics(y, pred)
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, pred), rel=1e-12)
    assert got["rmse"] == pytest.approx(skm.root_mean_squared_error(y, pred), rel=1e-12)
    assert got["mape"] == pytest.approx(skm.mean_absolute_percentage_error(y, pred), rel=1e-12)


def test_auc_is_nan_for_a_single_class_window() -> None:
    got = classification_metrics(np.array([1, 1]), proba_matrix(np.array([0.2, 0.9]), 2))
    assert np.isnan(got["roc_auc"])


def test_classification_performance_verdicts() -> None:
    y, p = binary_data(seed=5, n=2_000)
    detector = ClassificationPerformance(metric="accuracy", tolerance=0.05).fit(y, p)
    assert detector.classes_.tolist() == [0, 1]
    same = detector.predict(*binary_data(seed=6, n=2_000))
    assert not same.is_degraded
    y_bad, p_bad = binary_data(seed=7, n=2_000)
    worse = detector.predict(y_bad, np.where(np.arange(2_000) % 3 == 0, 1 - p_bad, p_bad))
    assert worse.is_degraded
    assert worse.threshold == pytest.approx(detector.reference_metrics_["accuracy"] - 0.05)
    assert set(worse.metrics) == {"accuracy", "f1", "f1_macro", "roc_auc", "log_loss", "ece"}
    assert worse.to_frame().shape == (6, 3)
    loss = ClassificationPerformance(metric="log_loss", tolerance=0.01).fit(y, p)
    assert loss.predict(y_bad, np.clip(p_bad * 1.6, 0, 1)).is_degraded


def test_multiclass_performance_with_explicit_classes() -> None:
    y, proba = multiclass_data()
    detector = ClassificationPerformance(metric="f1_macro", classes=["cat", "dog", "owl"]).fit(y, proba)
    assert detector.score(y, proba) == detector.reference_metrics_["f1_macro"]


def test_regression_performance_relative_tolerance() -> None:
    rng = np.random.default_rng(8)
    y = rng.normal(size=500)
    detector = RegressionPerformance(metric="mae", relative_tolerance=0.1).fit(y, y + rng.normal(0, 1, 500))
    assert not detector.predict(y, y + rng.normal(0, 1, 500)).is_degraded
    worse = detector.predict(y, y + rng.normal(0, 1.5, 500))
    assert worse.is_degraded
    assert worse.threshold == pytest.approx(detector.reference_metrics_["mae"] * 1.1)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        pytest.param(lambda: ClassificationPerformance().predict([0], [0.5]), "not fitted", id="predict-before-fit"),
        pytest.param(lambda: ClassificationPerformance().fit([0, 1], [[0.5, 0.5]]), "2 labels", id="length"),
        pytest.param(lambda: ClassificationPerformance().fit([0, 1, 2], [0.1, 0.2, 0.3]), "infer", id="classes"),
        pytest.param(lambda: ClassificationPerformance().fit([0, 0], [0.1, 0.2]), "infer", id="one-class"),
        pytest.param(lambda: ClassificationPerformance().fit([0, 1], [0.1, 1.2]), r"\[0, 1\]", id="above-one"),
        pytest.param(lambda: ClassificationPerformance().fit([0, 1], ["a", "b"]), "numeric", id="text-proba"),
        pytest.param(lambda: ClassificationPerformance(metric="mse").fit([0, 1], [0.1, 0.9]), "metric", id="metric"),
        pytest.param(
            lambda: ClassificationPerformance(classes=[0, 1]).fit([0, 1, 5], [0.1, 0.9, 0.5]), "not among", id="label"
        ),
        pytest.param(lambda: ClassificationPerformance().fit([], []), "non-empty", id="empty"),
        pytest.param(lambda: RegressionPerformance().fit([1.0, 2.0], [1.0]), "2 values", id="regression-length"),
        pytest.param(lambda: RegressionPerformance().fit([1.0, np.nan], [1.0, 2.0]), "NaN", id="regression-nan"),
        pytest.param(lambda: RegressionPerformance().fit(["a"], [1.0]), "numeric", id="regression-text"),
    ],
)
def test_errors(call: object, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        call()  # type: ignore[operator]
