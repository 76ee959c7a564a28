"""``mlpilot apps …``, ``mlpilot indexes …`` and ``mlpilot eval``: LLM apps, their vector indexes, their evals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mlpilot.cli.context import client
from mlpilot.cli.output import console, emit, print_json, table
from mlpilot.errors import InvalidArgument
from mlpilot.records import ArtifactVersion

apps = typer.Typer(
    help="LLM apps: a prompt, a retriever, a generator and tools, deployable like a model.", no_args_is_help=True
)
indexes = typer.Typer(
    help="Vector indexes built from a document corpus with a pinned embedding model.", no_args_is_help=True
)
JSON_OPT = typer.Option(False, "--json", help="print JSON for scripts")


def _app_registered(v: ArtifactVersion) -> None:
    app = v.metadata.get("app") or {}
    parts = [f"type={app.get('type', 'chat')}"]
    parts += [f"{k}={app[k]}" for k in ("prompt",) if app.get(k)]
    if app.get("retriever"):
        parts.append(f"index={app['retriever'].get('index')}")
    if app.get("tools"):
        parts.append(f"tools={','.join(app['tools'])}")
    console.print(f"registered [bold]{v.ref}[/bold] (app: {', '.join(parts)}) {v.digest[:19]}", soft_wrap=True)


def _index_registered(v: ArtifactVersion) -> None:
    info = v.metadata.get("index") or {}
    emb = info.get("embedding") or {}
    console.print(
        f"registered [bold]{v.ref}[/bold] (index: {info.get('chunks')} chunks of {info.get('documents')} documents, "
        f"{info.get('ann')}, embedding {emb.get('name')} {emb.get('dimensions')}-d"
        f"{', corpus ' + info['corpus'] if info.get('corpus') else ''}) {v.digest[:19]}",
        soft_wrap=True,
    )


@apps.command("register")
def apps_register(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="app name"),
    path: Path = typer.Argument(..., help="a .json or .yaml app file"),
    as_json: bool = JSON_OPT,
) -> None:
    """Register an app file as the next version of NAME (validated; the artifacts it names must exist)."""
    emit(client(ctx).register_app(name, path), as_json, _app_registered)


@apps.command("validate")
def apps_validate(path: Path = typer.Argument(..., help="a .json or .yaml app file")) -> None:
    """Check an app file without registering it (no server needed)."""
    from mlpilot.llm.apps import validate_app_file

    print_json(validate_app_file(path)["app"])


@apps.command("ask")
def apps_ask(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="app NAME, NAME:VERSION or NAME@ALIAS"),
    question: str = typer.Argument(..., help="the user message"),
    var: list[str] | None = typer.Option(None, "--var", help="prompt variable NAME=VALUE (repeat)"),
    as_json: bool = JSON_OPT,
) -> None:
    """Run one question through an app version here (no deployment needed): the answer, retrieved documents and
    timings."""
    from mlpilot.llm.pipeline import ChatRequest

    variables = {}
    for pair in var or []:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise InvalidArgument(f"--var takes NAME=VALUE, got {pair!r}")
        variables[key] = value
    with client(ctx).app_pipeline(ref) as session:
        answer = session.pipeline.run(ChatRequest([{"role": "user", "content": question}], variables=variables))
    out = {
        "app": session.version.ref,
        "answer": answer.text,
        "finish_reason": answer.finish_reason,
        "documents": [{"id": h.doc_id, "score": round(h.score, 4)} for h in answer.hits],
        "tokens": {"input": answer.input_tokens, "output": answer.output_tokens},
        "stages_ms": {s.name: round(s.seconds * 1000, 1) for s in answer.stages},
    }
    if as_json:
        print_json(out)
        return
    console.print(answer.text, soft_wrap=True, markup=False)
    docs = ", ".join(f"{d['id']} ({d['score']})" for d in out["documents"])
    console.print(f"[dim]{out['app']} · {docs or 'no retrieval'} · {out['stages_ms']}[/dim]", soft_wrap=True)


@indexes.command("build")
def indexes_build(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="index name"),
    documents: str = typer.Argument(
        ...,
        help="a registered dataset (NAME:VERSION) or a .jsonl/.csv/.parquet file "
        "or a folder of .md/.txt files (registered as dataset NAME-docs)",
    ),
    embedder: str = typer.Option("all-minilm-l6-v2", "--embedder", help="local embedding model"),
    chunk_chars: int | None = typer.Option(None, "--chunk-chars", help="characters per chunk"),
    overlap_chars: int | None = typer.Option(None, "--overlap-chars", help="characters shared by neighbours"),
    ann: str = typer.Option("auto", "--ann", help="auto, flat or ivf_pq"),
    as_json: bool = JSON_OPT,
) -> None:
    """Chunk and embed a corpus and register the index as the next version of NAME (its corpus is its parent)."""
    v = client(ctx).build_index(
        name, documents, embedder=embedder, chunk_chars=chunk_chars, overlap_chars=overlap_chars, ann=ann
    )
    emit(v, as_json, _index_registered)


@indexes.command("register")
def indexes_register(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="index name"),
    path: Path = typer.Argument(..., help="a built index directory or its packed .tar"),
    as_json: bool = JSON_OPT,
) -> None:
    """Register an index built elsewhere (mlpilot.llm.index.build_index) as the next version of NAME."""
    emit(client(ctx).register_index(name, path), as_json, _index_registered)


@indexes.command("search")
def indexes_search(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="an app whose retriever to use (NAME, NAME:VERSION, NAME@ALIAS)"),
    query: str = typer.Argument(..., help="the query text"),
    k: int = typer.Option(5, "-k", help="results"),
    as_json: bool = JSON_OPT,
) -> None:
    """Search the index an app retrieves from, with the app's embedder: the chunks its prompt would get."""
    with client(ctx).app_pipeline(ref) as session:
        pipe = session.pipeline
        if pipe.index is None or pipe.embedder is None:
            raise InvalidArgument(f"app {session.version.ref} has no retriever")
        vector = pipe.embedder.embed([query])[0]
        hits = pipe.index.search(vector, k)
    rows = [{"id": h.doc_id, "score": round(h.score, 4), "text": " ".join(h.text.split())[:100]} for h in hits]
    if as_json:
        print_json(rows)
    else:
        table(
            f"{session.bindings['index']['ref']}: {query}",
            ["id", "score", "text"],
            [[r["id"], r["score"], r["text"]] for r in rows],
        )


