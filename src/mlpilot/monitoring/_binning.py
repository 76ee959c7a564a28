"""Histograms for the binned drift measures (PSI, Jensen-Shannon): quantile bins learned from the reference.

Bins are ``(-inf, e_1), [e_1, e_2), …, [e_k, +inf)`` with inner edges ``e_i`` at the reference quantiles
``i / n_bins`` (duplicates removed, so a discrete feature gets fewer bins). The outer bins are open, so current
values outside the reference range land in the first or last bin.
"""

from __future__ import annotations

import numpy as np

from mlpilot.monitoring._extras import needs_extra


def quantile_edges(sorted_reference: np.ndarray, n_bins: int) -> np.ndarray:
    """Inner bin edges at the reference quantiles ``1/n_bins … (n_bins-1)/n_bins`` (unique, increasing)."""
    if n_bins < 2:
        return np.empty(0)
    quantiles = np.quantile(sorted_reference, np.linspace(0.0, 1.0, n_bins + 1)[1:-1])
    return np.unique(quantiles)


def counts_sorted(sorted_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per bin of a *sorted* sample, in O(n_bins log n)."""
    below = np.searchsorted(sorted_values, edges, side="left")
    return np.diff(np.concatenate(([0], below, [sorted_values.size])))


def counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per bin of any sample, in O(n log n_bins)."""
    return np.bincount(np.searchsorted(edges, values, side="right"), minlength=edges.size + 1)


def shares(bin_counts: np.ndarray, eps: float) -> np.ndarray:
    """Proportions per bin, with empty bins set to ``eps`` so that logarithms stay finite."""
    proportions = bin_counts / bin_counts.sum()
    return np.where(bin_counts == 0, eps, proportions)


def psi(reference_shares: np.ndarray, current_shares: np.ndarray) -> float:
    """Population stability index ``sum((cur - ref) * ln(cur / ref))`` of two share vectors (no zeros)."""
    return float(np.sum((current_shares - reference_shares) * np.log(current_shares / reference_shares)))


def jensenshannon(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Jensen-Shannon distance (natural log, so in ``[0, sqrt(ln 2)]``) of two count vectors.

    This is ``scipy.spatial.distance.jensenshannon(reference_counts, current_counts)``.
    """
    with needs_extra("the Jensen-Shannon drift measure"):
        from scipy.spatial.distance import jensenshannon as _js

    return float(_js(reference_counts.astype(np.float64), current_counts.astype(np.float64)))
