"""Primary offerings: projects, subscriptions, the close, distributions and disclosures.

The component applies the offering commands deterministically (time comes only from
``machine.now_us``). The boards (``boards/``) decide what is allowed and how a close allocates;
this module owns the state and moves the money: cash is reserved at subscription, released on
cancel or failure, and at a success paid to the issuer (``SUBSCRIPTION_PAYMENT``), less the
success fee (``SUCCESS_FEE``), while units are issued to the investors (``UNITS_ISSUED``).

Persistent state is a handful of msgspec structs in ``meta()``; the per-project live figures,
first-come counters and what each investor has committed toward the retail limit (``_Committed``)
are indexes rebuilt from the subscriptions.
"""

from __future__ import annotations

import copy
import heapq
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import msgspec
import numpy as np

from boards import debt as debt_board
from boards import overrides, registry, rules
from engine import movements as mv
from engine import offerings_commands as oc
from engine.allocation import ALLOCATION
from engine.clock import format_time_us
from engine.errors import CrowdexError
from engine.machine import AccountInfo, Carried, Reply
from engine.operating_terms import OperatingTerms, TermState

YEAR_US = 365 * rules.US_PER_DAY
QUALIFIED_CLASSES = ("qualified", "institutional")

# Subscription statuses.
LIVE = "accepted"
CANCELLED = "cancelled"
ALLOCATED = "allocated"
REFUNDED = "refunded"

PROJECTS_MAX = 1_000_000
DEFAULT_FROM_CACHED_MAX = 100_000  # derived default times kept (a cache: cleared when full)
INFOS_CACHED_MAX = 100_000  # instrument views kept (a cache: cleared when full)
_UNKNOWN = object()
# Replies nobody reads (a replay of commands without an Idempotency-Key: see
# StateMachine.replies_needed), shared and without a body.
UNREAD = {200: Reply(200, None), 201: Reply(201, None)}
SUBSCRIPTIONS_MAX = 50_000_000
DISCLOSURES_PER_PROJECT_MAX = 10_000
# projects_by_id walks every project for a status held by at least one project in this many.
STATUS_SHARE_WALKED_MIN = 8


def _entry_actor(entry: Any) -> int:
    return entry.actor


def _project_id(project: Any) -> int:
    return project.project_id


class Project(msgspec.Struct, array_like=True):
    project_id: int
    board: str
    issuer_id: int
    title: str
    description: str
    deadline_us: int
    terms: dict[str, Any]
    status: str
    created_us: int
    approved_us: int = 0
    closed_us: int = 0
    lockup_until_us: int = 0
    # Figures after the close (while open they come from the live subscriptions).
    raised: int = 0
    subscribed_quantity: int = 0
    investor_count: int = 0
    rate_bps: int = 0  # debt: the fixed or clearing rate
    success_fee: int = 0
    held_amount: int = 0  # product: the part of the payout held until delivery
    delivery: str = ""  # product: "", "delivered" or "refunded"
    # Debt repayments as (time, cumulative amount paid), oldest first.
    payments: list[tuple[int, int]] = msgspec.field(default_factory=list)
    # The board rules the operator's boards file set when it was listed (BoardConfig fields;
    # None: BOARDS.md's defaults). A later file does not change a listed project.
    rules: dict[str, int] | None = None


class Subscription(msgspec.Struct, array_like=True, gc=False):
    """One investor's subscription (``gc=False``: numbers and strings only, in no reference
    cycle; a venue keeps every one, and the collector need not track them)."""

    subscription_id: int
    project_id: int
    account_id: int
    sequence: int
    time_us: int
    quantity: int
    rate_bps: int | None
    tier_id: str | int | None
    reserved: int  # cash reserved at entry, fen
    status: str = LIVE
    alloc_quantity: int = 0
    alloc_amount: int = 0
    refunded: int = 0


class Distribution(msgspec.Struct, array_like=True):
    distribution_id: int
    project_id: int
    amount: int
    time_us: int
    status: str = "pending"  # "pending" until the next settlement batch pays it
    fee: int = 0
    holders: int = 0
    paid_sequence: int = 0


class Disclosure(msgspec.Struct, array_like=True):
    disclosure_id: int
    project_id: int
    issuer_id: int
    title: str
    body: str
    time_us: int


class InstrumentInfo(msgspec.Struct, frozen=True):
    """What the secondary markets need to know about an instrument issued by an offering."""

    instrument_id: int
    board: str
    reference_price_fen: int  # the offering price or the note's face value
    lockup_until_us: int
    status: str  # "succeeded" (locked up) or "trading"
    defaulted: bool  # a debt instalment 90 days overdue: the notes cannot be sold
    tradable: bool  # the board has a secondary market (product: never)
    seller_fee_bps: int = 100  # of each fill, from the rules the project was listed under
    closed: bool = False  # operating rights after the term: no new orders
    default_code: str = "not_permitted"  # the refusal of a sell while defaulted
    # It reads the clock (``Offerings.info_moves_with_time``): the info at a later time may
    # be another with nothing else changed.
    reads_clock: bool = False

    def default_refusal(self) -> CrowdexError:
        """The refusal of a sell while the project is in default. The debt board's words are
        journal format (remembered replies), so they stay as they were."""
        if self.default_code == "not_permitted":
            return CrowdexError("not_permitted", "notes of a loan in default cannot be sold")
        return CrowdexError(self.default_code, "units of a project in default cannot be sold")


class OfferingsMeta(msgspec.Struct, array_like=True):
    next_project_id: int
    next_subscription_id: int
    next_distribution_id: int
    next_disclosure_id: int
    projects: list[Project]
    subscriptions: list[Subscription]
    distributions: list[Distribution]
    disclosures: list[Disclosure]
    rules_file: dict[str, Any] = msgspec.field(default_factory=dict)  # boards.overrides
    operating_terms: list[TermState] = msgspec.field(default_factory=list)


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(OfferingsMeta)


class _Live:
    """Per-project figures of the live subscriptions (an index, rebuilt on load)."""

    __slots__ = ("amount", "quantity", "accounts", "taken", "per_backer")

    def __init__(self) -> None:
        self.amount = 0
        self.quantity = 0
        self.accounts: dict[int, int] = {}  # account -> live subscriptions
        self.taken: dict[Any, int] = {}  # tier (None for the whole offering) -> quantity
        # (account, tier) -> quantity, for pledges on a tier (``_check_per_backer``): a
        # subscription without a tier has no limit per backer, and is not counted here.
        self.per_backer: dict[tuple[int, Any], int] = {}


def committed_fen(sub: Subscription) -> int:
    """What a subscription commits toward its investor's retail limit (BOARDS.md: live and
    allocated subscriptions): its reservation while live, its allocation once allocated."""
    if sub.status == LIVE:
        return sub.reserved
    if sub.status == ALLOCATED:
        return sub.alloc_amount
    return 0


