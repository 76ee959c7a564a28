"""OIDC bearer tokens against a real ``mlpilot up`` (auth on) whose provider's key set is served over HTTP on
127.0.0.1: tokens of every scope are allowed or refused (403) like keys, on control routes and the data plane;
every bad token is a 401 saying why without echoing it; a rotated key is accepted once the key set is refetched;
events carry ``oidc:<sub>``; API keys keep working next to tokens."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import ServerProcess
from tests.integration.auth.provider import (
    JwksServer,
    SigningKey,
    claims,
    hs256_with,
    oidc_env,
    server_with_keys,
    sign,
    tamper,
    unsigned,
)

GRANTS = "mlpilot_deployments"


@dataclass
class Oidc:
    server: ServerProcess
    jwks: JwksServer
    rsa: SigningKey
    ec: SigningKey
    keys: dict[str, str]

    def token(self, scope: str = "read", key: SigningKey | None = None, **extra: Any) -> str:
        return sign(key or self.rsa, claims(scope=scope, **{GRANTS: "*", **extra}))

    def call(self, method: str, path: str, credential: str | None = None, **kw: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {credential}"} if credential else {}
        return httpx.request(method, self.server.url + path, headers=headers, timeout=10, **kw)


@pytest.fixture(scope="module")
def oidc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Oidc]:
    rsa, ec = SigningKey("rsa-1", "RS256"), SigningKey("ec-1", "ES256")
    jwks = JwksServer([rsa, ec])
    env = oidc_env(
        jwks.url,
        MLPILOT_AUTH__OIDC__JWKS_MIN_REFRESH_S="1",
        MLPILOT_AUTH__OIDC__ROLES_CLAIM="groups",
        MLPILOT_AUTH__OIDC__ROLE_SCOPES='{"ml-deployers": ["deploy"]}',
        MLPILOT_AUTH__OIDC__DEPLOYMENTS_CLAIM=GRANTS,
    )
    try:
        home = tmp_path_factory.mktemp("oidc") / "home"
        server, keys = server_with_keys(home, {"reader": ["read"]}, env)
    except BaseException:
        jwks.close()
        raise
    try:
        yield Oidc(server, jwks, rsa, ec, keys)
    finally:
        server.stop()
        jwks.close()


ROUTES = {
    "read": ("GET", "/api/v1/deployments", {}),
    "write": ("PUT", "/api/v1/artifacts/nothing/aliases/champion", {"json": {"version": 1}}),
    "deploy": ("POST", "/api/v1/rollouts/1/pause", {}),
    "admin": ("GET", "/api/v1/auth/keys", {}),
    "predict": ("POST", "/v2/models/nodep/infer", {"json": {"inputs": []}}),
}
HOLDS = {"read": {"read"}, "write": {"read", "write"}, "deploy": {"read", "write", "deploy"}, "predict": {"predict"}}
HOLDS["admin"] = set(ROUTES)


@pytest.mark.parametrize("held", sorted(ROUTES))
def test_tokens_of_each_scope_are_allowed_or_refused_like_keys(oidc: Oidc, held: str) -> None:
    key = oidc.ec if held == "predict" else oidc.rsa  # both signature families
    token = oidc.token(held, key=key)
    for needed, (method, path, kw) in ROUTES.items():
        r = oidc.call(method, path, token, **kw)
        if needed in HOLDS[held]:
            assert r.status_code not in (401, 403), (held, needed, r.text)
        else:
            assert r.status_code == 403, (held, needed, r.text)
            message = r.json()["error"]
            assert f"the oidc token of 'alice' lacks the {needed!r} scope" in message


def test_roles_and_deployment_grants_from_claims(oidc: Oidc) -> None:
    deployer = sign(oidc.rsa, claims(scope="openid", groups=["ml-deployers"], **{GRANTS: "*"}))
    assert oidc.call("POST", "/api/v1/rollouts/1/pause", deployer).status_code == 404  # allowed; no rollout 1
    iris_only = oidc.token("predict", **{GRANTS: ["iris"]})
    assert oidc.call("POST", "/v2/models/iris/infer", iris_only, json={"inputs": []}).status_code == 404
    other = oidc.call("POST", "/v2/models/other/infer", iris_only, json={"inputs": []})
    assert other.status_code == 403 and "not granted deployment 'other'" in other.json()["error"]
    ungranted = sign(oidc.rsa, claims(scope="read"))  # without the deployments claim
    r = oidc.call("GET", "/api/v1/deployments", ungranted)
    assert r.status_code == 403 and f"lacks the {GRANTS!r} claim" in r.json()["error"]


def _bad_tokens(o: Oidc) -> dict[str, tuple[str, str]]:
    now = int(time.time())
    good = claims(scope="admin", **{GRANTS: "*"})
    return {
        "expired": (sign(o.rsa, {**good, "exp": now - 120}), "expired at"),
        "not-yet-valid": (sign(o.rsa, {**good, "nbf": now + 300}), "not valid yet (nbf"),
        "wrong-iss": (sign(o.rsa, {**good, "iss": "https://evil.test"}), "wrong issuer"),
        "wrong-aud": (sign(o.ec, {**good, "aud": "another-api"}), "wrong audience"),
        "bad-signature": (tamper(sign(o.rsa, {**good, "scope": "read"})), "bad signature"),
        "alg-none": (unsigned(good), "alg none"),
        "hs256-public-key": (hs256_with(o.rsa.public_pem(), good, "rsa-1"), "signed with HS256"),
        "unknown-kid": (sign(SigningKey("ghost"), good), "unknown signing key"),
        "garbage": ("definitely-not-a-token", "neither an mlpilot API key"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "expired",
        "not-yet-valid",
        "wrong-iss",
        "wrong-aud",
        "bad-signature",
        "alg-none",
        "hs256-public-key",
        "unknown-kid",
        "garbage",
    ],
)
def test_bad_tokens_are_401_saying_why(oidc: Oidc, case: str) -> None:
    token, why = _bad_tokens(oidc)[case]
    for method, path, kw in (ROUTES["admin"], ROUTES["predict"], ("GET", "/v1/models", {})):
        r = oidc.call(method, path, token, **kw)
        assert r.status_code == 401, (case, path, r.text)
        assert r.headers["www-authenticate"].startswith("Bearer")
        body = r.json()
        message = body["error"]["message"] if path.startswith("/v1") else body["error"]
        assert why in message, (case, path, message)
        for part in token.split("."):
            assert len(part) < 8 or part not in r.text  # the token is never echoed


def test_a_rotated_key_is_accepted_after_a_refresh(oidc: Oidc) -> None:
    rotated = SigningKey("rsa-2", "RS256")
    token = oidc.token("read", key=rotated)
    before = oidc.jwks.fetches
    r = oidc.call("GET", "/api/v1/deployments", token)
    assert r.status_code == 401 and "unknown signing key" in r.json()["error"]
    oidc.jwks.publish([oidc.rsa, oidc.ec, rotated])  # the provider rotates
    t0 = time.monotonic()
    while oidc.call("GET", "/api/v1/deployments", token).status_code != 200:
        assert time.monotonic() - t0 < 10, "the rotated key was never accepted"
        time.sleep(0.1)
    took = time.monotonic() - t0
    assert oidc.jwks.fetches > before
    # a flood of unknown key ids fetches the key set at most once per jwks_min_refresh_s (1 s)
    flood_start, t0 = oidc.jwks.fetches, time.monotonic()
    ghost = oidc.token("read", key=SigningKey("ghost-2"))
    for _ in range(30):
        assert oidc.call("GET", "/api/v1/deployments", ghost).status_code == 401
    elapsed = time.monotonic() - t0
    assert oidc.jwks.fetches - flood_start <= elapsed / 1.0 + 1, (oidc.jwks.fetches - flood_start, elapsed)
    print(f"\nrotated key accepted {took * 1000:.0f} ms after publishing; 30 unknown-kid requests in {elapsed:.2f} s")


def test_events_carry_the_tokens_actor(oidc: Oidc) -> None:
    admin = sign(oidc.rsa, claims(sub="carol@example.com", scope="admin", **{GRANTS: "*"}))
    me = oidc.call("GET", "/api/v1/auth/whoami", admin).json()
    assert (me["kind"], me["actor"], me["key"], me["scopes"]) == ("oidc", "oidc:carol@example.com", None, ["admin"])
    created = oidc.call("POST", "/api/v1/auth/keys", admin, json={"name": "made-by-carol", "scopes": ["read"]})
    assert created.status_code == 201, created.text
    events = oidc.call("GET", "/api/v1/events", admin, params={"subject": "apikey:made-by-carol"}).json()
    assert [e["actor"] for e in events] == ["oidc:carol@example.com"]


def test_api_keys_still_work_next_to_tokens(oidc: Oidc) -> None:
    reader = oidc.keys["reader"]
    assert oidc.call("GET", "/api/v1/deployments", reader).status_code == 200
    assert oidc.call("GET", "/api/v1/auth/keys", reader).status_code == 403
    wrong = oidc.call("GET", "/api/v1/deployments", reader[:-4] + "xxxx")
    assert wrong.status_code == 401 and "unknown API key" in wrong.json()["error"]
    assert oidc.call("GET", "/api/v1/auth/whoami", reader).json()["actor"] == "key:reader"
    no_credential = oidc.call("GET", "/api/v1/deployments")
    assert no_credential.status_code == 401 and "API key or a bearer token" in no_credential.json()["error"]


def test_an_unreachable_key_set_is_503_not_open(tmp_path: Path) -> None:
    rsa = SigningKey("rsa-1", "RS256")
    jwks = JwksServer([rsa])
    url = jwks.url
    jwks.close()  # the provider is down from the start
    server, _ = server_with_keys(tmp_path / "home", {}, oidc_env(url, MLPILOT_AUTH__OIDC__JWKS_TIMEOUT_S="1"))
    try:
        # no API key exists: with OIDC configured the server starts anyway and says where tokens come from
        assert "auth on: auth.mode is on; OIDC bearer tokens from https://idp.test" in server.log.read_text()
        r = httpx.get(f"{server.url}/api/v1/deployments", headers={"authorization": f"Bearer {sign(rsa, claims())}"})
        assert r.status_code == 503 and "cannot fetch the OIDC key set" in r.json()["error"], r.text
        r = httpx.post(
            f"{server.url}/v2/models/x/infer",
            json={"inputs": []},
            headers={"authorization": f"Bearer {sign(rsa, claims(scope='predict'))}"},
        )
        assert r.status_code == 503 and r.json()["kind"] == "unavailable", r.text
    finally:
        server.stop()
