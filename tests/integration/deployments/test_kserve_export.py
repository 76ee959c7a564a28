"""Exporting a deployment to KServe on a real ``mlpilot up`` whose artifacts are on S3 (moto), configured by the
command line only (``--artifacts s3://… --artifacts-option …``): the API route (YAML and JSON), the CLI (remote and
embedded), and the clear refusals (an unknown deployment, a flavor KServe cannot serve, local artifacts without a
prefix)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from mlpilot import Client
from tests.factories import iris_frame, pyfunc_case, sklearn_case
from tests.helpers import ServerProcess, run_cli
from tests.s3 import option_args

ROUTE = "/api/v1/deployments/{}/kserve"


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, s3_url: str, s3_storage_options: dict[str, Any]
) -> Iterator[tuple[ServerProcess, str]]:
    from sklearn.linear_model import LogisticRegression

    root = f"{s3_url}/kserve-{uuid.uuid4().hex[:8]}"
    home = tmp_path_factory.mktemp("kserve") / "home"
    args = ("--no-grpc", "--artifacts", root, *option_args(s3_storage_options))
    proc = ServerProcess(home, args=args, extra_env={"MLPILOT_MONITORS__ENABLED": "0"})
    try:
        X, y = iris_frame()
        with Client(proc.url) as c:
            for C in (1.0, 0.01):
                c.register_model("iris", LogisticRegression(C=C, max_iter=300).fit(X, y), sample=X.head(3))
            c.deploy(
                "iris", "iris:1", variant="stable", runtime={"autoscaling": {"min_replicas": 1, "max_replicas": 3}}
            )
            c.deploy("iris", "iris:2", variant="candidate")
            c.set_traffic("iris", {"stable": 90, "candidate": 10})
            case = pyfunc_case()
            c.register_model("rows", case.save(home.parent), sample=case.X, trust_pickle=True)
            c.deploy("rows", "rows:1")
        yield proc, root
    finally:
        proc.stop()


def test_the_route_answers_a_yaml_stream_of_a_stable_and_a_canary_inference_service(
    server: tuple[ServerProcess, str], s3_storage_options: dict[str, Any]
) -> None:
    import s3fs

    proc, root = server
    r = httpx.get(proc.url + ROUTE.format("iris"), params={"namespace": "ml", "cpu": 1, "memory": "2Gi"}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/yaml")
    stable, canary = (doc for doc in yaml.safe_load_all(r.text) if doc)
    for m in (stable, canary):
        assert (m["apiVersion"], m["kind"], m["metadata"]["name"]) == (
            "serving.kserve.io/v1beta1",
            "InferenceService",
            "iris",
        )
        assert m["metadata"]["namespace"] == "ml"
        assert m["spec"]["predictor"]["model"]["protocolVersion"] == "v2"
        assert m["spec"]["predictor"]["model"]["modelFormat"] == {"name": "sklearn"}
        assert m["spec"]["predictor"]["model"]["resources"]["limits"] == {"cpu": "1", "memory": "2Gi"}
    assert stable["spec"]["predictor"]["model"]["storageUri"] == f"{root}/kserve/iris/1"
    assert (stable["spec"]["predictor"]["minReplicas"], stable["spec"]["predictor"]["maxReplicas"]) == (1, 3)
    assert canary["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert canary["spec"]["predictor"]["model"]["storageUri"] == f"{root}/kserve/iris/2"

    body = httpx.get(proc.url + ROUTE.format("iris"), params={"format": "json"}, timeout=30).json()
    assert [m["spec"]["predictor"]["model"]["storageUri"] for m in body["manifests"]] == [
        f"{root}/kserve/iris/1",
        f"{root}/kserve/iris/2",
    ]
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **s3_storage_options)
    for f in body["files"]:  # the blobs to copy are the registry's own objects in the bucket
        assert f["from"].startswith(f"{root}/sha256/")
        assert fs.info(f["from"].removeprefix("s3://"))["size"] > 0
        assert f["to"].endswith("/model.joblib")
    assert any("canary" in n for n in body["notes"])


@pytest.mark.parametrize(
    ("name", "params", "status", "message"),
    [
        ("nope", {}, 404, "no deployment named 'nope'"),
        ("rows", {}, 400, "flavor pyfunc has no KServe runtime; serve it with mlpilot"),
        ("iris", {"storage_uri_prefix": "bucket/x"}, 400, "must be a URL KServe can read"),
        ("iris", {"format": "xml"}, 400, "format"),
    ],
)
def test_the_route_refuses_clearly(
    server: tuple[ServerProcess, str], name: str, params: dict[str, str], status: int, message: str
) -> None:
    r = httpx.get(server[0].url + ROUTE.format(name), params=params, timeout=30)
    assert r.status_code == status, r.text
    assert message in r.text


def test_the_cli_writes_the_manifests_to_a_file_or_prints_json(
    server: tuple[ServerProcess, str], tmp_path: Path
) -> None:
    proc = server[0]
    out = tmp_path / "iris.yaml"
    cli = run_cli(
        "deployments", "export-kserve", "iris", "--namespace", "ml", "-o", str(out), home=tmp_path, url=proc.url
    )
    assert "kubectl apply -f" in cli.stderr
    docs = [d for d in yaml.safe_load_all(out.read_text()) if d]
    assert [d["metadata"]["annotations"]["mlpilot.io/variant"] for d in docs] == ["stable", "candidate"]
    printed = run_cli(
        "deployments",
        "export-kserve",
        "iris",
        "--json",
        "--storage-uri-prefix",
        "s3://other/models",
        home=tmp_path,
        url=proc.url,
    )
    body = json.loads(printed.stdout)
    assert body["manifests"][0]["spec"]["predictor"]["model"]["storageUri"] == "s3://other/models/iris/1"


@pytest.mark.parametrize(
    ("name", "message"),
    [("nope", "no deployment named 'nope'"), ("rows", "flavor pyfunc has no KServe runtime; serve it with mlpilot")],
)
def test_the_cli_refuses_clearly(server: tuple[ServerProcess, str], tmp_path: Path, name: str, message: str) -> None:
    r = run_cli("deployments", "export-kserve", name, home=tmp_path, url=server[0].url, check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stderr.startswith("error:") and message in r.stderr


def test_local_artifacts_need_a_storage_uri_prefix(tmp_path: Path) -> None:
    case = sklearn_case()
    home = tmp_path / "home"
    with Client(home=home) as c:
        c.register_model("iris", case.model, sample=case.X.head(3))
        c.deploy("iris", "iris:1")
    r = run_cli("deployments", "export-kserve", "iris", home=home, check=False)
    assert r.returncode == 1
    assert "the artifacts are on local disk: give a storage URI prefix" in r.stderr
    r = run_cli("deployments", "export-kserve", "iris", "--storage-uri-prefix", "s3://models/k", "--json", home=home)
    [f] = json.loads(r.stdout)["files"]
    assert f["from"].startswith(str(home / "artifacts")) and Path(f["from"]).is_file()
    assert f["to"] == "s3://models/k/iris/1/model.joblib"
