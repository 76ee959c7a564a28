"""MMD and classifier two-sample tests: statistic against a direct computation, verdicts, determinism, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlpilot.errors import InvalidArgument
from mlpilot.monitoring import ClassifierDrift, MMDDrift


def correlated(rng: np.random.Generator, n: int, rho: float) -> pd.DataFrame:
    """Two standard-normal features with correlation ``rho``: same marginals for every ``rho``."""
    values = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=n)
    return pd.DataFrame(values, columns=["a", "b"])


def naive_mmd2(x: np.ndarray, y: np.ndarray, bandwidth: float) -> float:
    def k(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.exp(-((a[:, None, :] - b[None, :, :]) ** 2).sum(-1) / (2 * bandwidth**2))

    m, n = len(x), len(y)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return float(
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * kxy.mean()
    )


def test_mmd_statistic_and_bandwidth_match_a_direct_computation() -> None:
    rng = np.random.default_rng(0)
    reference, current = rng.normal(size=(60, 3)), rng.normal(0.5, 1, size=(40, 3))
    detector = MMDDrift(n_permutations=20, random_state=0).fit(reference)
    result = detector.predict(current)
    x = (reference - reference.mean(0)) / reference.std(0)
    y = (current - reference.mean(0)) / reference.std(0)
    pooled = np.vstack((x, y))
    distances = np.sqrt(((pooled[:, None] - pooled[None]) ** 2).sum(-1))[np.triu_indices(100, k=1)]
    bandwidth = float(np.median(distances))
    assert result.detail["bandwidth"] == pytest.approx(bandwidth, rel=1e-9)
    assert result.statistic == pytest.approx(naive_mmd2(x, y, bandwidth), rel=1e-9)
    assert detector.score(current) == pytest.approx(result.statistic, rel=1e-12)


def test_mmd_sees_a_change_of_correlation_that_marginals_miss() -> None:
    rng = np.random.default_rng(1)
    detector = MMDDrift(n_permutations=100, max_samples=400, random_state=0).fit(correlated(rng, 2_000, 0.0))
    assert not detector.predict(correlated(rng, 400, 0.0)).is_drift
    drifted = detector.predict(correlated(rng, 400, 0.8))
    assert drifted.is_drift
    assert drifted.p_value == pytest.approx(1 / 101)
    assert drifted.test == "mmd"
    assert drifted.features == ()


def test_mmd_is_deterministic_for_a_seed() -> None:
    rng = np.random.default_rng(2)
    reference, current = rng.normal(size=(3_000, 2)), rng.normal(size=(3_000, 2))
    first = MMDDrift(max_samples=200, random_state=7).fit(reference).predict(current)
    second = MMDDrift(max_samples=200, random_state=7).fit(reference).predict(current)
    assert first == second
    assert first.detail["n_reference"] == first.detail["n_current"] == 200


@pytest.mark.parametrize("model", ["logistic", "hgb"])
def test_classifier_drift(model: str) -> None:
    rng = np.random.default_rng(3)
    reference = correlated(rng, 600, 0.0)
    detector = ClassifierDrift(model=model, random_state=0).fit(reference)
    same = detector.predict(correlated(rng, 600, 0.0))
    assert not same.is_drift
    assert 0.4 < same.statistic < 0.55  # type: ignore[operator]
    shifted = correlated(rng, 600, 0.0).assign(a=lambda f: f["a"] + 1.0)
    drifted = detector.predict(shifted)
    assert drifted.is_drift
    assert drifted.statistic > 0.65  # type: ignore[operator]  # the Bayes-optimal AUC here is 0.76
    assert drifted.p_value is not None and drifted.p_value < 1e-6


def test_classifier_p_value_is_normal_approximation_of_mann_whitney() -> None:
    rng = np.random.default_rng(4)
    detector = ClassifierDrift(random_state=0).fit(rng.normal(size=(300, 2)))
    result = detector.predict(rng.normal(0.3, 1, size=(200, 2)))
    sd = np.sqrt((300 + 200 + 1) / (12 * 300 * 200))
    from scipy import stats

    assert result.p_value == pytest.approx(stats.norm.sf((result.statistic - 0.5) / sd), rel=1e-9)
    assert result.detail["null_sd"] == pytest.approx(sd)


@pytest.mark.parametrize("cls", [MMDDrift, ClassifierDrift], ids=lambda c: c.__name__)
def test_errors(cls: type[MMDDrift]) -> None:
    frame = pd.DataFrame({"a": np.arange(20.0), "b": np.arange(20.0) ** 2})
    with pytest.raises(InvalidArgument, match="not fitted"):
        cls().predict(frame)
    detector = cls(random_state=0).fit(frame)
    with pytest.raises(InvalidArgument, match=r"lacks column\(s\) \['b'\]"):
        detector.predict(frame[["a"]])
    with pytest.raises(InvalidArgument, match="empty"):
        detector.predict(frame.iloc[:0])
    with pytest.raises(InvalidArgument, match="not numeric"):
        detector.predict(frame.assign(b="x"))
    with pytest.raises(InvalidArgument, match="NaN"):
        detector.predict(frame.assign(b=np.nan))
    with pytest.raises(InvalidArgument, match="columns"):
        detector.predict(np.ones((5, 3)))
