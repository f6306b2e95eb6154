"""Commands of the secondary markets: orders, cancels and call-auction uncrosses.

Tags are journal format: never rename or reuse one.
"""

from __future__ import annotations

import msgspec


class PlaceOrder(msgspec.Struct, tag="place_order", array_like=True, gc=False):
    instrument_id: int
    side: str  # buy | sell
    order_type: str  # limit | market ("type" is the union's tag field)
    price: int  # fen per unit; 0 for a market order
    quantity: int
    time_in_force: str = "gtc"  # gtc | ioc | fok
    post_only: bool = False
    self_trade_prevention: str = "cancel_newest"
    client_order_id: str | None = None


class CancelOrder(msgspec.Struct, tag="cancel_order", array_like=True, gc=False):
    order_id: int


class AmendOrder(msgspec.Struct, tag="amend_order", array_like=True, gc=False):
    """A resting order's new price and/or total quantity (None: unchanged)."""

    order_id: int
    price: int | None = None
    quantity: int | None = None


class RunAuction(msgspec.Struct, tag="run_auction", array_like=True, gc=False):
    """Uncross one IP instrument's call auction (operator, or the board's schedule)."""

    instrument_id: int


MARKET_COMMANDS: tuple[type, ...] = (PlaceOrder, CancelOrder, RunAuction, AmendOrder)
