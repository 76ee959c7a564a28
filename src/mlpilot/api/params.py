"""Parameter types shared by the routes: integers bounded to what the store's 64-bit integer columns hold, so an
out-of-range number is a 400 that names the parameter, never an overflow in the database driver (a 500)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

from mlpilot.records import INT64_MAX

#: a row id in a path (``/rollouts/{rollout_id}`` …): 1 … 2**63 - 1
Id = Annotated[int, Path(ge=1, le=INT64_MAX)]
#: an artifact version number in a path (``/artifacts/{name}/versions/{version}``)
Version = Annotated[int, Path(ge=1, le=INT64_MAX)]

__all__ = ["INT64_MAX", "Id", "Version"]
