"""The artifact registry (control plane)."""

from mlpilot.registry.service import Registry

__all__ = ["Registry"]
