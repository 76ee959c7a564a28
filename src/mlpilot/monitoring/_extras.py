"""Optional dependencies of the detectors: scipy and scikit-learn come with the ``sklearn`` extra.

Imports of those libraries happen inside the functions that use them, wrapped in :func:`needs_extra`, so
``import mlpilot.monitoring`` needs only numpy and pandas and a missing extra fails on use with the pip hint.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from mlpilot.errors import MissingExtra


@contextmanager
def needs_extra(feature: str, extra: str = "sklearn") -> Iterator[None]:
    """Translate an ``ImportError`` raised inside the block into :class:`~mlpilot.errors.MissingExtra`.

    Args:
        feature: what the user asked for, e.g. ``"the KS drift test"``.
        extra: the mlpilot extra that installs the missing library.

    Raises:
        MissingExtra: when the block raised ``ImportError``.
    """
    try:
        yield
    except ImportError as exc:
        raise MissingExtra(feature, extra) from exc
