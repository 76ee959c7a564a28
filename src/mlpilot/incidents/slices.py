"""Where do errors concentrate? A SliceLine-style slice finder (Sagadeeva & Boehm, SIGMOD 2021), numpy only.

A *slice* is a conjunction of predicates ``column=value`` over different columns (``country=BR & variant=canary``);
numeric columns take part through quantile bins (``latency_ms=[120, 250)``). Given a non-negative error per row
(a 0/1 misprediction indicator, a loss, a latency, a 5xx flag …) a slice ``S`` of ``|S|`` rows out of ``n`` scores

    score(S) = alpha * (mean_err(S) / mean_err(all) - 1) - (1 - alpha) * (n / |S| - 1)

The first term rewards slices whose errors are well above average; the second penalises small slices, so a score
above zero means "clearly worse than average *and* big enough to matter" (``alpha`` trades the two off).
:func:`find_slices` returns the top-k slices with a positive score: in root-cause analysis they say where errors or
latency concentrate (one country, one canary variant, one device class) before anyone opens a dashboard.

Enumeration is level-wise: level 1 is every single predicate, level ``L + 1`` extends a level-``L`` slice with a
predicate on a later column. Slices below ``min_support`` rows are dropped and never extended (a sub-slice is never
bigger), and, as in SliceLine, a slice is not extended when an upper bound on the score of any of its sub-slices
(from its size, error sum and largest error) cannot reach the current k-th best score. Each level costs one
``np.bincount`` over integer-coded rows per column combination.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlpilot.errors import InvalidArgument

__all__ = ["Slice", "find_slices", "slice_values"]

NULL = "null"
_Pred = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Slice:
    """One slice of the data: its predicates (sorted by column), size, mean error, error share and score."""

    predicates: tuple[tuple[str, str], ...]
    size: int
    error_mean: float
    error_share: float
    score: float

    def describe(self) -> str:
        """The predicates as one line, e.g. ``country=BR & variant=canary``."""
        return " & ".join(f"{column}={value}" for column, value in self.predicates)


def _fmt(value: float, digits: int) -> str:
    return f"{value:.{digits}g}"


def _encode_numeric(values: np.ndarray, bins: int) -> tuple[np.ndarray, list[str]]:
    """Quantile bins over the distinct values: each cut goes at the distinct value whose cumulative share is
    nearest to ``j / bins``, so heavy ties (a column that is mostly 0) still get a bin of their own."""
    finite = ~np.isnan(values)
    codes = np.full(len(values), -1, dtype=np.int64)
    labels: list[str] = []
    if finite.any():
        distinct, counts = np.unique(values[finite], return_counts=True)
        if len(distinct) <= bins:
            starts = np.arange(len(distinct))
        else:
            share = np.cumsum(counts) / counts.sum()
            targets = np.arange(1, bins) / bins
            above = np.minimum(np.searchsorted(share, targets), len(share) - 1)
            below = np.maximum(above - 1, 0)
            nearest = np.where(np.abs(share[below] - targets) <= np.abs(share[above] - targets), below, above)
            starts = np.unique(np.concatenate(([0], nearest[nearest < len(distinct) - 1] + 1)))
        lows = distinct[starts]
        ends = np.append(lows[1:], distinct[-1])
        for digits in (4, 6, 10, 17):
            labels = [f"[{_fmt(lo, digits)}, {_fmt(hi, digits)})" for lo, hi in zip(lows[:-1], ends[:-1], strict=True)]
            labels.append(f"[{_fmt(lows[-1], digits)}, {_fmt(ends[-1], digits)}]")
            if len(set(labels)) == len(labels):
                break
        codes[finite] = np.searchsorted(lows[1:], values[finite], side="right")
    if not finite.all():
        codes[~finite] = len(labels)
        labels.append(NULL)
    return codes, labels


def _encode(series: pd.Series, bins: int) -> tuple[np.ndarray, list[str]]:
    """Integer codes ``0..m-1`` for every row of a column, and the ``m`` labels they stand for."""
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        return _encode_numeric(series.to_numpy(dtype=np.float64, na_value=np.nan), bins)
    raw, uniques = pd.factorize(series, use_na_sentinel=True)
    names = [str(u) for u in uniques] + [NULL]
    position: dict[str, int] = {}  # distinct values with the same label (1 and "1", "null") are merged
    remap = np.array([position.setdefault(name, len(position)) for name in names], dtype=np.int64)
    codes = remap[np.where(raw < 0, len(uniques), raw)]
    labels = list(position)
    if not (codes == position[NULL]).any():
        labels.remove(NULL)  # only the sentinel had it and no row is null: it is the last label, used by no code
    return codes, labels


def _check_columns(frame: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    if isinstance(columns, str):
        columns = [columns]
    for column in columns:
        if column not in frame.columns:
            raise InvalidArgument(f"unknown column {column!r}; the frame has {[str(c) for c in frame.columns]}")
    return list(dict.fromkeys(columns))


def slice_values(frame: pd.DataFrame, columns: Sequence[str], bins: int = 4) -> dict[str, np.ndarray]:
    """The label of every row for each column: categorical, bool and string columns as their ``str`` value,
    numeric columns binned by quantiles of the frame into at most ``bins`` intervals like ``"[1.2, 3.4)"`` (the
    last one closed; a single-valued column gives one label); missing values get the label ``"null"``."""
    if bins < 1:
        raise InvalidArgument(f"bins must be at least 1, got {bins}")
    out: dict[str, np.ndarray] = {}
    for column in _check_columns(frame, columns):
        codes, labels = _encode(frame[column], bins)
        out[column] = np.array(labels, dtype=object)[codes]
    return out


@dataclass
class _Level:
    """The kept slices of one column combination: per slice its column codes, size, error sum and max error,
    and per row the index of the slice it belongs to (-1: in none that may be extended)."""

    cols: tuple[int, ...]
    parts: np.ndarray  # (slices, len(cols)) codes
    size: np.ndarray
    esum: np.ndarray
    emax: np.ndarray
    rows: np.ndarray


def find_slices(
    frame: pd.DataFrame,
    errors: np.ndarray | Sequence[float],
    columns: Sequence[str],
    *,
    k: int = 5,
    max_level: int = 2,
    alpha: float = 0.95,
    min_support: int | None = None,
    bins: int = 4,
) -> list[Slice]:
    """The top-``k`` slices with a positive SliceLine score, best first, of at most ``max_level`` predicates over
    ``columns`` and at least ``min_support`` rows (default ``max(10, ceil(1% of the rows))``). ``errors`` holds
    one non-negative number per row. Empty frames and all-zero errors give ``[]``."""
    cols = _check_columns(frame, columns)
    try:
        err = np.asarray(errors, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"errors must be numbers: {exc}") from exc
    n = len(frame)
    if err.ndim != 1 or len(err) != n:
        raise InvalidArgument(f"errors must hold one number per row: got shape {err.shape} for {n} rows")
    if np.isnan(err).any():
        raise InvalidArgument(f"errors contain NaN ({int(np.isnan(err).sum())} rows); drop or fill them first")
    if np.isinf(err).any() or (err < 0).any():
        raise InvalidArgument("errors must be finite and non-negative (a 0/1 indicator, a loss, a latency)")
    if k < 1 or max_level < 1 or bins < 1 or not 0 < alpha <= 1:
        raise InvalidArgument(f"need k, max_level, bins >= 1 and 0 < alpha <= 1; got {k}, {max_level}, {bins}, {alpha}")
    if min_support is not None and min_support < 1:
        raise InvalidArgument(f"min_support must be at least 1, got {min_support}")
    total = float(err.sum())
    if n == 0 or not cols or total == 0:
        return []
    minsup = max(10, math.ceil(0.01 * n)) if min_support is None else min_support
    mean_all = total / n
    encoded = [_encode(frame[c], bins) for c in cols]

    def score(size: np.ndarray, esum: np.ndarray) -> np.ndarray:
        return np.asarray(alpha * ((esum / size) / mean_all - 1) - (1 - alpha) * (n / size - 1))

    def upper_bound(lv: _Level) -> np.ndarray:
        """SliceLine's bound on the score of any sub-slice: size in [minsup, |S|], error sum <= min(esum, s*emax);
        the score is monotone in s on both sides of esum/emax, so the three points suffice."""
        pivot = np.clip(lv.esum / np.where(lv.emax > 0, lv.emax, 1.0), minsup, np.maximum(lv.size, minsup))
        best = np.full(len(lv.size), -np.inf)
        for s in (np.full(len(lv.size), float(minsup)), pivot, lv.size.astype(np.float64)):
            best = np.maximum(best, score(s, np.minimum(lv.esum, s * lv.emax)))
        return best

    found: list[tuple[float, _Pred, int, float]] = []

    def collect(lv: _Level) -> None:
        sc = score(lv.size, lv.esum)
        idx = np.flatnonzero(sc > 0)
        if len(idx) > k:  # keep the k best and everything tied with the k-th
            kth = np.partition(sc[idx], len(idx) - k)[len(idx) - k]
            idx = idx[sc[idx] >= kth]
        for i in idx:
            preds = sorted((cols[c], encoded[c][1][lv.parts[i, p]]) for p, c in enumerate(lv.cols))
            found.append((float(sc[i]), tuple(preds), int(lv.size[i]), float(lv.esum[i])))

    def prune(lv: _Level) -> None:
        """Detach rows of slices that may not be extended: too small, or bounded below the k-th best score."""
        best = sorted((f[0] for f in found), reverse=True)
        threshold = best[k - 1] if len(best) >= k else 0.0
        ub = upper_bound(lv)
        keep = (lv.size >= minsup) & (ub > 0) & (ub + 1e-9 >= threshold)
        lv.rows = np.where(np.append(keep, False)[lv.rows], lv.rows, -1)  # row -1 picks the appended False

    def build(cols_: tuple[int, ...], parts: np.ndarray, key: np.ndarray, idx: np.ndarray, need_max: bool) -> _Level:
        """Group the rows ``idx`` by ``key`` (slice per distinct key); keep slices with at least minsup rows."""
        space = len(parts)
        size = np.bincount(key, minlength=space)
        kept = np.flatnonzero(size >= minsup)
        remap = np.full(space, -1, dtype=np.int64)
        remap[kept] = np.arange(len(kept))
        rows = np.full(n, -1, dtype=np.int64)
        rows[idx] = remap[key]
        esum = np.bincount(key, weights=err[idx], minlength=space)[kept]
        emax = np.zeros(space)
        if need_max:
            np.maximum.at(emax, key, err[idx])
        return _Level(cols_, parts[kept], size[kept], esum, emax[kept], rows)

    everything = np.arange(n)
    frontier: list[_Level] = []
    for c, (codes, labels) in enumerate(encoded):
        lv = build((c,), np.arange(len(labels))[:, None], codes, everything, max_level > 1)
        collect(lv)
        frontier.append(lv)
    singles = {lv.cols[0]: lv for lv in frontier}
    for level in range(2, max_level + 1):
        for lv in frontier:
            prune(lv)
        nxt: list[_Level] = []
        for parent in frontier:
            for j in range(parent.cols[-1] + 1, len(cols)):
                single = singles[j]
                idx = np.flatnonzero((parent.rows >= 0) & (single.rows >= 0))
                if len(idx) < minsup:
                    continue
                width = len(single.size)
                key = parent.rows[idx] * width + single.rows[idx]
                grid = np.arange(len(parent.size) * width)
                if len(grid) > 4 * n:  # many sparse cells (high-cardinality columns): group by sorting instead
                    grid, key = np.unique(key, return_inverse=True)
                parts = np.hstack([parent.parts[grid // width], single.parts[grid % width]])
                child = build((*parent.cols, j), parts, key, idx, level < max_level)
                collect(child)
                nxt.append(child)
        frontier = nxt
    found.sort(key=lambda f: (-f[0], len(f[1]), f[1]))
    return [Slice(preds, size, esum / size, esum / total, sc) for sc, preds, size, esum in found[:k]]
