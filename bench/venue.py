"""A busy venue's mixed traffic as a journal, for ``crowdex bench recovery --mix mixed``.

``bench.workload`` is order flow alone; a venue's journal also holds everything around it. This
module plays a venue of several thousand accounts on every board for ``days`` of exchange time
(wall clock, compressed: one journal of a million commands covers two months, so offerings open,
close at their deadlines, lock-ups end and the IP call auction runs daily inside it) and writes
each command to a journal. The commands are drawn with the shares of ``MIX`` (per cent of the
commands after the opening prefix) and ``RARE`` (per million); what each names comes from the
state as the journal is written, so most of them succeed and the rest are refused for the
reasons a real venue sees:

- orders (limit, market, IOC, post-only, some with a client_order_id) on every tradable
  instrument, the IP ones resting for the auction; sells by holders; cancels of recent orders
  (some already filled, a few of ids never given), amends (a lower quantity or a new price);
- subscriptions to the open offerings of all five boards (debt auction bids, product tiers with
  limits per backer), refused when sold out, over a retail investor's limit, above the auction's
  rate or after the close; cancels of live subscriptions;
- deposits (operator, with a reference; a few repeat a reference, some with another amount),
  withdrawals (some beyond what is withdrawable), new investor and issuer accounts;
- projects listed, reviewed (one in ten rejected) and some closed early by the operator on every
  board; debt repayments and IP royalties, operating-rights revenue reports, operator uncrosses;
- ticks, and a settlement batch every ``batch_every`` commands: ``PrepareSettlement`` (which
  pays the pending distributions), then ``BatchCommitted`` with the movements the engine held at
  its cutoff, as ``settlement.batch`` sends them;
- an Idempotency-Key on ``KEYED_SHARE`` of client commands (a third of deposits, withdrawals and
  new accounts), and a retry of one in a hundred keyed commands, answered from memory.

The default mix, of the commands after the opening: orders 35 %, their cancels 11 %, amends 3 %,
subscriptions 21 %, their cancels 2 %, deposits 14 %, withdrawals 5.5 %, new accounts 2 %, ticks
0.3 %; per million: listings 500 (each reviewed in the next group), early closes 100,
distributions 500, revenue reports 300, operator uncrosses 200; a settlement batch (two commands)
every 25,000. What the venue made of it (how much was refused) is measured, not set: see
``mix_table``, which ``crowdex bench recovery --mix mixed`` prints.

Entries are stamped in group commits of 16 to 512 (one time each), as a busy server's sequencer
writes them. The machine that wrote the journal applied every entry (``apply_batch`` per group),
so its state hash is what a replay must reach.
"""

from __future__ import annotations

import argparse
import bisect
import collections
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from boards import operating_rights as orb
from engine import commands as c
from engine import markets_commands as mc
from engine import offerings_commands as oc
from engine.journal import FileJournal
from engine.machine import Reply, StateMachine
from settlement.commands import BatchCommitted, PrepareSettlement

START_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
DAY_US = 86_400_000_000
DAYS = 60  # exchange time the traffic covers (compressed: see the module docstring)
OPERATOR = 2
INVESTORS = 2000  # at the start; CreateAccount adds more
ISSUERS = 40
INVESTOR_CASH_FEN = 10**10  # each investor's first deposit
ISSUER_CASH_FEN = 10**11
GROUP_MIN, GROUP_MAX = 16, 512  # entries per group commit (the traffic's, by default)
BATCH_EVERY = 25_000  # commands between settlement batches
KEYED_SHARE = 0.10  # client commands with an Idempotency-Key
RETRY_SHARE = 0.01  # keyed commands sent twice
RECENT_MAX = 20_000  # recent orders and subscriptions kept as targets for cancels

# Per cent of the commands after the opening (settlement batches come on top, by count).
MIX: tuple[tuple[str, float], ...] = (
    ("place_order", 35.0), ("cancel_order", 11.0), ("amend_order", 3.0),
    ("subscribe", 21.0), ("cancel_subscription", 2.0),
    ("deposit", 14.0), ("withdraw", 5.5), ("create_account", 2.0), ("tick", 0.3),
)
# Rare commands: per million, and at least this many in any journal (a short one too lists
# projects, closes them and pays distributions).
RARE: tuple[tuple[str, float, int], ...] = (
    ("create_project", 500, 12), ("close_project", 100, 3), ("distribute", 500, 6),
    ("report_revenue", 300, 2), ("run_auction", 200, 3),
)
BOARD_SHARES = (("equity", 0.35), ("debt", 0.2), ("ip", 0.15), ("product", 0.2),
                ("operating_rights", 0.1))


