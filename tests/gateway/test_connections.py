"""Slow, silent and idle HTTP connections are closed; each address may hold only so many.

API.md: a connection is closed when a request's headers have not fully arrived 30 s after the
connection opened or after its previous response; an idle keep-alive connection is closed after
75 s. The tests run the real app on a real socket through ``connections.Runner`` (the runner
``crowdex serve`` uses) with the deadlines lowered, and speak HTTP over raw sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import resource
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import msgspec
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway import cli, connections
from gateway.app import create_app
from gateway.connections import ConnectionLimits
from tests.conftest import free_port
from tests.gateway.conftest import make_config

# The headers' deadline well apart from the keep-alive timeout, so a close tells which fired.
SLOW = ConnectionLimits(headers_timeout_s=0.3, keepalive_timeout_s=3.0,
                        connections_per_peer_max=4)
IDLE = ConnectionLimits(headers_timeout_s=0.2, keepalive_timeout_s=0.5,
                        connections_per_peer_max=4)
HEADERS_CUT_WITHIN_S = 1.5  # far past SLOW's 0.3 s deadline, well before its keep-alive's 3 s
CLOSE_WITHIN_S = 5.0
GET = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
REPO = Path(__file__).resolve().parents[2]


class GuardedTestServer(TestServer):
    def __init__(self, app, limits: ConnectionLimits) -> None:
        super().__init__(app)
        self.limits = limits

    async def _make_runner(self, **kwargs) -> connections.Runner:
        return connections.Runner(self.app, limits=self.limits, **kwargs)


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, limits: ConnectionLimits) -> AsyncIterator[TestServer]:
    async with GuardedTestServer(create_app(make_config(tmp_path / "d")), limits) as server:
        yield server


async def connect(server: TestServer):
    return await asyncio.open_connection(server.host, server.port)


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """True when the server closes the connection within ``seconds`` (what it sent before
    is read and dropped)."""
    try:
        async with asyncio.timeout(seconds):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        pass
    return True


async def response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), CLOSE_WITHIN_S)).decode()
    status_line, *lines = head.strip().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


async def trickle(writer: asyncio.StreamWriter, data: bytes) -> None:
    """Send ``data`` a byte at a time, 20 a second, until it runs out or the server hangs up."""
    with contextlib.suppress(ConnectionError):
        for i in range(len(data)):
            writer.write(data[i:i + 1])
            await writer.drain()
            await asyncio.sleep(0.05)


async def test_a_silent_connection_is_closed_at_the_headers_deadline(tmp_path):
    async with serving(tmp_path, SLOW) as server:
        reader, writer = await connect(server)
        assert await closed_within(reader, HEADERS_CUT_WITHIN_S)
        writer.close()


async def test_a_trickling_request_line_is_cut_at_the_headers_deadline(tmp_path):
    """Slowloris: a byte every 50 ms keeps the connection busy but never finishes a request;
    the deadline counts from the connection's opening, not from the last byte."""
    async with serving(tmp_path, SLOW) as server:
        reader, writer = await connect(server)
        sender = asyncio.create_task(trickle(writer, b"GET /healthz HTTP/1.1\r\nX-Slow: " +
                                             b"a" * 200))
        assert await closed_within(reader, HEADERS_CUT_WITHIN_S)
        assert not sender.done()  # it still had bytes to send when it was cut
        sender.cancel()
        writer.close()


async def test_a_slow_next_request_on_a_kept_alive_connection_is_cut(tmp_path):
    async with serving(tmp_path, SLOW) as server:
        reader, writer = await connect(server)
        writer.write(GET)
        assert (await response(reader))[0] == 200
        sender = asyncio.create_task(trickle(writer, b"GET /healthz HTTP/1.1\r\nX-Slow: " +
                                             b"a" * 200))
        assert await closed_within(reader, HEADERS_CUT_WITHIN_S)
        sender.cancel()
        writer.close()


