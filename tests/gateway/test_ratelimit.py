"""Per-key token buckets: bursts pass, the next request gets 429 with Retry-After."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from gateway.ratelimit import RateLimiter
from tests.gateway.conftest import OPERATOR, make_config


async def test_burst_then_429_with_retry_after(tmp_path: Path):
    config = make_config(tmp_path / "d", rate_limit_per_second=0.5, rate_limit_burst=5)
    async with TestClient(TestServer(create_app(config))) as client:
        statuses = [(await client.get("/v1/me", headers=OPERATOR)).status for _ in range(5)]
        assert statuses == [200] * 5
        limited = await client.get("/v1/me", headers=OPERATOR)
        assert limited.status == 429
        assert (await limited.json())["error"]["code"] == "rate_limited"
        assert int(limited.headers["Retry-After"]) >= 1
        # Another key has its own bucket; health checks are never limited.
        other = await client.get("/v1/me", headers={"Authorization": "Bearer someone-else"})
        assert other.status == 401
        assert (await client.get("/healthz")).status == 200


def test_bucket_refills_at_the_rate():
    limiter = RateLimiter(rate=10, burst=2)
    assert limiter.take("k", now=0.0) == 0
    assert limiter.take("k", now=0.0) == 0
    assert limiter.take("k", now=0.0) == pytest.approx(0.1)
    assert limiter.take("k", now=0.1) == 0  # one token back after 1/rate seconds
    assert limiter.take("k", now=0.1) > 0
