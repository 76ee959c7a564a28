"""Control-plane persistence: SQLAlchemy Core tables, Alembic migrations, SQLite or PostgreSQL."""

from mlpilot.store.sql import Store, create_engine

__all__ = ["Store", "create_engine"]
