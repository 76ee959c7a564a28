"""The blob-store conformance kit (mlpilot.testing.BLOB_CHECKS) on local files, fsspec file:// and S3 (moto)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mlpilot.testing import BLOB_CHECKS, BlobHarness


@pytest.mark.parametrize("check", BLOB_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_blob_store_conformance(check: Callable[[BlobHarness], None], blob_harness: BlobHarness) -> None:
    check(blob_harness)
