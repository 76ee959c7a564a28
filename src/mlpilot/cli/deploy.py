"""``mlpilot deploy``, ``mlpilot deployments …`` and ``mlpilot traffic set``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from mlpilot.cli.context import client
from mlpilot.cli.output import console, emit, err_console, table, ts
from mlpilot.errors import InvalidArgument
from mlpilot.records import BatchingOptions, Deployment, DeploymentLimits, RuntimeOptions

deployments = typer.Typer(help="Inspect and remove deployments.", no_args_is_help=True)
traffic = typer.Typer(help="Change how requests are split between variants.", no_args_is_help=True)
JSON_OPT = typer.Option(False, "--json", help="print JSON for scripts")


def show_deployment(d: Deployment) -> None:
    console.print(
        f"[bold]{d.name}[/bold]  revision {d.revision}  (snapshot {d.snapshot_version}, "
        f"updated {ts(d.updated_at)} by {d.updated_by})"
    )
    if d.spec.sticky_header:
        console.print(f"  sticky by header {d.spec.sticky_header}")
    rows = []
    for v in d.spec.variants:
        role = "shadow" if v.name in d.spec.shadows else ("live" if d.spec.traffic.get(v.name, 0) else "idle")
        b = v.runtime.batching
        wait = "adaptive" if b and b.max_wait_ms is None else f"{b.max_wait_ms} ms" if b else ""
        batching = f"≤{b.max_batch_size} / {wait}" if b else "-"
        rows.append(
            (
                v.name,
                v.model,
                v.requested or "",
                f"{d.spec.traffic.get(v.name, 0)}%",
                role,
                batching,
                v.runtime.replicas,
            )
        )
    table("variants", ["variant", "model", "requested", "weight", "role", "batching", "replicas"], rows)
    lim = d.spec.limits
    if lim is not None:
        parts = []
        if lim.rate_per_s is not None:
            parts.append(f"{lim.rate_per_s:g} requests/s (burst {lim.burst or max(1, lim.rate_per_s):g})")
        if lim.max_in_flight is not None:
            parts.append(f"≤{lim.max_in_flight} in flight per variant")
        if lim.fallback is not None:
            parts.append(f"fallback {lim.fallback} after {lim.breaker_failures} failures for {lim.breaker_open_s:g} s")
        console.print("  limits: " + ("; ".join(parts) or "server defaults"))


def deploy_command(
    ctx: typer.Context,
    deployment: str = typer.Argument(..., help="deployment name (the endpoint /v2/models/NAME)"),
    model: str = typer.Option(..., "--model", "-m", help="NAME:VERSION, NAME@ALIAS or NAME (latest)"),
    variant: str | None = typer.Option(None, "--variant", help="variant name (default MODEL-vVERSION)"),
    shadow: bool = typer.Option(False, "--shadow", help="add as a shadow (mirrored traffic, never answers)"),
    replace: bool = typer.Option(False, "--replace", help="make it the only variant at 100%"),
    max_batch_size: int = typer.Option(32, "--max-batch-size", min=1, help="adaptive batching (1 = off)"),
    max_wait_ms: float | None = typer.Option(None, "--max-wait-ms", min=0, help="batching wait (default adaptive)"),
    replicas: int = typer.Option(1, "--replicas", min=1),
    timeout: float = typer.Option(30.0, "--timeout", help="seconds per request"),
    sticky_header: str | None = typer.Option(None, "--sticky-header", help="route by this request header"),
    as_json: bool = JSON_OPT,
) -> None:
    """Deploy a model. New deployment: 100% traffic. Existing: added at 0% (or --shadow / --replace)."""
    batching = BatchingOptions(max_batch_size=max_batch_size, max_wait_ms=max_wait_ms) if max_batch_size > 1 else None
    runtime = RuntimeOptions(batching=batching, replicas=replicas, timeout_s=timeout)
    d = client(ctx).deploy(
        deployment,
        model,
        variant=variant,
        runtime=runtime,
        shadow=shadow,
        replace=replace,
        sticky_header=sticky_header,
    )
    emit(d, as_json, show_deployment)


@deployments.command("list")
def deployments_list(ctx: typer.Context, as_json: bool = JSON_OPT) -> None:
    """List deployments with their traffic split."""
    emit(
        client(ctx).list_deployments(),
        as_json,
        lambda ds: table(
            "deployments",
            ["name", "revision", "traffic", "shadows", "updated"],
            [
                (
                    d.name,
                    d.revision,
                    ", ".join(f"{k}={w}%" for k, w in d.spec.traffic.items() if w),
                    ", ".join(d.spec.shadows),
                    ts(d.updated_at),
                )
                for d in ds
            ],
        ),
    )


@deployments.command("show")
def deployments_show(ctx: typer.Context, name: str, as_json: bool = JSON_OPT) -> None:
    """Show a deployment: variants, weights, runtime options."""
    emit(client(ctx).get_deployment(name), as_json, show_deployment)


@deployments.command("delete")
def deployments_delete(ctx: typer.Context, name: str) -> None:
    client(ctx).delete_deployment(name)
    console.print(f"deleted deployment {name}")


@deployments.command("export-kserve")
def deployments_export_kserve(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="the deployment"),
    namespace: str | None = typer.Option(None, "--namespace", help="Kubernetes namespace of the manifests"),
    storage_uri_prefix: str | None = typer.Option(
        None,
        "--storage-uri-prefix",
        help="where KServe reads the models, e.g. s3://bucket/kserve (default: <artifact URL>/kserve on S3)",
    ),
    cpu: float | None = typer.Option(None, "--cpu", min=0.001, help="CPUs per predictor pod (requests = limits)"),
    memory: str | None = typer.Option(None, "--memory", help="memory per predictor pod, e.g. 2Gi"),
    output: Path | None = typer.Option(None, "--output", "-o", help="write to this file instead of stdout"),
    as_json: bool = typer.Option(False, "--json", help="JSON (manifests, files to copy, notes) instead of YAML"),
) -> None:
    """Export a deployment as KServe InferenceService manifests (v1beta1, Open Inference Protocol v2)."""
    text = client(ctx).export_kserve(
        name,
        namespace=namespace,
        storage_uri_prefix=storage_uri_prefix,
        cpu=cpu,
        memory=memory,
        format="json" if as_json else "yaml",
    )
    if as_json:
        text = json.dumps(json.loads(text), indent=2) + "\n"
    if output is None:
        print(text, end="" if text.endswith("\n") else "\n")
        return
    output.write_text(text if text.endswith("\n") else text + "\n")
    err_console.print(f"wrote {output}: copy the model files it lists, then kubectl apply -f {output}")


@deployments.command("limits")
def deployments_limits(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="deployment"),
    rate_per_s: float | None = typer.Option(None, "--rate-per-s", help="requests per second, all callers together"),
    burst: int | None = typer.Option(None, "--burst", help="token bucket size (default one second's worth)"),
    max_in_flight: int | None = typer.Option(None, "--max-in-flight", help="per variant; more are shed with 503"),
    fallback: str | None = typer.Option(None, "--fallback", help="variant answering while another one is failing"),
    breaker_failures: int = typer.Option(5, "--breaker-failures", help="consecutive failures that open a breaker"),
    breaker_open_s: float = typer.Option(30.0, "--breaker-open-s", help="seconds a breaker stays open"),
    clear: bool = typer.Option(False, "--clear", help="remove the deployment's limits (server defaults apply)"),
    as_json: bool = JSON_OPT,
) -> None:
    """Set a deployment's limits (docs/serving.md "Limits"); the options replace all of its current limits."""
    c = client(ctx)
    current = c.get_deployment(name)
    limits = None
    if not clear:
        limits = DeploymentLimits(
            rate_per_s=rate_per_s,
            burst=burst,
            max_in_flight=max_in_flight,
            fallback=fallback,
            breaker_failures=breaker_failures,
            breaker_open_s=breaker_open_s,
        )
    spec = current.spec.model_dump(mode="json")
    spec["limits"] = limits.model_dump(mode="json") if limits is not None else None
    d = c.apply_deployment(name, spec, expect_revision=current.revision)
    emit(d, as_json, show_deployment)


@traffic.command("set")
def traffic_set(
    ctx: typer.Context,
    deployment: str = typer.Argument(...),
    weights: list[str] = typer.Argument(..., help="VARIANT=WEIGHT …, summing to 100"),
    as_json: bool = JSON_OPT,
) -> None:
    """Set the traffic split, e.g. `mlpilot traffic set iris iris-v1=90 iris-v2=10`."""
    parsed: dict[str, int] = {}
    for w in weights:
        name, sep, value = w.partition("=")
        if not sep or not value.strip().lstrip("-").isdigit():
            raise InvalidArgument(f"weight {w!r} must be VARIANT=INTEGER, e.g. {name or 'iris-v2'}=10")
        parsed[name] = int(value)
    emit(client(ctx).set_traffic(deployment, parsed), as_json, show_deployment)


def install(app: typer.Typer) -> None:
    app.command("deploy")(deploy_command)
    app.add_typer(deployments, name="deployments")
    app.add_typer(traffic, name="traffic")
