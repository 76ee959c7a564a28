"""Sequential statistics of the rollout gates: time-uniform confidence sequences and always-valid p-values.

A rollout looks at its evidence at every tick, so a fixed-sample test (a t-test or a normal confidence interval
re-computed at every look) would fail a good candidate far more often than its nominal ``alpha``. The intervals
here are *confidence sequences*: with probability at least ``1 - alpha`` they contain the true value at **every**
sample size at once, so any number of looks, at any times, keeps the error rate.

Boundary (the normal mixture of Robbins, Howard et al. 2021; as the asymptotic confidence sequence of
Waudby-Smith, Arnold, Wu, Howard and Ramdas 2023, "Time-uniform central limit theory", Theorem 2.2). For the mean
of ``t`` i.i.d. observations with standard deviation ``sigma``::

    mean ± sigma · sqrt( (t rho² + 1) / (t² rho²) · 2 log( sqrt(t rho² + 1) / alpha ) )

``rho`` is a tuning constant: the boundary is tightest near ``t* = PLANNED_N`` (1,000) observations, with
``rho² = (-2 log alpha + log(-2 log alpha + 1)) / t*`` (Waudby-Smith et al., eq. 16); the width grows only like
``sqrt(log t / t)`` elsewhere (at ``alpha = 0.05`` the multiplier of ``sigma/√t`` is 3.9 at t = 100, 3.0 at 1,000,
3.2 at 10,000, against 1.96 for a fixed-n interval).

Two independent samples (:func:`diff_cs`): the difference of means ``D = mean_c - mean_b`` has variance
``V = s_b²/n_b + s_c²/n_c``. In *intrinsic time* ``t = sigma²/V`` with ``sigma² = s_b² + s_c²`` (``t`` is the harmonic
mean of ``n_b`` and ``n_c`` when the variances are equal, and ``n`` when ``n_b = n_c = n``) the same boundary
gives::

    D ± sqrt( V · (1 + 1/(t rho²)) · 2 log( sqrt(t rho² + 1) / alpha ) )

which is exactly the set of ``D₀`` the mixture SPRT of :func:`msprt_pvalue` does not reject at level ``alpha``
with mixing variance ``tau² = rho² sigma²`` (Johari, Pekelis, Walsh, "Always valid inference"): the interval
excludes 0 if and only if the always-valid p-value is below ``alpha``.

Variance floor: a stream with no errors at all has sample variance 0, which would give a zero-width interval and
a confident verdict from a handful of requests. For 0/1 data the variance is bounded below by the Bernoulli
variance ``p̃(1 - p̃)`` of the shrunk proportion ``p̃ = (Σx + 0.5)/(n + 1)`` (so 0 errors in 100 requests count
as a rate of about 0.005); other data can be given an absolute ``var_floor``. Intervals of 0/1 data are clipped to
``[0, 1]`` (``[-1, 1]`` for a difference), which keeps their coverage.

Everything is pure computation on numpy; scipy (the ``sklearn`` extra) is imported by the two tests that need it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from mlpilot.errors import InvalidArgument
from mlpilot.monitoring._extras import needs_extra

#: The sample size (or intrinsic time) at which the default boundary is tightest.
PLANNED_N = 1000


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


@dataclass(frozen=True)
class Interval:
    """A point estimate with a (time-uniform) confidence interval.

    Attributes:
        estimate: the point estimate (NaN with no data).
        lower: the lower bound (``-inf`` when nothing is known).
        upper: the upper bound (``+inf`` when nothing is known).
        n: the number of observations behind it (both arms together for a difference).
    """

    estimate: float
    lower: float
    upper: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; non-finite numbers become ``None``."""
        return {
            "estimate": _finite(self.estimate),
            "lower": _finite(self.lower),
            "upper": _finite(self.upper),
            "n": int(self.n),
        }

    def contains(self, value: float) -> bool:
        """True when ``lower <= value <= upper``."""
        return bool(self.lower <= value <= self.upper)


