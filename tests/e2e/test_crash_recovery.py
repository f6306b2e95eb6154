"""A real server killed with SIGKILL mid-stream loses no acknowledged command.

Several clients deposit concurrently; the server is killed while requests are in flight; on
restart every acknowledged deposit is there exactly once, retries of every attempted deposit
dedupe on their reference, and the live state hash equals a replay of the journal from empty.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from engine.sequencer import replay_from_empty
from tests.conftest import OPERATOR_KEY

OPERATOR = {"Authorization": f"Bearer {OPERATOR_KEY}"}
CLIENTS = 6
ACKS_BEFORE_KILL = 400


async def _create_investor(session: aiohttp.ClientSession, url: str, n: int) -> int:
    async with session.post(f"{url}/v1/accounts", json={"role": "investor",
                            "name": f"investor {n}"}, headers=OPERATOR) as response:
        assert response.status == 201
        return (await response.json())["account_id"]


async def _depositor(session, url, account_id, attempted, acked, stop: asyncio.Event):
    n = 0
    while not stop.is_set():
        n += 1
        reference, amount = f"dep-{account_id}-{n}", 100 + n
        attempted[(account_id, reference)] = amount
        try:
            async with session.post(f"{url}/v1/accounts/{account_id}/deposits",
                                    json={"amount": amount, "reference": reference},
                                    headers=OPERATOR) as response:
                if response.status != 201:
                    raise AssertionError(await response.text())
                await response.read()
        except (TimeoutError, aiohttp.ClientError):
            return  # the server died under us: this one is unacknowledged
        acked[(account_id, reference)] = amount


@pytest.mark.asyncio
async def test_sigkill_mid_stream_loses_no_acknowledged_deposit(server_factory):
    server = server_factory("--rate-limit", "1000000")
    server.start()
    attempted: dict[tuple[int, str], int] = {}
    acked: dict[tuple[int, str], int] = {}
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        accounts = [await _create_investor(session, server.url, n) for n in range(CLIENTS)]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(_depositor(session, server.url, a, attempted, acked, stop))
                 for a in accounts]
        deadline = asyncio.get_running_loop().time() + 60
        while len(acked) < ACKS_BEFORE_KILL:
            assert asyncio.get_running_loop().time() < deadline, "deposits stalled"
            for task in tasks:
                if task.done():
                    task.result()  # re-raise a depositor's failure
            await asyncio.sleep(0.01)
        server.kill()  # SIGKILL while the depositors are still sending
        stop.set()
        await asyncio.gather(*tasks)

    assert len(attempted) > len(acked) >= ACKS_BEFORE_KILL
    server.start()
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.get(f"{server.url}/v1/admin/state", headers=OPERATOR) as response:
            before_retry = await response.json()
        # Each acknowledged deposit must already be applied: retrying it returns 201 and
        # changes nothing, which the total below checks.
        for (account_id, reference), amount in attempted.items():
            async with session.post(f"{server.url}/v1/accounts/{account_id}/deposits",
                                    json={"amount": amount, "reference": reference},
                                    headers=OPERATOR) as response:
                assert response.status == 201, await response.text()
        async with session.get(f"{server.url}/v1/admin/state", headers=OPERATOR) as response:
            after_retry = await response.json()

    acked_total = sum(acked.values())
    attempted_total = sum(attempted.values())
    assert acked_total <= before_retry["cash_total"] <= attempted_total
    assert after_retry["cash_total"] == attempted_total  # every deposit exactly once
    assert server.stop() == 0
    at_restart = replay_from_empty(server.data_dir, upto=before_retry["sequence"])
    assert at_restart.state_hash() == before_retry["state_hash"]
    replayed = replay_from_empty(server.data_dir)
    assert replayed.last_sequence == after_retry["sequence"]
    assert replayed.state_hash() == after_retry["state_hash"]
