"""The Python SDK."""

from mlpilot.client.client import Client

__all__ = ["Client"]
