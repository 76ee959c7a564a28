"""Records → an Arrow table, vectorised: one row per input row, typed ``in.*`` and ``out.*`` columns.

Records are grouped by the shape of their inputs and outputs (normally one group per variant); each group is
built with a handful of numpy calls instead of per-record Python work, and groups with different columns are
concatenated by name (missing columns become nulls).
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter
from typing import Any

import numpy as np


def _rows(inputs: Any) -> int:
    if inputs is None:
        return 1
    if isinstance(inputs, dict):
        return len(next(iter(inputs.values())))
    return len(inputs)


def _expand(prefix: str, stacked: np.ndarray, out: dict[str, Any]) -> None:
    """A stacked ``[rows, …]`` array as 1-D columns: ``prefix`` for 1-D, ``prefix[j]`` per trailing element."""
    if stacked.ndim == 1:
        out[prefix] = stacked
        return
    flat = stacked.reshape(len(stacked), -1)
    for j in range(flat.shape[1]):
        out[f"{prefix}[{j}]"] = flat[:, j]


def _stack_inputs(values: Sequence[Any], out: dict[str, Any]) -> None:
    first = values[0]
    if first is None:
        return
    if hasattr(first, "columns") and hasattr(first, "dtypes"):
        import pandas as pd

        frame = pd.concat(values, ignore_index=True) if len(values) > 1 else first
        for c in frame.columns:
            out[f"in.{c}"] = frame[c].to_numpy()
    elif isinstance(first, dict):
        for k in first:
            _expand(f"in.{k}", np.concatenate([np.asarray(v[k]) for v in values]), out)
    else:
        _expand("in", np.concatenate([np.asarray(v) for v in values]), out)  # an unnamed array input


def _constant(value: Any, n: int) -> Any:
    """A column holding one value ``n`` times, dictionary-encoded (cheap to build, tiny in Parquet)."""
    import pyarrow as pa

    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array([value]))


_CONSTANT = ("deployment", "variant", "model", "shadow")
_VARYING = ("request_id", "status", "error", "sticky_key", "trace_id")


def _group_table(records: Sequence[Any]) -> Any:
    import pyarrow as pa

    ns = np.fromiter((_rows(r.inputs) for r in records), dtype=np.int64, count=len(records))
    multi = bool((ns != 1).any())
    total = int(ns.sum())

    def rep(values: Sequence[Any]) -> Any:
        return np.repeat(np.asarray(values, dtype=object), ns).tolist() if multi else values

    cols: dict[str, Any] = {}
    meta = list(zip(*map(attrgetter("ts", "latency_s", *_VARYING), records), strict=True))
    ts = np.asarray(meta[0], dtype=np.float64)
    ts = np.repeat(ts, ns) if multi else ts
    cols["ts"] = pa.array((ts * 1e6).astype("int64"), type=pa.timestamp("us", tz="UTC"))
    cols["row"] = np.concatenate([np.arange(n) for n in ns]) if multi else np.zeros(total, dtype=np.int64)
    first = records[0]
    for name in _CONSTANT:
        cols[name] = _constant(getattr(first, name), total)
    for name, values in zip(_VARYING, meta[2:], strict=True):
        cols[name] = rep(values)
    cols["latency_s"] = np.repeat(np.asarray(meta[1], dtype=np.float64), ns)
    _stack_inputs([r.inputs for r in records], cols)
    first_out = first.outputs or {}
    for name in first_out:
        parts = [np.asarray(r.outputs[name]) for r in records]
        if any(p.ndim == 0 or len(p) != n for p, n in zip(parts, ns, strict=True)):
            cols[f"out.{name}"] = [str(p.tolist()) for p in parts]  # not one row per input row: keep as text
            continue
        _expand(f"out.{name}", np.concatenate(parts), cols)
    arrays = {}
    for k, v in cols.items():
        if isinstance(v, pa.Array):
            arrays[k] = v
        elif isinstance(v, np.ndarray) and v.dtype == object:
            arrays[k] = pa.array(v.tolist())
        else:
            arrays[k] = pa.array(v)
    return pa.table(arrays)


def records_table(records: Sequence[Any]) -> Any:
    """One Arrow table of ``records`` (any mix of variants and shapes)."""
    import pyarrow as pa

    # Within a (deployment, variant, model) the data plane validated every input against one signature, so the
    # columns are the same; failed requests (no outputs) form their own group.
    groups: dict[Any, list[Any]] = {}
    for r in records:
        key = (r.deployment, r.variant, r.model, r.shadow, r.outputs is None, type(r.inputs))
        groups.setdefault(key, []).append(r)
    tables = [_group_table(g) for g in groups.values()]
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables, promote_options="permissive")
