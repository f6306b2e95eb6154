"""Request and response bodies of the cn2015 bulletin board (``/v1/offers``)."""

from __future__ import annotations

from typing import Literal

import msgspec

from gateway.schemas import Amount, Id, Request, Time


class PostOfferRequest(Request):
    instrument_id: Id
    side: Literal["buy", "sell"]
    price: Amount
    quantity: Amount


class AcceptOfferRequest(Request):
    quantity: Amount


class Offer(msgspec.Struct):
    offer_id: int
    instrument_id: int
    side: str
    price: int
    quantity: int
    remaining: int
    filled_quantity: int
    status: Literal["open", "filled", "cancelled"]
    created: Time
    mine: bool | None = None  # in GET /v1/offers: the caller posted it


class OfferTrade(msgspec.Struct):
    trade_id: int
    offer_id: int
    price: int
    quantity: int
    remaining: int
    status: Literal["open", "filled"]
