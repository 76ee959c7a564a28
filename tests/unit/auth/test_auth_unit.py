"""The pure parts of authentication: scopes and their hierarchy, key format and hashing, the authorize rules,
credential headers, the inference spec's matching, and the mode decision."""

from __future__ import annotations

import pytest

from mlpilot.auth.authorizer import Authorizer, Principal, credentials
from mlpilot.auth.keys import (
    Scope,
    allows,
    check_key_name,
    hash_secret,
    new_key,
    parse_scopes,
    split_key,
    verify_secret,
)
from mlpilot.errors import InvalidArgument, PermissionDenied
from mlpilot.serving.spec import match
from mlpilot.settings import Settings, auth_decision

R, P, W, D, A = Scope.READ, Scope.PREDICT, Scope.WRITE, Scope.DEPLOY, Scope.ADMIN


@pytest.mark.parametrize(
    ("held", "needed", "ok"),
    [
        (["admin"], P, True),
        (["admin"], A, True),
        (["deploy"], W, True),
        (["deploy"], R, True),
        (["deploy"], P, False),
        (["deploy"], A, False),
        (["write"], D, False),
        (["write"], R, True),
        (["read"], W, False),
        (["predict"], R, False),
        (["read"], P, False),
        ([], Scope.PUBLIC, True),
        (["bogus"], R, False),
    ],
)
def test_scope_hierarchy(held: list[str], needed: Scope, ok: bool) -> None:
    assert allows(held, needed) is ok


def test_parse_scopes() -> None:
    assert parse_scopes(["admin", " READ", "read", "predict"]) == ["read", "predict", "admin"]
    with pytest.raises(InvalidArgument, match="unknown scope"):
        parse_scopes(["read", "root"])
    with pytest.raises(InvalidArgument, match="unknown scope"):
        parse_scopes(["public"])
    with pytest.raises(InvalidArgument, match="at least one"):
        parse_scopes(["", " "])


def test_key_names() -> None:
    assert check_key_name("ci-bot.v2") == "ci-bot.v2"
    for bad in ("", "-x", "a b", "x" * 65, "a/b"):
        with pytest.raises(InvalidArgument, match="bad key name"):
            check_key_name(bad)


def test_keys_and_hashes() -> None:
    key, prefix, secret = new_key()
    assert key == f"mlp_{prefix}_{secret}" and split_key(key) == (prefix, secret)
    for bad in ("", "mlp_", "abc_12345678_x", "mlp_1234567_x", "mlp_12345678_", "mlp_ZZZZZZZZ_x"):
        assert split_key(bad) is None, bad
    stored = hash_secret(secret)
    assert secret not in stored and stored != hash_secret(secret)  # salted
    assert verify_secret(secret, stored)
    assert not verify_secret(secret + "x", stored)
    for malformed in ("", "sha256$x", "scrypt$a$b$c$d$e", stored.replace("scrypt", "bcrypt")):
        assert not verify_secret(secret, malformed)


def test_credentials() -> None:
    def read(headers: dict[str, str]) -> str | None:
        return credentials(headers.get)

    assert read({"authorization": "Bearer k1"}) == "k1"
    assert read({"authorization": "bearer  k1 "}) == "k1"
    assert read({"x-api-key": "k2"}) == "k2"
    assert read({"authorization": "Basic abc", "x-api-key": "k2"}) == "k2"
    assert read({"authorization": "Bearer "}) is None
    assert read({}) is None


def test_authorize_rules() -> None:
    full = Principal("all", ("deploy",), (), 1)
    limited = Principal("lim", ("deploy", "predict"), ("iris",), 2)
    Authorizer.authorize(full, D, "anything")
    Authorizer.authorize(limited, D, "iris")
    Authorizer.authorize(limited, R, None)
    Authorizer.authorize(limited, P, None)
    with pytest.raises(PermissionDenied, match="lacks the 'admin' scope"):
        Authorizer.authorize(full, A, None)
    with pytest.raises(PermissionDenied, match="not granted deployment 'other'"):
        Authorizer.authorize(limited, P, "other")
    with pytest.raises(PermissionDenied, match="not about one deployment"):
        Authorizer.authorize(limited, W, None)
    assert limited.actor == "key:lim" and not limited.admin


def test_inference_spec_matching() -> None:
    found = match("POST", "/v2/models/iris/versions/3/infer")
    assert found is not None and found[0].scope == "predict" and found[1] == {"name": "iris", "version": "3"}
    head = match("HEAD", "/v2/health/ready")
    assert head is not None and head[0].scope == "public"
    assert match("DELETE", "/v2/models/iris") is None
    assert match("GET", "/v2/models/iris/extra/path") is None


@pytest.mark.parametrize(
    ("mode", "host", "on", "says"),
    [
        ("auto", "127.0.0.1", False, "auth off: listening on loopback only (127.0.0.1)"),
        ("auto", "::1", False, "auth off: listening on loopback only (::1)"),
        ("auto", "localhost", False, "loopback only"),
        ("auto", "0.0.0.0", True, "auth on: listening on 0.0.0.0"),
        ("auto", "10.1.2.3", True, "not loopback"),
        ("on", "127.0.0.1", True, "auth.mode is on"),
        ("off", "0.0.0.0", False, "auth.mode is off"),
    ],
)
def test_mode_decision(mode: str, host: str, on: bool, says: str) -> None:
    settings = Settings(auth={"mode": mode}, server={"host": host})  # type: ignore[arg-type]
    decided, line = auth_decision(settings)
    assert decided is on and says in line


def test_bad_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="mode"):
        Settings(auth={"mode": "maybe"})  # type: ignore[arg-type]
