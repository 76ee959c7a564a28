"""The detector contract, after scikit-learn's estimators.

- ``__init__`` stores its keyword arguments verbatim as attributes of the same name and does nothing else;
  hyperparameters are validated in ``fit``.
- ``fit(reference)`` learns state into attributes ending in ``_`` and returns ``self``.
- ``score(x)`` returns the statistic(s); ``predict(x)`` returns a frozen result dataclass.
- Detectors are pure computation: no I/O, no threads, no clock. Randomised ones take ``random_state`` and give
  the same answer for the same input every call.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from mlpilot.monitoring._inputs import check_fitted, feature_name
from mlpilot.monitoring.results import FeatureDrift

if TYPE_CHECKING:
    from mlpilot.monitoring._inputs import Values

_D = TypeVar("_D", bound="Detector")
_U = TypeVar("_U", bound="UnivariateDrift")


class Detector:
    """Base class: parameter introspection, ``repr`` and cloning shared by every detector."""

    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [
            p.name
            for p in signature.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self) -> dict[str, Any]:
        """The hyperparameters, as passed to ``__init__``.

        Returns:
            a dict ``{name: value}`` in signature order.
        """
        return {name: getattr(self, name) for name in self._param_names()}

    def __repr__(self) -> str:
        defaults = {
            p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values() if p.name != "self"
        }
        changed = [f"{k}={v!r}" for k, v in self.get_params().items() if repr(v) != repr(defaults.get(k))]
        return f"{type(self).__name__}({', '.join(changed)})"


def clone(detector: _D) -> _D:
    """An unfitted copy of ``detector`` with the same hyperparameters (scikit-learn's ``clone``).

    Args:
        detector: any :class:`Detector`.

    Returns:
        a new instance of the same class; learned ``*_`` state is not copied.
    """
    return type(detector)(**detector.get_params())


class UnivariateDrift(Detector):
    """Base of the one-feature drift detectors (numeric and categorical); subclasses implement ``_fit`` and
    ``_compute``.

    Hypothesis tests (``has_p_value``) flag drift when ``p_value < alpha``; distances when
    ``statistic > threshold``. Missing values (and, for numeric tests, ±inf) are dropped before testing.
    """

    #: the short test name reported in results.
    test: ClassVar[str]
    #: which columns the test applies to.
    kind: ClassVar[Literal["numeric", "categorical"]]
    #: True for hypothesis tests (decision on ``alpha``), False for distances (decision on ``threshold``).
    has_p_value: ClassVar[bool]

    def fit(self: _U, reference: Values) -> _U:
        """Learn the reference distribution.

        Args:
            reference: 1-D reference sample (Series, array or sequence); a Series' name becomes the feature name.

        Returns:
            self, fitted.

        Raises:
            InvalidArgument: bad hyperparameters, an empty sample or a wrong dtype for this test.
        """
        self._check_params()
        name = feature_name(reference)
        self._fit(reference, name)
        self.feature_name_ = name
        return self

    def score(self, current: Values) -> float:
        """The test statistic (or distance) of ``current`` against the reference.

        Args:
            current: 1-D current sample.

        Returns:
            the statistic as a float.

        Raises:
            InvalidArgument: not fitted, an empty window or a wrong dtype for this test.
        """
        check_fitted(self, "feature_name_")
        return self._compute(current)[0]

    def predict(self, current: Values) -> FeatureDrift:
        """Test ``current`` against the reference.

        Args:
            current: 1-D current sample.

        Returns:
            a :class:`FeatureDrift` with statistic, p-value (hypothesis tests only), threshold and verdict.

        Raises:
            InvalidArgument: not fitted, an empty window or a wrong dtype for this test.
        """
        check_fitted(self, "feature_name_")
        statistic, p_value, detail = self._compute(current)
        threshold = self.decision_threshold
        is_drift = p_value < threshold if p_value is not None else statistic > threshold
        return FeatureDrift(self.feature_name_, self.test, statistic, p_value, threshold, bool(is_drift), detail)

    @property
    def decision_threshold(self) -> float:
        """``alpha`` for hypothesis tests, ``threshold`` for distances."""
        return float(getattr(self, "alpha" if self.has_p_value else "threshold"))

    def _check_params(self) -> None:  # pragma: no cover - overridden
        """Validate hyperparameters (called by ``fit``)."""

    def _fit(self, reference: Values, feature: str) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _compute(self, current: Values) -> tuple[float, float | None, dict[str, Any]]:  # pragma: no cover
        raise NotImplementedError