async def test_requests_and_a_kept_alive_connection_reused_after_a_pause_are_served(tmp_path):
    """Idle time between requests is not slowness: after more than three headers' deadlines
    of silence the connection still serves, pipelined requests included."""
    async with serving(tmp_path, SLOW) as server:
        reader, writer = await connect(server)
        writer.write(GET)
        status, headers, body = await response(reader)
        assert status == 200 and msgspec.json.decode(body)["status"] == "ok"
        await asyncio.sleep(3 * SLOW.headers_timeout_s + 0.1)
        writer.write(GET + GET)  # pipelined
        assert [(await response(reader))[0] for _ in range(2)] == [200, 200]
        # A request whose first byte comes after the deadline has run gets its own 30 s.
        await asyncio.sleep(SLOW.headers_timeout_s + 0.1)
        writer.write(GET[:10])
        await asyncio.sleep(SLOW.headers_timeout_s / 2)
        writer.write(GET[10:])
        assert (await response(reader))[0] == 200
        writer.close()


async def test_an_idle_kept_alive_connection_is_closed_at_the_keepalive_timeout(tmp_path):
    async with serving(tmp_path, IDLE) as server:
        reader, writer = await connect(server)
        writer.write(GET)
        assert (await response(reader))[0] == 200
        assert await closed_within(reader, CLOSE_WITHIN_S)
        writer.close()


async def test_a_websocket_outlives_both_deadlines(tmp_path):
    async with serving(tmp_path, IDLE) as server, TestClient(server) as client:
        ws = await client.ws_connect("/v1/ws")
        await asyncio.sleep(2 * IDLE.keepalive_timeout_s + 0.2)
        await ws.send_json({"op": "ping", "request_id": 1})
        reply = await ws.receive(timeout=CLOSE_WITHIN_S)
        assert reply.type == aiohttp.WSMsgType.TEXT, reply
        assert msgspec.json.decode(reply.data)["type"] == "pong"
        await ws.close()


