"""The boards' rules in force: public, so investors see the fees before they subscribe.

BOARDS.md's defaults, over which the operator's boards file (``crowdex serve --boards``) may set
fees, durations, cancel windows, lock-ups and limits; these are the rules a project listed now
gets (a listed project keeps the rules it was listed under).
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from gateway import http, keys
from gateway.routes import Route


class BoardRules(msgspec.Struct, omit_defaults=True):
    board: str
    duration_days_min: int
    duration_days_max: int
    cancel_window_hours: int
    success_fee_bps: int
    lockup_days: int
    secondary_market: bool
    seller_fee_bps: int | None = None  # boards with a secondary market
    distribution_fee_bps: int | None = None  # debt servicing, IP admin
    borrower_cap_fen: int | None = None  # debt
    holders_max: int | None = None  # under cn2015
    payout_released_pct: int | None = None  # product


class BoardsView(msgspec.Struct):
    profile: str
    auction_hour_utc: int  # the IP board's daily call auction
    boards: list[BoardRules]


async def get_boards(request: web.Request) -> web.Response:
    offerings = request.app[keys.ENGINE].machine.component("offerings")
    return http.respond(request, 200, offerings.boards_view())


ROUTES = [
    Route("GET", "/v1/boards", get_boards,
          "The rules in force on every board (BOARDS.md's defaults and the operator's file)",
          response=BoardsView),
]
