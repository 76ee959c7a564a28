"""Telemetry shared by both planes: the request log (written by the data plane) and queries over it."""
