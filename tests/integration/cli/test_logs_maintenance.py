"""``mlpilot logs compact`` and ``mlpilot logs prune`` through the real console script, next to ``mlpilot logs
DEPLOYMENT`` (which must keep working as before)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from mlpilot import Client
from mlpilot.serving.dataplane import InferenceRecord
from mlpilot.store import Store
from mlpilot.telemetry.query import count_records
from mlpilot.telemetry.reqlog import RequestLog
from tests.factories import iris_frame
from tests.helpers import MLPILOT, run_cli

HOUR = 3600.0


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """A home with a deployment ``iris`` whose log has 3 small segments in each of the hours 50, 30 and 2 back."""
    from sklearn.linear_model import LogisticRegression

    home = tmp_path / "home"
    X, y = iris_frame()
    with Client(home=home) as c:
        c.register_model("iris", LogisticRegression(max_iter=300).fit(X, y), sample=X.head(3))
        c.deploy("iris", "iris:1")
    store = Store.from_url(f"sqlite:///{home / 'mlpilot.db'}")

    catalog = store.catalog

    hour_start = datetime.now(timezone.utc).timestamp() // HOUR * HOUR
    n = 0
    for hours_ago in (50, 30, 2):
        for _ in range(3):
            log = RequestLog(home / "logs", on_segment=catalog)
            for i in range(20):
                n += 1
                log.append(
                    InferenceRecord(
                        ts=hour_start - hours_ago * HOUR + 60 + n,
                        request_id=f"r{n}",
                        deployment="iris",
                        variant="default",
                        model="iris:1",
                        status="ok",
                        latency_s=0.001,
                        inputs=X.iloc[i : i + 1],
                        outputs={"predict": np.array([int(y.iloc[i])])},
                    )
                )
            log.start()
            log.stop()
    store.close()
    yield home


def _segments(home: Path) -> list[dict[str, object]]:
    store = Store.from_url(f"sqlite:///{home / 'mlpilot.db'}")
    try:
        return store.list_segments("iris")
    finally:
        store.close()


def test_logs_show_is_unchanged_next_to_the_new_subcommands(home: Path) -> None:
    rows = json.loads(run_cli("logs", "iris", "--limit", "5", "--json", home=home).stdout)
    assert len(rows) == 5 and rows[0]["request_id"] == "r180"  # newest first
    assert json.loads(run_cli("logs", "show", "iris", "--limit", "2", "--json", home=home).stdout)[0] == rows[0]
    assert "iris: 3 rows" in run_cli("logs", "--limit", "3", "iris", home=home).stdout
    helped = run_cli("logs", "--help", home=home).stdout
    assert "compact" in helped and "prune" in helped


def test_compact_merges_closed_hours_and_keeps_every_row(home: Path) -> None:
    before = count_records(home / "logs", "iris")
    out = json.loads(run_cli("logs", "compact", "iris", "--json", home=home).stdout)
    assert (out["partitions"], out["merged"], out["written"], out["rows"]) == (3, 9, 3, 180)
    assert count_records(home / "logs", "iris") == before == 180
    segments = _segments(home)
    assert len(segments) == 3 and sum(s["rows"] for s in segments) == 180  # type: ignore[misc]
    assert len(list((home / "logs" / "iris").rglob("seg-*.parquet"))) == 3
    text = run_cli("logs", "compact", "iris", home=home).stdout
    assert "merged 0 segments" in text


def test_compact_only_hours_older_than(home: Path) -> None:
    out = json.loads(run_cli("logs", "compact", "iris", "--older-than", "1d", "--json", home=home).stdout)
    assert (out["partitions"], out["merged"]) == (2, 6)
    assert count_records(home / "logs", "iris") == 180


def test_prune_deletes_the_old_partitions(home: Path) -> None:
    r = run_cli("logs", "prune", "iris", home=home, check=False)
    assert r.returncode == 1 and "retention is off" in r.stderr and "--older-than" in r.stderr
    out = json.loads(run_cli("logs", "prune", "iris", "--older-than", "40h", "--json", home=home).stdout)
    assert (out["partitions"], out["segments"], out["rows"]) == (1, 3, 60)
    assert count_records(home / "logs", "iris") == 120
    assert len(_segments(home)) == 6
    # The retention setting is the default age.
    env = {**os.environ, "MLPILOT_HOME": str(home), "MLPILOT_LOGS__RETENTION_DAYS": "1"}
    env.pop("MLPILOT_URL", None)
    done = subprocess.run([MLPILOT, "logs", "prune", "iris"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "deleted 1 hour(s), 3 segments (60 rows" in done.stdout
    assert count_records(home / "logs", "iris") == 60 and len(_segments(home)) == 3


def test_bad_input_gives_clear_errors(home: Path) -> None:
    cases = [
        (("logs", "compact", "ghost"), "deployment 'ghost' has no request log"),
        (("logs", "prune", "ghost", "--older-than", "1d"), "deployment 'ghost' has no request log"),
        (("logs", "prune", "iris", "--older-than=-5d"), "must not be negative"),
        (("logs", "prune", "iris", "--older-than", "soon"), "bad age 'soon'"),
        (("logs", "compact", "iris", "--older-than", "2999-01-01T00:00:00"), "in the future"),
    ]
    for args, needle in cases:
        r = run_cli(*args, home=home, check=False)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert needle in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
    r = run_cli("logs", "compact", "iris", home=home, url="http://127.0.0.1:9", check=False)
    assert r.returncode == 1 and "without --url" in r.stderr
    assert count_records(home / "logs", "iris") == 180 and len(_segments(home)) == 9  # nothing touched


def test_a_known_deployment_without_traffic_is_nothing_to_do(home: Path) -> None:
    with Client(home=home) as c:
        c.deploy("quiet", "iris:1")
    out = json.loads(run_cli("logs", "compact", "quiet", "--json", home=home).stdout)
    assert out["merged"] == 0
    out = json.loads(run_cli("logs", "prune", "quiet", "--older-than", "1d", "--json", home=home).stdout)
    assert out["partitions"] == 0
