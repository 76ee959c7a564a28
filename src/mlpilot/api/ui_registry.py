"""Dashboard endpoints for the registry page (``/api/v1/ui/artifacts/...``): what the plain registry routes do not
give as JSON — the lineage of every version of an artifact in both directions (what it derives from and is bound
to, what refers to it, which deployments serve it), and a structured diff of two versions (signature, metadata,
evals, and for prompts, tools and apps their text, one line per entry, for a line diff in the browser)."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from mlpilot.api.scopes import Scope, platform, route
from mlpilot.app import Platform
from mlpilot.errors import InvalidArgument, NotFound
from mlpilot.records import INT64_MAX, ArtifactKind, ArtifactRef, ArtifactVersion, check_alias

router = APIRouter(tags=["dashboard"])
P = Annotated[Platform, Depends(platform)]

#: documents larger than this are not shown as text (prompt files are at most 1 MiB anyway)
MAX_TEXT_BYTES = 1 << 20
#: tags holding eval results as JSON (``eval/DATASET:VERSION``, written by ``mlpilot eval``)
EVAL_PREFIX = "eval/"


# ------------------------------------------------------------------------------------------------ lineage


def _edges(v: ArtifactVersion) -> Iterator[tuple[str, str]]:
    """``(role, reference)`` for everything version ``v`` points at."""
    for parent in v.parents:
        yield "parent", parent
    yield from sorted(v.bindings.items())
    app = v.metadata.get("app") if v.kind is ArtifactKind.APP else None
    if isinstance(app, Mapping):
        if app.get("prompt"):
            yield "prompt", str(app["prompt"])
        retriever = app.get("retriever")
        if isinstance(retriever, Mapping) and retriever.get("index"):
            yield "index", str(retriever["index"])
        for tool in app.get("tools") or []:
            yield "tool", str(tool)
    for tag in sorted(v.tags):
        if tag.startswith(EVAL_PREFIX):
            yield "evaluated on", tag[len(EVAL_PREFIX) :]


@route(router, "GET", "/api/v1/ui/artifacts/{name}/lineage", Scope.READ)
def lineage(p: P, name: str) -> dict[str, Any]:
    """Per version of ``name``: ``uses`` (parents, bindings such as a ``reference`` dataset, an app's prompt, index
    and tools, the datasets it was evaluated on — each with the ``NAME:VERSION`` it resolves to now, or null),
    ``used_by`` (versions of other artifacts that point at it) and ``served_by`` (deployment variants running it)."""
    art = p.store.get_artifact(name)
    everything = [v for a in p.store.list_artifacts() for v in p.store.list_versions(a.name)]
    by_ref = {v.ref: v for v in everything}
    resolved: dict[str, ArtifactVersion | None] = {}

    def resolve(ref: str) -> ArtifactVersion | None:
        if ref not in resolved:
            try:
                resolved[ref] = by_ref.get(ref) or p.store.get_version(ref)
            except (NotFound, InvalidArgument):
                resolved[ref] = None  # a dangling or malformed reference is shown as such, not an error
        return resolved[ref]

    uses: dict[str, list[dict[str, Any]]] = defaultdict(list)
    used_by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for v in everything:
        for role, ref in _edges(v):
            target = resolve(ref)
            uses[v.ref].append(
                {"role": role, "ref": ref, "resolved": target and target.ref, "kind": target and target.kind.value}
            )
            if target is not None:
                used_by[target.ref].append({"role": role, "ref": v.ref, "kind": v.kind.value})
    served_by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for d in p.store.list_deployments():
        for var in d.spec.variants:
            target = resolve(var.model)
            if target is not None:
                served_by[target.ref].append(
                    {
                        "deployment": d.name,
                        "variant": var.name,
                        "ref": var.requested or var.model,
                        "weight": d.spec.traffic.get(var.name, 0),
                        "shadow": var.name in d.spec.shadows,
                    }
                )
    versions = [
        {
            "version": v.version,
            "ref": v.ref,
            "uses": uses[v.ref],
            "used_by": used_by[v.ref],
            "served_by": served_by[v.ref],
        }
        for v in everything
        if v.name == art.name
    ]
    return {"name": art.name, "kind": art.kind.value, "versions": versions}


# ------------------------------------------------------------------------------------------------ diff


def _pick(p: Platform, name: str, which: str, value: str) -> ArtifactVersion:
    """Version ``value`` (a number, an alias or ``latest``) of ``name``; errors name the parameter."""
    value = value.strip()
    if value.isascii() and value.isdigit():
        if not 1 <= int(value) <= INT64_MAX:
            raise InvalidArgument(f"{which}: versions start at 1 and end at {INT64_MAX}, got {value}")
        ref = ArtifactRef(name=name, version=int(value))
    elif value == "latest":
        ref = ArtifactRef(name=name)
    else:
        try:
            ref = ArtifactRef(name=name, alias=check_alias(value))
        except InvalidArgument as exc:
            raise InvalidArgument(f"{which}: {value!r} is neither a version number nor an alias") from exc
    try:
        return p.store.get_version(ref)
    except NotFound as exc:
        raise NotFound(f"{which}: {exc.message}") from exc


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested objects as ``a.b.c`` keys; lists and scalars are leaves."""
    if isinstance(value, Mapping) and (value or not prefix):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def _pairs(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Side by side: ``{key, a, b, status}`` with status ``same``, ``changed``, ``added`` (only in b) or
    ``removed`` (only in a), in key order."""
    rows = []
    for key in sorted(set(a) | set(b)):
        status = "added" if key not in a else "removed" if key not in b else "same" if a[key] == b[key] else "changed"
        rows.append({"key": key, "a": a.get(key), "b": b.get(key), "status": status})
    return rows


def _tensors(a: list[Any], b: list[Any]) -> dict[str, Any]:
    ta = {str(t.get("name")): t for t in a if isinstance(t, Mapping)}
    tb = {str(t.get("name")): t for t in b if isinstance(t, Mapping)}
    return {
        "added": [tb[n] for n in tb if n not in ta],
        "removed": [ta[n] for n in ta if n not in tb],
        "changed": [{"name": n, "a": ta[n], "b": tb[n]} for n in ta if n in tb and ta[n] != tb[n]],
        "unchanged": sum(1 for n in ta if n in tb and ta[n] == tb[n]),
    }


def _signature(a: ArtifactVersion, b: ArtifactVersion) -> dict[str, Any] | None:
    if a.signature is None and b.signature is None:
        return None
    sa, sb = a.signature or {}, b.signature or {}
    return {
        "a": a.signature is not None,
        "b": b.signature is not None,
        "inputs": _tensors(sa.get("inputs") or [], sb.get("inputs") or []),
        "outputs": _tensors(sa.get("outputs") or [], sb.get("outputs") or []),
        "columnar": {"a": sa.get("columnar"), "b": sb.get("columnar")},
    }


def _evals(v: ArtifactVersion) -> dict[str, Any]:
    """``{"DATASET metric": {mean, ci_low, ci_high, n}}`` from the eval tags (unparsable tags are skipped)."""
    out = {}
    for tag, raw in v.tags.items():
        if not tag.startswith(EVAL_PREFIX):
            continue
        try:
            metrics = json.loads(raw).get("metrics") or {}
        except (ValueError, AttributeError):
            continue
        for metric, value in metrics.items() if isinstance(metrics, Mapping) else ():
            if isinstance(value, Mapping):
                out[f"{tag[len(EVAL_PREFIX) :]} {metric}"] = value
    return out


def _text(p: Platform, v: ArtifactVersion) -> list[str] | None:
    """The version as lines for a text diff: a prompt as ``mlpilot prompts diff`` shows it (type, template, config,
    variables), a tool file and an app spec as sorted, indented JSON; None for other kinds or oversize content."""
    if v.kind is ArtifactKind.APP:
        return json.dumps(v.metadata.get("app"), indent=2, sort_keys=True, ensure_ascii=False).split("\n")
    if v.kind not in (ArtifactKind.PROMPT, ArtifactKind.TOOL) or v.size > MAX_TEXT_BYTES:
        return None
    blob = p.blobs.open_verified(v.digest)
    if v.kind is ArtifactKind.TOOL:
        raw = blob.path.read_text(encoding="utf-8", errors="replace")
        try:
            return json.dumps(json.loads(raw), indent=2, sort_keys=True, ensure_ascii=False).split("\n")
        except ValueError:
            return raw.split("\n")
    from mlpilot.llm.prompts import Prompt, _diff_lines

    scratch = p.registry.scratch_dir()
    try:  # the prompt reader picks JSON or YAML by the file's suffix: give it the registered file name
        path = scratch / (Path(v.filename).name or "prompt.json")
        shutil.copyfile(blob.path, path)
        return [line.removesuffix("\n") for line in _diff_lines(Prompt.from_file(path))]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _summary(v: ArtifactVersion) -> dict[str, Any]:
    return {
        "version": v.version,
        "ref": v.ref,
        "digest": v.digest,
        "size": v.size,
        "filename": v.filename,
        "flavor": v.flavor,
        "created_at": v.created_at.isoformat(),
        "created_by": v.created_by,
        "aliases": list(v.aliases),
    }


def _fields(v: ArtifactVersion) -> dict[str, Any]:
    out: dict[str, Any] = {
        "digest": v.digest,
        "size": v.size,
        "filename": v.filename,
        "flavor": v.flavor,
        "unsafe": v.unsafe,
        "parents": ", ".join(v.parents) or None,
    }
    out.update({f"binding {role}": target for role, target in v.bindings.items()})
    return out


@route(router, "GET", "/api/v1/ui/artifacts/{name}/diff", Scope.READ)
def diff(
    p: P,
    name: str,
    a: str = Query(..., min_length=1, max_length=64, description="the old side: a version number, alias or 'latest'"),
    b: str = Query(..., min_length=1, max_length=64, description="the new side: a version number, alias or 'latest'"),
) -> dict[str, Any]:
    """Two versions of ``name`` side by side. ``fields``, ``metadata`` (flattened to dotted keys), ``tags`` and
    ``evals`` are lists of ``{key, a, b, status}`` (status ``same``/``changed``/``added``/``removed``); ``signature``
    lists the inputs and outputs added, removed and changed (null when neither side has one); ``text`` holds both
    sides as lines for prompts, tools and apps (null otherwise)."""
    art = p.store.get_artifact(name)
    va, vb = _pick(p, art.name, "a", a), _pick(p, art.name, "b", b)
    ta, tb = _text(p, va), _text(p, vb)
    plain = {k: v for k, v in va.tags.items() if not k.startswith(EVAL_PREFIX)}
    return {
        "name": art.name,
        "kind": art.kind.value,
        "a": _summary(va),
        "b": _summary(vb),
        "fields": _pairs(_fields(va), _fields(vb)),
        "signature": _signature(va, vb),
        "metadata": _pairs(_flatten(va.metadata), _flatten(vb.metadata)),
        "tags": _pairs(plain, {k: v for k, v in vb.tags.items() if not k.startswith(EVAL_PREFIX)}),
        "evals": _pairs(_evals(va), _evals(vb)),
        "text": {"a": ta, "b": tb} if ta is not None or tb is not None else None,
    }
