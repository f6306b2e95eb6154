"""The deterministic state machine: applies journaled entries, one at a time, in sequence order.

Nothing else mutates exchange state. ``apply`` is a pure function of the state and the entry
(time included), so replaying the journal from the last snapshot rebuilds the identical state,
which ``state_hash`` checks. Each command returns a ``Reply`` (an HTTP status and a body);
refusals are replies too, so an idempotent retry replays a refusal exactly like a success.
"""

from __future__ import annotations

import functools
import importlib
import itertools
import operator
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

import msgspec
import numpy as np

from engine import commands as c
from engine import markets_commands as mc
from engine import movements as mv
from engine.cash_batch import CashBatch
from engine.clock import TIME_US_MAX, format_time_us
from engine.errors import CrowdexError
from engine.kernels.entries import KIND_OTHER, ClientIds, scan_with_client_ids
from engine.kernels.movements import sales_before
from engine.references import DEPOSIT, WITHDRAWAL, References, Use, use_reply
from engine.replies import Reply, Stored
from engine.snapshot import state_hash
from engine.state import Balances

ROLES = {"investor": 1, "issuer": 2, "operator": 3, "fee": 4}
ROLE_NAMES = {v: k for k, v in ROLES.items()}
INVESTOR_CLASSES = {"retail": 1, "qualified": 2, "institutional": 3}

# Idempotency keys are kept at least this long (API.md: at least 24 h), and at most this many.
IDEMPOTENCY_TTL_US = 24 * 3600 * 1_000_000
IDEMPOTENCY_KEYS_MAX = 2_000_000
# All the cash in the venue, in fen (API.md's bound on any amount). Deposits are the only way
# cash comes in and every balance, reservation and total is a part of it, so no int64 column
# can overflow and every figure a client reads is an exact JSON number.
CASH_TOTAL_MAX = 2**53
# A live run of at least this many plain orders and cancels, read from their journal bytes,
# is checked and queued as columns (``StateMachine._plain_columns``, ``apply_batch``); a batch
# shorter than that is not even scanned. Below it the columns path's fixed costs a call
# outweigh what bulk checks save: mixed traffic's runs are a few orders between deposits,
# subscriptions and keyed orders.
LIVE_COLUMNS_MIN = 64
# A run of orders named by a client_order_id (the gateway's load client names every order)
# has a Python step each for its ids on the columns path too (``engine.markets_live._named``,
# the ids kept): measured on bench gateway's traffic in one-time batches, the columns cost
# more than ``apply_run`` at 64 orders, as much at 100 and less from ~150 (2.3 against 3.0 us
# an order at 300).
LIVE_NAMED_COLUMNS_MIN = 128


# What a run's command does to its account's available cash (``Markets.cash_effect``), which
# says whether the run may carry a later command of that account (``_own_orders_allow``).
CASH_BY_FILLS = 0  # reads none; changes it only by fills, each with its movements
CASH_RELEASED = 1  # reads none; may raise it with no movement (a reservation released)
CASH_READ = 2  # may read it and lower it

_time_us = operator.attrgetter("time_us")


class AccountInfo(msgspec.Struct, array_like=True):
    account_id: int
    role: str
    name: str
    investor_class: str
    annual_income: int | None
    net_worth: int | None
    key_hash: str
    created_us: int


class Meta(msgspec.Struct, array_like=True):
    """Everything outside the numpy arrays, for snapshots and the state hash."""

    last_sequence: int
    now_us: int
    manual_clock: bool
    profile: str
    accounts: list[AccountInfo]
    references: list[tuple[int, str, Stored]]
    idempotency: list[tuple[int, str, Stored]]
    next_movement_id: int
    components: list[tuple[str, bytes]]
    deposits_total: int = 0
    withdrawals_total: int = 0
    rules: int = 1  # the venue's rules version (commands.RULES_VERSION)


class Component(Protocol):
    """A part of the state with its own commands (offerings, markets, settlement).

    Components get the machine at construction and reach balances, movements, accounts and
    the time through it. ``on_time`` runs after every entry so deadlines fire at the first
    entry stamped at or past them, identically on replay.
    """

    name: str

    def handlers(self) -> dict[type, Callable[[Any, int], Reply]]: ...

    def arrays(self) -> dict[str, np.ndarray]: ...

    def meta(self) -> bytes: ...

    def load(self, arrays: dict[str, np.ndarray], meta: bytes) -> None: ...

    def on_time(self) -> None: ...

    def next_deadline_us(self) -> int | None: ...


# Components are built in this order; each entry is (module, class name). Imported lazily so
# component modules may import this one.
COMPONENTS: tuple[tuple[str, str], ...] = (
    ("settlement.component", "SettlementComponent"),
    ("engine.offerings", "Offerings"),
    ("engine.markets", "Markets"),
    ("engine.offers", "Offers"),
)


_meta_encoder = msgspec.msgpack.Encoder()
_meta_decoder = msgspec.msgpack.Decoder(Meta)


class Carried(NamedTuple):
    """How a run of orders may carry a command (``StateMachine._apply_carrying``): the one account
    whose balances the command reads and changes (it reads nothing else an order changes),
    and what of them it reads (``StateMachine._apply_carrying`` says why these suffice):

    - ``rising``: it succeeds the same with more available cash, and shows no balance;
    - ``shows_cash``: it reads available cash only to show it (its reply's
      ``cash_available``), and reads the withdrawable part if ``withdrawable``; a reply
      that shows it is one the command keeps with a new reference (``references``), and
      one that adds no reference shows none that a run could change (a reference used
      before: its first reply);
    - ``opens_account``: it opens an account (``account`` gives 0, which holds nothing);
    - ``cash_codes``: for a ``rising`` command, the refusals that more available cash could
      have turned into a success (None: any refusal may be one); it is refused with any
      other code whatever cash the run's sales brought.
    """

    # ``_apply_carrying`` unpacks it as a tuple: these fields, in this order.
    account: Callable[[c.Entry], int]
    rising: bool = False
    shows_cash: bool = False
    withdrawable: bool = False
    opens_account: bool = False
    cash_codes: frozenset[str] | None = None


class _Walk:
    """What ``StateMachine._apply_carrying`` found and applied of a run before its orders go
    to the runner (``_apply_run``)."""

    __slots__ = ("moved", "replies", "ran", "items", "shown", "times", "keyed", "retries")

    def __init__(self, moved: int) -> None:
        self.moved = moved  # the movements' count before the run
        self.replies: list[Reply | None] = []  # the carried entries' (None: an order's)
        self.ran: list[int] = []  # the orders' indexes in the run
        self.items: list[tuple[int, int, Any]] = []  # their (sequence, actor, command)
        # (sequence, account, its reference's use) of the replies to complete (_show_cash).
        self.shown: list[tuple[int, int, Any]] = []
        # Where the run's exchange time moves on, if it does: (the first sequence at a time,
        # that time), the run's first time first (``_apply_carrying``).
        self.times: list[tuple[int, int]] = []
        # (index in the run, its time) of each entry with a new idempotency key, whose reply
        # the run remembers at that time (``_apply_run``).
        self.keyed: list[tuple[int, int]] = []
        # (index, the index of the entry it retries, the reply if a conflict) of retries of
        # a key an entry of the run used first: answered with that entry's reply once it has
        # one (``_apply_run``), or refused (``_answer_retry``).
        self.retries: list[tuple[int, int, Reply | None]] = []


