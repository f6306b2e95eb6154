"""Gateway tests run the real app on a real loopback socket, in-process (no PostgreSQL); a chosen
part of them also runs against a cluster replica (test_on_replica.py)."""

from __future__ import annotations

import hashlib
import io
import json
import logging
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import configure_logging, create_app
from gateway.config import Config
from tests.conftest import OPERATOR_KEY

OPERATOR = {"Authorization": f"Bearer {OPERATOR_KEY}"}


class OnReplica:
    """Where venues' journals go: None keeps each in its data dir (the file journal); NATS URLs
    (set by tests/gateway/test_on_replica.py) make every venue a test builds through
    ``make_config`` a cluster replica, on a stream of its own named after its data dir (so a
    test that starts a venue again on the same data dir finds the same stream)."""

    nats_urls: tuple[str, ...] | None = None
    streams: set[str] = set()  # the streams of the venues built while set

    @staticmethod
    def stream_for(data_dir: Path) -> str:
        return "gw-" + hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]


def make_config(data_dir: Path, **overrides) -> Config:
    values = dict(data_dir=data_dir, operator_key=OPERATOR_KEY, use_database=False,
                  journal_sync=False, rate_limit_per_second=10_000, rate_limit_burst=20_000)
    if OnReplica.nats_urls is not None:
        values.update(journal_urls=OnReplica.nats_urls, stream=OnReplica.stream_for(data_dir))
        OnReplica.streams.add(values["stream"])
    values.update(overrides)
    return Config(**values)


@pytest.fixture
def log_lines():
    """Everything logged at INFO and above during the test, as configure_logging writes it."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    configure_logging(stream=stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.handlers[:], root.level = saved[0], saved[1]


@pytest.fixture
async def client(tmp_path: Path):
    async with TestClient(TestServer(create_app(make_config(tmp_path / "data")))) as c:
        yield c


async def new_account(client: TestClient, role: str = "investor", **fields) -> dict:
    """Create an account as the operator; returns the 201 body plus an auth header."""
    response = await client.post("/v1/accounts", json={"role": role, "name": f"a {role}",
                                                       **fields}, headers=OPERATOR)
    assert response.status == 201, await response.text()
    body = await response.json()
    body["headers"] = {"Authorization": f"Bearer {body['api_key']}"}
    return body


async def deposit(client: TestClient, account_id: int, amount: int, reference: str) -> dict:
    response = await client.post(f"/v1/accounts/{account_id}/deposits",
                                 json={"amount": amount, "reference": reference},
                                 headers=OPERATOR)
    assert response.status == 201, await response.text()
    return await response.json()


@pytest.fixture
async def market(tmp_path: Path):
    """A venue with a trading equity instrument (see tests/gateway/markets.py)."""
    from tests.gateway.markets import trading_venue

    async with trading_venue(tmp_path) as venue:
        yield venue
