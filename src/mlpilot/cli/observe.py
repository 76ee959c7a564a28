"""``mlpilot feedback``, ``mlpilot drift`` and ``mlpilot logs`` (show, compact, prune)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

from mlpilot.cli.context import CliContext, client
from mlpilot.cli.output import console, print_json, table
from mlpilot.errors import InvalidArgument, NotFound
from mlpilot.registry.datasets import read_table

if TYPE_CHECKING:
    from mlpilot.app import Platform


def parse_since(text: str | None) -> str | None:
    """``15m``, ``2h``, ``3d`` (ago) or an ISO timestamp → ISO timestamp."""
    if text is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[-1:] in units and text[:-1].replace(".", "", 1).isdigit():
        return (datetime.now(timezone.utc) - timedelta(seconds=float(text[:-1]) * units[text[-1]])).isoformat()
    try:
        return datetime.fromisoformat(text).isoformat()
    except ValueError as exc:
        raise InvalidArgument(f"bad time {text!r}: use 15m, 2h, 3d or an ISO 8601 timestamp") from exc


def feedback_command(
    ctx: typer.Context,
    deployment: str = typer.Argument(...),
    file: Path | None = typer.Option(None, "--file", "-f", help="CSV/Parquet/JSON with request_id, label|score|reward"),
    request_id: str | None = typer.Option(None, "--request-id", help="one prediction's x-request-id"),
    label: str | None = typer.Option(None, "--label"),
    score: float | None = typer.Option(None, "--score"),
    reward: float | None = typer.Option(None, "--reward"),
    row: int = typer.Option(0, "--row", min=0, help="row within the request"),
) -> None:
    """Send labels (or scores, rewards) for logged predictions — one, or in bulk from a file."""
    if file is not None:
        df = read_table(file, allow_array=False)
        n = client(ctx).feedback(deployment, df)
    elif request_id is not None:
        item: dict[str, object] = {"request_id": request_id, "row": row}
        if label is not None:
            item["label"] = _typed(label)
        if score is not None:
            item["score"] = score
        if reward is not None:
            item["reward"] = reward
        n = client(ctx).feedback(deployment, [item])
    else:
        raise InvalidArgument("give --file FILE, or --request-id ID with --label/--score/--reward")
    console.print(f"stored {n} feedback item(s) for {deployment}")


def _typed(text: str) -> object:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def logs_command(
    ctx: typer.Context,
    deployment: str = typer.Argument(...),
    since: str | None = typer.Option(None, "--since", help="15m, 2h, 3d or ISO time"),
    variant: str | None = typer.Option(None, "--variant"),
    status: str | None = typer.Option(None, "--status", help="ok or error"),
    limit: int = typer.Option(20, "--limit", min=1, max=100_000),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Logged predictions, newest first."""
    df = client(ctx).logs(deployment, since=parse_since(since), variant=variant, status=status, limit=limit)
    if as_json:
        print_json(df.to_dict(orient="records"))
        return
    outs = [c for c in df.columns if str(c).startswith("out.")][:3]
    cols = ["ts", "request_id", "row", "variant", "status", "latency_s", "shadow", *outs]
    rows = [
        [str(r.get(c, ""))[:26] if c != "latency_s" else f"{r.get(c, 0) * 1000:.2f} ms" for c in cols]
        for r in df.to_dict(orient="records")
    ]
    table(f"{deployment}: {len(df)} rows", cols, rows)


