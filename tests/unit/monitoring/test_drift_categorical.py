"""Categorical drift detectors against scipy and hand-computed values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import spatial, stats

from mlpilot.errors import InvalidArgument
from mlpilot.monitoring import (
    CategoricalJensenShannonDrift,
    CategoricalPSIDrift,
    ChiSquareDrift,
    TableDrift,
    UnseenCategoryDrift,
)

CHI2_CASES = [
    ("same-categories", list("aabbbcccc") * 20, list("abbcccccc") * 15),
    ("two-categories", ["x"] * 70 + ["y"] * 30, ["x"] * 40 + ["y"] * 40),
    ("unseen-in-reference", list("aabbc") * 30, list("aabbd") * 20),
    ("integers", [1, 2, 2, 3, 3, 3] * 50, [1, 1, 2, 3, 3, 4] * 10),
]


@pytest.mark.parametrize(("reference", "current"), [c[1:] for c in CHI2_CASES], ids=[c[0] for c in CHI2_CASES])
def test_chi2_matches_chi2_contingency_without_yates(reference: list[object], current: list[object]) -> None:
    result = ChiSquareDrift().fit(reference).predict(current)
    categories = list(dict.fromkeys(reference + current))
    table = np.array([[reference.count(c) for c in categories], [current.count(c) for c in categories]])
    expected = stats.chi2_contingency(table, correction=False)
    assert result.statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-15)
    assert result.detail["dof"] == expected.dof


def test_chi2_single_category_is_no_drift() -> None:
    result = ChiSquareDrift().fit(["a"] * 10).predict(["a"] * 5)
    assert (result.statistic, result.p_value, result.is_drift) == (0.0, 1.0, False)


def test_chi2_detects_shift_and_not_same_distribution() -> None:
    rng = np.random.default_rng(2)
    categories = ["red", "green", "blue", "black"]
    reference = pd.Series(rng.choice(categories, 5_000, p=[0.4, 0.3, 0.2, 0.1]), name="colour")
    detector = ChiSquareDrift().fit(reference)
    assert not detector.predict(rng.choice(categories, 2_000, p=[0.4, 0.3, 0.2, 0.1])).is_drift
    drifted = detector.predict(rng.choice(categories, 2_000, p=[0.25, 0.25, 0.25, 0.25]))
    assert drifted.is_drift
    assert drifted.feature == "colour"


def test_chi2_accepts_category_dtype_and_drops_missing() -> None:
    reference = pd.Series(pd.Categorical(["a", "b", None, "b"], categories=["a", "b", "z"]))
    plain = ChiSquareDrift().fit(["a", "b", "b"]).predict(["a", "a", "b"])
    assert ChiSquareDrift().fit(reference).predict(pd.Series(["a", "a", None, "b"])) == plain


@pytest.mark.parametrize(("reference", "current"), [c[1:] for c in CHI2_CASES], ids=[c[0] for c in CHI2_CASES])
def test_jensenshannon_matches_scipy_over_the_union_of_categories(
    reference: list[object], current: list[object]
) -> None:
    result = CategoricalJensenShannonDrift().fit(reference).predict(current)
    categories = list(dict.fromkeys(reference + current))
    ref = np.array([reference.count(c) for c in categories], dtype=float)
    cur = np.array([current.count(c) for c in categories], dtype=float)
    assert result.statistic == pytest.approx(spatial.distance.jensenshannon(ref, cur), rel=1e-12)
    assert result.test == "jensenshannon" and result.p_value is None
    assert result.detail["n_categories"] == len(categories)


def test_jensenshannon_verdict_threshold_and_evidently_shares() -> None:
    reference = ["a"] * 70 + ["b"] * 30
    detector = CategoricalJensenShannonDrift(threshold=0.1).fit(reference)
    same = detector.predict(["a"] * 7 + ["b"] * 3)
    assert same.statistic == pytest.approx(0.0, abs=1e-12) and not same.is_drift
    shifted = detector.predict(["a"] * 50 + ["b"] * 40 + ["new"] * 10)
    # Evidently's categorical "jensenshannon": shares over the union of categories, scipy's distance (natural log)
    expected = spatial.distance.jensenshannon([0.7, 0.3, 0.0], [0.5, 0.4, 0.1])
    assert shifted.statistic == pytest.approx(expected, rel=1e-12)
    assert shifted.is_drift and shifted.detail["n_unseen_categories"] == 1
    assert 0.0 <= shifted.statistic <= np.sqrt(np.log(2))


def test_jensenshannon_by_name_in_table_drift() -> None:
    reference = pd.DataFrame({"c": ["a", "b"] * 50})
    result = TableDrift(categorical_test="jensenshannon").fit(reference).predict(pd.DataFrame({"c": ["a"] * 10}))
    assert result["c"].test == "jensenshannon" and result["c"].is_drift


def test_categorical_psi_matches_hand_computed_value() -> None:
    reference = ["a"] * 50 + ["b"] * 50
    current = ["a"] * 30 + ["b"] * 50 + ["new"] * 20
    result = CategoricalPSIDrift(eps=1e-4).fit(reference).predict(current)
    ref = np.array([0.5, 0.5, 1e-4])  # the unseen bucket is empty in the reference
    cur = np.array([0.3, 0.5, 0.2])
    assert result.statistic == pytest.approx(float(np.sum((cur - ref) * np.log(cur / ref))), rel=1e-12)
    assert result.detail["unseen_share"] == pytest.approx(0.2)
    assert result.is_drift


def test_unseen_category_rate() -> None:
    detector = UnseenCategoryDrift(threshold=0.1).fit(["a", "b", "c"])
    result = detector.predict(["a", "x", "x", "y", "b", "c", "a", "a", "b", "c"])
    assert result.statistic == pytest.approx(0.3)
    assert result.is_drift
    assert result.detail["examples"] == ["x", "y"]
    assert not detector.predict(["a", "b", "c", "a", "b", "c", "a", "b", "c", "x"]).is_drift  # 0.1 is not above


@pytest.mark.parametrize(
    "cls",
    [ChiSquareDrift, CategoricalJensenShannonDrift, CategoricalPSIDrift, UnseenCategoryDrift],
    ids=lambda c: c.__name__,
)
def test_errors(cls: type[ChiSquareDrift]) -> None:
    with pytest.raises(InvalidArgument, match="not fitted"):
        cls().predict(["a"])
    detector = cls().fit(["a", "b"])
    with pytest.raises(InvalidArgument, match="empty"):
        detector.predict([])
    with pytest.raises(InvalidArgument, match="empty"):
        detector.predict(pd.Series([None, None], dtype=object))
    with pytest.raises(InvalidArgument, match="DataFrame"):
        detector.predict(pd.DataFrame({"x": ["a"]}))
