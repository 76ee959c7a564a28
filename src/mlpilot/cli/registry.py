"""``mlpilot models|datasets|artifacts|aliases|events`` commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from mlpilot.cli.context import client
from mlpilot.cli.output import console, emit, table, ts
from mlpilot.errors import InvalidArgument
from mlpilot.records import Artifact, ArtifactKind, ArtifactVersion, Event

TRUST_PICKLE_HELP = (
    "trust the file: it may be in a format that runs code when loaded (joblib/pickle, cloudpickle, .py); "
    "recorded on the version (docs/security.md, Artifacts)"
)

models = typer.Typer(help="Register and inspect models.", no_args_is_help=True)
datasets = typer.Typer(help="Register and inspect datasets.", no_args_is_help=True)
artifacts = typer.Typer(help="All artifacts: prompts, indexes, tools, apps, models, datasets.", no_args_is_help=True)
aliases = typer.Typer(help="Movable names for versions (champion, production …).", no_args_is_help=True)

JSON_OPT = typer.Option(False, "--json", help="print JSON for scripts")


def parse_pairs(pairs: list[str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in pairs or []:
        key, sep, value = p.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"{what} {p!r} must be KEY=VALUE")
        out[key] = value
    return out


def _metadata(pairs: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, raw in parse_pairs(pairs, "--meta").items():
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def _show_version(v: ArtifactVersion) -> None:
    console.print(f"[bold]{v.ref}[/bold]  {v.kind.value}  {v.flavor or ''}")
    rows: list[tuple[str, Any]] = [
        ("digest", v.digest),
        ("size", f"{v.size} bytes"),
        ("file", v.filename),
        ("created", f"{ts(v.created_at)} by {v.created_by}"),
        ("aliases", ", ".join(v.aliases) or "-"),
        ("parents", ", ".join(v.parents) or "-"),
        ("bindings", ", ".join(f"{k}={t}" for k, t in v.bindings.items()) or "-"),
        ("tags", ", ".join(f"{k}={t}" for k, t in v.tags.items()) or "-"),
    ]
    if v.unsafe:
        rows.append(("unsafe", "yes — pickle/Python: loading runs code; loads only from the registry store"))
        fmeta = v.metadata.get("flavor") or {}
        trusted = f"by {fmeta['trusted_by']} ({fmeta.get('trusted_via')})" if fmeta.get("trusted_by") else "no"
        rows.append(("trusted", trusted))
    for key, value in rows:
        console.print(f"  {key:<9} {value}")
    if v.signature:
        sig = v.signature
        ins = ", ".join(f"{s['name']}:{s['datatype']}{s['shape']}" for s in sig.get("inputs", []))
        outs = ", ".join(f"{s['name']}:{s['datatype']}{s['shape']}" for s in sig.get("outputs", []))
        console.print(f"  {'inputs':<9} {ins}")
        console.print(f"  {'outputs':<9} {outs or '-'}")
    extra = {k: val for k, val in v.metadata.items() if k not in ("flavor", "unsafe_reason")}
    if extra:
        console.print(f"  {'metadata':<9} {json.dumps(extra, default=str)[:400]}")


def _list_artifacts(items: list[Artifact], title: str) -> None:
    table(
        title,
        ["name", "kind", "latest", "aliases", "created"],
        [
            (
                a.name,
                a.kind.value,
                a.latest_version,
                ", ".join(f"{k}→{v}" for k, v in a.aliases.items()),
                ts(a.created_at),
            )
            for a in items
        ],
    )


# ---------------------------------------------------------------------------------------------- models


@models.command("register")
def models_register(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="model name"),
    path: Path = typer.Argument(..., help="model file (.joblib/.pkl/.skops/.ubj/.json/.txt/.onnx/.py)"),
    sample: Path | None = typer.Option(None, "--sample", help="example inputs (CSV/Parquet/JSON/.npy)"),
    flavor: str | None = typer.Option(None, "--flavor", help="sklearn, xgboost, lightgbm, onnx or pyfunc"),
    signature: Path | None = typer.Option(None, "--signature", help="JSON file with an explicit signature"),
    meta: list[str] | None = typer.Option(None, "--meta", help="KEY=VALUE metadata (VALUE may be JSON)"),
    tag: list[str] | None = typer.Option(None, "--tag", help="KEY=VALUE tag"),
    parent: list[str] | None = typer.Option(None, "--parent", help="lineage parent NAME:VERSION"),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help=TRUST_PICKLE_HELP),
    as_json: bool = JSON_OPT,
) -> None:
    """Register a model file as the next version of NAME. A joblib/pickle, cloudpickle or .py file runs code when
    it is loaded: it needs --trust-pickle (or the server's artifacts.trust_pickle)."""
    sig = None
    if signature is not None:
        try:
            sig = json.loads(signature.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InvalidArgument(f"cannot read signature file {signature}: {exc}") from exc
    v = client(ctx).register_model(
        name,
        path,
        flavor=flavor,
        sample=sample,
        signature=sig,
        metadata=_metadata(meta),
        tags=parse_pairs(tag, "--tag"),
        parents=parent or [],
        trust_pickle=trust_pickle,
    )

    def render(v: ArtifactVersion) -> None:
        console.print(f"registered [bold]{v.ref}[/bold]")
        _show_version(v)

    emit(v, as_json, render)


@models.command("list")
def models_list(ctx: typer.Context, as_json: bool = JSON_OPT) -> None:
    """List models."""
    emit(client(ctx).list_artifacts(ArtifactKind.MODEL), as_json, lambda a: _list_artifacts(a, "models"))


@models.command("show")
def models_show(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="NAME, NAME:VERSION or NAME@ALIAS"),
    as_json: bool = JSON_OPT,
) -> None:
    """Show one model version (the latest when no version is given)."""
    emit(client(ctx).get_version(ref), as_json, _show_version)


@models.command("versions")
def models_versions(ctx: typer.Context, name: str, as_json: bool = JSON_OPT) -> None:
    """List all versions of a model."""
    emit(
        client(ctx).list_versions(name),
        as_json,
        lambda vs: table(
            f"versions of {name}",
            ["version", "flavor", "digest", "aliases", "created", "by"],
            [(v.version, v.flavor, v.digest[:19], ", ".join(v.aliases), ts(v.created_at), v.created_by) for v in vs],
        ),
    )


# ---------------------------------------------------------------------------------------------- datasets


@datasets.command("register")
def datasets_register(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    path: Path = typer.Argument(..., help="CSV, Parquet or JSON table"),
    bind_to: str | None = typer.Option(None, "--bind-to", help="model NAME:VERSION to bind this dataset to"),
    role: str = typer.Option("reference", "--role", help="binding role (reference = default drift reference)"),
    meta: list[str] | None = typer.Option(None, "--meta"),
    tag: list[str] | None = typer.Option(None, "--tag"),
    as_json: bool = JSON_OPT,
) -> None:
    """Register a table as the next version of dataset NAME (stored as Parquet)."""
    v = client(ctx).register_dataset(
        name, path, bind_to=bind_to, role=role, metadata=_metadata(meta), tags=parse_pairs(tag, "--tag")
    )
    emit(
        v,
        as_json,
        lambda v: console.print(
            f"registered [bold]{v.ref}[/bold] ({v.metadata.get('rows')} rows)"
            + (f", bound to {bind_to} as {role}" if bind_to else "")
        ),
    )


@datasets.command("list")
def datasets_list(ctx: typer.Context, as_json: bool = JSON_OPT) -> None:
    emit(client(ctx).list_artifacts(ArtifactKind.DATASET), as_json, lambda a: _list_artifacts(a, "datasets"))


@datasets.command("show")
def datasets_show(ctx: typer.Context, ref: str, as_json: bool = JSON_OPT) -> None:
    emit(client(ctx).get_version(ref), as_json, _show_version)


# ---------------------------------------------------------------------------------------------- artifacts


@artifacts.command("register")
def artifacts_register(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    path: Path = typer.Argument(...),
    kind: ArtifactKind = typer.Option(..., "--kind", help="prompt, index, tool, app (models/datasets have their own)"),
    meta: list[str] | None = typer.Option(None, "--meta"),
    parent: list[str] | None = typer.Option(None, "--parent"),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help=f"models: {TRUST_PICKLE_HELP}"),
    as_json: bool = JSON_OPT,
) -> None:
    """Register a file as a version of any artifact kind."""
    c = client(ctx)
    if kind is ArtifactKind.MODEL:
        v = c.register_model(name, path, metadata=_metadata(meta), parents=parent or [], trust_pickle=trust_pickle)
    elif kind is ArtifactKind.DATASET:
        v = c.register_dataset(name, path, metadata=_metadata(meta), parents=parent or [])
    else:
        v = c.register_artifact(name, kind, path, metadata=_metadata(meta), parents=parent or [])
    emit(v, as_json, lambda v: console.print(f"registered [bold]{v.ref}[/bold] ({v.kind.value})"))


