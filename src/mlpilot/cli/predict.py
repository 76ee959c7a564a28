"""``mlpilot predict``: send data to a deployment through the data plane."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import typer

from mlpilot.cli.context import client
from mlpilot.cli.output import console, print_json, table
from mlpilot.cli.registry import parse_pairs
from mlpilot.errors import InvalidArgument
from mlpilot.registry.datasets import TABLE_SUFFIXES, read_table


def _load_data(raw: str) -> Any:
    if raw.startswith("@") or (Path(raw).suffix.lower() in TABLE_SUFFIXES and Path(raw).is_file()):
        path = Path(raw.removeprefix("@"))
        if not path.is_file():
            raise InvalidArgument(f"data file {str(path)!r} does not exist")
        if path.suffix.lower() == ".json":
            try:
                return json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise InvalidArgument(f"{path.name} is not valid JSON: {exc}") from exc
        return read_table(path)
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(
            f"--data is neither JSON nor a file: {exc}. Give a JSON object of column -> values, a list of rows, "
            "a full OIP request, or @file (.json/.csv/.parquet)"
        ) from exc


def predict_command(
    ctx: typer.Context,
    deployment: str = typer.Argument(...),
    data: str = typer.Option(..., "--data", "-d", help="JSON, or @FILE / FILE (.json, .csv, .parquet, .npy)"),
    version: str | None = typer.Option(None, "--version", help="pin a model version or variant"),
    header: list[str] | None = typer.Option(None, "--header", "-H", help="KEY=VALUE request header"),
    as_json: bool = typer.Option(False, "--json", help="print JSON for scripts"),
) -> None:
    """Predict: `mlpilot predict iris -d '{"sepal_length": [5.1], ...}'` or `-d @rows.csv`."""
    p = client(ctx).predict(deployment, _load_data(data), version=version, headers=parse_pairs(header, "--header"))
    if as_json:
        print_json(
            {
                "model_version": p.model_version,
                "variant": p.variant,
                "request_id": p.request_id,
                "outputs": {k: np.asarray(v).tolist() for k, v in p.outputs.items()},
            }
        )
        return
    console.print(
        f"{deployment} → variant [bold]{p.variant}[/bold] (model version {p.model_version}), request {p.request_id}"
    )
    rows = []
    for name, arr in p.outputs.items():
        arr = np.asarray(arr)
        rows.append((name, f"{list(arr.shape)}", np.array2string(arr, threshold=20, precision=4)))
    table("outputs", ["output", "shape", "values"], rows)


def install(app: typer.Typer) -> None:
    app.command("predict")(predict_command)
