"""Records → Arrow columns (the writer's vectorised path) against a plain per-row reference, for every input kind
and the awkward cases: several rows per request, ragged outputs, failed requests, mixed variants, hour edges."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlpilot.serving.dataplane import InferenceRecord
from mlpilot.telemetry.columns import partition_tables, records_table
from mlpilot.telemetry.query import read_records
from mlpilot.telemetry.reqlog import RequestLog

T0 = 1_790_000_000.0 - 1_790_000_000.0 % 3600 + 1800  # the middle of an hour


def _rec(i: int, inputs: Any, outputs: dict[str, Any] | None, **kw: Any) -> InferenceRecord:
    base: dict[str, Any] = {
        "ts": T0 + i * 0.001,
        "request_id": f"r{i}",
        "deployment": "d",
        "variant": "a",
        "model": "m:1",
        "status": "ok" if outputs is not None else "error",
        "latency_s": 0.001 * i,
        "inputs": inputs,
        "outputs": outputs,
    }
    base.update(kw)
    return InferenceRecord(**base)


def _rows_of(r: InferenceRecord) -> int:
    if r.inputs is None:
        return 1
    return len(r.inputs) if not isinstance(r.inputs, dict) else len(next(iter(r.inputs.values())))


def _text_outputs(records: list[InferenceRecord]) -> set[str]:
    """Outputs that are not one row per input row in some record: the whole column is text then."""
    return {
        name
        for r in records
        for name, out in (r.outputs or {}).items()
        if np.asarray(out).ndim == 0 or len(np.asarray(out)) != _rows_of(r)
    }


def _reference(r: InferenceRecord, text: set[str]) -> list[dict[str, Any]]:
    """The rows one record must become, built the slow, obvious way."""
    if r.inputs is None:
        n, ins = 1, [{}]
    elif isinstance(r.inputs, pd.DataFrame):
        n = len(r.inputs)
        ins = [{f"in.{c}": r.inputs[c].iloc[k] for c in r.inputs.columns} for k in range(n)]
    else:
        arrays = r.inputs if isinstance(r.inputs, dict) else {None: r.inputs}
        n = len(next(iter(arrays.values())))
        ins = []
        for k in range(n):
            row: dict[str, Any] = {}
            for name, a in arrays.items():
                prefix = "in" if name is None else f"in.{name}"
                arr = np.asarray(a)
                if arr.ndim == 1:
                    row[prefix] = arr[k]
                else:
                    row.update({f"{prefix}[{j}]": v for j, v in enumerate(arr[k].reshape(-1))})
            ins.append(row)
    rows = []
    for k in range(n):
        row = {"request_id": r.request_id, "row": k, "variant": r.variant, "status": r.status, **ins[k]}
        for name, out in (r.outputs or {}).items():
            o = np.asarray(out)
            if name in text:
                row[f"out.{name}"] = str(o.tolist())
            elif o.ndim == 1:
                row[f"out.{name}"] = o[k]
            else:
                row.update({f"out.{name}[{j}]": v for j, v in enumerate(o[k].reshape(-1))})
        rows.append(row)
    return rows


def _check(records: list[InferenceRecord]) -> pd.DataFrame:
    got = records_table(records).to_pandas()
    text = _text_outputs(records)
    want = pd.DataFrame([row for r in records for row in _reference(r, text)])
    assert len(got) == len(want)
    key = ["request_id", "row"]
    got = got.sort_values(key).reset_index(drop=True)
    want = want.sort_values(key).reset_index(drop=True)
    for c in want.columns:
        g, w = got[c].astype(object).where(got[c].notna(), None), want[c].astype(object)
        w = w.where(w.notna(), None)
        assert list(g) == list(w), c
    ts = {r.request_id: r.ts for r in records}
    np.testing.assert_allclose(
        got["ts"].astype("int64") / 1e6 if got["ts"].dtype.kind == "M" else got["ts"],
        [ts[rid] for rid in got["request_id"]],
        atol=1e-6,
    )
    return got


def test_one_row_per_request_with_dict_inputs_and_array_outputs() -> None:
    rng = np.random.default_rng(0)
    records = [
        _rec(i, {"x": rng.normal(size=(1, 5))}, {"predict": np.array([i % 3]), "proba": rng.random((1, 3))})
        for i in range(5000)
    ]
    got = _check(records)
    assert str(got["in.x[0]"].dtype) == "float64" and str(got["out.predict"].dtype) == "int64"


@pytest.mark.parametrize("rows", [1, 3])
def test_unnamed_array_inputs_several_rows_per_request(rows: int) -> None:
    rng = np.random.default_rng(1)
    _check([_rec(i, rng.normal(size=(rows, 4)), {"p": rng.random(rows)}) for i in range(300)])


def test_requests_with_different_row_counts_and_ragged_outputs() -> None:
    rng = np.random.default_rng(2)
    records = [
        _rec(
            i,
            {"a": rng.normal(size=(1 + i % 4, 2)), "b": rng.integers(0, 9, size=1 + i % 4)},
            {"p": rng.random(1 + i % 4), "summary": np.array([i, i + 1, i + 2]), "score": np.float64(i)},
        )
        for i in range(200)
    ]
    got = _check(records)
    assert got["out.score"].iloc[0] == "0.0"  # 0-d outputs are kept as text, on every row of the request


def test_dataframe_inputs_failed_requests_and_mixed_variants() -> None:
    rng = np.random.default_rng(3)
    records: list[InferenceRecord] = []
    for i in range(400):
        if i % 7 == 0:
            records.append(_rec(i, None, None, error="boom", variant="b"))  # a shadow that failed before input
        elif i % 5 == 0:
            records.append(_rec(i, np.ones((1, 2)), None, error="model raised"))
        else:
            frame = pd.DataFrame({"f1": rng.normal(size=2), "f2": ["x", "y"]})
            records.append(_rec(i, frame, {"predict": np.array([0, 1])}, sticky_key=f"u{i % 3}", variant="c"))
    got = _check(records)
    assert set(got["variant"]) == {"a", "b", "c"}
    assert set(got.loc[got.status == "error", "error"]) == {"boom", "model raised"}


def test_non_contiguous_mixed_dtype_and_object_arrays_fall_back() -> None:
    base = np.arange(60, dtype=np.float64).reshape(6, 10)
    records = [
        _rec(0, {"x": base[:1, ::2]}, {"p": np.array([1])}),  # a strided view
        _rec(1, {"x": np.ones((1, 5), dtype=np.float32)}, {"p": np.array([2])}),  # another dtype
        _rec(2, {"x": base[2:3, :5]}, {"p": np.array([3])}),
    ]
    _check(records)
    _check([_rec(i, {"s": np.array(["a", "b"], dtype=object)}, {"p": np.array([1, 2])}) for i in range(3)])
    _check([_rec(i, {"x": np.full((1, 2), i, dtype=">f8")}, {"p": np.array([i], dtype=">i4")}) for i in range(3)])


def test_records_are_partitioned_by_deployment_and_hour() -> None:
    records = [_rec(i, np.ones((1, 2)), {"p": np.array([i])}) for i in range(10)]
    records[3].ts = T0 + 3600  # the next hour
    records[4].deployment = "other"
    records[5].outputs = None  # a failed request: its own table
    parts = partition_tables(records)
    hour = int(T0 // 3600)
    assert sorted(parts) == [("d", hour), ("d", hour + 1), ("other", hour)]
    assert [t.num_rows for t in parts[("d", hour)]] == [7, 1]


def test_writer_round_trip_through_duckdb(tmp_path: Path) -> None:
    """Chunked, pipelined writing (segments handed to the segment thread) loses and duplicates nothing."""
    import mlpilot.telemetry.reqlog as reqlog

    rng = np.random.default_rng(4)
    log = RequestLog(tmp_path / "logs", capacity=100_000)
    n = 30_000
    now = time.time()
    for i in range(n):
        log.append(
            InferenceRecord(
                ts=now,
                request_id=f"r{i}",
                deployment="d",
                variant="ab"[i % 2],
                model="m:1",
                status="ok",
                latency_s=0.001,
                inputs={"x": rng.normal(size=(1, 3))},
                outputs={"p": np.array([i])},
            )
        )
    old = reqlog._SEGMENT_ROWS
    reqlog._SEGMENT_ROWS = 4096  # several segments per flush
    try:
        log.start()
        log.stop()
    finally:
        reqlog._SEGMENT_ROWS = old
    df = read_records(tmp_path / "logs", "d")
    assert len(df) == n and df.request_id.nunique() == n
    assert sorted(df["out.p"]) == list(range(n))
    assert len(list((tmp_path / "logs").rglob("seg-*.parquet"))) > 2
