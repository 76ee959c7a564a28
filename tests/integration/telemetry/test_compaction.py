"""Compaction and retention of the request log on real segment files and a real store: every row exactly once in
queries before, during (crashes at each step, a killed process, concurrent readers) and after."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlpilot.clock import SystemClock
from mlpilot.errors import Conflict, InvalidArgument, NotFound
from mlpilot.serving.dataplane import InferenceRecord
from mlpilot.store import Store
from mlpilot.telemetry import compaction
from mlpilot.telemetry.compaction import apply_retention, compact, live_files, merged_sources, recover
from mlpilot.telemetry.query import count_records, read_records
from mlpilot.telemetry.reqlog import RequestLog, Segment
from tests.conftest import StoreMaker

NOW = datetime.now(timezone.utc)
HOUR = timedelta(hours=1)


def _hour(hours_ago: int) -> float:
    """A time in the middle of the hour ``hours_ago`` hours before the current one."""
    start = NOW.replace(minute=0, second=0, microsecond=0) - hours_ago * HOUR
    return (start + timedelta(minutes=30)).timestamp()


class Log:
    """Segments written by the real writer, catalogued in a real store like the server does."""

    def __init__(self, root: Path, store: Store | None) -> None:
        self.root, self.store, self.n = root, store, 0

    def catalog(self, seg: Segment) -> None:
        if self.store is not None:
            self.store.catalog(seg)

    def segments(self, hours_ago: int, count: int, per_segment: int = 50, deployment: str = "d", **kw: Any) -> None:
        """``count`` segments (one flush each) in the hour ``hours_ago`` hours back."""
        rng = np.random.default_rng(self.n)
        for _ in range(count):
            log = RequestLog(self.root, on_segment=self.catalog)
            for i in range(per_segment):
                self.n += 1
                log.append(
                    InferenceRecord(
                        ts=_hour(hours_ago) + i * 0.01,
                        request_id=f"r{self.n}",
                        deployment=deployment,
                        variant=kw.get("variant", "ab"[i % 2]),
                        model="m:1",
                        status="ok",
                        latency_s=float(rng.gamma(2.0, 0.005)) if kw.get("varied_latency") else 0.001,
                        inputs=kw.get("inputs", {"x": rng.normal(size=(2, 3))}),
                        outputs=kw.get("outputs", {"p": np.array([self.n, -self.n])}),
                    )
                )
            log.start()
            log.stop()

    def files(self, deployment: str = "d") -> list[Path]:
        return sorted((self.root / deployment).rglob("seg-*.parquet"))


@pytest.fixture
def store(sqlite_store_factory: StoreMaker) -> Store:
    return sqlite_store_factory(SystemClock())


@pytest.fixture
def log(tmp_path: Path, store: Store) -> Log:
    return Log(tmp_path / "logs", store)


def _rows(root: Path, deployment: str = "d") -> pd.DataFrame:
    df = read_records(root, deployment)
    return df.sort_values(["request_id", "row"]).reset_index(drop=True)


def _catalog_matches_disk(store: Store, log: Log, deployment: str = "d") -> None:
    """The catalogue lists exactly the live segment files, with their row counts."""
    import pyarrow.parquet as pq

    catalogued = {s["path"]: s["rows"] for s in store.list_segments(deployment)}
    live = [f for d in {f.parent for f in log.files(deployment)} for f in live_files(sorted(d.glob("seg-*.parquet")))]
    assert catalogued == {str(f): pq.read_metadata(f).num_rows for f in live}


# ---------------------------------------------------------------------------------------------- compaction


def test_compaction_merges_closed_hours_and_keeps_every_row(log: Log, store: Store) -> None:
    for hours_ago in (5, 3, 2):
        log.segments(hours_ago, 4)
    log.segments(0, 3)  # the current hour is still being written: left alone
    before = _rows(log.root)
    assert len(before) == 15 * 50 * 2 and len(log.files()) == 15

    r = compact(log.root, "d", catalog=store, min_rows=10_000, now=NOW)  # NOW: the hour may have turned since

    assert (r.partitions, r.merged, r.written, r.rows) == (3, 12, 3, 12 * 100)
    assert r.bytes_after < r.bytes_before
    after = _rows(log.root)
    pd.testing.assert_frame_equal(after, before)  # same rows, same values, same column types
    assert len(log.files()) == 3 + 3
    current = log.root / "d" / datetime.fromtimestamp(_hour(0), timezone.utc).strftime("dt=%Y-%m-%d/hour=%H")
    assert len(list(current.glob("seg-*.parquet"))) == 3
    _catalog_matches_disk(store, log)
    assert sum(s["rows"] for s in store.list_segments("d")) == len(after)
    # Idempotent: nothing left to merge.
    assert compact(log.root, "d", catalog=store, min_rows=10_000, now=NOW).merged == 0
    # Late segments of a compacted hour are merged with the merged segment by the next run.
    log.segments(3, 2)
    assert compact(log.root, "d", catalog=store, min_rows=10_000, now=NOW).merged == 3
    assert len(_rows(log.root)) == len(before) + 200
    _catalog_matches_disk(store, log)


def test_segments_with_different_columns_are_merged_by_name(log: Log, store: Store) -> None:
    log.segments(2, 2, variant="a", inputs={"x": np.ones((1, 3))})
    log.segments(2, 2, variant="b", inputs={"x": np.ones((1, 3)), "extra": np.zeros(1)})
    log.segments(2, 1, variant="c", inputs=None, outputs={"label": np.array(["cat"])})
    before = _rows(log.root)
    r = compact(log.root, "d", catalog=store, min_rows=10_000)
    assert (r.merged, r.written) == (5, 1)
    pd.testing.assert_frame_equal(_rows(log.root), before)
    assert before["in.extra"].notna().sum() == 100 and set(before["out.label"].dropna()) == {"cat"}


def test_segments_of_the_previous_writer_format_merge_with_new_ones(log: Log, store: Store) -> None:
    """Segments written before the constant columns were dictionary arrays (status a plain string) still merge."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    log.segments(2, 3)
    old = log.files()[0]
    table = pq.read_table(old)
    plain = table.cast(
        pa.schema([pa.field(f.name, f.type.value_type) if pa.types.is_dictionary(f.type) else f for f in table.schema])
    )
    pq.write_table(plain, old.with_name(old.name.replace(".parquet", "0.parquet")), compression="zstd")
    old.unlink()
    before = _rows(log.root)
    assert (compact(log.root, "d", min_rows=10_000).merged, len(log.files())) == (3, 1)
    pd.testing.assert_frame_equal(_rows(log.root), before)


