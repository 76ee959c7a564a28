"""Deployments: desired state and routing-snapshot compilation (control plane)."""

from mlpilot.deployments.service import Deployments

__all__ = ["Deployments"]
