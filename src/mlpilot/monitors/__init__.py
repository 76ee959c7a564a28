"""Monitoring services of the control plane: feedback joined to the request log (monitors, SLOs and alerts
follow). The detector library they use is :mod:`mlpilot.monitoring` (pure, usable without a server)."""

from mlpilot.monitors.drift import DriftMonitor, DriftReport
from mlpilot.monitors.feedback import FeedbackService

__all__ = ["DriftMonitor", "DriftReport", "FeedbackService"]
