"""The SDK's LLM-artifact methods (prompts and tools), mixed into :class:`~mlpilot.client.Client`."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlpilot.errors import InvalidArgument
from mlpilot.records import ArtifactKind, ArtifactVersion

if TYPE_CHECKING:
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
