"""Export a deployment as KServe ``InferenceService`` manifests (``serving.kserve.io/v1beta1``), for teams that serve
on KServe. A pure function of the deployment and its model versions: nothing is read or written here.

Mapping (one variant → one predictor):

* ``spec.predictor.model.modelFormat.name`` from the flavor: ``sklearn`` (joblib or pickle files; not skops),
  ``xgboost``, ``lightgbm``, ``onnx``. Any other flavor (pyfunc, LLM apps…) has no KServe runtime: ``InvalidArgument``.
* ``protocolVersion: v2`` (the Open Inference Protocol, which mlpilot's data plane also speaks).
* ``storageUri``: ``<prefix>/<model>/<version>``, a directory. KServe's runtimes look for a file of a fixed name in
  it (``model.joblib``, ``model.json``, ``model.bst``, ``model.onnx``), while mlpilot stores blobs by digest
  (``<root>/sha256/ab/cdef…``), so the export lists, for every variant, the blob to copy and where (``files``). The
  prefix defaults to ``<artifact URL>/kserve`` when the artifacts are on object storage; with local artifacts it
  must be given.
* ``minReplicas``/``maxReplicas`` from the variant's autoscaling (``scaleMetric: concurrency`` with its target), or
  both equal to its fixed replicas; ``timeout`` from its timeout; ``resources`` when a CPU or memory size is given.
* Traffic: one live variant → one InferenceService named after the deployment. Two live variants → the same
  InferenceService twice: the stable variant (the larger weight), then the candidate with ``canaryTrafficPercent``
  (KServe splits between the latest revision and the last one rolled out at 100%, so the two are applied in order).
  Three or more → one InferenceService per live variant and a note: the split is the ingress's job then.
  Shadows, idle variants, sticky routing and quarantine rules have no KServe equivalent and are named in the notes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mlpilot.blobs.local import digest_key
from mlpilot.errors import InvalidArgument
from mlpilot.records import ArtifactVersion, Deployment, VariantSpec

API_VERSION = "serving.kserve.io/v1beta1"
#: (flavor, stored format) -> the file name KServe's runtime for that model format loads from ``storageUri``.
RUNTIME_FILES: dict[tuple[str, str], str] = {
    ("sklearn", "joblib"): "model.joblib",
    ("sklearn", "pickle"): "model.pkl",
    ("xgboost", "json"): "model.json",
    ("xgboost", "ubj"): "model.bst",
    ("lightgbm", "text"): "model.bst",
    ("onnx", "onnx"): "model.onnx",
}
_DEFAULT_FORMAT = {"sklearn": "joblib", "xgboost": "ubj", "lightgbm": "text", "onnx": "onnx"}
#: KServe appends ``-predictor-00001`` (and more) to the name for its Kubernetes objects, which are DNS labels.
_MAX_NAME = 45
_ANNOTATION = "mlpilot.io"


@dataclass(frozen=True)
class ModelFile:
    """A blob to copy before the manifests are applied: mlpilot's content-addressed copy → where KServe reads it."""

    variant: str
    model: str
    digest: str
    source: str
    target: str

    def to_dict(self) -> dict[str, str]:
        return {
            "variant": self.variant,
            "model": self.model,
            "digest": self.digest,
            "from": self.source,
            "to": self.target,
        }


@dataclass(frozen=True)
class KServeExport:
    """The manifests (apply in order), the files to copy first, and what could not be expressed."""

    manifests: list[dict[str, Any]]
    files: list[ModelFile]
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"manifests": self.manifests, "files": [f.to_dict() for f in self.files], "notes": self.notes}

    def to_yaml(self) -> str:
        """A YAML stream of the manifests, preceded by the notes and the copy list as comments."""
        import yaml

        head = ["# KServe InferenceService manifests exported by mlpilot; apply them in this order."]
        head += ["# Copy each model file first (KServe's runtimes load a file of a fixed name from storageUri):"]
        head += [f"#   {f.source} -> {f.target}" for f in self.files]
        head += [f"# NOTE: {line}" for note in self.notes for line in _lines(note)]
        docs = [yaml.safe_dump(m, sort_keys=False, default_flow_style=False) for m in self.manifests]
        return "\n".join(head) + "\n---\n" + "---\n".join(docs)


def _lines(note: str) -> list[str]:
    return note.splitlines() or [""]