@artifacts.command("list")
def artifacts_list(
    ctx: typer.Context, kind: ArtifactKind | None = typer.Option(None, "--kind"), as_json: bool = JSON_OPT
) -> None:
    emit(client(ctx).list_artifacts(kind), as_json, lambda a: _list_artifacts(a, "artifacts"))


@artifacts.command("show")
def artifacts_show(ctx: typer.Context, ref: str, as_json: bool = JSON_OPT) -> None:
    emit(client(ctx).get_version(ref), as_json, _show_version)


# ---------------------------------------------------------------------------------------------- aliases


@aliases.command("set")
def aliases_set(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    alias: str = typer.Argument(...),
    version: int = typer.Argument(..., min=1),
    expect: str = typer.Option("any", "--expect", help='"any", "absent", or the version it must point at now'),
    as_json: bool = JSON_OPT,
) -> None:
    """Point NAME@ALIAS at VERSION (with --expect, only if nobody moved it meanwhile)."""
    exp: int | str = int(expect) if expect.isdigit() else expect
    a = client(ctx).set_alias(name, alias, version, expect=exp)
    emit(a, as_json, lambda a: console.print(f"{a.name}@{a.alias} → version {a.version}"))


@aliases.command("list")
def aliases_list(ctx: typer.Context, name: str, as_json: bool = JSON_OPT) -> None:
    emit(
        client(ctx).list_aliases(name),
        as_json,
        lambda al: table(
            f"aliases of {name}",
            ["alias", "version", "updated", "by"],
            [(a.alias, a.version, ts(a.updated_at), a.updated_by) for a in al],
        ),
    )