def test_only_small_segments_are_merged_up_to_the_target_size(log: Log, store: Store) -> None:
    log.segments(2, 1, per_segment=300)  # 600 rows: big enough to stay
    log.segments(2, 6, per_segment=50)  # 100 rows each
    before = _rows(log.root)
    r = compact(log.root, "d", catalog=store, min_rows=200, target_rows=250)
    assert (r.merged, r.written) == (6, 3)  # runs of 2 x 100 rows
    files = log.files()
    assert len(files) == 4 and sum(compaction.is_merged(f.name) for f in files) == 3
    pd.testing.assert_frame_equal(_rows(log.root), before)
    _catalog_matches_disk(store, log)


def test_the_cutoff_decides_which_hours_are_closed(log: Log, store: Store) -> None:
    log.segments(30, 2)
    log.segments(2, 2)
    r = compact(log.root, "d", catalog=store, older_than=timedelta(hours=24), min_rows=10_000)
    assert (r.partitions, r.merged) == (1, 2)
    hour_end = NOW.replace(minute=0, second=0, microsecond=0) - HOUR  # when the hour 2 back ended
    assert (
        compact(log.root, "d", catalog=store, older_than=hour_end - timedelta(seconds=1), min_rows=10_000).merged == 0
    )
    r = compact(log.root, "d", catalog=store, older_than=hour_end, min_rows=10_000)
    assert (r.partitions, r.merged) == (1, 2)


# ---------------------------------------------------------------------------------------------- crash safety


