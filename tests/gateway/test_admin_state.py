"""``GET /v1/admin/state`` hashes the state in a forked child: the exchange goes on meanwhile.

In place, the hash of a busy venue held the one thread for seconds (4.5 s at the 1M mixed
journal's state). Here the hash is made slow on purpose (the child inherits the slow method),
and the venue must answer and apply commands while the operator's request waits; the hash it
gives is the state's at the sequence it gives, as the machine itself computes it. One child
hashes at a time: asks that come while it works read the state once it has exited, and those
at one sequence share a child.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from engine import commands as c
from engine import sequencer
from engine.machine import StateMachine
from gateway import keys
from tests.gateway.conftest import OPERATOR, deposit, new_account

pytestmark = pytest.mark.skipif(not sequencer.SNAPSHOT_IN_CHILD, reason="needs os.fork")

SLOW_S = 1.5


async def test_the_venue_applies_commands_while_its_state_is_hashed(client, monkeypatch):
    account = (await new_account(client))["account_id"]
    await deposit(client, account, 1_000, "first")
    machine = client.server.app[keys.ENGINE].machine
    expected, sequence = machine.state_hash(), machine.last_sequence
    real = StateMachine.state_hash

    def slow(self):
        time.sleep(SLOW_S)  # in the child: it inherits this
        return real(self)

    monkeypatch.setattr(StateMachine, "state_hash", slow)
    forks = []  # at each fork: whether no other child was hashing then
    fork = sequencer._fork_child

    def counted(*args):
        before = sequencer._hashes.get(machine)
        forks.append(before is None or before[1].done())
        return fork(*args)

    monkeypatch.setattr(sequencer, "_fork_child", counted)
    asked = [asyncio.ensure_future(client.get("/v1/admin/state", headers=OPERATOR))
             for _ in range(3)]
    await asyncio.sleep(0.05)
    # Meanwhile: a read and a command, answered long before the hash is.
    assert (await client.get("/healthz")).status == 200
    moved = await deposit(client, account, 500, "second")
    assert moved["cash_available"] == 1_500
    assert not any(task.done() for task in asked)  # in place, all three came first
    states = [await (await task).json() for task in asked]
    # The first ask's child hashed the state it read; the two that came while it worked read
    # the state once it had exited (the deposit in it) and shared a second child.
    assert (states[0]["sequence"], states[0]["state_hash"]) == (sequence, expected)
    after = real(machine)
    assert after != expected
    for state in states[1:]:
        assert (state["sequence"], state["state_hash"]) == (machine.last_sequence, after)
    assert forks == [True, True]  # two children, one after the other
    monkeypatch.setattr(StateMachine, "state_hash", real)
    state = await (await client.get("/v1/admin/state", headers=OPERATOR)).json()
    assert state["sequence"] == machine.last_sequence > sequence
    assert state["state_hash"] == machine.state_hash() == after


async def test_a_child_that_fails_is_a_server_error_and_the_next_ask_forks_again(
        client, monkeypatch):
    def broken(self):
        raise RuntimeError("no hash today")

    monkeypatch.setattr(StateMachine, "state_hash", broken)
    response = await client.get("/v1/admin/state", headers=OPERATOR)
    assert response.status == 500
    monkeypatch.undo()
    machine = client.server.app[keys.ENGINE].machine
    state = await (await client.get("/v1/admin/state", headers=OPERATOR)).json()
    assert state["state_hash"] == machine.state_hash()


async def test_the_child_hashes_the_state_its_caller_read():
    """The child is forked before the ask first yields to the loop: a command the exchange
    applies meanwhile is not in the hash of the sequence the caller read (forked by a task of
    its own, it was, when the loop ran the exchange first)."""
    start_us = 1_767_225_600_000_000
    machine = StateMachine()
    machine.apply(1, c.Entry(start_us, 0, c.Genesis("h", False, start_us, "intl",
                                                    c.RULES_VERSION)))
    account = machine.apply(2, c.Entry(start_us, 2, c.CreateAccount(
        "investor", "i", "key"))).body["account_id"]
    expected, sequence = machine.state_hash(), machine.last_sequence

    async def ask() -> tuple[int, str]:
        read = machine.last_sequence  # as the route reads the state, then asks
        return read, await sequencer.state_hash_off_loop(machine)

    asked = asyncio.ensure_future(ask())
    await asyncio.sleep(0)  # the ask runs up to its first wait
    machine.apply(3, c.Entry(start_us, 2, c.Deposit(account, 100, "meanwhile")))
    assert await asked == (sequence, expected)
    assert machine.state_hash() != expected
