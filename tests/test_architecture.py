"""Architecture rules of DESIGN.md, enforced: plane boundaries, the public facade, import hygiene, module size."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import mlpilot

SRC = Path(mlpilot.__file__).parent
DATA_PLANE = {"serving", "runtimes", "executors"}
# Shared by both planes: may be imported by the data plane, so they must not reach into the control plane either.
NEUTRAL = {"protocol", "errors", "clock", "blobs", "flavors", "telemetry", "monitoring", "llm"}
CONTROL_PLANE = {
    "auth",
    "store",
    "api",
    "registry",
    "deployments",
    "app",
    "cli",
    "client",
    "server",
    "dataserver",
    "demo",
    "demo_llm",
    "testing",
    "records",
    "settings",
    "monitors",
    "rollouts",
    "incidents",
    "sim",
    "__main__",
}


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "migrations" not in p.parts)


def _top(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def _mlpilot_imports(path: Path) -> set[str]:
    """Top-level mlpilot subpackages a module imports, anywhere in its body (function-level imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for n in names:
            parts = n.split(".")
            if parts[0] == "mlpilot" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize(
    "path", [p for p in _modules() if _top(p) in DATA_PLANE | NEUTRAL], ids=lambda p: str(p.relative_to(SRC))
)
def test_data_plane_and_shared_modules_never_import_the_control_plane(path: Path) -> None:
    bad = _mlpilot_imports(path) & CONTROL_PLANE
    assert not bad, f"{path.relative_to(SRC)} imports control-plane modules {sorted(bad)}"


def test_every_package_is_classified() -> None:
    tops = {_top(p) for p in _modules()} - {"__init__"}
    unclassified = tops - DATA_PLANE - NEUTRAL - CONTROL_PLANE
    assert not unclassified, f"classify {sorted(unclassified)} in tests/test_architecture.py"


def test_public_facade_is_explicit_and_resolves() -> None:
    assert len(mlpilot.__all__) == len(set(mlpilot.__all__))
    for name in mlpilot.__all__:
        assert getattr(mlpilot, name) is not None, name
    public = {n for n in dir(mlpilot) if not n.startswith("_")} - set(mlpilot.__all__)
    # Submodules become attributes once imported; anything else public must be listed in __all__.
    stray = {n for n in public if not (SRC / n).is_dir() and not (SRC / f"{n}.py").is_file()} - {"annotations"}
    assert not stray, f"public names missing from __all__: {sorted(stray)}"


def test_import_starts_no_threads_and_configures_no_logging() -> None:
    code = (
        "import logging, threading, mlpilot;"
        "assert threading.active_count() == 1, threading.enumerate();"
        "assert not logging.getLogger().handlers, logging.getLogger().handlers;"
        "import sys; heavy = {'pandas', 'sklearn', 'fastapi', 'httpx'} & set(sys.modules);"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_api_route_declares_a_scope() -> None:
    from mlpilot.api import create_api
    from mlpilot.api.scopes import SCOPE_KEY, Scope

    spec = create_api(platform=None).openapi()  # type: ignore[arg-type]  # routes only; nothing is called
    operations = [(m, p, op) for p, item in spec["paths"].items() for m, op in item.items()]
    assert len(operations) > 15
    for method, path, op in operations:
        assert op.get(SCOPE_KEY) in {s.value for s in Scope}, f"{method.upper()} {path} declares no scope"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_modules_stay_small(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= 800, f"{path.relative_to(SRC)} has {lines} lines; split it by concept"