def _command_account(entry: c.Entry) -> int:
    return entry.command.account_id


def _no_account(entry: c.Entry) -> int:
    return 0


# A reply nobody reads (``replies_needed`` False): shared, without a body.
_UNREAD_201 = Reply(201, None)


def refusal(error: CrowdexError) -> Reply:
    return Reply(error.status, error.body())


def _key_conflict() -> Reply:
    """The reply to an idempotency key used again for another request."""
    return refusal(CrowdexError("idempotency_key_conflict",
                                "this Idempotency-Key was used with a different request"))


class StateMachine:
    """The exchange state: balances in arrays, the rest in plain Python structures."""

    def __init__(self) -> None:
        self.balances = Balances()
        self.movements = mv.MovementLog()
        # Cash that entered and left the venue over its whole life: the conservation check is
        # cash_total() (+ cash held by projects) == deposits_total - withdrawals_total.
        self.deposits_total = 0
        self.withdrawals_total = 0
        self.accounts: dict[int, AccountInfo] = {}
        self.key_index: dict[str, int] = {}
        self.references = References()
        self.idempotency: dict[tuple[int, str], Stored] = {}
        # Its keys in its order, the oldest first (``_remember`` expires from the front): a
        # dict's deleted entries stay in its order until it is resized, so finding its first
        # key walked past every key expired since, at each entry with a key.
        self._idempotency_order: deque[tuple[int, str]] = deque()
        self._front_time = -1  # no more than the front key's time (``_remember``)
        self.last_sequence = 0
        self.now_us = 0
        self.manual_clock = False
        self.rules = 1  # set by Genesis
        self.profile = "intl"
        # Replaying (recovery, ``crowdex replay``): replies of commands without an idempotency
        # key are never sent nor remembered, so components may leave their bodies unbuilt
        # while ``replies_needed`` is False (set per entry and per run). Output, not state.
        self.quiet = False
        self.replies_needed = True
        # In a quiet run: the sequences of its entries whose replies are kept (idempotency
        # keys), the only ones built (None: all of them, while ``replies_needed``).
        self.replies_kept: frozenset[int] | None = None
        self._handlers: dict[type, Callable[[Any, int], Reply]] = {
            c.Genesis: self._genesis,
            c.SetOperatorKey: self._set_operator_key,
            c.CreateAccount: self._create_account,
            c.Deposit: self._deposit,
            c.Withdraw: self._withdraw,
            c.AdvanceClock: self._advance_clock,
            c.Tick: self._tick,
        }
        # Market-data updates produced while applying: (channel, data, sequence or None).
        # Output, not state: the sequencer hands them to the gateway after each batch and
        # recovery discards them.
        self.outbox: list[tuple[str, Any, int | None]] = []
        self.components: list[Component] = []
        for module_name, class_name in COMPONENTS:
            module = importlib.import_module(module_name)
            component = getattr(module, class_name)(self)
            self.components.append(component)
            overlap = set(component.handlers()) & set(self._handlers)
            if overlap:
                raise RuntimeError(f"{component.name} redefines handlers for {overlap}")
            self._handlers.update(component.handlers())
        # Components that apply runs of their commands at once (``run_types``/``apply_run``).
        self._runners: dict[type, Component] = {}
        for component in self.components:
            for kind in getattr(component, "run_types", tuple)():
                self._runners[kind] = component
        # The runner whose runs carry other commands (``_apply_carrying``): its orders rest.
        runner = self._runners.get(mc.PlaceOrder)
        self._order_runner = runner if hasattr(runner, "rests_orders") else None
        # Each runner's own types (``_apply_carrying``).
        self._run_kinds: dict[Component, frozenset[type]] = {
            component: frozenset(kind for kind, runs in self._runners.items()
                                 if runs is component)
            for component in self._runners.values()}
        # Commands a quiet machine's run of orders may carry (``_apply_carrying``): each reads and
        # changes the balances of one account (given here) and nothing an order reads.
        self._carried: dict[type, Carried] = {
            c.Deposit: Carried(_command_account, shows_cash=True),
            c.Withdraw: Carried(_command_account, shows_cash=True, withdrawable=True),
            c.CreateAccount: Carried(_no_account, opens_account=True),
            c.Tick: Carried(_no_account)}
        for component in self.components:
            self._carried.update(getattr(component, "carried_types", dict)())
        self._cash_batch = CashBatch(self, CASH_TOTAL_MAX)  # a walk's deposits, withdrawals

    # ---- applying entries -------------------------------------------------------------------

    def apply(self, sequence: int, entry: c.Entry) -> Reply:
        """Apply one journaled entry; the sequence must follow the last one applied."""
        self._follows(sequence)
        self.last_sequence = sequence
        self.now_us = max(self.now_us, entry.time_us)
        self.replies_needed = not self.quiet or entry.idempotency_key is not None
        key = None
        if entry.idempotency_key is not None:
            key = (entry.actor, entry.idempotency_key)
            stored = self.idempotency.get(key)
            if stored is not None:
                if stored.fingerprint != entry.request_hash:
                    return _key_conflict()
                return stored.reply
        try:
            reply = self._handlers[type(entry.command)](entry.command, entry.actor)
        except CrowdexError as error:
            reply = refusal(error)
        if key is not None and reply.status < 500 and reply.status != 429:
            self._remember(key, entry.request_hash or "", reply)
        for component in self.components:
            component.on_time()
        return reply

    def skip(self, sequence: int, entry: c.Entry, reason: str) -> Reply:
        """Apply an entry the operator skipped (``engine.skips``): its time passes and
        deadlines fire as for any entry, but its command never runs; a retry with its
        idempotency key is answered ``command_skipped``."""
        self._follows(sequence)
        self.last_sequence = sequence
        self.now_us = max(self.now_us, entry.time_us)
        reply = refusal(CrowdexError(
            "command_skipped", f"the operator skipped this command (journal entry {sequence}) "
            f"because it could not be applied: {reason}"))
        if entry.idempotency_key is not None:
            self._remember((entry.actor, entry.idempotency_key), entry.request_hash or "", reply)
        for component in self.components:
            component.on_time()
        return reply

    def apply_batch(self, first_sequence: int, entries: list[c.Entry],
                    payloads: Sequence[bytes] | None = None) -> list[Reply]:
        """Apply consecutive entries; exactly what ``apply`` one at a time would do.

        Consecutive entries of one component's run types (orders and cancels) that share a time
        with nothing due then, and whose idempotency keys are new, go to the component as one
        run, which matches them with as few kernel calls as exactness allows. While quiet, a
        run also carries the commands between and after its orders that it can apply first
        (``_apply_carrying``).

        ``payloads``: the entries' journal bytes (``c.encode_entry``; the sequencer has them;
        their commands must be the entries', their times are not read).
        With them, a live batch's plain orders and cancels (with a client_order_id or not)
        are read as columns by the replay's scanner and checked and queued in bulk
        (``_plain_columns``).
        """
        columns = self._plain_columns(entries, payloads)
        replies: list[Reply] = []
        i, n = 0, len(entries)
        while i < n:
            if self.quiet:  # a replay's runs carry the commands between their orders
                done = self._apply_carrying(first_sequence + i, entries, i)
                if done:
                    replies.extend(done)
                    i += len(done)
                    continue
            end, plain = (self._plain_end(columns, entries, i) if columns
                          else self._run_end(entries, i))
            if end - i < 2:
                replies.append(self.apply(first_sequence + i, entries[i]))
                i += 1
                continue
            if not plain:
                done = self._apply_run(first_sequence + i, entries[i:end])
            elif (columns and end - i >= LIVE_COLUMNS_MIN and columns[1][i:end].all()
                  and (end - i >= LIVE_NAMED_COLUMNS_MIN or not columns[3][i:end].any())):
                done = self._apply_plain_run(first_sequence + i, entries[i:end],
                                             columns[0][i:end], columns[3][i:end])
            else:
                # Short, or not all of it read as columns: one call the old way. The columns
                # path's fixed cost a call is larger, and mixed traffic's runs are short
                # (orders between deposits, subscriptions, keyed orders): applied that way,
                # bench recovery's mixed traffic took 31-34 us a command live, against 24-25.5
                # without it.
                done = self._apply_plain_run(first_sequence + i, entries[i:end])
            replies.extend(done)
            i += len(done)
        return replies

    def _plain_columns(self, entries: list[c.Entry], payloads: Sequence[bytes] | None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """A live batch's entries read by ``engine.kernels.entries.scan``: (commands as
        ``COMMAND_DTYPE`` rows, plain or not, times as written, whether each has a
        client_order_id); None while quiet (a replay has its own bulk path), for a batch too
        small to pay for it, or without payloads. Only the commands, and which have an id,
        are read from the bytes: times and the ids are the entries' own. An order with an id
        is plain (the gateway's load client names every order): read as one without, such a
        batch was scanned for nothing and went the slower way, 0.4-0.5 us an order more at
        batches of 100-300 than without the scan."""
        runner = self._runners.get(mc.PlaceOrder)
        if (payloads is None or self.quiet or len(entries) < LIVE_COLUMNS_MIN
                or not hasattr(runner, "apply_live_columns")):
            return None
        if len(payloads) != len(entries):
            raise ValueError(f"{len(payloads)} payloads for {len(entries)} entries")
        if (len(entries) < LIVE_NAMED_COLUMNS_MIN
                and getattr(entries[0].command, "client_order_id", None) is not None):
            return None  # its first run is named and too short for the columns: not scanned
        lengths = np.fromiter(map(len, payloads), dtype=np.int64, count=len(payloads))
        ends = np.cumsum(lengths)
        data = np.frombuffer(b"".join(payloads), dtype=np.uint8)
        commands, times, kinds, client_ids = scan_with_client_ids(data, ends - lengths, ends)
        return commands, kinds != KIND_OTHER, times, client_ids.present()

    def _plain_end(self, columns: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
                   entries: list[c.Entry], start: int) -> tuple[int, bool]:
        """``_run_end`` of a batch read as columns (``_plain_columns``): where every entry from
        ``start`` on is a plain order or cancel at ``start``'s time, the run is the rest of the
        batch, unless a deadline is due (then the entry alone); else ``_run_end``."""
        plain = columns[1]
        time_us = entries[start].time_us  # the entries', not their bytes': a replica restamps
        if not plain[start:].all():
            return self._run_end(entries, start)
        times = list(map(_time_us, entries[start:]))  # counted in C, not compared one by one
        if times.count(time_us) != len(times):
            return self._run_end(entries, start)
        due = self.next_deadline_us()
        if due is not None and due <= max(self.now_us, time_us):
            return start + 1, False
        return len(plain), True

    def reserve(self, commands: int) -> None:
        """Room for what ``commands`` more entries may add, where a component can take it at
        once (a replay knows how many are coming); capacity only, never state."""
        for component in self.components:
            reserve = getattr(component, "reserve", None)
            if reserve is not None:
                reserve(commands)

    def apply_orders(self, first_sequence: int, commands: np.ndarray, times: np.ndarray,
                     client_ids: ClientIds | None = None) -> int:
        """A replay's consecutive orders and cancels as columns (``engine.kernels.entries``:
        none with an idempotency key; ``client_ids``: the orders' client_order_ids, if any
        has one), applied by the markets in bulk
        (``engine.markets_bulk``) up to the first entry at or past a deadline or whose checks
        the others could change; returns how many (0: apply the first one through ``apply``).

        Only while ``quiet``: no reply nor update is built. The state is what ``apply`` one
        entry at a time gives, each entry at its own time (``max`` of the clock and its stamp).
        """
        self._follows(first_sequence)
        apply_columns = getattr(self._runners.get(mc.PlaceOrder), "apply_columns", None)
        if apply_columns is None or not self.quiet or not len(times):
            return 0  # no runs (BATCHED_RUNS off), or a component without a bulk path
        effective = np.maximum.accumulate(np.maximum(times, self.now_us))
        due = self.next_deadline_us()  # only other commands move it: none is in between
        count = len(times) if due is None else int(np.searchsorted(effective, due, "left"))
        if count == 0:
            return 0  # on_time fires after it: apply it alone
        done = apply_columns(first_sequence, commands[:count], effective[:count],
                             None if client_ids is None else client_ids[:count])
        if done:
            self.last_sequence = first_sequence + done - 1
            self.now_us = int(effective[done - 1])
            self.replies_needed = False
            for component in self.components:
                component.on_time()  # nothing was due; kept for symmetry with apply
        return done

    def _run_end(self, entries: list[c.Entry], start: int) -> tuple[int, bool]:
        """Where the run starting at ``start`` ends, one that carries nothing (a live one, or
        one of a runner that rests no orders: ``_apply_carrying`` finds a replay's): its
        orders and cancels (``_orders_end``); and whether the run is plain: only the runner's
        commands, none with an idempotency key (``_apply_plain_run``)."""
        first = entries[start]
        runner = self._runners.get(type(first.command))
        if runner is None:
            return start + 1, False
        time_us = max(self.now_us, first.time_us)
        due = self.next_deadline_us()
        if due is not None and due <= time_us:
            return start + 1, False  # on_time fires after this entry: apply it alone
        return self._orders_end(entries, start, runner)

    def _orders_end(self, entries: list[c.Entry], start: int,
                    runner: Component) -> tuple[int, bool]:
        """``_run_end`` of a run that carries nothing (a live one): the runner's commands from
        ``start`` on at its time, up to an idempotency key used before (in the run or
        remembered). Once per live batch: the loop does only what such a run needs."""
        runners, time_us = self._runners, entries[start].time_us
        keys: set[tuple[int, str]] = set()
        end = start
        for entry in itertools.islice(entries, start, None):
            if entry.time_us != time_us or runners.get(type(entry.command)) is not runner:
                break
            if entry.idempotency_key is not None and self._key_used(entry, keys):
                break
            end += 1
        return max(end, start + 1), not keys

    def _follows(self, sequence: int) -> None:
        """Refuse to apply ``sequence`` unless it follows the last one applied."""
        if sequence != self.last_sequence + 1:
            raise RuntimeError(
                f"sequence {sequence} does not follow the last applied {self.last_sequence}")

    def _key_used(self, entry: c.Entry, keys: set[tuple[int, str]]) -> bool:
        """Whether a run must end before ``entry`` for its idempotency key: used by an entry
        of the run before it (``keys``) or remembered. A new one is added to ``keys``."""
        key = (entry.actor, entry.idempotency_key)
        if key in keys or key in self.idempotency:
            return True
        keys.add(key)
        return False

    def _own_orders_allow(self, runner: Component, how: Carried, account: int,
                          before: list[tuple[int, int, Any]]) -> bool:
        """Whether the run's orders of ``account`` before a carried entry of it (``before``:
        the run's orders up to it, ``(sequence, actor, command)``) leave the entry as a maker's
        is carried (``_apply_carrying``): none reads or lowers the account's available cash,
        which the entry applied first would change (``CASH_READ``: a buy, an amend). An entry
        that shows the cash also needs every change the orders make to it to be a fill's
        (``CASH_BY_FILLS``), whose movements ``_show_cash`` adds; a cancel's release has none.
        So a ``rising`` entry sees no more cash than at its turn, and a shown one is shown
        what it had then."""
        effect = runner.cash_effect
        most = CASH_BY_FILLS if how.shows_cash else CASH_RELEASED
        for _, actor, command in before:
            if actor == account and effect(command) > most:
                return False
        return True

    def _apply_carrying(self, first_sequence: int, entries: list[c.Entry],
                        start: int) -> list[Reply]:
        """While quiet, the entries from ``start`` (numbered from ``first_sequence``): a run
        of orders and the entries it carries, in one pass: the run goes on over the runner's
        commands, and over the entries between and after them that it may carry
        (``_carried``), each applied as it is found, and over the retries it answers, up to
        the first it may not carry or answer; then its orders go to the runner at once
        (``_apply_run``). Returns the replies of the entries applied: one
        entry alone (through ``apply``) where no run starts (a command of no runner, a
        deadline due), or none for a runner that rests no orders (its runs carry nothing:
        ``_run_end``).

        A run may carry an entry, that is, apply it before its orders up to it, where none
        of those orders can change what the entry reads. Orders move the balances of their
        actors, of the fee account, and of the owners of the orders they fill (resting now,
        or placed by an actor of the run). An owner that is not an actor only makes (a maker
        trades at its own price): a sale adds its proceeds less the fee to its available
        cash and, once the fee is taken from proceeds (rules 4), as much to its unsettled
        cash, so its withdrawable cash stays. Hence, for such an account, an entry that
        succeeds with less cash and shows no balance (``rising``) succeeds the same later,
        and one that shows the cash is shown what the makers' sales before it brought
        (``_show_cash``). An actor of the run is carried on the same terms where its own
        orders before the entry change its cash as a maker's sales would
        (``_own_orders_allow``). An entry that opens an account is not carried past an
        order that may be by that account (refused then).

        A ``rising`` entry refused for want of cash (``Carried.cash_codes``) while its
        account has resting orders or orders in the run may have had the cash those orders'
        sales would have brought by its turn: the run stops before it (it changed nothing),
        and it goes on in the next run. Refused for another reason, it is refused the same at
        its turn. A new reply that shows the cash of such an account goes to ``walk.shown``
        (``_show_cash`` completes it after the run); a reply that adds no reference shows none
        a run could change (a reference used before answers its first reply).

        A deposit or withdrawal that its handler would apply is taken by ``CashBatch``
        (``engine.cash_batch``), which applies the ones taken together: before an entry the
        walk applies that reads or changes their accounts, before one it hands to its
        handler, and at the walk's end, before the orders.

        A retry (an entry whose idempotency key an entry of the run used first, or one
        remembered before the run) is answered in the walk as ``apply`` answers it, the first
        reply or the conflict, and applies nothing, so the run goes on over it, whatever its
        command (``_answer_retry``; a client's retries had ended ~300 of the 1,545 runs of
        ``bench recovery``'s 200k mixed journal, each then applied alone).

        A run goes on where the exchange time moves on (a live venue stamps each group commit
        with its own) while no deadline falls due by the later time (the run's first
        ``next_deadline_us``, which no entry it carries moves: the entry past one is applied
        alone, ``on_time`` firing after it), up to an order of the run that may schedule one
        (``Markets.may_schedule``, asked while ``Markets.runs_span_times`` is False: the
        first IP book to open schedules the daily auction), and nobody reads updates (they
        say the time). Each carried entry is applied at its own time, each key kept at its own
        (``_apply_run``), and each order checked, made and traded at its own (``walk.times``
        to ``Markets.apply_run``).
        """
        first = entries[start]
        runner = self._runners.get(type(first.command))
        if runner is None:  # a run may start with entries it carries, before its orders
            runner = self._order_runner if type(first.command) in self._carried else None
            if runner is None:
                return [self.apply(first_sequence, first)]
        elif getattr(runner, "rests_orders", None) is None:
            return []
        self._follows(first_sequence)
        due = self.next_deadline_us()
        if due is not None and due <= max(self.now_us, first.time_us):
            return [self.apply(first_sequence, first)]  # on_time fires after it: alone
        self.now_us = time_us = max(self.now_us, first.time_us)
        carried = self._carried
        # Whether the run may go on past a change of time: not while anyone reads updates (they
        # say the time), nor past an order that may schedule a deadline (``watch``: while no
        # auction is, ``Markets.runs_span_times``; ``Markets.may_schedule``).
        spans = not self.may_want_updates()
        watch = spans and not runner.runs_span_times()
        walk = _Walk(self.movements.table.count)
        replies, ran, items, keyed = walk.replies, walk.ran, walk.items, walk.keyed
        actors: set[int] = set()  # of the run's orders so far
        top = 0  # the highest of them (0 if none is higher)
        # The run's new idempotency keys: (actor, key) -> (index, the request's hash as kept,
        # the time it is kept at).
        keys: dict[tuple[int, str], tuple[int, str, int]] = {}
        idempotency = self.idempotency
        # Whether each entry is carried, and its apply, inline: in methods of their own, a
        # call each, they were a tenth of a mixed replay.
        rests, handlers, references = runner.rests_orders, self._handlers, self.references
        withdrawable_shown, fee_account = self.rules >= 4, self.fee_account_id
        run_kinds = self._run_kinds[runner]
        add_actor, add_ran, add_item, add_reply = (actors.add, ran.append, items.append,
                                                   replies.append)
        # The deposits and withdrawals the walk takes, applied together (``CashBatch``).
        cash, deposit, withdraw = self._cash_batch, c.Deposit, c.Withdraw
        cash.begin(walk, replies)
        cash_accounts = cash.accounts
        sequence = first_sequence - 1  # the entry's, from here on
        for end in range(start, len(entries)):
            entry = entries[end]
            sequence += 1
            if entry.time_us != time_us:
                at = max(time_us, entry.time_us)  # its time, as ``apply`` sets it
                if not spans or (at != time_us and due is not None and due <= at):
                    break
                if at != time_us:
                    if not walk.times:
                        walk.times.append((first_sequence, time_us))
                    walk.times.append((sequence, at))
                    self.now_us = time_us = at  # the carried entries' time from here on
            command = entry.command
            kind = type(command)
            key = entry.idempotency_key
            if key is not None:
                named = (entry.actor, key)
                if named in keys or named in idempotency:  # a retry: nothing is applied
                    if not self._answer_retry(entry, named, keys, walk, end - start, time_us):
                        break
                    continue
                # A new key (the entry the run stops at, if any, is dropped after the walk).
                keys[named] = (end - start, entry.request_hash or "", time_us)
                keyed.append((end - start, time_us))
            if kind in run_kinds:
                if watch and runner.may_schedule(command):
                    spans = watch = False  # the run stays at this order's time from here on
                actor = entry.actor
                add_actor(actor)
                if actor > top:
                    top = actor
                add_ran(end - start)
                add_item((sequence, actor, command))
                add_reply(None)
                continue
            how = carried.get(kind)
            if how is None:
                break
            account_of, rising, shows_cash, withdrawable, opens_account, cash_codes = how
            if opens_account and top >= self.balances.accounts.count:
                break  # an order before it may be by the account it opens
            account = account_of(entry)
            if account == fee_account:
                break
            shown = shows_cash and (not withdrawable or withdrawable_shown)
            if account in actors:
                if not ((rising or shown)
                        and self._own_orders_allow(runner, how, account, items)):
                    break
            elif not (rising or shown) and rests(account):
                break
            if kind is deposit or kind is withdraw:  # applied with the run's others if it may
                if cash.take(end - start, sequence, command, key is not None,
                             account in actors or rests(account)):
                    add_reply(_UNREAD_201 if key is None else None)  # None: built by apply
                    continue
            elif account in cash_accounts:
                cash.apply()  # the entry reads or changes its account: the ones taken first
            self.last_sequence = sequence
            self.replies_needed = key is not None
            kept = references.count
            try:
                reply = handlers[kind](command, entry.actor)
            except CrowdexError as error:
                if (rising and (cash_codes is None or error.code in cash_codes)
                        and (account in actors or rests(account))):
                    break
                reply = refusal(error)
            else:
                if (shows_cash and references.count != kept
                        and (account in actors or rests(account))):
                    use = references.by_account[account][command.reference]  # what it kept
                    walk.shown.append((sequence, account, use))
                    references.pend(use, reply)
            replies.append(reply)
        cash.apply()
        self.last_sequence = first_sequence - 1
        if walk.times:
            self.now_us = walk.times[0][1]  # the orders are applied from the run's first time
        count = len(replies)
        if keyed and keyed[-1][0] == count:  # the entry the run stopped at: not in it
            keyed.pop()
        if count == 0 or (count == 1 and ran):  # an entry alone: the run carried nothing
            return [self.apply(first_sequence, first)]
        if count == len(ran) and not keyed and not walk.times:  # only orders, no key: plain
            return self._apply_plain_run(first_sequence, entries[start:start + count])
        return self._apply_run(first_sequence, entries[start:start + count], walk)

    def _answer_retry(self, entry: c.Entry, named: tuple[int, str],
                      keys: dict[tuple[int, str], tuple[int, str, int]], walk: _Walk,
                      index: int, time_us: int) -> bool:
        """Answer ``entry`` in the run being walked (``_apply_carrying``) if it is a retry
        (``named``: its actor and idempotency key) that ``apply`` would answer at its turn
        without applying it: its key used first by an entry of the run (``keys``), or
        remembered before the run. It then changes nothing but the time, so a run of any
        commands may go on over it. False (the run ends before it) where its key might be
        forgotten by its turn: kept for less than ``IDEMPOTENCY_TTL_US`` by then, or the
        run's keys might fill the store. An answer that is a reply of the run's is given
        once the run has it (``_apply_run``); the conflict, with another request, at once."""
        idempotency = self.idempotency
        if len(idempotency) + len(keys) >= IDEMPOTENCY_KEYS_MAX:
            return False
        first = keys.get(named)
        if first is None:  # remembered before the run
            stored = idempotency[named]
            if time_us - IDEMPOTENCY_TTL_US > stored.time_us:
                return False
            walk.replies.append(stored.reply if stored.fingerprint == entry.request_hash
                                else _key_conflict())
            return True
        at, fingerprint, kept_us = first
        if time_us - IDEMPOTENCY_TTL_US > kept_us:
            return False
        walk.retries.append((index, at, None if fingerprint == entry.request_hash
                             else _key_conflict()))
        walk.replies.append(None)
        return True

    def _apply_run(self, first_sequence: int, entries: list[c.Entry],
                   walk: _Walk | None = None) -> list[Reply]:
        """Apply a run: its orders in one ``apply_run``, after the entries it carries, which
        ``_apply_carrying`` applied already (``walk``: their replies, the orders' places and
        items, where the movements stood before them); without ``walk``, a run of orders only
        (``_run_end``). Returns the replies of its entries."""
        if walk is None:
            self._follows(first_sequence)
            self.now_us = max(self.now_us, entries[0].time_us)
            walk = _Walk(self.movements.table.count)
            walk.ran.extend(range(len(entries)))
            walk.items.extend((first_sequence + i, entry.actor, entry.command)
                              for i, entry in enumerate(entries))
            walk.replies.extend([None] * len(entries))
            walk.keyed.extend((i, self.now_us) for i, entry in enumerate(entries)
                              if entry.idempotency_key is not None)
        replies, ran = walk.replies, walk.ran
        if ran:  # else carried entries only, all applied (no order came at their time)
            self._apply_orders_of(first_sequence, entries, walk)
        if walk.shown:
            self.references.settle()  # their cash is complete (or no sale came before them)
        self.last_sequence = first_sequence + len(entries) - 1
        if walk.keyed:
            self._remember_run(entries, replies, walk.keyed)
        for index, at, conflict in walk.retries:
            reply = replies[at]
            if reply.status >= 500 or reply.status == 429:  # never a machine's reply
                raise RuntimeError(f"entry {first_sequence + index} retries a command whose "
                                   f"reply {reply.status} is not remembered")
            replies[index] = reply if conflict is None else conflict
        if walk.times:
            self.now_us = walk.times[-1][1]
        for component in self.components:
            component.on_time()  # nothing was due (see _run_end); kept for symmetry with apply
        return replies

    def _apply_orders_of(self, first_sequence: int, entries: list[c.Entry],
                         walk: _Walk) -> None:
        """``_apply_run``'s orders (``walk.items``) in one ``apply_run``, their replies into
        ``walk.replies``; then the movements in sequence order and the shown cash completed
        (``_show_cash``)."""
        runner = self._runners[type(entries[walk.ran[0]].command)]
        replies, ran = walk.replies, walk.ran
        carried_moved = self.movements.table.count != walk.moved
        if self.quiet:  # a replay keeps the replies of keyed entries only: build no other
            self.replies_kept = frozenset(first_sequence + i for i in ran
                                          if entries[i].idempotency_key is not None)
            self.replies_needed = bool(self.replies_kept)
        else:
            self.replies_needed = True
        try:
            run_replies = (runner.apply_run(walk.items, walk.times) if walk.times
                           else runner.apply_run(walk.items))
        finally:
            self.replies_kept = None
        for i, reply in zip(ran, run_replies, strict=True):
            replies[i] = reply
        if carried_moved:
            self.movements.sort_since(walk.moved)  # as if each entry's were recorded in turn
        if walk.shown:
            self._show_cash(walk.shown, walk.moved)

    def _apply_plain_run(self, first_sequence: int, entries: list[c.Entry],
                         commands: np.ndarray | None = None,
                         named: np.ndarray | None = None) -> list[Reply]:
        """``_apply_run`` of a plain run (``_run_end``): nothing carried, no reply to
        remember, so its entries go to the runner as they are (the commonest live batch);
        with ``commands``, the run read as columns (``_plain_columns``), as columns, and
        ``named``: whether each has a client_order_id."""
        self._follows(first_sequence)
        self.now_us = max(self.now_us, entries[0].time_us)
        self.replies_needed = not self.quiet
        runner = self._runners[type(entries[0].command)]

        def items(start: int) -> list[tuple[int, int, Any]]:
            return [(sequence, entry.actor, entry.command) for sequence, entry in zip(
                range(first_sequence + start, first_sequence + len(entries)), entries[start:],
                strict=True)]

        if commands is None:
            replies = runner.apply_run(items(0))
        else:
            cids = None
            if named is not None and named.any():  # (positions, ids)
                at = np.flatnonzero(named)
                cids = at, ([entry.command.client_order_id for entry in entries]
                            if len(at) == len(entries) else
                            [entries[i].command.client_order_id for i in at.tolist()])
            replies = runner.apply_live_columns(first_sequence, commands, items, cids)
        self.last_sequence = first_sequence + len(entries) - 1
        for component in self.components:
            component.on_time()  # nothing was due (see _run_end); kept for symmetry with apply
        return replies

    def _show_cash(self, shown: list[tuple[int, int, Use]], moved: int) -> None:
        """Add to the cash each reply in ``shown`` shows (``(sequence, account, use)`` of a
        carried entry, applied before the run's orders, and its reference's ``Use``) the
        available cash its account's sales (as a maker, or its own: ``_own_orders_allow``)
        brought before the entry: the proceeds less the fees of the run's trades
        (``MovementLog`` rows from ``moved``) of earlier sequences (``_apply_carrying``). The
        reference keeps what its reply shows, and completes the reply if it was built
        (``References.pend``)."""
        sequences = np.fromiter((at for at, _, _ in shown), dtype=np.int64, count=len(shown))
        accounts = np.fromiter((account for _, account, _ in shown), dtype=np.int64,
                               count=len(shown))
        sold = np.zeros(len(shown), dtype=np.int64)
        sales_before(self.movements.table.rows, moved, self.movements.table.count, sequences,
                     accounts, sold)
        references = self.references
        for (_, _, use), amount in zip(shown, sold.tolist(), strict=True):
            if amount:
                references.show_more(use, amount)

    def component(self, name: str) -> Component:
        """A component by its name (``offerings``, ``settlement``, ``markets``)."""
        for component in self.components:
            if component.name == name:
                return component
        raise KeyError(f"no component {name!r}")

    def publish(self, channel: str, data: Any, sequence: int | None = None) -> None:
        """Queue a market-data update for the WebSocket hub (see ``outbox``)."""
        self.outbox.append((channel, data, sequence))

    def wants(self, channel: str) -> bool:
        """Whether anyone listens to ``channel``; components skip building unwanted updates.

        Output only, never state: the gateway replaces this with its hub's subscriber check;
        a quiet (replaying) machine wants none.
        """
        return not self.quiet

    def may_want_updates(self) -> bool:
        """Whether any channel may be wanted: not by a quiet machine with the default
        ``wants`` (a replay), so a component can skip building a call's updates at all."""
        return not self.quiet or "wants" in self.__dict__

    def wants_any(self, kind: str) -> bool:
        """Whether anyone may listen to some channel of ``kind``, a channel's name up to and
        with its separator (``"orders@"`` for every account's ``orders@7``, ``"book:"``): a
        component skips a kind of update at once, without asking ``wants`` per channel.

        Output only, never state: the gateway replaces this with its hub's count of channels
        by kind (``Hub.wants_any``), which answers at the cost of a dict lookup. Whoever
        replaces ``wants`` alone keeps this answer: yes, unless the machine wants nothing."""
        return self.may_want_updates()

    def next_deadline_us(self) -> int | None:
        """The earliest time at which some component has something to do, if any."""
        deadlines = [d for d in (x.next_deadline_us() for x in self.components) if d is not None]
        return min(deadlines) if deadlines else None

    def _remember(self, key: tuple[int, str], fingerprint: str, reply: Reply) -> None:
        idempotency, order = self.idempotency, self._idempotency_order
        if key not in idempotency:  # a key stored again keeps its place (a skip's)
            order.append(key)
        idempotency[key] = Stored(fingerprint, self.now_us, reply)
        # Dicts keep insertion order, which is time order: expire from the front. The front
        # key's time as last read (``_front_time``: a key stored again only gets a later one)
        # spares looking up a long-stored key, whose entry has left the caches, each time.
        horizon = self.now_us - IDEMPOTENCY_TTL_US
        if self._front_time >= horizon and len(idempotency) <= IDEMPOTENCY_KEYS_MAX:
            return
        self._expire(horizon)

    def _remember_run(self, entries: list[c.Entry], replies: list[Reply],
                      keyed: list[tuple[int, int]]) -> None:
        """``_remember`` of a run's keyed entries (``keyed``: each one's index and time, in
        order), each at its own time, in one loop: a replay remembers one entry in seven,
        and a ``_remember`` call each cost 0.6% of the 60k mixed replay's instructions
        (``bench instructions --callgrind``). A reply of the machine's own (5xx, 429) is not
        remembered, as ``apply`` does not."""
        idempotency, order = self.idempotency, self._idempotency_order
        for index, time_us in keyed:
            reply = replies[index]
            if reply.status >= 500 or reply.status == 429:
                continue
            entry = entries[index]
            key = (entry.actor, entry.idempotency_key)
            if key not in idempotency:
                order.append(key)
            idempotency[key] = Stored(entry.request_hash or "", time_us, reply)
            horizon = time_us - IDEMPOTENCY_TTL_US
            if self._front_time < horizon or len(idempotency) > IDEMPOTENCY_KEYS_MAX:
                self._expire(horizon)

    def _expire(self, horizon: int) -> None:
        """Forget the keys stored before ``horizon``, and the oldest while there are more
        than ``IDEMPOTENCY_KEYS_MAX`` (``_remember``)."""
        idempotency, order = self.idempotency, self._idempotency_order
        while order:
            oldest = idempotency[order[0]]
            if oldest.time_us >= horizon and len(idempotency) <= IDEMPOTENCY_KEYS_MAX:
                self._front_time = oldest.time_us
                break
            del idempotency[order.popleft()]

    # ---- accounts and money -----------------------------------------------------------------

    def _genesis(self, cmd: c.Genesis, actor: int) -> Reply:
        if self.accounts:
            raise CrowdexError("invalid_state", "the venue already exists")
        self.manual_clock = cmd.manual_clock
        self.profile = cmd.profile
        self.rules = cmd.rules
        if cmd.manual_clock:
            self.now_us = cmd.start_time_us
        self._add_account("fee", "crowdex fees", "institutional", None, None, "")
        self._add_account("operator", "bootstrap operator", "institutional", None, None,
                          cmd.operator_key_hash)
        return Reply(201, {"fee_account_id": 1, "operator_account_id": 2})

    def _set_operator_key(self, cmd: c.SetOperatorKey, actor: int) -> Reply:
        info = self.accounts[self.operator_account_id]
        self.key_index.pop(info.key_hash, None)
        info.key_hash = cmd.key_hash
        self.key_index[cmd.key_hash] = info.account_id
        return Reply(200, {"account_id": info.account_id})

    fee_account_id = 1
    operator_account_id = 2

    def _add_account(self, role: str, name: str, investor_class: str, annual_income: int | None,
                     net_worth: int | None, key_hash: str) -> AccountInfo:
        account_id = self.balances.add_account(ROLES[role], INVESTOR_CLASSES[investor_class])
        info = AccountInfo(account_id, role, name, investor_class, annual_income, net_worth,
                           key_hash, self.now_us)
        self.accounts[account_id] = info
        if key_hash:
            self.key_index[key_hash] = account_id
        return info

    def _create_account(self, cmd: c.CreateAccount, actor: int) -> Reply:
        if cmd.key_hash in self.key_index:
            raise CrowdexError("invalid_state", "that API key is already in use")
        info = self._add_account(cmd.role, cmd.name, cmd.investor_class, cmd.annual_income,
                                 cmd.net_worth, cmd.key_hash)
        body = {"account_id": info.account_id, "role": info.role}
        if cmd.reply_api_key is not None:
            body = {"account_id": info.account_id, "api_key": cmd.reply_api_key,
                    "role": info.role}
        return Reply(201, body)

    def _check_reference(self, account_id: int, reference: str, fingerprint: str) -> Reply | None:
        """The first reply for a reused reference, or None for a new one."""
        use = self.references.use(account_id, reference)
        if use is None:
            return None
        stored = self.references.stored(account_id, use)
        if stored.fingerprint != fingerprint:
            raise CrowdexError(
                "reference_conflict",
                f"reference {reference!r} was already used for a different movement",
            )
        return stored.reply

    def _deposit(self, cmd: c.Deposit, actor: int) -> Reply:
        info = self.accounts.get(cmd.account_id)
        if info is None or info.role == "fee":
            raise CrowdexError("account_not_found", f"no account {cmd.account_id}")
        references = self.references
        mine = references.by_account.get(cmd.account_id)
        if mine is not None and cmd.reference in mine:
            # A reference used before: its first reply, or a conflict.
            return self._check_reference(cmd.account_id, cmd.reference, f"deposit:{cmd.amount}")
        if (self.rules >= 3  # commands.RULES_VERSION: older journals replay as they were
                and self.deposits_total - self.withdrawals_total + cmd.amount > CASH_TOTAL_MAX):
            raise CrowdexError("limit_exceeded",
                               f"the venue holds at most {CASH_TOTAL_MAX} fen in all")
        # A column, then the account: a tenth of what taking the account's row costs.
        cash = self.balances.accounts.rows["cash_available"]
        cash[cmd.account_id] += cmd.amount
        self.deposits_total += cmd.amount
        self.movements.record(self.last_sequence, mv.DEPOSIT, mv.EXTERNAL_ACCOUNT,
                              cmd.account_id, mv.CASH, cmd.amount)
        # What the reply shows is kept with the reference (state): its Use, even in a replay.
        available = cash.item(cmd.account_id)
        use = Use(DEPOSIT, cmd.amount, self.now_us, available)
        references.keep(cmd.account_id, cmd.reference, use, mine)
        return use_reply(cmd.account_id, use) if self.replies_needed else _UNREAD_201

    def _withdraw(self, cmd: c.Withdraw, actor: int) -> Reply:
        references = self.references
        mine = references.by_account.get(cmd.account_id)
        if mine is not None and cmd.reference in mine:
            # A reference used before: its first reply, or a conflict.
            return self._check_reference(cmd.account_id, cmd.reference, f"withdraw:{cmd.amount}")
        withdrawable = self.cash_withdrawable(cmd.account_id)
        if cmd.amount > withdrawable:
            raise CrowdexError("insufficient_funds",
                               f"withdrawable cash is {withdrawable} fen")
        cash = self.balances.accounts.rows["cash_available"]
        cash[cmd.account_id] -= cmd.amount
        self.withdrawals_total += cmd.amount
        self.movements.record(self.last_sequence, mv.WITHDRAWAL, cmd.account_id,
                              mv.EXTERNAL_ACCOUNT, mv.CASH, cmd.amount)
        available = cash.item(cmd.account_id)
        use = Use(WITHDRAWAL, cmd.amount, self.now_us, available)
        references.keep(cmd.account_id, cmd.reference, use, mine)
        return use_reply(cmd.account_id, use) if self.replies_needed else _UNREAD_201

    def _advance_clock(self, cmd: c.AdvanceClock, actor: int) -> Reply:
        if not self.manual_clock:
            raise CrowdexError("clock_not_manual", "the exchange runs on the wall clock")
        if self.now_us + cmd.seconds * 1_000_000 > TIME_US_MAX:
            raise CrowdexError("invalid_field", "advance_seconds would move the clock past "
                               f"{format_time_us(TIME_US_MAX)}")
        self.now_us += cmd.seconds * 1_000_000
        return Reply(200, {"now_us": self.now_us})

    def _tick(self, cmd: c.Tick, actor: int) -> Reply:
        # Nothing to do itself: it carries the time, and on_time fires what is due.
        return Reply(200, {"now_us": self.now_us})

    def credit_cash(self, account_id: int, amount: int, kind: int, debit_account: int) -> None:
        """Credit proceeds (unsettled until the next settlement batch) and record the movement.

        The caller has already taken ``amount`` from ``debit_account``'s buckets.
        """
        rows = self.balances.accounts.rows
        rows["cash_available"][account_id] += amount
        rows["cash_unsettled"][account_id] += amount
        self.movements.record(self.last_sequence, kind, debit_account, account_id, mv.CASH,
                              amount)

    def credit_cash_many(self, accounts: Sequence[int] | np.ndarray,
                         amounts: Sequence[int] | np.ndarray, kind: int,
                         debit_accounts: Sequence[int] | np.ndarray | int) -> None:
        """``credit_cash`` of each ``(account, amount)`` in order, in bulk (an allocation or a
        distribution pays thousands): the same balances and the same movements, in the same
        order, as one call each."""
        if not len(accounts):
            return
        credit = np.array(accounts, dtype=np.int64)
        amount = np.array(amounts, dtype=np.int64)
        if (amount <= 0).any():
            raise ValueError(f"a movement must be positive, got {int(amount.min())}")
        rows = self.balances.accounts.rows
        np.add.at(rows["cash_available"], credit, amount)
        np.add.at(rows["cash_unsettled"], credit, amount)
        moved = np.zeros(len(credit), dtype=mv.MOVEMENT_DTYPE)
        moved["sequence"] = self.last_sequence
        moved["kind"] = kind
        moved["debit_account"] = debit_accounts
        moved["credit_account"] = credit
        moved["asset"] = mv.CASH
        moved["amount"] = amount
        self.movements.record_many(moved)

    def take_from_proceeds(self, account_id: int, amount: int) -> None:
        """Take ``amount`` out of proceeds just credited (a fee, a held payout): from available
        cash, and under rules 4 from the unsettled part too, since it never becomes settled cash
        of this account (``movements.FROM_PROCEEDS``). The caller records the movement."""
        rows = self.balances.accounts.rows
        rows["cash_available"][account_id] -= amount
        if self.rules >= 4:  # commands.RULES_VERSION: older journals replay as they were
            rows["cash_unsettled"][account_id] -= amount

    def take_fees_from_proceeds(self, movements: np.ndarray) -> None:
        """For fills the kernel applied (it took each fee from available cash): under rules 4,
        lower each seller's unsettled cash by its fees, in one step per batch."""
        if self.rules < 4 or not len(movements):
            return
        fees = movements[movements["kind"] == mv.TRADE_FEE]
        if len(fees):
            np.subtract.at(self.balances.accounts.rows["cash_unsettled"],
                           fees["debit_account"], fees["amount"])

    # ---- reads --------------------------------------------------------------------------------

    def cash_withdrawable(self, account_id: int) -> int:
        rows = self.balances.accounts.rows  # each read as a Python int (``item``)
        return max(0, rows["cash_available"].item(account_id)
                   - rows["cash_unsettled"].item(account_id))

    def account_view(self, account_id: int) -> dict:
        info = self.accounts[account_id]
        row = self.balances.accounts.rows[account_id]
        return {
            "account_id": account_id,
            "role": info.role,
            "name": info.name,
            "investor_class": info.investor_class,
            "cash_available": int(row["cash_available"]),
            "cash_reserved": int(row["cash_reserved"]),
            "cash_withdrawable": self.cash_withdrawable(account_id),
            "holdings": [
                {"instrument_id": i, "quantity_available": a, "quantity_reserved": r}
                for i, a, r in self.balances.holdings(account_id)
            ],
        }

    # ---- snapshots ----------------------------------------------------------------------------

    def meta(self) -> bytes:
        """The state's meta, encoded now in one pass: the same bytes as ``meta_later``'s, whose
        function decodes the head it took and encodes it again with the components (a third
        more time, in the forked snapshot writer that calls this)."""
        return _meta_encoder.encode(self._meta([(component.name, component.meta())
                                                for component in self.components]))

    def meta_later(self) -> Callable[[], bytes]:
        """The state's meta, taken now and encoded by the returned function, which another
        thread may call while commands go on. Components with ``meta_later`` leave their costly
        part to that function; everything else is encoded now."""
        later: list[tuple[str, Callable[[], bytes]]] = []
        for component in self.components:
            deferred = getattr(component, "meta_later", None)
            if deferred is not None:
                later.append((component.name, deferred()))
            else:
                later.append((component.name, functools.partial(bytes, component.meta())))
        head = _meta_encoder.encode(self._meta([]))

        def encode() -> bytes:
            meta = _meta_decoder.decode(head)
            meta.components = [(name, part()) for name, part in later]
            return _meta_encoder.encode(meta)

        return encode

    def _meta(self, components: list[tuple[str, bytes]]) -> Meta:
        return Meta(
            last_sequence=self.last_sequence,
            now_us=self.now_us,
            manual_clock=self.manual_clock,
            profile=self.profile,
            accounts=[self.accounts[k] for k in sorted(self.accounts)],
            references=self.references.listed(),
            idempotency=[(a, k, s) for (a, k), s in self.idempotency.items()],
            next_movement_id=self.movements.next_id,
            components=components,
            deposits_total=self.deposits_total,
            withdrawals_total=self.withdrawals_total,
            rules=self.rules,
        )

    def arrays(self) -> dict:
        arrays = {**self.balances.arrays(), "movements": self.movements.table.live()}
        for component in self.components:
            arrays.update(component.arrays())
        return arrays

    def load(self, arrays: dict, meta_bytes: bytes) -> None:
        meta = _meta_decoder.decode(meta_bytes)
        self.balances.load(arrays)
        self.last_sequence = meta.last_sequence
        self.now_us = meta.now_us
        self.manual_clock = meta.manual_clock
        self.profile = meta.profile
        self.rules = meta.rules
        self.accounts = {a.account_id: a for a in meta.accounts}
        self.key_index = {a.key_hash: a.account_id for a in meta.accounts if a.key_hash}
        self.references = References.loaded(meta.references)
        self.idempotency = {(a, k): s for a, k, s in meta.idempotency}
        self._idempotency_order = deque(self.idempotency)
        self._front_time = -1
        self.movements.table.load(arrays["movements"])
        self.movements.next_id = meta.next_movement_id
        self.deposits_total = meta.deposits_total
        self.withdrawals_total = meta.withdrawals_total
        metas = dict(meta.components)
        for component in self.components:
            component.load(arrays, metas[component.name])

    def state_hash(self) -> str:
        return state_hash(self.arrays(), self.meta())

    def cash_total(self) -> int:
        return self.balances.cash_total()

    def warm_reads(self) -> None:
        """Make the indexes that reads keep (an account's holdings, orders and subscriptions)
        as a recovery ends: reads make them, not writes, so the first read after a long
        replay would make them all on the one thread (~120 ms for the subscriptions alone at
        the 1M mixed journal's state)."""
        self.balances.holdings(0)
        self.component("markets").account_orders(0, False)
        self.component("offerings").account_subscriptions(0)
