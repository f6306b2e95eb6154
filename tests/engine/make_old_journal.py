"""Write a venue's journal with an older crowdex, and what that version's replay made of it.

    PYTHONPATH=<a checkout of the older commit> python tests/engine/make_old_journal.py OUT_DIR

Run with the older code on the path, it drives a venue through its engine (every board, orders
with cancels and self-trade prevention, distributions, withdrawals, a manual clock moving past
deadlines) and writes OUT_DIR/journal/ and OUT_DIR/expected.json: the older replay's sequence,
cash total and a SHA-256 of each state array. ``test_old_journal.py`` replays the same journal
with today's code and compares. It uses only engine calls that version had.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from engine import commands as c
from engine import markets_commands as mc
from engine import offerings_commands as oc
from engine.clock import ManualClock
from engine.sequencer import Engine, replay_from_empty

START_US = 1_767_225_600_000_000  # 2026-01-01
DAY_US = 86_400_000_000


async def _drive(engine: Engine) -> None:
    async def ok(command, actor=0) -> dict:
        reply = await engine.submit(command, actor)
        if reply.status >= 300:
            raise RuntimeError(f"{command} refused: {reply.body}")
        return reply.body

    await ok(c.Genesis("op-hash", True, START_US, "intl", c.RULES_VERSION))
    issuer = (await ok(c.CreateAccount("issuer", "issuer", "k-issuer"), 2))["account_id"]
    traders = []
    for n in range(6):
        body = await ok(c.CreateAccount("investor", f"t{n}", f"k{n}",
                                        investor_class="institutional"), 2)
        traders.append(body["account_id"])
        await ok(c.Deposit(body["account_id"], 5_000_000_00, f"d{n}"), 2)
    await ok(c.Deposit(issuer, 1_000_000_00, "issuer"), 2)
    deadline = START_US + 30 * DAY_US
    boards = [("equity", {"price": 10_00, "min_quantity": 10, "max_quantity": 10_000,
                          "lockup_days": 0}),
              ("ip", {"price": 5_00, "min_quantity": 10, "max_quantity": 10_000,
                      "royalty_share_bps": 1000, "lockup_days": 0}),
              ("debt", {"face_value": 100_00, "min_quantity": 10, "max_quantity": 1000,
                        "term_months": 6, "repayment": "amortizing", "rate_bps": 900,
                        "lockup_days": 0}),
              ("product", {"goal": 1_000_00, "tiers": [{"tier_id": "a", "price": 100_00,
                                                        "quantity": 50}]})]
    projects = []
    for board, terms in boards:
        body = await ok(oc.CreateProject(board, board, "d", deadline, terms), issuer)
        projects.append(body["project_id"])
        await ok(oc.ReviewProject(body["project_id"], True), 2)
        for n, trader in enumerate(traders):
            extra = {"tier_id": "a"} if board == "product" else {}
            await engine.submit(oc.Subscribe(body["project_id"], 5 + 3 * n, **extra), trader)
    await ok(c.AdvanceClock(31 * 86_400), 2)
    await _trade(engine, traders, projects[0])
    await engine.submit(oc.Distribute(projects[1], 1_234_56), issuer)
    await engine.submit(oc.Distribute(projects[2], 50_00), issuer)
    await engine.submit(oc.ConfirmDelivery(projects[3], True), 2)
    for n, trader in enumerate(traders[:3]):
        await engine.submit(c.Withdraw(trader, 1_00 + n, f"w{n}"), trader)
    await ok(c.AdvanceClock(40 * 86_400), 2)  # past the debt's first instalments


async def _trade(engine: Engine, traders: list[int], instrument: int) -> None:
    """Orders at once (one batch, as a busy server's), with cancels of recent ones."""
    rng = np.random.default_rng(5)
    pending = []
    for n in range(600):
        who = traders[int(rng.integers(0, len(traders)))]
        if n % 5 == 4:
            pending.append(engine.submit(mc.CancelOrder(int(rng.integers(1, n + 1))), who))
            continue
        side = "buy" if rng.random() < 0.5 else "sell"
        price = 10_00 + int(rng.integers(-20, 21))
        stp = ["cancel_newest", "cancel_oldest", "decrement"][n % 3]
        pending.append(engine.submit(mc.PlaceOrder(instrument, side, "limit", price,
                                                   int(rng.integers(1, 8)),
                                                   self_trade_prevention=stp), who))
    await asyncio.gather(*pending)


def digests(machine) -> dict[str, str]:
    return {name: hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
            for name, array in sorted(machine.arrays().items())}


def main(out: Path) -> None:
    data = out / "venue"
    if data.exists():
        shutil.rmtree(data)
    engine = Engine(data, ManualClock(), sync=False)

    async def run() -> None:
        await engine.start()
        await _drive(engine)
        await engine.stop()

    asyncio.run(run())
    machine = replay_from_empty(data)
    shutil.rmtree(out / "journal", ignore_errors=True)
    shutil.copytree(data / "journal", out / "journal")
    shutil.rmtree(data)
    (out / "expected.json").write_text(json.dumps({
        "sequence": machine.last_sequence, "cash_total": machine.cash_total(),
        "arrays": digests(machine)}, indent=1) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
