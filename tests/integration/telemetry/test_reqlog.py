"""The request log end to end: served requests become Parquet rows, catalogued, queryable with DuckDB."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from mlpilot import Client
from mlpilot.app import build_platform
from mlpilot.server import PlatformServer
from mlpilot.serving.dataplane import InferenceRecord
from mlpilot.settings import Settings
from mlpilot.store import Store
from mlpilot.telemetry.query import count_records, read_records
from mlpilot.telemetry.reqlog import RequestLog
from tests.factories import iris_frame


@pytest.fixture
def home(tmp_path: Path) -> Path:
    from sklearn.linear_model import LogisticRegression

    X, y = iris_frame()
    with Client(home=tmp_path / "home") as c:
        c.register_model("iris", LogisticRegression(max_iter=300).fit(X, y), sample=X.head(3))  # columnar
        c.register_model("iris", LogisticRegression(C=0.1, max_iter=300).fit(X, y), sample=X.head(3))
        c.deploy("iris", "iris:1", variant="a")
        c.deploy("iris", "iris:2", variant="b", shadow=True)
    return tmp_path / "home"


def _body(rows: Any) -> bytes:
    return orjson.dumps(
        {
            "inputs": [
                {"name": c, "datatype": "FP64", "shape": [len(rows)], "data": rows[c].tolist()} for c in rows.columns
            ]
        }
    )


def _serve(home: Path, n: int, rows_per_request: int = 1, **log: Any) -> list[str]:
    X, _ = iris_frame()

    async def run() -> list[str]:
        platform = build_platform(Settings(home=home, logs=log) if log else Settings(home=home))
        server = PlatformServer(platform)
        await server.start()
        ids = []
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=server), base_url="http://t") as http:
                for i in range(n):
                    r = await http.post("/v2/models/iris/infer", content=_body(X.iloc[i : i + rows_per_request]))
                    assert r.status_code == 200, r.text
                    ids.append(r.headers["x-request-id"])
                await asyncio.sleep(0.2)  # shadows finish
        finally:
            await server.stop()
            platform.close()
        return ids

    return asyncio.run(run())


def test_every_request_and_shadow_is_logged_with_typed_columns(home: Path) -> None:
    ids = _serve(home, 40, rows_per_request=2)
    df = read_records(home / "logs", "iris")
    primary, shadow = df[~df.shadow], df[df.shadow]
    assert len(primary) == 80 and len(shadow) == 80  # one row per input row
    assert set(primary.request_id) == set(ids) == set(shadow.request_id)
    assert set(primary.variant) == {"a"} and set(shadow.variant) == {"b"}
    X, _ = iris_frame()
    first = primary[primary.request_id == ids[0]].sort_values("row")
    np.testing.assert_allclose(first["in.sepal_length"], X.sepal_length.iloc[:2])
    assert str(df["in.sepal_length"].dtype) == "float64" and "out.predict" in df and "out.predict_proba[2]" in df
    assert (df.status == "ok").all() and (df.latency_s > 0).all()
    store = Store.from_url(f"sqlite:///{home / 'mlpilot.db'}")
    segments = store.list_segments("iris")  # the catalog the data plane wrote to
    store.close()
    assert sum(s["rows"] for s in segments) == 160
    assert all(Path(s["path"]).is_file() for s in segments)


def test_strict_mode_logs_before_answering(home: Path) -> None:
    _serve(home, 10, durability="strict")
    assert count_records(home / "logs", "iris") == 20  # 10 primaries + 10 shadows
    assert not list((home / "logs" / "_spill").glob("*.jsonl"))  # spilled records became segments


def _record(i: int, deployment: str = "d") -> InferenceRecord:
    return InferenceRecord(
        ts=time.time(),
        request_id=f"r{i}",
        deployment=deployment,
        variant="v",
        model="m:1",
        status="ok",
        latency_s=0.001,
        inputs=np.ones((1, 3)),
        outputs={"p": np.array([i])},
    )


def test_a_full_queue_drops_and_counts(tmp_path: Path) -> None:
    drops: list[int] = []
    log = RequestLog(tmp_path / "logs", capacity=5, flush_interval_s=60, on_drop=drops.append)
    accepted = [log.append(_record(i)) for i in range(8)]
    assert accepted == [True] * 5 + [False] * 3
    log.start()
    log.stop()
    assert count_records(tmp_path / "logs", "d") == 5
    assert sum(drops) == 3


def test_windows_are_pruned_by_partition(tmp_path: Path) -> None:
    log = RequestLog(tmp_path / "logs")
    old = _record(0)
    old.ts = time.time() - 3 * 3600
    log.append(old)
    for i in range(1, 4):
        log.append(_record(i))
    log.start()
    log.stop()
    from datetime import datetime, timedelta, timezone

    since = datetime.now(timezone.utc) - timedelta(hours=1)
    assert count_records(tmp_path / "logs", "d", since=since) == 3
    assert count_records(tmp_path / "logs", "d") == 4
    assert len(list((tmp_path / "logs" / "d").glob("dt=*/hour=*"))) == 2


def test_windows_at_the_ends_of_the_calendar_prune_nothing_and_still_filter(tmp_path: Path) -> None:
    """A bound at year 1 or 9999 that UTC cannot hold (naive year 1 read as local time, or an offset past the
    calendar's end) was an OverflowError (a 500 on the logs and drift routes); it now bounds nothing when listing
    segments, and the query's own time filter still applies."""
    from datetime import datetime, timedelta, timezone

    log = RequestLog(tmp_path / "logs")
    for i in range(3):
        log.append(_record(i))
    log.start()
    log.stop()
    first = datetime(1, 1, 1)
    first_east = datetime(1, 1, 1, 1, tzinfo=timezone(timedelta(hours=14)))  # year 0 in UTC
    last_west = datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-14)))  # year 10000 in UTC
    assert count_records(tmp_path / "logs", "d", since=first) == 3
    assert count_records(tmp_path / "logs", "d", since=first_east, until=last_west) == 3
    assert count_records(tmp_path / "logs", "d", until=first) == 0
    assert len(read_records(tmp_path / "logs", "d", since=first, until=last_west)) == 3


def test_spill_lines_keep_every_column_and_read_old_lines() -> None:
    import json as _json

    import numpy as _np

    from mlpilot.serving.dataplane import InferenceRecord
    from mlpilot.telemetry.reqlog import _from_json_line, _to_json_line

    rec = InferenceRecord(
        ts=1.5,
        request_id="r",
        deployment="d",
        variant="v",
        model="m:1",
        status="ok",
        latency_s=0.002,
        trace_id="ab" * 16,
        decode_s=0.0004,
        inputs=_np.ones((1, 3)),
        outputs={"p": _np.array([1])},
    )
    back = _from_json_line(_to_json_line(rec))
    assert (back.decode_s, back.trace_id, back.latency_s) == (0.0004, "ab" * 16, 0.002)
    old = _json.loads(_to_json_line(rec))
    del old["decode_s"], old["trace_id"]  # a spill written by an earlier version
    assert _from_json_line(_json.dumps(old).encode()).decode_s == 0.0
