"""Every endpoint of the API, once, for both clients.

An endpoint method builds a ``Call`` (method, path, body, query, the type of its answer) and
hands it to ``self._call``: the sync client performs it and returns the answer, the async one
returns an awaitable of it. Retries, idempotency keys and errors live in ``_transport``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from crowdex_client import models as m

Side = Literal["buy", "sell"]


@dataclass(frozen=True, slots=True)
class Call:
    method: str
    path: str
    result: Any = None  # a msgspec type to decode into; None: plain JSON; str: text
    body: Any = None
    params: dict[str, str] | None = None
    idempotency_key: str | None = None


def _fields(**values: Any) -> dict[str, Any]:
    """A body or query without the fields left out (None)."""
    return {name: value for name, value in values.items() if value is not None}


def _query(**values: Any) -> dict[str, str] | None:
    return {name: str(value) for name, value in _fields(**values).items()} or None


class Endpoints:
    """The API's calls. Money is integer fen, prices fen per unit, rates basis points.

    Every POST and DELETE takes ``idempotency_key``; when it is left out one is made up, and
    the same key goes with each retry of that call, so a retry never does a thing twice.
    """

    def _call(self, call: Call) -> Any:
        raise NotImplementedError

    # ---- system ---------------------------------------------------------------------------

    def health(self) -> m.Health:
        return self._call(Call("GET", "/healthz", m.Health))

    def metrics(self) -> str:
        """The Prometheus text."""
        return self._call(Call("GET", "/metrics", str))

    def openapi(self) -> dict:
        return self._call(Call("GET", "/openapi.json"))

    def venue(self) -> m.Venue:
        """How the venue runs: its profile, clock (wall or manual) and exchange time."""
        return self._call(Call("GET", "/v1/venue", m.Venue))

    def boards(self) -> m.BoardsView:
        """The rules in force on every board (fees, durations, cancel windows, lock-ups)."""
        return self._call(Call("GET", "/v1/boards", m.BoardsView))

    # ---- accounts and money ---------------------------------------------------------------

    def create_account(self, role: Literal["investor", "issuer", "operator"], name: str, *,
                       investor_class: str | None = None, annual_income: int | None = None,
                       net_worth: int | None = None,
                       idempotency_key: str | None = None) -> m.AccountCreated:
        """Operator: open an account; its API key is in the answer, and only there."""
        body = _fields(role=role, name=name, investor_class=investor_class,
                       annual_income=annual_income, net_worth=net_worth)
        return self._call(Call("POST", "/v1/accounts", m.AccountCreated, body,
                               idempotency_key=idempotency_key))

    def deposit(self, account_id: int, amount: int, reference: str, *,
                idempotency_key: str | None = None) -> m.DepositResult:
        """Operator: the custodian bank's credit; dedupes on ``reference``."""
        return self._call(Call("POST", f"/v1/accounts/{account_id}/deposits", m.DepositResult,
                               {"amount": amount, "reference": reference},
                               idempotency_key=idempotency_key))

    def withdraw(self, amount: int, reference: str, *,
                 idempotency_key: str | None = None) -> m.WithdrawalResult:
        return self._call(Call("POST", "/v1/me/withdrawals", m.WithdrawalResult,
                               {"amount": amount, "reference": reference},
                               idempotency_key=idempotency_key))

    def me(self) -> m.Me:
        return self._call(Call("GET", "/v1/me", m.Me))

    # ---- admin ----------------------------------------------------------------------------

    def advance_clock(self, seconds: int, *,
                      idempotency_key: str | None = None) -> m.ClockResult:
        """Operator, manual clock only."""
        return self._call(Call("POST", "/v1/admin/clock", m.ClockResult,
                               {"advance_seconds": seconds},
                               idempotency_key=idempotency_key))

    def state(self) -> m.AdminState:
        """Operator: the sequence, state hash, exchange time and cash total."""
        return self._call(Call("GET", "/v1/admin/state", m.AdminState))

    # ---- projects -------------------------------------------------------------------------

    def create_project(self, board: str, title: str, deadline: str, terms: dict, *,
                       description: str = "",
                       idempotency_key: str | None = None) -> m.ProjectView:
        """Issuer: list a project; ``terms`` as API.md gives them for the board."""
        body = {"board": board, "title": title, "description": description,
                "deadline": deadline, "terms": terms}
        return self._call(Call("POST", "/v1/projects", m.ProjectView, body,
                               idempotency_key=idempotency_key))

    def projects(self, *, board: str | None = None, status: str | None = None,
                 limit: int | None = None) -> list[m.ProjectView]:
        return self._call(Call("GET", "/v1/projects", list[m.ProjectView],
                               params=_query(board=board, status=status, limit=limit)))

    def project(self, project_id: int) -> m.ProjectView:
        return self._call(Call("GET", f"/v1/projects/{project_id}", m.ProjectView))

    def _project_action(self, project_id: int, action: str, key: str | None,
                        body: Any = None) -> m.ProjectView:
        return self._call(Call("POST", f"/v1/projects/{project_id}/{action}", m.ProjectView,
                               body, idempotency_key=key))

    def approve(self, project_id: int, *, idempotency_key: str | None = None) -> m.ProjectView:
        return self._project_action(project_id, "approve", idempotency_key)

    def reject(self, project_id: int, *, idempotency_key: str | None = None) -> m.ProjectView:
        return self._project_action(project_id, "reject", idempotency_key)

    def close_project(self, project_id: int, *,
                      idempotency_key: str | None = None) -> m.ProjectView:
        """Operator: close the offering now (it succeeds or fails by its terms)."""
        return self._project_action(project_id, "close", idempotency_key)

    def deliver(self, project_id: int, delivered: bool = True, *,
                idempotency_key: str | None = None) -> m.ProjectView:
        """Operator, product: release the held payout (``delivered=False``: refund it)."""
        return self._project_action(project_id, "delivery", idempotency_key,
                                    {"delivered": delivered})

    def subscribe(self, project_id: int, quantity: int, *, rate_bps: int | None = None,
                  tier_id: str | int | None = None,
                  idempotency_key: str | None = None) -> m.SubscriptionView:
        """Investor: cash is reserved at once. Debt auctions take ``rate_bps``, products
        ``tier_id``."""
        body = _fields(quantity=quantity, rate_bps=rate_bps, tier_id=tier_id)
        return self._call(Call("POST", f"/v1/projects/{project_id}/subscriptions",
                               m.SubscriptionView, body, idempotency_key=idempotency_key))

    def cancel_subscription(self, subscription_id: int, *,
                            idempotency_key: str | None = None) -> m.SubscriptionView:
        return self._call(Call("DELETE", f"/v1/subscriptions/{subscription_id}",
                               m.SubscriptionView, idempotency_key=idempotency_key))

    def my_movements(self, limit: int | None = None) -> list[m.Movement]:
        """Your movements, newest first: pending ones, then settled ones with their batch."""
        return self._call(Call("GET", "/v1/me/movements", list[m.Movement],
                               params=_query(limit=limit)))

    def my_subscriptions(self) -> list[m.SubscriptionView]:
        return self._call(Call("GET", "/v1/me/subscriptions", list[m.SubscriptionView]))

    def allocations(self, project_id: int) -> list[m.AllocationView]:
        return self._call(Call("GET", f"/v1/projects/{project_id}/allocations",
                               list[m.AllocationView]))

    def schedule(self, project_id: int) -> list[m.InstalmentView]:
        return self._call(Call("GET", f"/v1/projects/{project_id}/schedule",
                               list[m.InstalmentView]))

    def distribute(self, project_id: int, amount: int, *,
                   idempotency_key: str | None = None) -> m.DistributionView:
        """Issuer: a repayment or royalty, paid to holders at the next settlement batch."""
        return self._call(Call("POST", f"/v1/projects/{project_id}/distributions",
                               m.DistributionView, {"amount": amount},
                               idempotency_key=idempotency_key))

    def report_revenue(self, project_id: int, month: str, revenue: int, *,
                       idempotency_key: str | None = None) -> m.InstalmentView:
        """Issuer, operating rights: a month's revenue ("YYYY-MM"); what it owes is paid at
        once and reaches holders at the next settlement batch. Answers the month's row."""
        return self._call(Call("POST", f"/v1/projects/{project_id}/revenue",
                               m.InstalmentView, {"month": month, "revenue": revenue},
                               idempotency_key=idempotency_key))

    def distributions(self, project_id: int) -> list[m.DistributionView]:
        return self._call(Call("GET", f"/v1/projects/{project_id}/distributions",
                               list[m.DistributionView]))

    def disclose(self, project_id: int, title: str, body: str, *,
                 idempotency_key: str | None = None) -> m.DisclosureView:
        """Issuer: publish a disclosure."""
        return self._call(Call("POST", f"/v1/projects/{project_id}/disclosures",
                               m.DisclosureView, {"title": title, "body": body},
                               idempotency_key=idempotency_key))

    def disclosures(self, project_id: int) -> list[m.DisclosureView]:
        return self._call(Call("GET", f"/v1/projects/{project_id}/disclosures",
                               list[m.DisclosureView]))

    def integrity(self, month: str | None = None) -> m.IntegrityView:
        """The integrity list of ``month`` (YYYY-MM; default: the exchange clock's)."""
        return self._call(Call("GET", "/v1/integrity", m.IntegrityView,
                               params=_query(month=month)))

    # ---- orders and market data -----------------------------------------------------------

    def place_order(self, instrument_id: int, side: Side, quantity: int, *,
                    price: int | None = None, type: Literal["limit", "market"] | None = None,
                    time_in_force: str | None = None, post_only: bool | None = None,
                    client_order_id: str | None = None,
                    self_trade_prevention: str | None = None,
                    idempotency_key: str | None = None) -> m.Order:
        """Investor. A limit order when ``price`` is given, else a market order."""
        body = _fields(instrument_id=instrument_id, side=side, quantity=quantity, price=price,
                       type=type or ("limit" if price is not None else "market"),
                       time_in_force=time_in_force, post_only=post_only,
                       client_order_id=client_order_id,
                       self_trade_prevention=self_trade_prevention)
        return self._call(Call("POST", "/v1/orders", m.Order, body,
                               idempotency_key=idempotency_key))

    def cancel_order(self, order_id: int, *, idempotency_key: str | None = None) -> m.Order:
        return self._call(Call("DELETE", f"/v1/orders/{order_id}", m.Order,
                               idempotency_key=idempotency_key))

    def amend_order(self, order_id: int, *, price: int | None = None,
                    quantity: int | None = None,
                    idempotency_key: str | None = None) -> m.Order:
        """Change a resting order: a smaller quantity keeps its place in the queue; a new
        price or a larger quantity puts it at the back of its level."""
        return self._call(Call("PATCH", f"/v1/orders/{order_id}", m.Order,
                               _fields(price=price, quantity=quantity),
                               idempotency_key=idempotency_key))

    def orders(self, status: Literal["open", "all"] | None = None) -> list[m.Order]:
        return self._call(Call("GET", "/v1/orders", list[m.Order],
                               params=_query(status=status)))

    def order(self, order_id: int) -> m.Order:
        return self._call(Call("GET", f"/v1/orders/{order_id}", m.Order))

    def book(self, instrument_id: int, depth: int | None = None) -> m.Book:
        return self._call(Call("GET", f"/v1/instruments/{instrument_id}/book", m.Book,
                               params=_query(depth=depth)))

    def trades(self, instrument_id: int, limit: int | None = None) -> list[m.Trade]:
        """Newest first."""
        return self._call(Call("GET", f"/v1/instruments/{instrument_id}/trades",
                               list[m.Trade], params=_query(limit=limit)))

    def candles(self, instrument_id: int, interval: str | None = None,
                limit: int | None = None) -> list[m.Candle]:
        """Oldest first; ``interval`` 1m, 1h or 1d."""
        return self._call(Call("GET", f"/v1/instruments/{instrument_id}/candles",
                               list[m.Candle], params=_query(interval=interval, limit=limit)))

    def run_auction(self, instrument_id: int, *,
                    idempotency_key: str | None = None) -> m.AuctionResult:
        """Operator: uncross an IP instrument's call auction."""
        return self._call(Call("POST", f"/v1/instruments/{instrument_id}/auction",
                               m.AuctionResult, idempotency_key=idempotency_key))

    def indicative(self, instrument_id: int) -> m.Indicative:
        """An IP instrument's indicative uncross price and quantity."""
        return self._call(Call("GET", f"/v1/instruments/{instrument_id}/auction",
                               m.Indicative))

    # ---- the cn2015 bulletin board --------------------------------------------------------

    def post_offer(self, instrument_id: int, side: Side, price: int, quantity: int, *,
                   idempotency_key: str | None = None) -> m.Offer:
        body = {"instrument_id": instrument_id, "side": side, "price": price,
                "quantity": quantity}
        return self._call(Call("POST", "/v1/offers", m.Offer, body,
                               idempotency_key=idempotency_key))

    def offers(self, instrument_id: int | None = None) -> list[m.Offer]:
        return self._call(Call("GET", "/v1/offers", list[m.Offer],
                               params=_query(instrument_id=instrument_id)))

    def offer(self, offer_id: int) -> m.Offer:
        return self._call(Call("GET", f"/v1/offers/{offer_id}", m.Offer))

    def accept_offer(self, offer_id: int, quantity: int, *,
                     idempotency_key: str | None = None) -> m.OfferTrade:
        return self._call(Call("POST", f"/v1/offers/{offer_id}/accept", m.OfferTrade,
                               {"quantity": quantity}, idempotency_key=idempotency_key))

    def cancel_offer(self, offer_id: int, *, idempotency_key: str | None = None) -> m.Offer:
        return self._call(Call("DELETE", f"/v1/offers/{offer_id}", m.Offer,
                               idempotency_key=idempotency_key))

    # ---- settlement (operator) ------------------------------------------------------------

    def run_batch(self, *, idempotency_key: str | None = None) -> m.BatchView:
        """Settle everything not yet settled. The key is kept with the batch in PostgreSQL:
        a retry, even after a server restart, answers the first batch."""
        return self._call(Call("POST", "/v1/settlement/batches", m.BatchView,
                               idempotency_key=idempotency_key))

    def batches(self, limit: int | None = None) -> m.BatchList:
        """``.batches``, newest first."""
        return self._call(Call("GET", "/v1/settlement/batches", m.BatchList,
                               params=_query(limit=limit)))

    def batch(self, batch_id: int) -> m.BatchView:
        return self._call(Call("GET", f"/v1/settlement/batches/{batch_id}", m.BatchView))

    def batch_report(self, batch_id: int) -> str:
        """The custodian CSV: batch_id,account_id,asset,net_amount,legs."""
        return self._call(Call("GET", f"/v1/settlement/batches/{batch_id}/report", str))

    def reconciliation(self) -> m.ReconciliationView:
        return self._call(Call("GET", "/v1/settlement/reconciliation", m.ReconciliationView))

    def resolve(self, note: str, *, idempotency_key: str | None = None) -> m.ResolveResult:
        """Accept the current breaks, with a note, so the next batch may run."""
        return self._call(Call("POST", "/v1/settlement/reconciliation/resolve",
                               m.ResolveResult, {"note": note},
                               idempotency_key=idempotency_key))

    def settlement_progress(self) -> m.Progress:
        return self._call(Call("GET", "/v1/settlement/progress", m.Progress))
