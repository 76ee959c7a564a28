"""SliceLine-style slice finding: planted slices, agreement with brute force, binning, edge cases."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from mlpilot.errors import InvalidArgument
from mlpilot.incidents.slices import Slice, find_slices, slice_values


def planted(n: int = 20_000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "country": rng.choice(["US", "BR", "DE", "IN"], n),
            "variant": rng.choice(["stable", "canary"], n),
            "device": rng.choice(["ios", "android", "web"], n),
            "latency_ms": rng.exponential(100.0, n),
        }
    )
    hot = (frame["country"] == "BR") & (frame["variant"] == "canary")
    errors = (rng.random(n) < np.where(hot, 0.6, 0.02)).astype(float)
    return frame, errors


def brute_force(
    frame: pd.DataFrame, errors: np.ndarray, columns: list[str], k: int, alpha: float, min_support: int, bins: int
) -> list[tuple[float, tuple[tuple[str, str], ...], int]]:
    """Every 1- and 2-predicate slice, scored directly from its row mask."""
    labels = slice_values(frame, columns, bins=bins)
    n, mean_all = len(frame), float(errors.sum()) / len(frame)
    found = []
    for level in (1, 2):
        for combo in itertools.combinations(sorted(columns), level):
            for values in itertools.product(*(sorted(set(labels[c])) for c in combo)):
                mask = np.ones(n, dtype=bool)
                for column, value in zip(combo, values, strict=True):
                    mask &= labels[column] == value
                size = int(mask.sum())
                if size < min_support:
                    continue
                esum = float(errors[mask].sum())
                score = alpha * ((esum / size) / mean_all - 1) - (1 - alpha) * (n / size - 1)
                if score > 0:
                    found.append((score, tuple(zip(combo, values, strict=True)), size))
    found.sort(key=lambda f: (-f[0], len(f[1]), f[1]))
    return found[:k]


def test_planted_slice_is_the_top_slice() -> None:
    frame, errors = planted()
    top = find_slices(frame, errors, ["country", "variant", "device", "latency_ms"])
    assert top[0].predicates == (("country", "BR"), ("variant", "canary"))
    assert top[0].describe() == "country=BR & variant=canary"
    hot = (frame["country"] == "BR") & (frame["variant"] == "canary")
    assert top[0].size == int(hot.sum())
    assert top[0].error_mean == pytest.approx(errors[hot].mean())
    assert top[0].error_share == pytest.approx(errors[hot].sum() / errors.sum())
    assert [s.score for s in top] == sorted((s.score for s in top), reverse=True)
    assert all(s.score > 0 for s in top)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("kind", ["indicator", "loss"])
def test_matches_brute_force(seed: int, kind: str) -> None:
    rng = np.random.default_rng(seed)
    n = 400
    frame = pd.DataFrame(
        {
            "a": rng.choice(["x", "y", "z"], n, p=[0.5, 0.3, 0.2]),
            "b": rng.choice(["p", "q"], n),
            "c": rng.integers(0, 4, n),
            "d": rng.normal(0.0, 1.0, n),
            "e": rng.choice([True, False], n),
        }
    )
    frame.loc[rng.random(n) < 0.1, "d"] = np.nan
    rate = 0.05 + 0.3 * (frame["a"] == "z") + 0.2 * ((frame["b"] == "q") & (frame["c"] >= 2)) + 0.05 * frame["e"]
    noise = rng.random(n) < rate if kind == "indicator" else rng.exponential(1.0, n) * rate.to_numpy()
    errors = np.asarray(noise, dtype=float)
    columns = ["a", "b", "c", "d", "e"]
    for k, min_support, alpha in [(10, 8, 0.95), (25, 3, 0.9), (3, 20, 0.5)]:
        got = find_slices(frame, errors, columns, k=k, min_support=min_support, alpha=alpha, bins=3)
        want = brute_force(frame, errors, columns, k=k, alpha=alpha, min_support=min_support, bins=3)
        assert [s.predicates for s in got] == [w[1] for w in want]
        assert [s.size for s in got] == [w[2] for w in want]
        for s, (score, _, _) in zip(got, want, strict=True):
            assert s.score == pytest.approx(score, abs=1e-9)


@pytest.mark.parametrize("min_support", [1, 2, 4])
def test_high_cardinality_columns_match_brute_force(min_support: int) -> None:
    rng = np.random.default_rng(min_support)
    n = 120
    frame = pd.DataFrame(
        {"g": rng.integers(0, 8, n).astype(str), "id": np.arange(n).astype(str), "h": rng.choice(["p", "q"], n)}
    )
    errors = rng.exponential(1.0, n) * (1 + 2 * (frame["g"] == "3"))
    got = find_slices(frame, errors, ["g", "id", "h"], k=15, min_support=min_support)
    want = brute_force(frame, errors, ["g", "id", "h"], k=15, alpha=0.95, min_support=min_support, bins=4)
    assert [s.predicates for s in got] == [w[1] for w in want]


def test_deeper_levels_find_a_three_way_slice() -> None:
    rng = np.random.default_rng(7)
    n = 8_000
    frame = pd.DataFrame({c: rng.choice(["u", "v"], n) for c in "abcd"})
    hot = (frame["a"] == "u") & (frame["b"] == "v") & (frame["c"] == "u")
    errors = (rng.random(n) < np.where(hot, 0.9, 0.05)).astype(float)
    top = find_slices(frame, errors, list("abcd"), max_level=3, k=3)
    assert top[0].predicates == (("a", "u"), ("b", "v"), ("c", "u"))
    assert all(len(s.predicates) <= 2 for s in find_slices(frame, errors, list("abcd"), max_level=2, k=10))


def test_numeric_binning_labels_and_null() -> None:
    frame = pd.DataFrame(
        {
            "x": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, np.nan],
            "const": [5] * 9,
            "mostly_zero": [0, 0, 0, 0, 0, 0, 0, 3, 9],
            "s": ["a", "b", None, "a", "b", "a", "a", "b", "a"],
            "flag": [True, False] * 4 + [True],
        }
    )
    labels = slice_values(frame, ["x", "const", "mostly_zero", "s", "flag"], bins=4)
    assert list(labels["x"]) == ["[1, 3)", "[1, 3)", "[3, 5)", "[3, 5)", "[5, 7)", "[5, 7)", "[7, 8]", "[7, 8]", "null"]
    assert set(labels["const"]) == {"[5, 5]"}
    # heavy ties keep a bin of their own instead of swallowing the tail
    assert list(labels["mostly_zero"]) == ["[0, 3)"] * 7 + ["[3, 9)", "[9, 9]"]
    assert list(labels["s"]) == ["a", "b", "null", "a", "b", "a", "a", "b", "a"]
    assert set(labels["flag"]) == {"True", "False"}
    assert len(set(slice_values(frame, ["x"], bins=2)["x"]) - {"null"}) == 2
    wide = pd.DataFrame({"v": np.arange(1000, dtype=float)})
    assert sorted(set(slice_values(wide, ["v"], bins=4)["v"])) == [
        "[0, 250)",
        "[250, 500)",
        "[500, 750)",
        "[750, 999]",
    ]


def test_null_slices_can_be_found() -> None:
    rng = np.random.default_rng(3)
    n = 5_000
    frame = pd.DataFrame({"region": rng.choice(["eu", "us", None], n), "load": rng.random(n)})
    errors = (rng.random(n) < np.where(frame["region"].isna(), 0.5, 0.02)).astype(float)
    top = find_slices(frame, errors, ["region", "load"])
    assert top[0].predicates == (("region", "null"),)


def test_no_errors_or_no_rows_give_nothing() -> None:
    frame, _ = planted(n=500)
    assert find_slices(frame, np.zeros(len(frame)), ["country", "variant"]) == []
    assert find_slices(frame.iloc[:0], [], ["country", "variant"]) == []
    assert slice_values(frame.iloc[:0], ["country", "latency_ms"])["latency_ms"].tolist() == []


def test_invalid_arguments() -> None:
    frame, errors = planted(n=500)
    bad = errors.copy()
    bad[3] = np.nan
    with pytest.raises(InvalidArgument, match="NaN"):
        find_slices(frame, bad, ["country"])
    with pytest.raises(InvalidArgument, match="one number per row"):
        find_slices(frame, errors[:-1], ["country"])
    with pytest.raises(InvalidArgument, match="'planet'"):
        find_slices(frame, errors, ["country", "planet"])
    with pytest.raises(InvalidArgument, match="'planet'"):
        slice_values(frame, ["planet"])
    with pytest.raises(InvalidArgument, match="non-negative"):
        find_slices(frame, -errors, ["country"])


def test_k_and_min_support_are_respected() -> None:
    frame, errors = planted(n=10_000)
    columns = ["country", "variant", "device", "latency_ms"]
    assert len(find_slices(frame, errors, columns, k=1)) == 1
    many = find_slices(frame, errors, columns, k=8)
    assert len(many) == 8
    assert find_slices(frame, errors, columns, k=3) == many[:3]
    # a tiny, very bad slice: found when allowed, dropped below min_support
    tiny = np.flatnonzero((frame["device"] == "web") & (frame["country"] == "US"))[:60]
    frame.loc[tiny, "device"] = "fridge"
    errors[tiny] = 1.0
    small = find_slices(frame, errors, columns, k=50, min_support=20)
    assert ("device", "fridge") in [p for s in small for p in s.predicates]
    assert min(s.size for s in small) >= 20
    for big in (
        find_slices(frame, errors, columns, k=50, min_support=1_500),
        find_slices(frame, errors, columns, k=50),
    ):
        assert big and all(("device", "fridge") not in s.predicates for s in big)
    assert min(s.size for s in big) >= 100  # the default: 1% of 10,000 rows
    assert min(s.size for s in find_slices(frame, errors, columns, k=50, min_support=1_500)) >= 1_500


def test_slice_is_frozen() -> None:
    s = Slice((("a", "x"),), 10, 0.5, 0.2, 1.0)
    with pytest.raises(AttributeError):
        s.size = 3  # type: ignore[misc]
    assert math.isclose(s.error_mean, 0.5)