class _Committed:
    """An investor's subscriptions on boards that count toward the retail limit, in the order
    made, and the sum of what those of the last 365 days commit (an index, rebuilt on load).

    ``retail_used_fen`` was a walk over all of them at every subscription, so a retail
    investor's subscriptions cost more the more they had made. Instead the sum is kept as
    statuses change (``Offerings.recommitted``), and subscriptions leave it from the front
    as they age out of the window: subscriptions are made at the exchange's time, which
    never goes back, so the oldest are first. Should one ever come out of that order, the
    sum is not kept and the walk answers (``ordered``), as exact and only slower.
    """

    __slots__ = ("subs", "first", "below_us", "fen", "ordered", "floor_us", "limit")

    def __init__(self) -> None:
        self.subs: list[Subscription] = []
        self.first = 0  # subs[:first] are out of the window (made before below_us)
        self.below_us = 0
        self.fen = 0  # what subs[first:] commit
        self.ordered = True
        self.floor_us = 0  # the latest of below_us and the last subscription's time
        # The investor's retail limit once a subscription read it (``Offerings._subscribe``):
        # a function of its income and net worth, which never change.
        self.limit: int | None = None

    def add(self, sub: Subscription, fen: int) -> None:
        """Count ``sub``, which commits ``fen`` (``committed_fen``: a new one, its
        reservation)."""
        if sub.time_us < self.floor_us:
            self.ordered = False
        else:
            self.floor_us = sub.time_us
        self.subs.append(sub)
        self.fen += fen

    def counted(self, sub: Subscription) -> bool:
        """Whether ``fen`` holds what ``sub`` (one of ``subs``) commits (while ``ordered``)."""
        return sub.time_us >= self.below_us

    def used_fen(self, horizon_us: int) -> int:
        """What the subscriptions made at or after ``horizon_us`` commit (the horizon of
        successive calls never goes back: it is the exchange's time less a year)."""
        if not self.ordered:
            return sum(committed_fen(s) for s in self.subs if s.time_us >= horizon_us)
        subs, first, fen = self.subs, self.first, self.fen
        while first < len(subs) and subs[first].time_us < horizon_us:
            fen -= committed_fen(subs[first])
            first += 1
        self.first, self.fen = first, fen
        if horizon_us > self.below_us:
            self.below_us = horizon_us
            self.floor_us = max(self.floor_us, horizon_us)
        return fen


class _Waiting:
    """Projects waiting in one status for a moment: open offerings for their deadline, or
    succeeded ones for the end of their lock-up (an index, rebuilt on load).

    ``on_time`` and ``_recompute_due`` walked every project ever listed to find them, on the
    one thread at every deadline and lock-up end. Instead each waiting project is in a heap
    by ``(time_us, project_id)``, pushed once when it starts to wait; one that left the
    status by another way (an operator's close) is dropped when it reaches the top, since
    the moment a project waits for never changes while it waits.
    """

    __slots__ = ("status", "heap")

    def __init__(self, status: str) -> None:
        self.status = status
        self.heap: list[tuple[int, int]] = []

    def push(self, time_us: int, project_id: int) -> None:
        heapq.heappush(self.heap, (time_us, project_id))

    def due(self, projects: dict[int, Project], now_us: int) -> list[Project]:
        """The waiting projects whose moment is ``now_us`` or before, taken out, by
        ``(time_us, project_id)``."""
        heap, out = self.heap, []
        while heap and heap[0][0] <= now_us:
            project = projects[heapq.heappop(heap)[1]]
            if project.status == self.status:
                out.append(project)
        return out

    def earliest_us(self, projects: dict[int, Project]) -> int | None:
        """The earliest moment a project waits for (None: none waits)."""
        heap = self.heap
        while heap and projects[heap[0][1]].status != self.status:
            heapq.heappop(heap)
        return heap[0][0] if heap else None


