"""The ``mlpilot`` command line (typer + rich)."""
