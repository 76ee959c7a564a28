"""The artifact registry: immutable, content-addressed versions of models, datasets, prompts, indexes, tools, apps.

Invariants:

* Content goes into the :class:`~mlpilot.blobs.BlobStore` first; a model is then validated by loading it *from
  the store* (so pickle-based formats only ever load from the registry's own, digest-verified bytes) and its
  signature is inferred; only then is a version allocated. A file that fails validation creates no version and
  no event (its orphan blob is unreferenced and harmless: content-addressed, reclaimed by a later GC).
* Versions are immutable; tags, aliases and bindings are the mutable parts, and each change is an event.
* A model in a format that runs code when loaded (pickle, joblib, cloudpickle, Python source) is registered only
  with a trust decision — ``trust_pickle=True`` from the caller, or ``artifacts.trust_pickle`` — checked before
  anything is stored or loaded, recorded in its flavor metadata (``requires_trust``, ``trusted_by``,
  ``trusted_via``; whatever a client sent under those keys is dropped) and in its ``version.created`` event
  (``trust``). Serving loads such a version only with that record (:func:`mlpilot.flavors.check_trusted`).
* Archives (packed indexes, skops zips) are checked against ``artifacts.max_unpacked_bytes`` and
  ``artifacts.max_archive_members`` from their headers before anything reads their content.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mlpilot.blobs import BlobStore
from mlpilot.blobs.archives import check_tar, check_zip
from mlpilot.errors import FailedPrecondition, InvalidArgument, NotFound, SignatureError
from mlpilot.flavors import check_trusted, get_flavor, sniff_file
from mlpilot.flavors.base import SAFE_FORMATS_HINT, Flavor, LoadedModel, reason, with_trust, without_trust
from mlpilot.protocol.signature import Signature, infer_signature
from mlpilot.records import ArtifactKind, ArtifactRef, ArtifactVersion, check_name
from mlpilot.registry.datasets import describe, read_table, to_parquet_bytes
from mlpilot.settings import ArtifactSettings
from mlpilot.store import Store


class Registry:
    """Registers and loads artifacts.

    Args:
        store: the control-plane store.
        blobs: where content lives.
        tmp_dir: scratch space for uploads being validated.
        artifacts: ``trust_pickle`` and the archive limits (default: the defaults of :class:`ArtifactSettings`).
    """

    def __init__(
        self,
        store: Store,
        blobs: BlobStore,
        tmp_dir: Path | None = None,
        artifacts: ArtifactSettings | None = None,
    ) -> None:
        self.store = store
        self.blobs = blobs
        self.tmp_dir = tmp_dir
        self.artifacts = artifacts or ArtifactSettings()

    # ------------------------------------------------------------------------------------------ models

    def register_model(
        self,
        name: str,
        path: Path | str,
        *,
        actor: str,
        flavor: str | None = None,
        flavor_metadata: Mapping[str, Any] | None = None,
        sample: Any = None,
        signature: Mapping[str, Any] | Signature | None = None,
        metadata: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        parents: Sequence[str] = (),
        trust_pickle: bool = False,
    ) -> ArtifactVersion:
        """Register a model file as the next version of ``name``.

        Args:
            path: the model file (format detected from content unless ``flavor`` is given).
            flavor: ``sklearn``, ``xgboost``, ``lightgbm``, ``onnx`` or ``pyfunc``.
            flavor_metadata: what a client-side ``serialize`` produced (format, class …); overrides sniffing.
            sample: a batch of example inputs (DataFrame/array, or a path to CSV/Parquet/JSON/.npy) used to infer
                the signature and to smoke-test the model.
            signature: an explicit signature (dict or :class:`Signature`); checked against ``sample`` if both.
            parents: lineage, as ``NAME:VERSION`` references (e.g. the training dataset).
            trust_pickle: the caller trusts the file's origin: a format that runs code when loaded (pickle, joblib,
                cloudpickle, Python source) may be registered (and later served). Not needed for other formats,
                nor with ``artifacts.trust_pickle``.

        Raises:
            UnknownFlavor: no flavor recognises the file. LoadError: the file does not load (corrupt, truncated).
            SignatureError: the sample does not fit the model or the explicit signature.
            FailedPrecondition: the format runs code when loaded and nobody trusted it (nothing is stored).
            InvalidArgument: an archive (skops) over ``artifacts.max_unpacked_bytes``/``max_archive_members``.
        """
        check_name(name, "model name")
        path = Path(path)
        if not path.is_file():
            raise InvalidArgument(f"model file {str(path)!r} does not exist")
        if zipfile.is_zipfile(path):  # before skops reads its schema: a zip bomb fails on its headers
            a = self.artifacts
            check_zip(path, max_bytes=a.max_unpacked_bytes, max_members=a.max_archive_members)
        if flavor_metadata is not None and flavor is not None:
            flv, fmeta = get_flavor(flavor), without_trust(flavor_metadata)
        else:
            flv, fmeta = sniff_file(path, flavor)
        fmeta = self._trust(flv, fmeta, path.name, actor, trust_pickle)
        digest, size = self.blobs.put_file(path)
        loaded = flv.load(self.blobs.open_verified(digest), fmeta)
        sig = self._signature(loaded, sample, signature)
        tags_ = flv.tags(fmeta)
        meta = {**dict(metadata or {}), "flavor": dict(fmeta)}
        if tags_.unsafe:
            meta["unsafe_reason"] = "loading this format runs code (pickle/Python); it loads only from the store"
        return self.store.create_version(  # its version.created event records the trust decision
            name=name,
            kind=ArtifactKind.MODEL,
            digest=digest,
            size=size,
            filename=_filename(path, flv.name),
            actor=actor,
            flavor=flv.name,
            metadata=meta,
            signature=sig.to_dict() if sig else None,
            parents=parents,
            tags=tags,
            unsafe=tags_.unsafe,
        )

    def _trust(self, flv: Flavor, fmeta: dict[str, Any], filename: str, actor: str, asked: bool) -> dict[str, Any]:
        """``fmeta`` with the trust record a format that runs code needs; refuses one nobody trusted."""
        if not flv.tags(fmeta).unsafe:
            return fmeta
        if asked or self.artifacts.trust_pickle:
            return with_trust(fmeta, actor, "request" if asked else "setting")
        raise FailedPrecondition(
            f"{filename} is a {flv.name} model in {fmeta.get('format', '?')} format: loading it runs code from the "
            "file (pickle/Python). Register it only if you trust where it came from: --trust-pickle (CLI), "
            "trust_pickle=True (SDK) or the form field trust_pickle=true (API), or set artifacts.trust_pickle "
            f"(MLPILOT_ARTIFACTS__TRUST_PICKLE=true) on the server; or save the model as {SAFE_FORMATS_HINT}",
            detail={"flavor": flv.name, "format": fmeta.get("format"), "requires_trust": True},
        )

    def _signature(
        self,
        loaded: LoadedModel,
        sample: Any,
        explicit: Mapping[str, Any] | Signature | None,
    ) -> Signature | None:
        if isinstance(sample, (str, Path)):
            sample = read_table(sample)
        given = explicit if isinstance(explicit, Signature) or explicit is None else Signature.from_dict(explicit)
        native = loaded.native_signature()
        if sample is None:
            return given or native
        try:
            outputs = loaded.predict(sample)
        except Exception as exc:  # the sample is the user's: any failure means it does not fit the model
            raise SignatureError(f"the model cannot predict on the sample: {reason(exc)}") from exc
        inferred = infer_signature(sample, outputs)
        if given is not None:
            problems = given.incompatibilities(inferred)
            if problems:
                raise SignatureError("the sample does not match the signature: " + "; ".join(problems))
            return given
        # A file that declares its signature (ONNX) wins; the sample only smoke-tested it.
        return native or inferred

    def load_model(self, ref: ArtifactRef | str) -> tuple[ArtifactVersion, LoadedModel]:
        """Load a registered model after verifying its digest.

        Raises:
            NotFound, IntegrityError (digest mismatch), LoadError, FailedPrecondition (runs code, not trusted).
        """
        version = self.store.get_version(ref)
        if version.kind is not ArtifactKind.MODEL or version.flavor is None:
            raise InvalidArgument(f"{version.ref} is a {version.kind.value}, not a model")
        flv = get_flavor(version.flavor)
        fmeta = version.metadata.get("flavor", {})
        check_trusted(flv, fmeta, version.ref)
        return version, flv.load(self.blobs.open_verified(version.digest), fmeta)

    # ------------------------------------------------------------------------------------------ datasets

    def register_dataset(
        self,
        name: str,
        data: pd.DataFrame | Path | str,
        *,
        actor: str,
        metadata: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        parents: Sequence[str] = (),
        bind_to: str | None = None,
        role: str = "reference",
    ) -> ArtifactVersion:
        """Register a table (DataFrame or CSV/Parquet/JSON file) as a dataset version, stored as Parquet.

        Args:
            bind_to: a model reference (``NAME:VERSION``/``NAME@ALIAS``) to bind this dataset to under ``role``;
                a model's ``reference`` dataset is its default drift reference.
        """
        check_name(name, "dataset name")
        target = self.store.get_version(bind_to) if bind_to else None  # fail before storing anything
        if target is not None and target.kind is not ArtifactKind.MODEL:
            raise InvalidArgument(f"can only bind a dataset to a model; {target.ref} is a {target.kind.value}")
        df = data if isinstance(data, pd.DataFrame) else read_table(data, allow_array=False)
        if not isinstance(df, pd.DataFrame):
            raise InvalidArgument("a dataset must be a table")
        if len(df) == 0:
            raise InvalidArgument("the dataset has no rows")
        digest, size = self.blobs.put_bytes(to_parquet_bytes(df))
        version = self.store.create_version(
            name=name,
            kind=ArtifactKind.DATASET,
            digest=digest,
            size=size,
            filename="data.parquet",
            actor=actor,
            metadata={**dict(metadata or {}), **describe(df)},
            parents=parents,
            tags=tags,
        )
        if target is not None:
            self.store.bind(target.ref, role, version.ref, actor)
        return version

    def read_dataset(self, ref: ArtifactRef | str) -> pd.DataFrame:
        version = self.store.get_version(ref)
        if version.kind is not ArtifactKind.DATASET:
            raise InvalidArgument(f"{version.ref} is a {version.kind.value}, not a dataset")
        return pd.read_parquet(self.blobs.open_verified(version.digest).path)

    # ------------------------------------------------------------------------------------------ other kinds

    def register_file(
        self,
        name: str,
        kind: ArtifactKind,
        path: Path | str,
        *,
        actor: str,
        metadata: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        parents: Sequence[str] = (),
    ) -> ArtifactVersion:
        """Register a file as a version of a prompt, index, tool or app artifact. Prompts and tools are validated
        first (``mlpilot.llm``) and what they declare lands in the version's metadata (``prompt`` / ``tool``);
        an invalid file creates no version.

        Raises:
            InvalidArgument: a bad name, a missing file, or a prompt/tool file that does not validate.
        """
        check_name(name, f"{kind.value} name")
        path = Path(path)
        if not path.is_file():
            raise InvalidArgument(f"file {str(path)!r} does not exist")
        if kind is ArtifactKind.PROMPT:
            from mlpilot.llm.prompts import validate_prompt_file

            metadata = {**validate_prompt_file(path), **(metadata or {})}
        elif kind is ArtifactKind.TOOL:
            from mlpilot.llm.tools import validate_tool_file

            metadata = {**validate_tool_file(path), **(metadata or {})}
        elif kind is ArtifactKind.APP:
            from mlpilot.llm.apps import validate_app_file

            metadata = {**validate_app_file(path), **(metadata or {})}
            self._check_app_refs(metadata["app"])
        elif kind is ArtifactKind.INDEX:
            index_meta, corpus = self._check_index(path)
            metadata = {**index_meta, **(metadata or {})}
            if corpus and corpus not in parents:
                parents = [*parents, corpus]  # lineage: the index points at the dataset it was built from
        digest, size = self.blobs.put_file(path)
        return self.store.create_version(
            name=name,
            kind=kind,
            digest=digest,
            size=size,
            filename=path.name[:256],
            actor=actor,
            metadata=metadata,
            parents=parents,
            tags=tags,
        )

    def _check_index(self, path: Path) -> tuple[dict[str, Any], str | None]:
        """A packed index (:func:`mlpilot.llm.index.pack_index`) is unpacked into scratch space and opened before
        it is stored; what its manifest says lands in the metadata (``index``). Its corpus, if it names one, must
        be a registered dataset."""
        from mlpilot.llm.index import VectorIndex, unpack_index

        a = self.artifacts
        check_tar(path, max_bytes=a.max_unpacked_bytes, max_members=a.max_archive_members)
        scratch = self.scratch_dir()
        try:
            unpacked = unpack_index(
                path, scratch / "index", max_total_bytes=a.max_unpacked_bytes, max_members=a.max_archive_members
            )
            manifest = VectorIndex.open(unpacked).manifest
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        corpus = manifest.corpus_ref
        if corpus:
            try:
                version = self.store.get_version(ArtifactRef.parse(corpus))
            except NotFound as exc:
                raise NotFound(f"the index's corpus {corpus}: {exc.message}") from exc
            if version.kind is not ArtifactKind.DATASET:
                raise InvalidArgument(f"the index's corpus {corpus} is a {version.kind.value}, not a dataset")
            corpus = version.ref
        info = {
            "embedding": manifest.embedding.model_dump(),
            "corpus": corpus,
            "metric": manifest.metric,
            "ann": manifest.ann.kind,
            "documents": manifest.counts.documents,
            "chunks": manifest.counts.chunks,
            "content_digest": manifest.content_digest,
            "metadata_fields": manifest.metadata_fields,
            "built_at": manifest.built_at,
        }
        return {"index": info}, corpus

    def _check_app_refs(self, app: Mapping[str, Any]) -> None:
        """Every artifact an app names must exist with the right kind when the app is registered."""
        retriever = app.get("retriever") or {}
        wanted = [(app.get("prompt"), ArtifactKind.PROMPT), (retriever.get("index"), ArtifactKind.INDEX)]
        wanted += [(ref, ArtifactKind.TOOL) for ref in app.get("tools") or []]
        for ref, kind in wanted:
            if not ref:
                continue
            try:
                v = self.store.get_version(ArtifactRef.parse(ref))
            except NotFound as exc:
                raise NotFound(f"the app's {kind.value} {ref}: {exc.message}") from exc
            if v.kind is not kind:
                raise InvalidArgument(f"the app's {kind.value} {ref} is a {v.kind.value}, not a {kind.value}")
            if kind is ArtifactKind.INDEX:
                _check_embedder(app, v)

    def scratch_dir(self) -> Path:
        """A fresh directory for an upload being validated (the caller removes it)."""
        if self.tmp_dir is not None:
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=self.tmp_dir, prefix="upload-"))


def _check_embedder(app: Mapping[str, Any], index: ArtifactVersion) -> None:
    """The app must embed queries with the model its index was built with (checked again, by fingerprint, when a
    data plane loads the pair: an alias can move later)."""
    embedder = app.get("embedder") or {"local": "all-minilm-l6-v2"}
    wanted = embedder.get("local") or (embedder.get("backend") or embedder).get("model")
    built = ((index.metadata.get("index") or {}).get("embedding") or {}).get("name")
    if built and wanted and built != wanted:
        raise InvalidArgument(
            f"index {index.ref} was built with embedding model {built!r} but the app embeds queries with "
            f"{wanted!r}; set the app's embedder to {built!r} or rebuild the index"
        )


def _filename(path: Path, flavor: str) -> str:
    name = path.name[:256]
    return name or f"model.{flavor}"
