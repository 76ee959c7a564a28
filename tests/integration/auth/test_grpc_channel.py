"""gRPC authentication over a real channel: tritonclient's gRPC client against a real ``mlpilot up`` (auth on, OIDC
configured, a deployed model), credentials in the metadata ``authorization: Bearer …`` — for an API key and for a
JWT: none → UNAUTHENTICATED, the wrong scope or deployment → PERMISSION_DENIED, the right one → OK."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from mlpilot import Client
from tests.factories import iris_frame
from tests.helpers import ServerProcess, free_port
from tests.integration.auth.provider import JwksServer, SigningKey, claims, oidc_env, server_with_keys, sign

GRANTS = "mlpilot_deployments"


@dataclass
class Grpc:
    server: ServerProcess
    target: str
    keys: dict[str, str]
    signer: SigningKey


@pytest.fixture(scope="module")
def grpc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Grpc]:
    from sklearn.linear_model import LogisticRegression

    signer = SigningKey("rsa-1", "RS256")
    jwks = JwksServer([signer])
    grpc_port = free_port()
    keys = {"admin": ["admin"], "reader": ["read"], "predictor": ["predict"], "other-only": ["predict"]}
    try:
        server, made = server_with_keys(
            tmp_path_factory.mktemp("grpc-auth") / "home",
            keys,
            {**oidc_env(jwks.url, MLPILOT_AUTH__OIDC__DEPLOYMENTS_CLAIM=GRANTS), "MLPILOT_SERVER__GRPC": "1"},
            args=("--grpc-port", str(grpc_port)),
            grants={"other-only": ["other"]},
        )
    except BaseException:
        jwks.close()
        raise
    try:
        X, y = iris_frame()
        Xn = X.to_numpy()
        with Client(server.url, api_key=made["admin"]) as c:
            c.register_model("iris", LogisticRegression(max_iter=300).fit(Xn, y), sample=Xn[:2])
            c.deploy("iris", "iris:1")
        yield Grpc(server, f"127.0.0.1:{grpc_port}", made, signer)
    finally:
        server.stop()
        jwks.close()


def _infer(g: Grpc, credential: str | None, model: str = "iris") -> Any:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(g.target)
    try:
        x = np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float64)
        inp = grpcclient.InferInput("input-0", list(x.shape), "FP64")
        inp.set_data_from_numpy(x)
        headers = {"authorization": f"Bearer {credential}"} if credential else None
        return client.infer(model, [inp], headers=headers)
    finally:
        client.close()


def _status(g: Grpc, credential: str | None, model: str = "iris") -> str:
    from tritonclient.utils import InferenceServerException

    try:
        result = _infer(g, credential, model)
    except InferenceServerException as exc:
        return f"{exc.status()} {exc.message()}"
    assert result.as_numpy("predict") is not None or result.get_response().outputs
    return "OK"


def _token(g: Grpc, scope: str, **extra: Any) -> str:
    return sign(g.signer, claims(scope=scope, **{GRANTS: "*", **extra}))


def test_health_needs_no_credential(grpc_server: Grpc) -> None:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(grpc_server.target)
    try:
        assert client.is_server_live() and client.is_server_ready()
    finally:
        client.close()


@pytest.mark.parametrize("kind", ["api-key", "jwt"])
def test_infer_over_a_real_channel(grpc_server: Grpc, kind: str) -> None:
    g = grpc_server
    if kind == "api-key":
        wrong_scope, other_deployment, right = g.keys["reader"], g.keys["other-only"], g.keys["predictor"]
        bad = right[:-4] + "xxxx"
    else:
        wrong_scope, right = _token(g, "read"), _token(g, "predict")
        other_deployment = _token(g, "predict", **{GRANTS: ["other"]})
        bad = _token(g, "predict", lifetime_s=-300)
    missing = _status(g, None)
    assert missing.startswith("StatusCode.UNAUTHENTICATED") and "needs an API key or a bearer token" in missing
    refused = _status(g, bad)
    assert refused.startswith("StatusCode.UNAUTHENTICATED"), refused
    assert ("unknown API key" if kind == "api-key" else "expired at") in refused
    denied = _status(g, wrong_scope)
    assert denied.startswith("StatusCode.PERMISSION_DENIED") and "lacks the 'predict' scope" in denied, denied
    elsewhere = _status(g, other_deployment)
    assert elsewhere.startswith("StatusCode.PERMISSION_DENIED") and "not granted deployment 'iris'" in elsewhere
    assert _status(g, right) == "OK"
    assert _status(g, right) == "OK"  # from the cache this time
