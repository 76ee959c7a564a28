"""``mlpilot auth`` embedded and against a server with auth on; ``mlpilot up`` says whether auth is on and refuses
to start with auth on and no key."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import ServerProcess, run_cli


def test_create_list_revoke_embedded(tmp_path: Path) -> None:
    home = tmp_path / "home"
    out = run_cli("auth", "create-key", "ci", "--scopes", "read,predict", "--deployment", "iris", home=home).stdout
    key = out.strip().splitlines()[-1]
    assert key.startswith("mlp_") and "created API key ci" in out
    listed = run_cli("auth", "list", "--json", home=home).stdout
    assert '"ci"' in listed and key.split("_", 2)[2] not in listed and '"iris"' in listed
    bad = run_cli("auth", "create-key", "x", "--scopes", "root", home=home, check=False)
    assert bad.returncode == 1 and "unknown scope" in bad.stderr
    assert "revoked API key ci" in run_cli("auth", "revoke", "ci", home=home).stdout
    assert '"ci"' not in run_cli("auth", "list", "--json", home=home).stdout
    assert '"ci"' in run_cli("auth", "list", "--all", "--json", home=home).stdout
    missing = run_cli("auth", "revoke", "nope", home=home, check=False)
    assert missing.returncode == 1 and "no API key named 'nope'" in missing.stderr


def test_up_refuses_to_start_with_auth_on_and_no_key(tmp_path: Path) -> None:
    r = run_cli("up", "--host", "0.0.0.0", "--no-grpc", home=tmp_path / "home", check=False, timeout=60)
    assert r.returncode == 1
    assert "auth on: listening on 0.0.0.0" in r.stderr and "mlpilot auth create-key admin --scopes admin" in r.stderr


def test_remote_cli_with_a_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    admin = run_cli("auth", "create-key", "admin", "--scopes", "admin", home=home).stdout.strip().splitlines()[-1]
    proc = ServerProcess(
        home, args=("--no-grpc",), extra_env={"MLPILOT_AUTH__MODE": "on", "MLPILOT_MONITORS__ENABLED": "0"}
    )
    try:
        assert "auth on: auth.mode is on" in proc.log.read_text()
        denied = run_cli("auth", "list", home=tmp_path / "elsewhere", url=proc.url, check=False)
        assert denied.returncode == 1 and "needs an API key" in denied.stderr
        monkeypatch.setenv("MLPILOT_API_KEY", admin)
        out = run_cli("auth", "create-key", "reader", "--scopes", "read", home=tmp_path / "elsewhere", url=proc.url)
        reader = out.stdout.strip().splitlines()[-1]
        assert '"reader"' in run_cli("auth", "list", "--json", home=tmp_path / "elsewhere", url=proc.url).stdout
        monkeypatch.setenv("MLPILOT_API_KEY", reader)
        refused = run_cli("auth", "list", home=tmp_path / "elsewhere", url=proc.url, check=False)
        assert refused.returncode == 1 and "lacks the 'admin' scope" in refused.stderr
    finally:
        proc.stop()
    assert "key:admin" in {e.actor for e in _events(home)}


def _events(home: Path) -> list:  # type: ignore[type-arg]
    from mlpilot.app import build_platform
    from mlpilot.settings import Settings

    p = build_platform(Settings(home=home))
    try:
        return p.store.list_events(subject="apikey:*")
    finally:
        p.close()


def test_up_on_loopback_says_auth_is_off(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path / "home", args=("--no-grpc",), extra_env={"MLPILOT_MONITORS__ENABLED": "0"})
    try:
        assert "auth off: listening on loopback only (127.0.0.1)" in proc.log.read_text()
    finally:
        proc.stop()
