"""``mlpilot up`` (the server), ``mlpilot serve`` (a data plane only) and ``mlpilot demo`` (the guided tour)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import typer

from mlpilot.blobs import check_blob_url, is_url
from mlpilot.cli.context import CliContext
from mlpilot.cli.output import console
from mlpilot.errors import MlpilotError
from mlpilot.settings import Settings


def up_command(
    ctx: typer.Context,
    host: str = typer.Option(None, "--host", help="bind address (default 127.0.0.1)"),
    port: int = typer.Option(None, "--port", help="HTTP port (default 8000)"),
    grpc_port: int = typer.Option(None, "--grpc-port", help="gRPC port (default 8001)"),
    no_grpc: bool = typer.Option(False, "--no-grpc", help="do not serve gRPC"),
    workers: int = typer.Option(None, "--workers", min=1, help="worker processes (default 1)"),
    executor: str = typer.Option(
        None, "--executor", help="where variants run: inprocess (default) or ray (Ray Serve replicas; the ray extra)"
    ),
    ray_address: str = typer.Option(
        None, "--ray-address", help="with --executor ray: the cluster to join (host:6379, ray://host:10001, auto)"
    ),
    store: str = typer.Option(
        None,
        "--store",
        help="the control-plane store: sqlite:///PATH or postgresql+psycopg://USER@HOST/DB (default SQLite in home)",
    ),
    artifacts: str = typer.Option(
        None, "--artifacts", help="where artifacts live: a directory or a URL such as s3://bucket/prefix"
    ),
    artifact_options: list[str] = typer.Option(
        None,
        "--artifacts-option",
        help="an fsspec storage option of an --artifacts URL, KEY=VALUE (a string) or KEY:=JSON; repeatable",
    ),
) -> None:
    """Run the server in the foreground: OIP v2 REST + gRPC, /metrics, and the control API."""
    from mlpilot.server import serve

    obj: CliContext = ctx.obj
    settings = obj.settings()
    _listen(settings, host, port, grpc_port, no_grpc)
    if workers:
        settings.server.workers = workers
    apply_up_options(
        settings,
        executor=executor,
        ray_address=ray_address,
        store=store,
        artifacts=artifacts,
        artifact_options=artifact_options,
    )
    serve(settings)


def apply_up_options(
    settings: Settings,
    *,
    executor: str | None = None,
    ray_address: str | None = None,
    store: str | None = None,
    artifacts: str | None = None,
    artifact_options: list[str] | None = None,
) -> Settings:
    """Check ``mlpilot up``'s scale-out options and put them into ``settings`` (unset ones keep the settings' values).

    Nothing is connected to or started: a bad value is a ``typer.BadParameter`` (usage error, exit 2) naming the
    option, before the server starts.
    """
    if executor:
        if executor not in ("inprocess", "ray"):
            raise typer.BadParameter(f"{executor!r}: use inprocess or ray", param_hint="--executor")
        settings.executor.kind = executor  # type: ignore[assignment]  # checked just above
    if ray_address:
        if settings.executor.kind != "ray":
            raise typer.BadParameter("the Ray address needs --executor ray", param_hint="--ray-address")
        settings.executor.ray_address = ray_address
    if store:
        settings.store.url = check_store_url(store)
    if artifacts:
        settings.artifacts.root = artifacts if is_url(artifacts) else str(Path(artifacts).expanduser().resolve())
    root = settings.artifacts.root
    if artifact_options:
        if not is_url(root):
            raise typer.BadParameter(
                "storage options apply to an object-storage root: give --artifacts s3://bucket/prefix (or a URL in "
                "MLPILOT_ARTIFACTS__ROOT)",
                param_hint="--artifacts-option",
            )
        settings.artifacts.storage_options = {
            **settings.artifacts.storage_options,
            **parse_storage_options(artifact_options),
        }
    if is_url(root):
        try:
            check_blob_url(root)
        except MlpilotError as exc:
            hint = "--artifacts" if artifacts else "MLPILOT_ARTIFACTS__ROOT"
            raise typer.BadParameter(exc.message, param_hint=hint) from exc
    return settings


def check_store_url(url: str) -> str:
    """``url`` if it names a store mlpilot runs on and its driver is installed, else ``typer.BadParameter``."""
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return url
    if url.startswith("postgresql+psycopg://"):
        if importlib.util.find_spec("psycopg") is None:
            raise typer.BadParameter(
                'PostgreSQL needs an optional dependency: pip install "mlpilot[postgres]"', param_hint="--store"
            )
        return url
    hint = " (the driver is psycopg 3: postgresql+psycopg://…)" if url.startswith(("postgres:", "postgresql")) else ""
    raise typer.BadParameter(
        f"{url!r}: use sqlite:///PATH or postgresql+psycopg://USER[:PASSWORD]@HOST[:PORT]/DB{hint}",
        param_hint="--store",
    )


def parse_storage_options(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` (the value is a string) or ``KEY:=JSON`` (a number, a boolean, an object…) pairs as a dict."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.rstrip(":"):
            raise typer.BadParameter(f"{pair!r} must be KEY=VALUE or KEY:=JSON", param_hint="--artifacts-option")
        if key.endswith(":"):
            key = key[:-1]
            try:
                out[key] = json.loads(value)
            except json.JSONDecodeError as exc:
                raise typer.BadParameter(
                    f"{pair!r}: the value after := must be JSON ({exc.msg})", param_hint="--artifacts-option"
                ) from exc
        else:
            out[key] = value
    return out


def serve_command(
    ctx: typer.Context,
    control_url: str = typer.Option(
        None, "--control-url", help="the control plane to follow (default $MLPILOT_SERVER__CONTROL_URL)"
    ),
    host: str = typer.Option(None, "--host", help="bind address (default 127.0.0.1)"),
    port: int = typer.Option(None, "--port", help="HTTP port (default 8000)"),
    grpc_port: int = typer.Option(None, "--grpc-port", help="gRPC port (default 8001)"),
    no_grpc: bool = typer.Option(False, "--no-grpc", help="do not serve gRPC"),
    home: Path = typer.Option(None, "--home", help="this data plane's home: request log, blob cache, last snapshot"),
    api_key_env: str = typer.Option(
        "MLPILOT_API_KEY",
        "--api-key-env",
        help="the environment variable holding the API key (read scope) sent to the control plane",
    ),
) -> None:
    """Run a data plane only (OIP v2 REST + gRPC, OpenAI API, /metrics) following a remote control plane.

    It fetches routing snapshots and model blobs from the control plane's API, sending the key in $MLPILOT_API_KEY
    (or the variable --api-key-env names; it needs the read scope). With auth on here (auth.mode on, or auto and
    not listening on loopback only) inference needs a credential: API keys are verified by asking the control plane
    (cached auth.cache_s; 503 if it cannot be asked and the key is not cached), OIDC bearer tokens are validated
    locally with this process's auth.oidc settings. See docs/security.md, "Remote data planes".
    """
    import os

    from mlpilot.dataserver import serve_data

    obj: CliContext = ctx.obj
    settings = obj.settings()
    if home is not None:
        settings.home = home
    url = control_url or settings.server.control_url
    if not url:
        raise typer.BadParameter("give the control plane's URL (http://host:8000)", param_hint="--control-url")
    if not url.startswith(("http://", "https://")):
        raise typer.BadParameter(f"{url!r} is not an http(s) URL", param_hint="--control-url")
    if api_key_env != "MLPILOT_API_KEY" and not os.environ.get(api_key_env):
        raise typer.BadParameter(f"${api_key_env} is not set (or empty)", param_hint="--api-key-env")
    _listen(settings, host, port, grpc_port, no_grpc)
    serve_data(settings, url, api_key_env)


def _listen(settings: Settings, host: str | None, port: int | None, grpc_port: int | None, no_grpc: bool) -> None:
    """Apply the listening options a server command was given (unset ones keep the settings' values)."""
    if host:
        settings.server.host = host
    if port:
        settings.server.port = port
    if grpc_port:
        settings.server.grpc_port = grpc_port
    if no_grpc:
        settings.server.grpc = False


def demo_command(
    ctx: typer.Context,
    exit_after: bool = typer.Option(False, "--exit", help="end after the tour instead of serving"),
    port: int = typer.Option(None, "--port", help="port to serve on after the tour (default 8000)"),
) -> None:
    """The guided tour: train, register, deploy — then serve until Ctrl-C (or stop with --exit)."""
    from mlpilot.demo import run_tour
    from mlpilot.server import serve

    obj: CliContext = ctx.obj
    settings = obj.settings()
    if port:
        settings.server.port = port
    run_tour(settings, console)
    if exit_after:
        console.print("\n[green]tour finished[/green] (--exit): not serving.")
        return
    s = settings.server
    console.print(
        f"\n[bold]Now serving[/bold] — Ctrl-C to stop. Try from another terminal:\n"
        f"  curl http://{s.host}:{s.port}/v2/models/breast-cancer\n"
        f"  mlpilot --url http://{s.host}:{s.port} traffic set breast-cancer champion=50 challenger=50\n"
        f"  tritonclient (HTTP {s.host}:{s.port}, gRPC {s.host}:{s.grpc_port}) — model 'breast-cancer'\n"
    )
    serve(settings)


def install(app: typer.Typer) -> None:
    app.command("up")(up_command)
    app.command("serve")(serve_command)
    app.command("demo")(demo_command)