def _crash_at(monkeypatch: pytest.MonkeyPatch, step: str, after: int = 0) -> None:
    """Make compaction step ``step`` fail (after doing ``after`` units of its work, for source deletion)."""
    original = getattr(compaction, step)

    def failing(*args: Any) -> Any:
        if step == "_remove_sources" and after:
            original(args[0], args[1][:after])
        raise RuntimeError(f"crash in {step}")

    monkeypatch.setattr(compaction, step, failing)


@pytest.mark.parametrize(
    ("step", "after"),
    [("_publish", 0), ("_catalogue", 0), ("_remove_sources", 0), ("_remove_sources", 2)],
    ids=["before-commit", "after-commit", "before-deleting-sources", "half-way-deleting-sources"],
)
def test_a_crash_at_any_step_loses_and_duplicates_nothing(
    log: Log, store: Store, monkeypatch: pytest.MonkeyPatch, step: str, after: int
) -> None:
    log.segments(2, 4)
    before = _rows(log.root)
    with monkeypatch.context() as m:
        _crash_at(m, step, after)
        with pytest.raises(RuntimeError, match="crash"):
            compact(log.root, "d", catalog=store, min_rows=10_000)
    # Queries right after the crash: every row once.
    pd.testing.assert_frame_equal(_rows(log.root), before)
    assert count_records(log.root, "d") == len(before)
    assert not list(log.root.rglob(".seg-*.tmp"))  # a failed merge removes its own temporary file
    # The next run (or recover()) finishes the interrupted merge; the catalogue ends up matching the files.
    r = compact(log.root, "d", catalog=store, min_rows=10_000)
    assert r.recovered == (0 if step == "_publish" else 4 - after)
    assert len(log.files()) == 1
    pd.testing.assert_frame_equal(_rows(log.root), before)
    _catalog_matches_disk(store, log)


_KILLED = """
import os, sys
from mlpilot.store import Store
from mlpilot.telemetry import compaction

step = sys.argv[3]
original = getattr(compaction, step)

def die(*args):
    if step == "_remove_sources":
        original(args[0], args[1][:1])
    os._exit(9)  # like kill -9: no cleanup, no finally

setattr(compaction, step, die)
store = Store.from_url(sys.argv[2])
compaction.compact(sys.argv[1], "d", catalog=store, min_rows=10_000)
"""


@pytest.mark.parametrize("step", ["_publish", "_catalogue", "_remove_sources"])
def test_a_killed_compaction_is_finished_by_recovery(log: Log, store: Store, tmp_path: Path, step: str) -> None:
    log.segments(2, 3)
    before = _rows(log.root)
    url = str(store.engine.url)
    done = subprocess.run([sys.executable, "-c", _KILLED, str(log.root), url, step], capture_output=True, text=True)
    assert done.returncode == 9, done.stderr
    pd.testing.assert_frame_equal(_rows(log.root), before)  # no duplicate, no loss, before any recovery
    if step == "_publish":
        assert len(list(log.root.rglob(".seg-*.tmp"))) == 1  # the dead process's half-done merge, invisible
    removed = recover(log.root, "d", catalog=store)
    assert removed == {"_publish": 1, "_catalogue": 3, "_remove_sources": 2}[step]
    assert not list(log.root.rglob(".seg-*.tmp"))
    pd.testing.assert_frame_equal(_rows(log.root), before)
    _catalog_matches_disk(store, log)


def test_readers_during_compaction_see_every_row_once(log: Log, store: Store) -> None:
    for hours_ago in range(2, 8):
        log.segments(hours_ago, 5, per_segment=40)
    expected = count_records(log.root, "d")
    seen: list[int] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.append(count_records(log.root, "d"))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        compact(log.root, "d", catalog=store, min_rows=10_000)
    finally:
        stop.set()
        reader.join()
    assert seen and set(seen) == {expected}


def test_merged_segments_name_their_sources(log: Log, store: Store) -> None:
    log.segments(2, 3)
    sources = [f.name for f in log.files()]
    compact(log.root, "d", catalog=store, min_rows=10_000)
    (merged,) = log.files()
    assert compaction.is_merged(merged.name) and list(merged_sources(merged)) == sources


