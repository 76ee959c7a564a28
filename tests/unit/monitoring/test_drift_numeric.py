"""Numeric drift detectors against scipy on fixed seeded data, plus verdicts and input errors."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import spatial, stats

from mlpilot.errors import InvalidArgument
from mlpilot.monitoring import JensenShannonDrift, KSDrift, PSIDrift, WassersteinDrift
from mlpilot.monitoring._ks import kstwo_sf
from mlpilot.monitoring.drift_numeric import _merged_multiples, wasserstein_sorted

# (id, n_reference, n_current, rounding decimals (None = continuous), shift of the current sample)
KS_CASES = [
    ("exact-tiny-equal", 8, 8, None, 0.0),
    ("exact-small-unequal", 30, 17, None, 0.5),
    ("exact-ties", 200, 150, 0, 0.0),
    ("exact-ties-shifted", 500, 300, 1, 0.3),
    ("exact-boundary-10000", 10_000, 9_000, None, 0.02),
    ("asymp-just-above", 10_001, 700, None, 0.0),
    ("asymp-large-same", 200_000, 50_000, None, 0.0),
    ("asymp-large-shifted", 200_000, 50_000, None, 0.02),
    ("asymp-smirnov-branch", 100_000, 100_000, None, 0.012),
    ("asymp-strong-drift", 100_000, 20_000, None, 0.5),
    ("asymp-ties-large", 50_000, 40_000, 1, 0.01),
    ("asymp-current-larger", 12_000, 60_000, None, 0.05),
]


@pytest.mark.parametrize(
    ("n_ref", "n_cur", "decimals", "shift"), [c[1:] for c in KS_CASES], ids=[c[0] for c in KS_CASES]
)
def test_ks_matches_scipy_ks_2samp(n_ref: int, n_cur: int, decimals: int | None, shift: float) -> None:
    rng = np.random.default_rng(n_ref + n_cur)
    reference = rng.normal(size=n_ref)
    current = rng.normal(loc=shift, size=n_cur)
    if decimals is not None:
        reference, current = np.round(reference, decimals), np.round(current, decimals)
    expected = stats.ks_2samp(reference, current)
    result = KSDrift().fit(reference).predict(current)
    assert result.statistic == pytest.approx(expected.statistic, abs=1e-15)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-12)
    assert result.detail["method"] == ("exact" if max(n_ref, n_cur) <= 10_000 else "asymp")


def test_ks_statistic_matches_scipy_on_random_sizes_and_ties() -> None:
    rng = np.random.default_rng(7)
    for _ in range(40):
        n_ref, n_cur = (int(v) for v in rng.integers(10_001, 30_000, size=2))
        reference = np.round(rng.normal(size=n_ref), int(rng.integers(0, 3)))
        current = np.round(rng.normal(0.05 * rng.normal(), size=n_cur), int(rng.integers(0, 3)))
        expected = stats.ks_2samp(reference, current)
        result = KSDrift().fit(reference).predict(current)
        assert result.statistic == expected.statistic
        assert result.p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-12)


KSTWO_GRID = [
    (n, s)
    for n in (141, 1_000, 20_000, 250_000)
    for s in (0.5, 2.2, 3.0, 10.0, 100.0, 369.0)
    if math.sqrt(s / n) * 1.0001 < 0.5  # the branch where scipy sums the exact one-sided series
] + [(1_000_000, 2.2)]


@pytest.mark.parametrize(("n", "n_d_squared"), KSTWO_GRID, ids=[f"n={n}-nd2={s}" for n, s in KSTWO_GRID])
def test_kstwo_sf_matches_scipy(n: int, n_d_squared: float) -> None:
    d = math.sqrt(n_d_squared / n) * 1.0001
    assert kstwo_sf(d, float(n)) == pytest.approx(float(stats.kstwo.sf(d, float(n))), rel=1e-10, abs=1e-300)


def test_ks_drops_nan_and_inf() -> None:
    rng = np.random.default_rng(1)
    reference, current = rng.normal(size=300), rng.normal(size=200)
    dirty = np.concatenate((current, [np.nan, np.inf, -np.inf]))
    clean = KSDrift().fit(reference).predict(current)
    assert KSDrift().fit(reference).predict(dirty) == clean


def test_wasserstein_matches_scipy_before_normalisation() -> None:
    rng = np.random.default_rng(3)
    reference, current = rng.normal(2.0, 3.0, 5_000), rng.normal(2.5, 3.0, 4_000)
    result = WassersteinDrift().fit(reference).predict(current)
    distance = stats.wasserstein_distance(reference, current)
    assert result.detail["distance"] == pytest.approx(distance, rel=1e-12)
    assert result.statistic == pytest.approx(distance / np.std(reference), rel=1e-12)
    assert result.is_drift  # a shift of 1/6 std exceeds the default threshold of 0.1


# (id, n_reference, n_current, rounding decimals (None = continuous), shift of the current sample)
WASSERSTEIN_CASES = [
    ("equal-sizes", 3_000, 3_000, None, 0.2),
    ("equal-sizes-ties", 2_000, 2_000, 0, 0.0),
    ("coprime-sizes", 997, 3_001, None, 0.1),
    ("common-divisor", 6_000, 4_000, None, -0.3),
    ("current-larger-ties", 1_500, 4_500, 1, 0.05),
    ("one-value", 1, 7, None, 0.0),
    ("large-unequal", 200_000, 70_001, None, 0.01),
]


@pytest.mark.parametrize(
    ("n_ref", "n_cur", "decimals", "shift"), [c[1:] for c in WASSERSTEIN_CASES], ids=[c[0] for c in WASSERSTEIN_CASES]
)
def test_wasserstein_sorted_matches_scipy(n_ref: int, n_cur: int, decimals: int | None, shift: float) -> None:
    rng = np.random.default_rng(n_ref + n_cur)
    reference, current = rng.normal(0.0, 2.0, n_ref), rng.standard_t(4, n_cur) + shift
    if decimals is not None:
        reference, current = reference.round(decimals), current.round(decimals)
    expected = stats.wasserstein_distance(reference, current)
    got = wasserstein_sorted(np.sort(reference), np.sort(current))
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert wasserstein_sorted(np.sort(current), np.sort(reference)) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_merged_multiples_is_the_sorted_union() -> None:
    for n in range(1, 40):
        for m in range(1, 40):
            a, b = m // math.gcd(n, m), n // math.gcd(n, m)
            union = np.union1d(np.arange(1, n + 1) * a, np.arange(1, m + 1) * b)
            np.testing.assert_array_equal(_merged_multiples(n, a, m, b), union)


def test_wasserstein_constant_reference_is_not_normalised() -> None:
    detector = WassersteinDrift().fit(np.full(10, 4.0))
    assert detector.scale_ == 1.0
    assert detector.score([5.0, 5.0]) == pytest.approx(1.0)


def test_psi_matches_hand_computed_value() -> None:
    reference = np.arange(1, 101, dtype=float)  # quartile edges at 25.75, 50.5, 75.25: 25 values per bin
    current = np.array([10.0] * 40 + [40.0] * 30 + [60.0] * 20 + [90.0] * 10)
    result = PSIDrift(n_bins=4).fit(reference).predict(current)
    ref, cur = np.full(4, 0.25), np.array([0.4, 0.3, 0.2, 0.1])
    assert result.statistic == pytest.approx(float(np.sum((cur - ref) * np.log(cur / ref))), rel=1e-12)
    assert result.detail["bin_edges"] == pytest.approx([25.75, 50.5, 75.25])


def test_psi_gives_empty_bins_epsilon() -> None:
    reference = np.arange(100, dtype=float)
    result = PSIDrift(n_bins=2, eps=1e-4).fit(reference).predict(np.zeros(10))
    ref, cur = np.array([0.5, 0.5]), np.array([1.0, 1e-4])
    assert result.statistic == pytest.approx(float(np.sum((cur - ref) * np.log(cur / ref))), rel=1e-12)


def test_jensenshannon_matches_scipy_on_binned_distributions() -> None:
    rng = np.random.default_rng(5)
    reference, current = rng.normal(size=10_000), rng.normal(0.3, 1.2, 3_000)
    detector = JensenShannonDrift(n_bins=10).fit(reference)
    result = detector.predict(current)
    edges = np.quantile(reference, np.linspace(0, 1, 11)[1:-1])
    ref_counts = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=10)
    cur_counts = np.bincount(np.searchsorted(edges, current, side="right"), minlength=10)
    assert result.statistic == pytest.approx(spatial.distance.jensenshannon(ref_counts, cur_counts), rel=1e-12)
    np.testing.assert_array_equal(detector.reference_counts_, ref_counts)


NUMERIC_DETECTORS = [
    pytest.param(lambda: KSDrift(), id="ks"),
    pytest.param(lambda: WassersteinDrift(), id="wasserstein"),
    pytest.param(lambda: PSIDrift(), id="psi"),
    pytest.param(lambda: JensenShannonDrift(), id="jensenshannon"),
]


@pytest.mark.parametrize("make", NUMERIC_DETECTORS)
def test_detects_a_shift_and_not_the_same_distribution(make: object) -> None:
    rng = np.random.default_rng(11)
    reference = pd.Series(rng.normal(size=5_000), name="age")
    same = rng.normal(size=2_000)
    shifted = rng.normal(loc=0.5, size=2_000)
    detector = make().fit(reference)  # type: ignore[operator]
    assert not detector.predict(same).is_drift
    drifted = detector.predict(shifted)
    assert drifted.is_drift
    assert drifted.feature == "age"


@pytest.mark.parametrize("make", NUMERIC_DETECTORS)
@pytest.mark.parametrize(
    ("current", "message"),
    [
        pytest.param(np.array([]), "empty", id="empty-window"),
        pytest.param(np.array([np.nan, np.nan]), "empty", id="only-nan"),
        pytest.param(pd.Series(["a", "b"]), "not numeric", id="text"),
        pytest.param(pd.Series([True, False]), "not numeric", id="bool"),
        pytest.param(np.ones((3, 2)), "one-dimensional", id="2d"),
    ],
)
def test_bad_current_window_is_invalid_argument(make: object, current: object, message: str) -> None:
    detector = make().fit(np.arange(10.0))  # type: ignore[operator]
    with pytest.raises(InvalidArgument, match=message):
        detector.predict(current)


@pytest.mark.parametrize("make", NUMERIC_DETECTORS)
def test_predict_before_fit_is_invalid_argument(make: object) -> None:
    with pytest.raises(InvalidArgument, match="not fitted"):
        make().predict([1.0, 2.0])  # type: ignore[operator]


@pytest.mark.parametrize(
    "detector",
    [
        pytest.param(KSDrift(alpha=0), id="alpha-0"),
        pytest.param(KSDrift(alpha=1.5), id="alpha-1.5"),
        pytest.param(WassersteinDrift(threshold=-1), id="negative-threshold"),
        pytest.param(PSIDrift(n_bins=1), id="one-bin"),
        pytest.param(PSIDrift(eps=0), id="eps-0"),
        pytest.param(JensenShannonDrift(n_bins=2.5), id="fractional-bins"),  # type: ignore[arg-type]
    ],
)
def test_bad_hyperparameters_fail_at_fit(detector: KSDrift) -> None:
    with pytest.raises(InvalidArgument, match=type(detector).__name__):
        detector.fit(np.arange(10.0))
