"""Nothing a client sends may cause a 5xx, a crash or a dropped connection handler.

Hypothesis throws junk at every route of the running app and at the WebSocket, against one
venue with real data (a trading instrument, resting orders, an open offering, funded investors,
an issuer and the operator), served on a real loopback socket for the whole module. After each
example: every refusal is API.md's error shape with a code from the venue's one table, the
server still answers ``/healthz``, and no error was logged (no traceback, no "Error handling
request"): a failing example shrinks to its reproducer.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import msgspec
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from yarl import URL

from engine.errors import STATUS_BY_CODE, status_allowed
from gateway import ws as ws_module
from gateway.app import all_routes, create_app
from gateway.routes import Route
from tests.boards.conftest import OPERATOR, manual_config
from tests.gateway.markets import PRICE, trading_venue

pytestmark = pytest.mark.asyncio(loop_scope="module")

SLOW = os.environ.get("CROWDEX_SLOW") == "1"  # pytest --slow
HTTP_EXAMPLES_PER_ROUTE = 150 if SLOW else 40
WS_EXAMPLES = 2000 if SLOW else 400
WS_REPLY_TIMEOUT_S = 2.0  # in-process replies take milliseconds; a silent socket fails fast
SNAKE_CASE = re.compile(r"[a-z][a-z0-9_]*\Z")
# Without PostgreSQL (the gateway tests run without one) settlement answers 503 `unavailable`:
# the server's configuration, not the request, and documented in gateway/routes/settlement.py.
NO_DATABASE_PREFIX = "/v1/settlement"
# aiohttp's HTTP parser refuses a longer request line (8190 bytes) itself, before the app: a
# plain-text 400 the app cannot shape. The fuzz stays within what reaches the app.
URL_LENGTH_MAX = 8000
WS_REPLY_TYPES = {"error", "pong", "subscribed", "unsubscribed", "authenticated",
                  "order_ack", "cancel_ack", "amend_ack"}


def _app_routes() -> list[tuple[str, str]]:
    """(method, path template) of every route the app registers, as its router lists them."""
    app = create_app(manual_config(Path("unused")))  # building the app starts nothing
    return sorted({(r.method, r.resource.canonical) for r in app.router.routes()})


ROUTES = _app_routes()


# ---- the venue --------------------------------------------------------------------------------


class ErrorLog(logging.Handler):
    """Every record at ERROR or above, or carrying a traceback, from any logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if (record.levelno >= logging.ERROR or record.exc_info
                or "Traceback" in text or "Error handling request" in text):
            self.records.append(record)

    def take(self) -> list[str]:
        """The records since the last call, formatted with their tracebacks."""
        taken, self.records = self.records, []
        return [logging.Formatter("%(name)s: %(message)s").format(r) for r in taken]


@dataclass
class FuzzVenue:
    client: Any  # aiohttp TestClient
    base: str
    errors: ErrorLog
    instrument_id: int
    keys: dict[str, str]  # who -> API key
    ids: list[int]  # every real id worth aiming at
    in_example: bool = False  # an example started and has not passed yet


def _key(who: dict) -> str:
    return who["headers"]["Authorization"].split(" ", 1)[1]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fuzz_venue(tmp_path_factory):
    errors = ErrorLog()
    logging.getLogger().addHandler(errors)
    try:
        async with trading_venue(tmp_path_factory.mktemp("fuzz")) as (venue, inst, sellers,
                                                                      buyer):
            issuer = await venue.issuer(cash=1_000_00)
            offering = await venue.listed(issuer, "equity", {
                "price": PRICE, "min_quantity": 10, "max_quantity": 100_000,
                "lockup_days": 0}, 30)
            _, sub = await venue.subscribe(buyer, offering, 10)
            _, order = await venue.call("POST", "/v1/orders", sellers[0], {
                "instrument_id": inst, "side": "sell", "type": "limit", "price": 12_00,
                "quantity": 5}, expect=201)
            server = venue.client.server
            fuzz = FuzzVenue(
                client=venue.client, base=f"http://{server.host}:{server.port}", errors=errors,
                instrument_id=inst,
                keys={"seller": _key(sellers[0]), "buyer": _key(buyer), "issuer": _key(issuer),
                      "operator": OPERATOR["Authorization"].split(" ", 1)[1]},
                ids=sorted({inst, offering, sub["subscription_id"], order["order_id"],
                            buyer["account_id"], issuer["account_id"]}))
            assert errors.take() == []
            live = {(r.method, r.resource.canonical) for r in server.app.router.routes()}
            assert live == set(ROUTES)
            yield fuzz
    finally:
        logging.getLogger().removeHandler(errors)
    assert errors.take() == [], "errors were logged while the venue shut down"


