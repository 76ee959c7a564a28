"""The REST edge of the control API, found by the schemathesis run (tests/integration/fuzz): every route declares
the error responses it gives (any 4xx as ``{"error", "kind"}``, never FastAPI's 422 it does not send), and an id or
version past what the store's 64-bit integer columns hold is a 400 naming the parameter, never a driver overflow
(a 500)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mlpilot import Client
from mlpilot.api.params import INT64_MAX
from mlpilot.app import build_api, build_platform
from mlpilot.errors import InvalidArgument
from mlpilot.records import ArtifactRef
from mlpilot.settings import Settings
from tests.factories import iris_frame

TOO_BIG = INT64_MAX + 1


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from sklearn.linear_model import LogisticRegression

    home = tmp_path_factory.mktemp("edges") / "home"
    X, y = iris_frame()
    with Client(home=home) as c:
        c.register_model("iris", LogisticRegression(max_iter=300).fit(X, y), sample=X.head(3))
        c.set_alias("iris", "prod", 1)
        c.deploy("iris", "iris:1")
    p = build_platform(Settings(home=home, logs={"enabled": False}))
    try:
        with TestClient(build_api(p), raise_server_exceptions=False) as client:
            yield client
    finally:
        p.close()


def _operations(api: TestClient) -> list[tuple[str, str, dict[str, Any]]]:
    spec = api.app.openapi()  # type: ignore[attr-defined]
    return [(m.upper(), path, op) for path, item in spec["paths"].items() for m, op in item.items()]


def test_every_route_declares_its_error_body_and_no_unsent_422(api: TestClient) -> None:
    ops = _operations(api)
    assert len(ops) > 80
    for method, path, op in ops:
        responses = op["responses"]
        assert "422" not in responses, f"{method} {path} declares 422, which the API never sends (it sends 400)"
        error = responses["4XX"]["content"]["application/json"]["schema"]
        assert error == {"$ref": "#/components/schemas/ErrorBody"}, f"{method} {path}"
    body = api.app.openapi()["components"]["schemas"]["ErrorBody"]  # type: ignore[attr-defined]
    assert set(body["required"]) == {"error", "kind"}


def test_a_bad_request_is_the_declared_400_body(api: TestClient) -> None:
    r = api.get("/api/v1/artifacts", params={"kind": "nope"})
    assert r.status_code == 400
    assert set(r.json()) >= {"error", "kind"} and r.json()["kind"] == "invalid_argument"


def _id_routes(api: TestClient) -> list[tuple[str, str, str]]:
    """Every operation with an integer path parameter, and that parameter's name."""
    out = []
    for method, path, op in _operations(api):
        for param in op.get("parameters", []):
            if param["in"] == "path" and param["schema"].get("type") == "integer":
                out.append((method, path, param["name"]))
    return out


def test_every_integer_path_parameter_is_bounded_to_64_bits(api: TestClient) -> None:
    routes = _id_routes(api)
    names = {name for _, _, name in routes}
    assert names == {"version", "rollout_id", "incident_id", "alert_id"}, names
    for method, path, name in routes:
        concrete = re.sub(r"\{(\w+)\}", lambda m: "iris" if m.group(1) == "name" else "{}", path)
        too_big = api.request(method, concrete.replace("{}", str(TOO_BIG)), json={})
        assert too_big.status_code == 400, (method, path, too_big.text)
        assert f"path.{name}" in too_big.json()["error"]
        largest = api.request(method, concrete.replace("{}", str(INT64_MAX)), json={})
        assert largest.status_code in (400, 404, 412), (method, path, largest.text)  # looked up: none is there


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "needle"),
    [
        ("GET", "/api/v1/events", {"params": {"after_id": str(TOO_BIG)}}, "query.after_id"),
        ("PUT", "/api/v1/artifacts/iris/aliases/prod", {"json": {"version": TOO_BIG}}, "version"),
        ("POST", "/api/v1/deployments/iris/variants", {"json": {"model": f"iris:{TOO_BIG}"}}, "invalid version"),
        ("POST", "/api/v1/deployments/iris/variants", {"json": {"model": "iris:\u00b2"}}, "invalid version"),
        ("POST", "/api/v1/deployments/iris/rollouts", {"json": {"candidate": f"iris:{TOO_BIG}"}}, "invalid version"),
    ],
    ids=["events-after-id", "alias-version", "variant-model-ref", "superscript-version", "rollout-candidate"],
)
def test_integers_past_64_bits_elsewhere_are_400s(
    api: TestClient, method: str, path: str, kwargs: dict[str, Any], needle: str
) -> None:
    r = api.request(method, path, **kwargs)
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]


def test_artifact_refs_take_ascii_versions_within_64_bits() -> None:
    assert ArtifactRef.parse(f"iris:{INT64_MAX}").version == INT64_MAX
    for text in (f"iris:{TOO_BIG}", "iris:\u00b2", "iris:\u0663", "iris:0"):
        with pytest.raises(InvalidArgument, match="invalid version"):
            ArtifactRef.parse(text)
