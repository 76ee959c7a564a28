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


def install(app: typer.Typer) -> None:
    app.command("feedback")(feedback_command)
    app.command("logs")(logs_command)
