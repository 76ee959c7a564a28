"""The executor conformance suite (``mlpilot.testing.EXECUTOR_CHECKS``) on the in-process and the Ray executor."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlpilot.executors import InProcessExecutor
from mlpilot.testing.executor_checks import EXECUTOR_CHECKS

Check = Callable[..., None]


@pytest.mark.parametrize("check", EXECUTOR_CHECKS, ids=lambda c: c.__name__)
def test_inprocess_executor(check: Check, tmp_path: Path) -> None:
    check(InProcessExecutor, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("check", EXECUTOR_CHECKS, ids=lambda c: c.__name__)
def test_ray_executor(check: Check, tmp_path: Path, ray_session: Any) -> None:
    from mlpilot.executors.ray import RayExecutor, RayOptions

    check(lambda: RayExecutor(RayOptions(health_check_period_s=1.0)), tmp_path)
