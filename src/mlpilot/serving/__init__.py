"""The data plane (hot path). It imports nothing from the control plane, the store or the API."""
