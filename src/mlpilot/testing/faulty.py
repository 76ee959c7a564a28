"""Models with planted faults, for end-to-end tests and demos of the incident loop (importable by a server process,
so they can be registered from one process and served by another)."""

from __future__ import annotations

from typing import Any

import numpy as np


class FailsAbove:
    """Answers like ``model`` except that a request with a row whose ``feature`` is above ``above`` fails with a
    ``ValueError`` (a bug on one segment: a 500 for those requests only)."""

    def __init__(self, model: Any, feature: str, above: float) -> None:
        self.model, self.feature, self.above = model, feature, above
        self.classes_ = getattr(model, "classes_", None)

    def _check(self, X: Any) -> None:
        values = np.asarray(X[self.feature], dtype=float)
        if (values > self.above).any():
            raise ValueError(f"unsupported {self.feature} {float(values.max()):.2f} (> {self.above})")

    def predict(self, X: Any) -> Any:
        self._check(X)
        return self.model.predict(X)

    def predict_proba(self, X: Any) -> Any:
        self._check(X)
        return self.model.predict_proba(X)
