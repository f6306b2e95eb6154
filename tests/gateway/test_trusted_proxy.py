"""Behind a trusted reverse proxy the client's address comes from ``X-Forwarded-For``.

``crowdex serve --trusted-proxy CIDR,...``: a request whose TCP peer is trusted is the client's
whose address is the rightmost hop of ``X-Forwarded-For`` not itself trusted; the keyless rate
limit, the access log and the connection cap use it. From an untrusted peer the header is
ignored; an unreadable one from a trusted peer gives the peer. The server runs through
``connections.Runner`` (as ``crowdex serve`` does) on a real loopback socket, and the tests
play the proxy from 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from gateway import cli
from gateway.app import create_app
from gateway.connections import ConnectionLimits
from gateway.proxies import TrustedProxies, parse_networks
from tests.gateway.conftest import make_config
from tests.gateway.test_connections import GET, GuardedTestServer, response

LOOPBACK = "127.0.0.1/32"
KEYLESS = "/v1/boards"  # rate-limited, needs no key
BURST = 2
CAP = ConnectionLimits(connections_per_peer_max=3)
A, B = "198.51.100.7", "198.51.100.8"  # two clients behind the proxy (TEST-NET-2)


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, trusted: str, burst: int = BURST) -> AsyncIterator[str]:
    """The app behind ``connections.Runner`` with CAP, trusting ``trusted``, with a keyless
    ``burst`` that does not refill within a test; yields its base URL."""
    config = make_config(tmp_path / "d", rate_limit_per_second=0.001, rate_limit_burst=burst,
                         trusted_proxies=parse_networks(trusted))
    async with GuardedTestServer(create_app(config), CAP) as server:
        yield f"http://{server.host}:{server.port}"


async def statuses(base: str, forwarded_for: list[str]) -> list[int]:
    """The status of one keyless request per ``X-Forwarded-For`` value, in order."""
    out = []
    async with aiohttp.ClientSession() as session:
        for value in forwarded_for:
            async with session.get(base + KEYLESS, headers={"X-Forwarded-For": value}) as r:
                out.append(r.status)
    return out


@pytest.fixture
def access_remotes(log_lines):
    """The ``remote`` of every access line logged during the test."""
    return lambda: [line["remote"] for line in log_lines()
                    if line["logger"] == "crowdex.access"]


# walk from the right past trusted hops; anything unreadable there gives the peer
TRUSTED = TrustedProxies(parse_networks("127.0.0.1/32,10.0.0.0/8,fd00::/8"))


@pytest.mark.parametrize(("values", "client"), [
    ([A], A),
    ([f"{A}, 10.1.2.3"], A),  # an inner proxy of ours appended 10.1.2.3
    ([f"203.0.113.9, {A}"], A),  # the client's own claim (left) is not believed
    ([f"junk, {A}"], A),  # nor read: only our proxies' part must parse
    (["203.0.113.9", f"{A},10.0.0.1"], A),  # several header lines make one list
    ([f" {A} ,\t10.0.0.1 "], A),
    (["10.0.0.2, 10.0.0.1"], "10.0.0.2"),  # all ours: the request began inside
    (["2001:db8::1, fd00::5"], "2001:db8::1"),
    ([f"::ffff:{A}"], A),  # IPv4-mapped IPv6 is the IPv4 address
    (["::ffff:10.0.0.3"], "10.0.0.3"),
    ([], "127.0.0.1"),
    ([""], "127.0.0.1"),
    (["not-an-ip"], "127.0.0.1"),
    ([f"{A}, junk"], "127.0.0.1"),
    ([f"{A}:4711"], "127.0.0.1"),  # a port is not what nginx sends: unreadable
    ([f"{A},"], "127.0.0.1"),
    (["[2001:db8::1]"], "127.0.0.1"),
])
def test_the_client_is_the_rightmost_untrusted_hop(values, client):
    assert TRUSTED.client_of("127.0.0.1", values) == client


@pytest.mark.parametrize("text", ["10.0.0.0/33", "bogus", "10.0.0.1/8", "10.0.0.0/8;"])
def test_a_bad_cidr_is_named(text):
    with pytest.raises(ValueError, match=repr(text).replace(".", r"\.").replace("[", r"\[")):
        parse_networks(f"192.168.0.0/16, {text}")


def test_no_cidr_trusts_no_one():
    assert parse_networks("") == () and parse_networks(" , ") == ()
    assert not TrustedProxies(()).trusts("127.0.0.1")


async def test_forwarded_clients_get_a_keyless_bucket_each(tmp_path, access_remotes):
    async with serving(tmp_path, LOOPBACK) as base:
        # A's burst is spent: A's next request is refused, B still has its own bucket. A's
        # claim of another address to the left of what the proxy appended changes nothing.
        assert await statuses(base, [A, f"203.0.113.9, {A}", f"203.0.113.10, {A}"]) == [
            200, 200, 429]
        assert await statuses(base, [B, B, B]) == [200, 200, 429]
    assert access_remotes() == [A] * 3 + [B] * 3


async def test_an_untrusted_peer_cannot_choose_its_address(tmp_path, access_remotes):
    """The header is ignored from a peer outside the trusted networks: different claims share
    the peer's bucket, and the log shows the peer."""
    async with serving(tmp_path, "10.0.0.0/8") as base:
        assert await statuses(base, [A, B, "10.0.0.1"]) == [200, 200, 429]
    assert access_remotes() == ["127.0.0.1"] * 3