class _LogsGroup(TyperGroup):
    """``mlpilot logs DEPLOYMENT …`` stays ``mlpilot logs show DEPLOYMENT …``; ``compact`` and ``prune`` are
    sub-commands (a deployment named like one is shown with ``mlpilot logs show NAME``)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # ctx: typer's (vendored) click Context
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["show", *args]
        return super().parse_args(ctx, args)


logs = typer.Typer(
    cls=_LogsGroup,
    help="The request log: logged predictions (mlpilot logs DEPLOYMENT), compaction and retention.",
    no_args_is_help=True,
)


def parse_age(text: str) -> datetime | timedelta:
    """``30d``, ``12h``, ``90m``, ``45s`` (an age) or an ISO timestamp (a cutoff; naive = UTC)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text.startswith("-"):
        raise InvalidArgument(f"--older-than must not be negative, got {text!r}")
    if text[-1:] in units and text[:-1].replace(".", "", 1).isdigit():
        return timedelta(seconds=float(text[:-1]) * units[text[-1]])
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise InvalidArgument(f"bad age {text!r}: use 30d, 12h, 90m or an ISO 8601 timestamp") from exc


@contextmanager
def _local_log(ctx: typer.Context, deployment: str) -> Iterator[tuple[Platform, bool]]:
    """The platform of this machine's home, and whether ``deployment`` is a known deployment."""
    from mlpilot.app import build_platform

    obj: CliContext = ctx.obj
    if obj.url:
        raise InvalidArgument(
            "log maintenance works on this machine's segment files: run it where the server's home is, without "
            "--url / MLPILOT_URL"
        )
    platform = build_platform(obj.settings())
    try:
        try:
            platform.store.get_deployment(deployment)
            known = True
        except NotFound:
            known = False  # logs of a removed deployment can still be compacted or pruned
        yield platform, known
    finally:
        platform.close()


def _report(result: Any, as_json: bool, text: str) -> None:
    if as_json:
        print_json(dataclasses.asdict(result))
    else:
        console.print(text)


