"""Who the client is behind a trusted reverse proxy: the address that the per-address limits
and the access log use.

Behind nginx every client connects from nginx's address, so every client would share one
keyless rate-limit bucket and one connection cap. ``crowdex serve --trusted-proxy CIDR,...``
names the proxies to believe. A request whose TCP peer is inside one of them is taken to come
from the address its ``X-Forwarded-For`` names: walking the list from the right, past the
addresses that are themselves trusted (the hops our own proxies appended), the first untrusted
one. Everything left of it was written by the client and is not believed, so a client cannot
choose its address by sending the header itself. A list that cannot be read where our proxies
wrote it gives the peer's own address (never an error); from an untrusted peer the header is
ignored. With no trusted proxy (the default) nothing here is installed.

The connection cap (gateway/connections.py) follows: a trusted proxy's TCP connections are not
capped per address (nginx pools them for all its clients), and each request carried on one
counts, while it lasts (a WebSocket for its whole life), as a connection of its client
(``connections.client_connections``, inside the errors middleware so its 429 is the API's).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from aiohttp import web
from aiohttp.typedefs import Middleware

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
FORWARDED_FOR = "X-Forwarded-For"


def parse_networks(text: str) -> tuple[Network, ...]:
    """``--trusted-proxy``'s comma-separated CIDRs (a bare address is one host); raises
    ValueError naming the first that is not one. An empty text trusts no proxy."""
    networks = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item))
        except ValueError as error:
            raise ValueError(f"{item!r} is not a CIDR such as 10.0.0.0/8 ({error})") from None
    return tuple(networks)


def _address(text: str) -> Address | None:
    """``text`` as an address (an IPv4-mapped IPv6 one as IPv4), or None if it is not one."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class TrustedProxies:
    """The networks whose ``X-Forwarded-For`` is believed."""

    __slots__ = ("networks",)

    def __init__(self, networks: Iterable[Network]) -> None:
        self.networks = tuple(networks)

    def trusts(self, peer: str) -> bool:
        address = _address(peer)
        return address is not None and self._trusts(address)

    def _trusts(self, address: Address) -> bool:
        return any(address in network for network in self.networks)

    def client_of(self, peer: str, forwarded_for: Iterable[str]) -> str:
        """The client's address for a request from the trusted ``peer`` carrying these
        ``X-Forwarded-For`` values (several header lines make one list, in order)."""
        hops = ",".join(forwarded_for).split(",")
        client = None
        for hop in reversed(hops):
            address = _address(hop.strip())
            if address is None:  # unreadable where only our proxies wrote: do not guess
                return peer
            client = str(address)
            if not self._trusts(address):
                return client
        # Every hop is a proxy of ours: the request began inside the trusted network.
        return client or peer


def forwarded_for(trusted: TrustedProxies) -> Middleware:
    """The outermost middleware: a request from a trusted proxy goes on as its client's (aiohttp's
    ``Request.clone(remote=...)``), so the access log, the rate limit and the WebSocket caps all
    see the client's address in ``request.remote``."""

    @web.middleware
    async def forwarded_for(request: web.Request, handler) -> web.StreamResponse:
        peer = request.remote
        if peer is None or not trusted.trusts(peer):
            return await handler(request)
        client = trusted.client_of(peer, request.headers.getall(FORWARDED_FOR, ()))
        if client == peer:
            return await handler(request)
        return await handler(request.clone(remote=client))

    return forwarded_for
