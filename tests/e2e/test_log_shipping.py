"""A real ``mlpilot up`` with its request log shipped to S3 (moto's server), configured by the environment only:
predictions are logged, sealed, shipped and queried back through the API; after a restart with the local log
directory gone, every record is still answered — from the object store."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlpilot import Client
from mlpilot.errors import InvalidArgument
from tests.factories import sklearn_case
from tests.helpers import ServerProcess

pytestmark = pytest.mark.slow


def _predict_when_loaded(c: Client, X: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return c.predict("iris", X)
        except InvalidArgument as exc:
            if "unknown model" not in exc.message or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _until(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_records_are_shipped_to_s3_and_queried_back_through_the_api(
    s3_root: str, s3_storage_options: dict[str, Any], tmp_path: Path
) -> None:
    import pyarrow.parquet as pq
    import s3fs

    env = {
        "MLPILOT_LOGS__REMOTE": s3_root,
        "MLPILOT_LOGS__STORAGE_OPTIONS": json.dumps(s3_storage_options),
        "MLPILOT_LOGS__SHIP_EVERY_S": "0.5",
    }
    home = tmp_path / "home"
    fs = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False, **s3_storage_options)
    prefix = f"{s3_root.removeprefix('s3://')}/iris"

    def shipped_rows() -> int:
        objects = [p for p in fs.find(prefix) if p.endswith(".parquet")] if fs.exists(prefix) else []
        return sum(pq.read_metadata(fs.open(p)).num_rows for p in objects)

    def local_segments() -> list[Path]:
        return list((home / "logs").glob("iris/dt=*/hour=*/seg-*.parquet"))

    case = sklearn_case()
    server = ServerProcess(home, extra_env=env, args=("--no-grpc",))
    try:
        with Client(url=server.url) as c:
            c.register_model("iris", case.save(tmp_path), sample=case.X.head(3), trust_pickle=True)
            c.deploy("iris", "iris:1")
            _predict_when_loaded(c, case.X.head(1))
            ids = [c.predict("iris", case.X.iloc[i % 20 : i % 20 + 5]).request_id for i in range(0, 100, 5)]
            _until(lambda: shipped_rows() == 101 and not local_segments())  # sealed, shipped, local copies gone
            logged = c.logs("iris", limit=1000)
            assert len(logged) == 101 and set(ids) <= set(logged["request_id"])
            metrics = httpx.get(f"{server.url}/metrics", timeout=5).text
            shipped = [line for line in metrics.splitlines() if line.startswith("mlpilot_log_segments_shipped_total")]
            assert shipped and float(shipped[0].split()[-1]) >= 1
            assert "mlpilot_log_segments_pending 0.0" in metrics
    finally:
        server.stop()

    shutil.rmtree(home / "logs")  # nothing of the log is left on this host
    server = ServerProcess(home, extra_env=env, args=("--no-grpc",))
    try:
        with Client(url=server.url) as c:
            logged = c.logs("iris", limit=1000)
            assert len(logged) == 101 and set(ids) <= set(logged["request_id"])
            series = httpx.get(
                f"{server.url}/api/v1/ui/deployments/iris/series", params={"window_s": 3600}, timeout=30
            ).json()
            assert series["summary"]["overall"]["requests"] == 21  # requests, not rows
    finally:
        server.stop()
