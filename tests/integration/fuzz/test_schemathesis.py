"""Schemathesis against both OpenAPI specs, on a real ``mlpilot up`` (127.0.0.1, auth off on loopback).

The server is seeded so that generated requests reach real handlers, not only 404s: a model ``iris`` (two
versions, an alias, a bound reference dataset) deployed with logged traffic, labels, its default monitors and SLO,
one more SLO, a healing policy and a running rollout; two LLM apps (``assistant`` for chat and completions,
``vectors`` for embeddings) behind the fake OpenAI-compatible LLM. Path parameters (and feedback request ids) are
drawn from the seeded names with probability ``DICTIONARY_P``, and generated otherwise.

Every answer must pass ``CHECKS``: no 5xx, a status code the spec declares, a declared content type, a body that
conforms to the declared schema. Deterministic (fixed seed, derandomized) and bounded (``MAX_EXAMPLES`` per
operation, on top of schemathesis' example and coverage cases): ~1.5 min on 2 cores. The DELETE operations run
after all others, the deployment's own DELETE last, so that deleting a seeded entity does not turn the rest into
404s. ``test_fuzzing_reached_the_handlers`` (last) checks the seeding did its job.
"""

from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from mlpilot.api import create_api
from mlpilot.serving.spec import inference_openapi
from mlpilot.settings import Settings
from tests.helpers import FakeLLMProcess, ServerProcess

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(os.environ.get("PYTEST_XDIST_WORKER")),
        reason="run without xdist (make test does): schemathesis gives every operation of a test one node id, so an "
        "xdist worker would run only the first operation of each",
    ),
]

MAX_EXAMPLES = 30
SEED = 20240610
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

#: path parameter -> the seeded names it is drawn from (with probability DICTIONARY_P)
NAMES = {
    "name": ["iris", "assistant", "vectors", "iris-ref"],
    "version": ["1", "2", "latest"],
    "alias": ["prod"],
    "role": ["reference"],
    "monitor": ["drift", "traffic"],
    "slo": ["availability", "p99"],
    "alert_id": ["1"],
    "rollout_id": ["1"],
    "incident_id": ["1"],
    "key_name": ["fuzz"],
}
#: the ``x-request-id`` of the seeded predictions (feedback and its listing name them)
REQUEST_IDS = [f"req-{i}" for i in range(20)]
DICTIONARY_P = 0.7

#: "METHOD /path" -> status code -> how many generated requests got it (filled as the tests run, in file order)
SEEN: defaultdict[str, Counter[int]] = defaultdict(Counter)


def _config() -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True},
            "dictionaries": {
                **{f"d_{k}": {"values": v} for k, v in NAMES.items()},
                "request_ids": {"values": REQUEST_IDS},
            },
            "parameters": {
                **{f"path.{k}": {"dictionary": f"d_{k}", "probability": DICTIONARY_P} for k in NAMES},
                "query.request_id": {"dictionary": "request_ids", "probability": DICTIONARY_P},
                "body.items[*].request_id": {"dictionary": "request_ids", "probability": DICTIONARY_P},
                "query.wait_s": 0,  # the snapshot long-poll: holding each request up to 60 s would fuzz nothing
            },
        }
    )


def _control_spec() -> dict[str, Any]:
    """The control API's spec, built from its routes alone: the operations must be known when tests are collected,
    before any server runs (``test_the_fuzzed_control_spec_is_the_served_one`` checks it is what ``mlpilot up``
    serves at /openapi.json)."""
    routes_only = SimpleNamespace(settings=Settings(home=Path("/nonexistent")))
    return create_api(routes_only).openapi()  # type: ignore[arg-type]


CONTROL = schemathesis.openapi.from_dict(_control_spec(), config=_config())
INFERENCE = schemathesis.openapi.from_dict(inference_openapi(), config=_config())


@dataclass
class Served:
    server: ServerProcess
    fake: FakeLLMProcess


def _wait(done: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"not ready after {timeout} s: {what}")
        time.sleep(0.1)


