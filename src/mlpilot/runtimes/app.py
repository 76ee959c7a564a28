"""The runtime of a deployed LLM app: loads its bound prompt, index, tools, embedder and generator; runs requests.

The control plane compiles an app variant with ``flavor="llm_app"`` and ``flavor_metadata``::

    {"app": {...AppSpec...},
     "bindings": {"prompt": {"ref": "support-prompt:2", "digest": "sha256:…"} | None,
                  "index": {"ref": "support-kb:1", "digest": "sha256:…"} | None,
                  "tools": [{"ref": "order-status:1", "digest": "sha256:…"}]}}

Every bound artifact is read from the blob store after its digest is verified. An index blob (a tar) is unpacked
once per digest into ``cache_dir`` and shared by every app that binds it. An index built with another embedding
model than the app's embedder fails the load (the deployment keeps its previous routing and reports why).
Sync work (loading, the pipeline) runs on the data plane's executor, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import numpy as np

from mlpilot.blobs import BlobStore
from mlpilot.errors import InvalidArgument, LoadError, MlpilotError, Unavailable
from mlpilot.llm.apps import AppSpec, EmbedderSpec, GeneratorSpec, parse_app
from mlpilot.llm.backends import OpenAIBackend
from mlpilot.llm.pipeline import AppAnswer, AppPipeline, ChatRequest
from mlpilot.runtimes.base import Runtime, RuntimeTags

log = logging.getLogger("mlpilot.runtimes")

__all__ = ["APP_FLAVOR", "AppRuntime", "build_pipeline", "make_embedder", "make_generator", "open_index"]

APP_FLAVOR = "llm_app"


def _document(data: bytes, name: str) -> Any:
    from mlpilot.llm.prompts import _parse_json, _parse_yaml

    text = data.decode("utf-8-sig")
    stripped = text.lstrip()
    if stripped.startswith("{") or stripped.startswith("["):
        return _parse_json(text, name)
    return _parse_yaml(text, name)


class _BackendEmbedder:
    """An OpenAI-compatible ``/embeddings`` endpoint as an embedder."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.name = backend.spec.model
        self.fingerprint = f"{backend.spec.base_url}#{backend.spec.model}"
        self._dimensions: int | None = None

    @property
    def dimensions(self) -> int:
        """The vectors' length, learnt from the first call (one probe call if asked before any)."""
        if self._dimensions is None:
            self.embed(["dimensions"])
        assert self._dimensions is not None
        return self._dimensions

    def embed(self, texts: Any) -> np.ndarray:
        vectors = np.asarray(self.backend.embed(list(texts)), dtype=np.float32)
        if vectors.ndim == 2 and vectors.shape[0]:
            self._dimensions = int(vectors.shape[1])
        return vectors

    def close(self) -> None:
        self.backend.close()


def make_generator(spec: GeneratorSpec) -> Any:
    if spec.local is not None:
        from mlpilot.llm.local import LocalBackend

        return LocalBackend()
    assert spec.backend is not None
    return OpenAIBackend(spec.backend)


def make_embedder(spec: EmbedderSpec) -> Any:
    if spec.local is not None:
        from mlpilot.llm.local import LocalEmbedder

        return LocalEmbedder()
    assert spec.backend is not None
    return _BackendEmbedder(OpenAIBackend(spec.backend))


def build_pipeline(
    spec: AppSpec,
    bindings: Mapping[str, Any],
    path_of: Callable[[Mapping[str, Any]], Path],
    cache_dir: Path,
    make_gen: Callable[[GeneratorSpec], Any] = make_generator,
    make_emb: Callable[[EmbedderSpec], Any] = make_embedder,
) -> AppPipeline:
    """Assemble an app's pipeline from its bound artifacts. ``path_of(binding)`` gives the digest-verified file of a
    binding (``{"ref", "digest"}``): the data plane reads its blob store, the SDK its downloads (``mlpilot eval``)."""
    from mlpilot.llm.prompts import Prompt
    from mlpilot.llm.tools import ToolRunner, parse_tool

    prompt = None
    if bindings.get("prompt"):
        b = bindings["prompt"]
        prompt = Prompt.from_dict(_document(path_of(b).read_bytes(), b["ref"]), source=b["ref"])
    tools = {}
    for b in bindings.get("tools") or []:
        tool = parse_tool(path_of(b).read_bytes(), source=b["ref"])
        tools[tool.name] = (tool, ToolRunner(tool))
    embedder = None
    if spec.type == "embeddings" or spec.retriever is not None:
        embedder = make_emb(spec.embedder)
    index = None
    if bindings.get("index"):
        index = open_index(bindings["index"], embedder, path_of, cache_dir)
    generator = make_gen(spec.generator) if spec.generator is not None else None
    count = getattr(generator, "count_tokens", None)
    return AppPipeline(
        spec,
        generator=generator,
        embedder=embedder,
        prompt=prompt,
        index=index,
        tools=tools,
        count_tokens=count if callable(count) else None,
    )