# ---------------------------------------------------------------------------------------------- retention


def test_retention_drops_exactly_the_old_partitions(log: Log, store: Store) -> None:
    for hours_ago in (72, 50, 26, 23, 2, 0):
        log.segments(hours_ago, 2)
    compact(log.root, "d", catalog=store, min_rows=10_000, older_than=timedelta(hours=49))  # merged ones too
    keep = _rows(log.root)
    keep = keep[keep.ts >= pd.Timestamp(_hour(23), unit="s", tz="UTC") - timedelta(minutes=30)]
    r = apply_retention(log.root, "d", older_than=timedelta(hours=24), catalog=store)
    # Partitions that ended before now - 24h: the hours 72, 50 and 26 back; the hour 23 back straddles the cutoff.
    assert (r.partitions, r.rows) == (3, 3 * 200)
    assert r.segments == 1 + 1 + 2
    pd.testing.assert_frame_equal(_rows(log.root).reset_index(drop=True), keep.reset_index(drop=True))
    assert len(list((log.root / "d").glob("dt=*/hour=*"))) == 3
    assert all(any(day.glob("hour=*")) for day in (log.root / "d").glob("dt=*"))  # emptied days are removed
    _catalog_matches_disk(store, log)
    assert min(s["min_ts"] for s in store.list_segments("d")) >= NOW - 25 * HOUR
    # Idempotent.
    assert apply_retention(log.root, "d", older_than=timedelta(hours=24), catalog=store).partitions == 0


def test_retention_without_a_catalog_and_of_everything_closed(tmp_path: Path) -> None:
    log = Log(tmp_path / "logs", None)
    log.segments(5, 1)
    log.segments(0, 1)
    r = apply_retention(log.root, "d", older_than=timedelta(0), now=NOW)  # NOW: the hour may have turned since
    assert r.partitions == 1  # the current hour has not ended
    assert count_records(log.root, "d") == 100


# ---------------------------------------------------------------------------------------------- bad input


def test_bad_input_gives_clear_errors(log: Log, store: Store) -> None:
    log.segments(2, 2)
    with pytest.raises(NotFound, match="'ghost' has no request log"):
        compact(log.root, "ghost", catalog=store)
    with pytest.raises(NotFound, match="'ghost' has no request log"):
        apply_retention(log.root, "ghost", older_than=timedelta(days=1))
    assert compact(log.root, "ghost", missing_ok=True).merged == 0
    with pytest.raises(InvalidArgument, match="must not be negative"):
        apply_retention(log.root, "d", older_than=timedelta(days=-1))
    with pytest.raises(InvalidArgument, match="must not be negative"):
        compact(log.root, "d", older_than=timedelta(hours=-2))
    with pytest.raises(InvalidArgument, match="in the future"):
        apply_retention(log.root, "d", older_than=NOW + HOUR)
    with pytest.raises(InvalidArgument, match="bad deployment name"):
        compact(log.root, "../d")
    with pytest.raises(InvalidArgument, match="min_rows"):
        compact(log.root, "d", min_rows=1)
    with pytest.raises(InvalidArgument, match="target_rows"):
        compact(log.root, "d", min_rows=100, target_rows=10)
    assert len(log.files()) == 2  # nothing was touched


@pytest.fixture
def held_lock(log: Log) -> Iterator[None]:
    log.segments(2, 2)
    with compaction._exclusive(log.root / "d"):
        yield


@pytest.mark.usefixtures("held_lock")
def test_one_maintenance_run_per_deployment_at_a_time(log: Log) -> None:
    with pytest.raises(Conflict, match="another compaction or prune"):
        compact(log.root, "d", min_rows=10_000)
    with pytest.raises(Conflict):
        apply_retention(log.root, "d", older_than=timedelta(days=1))


# ---------------------------------------------------------------------------------------------- the store


