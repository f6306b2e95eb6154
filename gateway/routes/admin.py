"""Operator tools: the manual clock and the engine's state hash."""

from __future__ import annotations

import msgspec
from aiohttp import web

from engine import commands as c
from engine.clock import format_time_us
from engine.sequencer import hash_child_free, state_hash_off_loop
from gateway import http, keys, schemas
from gateway.routes import Route


async def advance_clock(request: web.Request) -> web.Response:
    req = await http.body(request, schemas.ClockRequest)
    operator = http.require(request, "operator")
    result = await http.submit(request, c.AdvanceClock(seconds=req.advance_seconds), operator)
    if result.status != 200:
        return http.reply(request, result)
    return http.respond(request, 200, {"now": format_time_us(result.body["now_us"])})


async def state(request: web.Request) -> web.Response:
    http.require(request, "operator")
    engine = request.app[keys.ENGINE]
    machine = engine.machine
    await hash_child_free(machine)  # then the state is read and forked at once (no await)
    body = {
        "sequence": machine.last_sequence,
        "state_hash": None,
        "now": format_time_us(machine.now_us),
        "cash_total": machine.cash_total(),
        # The audit trail of journal entries the operator skipped (crowdex skip).
        "skipped": [msgspec.structs.asdict(skip) for skip in engine.skips.values()],
    }
    # The hash of the state read above (nothing ran in between), off the exchange's thread.
    body["state_hash"] = await state_hash_off_loop(machine)
    return http.respond(request, 200, body)


ROUTES = [
    Route("POST", "/v1/admin/clock", advance_clock, "Advance the manual exchange clock",
          ("operator",), schemas.ClockRequest, schemas.ClockResult),
    Route("GET", "/v1/admin/state", state, "Sequence, state hash and exchange time",
          ("operator",), None, schemas.AdminState),
]
