"""A bare aiohttp echo server on uvloop: the reference the gateway's overhead is measured
against. ``POST /echo`` decodes the JSON body and answers it; ``/ws`` answers each message
with an ack carrying its ``request_id``. Run: ``python -m bench.echo --port N``.
"""

from __future__ import annotations

import argparse
import sys

import msgspec
from aiohttp import WSMsgType, web

_decode = msgspec.json.decode
_encode = msgspec.json.encode


async def echo(request: web.Request) -> web.Response:
    body = _decode(await request.read())
    return web.Response(status=201, body=_encode(body), content_type="application/json")


async def ws_echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(max_msg_size=64 * 1024)
    await ws.prepare(request)
    async for msg in ws:
        if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
            message = _decode(msg.data)
            await ws.send_str(_encode({"type": "order_ack", "request_id":
                                       message.get("request_id"), "order": message}).decode())
    return ws


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def main(argv: list[str]) -> int:
    import uvloop

    parser = argparse.ArgumentParser(prog="bench.echo")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    app = web.Application(client_max_size=64 * 1024)
    app.router.add_post("/echo", echo)
    app.router.add_get("/ws", ws_echo)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=args.port, loop=uvloop.new_event_loop(),
                access_log=None, print=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
