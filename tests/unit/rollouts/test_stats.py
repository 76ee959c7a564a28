"""The sequential statistics of the rollout gates, validated against scipy and by simulation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from mlpilot.errors import InvalidArgument
from mlpilot.rollouts.stats import (
    PLANNED_N,
    Interval,
    Moments,
    boundary_multiplier,
    default_rho2,
    diff_cs,
    exceedance,
    mann_whitney_greater,
    mean_cs,
    msprt_pvalue,
)

RNG = np.random.default_rng(20240601)


# ------------------------------------------------------------------------------------------------ against scipy


@pytest.mark.parametrize(
    ("baseline", "candidate"),
    [
        (RNG.normal(0, 1, 300), RNG.normal(0.2, 1, 200)),  # continuous, asymptotic
        (RNG.integers(0, 5, 400).astype(float), RNG.integers(0, 6, 350).astype(float)),  # many ties
        (np.array([1.0, 2.0, 3.0, 4.0, 5.0]), np.array([2.5, 3.5, 6.0, 7.0])),  # small: exact distribution
        (RNG.lognormal(0, 1, 2000), RNG.lognormal(0, 1, 2000)),  # equal distributions
    ],
)
def test_mann_whitney_equals_scipy(baseline: np.ndarray, candidate: np.ndarray) -> None:
    u, p = mann_whitney_greater(baseline, candidate)
    expected = sps.mannwhitneyu(candidate, baseline, alternative="greater")
    assert u == pytest.approx(float(expected.statistic), rel=1e-12)
    assert p == pytest.approx(float(expected.pvalue), rel=1e-9)


def test_mann_whitney_is_one_sided_towards_a_larger_candidate() -> None:
    base = RNG.normal(0, 1, 500)
    assert mann_whitney_greater(base, base + 0.5)[1] < 1e-6
    assert mann_whitney_greater(base, base - 0.5)[1] > 0.99


def test_exceedance_matches_numpy_quantile_and_scipy_binomtest() -> None:
    base, cand = RNG.lognormal(0, 0.5, 5000), RNG.lognormal(0.05, 0.5, 3000)
    out = exceedance(base, cand, q=0.95, alpha=0.05)
    threshold = float(np.quantile(base, 0.95))
    k = int((cand > threshold).sum())
    assert out["threshold"] == threshold
    assert (out["exceed"], out["n"], out["share"]) == (k, 3000, k / 3000)
    assert out["expected_share"] == pytest.approx(0.05)
    assert out["p_value"] == pytest.approx(sps.binomtest(k, 3000, 0.05, alternative="greater").pvalue, rel=1e-12)
    cs = out["cs"]
    assert cs.lower < k / 3000 < cs.upper
    assert cs.to_dict() == mean_cs((cand > threshold).astype(float), 0.05).to_dict()


# ------------------------------------------------------------------------------------------------ the boundary


@pytest.mark.parametrize("alpha", [0.05, 0.01, 0.05 / 3])
@pytest.mark.parametrize("n", [30, 100, 1000, 10_000])
def test_cs_at_a_fixed_n_is_wider_than_the_fixed_n_normal_interval(alpha: float, n: int) -> None:
    x = RNG.normal(1.0, 2.0, n)
    cs = mean_cs(x, alpha)
    lo, hi = sps.norm.interval(1 - alpha, loc=x.mean(), scale=x.std(ddof=1) / math.sqrt(n))
    assert cs.estimate == pytest.approx(x.mean())
    assert cs.lower < lo and cs.upper > hi
    # the price of peeking is exactly the ratio of the multipliers (same variance estimate)
    ratio = (cs.upper - cs.lower) / (hi - lo)
    assert ratio == pytest.approx(boundary_multiplier(n, alpha) / sps.norm.ppf(1 - alpha / 2), rel=1e-9)
    if n >= 100:
        assert ratio < 2.0  # and moderate once there are a hundred observations


def test_mean_cs_is_the_documented_formula() -> None:
    x = RNG.normal(3.0, 1.5, 777)
    alpha, t = 0.05, 777
    rho2 = (-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / 1000
    half = x.std(ddof=1) * math.sqrt((t * rho2 + 1) / (t**2 * rho2) * 2 * math.log(math.sqrt(t * rho2 + 1) / alpha))
    cs = mean_cs(x, alpha)
    assert default_rho2(alpha) == pytest.approx(rho2)
    assert (cs.lower, cs.upper) == pytest.approx((x.mean() - half, x.mean() + half), rel=1e-12)
    assert cs.n == 777


def test_the_boundary_is_tightest_near_the_planned_sample_size() -> None:
    m = [boundary_multiplier(t, 0.05) for t in (100, 300, PLANNED_N, 3000, 10_000)]
    assert min(m) == m[2]
    assert 2.9 < m[2] < 3.2  # vs 1.96 for one look
    # a custom rho moves the optimum
    rho = math.sqrt(default_rho2(0.05, planned_n=10_000))
    assert boundary_multiplier(10_000, 0.05, rho=rho) < boundary_multiplier(10_000, 0.05)


def test_diff_cs_is_the_documented_formula_in_intrinsic_time() -> None:
    b, c = RNG.normal(0, 1.0, 2700), RNG.normal(0.1, 2.0, 300)
    alpha = 0.02
    vb, vc = b.var(ddof=1), c.var(ddof=1)
    v = vb / b.size + vc / c.size
    t = (vb + vc) / v
    rho2 = default_rho2(alpha)
    half = math.sqrt(v * (1 + 1 / (t * rho2)) * 2 * math.log(math.sqrt(t * rho2 + 1) / alpha))
    cs = diff_cs(b, c, alpha)
    d = c.mean() - b.mean()
    assert (cs.estimate, cs.lower, cs.upper) == pytest.approx((d, d - half, d + half), rel=1e-12)
    assert cs.n == 3000
    # with equal sizes and variances the intrinsic time is the per-arm size: the one-sample multiplier applies
    b2, c2 = RNG.normal(0, 1, 500), RNG.normal(0, 1, 500)
    v2 = b2.var(ddof=1) / 500 + c2.var(ddof=1) / 500
    t2 = (b2.var(ddof=1) + c2.var(ddof=1)) / v2
    assert t2 == pytest.approx(500)
    cs2 = diff_cs(b2, c2)
    assert (cs2.upper - cs2.lower) / 2 == pytest.approx(math.sqrt(v2) * boundary_multiplier(500, 0.05), rel=1e-12)


def test_msprt_pvalue_is_the_mixture_likelihood_ratio() -> None:
    b, c = RNG.normal(0, 1, 400), RNG.normal(0.15, 1, 600)
    v = b.var(ddof=1) / 400 + c.var(ddof=1) / 600
    d = c.mean() - b.mean()
    tau2 = 0.01
    lam = math.sqrt(v / (v + tau2)) * math.exp(tau2 * d**2 / (2 * v * (v + tau2)))
    assert msprt_pvalue(b, c, tau2=tau2) == pytest.approx(min(1.0, 1 / lam), rel=1e-12)
    assert msprt_pvalue(b, b) == 1.0  # no difference: Λ < 1


@pytest.mark.parametrize("shift", [0.0, 0.05, 0.1, 0.15, 0.2, 0.4])
def test_msprt_pvalue_below_alpha_iff_the_difference_cs_excludes_zero(shift: float) -> None:
    rng = np.random.default_rng(int(shift * 100))
    b, c = rng.normal(0, 1, 900), rng.normal(shift, 1, 300)
    p = msprt_pvalue(b, c)
    cs = diff_cs(b, c, 0.05)
    assert (p < 0.05) == (not cs.contains(0.0))
    # at another alpha, with the same rho, still dual
    rho = math.sqrt(default_rho2(0.01))
    assert (msprt_pvalue(b, c, rho=rho) < 0.01) == (not diff_cs(b, c, 0.01, rho=rho).contains(0.0))


# ------------------------------------------------------------------------------------------ coverage under peeking


def test_mean_cs_coverage_holds_under_continuous_peeking() -> None:
    alpha, streams, n, every = 0.05, 200, 2000, 20
    ever_out = 0
    naive_out = 0
    looks = np.arange(every, n + 1, every)
    for seed in range(streams):
        x = np.random.default_rng(seed).normal(0.0, 1.0, n)
        ever_out += any(not mean_cs(x[:t], alpha).contains(0.0) for t in looks)
        means = np.cumsum(x)[looks - 1] / looks
        sds = np.array([x[:t].std(ddof=1) for t in looks])
        naive_out += bool(np.any(np.abs(means) > 1.96 * sds / np.sqrt(looks)))
    # measured: 6 of 200 streams (0.03) ever excluded the true mean; the fixed-n 95% interval: 80 of 200 (0.40)
    assert ever_out / streams <= alpha + 0.02
    assert naive_out / streams > 0.2  # the simulation does detect an interval that is not time-uniform


def test_diff_cs_coverage_holds_with_unequal_growing_arms() -> None:
    alpha, runs = 0.05, 100
    ever_out = 0
    for seed in range(runs):
        rng = np.random.default_rng(1000 + seed)
        b, c = rng.binomial(1, 0.3, 4500).astype(float), rng.binomial(1, 0.3, 500).astype(float)
        ever_out += any(not diff_cs(b[: 90 * k], c[: 10 * k], alpha).contains(0.0) for k in range(5, 51))
    # measured: 1 of 100 runs ever excluded the true difference 0 over 46 looks
    assert ever_out / runs <= alpha + 0.02


# ------------------------------------------------------------------------------------------------ floors and edges


def test_an_all_zero_stream_does_not_give_a_zero_width_interval() -> None:
    cs = mean_cs(np.zeros(100))
    assert cs.lower == 0.0  # clipped to [0, 1]
    p = 0.5 / 101
    assert cs.upper == pytest.approx(math.sqrt(p * (1 - p) / 100) * boundary_multiplier(100, 0.05))
    assert 0.01 < cs.upper < 0.05
    d = diff_cs(np.zeros(500), np.zeros(500))
    assert d.lower < -0.005 and d.upper > 0.005
    # more data tightens it
    assert mean_cs(np.zeros(10_000)).upper < cs.upper / 5


def test_var_floor_applies_to_constant_non_binary_data() -> None:
    x = np.full(50, 2.5)
    assert mean_cs(x).upper == mean_cs(x).lower == 2.5  # documented: no floor by default for non-0/1 data
    floored = mean_cs(x, var_floor=0.01)
    assert floored.lower < 2.5 < floored.upper


def test_moments_from_counts_equal_moments_from_values() -> None:
    x = (RNG.random(1234) < 0.07).astype(float)
    m = Moments.of_counts(int(x.sum()), x.size)
    assert m.binary and Moments.of(x).binary
    assert m.mean == pytest.approx(Moments.of(x).mean) and m.var == pytest.approx(Moments.of(x).var)
    assert mean_cs(m).to_dict() == pytest.approx(mean_cs(x).to_dict())
    assert diff_cs(m, m).to_dict() == pytest.approx(diff_cs(x, x).to_dict())


def test_empty_and_single_observations_know_nothing() -> None:
    assert mean_cs([]).to_dict() == {"estimate": None, "lower": None, "upper": None, "n": 0}
    single = mean_cs([3.0])
    assert (single.lower, single.upper) == (-math.inf, math.inf)
    assert diff_cs([], [1.0, 2.0]).lower == -math.inf
    assert msprt_pvalue([], [1.0, 2.0]) == 1.0


def test_interval_to_dict_is_json_safe() -> None:
    data = Interval(float("nan"), -math.inf, math.inf, 0).to_dict()
    assert json.loads(json.dumps(data, allow_nan=False)) == {"estimate": None, "lower": None, "upper": None, "n": 0}
    assert all(type(v) in (float, int) for v in mean_cs(np.array([1.0, 2.0, 4.0])).to_dict().values())


@pytest.mark.parametrize(
    "call",
    [
        lambda: mean_cs([1.0, 2.0], alpha=0.0),
        lambda: mean_cs([1.0, 2.0], alpha=1.5),
        lambda: mean_cs([1.0, 2.0], rho=-1.0),
        lambda: mean_cs([1.0, float("nan")]),
        lambda: mean_cs([[1.0, 2.0]]),
        lambda: mean_cs(["a", "b"]),
        lambda: mean_cs([1.0, 2.0], var_floor=-1.0),
        lambda: diff_cs([1.0], [2.0], alpha=True),
        lambda: msprt_pvalue([1.0, 2.0], [2.0, 3.0], tau2=0.0),
        lambda: mann_whitney_greater([], [1.0]),
        lambda: exceedance([1.0, 2.0], [1.0], q=1.0),
        lambda: Moments.of_counts(5, 3),
    ],
)
def test_bad_input_is_invalid_argument(call: object) -> None:
    with pytest.raises(InvalidArgument):
        call()  # type: ignore[operator]


def test_stratified_difference_is_not_fooled_by_a_shared_trend() -> None:
    """Simpson's paradox: both arms are equal within each period, but the candidate has most of its data in the
    worse period. Pooled, it looks significantly worse; compared within periods, it is not."""
    from mlpilot.rollouts.stats import Moments, diff_cs, stratified_diff_cs

    early = (Moments.of_counts(3800, 4000), Moments.of_counts(95, 100))  # accuracy 0.95 in both arms
    late = (Moments.of_counts(850, 1000), Moments.of_counts(595, 700))  # 0.85 in both arms
    pooled = diff_cs(Moments.of_counts(4650, 5000), Moments.of_counts(690, 800), 0.05)
    assert pooled.upper < 0  # the pooled comparison blames the candidate
    strat = stratified_diff_cs([early, late, (Moments.of_counts(0, 0), Moments.of_counts(80, 100))], 0.05)
    assert strat.lower < 0 < strat.upper and abs(strat.estimate) < 1e-9
    one = stratified_diff_cs([early], 0.05)  # one stratum: exactly the unstratified interval
    assert one == diff_cs(*early, 0.05)
    worse = stratified_diff_cs([(Moments.of_counts(3800, 4000), Moments.of_counts(700, 1000))], 0.05)
    assert worse.upper < 0  # a real difference within a period is still found
    assert stratified_diff_cs([], 0.05).lower == float("-inf")
