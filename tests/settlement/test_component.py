"""The engine's side of a batch: BatchCommitted releases movements once, clears unsettled cash."""

from __future__ import annotations

import pytest

from engine import commands as c
from engine import movements as mv
from engine.machine import StateMachine
from settlement.commands import BatchCommitted, PrepareSettlement


def venue() -> tuple[StateMachine, int]:
    machine = StateMachine()
    sequence = 0

    def apply(command, actor=0):
        nonlocal sequence
        sequence += 1
        return machine.apply(sequence, c.Entry(1_767_225_600_000_000, actor, command))

    machine.submit = apply  # type: ignore[attr-defined]
    apply(c.Genesis("", True, 1_767_225_600_000_000))
    account = apply(c.CreateAccount("investor", "x", "k")).body["account_id"]
    apply(c.Deposit(account, 1_000, "d1"))
    return machine, account


def test_a_committed_batch_releases_its_movements_and_settles_proceeds() -> None:
    machine, account = venue()
    # Proceeds, as a trade credits them: 400 from the fee account (given by a deposit).
    machine.balances.accounts.rows[1]["cash_available"] += 400
    machine.movements.record(machine.last_sequence, mv.DEPOSIT, 0, 1, mv.CASH, 400)
    machine.balances.accounts.rows[1]["cash_available"] -= 400
    machine.credit_cash(account, 400, mv.TRADE_CASH, 1)
    assert machine.cash_withdrawable(account) == 1_000
    cutoff = machine.last_sequence
    reply = machine.submit(BatchCommitted(1, cutoff, 3, 3))
    assert reply.status == 200 and not reply.body["already_applied"]
    assert machine.cash_withdrawable(account) == 1_400
    assert len(machine.movements.table.live()) == 0
    again = machine.submit(BatchCommitted(1, cutoff, 3, 3))
    assert again.status == 200 and again.body["already_applied"]


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (BatchCommitted(2, 3, 1, 1), "does not follow"),
        (BatchCommitted(1, 99, 1, 1), "outside"),
        (BatchCommitted(1, 3, 2, 2), "holds 2 movements"),
        (BatchCommitted(1, 3, 1, 5), "up to id 5"),
    ],
)
def test_a_batch_the_engine_cannot_match_is_refused(command: BatchCommitted,
                                                     message: str) -> None:
    machine, _ = venue()
    reply = machine.submit(command)
    assert reply.status == 409 and message in reply.body["error"]["message"]
    assert len(machine.movements.table.live()) == 1


def test_prepare_calls_the_distribution_hook_and_replays_the_same() -> None:
    machine, _ = venue()
    calls = []
    machine.components[0].pay_pending_distributions = lambda: calls.append(1)  # type: ignore
    assert machine.submit(PrepareSettlement()).status == 200
    assert calls == [1]


def test_the_component_state_survives_a_snapshot() -> None:
    machine, _ = venue()
    machine.submit(BatchCommitted(1, machine.last_sequence, 1, 1))
    copy = StateMachine()
    copy.load(machine.arrays(), machine.meta())
    assert copy.state_hash() == machine.state_hash()
    assert copy.components[0].state.last_batch_id == 1
