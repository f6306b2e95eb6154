"""Write a venue's journal and two snapshots of format version 4 with the crowdex that wrote them.

    PYTHONPATH=<a checkout of commit bc0b2b3> python tests/engine/make_v4_snapshot.py OUT_DIR

Commit bc0b2b3 is the last one writing snapshot version 4 (the next, f03eddd, moved the trade
tapes into arrays: version 5); ``git archive bc0b2b3 | tar -x -C DIR`` makes the checkout. Run
with that code on the path, this drives a venue through its engine on a manual clock: four
equity instruments, crossing orders sent many at a time (so one kernel call makes several
fills, and sweeps several makers), the clock moved between rounds by a few seconds or onto,
just before and just past minute, hour and day boundaries. It writes OUT_DIR/journal/ and, by
that version's own ``write_snapshot`` of its own state:

- ``upgradable/`` the snapshot after the first part: every instrument's tape holds fewer than
  1000 trades (each has taken several pages of trades and of 1m candles, interleaved with the
  others'), so it can be upgraded exactly;
- ``full/`` the snapshot after the second part, in which one instrument made more than 1000
  trades: its tape is full (older trades left it), so it cannot be.

A few more commands follow in the journal. ``expected.json`` has the sequences and, at each
snapshot, how many trades and candles of each interval each tape holds.
``tests/engine/test_snapshot_upgrade.py`` reads them with today's code.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from engine import commands as c
from engine import markets_commands as mc
from engine import offerings_commands as oc
from engine.clock import ManualClock
from engine.sequencer import Engine
from engine.snapshot import SNAPSHOT_VERSION, write_snapshot

START_US = 1_767_225_600_000_000  # 2026-01-01
DAY_S = 86_400
INSTRUMENTS = 4
TRADERS = 6
# Clock moves between rounds, seconds: none, a few, to a minute, an hour or a day boundary's
# neighbourhood (from the start of the day after the offerings closed, which is on one).
STEPS = (0, 0, 1, 7, 29, 59, 60, 61, 600, 3599, 3600, 3601, DAY_S - 1, DAY_S)


class Venue:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.traders: list[int] = []
        self.instruments: list[int] = []
        self.rng = np.random.default_rng(14)

    async def ok(self, command, actor: int = 0) -> dict:
        reply = await self.engine.submit(command, actor)
        if reply.status >= 300:
            raise RuntimeError(f"{command} refused: {reply.body}")
        return reply.body

    async def open(self) -> None:
        await self.ok(c.Genesis("op-hash", True, START_US, "intl", c.RULES_VERSION))
        issuer = (await self.ok(c.CreateAccount("issuer", "issuer", "k-issuer"), 2))["account_id"]
        for n in range(TRADERS):
            body = await self.ok(c.CreateAccount("investor", f"t{n}", f"k{n}",
                                                 investor_class="institutional"), 2)
            self.traders.append(body["account_id"])
            await self.ok(c.Deposit(body["account_id"], 50_000_000_00, f"d{n}"), 2)
        projects = []
        for n in range(INSTRUMENTS):
            body = await self.ok(oc.CreateProject(
                "equity", f"equity {n}", "d", START_US + 30 * DAY_S * 1_000_000,
                {"price": 10_00, "min_quantity": 10, "max_quantity": 100_000,
                 "lockup_days": 0}), issuer)
            projects.append(body["project_id"])
            await self.ok(oc.ReviewProject(body["project_id"], True), 2)
            for trader in self.traders:
                await self.ok(oc.Subscribe(body["project_id"], 10_000), trader)
        await self.ok(c.AdvanceClock(31 * DAY_S), 2)  # closed: the shares are instruments
        self.instruments = list(range(1, INSTRUMENTS + 1))

    async def rounds(self, count: int, weights: list[float]) -> None:
        """``count`` rounds: the clock moves, then a few makers rest on one instrument and a
        taker (or two) sweeps them, all sent at once."""
        for _ in range(count):
            step = int(self.rng.choice(STEPS))
            if step:
                await self.ok(c.AdvanceClock(step), 2)
            instrument = int(self.rng.choice(self.instruments, p=weights))
            sell = bool(self.rng.random() < 0.5)
            price = 10_00 + int(self.rng.integers(-30, 31))
            pending = []
            for n in range(int(self.rng.integers(1, 4))):
                maker = self.traders[int(self.rng.integers(0, TRADERS))]
                pending.append(self.engine.submit(mc.PlaceOrder(
                    instrument, "sell" if sell else "buy", "limit", price + (n if sell else -n),
                    int(self.rng.integers(1, 6))), maker))
            taker = self.traders[int(self.rng.integers(0, TRADERS))]
            pending.append(self.engine.submit(mc.PlaceOrder(
                instrument, "buy" if sell else "sell", "limit", price + (5 if sell else -5),
                20, time_in_force="ioc", self_trade_prevention="decrement"), taker))
            await asyncio.gather(*pending)

    def tapes(self) -> dict[str, list[int]]:
        """Per instrument: the trades its tape holds, then its candles of each interval."""
        markets = self.engine.machine.component("markets")
        return {str(i): [len(tape.trades), *map(len, tape.candles.values())]
                for i, tape in sorted(markets.tapes.items())}

    def snapshot(self, directory: Path) -> int:
        machine = self.engine.machine
        write_snapshot(directory, machine.last_sequence, machine.arrays(), machine.meta(),
                       sync=False)
        return machine.last_sequence


def main(out: Path) -> None:
    assert SNAPSHOT_VERSION == 4, "run with the code of commit bc0b2b3 on the path"
    data = out / "venue"
    shutil.rmtree(data, ignore_errors=True)
    engine = Engine(data, ManualClock(), sync=False)
    venue = Venue(engine)
    expected = {}

    async def run() -> None:
        await engine.start()
        await venue.open()
        await venue.rounds(260, [0.4, 0.3, 0.2, 0.1])
        expected["upgradable"] = {"sequence": venue.snapshot(data / "upgradable"),
                                  "tapes": venue.tapes()}
        await venue.rounds(650, [0.94, 0.02, 0.02, 0.02])
        expected["full"] = {"sequence": venue.snapshot(data / "full"), "tapes": venue.tapes()}
        await venue.rounds(5, [0.25, 0.25, 0.25, 0.25])
        expected["sequence"] = engine.machine.last_sequence
        await engine.stop()

    asyncio.run(run())
    for part in ("journal", "upgradable", "full"):  # not snapshots/: the stop's own
        shutil.rmtree(out / part, ignore_errors=True)
        shutil.copytree(data / part, out / part)
    shutil.rmtree(data)
    (out / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