def begin_example(fuzz: FuzzVenue) -> None:
    """What a failed example logged was reported with it; anything logged after an example
    that passed belongs to that one and fails now."""
    stale = fuzz.errors.take()
    assert fuzz.in_example or not stale, "logged after the last example:\n" + "\n".join(stale)
    fuzz.in_example = True


def assert_nothing_logged(fuzz: FuzzVenue) -> None:
    logged = fuzz.errors.take()
    assert not logged, "the server logged errors:\n" + "\n".join(logged)


async def assert_still_healthy(fuzz: FuzzVenue) -> None:
    """The example passes: nothing logged and ``/healthz`` still answers."""
    assert_nothing_logged(fuzz)
    async with fuzz.client.session.get(fuzz.base + "/healthz") as response:
        assert response.status == 200, await response.text()
        assert await response.json() == {"status": "ok"}
    assert_nothing_logged(fuzz)
    fuzz.in_example = False


def assert_error_shape(body: Any, status: int) -> str:
    """API.md: ``{"error": {"code": "<snake_case>", "message": "<human text>"}}``; the code is
    one of the venue's table and maps to the status it came with."""
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict) and set(error) == {"code", "message"}, body
    code, message = error["code"], error["message"]
    assert isinstance(code, str) and SNAKE_CASE.match(code), body
    assert isinstance(message, str) and message.strip(), body
    assert status_allowed(code, status), f"{code} came with {status}: {body}"
    return code


# ---- junk --------------------------------------------------------------------------------------

HUGE_INTS = [2**31, 2**53, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**100, -(2**63),
             -(2**64), -(2**100)]
BOUNDARY_INTS = st.sampled_from([0, 1, -1, 2, 100, 10_00, *HUGE_INTS]) | st.integers()
# Integers msgpack can carry (int64 or uint64).
MSGPACK_INTS = st.integers(min_value=-(2**63), max_value=2**64 - 1)

ID_TEXTS = ["0", "-1", "00", "007", "1e3", "0x10", "1.0", "+1", " 1", "1 ", "１", "²", "①",
            "١٢", "٣", "𝟙", "9" * 16, "9" * 17, "9" * 4301, "NaN", "null", "true", "[]",
            "%", "..", "%00", "\x00", "a/b", "\u202e1", "😀"]
QUERY_NAMES = ["depth", "limit", "interval", "status", "board", "month", "instrument_id",
               "format", "since", "cursor"]
QUERY_VALUES = ["", "0", "-1", "1", "10", "1000", "1001", "1m", "1h", "1d", "1y", "open", "all",
                "equity", "debt", "ip", "product", "2026-01", "2026-13", "0000-01", "99999-01",
                "１０", "²", "①", "١٢", "9" * 4301, "1.5", "true", "[]", "\x00", "😀"]


def junk_values(ints: st.SearchStrategy[int] = BOUNDARY_INTS) -> st.SearchStrategy[Any]:
    scalars = (st.none() | st.booleans() | ints | st.floats() | st.text(max_size=20)
               | st.sampled_from(["", "buy", "sell", "limit", "market", "0", "1", "1e309"]))
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                        max_leaves=12)


JUNK = junk_values()

