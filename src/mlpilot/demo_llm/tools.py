"""The demo's tools: plain Python functions a registered tool names as ``{"type": "python", "callable": …}``."""

from __future__ import annotations

from typing import Any

_ORDERS: dict[str, dict[str, Any]] = {
    "A1001": {"status": "shipped", "carrier": "DHL", "eta_days": 2},
    "A1002": {"status": "processing", "carrier": None, "eta_days": 5},
    "A1003": {"status": "delivered", "carrier": "UPS", "eta_days": 0},
}


def order_status(order_id: str) -> dict[str, Any]:
    """The status of an order by its id (``A1001`` …); an unknown id raises ``KeyError``."""
    if order_id not in _ORDERS:
        raise KeyError(f"no order {order_id!r}")
    return {"order_id": order_id, **_ORDERS[order_id]}
