"""``crowdex serve --demo``: seed a believable venue for a first look.

Several projects on every board in different states (open with subscriptions, succeeded and
trading, locked up, failed, pending review), issuers and investors with balances. Everything
goes through the sequencer as ordinary journaled commands, so the demo is as real as any other
state. Seeding happens once: a venue that already has projects is left alone. It lives in the
gateway, beside the CLI that runs it: it is a client of the engine's commands, not a rule.

Demo keys can be printed again (every start with ``--demo``, and ``crowdex demo-keys``) though
the venue keeps keys only as hashes: a demo account's key is an HMAC of its name under a random
secret made at seeding, kept in the data dir as ``demo-secret`` (mode 0600, like the journal).
Whoever can read the data dir can therefore recompute the demo accounts' keys (and only
theirs); a venue holding real money is not seeded with ``--demo``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Any

from engine import commands as c
from engine import markets_commands as mc
from engine import offerings_commands as oc
from engine.clock import US_PER_SECOND
from engine.private import open_private

DAY_US = 86_400 * US_PER_SECOND
DEMO_DEPOSIT_FEN = 500_000_00
DEMO_SECRET_FILE = "demo-secret"
DEMO_SECRET_BYTES = 32
DEMO_KEY_PREFIX = "cdx_demo_"
DEMO_KEY_CHARS = 22  # 132 bits of the HMAC, URL-safe
DEMO_ISSUERS = (("equity", "Wuhan Optics Ltd"), ("debt", "Hubei Tea Co-operative"),
                ("ip", "Yangtze Patent Pool"), ("product", "Lotus Lamp Studio"),
                ("operating_rights", "Riverside Café Chain"))
DEMO_INVESTORS = (("Li Wei", "qualified"), ("Zhang Min", "institutional"),
                  ("Wang Fang", "qualified"), ("Chen Jie", "retail"),
                  ("Liu Yang", "retail"), ("Zhao Lei", "qualified"))
DEMO_NAMES = tuple(name for _, name in DEMO_ISSUERS) + tuple(n for n, _ in DEMO_INVESTORS)


def demo_secret(data_dir: Path, create: bool = False) -> bytes | None:
    """The data dir's demo secret; made (0600 from its first instant) when ``create``."""
    path = Path(data_dir) / DEMO_SECRET_FILE
    if path.exists():
        return path.read_bytes()
    if not create:
        return None
    secret = secrets.token_bytes(DEMO_SECRET_BYTES)
    fd = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    with os.fdopen(fd, "wb") as out:
        out.write(secret)
        out.flush()
        os.fsync(out.fileno())
    return secret


def demo_key(secret: bytes, name: str) -> str:
    """The API key of the demo account called ``name``."""
    digest = hmac.new(secret, name.encode(), hashlib.sha256).digest()
    return DEMO_KEY_PREFIX + base64.urlsafe_b64encode(digest).decode()[:DEMO_KEY_CHARS]


def demo_keys(data_dir: Path) -> dict[str, str] | None:
    """``{name: key}`` of every demo account, or None if the data dir holds no demo secret
    (never seeded with ``--demo``, or seeded by a version that did not keep one)."""
    secret = demo_secret(data_dir)
    return None if secret is None else {name: demo_key(secret, name) for name in DEMO_NAMES}


def _key_hash(key: str) -> str:
    import hashlib

    return hashlib.sha256(key.encode()).hexdigest()


async def _ok(engine: Any, command: Any, actor: int) -> dict:
    reply = await engine.submit(command, actor)
    if reply.status not in (200, 201):
        raise RuntimeError(f"demo seeding: {type(command).__name__} -> {reply.body}")
    return reply.body


async def _account(engine: Any, role: str, name: str, keys: dict, **fields) -> int:
    key = demo_key(keys["secret"], name)
    body = await _ok(engine, c.CreateAccount(role, name, _key_hash(key), **fields),
                     engine.machine.operator_account_id)
    keys[name] = key
    return body["account_id"]


