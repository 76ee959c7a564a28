"""A real ``mlpilot up`` process, driven by the real tritonclient HTTP and gRPC clients and by raw HTTP."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from mlpilot import Client
from tests.helpers import ServerProcess, free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    import xgboost as xgb
    from skl2onnx import to_onnx
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    X, y = make_classification(n_samples=300, n_features=6, random_state=0)
    lr = LogisticRegression(max_iter=300).fit(X, y)
    lr2 = LogisticRegression(C=0.01, max_iter=300).fit(X, y)
    xg = xgb.XGBClassifier(n_estimators=10, max_depth=3).fit(X, y)
    Xf = X.astype(np.float32)
    proto = to_onnx(lr, Xf[:1], options={id(lr): {"zipmap": False}}, target_opset=17)
    home = tmp_path_factory.mktemp("serve") / "home"
    with Client(home=home) as c:
        for name, model, sample in (("lr", lr, X[:5]), ("xgb", xg, X[:5]), ("onnx", proto, Xf[:5])):
            v = c.register_model(name, model, sample=sample)
            c.deploy(name, v.ref)
        v2 = c.register_model("lr", lr2, sample=X[:5])
        c.deploy("lr", v2.ref, variant="lr-v2")  # idle (weight 0): reachable by version path only
    grpc_port = free_port()
    server = ServerProcess(
        home, extra_env={"MLPILOT_SERVER__GRPC_PORT": str(grpc_port), "MLPILOT_SERVER__MAX_BODY_BYTES": str(256 * 1024)}
    )
    try:
        yield {
            "server": server,
            "grpc": f"127.0.0.1:{grpc_port}",
            "X": X,
            "Xf": Xf,
            "expected": {"lr": lr.predict(X), "xgb": xg.predict(X), "onnx": lr.predict(Xf), "lr2": lr2.predict(X)},
            "proba": {"lr": lr.predict_proba(X)},
        }
    finally:
        server.stop()


def _inputs_for(served: dict[str, Any], model: str) -> np.ndarray:
    return served["Xf"] if model == "onnx" else served["X"]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("model", ["lr", "xgb", "onnx"])
def test_tritonclient_http(served: dict[str, Any], model: str, binary: bool) -> None:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(served["server"].url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(model)
    meta = client.get_model_metadata(model)
    x = _inputs_for(served, model)
    inp = httpclient.InferInput(meta["inputs"][0]["name"], list(x.shape), meta["inputs"][0]["datatype"])
    inp.set_data_from_numpy(x.astype(np.float32 if model == "onnx" else np.float64), binary_data=binary)
    outputs = [httpclient.InferRequestedOutput(meta["outputs"][0]["name"], binary_data=binary)]
    result = client.infer(model, [inp], outputs=outputs)
    got = result.as_numpy(meta["outputs"][0]["name"])
    np.testing.assert_array_equal(got.ravel(), served["expected"][model])


def test_tritonclient_http_version_paths(served: dict[str, Any]) -> None:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(served["server"].url.removeprefix("http://"))
    x = served["X"]
    for version, key in (("1", "lr"), ("2", "lr2"), ("lr-v2", "lr2")):
        inp = httpclient.InferInput("input-0", list(x.shape), "FP64")
        inp.set_data_from_numpy(x)
        res = client.infer("lr", [inp], model_version=version)
        np.testing.assert_array_equal(res.as_numpy("predict"), served["expected"][key])
    assert client.is_model_ready("lr", "2")
    assert client.get_model_metadata("lr", "2")["versions"] == ["1", "2"]


@pytest.mark.parametrize("model", ["lr", "xgb", "onnx"])
def test_tritonclient_grpc(served: dict[str, Any], model: str) -> None:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(served["grpc"])
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(model)
    meta = client.get_model_metadata(model, as_json=True)
    assert client.get_server_metadata(as_json=True)["name"] == "mlpilot"
    x = _inputs_for(served, model)
    spec = meta["inputs"][0]
    inp = grpcclient.InferInput(spec["name"], list(x.shape), spec["datatype"])
    inp.set_data_from_numpy(x)
    res = client.infer(model, [inp])
    np.testing.assert_array_equal(res.as_numpy(meta["outputs"][0]["name"]).ravel(), served["expected"][model])
    if model == "lr":
        res = client.infer("lr", [inp], model_version="2", outputs=[grpcclient.InferRequestedOutput("predict_proba")])
        assert res.as_numpy("predict_proba").shape == (len(x), 2) and res.as_numpy("predict") is None


def test_grpc_errors_are_status_codes(served: dict[str, Any]) -> None:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(served["grpc"])
    inp = grpcclient.InferInput("input-0", [1, 3], "FP64")
    inp.set_data_from_numpy(np.ones((1, 3)))
    with pytest.raises(InferenceServerException, match="expected shape"):
        client.infer("lr", [inp])
    with pytest.raises(InferenceServerException, match="unknown model"):
        client.infer("nope", [inp])


def _post(served: dict[str, Any], path: str, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(served["server"].url + path, content=body, headers=headers or {}, timeout=10)


def _v2(x: Any, name: str = "input-0", datatype: str = "FP64", shape: list[int] | None = None) -> bytes:
    arr = np.asarray(x)
    return orjson.dumps(
        {
            "inputs": [
                {"name": name, "datatype": datatype, "shape": shape or list(arr.shape), "data": arr.ravel().tolist()}
            ]
        }
    )


def _binary(shape: list[int], raw: bytes, claimed: int | None = None) -> tuple[bytes, dict[str, str]]:
    head = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "datatype": "FP64",
                    "shape": shape,
                    "parameters": {"binary_data_size": len(raw) if claimed is None else claimed},
                }
            ]
        }
    )
    return head + raw, {"Inference-Header-Content-Length": str(len(head))}


def test_bad_requests_are_4xx_with_clear_errors(served: dict[str, Any]) -> None:
    row = served["X"][:1]
    good_raw = struct.pack("<6d", *row.ravel())
    body, hdr = _binary([1, 6], good_raw)
    cases = [
        ("/v2/models/lr/infer", _v2(np.ones((1, 5))), {}, 400, "expected shape"),
        ("/v2/models/lr/infer", _v2([["a"] * 6], datatype="BYTES"), {}, 400, "expected datatype FP64"),
        ("/v2/models/lr/infer", _v2(row, name="wrong"), {}, 400, "missing inputs"),
        (
            "/v2/models/lr/infer",
            orjson.dumps(
                {
                    "inputs": [
                        {"name": "input-0", "datatype": "FP64", "shape": [1, 6], "data": row.ravel().tolist()},
                        {"name": "extra", "datatype": "FP64", "shape": [1], "data": [1]},
                    ]
                }
            ),
            {},
            400,
            "unexpected inputs",
        ),
        ("/v2/models/lr/infer", *_binary([1, 6], struct.pack("<6d", *([float("nan")] * 6))), 400, "NaN"),
        ("/v2/models/nope/infer", _v2(row), {}, 404, "unknown model"),
        ("/v2/models/lr/versions/9/infer", _v2(row), {}, 404, "no version"),
        ("/v2/models/lr/infer", b'{"inputs": [', {}, 400, "malformed JSON"),
        ("/v2/models/lr/infer", b"x" * (300 * 1024), {}, 413, "exceeds the limit"),
        (
            "/v2/models/lr/infer",
            body,
            {"Inference-Header-Content-Length": str(len(body) + 10)},
            400,
            "Inference-Header-Content-Length",
        ),
        ("/v2/models/lr/infer", body[:-8], hdr, 400, "truncated"),
        ("/v2/models/lr/infer", body, {"Inference-Header-Content-Length": "abc"}, 400, "not an integer"),
        (
            "/v2/models/lr/infer",
            orjson.dumps(
                {
                    "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 6], "data": row.ravel().tolist()}],
                    "outputs": [{"name": "nope"}],
                }
            ),
            {},
            400,
            "unknown output",
        ),
    ]
    for path, payload, headers, status, needle in cases:
        r = _post(served, path, payload, headers)
        assert r.status_code == status, (needle, r.status_code, r.text)
        assert needle in r.json()["error"], (needle, r.text)
        assert r.headers["x-request-id"]
    assert _post(served, "/v2/models/lr/infer", body, hdr).status_code == 200  # and the server is fine


def test_request_ids_metadata_and_metrics(served: dict[str, Any]) -> None:
    url = served["server"].url
    r = _post(served, "/v2/models/lr/infer", _v2(served["X"][:2]), {"x-request-id": "abc-123"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "abc-123"
    assert [o["name"] for o in r.json()["outputs"]] == ["predict", "predict_proba"]
    np.testing.assert_allclose(r.json()["outputs"][1]["data"], served["proba"]["lr"][:2].ravel())
    r2 = _post(served, "/v2/models/lr/infer", _v2(served["X"][:1]))
    assert len(r2.headers["x-request-id"]) == 24
    assert httpx.get(url + "/v2").json()["extensions"][0] == "binary_tensor_data"
    assert httpx.get(url + "/v2/health/live").status_code == 200
    assert httpx.get(url + "/v2/models/lr/ready").status_code == 200
    assert httpx.get(url + "/v2/models/nope").status_code == 404
    metrics = httpx.get(url + "/metrics").text
    assert 'mlpilot_requests_total{deployment="lr",status="ok",variant="lr-v1"}' in metrics
    assert (
        'mlpilot_request_duration_seconds_bucket{deployment="lr",le="0.005",stage="predict",variant="lr-v1"}' in metrics
    )
    assert "mlpilot_request_errors_total" in metrics
    assert "mlpilot_inflight_requests 0.0" in metrics  # back to zero once answered
    assert httpx.get(url + "/api/v1/health").json()["status"] == "ok"  # the control API on the same port


def test_sdk_and_cli_predict(served: dict[str, Any], tmp_path: Path) -> None:
    from tests.helpers import run_cli

    with Client(served["server"].url) as c:
        p = c.predict("lr", served["X"][:3])
        np.testing.assert_array_equal(p["predict"], served["expected"]["lr"][:3])
        assert p.variant == "lr-v1" and p.model_version == "1"
        assert c.predict("lr", served["X"][:3], version=2).model_version == "2"
    r = run_cli(
        "predict",
        "lr",
        "-d",
        orjson.dumps(
            {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 6], "data": served["X"][0].tolist()}]}
        ).decode(),
        "--json",
        home=tmp_path,
        url=served["server"].url,
    )
    assert orjson.loads(r.stdout)["outputs"]["predict"] == [int(served["expected"]["lr"][0])]
