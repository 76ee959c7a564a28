"""The acceptance test of authorization: every route of both OpenAPI specs (the control API's and the inference
API's), table-driven — no key → 401 (public routes excepted), the strongest key lacking the route's scope → 403
naming it, a key with exactly the route's scope → neither 401 nor 403."""

from __future__ import annotations

import re
from typing import Any

import pytest

from mlpilot.api import create_api
from mlpilot.auth.keys import GRANTABLE, IMPLIES, Scope
from mlpilot.serving.spec import inference_openapi
from tests.integration.auth.conftest import AuthServer

DUMMY = {"digest": "sha256:" + "0" * 64, "version": "1", "alert_id": "1", "rollout_id": "1", "incident_id": "1"}


def _operations() -> list[tuple[str, str, str]]:
    control = create_api(platform=None).openapi()  # type: ignore[arg-type]  # routes only
    ops = []
    for spec in (control, inference_openapi()):
        for path, item in spec["paths"].items():
            for method, op in item.items():
                ops.append((method.upper(), path, op["x-mlpilot-scope"]))
    return ops


OPERATIONS = _operations()


def _concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: DUMMY.get(m.group(1), "nodep"), path)


def _request(s: AuthServer, method: str, path: str, key: str | None) -> Any:
    kw: dict[str, Any] = {}
    if method in ("POST", "PUT", "PATCH"):
        kw["json"] = {"model": "nodep"} if path.startswith("/v1") else {}
    return s.call(method, _concrete(path), key, **kw)


def _lacking(needed: Scope) -> list[str]:
    """Every grantable scope that does not imply ``needed``: the strongest key without it."""
    return [g.value for g in GRANTABLE if needed not in IMPLIES[g]]


def test_both_specs_are_covered() -> None:
    paths = {p for _, p, _ in OPERATIONS}
    assert len(OPERATIONS) > 80
    assert {"/api/v1/deployments/{name}", "/v2/models/{name}/infer", "/v1/chat/completions", "/metrics"} <= paths
    assert {s for _, _, s in OPERATIONS} == {s.value for s in Scope}


@pytest.mark.parametrize(("method", "path", "scope"), OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS])
def test_no_route_is_reachable_without_the_right_scope(
    auth_server: AuthServer, method: str, path: str, scope: str
) -> None:
    s = auth_server
    needed = Scope(scope)
    anonymous = _request(s, method, path, None)
    if needed is Scope.PUBLIC:
        assert anonymous.status_code not in (401, 403), anonymous.text
        return
    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    lacking = _lacking(needed)
    weaker = s.key("lacks-" + needed.value, lacking)
    denied = _request(s, method, path, weaker)
    assert denied.status_code == 403, denied.text
    if method != "HEAD":  # no body to name it in
        assert needed.value in denied.text
    right = s.key("only-" + needed.value, [needed.value])
    allowed = _request(s, method, path, right)
    assert allowed.status_code not in (401, 403), allowed.text
