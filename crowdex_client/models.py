"""What the API answers, as msgspec Structs: the very types the server's ``/openapi.json`` is
generated from (gateway/*_schemas.py), plus the WebSocket's messages.

Those modules import only msgspec, so the client shares them without pulling in the server.
Structs here ignore fields they do not know: a newer server's extra fields do not break an
older client.
"""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.offer_schemas import Offer, OfferTrade
from gateway.order_schemas import AuctionResult, Book, Candle, Fill, Indicative, Order, Trade
from gateway.project_schemas import (
    AllocationView,
    DisclosureView,
    DistributionView,
    InstalmentView,
    IntegrityEntry,
    IntegrityView,
    ProjectView,
    SubscriptionView,
)
from gateway.schemas import (
    AccountCreated,
    AdminState,
    BoardRules,
    BoardsView,
    ClockResult,
    DepositResult,
    ErrorBody,
    Health,
    Holding,
    Me,
    Venue,
    WithdrawalResult,
)
from gateway.settlement_schemas import (
    BatchList,
    BatchView,
    Mismatch,
    Movement,
    Progress,
    ReconciliationView,
    ResolveResult,
)

# ---- WebSocket messages (server to client), told apart by "type" ----------------------------


class _Message(msgspec.Struct, tag_field="type"):
    """Base of the server's WebSocket messages."""


class Snapshot(_Message, tag="snapshot"):
    """A channel's state on subscribing: the REST view (a book, trades, orders, a project)."""

    channel: str
    data: Any
    sequence: int | None = None


class Update(_Message, tag="update"):
    """A change on a channel; a gap in ``sequence`` means: subscribe again for a snapshot."""

    channel: str
    data: Any
    sequence: int | None = None


class OrderAck(_Message, tag="order_ack"):
    order: Order
    request_id: Any = None


class CancelAck(_Message, tag="cancel_ack"):
    order: Order
    request_id: Any = None


class AmendAck(_Message, tag="amend_ack"):
    order: Order
    request_id: Any = None


class WsError(_Message, tag="error"):
    code: str
    message: str
    request_id: Any = None


class Subscribed(_Message, tag="subscribed"):
    channels: list[str]


class Unsubscribed(_Message, tag="unsubscribed"):
    channels: list[str]


class Authenticated(_Message, tag="authenticated"):
    account_id: int


class Pong(_Message, tag="pong"):
    request_id: Any = None


WsMessage = (Snapshot | Update | OrderAck | CancelAck | AmendAck | WsError | Subscribed
             | Unsubscribed | Authenticated | Pong)

_ws_decoder = msgspec.json.Decoder(WsMessage)


def decode_message(payload: bytes) -> WsMessage | dict:
    """A server message as its Struct; one of a type this client does not know as a dict."""
    try:
        return _ws_decoder.decode(payload)
    except msgspec.ValidationError:
        return msgspec.json.decode(payload)


__all__ = [
    "BoardRules", "BoardsView", "Movement", "Venue",
    "AccountCreated", "AdminState", "AmendAck", "AllocationView", "AuctionResult", "Authenticated",
    "BatchList", "BatchView", "Book", "CancelAck", "Candle", "ClockResult", "DepositResult",
    "DisclosureView", "DistributionView", "ErrorBody", "Fill", "Health", "Holding",
    "Indicative", "InstalmentView", "IntegrityEntry", "IntegrityView", "Me", "Mismatch",
    "Offer", "OfferTrade", "Order", "OrderAck", "Pong", "Progress", "ProjectView",
    "ReconciliationView", "ResolveResult", "Snapshot", "Subscribed", "SubscriptionView",
    "Trade", "Unsubscribed", "Update", "WithdrawalResult", "WsError", "WsMessage", "decode_message",
]
