"""``mlpilot serve``: a data plane only needs the control plane's URL, and says so clearly when it is missing or
not an http(s) URL (usage errors exit 2, nothing starts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run_cli


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give the control plane's URL"),
        (("--control-url", "ftp://host:8000"), "is not an http(s) URL"),
        (("--control-url", "host:8000"), "is not an http(s) URL"),
    ],
)
def test_serve_refuses_a_missing_or_bad_control_url(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    result = run_cli("serve", *args, home=tmp_path / "home", check=False, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert not (tmp_path / "home").exists()  # nothing started, nothing written


def test_serve_is_listed_with_its_options(tmp_path: Path) -> None:
    out = run_cli("serve", "--help", home=tmp_path / "home", timeout=60).stdout
    for option in ("--control-url", "--host", "--port", "--grpc-port", "--no-grpc", "--home"):
        assert option in out
