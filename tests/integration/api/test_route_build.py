"""The control API's routes are built when its app is, never at a first request: FastAPI sets the aliases of the
parameters' ``Query``/``Path`` objects (shared by every app of the process) as it builds a route, and two embedded
clients serving their first requests at once in two threads raced there (a 500 in CI's ship test)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import fastapi.routing
import pytest

from mlpilot import Client


def test_no_route_is_built_by_a_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str] = []
    original = fastapi.routing.get_dependant

    def counting(*args: Any, **kwargs: Any) -> Any:
        built.append(str(kwargs.get("path", args[0] if args else "")))
        return original(*args, **kwargs)

    monkeypatch.setattr(fastapi.routing, "get_dependant", counting)
    with Client(home=tmp_path / "home") as c:
        at_creation = len(built)
        assert c.rollouts("iris", active=True) == []
        assert c.events(subject="deployment:iris") == []
        assert at_creation > 50  # every route of every router, not only the first few
        assert built[at_creation:] == []


def test_two_embedded_clients_start_at_once_in_two_threads(tmp_path: Path) -> None:
    """Both create the home's store (Alembic's command API is one per process at a time: store/migrate.py) and
    serve their first requests together; under the suite's warnings-as-errors the route race was a 500."""
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def client(i: int) -> None:
        try:
            with Client(home=tmp_path / "home", actor=f"t{i}") as c:
                start.wait(30)
                for _ in range(3):
                    assert c.rollouts("iris", active=True) == []
        except BaseException as exc:  # kept: asserted empty below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
