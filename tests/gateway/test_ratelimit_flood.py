"""Rate limits hold against a flood of made-up keys, and their upkeep stays O(1).

API.md: limits apply per key and, for requests without a valid key (none, unknown or
malformed), per remote address; a flood of made-up keys gets 429 like any other flood and
costs the venue no more than a flood with one key.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway import keys, ratelimit
from gateway.app import create_app
from gateway.ratelimit import RateLimiter
from tests.gateway.conftest import OPERATOR, make_config

BURST = 5


@pytest.fixture
async def slow_client(tmp_path: Path):
    config = make_config(tmp_path / "d", rate_limit_per_second=0.01, rate_limit_burst=BURST)
    async with TestClient(TestServer(create_app(config))) as client:
        yield client


async def test_made_up_keys_share_their_address_bucket(slow_client):
    statuses = [(await slow_client.get("/v1/me", headers={
        "Authorization": f"Bearer made-up-{i}"})).status for i in range(40)]
    assert statuses == [401] * BURST + [429] * (40 - BURST)
    limited = await slow_client.get("/v1/me", headers={"Authorization": "Bearer yet-another"})
    assert (await limited.json())["error"]["code"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) >= 1
    # The flood used one bucket, however many keys it made up.
    assert len(slow_client.server.app[keys.RATE_LIMITER]._buckets) == 1


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer"},
    {"Authorization": "Bearer  "}, {"Authorization": "made-up"},
], ids=["none", "basic", "empty-bearer", "blank-bearer", "no-scheme"])
async def test_keyless_and_malformed_requests_count_against_the_address(slow_client, headers):
    for i in range(BURST):
        response = await slow_client.get("/v1/me", headers={"Authorization": f"Bearer x{i}"})
        assert response.status == 401
    assert (await slow_client.get("/v1/me", headers=headers)).status == 429


async def test_a_valid_key_keeps_its_own_bucket_beside_a_flood_from_its_address(slow_client):
    """A valid key is limited per key wherever it comes from: a flood of made-up keys from the
    same address (a neighbour behind the same NAT or proxy) does not lock it out."""
    for i in range(3 * BURST):
        await slow_client.get("/v1/me", headers={"Authorization": f"Bearer junk-{i}"})
    statuses = [(await slow_client.get("/v1/me", headers=OPERATOR)).status
                for _ in range(BURST + 1)]
    assert statuses == [200] * BURST + [429]


class CountingTable(OrderedDict):
    """The limiter's table, counting every pass over all of its entries."""

    scans = 0

    def _scan(self):
        type(self).scans += 1

    def __iter__(self):
        self._scan()
        return super().__iter__()

    def items(self):
        self._scan()
        return super().items()

    def keys(self):
        self._scan()
        return super().keys()

    def values(self):
        self._scan()
        return super().values()


def test_a_new_bucket_in_a_full_table_costs_no_scan_and_no_rebuild():
    limiter = RateLimiter(rate=1.0, burst=2)
    for i in range(ratelimit.BUCKETS_MAX):
        limiter.take(f"ip:{i}", now=0.0)
    table = CountingTable(limiter._buckets)
    limiter._buckets = table
    CountingTable.scans = 0
    for i in range(2000):  # every one a new bucket in a full table
        assert limiter.take(f"new:{i}", now=1.0) == 0
    assert CountingTable.scans == 0
    assert limiter._buckets is table
    assert len(table) == ratelimit.BUCKETS_MAX


def test_a_full_table_evicts_the_least_recently_used_bucket(monkeypatch):
    monkeypatch.setattr(ratelimit, "BUCKETS_MAX", 3)
    limiter = RateLimiter(rate=1.0, burst=1)
    for key in ("a", "b", "c"):
        assert limiter.take(key, now=0.0) == 0
    assert limiter.take("a", now=0.0) > 0  # "a" is limited, and now the most recent
    assert limiter.take("d", now=0.0) == 0  # evicts "b", the least recently used
    assert list(limiter._buckets) == ["c", "a", "d"]
    # "a" kept its empty bucket: the eviction did not reset its limit.
    assert limiter.take("a", now=0.0) > 0