def _seed(url: str, fake: FakeLLMProcess) -> None:
    from sklearn.linear_model import LogisticRegression

    from mlpilot.client import Client
    from tests.factories import iris_frame

    frame, y = iris_frame()
    X = frame.to_numpy()  # one FP64 tensor "input-0" of shape [-1, 4]: the spec's inference example fits it
    with Client(url) as c:
        c.register_model("iris", LogisticRegression(max_iter=300).fit(X, y), sample=X[:3])
        c.register_dataset("iris-ref", frame.assign(target=y), bind_to="iris:1")
        c.set_alias("iris", "prod", 1)
        c.deploy("iris", "iris:1")  # with its default monitors (traffic, drift) and SLO (availability)
        backend = {"base_url": fake.base_url, "model": "fake-llm"}
        c.register_app("assistant", {"generator": backend})
        c.deploy("assistant", "assistant:1")
        c.register_app("vectors", {"type": "embeddings", "embedder": backend})
        c.deploy("vectors", "vectors:1")
        _wait(lambda: httpx.get(f"{url}/v2/models/iris/ready").status_code == 200, "iris served")
        for app in ("assistant", "vectors"):
            _wait(lambda app=app: httpx.get(f"{url}/v1/models/{app}").status_code == 200, f"{app} served")
        for i, rid in enumerate(REQUEST_IDS):
            c.predict("iris", X[i : i + 1], headers={"x-request-id": rid})
        c.create_api_key("fuzz", ["read"])
        c.create_slo("iris", "p99", {"indicator": "latency", "objective": 0.99, "threshold": 100})
        c.set_healing_policy("iris", mode="suggest")
        c.register_model("iris", LogisticRegression(max_iter=100, C=0.5).fit(X, y), sample=X[:3])
        c.start_rollout("iris", candidate="iris:2")
        _wait(lambda: len(c.logs("iris", limit=100)) >= len(REQUEST_IDS), "the seeded predictions logged")
        c.feedback("iris", [{"request_id": rid, "label": int(y[i])} for i, rid in enumerate(REQUEST_IDS)])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("fuzz") / "home"
    fake = FakeLLMProcess()
    try:
        env = {"MLPILOT_SERVER__GRPC": "0", "MLPILOT_LOGS__FLUSH_INTERVAL_S": "0.2"}
        server = ServerProcess(home, extra_env=env)
        try:
            _seed(server.url, fake)
            yield Served(server, fake)
        finally:
            server.stop()
    finally:
        fake.stop()


def _call(case: schemathesis.Case, served: Served) -> None:
    response = case.call(base_url=served.server.url, timeout=30)
    SEEN[f"{case.method.upper()} {case.path}"][response.status_code] += 1
    case.validate_response(response, checks=CHECKS)


def test_the_fuzzed_control_spec_is_the_served_one(served: Served) -> None:
    served_spec = httpx.get(f"{served.server.url}/openapi.json", timeout=10).json()
    assert served_spec == _control_spec()


@CONTROL.exclude(method="DELETE").parametrize()
def test_control_api(case: schemathesis.Case, served: Served) -> None:
    _call(case, served)


@INFERENCE.parametrize()
def test_inference_api(case: schemathesis.Case, served: Served) -> None:
    _call(case, served)


@CONTROL.include(method="DELETE").exclude(path="/api/v1/deployments/{name}").parametrize()
def test_control_api_deletes(case: schemathesis.Case, served: Served) -> None:
    _call(case, served)


@CONTROL.include(method="DELETE", path="/api/v1/deployments/{name}").parametrize()
def test_control_api_deployment_delete(case: schemathesis.Case, served: Served) -> None:
    _call(case, served)


#: operations whose success path the seeding must make reachable (a 2xx at least once)
MUST_SUCCEED = [
    "GET /api/v1/deployments/{name}",
    "GET /api/v1/deployments/{name}/logs",
    "GET /api/v1/deployments/{name}/feedback",
    "GET /api/v1/deployments/{name}/drift",
    "GET /api/v1/deployments/{name}/monitors/{monitor}/results",
    "GET /api/v1/rollouts/{rollout_id}",
    "GET /api/v1/artifacts/{name}/versions/{version}",
    "GET /v2/models/{name}",
    "POST /v2/models/{name}/infer",
    "POST /v1/chat/completions",
    "POST /v1/completions",
    "POST /v1/embeddings",
]


def test_fuzzing_reached_the_handlers() -> None:
    """Most operations of both specs got a 2xx at least once, and so did the ones that matter most."""
    if not SEEN:
        pytest.skip("needs the fuzz tests above in the same run")
    ops = {op for spec in (CONTROL, INFERENCE) for op in _operations(spec.raw_schema)}
    succeeded = {op for op in ops if any(200 <= s < 300 for s in SEEN[op])}
    missing = [op for op in MUST_SUCCEED if op not in succeeded]
    assert not missing, {op: dict(SEEN[op]) for op in missing}
    assert len(succeeded) >= 0.6 * len(ops), sorted(ops - succeeded)


def _operations(spec: dict[str, Any]) -> list[str]:
    return [f"{method.upper()} {path}" for path, item in spec["paths"].items() for method in item]
