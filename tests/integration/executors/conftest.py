"""One local Ray (2 CPUs) for every Ray test of the session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.executors.raytools import local_ray


@pytest.fixture(scope="session")
def ray_session() -> Iterator[Any]:
    pytest.importorskip("ray")
    with local_ray(num_cpus=2) as ray:
        yield ray
