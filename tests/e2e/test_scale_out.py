"""The scale-out deployment of issue 9 in one process tree: a real ``mlpilot up --executor ray --store
postgresql+psycopg://… --artifacts s3://… --artifacts-option …`` (a local Ray started by the server, a fresh
PostgreSQL schema, a moto S3 server). A model registered through the SDK lands in the bucket, its deployment in
PostgreSQL; with the server's blob cache emptied, the Ray replica loads the model from S3 and answers over OIP v2
REST. At the end, every process the server started is gone (killed by PID if its shutdown left any)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from mlpilot import Client
from mlpilot.blobs.local import digest_key
from tests.e2e.test_leader_failover import pg_schema_url  # noqa: F401  (fixture: a fresh PostgreSQL schema)
from tests.factories import iris_frame
from tests.helpers import ServerProcess
from tests.integration.executors.raytools import cmdline, descendants, kill_all, replica_pids, session_processes
from tests.s3 import option_args

pytest.importorskip("ray")
pytestmark = [pytest.mark.slow, pytest.mark.postgres]

ENV = {
    "MLPILOT_EXECUTOR__NUM_CPUS": "2",
    "MLPILOT_EXECUTOR__HEALTH_CHECK_PERIOD_S": "1",
    "MLPILOT_MONITORS__ENABLED": "false",
    "MLPILOT_ROLLOUTS__ENABLED": "false",
    "MLPILOT_LOGS__FLUSH_INTERVAL_S": "0.2",
}


@pytest.fixture
def scaled_out(
    tmp_path: Path,
    pg_schema_url: str,  # noqa: F811
    s3_root: str,
    s3_storage_options: dict[str, Any],
) -> Iterator[ServerProcess]:
    """The server; whatever it leaves of its Ray is killed at the end."""
    args = ("--no-grpc", "--executor", "ray", "--store", pg_schema_url, "--artifacts", s3_root)
    server = ServerProcess(tmp_path / "home", extra_env=ENV, args=(*args, *option_args(s3_storage_options)))
    try:
        yield server
    finally:
        tree = descendants(server.proc.pid)
        server.stop()
        kill_all(sorted(set(tree) | session_processes(server.proc.pid)))


def _infer(url: str, X: Any) -> dict[str, Any]:
    """An OIP v2 REST request, one input per column, as any KServe V2 client sends it."""
    body = {"inputs": [{"name": c, "datatype": "FP64", "shape": [len(X)], "data": X[c].tolist()} for c in X.columns]}
    deadline = time.monotonic() + 180
    while True:
        r = httpx.post(f"{url}/v2/models/iris/infer", json=body, timeout=60)
        if r.status_code == 200 or time.monotonic() > deadline:
            assert r.status_code == 200, r.text
            out: dict[str, Any] = r.json()
            return out
        time.sleep(0.5)  # the data plane picks up the deployment, then Ray starts its replica


def test_register_deploy_and_predict_on_ray_postgresql_and_s3(
    scaled_out: ServerProcess,
    pg_schema_url: str,  # noqa: F811
    s3_root: str,
    s3_storage_options: dict[str, Any],
) -> None:
    import s3fs
    from sklearn.linear_model import LogisticRegression

    server = scaled_out
    home = server.log.parent / "home"
    X, y = iris_frame()
    model = LogisticRegression(max_iter=300).fit(X, y)
    with Client(server.url) as c:
        v = c.register_model("iris", model, sample=X.head(3))
        fs = s3fs.S3FileSystem(skip_instance_cache=True, **s3_storage_options)
        key = f"{s3_root.removeprefix('s3://')}/{digest_key(v.digest)}"
        assert fs.info(key)["size"] == v.size  # the model is in the bucket
        assert not (home / "artifacts").exists()  # and not in a local artifact directory
        shutil.rmtree(home / "cache" / "blobs")  # so the replica can only load the model from S3
        c.deploy("iris", v.ref, runtime={"replicas": 1})

    out = _infer(server.url, X.head(10))
    [predict] = [o for o in out["outputs"] if o["name"] == "predict"]
    assert predict["data"] == model.predict(X.head(10)).tolist()
    assert out["model_name"] == "iris" and out["model_version"] == "1"
    deadline = time.monotonic() + 30  # Ray renames a worker process once its replica runs
    while not replica_pids(server.proc.pid, "mlpilot.iris.iris-v1.") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert replica_pids(server.proc.pid, "mlpilot.iris.iris-v1.")  # the answer came from a Ray Serve replica
    assert (home / "cache" / "blobs" / digest_key(v.digest)).is_file()  # it downloaded the model, verified

    engine = sa.create_engine(pg_schema_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("select name, revision from deployments")).all()
            version = conn.execute(sa.text("select digest from artifact_versions where version = 1")).scalar_one()
    finally:
        engine.dispose()
    assert [tuple(r) for r in rows] == [("iris", 1)]  # the deployment is in PostgreSQL
    assert version == v.digest

    # the end: a graceful stop (SIGTERM) deletes the Serve applications and shuts down the Ray it started
    ours = session_processes(server.proc.pid)
    assert any("raylet" in cmdline(p) for p in ours)  # the server's own Ray
    tree = descendants(server.proc.pid)
    server.stop()
    assert kill_all(sorted(ours | set(tree))) == []  # nothing of it had to be killed
    assert session_processes(server.proc.pid) == set()  # and no process of its Ray session is left
