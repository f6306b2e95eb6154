"""Deposit and withdrawal references as rows (``engine.references``): they give back, to a
retry, a snapshot and the state hash, exactly the ``Stored`` replies the machine kept before
them, and a ``Stored`` they would not rebuild is kept as it was."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import commands as c
from engine.machine import StateMachine
from engine.references import DEPOSIT, WITHDRAWAL, References, Use
from engine.replies import Reply, Stored

START_US = 1_767_225_600_000_000


def _uses(references: References) -> list[tuple[int, str, object]]:
    """(account, reference, its Use or kept Stored), sorted."""
    return [(account, reference, mine[reference])
            for account, mine in sorted(references.by_account.items())
            for reference in sorted(mine)]


def _stored(kind: int, account: int, amount: int, time_us: int, cash: int) -> Stored:
    """The reference's first reply as ``StateMachine`` made and kept it before the rows."""
    if kind == DEPOSIT:
        return Stored(f"deposit:{amount}", time_us,
                      Reply(201, {"account_id": account, "cash_available": cash}))
    return Stored(f"withdraw:{amount}", time_us, Reply(201, {"cash_available": cash}))


uses = st.lists(st.tuples(st.integers(1, 6), st.sampled_from(["a", "b", "ref-7", "é", ""]),
                          st.sampled_from([DEPOSIT, WITHDRAWAL]), st.integers(1, 2**62),
                          st.integers(0, 2**62), st.integers(0, 2**60),
                          st.integers(0, 2**60)),
                max_size=40)


@settings(deadline=None)
@given(uses)
def test_the_rows_give_back_what_the_stored_replies_were(events):
    """Random first uses, each later shown more cash (a run's sales before it): the listed
    references encode to the very bytes of the plain dict of ``Stored`` replies, and a load
    of them gives the same uses again (none kept as a ``Stored``)."""
    references, plain = References(), {}
    for account, reference, kind, amount, time_us, cash, more in events:
        use = references.use(account, reference)
        if use is None:  # as StateMachine._deposit and _withdraw keep a new one
            use = Use(kind, amount, time_us, cash)
            references.keep(account, reference, use, references.by_account.get(account))
            plain[account, reference] = _stored(kind, account, amount, time_us, cash)
        if more:
            references.show_more(use, more)
            plain[account, reference].reply.body["cash_available"] += more
    listed = references.listed()
    expected = [(a, r, plain[a, r]) for a, r in sorted(plain)]
    assert msgspec.msgpack.encode(listed) == msgspec.msgpack.encode(expected)
    assert listed == expected and len(references) == len(plain)
    loaded = References.loaded(listed)
    assert loaded.listed() == expected
    assert all(type(use) is Use for _, _, use in _uses(loaded))


def _odd_ones() -> list[Stored]:
    """Stored replies a use would not rebuild exactly (older rules, or anything unknown)."""
    return [
        Stored("deposit:007", 5, Reply(201, {"account_id": 3, "cash_available": 9})),
        Stored("deposit:7", 5, Reply(201, {"cash_available": 9, "account_id": 3})),
        Stored("deposit:7", 5, Reply(201, {"account_id": 4, "cash_available": 9})),
        Stored("deposit:7", 5, Reply(200, {"account_id": 3, "cash_available": 9})),
        Stored("deposit:7", 5, Reply(201, {"account_id": 3, "cash_available": True})),
        Stored("deposit:²", 5, Reply(201, {"account_id": 3, "cash_available": 9})),
        Stored("deposit:-7", 5, Reply(201, {"account_id": 3, "cash_available": 9})),
        Stored("withdraw:7", 5, Reply(201, {"account_id": 3, "cash_available": 9})),
        Stored("withdraw:7", 5, Reply(201, {"cash_available": 9, "extra": 1})),
        Stored("transfer:7", 5, Reply(201, {"cash_available": 9})),
        Stored("withdraw:7", 5, Reply(201, None)),
    ]


def test_a_stored_reply_a_use_would_not_rebuild_is_kept_as_it_was():
    listed = [(3, f"r{i:02}", stored) for i, stored in enumerate(_odd_ones())]  # sorted
    listed.append((3, "z", Stored("deposit:7", 5, Reply(201, {"account_id": 3,
                                                                 "cash_available": 9}))))
    loaded = References.loaded(listed)
    assert [type(use) for _, _, use in _uses(loaded)] == [Stored] * len(_odd_ones()) + [Use]
    assert msgspec.msgpack.encode(loaded.listed()) == msgspec.msgpack.encode(listed)


def _venue() -> StateMachine:
    machine = StateMachine()
    setup = [(0, c.Genesis("operator-key-hash", True, START_US, "intl", c.RULES_VERSION)),
             (2, c.CreateAccount("investor", "Li Wei", "li-wei-key-hash",
                                 investor_class="qualified"))]
    for sequence, (actor, command) in enumerate(setup, start=1):
        machine.apply(sequence, c.Entry(START_US, actor, command))
    return machine


def test_a_retry_after_a_snapshot_gets_the_first_reply_and_a_conflict_is_refused():
    machine = _venue()
    investor = max(machine.accounts)
    first = machine.apply(3, c.Entry(START_US, 2, c.Deposit(investor, 500, "bank-1")))
    withdrawn = machine.apply(4, c.Entry(START_US, investor, c.Withdraw(investor, 200, "w-1")))
    assert first == Reply(201, {"account_id": investor, "cash_available": 500})
    assert withdrawn == Reply(201, {"cash_available": 300})
    loaded = StateMachine()
    loaded.load(machine.arrays(), machine.meta())
    assert loaded.state_hash() == machine.state_hash()
    for venue in (machine, loaded):
        sequence = venue.last_sequence + 1
        retry = venue.apply(sequence, c.Entry(START_US + 1, 2, c.Deposit(investor, 500, "bank-1")))
        assert retry == first  # nothing deposited again
        again = venue.apply(sequence + 1, c.Entry(START_US + 1, investor,
                                                  c.Withdraw(investor, 200, "w-1")))
        assert again == withdrawn
        conflict = venue.apply(sequence + 2, c.Entry(START_US + 1, 2,
                                                     c.Deposit(investor, 501, "bank-1")))
        assert conflict.status == 409 and conflict.body["error"]["code"] == "reference_conflict"
        row = venue.balances.accounts.rows[investor]
        assert int(row["cash_available"]) == 300
    assert loaded.state_hash() == machine.state_hash()


def test_figures_past_int64_round_trip():
    """A use keeps any figure exactly (the machine's fit int64: numpy columns took them)."""
    references = References()
    for i, figure in enumerate((-(2**70), 2**70, 0)):
        references.keep(i, "r", Use(WITHDRAWAL, 2**64, figure, figure), None)
    assert References.loaded(references.listed()) == references
