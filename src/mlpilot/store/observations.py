"""Store methods for what the data plane observes: request-log segments and feedback (labels, scores, rewards)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mlpilot.store import tables as t
from mlpilot.store.mixin import StoreMixin, utc
from mlpilot.telemetry.reqlog import Segment


class ObservationsMixin(StoreMixin):
    """Mixed into :class:`~mlpilot.store.Store`; uses its transaction helpers."""

    # ------------------------------------------------------------------------------------------ log segments

    def add_segment(self, deployment: str, path: str, rows: int, size: int, min_ts: datetime, max_ts: datetime) -> None:
        """Catalogue a request-log segment (idempotent on ``path``)."""
        with self._write() as conn:
            self._insert_segment(conn, deployment, path, rows, size, min_ts, max_ts)

    def catalog(self, seg: Segment) -> None:
        """Catalogue a segment the request-log writer just renamed into place (its ``on_segment`` callback)."""
        self.add_segment(
            seg.deployment,
            str(seg.path),
            seg.rows,
            seg.bytes,
            datetime.fromtimestamp(seg.min_ts, timezone.utc),
            datetime.fromtimestamp(seg.max_ts, timezone.utc),
        )

    def _insert_segment(
        self, conn: Connection, deployment: str, path: str, rows: int, size: int, min_ts: datetime, max_ts: datetime
    ) -> None:
        s = t.log_segments
        if conn.execute(sa.select(s.c.id).where(s.c.path == path)).first() is None:
            conn.execute(
                s.insert().values(
                    deployment=deployment,
                    path=path,
                    rows=rows,
                    bytes=size,
                    min_ts=min_ts,
                    max_ts=max_ts,
                    created_at=self.clock.now(),
                )
            )

    def delete_segments(self, paths: Sequence[str]) -> int:
        """Forget catalogued segments (retention), in one transaction. Returns how many rows were deleted."""
        with self._write() as conn:
            return self._delete_segments(conn, paths)

    def replace_segments(
        self,
        deployment: str,
        old_paths: Sequence[str],
        path: str,
        rows: int,
        size: int,
        min_ts: datetime,
        max_ts: datetime,
    ) -> None:
        """Catalogue a merged segment and forget the segments it replaces, in one transaction (compaction).
        Idempotent: a replay after a crash changes nothing that is already done."""
        with self._write() as conn:
            self._delete_segments(conn, [p for p in old_paths if p != path])
            self._insert_segment(conn, deployment, path, rows, size, min_ts, max_ts)

    @staticmethod
    def _delete_segments(conn: Connection, paths: Sequence[str]) -> int:
        s = t.log_segments
        deleted = 0
        unique = list(dict.fromkeys(paths))
        for i in range(0, len(unique), 500):  # bounded IN lists (SQLite's variable limit)
            deleted += conn.execute(s.delete().where(s.c.path.in_(unique[i : i + 500]))).rowcount or 0
        return deleted

    def list_segments(
        self, deployment: str, since: datetime | None = None, until: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Segments of ``deployment`` overlapping ``[since, until]`` (oldest first)."""
        s = t.log_segments
        stmt = sa.select(s).where(s.c.deployment == deployment)
        if since is not None:
            stmt = stmt.where(s.c.max_ts >= since)
        if until is not None:
            stmt = stmt.where(s.c.min_ts <= until)
        with self._read() as conn:
            rows = conn.execute(stmt.order_by(s.c.min_ts)).all()
        return [
            {"path": r.path, "rows": r.rows, "bytes": r.bytes, "min_ts": utc(r.min_ts), "max_ts": utc(r.max_ts)}
            for r in rows
        ]

    # ------------------------------------------------------------------------------------------ feedback

    def put_feedback(self, deployment: str, items: Sequence[Mapping[str, Any]], actor: str) -> int:
        """Store feedback items (``request_id``, ``row``, ``kind``, ``value``, ``ts``) in one transaction; a later
        value for the same (request, row, kind) replaces the earlier one. Returns how many were stored.

        Bulk: existing keys are looked up 500 requests at a time, new rows inserted and old ones updated with one
        statement each (executemany)."""
        f = t.feedback
        now = self.clock.now()
        latest: dict[tuple[str, int, str], Mapping[str, Any]] = {}
        for it in items:  # within a batch the last value for a key wins, as across batches
            latest[(str(it["request_id"]), int(it["row"]), str(it["kind"]))] = it
        keys = list(latest)
        with self._write() as conn:
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                rids = sorted({k[0] for k in chunk})
                found = {
                    (r.request_id, r.row, r.kind): r.id
                    for r in conn.execute(
                        sa.select(f.c.id, f.c.request_id, f.c.row, f.c.kind).where(
                            (f.c.deployment == deployment) & f.c.request_id.in_(rids)
                        )
                    )
                }
                inserts, updates = [], []
                for key in chunk:
                    it = latest[key]
                    values = {"value": it["value"], "ts": it["ts"], "received_at": now, "actor": actor}
                    if key in found:
                        updates.append({"_id": found[key], **values})
                    else:
                        inserts.append(
                            {"deployment": deployment, "request_id": key[0], "row": key[1], "kind": key[2], **values}
                        )
                if inserts:
                    conn.execute(f.insert(), inserts)
                if updates:
                    conn.execute(
                        f.update()
                        .where(f.c.id == sa.bindparam("_id"))
                        .values(
                            value=sa.bindparam("value"),
                            ts=sa.bindparam("ts"),
                            received_at=sa.bindparam("received_at"),
                            actor=sa.bindparam("actor"),
                        ),
                        updates,
                    )
            self._event(conn, actor, "feedback.received", f"deployment:{deployment}", None, {"items": len(items)})
        return len(items)

    def feedback_frame(self, deployment: str, received_since: datetime | None = None) -> Any:
        """Feedback as a DataFrame (``request_id``, ``row``, ``kind``, ``value``) — the lean read the rollout
        controller does every tick. ``received_since`` keeps what arrived since then (feedback always arrives after
        its prediction was logged, so a window's labels all arrived after the window began)."""
        import pandas as pd

        f = t.feedback
        stmt = sa.select(f.c.request_id, f.c.row, f.c.kind, f.c.value).where(f.c.deployment == deployment)
        if received_since is not None:
            stmt = stmt.where(f.c.received_at >= received_since)
        names = ["request_id", "row", "kind", "value"]
        with self._read() as conn:
            rows = [tuple(r) for r in conn.execute(stmt.order_by(f.c.id))]
        columns = list(zip(*rows, strict=True)) if rows else [()] * len(names)
        return pd.DataFrame({n: pd.Series(list(c), dtype=object) for n, c in zip(names, columns, strict=True)})

    def list_feedback(
        self,
        deployment: str,
        kind: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        request_id: str | None = None,
    ) -> list[dict[str, Any]]:
        f = t.feedback
        stmt = sa.select(f).where(f.c.deployment == deployment)
        if kind:
            stmt = stmt.where(f.c.kind == kind)
        if request_id is not None:
            stmt = stmt.where(f.c.request_id == request_id)
        if since is not None:
            stmt = stmt.where(f.c.ts >= since)
        if until is not None:
            stmt = stmt.where(f.c.ts <= until)
        with self._read() as conn:
            rows = conn.execute(stmt.order_by(f.c.ts, f.c.id)).all()
        return [
            {
                "request_id": r.request_id,
                "row": r.row,
                "kind": r.kind,
                "value": r.value,
                "ts": utc(r.ts),
                "received_at": utc(r.received_at),
            }
            for r in rows
        ]
