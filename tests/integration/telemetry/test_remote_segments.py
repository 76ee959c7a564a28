"""Request-log segments on object storage (a real S3 API: moto's server): sealed segments shipped from the local
directory, read back once with the ones not shipped yet (records, counts, SLIs, the dashboard's cached aggregates),
compacted and pruned on the object store, an interrupted remote compaction finished, an unreachable store that
loses nothing and recovers, and the platform (SDK, logs API, feedback join, drift, dashboard) reading shipped
segments — also after a restart with segments left to ship."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlpilot import Client
from mlpilot.clock import SystemClock
from mlpilot.serving.dataplane import InferenceRecord
from mlpilot.settings import Settings
from mlpilot.store import Store
from mlpilot.telemetry import sli, stats
from mlpilot.telemetry.compaction import _merge, apply_retention, compact, maintain
from mlpilot.telemetry.query import count_records, read_records
from mlpilot.telemetry.remote import upload
from mlpilot.telemetry.reqlog import RequestLog
from mlpilot.telemetry.segments import SegmentStore, partition_dirs
from mlpilot.telemetry.shipping import SegmentShipper

HOUR = timedelta(hours=1)
SEC = timedelta(seconds=1)
#: an endpoint nothing listens on (botocore retried only once, so each call fails in about a second)
REFUSED = {"endpoint_url": "http://127.0.0.1:9", "config_kwargs": {"retries": {"max_attempts": 1}}}
NOW = datetime.now(timezone.utc).replace(minute=30, second=0, microsecond=0)
T0 = NOW.replace(minute=0) - 3 * HOUR  # the start of a closed hour


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Store]:
    store = Store.from_url(f"sqlite:///{tmp_path / 'store.db'}", SystemClock())
    store.migrate()
    yield store
    store.close()


@pytest.fixture
def segs(tmp_path: Path, s3_root: str, s3_storage_options: dict[str, Any]) -> SegmentStore:
    return SegmentStore(tmp_path / "logs", s3_root, s3_storage_options)


def _write(store: SegmentStore, start: datetime, n: int, db: Store | None = None, variant: str = "a") -> list[str]:
    """``n`` records a second apart from ``start``, as one segment written by the real writer; their request ids."""
    ids = [uuid.uuid4().hex for _ in range(n)]
    log = RequestLog(store.local, on_segment=db.catalog if db is not None else None)
    log.start()
    for i, rid in enumerate(ids):
        log.append(
            InferenceRecord(
                ts=start.timestamp() + i,
                request_id=rid,
                deployment="d",
                variant=variant,
                model="m:1",
                status="ok" if i % 10 else "error",
                latency_s=0.001 * (1 + i % 50),
                error=None if i % 10 else "boom",
                outputs={"predict": np.array([i % 3])},
                inputs=np.array([[float(i), 1.0]]),
            )
        )
    log.stop()
    return ids


def _local(store: SegmentStore) -> list[Path]:
    return sorted(store.local.glob("d/dt=*/hour=*/seg-*.parquet"))


def _remote(store: SegmentStore) -> list[str]:
    return sorted(str(p) for p in store.fs.find(store.path_of("d")) if p.endswith(".parquet"))


def test_shipped_segments_are_read_once_together_with_the_local_ones(segs: SegmentStore, db: Store) -> None:
    ids = _write(segs, T0, 100, db) + _write(segs, T0 + 600 * SEC, 50, db) + _write(segs, T0 + HOUR, 30, db)
    assert len(_local(segs)) == 3 and read_records(segs, "d").request_id.tolist() == ids  # all local so far

    report = SegmentShipper(segs, catalog=db).ship()
    # two partitions: the first one's two segments merged into one object first
    assert (report.shipped, report.merged, report.pending, report.failures) == (2, 2, 0, 0)
    assert _local(segs) == [] and len(_remote(segs)) == 2
    later = _write(segs, NOW.replace(minute=5), 20, db)  # not shipped yet
    frame = read_records(segs, "d")
    assert frame.request_id.tolist() == ids + later  # every row once, in order, from both places
    assert frame.loc[frame.request_id == ids[1], "in[0]"].item() == 1.0  # columns intact through the merge
    assert count_records(segs, "d") == 200
    assert count_records(segs, "d", since=T0 + HOUR, until=T0 + HOUR + timedelta(seconds=9)) == 10

    catalogued = db.list_segments("d")
    assert sorted(s["path"].startswith("s3://") for s in catalogued) == [False, True, True]
    assert sum(s["rows"] for s in catalogued) == 200
    assert min(s["min_ts"] for s in catalogued) == T0
    assert max(s["max_ts"] for s in catalogued) == NOW.replace(minute=5) + 19 * SEC

    summary = stats.traffic_summary(segs, "d", T0, NOW + HOUR)
    assert summary["overall"]["requests"] == 200 and summary["overall"]["errors"] == 20
    buckets = sli.request_buckets(segs, "d", since=T0, until=NOW + HOUR, bucket_s=3600)
    assert buckets.total.sum() == 200 and buckets.good.sum() == 180


def test_a_segment_both_local_and_shipped_is_read_once_and_not_uploaded_again(segs: SegmentStore) -> None:
    """A crash between the upload and the deletion of the local copy."""
    ids = _write(segs, T0, 40)
    (f,) = _local(segs)
    url = upload(segs, f, f"d/{partition_dirs(T0)}/{f.name}")
    etag = segs.fs.info(url)["ETag"]
    assert segs.files("d") == [str(f)]  # one entry per name: the local copy
    assert read_records(segs, "d").request_id.tolist() == ids
    assert SegmentShipper(segs).ship().shipped == 1
    assert _local(segs) == [] and segs.files("d") == [url]
    assert segs.fs.info(url)["ETag"] == etag  # the same object: not uploaded twice
    assert read_records(segs, "d").request_id.tolist() == ids


def test_the_dashboard_caches_shipped_segments_by_url_size_and_etag(segs: SegmentStore, db: Store) -> None:
    _write(segs, T0, 100, db)
    SegmentShipper(segs, catalog=db).ship()
    _write(segs, T0 + 1200 * SEC, 100, db)
    SegmentShipper(segs, catalog=db).ship()
    first = stats.traffic(segs, "d", T0, T0 + HOUR, bucket_s=60)
    keys = [k for k in stats._PARTIALS._parts if str(k[0]).startswith(segs.remote)]
    assert len(keys) == 2 and all(isinstance(k[1], int) and k[2].strip('"') for k in keys)  # (url, size, etag, …)
    again = stats.traffic(segs, "d", T0, T0 + HOUR, bucket_s=60)
    assert again[1] == first[1] and first[1]["overall"]["requests"] == 200
    r = compact(segs, "d", catalog=db, now=NOW)
    assert (r.merged, r.written) == (2, 1)
    assert stats.traffic_summary(segs, "d", T0, T0 + HOUR)["overall"] == first[1]["overall"]


def test_compaction_and_retention_work_on_the_object_store(segs: SegmentStore, db: Store) -> None:
    old = T0 - 2 * 24 * HOUR
    shipper = SegmentShipper(segs, catalog=db)
    written = []
    for start in (old, old + 60 * SEC, T0, T0 + 60 * SEC, T0 + 120 * SEC, NOW.replace(minute=1), NOW.replace(minute=2)):
        written += _write(segs, start, 10, db)
        assert shipper.ship().shipped == 1  # one object per round and partition
    assert len(_remote(segs)) == 7

    kept, merged = maintain(segs, "d", catalog=db, retention_days=1, compact_below_rows=1000, now=NOW)
    assert kept is not None and (kept.partitions, kept.segments, kept.rows) == (1, 2, 20)
    assert (merged.partitions, merged.merged, merged.written, merged.rows) == (1, 3, 1, 30)  # the open hour stays
    assert len(_remote(segs)) == 3
    assert read_records(segs, "d").request_id.tolist() == written[20:]
    assert sorted(s["path"] for s in db.list_segments("d")) == sorted(segs.url_of(p) for p in _remote(segs))

    later = NOW + 2 * HOUR
    assert compact(segs, "d", catalog=db, now=later).written == 1  # the hour closed meanwhile
    r = apply_retention(segs, "d", older_than=timedelta(0), catalog=db, now=later)
    assert (r.partitions, r.segments, r.rows) == (2, 2, 50)
    assert _remote(segs) == [] and db.list_segments("d") == [] and count_records(segs, "d") == 0


def test_an_interrupted_remote_compaction_is_read_once_and_finished(
    segs: SegmentStore, db: Store, tmp_path: Path
) -> None:
    shipper = SegmentShipper(segs, catalog=db)
    ids = _write(segs, T0, 10, db)
    shipper.ship()
    ids += _write(segs, T0 + 60 * SEC, 10, db)
    shipper.ship()
    sources = _remote(segs)
    # a compaction that crashed right after uploading its merged segment (the commit point)
    work = tmp_path / "work" / partition_dirs(T0)
    work.mkdir(parents=True)
    local = []
    for p in sources:
        segs.fs.get_file(p, str(work / p.rsplit("/", 1)[-1]))
        local.append(work / p.rsplit("/", 1)[-1])
    *_, merged = _merge("d", work, local, None)
    upload(segs, merged, f"d/{partition_dirs(T0)}/{merged.name}")
    assert len(_remote(segs)) == 3
    assert read_records(segs, "d").request_id.tolist() == ids  # the sources are left out: every row once

    r = compact(segs, "d", catalog=db, now=NOW)
    assert (r.recovered, r.merged) == (2, 0)
    assert [p.rsplit("/", 1)[-1] for p in _remote(segs)] == [merged.name]
    assert [s["path"] for s in db.list_segments("d")] == [segs.url_of(_remote(segs)[0])]
    assert read_records(segs, "d").request_id.tolist() == ids


def test_an_unreachable_object_store_loses_nothing_and_shipping_recovers(
    tmp_path: Path, s3_url: str, s3_storage_options: dict[str, Any], db: Store
) -> None:
    import s3fs

    from mlpilot.errors import Unavailable

    # 1. a wrong endpoint: nothing shipped, everything still read from the local directory … except the remote
    refused = {**s3_storage_options, **REFUSED}
    bad = SegmentStore(tmp_path / "logs", f"{s3_url}/t-{uuid.uuid4().hex[:8]}", refused)
    ids = _write(bad, T0, 30, db)
    report = SegmentShipper(bad, catalog=db).ship()
    assert (report.shipped, report.failures, report.pending) == (0, 1, 1)
    assert "127.0.0.1:9" in str(report.error) and len(_local(bad)) == 1
    with pytest.raises(Unavailable, match="object storage at s3://"):
        read_records(bad, "d")  # a query must not answer without the shipped part

    # 2. a bucket that does not exist yet: the thread retries with backoff and ships once it is created
    bucket = f"mlpilot-late-{uuid.uuid4().hex[:8]}"
    late = SegmentStore(tmp_path / "logs", f"s3://{bucket}/logs", s3_storage_options)
    shipper = SegmentShipper(late, catalog=db, every_s=0.1, max_backoff_s=0.3)
    shipper.start()
    try:
        _wait(lambda: shipper.failures >= 3)
        assert shipper.pending == 1 and shipper.shipped == 0 and "bucket does not exist" in str(shipper.last_error)
        assert read_records(late, "d").request_id.tolist() == ids  # the local copy is kept and read
        ids += _write(late, T0 + 60 * SEC, 5, db)
        s3fs.S3FileSystem(skip_instance_cache=True, **s3_storage_options).call_s3("create_bucket", Bucket=bucket)
        _wait(lambda: shipper.pending == 0)
    finally:
        shipper.stop()
    # one object, or two when the fresh segment was left to the next round (sealed less than 2 s before)
    assert _local(late) == [] and shipper.shipped == len(_remote(late)) in (1, 2)
    assert read_records(late, "d").request_id.tolist() == ids
    assert {s["path"].startswith(f"s3://{bucket}/") for s in db.list_segments("d")} == {True}
    assert sum(s["rows"] for s in db.list_segments("d")) == len(ids)


def _wait(condition: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_settings_choose_the_remote_and_its_options(tmp_path: Path) -> None:
    from pydantic import ValidationError

    s = Settings(home=tmp_path, artifacts={"storage_options": {"key": "a"}}, logs={"remote": "s3://b/logs/"})
    store = s.log_segments()
    assert (store.local, store.remote, store.storage_options) == (tmp_path / "logs", "s3://b/logs", {"key": "a"})
    own = Settings(
        logs={"remote": "s3://b/l", "storage_options": {"key": "b"}}, artifacts={"storage_options": {"k": 1}}
    )
    assert own.log_segments().storage_options == {"key": "b"}
    assert Settings(home=tmp_path).log_segments().remote == ""
    with pytest.raises(ValidationError, match="must be a URL"):
        Settings(logs={"remote": "/var/logs"})


# ---------------------------------------------------------------------------------------------- the platform


def _env(monkeypatch: pytest.MonkeyPatch, remote: str, options: dict[str, Any]) -> None:
    monkeypatch.setenv("MLPILOT_LOGS__REMOTE", remote)
    monkeypatch.setenv("MLPILOT_LOGS__STORAGE_OPTIONS", json.dumps(options))
    monkeypatch.setenv("MLPILOT_LOGS__SHIP_EVERY_S", "0.2")
    monkeypatch.setenv("MLPILOT_LOGS__FLUSH_INTERVAL_S", "0.1")


def _shipped(c: Client, rows: int) -> None:
    """Wait until ``rows`` rows are logged and none is left in the local directory."""
    local = c._platform.logs.local
    _wait(
        lambda: not list(local.glob("*/dt=*/hour=*/seg-*.parquet")) and count_records(c._platform.logs, "iris") >= rows
    )


def test_the_platform_reads_shipped_segments_feedback_drift_and_dashboard(
    tmp_path: Path, s3_root: str, s3_storage_options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklearn.linear_model import LogisticRegression

    from tests.factories import iris_frame

    _env(monkeypatch, s3_root, s3_storage_options)
    X, y = iris_frame()
    with Client(home=tmp_path / "home") as c:
        v = c.register_model("iris", LogisticRegression(max_iter=300).fit(X, y), sample=X.head(3))
        c.deploy("iris", v.ref)
        c.register_dataset("iris-ref", X, bind_to=v.ref)
        start = datetime.now(timezone.utc) - timedelta(seconds=1)
        preds = [c.predict("iris", X.iloc[i : i + 10]) for i in range(0, 150, 10)]
        _shipped(c, 150)
        assert all(p.startswith(s3_root) for p in (s["path"] for s in c._platform.store.list_segments("iris")))

        assert len(c.logs("iris", limit=1000)) == 150  # the logs API
        labels = [{"request_id": p.request_id, "row": r, "label": int(y.iloc[i * 10 + r])}
                  for i, p in enumerate(preds) for r in range(10)]  # fmt: skip
        assert c.feedback("iris", labels) == 150  # checked against the logged predictions, on S3
        joined = c._platform.feedback.joined("iris")
        assert len(joined) == 150 and joined.has_label.all()
        assert (joined["out.predict"].to_numpy() == joined["label"].astype(int).to_numpy()).mean() > 0.8
        drift = c.drift("iris", since=start.isoformat())
        assert drift["current_rows"] == 150 and drift["result"]["is_drift"] is False
        series = c._json("GET", "/ui/deployments/iris/series", params={"window_s": 600, "buckets": 10})
        assert series["summary"]["overall"]["requests"] == 15  # requests, not rows
        metrics = c._http.get("/metrics").text
        assert "mlpilot_log_segments_shipped_total" in metrics and "mlpilot_log_segments_pending 0.0" in metrics


def test_a_restart_ships_the_segments_the_last_process_could_not(
    tmp_path: Path, s3_root: str, s3_storage_options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklearn.linear_model import LogisticRegression

    from tests.factories import iris_frame

    X, y = iris_frame()
    home = tmp_path / "home"
    _env(monkeypatch, s3_root, {**s3_storage_options, **REFUSED})
    with Client(home=home) as c:
        c.register_model("iris", LogisticRegression(max_iter=300).fit(X, y), sample=X.head(3))
        c.deploy("iris", "iris:1")
        for i in range(0, 40, 10):
            c.predict("iris", X.iloc[i : i + 10])
    pending = list((home / "logs").glob("iris/dt=*/hour=*/seg-*.parquet"))
    assert pending and sum(s["rows"] for s in _catalogued(home)) == 40  # kept and catalogued locally

    _env(monkeypatch, s3_root, s3_storage_options)  # fixed
    with Client(home=home) as c:
        c.predict("iris", X.iloc[40:45])  # starts the data plane: its shipper ships what was left first
        _shipped(c, 45)
        assert len(c.logs("iris", limit=1000)) == 45
        catalogued = c._platform.store.list_segments("iris")
        assert sum(s["rows"] for s in catalogued) == 45 and all(s["path"].startswith("s3://") for s in catalogued)


def _catalogued(home: Path) -> list[dict[str, Any]]:
    store = Store.from_url(f"sqlite:///{home / 'mlpilot.db'}", SystemClock())
    try:
        return store.list_segments("iris")
    finally:
        store.close()


def test_segment_catalogue_records_survive_a_catalogue_outage(segs: SegmentStore, db: Store) -> None:
    """Shipping is upload → catalogue → delete: a catalogue failure keeps the local copy, the next round finishes."""
    ids = _write(segs, T0, 10, db)

    class Down:
        def replace_segments(self, *args: Any) -> None:
            raise OSError("store down")

        def delete_segments(self, paths: Any) -> int:
            raise OSError("store down")

    report = SegmentShipper(segs, catalog=Down()).ship()
    assert (report.shipped, report.failures, report.pending) == (0, 1, 1) and len(_remote(segs)) == 1
    assert read_records(segs, "d").request_id.tolist() == ids  # local and remote: read once
    assert SegmentShipper(segs, catalog=db).ship().shipped == 1
    assert [s["path"] for s in db.list_segments("d")] == [segs.url_of(_remote(segs)[0])]


def test_a_data_plane_ships_to_the_shared_store_where_the_control_plane_reads(
    tmp_path: Path, s3_root: str, s3_storage_options: dict[str, Any]
) -> None:
    """``mlpilot serve`` has no store (nothing catalogued) but the same remote: its records reach the control plane's
    queries, whose own log directory never held them."""
    import asyncio

    from mlpilot.dataserver import DataServer
    from mlpilot.settings import LogSettings, ServerSettings

    logs = LogSettings(remote=s3_root, storage_options=s3_storage_options, ship_every_s=0.1)
    settings = Settings(home=tmp_path / "dp", server=ServerSettings(grpc=False), logs=logs)
    ids = _write(settings.log_segments(), T0, 25)  # left by the data plane's previous run

    async def run() -> None:
        server = DataServer(settings, "http://127.0.0.1:9")  # its control plane is away: it serves anyway
        assert server.shipper is not None and server.shipper.catalog is None
        await server.start()
        try:
            await asyncio.to_thread(_wait, lambda: server.shipper is not None and server.shipper.shipped == 1)
        finally:
            await server.stop()
            server.close()

    asyncio.run(run())
    control = SegmentStore(tmp_path / "control-plane" / "logs", s3_root, s3_storage_options)
    assert read_records(control, "d").request_id.tolist() == ids


def test_queries_see_every_row_once_while_segments_are_shipped_and_compacted(segs: SegmentStore, db: Store) -> None:
    import threading

    ids = []
    for hour in range(3):
        for k in range(6):
            ids += _write(segs, T0 - hour * HOUR + k * 60 * SEC, 10, db)
    done = threading.Event()
    problems: list[BaseException] = []

    def maintain_in_background() -> None:
        try:
            SegmentShipper(segs, catalog=db, target_rows=10).ship()  # 18 objects, one per segment
            compact(segs, "d", catalog=db, min_rows=1000, now=NOW)  # then merged on the object store
        except BaseException as exc:  # reported by the main thread
            problems.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=maintain_in_background)
    thread.start()
    reads = 0
    while not done.is_set() or reads < 3:
        assert count_records(segs, "d") == len(ids)
        reads += 1
    thread.join()
    assert not problems and reads >= 3
    assert len(_remote(segs)) == 3 and _local(segs) == []
    assert sorted(read_records(segs, "d").request_id) == sorted(ids)
    assert sum(s["rows"] for s in db.list_segments("d")) == len(ids)
