"""Commands of the cn2015 bulletin board: post an offer, accept one, cancel one's own.

Tags are journal format: never rename or reuse one.
"""

from __future__ import annotations

import msgspec


class PostOffer(msgspec.Struct, tag="post_offer", array_like=True, gc=False):
    """Post a priced offer to buy or sell units of an instrument; the poster's side is reserved."""

    instrument_id: int
    side: str  # buy | sell (the poster's side)
    price: int  # fen per unit
    quantity: int


class AcceptOffer(msgspec.Struct, tag="accept_offer", array_like=True, gc=False):
    """Take (part of) an open offer: a bilateral trade at the offer's price."""

    offer_id: int
    quantity: int


class CancelOffer(msgspec.Struct, tag="cancel_offer", array_like=True, gc=False):
    offer_id: int


OFFER_COMMANDS: tuple[type, ...] = (PostOffer, AcceptOffer, CancelOffer)
