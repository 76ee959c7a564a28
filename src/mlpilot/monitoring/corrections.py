"""Multiple-testing corrections for per-feature p-values (adjusted p-values, as ``statsmodels.multipletests``).

With ``m`` p-values sorted ascending ``p_(1) <= … <= p_(m)``:

- ``bonferroni``: ``min(1, m * p_i)``; controls the family-wise error rate (FWER).
- ``holm``: step-down ``max_{j <= i} min(1, (m - j + 1) * p_(j))``; controls the FWER, never less powerful
  than Bonferroni.
- ``fdr_bh``: Benjamini-Hochberg step-up ``min_{j >= i} min(1, m / j * p_(j))``; controls the false discovery
  rate under independence or positive dependence.
- ``none``: the p-values unchanged.

A feature drifts when its *adjusted* p-value is below ``alpha``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from mlpilot.errors import InvalidArgument

Correction = Literal["holm", "bonferroni", "fdr_bh", "none"]
CORRECTIONS: tuple[str, ...] = ("holm", "bonferroni", "fdr_bh", "none")


def adjust_p_values(p_values: Sequence[float] | np.ndarray, method: str = "holm") -> np.ndarray:
    """Adjusted p-values, in the input order.

    Args:
        p_values: raw p-values in ``[0, 1]``, any order; may be empty.
        method: ``holm``, ``bonferroni``, ``fdr_bh`` or ``none``.

    Returns:
        float array of the same length; each adjusted value is ``>=`` its raw value and ``<= 1``.

    Raises:
        InvalidArgument: an unknown method, or p-values that are NaN or outside ``[0, 1]``.
    """
    if method not in CORRECTIONS:
        raise InvalidArgument(f"unknown multiple-testing correction {method!r}; use one of {list(CORRECTIONS)}")
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise InvalidArgument(f"p-values must be one-dimensional, got shape {p.shape}")
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise InvalidArgument("p-values must lie in [0, 1] and not be NaN")
    m = p.size
    if m == 0 or method == "none":
        return p.copy()
    if method == "bonferroni":
        return np.minimum(p * m, 1.0)
    order = np.argsort(p, kind="stable")
    ranked = p[order]
    rank = np.arange(1, m + 1)
    if method == "holm":
        adjusted_sorted = np.minimum(np.maximum.accumulate((m - rank + 1) * ranked), 1.0)
    else:  # fdr_bh
        adjusted_sorted = np.minimum(np.minimum.accumulate((m / rank * ranked)[::-1])[::-1], 1.0)
    adjusted = np.empty(m)
    adjusted[order] = adjusted_sorted
    return adjusted