async def seed_demo(engine: Any) -> dict[str, str] | None:
    """Seed the demo venue once; returns ``{account name: api key}``, the demo accounts'
    keys again when it was seeded before (None if it holds other projects but no demo)."""
    offerings = next(x for x in engine.machine.components if x.name == "offerings")
    if offerings.projects:
        return _known_keys(engine)
    op = engine.machine.operator_account_id
    keys: dict = {"secret": demo_secret(engine.data_dir, create=True)}
    issuers = {board: await _account(engine, "issuer", name, keys)
               for board, name in DEMO_ISSUERS}
    investors = []
    for name, cls in DEMO_INVESTORS:
        account = await _account(engine, "investor", name, keys, investor_class=cls,
                                 annual_income=300_000_00, net_worth=900_000_00)
        await _ok(engine, c.Deposit(account, DEMO_DEPOSIT_FEN, "demo-seed"), op)
        investors.append(account)
    await _ok(engine, c.Deposit(issuers["debt"], 50_000_00, "demo-seed"), op)
    await _ok(engine, c.Deposit(issuers["ip"], 20_000_00, "demo-seed"), op)

    cn2015 = engine.machine.profile == "cn2015"

    async def listing(board: str, title: str, days: int, terms: dict, subs: list,
                      close: bool = False, approve: bool = True) -> int:
        deadline = engine.machine.now_us + days * DAY_US
        body = await _ok(engine, oc.CreateProject(board, title, f"{title} (demo)", deadline,
                                                  terms), issuers[board])
        pid = body["project_id"]
        if not approve:
            return pid
        await _ok(engine, oc.ReviewProject(pid, True), op)
        for who, quantity, extra in subs:
            if cn2015 and board == "equity" and DEMO_INVESTORS[who][1] == "retail":
                continue  # cn2015: equity offerings are for qualified investors only
            await _ok(engine, oc.Subscribe(pid, quantity, **extra), investors[who])
        if close:
            await _ok(engine, oc.CloseProject(pid), op)
        return pid

    none: dict = {}
    # Equity: open, succeeded and trading, failed, pending review.
    eq = {"price": 1_000, "min_quantity": 100, "max_quantity": 1_000, "lockup_days": 0}
    await listing("equity", "Optics line expansion", 40, eq,
                  [(0, 120, none), (1, 300, none), (3, 20, none)])
    lens = await listing("equity", "Lens coating plant", 30, eq,
                         [(0, 500, none), (1, 400, none), (2, 300, none)], close=True)
    await listing("equity", "Smart glasses spin-off", 30, {**eq, "min_quantity": 900},
                  [(2, 50, none)], close=True)
    await listing("equity", "Retail chain rollout", 45, eq, [], approve=False)
    # Debt: a fixed-rate loan open, an auctioned loan trading with a repayment made.
    debt = {"face_value": 10_000, "min_quantity": 10, "max_quantity": 100, "term_months": 12,
            "repayment": "amortizing", "rate_bps": 800, "lockup_days": 0}
    await listing("debt", "Spring harvest working capital", 20, debt,
                  [(0, 20, none), (4, 5, none)])
    auction = {**debt, "max_quantity": 50, "repayment": "bullet", "term_months": 6}
    del auction["rate_bps"]
    auction["auction"] = {"max_rate_bps": 1_200}
    pid = await listing("debt", "Tea house refit", 14, auction,
                        [(0, 20, {"rate_bps": 700}), (1, 25, {"rate_bps": 650}),
                         (2, 15, {"rate_bps": 900})], close=True)
    await _ok(engine, oc.Distribute(pid, 2_500), issuers["debt"])
    # IP: royalty units open, and a succeeded pool locked up for a year.
    ip = {"price": 500, "min_quantity": 100, "max_quantity": 2_000, "royalty_share_bps": 3_000,
          "lockup_days": 365}
    await listing("ip", "Battery separator patents", 35, ip, [(1, 400, none), (5, 40, none)])
    ip_pid = await listing("ip", "Silk dyeing process", 30, ip,
                           [(0, 600, none), (1, 900, none), (5, 300, none)], close=True)
    await _ok(engine, oc.PostDisclosure(ip_pid, "First licence signed",
                                        "A textile mill in Suzhou licensed the process."),
              issuers["ip"])
    # Product: a flash tier half sold, a funded lamp awaiting delivery, a failed kettle.
    tiers = [{"tier_id": "early-bird", "price": 19_900, "quantity": 50,
              "reward": "One of the first 50, at the early price", "estimated_delivery": "2026-06"},
             {"tier_id": "standard", "price": 24_900, "quantity": None, "max_per_backer": 5,
              "reward": "One, shipped with the first production run",
              "estimated_delivery": "2026-08"}]
    await listing("product", "Paper lotus lamp", 25, {"goal": 2_000_000, "tiers": tiers},
                  [(i % 6, 3, {"tier_id": "early-bird"}) for i in range(8)]
                  + [(3, 2, {"tier_id": "standard"})])
    await listing("product", "Bamboo desk lamp", 10, {"goal": 100_000, "tiers": tiers},
                  [(0, 4, {"tier_id": "standard"}), (4, 3, {"tier_id": "early-bird"})],
                  close=True)
    await listing("product", "Smart kettle", 10, {"goal": 10_000_000, "tiers": tiers},
                  [(2, 1, {"tier_id": "standard"})], close=True)
    await _demo_trades(engine, lens, investors)
    await _demo_cafe(engine, listing, issuers["operating_rights"], investors)
    del keys["secret"]
    return keys


