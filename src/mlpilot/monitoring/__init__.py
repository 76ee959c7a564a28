"""Monitoring detectors, usable as a library on DataFrames and arrays, without a server.

Every detector is scikit-learn shaped: hyperparameters in ``__init__``, ``fit(reference)`` learns ``*_`` state
and returns ``self``, ``score(x)`` returns the statistic(s), ``predict(x)`` returns a frozen result dataclass.
They are pure computation: no I/O, no threads, no clock (pass ``now=`` where time matters).

::

    from mlpilot.monitoring import TableDrift
    result = TableDrift(correction="holm").fit(reference_df).predict(current_df)
    result.is_drift, result.to_frame()

Families: numeric drift (KS, Wasserstein, PSI, Jensen-Shannon), categorical drift (chi-square, Jensen-Shannon,
PSI, unseen categories), table drift with multiple-testing correction, prediction drift, multivariate drift (MMD, domain
classifier), outliers (isolation forest, Mahalanobis), data quality, realized performance and label-free
performance estimation (CBPE). scipy and scikit-learn (the ``sklearn`` extra) are imported on first use.
"""

from __future__ import annotations

from mlpilot.monitoring.base import Detector, UnivariateDrift, clone
from mlpilot.monitoring.corrections import adjust_p_values
from mlpilot.monitoring.drift_categorical import (
    CategoricalJensenShannonDrift,
    CategoricalPSIDrift,
    ChiSquareDrift,
    UnseenCategoryDrift,
)
from mlpilot.monitoring.drift_multivariate import ClassifierDrift, MMDDrift
from mlpilot.monitoring.drift_numeric import JensenShannonDrift, KSDrift, PSIDrift, WassersteinDrift
from mlpilot.monitoring.estimation import CBPE
from mlpilot.monitoring.metrics import classification_metrics, expected_calibration_error, regression_metrics
from mlpilot.monitoring.outliers import IsolationForestOutliers, MahalanobisOutliers
from mlpilot.monitoring.performance import ClassificationPerformance, RegressionPerformance
from mlpilot.monitoring.prediction import prediction_drift
from mlpilot.monitoring.quality import DataQuality
from mlpilot.monitoring.results import (
    DriftResult,
    EstimateResult,
    FeatureDrift,
    OutlierResult,
    PerformanceResult,
    QualityIssue,
    QualityResult,
)
from mlpilot.monitoring.table import TableDrift

__all__ = [
    "CBPE",
    "CategoricalJensenShannonDrift",
    "CategoricalPSIDrift",
    "ChiSquareDrift",
    "ClassificationPerformance",
    "ClassifierDrift",
    "DataQuality",
    "Detector",
    "DriftResult",
    "EstimateResult",
    "FeatureDrift",
    "IsolationForestOutliers",
    "JensenShannonDrift",
    "KSDrift",
    "MMDDrift",
    "MahalanobisOutliers",
    "OutlierResult",
    "PSIDrift",
    "PerformanceResult",
    "QualityIssue",
    "QualityResult",
    "RegressionPerformance",
    "TableDrift",
    "UnivariateDrift",
    "UnseenCategoryDrift",
    "WassersteinDrift",
    "adjust_p_values",
    "classification_metrics",
    "clone",
    "expected_calibration_error",
    "prediction_drift",
    "regression_metrics",
]
