"""Run the Alembic migrations shipped inside the package, programmatically (no alembic.ini needed)."""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

MIGRATIONS = Path(__file__).with_name("migrations")
# Alembic's command API keeps its context in module globals (``alembic.context``, ``alembic.op``): two threads of one
# process migrating at once (two embedded clients opening) broke each other's (a KeyError). One at a time here;
# other processes serialise on the database's own lock.
_LOCK = threading.Lock()


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Upgrade the schema; concurrent callers serialise on a lock (advisory on PostgreSQL, the file on SQLite)."""
    with _LOCK:
        command.upgrade(alembic_config(engine), revision)
