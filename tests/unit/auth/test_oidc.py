"""The pure parts of OIDC bearer tokens and remote key checks: settings validation, claims → principal, the key set's
refresh rules (fake clock, in-memory loader), every way a token is refused (with a message that never echoes it),
the authorizer's routing between keys and tokens, its token cache, and failing closed when keys cannot be checked."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import ValidationError

from mlpilot.auth.authorizer import Authorizer
from mlpilot.auth.oidc import (
    KeySet,
    OidcValidator,
    deployments_from_claims,
    parse_jwks,
    principal_from_claims,
    read_jwks,
    scopes_from_claims,
)
from mlpilot.auth.principal import Principal
from mlpilot.auth.remote import RemoteKeys
from mlpilot.errors import PermissionDenied, Unauthenticated, Unavailable
from mlpilot.settings import OidcSettings, Settings
from tests.helpers import free_port
from tests.integration.auth.provider import (
    AUDIENCE,
    ISSUER,
    SigningKey,
    claims,
    hs256_with,
    sign,
    tamper,
    unsigned,
)


def oidc(**kw: Any) -> OidcSettings:
    return OidcSettings(issuer=ISSUER, audience=AUDIENCE, jwks_url="http://127.0.0.1:1/jwks.json", **kw)


@pytest.fixture(scope="module")
def rsa_key() -> SigningKey:
    return SigningKey("rsa-1", "RS256")


@pytest.fixture(scope="module")
def ec_key() -> SigningKey:
    return SigningKey("ec-1", "ES256")


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Loader:
    """An in-memory key set; ``fail`` makes the next loads raise like an unreachable provider."""

    def __init__(self, *keys: SigningKey) -> None:
        self.keys = list(keys)
        self.calls = 0
        self.fail = False

    def __call__(self) -> Any:
        self.calls += 1
        if self.fail:
            raise Unavailable("cannot fetch the OIDC key set from http://idp (ConnectError)")
        return {"keys": [k.jwk() for k in self.keys]}


# ---------------------------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"algorithms": ["none"]}, "never 'none'"),
        ({"algorithms": ["RS256", "HS256"]}, "set auth.oidc.shared_secret"),
        ({"audience": ""}, "audience is required"),
        ({"jwks_file": "/tmp/jwks.json"}, "not both"),
        ({"jwks_url": ""}, "needs jwks_url"),
        ({"jwks_url": "ftp://idp/jwks"}, "not an http(s) URL"),
        ({"role_scopes": {"ml-admins": ["root"]}}, "unknown scope(s) root"),
        ({"algorithms": []}, "algorithms is empty"),
    ],
    ids=["none", "hs-without-secret", "no-audience", "two-key-sets", "no-key-set", "bad-url", "bad-role", "no-alg"],
)
def test_settings_refuse_unsafe_or_incomplete_configurations(kw: dict[str, Any], message: str) -> None:
    base: dict[str, Any] = {"issuer": ISSUER, "audience": AUDIENCE, "jwks_url": "http://127.0.0.1:1/jwks.json"}
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        OidcSettings(**{**base, **kw})


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLPILOT_AUTH__OIDC__ISSUER", ISSUER)
    monkeypatch.setenv("MLPILOT_AUTH__OIDC__AUDIENCE", AUDIENCE)
    monkeypatch.setenv("MLPILOT_AUTH__OIDC__JWKS_URL", "https://idp/jwks")
    monkeypatch.setenv("MLPILOT_AUTH__OIDC__ROLE_SCOPES", '{"ml-admins": ["admin"]}')
    monkeypatch.setenv("MLPILOT_AUTH__OIDC__ALGORITHMS", '["ES256", "HS256"]')
    monkeypatch.setenv("MLPILOT_AUTH__OIDC__SHARED_SECRET", "s3cret")
    o = Settings().auth.oidc
    assert o.enabled and o.role_scopes == {"ml-admins": ["admin"]} and o.algorithms == ["ES256", "HS256"]
    assert "s3cret" not in repr(o)  # a SecretStr
    assert not OidcSettings().enabled
    # HS only, with a secret: no key set needed
    assert OidcSettings(issuer=ISSUER, audience=AUDIENCE, algorithms=["HS256"], shared_secret="x").enabled  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- claims


def test_scopes_come_from_the_scope_claim_and_mapped_roles() -> None:
    s = oidc(roles_claim="realm_access.roles", role_scopes={"ml-admins": ["admin"], "mlpilot.deploy": ["deploy"]})
    assert scopes_from_claims({"scope": "openid profile predict read"}, s) == ("read", "predict")
    assert scopes_from_claims({"scope": ["write", 7, "openid"]}, s) == ("write",)
    assert scopes_from_claims({"scope": "mlpilot.deploy"}, s) == ("deploy",)
    assert scopes_from_claims({"realm_access": {"roles": ["ml-admins"]}}, s) == ("admin",)
    # a provider role named like a scope grants nothing unless role_scopes maps it
    assert scopes_from_claims({"realm_access": {"roles": ["admin", "read"]}}, s) == ()
    assert scopes_from_claims({"scp": ["read"]}, oidc(scopes_claim="scp")) == ("read",)
    assert scopes_from_claims({}, s) == ()


def test_deployment_grants_from_a_claim() -> None:
    s = oidc(deployments_claim="mlpilot_deployments")
    assert deployments_from_claims({}, oidc()) == ()  # no claim configured: every deployment
    assert deployments_from_claims({"mlpilot_deployments": "iris, wine iris"}, s) == ("iris", "wine")
    assert deployments_from_claims({"mlpilot_deployments": ["iris"]}, s) == ("iris",)
    assert deployments_from_claims({"mlpilot_deployments": "*"}, s) == ()
    with pytest.raises(PermissionDenied, match="lacks the 'mlpilot_deployments' claim"):
        deployments_from_claims({}, s)
    with pytest.raises(PermissionDenied, match="grants no deployment"):
        deployments_from_claims({"mlpilot_deployments": []}, s)


def test_the_principal_names_the_actor_claim() -> None:
    p = principal_from_claims({"sub": "alice", "scope": "read"}, oidc())
    assert (p.name, p.kind, p.actor, p.scopes, p.deployments) == ("alice", "oidc", "oidc:alice", ("read",), ())
    assert str(p) == "the oidc token of 'alice'"
    assert principal_from_claims({"email": "a@x", "sub": "1"}, oidc(actor_claim="email")).actor == "oidc:a@x"
    assert principal_from_claims({"sub": 42}, oidc()).name == "42"
    with pytest.raises(Unauthenticated, match="no 'sub' claim"):
        principal_from_claims({"scope": "read"}, oidc())


# ---------------------------------------------------------------------------------------------- key set


def test_jwks_parsing_skips_keys_not_for_signatures(rsa_key: SigningKey) -> None:
    doc = {
        "keys": [
            rsa_key.jwk(),
            {**rsa_key.jwk(), "kid": "enc", "use": "enc"},
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
        ]
    }
    assert [k.kid for k in parse_jwks(doc)] == ["rsa-1"]
    with pytest.raises(ValueError, match="not a JSON Web Key Set"):
        parse_jwks({"kid": "x"})


def test_an_unknown_kid_refreshes_the_key_set_at_most_once_per_interval(rsa_key: SigningKey) -> None:
    clock, load = Clock(), Loader(rsa_key)
    keys = KeySet(load, "http://idp/jwks", max_age_s=600, min_refresh_s=30, monotonic=clock)
    assert keys.find("rsa-1", "RS256") is not None and load.calls == 1
    assert keys.find("rsa-1", "RS256") is not None and load.calls == 1  # cached
    rotated = SigningKey("rsa-2", "RS256")
    clock.t += 1
    with pytest.raises(Unauthenticated, match="unknown signing key: the token's key id 'rsa-2'"):
        keys.find("rsa-2", "RS256")
    assert load.calls == 1  # refreshed less than 30 s ago (the first load): no second fetch
    clock.t += 30
    with pytest.raises(Unauthenticated, match="unknown signing key"):
        keys.find("rsa-2", "RS256")
    assert load.calls == 2  # one refresh, still unknown
    load.keys.append(rotated)  # the provider rotates
    for _ in range(5):
        with pytest.raises(Unauthenticated):
            keys.find("rsa-2", "RS256")
    assert load.calls == 2  # a flood of unknown kids: no fetch within the interval
    clock.t += 30
    assert keys.find("rsa-2", "RS256") is not None and load.calls == 3
    clock.t += 600
    keys.find("rsa-1", "RS256")
    assert load.calls == 4  # past max age: fetched again


def test_a_key_set_that_cannot_be_fetched(rsa_key: SigningKey) -> None:
    clock, load = Clock(), Loader(rsa_key)
    load.fail = True
    keys = KeySet(load, "http://idp/jwks", min_refresh_s=10, monotonic=clock)
    with pytest.raises(Unavailable, match="cannot verify bearer tokens: cannot fetch"):
        keys.find("rsa-1", "RS256")
    with pytest.raises(Unavailable):
        keys.find("rsa-1", "RS256")
    assert load.calls == 1  # not fetched again within the interval
    load.fail = False
    clock.t += 10
    assert keys.find("rsa-1", "RS256") is not None
    # a failing refresh keeps the keys it had
    load.fail = True
    clock.t += 700
    assert keys.find("rsa-1", "RS256") is not None and load.calls == 3
    bad = KeySet(lambda: {"nope": 1}, "/etc/jwks.json", monotonic=clock)
    with pytest.raises(Unavailable, match="malformed"):
        bad.find("k", "RS256")


def test_keys_must_fit_the_algorithm(rsa_key: SigningKey, ec_key: SigningKey) -> None:
    keys = KeySet(Loader(rsa_key, ec_key), "jwks", monotonic=Clock())
    with pytest.raises(Unauthenticated, match="algorithm ES256 does not fit its signing key 'rsa-1'"):
        keys.find("rsa-1", "ES256")
    assert keys.find(None, "ES256") is not None  # no kid: the one key that fits
    two = KeySet(Loader(rsa_key, SigningKey("rsa-2")), "jwks", monotonic=Clock())
    with pytest.raises(Unauthenticated, match="several RS256 keys"):
        two.find(None, "RS256")


def test_a_key_set_file(tmp_path: Any, rsa_key: SigningKey) -> None:
    path = tmp_path / "jwks.json"
    with pytest.raises(Unavailable, match="cannot read the OIDC key set"):
        read_jwks(path)()
    path.write_text(json.dumps({"keys": [rsa_key.jwk()]}))
    v = OidcValidator(OidcSettings(issuer=ISSUER, audience=AUDIENCE, jwks_file=str(path)))
    assert v.validate(sign(rsa_key, claims()))[0].name == "alice"


# ---------------------------------------------------------------------------------------------- tokens


@pytest.fixture(scope="module")
def validator(rsa_key: SigningKey, ec_key: SigningKey) -> OidcValidator:
    s = oidc(leeway_s=30)
    return OidcValidator(s, keys=KeySet(Loader(rsa_key, ec_key), "http://idp/jwks", min_refresh_s=3600))


def test_valid_rsa_and_ec_tokens(validator: OidcValidator, rsa_key: SigningKey, ec_key: SigningKey) -> None:
    for key in (rsa_key, ec_key):
        body = claims(sub=f"user-{key.alg}", scope="deploy predict")
        principal, exp = validator.validate(sign(key, body))
        assert principal.name == f"user-{key.alg}" and principal.scopes == ("predict", "deploy")
        assert exp == body["exp"]
    # within the leeway: expired 10 s ago, not valid for 10 s more
    assert validator.validate(sign(rsa_key, claims(lifetime_s=-10)))[0].name == "alice"
    assert validator.validate(sign(rsa_key, {**claims(), "nbf": int(time.time()) + 10}))[0].name == "alice"
    assert validator.validate(sign(rsa_key, {**claims(), "aud": ["other", AUDIENCE]}))[0].name == "alice"


def _refused(v: OidcValidator, token: str, message: str) -> None:
    with pytest.raises(Unauthenticated) as caught:
        v.validate(token)
    assert message in caught.value.message, caught.value.message
    for part in token.split("."):
        if len(part) > 8:
            assert part not in caught.value.message  # never echoes the token


def test_tokens_refused_with_a_message_saying_why(validator: OidcValidator, rsa_key: SigningKey) -> None:
    now = int(time.time())
    _refused(validator, sign(rsa_key, claims(lifetime_s=-120)), "the bearer token expired at")
    _refused(validator, sign(rsa_key, {**claims(), "nbf": now + 300}), "not valid yet (nbf")
    _refused(validator, sign(rsa_key, {**claims(), "iat": now + 300}), "not valid yet (iat")
    _refused(validator, sign(rsa_key, {**claims(), "iss": "https://evil"}), "wrong issuer")
    _refused(
        validator,
        sign(rsa_key, {**claims(), "aud": "other-api"}),
        f"wrong audience: the token's aud does not name {AUDIENCE!r}",
    )
    _refused(validator, tamper(sign(rsa_key, claims())), "bad signature")
    _refused(validator, sign(SigningKey("rsa-1"), claims()), "bad signature")  # same kid, another key
    _refused(validator, unsigned(claims(scope="admin")), "alg none")
    # key confusion: HS256 with the RSA public key's PEM as the HMAC secret
    _refused(
        validator,
        hs256_with(rsa_key.public_pem(), claims(scope="admin"), "rsa-1"),
        "signed with HS256, which this server does not accept",
    )
    _refused(validator, sign(SigningKey("nobody"), claims()), "unknown signing key")
    body = claims()
    del body["exp"]
    _refused(validator, sign(rsa_key, body), "lacks the 'exp' claim")
    _refused(validator, "not-a-token", "neither an mlpilot API key")
    head = sign(rsa_key, claims()).split(".")[0]
    _refused(validator, f"{head}.!!!.sig", "nor a well-formed JWT")


def test_hs256_only_with_the_shared_secret(rsa_key: SigningKey) -> None:
    s = OidcSettings(
        issuer=ISSUER,
        audience=AUDIENCE,
        jwks_url="http://127.0.0.1:1/jwks.json",
        algorithms=["RS256", "HS256"],
        shared_secret="a-long-shared-secret-of-32-bytes!",  # type: ignore[arg-type]
    )
    v = OidcValidator(s, keys=KeySet(Loader(rsa_key), "jwks", monotonic=Clock()))
    assert v.validate(hs256_with(b"a-long-shared-secret-of-32-bytes!", claims()))[0].name == "alice"
    _refused(v, hs256_with(rsa_key.public_pem(), claims(), "rsa-1"), "bad signature")
    assert v.validate(sign(rsa_key, claims()))[0].name == "alice"


# ---------------------------------------------------------------------------------------------- the authorizer


class FakeKeys:
    def __init__(self) -> None:
        self.seen: list[str] = []
        self.down = False

    def __call__(self, key: str, previous: Principal | None) -> tuple[Principal | None, str]:
        self.seen.append(key)
        if self.down:
            raise Unavailable("the control plane at http://cp is unreachable")
        return Principal("k", ("predict",), (), 1), ""


def test_keys_and_tokens_take_their_own_paths(validator: OidcValidator, rsa_key: SigningKey) -> None:
    keys, clock = FakeKeys(), Clock()
    a = Authorizer(keys=keys, oidc=validator, cache_s=5, monotonic=clock)
    assert a.authenticate("mlp_00000000_x").actor == "key:k"
    token = sign(rsa_key, claims(sub="bob"))
    assert a.authenticate(token).actor == "oidc:bob"
    assert keys.seen == ["mlp_00000000_x"]  # the token never reached the key verifier
    assert a.cached(token) is not None  # cached like a key …
    clock.t += 6
    assert a.cached(token) is None  # … for cache_s
    short = sign(rsa_key, {**claims(sub="carol"), "exp": int(time.time()) + 2})
    a.authenticate(short)
    clock.t += 1
    assert a.cached(short) is not None
    clock.t += 60  # past its expiry and the leeway: never served from the cache
    assert a.cached(short) is None
    with pytest.raises(Unauthenticated, match="needs an API key or a bearer token"):
        a.authenticate(None)
    without = Authorizer(keys=keys, cache_s=5, monotonic=clock)  # no OIDC: every credential is a key
    without.authenticate(token)
    assert keys.seen[-1] == token


def test_keys_fail_closed_when_they_cannot_be_checked() -> None:
    keys, clock = FakeKeys(), Clock()
    strict = Authorizer(keys=keys, cache_s=5, monotonic=clock)
    graceful = Authorizer(keys=keys, cache_s=5, offline_grace_s=60, monotonic=clock)
    for a in (strict, graceful):
        a.authenticate("mlp_00000000_x")
    keys.down = True
    clock.t += 4
    assert strict.authenticate("mlp_00000000_x").name == "k"  # cached
    clock.t += 2
    with pytest.raises(Unavailable):
        strict.authenticate("mlp_00000000_x")
    with pytest.raises(Unavailable):
        strict.authenticate("mlp_11111111_never-seen")
    assert graceful.authenticate("mlp_00000000_x").name == "k"  # within cache_s + offline_grace_s
    clock.t += 60
    with pytest.raises(Unavailable):
        graceful.authenticate("mlp_00000000_x")


class _ControlPlane:
    """A real HTTP server answering whoami with a fixed status and body (a control plane in odd states)."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def control_plane() -> Iterator[Any]:
    made: list[_ControlPlane] = []

    def make(status: int, body: dict[str, Any]) -> _ControlPlane:
        made.append(_ControlPlane(status, body))
        return made[-1]

    yield make
    for cp in made:
        cp.close()