@aliases.command("delete")
def aliases_delete(ctx: typer.Context, name: str, alias: str) -> None:
    client(ctx).delete_alias(name, alias)
    console.print(f"deleted {name}@{alias}")


# ---------------------------------------------------------------------------------------------- events


def events_command(
    ctx: typer.Context,
    subject: str | None = typer.Option(None, "--subject", help="e.g. artifact:iris or deployment:* (prefix)"),
    action: str | None = typer.Option(None, "--action", help="e.g. alias.moved or deployment.* (prefix)"),
    limit: int = typer.Option(50, "--limit", min=1, max=10_000),
    as_json: bool = JSON_OPT,
) -> None:
    """The audit trail: every change, who made it and when, with before/after."""

    def render(events: list[Event]) -> None:
        table(
            "events",
            ["id", "time", "actor", "action", "subject", "change"],
            [(e.id, ts(e.ts), e.actor, e.action, e.subject, _change(e)) for e in events],
        )

    emit(client(ctx).events(subject=subject, action=action, limit=limit), as_json, render)


def _change(e: Event) -> str:
    def short(d: Any) -> str:
        return "-" if d is None else json.dumps(d, default=str, separators=(",", ":"))[:60]

    return f"{short(e.before)} → {short(e.after)}"


def install(app: typer.Typer) -> None:
    app.add_typer(models, name="models")
    app.add_typer(datasets, name="datasets")
    app.add_typer(artifacts, name="artifacts")
    app.add_typer(aliases, name="aliases")
    app.command("events")(events_command)
