"""Alembic environment: runs on the engine handed over by ``mlpilot.store.migrate``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from mlpilot.store.tables import metadata

engine = context.config.attributes["engine"]
with engine.connect() as conn:
    if conn.dialect.name == "postgresql":
        # Serialise concurrent migrators (several control-plane processes starting at once).
        conn.execute(text("SELECT pg_advisory_xact_lock(727274)"))
    elif conn.dialect.name == "sqlite":
        conn.execution_options(mlpilot_write=True)
    context.configure(connection=conn, target_metadata=metadata, render_as_batch=conn.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()
    conn.commit()
