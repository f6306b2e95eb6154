"""The cn2015 bulletin board: bilateral trades by posted offers instead of a matched book.

Under the ``cn2015`` profile no centralised matching is allowed (BOARDS.md): a holder posts an
offer (``PostOffer``), another qualified investor takes it (``AcceptOffer``), and the trade is
bilateral, at the offer's price. Posting reserves the poster's side in ``Balances`` (units for a
sell, ``price x quantity`` cash for a buy); an accept moves cash and units between the two
accounts, charges the seller fee and records the movements for settlement exactly as a book
fill does (``TRADE_CASH``, ``TRADE_UNITS``, ``TRADE_FEE``; the seller's ``cash_unsettled`` rises
by the proceeds net of the fee under rules 4, by the gross notional before).

Two cn2015 rules live here:

- Holder limit: a transfer after which an instrument would have more holders than its board's
  ``holders_max_cn2015`` is refused (``holder_limit``).
- T+5: units become sellable at 00:00 UTC of the fifth weekday after the calendar day they were
  acquired on (by allocation, at the project's close time, or by an accepted offer). Only
  sellable units may back a sell offer or an accept of a buy offer (``holding_period``). Units
  still in their holding period are kept as "young lots" per (account, instrument); since only
  sellable units are ever reserved or sold, young units are never consumed, and the sellable
  part of a position is simply ``units_available - young units``.

Trade ids come from the markets component's trade counter, so a trade id is unique venue-wide
whichever mechanism made the trade.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from operator import attrgetter
from typing import Any

import msgspec
import numpy as np

from boards import rules
from engine import movements as mv
from engine import offers_commands as oc
from engine.clock import format_time_us
from engine.errors import CrowdexError
from engine.kernels.layout import C_NEXT_TRADE
from engine.machine import AccountInfo, Reply

SELLER_FEE_BPS = 100  # BOARDS.md's default; a project's board rules may set another
QUALIFIED_CLASSES = ("qualified", "institutional")
HOLDING_WEEKDAYS = 5  # T+5
OPEN_OFFERS_MAX = 1000  # per account
FINISHED_OFFERS_KEPT = 100_000  # filled/cancelled offers kept for GET /v1/offers/{id}
TRADES_PER_OFFER_MAX = 10_000  # trades remembered on one offer's record (the oldest are dropped)
# The Unix epoch (1970-01-01) was a Thursday: (days + EPOCH_WEEKDAY) % 7 is 0 on Mondays.
EPOCH_WEEKDAY = 3

OPEN = "open"
FILLED = "filled"
CANCELLED = "cancelled"


def sellable_from_us(acquired_us: int) -> int:
    """When units acquired at ``acquired_us`` become sellable: 00:00 UTC of the fifth weekday
    after the acquisition's calendar day (bought on a Friday: sellable the next Friday)."""
    day = acquired_us // rules.US_PER_DAY
    counted = 0
    while counted < HOLDING_WEEKDAYS:
        day += 1
        if (day + EPOCH_WEEKDAY) % 7 < 5:
            counted += 1
    return day * rules.US_PER_DAY


class OfferRecord(msgspec.Struct, array_like=True):
    offer_id: int
    account_id: int
    instrument_id: int
    side: str  # the poster's side: buy | sell
    price: int
    quantity: int
    created_us: int
    status: str = OPEN
    filled: int = 0
    # (trade_id, quantity, time_us) of each accept, oldest first.
    trades: list[tuple[int, int, int]] = msgspec.field(default_factory=list)

    @property
    def remaining(self) -> int:
        return self.quantity - self.filled if self.status == OPEN else 0


class OffersMeta(msgspec.Struct, array_like=True):
    next_offer_id: int
    offers: list[OfferRecord]
    # Young lots bought by accepted offers: (account, instrument, sellable_from_us, quantity).
    lots: list[tuple[int, int, int, int]]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(OffersMeta)


def offer_view(offer: OfferRecord) -> dict:
    return {
        "offer_id": offer.offer_id,
        "instrument_id": offer.instrument_id,
        "side": offer.side,
        "price": offer.price,
        "quantity": offer.quantity,
        "remaining": offer.remaining,
        "filled_quantity": offer.filled,
        "status": offer.status,
        "created": format_time_us(offer.created_us),
    }