@dataclass(frozen=True)
class Moments:
    """Sufficient statistics of one sample: size, mean, sample variance (``ddof=1``; 0 for ``n < 2``) and
    whether every value is 0 or 1 (then the Bernoulli variance floor applies).

    Build with :meth:`of` (from values) or :meth:`of_counts` (0/1 data from a count), and pass it anywhere the
    functions here take a sample, to avoid materialising millions of 0/1 indicators.
    """

    n: int
    mean: float
    var: float
    binary: bool = False

    @classmethod
    def of(cls, values: ArrayLike) -> Moments:
        """The moments of a 1-D sample of finite numbers.

        Raises:
            InvalidArgument: not 1-D, not numeric, or NaN/infinite values.
        """
        x = _as_sample(values)
        n = int(x.size)
        if n == 0:
            return cls(0, math.nan, 0.0, False)
        mean = float(x.mean())
        var = float(x.var(ddof=1)) if n > 1 else 0.0
        binary = bool(np.all((x == 0.0) | (x == 1.0)))
        return cls(n, mean, var, binary)

    @classmethod
    def of_counts(cls, successes: int, n: int) -> Moments:
        """The moments of ``n`` 0/1 values of which ``successes`` are 1.

        Raises:
            InvalidArgument: negative counts or ``successes > n``.
        """
        if n < 0 or successes < 0 or successes > n:
            raise InvalidArgument(f"need 0 <= successes <= n, got successes={successes}, n={n}")
        if n == 0:
            return cls(0, math.nan, 0.0, True)
        p = successes / n
        var = p * (1.0 - p) * n / (n - 1) if n > 1 else 0.0
        return cls(int(n), float(p), float(var), True)


Sample = ArrayLike | Moments


