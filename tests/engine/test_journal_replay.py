"""Replaying a journal in runs (``engine.replay``, recovery, ``crowdex replay``): the state is
the same however the journal is cut into chunks, quiet or not, and the same as one entry at a
time; ``crowdex replay`` prints API.md's object and agrees with the live server."""

from __future__ import annotations

import gc
import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.recovery import TRADERS, build_journal
from engine import commands as c
from engine import markets_commands as mc
from engine.journal import FileJournal
from engine.machine import StateMachine
from engine.replay import apply_records, replay
from tests.conftest import OPERATOR_KEY, ServerProcess

ROOT = Path(__file__).resolve().parents[2]
ORDERS = 2500


NEWCOMERS = 6  # accounts with no position yet: their first orders create position rows


def _mixed(entries: list[c.Entry]) -> list[c.Entry]:
    """The bench's order entries with other commands between them: deposits, withdrawals,
    idempotent orders (and a retry of one, and a key reused with another body), ticks, and
    newcomers whose first orders (inside runs) create their position rows."""
    first = entries[0].time_us
    out: list[c.Entry] = []
    newcomers = [4 + TRADERS + n for n in range(NEWCOMERS)]
    for n, account in enumerate(newcomers):
        out.append(c.Entry(first, 2, c.CreateAccount("investor", f"new {n}", f"new-{n}",
                                                     investor_class="institutional")))
        out.append(c.Entry(first, 2, c.Deposit(account, 10**9, "new")))
    for i, entry in enumerate(entries):
        trader = 4 + i % TRADERS
        if i % 199 == 5:  # consecutive orders of newcomers (one kernel call), highest id
            # first: the order they first trade in is not their ids' order.
            for n, account in enumerate(reversed(newcomers)):
                out.append(c.Entry(entry.time_us, account, mc.PlaceOrder(
                    1, "buy", "limit", 10_000 - (i + n) % 30, 1 + n)))
        if i % 97 == 0:
            out.append(c.Entry(entry.time_us, 0, c.Deposit(trader, 1_000 + i, f"mix{i}")))
        if i % 131 == 0:
            out.append(c.Entry(entry.time_us, trader, c.Withdraw(trader, 7, f"w{i}")))
        if i % 53 == 0 and isinstance(entry.command, mc.PlaceOrder):
            keyed = c.Entry(entry.time_us, entry.actor, entry.command, f"key{i}", f"h{i}")
            out.append(keyed)
            out.append(keyed)  # a retry: answered from memory
            out.append(c.Entry(entry.time_us, entry.actor, entry.command, f"key{i}", "other"))
            continue
        if i % 211 == 0:
            out.append(c.Entry(entry.time_us, 0, c.Tick()))
        out.append(entry)
    return out


@pytest.fixture(scope="module")
def journal(tmp_path_factory) -> tuple[Path, list[tuple[int, bytes]], str]:
    """A venue's journal with mixed traffic; its records and the one-at-a-time state hash."""
    data_dir = tmp_path_factory.mktemp("replay")
    prefix, entries = build_journal(data_dir, ORDERS, 11)
    mixed = _mixed(entries)
    reader = FileJournal(data_dir / "journal", sync=False, read_only=True)
    head = [record for record in reader.read(0) if record[0] <= prefix]
    reader.close()
    shutil.rmtree(data_dir / "journal")
    writer = FileJournal(data_dir / "journal", sync=False)
    writer.append(head)
    writer.append([(prefix + i + 1, c.encode_entry(e)) for i, e in enumerate(mixed)])
    writer.close()
    records = head + [(prefix + i + 1, c.encode_entry(e)) for i, e in enumerate(mixed)]
    machine = StateMachine()
    for sequence, payload in records:
        machine.apply(sequence, c.decode_entry(payload))
    return data_dir, records, machine.state_hash()


def apply_in_chunks(machine: StateMachine, records: list[tuple[int, bytes]],
                    cuts: list[int]) -> StateMachine:
    """Apply ``records`` in chunks whose sizes repeat ``cuts``; returns ``machine``."""
    position, n = 0, 0
    while position < len(records):
        size = cuts[n % len(cuts)]
        n += 1
        apply_records(machine, records[position:position + size], {}, chunk_entries=size)
        position += size
    return machine


@settings(max_examples=15, deadline=None)
@given(cuts=st.lists(st.integers(1, 700), min_size=1, max_size=30), quiet=st.booleans())
def test_the_state_is_the_same_however_the_journal_is_cut(journal, cuts, quiet):
    _, records, expected = journal
    machine = StateMachine()
    machine.quiet = quiet
    apply_in_chunks(machine, records, cuts)
    assert machine.last_sequence == len(records)
    assert machine.state_hash() == expected


def test_replay_reads_the_whole_journal_and_upto_stops_there(journal):
    data_dir, records, expected = journal
    result = replay(data_dir)
    assert (result.commands, result.sequence, result.state_hash) == (
        len(records), len(records), expected)
    machine = StateMachine()
    for sequence, payload in records[:1000]:
        machine.apply(sequence, c.decode_entry(payload))
    part = replay(data_dir, upto=1000)
    assert (part.commands, part.sequence, part.state_hash) == (1000, 1000, machine.state_hash())
    assert set(result.view()) == {"commands", "sequence", "state_hash", "seconds",
                                  "commands_per_sec"}


def test_the_replies_a_replay_keeps_are_not_left_to_the_garbage_collector(journal):
    """Remembered replies (idempotency keys) hold no cycles, so they are not tracked: a
    venue's tens of thousands of them were two thirds of what every young collection after a
    replay, and every full one in the server, had to scan. (Deposit references are rows of
    figures: ``tests/engine/test_references.py``.)"""
    _, records, _ = journal
    machine = StateMachine()
    apply_records(machine, records, {})
    stored = list(machine.idempotency.values())
    assert len(machine.idempotency) > 10 and len(machine.references) > 10
    assert not any(gc.is_tracked(s) or gc.is_tracked(s.reply) for s in stored)


def _get(url: str, path: str) -> dict:
    request = urllib.request.Request(url + path,
                                     headers={"Authorization": f"Bearer {OPERATOR_KEY}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _post(url: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {OPERATOR_KEY}",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_crowdex_replay_agrees_with_a_running_server(tmp_path: Path):
    """Read-only: it may read the journal of a server that is running."""
    server = ServerProcess(tmp_path / "data", "--clock", "manual", "--demo")
    server.start()
    try:
        account = _post(server.url, "/v1/accounts", {"role": "investor", "name": "r"})
        _post(server.url, f"/v1/accounts/{account['account_id']}/deposits",
              {"amount": 12_345, "reference": "r1"})
        live = _get(server.url, "/v1/admin/state")
        done = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "replay", "--data-dir", str(tmp_path / "data"),
             "--upto", str(live["sequence"]), "--json"],
            capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert (result["sequence"], result["state_hash"]) == (live["sequence"],
                                                              live["state_hash"])
        assert result["commands"] == live["sequence"] and result["commands_per_sec"] > 0
        assert _get(server.url, "/v1/admin/state")["state_hash"] == live["state_hash"]
    finally:
        assert server.stop() == 0
