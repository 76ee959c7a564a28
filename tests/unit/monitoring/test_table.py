"""TableDrift: column typing, per-feature tests, corrections, dataset verdict, prediction drift and errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mlpilot.errors import InvalidArgument
from mlpilot.monitoring import (
    ChiSquareDrift,
    KSDrift,
    PSIDrift,
    TableDrift,
    WassersteinDrift,
    adjust_p_values,
    prediction_drift,
)


def make_frame(rng: np.random.Generator, n: int, *, shift: float = 0.0, drifted: tuple[str, ...] = ()) -> pd.DataFrame:
    """Four numeric columns, two categorical ones and a timestamp; ``drifted`` columns move by ``shift``."""
    frame = pd.DataFrame(
        {
            "age": rng.normal(40, 10, n) + (10 * shift if "age" in drifted else 0),
            "income": rng.lognormal(10, 1, n) * (1 + shift if "income" in drifted else 1),
            "score": rng.uniform(0, 1, n) + (shift if "score" in drifted else 0),
            "visits": rng.poisson(3, n),
            "city": rng.choice(["paris", "rome", "oslo"], n, p=[0.5, 0.3, 0.2] if "city" not in drifted else None),
            "plan": pd.Categorical(rng.choice(["free", "pro"], n)),
            "ts": pd.date_range("2026-01-01", periods=n, freq="s"),
        }
    )
    return frame


@pytest.fixture
def reference() -> pd.DataFrame:
    return make_frame(np.random.default_rng(0), 4_000)


def test_columns_are_typed_from_dtypes(reference: pd.DataFrame) -> None:
    detector = TableDrift().fit(reference)
    assert detector.numeric_columns_ == ["age", "income", "score", "visits"]
    assert detector.categorical_columns_ == ["city", "plan"]
    assert detector.ignored_columns_ == ["ts"]
    assert list(detector.detectors_) == ["age", "income", "score", "visits", "city", "plan"]


def test_explicit_column_lists_override_inference(reference: pd.DataFrame) -> None:
    detector = TableDrift(numeric_columns=["age"], categorical_columns=["visits"]).fit(reference)
    assert detector.numeric_columns_ == ["age"]
    assert detector.categorical_columns_ == ["visits"]
    assert isinstance(detector.detectors_["visits"], ChiSquareDrift)


def test_same_distribution_does_not_drift(reference: pd.DataFrame) -> None:
    result = TableDrift().fit(reference).predict(make_frame(np.random.default_rng(1), 2_000))
    assert not result.is_drift
    assert result.drifted_features == ()
    assert result.test == "ks+chi2"


def test_shifted_features_drift_and_dataset_verdict(reference: pd.DataFrame) -> None:
    current = make_frame(np.random.default_rng(2), 2_000, shift=0.3, drifted=("age", "income", "score", "city"))
    result = TableDrift(drift_share=0.5).fit(reference).predict(current)
    assert set(result.drifted_features) == {"age", "income", "score", "city"}
    assert result.share_drifted == pytest.approx(4 / 6)
    assert result.is_drift
    assert not TableDrift(drift_share=0.9).fit(reference).predict(current).is_drift


def test_holm_correction_is_applied_to_raw_p_values(reference: pd.DataFrame) -> None:
    current = make_frame(np.random.default_rng(3), 500, shift=0.05, drifted=("age", "score"))
    raw = TableDrift(correction="none").fit(reference).predict(current)
    holm = TableDrift(correction="holm").fit(reference).predict(current)
    raw_p = [f.p_value for f in raw.features]
    assert [f.detail["raw_p_value"] for f in holm.features] == raw_p
    np.testing.assert_allclose([f.p_value for f in holm.features], adjust_p_values(raw_p, "holm"), rtol=1e-12)
    assert all(f.is_drift == (f.p_value < 0.05) for f in holm.features)
    assert holm.correction == "holm"


def test_per_feature_p_values_equal_scipy(reference: pd.DataFrame) -> None:
    current = make_frame(np.random.default_rng(4), 1_500)
    result = TableDrift(correction="none").fit(reference).predict(current)
    for column in ["age", "income", "score", "visits"]:
        expected = stats.ks_2samp(reference[column], current[column])
        assert result[column].p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-12)


def test_distance_tests_keep_their_threshold_and_skip_correction(reference: pd.DataFrame) -> None:
    current = make_frame(np.random.default_rng(5), 2_000, shift=0.3, drifted=("age",))
    detector = TableDrift(numeric_test=PSIDrift(threshold=0.05), categorical_test="psi").fit(reference)
    result = detector.predict(current)
    assert {f.test for f in result.features} == {"psi"}
    assert all(f.p_value is None for f in result.features)
    assert result["age"].threshold == 0.05
    assert result["city"].threshold == 0.1
    assert result.drifted_features == ("age",)


def test_score_returns_statistic_per_column(reference: pd.DataFrame) -> None:
    detector = TableDrift(numeric_test="wasserstein", categorical_test="unseen").fit(reference)
    current = make_frame(np.random.default_rng(6), 1_000)
    scores = detector.score(current)
    assert list(scores) == ["age", "income", "score", "visits", "city", "plan"]
    assert scores["age"] == pytest.approx(WassersteinDrift().fit(reference["age"]).score(current["age"]))
    assert scores["city"] == 0.0


def test_result_frame_and_json(reference: pd.DataFrame) -> None:
    result = TableDrift().fit(reference).predict(make_frame(np.random.default_rng(7), 1_000))
    frame = result.to_frame()
    assert list(frame.columns) == ["feature", "test", "statistic", "p_value", "threshold", "is_drift"]
    assert list(frame["feature"]) == ["age", "income", "score", "visits", "city", "plan"]
    payload = json.loads(json.dumps(result.to_dict()))
    assert payload["features"][0]["feature"] == "age"
    assert payload["detail"]["ignored_columns"] == ["ts"]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        pytest.param(lambda f: f.drop(columns=["age"]), r"lacks column\(s\) \['age'\]", id="missing-feature"),
        pytest.param(lambda f: f.iloc[:0], "empty", id="empty-window"),
        pytest.param(lambda f: f.assign(age="old"), "not numeric", id="text-in-numeric-column"),
        pytest.param(lambda f: f.assign(age=np.nan), "empty", id="all-null-column"),
        pytest.param(lambda f: f["age"], "DataFrame", id="series-not-frame"),
    ],
)
def test_bad_current_window(reference: pd.DataFrame, mutate: object, message: str) -> None:
    detector = TableDrift().fit(reference)
    with pytest.raises(InvalidArgument, match=message):
        detector.predict(mutate(make_frame(np.random.default_rng(8), 100)))  # type: ignore[operator]


def test_predict_before_fit() -> None:
    with pytest.raises(InvalidArgument, match="TableDrift is not fitted"):
        TableDrift().predict(pd.DataFrame({"a": [1.0]}))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        pytest.param({"numeric_test": "t-test"}, "numeric_test", id="unknown-numeric-test"),
        pytest.param({"numeric_test": ChiSquareDrift()}, "numeric drift detector", id="categorical-as-numeric"),
        pytest.param({"categorical_test": KSDrift()}, "categorical drift detector", id="numeric-as-categorical"),
        pytest.param({"correction": "sidak"}, "correction", id="unknown-correction"),
        pytest.param({"drift_share": 0}, "drift_share", id="zero-share"),
        pytest.param({"numeric_columns": ["nope"]}, r"lacks column\(s\) \['nope'\]", id="unknown-column"),
        pytest.param({"numeric_columns": ["age"], "categorical_columns": ["age"]}, "both", id="overlap"),
        pytest.param({"numeric_columns": ["city"]}, "not numeric", id="text-listed-numeric"),
    ],
)
def test_bad_configuration(reference: pd.DataFrame, params: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        TableDrift(**params).fit(reference)  # type: ignore[arg-type]


def test_no_testable_column() -> None:
    with pytest.raises(InvalidArgument, match="no numeric or categorical column"):
        TableDrift().fit(pd.DataFrame({"ts": pd.date_range("2026-01-01", periods=3)}))


def test_prediction_drift_on_probabilities_and_labels() -> None:
    rng = np.random.default_rng(9)
    ref_scores, cur_scores = rng.beta(2, 5, 3_000), rng.beta(2, 3, 1_000)
    result = prediction_drift(ref_scores, cur_scores)
    assert result.features[0].feature == "prediction"
    assert result.features[0].test == "ks"
    assert result.is_drift
    labels = prediction_drift(rng.choice([0, 1], 3_000, p=[0.7, 0.3]), rng.choice([0, 1], 1_000, p=[0.7, 0.3]))
    assert labels.features[0].test == "chi2"
    assert not labels.is_drift
    proba = rng.dirichlet([2, 2, 2], 2_000)
    multi = prediction_drift(proba[:1_000], proba[1_000:])
    assert [f.feature for f in multi.features] == ["prediction_0", "prediction_1", "prediction_2"]
    assert not multi.is_drift


def test_prediction_drift_bad_kind() -> None:
    with pytest.raises(InvalidArgument, match="kind"):
        prediction_drift([1.0], [1.0], kind="text")  # type: ignore[arg-type]