def test_remote_keys(control_plane: Any) -> None:
    clock = Clock()
    down = RemoteKeys(f"http://127.0.0.1:{free_port()}", timeout_s=2, down_s=1, monotonic=clock)
    with pytest.raises(Unavailable, match="unreachable"):
        down("mlp_00000000_x", None)
    with pytest.raises(Unavailable, match="unreachable"):
        down("mlp_11111111_y", None)  # within down_s: refused at once, not asked again
    assert down("not-a-key", None)[0] is None and down.asked == 1  # malformed: no round trip
    clock.t += 1
    with pytest.raises(Unavailable, match="unreachable"):
        down("mlp_11111111_y", None)
    assert down.asked == 2
    down.close()
    cases = [
        (200, {"auth": True, "key": "dp", "scopes": ["predict"], "deployments": ["iris"]}, None),
        (401, {"error": "the API key 'dp' was revoked"}, "revoked"),
        (200, {"auth": False}, Unavailable),
        (500, {"error": "boom"}, Unavailable),
    ]
    for status, body, expect in cases:
        keys = RemoteKeys(control_plane(status, body).url)
        try:
            if expect is Unavailable:
                with pytest.raises(Unavailable, match="does not check them" if status == 200 else "HTTP 500"):
                    keys("mlp_00000000_x", None)
            elif expect is None:
                p, _ = keys("mlp_00000000_x", None)
                assert p is not None and (p.actor, p.scopes, p.deployments) == ("key:dp", ("predict",), ("iris",))
            else:
                p, why = keys("mlp_00000000_x", None)
                assert p is None and "revoked" in why
        finally:
            keys.close()
