"""Request and response bodies of the secondary markets (orders, book, trades, candles)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from gateway.schemas import NO_NUL, Amount, Id, Request, Time

ClientOrderId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=NO_NUL)]


class PlaceOrderRequest(Request):
    instrument_id: Id
    side: Literal["buy", "sell"]
    type: Literal["limit", "market"]
    quantity: Amount
    price: Amount | None = None
    time_in_force: Literal["gtc", "ioc", "fok"] = "gtc"
    post_only: bool = False
    client_order_id: ClientOrderId | None = None
    self_trade_prevention: Literal[
        "cancel_newest", "cancel_oldest", "cancel_both", "decrement"] = "cancel_newest"


class WsPlaceOrder(PlaceOrderRequest, kw_only=True):
    """The WebSocket ``order`` op: the POST /v1/orders body plus the message's own fields."""

    op: str = "order"
    request_id: Any = None


# The typed op's client_order_id: its lengths checked as ClientOrderId's, its NUL rule by
# ``WsOrderOp.__post_init__`` (a regex per order was half of the frame's decode: 0.28 us).
_TypedClientOrderId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class WsOrderOp(PlaceOrderRequest, tag_field="op", tag="order", kw_only=True):
    """The ``order`` op decoded straight from the frame (``Hub.register_typed_op``): the same
    fields and rules as ``WsPlaceOrder``, the op as the union's tag. A frame this does not
    decode takes the general path, which answers exactly as before."""

    client_order_id: _TypedClientOrderId | None = None
    request_id: Any = None

    def __post_init__(self) -> None:
        # An id with a NUL fails the decode, so the general path answers it (ClientOrderId).
        if self.client_order_id is not None and "\0" in self.client_order_id:
            raise ValueError("a client_order_id holds no NUL")


class WsCancelOp(msgspec.Struct, tag_field="op", tag="cancel", kw_only=True):
    """The ``cancel`` op decoded straight from the frame; other fields are ignored, as the
    general path ignores them."""

    order_id: int
    request_id: Any = None


class AmendOrderRequest(Request):
    """PATCH /v1/orders/{id}: a new price, a new (total) quantity, or both."""

    price: Amount | None = None
    quantity: Amount | None = None


class WsAmendOrder(AmendOrderRequest, kw_only=True):
    """The WebSocket ``amend`` op."""

    order_id: Id
    op: str = "amend"
    request_id: Any = None


class Fill(msgspec.Struct):
    trade_id: int
    price: int
    quantity: int


class Order(msgspec.Struct):
    order_id: int
    client_order_id: str | None
    instrument_id: int
    side: str
    type: str
    price: int | None
    quantity: int
    time_in_force: str
    post_only: bool
    status: Literal["open", "partially_filled", "filled", "cancelled", "rejected"]
    filled_quantity: int
    remaining_quantity: int
    fills: list[Fill]
    created: Time


# One level of a book: [price, quantity].
Level = Annotated[list[int], msgspec.Meta(min_length=2, max_length=2,
                                          description="[price, quantity]")]


class Book(msgspec.Struct):
    instrument_id: int
    sequence: int
    bids: list[Level]
    asks: list[Level]


class Trade(msgspec.Struct):
    trade_id: int
    price: int
    quantity: int
    taker_side: Literal["buy", "sell"]
    time: Time


class Candle(msgspec.Struct):
    time: Time
    open: int
    high: int
    low: int
    close: int
    volume: int


class AuctionResult(msgspec.Struct):
    instrument_id: int
    price: int
    quantity: int
    trade_count: int


class Indicative(msgspec.Struct):
    """An IP instrument's indicative uncross while orders rest (zeros when none would)."""

    instrument_id: int
    price: int
    quantity: int