class Offers:
    """The bulletin-board component (see the module docstring)."""

    name = "offers"

    def __init__(self, machine: Any) -> None:
        self.machine = machine
        self.next_offer_id = 1
        self.offers: dict[int, OfferRecord] = {}
        self.finished: OrderedDict[int, None] = OrderedDict()
        self.open_by_account: dict[int, dict[int, OfferRecord]] = {}
        # Open offers by instrument, by id (derived: ``open_offers``).
        self.open_by_instrument: dict[int, dict[int, OfferRecord]] = {}
        # (account, instrument) -> [[sellable_from_us, quantity], ...] oldest first.
        self.young: dict[tuple[int, int], list[list[int]]] = {}

    def handlers(self) -> dict[type, Callable[[Any, int], Reply]]:
        return {oc.PostOffer: self._post, oc.AcceptOffer: self._accept,
                oc.CancelOffer: self._cancel}

    # ---- rules checks ---------------------------------------------------------------------------

    def _offerings(self) -> Any:
        return self.machine.component("offerings")

    def eligible(self, actor: int) -> AccountInfo:
        """The actor if a qualified or institutional investor: 403 otherwise."""
        account = self.machine.accounts.get(actor)
        if account is None or account.role != "investor":
            raise CrowdexError("forbidden", "only investors trade on the bulletin board")
        if account.investor_class not in QUALIFIED_CLASSES:
            raise CrowdexError("not_eligible", "the bulletin board is for qualified investors")
        return account

    def _check_profile(self) -> None:
        if self.machine.profile != "cn2015":
            raise CrowdexError("not_permitted",
                               "offers exist only under the cn2015 profile; use /v1/orders")

    def _check_tradable(self, info: Any, seller_side: bool) -> None:
        if info.closed:
            raise CrowdexError("instrument_closed", "the instrument's term has ended")
        if not info.tradable:
            raise CrowdexError("not_permitted", f"the {info.board} board has no secondary market")
        if info.status != rules.TRADING:
            raise CrowdexError("locked_up", "the instrument is still locked up")
        if info.defaulted and seller_side:
            raise info.default_refusal()

    def _instrument(self, instrument_id: int) -> Any:
        info = self._offerings().instrument_info(instrument_id)
        if info is None:
            raise CrowdexError("instrument_not_found", f"no instrument {instrument_id}")
        return info

    def _position(self, account_id: int, instrument_id: int) -> np.void:
        balances = self.machine.balances
        return balances.positions.rows[balances.position_slot(account_id, instrument_id)]

    def units_available(self, account_id: int, instrument_id: int) -> int:
        """Free units of a position (0 when there is none; creates no slot)."""
        balances = self.machine.balances
        slot = balances.position_slots.get((account_id, instrument_id))
        return 0 if slot is None else int(balances.positions.rows[slot]["units_available"])

    def young_units(self, account_id: int, instrument_id: int) -> int:
        """Units of the position still in their T+5 holding period (no state change)."""
        now = self.machine.now_us
        young = sum(q for t, q in self.young.get((account_id, instrument_id), ()) if t > now)
        project = self._offerings().projects.get(instrument_id)
        if project is not None and sellable_from_us(project.closed_us) > now:
            young += sum(s.alloc_quantity
                         for s in self._offerings().project_subscriptions(instrument_id)
                         if s.account_id == account_id)
        return young

    def _check_sellable(self, account_id: int, instrument_id: int, quantity: int) -> None:
        """Enough available units (``insufficient_holdings``), and enough past T+5."""
        self._prune(account_id, instrument_id)
        available = self.units_available(account_id, instrument_id)
        if available < quantity:
            raise CrowdexError("insufficient_holdings",
                               f"{quantity} units needed, {available} available")
        sellable = max(0, available - self.young_units(account_id, instrument_id))
        if sellable < quantity:
            raise CrowdexError(
                "holding_period",
                f"only {sellable} units are past the T+{HOLDING_WEEKDAYS} holding period")

    def _check_holder_limit(self, info: Any, buyer: int, seller: int, quantity: int) -> None:
        """Refuse a transfer after which the instrument would have too many holders."""
        offerings = self._offerings()
        # The rules the project was listed under (the operator's boards file may set it).
        project = offerings.projects[info.instrument_id]
        holders_max = offerings.board(project).config.holders_max_cn2015
        if holders_max is None:
            return
        holders = dict(offerings.holders(info.instrument_id))
        if buyer in holders:
            return
        after = len(holders) + 1 - (1 if holders.get(seller, 0) == quantity else 0)
        if after > holders_max:
            raise CrowdexError(
                "holder_limit",
                f"an instrument may have at most {holders_max} holders under cn2015")

    def _prune(self, account_id: int, instrument_id: int) -> None:
        """Drop lots whose holding period is over (inside apply only: it changes state)."""
        key = (account_id, instrument_id)
        lots = self.young.get(key)
        if lots is None:
            return
        now = self.machine.now_us
        kept = [lot for lot in lots if lot[0] > now]
        if kept:
            self.young[key] = kept
        else:
            del self.young[key]

    # ---- commands -------------------------------------------------------------------------------

    def _post(self, cmd: oc.PostOffer, actor: int) -> Reply:
        self.eligible(actor)
        info = self._instrument(cmd.instrument_id)
        self._check_profile()
        self._check_tradable(info, cmd.side == "sell")
        mine = self.open_by_account.setdefault(actor, {})
        if len(mine) >= OPEN_OFFERS_MAX:
            raise CrowdexError("limit_exceeded", f"at most {OPEN_OFFERS_MAX} open offers")
        if cmd.side == "buy":
            row = self.machine.balances.accounts.rows[actor]
            amount = cmd.price * cmd.quantity
            if int(row["cash_available"]) < amount:
                raise CrowdexError(
                    "insufficient_funds",
                    f"{amount} fen needed, {int(row['cash_available'])} available")
            row["cash_available"] -= amount
            row["cash_reserved"] += amount
        else:
            self._check_sellable(actor, cmd.instrument_id, cmd.quantity)
            position = self._position(actor, cmd.instrument_id)
            position["units_available"] -= cmd.quantity
            position["units_reserved"] += cmd.quantity
        offer = OfferRecord(self.next_offer_id, actor, cmd.instrument_id, cmd.side, cmd.price,
                            cmd.quantity, self.machine.now_us)
        self.next_offer_id += 1
        self.offers[offer.offer_id] = offer
        mine[offer.offer_id] = offer
        self.open_by_instrument.setdefault(offer.instrument_id, {})[offer.offer_id] = offer
        return Reply(201, offer_view(offer))

    def _open_offer(self, offer_id: int, owner: int | None = None) -> OfferRecord:
        offer = self.offers.get(offer_id)
        if offer is None or (owner is not None and offer.account_id != owner):
            raise CrowdexError("offer_not_found", f"no offer {offer_id}")
        if offer.status != OPEN:
            raise CrowdexError("offer_not_open", f"offer {offer_id} is {offer.status}")
        return offer

    def _accept(self, cmd: oc.AcceptOffer, actor: int) -> Reply:
        self.eligible(actor)
        offer = self._open_offer(cmd.offer_id)
        self._check_profile()
        if offer.account_id == actor:
            raise CrowdexError("not_permitted", "you cannot accept your own offer")
        info = self._instrument(offer.instrument_id)
        self._check_tradable(info, True)
        if cmd.quantity > offer.remaining:
            raise CrowdexError("exceeds_remaining",
                               f"the offer has {offer.remaining} units remaining")
        if offer.side == "sell":
            buyer, seller = actor, offer.account_id
        else:
            buyer, seller = offer.account_id, actor
        self._check_holder_limit(info, buyer, seller, cmd.quantity)
        notional = offer.price * cmd.quantity
        if offer.side == "sell":
            available = int(self.machine.balances.accounts.rows[actor]["cash_available"])
            if available < notional:
                raise CrowdexError("insufficient_funds",
                                   f"{notional} fen needed, {available} available")
        else:
            self._check_sellable(actor, offer.instrument_id, cmd.quantity)
        trade_id = self._trade(offer, buyer, seller, cmd.quantity)
        return Reply(200, {"trade_id": trade_id, "offer_id": offer.offer_id,
                           "price": offer.price, "quantity": cmd.quantity,
                           "remaining": offer.remaining, "status": offer.status})

    def _trade(self, offer: OfferRecord, buyer: int, seller: int, quantity: int) -> int:
        """Move cash, units and the fee for one accept, and record the movements."""
        machine = self.machine
        instrument = offer.instrument_id
        notional = offer.price * quantity
        info = self._offerings().instrument_info(instrument)
        fee_bps = info.seller_fee_bps if info is not None else SELLER_FEE_BPS
        fee = rules.fee_half_up(notional, fee_bps)
        accounts = machine.balances.accounts.rows
        seller_position = self._position(seller, instrument)
        if offer.side == "sell":  # the poster's reserved units, the acceptor's free cash
            accounts[buyer]["cash_available"] -= notional
            seller_position["units_reserved"] -= quantity
        else:  # the poster's reserved cash, the acceptor's free (sellable) units
            accounts[buyer]["cash_reserved"] -= notional
            seller_position["units_available"] -= quantity
        self._position(buyer, instrument)["units_available"] += quantity
        # Proceeds are unsettled until the batch that records them; the fee comes out of them
        # (the venue-wide rule the matching kernel's fills follow too).
        machine.credit_cash(seller, notional, mv.TRADE_CASH, buyer)
        machine.movements.record(machine.last_sequence, mv.TRADE_UNITS, seller, buyer,
                                 instrument, quantity)
        if fee:
            machine.take_from_proceeds(seller, fee)
            machine.credit_cash(machine.fee_account_id, fee, mv.TRADE_FEE, seller)
        self._add_young(buyer, instrument, quantity)
        trade_id = self._next_trade_id()
        if machine.rules >= 2:  # commands.RULES_VERSION: offer trades are on the tape
            machine.component("markets").record_trade(
                instrument, trade_id, offer.price, quantity,
                "buy" if offer.side == "sell" else "sell")  # the acceptor takes
        offer.filled += quantity
        offer.trades.append((trade_id, quantity, machine.now_us))
        del offer.trades[:-TRADES_PER_OFFER_MAX]
        if offer.filled == offer.quantity:
            offer.status = FILLED
            self._finish(offer)
        return trade_id

    def _add_young(self, account_id: int, instrument_id: int, quantity: int) -> None:
        self._prune(account_id, instrument_id)
        lots = self.young.setdefault((account_id, instrument_id), [])
        sellable_from = sellable_from_us(self.machine.now_us)
        if lots and lots[-1][0] == sellable_from:  # same day: one lot
            lots[-1][1] += quantity
        else:
            lots.append([sellable_from, quantity])

    def _next_trade_id(self) -> int:
        counters = self.machine.component("markets").engine.counters
        trade_id = int(counters[C_NEXT_TRADE])
        counters[C_NEXT_TRADE] = trade_id + 1
        return trade_id

    def _cancel(self, cmd: oc.CancelOffer, actor: int) -> Reply:
        self.eligible(actor)
        offer = self._open_offer(cmd.offer_id, owner=actor)
        self._check_profile()
        self._withdraw(offer)
        return Reply(200, offer_view(offer))

    def _withdraw(self, offer: OfferRecord) -> None:
        """Cancel an open offer: its poster's reservation is released."""
        rest = offer.quantity - offer.filled
        if offer.side == "buy":
            row = self.machine.balances.accounts.rows[offer.account_id]
            row["cash_reserved"] -= offer.price * rest
            row["cash_available"] += offer.price * rest
        else:
            position = self._position(offer.account_id, offer.instrument_id)
            position["units_reserved"] -= rest
            position["units_available"] += rest
        offer.status = CANCELLED
        self._finish(offer)

    def cancel_open(self, instrument_id: int, sides: tuple[str, ...]) -> int:
        """Cancel every open offer of an instrument on ``sides`` (the offerings' clock: the end
        of an operating-rights term, a default); returns how many."""
        offers = [o for o in self.open_offers(instrument_id) if o.side in sides]
        for offer in offers:
            self._withdraw(offer)
        return len(offers)

    def _finish(self, offer: OfferRecord) -> None:
        self.open_by_account.get(offer.account_id, {}).pop(offer.offer_id, None)
        self.open_by_instrument.get(offer.instrument_id, {}).pop(offer.offer_id, None)
        self.finished[offer.offer_id] = None
        while len(self.finished) > FINISHED_OFFERS_KEPT:
            oldest, _ = self.finished.popitem(last=False)
            self.offers.pop(oldest, None)

    # ---- reads ----------------------------------------------------------------------------------

    def open_offers(self, instrument_id: int | None = None) -> list[OfferRecord]:
        """Open offers, oldest first, of one instrument or of all: from the open offers by
        instrument, not a walk over every offer kept (up to ``FINISHED_OFFERS_KEPT`` finished
        ones besides the open ones, of every instrument)."""
        if instrument_id is not None:
            return list(self.open_by_instrument.get(instrument_id, {}).values())
        return sorted((o for offers in self.open_by_instrument.values() for o in offers.values()),
                      key=attrgetter("offer_id"))

    # ---- the clock ------------------------------------------------------------------------------

    def on_time(self) -> None:
        """Nothing fires: holding periods are compared with the time when units are sold."""

    def next_deadline_us(self) -> int | None:
        return None

    # ---- snapshots ------------------------------------------------------------------------------

    def arrays(self) -> dict[str, np.ndarray]:
        return {}

    def meta(self) -> bytes:
        return _encoder.encode(OffersMeta(
            next_offer_id=self.next_offer_id,
            offers=[self.offers[i] for i in sorted(self.offers)],
            lots=[(a, i, t, q) for (a, i), lots in sorted(self.young.items()) for t, q in lots],
        ))

    def load(self, arrays: dict[str, np.ndarray], meta: bytes) -> None:
        state = _decoder.decode(meta)
        self.next_offer_id = state.next_offer_id
        self.offers = {o.offer_id: o for o in state.offers}
        self.finished = OrderedDict((o.offer_id, None) for o in state.offers
                                    if o.status != OPEN)
        self.open_by_account, self.open_by_instrument = {}, {}
        for offer in state.offers:  # by id
            if offer.status == OPEN:
                self.open_by_account.setdefault(offer.account_id, {})[offer.offer_id] = offer
                self.open_by_instrument.setdefault(offer.instrument_id,
                                                   {})[offer.offer_id] = offer
        self.young = {}
        for account, instrument, sellable_from, quantity in state.lots:
            self.young.setdefault((account, instrument), []).append([sellable_from, quantity])
