"""Accounts and money over HTTP: the happy paths and every kind of bad input."""

from __future__ import annotations

import re

import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer

from engine.clock import TIME_US_MAX, parse_time_us
from engine.machine import CASH_TOTAL_MAX
from gateway.app import create_app
from tests.boards.conftest import manual_config
from tests.gateway.conftest import OPERATOR, deposit, new_account

CENTURY_S = 100 * 365 * 86_400  # the longest advance_seconds the schema allows


async def error_of(response) -> tuple[int, str]:
    body = await response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert body["error"]["message"]
    return response.status, body["error"]["code"]


async def test_create_account_deposit_withdraw_me(client):
    investor = await new_account(client, investor_class="qualified", annual_income=10_000_00)
    assert investor["role"] == "investor" and investor["account_id"] > 0
    assert investor["api_key"].startswith("cdx_")
    assert await deposit(client, investor["account_id"], 5_000_00, "bank-1") == {
        "account_id": investor["account_id"], "cash_available": 5_000_00}
    response = await client.post("/v1/me/withdrawals", json={"amount": 1_000_00,
                                 "reference": "w-1"}, headers=investor["headers"])
    assert response.status == 201
    assert await response.json() == {"cash_available": 4_000_00}
    me = await (await client.get("/v1/me", headers=investor["headers"])).json()
    assert me == {
        "account_id": investor["account_id"], "role": "investor", "name": "a investor",
        "investor_class": "qualified", "cash_available": 4_000_00, "cash_reserved": 0,
        "cash_withdrawable": 4_000_00, "holdings": [],
    }


async def test_deposit_reference_dedupes(client):
    investor = await new_account(client)
    first = await deposit(client, investor["account_id"], 100, "ref-a")
    await deposit(client, investor["account_id"], 50, "ref-b")
    # The retry returns the FIRST result, even though the balance moved since.
    assert await deposit(client, investor["account_id"], 100, "ref-a") == first
    response = await client.post(f"/v1/accounts/{investor['account_id']}/deposits",
                                 json={"amount": 101, "reference": "ref-a"}, headers=OPERATOR)
    assert await error_of(response) == (409, "reference_conflict")
    me = await (await client.get("/v1/me", headers=investor["headers"])).json()
    assert me["cash_available"] == 150


async def test_withdrawal_reference_dedupes_and_refusals_do_not_consume_it(client):
    investor = await new_account(client)
    h = investor["headers"]
    body = {"amount": 70, "reference": "w"}
    response = await client.post("/v1/me/withdrawals", json=body, headers=h)
    assert await error_of(response) == (422, "insufficient_funds")
    await deposit(client, investor["account_id"], 100, "d")
    first = await client.post("/v1/me/withdrawals", json=body, headers=h)
    assert first.status == 201 and await first.json() == {"cash_available": 30}
    again = await client.post("/v1/me/withdrawals", json=body, headers=h)
    assert again.status == 201 and await again.json() == {"cash_available": 30}
    other = await client.post("/v1/me/withdrawals", json={"amount": 71, "reference": "w"},
                              headers=h)
    assert await error_of(other) == (409, "reference_conflict")


async def test_same_reference_on_two_accounts_is_two_deposits(client):
    a = await new_account(client)
    b = await new_account(client)
    await deposit(client, a["account_id"], 10, "same")
    assert (await deposit(client, b["account_id"], 10, "same"))["cash_available"] == 10


async def test_idempotency_key_replays_first_response_byte_for_byte(client):
    investor = await new_account(client)
    headers = {**OPERATOR, "Idempotency-Key": "k1"}
    url = f"/v1/accounts/{investor['account_id']}/deposits"
    first = await client.post(url, data=b'{"amount": 5, "reference": "x"}', headers=headers)
    raw = await first.read()
    await deposit(client, investor["account_id"], 7, "y")
    second = await client.post(url, data=b'{"amount": 5, "reference": "x"}', headers=headers)
    assert second.status == first.status == 201
    assert await second.read() == raw
    conflict = await client.post(url, json={"amount": 6, "reference": "z"}, headers=headers)
    assert await error_of(conflict) == (409, "idempotency_key_conflict")