@dataclass
class MixedJournal:
    """What ``build_journal`` wrote: entry counts, and the state the writing machine reached."""

    prefix: int  # entries of the opening (venue, accounts, first offerings)
    total: int
    state_hash: str
    counts: dict[str, int]  # per command type, every entry
    refused: dict[str, int]  # per command type, replies 4xx
    keyed: int  # entries with an Idempotency-Key
    # Stretches of consecutive orders and cancels of one group commit, which the state machine
    # can match together (``StateMachine.apply_batch``): how many, and the commands in them.
    order_runs: int = 0
    order_commands: int = 0


@dataclass
class _Book:
    """The generator's view of one tradable instrument."""

    instrument_id: int
    board: str
    mid_fen: int
    holders: list[tuple[int, int]] = field(default_factory=list)  # (account, units available)


class VenueTraffic:
    """Draws a busy venue's commands from its state and applies them (see the module doc)."""

    def __init__(self, journal: FileJournal, seed: int, commands: int, *, days: int = DAYS,
                 investors: int = INVESTORS, batch_every: int = BATCH_EVERY,
                 group_max: int = GROUP_MAX) -> None:
        self.journal = journal
        self.rng = np.random.default_rng(seed)
        self.machine = StateMachine()
        self.machine.wants = lambda channel: False  # nobody subscribed: no updates to build
        self.commands = commands
        self.step_us = max(1, days * DAY_US // max(commands, 1))  # exchange time per command
        self.start_investors = investors
        self.batch_every = batch_every
        # The traffic's group commits (one exchange time each): GROUP_MIN to group_max
        # entries, or 1 to group_max where that is smaller (a venue less busy).
        self.group_sizes = (min(GROUP_MIN, group_max), group_max)
        self.now_us = START_US
        self.sequence = 0
        self.prefix = 0  # entries of the opening
        self.investors: list[int] = []
        self.issuers: list[int] = []
        self.books: dict[int, _Book] = {}
        self.open_projects: list[tuple[int, str]] = []
        self.closed_projects: list[int] = []
        self.pending_review: list[int] = []
        self.newcomers: list[int] = []  # accounts opened in the last group: they fund them
        self.resting: list[tuple[int, int, int]] = []  # (order_id, owner, price), oldest first
        self.live_subs: list[tuple[int, int]] = []  # (subscription_id, account)
        self.deposits: list[tuple[int, str, int]] = []  # (account, reference, amount)
        self.counter = 0  # for unique references, keys and names
        self.counts: collections.Counter[str] = collections.Counter()
        self.refused: collections.Counter[str] = collections.Counter()
        self.keyed = self.order_runs = self.order_commands = 0
        self.batch_id = 0
        rare = [(name, max(per_million / 1e4, least * 100 / max(commands, 1)))
                for name, per_million, least in RARE]
        self.kinds = [name for name, _ in MIX + tuple(rare)]
        shares = np.array([share for _, share in MIX + tuple(rare)])
        self.cumulative = np.cumsum(shares / shares.sum()).tolist()

    # ---- applying -------------------------------------------------------------------------------

    def apply(self, entries: list[c.Entry]) -> list[Reply]:
        """Journal a group commit and apply it on the writing machine; count what was
        refused."""
        first = self.sequence + 1
        self.journal.append([(first + i, c.encode_entry(e)) for i, e in enumerate(entries)])
        replies = self.machine.apply_batch(first, entries)
        self.sequence += len(entries)
        in_run = False
        for entry, reply in zip(entries, replies, strict=True):
            kind = type(entry.command).__name__
            is_order = kind in ("PlaceOrder", "CancelOrder")
            self.order_runs += is_order and not in_run
            self.order_commands += is_order
            in_run = is_order
            self.counts[kind] += 1
            if reply.status >= 500:
                raise RuntimeError(f"the venue answered {reply.status} to {entry}: {reply.body}")
            if reply.status >= 400:
                self.refused[kind] += 1
            if entry.idempotency_key is not None:
                self.keyed += 1
        return replies

    def _entry(self, actor: int, command: Any, keyed: bool | None = None) -> c.Entry:
        if keyed is None:
            keyed = self.rng.random() < KEYED_SHARE
        if not keyed:
            return c.Entry(self.now_us, actor, command)
        self.counter += 1
        return c.Entry(self.now_us, actor, command, f"key-{self.counter}", f"hash-{self.counter}")

    def _unique(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter}"

    def _pick(self, items: list) -> Any:
        return items[int(self.rng.integers(len(items)))]

    def _pick_recent(self, items: list) -> Any:
        """Take one of the newest items out of ``items`` (most cancels name recent ones)."""
        back = min(int(self.rng.geometric(0.05)), len(items))
        index = len(items) - back
        items[index], items[-1] = items[-1], items[index]
        return items.pop()

    # ---- the opening --------------------------------------------------------------------------

    def opening(self) -> None:
        """The venue, its first accounts and one offering per board, subscribed and closed (all
        but product's with no lock-up: their books open at once)."""
        self.apply([c.Entry(self.now_us, 0, c.Genesis("bench-operator", False, START_US,
                                                      "intl", c.RULES_VERSION))])
        accounts = [self._new_account("issuer") for _ in range(ISSUERS)]
        accounts += [self._new_account("investor") for _ in range(self.start_investors)]
        self._apply_grouped(accounts, self._remember_accounts)
        money = [c.Entry(self.now_us, OPERATOR, c.Deposit(
            account, ISSUER_CASH_FEN if account in self.issuers else INVESTOR_CASH_FEN,
            self._unique("open"))) for account in self.issuers + self.investors]
        self._apply_grouped(money, None)
        listed = [c.Entry(self.now_us, self.issuers[n], self._project(board, opening=True))
                  for n, (board, _) in enumerate(BOARD_SHARES)]
        self._apply_grouped(listed, None)
        projects = sorted(self.machine.component("offerings").projects)
        self._apply_grouped(
            [c.Entry(self.now_us, OPERATOR, oc.ReviewProject(p, True)) for p in projects], None)
        self._refresh()
        subscriptions = [self._entry(investor, self._subscription(investor), keyed=False)
                         for investor in self.investors for _ in range(3)]
        self._apply_grouped(subscriptions, None)
        closes = [c.Entry(self.now_us, OPERATOR, oc.CloseProject(p)) for p in projects]
        self._apply_grouped(closes, None)
        self._refresh()
        self._refresh_holders()
        self.newcomers = []  # funded above

    def _apply_grouped(self, entries: list[c.Entry], after: Any) -> None:
        for start in range(0, len(entries), GROUP_MAX):
            group = entries[start:start + GROUP_MAX]
            replies = self.apply(group)
            if after is not None:
                after(group, replies)

    def _new_account(self, role: str) -> c.Entry:
        """A CreateAccount by the operator; a third of investors retail (with income and net
        worth over the threshold, so their limit is the 124,000.00 cap), the rest qualified
        or institutional."""
        name = self._unique(role)
        if role == "issuer":
            command = c.CreateAccount("issuer", name, f"kh-{name}", investor_class="institutional")
        else:
            roll = self.rng.random()
            klass = "retail" if roll < 0.35 else "qualified" if roll < 0.75 else "institutional"
            income = int(self.rng.integers(130_000_00, 900_000_00)) if klass == "retail" else None
            command = c.CreateAccount("investor", name, f"kh-{name}", investor_class=klass,
                                      annual_income=income, net_worth=income)
        keyed = self.rng.random() < 0.3
        if keyed:
            command.reply_api_key = f"api-{name}"
        return self._entry(OPERATOR, command, keyed)

    def _remember_accounts(self, entries: list[c.Entry], replies: list[Reply]) -> None:
        for entry, reply in zip(entries, replies, strict=True):
            if type(entry.command) is c.CreateAccount and reply.status == 201:
                role = entry.command.role
                account = reply.body["account_id"]
                (self.issuers if role == "issuer" else self.investors).append(account)
                self.newcomers.append(account)

    # ---- offerings ----------------------------------------------------------------------------

    def _project(self, board: str, opening: bool = False) -> oc.CreateProject:
        """A listing on ``board`` whose deadline suits the board; the opening's succeed with any
        subscription and have no lock-up, later ones need 5,000 to 25,000 units subscribed and
        a third of them are locked up for 30 days."""
        rng = self.rng
        low = 1 if opening else int(rng.integers(5_000, 25_000))
        high = 100_000 if opening else int(low * rng.uniform(1.0, 1.6))
        lockup = 0 if opening or rng.random() < 0.67 else 30
        price = int(rng.integers(5, 50)) * 100
        days = {"product": 2, "debt": 8}.get(board, 22) + int(rng.integers(0, 6))
        if board == "equity":
            terms: dict = {"price": price, "min_quantity": low, "max_quantity": high,
                           "lockup_days": lockup}
        elif board == "ip":
            terms = {"price": price, "min_quantity": low // 2 + 1, "max_quantity": high,
                     "royalty_share_bps": 1000, "lockup_days": lockup}
        elif board == "operating_rights":
            terms = {"price": price, "min_quantity": low // 2 + 1, "max_quantity": high,
                     "term_months": 6, "revenue_share_bps": 500, "buyback_price": price,
                     "lockup_days": lockup}
        elif board == "debt":
            terms = {"face_value": 10_000, "min_quantity": low // 10 + 1,
                     "max_quantity": high // 10 + 1, "term_months": 12,
                     "repayment": "amortizing" if rng.random() < 0.7 else "bullet",
                     "lockup_days": 0}
            if rng.random() < 0.6:
                terms["rate_bps"] = int(rng.integers(500, 1200))
            else:
                terms["auction"] = {"max_rate_bps": 1500}
        else:
            terms = {"goal": 1 if opening else low * 300, "tiers": [
                {"tier_id": "early", "price": 5_000, "quantity": 300, "max_per_backer": 3},
                {"tier_id": 2, "price": price * 10, "quantity": None}]}
        title = self._unique(board)
        return oc.CreateProject(board, title, f"{title}: a project of the bench venue",
                                self.now_us + days * DAY_US, terms)

    def _subscription(self, investor: int) -> oc.Subscribe:
        """A subscription to an open offering (one in thirty to a closed one: refused)."""
        rng = self.rng
        if self.closed_projects and (not self.open_projects or rng.random() < 1 / 30):
            return oc.Subscribe(self._pick(self.closed_projects), int(rng.integers(1, 50)))
        project_id, board = self._pick(self.open_projects)
        if board == "product":
            if rng.random() < 0.4:
                return oc.Subscribe(project_id, int(rng.integers(1, 3)), tier_id="early")
            return oc.Subscribe(project_id, int(rng.integers(1, 6)), tier_id=2)
        quantity = int(rng.integers(1, 100))
        if board == "debt":
            project = self.machine.component("offerings").projects[project_id]
            if "auction" in project.terms:  # one bid in twenty above the highest rate
                return oc.Subscribe(project_id, quantity // 5 + 1,
                                    rate_bps=int(rng.integers(400, 1580)))
            quantity = quantity // 5 + 1
        return oc.Subscribe(project_id, quantity)

    def _refresh(self) -> None:
        """The open offerings and tradable books, read from the state (after each group)."""
        offerings = self.machine.component("offerings")
        now = self.machine.now_us
        self.open_projects = [(p.project_id, p.board) for p in offerings.projects.values()
                              if p.status == "open" and p.deadline_us > now]
        self.closed_projects = [p.project_id for p in offerings.projects.values()
                                if p.status in ("succeeded", "failed", "trading")]
        for project in offerings.projects.values():
            if project.status == "trading" and project.project_id not in self.books:
                info = offerings.instrument_info(project.project_id)
                if info is not None and info.tradable:
                    self.books[project.project_id] = _Book(
                        project.project_id, project.board, info.reference_price_fen)

    def _refresh_holders(self) -> None:
        """Who holds units of each book (sellers are drawn from them)."""
        positions = self.machine.balances.positions.live()
        held = positions[positions["units_available"] > 0]
        for book in self.books.values():
            mine = held[held["instrument_id"] == book.instrument_id]
            book.holders = list(zip(mine["account_id"].tolist(),
                                    mine["units_available"].tolist(), strict=True))

    # ---- the commands of the mix -------------------------------------------------------------

    def _place_order(self) -> c.Entry | None:
        if not self.books:
            return None
        rng = self.rng
        first = next(iter(self.books.values()))  # the busiest book takes half the orders
        book = first if rng.random() < 0.5 else self._pick(list(self.books.values()))
        side, quantity = "buy", int(rng.integers(1, 100))
        actor = self._pick(self.investors)
        if rng.random() < 0.5 and book.holders:  # a holder sells part of what it held lately
            side = "sell"
            actor, units = self._pick(book.holders)
            quantity = min(quantity, max(units // 4, 1))
        book.mid_fen = max(50, book.mid_fen + int(rng.integers(-1, 2)))
        roll = rng.random()
        if book.board == "ip":  # the call auction takes resting limit orders only
            roll = 0.5
        if roll < 0.08:
            return self._entry(actor, mc.PlaceOrder(book.instrument_id, side, "market", 0,
                                                    quantity // 3 + 1))
        offset = int(rng.integers(0, 40)) - (8 if rng.random() < 0.1 else 0)
        price = book.mid_fen + offset if side == "sell" else book.mid_fen - offset
        command = mc.PlaceOrder(
            book.instrument_id, side, "limit", max(price, 1), quantity,
            time_in_force="ioc" if roll > 0.95 else "gtc", post_only=0.92 < roll <= 0.95,
            client_order_id=self._unique("cid") if rng.random() < 0.05 else None)
        return self._entry(actor, command)

    def _cancel_order(self) -> c.Entry | None:
        if not self.resting or self.rng.random() < 0.04:  # an id never given
            actor = self._pick(self.investors)
            return self._entry(actor, mc.CancelOrder(10**9 + self.counter))
        order_id, owner, _ = self._pick_recent(self.resting)
        return self._entry(owner, mc.CancelOrder(order_id))

    def _amend_order(self) -> c.Entry | None:
        if not self.resting:
            return None
        back = min(int(self.rng.geometric(0.05)), len(self.resting))
        order_id, owner, price = self.resting[-back]
        if self.rng.random() < 0.5:  # a new quantity (a lower one keeps its place)
            return self._entry(owner, mc.AmendOrder(order_id, quantity=int(
                self.rng.integers(1, 60))))
        return self._entry(owner, mc.AmendOrder(order_id, price=max(1, price + int(
            self.rng.integers(-5, 6)))))

    def _subscribe(self) -> c.Entry | None:
        if not self.open_projects and not self.closed_projects:
            return None
        investor = self._pick(self.investors)
        return self._entry(investor, self._subscription(investor))

    def _cancel_subscription(self) -> c.Entry | None:
        if not self.live_subs:
            return None
        subscription_id, account = self._pick_recent(self.live_subs)
        return self._entry(account, oc.CancelSubscription(subscription_id))

    def _deposit(self) -> c.Entry | None:
        rng = self.rng
        roll = rng.random()
        if self.deposits and roll < 0.02:  # the bank's message again: the first reply
            account, reference, amount = self._pick(self.deposits)
            if roll < 0.005:  # the same reference for another amount: refused
                amount += 1
            return self._entry(OPERATOR, c.Deposit(account, amount, reference),
                               rng.random() < 0.3)
        account = self._pick(self.issuers if roll < 0.1 else self.investors)
        amount = int(rng.integers(10_000, 10_000_000))
        reference = self._unique("dep")
        self.deposits.append((account, reference, amount))
        return self._entry(OPERATOR, c.Deposit(account, amount, reference), rng.random() < 0.3)

    def _withdraw(self) -> c.Entry | None:
        account = self._pick(self.investors)
        too_much = self.rng.random() < 0.05
        amount = 10**15 if too_much else int(self.rng.integers(1_000, 1_000_000))
        return self._entry(account, c.Withdraw(account, amount, self._unique("wd")),
                           self.rng.random() < 0.3)

    def _create_account(self) -> c.Entry | None:
        return self._new_account("issuer" if self.rng.random() < 0.05 else "investor")

    def _tick(self) -> c.Entry | None:
        return c.Entry(self.now_us, 0, c.Tick())

    def _create_project(self) -> c.Entry | None:
        roll, board = self.rng.random(), BOARD_SHARES[-1][0]
        for name, share in BOARD_SHARES:
            if roll < share:
                board = name
                break
            roll -= share
        return self._entry(self._pick(self.issuers), self._project(board))

    def _close_project(self) -> c.Entry | None:
        if not self.open_projects:
            return None
        project_id, _ = self._pick(self.open_projects)
        return self._entry(OPERATOR, oc.CloseProject(project_id), keyed=False)

    def _distribute(self) -> c.Entry | None:
        """A debt repayment or an IP royalty by the issuer of a succeeded offering."""
        offerings = self.machine.component("offerings")
        paying = [project_id for project_id, book in self.books.items()
                  if book.board in ("debt", "ip")]
        if not paying:
            return None
        project = offerings.projects[self._pick(paying)]
        amount = int(self.rng.integers(10_000, 2_000_000))
        return self._entry(project.issuer_id, oc.Distribute(project.project_id, amount))

    def _report_revenue(self) -> c.Entry | None:
        """An operating-rights issuer reports the first month of its term that is over and not
        yet reported (a tenth of the time the month before it again: refused)."""
        offerings = self.machine.component("offerings")
        last_over = orb.month_index(self.now_us) - 1
        due = []
        for project_id, state in sorted(offerings.terms.states.items()):
            reported = {report.month for report in state.reports}
            months = [m for m in state.term.months() if m <= last_over and m not in reported]
            if months:
                due.append((project_id, months[0]))
        if not due:
            return None
        project_id, month = self._pick(due)
        if self.rng.random() < 0.1:
            month -= 1
        revenue = int(self.rng.integers(0, 50_000_000))
        return self._entry(offerings.projects[project_id].issuer_id, oc.ReportRevenue(
            project_id, orb.month_text(month), revenue))

    def _run_auction(self) -> c.Entry | None:
        auctions = [i for i, book in self.books.items() if book.board == "ip"]
        if not auctions:
            return None
        return self._entry(OPERATOR, mc.RunAuction(self._pick(auctions)), keyed=False)

    # ---- the traffic --------------------------------------------------------------------------

    def group(self, size: int) -> list[c.Entry]:
        """``size`` commands of the mix, stamped now; reviews of the last group's listings
        first (an operator reviews what was listed)."""
        entries = [c.Entry(self.now_us, OPERATOR, oc.ReviewProject(
            project_id, self.rng.random() < 0.9)) for project_id in self.pending_review]
        entries += [c.Entry(self.now_us, OPERATOR, c.Deposit(
            account, INVESTOR_CASH_FEN // 100, self._unique("first")))
            for account in self.newcomers]
        self.pending_review, self.newcomers = [], []
        rolls = self.rng.random(size).tolist()
        while len(entries) < size:
            kind = self.kinds[bisect.bisect_right(self.cumulative, rolls[len(entries)])]
            entry = getattr(self, f"_{kind}")() or self._deposit()
            entries.append(entry)
            if entry.idempotency_key is not None and self.rng.random() < RETRY_SHARE:
                entries.append(entry)  # a client's retry, answered from memory
        return entries

    def learn(self, entries: list[c.Entry], replies: list[Reply]) -> None:
        """What the generator needs of the replies: new ids to aim later commands at."""
        self._remember_accounts(entries, replies)
        for entry, reply in zip(entries, replies, strict=True):
            command = entry.command
            if reply.status >= 300:
                continue
            kind = type(command)
            if kind is mc.PlaceOrder and reply.body["status"] in ("open", "partially_filled"):
                self.resting.append((reply.body["order_id"], entry.actor, command.price))
            elif kind is oc.Subscribe:
                self.live_subs.append((reply.body["subscription_id"], entry.actor))
            elif kind is oc.CreateProject:
                self.pending_review.append(reply.body["project_id"])
        for recent in (self.resting, self.live_subs, self.deposits):
            del recent[:-RECENT_MAX]

    def settle(self) -> None:
        """A settlement batch as ``settlement.batch`` runs one: ``PrepareSettlement`` in a group
        of its own, then ``BatchCommitted`` with the movements up to its cutoff."""
        self.now_us += self.step_us
        self.apply([c.Entry(self.now_us, OPERATOR, PrepareSettlement())])
        cutoff = self.machine.last_sequence
        pending = self.machine.movements.upto(cutoff)
        last_id = int(pending["movement_id"][-1]) if len(pending) else 0
        self.batch_id += 1
        self.apply([c.Entry(self.now_us, 0, BatchCommitted(self.batch_id, cutoff, len(pending),
                                                           last_id))])

    def run(self) -> None:
        """The opening, then ``commands`` commands of the mix in group commits."""
        self.opening()
        self.prefix = self.sequence
        self.counts.clear()
        self.refused.clear()
        self.keyed = self.order_runs = self.order_commands = 0
        since_batch = groups = 0
        while self.sequence - self.prefix < self.commands:
            size = min(int(self.rng.integers(self.group_sizes[0], self.group_sizes[1] + 1)),
                       self.commands - (self.sequence - self.prefix))
            self.now_us += size * self.step_us
            entries = self.group(size)
            self.learn(entries, self.apply(entries))
            since_batch += len(entries)
            if since_batch >= self.batch_every:
                self.settle()
                since_batch = 0
            groups += 1
            self._refresh()
            if groups % 8 == 0:
                self._refresh_holders()


def build_journal(data_dir: Path, commands: int, seed: int, *, days: int = DAYS,
                  investors: int = INVESTORS, batch_every: int = BATCH_EVERY,
                  group_max: int = GROUP_MAX) -> MixedJournal:
    """Write a venue's journal of its opening plus about ``commands`` mixed commands (a group
    may end a few past it) to ``data_dir/journal``; what was written and the state reached.
    ``group_max``: the most entries a group commit of the traffic holds (all at one time)."""
    journal = FileJournal(Path(data_dir) / "journal", sync=False)
    try:
        traffic = VenueTraffic(journal, seed, commands, days=days, investors=investors,
                               batch_every=batch_every, group_max=group_max)
        traffic.run()
    finally:
        journal.close()
    return MixedJournal(traffic.prefix, traffic.sequence, traffic.machine.state_hash(),
                        dict(traffic.counts), dict(traffic.refused), traffic.keyed,
                        traffic.order_runs, traffic.order_commands)


def add_arguments(parser: argparse.ArgumentParser, note: str = "") -> None:
    """The mixed journal's size and shape as command-line options (``note``: what to say
    before each help, such as the option that selects the mix)."""
    parser.add_argument("--commands", type=int, default=1_000_000,
                        help=f"{note}commands after the venue's opening (%(default)s)")
    parser.add_argument("--days", type=int, default=DAYS,
                        help=f"{note}exchange days the traffic covers (%(default)s)")
    parser.add_argument("--investors", type=int, default=INVESTORS,
                        help=f"{note}investors at the opening (%(default)s)")
    parser.add_argument("--group-max", type=_positive, default=GROUP_MAX,
                        help=f"{note}most entries of a group commit, all at one exchange "
                        f"time: {GROUP_MIN} to it each (%(default)s); below {GROUP_MIN}, 1 to it "
                        "(a venue less busy, whose journal changes time more often)")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def mix_table(written: MixedJournal) -> str:
    """The mix as written (after the opening): per command, its share and how much of it the
    venue refused."""
    mixed = written.total - written.prefix
    lines = [f"the mix ({mixed:,} commands; {written.keyed / mixed:.1%} with an "
             "Idempotency-Key):", f"  {'command':<22}{'count':>10}{'share':>9}{'refused':>10}"]
    for kind, count in sorted(written.counts.items(), key=lambda item: -item[1]):
        refused = written.refused.get(kind, 0) / count
        lines.append(f"  {kind:<22}{count:>10,}{count / mixed:>9.2%}{refused:>10.1%}")
    if written.order_runs:
        lines.append(f"orders and cancels come in {written.order_runs:,} runs between other "
                     f"commands, {written.order_commands / written.order_runs:.2f} a run")
    return "\n".join(lines)
