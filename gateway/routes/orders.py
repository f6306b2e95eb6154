"""Secondary markets over HTTP and the WebSocket: orders, the book, trades, candles, auctions."""

from __future__ import annotations

from aiohttp import web

from engine import markets_commands as mc
from engine.errors import CrowdexError
from engine.machine import AccountInfo
from engine.marketdata import INTERVALS_US
from engine.markets import Markets
from gateway import http, keys
from gateway import order_schemas as os_
from gateway.hub import ChannelKind
from gateway.routes import Route, query_enum, query_int
from gateway.schemas import MAX_SAFE

DEPTH_MAX = 1000
TRADES_LIMIT_MAX = 1000
CANDLES_LIMIT_MAX = 1000
TRADES_CHANNEL_FIRST = 100  # the trades a new subscriber of a trades channel gets first


def markets(request: web.Request) -> Markets:
    return request.app[keys.ENGINE].machine.component("markets")


def _command(req: os_.PlaceOrderRequest) -> mc.PlaceOrder:
    """Field rules the types cannot say (API.md): a limit order needs a price, a market order
    takes none and cannot be post-only."""
    if req.type == "limit" and req.price is None:
        raise CrowdexError("missing_field", "missing field price (a limit order needs one)")
    if req.type == "market" and req.price is not None:
        raise CrowdexError("invalid_field", "a market order takes no price")
    if req.type == "market" and req.post_only:
        raise CrowdexError("invalid_field", "a market order cannot be post-only")
    return mc.PlaceOrder(req.instrument_id, req.side, req.type, req.price or 0, req.quantity,
                         req.time_in_force, req.post_only, req.self_trade_prevention,
                         req.client_order_id)


async def place_order(request: web.Request) -> web.Response:
    command = _command(await http.body(request, os_.PlaceOrderRequest))
    investor = http.require(request, "investor")
    return http.reply(request, await http.submit(request, command, investor))


async def cancel_order(request: web.Request) -> web.Response:
    order_id = http.path_id(request, "order_id")
    investor = http.require(request, "investor")
    return http.reply(request, await http.submit(request, mc.CancelOrder(order_id), investor))


async def amend_order(request: web.Request) -> web.Response:
    order_id = http.path_id(request, "order_id")
    req = await http.body(request, os_.AmendOrderRequest)
    investor = http.require(request, "investor")
    return http.reply(request, await http.submit(
        request, mc.AmendOrder(order_id, req.price, req.quantity), investor))


async def list_orders(request: web.Request) -> web.Response:
    status = request.query.get("status", "all")
    if status not in ("open", "all"):
        raise CrowdexError("invalid_field", "status must be open or all")
    account = http.require(request, "investor")
    orders = markets(request).account_orders(account.account_id, status == "open")
    return http.respond(request, 200, orders)


async def get_order(request: web.Request) -> web.Response:
    order_id = http.path_id(request, "order_id")
    account = http.require(request, "investor")
    order = markets(request).order(order_id, account.account_id)
    if order is None:
        raise CrowdexError("order_not_found", f"no order {order_id}")
    return http.respond(request, 200, order)


def _instrument(request: web.Request) -> int:
    instrument_id = http.path_id(request, "instrument_id")
    machine = request.app[keys.ENGINE].machine
    info = machine.component("offerings").instrument_info(instrument_id)
    if info is None or not info.tradable:
        raise CrowdexError("instrument_not_found", f"no instrument {instrument_id}")
    return instrument_id


async def book(request: web.Request) -> web.Response:
    depth = http.query_int(request, "depth", 10, 1, DEPTH_MAX)
    instrument_id = _instrument(request)
    return http.respond(request, 200, markets(request).book(instrument_id, depth))


async def trades(request: web.Request) -> web.Response:
    limit = http.query_int(request, "limit", 100, 1, TRADES_LIMIT_MAX)
    instrument_id = _instrument(request)
    return http.respond(request, 200, markets(request).trades(instrument_id, limit))


async def candles(request: web.Request) -> web.Response:
    interval = request.query.get("interval", "1m")
    if interval not in INTERVALS_US:
        raise CrowdexError("invalid_field", "interval must be 1m, 1h or 1d")
    limit = http.query_int(request, "limit", 100, 1, CANDLES_LIMIT_MAX)
    instrument_id = _instrument(request)
    return http.respond(request, 200, markets(request).candles(instrument_id, interval, limit))


async def run_auction(request: web.Request) -> web.Response:
    instrument_id = http.path_id(request, "instrument_id")
    operator = http.require(request, "operator")
    return http.reply(request, await http.submit(request, mc.RunAuction(instrument_id),
                                                 operator))


async def indicative(request: web.Request) -> web.Response:
    instrument_id = _instrument(request)
    body = markets(request).indicative(instrument_id) or {"price": 0, "quantity": 0}
    return http.respond(request, 200, {"instrument_id": instrument_id, **body})


# ---- WebSocket ----------------------------------------------------------------------------


def ws_order(request: web.Request, account: AccountInfo,
             message: dict) -> tuple[str, str, mc.PlaceOrder]:
    return ws_order_typed(request, account, http.convert(message, os_.WsPlaceOrder))


