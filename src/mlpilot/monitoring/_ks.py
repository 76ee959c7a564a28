"""The two-sample Kolmogorov-Smirnov test on pre-sorted samples, equal to ``scipy.stats.ks_2samp``.

scipy evaluates both empirical CDFs at every point of the pooled sample (two ``searchsorted`` calls of
``n_ref + n_cur`` keys). The supremum of ``F_ref - F_cur`` is reached at a reference point and the supremum of
``F_cur - F_ref`` at a current point, so it is enough to locate the *current* points in the (sorted once, at fit
time) reference: for each current value ``y_j`` with ``a_j = #{ref < y_j}``, ``c_j = #{ref <= y_j}`` and
``b_j = #{cur <= y_j}``::

    max(F_ref - F_cur) = max_j (a_{j+1} / n_ref - b_j / n_cur)      (a_{n_cur} = n_ref, b_{-1} = 0)
    max(F_cur - F_ref) = max_j -(c_j / n_ref - b_j / n_cur)

Each candidate is computed from the same integer counts and with the same floating-point expression scipy uses
at the point where the supremum is attained, so the statistic is bit-for-bit scipy's. The p-value follows
scipy's ``method='auto'``: exact when both samples have at most 10,000 values (delegated to ``ks_2samp``
itself, cheap at that size), else ``kstwo.sf(D, round(n*m/(n+m)))``.

For a drifting feature of a large window, scipy's ``kstwo.sf`` evaluates ``2 * smirnov(n, D)``: an exact sum of up
to ``n`` terms in double-double arithmetic, ~0.6 s for n = 500,000. :func:`kstwo_sf` evaluates the same sum
vectorised, writing each term as a binomial probability::

    C(n, v) D (D + v/n)^(v-1) (1 - D - v/n)^(n-v) = D / p_v * Binomial(n, p_v).pmf(v),   p_v = D + v/n

with scipy's (Boost) binomial pmf, accurate to ~1e-15 relative per term: same value to ~1e-12 relative,
~10x faster. Outside that branch it calls ``scipy.stats.kstwo.sf`` itself.
"""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import numpy as np

from mlpilot.monitoring._extras import needs_extra

#: scipy's ``MAX_AUTO_N``: above this sample size ``ks_2samp(method="auto")`` uses the asymptotic p-value.
MAX_EXACT_N = 10_000
_SMIRNOV_MAX_N = 1_000_000  # above this scipy's smirnov uses a closed-form approximation (fast)


def _smirnov_sum(n: int, x: float) -> float:
    """``scipy.special.smirnov(n, x)`` (one-sided KS survival), for ``1/n < x < 0.5`` and ``n <= 10**6``."""
    with needs_extra("the KS drift test"):
        from scipy import stats

    last = n - math.floor(Fraction(x) * n) - 1  # the largest v with 1 - x - v/n > 0, computed exactly
    v = np.arange(1, last + 1, dtype=np.float64)
    p = x + v / n
    terms = (x / p) * stats.binom.pmf(v, n, p)
    return float(math.exp(n * math.log1p(-x)) + terms.sum())  # v = 0 term: (1 - x)^n


def kstwo_sf(d: float, n: float) -> float:
    """``scipy.stats.kstwo.sf(d, n)``: P(D_n >= d) of the two-sided one-sample KS statistic.

    Args:
        d: the statistic, in ``[0, 1]``.
        n: the (integer-valued) sample size.

    Returns:
        the survival probability, equal to scipy's to ~1e-12 relative.
    """
    with needs_extra("the KS drift test"):
        from scipy import stats

    nxsquared = n * d * d
    # The branch of scipy's _kolmogn(n, d, cdf=False) that computes 2 * smirnov(n, d) by an O(n) exact sum.
    if 140 < n <= _SMIRNOV_MAX_N and 1.0 < n * d < n - 1 and d < 0.5 and 2.2 <= nxsquared < 370.0:
        return float(np.clip(2.0 * _smirnov_sum(int(n), d), 0.0, 1.0))
    return float(stats.kstwo.sf(d, n))


def _count_current_le(current: np.ndarray) -> np.ndarray:
    """``#{cur <= cur[j]}`` for every j of a sorted array, in O(n)."""
    n = current.size
    change = current[1:] != current[:-1]
    if change.all():
        return np.arange(1, n + 1)
    ends = np.flatnonzero(np.append(change, True)) + 1
    group = np.concatenate(([0], np.cumsum(change)))
    return ends[group]


def ks_statistic_sorted(reference: np.ndarray, current: np.ndarray) -> float:
    """The two-sided KS statistic of two sorted, non-empty, NaN-free float arrays.

    Args:
        reference: sorted reference sample, shape ``(n_ref,)``.
        current: sorted current sample, shape ``(n_cur,)``.

    Returns:
        ``sup |F_ref - F_cur|``, identical to ``scipy.stats.ks_2samp(...).statistic`` (asymptotic method).
    """
    n1, n2 = reference.size, current.size
    below = np.searchsorted(reference, current, side="left")
    at_or_below = below
    inside = below < n1
    ties = np.zeros(n2, dtype=bool)
    ties[inside] = reference[below[inside]] == current[inside]
    if ties.any():  # only tied values need the second binary search
        at_or_below = below.copy()
        at_or_below[ties] = np.searchsorted(reference, current[ties], side="right")
    cur_le = _count_current_le(current)
    up = np.append(below[1:], n1) / n1 - cur_le / n2
    max_up = max(float(up.max()), below[0] / n1 - 0.0)  # j = -1: reference points below every current value
    down = at_or_below / n1 - cur_le / n2
    max_down = min(max(float(-down.min()), 0.0), 1.0)
    return max_down if max_down > max_up else max_up


def ks_test_sorted(reference: np.ndarray, current: np.ndarray) -> tuple[float, float, str]:
    """Statistic, p-value and method of the two-sided two-sample KS test on sorted arrays.

    Args:
        reference: sorted reference sample.
        current: sorted current sample.

    Returns:
        ``(statistic, p_value, method)``, ``method`` ∈ ``exact``, ``asymp``; equal to
        ``scipy.stats.ks_2samp(reference, current)``.
    """
    with needs_extra("the KS drift test"):
        from scipy import stats

    n1, n2 = reference.size, current.size
    if max(n1, n2) <= MAX_EXACT_N:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)  # scipy warns when it falls back to asymp
            result = stats.ks_2samp(reference, current)
        method = "asymp" if any("Switching to" in str(w.message) for w in caught) else "exact"
        return float(result.statistic), float(result.pvalue), method
    d = ks_statistic_sorted(reference, current)
    m, n = sorted([float(n1), float(n2)], reverse=True)
    en = m * n / (m + n)
    p = float(np.clip(kstwo_sf(d, float(np.round(en))), 0.0, 1.0))
    return d, p, "asymp"
