"""The control-plane store on SQLAlchemy Core: SQLite (WAL, default) or PostgreSQL, same schema and semantics.

Invariants:

* Every write is one transaction that also appends its :class:`~mlpilot.records.Event`; a failed write leaves
  nothing behind (no version without its event, no event without its change).
* Versions are allocated by bumping ``artifacts.last_version`` inside the writing transaction, so concurrent
  writers (threads or processes) get consecutive versions, never the same one, never a gap.
* Alias moves and deployment updates are compare-and-set when the caller passes ``expect``: a writer that lost a
  race gets :class:`~mlpilot.errors.Conflict` and nothing changes.
* Database exceptions are translated here: constraint violations become ``Conflict``, an unreachable or locked
  database ``Unavailable``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine

from mlpilot.clock import Clock, SystemClock
from mlpilot.errors import Conflict, InvalidArgument, NotFound, Unavailable
from mlpilot.records import (
    Alias,
    Artifact,
    ArtifactKind,
    ArtifactRef,
    ArtifactVersion,
    Deployment,
    DeploymentSpec,
    Event,
)
from mlpilot.store import tables as t
from mlpilot.store.apikeys import ApiKeysMixin
from mlpilot.store.incidents import HealingPoliciesMixin, IncidentsMixin
from mlpilot.store.leases import LeasesMixin
from mlpilot.store.mixin import utc
from mlpilot.store.monitoring import MonitoringMixin
from mlpilot.store.observations import ObservationsMixin
from mlpilot.store.rollouts import RolloutsMixin

SNAPSHOT_COUNTER = "routing_snapshot"
#: Kinds that LLM apps bind live (by alias or latest version): moving one of their aliases, or adding a version,
#: changes what a deployed app uses, so it bumps the routing-snapshot counter (docs/architecture.md, refinement 11).
LIVE_BOUND_KINDS = frozenset({"prompt", "index", "tool"})


def create_engine(url: str, busy_timeout_s: float = 30.0) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys, a busy timeout and ``BEGIN IMMEDIATE`` for writes."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(
            url, connect_args={"timeout": busy_timeout_s, "check_same_thread": False}, pool_pre_ping=False
        )

        @sa_event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (pysqlite's own handling is broken)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
            cur.close()

        @sa_event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # Writers take the lock up front, so two writers never deadlock upgrading a read lock.
            immediate = conn.get_execution_options().get("mlpilot_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    try:
        return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
    except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError) as exc:
        raise InvalidArgument(f"bad store URL {url!r}: {exc}") from exc
    except ModuleNotFoundError as exc:
        raise InvalidArgument(
            f"the store URL {url!r} needs a driver that is not installed ({exc.name}); "
            'for PostgreSQL: pip install "mlpilot[postgres]"'
        ) from exc


class Store(
    ObservationsMixin,
    MonitoringMixin,
    RolloutsMixin,
    IncidentsMixin,
    HealingPoliciesMixin,
    LeasesMixin,
    ApiKeysMixin,
):
    """Persistence of artifacts, aliases, events and deployments.

    Args:
        engine: a SQLAlchemy engine (see :func:`create_engine`).
        clock: the time source stamped on rows and events.
    """

    def __init__(self, engine: Engine, clock: Clock | None = None) -> None:
        self.engine = engine
        self.clock = clock or SystemClock()
        self._pg = engine.dialect.name == "postgresql"

    @classmethod
    def from_url(cls, url: str, clock: Clock | None = None, busy_timeout_s: float = 30.0) -> Store:
        return cls(create_engine(url, busy_timeout_s), clock)

    # ------------------------------------------------------------------------------------------ plumbing

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (idempotent, safe from several processes)."""
        from mlpilot.store.migrate import upgrade

        with self._translate():
            upgrade(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextlib.contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except sa_exc.IntegrityError as exc:
            raise Conflict(f"conflicting concurrent change: {exc.orig}") from exc
        except sa_exc.OperationalError as exc:  # locked, or unreachable: worth retrying shortly (Retry-After)
            raise Unavailable(f"the store is unavailable: {exc.orig}", retry_after_s=1) from exc
        except sa_exc.InterfaceError as exc:
            raise Unavailable(f"the store is unavailable: {exc}", retry_after_s=1) from exc

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._translate(), self.engine.connect() as conn:
            conn.execution_options(mlpilot_write=True)
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._translate(), self.engine.connect() as conn, conn.begin():
            yield conn

    def _lock(self, stmt: sa.Select[Any]) -> sa.Select[Any]:
        return stmt.with_for_update() if self._pg else stmt

    def _event(
        self,
        conn: Connection,
        actor: str,
        action: str,
        subject: str,
        before: Mapping[str, Any] | None,
        after: Mapping[str, Any] | None,
    ) -> int:
        return conn.execute(
            t.events.insert()
            .values(
                ts=self.clock.now(),
                actor=actor,
                action=action,
                subject=subject,
                before=dict(before) if before is not None else None,
                after=dict(after) if after is not None else None,
                schema_version=1,
            )
            .returning(t.events.c.id)
        ).scalar_one()

    def _bump(self, conn: Connection, name: str) -> int:
        row = conn.execute(
            t.counters.update()
            .where(t.counters.c.name == name)
            .values(value=t.counters.c.value + 1)
            .returning(t.counters.c.value)
        ).first()
        if row is None:
            conn.execute(t.counters.insert().values(name=name, value=1))
            return 1
        return int(row[0])

    # ------------------------------------------------------------------------------------------ artifacts

    def _artifact_row(self, conn: Connection, name: str, lock: bool = False) -> Any:
        stmt = sa.select(t.artifacts).where(t.artifacts.c.name == name)
        row = conn.execute(self._lock(stmt) if lock else stmt).first()
        if row is None:
            raise NotFound(f"no artifact named {name!r}")
        return row

    def _ensure_artifact(self, conn: Connection, name: str, kind: ArtifactKind, actor: str) -> Any:
        if conn.execute(sa.select(t.artifacts.c.id).where(t.artifacts.c.name == name)).first() is None:
            ins = (pg_dialect.insert if self._pg else sqlite_dialect.insert)(t.artifacts)
            res = conn.execute(
                ins.values(
                    name=name, kind=kind.value, last_version=0, created_at=self.clock.now(), created_by=actor
                ).on_conflict_do_nothing(index_elements=["name"])
            )
            if res.rowcount:
                self._event(conn, actor, "artifact.created", f"artifact:{name}", None, {"kind": kind.value})
        row = self._artifact_row(conn, name, lock=True)
        if row.kind != kind.value:
            raise Conflict(f"artifact {name!r} exists as a {row.kind}, not a {kind.value}; pick another name")
        return row

    def create_version(
        self,
        *,
        name: str,
        kind: ArtifactKind,
        digest: str,
        size: int,
        filename: str,
        actor: str,
        flavor: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        signature: Mapping[str, Any] | None = None,
        parents: Sequence[str] = (),
        tags: Mapping[str, str] | None = None,
        unsafe: bool = False,
    ) -> ArtifactVersion:
        """Allocate the next version of ``name`` (creating the artifact on first use) and record it."""
        with self._write() as conn:
            parent_ids = [self._version_row(conn, ArtifactRef.parse(p)).id for p in parents]
            art = self._ensure_artifact(conn, name, kind, actor)
            version = int(
                conn.execute(
                    t.artifacts.update()
                    .where(t.artifacts.c.id == art.id)
                    .values(last_version=t.artifacts.c.last_version + 1)
                    .returning(t.artifacts.c.last_version)
                ).scalar_one()
            )
            res = conn.execute(
                t.artifact_versions.insert()
                .values(
                    artifact_id=art.id,
                    version=version,
                    digest=digest,
                    size=size,
                    filename=filename,
                    flavor=flavor,
                    metadata=dict(metadata or {}),
                    signature=dict(signature) if signature is not None else None,
                    tags=dict(tags or {}),
                    unsafe=unsafe,
                    created_at=self.clock.now(),
                    created_by=actor,
                )
                .returning(t.artifact_versions.c.id)
            )
            vid = res.scalar_one()
            for pid in dict.fromkeys(parent_ids):
                conn.execute(t.lineage.insert().values(child_id=vid, parent_id=pid))
            if kind.value in LIVE_BOUND_KINDS:  # an app bound to the bare name follows the latest version
                self._bump(conn, SNAPSHOT_COUNTER)
            after: dict[str, Any] = {"version": version, "digest": digest, "flavor": flavor, "parents": list(parents)}
            if unsafe:  # a format that runs code when loaded: who trusted it, and how (mlpilot.registry)
                fmeta = (metadata or {}).get("flavor") or {}
                after["trust"] = {"by": fmeta.get("trusted_by"), "via": fmeta.get("trusted_via")}
            self._event(conn, actor, "version.created", f"artifact:{name}", None, after)
            return self._version_record(conn, name, kind.value, self._version_row_by_id(conn, vid))

    def _version_row_by_id(self, conn: Connection, vid: int) -> Any:
        return conn.execute(sa.select(t.artifact_versions).where(t.artifact_versions.c.id == vid)).one()

    def _version_row(self, conn: Connection, ref: ArtifactRef) -> Any:
        art = self._artifact_row(conn, ref.name)
        av = t.artifact_versions
        if ref.alias is not None:
            row = conn.execute(
                sa.select(av)
                .join(t.aliases, t.aliases.c.version_id == av.c.id)
                .where(t.aliases.c.artifact_id == art.id, t.aliases.c.alias == ref.alias)
            ).first()
            if row is None:
                raise NotFound(f"artifact {ref.name!r} has no alias {ref.alias!r}")
            return row
        stmt = sa.select(av).where(av.c.artifact_id == art.id)
        stmt = stmt.where(av.c.version == ref.version) if ref.version else stmt.order_by(av.c.version.desc())
        row = conn.execute(stmt.limit(1)).first()
        if row is None:
            raise NotFound(
                f"artifact {ref.name!r} has no version {ref.version}"
                if ref.version
                else f"artifact {ref.name!r} has no versions"
            )
        return row

    def _version_record(self, conn: Connection, name: str, kind: str, row: Any) -> ArtifactVersion:
        av = t.artifact_versions
        parents = conn.execute(
            sa.select(t.artifacts.c.name, av.c.version)
            .select_from(
                t.lineage.join(av, av.c.id == t.lineage.c.parent_id).join(
                    t.artifacts, t.artifacts.c.id == av.c.artifact_id
                )
            )
            .where(t.lineage.c.child_id == row.id)
            .order_by(t.artifacts.c.name, av.c.version)
        ).all()
        alias_names = (
            conn.execute(
                sa.select(t.aliases.c.alias).where(t.aliases.c.version_id == row.id).order_by(t.aliases.c.alias)
            )
            .scalars()
            .all()
        )
        bound = conn.execute(
            sa.select(t.bindings.c.role, t.artifacts.c.name, av.c.version)
            .select_from(
                t.bindings.join(av, av.c.id == t.bindings.c.target_id).join(
                    t.artifacts, t.artifacts.c.id == av.c.artifact_id
                )
            )
            .where(t.bindings.c.version_id == row.id)
        ).all()
        return ArtifactVersion(
            name=name,
            kind=ArtifactKind(kind),
            version=row.version,
            digest=row.digest,
            size=row.size,
            filename=row.filename,
            flavor=row.flavor,
            metadata=row.metadata,
            signature=row.signature,
            parents=[f"{n}:{v}" for n, v in parents],
            tags=row.tags,
            unsafe=row.unsafe,
            aliases=list(alias_names),
            bindings={role: f"{n}:{v}" for role, n, v in bound},
            created_at=utc(row.created_at),
            created_by=row.created_by,
        )

    def get_version(self, ref: ArtifactRef | str) -> ArtifactVersion:
        """Resolve ``NAME``, ``NAME:VERSION`` or ``NAME@ALIAS`` to a version. Raises ``NotFound``."""
        ref = ArtifactRef.parse(ref) if isinstance(ref, str) else ref
        with self._read() as conn:
            art = self._artifact_row(conn, ref.name)
            return self._version_record(conn, art.name, art.kind, self._version_row(conn, ref))

    def list_versions(self, name: str) -> list[ArtifactVersion]:
        with self._read() as conn:
            art = self._artifact_row(conn, name)
            rows = conn.execute(
                sa.select(t.artifact_versions)
                .where(t.artifact_versions.c.artifact_id == art.id)
                .order_by(t.artifact_versions.c.version)
            ).all()
            return [self._version_record(conn, art.name, art.kind, r) for r in rows]

    def _artifact_record(self, conn: Connection, row: Any) -> Artifact:
        av = t.artifact_versions
        alias_rows = conn.execute(
            sa.select(t.aliases.c.alias, av.c.version)
            .join(av, av.c.id == t.aliases.c.version_id)
            .where(t.aliases.c.artifact_id == row.id)
            .order_by(t.aliases.c.alias)
        ).all()
        return Artifact(
            name=row.name,
            kind=ArtifactKind(row.kind),
            created_at=utc(row.created_at),
            created_by=row.created_by,
            latest_version=row.last_version or None,
            aliases={a: v for a, v in alias_rows},
        )

    def get_artifact(self, name: str) -> Artifact:
        with self._read() as conn:
            return self._artifact_record(conn, self._artifact_row(conn, name))

    def list_artifacts(self, kind: ArtifactKind | None = None) -> list[Artifact]:
        with self._read() as conn:
            stmt = sa.select(t.artifacts).order_by(t.artifacts.c.name)
            if kind is not None:
                stmt = stmt.where(t.artifacts.c.kind == kind.value)
            return [self._artifact_record(conn, r) for r in conn.execute(stmt).all()]

    def set_tags(self, ref: ArtifactRef | str, tags: Mapping[str, str | None], actor: str) -> ArtifactVersion:
        """Set (or, with ``None``, delete) tags on a version."""
        ref = ArtifactRef.parse(ref) if isinstance(ref, str) else ref
        with self._write() as conn:
            art = self._artifact_row(conn, ref.name)
            row = self._version_row(conn, ref)
            new = {**row.tags, **{k: v for k, v in tags.items() if v is not None}}
            for k, v in tags.items():
                if v is None:
                    new.pop(k, None)
            conn.execute(t.artifact_versions.update().where(t.artifact_versions.c.id == row.id).values(tags=new))
            self._event(
                conn,
                actor,
                "version.tagged",
                f"artifact:{art.name}:{row.version}",
                {"tags": row.tags},
                {"tags": new},
            )
            return self._version_record(conn, art.name, art.kind, self._version_row_by_id(conn, row.id))

    # ------------------------------------------------------------------------------------------ aliases

    def set_alias(self, name: str, alias: str, version: int, actor: str, expect: int | bool | None = True) -> Alias:
        """Point ``alias`` at ``version``.

        Args:
            expect: ``True`` (default) moves unconditionally; ``None`` requires the alias not to exist yet; an int
                requires it to point at that version now (compare-and-set). A failed expectation is ``Conflict``.
        """
        with self._write() as conn:
            art = self._artifact_row(conn, name, lock=True)
            target = self._version_row(conn, ArtifactRef(name=name, version=version))
            av = t.artifact_versions
            cur = conn.execute(
                self._lock(
                    sa.select(t.aliases.c.version_id, av.c.version)
                    .join(av, av.c.id == t.aliases.c.version_id)
                    .where(t.aliases.c.artifact_id == art.id, t.aliases.c.alias == alias)
                )
            ).first()
            current = cur.version if cur is not None else None
            if expect is not True and expect != current:
                raise Conflict(
                    f"alias {name}@{alias} points at {'nothing' if current is None else f'version {current}'}, "
                    f"expected {'nothing' if expect is None else f'version {expect}'}; re-read and retry"
                )
            now = self.clock.now()
            if cur is None:
                conn.execute(
                    t.aliases.insert().values(
                        artifact_id=art.id,
                        alias=alias,
                        version_id=target.id,
                        updated_at=now,
                        updated_by=actor,
                    )
                )
            else:
                conn.execute(
                    t.aliases.update()
                    .where(t.aliases.c.artifact_id == art.id, t.aliases.c.alias == alias)
                    .values(version_id=target.id, updated_at=now, updated_by=actor)
                )
            if art.kind in LIVE_BOUND_KINDS:  # apps bind these by alias: their data planes must recompile
                self._bump(conn, SNAPSHOT_COUNTER)
            self._event(
                conn,
                actor,
                "alias.moved",
                f"artifact:{name}@{alias}",
                {"version": current} if current is not None else None,
                {"version": version},
            )
            return Alias(name=name, alias=alias, version=version, updated_at=now, updated_by=actor)

    def delete_alias(self, name: str, alias: str, actor: str) -> None:
        with self._write() as conn:
            art = self._artifact_row(conn, name, lock=True)
            av = t.artifact_versions
            cur = conn.execute(
                sa.select(av.c.version)
                .join(t.aliases, av.c.id == t.aliases.c.version_id)
                .where(t.aliases.c.artifact_id == art.id, t.aliases.c.alias == alias)
            ).first()
            if cur is None:
                raise NotFound(f"artifact {name!r} has no alias {alias!r}")
            conn.execute(t.aliases.delete().where(t.aliases.c.artifact_id == art.id, t.aliases.c.alias == alias))
            if art.kind in LIVE_BOUND_KINDS:
                self._bump(conn, SNAPSHOT_COUNTER)
            self._event(conn, actor, "alias.deleted", f"artifact:{name}@{alias}", {"version": cur.version}, None)

    def list_aliases(self, name: str) -> list[Alias]:
        with self._read() as conn:
            art = self._artifact_row(conn, name)
            av = t.artifact_versions
            rows = conn.execute(
                sa.select(t.aliases, av.c.version)
                .join(av, av.c.id == t.aliases.c.version_id)
                .where(t.aliases.c.artifact_id == art.id)
                .order_by(t.aliases.c.alias)
            ).all()
            return [
                Alias(
                    name=name,
                    alias=r.alias,
                    version=r.version,
                    updated_at=utc(r.updated_at),
                    updated_by=r.updated_by,
                )
                for r in rows
            ]

    # ------------------------------------------------------------------------------------------ bindings

    def bind(self, ref: ArtifactRef | str, role: str, target: ArtifactRef | str, actor: str) -> ArtifactVersion:
        """Bind ``target`` (e.g. a reference dataset) to the version ``ref`` under ``role`` (replacing any)."""
        ref = ArtifactRef.parse(ref) if isinstance(ref, str) else ref
        target = ArtifactRef.parse(target) if isinstance(target, str) else target
        with self._write() as conn:
            art = self._artifact_row(conn, ref.name)
            row = self._version_row(conn, ref)
            trow = self._version_row(conn, target)
            old = conn.execute(
                sa.select(t.bindings.c.target_id).where(t.bindings.c.version_id == row.id, t.bindings.c.role == role)
            ).first()
            if old is not None:
                conn.execute(t.bindings.delete().where(t.bindings.c.version_id == row.id, t.bindings.c.role == role))
            conn.execute(t.bindings.insert().values(version_id=row.id, role=role, target_id=trow.id))
            self._event(
                conn,
                actor,
                "version.bound",
                f"artifact:{art.name}:{row.version}",
                None,
                {"role": role, "target": f"{target.name}:{trow.version}"},
            )
            return self._version_record(conn, art.name, art.kind, row)

    # ------------------------------------------------------------------------------------------ events

    def append_event(
        self,
        actor: str,
        action: str,
        subject: str,
        before: Mapping[str, Any] | None = None,
        after: Mapping[str, Any] | None = None,
    ) -> int:
        """Append one event; returns its id."""
        with self._write() as conn:
            return self._event(conn, actor, action, subject, before, after)

    def list_events(
        self, subject: str | None = None, action: str | None = None, after_id: int = 0, limit: int = 100
    ) -> list[Event]:
        """Events in id order; ``subject`` matches exactly or as a prefix when it ends with ``*``."""
        with self._read() as conn:
            e = t.events
            stmt = sa.select(e).where(e.c.id > after_id)
            if subject:
                stmt = stmt.where(
                    e.c.subject.startswith(subject[:-1]) if subject.endswith("*") else e.c.subject == subject
                )
            if action:
                stmt = stmt.where(e.c.action.startswith(action[:-1]) if action.endswith("*") else e.c.action == action)
            rows = conn.execute(stmt.order_by(e.c.id.desc()).limit(max(1, min(limit, 10_000)))).all()
            return [
                Event(
                    id=r.id,
                    ts=utc(r.ts),
                    actor=r.actor,
                    action=r.action,
                    subject=r.subject,
                    before=r.before,
                    after=r.after,
                )
                for r in reversed(rows)
            ]

    # ------------------------------------------------------------------------------------------ deployments

    def _deployment_record(self, row: Any) -> Deployment:
        return Deployment(
            name=row.name,
            revision=row.revision,
            spec=DeploymentSpec.model_validate(row.spec["spec"]),
            created_at=utc(row.created_at),
            updated_at=utc(row.updated_at),
            updated_by=row.updated_by,
            snapshot_version=row.snapshot_version,
        )

    def put_deployment(
        self,
        name: str,
        spec: DeploymentSpec,
        actor: str,
        expect_revision: int | None = None,
        create: bool | None = None,
    ) -> Deployment:
        """Create or update a deployment as a new revision; bumps the routing snapshot version.

        Args:
            expect_revision: compare-and-set on the current revision (``Conflict`` if it moved).
            create: ``True`` fails if it exists, ``False`` fails if it does not, ``None`` either.
        """
        body: dict[str, Any] = {"schema_version": 1, "spec": spec.model_dump(mode="json")}
        with self._write() as conn:
            d = t.deployments
            cur = conn.execute(self._lock(sa.select(d).where(d.c.name == name))).first()
            if cur is not None and create is True:
                raise Conflict(f"deployment {name!r} already exists; update it instead")
            if cur is None and create is False:
                raise NotFound(f"no deployment named {name!r}")
            if expect_revision is not None and (cur.revision if cur else 0) != expect_revision:
                raise Conflict(
                    f"deployment {name!r} is at revision {cur.revision if cur else 0}, "
                    f"expected {expect_revision}; re-read and retry"
                )
            now = self.clock.now()
            snap = self._bump(conn, SNAPSHOT_COUNTER)
            if cur is None:
                did = conn.execute(
                    d.insert()
                    .values(
                        name=name,
                        revision=1,
                        spec=body,
                        created_at=now,
                        updated_at=now,
                        updated_by=actor,
                        snapshot_version=snap,
                    )
                    .returning(d.c.id)
                ).scalar_one()
                rev = 1
            else:
                did, rev = cur.id, cur.revision + 1
                conn.execute(
                    d.update()
                    .where(d.c.id == did)
                    .values(revision=rev, spec=body, updated_at=now, updated_by=actor, snapshot_version=snap)
                )
            conn.execute(
                t.deployment_revisions.insert().values(
                    deployment_id=did, revision=rev, spec=body, created_at=now, created_by=actor
                )
            )
            self._event(
                conn,
                actor,
                "deployment.created" if cur is None else "deployment.updated",
                f"deployment:{name}",
                cur.spec["spec"] if cur is not None else None,
                {**body["spec"], "revision": rev},
            )
            return self._deployment_record(conn.execute(sa.select(d).where(d.c.id == did)).one())

    def get_deployment(self, name: str) -> Deployment:
        with self._read() as conn:
            row = conn.execute(sa.select(t.deployments).where(t.deployments.c.name == name)).first()
            if row is None:
                raise NotFound(f"no deployment named {name!r}")
            return self._deployment_record(row)

    def list_deployments(self) -> list[Deployment]:
        with self._read() as conn:
            rows = conn.execute(sa.select(t.deployments).order_by(t.deployments.c.name)).all()
            return [self._deployment_record(r) for r in rows]

    def deployment_revisions(self, name: str) -> list[tuple[int, DeploymentSpec]]:
        with self._read() as conn:
            row = conn.execute(sa.select(t.deployments.c.id).where(t.deployments.c.name == name)).first()
            if row is None:
                raise NotFound(f"no deployment named {name!r}")
            dr = t.deployment_revisions
            revs = conn.execute(sa.select(dr).where(dr.c.deployment_id == row.id).order_by(dr.c.revision)).all()
            return [(r.revision, DeploymentSpec.model_validate(r.spec["spec"])) for r in revs]

    def delete_deployment(self, name: str, actor: str) -> None:
        with self._write() as conn:
            d = t.deployments
            cur = conn.execute(self._lock(sa.select(d).where(d.c.name == name))).first()
            if cur is None:
                raise NotFound(f"no deployment named {name!r}")
            conn.execute(t.deployment_revisions.delete().where(t.deployment_revisions.c.deployment_id == cur.id))
            conn.execute(d.delete().where(d.c.id == cur.id))
            # its monitors (with their results), SLOs and firing alerts go with it
            mids = sa.select(t.monitors.c.id).where(t.monitors.c.deployment == name)
            conn.execute(t.monitor_results.delete().where(t.monitor_results.c.monitor_id.in_(mids)))
            conn.execute(t.monitors.delete().where(t.monitors.c.deployment == name))
            conn.execute(t.slos.delete().where(t.slos.c.deployment == name))
            conn.execute(
                t.alerts.update()
                .where((t.alerts.c.deployment == name) & (t.alerts.c.status == "firing"))
                .values(status="resolved", resolved_at=self.clock.now(), active_key=None)
            )
            self.settle_rollouts(conn, name)
            self._bump(conn, SNAPSHOT_COUNTER)
            self._event(conn, actor, "deployment.deleted", f"deployment:{name}", cur.spec["spec"], None)

    def snapshot_version(self) -> int:
        with self._read() as conn:
            v = conn.execute(sa.select(t.counters.c.value).where(t.counters.c.name == SNAPSHOT_COUNTER)).scalar()
            return int(v or 0)
