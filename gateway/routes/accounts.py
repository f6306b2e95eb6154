"""Accounts and money: create accounts, custodian deposits, withdrawals, ``/v1/me``."""

from __future__ import annotations

import secrets

from aiohttp import web

from engine import commands as c
from gateway import http, keys, schemas
from gateway.routes import Route

API_KEY_PREFIX = "cdx_"


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(24)


async def create_account(request: web.Request) -> web.Response:
    req = await http.body(request, schemas.CreateAccountRequest)
    operator = http.require(request, "operator")
    api_key = new_api_key()
    command = c.CreateAccount(
        role=req.role, name=req.name, key_hash=http.key_hash(api_key),
        investor_class=req.investor_class, annual_income=req.annual_income,
        net_worth=req.net_worth,
        reply_api_key=api_key if request.get(keys.IDEMPOTENCY_KEY) else None,
    )
    result = await http.submit(request, command, operator)
    if result.status != 201 or "api_key" in result.body:
        return http.reply(request, result)
    body = {"account_id": result.body["account_id"], "api_key": api_key, "role": req.role}
    return http.respond(request, 201, body)


async def deposit(request: web.Request) -> web.Response:
    account_id = http.path_id(request, "account_id")
    req = await http.body(request, schemas.MoneyMovementRequest)
    operator = http.require(request, "operator")
    command = c.Deposit(account_id=account_id, amount=req.amount, reference=req.reference)
    return http.reply(request, await http.submit(request, command, operator))


async def withdraw(request: web.Request) -> web.Response:
    req = await http.body(request, schemas.MoneyMovementRequest)
    account = http.require(request, "investor", "issuer")
    command = c.Withdraw(account_id=account.account_id, amount=req.amount,
                         reference=req.reference)
    return http.reply(request, await http.submit(request, command, account))


async def me(request: web.Request) -> web.Response:
    account = http.principal(request)
    machine = request.app[keys.ENGINE].machine
    return http.respond(request, 200, machine.account_view(account.account_id))


ROUTES = [
    Route("POST", "/v1/accounts", create_account, "Open an account (returns its API key once)",
          ("operator",), schemas.CreateAccountRequest, schemas.AccountCreated, 201),
    Route("POST", "/v1/accounts/{account_id}/deposits", deposit,
          "Credit an account (the custodian bank's deposit); dedupes on reference",
          ("operator",), schemas.MoneyMovementRequest, schemas.DepositResult, 201),
    Route("POST", "/v1/me/withdrawals", withdraw, "Withdraw settled cash; dedupes on reference",
          ("investor", "issuer"), schemas.MoneyMovementRequest, schemas.WithdrawalResult, 201),
    Route("GET", "/v1/me", me, "The caller's account, balances and holdings",
          ("investor", "issuer", "operator"), None, schemas.Me),
]