def open_index(
    binding: Mapping[str, Any], embedder: Any, path_of: Callable[[Mapping[str, Any]], Path], cache_dir: Path
) -> Any:
    """Open a bound index, unpacked once per digest under ``cache_dir``; refuse one built with another embedder.

    The unpacked copy is a cache: before each use it is compared with the digest-checked tar (``path_of``), and
    unpacked again when it differs (a corrupted or altered file), like a cached blob."""
    from mlpilot.blobs.archives import matches_tar
    from mlpilot.llm.index import VectorIndex, unpack_index

    digest = str(binding["digest"])
    dest = cache_dir / digest.replace(":", "-")
    packed = path_of(binding)
    if dest.is_dir() and not matches_tar(packed, dest):
        log.warning("the unpacked index %s differs from its blob %s: unpacking it again", dest, digest)
        stale = dest.with_name(f".{dest.name}.stale-{os.getpid()}-{threading.get_ident()}")
        with contextlib.suppress(OSError):
            os.rename(dest, stale)  # out of the way at once; another loader may be reading what it had opened
        shutil.rmtree(stale, ignore_errors=True)
    if not dest.is_dir():
        unpack_index(packed, dest, expected_digest=digest)
    index = VectorIndex.open(dest)
    built_with = index.manifest.embedding
    if embedder is not None and built_with.fingerprint != embedder.fingerprint:
        raise LoadError(
            f"index {binding['ref']} was built with embedding model {built_with.name!r} "
            f"({built_with.fingerprint}) but the app embeds queries with {embedder.name!r} "
            f"({embedder.fingerprint}); rebuild the index or change the app's embedder"
        )
    return index


class AppRuntime(Runtime):
    """Serve one version of an LLM app with the artifact versions its snapshot bound."""

    tags = RuntimeTags(batchable=False, stateful=False)

    def __init__(
        self,
        blobs: BlobStore,
        flavor_metadata: Mapping[str, Any],
        executor: Executor,
        cache_dir: Path,
        *,
        generator_factory: Callable[[GeneratorSpec], Any] = make_generator,
        embedder_factory: Callable[[EmbedderSpec], Any] = make_embedder,
    ) -> None:
        self._blobs = blobs
        self._meta = dict(flavor_metadata)
        self._executor = executor
        self._cache_dir = cache_dir
        self._make_generator = generator_factory
        self._make_embedder = embedder_factory
        if self._meta.get("error"):
            raise LoadError(str(self._meta["error"]))
        self.spec: AppSpec = parse_app(self._meta.get("app"), source="app")
        bindings = self._meta.get("bindings") or {}
        self.prompt_ref: str | None = (bindings.get("prompt") or {}).get("ref")
        self.index_ref: str | None = (bindings.get("index") or {}).get("ref")
        self.tool_refs: list[str] = [t["ref"] for t in bindings.get("tools") or []]
        self.pipeline: AppPipeline | None = None

    @property
    def kind(self) -> str:
        return self.spec.type

    # ---------------------------------------------------------------------------------------------- load

    def _path(self, binding: Mapping[str, Any]) -> Path:
        return self._blobs.open_verified(binding["digest"]).path

    def _load_sync(self) -> AppPipeline:
        bindings = self._meta.get("bindings") or {}
        return build_pipeline(
            self.spec, bindings, self._path, self._cache_dir, self._make_generator, self._make_embedder
        )

    async def load(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self.pipeline = await loop.run_in_executor(self._executor, self._load_sync)
        except MlpilotError:
            raise
        except Exception as exc:
            raise LoadError(f"the app failed to load: {type(exc).__name__}: {exc}") from exc

    async def unload(self) -> None:
        pipeline, self.pipeline = self.pipeline, None
        if pipeline is None:
            return
        if isinstance(pipeline.generator, OpenAIBackend):
            from mlpilot.llm.astream import aclose

            await aclose(pipeline.generator)
        for closable in (pipeline.generator, pipeline.embedder):
            close = getattr(closable, "close", None)
            if callable(close):
                close()
        for _, runner in pipeline.tools.values():
            runner.close()

    def health(self) -> None:
        if self.pipeline is None:
            raise Unavailable("the app is not loaded")

    # ---------------------------------------------------------------------------------------------- serve

    async def predict(self, inputs: Any) -> dict[str, np.ndarray]:
        raise InvalidArgument(
            "this deployment is an LLM app: call it with the OpenAI API (/v1/chat/completions, /v1/completions, "
            "/v1/embeddings), not with /v2 inference"
        )

    def _pipeline(self) -> AppPipeline:
        if self.pipeline is None:
            raise Unavailable("the app is not loaded")
        return self.pipeline

    async def chat(self, request: ChatRequest, on_text: Callable[[str], None] | None = None) -> AppAnswer:
        pipeline = self._pipeline()
        if self.spec.type != "chat":
            raise InvalidArgument("this app serves embeddings only: use /v1/embeddings")
        if on_text is not None and isinstance(pipeline.generator, OpenAIBackend):
            # a remote backend streams on the event loop: no worker-thread hop per chunk (retrieval and tools
            # still run on the executor)
            return await pipeline.arun(request, on_text, self._executor)
        return await asyncio.get_running_loop().run_in_executor(self._executor, pipeline.run, request, on_text)

    async def embed(self, texts: list[str]) -> tuple[np.ndarray, int]:
        pipeline = self._pipeline()
        if self.spec.type != "embeddings":
            raise InvalidArgument("this app is a chat app: use /v1/chat/completions (its embeddings are internal)")
        return await asyncio.get_running_loop().run_in_executor(self._executor, pipeline.embed, texts)
