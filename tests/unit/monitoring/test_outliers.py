"""Outlier detectors against scikit-learn and scipy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.covariance import EmpiricalCovariance, MinCovDet
from sklearn.ensemble import IsolationForest

from mlpilot.errors import InvalidArgument
from mlpilot.monitoring import IsolationForestOutliers, MahalanobisOutliers


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    reference = rng.multivariate_normal([0, 1, 2], [[1, 0.5, 0], [0.5, 2, 0.3], [0, 0.3, 1]], size=1_000)
    current = np.vstack((rng.multivariate_normal([0, 1, 2], np.eye(3), size=190), rng.normal(8, 1, (10, 3))))
    return reference, current


@pytest.mark.parametrize("contamination", ["auto", 0.05], ids=["auto", "five-percent"])
def test_isolation_forest_matches_sklearn(data: tuple[np.ndarray, np.ndarray], contamination: float | str) -> None:
    reference, current = data
    result = IsolationForestOutliers(contamination=contamination, random_state=0).fit(reference).predict(current)
    forest = IsolationForest(contamination=contamination, random_state=0).fit(reference)
    np.testing.assert_allclose(result.scores, -forest.score_samples(current))
    np.testing.assert_array_equal(result.is_outlier, forest.predict(current) == -1)
    assert result.outlier_share == pytest.approx(np.mean(forest.predict(current) == -1))
    assert result.is_outlier[-10:].all()


def test_mahalanobis_matches_sklearn_and_chi2_threshold(data: tuple[np.ndarray, np.ndarray]) -> None:
    reference, current = data
    detector = MahalanobisOutliers(quantile=0.99).fit(pd.DataFrame(reference, columns=["a", "b", "c"]))
    result = detector.predict(pd.DataFrame(current, columns=["a", "b", "c"]))
    np.testing.assert_allclose(result.scores, EmpiricalCovariance().fit(reference).mahalanobis(current), rtol=1e-9)
    assert result.threshold == pytest.approx(stats.chi2.ppf(0.99, 3))
    np.testing.assert_array_equal(result.is_outlier, result.scores > result.threshold)
    assert result.is_outlier[-10:].all()
    assert result.outlier_share < 0.1


def test_robust_mahalanobis_uses_min_cov_det(data: tuple[np.ndarray, np.ndarray]) -> None:
    reference, current = data
    contaminated = np.vstack((reference, np.random.default_rng(1).normal(10, 1, (50, 3))))
    result = MahalanobisOutliers(robust=True, random_state=0).fit(contaminated).predict(current)
    expected = MinCovDet(random_state=0).fit(contaminated).mahalanobis(current)
    np.testing.assert_allclose(result.scores, expected, rtol=1e-9)
    plain = MahalanobisOutliers().fit(contaminated).predict(current)
    assert result.n_outliers > plain.n_outliers  # the plain covariance is inflated by the contamination


def test_result_is_read_only_and_serialisable(data: tuple[np.ndarray, np.ndarray]) -> None:
    reference, current = data
    result = MahalanobisOutliers().fit(reference).predict(current)
    with pytest.raises(ValueError, match="read-only"):
        result.scores[0] = 0.0
    assert result.to_dict()["n_rows"] == 200
    assert len(result.to_dict(include_rows=True)["scores"]) == 200
    assert list(result.to_frame().columns) == ["score", "is_outlier"]


@pytest.mark.parametrize("cls", [IsolationForestOutliers, MahalanobisOutliers], ids=lambda c: c.__name__)
def test_errors(cls: type[MahalanobisOutliers]) -> None:
    frame = pd.DataFrame({"a": np.arange(30.0), "b": np.sin(np.arange(30.0))})
    with pytest.raises(InvalidArgument, match="not fitted"):
        cls().predict(frame)
    detector = cls().fit(frame)
    with pytest.raises(InvalidArgument, match="lacks column"):
        detector.predict(frame[["a"]])
    with pytest.raises(InvalidArgument, match="empty"):
        detector.predict(frame.iloc[:0])
    with pytest.raises(InvalidArgument, match="not numeric"):
        detector.predict(frame.assign(a="x"))
    with pytest.raises(InvalidArgument, match="NaN"):
        detector.predict(frame.assign(a=np.nan))


def test_bad_hyperparameters() -> None:
    with pytest.raises(InvalidArgument, match="contamination"):
        IsolationForestOutliers(contamination=0.9).fit(np.ones((5, 2)))
    with pytest.raises(InvalidArgument, match="contamination"):
        IsolationForestOutliers(contamination="most").fit(np.ones((5, 2)))
    with pytest.raises(InvalidArgument, match="quantile"):
        MahalanobisOutliers(quantile=1.0).fit(np.ones((5, 2)))