def test_store_replaces_and_deletes_segments_in_one_transaction(store_factory: StoreMaker) -> None:
    store = store_factory(SystemClock())
    t = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for i in range(3):
        store.add_segment("d", f"/l/s{i}", 10, 100, t, t + HOUR)
    store.add_segment("e", "/l/other", 10, 100, t, t)
    store.replace_segments("d", ["/l/s0", "/l/s1"], "/l/m", 20, 150, t, t + HOUR)
    store.replace_segments("d", ["/l/s0", "/l/s1"], "/l/m", 20, 150, t, t + HOUR)  # a replay changes nothing
    assert sorted((s["path"], s["rows"]) for s in store.list_segments("d")) == [("/l/m", 20), ("/l/s2", 10)]
    assert store.delete_segments(["/l/m", "/l/nope", *[f"/l/x{i}" for i in range(1200)]]) == 1
    assert [s["path"] for s in store.list_segments("d")] == ["/l/s2"]
    assert [s["path"] for s in store.list_segments("e")] == ["/l/other"]


def test_maintain_prunes_then_compacts(log: Log, store: Store) -> None:
    log.segments(50, 2)
    log.segments(3, 3)
    kept, merged = compaction.maintain(log.root, "d", catalog=store, retention_days=1, compact_below_rows=10_000)
    assert kept is not None and (kept.partitions, kept.rows) == (1, 200)
    assert (merged.partitions, merged.merged, merged.rows) == (1, 3, 300)
    assert count_records(log.root, "d") == 300
    _catalog_matches_disk(store, log)
    assert compaction.maintain(log.root, "nothing-yet", catalog=store, retention_days=1)[1].merged == 0


def test_the_server_maintains_every_deployments_log(tmp_path: Path) -> None:
    """`mlpilot up`'s periodic job: retention by the setting, then compaction, for every deployment."""
    from sklearn.linear_model import LogisticRegression

    from mlpilot import Client
    from mlpilot.app import build_platform
    from mlpilot.server import PlatformServer
    from mlpilot.settings import Settings

    settings = Settings(home=tmp_path / "home", logs={"root": str(tmp_path / "logs"), "retention_days": 0.5})
    with Client(settings=settings) as c:
        X = np.random.default_rng(0).normal(size=(20, 3))
        v = c.register_model("m", LogisticRegression().fit(X, X[:, 0] > 0), sample=X[:2])
        c.deploy("d", v.ref)
    platform = build_platform(settings)
    try:
        log = Log(tmp_path / "logs", platform.store)
        log.segments(30, 2)  # older than the retention
        log.segments(2, 3)
        before = count_records(log.root, "d")
        PlatformServer(platform).maintain_logs()
        hours = {f.parent.name: f for f in log.files()}
        assert len(log.files()) == 1 and len(hours) == 1  # the old hour pruned, the 3 segments merged into one
        assert count_records(log.root, "d") == before - 2 * 100  # 50 requests of 2 rows per segment
        _catalog_matches_disk(platform.store, log)
    finally:
        platform.close()


