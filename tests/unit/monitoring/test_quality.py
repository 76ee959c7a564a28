"""Data-quality checks: schema, nulls, ranges, freshness (time always passed in)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from mlpilot.errors import InvalidArgument
from mlpilot.monitoring import DataQuality

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def reference() -> pd.DataFrame:
    n = 100
    return pd.DataFrame(
        {
            "age": np.linspace(20.0, 70.0, n),  # range [20, 70], width 50
            "city": ["paris", "rome"] * (n // 2),
            "income": np.where(np.arange(n) % 10 == 0, np.nan, 1000.0),  # 10% null, constant otherwise
            "ts": pd.date_range("2026-03-01", periods=n, freq="min"),
        }
    )


def checks(result: object) -> list[tuple[str, str | None]]:
    return [(i.check, i.column) for i in result.issues]  # type: ignore[attr-defined]


def test_clean_window_passes(reference: pd.DataFrame) -> None:
    result = DataQuality().fit(reference).predict(reference.iloc[:50])
    assert result.passed
    assert result.issues == ()
    assert result.n_checks == 4 * 3 + 2  # presence, dtype, nulls per column + range for 2 numeric columns
    assert result.null_rates["income"] == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        pytest.param(lambda f: f.drop(columns=["city"]), [("missing_column", "city")], id="missing-column"),
        pytest.param(lambda f: f.assign(extra=1), [("extra_column", "extra")], id="extra-column"),
        pytest.param(lambda f: f.assign(city=1), [("dtype", "city")], id="dtype-change"),
        pytest.param(
            lambda f: f.assign(age=np.where(np.arange(len(f)) < 10, np.nan, f["age"])),
            [("null_rate", "age")],
            id="null-rate-above-tolerance",
        ),
        pytest.param(lambda f: f.assign(age=f["age"] + 40), [("range", "age")], id="range-above-widened-max"),
        pytest.param(lambda f: f.assign(income=1150.0), [("range", "income")], id="constant-column-range"),
    ],
)
def test_each_check(reference: pd.DataFrame, mutate: object, expected: list[tuple[str, str]]) -> None:
    current = mutate(reference.iloc[:50].copy())  # type: ignore[operator]
    assert checks(DataQuality().fit(reference).predict(current)) == expected


def test_tolerances(reference: pd.DataFrame) -> None:
    current = reference.iloc[:50].assign(age=lambda f: f["age"] + 4.9)  # max 69.7 + 4.9 < 70 + 0.1 * 50
    assert DataQuality().fit(reference).predict(current).passed
    violation = DataQuality(range_tolerance=0.0).fit(reference).predict(current)
    assert violation.range_violation_rates["age"] == pytest.approx(np.mean(current["age"] > 70))
    few_nulls = reference.iloc[:50].assign(age=np.where(np.arange(50) < 2, np.nan, 30.0))
    assert DataQuality(null_tolerance=0.05).fit(reference).predict(few_nulls).passed  # 4% <= 0% + 5%
    assert not DataQuality(null_tolerance=0.01).fit(reference).predict(few_nulls).passed


def test_freshness_uses_the_given_now(reference: pd.DataFrame) -> None:
    detector = DataQuality(timestamp_column="ts", max_age=timedelta(hours=1)).fit(reference)
    newest = reference["ts"].max().to_pydatetime().replace(tzinfo=timezone.utc)
    fresh = detector.predict(reference, now=newest + timedelta(minutes=30))
    assert fresh.passed
    assert fresh.max_age_seconds == pytest.approx(1800)
    stale = detector.predict(reference, now=newest + timedelta(hours=2))
    assert checks(stale) == [("freshness", "ts")]
    assert stale.issues[0].observed == pytest.approx(7200)
    naive_now = detector.predict(reference, now=(newest + timedelta(hours=2)).replace(tzinfo=None))
    assert naive_now == stale
    assert detector.score(reference, now=newest + timedelta(hours=2)) == pytest.approx(1 / stale.n_checks)


def test_freshness_requires_now(reference: pd.DataFrame) -> None:
    detector = DataQuality(timestamp_column="ts", max_age=timedelta(hours=1)).fit(reference)
    with pytest.raises(InvalidArgument, match="now="):
        detector.predict(reference)


def test_result_serialises(reference: pd.DataFrame) -> None:
    result = DataQuality().fit(reference).predict(reference.drop(columns=["city"]).assign(age=1e6))
    payload = json.loads(json.dumps(result.to_dict()))
    assert [i["check"] for i in payload["issues"]] == ["range", "missing_column"]  # in reference column order
    assert list(result.to_frame()["check"]) == ["range", "missing_column"]


@pytest.mark.parametrize(
    ("detector", "frame", "message"),
    [
        pytest.param(DataQuality(max_age=timedelta(1)), None, "timestamp_column", id="max-age-without-column"),
        pytest.param(DataQuality(timestamp_column="city"), None, "not a datetime", id="text-timestamp"),
        pytest.param(DataQuality(timestamp_column="nope"), None, "lacks column", id="unknown-timestamp"),
        pytest.param(DataQuality(null_tolerance=2), None, "null_tolerance", id="bad-tolerance"),
        pytest.param(DataQuality(), pd.DataFrame(), "empty", id="empty-reference"),
    ],
)
def test_bad_configuration(
    reference: pd.DataFrame, detector: DataQuality, frame: pd.DataFrame | None, message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        detector.fit(reference if frame is None else frame)


def test_errors_on_predict(reference: pd.DataFrame) -> None:
    with pytest.raises(InvalidArgument, match="not fitted"):
        DataQuality().predict(reference)
    with pytest.raises(InvalidArgument, match="empty"):
        DataQuality().fit(reference).predict(reference.iloc[:0])