async def test_idempotent_account_creation_returns_the_same_working_key(client):
    headers = {**OPERATOR, "Idempotency-Key": "acct-1"}
    body = {"role": "issuer", "name": "Issuer Ltd"}
    first = await (await client.post("/v1/accounts", json=body, headers=headers)).json()
    second = await (await client.post("/v1/accounts", json=body, headers=headers)).json()
    assert first == second
    me = await client.get("/v1/me", headers={"Authorization": f"Bearer {first['api_key']}"})
    assert (await me.json())["account_id"] == first["account_id"]


async def test_msgpack_request_and_response(client):
    investor = await new_account(client)
    response = await client.post(
        f"/v1/accounts/{investor['account_id']}/deposits",
        data=msgspec.msgpack.encode({"amount": 9, "reference": "mp"}),
        headers={**OPERATOR, "Content-Type": "application/msgpack",
                 "Accept": "application/msgpack"})
    assert response.status == 201
    assert response.content_type == "application/msgpack"
    assert msgspec.msgpack.decode(await response.read()) == {
        "account_id": investor["account_id"], "cash_available": 9}


BAD_BODIES = [
    (b"{", "invalid_json"),
    (b"", "invalid_json"),
    (b"[]", "invalid_field"),
    (b'"x"', "invalid_field"),
    (b'{"amount": 100.0, "reference": "r"}', "invalid_field"),
    (b'{"amount": "100", "reference": "r"}', "invalid_field"),
    (b'{"amount": true, "reference": "r"}', "invalid_field"),
    (b'{"amount": null, "reference": "r"}', "invalid_field"),
    (b'{"amount": 0, "reference": "r"}', "invalid_field"),
    (b'{"amount": -5, "reference": "r"}', "invalid_field"),
    (b'{"amount": 9007199254740993, "reference": "r"}', "invalid_field"),
    (b'{"amount": 99999999999999999999999999, "reference": "r"}', "invalid_field"),
    (b'{"amount": 5}', "missing_field"),
    (b'{"reference": "r"}', "missing_field"),
    (b'{"amount": 5, "reference": ""}', "invalid_field"),
    (b'{"amount": 5, "reference": 7}', "invalid_field"),
    (b'{"amount": 5, "reference": "r", "extra": 1}', "unknown_field"),
    # Syntax before schema (issue 15 #7): broken text that starts like a field the schema
    # refuses, or lacks, is still malformed JSON.
    (b'{"a": 1,}', "invalid_json"),
    (b'[1, 2', "invalid_json"),
    (b'{"amount": }', "invalid_json"),
    (b'{"amount": 1} trailing', "invalid_json"),
    (b'{"amount": 5, "reference": "r"} x', "invalid_json"),
    (b'{"amount": 1.5, "reference": "r"', "invalid_json"),
    (b'{"amount": 5, "reference": "r", "extra": 1', "invalid_json"),
]


@pytest.mark.parametrize(("raw", "code"), BAD_BODIES)
async def test_deposit_bad_bodies(client, raw, code):
    investor = await new_account(client)
    response = await client.post(f"/v1/accounts/{investor['account_id']}/deposits", data=raw,
                                 headers={**OPERATOR, "Content-Type": "application/json"})
    assert await error_of(response) == (400, code)


@pytest.mark.parametrize(("raw", "code"), BAD_BODIES)
async def test_withdrawal_bad_bodies(client, raw, code):
    investor = await new_account(client)
    response = await client.post("/v1/me/withdrawals", data=raw,
                                 headers={**investor["headers"],
                                          "Content-Type": "application/json"})
    assert await error_of(response) == (400, code)


@pytest.mark.parametrize(("raw", "message"), [
    (msgspec.msgpack.encode({"amount": 1.5, "reference": "r"}) + b"\xc1", "could not be decoded"),
    (msgspec.msgpack.encode({"amount": 1.5, "reference": "r"}), "Expected `int`"),
])
async def test_msgpack_syntax_is_judged_before_the_schema(client, raw, message):
    investor = await new_account(client)
    response = await client.post("/v1/me/withdrawals", data=raw,
                                 headers={**investor["headers"],
                                          "Content-Type": "application/msgpack"})
    assert response.status == 400
    assert message in (await response.json())["error"]["message"]


