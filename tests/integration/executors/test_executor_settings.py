"""Choosing the executor: settings, the composition root, ``mlpilot up --executor``, autoscaling options, and the
Ray executor's failures before any Ray starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mlpilot.app import build_executor
from mlpilot.errors import InvalidArgument, LoadError
from mlpilot.executors import InProcessExecutor
from mlpilot.records import AutoscalingOptions, RuntimeOptions
from mlpilot.serving.snapshot import AutoscalingRoute, RoutingSnapshot
from mlpilot.settings import Settings
from tests.factories import iris_frame
from tests.helpers import free_port, run_cli


def test_the_default_executor_is_in_process() -> None:
    assert isinstance(build_executor(Settings()), InProcessExecutor)


def test_the_ray_executor_is_chosen_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ray")
    monkeypatch.setenv("MLPILOT_EXECUTOR__KIND", "ray")
    monkeypatch.setenv("MLPILOT_EXECUTOR__RAY_ADDRESS", "127.0.0.1:6379")
    monkeypatch.setenv("MLPILOT_EXECUTOR__REPLICA_CPUS", "0.25")
    executor = build_executor(Settings())
    assert executor.kind == "ray"
    o = executor.options  # type: ignore[attr-defined]
    assert (o.address, o.replica_cpus, o.namespace) == ("127.0.0.1:6379", 0.25, "mlpilot")


def test_llm_apps_stay_in_the_server_process_on_the_ray_executor(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    from mlpilot.blobs import BlobStore
    from mlpilot.executors.ray import RayExecutor
    from mlpilot.runtimes.app import APP_FLAVOR
    from mlpilot.serving.snapshot import ModelBinding, VariantRoute

    executor = RayExecutor()
    app = VariantRoute("chat", ModelBinding("bot", 1, "sha256:" + "0" * 64, APP_FLAVOR, {"error": "bot:1 is broken"}))
    with pytest.raises(LoadError, match="bot:1 is broken"):  # AppRuntime's own check: built by the local executor
        executor.runtime_for("bot", app, BlobStore(tmp_path))
    assert not executor._started  # and no Ray was started for it


def test_an_unknown_executor_kind_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLPILOT_EXECUTOR__KIND", "kubernetes")
    with pytest.raises(ValueError, match="inprocess"):
        Settings()


def test_up_refuses_an_unknown_executor(tmp_path: Path) -> None:
    r = run_cli("up", "--port", str(free_port()), "--executor", "kubernetes", home=tmp_path, check=False)
    assert r.returncode == 2
    assert "use inprocess or ray" in r.stdout + r.stderr


def test_up_refuses_several_workers_with_the_ray_executor(tmp_path: Path) -> None:
    r = run_cli("up", "--port", str(free_port()), "--executor", "ray", "--workers", "2", home=tmp_path, check=False)
    assert r.returncode == 1
    assert "the Ray executor runs with one server process" in r.stdout + r.stderr


def test_autoscaling_bounds_are_checked() -> None:
    assert RuntimeOptions().autoscaling is None  # backward compatible: fixed replicas unless asked
    with pytest.raises(InvalidArgument, match=r"min_replicas \(3\) exceeds max_replicas \(2\)"):
        AutoscalingOptions(min_replicas=3, max_replicas=2)


def test_autoscaling_reaches_the_routing_snapshot(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    from mlpilot import Client
    from mlpilot.app import build_platform

    X, y = iris_frame()
    home = tmp_path / "home"
    with Client(home=home) as c:
        v = c.register_model("iris", LogisticRegression(max_iter=300).fit(X, y), sample=X.head(3))
        c.deploy("iris", v.ref, runtime={"autoscaling": {"min_replicas": 1, "max_replicas": 3}})
        c.deploy("iris", v.ref, variant="fixed", runtime={"replicas": 2})
        with pytest.raises(InvalidArgument, match="exceeds max_replicas"):
            c.deploy("iris", v.ref, variant="bad", runtime={"autoscaling": {"min_replicas": 4, "max_replicas": 2}})
    platform = build_platform(Settings(home=home))
    try:
        snap = platform.deployments.snapshot()
    finally:
        platform.close()
    variants = {v.name: v for v in snap.deployments["iris"].variants}
    assert variants["iris-v1"].autoscaling == AutoscalingRoute(1, 3, target_ongoing_requests=2.0)
    assert variants["fixed"].autoscaling is None and variants["fixed"].replicas == 2
    assert RoutingSnapshot.from_dict(snap.to_dict()) == snap  # crosses a process boundary intact


def test_an_unreachable_ray_address_is_unavailable_quickly(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    code = (
        "from mlpilot.executors.ray import RayExecutor, RayOptions\n"
        "from mlpilot.errors import Unavailable, InvalidArgument\n"
        f"ex = RayExecutor(RayOptions(address='127.0.0.1:{free_port()}'))\n"
        "try:\n    ex.start()\nexcept Unavailable as e:\n    print('UNAVAILABLE', e.message)\n"
        "try:\n    RayExecutor(RayOptions(address='no-port')).start()\n"
        "except InvalidArgument as e:\n    print('INVALID', e.message)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "UNAVAILABLE cannot start the Ray executor: nothing answers at 127.0.0.1:" in r.stdout, r.stdout + r.stderr
    assert "INVALID ray_address 'no-port': expected host:port" in r.stdout, r.stdout + r.stderr
