"""Properties of the drift detectors (``mlpilot.monitoring``, what the ``drift`` monitors of ``mlpilot.monitors``
run): statistics are non-negative and within their ranges, p-values are probabilities, a sample compared with
itself shows no drift, row order never matters, and missing values follow the documented rule — NaN (and ±inf for
numeric tests) are dropped before testing, and a window with nothing left is an ``InvalidArgument`` that says so."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlpilot.errors import InvalidArgument
from mlpilot.monitoring import (
    CategoricalJensenShannonDrift,
    CategoricalPSIDrift,
    ChiSquareDrift,
    JensenShannonDrift,
    KSDrift,
    PSIDrift,
    TableDrift,
    UnseenCategoryDrift,
    WassersteinDrift,
)
from mlpilot.monitoring.base import UnivariateDrift

SETTINGS = settings(deadline=None, derandomize=True, max_examples=60)
NUMERIC = [KSDrift, WassersteinDrift, PSIDrift, JensenShannonDrift]
CATEGORICAL = [ChiSquareDrift, CategoricalJensenShannonDrift, CategoricalPSIDrift, UnseenCategoryDrift]
#: the largest value each statistic can take (the Jensen-Shannon distance in nats: sqrt(ln 2))
UPPER = {"ks": 1.0, "jensenshannon": math.sqrt(math.log(2)) + 1e-12, "unseen": 1.0}

REALS = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
SAMPLES = st.lists(REALS, min_size=1, max_size=120)
CATEGORIES = st.lists(st.sampled_from(["x", "y", "z", 1, 2.5, True]), min_size=1, max_size=120)
MISSING = st.lists(st.sampled_from([np.nan, np.inf, -np.inf]), min_size=1, max_size=10)


def _check_result(detector: UnivariateDrift, current: Any) -> tuple[float, float | None]:
    result = detector.predict(current)
    assert result.statistic >= 0.0 and math.isfinite(result.statistic), result
    assert result.statistic <= UPPER.get(detector.test, math.inf), result
    if result.p_value is not None:
        assert 0.0 <= result.p_value <= 1.0, result
    assert result.is_drift == (
        result.p_value < result.threshold if result.p_value is not None else result.statistic > result.threshold
    )
    return result.statistic, result.p_value


@pytest.mark.parametrize("cls", NUMERIC, ids=lambda c: c.__name__)
@SETTINGS
@given(reference=SAMPLES, current=SAMPLES, seed=st.integers(0, 2**32 - 1))
def test_numeric_statistics_are_in_range_and_order_free(
    cls: type[UnivariateDrift], reference: list[float], current: list[float], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    stat, p = _check_result(cls().fit(reference), current)
    shuffled = cls().fit(rng.permutation(reference))
    assert shuffled.score(rng.permutation(current)) == pytest.approx(stat, rel=1e-9, abs=1e-12)
    if p is not None:
        assert shuffled.predict(rng.permutation(current)).p_value == pytest.approx(p, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("cls", NUMERIC, ids=lambda c: c.__name__)
@SETTINGS
@given(sample=SAMPLES)
def test_a_numeric_sample_shows_no_drift_against_itself(cls: type[UnivariateDrift], sample: list[float]) -> None:
    result = cls().fit(sample).predict(sample)
    assert result.statistic == pytest.approx(0.0, abs=1e-12) and not result.is_drift
    if result.p_value is not None:
        assert result.p_value == pytest.approx(1.0)


@pytest.mark.parametrize("cls", NUMERIC, ids=lambda c: c.__name__)
@SETTINGS
@given(reference=SAMPLES, current=SAMPLES, missing=MISSING, seed=st.integers(0, 2**32 - 1))
def test_numeric_tests_drop_nan_and_inf(
    cls: type[UnivariateDrift], reference: list[float], current: list[float], missing: list[float], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    clean = cls().fit(reference)
    dirty = cls().fit(rng.permutation(np.array(reference + missing)))
    with_missing = rng.permutation(np.array(current + missing))
    assert dirty.score(with_missing) == pytest.approx(clean.score(current), rel=1e-9, abs=1e-12)
    with pytest.raises(InvalidArgument, match="no finite values"):
        clean.score(np.array(missing))
    with pytest.raises(InvalidArgument, match="no finite values"):
        cls().fit(np.array(missing))


@pytest.mark.parametrize("cls", CATEGORICAL, ids=lambda c: c.__name__)
@SETTINGS
@given(reference=CATEGORIES, current=CATEGORIES, seed=st.integers(0, 2**32 - 1))
def test_categorical_statistics_are_in_range_and_order_free(
    cls: type[UnivariateDrift], reference: list[Any], current: list[Any], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    ref, cur = pd.Series(reference, dtype=object), pd.Series(current, dtype=object)
    stat, p = _check_result(cls().fit(ref), cur)
    shuffled = cls().fit(ref.sample(frac=1.0, random_state=rng.integers(2**31)))
    again = shuffled.predict(cur.sample(frac=1.0, random_state=rng.integers(2**31)))
    assert again.statistic == pytest.approx(stat, rel=1e-9, abs=1e-12)
    if p is not None:
        assert again.p_value == pytest.approx(p, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("cls", CATEGORICAL, ids=lambda c: c.__name__)
@SETTINGS
@given(sample=CATEGORIES, nulls=st.integers(1, 5))
def test_a_categorical_sample_shows_no_drift_against_itself_and_nulls_are_dropped(
    cls: type[UnivariateDrift], sample: list[Any], nulls: int
) -> None:
    series = pd.Series(sample, dtype=object)
    detector = cls().fit(series)
    result = detector.predict(pd.concat([series, pd.Series([None] * nulls, dtype=object)]))
    assert result.statistic == pytest.approx(0.0, abs=1e-12) and not result.is_drift
    with pytest.raises(InvalidArgument, match="no non-missing values"):
        detector.predict(pd.Series([None] * nulls, dtype=object))


@settings(deadline=None, derandomize=True, max_examples=30)
@given(
    rows=st.lists(st.tuples(REALS, st.sampled_from(["red", "green", "blue"]), st.integers(-5, 5)), min_size=2),
    seed=st.integers(0, 2**32 - 1),
)
def test_a_table_against_itself_or_shuffled_shows_no_drift(rows: list[tuple[float, str, int]], seed: int) -> None:
    frame = pd.DataFrame(rows, columns=["x", "colour", "k"])
    report = TableDrift().fit(frame)
    same = report.predict(frame)
    shuffled = report.predict(frame.sample(frac=1.0, random_state=seed % 2**31))
    for result in (same, shuffled):
        assert not result.is_drift and result.share_drifted == 0.0
        assert [f.feature for f in result.features] == ["x", "colour", "k"]
        assert all(f.statistic == pytest.approx(0.0, abs=1e-12) for f in result.features)
