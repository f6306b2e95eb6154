"""Fixtures for the settlement tests: one PostgreSQL per session, a fresh database per test.

By default the session starts one embedded server in a temporary directory and stops it at the
end. With ``CROWDEX_TEST_DATABASE_URL`` set, that server is used instead (the URL's user must be
allowed to create databases); every database this session creates there carries a session-unique
prefix and is dropped at the end.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import asyncpg
import pytest

from settlement.db import (
    ADMIN_DATABASE_NAME,
    EmbeddedServer,
    create_pool,
    migrate,
    quote_identifier,
    url_with_database,
)

TEST_DATABASE_URL_ENV = "CROWDEX_TEST_DATABASE_URL"
DATABASE_PREFIX = "crowdex_test"


@dataclass
class PgServer:
    """The session's PostgreSQL server and the naming of the databases made on it."""

    admin_url: str
    prefix: str
    embedded: EmbeddedServer | None = None
    _numbers: Iterator[int] = field(default_factory=itertools.count)

    def new_database_name(self) -> str:
        """A database name unique to this session."""
        return f"{self.prefix}_{next(self._numbers)}"

    async def create_database(self) -> str:
        """Create an empty database; return its URL."""
        name = self.new_database_name()
        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(f"CREATE DATABASE {quote_identifier(name)}")
        finally:
            await conn.close()
        return url_with_database(self.admin_url, name)

    async def drop_database(self, url: str) -> None:
        """Drop a database made by ``create_database``, closing whatever still uses it."""
        name = urlsplit(url).path.lstrip("/")
        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {quote_identifier(name)} WITH (FORCE)")
        finally:
            await conn.close()

    async def drop_session_databases(self) -> None:
        """Drop every database this session created (for a shared external server)."""
        conn = await asyncpg.connect(self.admin_url)
        try:
            names = await conn.fetch(
                "SELECT datname FROM pg_database WHERE datname LIKE $1", self.prefix + "\\_%"
            )
            for row in names:
                name = quote_identifier(row["datname"])
                await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await conn.close()


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgServer]:
    """One PostgreSQL server for the whole session: external by URL, or embedded."""
    prefix = f"{DATABASE_PREFIX}_{os.getpid()}_{secrets.token_hex(3)}"
    external_url = os.environ.get(TEST_DATABASE_URL_ENV)
    if external_url:
        server = PgServer(admin_url=external_url, prefix=prefix)
        try:
            yield server
        finally:
            asyncio.run(server.drop_session_databases())
        return
    embedded = EmbeddedServer.start(tmp_path_factory.mktemp("pg") / "postgres")
    try:
        yield PgServer(
            admin_url=embedded.url(ADMIN_DATABASE_NAME), prefix=prefix, embedded=embedded
        )
    finally:
        embedded.stop()


@pytest.fixture
async def database_url(pg_server: PgServer) -> AsyncIterator[str]:
    """URL of a fresh, empty database, dropped after the test."""
    url = await pg_server.create_database()
    try:
        yield url
    finally:
        await pg_server.drop_database(url)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """An asyncpg pool (the production limits) on a fresh database."""
    pool = await create_pool(database_url)
    try:
        yield pool
    finally:
        await pool.close()


# --------------------------------------------------------------------------------------------
# Settlement through the real app (in process, real socket) on a fresh database

from tests.gateway.conftest import client  # noqa: E402, F401 - the app without PostgreSQL


@pytest.fixture
async def settle_client(tmp_path, database_url: str):
    """The gateway with PostgreSQL: an in-process app on ``database_url``, manual clock."""
    from aiohttp.test_utils import TestClient, TestServer

    from gateway.app import create_app
    from tests.gateway.conftest import make_config

    config = make_config(tmp_path / "data", use_database=True, database_url=database_url,
                         manual_clock=True, start_time_us=1_767_225_600_000_000)
    async with TestClient(TestServer(create_app(config))) as app_client:
        yield app_client


@pytest.fixture(scope="module")
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A migrated database shared by a module (hypothesis tests truncate it per example)."""

    async def make() -> str:
        url = await pg_server.create_database()
        pool = await create_pool(url)
        try:
            await migrate(pool)
        finally:
            await pool.close()
        return url

    url = asyncio.run(make())
    try:
        yield url
    finally:
        asyncio.run(pg_server.drop_database(url))