@pytest.mark.parametrize(("body", "code"), [
    ({"name": "x"}, "missing_field"),
    ({"role": "investor"}, "missing_field"),
    ({"role": "admin", "name": "x"}, "invalid_field"),
    ({"role": "fee", "name": "x"}, "invalid_field"),
    ({"role": "investor", "name": ""}, "invalid_field"),
    ({"role": "investor", "name": None}, "invalid_field"),
    ({"role": "investor", "name": "x", "investor_class": "vip"}, "invalid_field"),
    ({"role": "investor", "name": "x", "annual_income": -1}, "invalid_field"),
    ({"role": "investor", "name": "x", "net_worth": 1.5}, "invalid_field"),
    ({"role": "investor", "name": "x", "api_key": "mine"}, "unknown_field"),
])
async def test_create_account_bad_bodies(client, body, code):
    response = await client.post("/v1/accounts", json=body, headers=OPERATOR)
    assert await error_of(response) == (400, code)


async def test_validation_comes_before_authentication(client):
    response = await client.post("/v1/accounts", data=b"{", headers={
        "Content-Type": "application/json"})
    assert await error_of(response) == (400, "invalid_json")


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"},
    {"Authorization": "Bearer "},
])
@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/v1/accounts", {"role": "investor", "name": "x"}),
    ("POST", "/v1/accounts/3/deposits", {"amount": 1, "reference": "r"}),
    ("POST", "/v1/me/withdrawals", {"amount": 1, "reference": "r"}),
    ("GET", "/v1/me", None),
    ("POST", "/v1/admin/clock", {"advance_seconds": 1}),
])
async def test_no_or_bad_key_is_401(client, headers, method, path, body):
    response = await client.request(method, path, json=body, headers=headers)
    assert await error_of(response) == (401, "unauthorized")


async def test_roles_are_enforced(client):
    investor = await new_account(client)
    issuer = await new_account(client, role="issuer")
    for who in (investor, issuer):
        response = await client.post("/v1/accounts", json={"role": "investor", "name": "x"},
                                     headers=who["headers"])
        assert await error_of(response) == (403, "forbidden")
        response = await client.post(f"/v1/accounts/{who['account_id']}/deposits",
                                     json={"amount": 1, "reference": "r"},
                                     headers=who["headers"])
        assert await error_of(response) == (403, "forbidden")
    response = await client.post("/v1/me/withdrawals", json={"amount": 1, "reference": "r"},
                                 headers=OPERATOR)
    assert await error_of(response) == (403, "forbidden")


@pytest.mark.parametrize(("path", "status", "code"), [
    ("/v1/accounts/999/deposits", 404, "account_not_found"),
    ("/v1/accounts/1/deposits", 404, "account_not_found"),  # the venue's fee account
    ("/v1/accounts/0/deposits", 400, "invalid_field"),
    ("/v1/accounts/-1/deposits", 400, "invalid_field"),
    ("/v1/accounts/abc/deposits", 400, "invalid_field"),
    ("/v1/accounts/99999999999999999999/deposits", 400, "invalid_field"),
    # Unicode digits: "²".isdigit() is true but int("²") fails (it was a 500); "１" is no id.
    ("/v1/accounts/²/deposits", 400, "invalid_field"),
    ("/v1/accounts/①/deposits", 400, "invalid_field"),
    ("/v1/accounts/１/deposits", 400, "invalid_field"),
])
async def test_deposit_to_bad_account(client, path, status, code):
    response = await client.post(path, json={"amount": 1, "reference": "r"}, headers=OPERATOR)
    assert await error_of(response) == (status, code)


async def test_msgpack_body_with_a_bad_utf8_string_is_400(client):
    """msgspec raises UnicodeDecodeError, not DecodeError, for it (it was a 500)."""
    investor = await new_account(client)
    raw = b"\x82\xa6amount\x01\xa9reference\xa4\x00\x00\x00\x80"
    response = await client.post(f"/v1/accounts/{investor['account_id']}/deposits", data=raw,
                                 headers={**OPERATOR, "Content-Type": "application/msgpack"})
    assert await error_of(response) == (400, "invalid_field")


async def test_deposits_stop_at_the_venue_cash_limit(client):
    """1024 deposits of 2^53 fen used to wrap the int64 balance negative."""
    investors = [await new_account(client) for _ in range(2)]
    await deposit(client, investors[0]["account_id"], CASH_TOTAL_MAX - 1, "big")
    for who, reference in ((investors[0], "one-more"), (investors[1], "elsewhere")):
        response = await client.post(f"/v1/accounts/{who['account_id']}/deposits",
                                     json={"amount": 2, "reference": reference},
                                     headers=OPERATOR)
        assert await error_of(response) == (422, "limit_exceeded")
    assert await deposit(client, investors[1]["account_id"], 1, "last-fen") == {
        "account_id": investors[1]["account_id"], "cash_available": 1}