def _as_sample(values: ArrayLike) -> np.ndarray:
    try:
        x = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"a sample must be numbers: {exc}") from exc
    if x.ndim != 1:
        raise InvalidArgument(f"a sample must be one-dimensional, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise InvalidArgument("a sample must not contain NaN or infinite values")
    return x


def _moments(sample: Sample) -> Moments:
    return sample if isinstance(sample, Moments) else Moments.of(sample)


def _check_alpha(alpha: float) -> None:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 < alpha < 1.0:
        raise InvalidArgument(f"alpha must be a number in (0, 1), got {alpha!r}")


def default_rho2(alpha: float, planned_n: float = PLANNED_N) -> float:
    """``rho²`` that makes the normal-mixture boundary tightest at ``planned_n`` observations.

    ``rho² = (-2 log alpha + log(-2 log alpha + 1)) / planned_n`` (Waudby-Smith et al. 2023, eq. 16).
    """
    _check_alpha(alpha)
    if not planned_n > 0:
        raise InvalidArgument(f"planned_n must be positive, got {planned_n!r}")
    log_term = -2.0 * math.log(alpha)
    return (log_term + math.log(log_term + 1.0)) / planned_n


def _rho2(alpha: float, rho: float | None) -> float:
    if rho is None:
        return default_rho2(alpha)
    if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not rho > 0 or not math.isfinite(rho):
        raise InvalidArgument(f"rho must be a positive number, got {rho!r}")
    return float(rho) ** 2


def boundary_multiplier(t: float, alpha: float, *, rho: float | None = None) -> float:
    """The half-width of the confidence sequence in units of the standard error ``sigma/√t``.

    ``sqrt( (t rho² + 1)/(t rho²) · 2 log( sqrt(t rho² + 1)/alpha ) )``; compare 1.96 for a fixed-n 95% interval.

    Args:
        t: the sample size (or intrinsic time), > 0.
        alpha: the error probability over all looks.
        rho: the tuning constant; default tightest at :data:`PLANNED_N`.
    """
    _check_alpha(alpha)
    r2 = _rho2(alpha, rho)
    if not t > 0:
        return math.inf
    a = t * r2
    return math.sqrt((a + 1.0) / a * 2.0 * math.log(math.sqrt(a + 1.0) / alpha))


def floored_variance(m: Moments, var_floor: float = 0.0) -> float:
    """The variance used by the boundaries: the sample variance, at least ``p̃(1 - p̃)`` with
    ``p̃ = (Σx + 0.5)/(n + 1)`` for 0/1 data, and at least ``var_floor``."""
    var = m.var
    if m.binary and m.n > 0:
        p = (m.mean * m.n + 0.5) / (m.n + 1.0)
        var = max(var, p * (1.0 - p))
    return max(var, float(var_floor))


def _check_floor(var_floor: float) -> None:
    if isinstance(var_floor, bool) or not isinstance(var_floor, (int, float)) or not var_floor >= 0:
        raise InvalidArgument(f"var_floor must be a number >= 0, got {var_floor!r}")


def mean_cs(x: Sample, alpha: float = 0.05, *, rho: float | None = None, var_floor: float = 0.0) -> Interval:
    """Time-uniform (always-valid) asymptotic confidence sequence for the mean of i.i.d. observations.

    ``mean ± sqrt(v/n) · boundary_multiplier(n, alpha)`` with ``v`` the floored sample variance (see the module
    docstring). Valid simultaneously over every ``n``, so it may be recomputed as data arrive.

    Args:
        x: the observations (1-D), or their :class:`Moments`.
        alpha: error probability over all looks, in ``(0, 1)``.
        rho: the boundary's tuning constant; default tightest at ``n = 1,000`` (:func:`default_rho2`).
        var_floor: an absolute lower bound on the variance (0/1 data also get the Bernoulli floor).

    Returns:
        an :class:`Interval`; ``(-inf, inf)`` with no data or a single non-binary observation without a floor.

    Raises:
        InvalidArgument: bad ``alpha``/``rho``/``var_floor``, or a sample that is not finite 1-D numbers.
    """
    _check_alpha(alpha)
    _check_floor(var_floor)
    m = _moments(x)
    if m.n == 0:
        return Interval(math.nan, -math.inf, math.inf, 0)
    var = floored_variance(m, var_floor)
    if m.n == 1 and var == 0.0:
        return Interval(m.mean, -math.inf, math.inf, 1)
    half = math.sqrt(var / m.n) * boundary_multiplier(m.n, alpha, rho=rho)
    lower, upper = m.mean - half, m.mean + half
    if m.binary:
        lower, upper = max(lower, 0.0), min(upper, 1.0)
    return Interval(m.mean, lower, upper, m.n)


def _two_sample(baseline: Sample, candidate: Sample, var_floor: float) -> tuple[Moments, Moments, float, float]:
    """(baseline moments, candidate moments, V = v_b/n_b + v_c/n_c, sigma² = v_b + v_c) with floored variances."""
    mb, mc = _moments(baseline), _moments(candidate)
    if mb.n == 0 or mc.n == 0:
        return mb, mc, math.inf, math.inf
    vb, vc = floored_variance(mb, var_floor), floored_variance(mc, var_floor)
    if (mb.n == 1 and vb == 0.0) or (mc.n == 1 and vc == 0.0):
        return mb, mc, math.inf, math.inf
    return mb, mc, vb / mb.n + vc / mc.n, vb + vc


def diff_cs(
    baseline: Sample,
    candidate: Sample,
    alpha: float = 0.05,
    *,
    rho: float | None = None,
    var_floor: float = 0.0,
) -> Interval:
    """Time-uniform confidence sequence for ``mean(candidate) - mean(baseline)`` from two independent samples.

    ``D ± sqrt( V · (1 + 1/(t rho²)) · 2 log( sqrt(t rho² + 1)/alpha ) )`` with ``V = v_b/n_b + v_c/n_c`` and intrinsic
    time ``t = (v_b + v_c)/V`` (see the module docstring). The arms may have any sizes and grow at any rates.

    Args:
        baseline: the baseline's observations (or :class:`Moments`).
        candidate: the candidate's observations (or :class:`Moments`).
        alpha: error probability over all looks.
        rho: the boundary's tuning constant; default tightest at intrinsic time 1,000.
        var_floor: an absolute lower bound on each arm's variance (0/1 data also get the Bernoulli floor).

    Returns:
        an :class:`Interval` whose ``n`` is ``n_b + n_c``; ``(-inf, inf)`` when an arm is empty.

    Raises:
        InvalidArgument: bad ``alpha``/``rho``/``var_floor`` or a sample that is not finite 1-D numbers.
    """
    _check_alpha(alpha)
    _check_floor(var_floor)
    mb, mc, v, sigma2 = _two_sample(baseline, candidate, var_floor)
    estimate = mc.mean - mb.mean if mb.n and mc.n else math.nan
    n = mb.n + mc.n
    if not math.isfinite(v):
        return Interval(estimate, -math.inf, math.inf, n)
    if v == 0.0:
        return Interval(estimate, estimate, estimate, n)
    half = math.sqrt(v) * boundary_multiplier(sigma2 / v, alpha, rho=rho)
    lower, upper = estimate - half, estimate + half
    if mb.binary and mc.binary:
        lower, upper = max(lower, -1.0), min(upper, 1.0)
    return Interval(estimate, lower, upper, n)


def stratified_diff_cs(
    strata: Sequence[tuple[Sample, Sample]],
    alpha: float = 0.05,
    *,
    rho: float | None = None,
    var_floor: float = 0.0,
) -> Interval:
    """:func:`diff_cs` for evidence collected in strata (a canary's steps): the difference is estimated *within*
    each stratum and the estimates are combined with inverse-variance weights, ``D = Σ D_s/V_s / Σ 1/V_s`` with
    ``V = 1/Σ 1/V_s``; intrinsic time ``t = sigma²/V`` with ``sigma²`` from all the data pooled.

    Why: when the split moves (10% → 50% → 100%) the candidate's data are later on average than the baseline's, so
    pooling would read any change both arms share over time (a daily cycle, a drifting population) as a difference
    between them. Within a stratum both arms see the same period. A stratum where an arm has no data (the 100% step
    has no baseline) carries no information and is skipped.

    Raises:
        InvalidArgument: bad ``alpha``/``rho``/``var_floor`` or a sample that is not finite 1-D numbers.
    """
    _check_alpha(alpha)
    _check_floor(var_floor)
    weights, estimates = [], []
    all_b: list[Moments] = []
    all_c: list[Moments] = []
    for baseline, candidate in strata:
        mb, mc, v, _ = _two_sample(baseline, candidate, var_floor)
        all_b.append(mb)
        all_c.append(mc)
        if not math.isfinite(v) or v <= 0.0:
            continue
        weights.append(1.0 / v)
        estimates.append(mc.mean - mb.mean)
    n = sum(m.n for m in all_b) + sum(m.n for m in all_c)
    if not weights:
        return Interval(math.nan, -math.inf, math.inf, n)
    total = sum(weights)
    estimate = sum(w * e for w, e in zip(weights, estimates, strict=True)) / total
    v = 1.0 / total
    pooled_b, pooled_c = _pool(all_b), _pool(all_c)
    sigma2 = floored_variance(pooled_b, var_floor) + floored_variance(pooled_c, var_floor)
    half = math.sqrt(v) * boundary_multiplier(max(sigma2 / v, 1e-12), alpha, rho=rho)
    lower, upper = estimate - half, estimate + half
    if pooled_b.binary and pooled_c.binary:
        lower, upper = max(lower, -1.0), min(upper, 1.0)
    return Interval(estimate, lower, upper, n)


def _pool(parts: list[Moments]) -> Moments:
    """The moments of the union of samples (exact: sizes, means and variances combined)."""
    parts = [m for m in parts if m.n > 0]
    n = sum(m.n for m in parts)
    if n == 0:
        return Moments(0, math.nan, 0.0, all(m.binary for m in parts))
    mean = sum(m.n * m.mean for m in parts) / n
    ss = sum((m.n - 1) * m.var + m.n * (m.mean - mean) ** 2 for m in parts)
    return Moments(n, mean, ss / (n - 1) if n > 1 else 0.0, all(m.binary for m in parts))


def msprt_pvalue(
    baseline: Sample,
    candidate: Sample,
    *,
    tau2: float | None = None,
    rho: float | None = None,
    var_floor: float = 0.0,
) -> float:
    """Always-valid p-value of the mixture SPRT for ``mean(candidate) = mean(baseline)``.

    Johari, Pekelis and Walsh ("Always valid inference", 2017/2022), for the difference of means
    ``D`` with variance ``V = v_b/n_b + v_c/n_c`` and a ``N(0, tau²)`` mixture over the effect::

        Λ = sqrt(V / (V + tau²)) · exp( tau² D² / (2 V (V + tau²)) ),   p = min(1, 1/Λ)

    Default ``tau² = rho² (v_b + v_c)`` with ``rho²`` of :func:`default_rho2` at ``alpha = 0.05``, which makes
    ``p < alpha`` exactly when :func:`diff_cs` at the same ``rho`` excludes 0. This is the p-value at the current look;
    a caller that keeps looks may report the running minimum, which is still always valid.

    Args:
        baseline: the baseline's observations (or :class:`Moments`).
        candidate: the candidate's observations (or :class:`Moments`).
        tau2: the mixing variance on the scale of ``D``; overrides ``rho``.
        rho: the tuning constant (``tau² = rho² (v_b + v_c)``) when ``tau2`` is not given.
        var_floor: an absolute lower bound on each arm's variance.

    Returns:
        the p-value in ``[0, 1]``; 1.0 when an arm is empty.

    Raises:
        InvalidArgument: a non-positive ``tau2``/``rho`` or a bad sample.
    """
    _check_floor(var_floor)
    mb, mc, v, sigma2 = _two_sample(baseline, candidate, var_floor)
    if not math.isfinite(v):
        return 1.0
    d = mc.mean - mb.mean
    if v == 0.0:
        return 1.0 if d == 0.0 else 0.0
    if tau2 is None:
        t2 = _rho2(0.05, rho) * sigma2
    else:
        if isinstance(tau2, bool) or not isinstance(tau2, (int, float)) or not tau2 > 0 or not math.isfinite(tau2):
            raise InvalidArgument(f"tau2 must be a positive number, got {tau2!r}")
        t2 = float(tau2)
    log_lambda = 0.5 * math.log(v / (v + t2)) + t2 * d * d / (2.0 * v * (v + t2))
    return float(min(1.0, math.exp(-log_lambda)))


def mann_whitney_greater(baseline: ArrayLike, candidate: ArrayLike) -> tuple[float, float]:
    """One-sided Mann-Whitney U test that the candidate is stochastically greater than the baseline.

    Equal to ``scipy.stats.mannwhitneyu(candidate, baseline, alternative="greater")`` (method ``auto``).

    Returns:
        ``(U, p_value)`` with ``U`` the candidate's statistic (``U > n_b n_c / 2`` when it tends to be larger).

    Raises:
        InvalidArgument: an empty or non-finite sample.
    """
    b, c = _as_sample(baseline), _as_sample(candidate)
    if b.size == 0 or c.size == 0:
        raise InvalidArgument(f"Mann-Whitney needs both samples non-empty, got {b.size} and {c.size} values")
    with needs_extra("the Mann-Whitney latency test"):
        from scipy import stats

    result = stats.mannwhitneyu(c, b, alternative="greater")
    return float(result.statistic), float(result.pvalue)


def exceedance(
    baseline: ArrayLike,
    candidate: ArrayLike,
    q: float = 0.99,
    alpha: float = 0.05,
    *,
    rho: float | None = None,
) -> dict[str, Any]:
    """Tail test: how often the candidate exceeds the baseline's ``q``-quantile.

    ``threshold`` is the baseline's empirical ``q``-quantile; with no difference the share of candidate values
    above it is about ``1 - q``. The share is tested with a one-sided exact binomial test
    (``scipy.stats.binomtest(k, n, 1 - q, alternative="greater")``, a fixed-n p-value) and bounded with the
    time-uniform :func:`mean_cs` of the 0/1 exceedance indicators (valid at every look).

    Args:
        baseline: baseline values (e.g. latencies).
        candidate: candidate values.
        q: the quantile, in ``(0, 1)``.
        alpha: error probability of the confidence sequence.
        rho: the confidence sequence's tuning constant.

    Returns:
        ``{"q", "threshold", "expected_share", "exceed", "n", "share", "p_value", "cs"}`` where ``cs`` is an
        :class:`Interval` on the share and the rest are plain floats and ints.

    Raises:
        InvalidArgument: ``q`` outside ``(0, 1)``, an empty or non-finite sample.
    """
    if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0.0 < q < 1.0:
        raise InvalidArgument(f"q must be a number in (0, 1), got {q!r}")
    b, c = _as_sample(baseline), _as_sample(candidate)
    if b.size == 0 or c.size == 0:
        raise InvalidArgument(f"the exceedance test needs both samples non-empty, got {b.size} and {c.size} values")
    with needs_extra("the latency tail test"):
        from scipy import stats

    threshold = float(np.quantile(b, q))
    k = int(np.count_nonzero(c > threshold))
    n = int(c.size)
    p_value = float(stats.binomtest(k, n, 1.0 - q, alternative="greater").pvalue)
    return {
        "q": float(q),
        "threshold": threshold,
        "expected_share": float(1.0 - q),
        "exceed": k,
        "n": n,
        "share": k / n,
        "p_value": p_value,
        "cs": mean_cs(Moments.of_counts(k, n), alpha, rho=rho),
    }
