"""The cn2015 bulletin board over HTTP: post, accept, cancel and list offers.

Bodies and path ids are checked here (400), then the key (401) and the role (403); eligibility,
existence, state and the business rules are the engine's (``engine/offers.py``), in API.md's
order. Reads check eligibility against the same rule the engine uses.
"""

from __future__ import annotations

from aiohttp import web

from engine import offers_commands as oc
from engine.errors import CrowdexError
from engine.machine import AccountInfo
from engine.offers import Offers, offer_view
from gateway import http, keys
from gateway import offer_schemas as schemas
from gateway.routes import Route, query_int
from gateway.schemas import MAX_SAFE


def offers(request: web.Request) -> Offers:
    return request.app[keys.ENGINE].machine.component("offers")


async def post_offer(request: web.Request) -> web.Response:
    req = await http.body(request, schemas.PostOfferRequest)
    if req.price * req.quantity > MAX_SAFE:
        raise CrowdexError("invalid_field", "price x quantity must be at most 2^53 fen")
    investor = http.require(request, "investor")
    command = oc.PostOffer(req.instrument_id, req.side, req.price, req.quantity)
    return http.reply(request, await http.submit(request, command, investor))


async def accept_offer(request: web.Request) -> web.Response:
    offer_id = http.path_id(request, "offer_id")
    req = await http.body(request, schemas.AcceptOfferRequest)
    investor = http.require(request, "investor")
    command = oc.AcceptOffer(offer_id, req.quantity)
    return http.reply(request, await http.submit(request, command, investor))


async def cancel_offer(request: web.Request) -> web.Response:
    offer_id = http.path_id(request, "offer_id")
    investor = http.require(request, "investor")
    return http.reply(request, await http.submit(request, oc.CancelOffer(offer_id), investor))


def _viewer(request: web.Request) -> AccountInfo:
    """Operators and qualified or institutional investors read the board (403 otherwise)."""
    account = http.require(request, "investor", "operator")
    if account.role == "investor":
        offers(request).eligible(account.account_id)
    return account


def _check_profile(request: web.Request) -> None:
    if request.app[keys.ENGINE].machine.profile != "cn2015":
        raise CrowdexError("not_permitted",
                           "offers exist only under the cn2015 profile; use /v1/orders")


async def list_offers(request: web.Request) -> web.Response:
    instrument_id = None
    if "instrument_id" in request.query:
        instrument_id = http.query_int(request, "instrument_id", 0, 1, MAX_SAFE)
    viewer = _viewer(request)
    machine = request.app[keys.ENGINE].machine
    if instrument_id is not None and (
            machine.component("offerings").instrument_info(instrument_id) is None):
        raise CrowdexError("instrument_not_found", f"no instrument {instrument_id}")
    _check_profile(request)
    # ``mine``: the caller's own offers (to cancel, not to accept): a board shows them apart.
    return http.respond(request, 200, [{**offer_view(o), "mine": o.account_id == viewer.account_id}
                                       for o in offers(request).open_offers(instrument_id)])


async def get_offer(request: web.Request) -> web.Response:
    offer_id = http.path_id(request, "offer_id")
    _viewer(request)
    offer = offers(request).offers.get(offer_id)
    if offer is None:
        raise CrowdexError("offer_not_found", f"no offer {offer_id}")
    return http.respond(request, 200, offer_view(offer))


ROUTES = [
    Route("POST", "/v1/offers", post_offer,
          "Post a bulletin-board offer (cn2015); reserves your units or cash",
          ("investor",), schemas.PostOfferRequest, schemas.Offer, 201),
    Route("GET", "/v1/offers", list_offers,
          "Open offers (?instrument_id=), for qualified investors and operators (cn2015)",
          ("investor", "operator"), None, list[schemas.Offer],
          query=(query_int("instrument_id", 1, MAX_SAFE, "Only this instrument's offers"),)),
    Route("GET", "/v1/offers/{offer_id}", get_offer, "One offer", ("investor", "operator"),
          None, schemas.Offer),
    Route("POST", "/v1/offers/{offer_id}/accept", accept_offer,
          "Accept (part of) an offer: a bilateral trade at its price",
          ("investor",), schemas.AcceptOfferRequest, schemas.OfferTrade),
    Route("DELETE", "/v1/offers/{offer_id}", cancel_offer,
          "Cancel your open offer, releasing its reservation", ("investor",), None,
          schemas.Offer),
]
