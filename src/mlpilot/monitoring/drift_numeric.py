"""Drift of one numeric feature: Kolmogorov-Smirnov, Wasserstein, PSI and Jensen-Shannon.

Every detector sorts the reference once in ``fit``; ``predict`` touches only the current window. NaN and ±inf
are dropped from both samples (missing values are a data-quality concern, see :mod:`.quality`).

Example::

    ks = KSDrift(alpha=0.01).fit(reference_df["age"])
    ks.predict(current_df["age"]).is_drift
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mlpilot.monitoring import _binning
from mlpilot.monitoring._inputs import Values, check_int, check_interval, numeric_values
from mlpilot.monitoring._ks import ks_test_sorted
from mlpilot.monitoring.base import UnivariateDrift


class KSDrift(UnivariateDrift):
    """Two-sample Kolmogorov-Smirnov test (two-sided).

    The statistic and p-value equal ``scipy.stats.ks_2samp(reference, current)`` (method ``auto``: exact p-value
    when both samples have at most 10,000 values, asymptotic ``kstwo`` otherwise). Cost per ``predict``: one sort
    of the current window plus a binary search of each current value in the reference sorted at fit time.

    Args:
        alpha: significance level; drift when ``p_value < alpha``.

    Attributes:
        reference_: the sorted finite reference values.
        feature_name_: the reference Series' name, or ``"value"``.
    """

    test = "ks"
    kind = "numeric"
    has_p_value = True

    def __init__(self, alpha: float = 0.05) -> None:
        self.alpha = alpha

    def _check_params(self) -> None:
        check_interval(self, "alpha", self.alpha, 0.0, 1.0, closed="neither")

    def _fit(self, reference: Values, feature: str) -> None:
        self.reference_ = np.sort(numeric_values(reference, feature=feature, role="reference"))

    def _compute(self, current: Values) -> tuple[float, float | None, dict[str, Any]]:
        values = np.sort(numeric_values(current, feature=self.feature_name_, role="current"))
        statistic, p_value, method = ks_test_sorted(self.reference_, values)
        detail = {"method": method, "n_reference": int(self.reference_.size), "n_current": int(values.size)}
        return statistic, p_value, detail


def _merged_multiples(n: int, a: int, m: int, b: int) -> np.ndarray:
    """The sorted union of ``{i a : 1 <= i <= n}`` and ``{j b : 1 <= j <= m}`` for coprime ``a``, ``b`` with
    ``n a == m b``, in O(n + m) and without sorting: each value's rank is counted arithmetically."""
    ia = np.arange(1, n + 1, dtype=np.int64) * a
    jb = np.arange(1, m + 1, dtype=np.int64) * b
    merged = np.empty(n + m - math.gcd(n, m), dtype=np.int64)  # common multiples of a and b occur once
    # rank = (own index) + (values of the other set strictly below) - (common multiples strictly below)
    merged[np.arange(n) + (ia - 1) // b - (ia - 1) // (a * b)] = ia
    merged[np.arange(m) + (jb - 1) // a - (jb - 1) // (a * b)] = jb
    return merged


def wasserstein_sorted(reference: np.ndarray, current: np.ndarray) -> float:
    """1-Wasserstein distance of two sorted samples, equal to ``scipy.stats.wasserstein_distance`` (~1e-15 relative).

    scipy integrates ``|F_ref - F_cur|`` over x, which needs both CDFs at every pooled point (two binary searches
    of ``n + m`` keys). The same area integrated over the probability axis is
    ``integral_0^1 |Q_ref(t) - Q_cur(t)| dt`` with the quantile functions ``Q(t) = sorted[ceil(t n) - 1]``: step
    functions whose steps are at ``i / n`` and ``j / m``, known without looking at the data. So the distance is a
    weighted sum of differences of order statistics — ``mean(|ref - cur|)`` when ``n == m`` — in O(n + m) after
    the sorts (the integer grid has ``lcm(n, m)`` steps, far below int64's limit for any in-memory sample).

    Args:
        reference: sorted sample.
        current: sorted sample.

    Returns:
        ``integral |F_ref - F_cur| dx`` in the units of the data.
    """
    n, m = reference.size, current.size
    if n == m:
        return float(np.abs(reference - current).mean())
    # On an integer grid of L = lcm(n, m) steps, Q_ref steps after every L/n steps and Q_cur after every L/m.
    g = math.gcd(n, m)
    step_ref, step_cur = m // g, n // g  # coprime
    ends = _merged_multiples(n, step_ref, m, step_cur)  # right ends of the intervals where both are constant
    widths = np.diff(ends, prepend=0).astype(np.float64)
    gaps = np.abs(reference[(ends - 1) // step_ref] - current[(ends - 1) // step_cur])
    return float(np.dot(widths, gaps) / float(ends[-1]))


class WassersteinDrift(UnivariateDrift):
    """1-Wasserstein (earth mover's) distance, normalised by the reference standard deviation.

    ``statistic = wasserstein_distance(reference, current) / std(reference)`` (population std, ``ddof=0``; a
    constant reference is not normalised). The un-normalised distance, equal to
    ``scipy.stats.wasserstein_distance``, is in ``detail["distance"]``. This is Evidently's "Wasserstein distance
    (normed)", the test its data-drift preset picks for numeric columns of more than 1,000 reference rows (threshold
    0.1); Evidently floors the std at 0.001 instead and flags ``statistic >= threshold``.

    Args:
        threshold: drift when the normalised distance exceeds it (0.1 = a tenth of a reference std).

    Attributes:
        reference_: the sorted finite reference values.
        scale_: the normalising standard deviation (1.0 for a constant reference).
        feature_name_: the reference Series' name, or ``"value"``.
    """

    test = "wasserstein"
    kind = "numeric"
    has_p_value = False

    def __init__(self, threshold: float = 0.1) -> None:
        self.threshold = threshold

    def _check_params(self) -> None:
        check_interval(self, "threshold", self.threshold, 0.0, float("inf"), closed="left")

    def _fit(self, reference: Values, feature: str) -> None:
        self.reference_ = np.sort(numeric_values(reference, feature=feature, role="reference"))
        std = float(np.std(self.reference_))
        self.scale_ = std if std > 0 else 1.0

    def _compute(self, current: Values) -> tuple[float, float | None, dict[str, Any]]:
        values = np.sort(numeric_values(current, feature=self.feature_name_, role="current"))
        distance = wasserstein_sorted(self.reference_, values)
        detail = {"distance": distance, "scale": self.scale_, "n_current": int(values.size)}
        return distance / self.scale_, None, detail


class _BinnedDrift(UnivariateDrift):
    """Shared fit of the histogram measures: quantile bins and reference counts (see :mod:`._binning`)."""

    kind = "numeric"
    has_p_value = False
    threshold: float
    n_bins: int

    def _check_params(self) -> None:
        check_interval(self, "threshold", self.threshold, 0.0, float("inf"), closed="left")
        check_int(self, "n_bins", self.n_bins, 2)

    def _fit(self, reference: Values, feature: str) -> None:
        ordered = np.sort(numeric_values(reference, feature=feature, role="reference"))
        self.bin_edges_ = _binning.quantile_edges(ordered, self.n_bins)
        self.reference_counts_ = _binning.counts_sorted(ordered, self.bin_edges_)

    def _current_counts(self, current: Values) -> np.ndarray:
        values = numeric_values(current, feature=self.feature_name_, role="current")
        return _binning.counts(values, self.bin_edges_)


class PSIDrift(_BinnedDrift):
    """Population stability index over quantile bins of the reference.

    ``PSI = sum((cur_i - ref_i) * ln(cur_i / ref_i))`` over the bin shares; an empty bin counts as ``eps``.
    Rule of thumb: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 major shift.

    Args:
        threshold: drift when PSI exceeds it.
        n_bins: number of quantile bins (fewer when the reference has ties at the quantiles).
        eps: the share given to empty bins.

    Attributes:
        bin_edges_: inner bin edges (reference quantiles).
        reference_counts_: reference counts per bin.
        feature_name_: the reference Series' name, or ``"value"``.
    """

    test = "psi"

    def __init__(self, threshold: float = 0.1, n_bins: int = 10, eps: float = 1e-4) -> None:
        self.threshold = threshold
        self.n_bins = n_bins
        self.eps = eps

    def _check_params(self) -> None:
        super()._check_params()
        check_interval(self, "eps", self.eps, 0.0, 1.0, closed="neither")

    def _compute(self, current: Values) -> tuple[float, float | None, dict[str, Any]]:
        cur_counts = self._current_counts(current)
        ref_shares = _binning.shares(self.reference_counts_, self.eps)
        cur_shares = _binning.shares(cur_counts, self.eps)
        detail = {
            "bin_edges": self.bin_edges_.tolist(),
            "reference_shares": ref_shares.tolist(),
            "current_shares": cur_shares.tolist(),
        }
        return _binning.psi(ref_shares, cur_shares), None, detail


class JensenShannonDrift(_BinnedDrift):
    """Jensen-Shannon distance between the binned reference and current distributions.

    Same quantile bins as :class:`PSIDrift`; the distance is
    ``scipy.spatial.distance.jensenshannon(reference_counts, current_counts)`` (natural log, range
    ``[0, sqrt(ln 2)] ≈ [0, 0.833]``). Unlike PSI it needs no epsilon: empty bins are fine.

    Args:
        threshold: drift when the distance exceeds it.
        n_bins: number of quantile bins.

    Attributes:
        bin_edges_: inner bin edges (reference quantiles).
        reference_counts_: reference counts per bin.
        feature_name_: the reference Series' name, or ``"value"``.
    """

    test = "jensenshannon"

    def __init__(self, threshold: float = 0.1, n_bins: int = 10) -> None:
        self.threshold = threshold
        self.n_bins = n_bins

    def _compute(self, current: Values) -> tuple[float, float | None, dict[str, Any]]:
        cur_counts = self._current_counts(current)
        detail = {"bin_edges": self.bin_edges_.tolist(), "current_counts": cur_counts.tolist()}
        return _binning.jensenshannon(self.reference_counts_, cur_counts), None, detail
