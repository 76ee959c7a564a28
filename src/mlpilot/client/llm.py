"""The SDK's LLM-artifact methods (prompts and tools), mixed into :class:`~mlpilot.client.Client`."""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlpilot.errors import InvalidArgument
from mlpilot.records import ArtifactKind, ArtifactVersion

if TYPE_CHECKING:
    from mlpilot.llm.evals import EvalRun
    from mlpilot.llm.prompts import Prompt
    from mlpilot.llm.tools import ToolResult, ToolSpec


class LLMArtifacts:
    """Prompts and tools: registered like any artifact (immutable versions, aliases, lineage), validated on the way
    in, loaded digest-verified."""

    def register_artifact(
        self,
        name: str,
        kind: ArtifactKind | str,
        path: str | Path,
        *,
        metadata: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        parents: Sequence[str] = (),
    ) -> ArtifactVersion:  # provided by Client
        raise NotImplementedError

    def download(self, ref: str) -> tuple[ArtifactVersion, Path]:  # provided by Client
        raise NotImplementedError

    def _register_document(
        self,
        name: str,
        kind: ArtifactKind,
        source: str | Path | Mapping[str, Any],
        metadata: Mapping[str, Any] | None,
        tags: Mapping[str, str] | None,
        parents: Sequence[str],
    ) -> ArtifactVersion:
        if isinstance(source, Mapping):
            with tempfile.TemporaryDirectory(prefix="mlpilot-") as tmp:
                path = Path(tmp) / f"{name}.json"
                path.write_text(json.dumps(dict(source), indent=2))
                return self.register_artifact(name, kind, path, metadata=metadata, tags=tags, parents=parents)
        return self.register_artifact(name, kind, source, metadata=metadata, tags=tags, parents=parents)

    def _document(self, ref: str, kind: ArtifactKind) -> tuple[ArtifactVersion, Any]:
        version, path = self.download(ref)
        if version.kind is not kind:
            raise InvalidArgument(f"{version.ref} is a {version.kind.value}, not a {kind.value}")
        text = path.read_text(encoding="utf-8")
        if version.filename.lower().endswith((".yaml", ".yml")):
            import yaml

            return version, yaml.safe_load(text)
        return version, json.loads(text)

    # ------------------------------------------------------------------------------------------ prompts

    def register_prompt(
        self,
        name: str,
        source: str | Path | Mapping[str, Any],
        *,
        metadata: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        parents: Sequence[str] = (),
    ) -> ArtifactVersion:
        """Register a prompt (a ``.json``/``.yaml`` file or the same as a dict: ``type`` text|chat, ``template``
        with ``{{var}}`` placeholders, ``config``, ``variables``) as the next version of ``name``."""
        return self._register_document(name, ArtifactKind.PROMPT, source, metadata, tags, parents)

    def load_prompt(self, ref: str) -> Prompt:
        """A prompt version (``NAME:VERSION``, ``NAME@ALIAS`` or ``NAME``), digest-verified."""
        from mlpilot.llm.prompts import Prompt

        version, data = self._document(ref, ArtifactKind.PROMPT)
        return Prompt.from_dict(data, source=version.ref)

    def render_prompt(self, ref: str, values: Mapping[str, Any] | None = None) -> str | list[dict[str, Any]]:
        """Render a prompt version with ``values`` (text, or chat messages); a missing variable is an error."""
        return self.load_prompt(ref).render(values or {})

    # ------------------------------------------------------------------------------------------ tools

    def register_tool(
        self,
        name: str,
        source: str | Path | Mapping[str, Any],
        *,
        metadata: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        parents: Sequence[str] = (),
    ) -> ArtifactVersion:
        """Register a tool in the MCP ``Tool`` shape (``name``, ``description``, ``inputSchema``, ``outputSchema``,
        ``annotations``) with its ``implementation`` (a Python callable or an HTTP endpoint)."""
        return self._register_document(name, ArtifactKind.TOOL, source, metadata, tags, parents)

    def load_tool(self, ref: str) -> ToolSpec:
        from mlpilot.llm.tools import ToolSpec

        version, data = self._document(ref, ArtifactKind.TOOL)
        return ToolSpec.from_dict(data, source=version.ref)

    def call_tool(self, ref: str, arguments: Mapping[str, Any], *, timeout_s: float | None = None) -> ToolResult:
        """Run a tool here (this process), its arguments validated against its ``inputSchema``; a failure inside the
        tool comes back as a result with ``is_error`` (MCP's shape), bad arguments raise ``InvalidArgument``."""
        from mlpilot.llm.tools import call_tool

        return call_tool(self.load_tool(ref), arguments, timeout_s=timeout_s)

    # ------------------------------------------------------------------------------------------ apps

    def register_app(
        self,
        name: str,
        source: str | Path | Mapping[str, Any],
        *,
        metadata: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        parents: Sequence[str] = (),
    ) -> ArtifactVersion:
        """Register an LLM app (a ``.json``/``.yaml`` file or a dict: ``prompt``, ``retriever``, ``generator``,
        ``tools``, ``parameters`` — see :mod:`mlpilot.llm.apps`) as the next version of ``name``. Every artifact it
        names must exist. Deploy it like a model (``deploy(deployment, "NAME:VERSION")``); it answers the OpenAI
        API at ``/v1``."""
        return self._register_document(name, ArtifactKind.APP, source, metadata, tags, parents)

    def chat(
        self,
        app: str,
        messages: str | Sequence[Mapping[str, Any]],
        *,
        variables: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> dict[str, Any]:
        """Ask a deployed app (``/v1/chat/completions``, as the ``openai`` client would): ``messages`` or one user
        message as a string; ``params`` are OpenAI's (``max_tokens``, ``temperature``, ``tools`` …). Returns the
        OpenAI response; the request id is ``response["id"]``."""
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        body: dict[str, Any] = {"model": app, "messages": list(messages), **params}
        if variables:
            body["variables"] = dict(variables)
        response = self._openai("/v1/chat/completions", body)
        return dict(response)

    def _openai(self, path: str, body: Mapping[str, Any]) -> Any:
        http: Any = self._http  # type: ignore[attr-defined]
        try:
            response = http.post(path, json=dict(body))
        except Exception as exc:  # httpx.TransportError: the server is not reachable
            from mlpilot.errors import Unavailable

            raise Unavailable(f"cannot reach the mlpilot server: {exc}") from exc
        if response.status_code >= 400:
            from mlpilot.errors import HTTP_STATUS, error_from_dict

            try:
                err = response.json().get("error") or {}
            except ValueError:
                err = {}
            message = err.get("message") if isinstance(err, dict) else None
            kind = next((k.value for k, code in HTTP_STATUS.items() if code == response.status_code), "")
            raise error_from_dict({"error": message or response.text[:500], "kind": kind}, response.status_code)
        return response.json()

    def app_pipeline(self, ref: str) -> AppSession:
        """Assemble app version ``ref`` here (this process) from the versions its references resolve to now: its
        prompt, index and tools, its embedder and generator — what ``mlpilot eval`` runs. Use it as a context
        manager (it closes the models and removes the unpacked index)."""
        from mlpilot.llm.apps import parse_app
        from mlpilot.runtimes.app import build_pipeline

        version, data = self._document(ref, ArtifactKind.APP)
        spec = parse_app(data, source=version.ref)
        bindings: dict[str, Any] = {"tools": []}
        paths: dict[str, Path] = {}

        def bind(kind_ref: str) -> dict[str, str]:
            v, path = self.download(kind_ref)
            paths[v.digest] = path
            return {"ref": v.ref, "digest": v.digest}

        if spec.prompt:
            bindings["prompt"] = bind(spec.prompt)
        if spec.retriever:
            bindings["index"] = bind(spec.retriever.index)
        bindings["tools"] = [bind(t) for t in spec.tools]
        tmp = Path(tempfile.mkdtemp(prefix="mlpilot-app-"))
        try:
            pipeline = build_pipeline(spec, bindings, lambda b: paths[b["digest"]], tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return AppSession(version, bindings, pipeline, tmp)

    # ------------------------------------------------------------------------------------------ indexes

    def register_index(
        self,
        name: str,
        path: str | Path,
        *,
        metadata: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        parents: Sequence[str] = (),
    ) -> ArtifactVersion:
        """Register a built index (its directory, or the tar :func:`~mlpilot.llm.index.pack_index` wrote) as the
        next version of ``name``. The server opens it before storing it; its corpus dataset becomes its parent."""
        from mlpilot.llm.index import pack_index

        source = Path(path)
        if source.is_dir():
            with tempfile.TemporaryDirectory(prefix="mlpilot-") as tmp:
                packed = pack_index(source, Path(tmp) / f"{name}.tar")
                return self.register_artifact(name, ArtifactKind.INDEX, packed.path, metadata=metadata, tags=tags,
                                              parents=parents)  # fmt: skip
        return self.register_artifact(name, ArtifactKind.INDEX, source, metadata=metadata, tags=tags, parents=parents)

    def build_index(
        self,
        name: str,
        documents: str | Path | Sequence[Mapping[str, Any]],
        *,
        embedder: str | Mapping[str, Any] = "all-minilm-l6-v2",
        chunk_chars: int | None = None,
        overlap_chars: int | None = None,
        ann: str = "auto",
        metadata: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> ArtifactVersion:
        """Build a vector index from a document corpus and register it as the next version of ``name``.

        Args:
            documents: a registered dataset (``NAME:VERSION``/``NAME@ALIAS``) with ``id`` and ``text`` columns, or a
                file (``.jsonl``, ``.json``, ``.csv``, ``.parquet``, or a folder of ``.md``/``.txt``) or rows — those
                are registered first as dataset ``<name>-docs``, so every index version has its corpus as parent.
            embedder: a local model name (``all-minilm-l6-v2``) or an OpenAI-compatible backend
                (``{"base_url", "model", …}``). Its fingerprint is pinned in the index: an app that embeds queries
                with another model refuses to load it.
        """
        import pandas as pd

        from mlpilot.llm import index as vindex
        from mlpilot.llm.apps import EmbedderSpec
        from mlpilot.llm.chunking import load_documents
        from mlpilot.runtimes.app import make_embedder

        spec = EmbedderSpec.model_validate({"local": embedder} if isinstance(embedder, str) else dict(embedder))
        corpus = str(documents) if isinstance(documents, str) and not Path(documents).exists() else None
        if corpus is not None and ("/" in corpus or Path(corpus).suffix.lower() in _CORPUS_SUFFIXES):
            raise InvalidArgument(f"corpus file {corpus!r} does not exist (nor is it a registered dataset)")
        if corpus is None:
            docs = load_documents(documents)
            frame = pd.DataFrame([{"id": d.id, "text": d.text, **d.metadata} for d in docs])
            corpus = self.register_dataset(f"{name}-docs", frame).ref  # type: ignore[attr-defined]
        rows = self.read_dataset(corpus).to_dict("records")  # type: ignore[attr-defined]
        options: dict[str, Any] = {"ann": ann, "corpus_ref": corpus}
        if chunk_chars is not None:
            options["chunk_chars"] = chunk_chars
        if overlap_chars is not None:
            options["overlap_chars"] = overlap_chars
        model = make_embedder(spec)
        try:
            with tempfile.TemporaryDirectory(prefix="mlpilot-index-") as tmp:
                vindex.build_index(rows, model, Path(tmp) / "index", **options)
                packed = vindex.pack_index(Path(tmp) / "index", Path(tmp) / f"{name}.tar")
                return self.register_artifact(name, ArtifactKind.INDEX, packed.path, metadata=metadata, tags=tags)
        finally:
            close = getattr(model, "close", None)
            if callable(close):
                close()

    # ------------------------------------------------------------------------------------------ evals

    def evaluate_app(
        self,
        app: str,
        dataset: str,
        *,
        metrics: Sequence[str] | None = None,
        judge: Any = None,
        concurrency: int = 1,
        record: bool = True,
    ) -> EvalRun:
        """Run eval dataset ``dataset`` (rows ``id``, ``input``, ``expected``, ``relevant_ids`` — see
        :mod:`mlpilot.llm.evals`) through app version ``app``, here, and score it. With ``record``, the summary is
        saved on the app version as tag ``eval/<dataset NAME:VERSION>`` (JSON), which a rollout's ``eval`` gate
        reads."""
        from mlpilot.llm.evals import Answer, EvalCase, run_eval
        from mlpilot.llm.pipeline import ChatRequest

        data_version, _ = self.download(dataset)
        if data_version.kind is not ArtifactKind.DATASET:
            raise InvalidArgument(f"{data_version.ref} is a {data_version.kind.value}, not a dataset")
        rows = [_row(r) for r in self.read_dataset(data_version.ref).to_dict("records")]  # type: ignore[attr-defined]

        with self.app_pipeline(app) as session:

            def answer(case: EvalCase) -> Answer:
                variables = dict(case.input) if isinstance(case.input, dict) else {}
                request = ChatRequest(messages=[{"role": "user", "content": case.question}], variables=variables)
                out = session.pipeline.run(request)
                return Answer(
                    text=out.text,
                    retrieved_ids=[h.doc_id for h in out.hits],
                    contexts=[h.text for h in out.hits],
                    input_tokens=out.input_tokens,
                    output_tokens=out.output_tokens,
                    cost=out.cost,
                )

            run = run_eval(rows, answer, metrics=metrics, judge=judge, concurrency=concurrency)
            if record:
                summary = {
                    name: {"mean": s.mean, "ci_low": s.ci_low, "ci_high": s.ci_high, "n": s.n, "errors": s.errors}
                    for name, s in run.summary.items()
                }
                value = json.dumps({"dataset": data_version.ref, "rows": len(rows), "metrics": summary})
                self.set_tags(session.version.ref, {f"eval/{data_version.ref}": value})  # type: ignore[attr-defined]
        return run


_CORPUS_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".md", ".txt")


def _row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A dataset row as an eval row: list-like cells (Parquet gives numpy arrays) become lists, JSON strings in
    ``input``/``expected``/``relevant_ids`` are decoded, missing values dropped."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if hasattr(value, "tolist"):
            value = value.tolist()
        if value is None or (isinstance(value, float) and value != value):
            continue
        if key in ("input", "expected", "relevant_ids") and isinstance(value, str) and value[:1] in "[{":
            with contextlib.suppress(json.JSONDecodeError):
                value = json.loads(value)
        out[key] = value
    return out


class AppSession:
    """An app version assembled in this process: ``pipeline`` answers :class:`~mlpilot.llm.pipeline.ChatRequest` s."""

    def __init__(self, version: ArtifactVersion, bindings: dict[str, Any], pipeline: Any, tmp: Path) -> None:
        self.version, self.bindings, self.pipeline, self._tmp = version, bindings, pipeline, tmp

    def __enter__(self) -> AppSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for model in (self.pipeline.generator, self.pipeline.embedder):
            close = getattr(model, "close", None)
            if callable(close):
                close()
        for _, runner in self.pipeline.tools.values():
            runner.close()
        shutil.rmtree(self._tmp, ignore_errors=True)
