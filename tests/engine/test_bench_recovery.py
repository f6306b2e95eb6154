"""``crowdex bench recovery`` at a tiny size, so it cannot rot: both mixes run to the end and
check their own results (the replay reaches the state of the machine that wrote the journal,
the replay in runs agrees with one entry at a time and with the live apply), the mixed journal
holds every kind of command its docstring promises, and a wrong state is caught. Correctness
only: the figures are the benchmark's business."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench import recovery, venue
from engine import commands as c
from engine.journal import FileJournal
from engine.machine import StateMachine
from engine.markets import Markets
from engine.replay import apply_records, replay

TINY = ["--reference", "400", "--live-batch", "64", "--json"]
MIXED = ["--mix", "mixed", "--commands", "4000", "--investors", "60", "--days", "40"]

# What the mix promises (bench.venue's docstring), by command type.
PROMISED = {
    "PlaceOrder", "CancelOrder", "AmendOrder", "RunAuction", "Subscribe", "CancelSubscription",
    "Deposit", "Withdraw", "CreateAccount", "CreateProject", "ReviewProject", "CloseProject",
    "Distribute", "Tick", "PrepareSettlement", "BatchCommitted",
}


def _figures(capsys: pytest.CaptureFixture, argv: list[str]) -> dict:
    assert recovery.main(argv) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_mixed_bench_runs_and_checks_itself(capsys: pytest.CaptureFixture) -> None:
    figures = _figures(capsys, MIXED + TINY)
    assert figures["mix"] == "mixed"
    assert figures["commands"] > 4000  # the opening, then the mix
    assert figures["replay_commands_per_sec"] > 0
    assert figures["one_at_a_time_commands_per_sec"] > 0
    assert figures["live_apply_us_per_command"] > 0
    assert len(figures["state_hash"]) == 64


def test_the_counts_account_for_every_entry(capsys: pytest.CaptureFixture) -> None:
    figures = _figures(capsys, MIXED + TINY + ["--counts"])
    counts = figures["counts"]
    assert counts["entries"] == figures["commands"] == sum(counts["by_command"].values())
    applied = sum(counts[f"{path}_entries"] for path in ("alone", "bulk", "runs", "plain_runs"))
    assert applied == counts["entries"]  # each entry went one way exactly
    assert counts["alone_calls"] == counts["alone_entries"]
    assert 0 < counts["scanned_as_columns"] <= (counts["by_command"]["PlaceOrder"]
                                                + counts["by_command"]["CancelOrder"])
    assert counts["runs_calls"] > 0 and counts["kernel_calls"] > 0
    assert counts["python_calls_per_entry"] > 1


def test_orders_bench_still_runs(capsys: pytest.CaptureFixture) -> None:
    figures = _figures(capsys, ["--orders", "1500"] + TINY)
    assert figures["mix"] == "orders"
    assert figures["orders"] == 1500
    assert figures["live_apply_us_per_order"] > 0


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, venue.MixedJournal]:
    data_dir = tmp_path_factory.mktemp("venue")
    return data_dir, venue.build_journal(data_dir, 6000, 3, days=40, investors=80,
                                         batch_every=1500)


def test_the_mix_holds_every_promised_command(written) -> None:
    data_dir, journal = written
    assert PROMISED <= set(journal.counts)
    assert 0 < sum(journal.refused.values()) < journal.total - journal.prefix
    assert journal.keyed > 0
    reader = FileJournal(data_dir / "journal", sync=False, read_only=True)
    entries = [c.decode_entry(payload) for _, payload in reader.read(0)]
    reader.close()
    assert len(entries) == journal.total
    boards = {e.command.board for e in entries if type(e.command).__name__ == "CreateProject"}
    assert boards == {"equity", "debt", "ip", "product", "operating_rights"}
    retried = [e for e in entries if e.idempotency_key is not None]
    assert len({e.idempotency_key for e in retried}) < len(retried)  # some keys sent twice
    table = venue.mix_table(journal)
    assert "Subscribe" in table and "refused" in table


def test_the_replay_reaches_the_writers_state(written) -> None:
    data_dir, journal = written
    assert replay(data_dir).state_hash == journal.state_hash


def _records(data_dir: Path) -> list[tuple[int, bytes]]:
    reader = FileJournal(data_dir / "journal", sync=False, read_only=True)
    try:
        return list(reader.read(0))
    finally:
        reader.close()


def test_the_venue_one_entry_at_a_time_reaches_the_writers_state(written) -> None:
    data_dir, journal = written
    machine = StateMachine()
    for sequence, payload in _records(data_dir):
        machine.apply(sequence, c.decode_entry(payload))
    assert machine.state_hash() == journal.state_hash


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(1, 900), min_size=1, max_size=12))
def test_the_venues_journal_replays_to_the_writers_state_however_it_is_cut(written, cuts):
    """Every command of the mix (amends beside amends, keyed orders, subscriptions, deposits,
    closes, settlement batches) in runs that end wherever the chunks do."""
    data_dir, journal = written
    records = _records(data_dir)
    machine = StateMachine()
    machine.quiet = True
    position, n = 0, 0
    while position < len(records):
        size = cuts[n % len(cuts)]
        apply_records(machine, records[position:position + size], {}, chunk_entries=size)
        position, n = position + size, n + 1
    assert machine.state_hash() == journal.state_hash


def test_a_replay_that_disagrees_is_caught(monkeypatch, capsys, tmp_path) -> None:
    """The benchmark's check can fail: a writer's hash that is not the replay's stops it."""
    build = venue.build_journal

    def wrong(*args, **kwargs) -> venue.MixedJournal:
        journal = build(*args, **kwargs)
        journal.state_hash = "0" * 64
        return journal

    monkeypatch.setattr(venue, "build_journal", wrong)
    with pytest.raises(RuntimeError, match="did not reach the state"):
        recovery.main(MIXED + TINY)


def test_a_less_busy_venues_journal_changes_time_often_and_replays_to_its_state(
        tmp_path, monkeypatch) -> None:
    """``--group-max``: group commits of at most 8 entries (a venue less busy), so runs of
    orders go on over many exchange times (``StateMachine._apply_carrying``): the replay and
    one entry at a time both reach the writer's state."""
    journal = venue.build_journal(tmp_path, 3000, 5, days=40, investors=60, group_max=8)
    records = _records(tmp_path)
    times = [c.decode_entry(payload).time_us for _, payload in records[journal.prefix:]]
    stretches = [len(list(group)) for _, group in itertools.groupby(times)]
    assert len(stretches) > len(times) // 12  # a new time every ~5 entries, not ~260
    spanned = []
    apply_run = Markets.apply_run
    monkeypatch.setattr(Markets, "apply_run", lambda markets, items, times=None: (
        spanned.append(len(times)) if times else None) or apply_run(markets, items, times))
    assert replay(tmp_path).state_hash == journal.state_hash
    assert len(spanned) > 20 and max(spanned) > 5  # runs over many times
    machine = StateMachine()
    for sequence, payload in records:
        machine.apply(sequence, c.decode_entry(payload))
    assert machine.state_hash() == journal.state_hash
    with pytest.raises(SystemExit):
        recovery.main([*MIXED, "--group-max", "0", *TINY])
