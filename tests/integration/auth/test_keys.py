"""API keys end to end on an in-process server with auth on: hashing at rest, revocation, deployment grants, the
actor on events, both credential headers, open deployments, the gRPC check, and the cache seeing a revocation made
elsewhere."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa

from mlpilot.auth.authorizer import Authorizer, issue_key
from mlpilot.auth.gate import InferenceGate
from mlpilot.errors import PermissionDenied, Unauthenticated
from mlpilot.records import ArtifactKind
from tests.integration.auth.conftest import AuthServer, make_server


def test_the_secret_is_not_stored(auth_server: AuthServer) -> None:
    s = auth_server
    key = s.key("at-rest", ["read"])
    secret = key.split("_", 2)[2]
    with s.platform.store.engine.connect() as conn:
        row = conn.execute(sa.text("select prefix, hash from api_keys where name = 'at-rest'")).one()
    assert key.startswith(f"mlp_{row.prefix}_") and secret not in row.hash and row.hash.startswith("scrypt$")
    db = Path(s.platform.settings.store_url().removeprefix("sqlite:///"))
    raw = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
    assert secret.encode() not in raw
    # the right prefix with a wrong secret is refused like an unknown key
    assert s.call("GET", "/api/v1/deployments", f"mlp_{row.prefix}_wrong").status_code == 401
    for bad in ("garbage", "mlp_zz_x", "Basic abc"):
        r = s.http.get("/api/v1/deployments", headers={"authorization": bad})
        assert r.status_code == 401, bad


def test_x_api_key_header_is_accepted(auth_server: AuthServer) -> None:
    s = auth_server
    key = s.key("header-key", ["read"])
    assert s.http.get("/api/v1/deployments", headers={"x-api-key": key}).status_code == 200


def test_revoked_keys_are_refused_at_once(auth_server: AuthServer) -> None:
    s = auth_server
    admin = s.key("admin", ["admin"])
    created = s.call("POST", "/api/v1/auth/keys", admin, json={"name": "short-lived", "scopes": ["read"]})
    assert created.status_code == 201
    body = created.json()
    key = body["key"]
    assert body["api_key"]["scopes"] == ["read"] and "hash" not in body["api_key"]
    assert s.call("GET", "/api/v1/deployments", key).status_code == 200
    assert s.call("DELETE", "/api/v1/auth/keys/short-lived", admin).status_code == 200
    r = s.call("GET", "/api/v1/deployments", key)
    assert r.status_code == 401 and "revoked" in r.json()["error"]
    listed = s.call("GET", "/api/v1/auth/keys", admin).json()
    assert "short-lived" not in [k["name"] for k in listed]
    assert s.call("DELETE", "/api/v1/auth/keys/nope", admin).status_code == 404
    bad = s.call("POST", "/api/v1/auth/keys", admin, json={"name": "x", "scopes": ["root"]})
    assert bad.status_code == 400 and "unknown scope" in bad.json()["error"]
    dup = s.call("POST", "/api/v1/auth/keys", admin, json={"name": "short-lived", "scopes": ["read"]})
    assert dup.status_code == 409


def test_whoami(auth_server: AuthServer) -> None:
    s = auth_server
    anonymous = {"auth": True, "key": None, "kind": None, "actor": None, "scopes": [], "deployments": []}
    assert s.http.get("/api/v1/auth/whoami").json() == anonymous
    me = s.call("GET", "/api/v1/auth/whoami", s.key("me", ["read", "predict"], ["iris"])).json()
    assert (me["key"], me["scopes"], me["deployments"]) == ("me", ["read", "predict"], ["iris"])
    assert (me["kind"], me["actor"]) == ("key", "key:me")
    assert s.call("GET", "/api/v1/auth/whoami", "mlp_00000000_nope").status_code == 401


def test_deployment_grants(auth_server: AuthServer) -> None:
    s = auth_server
    key = s.key("iris-only", ["deploy", "predict"], ["iris"])
    assert s.call("GET", "/api/v1/deployments/iris", key).status_code == 404  # allowed: there is no such deployment
    other = s.call("GET", "/api/v1/deployments/other", key)
    assert other.status_code == 403 and "not granted deployment 'other'" in other.json()["error"]
    assert s.call("GET", "/api/v1/ui/deployments/other/series", key).status_code == 403
    assert s.call("GET", "/api/v1/deployments", key).status_code == 200  # a read route about no deployment
    promote = s.call("POST", "/api/v1/rollouts/1/promote", key)  # a deploy route about no named deployment
    assert promote.status_code == 403 and "granted only deployments iris" in promote.json()["error"]
    assert s.call("POST", "/v2/models/iris/infer", key, json={"inputs": []}).status_code == 404
    assert s.call("POST", "/v2/models/other/infer", key, json={"inputs": []}).status_code == 403
    chat = s.call("POST", "/v1/chat/completions", key, json={"model": "other", "messages": []})
    assert chat.status_code == 403 and chat.json()["error"]["type"] == "permission_error"
    hi = [{"role": "user", "content": "hi"}]
    chat = s.call("POST", "/v1/chat/completions", key, json={"model": "iris", "messages": hi})
    assert chat.status_code == 404  # past the gate, the body reached the data plane intact


def test_open_deployments_answer_inference_without_a_key(auth_server: AuthServer) -> None:
    s = auth_server
    assert s.http.post("/v2/models/open-dep/infer", json={"inputs": []}).status_code == 404  # not 401
    assert s.http.post("/v1/embeddings", json={"model": "open-dep", "input": "x"}).status_code == 404
    assert s.http.post("/v2/models/closed/infer", json={"inputs": []}).status_code == 401
    assert s.http.get("/api/v1/deployments/open-dep").status_code == 401  # only inference is open


def test_events_carry_the_key_as_actor(auth_server: AuthServer) -> None:
    s = auth_server
    writer = s.key("writer", ["write"])
    admin = s.key("admin", ["admin"])
    spoofed = {"x-mlpilot-actor": "somebody-else"}
    r = s.call("POST", "/api/v1/auth/keys", admin, json={"name": "by-admin", "scopes": ["read"]}, headers=spoofed)
    assert r.status_code == 201
    s.call("PUT", "/api/v1/artifacts/nothing/aliases/champion", writer, json={"version": 1}, headers=spoofed)
    s.call("POST", "/api/v1/auth/keys", admin, json={"name": "by-admin-2", "scopes": ["read"]})
    events = {e.subject: e.actor for e in s.platform.store.list_events(subject="apikey:*")}
    assert events["apikey:by-admin"] == "somebody-else"  # an admin may name the actor
    assert events["apikey:by-admin-2"] == "key:admin"
    # a non-admin key cannot name another actor: its header is ignored
    s.platform.store.create_version(
        name="art", kind=ArtifactKind.MODEL, digest="sha256:" + "1" * 64, size=1, filename="f", actor="t"
    )
    moved = s.call("PUT", "/api/v1/artifacts/art/aliases/champion", writer, json={"version": 1}, headers=spoofed)
    assert moved.status_code == 200, moved.text
    alias_events = s.platform.store.list_events(subject="artifact:art@champion", action="alias.*")
    assert alias_events and alias_events[-1].actor == "key:writer"


def test_last_used_is_recorded(auth_server: AuthServer) -> None:
    s = auth_server
    key = s.key("used", ["read"])
    assert s.platform.store.get_api_key("used").last_used_at is None
    s.call("GET", "/api/v1/events", key)
    assert s.platform.store.get_api_key("used").last_used_at is not None


def test_a_revocation_elsewhere_is_seen_after_the_cache_period(tmp_path: Path) -> None:
    s, _ = make_server(tmp_path / "home")
    try:
        now = [0.0]
        authorizer = Authorizer(s.platform.store, cache_s=5.0, monotonic=lambda: now[0])
        key = issue_key(s.platform.store, "k", ["read"], [], "t").key
        assert authorizer.authenticate(key).name == "k"
        s.platform.store.revoke_api_key("k", "another-process")
        assert authorizer.authenticate(key).name == "k"  # cached
        now[0] = 5.1
        with pytest.raises(Unauthenticated, match="revoked"):
            authorizer.authenticate(key)
        with pytest.raises(Unauthenticated, match="needs an API key"):
            authorizer.authenticate(None)
    finally:
        s.http.close()
        s.platform.close()


def test_grpc_calls_are_checked(auth_server: AuthServer) -> None:
    s = auth_server
    gate = InferenceGate(s.server.http, s.server.authorizer, ["open-dep"])  # type: ignore[arg-type]
    key = s.key("grpc-iris", ["predict"], ["iris"])
    bearer = {"authorization": f"Bearer {key}"}

    async def scenario() -> None:
        await gate.authorize_grpc("ServerLive", None, {})  # public
        await gate.authorize_grpc("ModelInfer", "open-dep", {})  # open deployment
        await gate.authorize_grpc("ModelInfer", "iris", bearer)
        with pytest.raises(Unauthenticated):
            await gate.authorize_grpc("ModelInfer", "iris", {})
        with pytest.raises(PermissionDenied):
            await gate.authorize_grpc("ModelMetadata", "other", bearer)

    asyncio.run(scenario())
