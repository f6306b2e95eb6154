"""A venue's rules version (commands.RULES_VERSION) is fixed by its Genesis, so a journal
written before a rule change replays under the rules it was written with."""

from __future__ import annotations

import msgspec

from engine import commands as c
from engine import markets_commands as mc
from engine import offerings_commands as oc
from engine.machine import StateMachine

START_US = 1_767_225_600_000_000  # 2026-01-01
PRICE = 1_000_000  # 10,000 yuan a share: 5x is 5,000,000 fen, above rules 1's 3,355,442 cap


def _venue(rules: int, profile: str = "intl") -> tuple[StateMachine, int]:
    machine = StateMachine()
    entries = [
        c.Genesis("h", True, START_US, profile, rules),
        c.CreateAccount("issuer", "issuer", "kis"),
        c.CreateAccount("investor", "t", "kt", investor_class="institutional"),
        c.CreateAccount("investor", "u", "ku", investor_class="institutional"),
    ]
    for entry in entries:
        machine.apply(machine.last_sequence + 1, c.Entry(START_US, 0, entry))
    trader = 4
    steps = [
        (0, c.Deposit(trader, 10**12, "d")),
        (0, c.Deposit(trader + 1, 10**12, "d")),
        (3, oc.CreateProject("equity", "p", "x", START_US + 30 * 86_400_000_000, {
            "price": PRICE, "min_quantity": 1, "max_quantity": 100, "lockup_days": 0})),
        (2, oc.ReviewProject(1, True)),
        (trader, oc.Subscribe(1, 10)),
        (2, oc.CloseProject(1)),
    ]
    for actor, command in steps:
        reply = machine.apply(machine.last_sequence + 1, c.Entry(START_US, actor, command))
        assert reply.status < 300, reply
    return machine, trader


def _sell(machine: StateMachine, trader: int, price: int) -> int:
    command = mc.PlaceOrder(1, "sell", "limit", price, 1)
    return machine.apply(machine.last_sequence + 1, c.Entry(START_US, trader, command)).status


def test_rules_1_keep_the_old_band_cap_and_rules_2_follow_the_api():
    old, trader = _venue(1)
    assert _sell(old, trader, 4_000_000) == 422  # above 3,355,442: price_out_of_band then
    assert _sell(old, trader, 3_000_000) == 201
    new, trader = _venue(c.RULES_VERSION)
    assert _sell(new, trader, 4_000_000) == 201  # inside 5x the price, as API.md says
    assert _sell(new, trader, 5 * PRICE + 1) == 422


def test_a_genesis_journaled_before_rules_existed_decodes_as_rules_1():
    class OldGenesis(msgspec.Struct, tag="genesis", array_like=True):
        operator_key_hash: str
        manual_clock: bool
        start_time_us: int
        profile: str = "intl"

    class OldEntry(msgspec.Struct, array_like=True):
        time_us: int
        actor: int
        command: OldGenesis

    payload = msgspec.msgpack.encode(OldEntry(START_US, 0, OldGenesis("h", True, START_US)))
    entry = c.decode_entry(payload)
    assert isinstance(entry.command, c.Genesis) and entry.command.rules == 1


def test_the_rules_version_is_state_and_survives_a_snapshot():
    machine, _ = _venue(c.RULES_VERSION)
    restored = StateMachine()
    restored.load(machine.arrays(), machine.meta())
    assert restored.rules == c.RULES_VERSION
    assert restored.state_hash() == machine.state_hash()
    older, _ = _venue(1)
    assert older.state_hash() != machine.state_hash()


def _apply(machine: StateMachine, actor: int, command) -> object:
    return machine.apply(machine.last_sequence + 1, c.Entry(machine.now_us, actor, command))


def test_accepted_offers_reach_the_tape_only_under_rules_2():
    from engine import offers_commands as ofc

    tapes = {}
    for rules in (1, c.RULES_VERSION):
        machine, seller = _venue(rules, "cn2015")
        assert _apply(machine, 0, c.AdvanceClock(8 * 86_400)).status == 200  # past T+5
        posted = _apply(machine, seller, ofc.PostOffer(1, "sell", PRICE, 3))
        assert posted.status == 201, posted
        taken = _apply(machine, seller + 1, ofc.AcceptOffer(posted.body["offer_id"], 2))
        assert taken.status == 200, taken
        tape = machine.component("markets").tapes.get(1)
        tapes[rules] = [(t.price, t.quantity, t.taker_side) for t in tape.trades] if tape else []
    assert tapes == {1: [], c.RULES_VERSION: [(PRICE, 2, "buy")]}


