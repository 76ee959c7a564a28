"""The KServe export as a pure function: deployments and model versions in, InferenceService manifests out."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
import yaml

from mlpilot.deployments.kserve import API_VERSION, isvc_name, kserve_export, model_format
from mlpilot.errors import InvalidArgument
from mlpilot.records import ArtifactKind, ArtifactVersion, Deployment, DeploymentSpec

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
URL = "s3://bucket/mlpilot/artifacts"


def version(
    name: str, v: int, flavor: str | None = "sklearn", fmt: str | None = "joblib", **kw: Any
) -> ArtifactVersion:
    meta = {"flavor": {"format": fmt}} if fmt else {}
    return ArtifactVersion(
        name=name,
        kind=kw.pop("kind", ArtifactKind.MODEL),
        version=v,
        digest="sha256:" + f"{v:02x}" * 32,
        size=10,
        filename="model.joblib",
        flavor=flavor,
        metadata=meta,
        created_at=NOW,
        created_by="t",
        **kw,
    )


def deployment(name: str = "iris", traffic: dict[str, int] | None = None, **spec: Any) -> Deployment:
    traffic = traffic or {"iris-v1": 100}
    variants = spec.pop("variants", None) or [
        {"name": n, "model": f"iris:{n.rsplit('v', 1)[-1]}"} for n in [*traffic, *spec.get("shadows", [])]
    ]
    return Deployment(
        name=name,
        revision=3,
        spec=DeploymentSpec(variants=variants, traffic=traffic, **spec),
        created_at=NOW,
        updated_at=NOW,
        updated_by="t",
        snapshot_version=7,
    )


def versions_for(d: Deployment, **over: ArtifactVersion) -> dict[str, ArtifactVersion]:
    out = {}
    for v in d.spec.variants:
        name, ver = v.model.split(":")
        out[v.name] = over.get(v.name) or version(name, int(ver))
    return out


def test_one_live_variant_is_one_inference_service_speaking_the_open_inference_protocol() -> None:
    d = deployment()
    export = kserve_export(d, versions_for(d), artifact_url=URL, namespace="models")
    [m] = export.manifests
    assert (m["apiVersion"], m["kind"]) == (API_VERSION, "InferenceService")
    assert m["metadata"]["name"] == "iris" and m["metadata"]["namespace"] == "models"
    assert m["metadata"]["annotations"]["mlpilot.io/model"] == "iris:1"
    predictor = m["spec"]["predictor"]
    assert predictor["model"] == {
        "modelFormat": {"name": "sklearn"},
        "protocolVersion": "v2",
        "storageUri": f"{URL}/kserve/iris/1",
    }
    assert (predictor["minReplicas"], predictor["maxReplicas"], predictor["timeout"]) == (1, 1, 30)
    assert "canaryTrafficPercent" not in predictor
    [f] = export.files  # the content-addressed blob, copied to the file name KServe's sklearn runtime loads
    assert f.source == f"{URL}/sha256/01/{'01' * 31}"
    assert f.target == f"{URL}/kserve/iris/1/model.joblib"
    assert export.notes == []


def test_two_live_variants_become_a_stable_manifest_then_a_canary() -> None:
    d = deployment(traffic={"iris-v1": 20, "iris-v2": 80})
    export = kserve_export(d, versions_for(d), artifact_url=None, storage_uri_prefix="gs://models/kserve/")
    stable, canary = export.manifests
    assert stable["metadata"]["name"] == canary["metadata"]["name"] == "iris"
    assert stable["metadata"]["annotations"]["mlpilot.io/variant"] == "iris-v2"  # the larger weight is stable
    assert "canaryTrafficPercent" not in stable["spec"]["predictor"]
    assert canary["spec"]["predictor"]["canaryTrafficPercent"] == 20
    assert canary["spec"]["predictor"]["model"]["storageUri"] == "gs://models/kserve/iris/1"
    assert [f.target for f in export.files] == [
        "gs://models/kserve/iris/2/model.joblib",
        "gs://models/kserve/iris/1/model.joblib",
    ]
    assert any("apply the first manifest" in n for n in export.notes)


def test_three_live_variants_become_one_inference_service_each_and_a_note_on_the_split() -> None:
    d = deployment(traffic={"iris-v1": 50, "iris-v2": 30, "iris-v3": 20})
    export = kserve_export(d, versions_for(d), artifact_url=URL)
    assert [m["metadata"]["name"] for m in export.manifests] == ["iris-iris-v1", "iris-iris-v2", "iris-iris-v3"]
    assert all("canaryTrafficPercent" not in m["spec"]["predictor"] for m in export.manifests)
    [note] = export.notes
    assert "iris-iris-v1=50%, iris-iris-v2=30%, iris-iris-v3=20%" in note


def test_autoscaling_resources_and_what_kserve_cannot_express() -> None:
    variants = [
        {
            "name": "iris-v1",
            "model": "iris:1",
            "runtime": {
                "autoscaling": {"min_replicas": 2, "max_replicas": 6, "target_ongoing_requests": 2.5},
                "timeout_s": 2.5,
            },
        },
        {"name": "iris-v2", "model": "iris:2"},
        {"name": "iris-v3", "model": "iris:3"},
    ]
    d = deployment(
        traffic={"iris-v1": 100, "iris-v3": 0}, variants=variants, shadows=["iris-v2"], sticky_header="x-user"
    )
    export = kserve_export(d, versions_for(d), artifact_url=URL, cpu=0.5, memory="1Gi")
    [m] = export.manifests
    p = m["spec"]["predictor"]
    scaling = {k: p[k] for k in ("minReplicas", "maxReplicas", "scaleMetric", "scaleTarget", "timeout")}
    assert scaling == {"minReplicas": 2, "maxReplicas": 6, "scaleMetric": "concurrency", "scaleTarget": 3, "timeout": 3}
    size = {"cpu": "500m", "memory": "1Gi"}
    assert p["model"]["resources"] == {"requests": size, "limits": size}
    notes = " | ".join(export.notes)
    assert "shadow variant 'iris-v2'" in notes and "'iris-v3' has 0%" in notes and "x-user" in notes
    whole = kserve_export(d, versions_for(d), artifact_url=URL, cpu=2).manifests[0]
    assert whole["spec"]["predictor"]["model"]["resources"]["limits"] == {"cpu": "2"}


def test_fixed_replicas_are_min_and_max() -> None:
    d = deployment(variants=[{"name": "iris-v1", "model": "iris:1", "runtime": {"replicas": 3}}])
    p = kserve_export(d, versions_for(d), artifact_url=URL).manifests[0]["spec"]["predictor"]
    assert (p["minReplicas"], p["maxReplicas"]) == (3, 3)


@pytest.mark.parametrize(
    ("flavor", "fmt", "name", "filename"),
    [
        ("sklearn", "joblib", "sklearn", "model.joblib"),
        ("sklearn", "pickle", "sklearn", "model.pkl"),
        ("xgboost", "json", "xgboost", "model.json"),
        ("xgboost", "ubj", "xgboost", "model.bst"),
        ("lightgbm", "text", "lightgbm", "model.bst"),
        ("onnx", "onnx", "onnx", "model.onnx"),
    ],
)
def test_model_formats_and_the_file_names_kserve_runtimes_load(flavor: str, fmt: str, name: str, filename: str) -> None:
    assert model_format(version("m", 1, flavor, fmt)) == (name, filename)


@pytest.mark.parametrize(
    ("flavor", "fmt", "kind", "message"),
    [
        ("pyfunc", "python", ArtifactKind.MODEL, "flavor pyfunc has no KServe runtime; serve it with mlpilot"),
        (None, None, ArtifactKind.APP, "flavor app has no KServe runtime; serve it with mlpilot"),
        ("sklearn", "skops", ArtifactKind.MODEL, "stored as skops, which KServe's sklearn runtime cannot load"),
    ],
)
def test_flavors_without_a_kserve_runtime_are_refused_clearly(
    flavor: str | None, fmt: str | None, kind: ArtifactKind, message: str
) -> None:
    d = deployment()
    bad = version("iris", 1, flavor, fmt, kind=kind)
    with pytest.raises(InvalidArgument, match=message):
        kserve_export(d, {"iris-v1": bad}, artifact_url=URL)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"artifact_url": None}, "the artifacts are on local disk: give a storage URI prefix"),
        ({"artifact_url": URL, "storage_uri_prefix": "bucket/models"}, "must be a URL KServe can read"),
        ({"artifact_url": URL, "namespace": "Models_1"}, "is not a Kubernetes namespace name"),
        ({"artifact_url": URL, "memory": "lots"}, "is not a Kubernetes quantity"),
        ({"artifact_url": URL, "cpu": 0}, "cpu must be positive"),
    ],
)
def test_bad_options_are_refused(kw: dict[str, Any], message: str) -> None:
    d = deployment()
    with pytest.raises(InvalidArgument, match=message):
        kserve_export(d, versions_for(d), **kw)


def test_names_become_kserve_names() -> None:
    assert isvc_name("Fraud_Model.v2") == "fraud-model-v2"
    assert isvc_name("2fast") == "fast"
    assert len(isvc_name("a" * 100)) == 45
    with pytest.raises(InvalidArgument, match="needs a letter"):
        isvc_name("123")
    d = deployment(name="Fraud_Model")
    export = kserve_export(d, versions_for(d), artifact_url=URL)
    assert export.manifests[0]["metadata"]["name"] == "fraud-model"
    assert export.manifests[0]["metadata"]["annotations"]["mlpilot.io/deployment"] == "Fraud_Model"
    assert any("named 'fraud-model'" in n for n in export.notes)


def test_yaml_is_a_stream_of_the_manifests_with_the_copy_list_and_notes_as_comments() -> None:
    d = deployment(traffic={"iris-v1": 90, "iris-v2": 10})
    export = kserve_export(d, versions_for(d), artifact_url=URL, namespace="models")
    text = export.to_yaml()
    docs = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    assert docs == export.manifests
    comments = [line for line in text.splitlines() if line.startswith("#")]
    assert any(f"{URL}/kserve/iris/2/model.joblib" in c for c in comments)
    assert any(c.startswith("# NOTE: canary") for c in comments)
    assert export.to_json()["files"][0]["to"] == f"{URL}/kserve/iris/1/model.joblib"


def test_a_local_artifact_directory_is_the_copy_source() -> None:
    d = deployment()
    export = kserve_export(
        d, versions_for(d), artifact_url=None, local_root="/srv/mlpilot/artifacts", storage_uri_prefix="s3://b/k"
    )
    assert export.files[0].source == f"/srv/mlpilot/artifacts/sha256/01/{'01' * 31}"
    assert export.manifests[0]["spec"]["predictor"]["model"]["storageUri"] == "s3://b/k/iris/1"


def test_variant_names_that_collide_once_valid_are_refused() -> None:
    variants = [{"name": n, "model": "iris:1"} for n in ("a_b", "a.b", "a-b")]
    d = deployment(traffic={"a_b": 40, "a.b": 30, "a-b": 30}, variants=variants)
    with pytest.raises(InvalidArgument, match="collide"):
        kserve_export(d, {v["name"]: version("iris", 1) for v in variants}, artifact_url=URL)