async def test_a_chain_through_a_trusted_inner_proxy(tmp_path, access_remotes):
    async with serving(tmp_path, f"{LOOPBACK},10.0.0.0/8") as base:
        assert await statuses(base, [f"203.0.113.9, {A}, 10.1.2.3", f"{A},10.9.9.9",
                                     f"{B}, 10.1.2.3"]) == [200, 200, 200]
    assert access_remotes() == [A, A, B]


async def test_a_malformed_header_from_a_trusted_peer_is_the_peer(tmp_path, access_remotes):
    """Never a 5xx: the request is the proxy's own, in the proxy's bucket."""
    async with serving(tmp_path, LOOPBACK) as base:
        assert await statuses(base, ["not-an-ip", f"{A}, %%%", ""]) == [200, 200, 429]
        assert await statuses(base, [A]) == [200]
    assert access_remotes() == ["127.0.0.1"] * 3 + [A]


async def test_a_trusted_proxy_is_not_capped_per_address_but_its_clients_are(tmp_path):
    """The proxy's TCP connections are not capped per address (nginx keeps them for all its
    clients); each request it carries, a WebSocket for its whole life, counts as a connection
    of its client, which past the cap gets 429 while the proxy's connection stays open."""
    async with (serving(tmp_path, LOOPBACK, burst=100) as base,
                opened(base, CAP.connections_per_peer_max + 2) as plain):
        for reader, writer in plain:  # none refused, each still serves
            writer.write(GET)
            assert (await response(reader))[0] == 200
        async with aiohttp.ClientSession() as session:
            sockets = [await session.ws_connect(base + "/v1/ws",
                                                headers={"X-Forwarded-For": A})
                       for _ in range(CAP.connections_per_peer_max)]
            reader, writer = plain[0]
            writer.write(forwarded_get(A))
            status, headers, body = await response(reader)
            assert (status, headers["retry-after"]) == (429, "5")
            assert json.loads(body)["error"]["code"] == "rate_limited"
            writer.write(forwarded_get(B))  # the same connection serves the next client
            assert (await response(reader))[0] == 200
            await sockets.pop().close()
            assert await eventually_ok(reader, writer, A)
            for ws in sockets:
                await ws.close()


async def test_without_a_trusted_proxy_the_cap_is_per_tcp_peer(tmp_path):
    async with (serving(tmp_path, "", burst=100) as base,
                opened(base, CAP.connections_per_peer_max + 1) as plain):
        reader, writer = plain[-1]
        writer.write(forwarded_get(A))
        assert (await response(reader))[0] == 429


def forwarded_get(client: str) -> bytes:
    return (f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: {client}\r\n\r\n").encode()


@contextlib.asynccontextmanager
async def opened(base: str, count: int) -> AsyncIterator[list]:
    """``count`` raw connections to ``base``, all closed on the way out."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    plain = []
    try:
        for _ in range(count):
            plain.append(await asyncio.open_connection(host, int(port)))
        yield plain
    finally:
        for _, writer in plain:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def eventually_ok(reader, writer, client: str) -> bool:
    """A WebSocket's close reaches the server a moment after the client's: ask again until the
    client's count has gone down (bounded; a request past the cap is answered at once)."""
    for _ in range(50):
        writer.write(forwarded_get(client))
        if (await response(reader))[0] == 200:
            return True
        await asyncio.sleep(0.02)
    return False


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_serve_refuses_a_bad_cidr_naming_it(tmp_path, monkeypatch, capsys, how):
    bad = "10.0.0.1/8"  # host bits set: 10.0.0.0/8 was meant, or 10.0.0.1 alone
    argv = ["serve", "--data-dir", str(tmp_path / "d")]
    if how == "flag":
        argv += ["--trusted-proxy", f"172.16.0.0/12,{bad}"]
    else:
        monkeypatch.setenv("CROWDEX_TRUSTED_PROXIES", f"172.16.0.0/12,{bad}")
    assert cli.main(argv) == 2
    assert f"--trusted-proxy: '{bad}' is not a CIDR" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()  # refused before anything started


def test_serve_help_names_the_flag_and_its_variable():
    serve = cli.parser()._subparsers._group_actions[0].choices["serve"]
    text = " ".join(serve.format_help().split())
    assert "--trusted-proxy CIDR[,CIDR...]" in text and "CROWDEX_TRUSTED_PROXIES" in text
