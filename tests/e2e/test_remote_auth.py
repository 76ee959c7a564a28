"""Remote data planes check credentials: a real ``mlpilot up`` control plane (auth on) and real ``mlpilot serve
--control-url`` processes. A data plane without a key is refused by its control plane (and says so); one with a
read key (``--api-key-env``) follows it and, with its own auth on, checks every inference request — API keys by
asking the control plane (cached ``auth.cache_s``: a revocation is seen within it), OIDC tokens locally (they keep
working while the control plane is down); with the control plane gone, a key that is not cached is a 503, never
let through."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
import orjson
import pytest

from mlpilot import Client
from tests.factories import iris_frame
from tests.helpers import ServerProcess, run_cli
from tests.integration.auth.provider import AUDIENCE, ISSUER, SigningKey, claims, server_with_keys, sign

pytestmark = pytest.mark.slow

CACHE_S = 1.0


def _oidc_file_env(jwks: Path) -> dict[str, str]:
    return {
        "MLPILOT_AUTH__OIDC__ISSUER": ISSUER,
        "MLPILOT_AUTH__OIDC__AUDIENCE": AUDIENCE,
        "MLPILOT_AUTH__OIDC__JWKS_FILE": str(jwks),
    }


def _data_plane(home: Path, control_url: str, env: dict[str, str], ready_path: str) -> ServerProcess:
    home.parent.mkdir(parents=True, exist_ok=True)
    args = ("--control-url", control_url, "--no-grpc")
    return ServerProcess(home, args=args, command="serve", ready_path=ready_path, extra_env=env)


def test_remote_data_planes_authenticate_to_and_through_the_control_plane(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    signer = SigningKey("rsa-1", "RS256")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [signer.jwk()]}))
    keys = {
        "admin": ["admin"],
        "dp": ["read"],
        "reader": ["read"],
        "predictor": ["predict"],
        "predictor-2": ["predict"],
        "other-only": ["predict"],
    }
    control, made = server_with_keys(
        tmp_path / "control" / "home", keys, _oidc_file_env(jwks), grants={"other-only": ["other"]}
    )
    started: list[ServerProcess] = []
    try:
        X, y = iris_frame()
        Xn = X.to_numpy()
        with Client(control.url, api_key=made["admin"]) as c:
            c.register_model("iris", LogisticRegression(max_iter=300).fit(Xn, y), sample=Xn[:2])
            c.deploy("iris", "iris:1")

        # 1. a data plane sending no key: its control plane refuses it, it says why, and it is not ready
        keyless = _data_plane(tmp_path / "dp0" / "home", control.url, {"MLPILOT_API_KEY": ""}, "/v2/health/live")
        started.append(keyless)
        t0 = time.monotonic()
        while b"HTTP 401" not in keyless.log.read_bytes() and time.monotonic() - t0 < 20:
            time.sleep(0.1)
        log = keyless.log.read_text()
        assert "HTTP 401" in log and "did not send the key in $MLPILOT_API_KEY" in log, log
        assert httpx.get(f"{keyless.url}/v2/health/ready", timeout=5).status_code == 503
        keyless.stop()

        # 2. a data plane with a read key (from --api-key-env) and auth on
        env = {
            "DP_KEY": made["dp"],
            "MLPILOT_AUTH__MODE": "on",
            "MLPILOT_AUTH__CACHE_S": str(CACHE_S),
            **_oidc_file_env(jwks),
        }
        (tmp_path / "dp1").mkdir()
        dp = ServerProcess(
            tmp_path / "dp1" / "home",
            args=("--control-url", control.url, "--no-grpc", "--api-key-env", "DP_KEY"),
            command="serve",
            ready_path="/v2/health/ready",
            extra_env=env,
        )
        started.append(dp)
        assert "auth on: auth.mode is on; keys verified by the control plane" in dp.log.read_text()
        body = orjson.dumps(
            {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 4], "data": Xn[0].tolist()}]}
        )

        def infer(credential: str | None) -> httpx.Response:
            headers = {"authorization": f"Bearer {credential}"} if credential else {}
            return httpx.post(f"{dp.url}/v2/models/iris/infer", content=body, headers=headers, timeout=10)

        def token(scope: str, lifetime_s: float = 300) -> str:
            return sign(signer, claims(scope=scope, lifetime_s=lifetime_s))

        r = infer(None)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer"), r.text
        r = infer("mlp_00000000_" + "x" * 43)
        assert r.status_code == 401 and "unknown API key" in r.json()["error"], r.text
        r = infer(made["reader"])
        assert r.status_code == 403 and "lacks the 'predict' scope" in r.json()["error"], r.text
        r = infer(made["other-only"])
        assert r.status_code == 403 and "not granted deployment 'iris'" in r.json()["error"], r.text
        assert infer(made["predictor"]).status_code == 200
        assert infer(token("predict")).status_code == 200
        r = infer(token("read"))
        assert r.status_code == 403 and "the oidc token of 'alice' lacks the 'predict' scope" in r.json()["error"]
        r = infer(token("predict", lifetime_s=-300))
        assert r.status_code == 401 and "expired at" in r.json()["error"], r.text

        # 3. a key revoked on the control plane is refused by the data plane within auth.cache_s
        with Client(control.url, api_key=made["admin"]) as c:
            c.revoke_api_key("predictor")
        t0 = time.monotonic()
        while infer(made["predictor"]).status_code == 200 and time.monotonic() - t0 < 10:
            time.sleep(0.05)
        took = time.monotonic() - t0
        r = infer(made["predictor"])
        assert r.status_code == 401 and "revoked" in r.json()["error"], r.text
        print(f"\nrevocation seen by the remote data plane after {took * 1000:.0f} ms (auth.cache_s {CACHE_S:g})")
        assert took < CACHE_S + 2.0

        # 4. the control plane dies: keys no longer cached fail closed (503); tokens are still checked locally
        assert infer(made["predictor-2"]).status_code == 200
        os.kill(control.proc.pid, signal.SIGKILL)
        control.proc.wait(10)
        time.sleep(CACHE_S + 0.2)
        for key in (made["predictor-2"], made["admin"]):  # once verified, and never seen here
            r = infer(key)
            assert r.status_code == 503 and "unreachable" in r.json()["error"], r.text
            assert r.json()["kind"] == "unavailable"
        assert infer(token("predict")).status_code == 200  # no round trip for tokens
        assert infer(token("read")).status_code == 403
        assert infer(None).status_code == 401
        assert httpx.get(f"{dp.url}/v2/health/ready", timeout=5).status_code == 200  # still serving
    finally:
        for server in started:
            server.stop()
        control.stop()


def test_serve_refuses_an_unset_key_variable(tmp_path: Path) -> None:
    env_name = "MLPILOT_TEST_UNSET_KEY_VARIABLE"
    assert env_name not in os.environ
    result = run_cli(
        "serve", "--control-url", "http://127.0.0.1:9", "--api-key-env", env_name, home=tmp_path, check=False
    )
    assert result.returncode == 2 and f"${env_name} is not set" in result.stderr, result.stderr
    help_text = " ".join(run_cli("serve", "--help", home=tmp_path).stdout.split())
    assert "--api-key-env" in help_text and "verified by asking the control plane" in help_text, help_text