async def test_unknown_route_and_method(client):
    assert await error_of(await client.get("/v1/nothing")) == (404, "not_found")
    assert await error_of(await client.delete("/v1/me")) == (405, "method_not_allowed")


async def test_oversized_body_is_413(client):
    raw = b'{"role": "investor", "name": "' + b"x" * 70_000 + b'"}'
    response = await client.post("/v1/accounts", data=raw, headers=OPERATOR)
    assert await error_of(response) == (413, "payload_too_large")


async def test_clock_is_refused_on_the_wall_clock(client):
    response = await client.post("/v1/admin/clock", json={"advance_seconds": 60},
                                 headers=OPERATOR)
    assert await error_of(response) == (409, "clock_not_manual")


@pytest.mark.parametrize("body", [{"advance_seconds": 0}, {"advance_seconds": -1},
                                  {"advance_seconds": 1.5}, {}, {"advance_seconds": "1"}])
async def test_clock_bad_bodies(client, body):
    status, _ = await error_of(await client.post("/v1/admin/clock", json=body,
                                                 headers=OPERATOR))
    assert status == 400


async def test_clock_stops_short_of_the_last_formattable_year(tmp_path):
    """Advancing past year 9999 was journaled, then every time on the venue was a 500."""
    async with TestClient(TestServer(create_app(manual_config(tmp_path / "data")))) as c:
        last = None
        for _ in range(100):
            response = await c.post("/v1/admin/clock", json={"advance_seconds": CENTURY_S},
                                    headers=OPERATOR)
            if response.status != 200:
                break
            last = (await response.json())["now"]
        assert await error_of(response) == (400, "invalid_field")
        assert last is not None and parse_time_us(last) <= TIME_US_MAX
        state = await (await c.get("/v1/admin/state", headers=OPERATOR)).json()
        assert state["now"] == last


async def test_static_files_and_unknown_ones(client):
    response = await client.get("/static/app.js")
    assert response.status == 200 and response.content_type == "application/javascript"
    for path in ("/static/nope.js", "/static/js", "/static/../app.py", "/static/%2e%2e/x"):
        assert await error_of(await client.get(path)) == (404, "not_found"), path


async def test_health_metrics_openapi(client):
    response = await client.get("/healthz")
    assert response.status == 200 and await response.json() == {"status": "ok"}
    await new_account(client)
    text = await (await client.get("/metrics")).text()
    assert "crowdex_commands_total" in text and "crowdex_journal_fsync_seconds_bucket" in text
    assert 'crowdex_http_responses_total{status="201"}' in text
    # A server or a cluster replica alike: the newest snapshot and who wrote them.
    assert "crowdex_snapshot_sequence " in text
    assert 'crowdex_snapshots_written_total{writer="fork"} 0.0' in text
    # The account's command waited for its answer a while, and that was observed.
    answered = re.search(r"^crowdex_command_latency_seconds_count (\S+)$", text, re.M)
    assert answered is not None and float(answered.group(1)) >= 1, text
    spec = await (await client.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.")
    assert "/v1/accounts/{account_id}/deposits" in spec["paths"]
    assert "MoneyMovementRequest" in spec["components"]["schemas"]


async def test_text_with_a_nul_character_is_refused(client):
    """PostgreSQL's text cannot hold NUL: an account name with one used to fail every
    settlement batch after it. Names, references and client order ids refuse it."""
    response = await client.post("/v1/accounts", json={"role": "investor", "name": "a\x00b"},
                                 headers=OPERATOR)
    body = await response.json()
    assert (response.status, body["error"]["code"]) == (400, "invalid_field")
    assert body["error"]["message"] == "text must not contain the NUL character - at `$.name`"
    investor = await new_account(client, name="tab\tand newline\n are fine")
    response = await client.post(f"/v1/accounts/{investor['account_id']}/deposits",
                                 json={"amount": 1, "reference": "r\x00"}, headers=OPERATOR)
    assert await error_of(response) == (400, "invalid_field")
    response = await client.post("/v1/orders", json={
        "instrument_id": 1, "side": "buy", "type": "limit", "price": 100, "quantity": 1,
        "client_order_id": "\x00"}, headers=investor["headers"])
    assert await error_of(response) == (400, "invalid_field")