# Plausible values per body field, so some requests get past validation into the engine with
# their worst-case numbers.
PLAUSIBLE: dict[str, list[Any]] = {
    "instrument_id": [1, 999, 2**53], "side": ["buy", "sell"], "type": ["limit", "market"],
    "price": [1, PRICE, 5 * PRICE, 5 * PRICE + 1, 2**53], "quantity": [1, 5, 300, 2**53],
    "time_in_force": ["gtc", "ioc", "fok"], "post_only": [True, False],
    "client_order_id": ["c", "x" * 64, "x" * 65],
    "self_trade_prevention": ["cancel_newest", "cancel_oldest", "cancel_both", "decrement"],
    "amount": [1, 10_00, 2**53], "reference": ["r", "ref-1", "x" * 128, "x" * 129],
    "role": ["investor", "issuer", "operator"], "name": ["n", "x" * 200, "x" * 201],
    "investor_class": ["retail", "qualified", "institutional"],
    "annual_income": [0, 2**53], "net_worth": [0, 2**53],
    "advance_seconds": [1, 86_400, 100 * 365 * 86_400],
    "board": ["equity", "debt", "ip", "product", "nope"],
    "title": ["t"], "description": ["d"], "body": ["b"], "note": ["n"],
    "deadline": ["2026-02-01T00:00:00Z", "2026-02-01", "2026-02-01T00:00:00",
                 "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"],
    "terms": [{"price": PRICE, "min_quantity": 1, "max_quantity": 10, "lockup_days": 0},
              {"price": 2**53, "min_quantity": 2**53, "max_quantity": 2**53},
              {"goal": 1, "tiers": [{"tier_id": "a", "price": 1, "quantity": None}]}],
    "rate_bps": [1, 100_000], "tier_id": ["a", 1], "delivered": [True, False],
}


@st.composite
def shaped_body(draw, schema: type | None) -> dict:
    """A body with the route's own field names (plus extras), each value plausible or junk."""
    names = [f.name for f in msgspec.structs.fields(schema)] if schema else []
    body = {}
    for name in names:
        choice = draw(st.integers(0, 5))
        if choice == 0:
            continue  # missing
        if choice == 1:
            body[name] = draw(JUNK)
        else:
            body[name] = draw(st.sampled_from(PLAUSIBLE.get(name, [None])))
    body.update(draw(st.dictionaries(st.text(max_size=8), JUNK, max_size=2)))
    return body


@st.composite
def encoded_body(draw, schema: type | None) -> tuple[bytes | None, str | None]:
    """(raw body, Content-Type) of some junk, JSON, msgpack or neither."""
    kind = draw(st.sampled_from(["none", "empty", "bytes", "json", "shaped", "shaped",
                                 "msgpack", "oversized"]))
    content_type = draw(st.sampled_from(["application/json", "application/msgpack", None,
                                         "text/plain", "application/json; charset=utf-8",
                                         "multipart/form-data", "x/y;;="]))
    if kind == "none":
        return None, content_type
    if kind == "empty":
        return b"", content_type
    if kind == "bytes":
        return draw(st.binary(max_size=64)), content_type
    if kind == "oversized":
        return b'{"x": "' + b"a" * (64 * 1024) + b'"}', content_type
    value = draw(shaped_body(schema)) if kind == "shaped" else draw(JUNK)
    if kind == "msgpack" or (content_type == "application/msgpack" and draw(st.booleans())):
        try:
            return msgspec.msgpack.encode(value), "application/msgpack"
        except (OverflowError, TypeError):
            pass  # an int past uint64: msgpack cannot carry it, JSON can
    return msgspec.json.encode(value), content_type


def path_values(ids: list[int]) -> st.SearchStrategy[str]:
    return (st.sampled_from([str(i) for i in ids]) | st.sampled_from(ID_TEXTS)
            | BOUNDARY_INTS.map(str) | st.text(min_size=1, max_size=12))


@st.composite
def query_string(draw) -> str:
    pairs = draw(st.lists(st.tuples(st.sampled_from(QUERY_NAMES) | st.text(max_size=6),
                                    st.sampled_from(QUERY_VALUES) | st.text(max_size=8)),
                          max_size=3))
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)


HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=40)


def auth_headers(keys: dict[str, str]) -> st.SearchStrategy[str | None]:
    """An Authorization header: none, a real key of each role, or garbage."""
    real = [f"Bearer {k}" for k in keys.values()]
    garbage = ["", "Bearer", "Bearer ", "Bearer nope", "bearer nope", "Basic dXNlcjpwYXNz",
               "Bearer  " + keys["buyer"], "Token " + keys["buyer"], "Bearer " + "x" * 4000]
    return (st.none() | st.sampled_from(real) | st.sampled_from(garbage)
            | HEADER_TEXT | HEADER_TEXT.map("Bearer ".__add__))


# ---- HTTP --------------------------------------------------------------------------------------


def fill_path(template: str, values: list[str]) -> str:
    parts = re.split(r"\{[^}]+\}", template)
    out = parts[0]
    for value, rest in zip(values, parts[1:], strict=True):
        out += quote(value, safe="") + rest
    return out