def test_the_venue_cash_cap_holds_from_rules_3_and_older_journals_replay_as_they_were():
    from engine.machine import CASH_TOTAL_MAX

    outcomes = {}
    for rules in (2, 3):
        machine, trader = _venue(rules)
        room = CASH_TOTAL_MAX - machine.cash_total()
        fits = _apply(machine, 0, c.Deposit(trader, room, f"fits{rules}"))
        over = _apply(machine, 0, c.Deposit(trader, 1, f"over{rules}"))
        outcomes[rules] = (fits.status, over.status, over.body.get("error", {}).get("code"))
    assert outcomes[3] == (201, 422, "limit_exceeded")  # exactly the cap fits, a fen more not
    assert outcomes[2] == (201, 201, None)  # rules 2 took it then, so a replay takes it now


def test_proceeds_are_unsettled_net_of_fees_from_rules_4_and_gross_before():
    """Rules 4: the seller's unsettled cash is the proceeds less the fee (and the issuer's, the
    raised amount less the success fee); rules 3 journals replay with the gross amounts."""
    unsettled = {}
    for rules in (3, 4):
        machine, trader = _venue(rules)
        for actor, side in ((trader, "sell"), (trader + 1, "buy")):
            placed = _apply(machine, actor, mc.PlaceOrder(1, side, "limit", PRICE, 1))
            assert placed.status == 201, placed
        rows = machine.balances.accounts.rows
        unsettled[rules] = (int(rows[trader]["cash_unsettled"]), int(rows[3]["cash_unsettled"]))
    fee = PRICE // 100  # 100 bps
    success_fee = 10 * PRICE * 600 // 10_000  # equity: 600 bps of the 10 shares raised
    assert unsettled[3] == (PRICE, 10 * PRICE)
    assert unsettled[4] == (PRICE - fee, 10 * PRICE - success_fee)


def test_a_cn2015_subscription_out_of_eligibility_is_422_from_rules_4_and_403_before():
    statuses = {}
    for rules in (3, 4):
        machine, _ = _venue(rules, "cn2015")
        retail = _apply(machine, 0, c.CreateAccount("investor", "r", f"kr{rules}"))
        project = _apply(machine, 3, oc.CreateProject(
            "ip", "p", "x", START_US + 30 * 86_400_000_000, {
                "price": 100, "min_quantity": 1, "max_quantity": 100,
                "royalty_share_bps": 500, "lockup_days": 0}))
        assert project.status == 201, project
        project_id = project.body["project_id"]
        assert _apply(machine, 2, oc.ReviewProject(project_id, True)).status == 200
        refused = _apply(machine, retail.body["account_id"], oc.Subscribe(project_id, 1))
        statuses[rules] = (refused.status, refused.body["error"]["code"])
    assert statuses == {3: (403, "not_eligible"), 4: (422, "not_eligible")}


def test_an_amended_order_keeps_its_place_when_a_book_opens_from_rules_5():
    """An amend with a larger quantity puts its order at the back of its level (API.md). A
    book opening (at its instrument's first order) lays the ladders out again; under rules 5
    the queue stays, so the next sale fills the order that was ahead of the amended one.
    Rules 4 relinked by order id, and the amended order was filled first: a journal of then
    replays so."""
    filled = {}
    for rules in (4, 5):
        machine, seller = _venue(rules)
        first, second = seller + 1, seller + 2
        _apply(machine, 0, c.CreateAccount("investor", "v", "kv", investor_class="institutional"))
        _apply(machine, 0, c.Deposit(second, 10**12, "d2"))
        ahead = _apply(machine, first, mc.PlaceOrder(1, "buy", "limit", PRICE, 1)).body.order_id
        behind = _apply(machine, second, mc.PlaceOrder(1, "buy", "limit", PRICE, 1)).body.order_id
        assert _apply(machine, first, mc.AmendOrder(ahead, quantity=2)).status == 200
        listing = oc.CreateProject("equity", "q", "x", START_US + 30 * 86_400_000_000, {
            "price": PRICE, "min_quantity": 1, "max_quantity": 100, "lockup_days": 0})
        for actor, command in ((3, listing), (2, oc.ReviewProject(2, True)),
                               (seller, oc.Subscribe(2, 1)), (2, oc.CloseProject(2))):
            assert _apply(machine, actor, command).status < 300
        # The new instrument's book opens at its first order.
        assert _apply(machine, seller, mc.PlaceOrder(2, "sell", "limit", PRICE, 1)).status == 201
        assert machine.component("markets").has_book(2)
        assert _sell(machine, seller, PRICE) == 201
        views = machine.component("markets").lifecycle.views_now([ahead, behind])
        filled[rules] = [name for name, view in zip(("ahead", "behind"), views, strict=True)
                         if view.filled_quantity]
    assert filled == {4: ["ahead"], 5: ["behind"]}
