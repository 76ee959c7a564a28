"""Registry routes: artifacts, versions, content, aliases, tags, bindings."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from mlpilot.api.params import INT64_MAX, Version
from mlpilot.api.scopes import Scope, actor, platform, route
from mlpilot.api.uploads import too_large
from mlpilot.app import Platform
from mlpilot.errors import InvalidArgument, MlpilotError
from mlpilot.records import Alias, Artifact, ArtifactKind, ArtifactRef, ArtifactVersion, check_alias
from mlpilot.registry.datasets import read_table

router = APIRouter(prefix="/api/v1/artifacts", tags=["registry"])
P = Annotated[Platform, Depends(platform)]
Actor = Annotated[str, Depends(actor)]


def _json_field(raw: str | None, what: str, expect: type) -> Any:
    if raw in (None, ""):
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"{what} is not valid JSON: {exc.msg} at position {exc.pos}") from exc
    if not isinstance(value, expect):
        raise InvalidArgument(f"{what} must be a JSON {expect.__name__}")
    return value


def _save(upload: UploadFile, into: Path, limit: int) -> Path:
    """Copy an upload into scratch space; stop (and keep nothing) as soon as it is over ``limit`` bytes."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", Path(upload.filename or "upload").name)[:200] or "upload"
    dest = into / name
    size = 0
    with open(dest, "wb") as out:
        while chunk := upload.file.read(1 << 20):
            size += len(chunk)
            if size > limit:
                out.close()
                dest.unlink()
                raise HTTPException(413, too_large(limit, f"upload {name!r}"))
            out.write(chunk)
    return dest


@route(router, "GET", "", Scope.READ)
def list_artifacts(p: P, kind: ArtifactKind | None = None) -> list[Artifact]:
    return p.store.list_artifacts(kind)


@route(router, "GET", "/{name}", Scope.READ)
def get_artifact(p: P, name: str) -> Artifact:
    return p.store.get_artifact(name)


@route(router, "POST", "/{name}/versions", Scope.WRITE, status_code=201)
def register_version(
    p: P,
    who: Actor,
    name: str,
    file: Annotated[UploadFile, File(description="the artifact content (model file, table …)")],
    kind: Annotated[ArtifactKind, Form()] = ArtifactKind.MODEL,
    sample: Annotated[UploadFile | None, File(description="example inputs (CSV/Parquet/JSON/.npy)")] = None,
    flavor: Annotated[str | None, Form()] = None,
    flavor_metadata: Annotated[str | None, Form(description="JSON object from a client-side serialize")] = None,
    signature: Annotated[str | None, Form(description="JSON signature")] = None,
    metadata: Annotated[str | None, Form(description="JSON object")] = None,
    tags: Annotated[str | None, Form(description="JSON object of strings")] = None,
    parents: Annotated[str | None, Form(description="JSON list of NAME:VERSION")] = None,
    bind_to: Annotated[str | None, Form(description="datasets: bind to this model version")] = None,
    role: Annotated[str, Form()] = "reference",
    trust_pickle: Annotated[
        bool, Form(description="models: the caller trusts a file that runs code when loaded (pickle, Python)")
    ] = False,
) -> ArtifactVersion:
    """Register a new version (multipart upload). Models are validated by loading and get a signature; a model
    in a format that runs code when loaded (pickle, joblib, cloudpickle, Python source) needs ``trust_pickle``
    (or the server's ``artifacts.trust_pickle``), else 412 and nothing is stored."""
    meta = _json_field(metadata, "metadata", dict)
    tag_map = _json_field(tags, "tags", dict)
    if tag_map and not all(isinstance(v, str) for v in tag_map.values()):
        raise InvalidArgument("tags must map names to strings")
    parent_list = _json_field(parents, "parents", list) or []
    limit = p.settings.artifacts.max_upload_bytes
    scratch = p.registry.scratch_dir()
    try:
        path = _save(file, scratch, limit)
        if kind is ArtifactKind.MODEL:
            sample_data = read_table(_save(sample, scratch, limit)) if sample is not None else None
            return p.registry.register_model(
                name,
                path,
                actor=who,
                flavor=flavor,
                flavor_metadata=_json_field(flavor_metadata, "flavor_metadata", dict),
                sample=sample_data,
                signature=_json_field(signature, "signature", dict),
                metadata=meta,
                tags=tag_map,
                parents=parent_list,
                trust_pickle=trust_pickle,
            )
        if kind is ArtifactKind.DATASET:
            return p.registry.register_dataset(
                name,
                path,
                actor=who,
                metadata=meta,
                tags=tag_map,
                parents=parent_list,
                bind_to=bind_to or None,
                role=role,
            )
        return p.registry.register_file(name, kind, path, actor=who, metadata=meta, tags=tag_map, parents=parent_list)
    except MlpilotError as exc:
        # name the user's file, not the server's scratch copy of it
        exc.message = exc.message.replace(str(scratch) + "/", "")
        exc.args = (exc.message,)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@route(router, "GET", "/{name}/versions", Scope.READ)
