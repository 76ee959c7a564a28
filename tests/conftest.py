"""Shared fixtures: store factories for SQLite and PostgreSQL (real servers, one fresh schema per test)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from mlpilot.clock import Clock
from mlpilot.store import Store, create_engine
from tests.s3 import s3_root, s3_storage_options, s3_url  # noqa: F401  (fixtures: a real S3 API, moto)

PG_URL = os.environ.get("MLPILOT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_available() -> str | None:
    try:
        engine = sa.create_engine(PG_URL)
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
        return None
    except Exception as exc:  # report why in the skip/fail message
        return str(exc).splitlines()[0]


@pytest.fixture(scope="session")
def pg_url() -> str:
    problem = _pg_available()
    if problem:
        if os.environ.get("MLPILOT_REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL required but unreachable at {PG_URL}: {problem}")
        pytest.skip(f"PostgreSQL unreachable at {PG_URL}: {problem}")
    return PG_URL


StoreMaker = Callable[[Clock], Store]


@pytest.fixture
def sqlite_store_factory(tmp_path: Path) -> Iterator[StoreMaker]:
    made: list[Store] = []

    def make(clock: Clock) -> Store:
        store = Store.from_url(f"sqlite:///{tmp_path / f'store-{len(made)}.db'}", clock)
        store.migrate()
        made.append(store)
        return store

    yield make
    for s in made:
        s.close()


@pytest.fixture
def pg_store_factory(pg_url: str) -> Iterator[StoreMaker]:
    """Each store gets its own PostgreSQL schema (dropped afterwards), so tests never see each other's rows."""
    made: list[tuple[Store, str]] = []
    admin = sa.create_engine(pg_url)

    def make(clock: Clock) -> Store:
        schema = f"t_{uuid.uuid4().hex[:12]}"
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        sep = "&" if "?" in pg_url else "?"
        engine = create_engine(f"{pg_url}{sep}options=-csearch_path%3D{schema}")
        store = Store(engine, clock)
        store.migrate()
        made.append((store, schema))
        return store

    yield make
    for store, schema in made:
        store.close()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_factory(request: pytest.FixtureRequest) -> StoreMaker:
    factory: StoreMaker = request.getfixturevalue(f"{'pg' if request.param == 'postgres' else 'sqlite'}_store_factory")
    return factory


#: `make test` runs 2 pytest-xdist workers with ``--dist loadgroup``: the tests of one file share a worker (module
#: fixtures are built once per run), and every test that runs Ray (a local Ray per session, or a server that starts its
#: own) shares one worker, so two Ray clusters never compete for this machine's two cores.
_RAY_TESTS = ("tests/integration/executors/", "tests/e2e/test_ray_executor.py", "tests/e2e/test_scale_out.py")


def xdist_group(nodeid: str) -> str:
    """The unit of work a test belongs to under ``--dist loadgroup``: its file, or "ray"."""
    path = nodeid.split("::", 1)[0]
    return "ray" if path.startswith(_RAY_TESTS) else path


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """Schedule ``--dist loadgroup`` by :func:`xdist_group` of the node id, not by ``xdist_group`` marks.

    xdist's loadgroup reads a mark's group from an ``@group`` suffix its worker appends to the node id by assigning
    ``item._nodeid``; pytest 9.2 keeps node ids elsewhere (``Node._id``), so the suffix silently never appeared and
    every test became its own unit: the tests of one module ran on both workers, each building the module's fixtures
    (pytest-xdist issue #1386). Grouping here, on the controller, does not depend on that side channel.
    """
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class FileOrRayScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_group(nodeid)

    return FileOrRayScheduling(config, log)