def eval_command(
    ctx: typer.Context,
    app: str = typer.Argument(..., help="app NAME, NAME:VERSION or NAME@ALIAS"),
    dataset: str = typer.Argument(..., help="eval dataset NAME:VERSION (rows: id, input, expected, relevant_ids)"),
    metrics: str | None = typer.Option(None, "--metrics", help="comma-separated (default: all the rows support)"),
    judge_url: str | None = typer.Option(None, "--judge-url", help="OpenAI-compatible base URL for LLM-as-judge"),
    judge_model: str | None = typer.Option(None, "--judge-model", help="the judge's model name"),
    judge_key_env: str | None = typer.Option(None, "--judge-api-key-env", help="env var holding its API key"),
    rubric: str = typer.Option("Is the answer correct, complete and supported by the context?", "--rubric"),
    concurrency: int = typer.Option(1, "--concurrency", help="rows answered at once"),
    record: bool = typer.Option(True, "--record/--no-record", help="save the summary on the app version (tag)"),
    min_score: list[str] | None = typer.Option(None, "--min", help="METRIC=VALUE: exit 1 when the mean is below"),
    as_json: bool = JSON_OPT,
) -> None:
    """Run an eval dataset through an app version and score it (exact match, token F1, ROUGE-L, retrieval hit
    rate / MRR / nDCG, groundedness, judge score), with 95% bootstrap intervals."""
    judge = None
    if judge_url:
        from mlpilot.llm.backends import BackendSpec, OpenAIBackend
        from mlpilot.llm.judge import RubricJudge, from_backend

        if not judge_model:
            raise InvalidArgument("--judge-url needs --judge-model")
        spec = BackendSpec(name="judge", base_url=judge_url, model=judge_model, api_key_env=judge_key_env)
        judge = RubricJudge(rubric, chat=from_backend(OpenAIBackend(spec), temperature=0))
    floors: dict[str, float] = {}
    for item in min_score or []:
        key, eq, value = item.partition("=")
        try:
            floors[key] = float(value) if eq else float("nan")
        except ValueError:
            floors[key] = float("nan")
        if not eq or floors[key] != floors[key]:
            raise InvalidArgument(f"--min takes METRIC=NUMBER, got {item!r}")
    chosen = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    run = client(ctx).evaluate_app(app, dataset, metrics=chosen, judge=judge, concurrency=concurrency, record=record)
    summary = {n: s.__dict__ for n, s in run.summary.items()}
    failed = [
        m for m, floor in floors.items() if (summary.get(m) or {}).get("mean") is None or summary[m]["mean"] < floor
    ]
    if as_json:
        rows = [
            {"id": r.id, "scores": r.scores, "error": r.error, "answer": r.answer.text if r.answer else None}
            for r in run.results
        ]
        print_json({"app": app, "dataset": dataset, "summary": summary, "rows": rows, "failed": failed})
    else:
        table(
            f"eval of {app} on {dataset} ({len(run.results)} rows)",
            ["metric", "mean", "95% CI", "n", "errors"],
            [
                [n, _f(s["mean"]), f"[{_f(s['ci_low'])}, {_f(s['ci_high'])}]", s["n"], s["errors"]]
                for n, s in summary.items()
            ],
        )
        for m in failed:
            console.print(f"[red]{m} is below its floor {floors[m]}[/red]")
    if failed:
        raise typer.Exit(1)


def _f(x: Any) -> str:
    return "-" if x is None else f"{x:.3f}"


def install(app: typer.Typer) -> None:
    app.add_typer(apps, name="apps")
    app.add_typer(indexes, name="indexes")
    app.command("eval")(eval_command)


__all__ = ["install"]
