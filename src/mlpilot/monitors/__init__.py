"""Monitoring services of the control plane: feedback joined to the request log (monitors, SLOs and alerts
follow). The detector library they use is :mod:`mlpilot.monitoring` (pure, usable without a server)."""

from mlpilot.monitors.alerts import AlertService, SLOStatus
from mlpilot.monitors.drift import DriftMonitor, DriftReport
from mlpilot.monitors.feedback import FeedbackService
from mlpilot.monitors.notify import WebhookNotifier
from mlpilot.monitors.service import MonitorService, TickReport

__all__ = [
    "AlertService",
    "DriftMonitor",
    "DriftReport",
    "FeedbackService",
    "MonitorService",
    "SLOStatus",
    "TickReport",
    "WebhookNotifier",
]