def test_a_sampled_read_is_a_bounded_repeatable_uniform_sample_in_time_order(log: Log) -> None:
    """What monitors read of a large window (``monitors.max_rows``): at most ``sample`` rows, all of the window,
    the same ones on every read, spread over the window, in time order."""
    log.segments(2, 4, per_segment=250)  # 1,000 requests of 2 rows
    every = read_records(log.root, "d")
    assert len(every) == 2000
    sampled = read_records(log.root, "d", sample=300)
    assert len(sampled) == 300
    pairs = set(zip(every["request_id"], every["row"], strict=True))
    assert set(zip(sampled["request_id"], sampled["row"], strict=True)) <= pairs
    assert sampled["ts"].is_monotonic_increasing
    again = read_records(log.root, "d", sample=300)
    assert again["request_id"].tolist() == sampled["request_id"].tolist()  # repeatable
    # uniform: each of the four segments (a quarter of the rows each) gives a fair share
    per_segment = sampled.groupby(sampled["request_id"].str[1:].astype(int).sub(1) // 250).size()
    assert len(per_segment) == 4 and per_segment.min() > 40, per_segment.to_dict()
    assert len(read_records(log.root, "d", sample=5000)) == 2000  # a sample larger than the window: all of it


def test_a_sampled_read_of_some_columns_reads_only_those(log: Log) -> None:
    """Drift and quality monitors sample only ``in.*`` and ``out.*`` (and ts, row): a prefix stands for its columns,
    the sample is still bounded and in time order, and an unknown column is still refused."""
    log.segments(2, 4, per_segment=250)
    every = read_records(log.root, "d")
    inputs = sorted(c for c in every.columns if c.startswith(("in.", "out.")))
    assert len(inputs) >= 2 and "request_id" in every.columns
    sampled = read_records(log.root, "d", sample=300, columns=["ts", "row", "in.*", "out.*"])
    assert sorted(sampled.columns) == sorted(["ts", "row", *inputs]) and len(sampled) == 300
    assert sampled["ts"].is_monotonic_increasing
    out = next(c for c in inputs if c.startswith("out."))
    assert set(sampled[out]) <= set(every[out])
    # the time order is kept even when ts and row are not asked for
    just_inputs = read_records(log.root, "d", sample=300, columns=["out.*"])
    assert list(just_inputs.columns) == [c for c in inputs if c.startswith("out.")] and len(just_inputs) == 300
    assert read_records(log.root, "d", columns=["in.*"]).shape == (2000, sum(c.startswith("in.") for c in inputs))
    assert read_records(log.root, "d", columns=["nothing.*"]).empty
    with pytest.raises(InvalidArgument, match="unknown log columns"):
        read_records(log.root, "d", sample=300, columns=["in.*", "nope"])


def test_traffic_stats_in_duckdb_match_the_traffic_outcome_of_the_rows(log: Log) -> None:
    """The traffic monitor aggregates in DuckDB (no rows leave it); same numbers as computing over the rows."""
    from mlpilot.monitors import kinds
    from mlpilot.records import MonitorKind, MonitorSpec
    from mlpilot.telemetry.query import traffic_stats

    log.segments(2, 3, per_segment=40)
    since, until = NOW - 4 * HOUR, NOW
    spec = MonitorSpec(kind=MonitorKind.TRAFFIC, window=timedelta(hours=4), min_rows=1)
    from_rows = kinds.traffic_outcome(spec, read_records(log.root, "d", since=since, until=until, shadow=False), 3600)
    stats = traffic_stats(log.root, "d", since, until)
    assert (stats["requests"], stats["rows"], stats["errors"]) == (120, 240, 0)
    from_stats = kinds.traffic_outcome_from_stats(spec, stats, 3600)
    assert from_stats.detail.pop("top_errors") == from_rows.detail.pop("top_errors") == {}
    assert from_stats.detail == pytest.approx(from_rows.detail)
    assert from_stats.status == from_rows.status and from_stats.message == from_rows.message
    assert traffic_stats(log.root, "d", since, until, variant="a")["requests"] == 60
    assert traffic_stats(log.root, "nope", since, until)["requests"] == 0


def test_traffic_stats_of_a_large_window_estimate_percentiles_in_bounded_memory(
    log: Log, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beyond ``EXACT_QUANTILES_UP_TO`` requests the percentiles are t-digest estimates (an exact quantile holds
    every value in memory): close to the exact ones, the counts unchanged."""
    from mlpilot.telemetry import query

    log.segments(2, 10, per_segment=100, varied_latency=True)
    since, until = NOW - 4 * HOUR, NOW
    exact = query.traffic_stats(log.root, "d", since, until)
    monkeypatch.setattr(query, "EXACT_QUANTILES_UP_TO", 10)
    estimated = query.traffic_stats(log.root, "d", since, until)
    assert {k: estimated[k] for k in ("requests", "rows", "errors")} == {
        k: exact[k] for k in ("requests", "rows", "errors")
    }
    assert estimated["latency_s"] != exact["latency_s"]  # the other path ran
    for q in (50, 95, 99):
        assert estimated["latency_s"][q] == pytest.approx(exact["latency_s"][q], rel=0.1)