def isvc_name(name: str) -> str:
    """A valid InferenceService name for ``name``: lower case letters, digits and ``-``, starting with a letter."""
    out = re.sub(r"[^a-z0-9-]+", "-", name.lower())
    out = re.sub(r"^[^a-z]+", "", out)[:_MAX_NAME].rstrip("-")
    if not out:
        raise InvalidArgument(f"cannot make a KServe InferenceService name from {name!r}: it needs a letter")
    return out


def model_format(version: ArtifactVersion) -> tuple[str, str]:
    """``(modelFormat.name, file name)`` of a model version, or ``InvalidArgument`` when KServe cannot serve it."""
    flavor = version.flavor or version.kind.value
    fmt = str((version.metadata.get("flavor") or {}).get("format") or _DEFAULT_FORMAT.get(flavor, ""))
    filename = RUNTIME_FILES.get((flavor, fmt))
    if filename is None:
        if flavor in _DEFAULT_FORMAT:
            raise InvalidArgument(
                f"{version.ref} is a {flavor} model stored as {fmt}, which KServe's {flavor} runtime cannot load "
                f"(it loads {', '.join(f for (fl, _), f in RUNTIME_FILES.items() if fl == flavor)}); "
                "serve it with mlpilot"
            )
        raise InvalidArgument(f"{version.ref}: flavor {flavor} has no KServe runtime; serve it with mlpilot")
    return flavor, filename


def _quantity_cpu(cpu: float) -> str:
    millis = round(cpu * 1000)
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def _resources(cpu: float | None, memory: str | None) -> dict[str, Any] | None:
    size: dict[str, str] = {}
    if cpu is not None:
        if cpu <= 0:
            raise InvalidArgument(f"cpu must be positive, got {cpu}")
        size["cpu"] = _quantity_cpu(cpu)
    if memory:
        if not re.fullmatch(r"[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|K|M|G|T)?", memory):
            raise InvalidArgument(f"memory {memory!r} is not a Kubernetes quantity (e.g. 512Mi, 2Gi)")
        size["memory"] = memory
    return {"requests": dict(size), "limits": dict(size)} if size else None


def _predictor(variant: VariantSpec, flavor: str, storage_uri: str, resources: dict[str, Any] | None) -> dict[str, Any]:
    rt = variant.runtime
    predictor: dict[str, Any] = {}
    if rt.autoscaling is not None:
        a = rt.autoscaling
        predictor.update(
            minReplicas=a.min_replicas,
            maxReplicas=a.max_replicas,
            scaleMetric="concurrency",
            scaleTarget=max(1, math.ceil(a.target_ongoing_requests)),
        )
    else:
        predictor.update(minReplicas=rt.replicas, maxReplicas=rt.replicas)
    predictor["timeout"] = max(1, math.ceil(rt.timeout_s))
    model: dict[str, Any] = {"modelFormat": {"name": flavor}, "protocolVersion": "v2", "storageUri": storage_uri}
    if resources:
        model["resources"] = resources
    predictor["model"] = model
    return predictor


