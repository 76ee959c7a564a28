"""``mlpilot feedback`` and ``mlpilot logs``."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import typer

from mlpilot.cli.context import client
from mlpilot.cli.output import console, print_json, table
from mlpilot.errors import InvalidArgument
from mlpilot.registry.datasets import read_table


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
    app.command("logs")(logs_command)