def compact_command(
    ctx: typer.Context,
    deployment: str = typer.Argument(...),
    older_than: str | None = typer.Option(
        None, "--older-than", help="only hours that ended before this age or time (default 10m: closed hours)"
    ),
    below_rows: int | None = typer.Option(
        None, "--below-rows", min=2, help="merge segments with fewer rows (default MLPILOT_LOGS__COMPACT_BELOW_ROWS)"
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Merge the small segments of each closed hour into larger ones (crash-safe; queries see every row once)."""
    from mlpilot.telemetry.compaction import DEFAULT_TARGET_ROWS, compact

    with _local_log(ctx, deployment) as (platform, known):
        min_rows = below_rows or platform.settings.logs.compact_below_rows
        r = compact(
            platform.logs,
            deployment,
            catalog=platform.store,
            older_than=parse_age(older_than) if older_than else None,
            min_rows=min_rows,
            target_rows=max(DEFAULT_TARGET_ROWS, min_rows),
            missing_ok=known,
        )
    _report(
        r,
        as_json,
        f"{deployment}: merged {r.merged} segments into {r.written} in {r.partitions} hour(s) "
        f"({r.rows:,} rows, {r.bytes_before / 1e6:.1f} MB → {r.bytes_after / 1e6:.1f} MB); "
        f"hours before {r.cutoff:%Y-%m-%d %H:%M} UTC"
        + (f"; finished {r.recovered} file(s) of an interrupted compaction" if r.recovered else ""),
    )


def prune_command(
    ctx: typer.Context,
    deployment: str = typer.Argument(...),
    older_than: str | None = typer.Option(
        None, "--older-than", help="delete hours that ended before this age or time (default: retention_days)"
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Delete the request log's hour partitions older than a cutoff (retention), with their catalogue rows."""
    from mlpilot.telemetry.compaction import apply_retention

    with _local_log(ctx, deployment) as (platform, known):
        days = platform.settings.logs.retention_days
        if older_than is None and days <= 0:
            raise InvalidArgument(
                "retention is off (MLPILOT_LOGS__RETENTION_DAYS=0 keeps the log forever): give --older-than, "
                "e.g. --older-than 30d"
            )
        age = parse_age(older_than) if older_than else timedelta(days=days)
        r = apply_retention(platform.logs, deployment, older_than=age, catalog=platform.store, missing_ok=known)
    _report(
        r,
        as_json,
        f"{deployment}: deleted {r.partitions} hour(s), {r.segments} segments ({r.rows:,} rows, "
        f"{r.bytes / 1e6:.1f} MB) before {r.cutoff:%Y-%m-%d %H:%M} UTC",
    )


def drift_command(
    ctx: typer.Context,
    deployment: str = typer.Argument(...),
    since: str | None = typer.Option("1h", "--since", help="current window start: 15m, 2h, 3d or ISO time"),
    variant: str | None = typer.Option(None, "--variant"),
    numeric_test: str = typer.Option("ks", "--numeric-test", help="ks, wasserstein, psi, jensenshannon"),
    correction: str = typer.Option("holm", "--correction", help="holm, bonferroni, fdr_bh, none"),
    as_json: bool = typer.Option(False, "--json"),
    html: Path | None = typer.Option(None, "--html", help="also write an HTML report here"),
) -> None:
    """Drift report: each input feature of recent traffic against the reference data."""
    report = client(ctx).drift(
        deployment, since=parse_since(since), variant=variant, numeric_test=numeric_test, correction=correction
    )
    if html is not None:
        html.write_text(_html(report))
    if as_json:
        print_json(report)
        return
    res = report["result"]
    verdict = "[red]DRIFT[/red]" if res["is_drift"] else "[green]no drift[/green]"
    console.print(
        f"{deployment}/{report['variant']}: {verdict} — {res['share_drifted']:.0%} of features drifted "
        f"({report['current_rows']} rows vs {report['reference_rows']} reference rows of "
        f"{report['reference']}; correction {res['correction']})"
    )
    rows = sorted(res["features"], key=lambda f: (not f["is_drift"], -(f["statistic"] or 0)))
    table(
        "features",
        ["feature", "test", "statistic", "p-value", "threshold", "drift"],
        [
            (
                f["feature"],
                f["test"],
                f"{f['statistic']:.4g}",
                "-" if f["p_value"] is None else f"{f['p_value']:.3g}",
                f"{f['threshold']:.3g}",
                "yes" if f["is_drift"] else "",
            )
            for f in rows
        ],
    )
    if html is not None:
        console.print(f"HTML report: {html}")


def _html(report: dict[str, object]) -> str:
    import html as h

    res = report["result"]
    assert isinstance(res, dict)
    rows = "".join(
        f"<tr class={'drift' if f['is_drift'] else 'ok'}><td>{h.escape(str(f['feature']))}</td><td>{f['test']}</td>"
        f"<td>{f['statistic']:.4g}</td><td>{'-' if f['p_value'] is None else format(f['p_value'], '.3g')}</td>"
        f"<td>{f['threshold']:.3g}</td><td>{'drift' if f['is_drift'] else ''}</td></tr>"
        for f in res["features"]
    )
    return (
        "<!doctype html><meta charset=utf-8><title>mlpilot drift report</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:.3em .8em;border-bottom:1px solid #ddd}"
        ".drift{background:#fde2e1}</style>"
        f"<h1>Drift: {h.escape(str(report['deployment']))}/{h.escape(str(report['variant']))}</h1>"
        f"<p>{'DRIFT' if res['is_drift'] else 'no drift'}: {res['share_drifted']:.0%} of features; "
        f"{report['current_rows']} rows since {h.escape(str(report['since']))} vs {report['reference_rows']} "
        f"reference rows ({h.escape(str(report['reference']))}); correction {res['correction']}.</p>"
        "<table><tr><th>feature<th>test<th>statistic<th>p-value<th>threshold<th></tr>" + rows + "</table>"
    )


def install(app: typer.Typer) -> None:
    app.command("drift")(drift_command)
    app.command("feedback")(feedback_command)
    logs.command("show")(logs_command)
    logs.command("compact")(compact_command)
    logs.command("prune")(prune_command)
    app.add_typer(logs, name="logs")
