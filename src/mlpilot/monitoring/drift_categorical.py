"""Drift of one categorical feature: chi-square, Jensen-Shannon and PSI on categories, the unseen-category rate.

Categories are compared by equality (``"1"`` and ``1`` differ); missing values are dropped from both samples
(a rising null rate is a data-quality finding, see :mod:`.quality`). Any dtype is accepted, numbers included.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mlpilot.monitoring._binning import jensenshannon, psi, shares
from mlpilot.monitoring._extras import needs_extra
from mlpilot.monitoring._inputs import Values, category_values, check_interval
from mlpilot.monitoring.base import UnivariateDrift

_MAX_LISTED = 10  # unseen categories listed by name in a result's detail


def category_counts(values: pd.Series) -> pd.Series:
    """Counts per category (categories with zero count dropped), on a plain object index."""
    counts = values.value_counts(sort=False)
    counts = counts[counts > 0]
    counts.index = pd.Index(list(counts.index), dtype=object)
    return counts.astype(np.int64)


def contingency_table(reference: pd.Series, current: pd.Series) -> tuple[np.ndarray, list[Any]]:
    """The 2 x k table of counts (row 0 reference, row 1 current) over the union of categories.

    Args:
        reference: reference counts per category (from :func:`category_counts`).
        current: current counts per category.

    Returns:
        ``(table, categories)``; reference categories come first, in their fit order.
    """
    new = current.index[~current.index.isin(reference.index)]
    categories = list(reference.index) + list(new)
    ref_row = np.concatenate((reference.to_numpy(), np.zeros(len(new), dtype=np.int64)))
    cur_row = current.reindex(pd.Index(categories, dtype=object), fill_value=0).to_numpy()
    return np.vstack((ref_row, cur_row)).astype(np.float64), categories


class _CategoricalDrift(UnivariateDrift):
    kind = "categorical"

    def _fit(self, reference: Values, feature: str) -> None:
        self.reference_counts_ = category_counts(category_values(reference, feature=feature, role="reference"))

    def _current_counts(self, current: Values) -> pd.Series:
        return category_counts(category_values(current, feature=self.feature_name_, role="current"))


class ChiSquareDrift(_CategoricalDrift):
    """Pearson chi-square test of homogeneity on the 2 x k table (reference counts, current counts).

    The statistic and p-value equal ``scipy.stats.chi2_contingency(table, correction=False)``: a two-sample test
    (the reference is a sample too, not the truth), over the union of categories, so categories unseen in the
    reference count as evidence of drift; no Yates continuity correction, even for two categories. When only
    one category occurs in both samples the statistic is 0 and the p-value 1.

    Args:
        alpha: significance level; drift when ``p_value < alpha``.

    Attributes:
        reference_counts_: reference counts per category (a pandas Series).
        feature_name_: the reference Series' name, or ``"value"``.
    """

    test = "chi2"
    has_p_value = True

    def __init__(self, alpha: float = 0.05) -> None:
        self.alpha = alpha

    def _check_params(self) -> None:
        check_interval(self, "alpha", self.alpha, 0.0, 1.0, closed="neither")

    def _compute(self, current: Values) -> tuple[float, float | None, dict[str, Any]]:
        with needs_extra("the chi-square drift test"):
            from scipy import stats

        table, categories = contingency_table(self.reference_counts_, self._current_counts(current))
        dof = table.shape[1] - 1
        detail: dict[str, Any] = {"dof": dof, "n_categories": len(categories)}
        if dof == 0:
            return 0.0, 1.0, detail
        expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
        statistic = float(((table - expected) ** 2 / expected).sum())
        return statistic, float(stats.chi2.sf(statistic, dof)), detail


class CategoricalJensenShannonDrift(_CategoricalDrift):
    """Jensen-Shannon distance between the reference and current category frequencies.

    The distance is ``scipy.spatial.distance.jensenshannon(reference_counts, current_counts)`` over the union of
    categories (natural log, range ``[0, sqrt(ln 2)] ≈ [0, 0.833]``): categories unseen in the reference count with
    a reference frequency of 0, no epsilon needed. This is the test Evidently's data-drift preset picks for
    categorical columns of more than 1,000 reference rows (``jensenshannon``, threshold 0.1; Evidently flags
    ``distance >= threshold``).

    Args:
        threshold: drift when the distance exceeds it.

    Attributes:
        reference_counts_: reference counts per category (a pandas Series).
        feature_name_: the reference Series' name, or ``"value"``.
    """

    test = "jensenshannon"
    has_p_value = False

    def __init__(self, threshold: float = 0.1) -> None:
        self.threshold = threshold

    def _check_params(self) -> None:
        check_interval(self, "threshold", self.threshold, 0.0, 1.0)

    def _compute(self, current: Values) -> tuple[float, float | None, dict[str, Any]]:
        table, categories = contingency_table(self.reference_counts_, self._current_counts(current))
        n_unseen = len(categories) - len(self.reference_counts_)
        detail = {"n_categories": len(categories), "n_unseen_categories": n_unseen}
        return jensenshannon(table[0], table[1]), None, detail


class CategoricalPSIDrift(_CategoricalDrift):
    """Population stability index over the reference categories plus one bucket for unseen categories.

    Args:
        threshold: drift when PSI exceeds it.
        eps: the share given to an empty category (including the unseen bucket when nothing new appears).

    Attributes:
        reference_counts_: reference counts per category (a pandas Series).
        feature_name_: the reference Series' name, or ``"value"``.
    """

    test = "psi"
    has_p_value = False

    def __init__(self, threshold: float = 0.1, eps: float = 1e-4) -> None:
        self.threshold = threshold
        self.eps = eps

    def _check_params(self) -> None:
        check_interval(self, "threshold", self.threshold, 0.0, float("inf"), closed="left")
        check_interval(self, "eps", self.eps, 0.0, 1.0, closed="neither")

    def _compute(self, current: Values) -> tuple[float, float | None, dict[str, Any]]:
        cur = self._current_counts(current)
        known = cur.index.isin(self.reference_counts_.index)
        cur_known = cur[known].reindex(self.reference_counts_.index, fill_value=0).to_numpy()
        cur_counts = np.append(cur_known, cur[~known].sum())
        ref_counts = np.append(self.reference_counts_.to_numpy(), 0)
        ref_shares, cur_shares = shares(ref_counts, self.eps), shares(cur_counts, self.eps)
        detail = {"n_categories": len(ref_counts) - 1, "unseen_share": float(cur_counts[-1] / cur_counts.sum())}
        return psi(ref_shares, cur_shares), None, detail


class UnseenCategoryDrift(_CategoricalDrift):
    """Share of current values whose category never occurred in the reference.

    Args:
        threshold: drift when the unseen share exceeds it.

    Attributes:
        reference_counts_: reference counts per category (a pandas Series).
        feature_name_: the reference Series' name, or ``"value"``.
    """

    test = "unseen"
    has_p_value = False

    def __init__(self, threshold: float = 0.05) -> None:
        self.threshold = threshold

    def _check_params(self) -> None:
        check_interval(self, "threshold", self.threshold, 0.0, 1.0)

    def _compute(self, current: Values) -> tuple[float, float | None, dict[str, Any]]:
        cur = self._current_counts(current)
        unseen = cur[~cur.index.isin(self.reference_counts_.index)].sort_values(ascending=False)
        detail = {
            "n_unseen_values": int(unseen.sum()),
            "n_unseen_categories": len(unseen),
            "examples": [str(c) for c in unseen.index[:_MAX_LISTED]],
        }
        return float(unseen.sum() / cur.sum()), None, detail
