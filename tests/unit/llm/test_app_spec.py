"""App specs that cannot work are refused when they are defined."""

from __future__ import annotations

import pytest

from mlpilot.errors import InvalidArgument
from mlpilot.llm.apps import parse_app


def test_a_local_generator_with_tools_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="does not call tools"):
        parse_app({"generator": {"local": "smollm2"}, "tools": ["order-status"]}, source="app.json")
    assert parse_app({"generator": {"local": "smollm2"}}, source="app.json").tools == []
