"""The store conformance kit (mlpilot.testing) on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import pytest

from mlpilot.testing import STORE_CHECKS


@pytest.mark.parametrize("check", STORE_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_store_conformance(check, store_factory) -> None:  # type: ignore[no-untyped-def]
    check(store_factory)