@pytest.mark.parametrize(("method", "template"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
@settings(max_examples=HTTP_EXAMPLES_PER_ROUTE, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
async def test_http_junk_gets_a_coded_4xx_never_a_5xx(fuzz_venue, method, template, data):
    fuzz = fuzz_venue
    begin_example(fuzz)
    schema = next((r.request for r in _routes_by_key().get((method, template), [])), None)
    holes = template.count("{")
    verb = data.draw(st.sampled_from([method] * 4 + ["GET", "POST", "DELETE", "PUT", "PATCH"]),
                     "method")
    values = data.draw(st.lists(path_values(fuzz.ids), min_size=holes, max_size=holes), "ids")
    query = data.draw(st.none() | query_string(), "query")
    raw, content_type = data.draw(encoded_body(schema), "body")
    headers = {}
    for name, strategy in (
            ("Authorization", auth_headers(fuzz.keys)),
            ("Accept", st.sampled_from([None, "application/json", "application/msgpack", "*/*"])),
            ("Content-Type", st.just(content_type if raw is not None else None)),
            ("Idempotency-Key", st.none() | st.none() | HEADER_TEXT | st.just("k" * 256))):
        value = data.draw(strategy, name)
        if value is not None:
            headers[name] = value
    path = fill_path(template, values)
    target = path + ("?" + query if query is not None else "")
    assume(len(target) <= URL_LENGTH_MAX)
    url = URL(fuzz.base + target, encoded=True)
    async with fuzz.client.session.request(verb, url, data=raw, headers=headers,
                                           skip_auto_headers=["Content-Type"]) as response:
        payload = await response.read()
        status, reply_type = response.status, response.content_type
    described = f"{verb} {url} {headers} {raw[:200] if raw else raw!r} -> {status}"
    assert_nothing_logged(fuzz)
    allowed_503 = status == 503 and path.startswith(NO_DATABASE_PREFIX)
    assert status < 500 or allowed_503, described + f" {payload[:500]!r}"
    if status >= 400 and verb != "HEAD":
        decoded = (msgspec.msgpack.decode(payload) if reply_type == "application/msgpack"
                   else msgspec.json.decode(payload))
        code = assert_error_shape(decoded, status)
        assert not allowed_503 or code == "unavailable", described
    await assert_still_healthy(fuzz)


def _routes_by_key() -> dict[tuple[str, str], list[Route]]:
    table: dict[tuple[str, str], list[Route]] = {}
    for route in all_routes():
        table.setdefault((route.method, route.path), []).append(route)
    return table


# ---- WebSocket ---------------------------------------------------------------------------------


def ws_messages(fuzz: FuzzVenue) -> st.SearchStrategy[tuple[str, Any]]:
    """(frame kind, payload): text junk, JSON of anything, msgpack frames, and ops with
    plausible or junk fields."""
    inst = fuzz.instrument_id
    request_ids = st.none() | BOUNDARY_INTS | st.text(max_size=8) | JUNK
    channels = (st.sampled_from([f"book:{inst}", f"trades:{inst}", "orders", "project:1",
                                 f"project:{fuzz.ids[0]}", "book:0", "book:-1", "book:²",
                                 "book:①", "book:" + "9" * 17, "book:", "book", ":", "orders:1",
                                 "candles:1", "trades:١٢", ""])
                | st.text(max_size=12))
    order_ids = (st.sampled_from(fuzz.ids) | st.sampled_from([0, -1, *HUGE_INTS])
                 | BOUNDARY_INTS | JUNK)
    order_fields = st.fixed_dictionaries({}, optional={
        name: st.sampled_from(PLAUSIBLE[name]) | JUNK
        for name in ("instrument_id", "side", "type", "price", "quantity", "time_in_force",
                     "post_only", "client_order_id", "self_trade_prevention")})
    ops = st.one_of(
        st.builds(lambda rid, f: {"op": "order", "request_id": rid, "instrument_id": inst,
                                  **f}, request_ids, order_fields),
        # Ids at and past every integer width too, not only inside junk: a cancel of an id
        # past 64 bits once stopped the engine (the journal could not encode it).
        st.builds(lambda rid, oid: {"op": "cancel", "request_id": rid, "order_id": oid},
                  request_ids, order_ids),
        st.builds(lambda rid, oid, f: {"op": "amend", "request_id": rid, "order_id": oid, **f},
                  request_ids, order_ids,
                  st.fixed_dictionaries({}, optional={
                      name: st.sampled_from(PLAUSIBLE[name]) | BOUNDARY_INTS | JUNK
                      for name in ("price", "quantity")})),
        st.builds(lambda rid, chs: {"op": "subscribe", "request_id": rid, "channels": chs},
                  request_ids, st.lists(channels, max_size=3) | JUNK),
        st.builds(lambda chs: {"op": "unsubscribe", "channels": chs},
                  st.lists(channels, max_size=3) | JUNK),
        st.builds(lambda op, rid, extra: {"op": op, "request_id": rid, **extra},
                  JUNK | st.sampled_from(["ping", "dance", "ORDER", ""]), request_ids,
                  st.dictionaries(st.text(max_size=6), JUNK, max_size=3)),
        st.builds(lambda key: {"op": "auth", "api_key": key},
                  st.sampled_from(list(fuzz.keys.values())) | JUNK),
    )
    msgpack_junk = junk_values(MSGPACK_INTS)
    msgpack_values = st.one_of(
        msgpack_junk, ops.filter(_msgpack_safe),
        st.builds(lambda code, data: {"op": "ping", "request_id": msgspec.msgpack.Ext(code,
                                                                                    data)},
                  st.integers(0, 127), st.binary(max_size=4)),
        st.dictionaries(st.tuples(MSGPACK_INTS, MSGPACK_INTS), msgpack_junk, max_size=2))
    return st.one_of(
        st.tuples(st.just("text"), st.text(max_size=40)),
        st.tuples(st.just("text"), JUNK.map(lambda v: msgspec.json.encode(v).decode())),
        st.tuples(st.just("text"), ops.map(lambda v: msgspec.json.encode(v).decode())),
        st.tuples(st.just("binary"), st.binary(max_size=40)),
        st.tuples(st.just("binary"), msgpack_values.map(msgspec.msgpack.encode)),
    )


def _msgpack_safe(value: Any) -> bool:
    try:
        msgspec.msgpack.encode(value)
    except (OverflowError, TypeError):
        return False
    return True


def is_failed_auth(message: Any, keys: dict[str, str]) -> bool:
    return (isinstance(message, dict) and message.get("op") == "auth"
            and message.get("api_key") not in keys.values())


def decoded_message(kind: str, payload: Any) -> Any:
    try:
        if kind == "binary":
            return msgspec.msgpack.decode(payload)
        return msgspec.json.decode(payload)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None


def assert_ws_reply(reply: Any) -> None:
    """API.md's server messages: channel updates, acks, and coded errors."""
    assert isinstance(reply, dict), reply
    if "channel" in reply:
        assert set(reply) == {"channel", "type", "sequence", "data"}, reply
        assert reply["type"] in ("snapshot", "update"), reply
        return
    assert reply.get("type") in WS_REPLY_TYPES, reply
    if reply["type"] == "error":
        assert set(reply) == {"type", "request_id", "code", "message"}, reply
        code = reply["code"]
        assert isinstance(code, str) and SNAKE_CASE.match(code) and code in STATUS_BY_CODE, reply
        assert isinstance(reply["message"], str) and reply["message"], reply


async def receive(ws, binary: bool) -> Any:
    """The next reply, or the close message."""
    msg = await ws.receive(timeout=WS_REPLY_TIMEOUT_S)
    if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
        return msg
    assert msg.type == (aiohttp.WSMsgType.BINARY if binary else aiohttp.WSMsgType.TEXT), msg
    return msgspec.msgpack.decode(msg.data) if binary else msgspec.json.decode(msg.data)


async def ping_until_pong(ws, binary: bool, tag: str) -> list[Any]:
    """Send a ping; every reply before its pong is returned. The socket must stay open."""
    ping = {"op": "ping", "request_id": tag}
    await (ws.send_bytes(msgspec.msgpack.encode(ping)) if binary else ws.send_json(ping))
    replies = []
    while True:
        reply = await receive(ws, binary)
        assert not isinstance(reply, aiohttp.WSMessage), f"socket closed: {reply}"
        if reply == {"type": "pong", "request_id": tag}:
            return replies
        assert_ws_reply(reply)
        replies.append(reply)


@settings(max_examples=WS_EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
async def test_ws_junk_gets_coded_errors_and_the_socket_stays_open(fuzz_venue, data):
    fuzz = fuzz_venue
    begin_example(fuzz)
    auth = data.draw(st.sampled_from([None, "header", "message"]), "auth")
    binary = data.draw(st.booleans(), "binary")
    messages = data.draw(st.lists(ws_messages(fuzz), min_size=1, max_size=5), "messages")
    headers = {"Authorization": f"Bearer {fuzz.keys['seller']}"} if auth == "header" else {}
    url = "/v1/ws" + ("?format=msgpack" if binary else "")
    async with fuzz.client.ws_connect(url, headers=headers) as ws:
        if auth == "message":
            await ws.send_json({"op": "auth", "api_key": fuzz.keys["buyer"]})
            assert (await receive(ws, binary))["type"] == "authenticated"
        for n, (kind, payload) in enumerate(messages):
            await (ws.send_bytes(payload) if kind == "binary" else ws.send_str(payload))
            message = decoded_message(kind, payload)
            if is_failed_auth(message, fuzz.keys):
                # API.md: a bad key in the auth message is an `unauthorized` error, then the
                # socket closes (ws.py: CLOSE_UNAUTHORIZED).
                replies = []
                while not isinstance(reply := await receive(ws, binary), aiohttp.WSMessage):
                    assert_ws_reply(reply)
                    replies.append(reply)
                assert reply.data == ws_module.CLOSE_UNAUTHORIZED, reply
                assert {"type": "error", "request_id": message.get("request_id"),
                        "code": "unauthorized",
                        "message": "api_key must be a string" if not isinstance(
                            message["api_key"], str) else "unknown API key"} in replies
                break
            replies = await ping_until_pong(ws, binary, f"fuzz-{n}")
            if not isinstance(message, dict):
                # Undecodable or not an object: an error with no request id to echo. (Earlier
                # orders and cancels may be answered in this window too: the engine acks them
                # later, a ping at once.)
                assert any(r["type"] == "error" and r["request_id"] is None
                           and r["code"] in ("invalid_json", "invalid_field")
                           for r in replies), replies
    await assert_still_healthy(fuzz)


async def test_ws_message_size_limit_is_enforced_with_close_1009(fuzz_venue):
    """ws.py caps a message at MESSAGE_SIZE_MAX (64 KiB, like API.md's HTTP bodies): one of
    exactly that size is still read; one byte more and the socket closes with 1009 (message
    too big, RFC 6455)."""
    fuzz = fuzz_venue
    begin_example(fuzz)
    limit = ws_module.MESSAGE_SIZE_MAX
    async with fuzz.client.ws_connect("/v1/ws") as ws:
        await ws.send_str("x" * limit)
        reply = await receive(ws, False)
        assert not isinstance(reply, aiohttp.WSMessage), reply
        assert reply["type"] == "error" and reply["code"] == "invalid_json", reply
        await ping_until_pong(ws, False, "at-the-cap")
        await ws.send_str("x" * (limit + 1))
        closed = await receive(ws, False)
        assert isinstance(closed, aiohttp.WSMessage), closed
        assert closed.type == aiohttp.WSMsgType.CLOSE, closed
        assert closed.data == aiohttp.WSCloseCode.MESSAGE_TOO_BIG, closed
    await assert_still_healthy(fuzz)


@pytest.mark.parametrize("request_bytes", [
    b"GET /v1/orders/" + b"7" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",  # line past aiohttp's cap
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",  # a header that is not one
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"h" * 9000 + b"\r\n\r\n",
], ids=["long-request-line", "malformed-header", "long-header"])
async def test_requests_the_http_parser_refuses_are_a_400_and_no_traceback(fuzz_venue,
                                                                          request_bytes, caplog):
    """aiohttp answers these itself, before the app (a plain 400, no API error body), and
    logs each at ERROR with a traceback; ``app.ClientHttpErrors`` makes that one WARNING line,
    so junk cannot fill the log with tracebacks (the fuzz above stays below these limits)."""
    import asyncio

    fuzz = fuzz_venue
    begin_example(fuzz)
    server = fuzz.client.server
    caplog.set_level(logging.WARNING, logger="aiohttp.server")
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(request_bytes)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()
    assert re.match(rb"HTTP/1\.[01] 400 ", status_line), status_line
    warned = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert [r.levelname for r in warned] == ["WARNING"], warned
    assert warned[0].exc_info is None and "400" in warned[0].getMessage(), warned[0].getMessage()
    await assert_still_healthy(fuzz)