def _manifest(
    name: str, namespace: str | None, deployment: Deployment, variant: VariantSpec, digest: str
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    metadata["labels"] = {f"{_ANNOTATION}/deployment": isvc_name(deployment.name)}
    metadata["annotations"] = {
        f"{_ANNOTATION}/deployment": deployment.name,
        f"{_ANNOTATION}/revision": str(deployment.revision),
        f"{_ANNOTATION}/variant": variant.name,
        f"{_ANNOTATION}/model": variant.model,
        f"{_ANNOTATION}/digest": digest,
    }
    return {"apiVersion": API_VERSION, "kind": "InferenceService", "metadata": metadata, "spec": {}}


def kserve_export(
    deployment: Deployment,
    versions: Mapping[str, ArtifactVersion],
    *,
    artifact_url: str | None,
    local_root: str | None = None,
    storage_uri_prefix: str | None = None,
    namespace: str | None = None,
    cpu: float | None = None,
    memory: str | None = None,
) -> KServeExport:
    """KServe ``InferenceService`` manifests for ``deployment`` (see the module docstring for the mapping).

    Args:
        deployment: the deployment, as stored (variants pinned to ``NAME:VERSION``).
        versions: variant name → its model version (every live variant must be there).
        artifact_url: the blob store's URL when the artifacts are on object storage (``s3://bucket/prefix``), else
            ``None``.
        local_root: the local artifact directory (where the files to copy are), when ``artifact_url`` is ``None``.
        storage_uri_prefix: where KServe reads models (``s3://bucket/kserve``); default ``<artifact_url>/kserve``.
        namespace: the manifests' Kubernetes namespace (default: none, i.e. ``kubectl``'s current one).
        cpu: CPUs requested (and limited) per predictor pod, e.g. ``1`` or ``0.5``.
        memory: memory requested (and limited) per predictor pod, e.g. ``2Gi``.

    Raises:
        InvalidArgument: a live variant's flavor has no KServe runtime; no prefix with local artifacts; a bad prefix,
            CPU or memory.
    """
    prefix = (storage_uri_prefix or (f"{artifact_url.rstrip('/')}/kserve" if artifact_url else "")).rstrip("/")
    if not prefix:
        raise InvalidArgument(
            "the artifacts are on local disk: give a storage URI prefix (e.g. s3://bucket/models) where KServe will "
            "read the models, and copy the files the export lists there"
        )
    if "://" not in prefix:
        raise InvalidArgument(f"storage URI prefix {prefix!r} must be a URL KServe can read (s3://, gs://, pvc://…)")
    if namespace is not None and not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", namespace):
        raise InvalidArgument(f"namespace {namespace!r} is not a Kubernetes namespace name")
    resources = _resources(cpu, memory)
    spec = deployment.spec
    live = [v for v in spec.variants if spec.traffic.get(v.name, 0) > 0]
    # the stable variant first: the larger weight, the spec's order between equals
    live.sort(key=lambda v: -spec.traffic[v.name])
    notes: list[str] = []
    files: list[ModelFile] = []
    predictors: list[tuple[VariantSpec, dict[str, Any], str]] = []
    for v in live:
        mv = versions[v.name]
        flavor, filename = model_format(mv)
        storage_uri = f"{prefix}/{isvc_name(mv.name)}/{mv.version}"
        source = f"{artifact_url.rstrip('/')}/{digest_key(mv.digest)}" if artifact_url else ""
        if not source:
            source = f"{(local_root or '<artifacts>').rstrip('/')}/{digest_key(mv.digest)}"
        if all(f.digest != mv.digest for f in files):  # two variants of one model version share its directory
            files.append(ModelFile(v.name, mv.ref, mv.digest, source, f"{storage_uri}/{filename}"))
        predictors.append((v, _predictor(v, flavor, storage_uri, resources), mv.digest))

    base = isvc_name(deployment.name)
    if base != deployment.name:
        notes.append(f"the InferenceService is named {base!r}: KServe names are lower case letters, digits and '-'")
    manifests: list[dict[str, Any]] = []
    if len(predictors) <= 2:
        for i, (v, predictor, digest) in enumerate(predictors):
            m = _manifest(base, namespace, deployment, v, digest)
            if i == 1:
                predictor = {"canaryTrafficPercent": spec.traffic[v.name], **predictor}
            m["spec"] = {"predictor": predictor}
            manifests.append(m)
        if len(predictors) == 2:
            stable, candidate = live
            notes.append(
                f"canary: apply the first manifest ({stable.name}, {spec.traffic[stable.name]}%), wait until it is "
                f"Ready, then the second ({candidate.name}): KServe sends canaryTrafficPercent="
                f"{spec.traffic[candidate.name]} to the latest revision and the rest to the last one rolled out at 100%"
            )
    else:
        for v, predictor, digest in predictors:
            m = _manifest(isvc_name(f"{deployment.name}-{v.name}"), namespace, deployment, v, digest)
            m["spec"] = {"predictor": predictor}
            manifests.append(m)
        names = [m["metadata"]["name"] for m in manifests]
        if len(set(names)) < len(names):
            raise InvalidArgument(f"the variants' InferenceService names collide once made valid: {names}")
        weights = ", ".join(f"{isvc_name(f'{deployment.name}-{v.name}')}={spec.traffic[v.name]}%" for v in live)
        notes.append(
            f"{len(live)} live variants: an InferenceService splits traffic between two revisions only, so each "
            f"variant is its own InferenceService; split the traffic in your ingress: {weights}"
        )
    for v in spec.variants:
        if v.name in spec.shadows:
            notes.append(f"shadow variant {v.name!r} is not exported: KServe has no traffic mirroring")
        elif spec.traffic.get(v.name, 0) == 0:
            notes.append(f"variant {v.name!r} has 0% of the traffic and is not exported")
    if spec.sticky_header:
        notes.append(f"sticky routing by header {spec.sticky_header!r} is not exported")
    if spec.quarantine:
        notes.append(f"{len(spec.quarantine)} input quarantine rule(s) are not exported: KServe does not check inputs")
    return KServeExport(manifests, files, notes)


__all__ = ["API_VERSION", "RUNTIME_FILES", "KServeExport", "ModelFile", "isvc_name", "kserve_export", "model_format"]
