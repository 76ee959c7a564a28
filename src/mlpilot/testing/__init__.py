"""The conformance kit: named checks that every adapter (store, later runtimes and executors) must pass.

Use it like scikit-learn's ``check_estimator``::

    from mlpilot.testing import STORE_CHECKS
    for check in STORE_CHECKS:
        check(make_store)          # make_store(clock) -> a fresh, migrated Store
    for check in BLOB_CHECKS:
        check(harness)             # BlobHarness(make, corrupt, listing) over one backing storage
"""

from mlpilot.testing.blob_checks import BLOB_CHECKS, BlobHarness, check_blob_store
from mlpilot.testing.store_checks import STORE_CHECKS, check_store

__all__ = ["BLOB_CHECKS", "STORE_CHECKS", "BlobHarness", "check_blob_store", "check_store"]