async def served(server: TestServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection that has had one request answered: the server has counted it."""
    reader, writer = await connect(server)
    writer.write(GET)
    assert (await response(reader))[0] == 200
    return reader, writer


async def refusal_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """What the server sends before closing, or b"" if it keeps the connection open."""
    received = b""
    try:
        async with asyncio.timeout(seconds):
            while chunk := await reader.read(65536):
                received += chunk
    except (TimeoutError, ConnectionError):
        return b""
    return received


async def test_connections_past_the_cap_per_address_get_429_and_are_closed(tmp_path):
    async with serving(tmp_path, SLOW) as server:
        held = [await served(server) for _ in range(SLOW.connections_per_peer_max)]
        reader, writer = await connect(server)
        writer.write(GET)
        status, headers, body = await response(reader)
        assert status == 429 and headers["retry-after"] == str(connections.REFUSED_RETRY_AFTER_S)
        assert headers["connection"] == "close"
        assert msgspec.json.decode(body)["error"]["code"] == "rate_limited"
        assert await closed_within(reader, CLOSE_WITHIN_S)
        writer.close()
        # A closed connection frees its place (once the server has seen the close).
        held.pop()[1].close()
        for _ in range(100):
            reader, writer = await connect(server)
            writer.write(GET)
            status = (await response(reader))[0]
            writer.close()
            if status == 200:
                break
            await asyncio.sleep(0.02)
        assert status == 200
        for _, other in held:
            other.close()
        peers = server.runner.server.peers
        for _ in range(200):
            if not peers:
                break
            await asyncio.sleep(0.01)
        assert peers == {}


async def test_a_refused_connection_that_sends_nothing_still_gets_its_429(tmp_path):
    limits = ConnectionLimits(connections_per_peer_max=1)
    async with serving(tmp_path, limits) as server:
        _, first = await served(server)
        reader, writer = await connect(server)
        assert (await refusal_within(reader, CLOSE_WITHIN_S)).startswith(b"HTTP/1.1 429 ")
        writer.close()
        first.close()


async def test_the_runner_keeps_the_api_md_limits_by_default(tmp_path):
    assert ConnectionLimits() == ConnectionLimits(30.0, 75.0, connections.CONNECTIONS_PER_PEER_MAX)
    runner = connections.Runner(create_app(make_config(tmp_path / "d")))
    await runner.setup()
    try:
        server = runner.server
        assert isinstance(server, connections.GuardedServer)
        handler = server()
        assert isinstance(handler, connections.GuardedRequestHandler)
        assert handler.keepalive_timeout == connections.KEEPALIVE_TIMEOUT_S
        assert server.limits.headers_timeout_s == connections.HEADERS_TIMEOUT_S
    finally:
        await runner.cleanup()


def test_crowdex_serve_runs_through_the_guarded_runner(tmp_path, monkeypatch):
    calls = []

    def fake_run(app, *, loop, limits=None, **kwargs):
        loop.close()
        calls.append((app, limits, kwargs))

    def plain_run_app(*args, **kwargs):
        raise AssertionError("aiohttp's runner keeps no deadlines and no cap")

    monkeypatch.setattr(connections, "run", fake_run)
    monkeypatch.setattr(web, "run_app", plain_run_app)
    threshold, interval = gc.get_threshold(), sys.getswitchinterval()
    files = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        assert cli.main(["serve", "--data-dir", str(tmp_path / "d"), "--port", "0"]) == 0
    finally:
        gc.set_threshold(*threshold)
        sys.setswitchinterval(interval)
        resource.setrlimit(resource.RLIMIT_NOFILE, files)
    [(app, limits, kwargs)] = calls
    assert limits is None  # ConnectionLimits(): API.md's 30 s and 75 s
    assert kwargs["port"] == 0 and kwargs["shutdown_timeout"] == cli.SHUTDOWN_TIMEOUT_S


SERVE = """
import sys
from pathlib import Path

import uvloop

from gateway import connections
from gateway.app import create_app
from tests.conftest import free_port
from tests.gateway.conftest import make_config

port = int(sys.argv[2])
limits = connections.ConnectionLimits(headers_timeout_s=0.3, keepalive_timeout_s=1.0,
                                      connections_per_peer_max=3)
connections.run(create_app(make_config(Path(sys.argv[1]))), host="127.0.0.1", port=port,
                loop=uvloop.new_event_loop(), shutdown_timeout=5.0, limits=limits)
"""


@contextlib.contextmanager
def serve_process(tmp_path: Path):
    """``connections.run`` on uvloop in a child process: what ``crowdex serve`` runs, but
    without PostgreSQL and with the limits lowered."""
    port = free_port()
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", SERVE, str(tmp_path / "d"), str(port)],
                                stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        for _ in range(600):
            if proc.poll() is not None:
                raise RuntimeError(log_path.read_text())
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    break
            except urllib.error.HTTPError as error:
                error.close()
                time.sleep(0.05)
            except OSError:
                time.sleep(0.05)
        yield port
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


async def test_run_on_uvloop_keeps_the_deadlines_and_the_cap(tmp_path):
    with serve_process(tmp_path) as port:
        server = TestServer(web.Application(), port=port)  # only its host and port are used
        reader, silent = await connect(server)
        assert await closed_within(reader, CLOSE_WITHIN_S)  # cut at the headers' deadline
        silent.close()
        reader, slow = await connect(server)
        sender = asyncio.create_task(trickle(slow, b"GET / HTTP/1.1\r\nX: " + b"a" * 200))
        assert await closed_within(reader, CLOSE_WITHIN_S)
        assert not sender.done()
        sender.cancel()
        slow.close()
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"http://127.0.0.1:{port}/v1/ws")
            await asyncio.sleep(1.5)  # past both deadlines
            await ws.send_json({"op": "ping", "request_id": 1})
            assert msgspec.json.decode((await ws.receive(timeout=5)).data)["type"] == "pong"
            held = [await served(server) for _ in range(2)]  # the WebSocket is the third
            reader, refused = await connect(server)
            assert (await refusal_within(reader, CLOSE_WITHIN_S)).startswith(b"HTTP/1.1 429 ")
            refused.close()
            await ws.close()
        await asyncio.sleep(0.7)  # idle, past two headers' deadlines
        reader, writer = held[0]
        writer.write(GET)
        assert (await response(reader))[0] == 200
        for _, writer in held:
            writer.close()
