"""The inference API's routes and the scope each needs, as data: the OpenAPI document of the data plane
(:func:`inference_openapi`, ``x-mlpilot-scope`` on every operation like the control API's) and the table the
authentication gate matches requests against (:func:`match`). Pure: nothing here checks a credential.

``deployment`` says where a route names its deployment: ``"path"`` (the ``{name}`` parameter), ``"body"`` (the
OpenAI API's ``model`` field) or ``None``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from mlpilot.serving.spec_schemas import OPERATIONS, SCHEMAS

Where = Literal["path", "body"] | None


@dataclass(frozen=True)
class InferenceRoute:
    method: str
    path: str
    scope: str
    summary: str
    deployment: Where = None

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.path) + "/?$")


INFERENCE_ROUTES: tuple[InferenceRoute, ...] = (
    InferenceRoute("GET", "/v2", "public", "server metadata (OIP v2)"),
    InferenceRoute("GET", "/v2/health/live", "public", "liveness"),
    InferenceRoute("GET", "/v2/health/ready", "public", "readiness (every deployment loaded)"),
    InferenceRoute("GET", "/v2/models/{name}", "predict", "model metadata", "path"),
    InferenceRoute("GET", "/v2/models/{name}/ready", "predict", "model readiness", "path"),
    InferenceRoute("GET", "/v2/models/{name}/versions/{version}", "predict", "model version metadata", "path"),
    InferenceRoute("GET", "/v2/models/{name}/versions/{version}/ready", "predict", "model version readiness", "path"),
    InferenceRoute("POST", "/v2/models/{name}/infer", "predict", "inference", "path"),
    InferenceRoute("POST", "/v2/models/{name}/versions/{version}/infer", "predict", "inference on a version", "path"),
    InferenceRoute("GET", "/v1/models", "predict", "OpenAI: list models"),
    InferenceRoute("GET", "/v1/models/{name}", "predict", "OpenAI: one model", "path"),
    InferenceRoute("POST", "/v1/chat/completions", "predict", "OpenAI: chat completion", "body"),
    InferenceRoute("POST", "/v1/completions", "predict", "OpenAI: completion", "body"),
    InferenceRoute("POST", "/v1/embeddings", "predict", "OpenAI: embeddings", "body"),
    InferenceRoute("GET", "/metrics", "read", "Prometheus metrics"),
)
#: what a path the data plane owns but no route matches needs (it answers 404 or 405 once allowed)
UNMATCHED_SCOPE = "predict"

#: the OIP v2 gRPC methods: the scope each needs, and whether its request names a deployment
GRPC_METHODS: dict[str, tuple[str, bool]] = {
    "ServerLive": ("public", False),
    "ServerReady": ("public", False),
    "ServerMetadata": ("public", False),
    "ModelReady": ("predict", True),
    "ModelMetadata": ("predict", True),
    "ModelInfer": ("predict", True),
}

_COMPILED = [(r, r.pattern) for r in INFERENCE_ROUTES]


def owns(path: str) -> bool:
    """Whether the data plane (not the control API or the dashboard) answers ``path``."""
    return path.startswith("/v2") or path.startswith("/v1/") or path == "/v1" or path == "/metrics"


def match(method: str, path: str) -> tuple[InferenceRoute, dict[str, str]] | None:
    """The route ``method path`` is (``HEAD`` as ``GET``) and its path parameters, or ``None``."""
    method = "GET" if method == "HEAD" else method
    for route, pattern in _COMPILED:
        if route.method == method:
            m = pattern.match(path)
            if m is not None:
                return route, m.groupdict()
    return None


def inference_openapi(version: str = "") -> dict[str, Any]:
    """The OpenAPI document of the inference API: paths, scopes, and the request and response schemas of OIP v2
    and of the OpenAI API (``serving/spec_schemas.py``)."""
    paths: dict[str, dict[str, Any]] = {}
    for r in INFERENCE_ROUTES:
        params = [
            {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
            for n in re.findall(r"\{(\w+)\}", r.path)
        ]
        op: dict[str, Any] = {"summary": r.summary, "x-mlpilot-scope": r.scope, **OPERATIONS[(r.method, r.path)]}
        if params:
            op["parameters"] = params
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "mlpilot inference API", "version": version},
        "paths": paths,
        "components": {"schemas": SCHEMAS},
    }
