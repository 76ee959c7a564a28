"""Records → Arrow tables, vectorised: one row per input row, typed ``in.*`` and ``out.*`` columns.

Records are grouped by deployment, hour partition, variant, model and the kind of their inputs and outputs
(:func:`partition_tables`); each group becomes a table with a fixed number of numpy/Arrow calls per *column*,
not per record (:func:`group_table`):

* per-record fields are pulled with ``map(attrgetter(…))`` — C loops that build no tuple per record (tuples that
  survive a young collection make the garbage collector walk the whole heap);
* per-record arrays of one shape and dtype (what a signature guarantees) are joined as raw bytes
  (``b"".join`` over their buffers) and viewed as one ``[rows, …]`` array — about 4x cheaper than
  ``np.concatenate`` on thousands of small arrays; anything else falls back to ``np.concatenate``;
* a ``[rows, k]`` block is transposed once so every ``name[j]`` column is contiguous (zero-copy into Arrow);
* ``deployment``, ``variant``, ``model``, ``shadow`` and ``status`` are constant within a group: dictionary
  arrays over one value (queries read them as plain values).

Groups with different columns are concatenated by name (missing columns become nulls).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from operator import attrgetter, itemgetter
from typing import Any

import numpy as np

_TS = attrgetter("ts")
_LATENCY = attrgetter("latency_s")
_DECODE = attrgetter("decode_s")
_INPUTS = attrgetter("inputs")
_OUTPUTS = attrgetter("outputs")
_SHAPE = attrgetter("shape")
_DTYPE = attrgetter("dtype")
_NBYTES = attrgetter("nbytes")
_NDIM = attrgetter("ndim")
_CONSTANT = ("deployment", "variant", "model", "shadow", "status")
_KEY = attrgetter(*_CONSTANT)
_VARYING = ("request_id", "error", "sticky_key", "trace_id")
_GETTERS = {name: attrgetter(name) for name in _VARYING}
_HOUR_S = 3600

#: Parquet writer options of request-log segments: zstd, and dictionary pages only for the columns that repeat
#: (strings, labels) — dictionary-encoding random floats or unique request ids costs 3x the write time for nothing.
COMPRESSION = "zstd"
COMPRESSION_LEVEL = 3


def dictionary_columns(schema: Any) -> list[str]:
    """Columns of ``schema`` worth dictionary pages: everything but floats, timestamps and ``request_id``."""
    import pyarrow as pa

    return [
        f.name
        for f in schema
        if f.name != "request_id" and not pa.types.is_floating(f.type) and not pa.types.is_timestamp(f.type)
    ]


def partition_tables(
    records: Sequence[Any], redact: Callable[[Any], Any] | None = None
) -> dict[tuple[str, int], list[Any]]:
    """Arrow tables of ``records`` by ``(deployment, hour)`` (hour = ``int(ts // 3600)``), one per group of
    records that share their columns.

    Within a (deployment, variant, model) the data plane validated every input against one signature, so the
    columns are the same; failed requests (no outputs) form their own group (``status``), and so do inputs of
    another kind (:func:`_tables` splits those, and records on both sides of an hour boundary).

    ``redact`` (:meth:`mlpilot.telemetry.redact.Redactor.table`) is applied to every table: the one place where
    request-log rows are made, so nothing reaches a segment unredacted.
    """
    if not records:
        return {}
    groups: list[list[Any]]
    keys = set(map(_KEY, records))  # a C loop; only the distinct keys are kept
    if len(keys) == 1:
        groups = [list(records)]
    else:
        by_key: dict[tuple[Any, ...], list[Any]] = {}
        get = by_key.get
        for r in records:
            key = _KEY(r)
            g = get(key)
            if g is None:
                g = by_key[key] = []
            g.append(r)
        groups = list(by_key.values())
    parts: dict[tuple[str, int], list[Any]] = {}
    for g in groups:
        for hour, table in _tables(g):
            parts.setdefault((g[0].deployment, hour), []).append(table if redact is None else redact(table))
    return parts


def _tables(records: list[Any]) -> list[tuple[int, Any]]:
    """``(hour, table)`` of records with one key: one table unless input kinds or hours differ within them."""
    n = len(records)
    inputs = list(map(_INPUTS, records))
    outputs = list(map(_OUTPUTS, records))
    if len(set(map(type, inputs))) != 1 or outputs.count(None) not in (0, n):
        kinds: dict[tuple[Any, bool], list[Any]] = {}
        for r, i, o in zip(records, inputs, outputs, strict=True):
            kinds.setdefault((type(i), o is None), []).append(r)
        return [t for kind in kinds.values() for t in _tables(kind)]
    ts = np.fromiter(map(_TS, records), np.float64, n)
    hours = ts // _HOUR_S
    if not (hours == hours[0]).all():  # a flush that straddles an hour boundary
        return [t for h in np.unique(hours) for t in _tables([records[i] for i in np.flatnonzero(hours == h)])]
    return [(int(hours[0]), group_table(records, inputs, outputs, ts))]


def _stack(arrays: list[Any]) -> tuple[np.ndarray, np.ndarray | int]:
    """Per-record arrays stacked along their first axis, and each record's row count (an int when uniform)."""
    first = arrays[0]
    n = len(arrays)
    if type(first) is np.ndarray and first.ndim > 0 and not first.dtype.hasobject:
        # Same shape for all, cheaply: equal len, ndim and nbytes pin the shape when ndim <= 2.
        same = (
            list(map(_DTYPE, arrays)).count(first.dtype) == n
            and len(set(map(len, arrays))) == 1
            and len(set(map(_NBYTES, arrays))) == 1
            and len(set(map(_NDIM, arrays))) == 1
            and (first.ndim <= 2 or len(set(map(_SHAPE, arrays))) == 1)
        )
        if same:
            try:
                buf = b"".join(arrays)  # raises unless every array is contiguous
            except (TypeError, ValueError, BufferError):
                pass
            else:
                stacked = np.frombuffer(buf, first.dtype).reshape(n * first.shape[0], *first.shape[1:])
                if not stacked.flags.aligned:
                    stacked = stacked.copy()
                return stacked, first.shape[0]
    parts = [np.asarray(a) for a in arrays]
    if any(p.ndim == 0 for p in parts):
        raise ValueError("0-d value")
    return np.concatenate(parts), np.fromiter(map(len, parts), np.int64, n)


def _expand(prefix: str, stacked: np.ndarray, out: dict[str, Any]) -> None:
    """A stacked ``[rows, …]`` array as 1-D columns: ``prefix`` for 1-D, ``prefix[j]`` per trailing element."""
    if stacked.ndim == 1:
        out[prefix] = stacked
        return
    block = np.ascontiguousarray(stacked.reshape(len(stacked), -1).T)  # one copy; every column contiguous
    for j in range(block.shape[0]):
        out[f"{prefix}[{j}]"] = block[j]


def _same_rows(a: np.ndarray | int, b: np.ndarray | int) -> bool:
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    return bool(np.all(np.asarray(a) == np.asarray(b)))


_ZEROS: list[Any] = []  # int32 zeros as an Arrow array, sliced (zero-copy) for every constant column


@lru_cache(maxsize=1024)
def _dictionary(value: Any) -> Any:
    import pyarrow as pa

    return pa.array([value])


def _constant(value: Any, n: int) -> Any:
    """A column holding one value ``n`` times, dictionary-encoded (cheap to build, tiny in Parquet)."""
    import pyarrow as pa

    if not _ZEROS or len(_ZEROS[0]) < n:
        _ZEROS[:] = [pa.array(np.zeros(max(n, 65_536), dtype=np.int32))]
    return pa.DictionaryArray.from_arrays(_ZEROS[0].slice(0, n), _dictionary(value))


@lru_cache(maxsize=1)
def _timestamp_type() -> Any:
    import pyarrow as pa

    return pa.timestamp("us", tz="UTC")


@lru_cache(maxsize=64)
def _arrow_type(dtype: np.dtype[Any]) -> Any:
    import pyarrow as pa

    return pa.from_numpy_dtype(dtype)


def _arrow(values: Any) -> Any:
    """A column as an Arrow array; contiguous numeric numpy arrays are wrapped without conversion (pa.array goes
    through pandas-compatibility checks that cost more than the copy-free wrap for the writer's small chunks)."""
    import pyarrow as pa

    if isinstance(values, pa.Array):
        return values
    if isinstance(values, np.ndarray):
        if not values.dtype.isnative:
            values = values.astype(values.dtype.newbyteorder("="))  # Arrow has no byte-swapped arrays
        if values.dtype.kind in "iuf" and values.flags.c_contiguous and values.flags.aligned:
            return pa.Array.from_buffers(_arrow_type(values.dtype), len(values), [None, pa.py_buffer(values)])
        if values.dtype == object:
            return pa.array(values.tolist())
    return pa.array(values)


def _text(parts: list[Any], ns: np.ndarray | int) -> Any:
    """Values that are not one row per input row, kept as text (repeated on every row of their record)."""
    import pyarrow as pa

    text = pa.array([str(np.asarray(p).tolist()) for p in parts], type=pa.string())
    if isinstance(ns, int):
        return text if ns == 1 else text.take(pa.array(np.repeat(np.arange(len(parts)), ns)))
    return text.take(pa.array(np.repeat(np.arange(len(parts)), ns)))


def _add(prefix: str, parts: list[Any], ns: np.ndarray | int | None, out: dict[str, Any]) -> np.ndarray | int:
    """Stack ``parts`` into ``prefix`` columns; ``ns`` is the rows per record they must have (None: any — the
    first input defines them). Values with other row counts, 0-d or ragged ones become one text column."""
    try:
        stacked, got = _stack(parts)
    except ValueError:
        got = None
    if got is None or (ns is not None and not _same_rows(got, ns)):
        rows = 1 if ns is None else ns
        out[prefix] = _text(parts, rows)
        return rows
    _expand(prefix, stacked, out)
    return got


def _inputs(values: list[Any], out: dict[str, Any]) -> np.ndarray | int:
    """Input columns into ``out``; returns the rows of each record (an int when every record has as many)."""
    first = values[0]
    if first is None:
        return 1
    if hasattr(first, "columns") and hasattr(first, "dtypes"):  # a DataFrame (columnar signature)
        import pandas as pd

        frame = pd.concat(values, ignore_index=True) if len(values) > 1 else first
        for c in frame.columns:
            out[f"in.{c}"] = frame[c].to_numpy()
        return np.fromiter(map(len, values), np.int64, len(values))
    if isinstance(first, dict):
        ns: np.ndarray | int | None = None
        for k in first:
            ns = _add(f"in.{k}", list(map(itemgetter(k), values)), ns, out)
        return 1 if ns is None else ns
    return _add("in", values, None, out)  # an unnamed array input


def group_table(
    records: Sequence[Any],
    inputs: list[Any] | None = None,
    outputs: list[Any] | None = None,
    ts: np.ndarray | None = None,
) -> Any:
    """One Arrow table of records that share deployment, variant, model and input/output kinds (``inputs``,
    ``outputs`` and ``ts``: the records' fields, when the caller has them already)."""
    import pyarrow as pa

    n = len(records)
    cols: dict[str, Any] = {}
    in_cols: dict[str, Any] = {}
    ns = _inputs(inputs if inputs is not None else list(map(_INPUTS, records)), in_cols)
    if isinstance(ns, int):
        total = n * ns
        multi = ns != 1

        def rep(values: Any) -> Any:
            return np.repeat(values, ns) if multi else values

        row = np.tile(np.arange(ns, dtype=np.int64), n) if multi else np.zeros(n, dtype=np.int64)
    else:
        total = int(ns.sum())
        multi = True

        def rep(values: Any) -> Any:
            return np.repeat(values, ns)

        row = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(ns) - ns, ns)
    ts = rep(ts if ts is not None else np.fromiter(map(_TS, records), np.float64, n))
    us = (ts * 1e6).astype(np.int64)
    cols["ts"] = pa.Array.from_buffers(_timestamp_type(), len(us), [None, pa.py_buffer(us)])
    cols["row"] = row
    first = records[0]
    for name in _CONSTANT:
        cols[name] = _constant(getattr(first, name), total)
    for name in _VARYING:
        get = _GETTERS[name]
        values = None if any(map(get, records)) else list(map(get, records))  # any(): a C loop, no list
        if values is not None and values.count(None) == n:
            cols[name] = pa.nulls(total)
            continue
        values = values or list(map(get, records))
        if multi:
            cols[name] = pa.array(np.repeat(np.asarray(values, dtype=object), ns))
        else:
            cols[name] = pa.array(values)
    cols["latency_s"] = rep(np.fromiter(map(_LATENCY, records), np.float64, n))
    cols["decode_s"] = rep(np.fromiter(map(_DECODE, records), np.float64, n))
    cols.update(in_cols)
    first_out = first.outputs or {}
    if first_out:
        outputs = outputs if outputs is not None else list(map(_OUTPUTS, records))
        for name in first_out:
            try:
                parts = list(map(itemgetter(name), outputs))
            except KeyError:  # not every record has this output: the missing ones become "None"
                parts = [o.get(name) for o in outputs]
            _add(f"out.{name}", parts, ns, cols)
    return pa.Table.from_arrays([_arrow(v) for v in cols.values()], names=list(cols))


def records_table(records: Sequence[Any]) -> Any:
    """One Arrow table of ``records`` (any mix of deployments, variants, hours and shapes)."""
    import pyarrow as pa

    tables = [t for part in partition_tables(records).values() for t in part]
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables, promote_options="permissive")
