"""The boards' rules in force: public, so investors see the fees before they subscribe.

BOARDS.md's defaults, over which the operator's boards file (``crowdex serve --boards``) may set
fees, durations, cancel windows, lock-ups and limits; these are the rules a project listed now
gets (a listed project keeps the rules it was listed under).
"""

from __future__ import annotations

from aiohttp import web

from gateway import http, keys
from gateway.routes import Route
from gateway.schemas import BoardsView


async def get_boards(request: web.Request) -> web.Response:
    offerings = request.app[keys.ENGINE].machine.component("offerings")
    return http.respond(request, 200, offerings.boards_view())


ROUTES = [
    Route("GET", "/v1/boards", get_boards,
          "The rules in force on every board (BOARDS.md's defaults and the operator's file)",
          response=BoardsView),
]