class Offerings:
    """The offerings component (see the module docstring)."""

    name = "offerings"

    def __init__(self, machine: Any) -> None:
        self.machine = machine
        self._reset()

    def _reset(self) -> None:
        self.projects: dict[int, Project] = {}
        self.subscriptions: dict[int, Subscription] = {}
        self.distributions: dict[int, Distribution] = {}
        self.disclosures: dict[int, Disclosure] = {}
        self.next_project_id = 1
        self.next_subscription_id = 1
        self.next_distribution_id = 1
        self.next_disclosure_id = 1
        self._by_project: dict[int, list[Subscription]] = defaultdict(list)
        self._disclosures_of: dict[int, list[Disclosure]] = defaultdict(list)  # by project
        # account -> its subscriptions by id, of the ids below _by_account_upto (derived,
        # taken in by reads: ``account_subscriptions``).
        self._by_account: dict[int, list[Subscription]] = {}
        self._by_account_upto = 1
        self._committed: dict[int, _Committed] = defaultdict(_Committed)
        self._live: dict[int, _Live] = defaultdict(_Live)
        self._schedules: dict[int, list[debt_board.Instalment]] = {}
        self._next_due: int | None = None
        # Indexes over every project or distribution ever made, kept as they change (derived,
        # rebuilt on load): a walk over all of them grows with the venue's age.
        self._closing = _Waiting(rules.OPEN)  # open offerings by deadline
        self._locked = _Waiting(rules.SUCCEEDED)  # issued units by the end of their lock-up
        self._projects_of: dict[int, list[Project]] = defaultdict(list)  # by issuer, id order
        self._pending: dict[int, Distribution] = {}  # distributions not paid yet, id order
        self._distributions_of: dict[int, list[Distribution]] = defaultdict(list)  # by project
        # status -> its projects by id (in the order they took it): see projects_by_id.
        self._with_status: dict[str, dict[int, Project]] = defaultdict(dict)
        self.rules_file: dict[str, Any] = {}  # the operator's boards file in force (state)
        self.terms = OperatingTerms(self)  # the operating-rights board after its close
        self._configured: dict[tuple, rules.Board] = {}  # boards with overrides (derived)
        self._boards: dict[int, rules.Board] = {}  # project id -> board (derived)
        # (project, status, payments, raised, closed) -> when it falls into default (derived).
        self._default_from: dict[tuple, int | None] = {}
        self._infos: dict[tuple, InstrumentInfo] = {}  # see instrument_info (derived)
        self._allocated: dict[int, dict[Any, int]] = {}  # see _allocated_by_tier (derived)

    def handlers(self) -> dict[type, Callable[[Any, int], Reply]]:
        return {
            oc.CreateProject: self._create, oc.ReviewProject: self._review,
            oc.CloseProject: self._close_command, oc.Subscribe: self._subscribe,
            oc.CancelSubscription: self._cancel, oc.Distribute: self._distribute,
            oc.ConfirmDelivery: self._delivery, oc.PostDisclosure: self._disclose,
            oc.SetBoardRules: self._set_rules, oc.ReportRevenue: self.terms_report,
        }

    def terms_report(self, cmd: oc.ReportRevenue, actor: int) -> Reply:
        return self.terms.report(cmd, actor)

    # ---- helpers ------------------------------------------------------------------------------

    def board(self, project: Project) -> rules.Board:
        """The project's board with the rules in force when it was listed."""
        # A project's board and listing rules never change (a load starts a new cache): its
        # board is looked up once (``_with_rules`` sorts the rules into a key at each call,
        # and every subscription asks).
        found = self._boards.get(project.project_id)
        if found is None:
            found = self._boards[project.project_id] = self._with_rules(project.board,
                                                                        project.rules)
        return found

    def listing_board(self, name: str) -> rules.Board:
        """A board as a project listed now gets it: the boards file over BOARDS.md."""
        return self._with_rules(name, self.listing_rules(name))

    def listing_rules(self, name: str) -> dict[str, int] | None:
        return overrides.overrides(self.rules_file, name, self.machine.profile) or None

    def _with_rules(self, name: str, fields: dict[str, int] | None) -> rules.Board:
        board = registry.BOARDS[name]
        if not fields:
            return board
        key = (name, *sorted(fields.items()))
        found = self._configured.get(key)
        if found is None:
            found = copy.copy(board)
            found.config = overrides.configured(board.config, fields)
            self._configured[key] = found
        return found

    @property
    def auction_hour_utc(self) -> int:
        return overrides.auction_hour_utc(self.rules_file)

    def _cn2015(self) -> bool:
        return self.machine.profile == "cn2015"

    def visible(self, project: Project, viewer: AccountInfo | None) -> bool:
        """``cn2015`` hides equity from everyone but operators, its issuer and qualified."""
        if not (self._cn2015() and self.board(project).config.hidden_cn2015):
            return True
        if viewer is None:
            return False
        return (viewer.role == "operator" or viewer.account_id == project.issuer_id
                or (viewer.role == "investor" and viewer.investor_class in QUALIFIED_CLASSES))

    def carried_types(self) -> dict[type, Carried]:
        """Commands a run of orders may carry (``StateMachine._apply_carrying``): a subscription and
        its cancel read and change their investor's cash and the offering, which no order
        reads, and show no balance; a subscription that succeeds succeeds with more cash, and
        only its ``insufficient_funds`` (the last check but the venue's maximum, which more
        cash does not change) reads the cash; a cancel reads none."""
        return {oc.Subscribe: Carried(_entry_actor, rising=True,
                                      cash_codes=frozenset({"insufficient_funds"})),
                oc.CancelSubscription: Carried(_entry_actor, rising=True,
                                               cash_codes=frozenset())}

    def project_for(self, project_id: int, viewer: AccountInfo | None) -> Project:
        project = self.projects.get(project_id)
        if project is None or not self.visible(project, viewer):
            raise CrowdexError("project_not_found", f"no project {project_id}")
        return project

    def _own_project(self, project_id: int, actor: int) -> Project:
        project = self.projects.get(project_id)
        if project is None or project.issuer_id != actor:
            raise CrowdexError("project_not_found", f"no project {project_id} of yours")
        return project

    def _require_role(self, actor: int, *roles: str) -> AccountInfo:
        info = self.machine.accounts.get(actor)
        if info is None or info.role not in roles:
            raise CrowdexError("forbidden", f"only a {' or '.join(roles)} may do this")
        return info

    def _rows(self) -> np.ndarray:
        return self.machine.balances.accounts.rows

    # ---- listing and review -------------------------------------------------------------------

    def _set_rules(self, cmd: oc.SetBoardRules, actor: int) -> Reply:
        if actor:
            self._require_role(actor, "operator")
        try:
            overrides.check(cmd.rules, registry.BOARDS)
        except overrides.BoardsFileError as error:
            raise CrowdexError("invalid_terms", f"boards file: {error}") from None
        self.rules_file = cmd.rules
        return Reply(200, self.boards_view())

    def boards_view(self) -> dict:
        """The rules in force for projects listed now (``GET /v1/boards``)."""
        profile = self.machine.profile
        return {"profile": profile, "auction_hour_utc": self.auction_hour_utc,
                "boards": [overrides.view(self.listing_board(name).config, profile)
                           for name in registry.BOARDS]}

    def _create(self, cmd: oc.CreateProject, actor: int) -> Reply:
        self._require_role(actor, "issuer")
        registry.board(cmd.board)  # 400 for an unknown board
        board = self.listing_board(cmd.board)
        try:
            typed = msgspec.convert(cmd.terms, board.terms_type)
        except msgspec.ValidationError as error:
            raise CrowdexError("invalid_field", f"terms: {error}") from None
        terms = board.normalize_terms(msgspec.to_builtins(typed))
        now = self.machine.now_us
        board.check_deadline(cmd.deadline_us, now, "creation")
        self._check_borrower_cap(board, terms, actor)
        if len(self.projects) >= PROJECTS_MAX:
            raise CrowdexError("not_permitted", "the venue holds its maximum of projects")
        project = Project(self.next_project_id, cmd.board, actor, cmd.title, cmd.description,
                          cmd.deadline_us, terms, rules.PENDING_REVIEW, now,
                          rules=self.listing_rules(cmd.board))
        self.next_project_id += 1
        self.projects[project.project_id] = project
        self._index_project(project)  # in review: by issuer and status only
        return Reply(201, self.project_view(project))

    def _set_status(self, project: Project, status: str) -> None:
        """Every change of a project's status goes through here (``_with_status``)."""
        del self._with_status[project.status][project.project_id]
        project.status = status
        self._with_status[status][project.project_id] = project

    def projects_by_id(self, status: str | None = None) -> Iterable[Project]:
        """The projects in id order, of ``status`` only if one is given (``GET
        /v1/projects``). A status few projects have (open, in review) is read from its index:
        the walk over every project took ~8 ms of the one thread a request at 10^5 projects,
        to find a few hundred. A status most have (trading, failed) is walked: a page of them
        comes soon, and sorting them all would cost more."""
        if status is None:
            return self.projects.values()
        having = self._with_status.get(status, {})
        if len(having) * STATUS_SHARE_WALKED_MIN >= len(self.projects):
            return (p for p in self.projects.values() if p.status == status)
        return [having[project_id] for project_id in sorted(having)]

    def _check_borrower_cap(self, board: rules.Board, terms: dict, issuer: int,
                            exclude: int = 0) -> None:
        cap = board.config.borrower_cap_fen
        if cap is None:
            return
        outstanding = self.outstanding_principal_fen(issuer, exclude)
        if outstanding + board.principal_fen(terms) > cap:
            raise CrowdexError(
                "borrower_cap",
                f"an issuer may owe at most {cap} fen on the venue; {outstanding} is "
                "outstanding or offered")

    def outstanding_principal_fen(self, issuer: int, exclude: int = 0) -> int:
        """Principal an issuer owes or offers: open debt at its maximum, closed debt unpaid
        (from the issuer's projects, not a walk over every project at each debt listing)."""
        total = 0
        for project in self._projects_of.get(issuer, ()):
            if project.project_id == exclude:
                continue
            board = self.board(project)
            if board.config.borrower_cap_fen is None:
                continue
            if project.status in (rules.PENDING_REVIEW, rules.OPEN):
                total += board.principal_fen(project.terms)
            elif project.status in (rules.SUCCEEDED, rules.TRADING):
                repaid = sum(i.principal_fen for i, (paid, _) in
                             zip(self.instalments(project), self.instalments_paid(project),
                                 strict=True) if paid == i.amount_fen)
                total += project.raised - repaid
        return total

    def _review(self, cmd: oc.ReviewProject, actor: int) -> Reply:
        self._require_role(actor, "operator")
        project = self.projects.get(cmd.project_id)
        if project is None:
            raise CrowdexError("project_not_found", f"no project {cmd.project_id}")
        wanted = rules.OPEN if cmd.approve else rules.REJECTED
        rules.check_transition(project.status, wanted)
        if cmd.approve:
            self.board(project).check_deadline(project.deadline_us, self.machine.now_us,
                                               "approval")
            project.approved_us = self.machine.now_us
            self._closing.push(project.deadline_us, project.project_id)
            self._schedule_due(project.deadline_us)
        self._set_status(project, wanted)
        self._publish(project)
        return Reply(200, self.project_view(project))

    # ---- subscriptions ------------------------------------------------------------------------

    def _subscribe(self, cmd: oc.Subscribe, actor: int) -> Reply:
        # A fifth of a mixed journal's entries: the helpers a subscription shares with other
        # commands are inlined where they succeed, and called to raise where they refuse
        # (their words are state: remembered replies), so the checks and their order stay.
        machine = self.machine
        investor = machine.accounts.get(actor)
        if investor is None or investor.role != "investor":
            self._require_role(actor, "investor")
        project = self.projects.get(cmd.project_id)
        cn2015 = machine.profile == "cn2015"
        if project is None or (cn2015 and not self.visible(project, investor)):
            self.project_for(cmd.project_id, investor)
        now = machine.now_us
        if project.status != rules.OPEN or now >= project.deadline_us:
            raise CrowdexError("offering_not_open", f"project {project.project_id} is not open")
        board = self.board(project)
        config = board.config
        if (cn2015 and config.qualified_only_cn2015
                and investor.investor_class not in QUALIFIED_CLASSES):
            # A business rule (API.md: 422, eligibility first); 403 is /v1/offers' alone. The
            # reply is state (idempotent retries): rules 3 journals replay their 403.
            raise CrowdexError("not_eligible", "this board is open to qualified investors only",
                               status=422 if machine.rules >= 4 else 403)
        quantity, tier_id = cmd.quantity, cmd.tier_id
        amount = board.price_subscription(project.terms, quantity, cmd.rate_bps, tier_id)
        live = self._live[project.project_id]
        board.check_capacity(project.terms, quantity, tier_id, live.taken, ALLOCATION)
        if tier_id is not None:
            self._check_per_backer(board, project, live, actor, cmd)
        counts = config.counts_toward_limit
        committed = self._committed[actor] if counts else None
        if counts and not cn2015 and investor.investor_class == "retail":
            # _check_retail_limit, inlined where it passes.
            limit = committed.limit
            if limit is None:
                limit = committed.limit = rules.retail_limit_fen(investor.annual_income,
                                                                  investor.net_worth)
            if committed.used_fen(now - YEAR_US) + amount > limit:
                self._check_retail_limit(investor, amount)
        accounts = machine.balances.accounts.rows
        cash = accounts["cash_available"]
        available = cash.item(actor)  # a Python int: half the cost of a numpy scalar
        if available < amount:
            raise CrowdexError("insufficient_funds",
                               f"{amount} fen needed, {available} available")
        subscriptions = self.subscriptions
        if len(subscriptions) >= SUBSCRIPTIONS_MAX:
            raise CrowdexError("not_permitted", "the venue holds its maximum of subscriptions")
        # From 0 to what is available (a journaled quantity is positive, and so is a price):
        # the difference fits int64, as numpy's would.
        cash[actor] = available - amount
        reserved = accounts["cash_reserved"]
        reserved[actor] = reserved.item(actor) + amount  # at most the venue's cash in all
        sub = Subscription(self.next_subscription_id, project.project_id, actor,
                           machine.last_sequence, now, quantity, cmd.rate_bps, tier_id, amount)
        self.next_subscription_id += 1
        subscriptions[sub.subscription_id] = sub
        # _index, inlined: a new subscription is live.
        self._by_project[sub.project_id].append(sub)
        if counts:
            # committed.add(sub, amount), inlined: made now, it is no older than the floor
            # (the exchange's time never goes back, nor does a horizon pass it), so it stays
            # in order.
            committed.floor_us = now
            committed.subs.append(sub)
            committed.fen += amount
        # _live_add(sub, 1, live), inlined.
        live.amount += amount
        live.quantity += quantity
        taken = live.taken
        taken[tier_id] = taken.get(tier_id, 0) + quantity
        if tier_id is not None:
            per_backer, key = live.per_backer, (actor, tier_id)
            per_backer[key] = per_backer.get(key, 0) + quantity
        live_accounts = live.accounts
        live_accounts[actor] = live_accounts.get(actor, 0) + 1
        if machine.may_want_updates():
            self._publish(project)
        return Reply(201, subscription_view(sub)) if machine.replies_needed else UNREAD[201]

    def _check_per_backer(self, board: rules.Board, project: Project, live: _Live, actor: int,
                          cmd: oc.Subscribe) -> None:
        if cmd.tier_id is None or not hasattr(board, "tier"):
            return
        most = board.tier(project.terms, cmd.tier_id).get("max_per_backer")
        if most is None:
            return
        have = live.per_backer.get((actor, cmd.tier_id), 0)
        if have + cmd.quantity > most:
            raise CrowdexError("limit_exceeded",
                               f"at most {most} per backer on this tier; you have {have}")

    def retail_used_fen(self, account_id: int) -> int:
        """Live and allocated equity/IP/debt subscriptions of the last 365 days, in fen."""
        committed = self._committed.get(account_id)
        if committed is None:
            return 0
        return committed.used_fen(self.machine.now_us - YEAR_US)

    def recommitted(self, sub: Subscription, was_fen: int) -> None:
        """``sub``, on a board that counts toward the retail limit, changed status; it
        committed ``was_fen`` before (``committed_fen``): its investor's sum follows, unless
        the subscription is out of it (made over a year ago)."""
        committed = self._committed.get(sub.account_id)
        if committed is not None and committed.counted(sub):
            committed.fen += committed_fen(sub) - was_fen

    def _check_retail_limit(self, investor: AccountInfo, amount: int) -> None:
        limit = rules.retail_limit_fen(investor.annual_income, investor.net_worth)
        used = self.retail_used_fen(investor.account_id)
        if used + amount > limit:
            raise CrowdexError(
                "limit_exceeded",
                f"a retail investor may commit {limit} fen in 12 months; {used} is committed")

    def _index(self, sub: Subscription, board: rules.Board) -> None:
        self._by_project[sub.project_id].append(sub)
        if board.config.counts_toward_limit:
            self._committed[sub.account_id].add(sub, committed_fen(sub))
        if sub.status == LIVE:
            self._live_add(sub, 1)

    def _live_add(self, sub: Subscription, sign: int, live: _Live | None = None) -> None:
        """Add (sign 1) or take (-1) a subscription to its project's live figures
        (``live``: them, if the caller has them)."""
        if live is None:
            live = self._live[sub.project_id]
        account, tier, quantity = sub.account_id, sub.tier_id, sign * sub.quantity
        live.amount += sign * sub.reserved
        live.quantity += quantity
        taken = live.taken
        taken[tier] = taken.get(tier, 0) + quantity
        if tier is not None:
            key = (account, tier)
            per_backer = live.per_backer
            per_backer[key] = per_backer.get(key, 0) + quantity
        accounts = live.accounts
        count = accounts.get(account, 0) + sign
        if count:
            accounts[account] = count
        else:
            del accounts[account]

    def _cancel(self, cmd: oc.CancelSubscription, actor: int) -> Reply:
        sub = self.subscriptions.get(cmd.subscription_id)
        if sub is None or sub.account_id != actor:
            raise CrowdexError("subscription_not_found", f"no subscription {cmd.subscription_id}")
        project = self.projects[sub.project_id]
        if sub.status != LIVE:
            raise CrowdexError("invalid_state", f"the subscription is {sub.status}")
        now = self.machine.now_us
        if project.status != rules.OPEN or now >= project.deadline_us:
            raise CrowdexError("offering_not_open", "the offering has closed")
        config = self.board(project).config
        if self._cn2015() and not config.cancellable_cn2015:
            raise CrowdexError("cancel_not_permitted", "pledges cannot be cancelled here")
        if not now < project.deadline_us - config.cancel_window_us:
            raise CrowdexError("cancel_window_closed",
                               "subscriptions can no longer be cancelled on this offering")
        accounts = self._rows()
        accounts["cash_reserved"][sub.account_id] -= sub.reserved
        accounts["cash_available"][sub.account_id] += sub.reserved
        self._live_add(sub, -1)
        sub.status = CANCELLED
        sub.refunded = sub.reserved
        if config.counts_toward_limit:
            self.recommitted(sub, sub.reserved)
        self._publish(project)
        return Reply(200, subscription_view(sub)) if self.machine.replies_needed else UNREAD[200]

    # ---- the close ----------------------------------------------------------------------------

    def _close_command(self, cmd: oc.CloseProject, actor: int) -> Reply:
        self._require_role(actor, "operator")
        project = self.projects.get(cmd.project_id)
        if project is None:
            raise CrowdexError("project_not_found", f"no project {cmd.project_id}")
        if project.status != rules.OPEN:
            raise CrowdexError("invalid_state", f"a project that is {project.status} cannot "
                               "close")
        self.close(project)
        return Reply(200, self.project_view(project))

    def close(self, project: Project) -> None:
        """Close an open offering now: allocate, refund, issue, pay; or release everything."""
        board = self.board(project)
        now = self.machine.now_us
        project.closed_us = min(now, project.deadline_us)
        subs = [s for s in self._by_project.get(project.project_id, ()) if s.status == LIVE]
        kept = subs
        holders_max = board.config.holders_max_cn2015
        if self._cn2015() and holders_max is not None:
            keep = rules.holder_limit_cut([s.account_id for s in subs], holders_max)
            kept = [s for s, k in zip(subs, keep, strict=True) if k]
        views = [rules.SubscriptionView(s.subscription_id, s.account_id, s.sequence, s.quantity,
                                        s.rate_bps or 0, s.tier_id, s.reserved) for s in kept]
        result = board.close(project.terms, views, ALLOCATION)
        quantities, amounts = self._outcome(subs, kept, result)
        # Every live subscription leaves the live figures, which go with them: as a load
        # rebuilds them (from live subscriptions only), not one subtraction each.
        self._live.pop(project.project_id, None)
        counts = board.config.counts_toward_limit
        committed_of = self._committed.get
        owned, reserved_all = [], []
        for sub, quantity, amount in zip(subs, quantities, amounts, strict=True):
            sub.alloc_quantity, sub.alloc_amount = quantity, amount
            reserved = sub.reserved
            sub.refunded = reserved - amount
            sub.status = ALLOCATED if quantity else REFUNDED
            account = sub.account_id
            owned.append(account)
            reserved_all.append(reserved)
            # It was live: it committed its reservation, and commits its allocation now
            # (committed_fen), the same unless it was cut or refunded (recommitted, inlined).
            commits = amount if quantity else 0
            if counts and commits != reserved:
                committed = committed_of(account)
                if committed is not None and committed.counted(sub):
                    committed.fen += commits - reserved
        # Every reservation released and every refund paid at once (sums commute: the
        # balances are those of one subscription after the other).
        owners = np.array(owned, dtype=np.int64)
        reservations = np.array(reserved_all, dtype=np.int64)
        allocated = np.array(amounts, dtype=np.int64)
        if subs:
            accounts = self._rows()
            np.subtract.at(accounts["cash_reserved"], owners, reservations)
            np.add.at(accounts["cash_available"], owners, reservations - allocated)
        if result.succeeded:
            allotted = np.array(quantities, dtype=np.int64)
            got = allotted != 0
            self._settle_success(project, board, owners[got], allocated[got], allotted[got],
                                 result.clearing_rate_bps)
            if board.config.issues_units and project.lockup_until_us <= now:
                self._set_status(project, rules.TRADING)  # no lock-up: trading at the close
        else:
            self._set_status(project, rules.FAILED)
        self._publish(project)

    @staticmethod
    def _outcome(subs: list[Subscription], kept: list[Subscription],
                 result: rules.CloseResult) -> tuple[list[int], list[int]]:
        """Each live subscription's allocated quantity and amount (0, 0: refunded whole): the
        board's result for those it kept (``kept``, in order), nothing for the others."""
        if not result.succeeded:
            return [0] * len(subs), [0] * len(subs)
        if kept is subs:
            return list(result.quantities), list(result.amounts_fen)
        outcome = {s.subscription_id: (0, 0) for s in subs}
        for sub, q, a in zip(kept, result.quantities, result.amounts_fen, strict=True):
            outcome[sub.subscription_id] = (q, a)
        return ([outcome[s.subscription_id][0] for s in subs],
                [outcome[s.subscription_id][1] for s in subs])

    def _settle_success(self, project: Project, board: rules.Board, owners: np.ndarray,
                        amounts: np.ndarray, quantities: np.ndarray, rate_bps: int) -> None:
        """Pay the issuer and issue the units of a successful close: ``owners``, ``amounts``
        and ``quantities`` are its allocated subscriptions', in subscription order (int64)."""
        machine = self.machine
        # Per account, by id: what it pays and the units it gets, summed over its subscriptions.
        payers, index = np.unique(owners, return_inverse=True)
        paid = np.zeros(len(payers), dtype=np.int64)
        units = np.zeros(len(payers), dtype=np.int64)
        np.add.at(paid, index, amounts)
        np.add.at(units, index, quantities)
        issuer = project.issuer_id
        machine.credit_cash_many(np.full(len(payers), issuer, dtype=np.int64), paid,
                                 mv.SUBSCRIPTION_PAYMENT, payers)
        raised = int(paid.sum())
        config = board.config
        fee = rules.fee_half_up(raised, config.success_fee_bps)
        if fee:
            machine.take_from_proceeds(issuer, fee)
            machine.credit_cash(machine.fee_account_id, fee, mv.SUCCESS_FEE, issuer)
        if config.payout_released_pct < 100:
            net = raised - fee
            held = net - net * config.payout_released_pct // 100
            if held:
                machine.take_from_proceeds(issuer, held)
                machine.movements.record(machine.last_sequence, mv.PAYOUT_HELD, issuer,
                                         mv.EXTERNAL_ACCOUNT, mv.CASH, held)
            project.held_amount = held
        if config.issues_units:
            self._issue_units(project.project_id, payers, units)
            project.lockup_until_us = (project.closed_us
                                       + project.terms.get("lockup_days", 0) * rules.US_PER_DAY)
            self._locked.push(project.lockup_until_us, project.project_id)
            self._schedule_due(project.lockup_until_us)
        project.raised = raised
        project.subscribed_quantity = int(units.sum())
        project.investor_count = len(payers)
        project.success_fee = fee
        project.rate_bps = rate_bps
        self._set_status(project, rules.SUCCEEDED)
        event = self.terms.start(project)
        if event is not None:
            self._schedule_due(event)

    def _issue_units(self, instrument: int, holders: np.ndarray, quantities: np.ndarray) -> None:
        """Issue each account of ``holders`` (by id) its units (position rows made in account
        order), one ``UNITS_ISSUED`` movement each, in account order."""
        machine = self.machine
        if not len(holders):
            return
        balances = machine.balances
        slots = balances.position_slots_for(holders.tolist(), instrument)
        if (quantities <= 0).any():
            raise ValueError("units issued must be positive")
        np.add.at(balances.positions.rows["units_available"], slots, quantities)
        issued = np.zeros(len(holders), dtype=mv.MOVEMENT_DTYPE)
        issued["sequence"] = machine.last_sequence
        issued["kind"] = mv.UNITS_ISSUED
        issued["debit_account"] = mv.EXTERNAL_ACCOUNT
        issued["credit_account"] = holders
        issued["asset"] = instrument
        issued["amount"] = quantities
        machine.movements.record_many(issued)

    # ---- time ---------------------------------------------------------------------------------

    def _schedule_due(self, time_us: int) -> None:
        if self._next_due is None or time_us < self._next_due:
            self._next_due = time_us

    def on_time(self) -> None:
        """Close offerings whose deadline has come, by (deadline, project id), and start
        trading, by project id, when lock-ups end."""
        if self._next_due is None or self.machine.now_us < self._next_due:
            return
        now = self.machine.now_us
        for project in self._closing.due(self.projects, now):
            self.close(project)
        # After the closes, as the walk was: an offering closed just now whose lock-up has
        # ended already trades (``close``), and its entry is dropped here.
        for project in sorted(self._locked.due(self.projects, now), key=_project_id):
            self._set_status(project, rules.TRADING)
            self._publish(project)
        self.terms.on_time()
        self._recompute_due()

    def _recompute_due(self) -> None:
        self._next_due = None
        for time_us in (self._closing.earliest_us(self.projects),
                        self._locked.earliest_us(self.projects), self.terms.next_event_us()):
            if time_us is not None:
                self._schedule_due(time_us)

    def next_deadline_us(self) -> int | None:
        return self._next_due

    # ---- distributions, delivery, disclosures -------------------------------------------------

    def _distribute(self, cmd: oc.Distribute, actor: int) -> Reply:
        self._require_role(actor, "issuer")
        project = self._own_project(cmd.project_id, actor)
        if self.terms.is_board(project):  # operating rights pay the buy-back this way
            return Reply(200, distribution_view(self.terms.pay_buyback(project, cmd.amount,
                                                                       actor)))
        config = self.board(project).config
        if config.distribution_fee_bps == 0 or not config.issues_units:
            raise CrowdexError("invalid_state", "this board pays no distributions")
        if project.status not in (rules.SUCCEEDED, rules.TRADING):
            raise CrowdexError("invalid_state", "only a succeeded offering pays distributions")
        if project.board == "debt":
            owed = sum(i.amount_fen for i in self.instalments(project)) - self.repaid(project)
            if cmd.amount > owed:
                raise CrowdexError("not_permitted", f"the loan has {owed} fen left to repay")
        repaid = self.repaid(project)
        dist = self.escrow_payment(project, actor, cmd.amount)
        if project.board == "debt":
            project.payments.append((self.machine.now_us, repaid + cmd.amount))
        return Reply(200, distribution_view(dist))

    def escrow_payment(self, project: Project, issuer: int, amount: int) -> Distribution:
        """Take an issuer's payment to holders (422 ``insufficient_funds`` before anything
        changes); it waits in the issuer's escrow until the batch pays the holders of record.
        (The refusal's words are journal format, remembered replies: they stay as they were.)"""
        balances = self._rows()
        if int(balances["cash_available"][issuer]) < amount:
            raise CrowdexError("insufficient_funds", f"{amount} fen needed")
        balances["cash_available"][issuer] -= amount
        balances["cash_reserved"][issuer] += amount
        dist = Distribution(self.next_distribution_id, project.project_id, amount,
                            self.machine.now_us)
        self.next_distribution_id += 1
        self.distributions[dist.distribution_id] = dist
        self._pending[dist.distribution_id] = dist
        self._distributions_of[project.project_id].append(dist)
        return dist

    def pay_pending_distributions(self) -> int:
        """Pay every pending distribution to the holders of record now; returns how many.

        Called by the settlement batch (``PrepareSettlement``) inside a journaled command, so
        the holders of record are those at the batch. Each holder gets a share of the payment
        less the servicing (debt) or admin (IP) fee, pro rata per unit, largest remainder with
        ties to the lower account id. They are paid in id order, taken from those pending
        (``_pending``), not from a walk over every distribution ever made.
        """
        pending = self._pending
        paying = list(pending.values())
        for dist in paying:
            self._pay(dist)
            if dist.status != "pending":  # _pay marks it paid (or raises, and stops the batch)
                del pending[dist.distribution_id]
        return len(paying)

    def project_distributions(self, project_id: int) -> list[Distribution]:
        """A project's distributions, oldest first, from an index by project (not a walk over
        every distribution of the venue at each ``GET /v1/projects/{id}/distributions``)."""
        return list(self._distributions_of.get(project_id, ()))

    def _pay(self, dist: Distribution) -> None:
        machine = self.machine
        project = self.projects[dist.project_id]
        if self.terms.is_buyback(dist):
            self.terms.pay_out_buyback(dist, project)
            return
        issuer = project.issuer_id
        accounts, units = self.holder_columns(project.project_id)
        if not len(accounts):
            # After a buy-back cancelled the units, a month reported late goes to their last
            # holders.
            final = self.terms.final_holders(project.project_id)
            accounts = np.array([a for a, _ in final], dtype=np.int64)
            units = np.array([u for _, u in final], dtype=np.int64)
        balances = self._rows()
        balances["cash_reserved"][issuer] -= dist.amount
        dist.status = "paid"
        dist.paid_sequence = machine.last_sequence
        if not len(accounts):  # nobody to pay: the issuer keeps its money
            balances["cash_available"][issuer] += dist.amount
            return
        fee = rules.fee_half_up(dist.amount, self.board(project).config.distribution_fee_bps)
        shares = rules.largest_remainder_columns(dist.amount - fee, units, accounts)
        paid = shares > 0
        machine.credit_cash_many(accounts[paid], shares[paid], mv.DISTRIBUTION, issuer)
        if fee:
            machine.credit_cash(machine.fee_account_id, fee, mv.SERVICING_FEE, issuer)
        dist.fee = fee
        dist.holders = len(accounts)

    def holders(self, instrument_id: int) -> list[tuple[int, int]]:
        """``(account_id, units)`` of every holder of an instrument, by account id.

        Read from the position rows in bulk (each row is one account's position in one
        instrument, so an account appears once): a batch paying distributions asks this of
        every project it pays, and the venue holds a position row per account and instrument.
        """
        accounts, units = self.holder_columns(instrument_id)
        return list(zip(accounts.tolist(), units.tolist(), strict=True))

    def holder_columns(self, instrument_id: int) -> tuple[np.ndarray, np.ndarray]:
        """``holders`` as two int64 columns: the accounts, by id, and their units."""
        live = self.machine.balances.positions.live()
        mine = live[live["instrument_id"] == instrument_id]
        units = mine["units_available"] + mine["units_reserved"]
        held = units > 0
        accounts = mine["account_id"][held]
        order = np.argsort(accounts, kind="stable")
        return accounts[order], units[held][order]

    def _delivery(self, cmd: oc.ConfirmDelivery, actor: int) -> Reply:
        self._require_role(actor, "operator")
        project = self.projects.get(cmd.project_id)
        if project is None:
            raise CrowdexError("project_not_found", f"no project {cmd.project_id}")
        if project.board != "product" or project.status != rules.SUCCEEDED or project.delivery:
            raise CrowdexError("invalid_state", "nothing is held for delivery on this project")
        held = project.held_amount
        machine = self.machine
        if cmd.delivered:
            if held:
                machine.credit_cash(project.issuer_id, held, mv.PAYOUT_RELEASED,
                                    mv.EXTERNAL_ACCOUNT)
            project.delivery = "delivered"
        else:
            subs = [s for s in self._by_project[project.project_id] if s.status == ALLOCATED]
            shares = rules.largest_remainder(held, [s.alloc_amount for s in subs],
                                             [(s.sequence, s.account_id) for s in subs])
            back: dict[int, int] = defaultdict(int)
            for sub, share in zip(subs, shares, strict=True):
                back[sub.account_id] += share
            for account in sorted(back):
                if back[account]:
                    machine.credit_cash(account, back[account], mv.HELD_REFUND,
                                        mv.EXTERNAL_ACCOUNT)
            project.delivery = "refunded"
        project.held_amount = 0
        self._publish(project)
        return Reply(200, self.project_view(project))

    def _disclose(self, cmd: oc.PostDisclosure, actor: int) -> Reply:
        self._require_role(actor, "issuer")
        project = self._own_project(cmd.project_id, actor)
        count = len(self._disclosures_of.get(project.project_id, ()))
        if count >= DISCLOSURES_PER_PROJECT_MAX:
            raise CrowdexError("not_permitted", "this project has its maximum of disclosures")
        disclosure = Disclosure(self.next_disclosure_id, project.project_id, actor, cmd.title,
                                cmd.body, self.machine.now_us)
        self.next_disclosure_id += 1
        self.disclosures[disclosure.disclosure_id] = disclosure
        self._disclosures_of[project.project_id].append(disclosure)
        return Reply(201, disclosure_view(disclosure))

    def project_disclosures(self, project_id: int) -> list[Disclosure]:
        """A project's disclosures, oldest first, from an index by project kept as they are
        posted (rarely: no replay's hot path), not a walk over every disclosure of the venue,
        which the integrity list made for every project owing them for up to seven months."""
        return list(self._disclosures_of.get(project_id, ()))

    # ---- debt schedules -----------------------------------------------------------------------

    def instalments(self, project: Project) -> list[debt_board.Instalment]:
        if project.board != "debt" or project.status not in (rules.SUCCEEDED, rules.TRADING):
            return []
        cached = self._schedules.get(project.project_id)
        if cached is None:
            cached = debt_board.schedule(project.raised, project.rate_bps,
                                         project.terms["term_months"],
                                         project.terms["repayment"], project.closed_us)
            self._schedules[project.project_id] = cached
        return cached

    def repaid(self, project: Project) -> int:
        return project.payments[-1][1] if project.payments else 0

    def instalment_paid(self, project: Project,
                        instalment: debt_board.Instalment) -> tuple[int, int | None]:
        """How much of an instalment is paid, and when it was paid in full (or None)."""
        return self.instalments_paid(project)[instalment.number - 1]

    def instalments_paid(self, project: Project) -> list[tuple[int, int | None]]:
        """``instalment_paid`` of each instalment in order, in one pass over the schedule and
        the repayments (asking each instalment in turn sums those before it again: the
        integrity list, which asks every loan's for up to seven months, took 13-16 ms of the
        one thread so at the 1M mixed journal's state, 6 ms this way). Repayments cover the
        oldest unpaid instalment first, and their cumulative amounts only grow."""
        repaid, payments = self.repaid(project), project.payments
        out: list[tuple[int, int | None]] = []
        before = paying = 0  # paid for the instalments so far; the first payment not behind
        for instalment in self.instalments(project):
            through = before + instalment.amount_fen
            while paying < len(payments) and payments[paying][1] < through:
                paying += 1
            out.append((min(instalment.amount_fen, max(0, repaid - before)),
                        payments[paying][0] if paying < len(payments) else None))
            before = through
        return out

    def instalment_status(self, project: Project, instalment: debt_board.Instalment,
                          now_us: int, paid: int | None = None) -> str:
        """"paid", "default", "late" or "scheduled" now; ``paid``: how much of it is paid,
        if the caller has it (``instalments_paid``)."""
        if paid is None:
            paid, _ = self.instalment_paid(project, instalment)
        if paid == instalment.amount_fen:
            return "paid"
        overdue = now_us - instalment.due_us
        if overdue >= debt_board.DEFAULT_AFTER_DAYS * rules.US_PER_DAY:
            return "default"
        if overdue >= debt_board.LATE_AFTER_DAYS * rules.US_PER_DAY:
            return "late"
        return "scheduled"

    def defaulted(self, project: Project) -> bool:
        """Whether any instalment (or operating-rights month) is in default now: asked for
        every run of orders, so it compares the clock with the moment the project falls into
        default as its payments stand (``default_from_us``) instead of walking its schedule."""
        now = self.machine.now_us
        if project.project_id in self.terms.states:
            return self.terms.in_default(project.project_id, now)
        since = self.default_from_us(project)
        return since is not None and now >= since

    def default_from_us(self, project: Project) -> int | None:
        """When the project's first unpaid instalment is ``DEFAULT_AFTER_DAYS`` overdue (None:
        nothing unpaid). ``instalment_status`` says "default" from then on: an instalment is
        paid when the repayments cover it and every one before it, so what is unpaid depends
        only on the repayments so far, kept as their count (payments are only appended)."""
        key = (project.project_id, project.status, len(project.payments), project.raised,
               project.closed_us)
        found = self._default_from.get(key, _UNKNOWN)
        if found is _UNKNOWN:
            repaid, through, found = self.repaid(project), 0, None
            for instalment in self.instalments(project):
                through += instalment.amount_fen
                if instalment.amount_fen and through > repaid:  # not paid in full
                    due = instalment.due_us + debt_board.DEFAULT_AFTER_DAYS * rules.US_PER_DAY
                    found = due if found is None else min(found, due)
            if len(self._default_from) >= DEFAULT_FROM_CACHED_MAX:
                self._default_from.clear()
            self._default_from[key] = found
        return found

    # ---- for other components -----------------------------------------------------------------

    def instrument_info(self, instrument_id: int) -> InstrumentInfo | None:
        """The facts secondary markets need about an instrument (None: no such instrument).

        Asked for every run of orders. Of the facts, the board, its price and fees are fixed
        when the project is listed; the rest is the key of a cache of the views built (the
        status and lock-up, and whether the project is in default or closed now)."""
        project = self.projects.get(instrument_id)
        if project is None or project.status not in (rules.SUCCEEDED, rules.TRADING):
            return None
        if project.board != "debt" and instrument_id not in self.terms.states:
            # Neither defaulted (no instalments: ``instalments``) nor closed (no term).
            key = (instrument_id, project.status, project.lockup_until_us, False, False)
        else:
            key = (instrument_id, project.status, project.lockup_until_us,
                   self.defaulted(project), self.terms.closed(instrument_id, self.machine.now_us))
        info = self._infos.get(key)
        if info is None:
            if len(self._infos) >= INFOS_CACHED_MAX:
                self._infos.clear()
            info = self._infos[key] = self._instrument_info_now(project)
        return info

    def info_moves_with_time(self, instrument_id: int) -> bool:
        """Whether ``instrument_info(instrument_id)`` reads the clock: a loan's (in default
        from a moment) or an operating-rights term's (closed at its end). Any other
        instrument's info changes only with its project's status and lock-up, at a deadline
        (``on_time``) or by a command. An info says it too (``InstrumentInfo.reads_clock``)."""
        project = self.projects.get(instrument_id)
        return project is not None and self._reads_clock(project)

    def _reads_clock(self, project: Project) -> bool:
        # A superset of ``instrument_info``'s keys that hold the time's facts: its term starts
        # (``terms.states``) at an operating-rights offering's success, before which it has
        # no info.
        return project.board == "debt" or self.terms.is_board(project)

    def _instrument_info_now(self, project: Project) -> InstrumentInfo:
        instrument_id = project.project_id
        board = self.board(project)
        price = (board.unit_price_fen(project.terms) if board.config.issues_units
                 else min(t["price"] for t in project.terms["tiers"]))
        return InstrumentInfo(instrument_id, project.board, price, project.lockup_until_us,
                              project.status, self.defaulted(project),
                              board.config.tradable and board.config.issues_units,
                              board.config.seller_fee_bps,
                              self.terms.closed(instrument_id, self.machine.now_us),
                              "in_default" if self.terms.is_board(project) else "not_permitted",
                              self._reads_clock(project))

    def held_total(self) -> int:
        """Cash held by projects (product payouts awaiting delivery): in no account."""
        return sum(p.held_amount for p in self.projects.values())

    def units_issued(self, instrument_id: int) -> int:
        """Units of an instrument in issue: issued at its offering's success (0 if none), less
        those an operating-rights buy-back cancelled."""
        project = self.projects.get(instrument_id)
        if project is None or self.instrument_info(instrument_id) is None:
            return 0
        return project.subscribed_quantity - self.terms.units_cancelled(instrument_id)

    # ---- views --------------------------------------------------------------------------------

    def project_view(self, project: Project) -> dict:
        if project.status == rules.OPEN or project.status in (rules.PENDING_REVIEW,
                                                               rules.REJECTED):
            live = self._live.get(project.project_id)
            raised = live.amount if live else 0
            quantity = live.quantity if live else 0
            investors = len(live.accounts) if live else 0
        else:
            raised, quantity = project.raised, project.subscribed_quantity
            investors = project.investor_count
        view = {
            "project_id": project.project_id, "board": project.board, "title": project.title,
            "description": project.description, "issuer_id": project.issuer_id,
            "status": project.status, "deadline": format_time_us(project.deadline_us),
            "terms": project.terms, "raised": raised, "subscribed_quantity": quantity,
            "investor_count": investors, "created": format_time_us(project.created_us),
        }
        if project.closed_us:
            view["closed"] = format_time_us(project.closed_us)
        board = self.board(project)
        if board.config.issues_units and project.status in (rules.SUCCEEDED, rules.TRADING):
            view["instrument_id"] = project.project_id
            view["lockup_until"] = format_time_us(project.lockup_until_us)
        if project.board == "debt":
            if "auction" in project.terms:
                view["clearing_rate_bps"] = project.rate_bps or None
            else:
                view["rate_bps"] = project.terms["rate_bps"]
        if project.board == "product":
            view["held_amount"] = project.held_amount
            if project.status == rules.OPEN:
                live = self._live.get(project.project_id)
                sold = live.taken if live else {}
            else:
                sold = self._allocated_by_tier(project)
            view["tiers"] = [self._tier_view(t, sold) for t in project.terms["tiers"]]
            if project.delivery:
                view["delivery"] = project.delivery
        view.update(self.terms.view(project, self.machine.now_us))
        return view

    def _allocated_by_tier(self, project: Project) -> dict[Any, int]:
        """Units allocated on each tier of a pledge that is not open: made by one pass over its
        subscriptions, kept once it is closed (nothing changes them after the close). A walk
        per tier at every view took ~60 us a closed pledge: most of a ``GET /v1/projects``
        of all 576 projects (12-38 ms, 3 ms now) at the 1M mixed journal's state."""
        sold = self._allocated.get(project.project_id)
        if sold is None:
            sold = {}
            for sub in self._by_project.get(project.project_id, ()):
                sold[sub.tier_id] = sold.get(sub.tier_id, 0) + sub.alloc_quantity
            if project.status in rules.CLOSED_STATUSES:
                self._allocated[project.project_id] = sold
        return sold

    def _tier_view(self, tier: dict, sold_by_tier: dict[Any, int]) -> dict:
        sold = sold_by_tier.get(tier["tier_id"], 0)
        remaining = None if tier["quantity"] is None else tier["quantity"] - sold
        return {"tier_id": tier["tier_id"], "price": tier["price"], "quantity": tier["quantity"],
                "sold": sold, "remaining": remaining, "reward": tier.get("reward"),
                "estimated_delivery": tier.get("estimated_delivery")}

    def project_subscriptions(self, project_id: int) -> list[Subscription]:
        return list(self._by_project.get(project_id, ()))

    def account_subscriptions(self, account_id: int) -> list[Subscription]:
        """The account's subscriptions, by id (as ``subscriptions`` holds them: ids are given
        in order and none is removed), from an index, not a walk over every subscription:
        that walk took 24 ms of the one thread a ``GET /v1/me/subscriptions`` at 202k
        subscriptions (the 1M mixed journal's state). Reads, not subscribing (a replay's
        hot path), take the subscriptions made since the last read into the index, each
        once."""
        subscriptions, by_account = self.subscriptions, self._by_account
        for subscription_id in range(self._by_account_upto, self.next_subscription_id):
            sub = subscriptions.get(subscription_id)
            if sub is not None:
                mine = by_account.get(sub.account_id)
                if mine is None:
                    by_account[sub.account_id] = [sub]
                else:
                    mine.append(sub)
        self._by_account_upto = self.next_subscription_id
        return list(by_account.get(account_id, ()))

    def _publish(self, project: Project) -> None:
        # Updates carry the whole project view, like the channel's snapshot; nobody
        # listening means nothing to build (a replay: not even the channel's name).
        if not self.machine.may_want_updates():
            return
        channel = f"project:{project.project_id}"
        if self.machine.wants(channel):
            self.machine.publish(channel, self.project_view(project))

    # ---- snapshots ----------------------------------------------------------------------------

    def arrays(self) -> dict[str, np.ndarray]:
        return {}

    def meta(self) -> bytes:
        return _encoder.encode(OfferingsMeta(
            self.next_project_id, self.next_subscription_id, self.next_distribution_id,
            self.next_disclosure_id, list(self.projects.values()),
            list(self.subscriptions.values()), list(self.distributions.values()),
            list(self.disclosures.values()), self.rules_file, self.terms.meta()))

    def _index_project(self, project: Project) -> None:
        """Put a new or loaded project in the indexes by project (``_reset``)."""
        self._projects_of[project.issuer_id].append(project)
        self._with_status[project.status][project.project_id] = project
        if project.status == rules.OPEN:
            self._closing.push(project.deadline_us, project.project_id)
        elif project.status == rules.SUCCEEDED and self.board(project).config.issues_units:
            self._locked.push(project.lockup_until_us, project.project_id)

    def load(self, arrays: dict[str, np.ndarray], meta: bytes) -> None:
        state = _decoder.decode(meta)
        self._reset()
        self.next_project_id = state.next_project_id
        self.next_subscription_id = state.next_subscription_id
        self.next_distribution_id = state.next_distribution_id
        self.next_disclosure_id = state.next_disclosure_id
        self.projects = {p.project_id: p for p in state.projects}
        for project in state.projects:
            self._index_project(project)
        self.rules_file = state.rules_file
        self.terms.load(state.operating_terms)
        self.distributions = {d.distribution_id: d for d in state.distributions}
        for dist in state.distributions:
            self._distributions_of[dist.project_id].append(dist)
            if dist.status == "pending":
                self._pending[dist.distribution_id] = dist
        self.disclosures = {d.disclosure_id: d for d in state.disclosures}
        for disclosure in state.disclosures:
            self._disclosures_of[disclosure.project_id].append(disclosure)
        for sub in state.subscriptions:
            self.subscriptions[sub.subscription_id] = sub
            self._index(sub, self.board(self.projects[sub.project_id]))
        self._recompute_due()


def subscription_view(sub: Subscription) -> dict:
    view = {"subscription_id": sub.subscription_id, "project_id": sub.project_id,
            "account_id": sub.account_id, "status": sub.status, "quantity": sub.quantity,
            "reserved_amount": sub.reserved}
    if sub.rate_bps is not None:
        view["rate_bps"] = sub.rate_bps
    if sub.tier_id is not None:
        view["tier_id"] = sub.tier_id
    return view


def allocation_view(sub: Subscription) -> dict:
    return {"subscription_id": sub.subscription_id, "account_id": sub.account_id,
            "quantity": sub.alloc_quantity, "amount": sub.alloc_amount,
            "refunded": sub.refunded}


def distribution_view(dist: Distribution) -> dict:
    return {"distribution_id": dist.distribution_id, "project_id": dist.project_id,
            "amount": dist.amount, "status": dist.status, "fee": dist.fee,
            "holders": dist.holders, "time": format_time_us(dist.time_us)}


def disclosure_view(d: Disclosure) -> dict:
    return {"disclosure_id": d.disclosure_id, "project_id": d.project_id, "title": d.title,
            "body": d.body, "time": format_time_us(d.time_us)}