def _known_keys(engine: Any) -> dict[str, str] | None:
    """The demo accounts' keys of a venue seeded before, those its accounts still answer to."""
    keys = demo_keys(engine.data_dir)
    if keys is None:
        return None
    index = engine.machine.key_index
    return {name: key for name, key in keys.items() if _key_hash(key) in index} or None


# A café chain sells 10 % of a branch's monthly revenue for 12 months, bought back at 18.00.
CAFE_TERMS = {"price": 2_000, "min_quantity": 200, "max_quantity": 1_000, "term_months": 12,
              "revenue_share_bps": 1_000, "buyback_price": 1_800, "lockup_days": 0}
CAFE_DEPOSIT_FEN = 100_000_00  # the chain's cash for its monthly payments


async def _demo_cafe(engine: Any, listing: Any, chain: int, investors: list[int]) -> None:
    """The operating-rights board: a café chain with a listing in each state. Its months are
    all ``scheduled`` at seeding (month 1 starts after the close); as the exchange clock moves
    they fall due, and the chain reports them with POST /v1/projects/{id}/revenue."""
    none: dict = {}
    await _ok(engine, c.Deposit(chain, CAFE_DEPOSIT_FEN, "demo-seed"),
              engine.machine.operator_account_id)
    await listing("operating_rights", "Café chain: ten new branches", 40, CAFE_TERMS,
                  [(0, 300, none), (2, 150, none)])
    # Oversubscribed 1,300 for 1,000: allocated pro rata, and trading at once.
    flagship = await listing("operating_rights", "Café chain: the riverside flagship", 30,
                             CAFE_TERMS, [(0, 500, none), (1, 600, none), (2, 200, none)],
                             close=True)
    await listing("operating_rights", "Café chain: airport kiosks", 30,
                  {**CAFE_TERMS, "lockup_days": 90}, [(1, 400, none), (5, 200, none)],
                  close=True)
    await listing("operating_rights", "Café chain: a roastery", 30,
                  {**CAFE_TERMS, "min_quantity": 900}, [(2, 100, none)], close=True)
    await listing("operating_rights", "Café chain: campus kiosks", 45, CAFE_TERMS, [],
                  approve=False)
    await _place_orders(engine, flagship, investors, (
        (0, "sell", 2_100, 40), (4, "buy", 2_100, 15), (3, "buy", 1_950, 30),
        (1, "sell", 2_200, 25)))


async def _demo_trades(engine: Any, instrument: int, investors: list[int]) -> None:
    """A few trades and resting orders on the trading equity, so the markets show a book."""
    orders = [  # (investor, side, price, quantity): holders sell, others buy
        (0, "sell", 1_050, 60), (1, "sell", 1_080, 80), (2, "sell", 1_120, 50),
        (4, "buy", 1_060, 40), (5, "buy", 1_080, 70), (3, "buy", 1_000, 30),
        (5, "buy", 980, 25), (1, "sell", 1_150, 40),
    ]
    await _place_orders(engine, instrument, investors, orders)


async def _place_orders(engine: Any, instrument: int, investors: list[int],
                        orders: Any) -> None:
    """Limit orders ``(investor, side, price, quantity)``; none under cn2015, which allows no
    centralised matching (its bulletin board starts empty)."""
    if engine.machine.profile == "cn2015":
        return
    for who, side, price, quantity in orders:
        await _ok(engine, mc.PlaceOrder(instrument, side, "limit", price, quantity),
                  investors[who])
