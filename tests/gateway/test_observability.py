"""Logs and metrics: JSON lines carrying the request id, one access line per request, no
secrets; Prometheus metrics by route and status, WebSocket, orders and trades, the process."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import time
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import configure_logging, create_app, watch_loop_lag
from tests.gateway.conftest import OPERATOR, make_config, new_account
from tests.gateway.markets import PRICE


async def _logging_handler(request: web.Request) -> web.Response:
    logging.getLogger("crowdex.test").info("inside the handler with key cdx_abcdefghijklmnop")
    return web.json_response({"ok": True})


async def test_every_line_of_a_request_carries_its_id_and_no_key(tmp_path: Path, log_lines):
    app = create_app(make_config(tmp_path / "data"))
    app.router.add_get("/test/log", _logging_handler)
    async with TestClient(TestServer(app)) as client:
        account = await new_account(client)
        key = account["api_key"]
        response = await client.get("/test/log", headers=account["headers"])
        rid = response.headers["X-Request-Id"]
        given = await client.get("/v1/me", headers={**account["headers"],
                                                    "X-Request-Id": "trace-42"})
        assert given.headers["X-Request-Id"] == "trace-42"
    lines = log_lines()
    text = json.dumps(lines)
    assert key not in text and OPERATOR["Authorization"].split()[1] not in text
    assert "Bearer" not in text
    mine = [line for line in lines if line.get("request_id") == rid]
    inside, access = mine
    assert inside["logger"] == "crowdex.test" and inside["level"] == "INFO"
    assert inside["message"] == "inside the handler with key cdx_[redacted]"
    assert access["logger"] == "crowdex.access"
    assert {k: access[k] for k in ("method", "path", "status")} == {
        "method": "GET", "path": "/test/log", "status": 200}
    assert access["duration_ms"] >= 0 and re.match(r"\d{4}-\d\d-\d\dT.*Z$", access["time"])
    accesses = [line for line in lines if line["logger"] == "crowdex.access"]
    assert [(a["method"], a["path"], a["status"]) for a in accesses] == [
        ("POST", "/v1/accounts", 201), ("GET", "/test/log", 200), ("GET", "/v1/me", 200)]
    assert accesses[-1]["request_id"] == "trace-42"


async def test_text_format_for_a_terminal(tmp_path: Path, log_lines):
    stream = io.StringIO()
    configure_logging("text", stream)
    async with TestClient(TestServer(create_app(make_config(tmp_path / "data")))) as client:
        response = await client.get("/healthz")
    line = next(x for x in stream.getvalue().splitlines() if "crowdex.access" in x)
    assert "GET /healthz 200" in line and line.endswith(
        f"request_id={response.headers['X-Request-Id']}")


def _samples(text: str, name: str) -> dict[str, float]:
    """``{labels: value}`` of one metric's samples."""
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels, _, value = line[len(name):].rpartition(" ")
            out[labels] = float(value)
    return out


async def test_metrics_by_route_websocket_orders_trades_and_process(market):
    venue, instrument, sellers, buyer = market
    client = venue.client
    await client.get("/v1/nowhere")
    response = await client.post("/v1/orders", json={
        "instrument_id": instrument, "side": "buy", "type": "limit", "price": PRICE,
        "quantity": 5}, headers=buyer["headers"])
    assert response.status == 201
    await client.post("/v1/orders", json={
        "instrument_id": instrument, "side": "sell", "type": "limit", "price": PRICE,
        "quantity": 5}, headers=sellers[0]["headers"])
    async with client.ws_connect("/v1/ws") as ws:
        await ws.send_json({"op": "ping"})
        assert (await ws.receive_json())["type"] == "pong"
        metrics = await client.get("/metrics")
        during = await metrics.text()
    assert metrics.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    latency = _samples(during, "crowdex_http_request_duration_seconds_count")
    assert latency['{method="POST",route="/v1/orders",status="201"}'] == 2
    assert latency['{method="GET",route="unmatched",status="404"}'] == 1
    assert _samples(during, "crowdex_websocket_connections")[""] == 1
    assert _samples(during, "crowdex_websocket_messages_received_total")[""] == 1
    assert _samples(during, "crowdex_websocket_messages_sent_total")[""] == 1
    assert _samples(during, "crowdex_orders_total")[""] >= 2
    assert _samples(during, "crowdex_trades_total")[""] >= 1
    for name in ("process_resident_memory_bytes", "process_open_fds", "process_max_fds",
                 "python_gc_objects_collected_total", "crowdex_commands_total",
                 "crowdex_journal_fsync_seconds_bucket", "crowdex_journal_sync_seconds_bucket",
                 "crowdex_sequence", "crowdex_accounts"):
        assert _samples(during, name), name
    assert 'crowdex_http_responses_total{status="201"}' in during
    # Each batch answered says how long its oldest command waited; the loop's timer ran.
    answered = _samples(during, "crowdex_command_latency_seconds_count")[""]
    assert answered == _samples(during, "crowdex_batches_total")[""] >= 2
    assert _samples(during, "crowdex_command_latency_seconds_sum")[""] > 0
    assert _samples(during, "crowdex_event_loop_lag_seconds_count")[""] >= 1
    after = await (await client.get("/metrics")).text()
    assert _samples(after, "crowdex_websocket_connections")[""] == 0
    assert _samples(after, "crowdex_websocket_connections_opened_total")[""] == 1
    ws_route = _samples(after, "crowdex_http_request_duration_seconds_count")
    assert ws_route['{method="GET",route="/v1/ws",status="101"}'] == 1


async def test_the_loop_lag_watcher_sees_a_loop_held_up():
    lags: list[float] = []
    watcher = asyncio.create_task(watch_loop_lag(lags.append, interval_s=0.005))
    try:
        while not lags:  # ticking
            await asyncio.sleep(0.001)
        time.sleep(0.06)  # holds the loop, as a long apply would
        seen = len(lags)
        while len(lags) == seen:
            await asyncio.sleep(0.001)
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    assert lags[seen] >= 0.05  # the timer due 5 ms in ran after the 60 ms hold
    assert min(lags) >= 0.0