def list_versions(p: P, name: str) -> list[ArtifactVersion]:
    return p.store.list_versions(name)


@route(router, "GET", "/{name}/versions/{version}", Scope.READ)
def get_version(p: P, name: str, version: Version) -> ArtifactVersion:
    return p.store.get_version(ArtifactRef(name=name, version=version))


@route(router, "GET", "/{name}/versions/{version}/content", Scope.READ, response_class=StreamingResponse)
def get_content(p: P, name: str, version: Version) -> StreamingResponse:
    """The stored bytes, verified against the digest before the first byte is sent."""
    v = p.store.get_version(ArtifactRef(name=name, version=version))
    p.blobs.open_verified(v.digest)
    return StreamingResponse(
        p.blobs.read_chunks(v.digest),
        media_type="application/octet-stream",
        headers={"x-mlpilot-digest": v.digest, "content-disposition": f'attachment; filename="{v.filename}"'},
    )


class TagsBody(BaseModel):
    tags: dict[str, str | None] = Field(description="set tags; null deletes a tag")


@route(router, "PATCH", "/{name}/versions/{version}/tags", Scope.WRITE)
def set_tags(p: P, who: Actor, name: str, version: Version, body: TagsBody) -> ArtifactVersion:
    return p.store.set_tags(ArtifactRef(name=name, version=version), body.tags, who)


class BindingBody(BaseModel):
    target: str = Field(description="NAME:VERSION or NAME@ALIAS of the bound artifact (e.g. a dataset)")


@route(router, "PUT", "/{name}/versions/{version}/bindings/{role}", Scope.WRITE)
def bind(p: P, who: Actor, name: str, version: Version, role: str, body: BindingBody) -> ArtifactVersion:
    if not re.match(r"^[a-z][a-z0-9_-]{0,31}$", role):
        raise InvalidArgument(f"invalid binding role {role!r}")
    return p.store.bind(ArtifactRef(name=name, version=version), role, body.target, who)


@route(router, "GET", "/{name}/aliases", Scope.READ)
def list_aliases(p: P, name: str) -> list[Alias]:
    return p.store.list_aliases(name)


@route(router, "GET", "/{name}/aliases/{alias}", Scope.READ)
def resolve_alias(p: P, name: str, alias: str) -> ArtifactVersion:
    return p.store.get_version(ArtifactRef(name=name, alias=check_alias(alias)))


class AliasBody(BaseModel):
    version: int = Field(ge=1, le=INT64_MAX)
    expect: int | str = Field(
        "any",
        description='"any" moves unconditionally, "absent" requires a new alias, an int is compare-and-set',
    )


@route(router, "PUT", "/{name}/aliases/{alias}", Scope.WRITE)
def set_alias(p: P, who: Actor, name: str, alias: str, body: AliasBody) -> Alias:
    expect: int | bool | None
    if body.expect == "any":
        expect = True
    elif body.expect == "absent":
        expect = None
    elif isinstance(body.expect, int):
        expect = body.expect
    else:
        raise InvalidArgument('expect must be "any", "absent" or a version number')
    return p.store.set_alias(name, check_alias(alias), body.version, who, expect=expect)


@route(router, "DELETE", "/{name}/aliases/{alias}", Scope.WRITE, status_code=204)
def delete_alias(p: P, who: Actor, name: str, alias: str) -> None:
    p.store.delete_alias(name, alias, who)
