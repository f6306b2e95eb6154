"""A poison command (its apply raises) stops the venue, and every restart would replay it and
stop again; ``crowdex skip`` is the audited way out (issue 15 #11)."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from engine import commands as c
from engine import sequencer, skips
from engine.cash_batch import CashBatch
from engine.clock import WallClock
from engine.errors import CrowdexError
from engine.machine import StateMachine
from engine.sequencer import Engine, replay_from_empty

REPO = Path(__file__).resolve().parents[2]
POISON = "poison"


@pytest.fixture
def poisoned(monkeypatch):
    """A bug: a deposit with reference "poison" raises inside its apply, on every replay:
    its handler's and a replay run's (``engine.cash_batch``, which takes the deposits of a
    run from the handler)."""
    real, real_take = StateMachine._deposit, CashBatch.take

    def deposit(self, cmd, actor):
        if cmd.reference == POISON:
            self.balances.accounts.rows[cmd.account_id]["cash_available"] += 1  # half done
            raise ZeroDivisionError("a bug in the deposit")
        return real(self, cmd, actor)

    def take(self, index, sequence, command, keyed, shown):
        if type(command) is c.Deposit and command.reference == POISON:
            deposit(self.machine, command, 0)
        return real_take(self, index, sequence, command, keyed, shown)

    monkeypatch.setattr(StateMachine, "_deposit", deposit)
    monkeypatch.setattr(CashBatch, "take", take)


async def _poisoned_venue(data_dir: Path) -> tuple[int, int]:
    """A venue stopped by a poison deposit; returns (its sequence, the investor's id)."""
    engine = Engine(data_dir, WallClock())
    await engine.start()
    await engine.submit(c.Genesis("op", False, 0))
    investor = (await engine.submit(c.CreateAccount("investor", "i", "k"))).body["account_id"]
    await engine.submit(c.Deposit(investor, 500, "first"))
    with pytest.raises(CrowdexError) as stopped:
        await engine.submit(c.Deposit(investor, 7, POISON), investor, "key-1", "hash-1")
    assert stopped.value.code == "unavailable" and engine.failed is not None
    await engine.stop()
    return 4, investor


async def test_a_poison_command_is_named_at_restart_and_an_audited_skip_lets_the_venue_go_on(
        tmp_path: Path, poisoned) -> None:
    sequence, investor = await _poisoned_venue(tmp_path)
    again = Engine(tmp_path, WallClock())
    with pytest.raises(skips.PoisonCommand) as refused:
        again.recover()
    again.close_recovered()
    assert refused.value.sequence == sequence and refused.value.command == "deposit"
    assert "crowdex skip --data-dir DIR --sequence 4" in str(refused.value)
    assert "ZeroDivisionError: a bug in the deposit" in str(refused.value)

    assert sequencer.skip_entry(tmp_path, sequence, "   ") == (
        False, "--reason must say why, in 1 to 1000 characters")
    done, message = sequencer.skip_entry(tmp_path, 3, "the wrong one")
    assert not done and "recovery fails at sequence 4" in message
    done, message = sequencer.skip_entry(tmp_path, sequence, "INC-42: deposit bug, fixed in 0.2")
    assert done and "the venue recovers to sequence 4" in message, message
    assert sequencer.skip_entry(tmp_path, sequence, "twice")[0] is False  # nothing fails now

    trail = json.loads((tmp_path / skips.SKIPS_FILE).read_text())
    assert [(s["sequence"], s["command"], s["actor"], s["reason"]) for s in trail] == [
        (4, "deposit", investor, "INC-42: deposit bug, fixed in 0.2")]
    assert trail[0]["error"] == "ZeroDivisionError: a bug in the deposit"
    assert stat.S_IMODE((tmp_path / skips.SKIPS_FILE).stat().st_mode) == 0o600

    engine = Engine(tmp_path, WallClock())
    await engine.start()
    assert list(engine.skips) == [sequence]
    row = engine.machine.balances.accounts.rows[investor]
    assert int(row["cash_available"]) == 500  # the half-done apply left nothing behind
    # A client retrying with its key is told, and the bug is not run again.
    retry = await engine.submit(c.Deposit(investor, 7, POISON), investor, "key-1", "hash-1")
    assert (retry.status, retry.body["error"]["code"]) == (422, "command_skipped")
    assert "INC-42" in retry.body["error"]["message"]
    live_hash = engine.machine.state_hash()
    await engine.stop()
    assert replay_from_empty(tmp_path).state_hash() == live_hash


def test_an_entry_this_release_cannot_read_stops_serve_with_the_way_out_and_skip_clears_it(
        tmp_path: Path) -> None:
    """Through the real commands: serve exits 3 naming the entry; skip refuses while a server
    holds the data dir, then skips; serve recovers past it."""
    from engine.journal import FileJournal
    from tests.conftest import ServerProcess

    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir, "--no-fsync", "--clock", "manual")
    server.start()
    try:
        running = _crowdex("skip", "--data-dir", str(data_dir), "--sequence", "1",
                           "--reason", "x")
        assert running.returncode == 3 and "another crowdex process" in running.stderr
    finally:
        assert server.stop() == 0
    journal = FileJournal(data_dir / "journal", sync=False)
    bad = journal.last_sequence + 1
    journal.append([(bad, b"\x93\xa7unknown")])  # a command a newer release wrote
    journal.close()

    refused = _crowdex("serve", "--data-dir", str(data_dir), "--port", "0")
    assert refused.returncode == 3, refused.stderr[-2000:]
    assert f"journal entry {bad} (undecodable by account 0) cannot be applied" in refused.stderr
    skipped = _crowdex("skip", "--data-dir", str(data_dir), "--sequence", str(bad),
                       "--reason", "written by 0.3 during a rollback test")
    assert skipped.returncode == 0, skipped.stderr
    assert f"the venue recovers to sequence {bad}" in skipped.stdout
    server.start()
    assert server.stop() == 0


def _crowdex(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True,
                          text=True, timeout=120, cwd=REPO)