def ws_order_typed(request: web.Request, account: AccountInfo,
                   req: os_.WsPlaceOrder | os_.WsOrderOp) -> tuple[str, str, mc.PlaceOrder]:
    command = _command(req)
    if account.role != "investor":
        raise CrowdexError("forbidden", "only investors trade")
    return "order_ack", "order", command


def ws_cancel(request: web.Request, account: AccountInfo,
              message: dict) -> tuple[str, str, mc.CancelOrder]:
    order_id = message.get("order_id")
    if type(order_id) is not int:
        raise CrowdexError("invalid_field", "order_id must be a positive integer up to 2^53")
    return _cancel(order_id)


def ws_cancel_typed(request: web.Request, account: AccountInfo,
                    req: os_.WsCancelOp) -> tuple[str, str, mc.CancelOrder]:
    return _cancel(req.order_id)


def _cancel(order_id: int) -> tuple[str, str, mc.CancelOrder]:
    if not 0 < order_id <= MAX_SAFE:  # an id past 64 bits could not even be journaled
        raise CrowdexError("invalid_field", "order_id must be a positive integer up to 2^53")
    return "cancel_ack", "order", mc.CancelOrder(order_id)


def ws_amend(request: web.Request, account: AccountInfo,
             message: dict) -> tuple[str, str, mc.AmendOrder]:
    req = http.convert(message, os_.WsAmendOrder)
    if account.role != "investor":
        raise CrowdexError("forbidden", "only investors trade")
    return "amend_ack", "order", mc.AmendOrder(req.order_id, req.price, req.quantity)


def _book_channel(request: web.Request, instrument_id: int, account) -> tuple[int, dict]:
    info = request.app[keys.ENGINE].machine.component("offerings").instrument_info(instrument_id)
    if info is None or not info.tradable:
        raise CrowdexError("instrument_not_found", f"no instrument {instrument_id}")
    snapshot = markets(request).book(instrument_id, DEPTH_MAX)
    return snapshot["sequence"], snapshot


def _trades_channel(request: web.Request, instrument_id: int, account) -> tuple[None, list]:
    _book_channel(request, instrument_id, account)
    return None, markets(request).trades(instrument_id, TRADES_CHANNEL_FIRST)


def _orders_channel(request: web.Request, _ident: int, account) -> tuple[None, list]:
    return None, markets(request).account_orders(account.account_id, True)


CHANNELS = {
    "book": ChannelKind(_book_channel),
    "trades": ChannelKind(_trades_channel),
    "orders": ChannelKind(_orders_channel, private=True),
}
WS_OPS = {"order": ws_order, "cancel": ws_cancel, "amend": ws_amend}
# The commonest ops, also decoded straight from the frame (gateway/hub.py register_typed_op).
WS_TYPED_OPS = {os_.WsOrderOp: ws_order_typed, os_.WsCancelOp: ws_cancel_typed}

INSTRUMENT = "/v1/instruments/{instrument_id}"
ROUTES = [
    Route("POST", "/v1/orders", place_order, "Place an order", ("investor",),
          os_.PlaceOrderRequest, os_.Order, 201),
    Route("GET", "/v1/orders", list_orders, "Your orders (?status=open for resting ones)",
          ("investor",), None, list[os_.Order],
          query=(query_enum("status", ("open", "all"), "open: resting orders only "
                            "(partly filled included); all (the default): every order"),)),
    Route("GET", "/v1/orders/{order_id}", get_order, "One of your orders", ("investor",),
          None, os_.Order),
    Route("DELETE", "/v1/orders/{order_id}", cancel_order, "Cancel one of your open orders",
          ("investor",), None, os_.Order),
    Route("PATCH", "/v1/orders/{order_id}", amend_order,
          "Amend a resting order: a lower quantity keeps its place; a new price or a larger "
          "quantity re-enters it at the back of its level (it may trade at once)",
          ("investor",), os_.AmendOrderRequest, os_.Order),
    Route("GET", INSTRUMENT + "/book", book, "Aggregated order book, best first", (), None,
          os_.Book, query=(query_int("depth", 1, DEPTH_MAX, "Levels a side (default 10)"),)),
    Route("GET", INSTRUMENT + "/trades", trades, "Recent trades, newest first", (), None,
          list[os_.Trade],
          query=(query_int("limit", 1, TRADES_LIMIT_MAX, "At most this many (default 100)"),)),
    Route("GET", INSTRUMENT + "/candles", candles, "OHLCV candles, oldest first", (), None,
          list[os_.Candle],
          query=(query_enum("interval", list(INTERVALS_US), "Candle width (default 1m)"),
                 query_int("limit", 1, CANDLES_LIMIT_MAX, "The newest this many "
                           "(default 100)"))),
    Route("POST", INSTRUMENT + "/auction", run_auction,
          "Uncross an IP instrument's call auction", ("operator",), None, os_.AuctionResult),
    Route("GET", INSTRUMENT + "/auction", indicative,
          "Indicative uncross price and volume while orders rest", (), None, os_.Indicative),
]
