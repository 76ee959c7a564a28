"""``mlpilot.Client``: the Python SDK, embedded (a home directory, no server) or remote (``url=``).

Both modes build the same HTTP requests and parse the same responses; embedded mode routes them in-process to
the control API of a platform it wires itself (see :mod:`mlpilot.client.transport`).
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson
import pandas as pd

from mlpilot.blobs import BlobStore
from mlpilot.client.auth import AuthKeys
from mlpilot.client.llm import LLMArtifacts
from mlpilot.client.oip import Prediction, build_request, parse_response
from mlpilot.errors import (
    IntegrityError,
    InvalidArgument,
    MlpilotError,
    NotFound,
    Unavailable,
    error_from_dict,
)
from mlpilot.flavors import check_trusted, flavor_for_object, get_flavor
from mlpilot.flavors.base import LoadedModel
from mlpilot.records import (
    Alert,
    Alias,
    Artifact,
    ArtifactKind,
    ArtifactRef,
    ArtifactVersion,
    Deployment,
    DeploymentSpec,
    Event,
    Incident,
    Monitor,
    MonitorResult,
    MonitorSpec,
    Release,
    Rollout,
    RolloutSpec,
    RuntimeOptions,
    SLODefinition,
    SLOSpec,
)
from mlpilot.registry.datasets import sample_to_bytes, to_parquet_bytes
from mlpilot.settings import Settings

API = "/api/v1"


class Client(LLMArtifacts, AuthKeys):
    """The mlpilot SDK.

    Args:
        url: a server's base URL (``http://host:8000``); default ``MLPILOT_URL``, else embedded mode.
        home: embedded mode's home directory (default ``MLPILOT_HOME`` or ``./.mlpilot``).
        settings: full settings for embedded mode (overrides ``home``).
        actor: recorded as the actor of every change (default: settings/OS user; with an API key the server
            records ``key:<name>`` unless the key is admin).
        api_key: sent as ``Authorization: Bearer …`` in remote mode (default ``MLPILOT_API_KEY``); embedded mode
            needs none.
        timeout: seconds per HTTP request in remote mode.

    Raises (from every method): the :mod:`mlpilot.errors` class the server chose (``NotFound``, ``Conflict`` …);
    ``Unavailable`` when a remote server cannot be reached.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        home: str | Path | None = None,
        settings: Settings | None = None,
        actor: str | None = None,
        timeout: float = 60.0,
        api_key: str | None = None,
    ) -> None:
        url = url or (os.environ.get("MLPILOT_URL") if home is None and settings is None else None)
        headers = {"x-mlpilot-actor": actor} if actor else {}
        api_key = api_key or os.environ.get("MLPILOT_API_KEY")
        if url and api_key:
            headers["authorization"] = f"Bearer {api_key}"
        self._platform: Any = None
        self._metadata_cache: dict[tuple[str, str | None], tuple[float, dict[str, Any]]] = {}
        if url:
            self.url: str | None = url.rstrip("/")
            self._http = httpx.Client(base_url=self.url, timeout=timeout, headers=headers)
            self._cache = BlobStore(Path(os.environ.get("MLPILOT_CACHE", Path.home() / ".cache" / "mlpilot")))
        else:
            from mlpilot.app import build_platform
            from mlpilot.client.transport import InProcessTransport
            from mlpilot.server import PlatformServer

            if settings is None:
                settings = Settings(home=Path(home)) if home is not None else Settings()
            self.url = None
            self._platform = build_platform(settings)
            # The whole server app, in-process: the data plane starts on the first prediction only.
            server = PlatformServer(self._platform)
            transport = InProcessTransport(server, on_close=server.stop)
            self._http = httpx.Client(base_url="http://embedded", transport=transport, timeout=None, headers=headers)
            self._cache = BlobStore(settings.home / "cache")

    # ------------------------------------------------------------------------------------------ plumbing

    def close(self) -> None:
        self._http.close()
        if self._platform is not None:
            self._platform.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path if path.startswith("/v2") else API + path, **kwargs)
        except httpx.TransportError as exc:
            raise Unavailable(f"cannot reach the mlpilot server at {self.url}: {exc}") from exc
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"error": response.text[:500] or f"HTTP {response.status_code}"}
            raise error_from_dict(body if isinstance(body, dict) else {"error": str(body)}, response.status_code)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._call(method, path, **kwargs)
        return response.json() if response.content else None

    # ------------------------------------------------------------------------------------------ registry

    def register_model(
        self,
        name: str,
        model: Any,
        *,
        flavor: str | None = None,
        sample: Any = None,
        signature: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        parents: Sequence[str] = (),
        trust_pickle: bool = False,
    ) -> ArtifactVersion:
        """Register a model — a file path or an in-memory model object — as the next version of ``name``.

        Args:
            model: a path to a model file, or a fitted model object (scikit-learn, XGBoost, LightGBM, an ONNX
                ``ModelProto``, or any object with ``predict``).
            flavor: force a flavor instead of detecting it.
            sample: example inputs (DataFrame, array, or a path to CSV/Parquet/JSON/.npy) to infer the signature.
            signature: explicit signature ``{"inputs": [{"name", "datatype", "shape"}], "outputs": [...]}``.
            parents: lineage references ``NAME:VERSION`` (e.g. the training dataset).
            trust_pickle: you trust the file: it may be in a format that runs code when loaded (joblib/pickle,
                cloudpickle, a ``.py`` file). Without it such a file is refused (``FailedPrecondition``) unless the
                server sets ``artifacts.trust_pickle``. An in-memory object is trusted as you hand it over (it is
                already running in your process); the server records who trusted a version.

        Returns:
            The new :class:`~mlpilot.records.ArtifactVersion`.
        """
        data: dict[str, Any] = {"kind": "model"}
        if isinstance(model, (str, Path)):
            path = Path(model)
            if not path.is_file():
                raise InvalidArgument(f"model file {str(path)!r} does not exist")
            files: dict[str, Any] = {"file": (path.name, path.read_bytes())}
            if flavor:
                data["flavor"] = flavor
        else:
            flv = get_flavor(flavor) if flavor else flavor_for_object(model)
            ser = flv.serialize(model)
            files = {"file": (ser.filename, ser.data)}
            data.update(flavor=flv.name, flavor_metadata=json.dumps(dict(ser.metadata)))
            trust_pickle = trust_pickle or flv.tags(ser.metadata).unsafe  # the caller's own live object
        if trust_pickle:
            data["trust_pickle"] = "true"
        if sample is not None:
            if isinstance(sample, (str, Path)):
                files["sample"] = (Path(sample).name, Path(sample).read_bytes())
            else:
                files["sample"] = tuple(reversed(sample_to_bytes(sample)))
        self._add_common(data, metadata, tags, parents)
        if signature is not None:
            data["signature"] = json.dumps(dict(signature))
        return ArtifactVersion.model_validate(self._json("POST", f"/artifacts/{name}/versions", data=data, files=files))

    @staticmethod
    def _add_common(
        data: dict[str, Any],
        metadata: Mapping[str, Any] | None,
        tags: Mapping[str, str] | None,
        parents: Sequence[str],
    ) -> None:
        if metadata:
            data["metadata"] = json.dumps(dict(metadata))
        if tags:
            data["tags"] = json.dumps(dict(tags))
        if parents:
            data["parents"] = json.dumps(list(parents))

    def register_dataset(
        self,
        name: str,
        data: pd.DataFrame | str | Path,
        *,
        bind_to: str | None = None,
        role: str = "reference",
        metadata: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        parents: Sequence[str] = (),
    ) -> ArtifactVersion:
        """Register a table (DataFrame or CSV/Parquet/JSON file) as a dataset; ``bind_to`` a model version makes
        it that model's ``role`` dataset (``reference``: the default drift reference)."""
        if isinstance(data, pd.DataFrame):
            files = {"file": ("data.parquet", to_parquet_bytes(data))}
        else:
            path = Path(data)
            if not path.is_file():
                raise InvalidArgument(f"dataset file {str(path)!r} does not exist")
            files = {"file": (path.name, path.read_bytes())}
        form: dict[str, Any] = {"kind": "dataset", "role": role}
        if bind_to:
            form["bind_to"] = bind_to
        self._add_common(form, metadata, tags, parents)
        return ArtifactVersion.model_validate(self._json("POST", f"/artifacts/{name}/versions", data=form, files=files))

    def register_artifact(
        self,
        name: str,
        kind: ArtifactKind | str,
        path: str | Path,
        *,
        metadata: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        parents: Sequence[str] = (),
    ) -> ArtifactVersion:
        """Register a file as a version of a prompt, index, tool or app artifact."""
        path = Path(path)
        if not path.is_file():
            raise InvalidArgument(f"file {str(path)!r} does not exist")
        form: dict[str, Any] = {"kind": ArtifactKind(kind).value}
        self._add_common(form, metadata, tags, parents)
        return ArtifactVersion.model_validate(
            self._json(
                "POST",
                f"/artifacts/{name}/versions",
                data=form,
                files={"file": (path.name, path.read_bytes())},
            )
        )

    def list_artifacts(self, kind: ArtifactKind | str | None = None) -> list[Artifact]:
        params = {"kind": ArtifactKind(kind).value} if kind else {}
        return [Artifact.model_validate(a) for a in self._json("GET", "/artifacts", params=params)]

    def get_artifact(self, name: str) -> Artifact:
        return Artifact.model_validate(self._json("GET", f"/artifacts/{name}"))

    def list_versions(self, name: str) -> list[ArtifactVersion]:
        return [ArtifactVersion.model_validate(v) for v in self._json("GET", f"/artifacts/{name}/versions")]

    def get_version(self, ref: str) -> ArtifactVersion:
        """Resolve ``NAME``, ``NAME:VERSION`` or ``NAME@ALIAS``."""
        r = ArtifactRef.parse(ref)
        if r.alias:
            return ArtifactVersion.model_validate(self._json("GET", f"/artifacts/{r.name}/aliases/{r.alias}"))
        if r.version is None:
            latest = self.get_artifact(r.name).latest_version
            if latest is None:
                raise NotFound(f"artifact {r.name!r} has no versions")
            r = ArtifactRef(name=r.name, version=latest)
        return ArtifactVersion.model_validate(self._json("GET", f"/artifacts/{r.name}/versions/{r.version}"))

    def download(self, ref: str) -> tuple[ArtifactVersion, Path]:
        """Fetch a version's content into the local cache, verified against its digest; returns its path (a cached
        copy is verified too, and fetched again when it went bad)."""
        version = self.get_version(ref)
        if self._cache.exists(version.digest):
            try:
                return version, self._cache.open_verified(version.digest).path
            except IntegrityError:  # corrupted on this disk: the server's copy replaces it below
                pass
        response = self._call("GET", f"/artifacts/{version.name}/versions/{version.version}/content")
        digest, _ = self._cache.put_stream(io.BytesIO(response.content))
        if digest != version.digest:
            raise IntegrityError(f"downloaded content of {version.ref} hashes to {digest}, expected {version.digest}")
        return version, self._cache.open_verified(version.digest).path

    def load_model(self, ref: str) -> LoadedModel:
        """Load a registered model locally (digest-verified); ``.predict(x)`` gives named outputs. A format that runs
        code when loaded loads only if its version records a trust decision (``FailedPrecondition`` otherwise)."""
        version = self.get_version(ref)
        if version.flavor is None:
            raise InvalidArgument(f"{version.ref} is a {version.kind.value}, not a model")
        flavor, fmeta = get_flavor(version.flavor), version.metadata.get("flavor", {})
        check_trusted(flavor, fmeta, version.ref)  # before anything is downloaded
        self.download(version.ref)
        return flavor.load(self._cache.open_verified(version.digest), fmeta)

    def read_dataset(self, ref: str) -> pd.DataFrame:
        version, path = self.download(ref)
        if version.kind is not ArtifactKind.DATASET:
            raise InvalidArgument(f"{version.ref} is a {version.kind.value}, not a dataset")
        return pd.read_parquet(path)

    def set_alias(self, name: str, alias: str, version: int, *, expect: int | str = "any") -> Alias:
        """Point ``name@alias`` at ``version``. ``expect``: ``"any"``, ``"absent"`` or the version it must point
        at now (compare-and-set; a lost race raises ``Conflict``)."""
        return Alias.model_validate(
            self._json("PUT", f"/artifacts/{name}/aliases/{alias}", json={"version": version, "expect": expect})
        )

    def delete_alias(self, name: str, alias: str) -> None:
        self._call("DELETE", f"/artifacts/{name}/aliases/{alias}")

    def list_aliases(self, name: str) -> list[Alias]:
        return [Alias.model_validate(a) for a in self._json("GET", f"/artifacts/{name}/aliases")]

    def set_tags(self, ref: str, tags: Mapping[str, str | None]) -> ArtifactVersion:
        v = self.get_version(ref)
        return ArtifactVersion.model_validate(
            self._json("PATCH", f"/artifacts/{v.name}/versions/{v.version}/tags", json={"tags": dict(tags)})
        )

    def bind(self, ref: str, role: str, target: str) -> ArtifactVersion:
        v = self.get_version(ref)
        return ArtifactVersion.model_validate(
            self._json("PUT", f"/artifacts/{v.name}/versions/{v.version}/bindings/{role}", json={"target": target})
        )

    # ------------------------------------------------------------------------------------------ deployments

    def deploy(
        self,
        deployment: str,
        model: str,
        *,
        variant: str | None = None,
        runtime: RuntimeOptions | Mapping[str, Any] | None = None,
        shadow: bool = False,
        replace: bool = False,
        sticky_header: str | None = None,
    ) -> Deployment:
        """Deploy ``model`` (``NAME:VERSION``/``NAME@ALIAS``) as a variant of ``deployment`` (created if new)."""
        rt = runtime.model_dump() if isinstance(runtime, RuntimeOptions) else dict(runtime or {})
        body = {
            "model": model,
            "variant": variant,
            "runtime": rt,
            "shadow": shadow,
            "replace": replace,
            "sticky_header": sticky_header,
        }
        return Deployment.model_validate(self._json("POST", f"/deployments/{deployment}/variants", json=body))

    def apply_deployment(
        self, name: str, spec: DeploymentSpec | Mapping[str, Any], expect_revision: int | None = None
    ) -> Deployment:
        body_spec = spec.model_dump(mode="json") if isinstance(spec, DeploymentSpec) else dict(spec)
        return Deployment.model_validate(
            self._json("PUT", f"/deployments/{name}", json={"spec": body_spec, "expect_revision": expect_revision})
        )

    def set_traffic(
        self,
        deployment: str,
        weights: Mapping[str, int],
        *,
        shadows: Sequence[str] | None = None,
        expect_revision: int | None = None,
    ) -> Deployment:
        """Set the split, e.g. ``{"iris-v1": 90, "iris-v2": 10}`` (unnamed variants get 0; the sum must be 100)."""
        body = {
            "weights": dict(weights),
            "shadows": list(shadows) if shadows is not None else None,
            "expect_revision": expect_revision,
        }
        return Deployment.model_validate(self._json("PUT", f"/deployments/{deployment}/traffic", json=body))

    def get_deployment(self, name: str) -> Deployment:
        return Deployment.model_validate(self._json("GET", f"/deployments/{name}"))

    def list_deployments(self) -> list[Deployment]:
        return [Deployment.model_validate(d) for d in self._json("GET", "/deployments")]

    def delete_deployment(self, name: str) -> None:
        self._call("DELETE", f"/deployments/{name}")

    def export_kserve(
        self,
        deployment: str,
        *,
        namespace: str | None = None,
        storage_uri_prefix: str | None = None,
        cpu: float | None = None,
        memory: str | None = None,
        format: str = "yaml",
    ) -> str:
        """KServe InferenceService manifests of ``deployment``: a YAML stream (``format="json"``: a JSON document with
        ``manifests``, ``files`` to copy and ``notes``). ``storage_uri_prefix`` is where KServe reads the models
        (default ``<artifact URL>/kserve`` when the artifacts are on object storage)."""
        given = {"namespace": namespace, "storage_uri_prefix": storage_uri_prefix, "cpu": cpu, "memory": memory}
        params = {k: v for k, v in given.items() if v is not None}
        return self._call("GET", f"/deployments/{deployment}/kserve", params={**params, "format": format}).text

    def snapshot(self) -> dict[str, Any]:
        """The current routing snapshot (what the data plane serves)."""
        result: dict[str, Any] = self._json("GET", "/snapshot")
        return result

    # ------------------------------------------------------------------------------------------ inference

    def model_metadata(self, deployment: str, version: str | None = None) -> dict[str, Any]:
        """OIP model metadata of a served deployment (inputs, outputs, versions)."""
        path = f"/v2/models/{deployment}" + (f"/versions/{version}" if version else "")
        result: dict[str, Any] = self._json("GET", path)
        return result

    def _cached_metadata(self, deployment: str, version: str | None) -> dict[str, Any]:
        # Input names only change with a redeploy; a few seconds of caching saves a round trip per prediction.
        key = (deployment, version)
        hit = self._metadata_cache.get(key)
        now = time.monotonic()
        if hit is None or now - hit[0] > 5.0:
            hit = (now, self.model_metadata(deployment, version))
            self._metadata_cache[key] = hit
        return hit[1]

    def predict(
        self,
        deployment: str,
        data: Any,
        *,
        version: str | int | None = None,
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
    ) -> Prediction:
        """Predict through the data plane (OIP v2 REST), routed like any client's request.

        Args:
            data: a DataFrame, dict of column -> values, list of row dicts, array (single-input models), or a
                complete OIP request body.
            version: pin a model version or variant name (``/versions/{v}``) instead of the traffic split.
            headers: e.g. the deployment's sticky-routing header.

        Returns:
            A :class:`~mlpilot.client.oip.Prediction` (``.outputs``, ``.variant``, ``.request_id``).
        """
        v = str(version) if version is not None else None
        full_body = isinstance(data, Mapping) and "inputs" in data
        body = build_request(data, {} if full_body else self._cached_metadata(deployment, v), request_id)
        path = f"/v2/models/{deployment}" + (f"/versions/{v}" if v else "") + "/infer"
        response = self._call(
            "POST",
            path,
            content=orjson.dumps(body),
            headers={"content-type": "application/json", **dict(headers or {})},
        )
        return parse_response(
            response.json(), response.headers.get("x-mlpilot-variant"), response.headers.get("x-request-id")
        )

    # ------------------------------------------------------------------------------------------ observe

    def feedback(self, deployment: str, items: pd.DataFrame | Sequence[Mapping[str, Any]]) -> int:
        """Send labels, scores or rewards for logged predictions: rows with ``request_id``, optional ``row``,
        one of ``label``/``score``/``reward`` and an optional event time ``ts``. All or nothing.

        Raises:
            NotFound: a request id is not in the deployment's request log.
            InvalidArgument: a value of the wrong type (e.g. a string label for a numeric model).
        """
        if isinstance(items, pd.DataFrame):
            rows: list[dict[str, Any]] = [
                {str(k): v for k, v in r.items() if v is not None and not (isinstance(v, float) and v != v)}
                for r in items.to_dict(orient="records")
            ]
        else:
            rows = [dict(r) for r in items]
        for r in rows:
            if isinstance(r.get("ts"), pd.Timestamp):
                r["ts"] = r["ts"].isoformat()
        result = self._json(
            "POST",
            f"/deployments/{deployment}/feedback",
            content=orjson.dumps({"items": rows}, option=orjson.OPT_SERIALIZE_NUMPY, default=str),
            headers={"content-type": "application/json"},
        )
        return int(result["stored"])

    def logs(
        self,
        deployment: str,
        *,
        since: str | None = None,
        until: str | None = None,
        variant: str | None = None,
        status: str | None = None,
        shadow: bool | None = None,
        limit: int = 100,
    ) -> pd.DataFrame:
        """Logged predictions, newest first (one row per input row)."""
        params: dict[str, Any] = {"limit": limit}
        for k, v in (("since", since), ("until", until), ("variant", variant), ("status", status), ("shadow", shadow)):
            if v is not None:
                params[k] = v
        return pd.DataFrame(self._json("GET", f"/deployments/{deployment}/logs", params=params))

    def drift(
        self,
        deployment: str,
        *,
        since: str | None = None,
        until: str | None = None,
        variant: str | None = None,
        **params: Any,
    ) -> dict[str, Any]:
        """Per-feature drift of the deployment's logged traffic against its reference dataset (JSON report)."""
        query: dict[str, Any] = {
            k: v for k, v in (("since", since), ("until", until), ("variant", variant)) if v is not None
        }
        query.update(params)
        result: dict[str, Any] = self._json("GET", f"/deployments/{deployment}/drift", params=query)
        return result

    # ------------------------------------------------------------------------------------------ monitors

    def create_monitor(
        self, deployment: str, name: str, spec: MonitorSpec | Mapping[str, Any], *, replace: bool = False
    ) -> Monitor:
        """Create (``replace=True``: update) a scheduled monitor, e.g.
        ``{"kind": "drift", "window": "1h", "every": "15m", "reference": "bound"}``."""
        body = spec.model_dump(mode="json") if isinstance(spec, MonitorSpec) else dict(spec)
        data = self._json(
            "PUT", f"/deployments/{deployment}/monitors/{name}", json=body, params={"replace": str(replace).lower()}
        )
        return Monitor.model_validate(data)

    def list_monitors(self, deployment: str | None = None) -> list[Monitor]:
        path = f"/deployments/{deployment}/monitors" if deployment else "/monitors"
        return [Monitor.model_validate(m) for m in self._json("GET", path)]

    def get_monitor(self, deployment: str, name: str) -> Monitor:
        return Monitor.model_validate(self._json("GET", f"/deployments/{deployment}/monitors/{name}"))

    def delete_monitor(self, deployment: str, name: str) -> None:
        self._call("DELETE", f"/deployments/{deployment}/monitors/{name}")

    def monitor_results(
        self, deployment: str, name: str, *, since: str | None = None, until: str | None = None, limit: int = 1000
    ) -> list[MonitorResult]:
        """The monitor's time series, oldest first."""
        params: dict[str, Any] = {"limit": limit}
        params.update({k: v for k, v in (("since", since), ("until", until)) if v is not None})
        data = self._json("GET", f"/deployments/{deployment}/monitors/{name}/results", params=params)
        return [MonitorResult.model_validate(r) for r in data]

    def run_monitor(self, deployment: str, name: str) -> MonitorResult:
        """Run a monitor now; the result is recorded in its time series."""
        return MonitorResult.model_validate(self._json("POST", f"/deployments/{deployment}/monitors/{name}/run"))

    def tick_monitors(self) -> dict[str, Any]:
        """Run every due monitor and evaluate every SLO now."""
        result: dict[str, Any] = self._json("POST", "/monitors/tick")
        return result

    def create_slo(
        self, deployment: str, name: str, spec: SLOSpec | Mapping[str, Any], *, replace: bool = False
    ) -> SLODefinition:
        """Create an SLO, e.g. ``{"indicator": "latency", "objective": 0.99, "threshold": 50}``."""
        body = spec.model_dump(mode="json") if isinstance(spec, SLOSpec) else dict(spec)
        data = self._json(
            "PUT", f"/deployments/{deployment}/slos/{name}", json=body, params={"replace": str(replace).lower()}
        )
        return SLODefinition.model_validate(data)

    def slos(self, deployment: str) -> list[dict[str, Any]]:
        """Every SLO of the deployment with its burn rates, budget left and alert."""
        result: list[dict[str, Any]] = self._json("GET", f"/deployments/{deployment}/slos")
        return result

    def check_slo(self, deployment: str, name: str) -> dict[str, Any]:
        """Evaluate an SLO now (opens, escalates or resolves its alert)."""
        result: dict[str, Any] = self._json("POST", f"/deployments/{deployment}/slos/{name}/check")
        return result

    def alerts(self, deployment: str | None = None, status: str | None = None, limit: int = 100) -> list[Alert]:
        """Alerts, newest first (``status``: firing or resolved)."""
        params: dict[str, Any] = {"limit": limit}
        params.update({k: v for k, v in (("deployment", deployment), ("status", status)) if v is not None})
        return [Alert.model_validate(a) for a in self._json("GET", "/alerts", params=params)]

    # ------------------------------------------------------------------------------------------ incidents

    def incidents(self, deployment: str | None = None, status: str | None = None, limit: int = 100) -> list[Incident]:
        """Incidents, newest first (``status``: open, mitigating, mitigated or resolved)."""
        params: dict[str, Any] = {"limit": limit}
        params.update({k: v for k, v in (("deployment", deployment), ("status", status)) if v is not None})
        return [Incident.model_validate(i) for i in self._json("GET", "/incidents", params=params)]

    def incident(self, incident_id: int) -> Incident:
        return Incident.model_validate(self._json("GET", f"/incidents/{incident_id}"))

    def incident_timeline(self, incident_id: int) -> list[Event]:
        """The incident's events and its deployment's around it, oldest first."""
        return [Event.model_validate(e) for e in self._json("GET", f"/incidents/{incident_id}/timeline")]

    def ack_incident(self, incident_id: int) -> Incident:
        return Incident.model_validate(self._json("POST", f"/incidents/{incident_id}/ack"))

    def incident_diagnosis(self, incident_id: int) -> dict[str, Any]:
        """The latest diagnosis: verdict, ranked hypotheses with evidence refs and suggested remediations."""
        return dict(self._json("GET", f"/incidents/{incident_id}/diagnosis"))

    def diagnose_incident(self, incident_id: int) -> dict[str, Any]:
        """Run the RCA engine on the incident now."""
        return dict(self._json("POST", f"/incidents/{incident_id}/diagnose"))

    def incident_remediations(self, incident_id: int) -> list[dict[str, Any]]:
        return list(self._json("GET", f"/incidents/{incident_id}/remediations"))

    def approve_remediation(self, incident_id: int) -> dict[str, Any]:
        """Run the incident's suggested remediation (verified, and undone if it does not help)."""
        return dict(self._json("POST", f"/incidents/{incident_id}/approve"))

    def reject_remediation(self, incident_id: int, reason: str = "") -> dict[str, Any]:
        return dict(self._json("POST", f"/incidents/{incident_id}/reject", json={"reason": reason}))

    def healing_policy(self, deployment: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/deployments/{deployment}/healing"))

    def set_healing_policy(self, deployment: str, **fields: Any) -> dict[str, Any]:
        """E.g. ``set_healing_policy("fraud", mode="auto", min_confidence=0.8)``; fields not given take the platform
        defaults (see :meth:`healing_policy` for the current ones)."""
        return dict(self._json("PUT", f"/deployments/{deployment}/healing", json=fields))

    def reset_healing_policy(self, deployment: str) -> dict[str, Any]:
        """Drop the deployment's own policy; returns the platform defaults that now apply."""
        return dict(self._json("DELETE", f"/deployments/{deployment}/healing"))

    def resolve_incident(self, incident_id: int, reason: str = "") -> Incident:
        body = {"reason": reason}
        return Incident.model_validate(self._json("POST", f"/incidents/{incident_id}/resolve", json=body))

    # ------------------------------------------------------------------------------------------ rollouts

    def start_rollout(
        self, deployment: str, spec: RolloutSpec | Mapping[str, Any] | None = None, **fields: Any
    ) -> Rollout:
        """Start a rollout, e.g. ``start_rollout("iris", candidate="iris:2", steps=[{"weight": 10}, {"weight": 100}])``
        (fields of :class:`~mlpilot.records.RolloutSpec`)."""
        body = spec.model_dump(mode="json") if isinstance(spec, RolloutSpec) else dict(spec or {})
        body.update(fields)
        return Rollout.model_validate(self._json("POST", f"/deployments/{deployment}/rollouts", json=body))

    def rollout(self, deployment: str | None = None, rollout_id: int | None = None) -> Rollout:
        """A rollout by id, or the deployment's active (else latest) rollout."""
        if rollout_id is not None:
            return Rollout.model_validate(self._json("GET", f"/rollouts/{rollout_id}"))
        if deployment is None:
            raise InvalidArgument("give a deployment or a rollout id")
        return Rollout.model_validate(self._json("GET", f"/deployments/{deployment}/rollout"))

    def rollouts(self, deployment: str | None = None, active: bool | None = None, limit: int = 100) -> list[Rollout]:
        params: dict[str, Any] = {"limit": limit}
        params.update({k: v for k, v in (("deployment", deployment), ("active", active)) if v is not None})
        return [Rollout.model_validate(r) for r in self._json("GET", "/rollouts", params=params)]

    def rollout_decisions(self, rollout_id: int) -> list[Event]:
        """Every transition of a rollout with its decision record."""
        return [Event.model_validate(e) for e in self._json("GET", f"/rollouts/{rollout_id}/decisions")]

    def _rollout_action(self, rollout_id: int, action: str) -> Rollout:
        return Rollout.model_validate(self._json("POST", f"/rollouts/{rollout_id}/{action}"))

    def pause_rollout(self, rollout_id: int) -> Rollout:
        return self._rollout_action(rollout_id, "pause")

    def resume_rollout(self, rollout_id: int) -> Rollout:
        return self._rollout_action(rollout_id, "resume")

    def promote_rollout(self, rollout_id: int) -> Rollout:
        return self._rollout_action(rollout_id, "promote")

    def abort_rollout(self, rollout_id: int) -> Rollout:
        return self._rollout_action(rollout_id, "abort")

    def tick_rollouts(self) -> list[Rollout]:
        """Reconcile every active rollout now."""
        return [Rollout.model_validate(r) for r in self._json("POST", "/rollouts/tick")]

    def wait_rollout(
        self, rollout_id: int, timeout_s: float = 600.0, poll_s: float = 0.5, on_change: Any = None
    ) -> Rollout:
        """Poll until the rollout is settled (promoted, rolled back or aborted); ``on_change(rollout)`` is called on
        every new revision. Raises ``Unavailable`` (retryable) when ``timeout_s`` passes first."""
        deadline = time.monotonic() + timeout_s
        seen = 0
        while True:
            r = self.rollout(rollout_id=rollout_id)
            if r.revision != seen:
                seen = r.revision
                if on_change is not None:
                    on_change(r)
            if not r.active:
                return r
            if time.monotonic() > deadline:
                raise Unavailable(f"rollout {rollout_id} is still {r.phase.value} after {timeout_s:g} s")
            time.sleep(poll_s)

    def rollback_release(self, deployment: str, to: int | None = None) -> Rollout:
        """Go back to an earlier release (default: the one before the live one) as one unit, at once."""
        params = {"to": to} if to is not None else {}
        return Rollout.model_validate(self._json("POST", f"/deployments/{deployment}/releases/rollback", params=params))

    def releases(self, deployment: str) -> list[Release]:
        return [Release.model_validate(r) for r in self._json("GET", f"/deployments/{deployment}/releases")]

    # ------------------------------------------------------------------------------------------ events

    def events(
        self, subject: str | None = None, action: str | None = None, after_id: int = 0, limit: int = 100
    ) -> list[Event]:
        """The newest ``limit`` events (oldest first); ``subject``/``action`` match exactly or by ``prefix*``."""
        params: dict[str, Any] = {"after_id": after_id, "limit": limit}
        if subject:
            params["subject"] = subject
        if action:
            params["action"] = action
        return [Event.model_validate(e) for e in self._json("GET", "/events", params=params)]

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", "/health")
        return result


__all__ = ["Client", "MlpilotError"]
