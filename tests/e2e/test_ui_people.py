"""Issue 16, the web UI for the people who use it, in a real headless Chromium against a real
`crowdex serve` (manual clock, embedded PostgreSQL), at a desktop (1280x800) and a phone
(390x844) size, in English and in Chinese:

- every page switches language from its header and remembers it; project names are data;
- funding reads as investors expect (time left, target AND cap, closed projects without a
  future date or a subscribe button, the issuer's name, market links, backers and pledges for
  products, the risk note and the cancel rule before subscribing);
- errors in words and yuan, loading states, a retry after a network error;
- the operator confirms approve, reject, close and settlement; the review queue shows issuer
  and terms; the clock form on a manual clock; the header follows actions;
- My account: holdings with value, open orders, trade history;
- markets: candles with volume and a crosshair, 24 h figures, cumulative depth, no `null` in
  the order result, Cancel inside its panel;
- on a phone no action hides off-screen, and axe-core finds no serious or critical problem;
- on phones 390 and 360 px wide, in both languages: every navigation tab whole on the screen,
  nothing that scrolls sideways (page or table), the trade history as cards, each figure
  labelled.

One server for the module, seeded once over HTTP; screenshots are kept under each test's
tmp_path (their paths are printed).
"""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest

from gateway.routes.system import STATIC_FILES
from tests.conftest import OPERATOR_KEY, ServerProcess
from tests.e2e.browser import browser
from tests.e2e.ui_support import (
    SIZES,
    Api,
    axe_problems,
    card_spills,
    header_cut,
    new_page,
    off_screen_actions,
    page_overflows,
    ready,
    set_width,
    shot,
    sideways_scrollers,
    sign_in,
    switch_language,
    walk_widths,
)

START = "2026-03-01T00:00:00Z"
OPEN_TITLE = "光学镜片产线"  # a Chinese project name: data, shown as entered in both languages


async def _trade(api: Api, keys: dict, pid: int, side: str, price: int, qty: int) -> dict:
    order = {"instrument_id": pid, "side": side, "type": "limit", "price": price,
             "quantity": qty}
    return await api.as_key(keys[side]).call("POST", "/v1/orders", order)


async def _seed(url: str) -> dict:
    """Issuer, investors and a project in every state; a market with four trades a minute
    apart (four candles), resting orders on both sides."""
    async with aiohttp.ClientSession() as session:
        op = Api(session, url, OPERATOR_KEY)
        issuer = await op.account("issuer", "Wuhan Optics Ltd")
        li = await op.account("investor", "Li Wei", 100_000_00, investor_class="qualified")
        zhang = await op.account("investor", "Zhang Min", 100_000_00,
                                 investor_class="qualified")
        poor = await op.account("investor", "Wang Fang", 100_00)
        ik = issuer["api_key"]
        equity = {"price": 10_00, "min_quantity": 100, "max_quantity": 1000, "lockup_days": 0}
        open_id = await op.project(ik, "equity", OPEN_TITLE, "2026-03-31T00:00:00Z", equity)
        trading = await op.project(ik, "equity", "Lens coating plant", "2026-03-25T00:00:00Z",
                                   {**equity, "min_quantity": 10})
        failed = await op.project(ik, "equity", "Smart glasses spin-off",
                                  "2026-03-30T00:00:00Z", {**equity, "min_quantity": 900})
        product = await op.project(ik, "product", "Paper lotus lamp", "2026-03-10T00:00:00Z", {
            "goal": 1_000_00, "tiers": [{"tier_id": "early", "price": 199_00, "quantity": 10},
                                        {"tier_id": "standard", "price": 249_00,
                                         "quantity": None}]})
        for key, pid, qty in ((li, open_id, 300), (zhang, open_id, 140), (li, trading, 100),
                              (zhang, trading, 200), (li, failed, 10)):
            await op.as_key(key["api_key"]).call("POST", f"/v1/projects/{pid}/subscriptions",
                                                 {"quantity": qty})
        await op.as_key(zhang["api_key"]).call(
            "POST", f"/v1/projects/{product}/subscriptions", {"quantity": 2, "tier_id": "early"})
        for pid in (trading, failed):
            await op.call("POST", f"/v1/projects/{pid}/close")
        keys = {"buy": li["api_key"], "sell": zhang["api_key"]}
        for price, qty in ((10_50, 40), (11_20, 30), (11_50, 20)):
            await _trade(op, keys, trading, "sell", price, qty)
        for price, qty in ((10_50, 15), (10_50, 25), (11_20, 10), (11_20, 5)):
            await _trade(op, keys, trading, "buy", price, qty)
            await op.call("POST", "/v1/admin/clock", {"advance_seconds": 60})
        await _trade(op, keys, trading, "buy", 10_00, 20)  # a resting bid
    return {"issuer": issuer, "li": li, "zhang": zhang, "poor": poor, "open": open_id,
            "trading": trading, "failed": failed, "product": product}


@pytest.fixture(scope="module")
def venue(tmp_path_factory: pytest.TempPathFactory):
    server = ServerProcess(tmp_path_factory.mktemp("ui-people") / "data",
                           "--clock", "manual", "--start-time", START)
    server.start()
    try:
        yield server.url, asyncio.run(_seed(server.url))
    finally:
        server.stop()


# ---- languages, layout and accessibility on every page ----------------------------------------


def _pages(seed: dict, extra: tuple[tuple[str, str], ...] = ()) -> list[tuple]:
    """The pages to walk, by who signs in: [(None or (key, landing selector), [(name, route)])];
    `extra` adds public routes."""
    market = f"/#/markets/{seed['trading']}"
    return [(None, [("projects", "/#/projects"), ("project", f"/#/projects/{seed['open']}"),
                    ("markets", market), ("integrity", "/#/integrity"), ("signin", "/#/signin"),
                    *extra]),
            ((seed["li"]["api_key"], "#account"), [("account", "/#/account"), ("ticket", market)]),
            ((seed["issuer"]["api_key"], "#create-project-form"), [("issuer", "/#/issuer")]),
            ((OPERATOR_KEY, "#create-account-form"), [("operator", "/#/operator")])]


@pytest.mark.parametrize("size", ["desktop", "phone"])
async def test_every_page_in_both_languages(venue, size, tmp_path):
    url, seed = venue
    errors: list[str] = []
    problems: dict[str, list[str]] = {}
    async with browser() as chromium:
        for login, routes in _pages(seed):
            page = await new_page(chromium, SIZES[size], None, errors)
            if login:
                await sign_in(page, url, *login)
            for name, route in routes:
                await page.goto(url + route)
                await ready(page)
                # English by default on an intl venue; the switch is on every page.
                assert await page.get_attribute("html", "lang") == "en"
                await _check_page(page, f"{size}-en-{name}", tmp_path, size, problems)
                await switch_language(page, "zh")
                assert await page.get_attribute("html", "lang") == "zh-CN"
                assert await page.inner_text("#nav a >> nth=0") == "项目"
                if name in ("projects", "project"):
                    assert OPEN_TITLE in await page.inner_text("main")  # data, untranslated
                await page.reload()  # remembered
                await ready(page)
                assert await page.input_value("#lang-select") == "zh"
                await _check_page(page, f"{size}-zh-{name}", tmp_path, size, problems)
                await switch_language(page, "en")
    assert errors == []
    assert problems == {}, "\n".join(f"{k}: {v}" for k, v in problems.items())


async def _check_page(page, name: str, tmp_path, size: str, problems: dict) -> None:
    await shot(page, tmp_path, name)
    found = await axe_problems(page)
    if await page_overflows(page):
        found.append("the page scrolls sideways")
    if size == "phone":
        found += [f"off-screen action: {x}" for x in await off_screen_actions(page)]
    if found:
        problems[name] = found


# ---- funding as investors expect -----------------------------------------------------------


@pytest.mark.parametrize("size", ["desktop", "phone"])
async def test_funding_reads_as_investors_expect(venue, size, tmp_path):
    url, seed = venue
    errors: list[str] = []
    async with browser() as chromium:
        page = await new_page(chromium, SIZES[size], "en", errors)
        await page.goto(url + "/#/projects")
        card = page.locator(f".card[data-project-id='{seed['open']}']")
        await card.wait_for()
        text = await card.inner_text()
        # Time left on the exchange clock (now 00:04 after the seeded trades), target AND cap.
        assert "29 days 23 hours left" in text
        # 440 shares subscribed (442 once the desktop run has subscribed 2 more).
        assert re.search(r"44[02]% of the target \(100 shares\)", text), text
        assert "44% of the cap (1,000 shares)" in text
        assert "by Wuhan Optics Ltd" in text
        failed = await page.inner_text(f".card[data-project-id='{seed['failed']}']")
        assert "failed 2026-03-01" in failed and "left" not in failed and "2026-03-30" not in failed
        link = page.locator(f".card[data-project-id='{seed['trading']}'] a.market-link")
        assert await link.get_attribute("href") == f"#/markets/{seed['trading']}"
        await shot(page, tmp_path, f"{size}-en-cards")

        # A failed project invites nobody and shows no future close date.
        await page.goto(f"{url}/#/projects/{seed['failed']}")
        await page.wait_for_selector("#terms [data-field=closed]")
        assert await page.locator("#subscribe-form, #terms [data-field=deadline]").count() == 0
        assert "not open" in await page.inner_text("#signin-to-invest")

        # The investor reads the risks and the cancel rule before the button, and confirms.
        await sign_in(page, url, seed["li"]["api_key"], "#account")
        cash_before = await page.inner_text("#header-cash")
        await page.goto(f"{url}/#/projects/{seed['open']}")
        await page.wait_for_selector("#risk-note")
        note = await page.inner_text("#cancel-note")
        assert "until 2026-03-29 00:00 UTC, 48 hours before the deadline" in note
        order = await page.evaluate("""() => [...document.querySelectorAll(
            '#subscribe-form #risk-note, #subscribe-form button[type=submit]')]
            .map(e => e.id || 'button')""")
        assert order == ["risk-note", "button"]
        await page.fill("#sub-quantity", "2")
        await page.click("#subscribe-form button[type=submit]")
        await page.wait_for_selector("#subscribe-message.error >> text=Please confirm")
        await page.check("#sub-ack")
        await page.click("#subscribe-form button[type=submit]")
        await page.wait_for_selector("#subscribe-message.ok >> text=¥20.00 reserved")
        # The header follows: its cash figure is re-read after the action.
        await page.wait_for_function(
            f"document.querySelector('#header-cash').textContent !== {cash_before!r}")
        await shot(page, tmp_path, f"{size}-en-subscribe")

        # A product raise speaks of backers, pledges and rewards.
        await page.goto(f"{url}/#/projects/{seed['product']}")
        await page.wait_for_selector("#tier-table")
        assert "Backers" in await page.inner_text("#figures")
        assert await page.inner_text("#subscribe-form button[type=submit]") == "Pledge"
        assert "cancel any time until the deadline" in await page.inner_text("#cancel-note")
        await switch_language(page, "zh")
        assert "支持人数" in await page.inner_text("#figures")
        assert await page.inner_text("#subscribe-form button[type=submit]") == "支持"
        await shot(page, tmp_path, f"{size}-zh-product")
        await page.goto(f"{url}/#/projects/{seed['open']}")
        await page.wait_for_selector("#risk-note")
        assert "剩余 29天23小时" in await page.inner_text("#figures")
        note = await page.inner_text("#cancel-note")
        assert "截止前 48 小时（2026-03-29 00:00 UTC）之前可以撤销" in note
        await shot(page, tmp_path, f"{size}-zh-subscribe")
    assert errors == []


# ---- errors, loading, retry -------------------------------------------------------------------


@pytest.mark.parametrize("size", ["desktop", "phone"])
async def test_errors_in_words_loading_and_retry(venue, size, tmp_path):
    url, seed = venue
    errors: list[str] = []
    async with browser() as chromium:
        page = await new_page(chromium, SIZES[size], "zh", errors)
        await sign_in(page, url, seed["poor"]["api_key"], "#account")
        await page.goto(f"{url}/#/projects/{seed['open']}")
        await page.fill("#sub-quantity", "50")
        await page.check("#sub-ack")
        await page.click("#subscribe-form button[type=submit]")
        message = page.locator("#subscribe-message.error")
        await message.wait_for()
        text = await message.inner_text()
        assert text.strip() == "可用资金不足：需要 ¥500.00，当前可用 ¥100.00。"
        code = await message.locator("[data-code]").get_attribute("data-code")
        assert code == "insufficient_funds"
        await shot(page, tmp_path, f"{size}-zh-error")
        await switch_language(page, "en")
        await page.fill("#sub-quantity", "50")
        await page.check("#sub-ack")
        await page.click("#subscribe-form button[type=submit]")
        await page.wait_for_selector(
            "#subscribe-message.error >> text=this needs ¥500.00 and you have ¥100.00 available")
        assert not re.search(r"\bfen\b|insufficient_funds", await page.inner_text("main"))

        # The network fails: the list says so in words and offers a retry that works.
        is_list = re.compile(r".*/v1/projects(\?.*)?$")
        await page.route(is_list, lambda route: route.abort())
        await page.goto(url + "/#/projects")
        retry = page.locator("#project-grid button.retry")
        await retry.wait_for()
        assert "could not be reached" in await page.inner_text("#project-grid")
        await shot(page, tmp_path, f"{size}-en-retry")
        await page.unroute(is_list)
        await retry.click()
        await page.wait_for_selector(f"#project-grid .card[data-project-id='{seed['open']}']")

        # A slow answer shows a loading state meanwhile.
        async def slow(route):
            await asyncio.sleep(1.0)
            await route.continue_()
        await page.route(is_list, slow)
        await page.click("#tab-equity")
        await page.wait_for_selector("#project-grid .loading")
        await shot(page, tmp_path, f"{size}-en-loading")
        await page.wait_for_selector(f"#project-grid .card[data-project-id='{seed['open']}']")
        await page.unroute(is_list)
    assert errors == []


# ---- the operator -----------------------------------------------------------------------------


@pytest.mark.parametrize("size", ["desktop", "phone"])
async def test_operator_confirms_and_the_header_follows(venue, size, tmp_path):
    url, seed = venue
    errors: list[str] = []
    title = f"Tea house refit ({size})"
    async with aiohttp.ClientSession() as session:
        op = Api(session, url, OPERATOR_KEY)
        pid = await op.project(seed["issuer"]["api_key"], "debt", title, "2026-03-20T00:00:00Z", {
            "face_value": 100_00, "min_quantity": 10, "max_quantity": 50, "term_months": 12,
            "repayment": "amortizing", "rate_bps": 900}, approve=False)
    async with browser() as chromium:
        page = await new_page(chromium, SIZES[size], "en", errors)
        await sign_in(page, url, OPERATOR_KEY, "#create-account-form")
        row = page.locator(f"#review-table tr[data-project-id='{pid}']")
        await row.wait_for()
        assert await row.locator("[data-field=issuer]").inner_text() == "Wuhan Optics Ltd"
        assert "9.00% · 12 months · ¥100.00 per note" in await row.inner_text()
        await shot(page, tmp_path, f"{size}-en-review")
        approve = row.locator("button[data-action=approve]")
        await approve.click()
        dialog = page.locator("#confirm-dialog")
        await dialog.wait_for()
        assert title in await dialog.inner_text()
        await shot(page, tmp_path, f"{size}-en-confirm")
        await page.click("#confirm-cancel")  # changing one's mind changes nothing
        await dialog.wait_for(state="detached")
        assert await row.count() == 1
        await approve.click()
        await page.click("#confirm-ok")
        await page.wait_for_selector("#review-message.ok >> text=Open")
        await row.wait_for(state="detached")

        # Closing an offering asks too; so does a settlement batch.
        await page.click(f"#open-table tr[data-project-id='{pid}'] button")
        await page.click("#confirm-ok")
        await page.wait_for_selector("#review-message.ok >> text=Failed")
        await page.click("#run-batch")
        await page.wait_for_selector("#confirm-dialog >> text=Run a settlement batch?")
        await page.click("#confirm-ok")
        await page.wait_for_selector("#settlement-message.ok")

        # The manual clock has its form; the header's exchange time follows an advance.
        await switch_language(page, "zh")
        await page.fill("#clock-amount", "1")
        await page.select_option("#clock-unit", "60")
        before = await page.inner_text("#exchange-state [data-field=now]")
        await page.click("#clock-form button[type=submit]")
        await page.wait_for_selector("#clock-message.ok")
        now = "document.querySelector('#exchange-state [data-field=now]').textContent"
        await page.wait_for_function(f"{now} !== {before!r}")
        after = await page.inner_text("#exchange-state [data-field=now]")
        if size == "desktop":  # the phone's header leaves the time out for room
            await page.wait_for_selector(f"#exchange-time >> text={after[:16]}")
        await shot(page, tmp_path, f"{size}-zh-operator")
        assert await off_screen_actions(page) == []
    assert errors == []


# ---- my account -------------------------------------------------------------------------------


@pytest.mark.parametrize("size", ["desktop", "phone"])
async def test_my_account_values_holdings_and_lists_orders(venue, size, tmp_path):
    url, seed = venue
    errors: list[str] = []
    async with aiohttp.ClientSession() as session:
        li = Api(session, url, seed["li"]["api_key"])
        order = await li.call("POST", "/v1/orders", {"instrument_id": seed["trading"],
                                                    "side": "buy", "type": "limit",
                                                    "price": 9_00, "quantity": 3})
    async with browser() as chromium:
        page = await new_page(chromium, SIZES[size], "en", errors)
        await sign_in(page, url, seed["li"]["api_key"], "#account")
        holding = page.locator(f"#holdings tr[data-instrument-id='{seed['trading']}']")
        await holding.wait_for()
        # 155 shares at the last trade, ¥11.20: worth ¥1,736.00.
        text = await holding.inner_text()
        assert "155 shares" in text and "¥11.20" in text and "last trade" in text
        assert await holding.locator("[data-field=value]").inner_text() == "¥1,736.00"
        history = await page.inner_text("#trade-history-table")
        assert "¥157.50" in history and "¥112.00" in history  # 15 × ¥10.50, 10 × ¥11.20
        # Movements (GET /v1/me/movements): the deposit, with its settlement status.
        movements = page.locator("#movements-table")
        await movements.wait_for()
        text = await movements.inner_text()
        assert "Deposit" in text and ("Pending" in text or "Settled (batch #" in text)
        row = page.locator(f"#account-orders-table tr[data-order-id='{order['order_id']}']")
        await row.wait_for()
        await shot(page, tmp_path, f"{size}-en-account")
        assert await off_screen_actions(page) == []
        await row.locator("button").click()
        await page.wait_for_selector("#orders-message.ok")
        await row.wait_for(state="detached")
        await switch_language(page, "zh")
        assert "最新成交" in await page.inner_text("#holdings")
        assert "入金" in await page.inner_text("#movements-table")
        await shot(page, tmp_path, f"{size}-zh-account")
    assert errors == []


# ---- markets ----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", ["desktop", "phone"])
async def test_market_chart_day_figures_depth_and_ticket(venue, size, tmp_path):
    url, seed = venue
    errors: list[str] = []
    async with browser() as chromium:
        page = await new_page(chromium, SIZES[size], "en", errors)
        await sign_in(page, url, seed["li"]["api_key"], "#account")
        await page.goto(f"{url}/#/markets/{seed['trading']}")
        await page.wait_for_selector("#chart[data-candles='4'] canvas")
        legend = page.locator("#chart-legend")
        assert "C ¥11.20" in await legend.inner_text() and "Vol 5" in await legend.inner_text()
        # The crosshair: pointing at the chart writes out the candle under it.
        box = await page.locator("#chart-canvas").bounding_box()
        await page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.5)
        await page.wait_for_selector("#chart-legend[data-hover=true]")
        # 24 h: from ¥10.50 to ¥11.20; depth: cumulative quantities.
        day = await page.inner_text("#day-figures")
        assert "+¥0.70 (+6.66%)" in day and "¥10.50" in day and "55" in day
        assert await page.inner_text("#asks tr[data-price='1150'] td.cum") == "35"

        # An order through the ticket: its result has no stray `null`; Cancel stays in its panel.
        await page.fill("#order-price", "9.50")
        await page.fill("#order-quantity", "2")
        await page.click("#order-submit")
        await page.wait_for_selector("#order-result:has-text('Resting on the book at ¥9.50')")
        assert "null" not in await page.inner_text("#order-result")
        card = page.locator("#open-orders-table .order-card", has_text="¥9.50")
        await card.wait_for()
        panel = await page.locator("#open-orders").bounding_box()
        for label in ("Edit", "Cancel"):  # both of the card's actions inside its panel
            button = await card.locator(f"button:has-text('{label}')").bounding_box()
            assert panel["x"] <= button["x"]
            assert button["x"] + button["width"] <= panel["x"] + panel["width"]
            assert button["x"] + button["width"] <= SIZES[size]["width"]
        await shot(page, tmp_path, f"{size}-en-market")
        await card.locator("button:has-text('Cancel')").click()
        await card.wait_for(state="detached")
        await switch_language(page, "zh")
        await page.wait_for_selector("#chart[data-candles='4'] canvas")
        assert "收 ¥11.20" in await page.inner_text("#chart-legend")
        assert "24 小时行情" in await page.inner_text("main")
        await shot(page, tmp_path, f"{size}-zh-market")
    assert errors == []


# ---- the issuer's desk ------------------------------------------------------------------------


@pytest.mark.parametrize("size", ["desktop", "phone"])
async def test_issuer_projects_fit_their_panel(venue, size, tmp_path):
    url, seed = venue
    errors: list[str] = []
    async with browser() as chromium:
        page = await new_page(chromium, SIZES[size], "en", errors)
        await sign_in(page, url, seed["issuer"]["api_key"], "#create-project-form")
        await page.wait_for_selector(f"#my-projects-table tr[data-project-id='{seed['open']}']")
        fits = await page.evaluate("""() => {
          const table = document.querySelector('#my-projects-table');
          const panel = table.closest('.panel');
          return table.getBoundingClientRect().right <= panel.getBoundingClientRect().right + 1;
        }""")
        assert fits
        assert not await page_overflows(page)
        await shot(page, tmp_path, f"{size}-en-issuer")
    assert errors == []


# ---- phone widths ------------------------------------------------------------------------------

PHONE_WIDTHS = (390, 360)
# Each cell of a table as its reader sees it: the label a card shows before it (its ::before
# text), its column's header, how it is laid out and whether it sits wholly on the screen.
CARD_CELLS = """(selector) => {
  const table = document.querySelector(selector);
  const width = document.documentElement.clientWidth;
  const headers = [...table.querySelectorAll("thead th")].map((th) => th.textContent.trim());
  return [...table.querySelectorAll("tbody tr")].map((tr) => ({
    display: getComputedStyle(tr).display,
    cells: [...tr.children].map((td, i) => {
      const r = td.getBoundingClientRect();
      const before = getComputedStyle(td, "::before").content;
      return { header: headers[i], display: getComputedStyle(td).display,
               label: before === "none" ? "" : before.replace(/^"|"$/g, ""),
               value: td.innerText.trim(), inside: r.left >= 0 && r.right <= width + 1 };
    }),
  }));
}"""


async def _phone_boards(url: str, seed: dict) -> tuple[tuple[str, str], ...]:
    """Public routes to the board pages with the widest content: the product's tiers, a debt
    offering that succeeded (its repayment schedule) and an open operating-rights offering (its
    long term labels). Zhang backs the debt, so the account Li's tests read stays as it was."""
    async with aiohttp.ClientSession() as session:
        op = Api(session, url, OPERATOR_KEY)
        issuer = seed["issuer"]["api_key"]
        debt = await op.project(issuer, "debt", "Tea house refit", "2026-03-20T00:00:00Z", {
            "face_value": 100_00, "min_quantity": 10, "max_quantity": 50, "term_months": 12,
            "repayment": "amortizing", "rate_bps": 900, "lockup_days": 0})
        await op.as_key(seed["zhang"]["api_key"]).call(
            "POST", f"/v1/projects/{debt}/subscriptions", {"quantity": 20})
        await op.call("POST", f"/v1/projects/{debt}/close")
        rights = await op.project(
            issuer, "operating_rights", "Riverside café, second shop", "2026-03-25T00:00:00Z",
            {"price": 20_00, "min_quantity": 10, "max_quantity": 100, "term_months": 6,
             "revenue_share_bps": 1_000, "buyback_price": 18_00, "lockup_days": 0})
    return (("product", f"/#/projects/{seed['product']}"), ("debt", f"/#/projects/{debt}"),
            ("rights", f"/#/projects/{rights}"))


async def test_phone_widths_fit_every_page(venue, tmp_path):
    """At 390 and 360 px wide, in English and Chinese, on every page: each navigation tab (and
    the rest of the header) is whole on the screen, neither the page nor any part of it scrolls
    sideways, and a card's values stay beside their labels. A failing page is kept as a
    screenshot."""
    url, seed = venue
    errors: list[str] = []
    extra = await _phone_boards(url, seed)
    walks = [("visitor" if login is None else login[1].lstrip("#"), login, routes)
             for login, routes in _pages(seed, extra)]

    async def check(page) -> list[str]:
        found = [f"header cut: {x}" for x in await header_cut(page)]
        found += [f"scrolls sideways: {x}" for x in await sideways_scrollers(page)]
        found += [f"value under its label: {x}" for x in await card_spills(page)]
        if await page_overflows(page):
            found.append("the page scrolls sideways")
        return found

    async with browser() as chromium:
        problems = await walk_widths(chromium, url, walks, SIZES["phone"], PHONE_WIDTHS, check,
                                     tmp_path, errors)
    assert errors == []
    assert problems == {}, "\n".join(f"{k}: {v}" for k, v in problems.items())


async def test_trade_history_is_cards_with_every_field_labelled_on_a_phone(venue, tmp_path):
    """On a phone the trade history is a card a trade, as the account's other tables are: every
    figure on the screen beside its column's name, none behind a sideways scroll."""
    url, seed = venue
    errors: list[str] = []
    async with browser() as chromium:
        page = await new_page(chromium, SIZES["phone"], "en", errors)
        await sign_in(page, url, seed["li"]["api_key"], "#account")
        for lang, quantity in (("en", "Quantity"), ("zh", "数量")):
            if lang == "zh":
                await switch_language(page, "zh")
            await page.wait_for_selector("#trade-history-table")
            for width in PHONE_WIDTHS:
                await set_width(page, width, SIZES["phone"]["height"])
                rows = await page.evaluate(CARD_CELLS, "#trade-history-table")
                assert len(rows) >= 4  # Li's four seeded fills, newest first
                assert {row["display"] for row in rows} == {"block"}
                cells = [cell for row in rows for cell in row["cells"]]
                assert len(cells) == 7 * len(rows)
                for cell in cells:
                    assert cell["display"] != "table-cell", cell
                    assert cell["label"] and cell["label"] == cell["header"], cell
                    assert cell["value"] and cell["inside"], cell
                # 15, 25, 10 and 5 shares bought, each labelled as a quantity.
                shown = {cell["value"] for cell in cells if cell["label"] == quantity}
                assert {"15", "25", "10", "5"} <= shown
                assert await sideways_scrollers(page) == []
                await page.locator("#trade-history").screenshot(
                    path=str(tmp_path / f"{width}-{lang}-trade-history.png"))
    assert errors == []


# ---- the cn2015 profile -----------------------------------------------------------------------


async def test_cn2015_venue_speaks_chinese_and_colours_up_red(server_factory, tmp_path):
    server = server_factory("--profile", "cn2015", "--clock", "manual", "--start-time", START)
    server.start()
    async with aiohttp.ClientSession() as session:
        op = Api(session, server.url, OPERATOR_KEY)
        issuer = await op.account("issuer", "江城灯具")
        await op.project(issuer["api_key"], "product", "纸莲花灯", "2026-03-10T00:00:00Z",
                         {"goal": 1_000_00, "tiers": [{"tier_id": "early", "price": 199_00,
                                                      "quantity": 10}]})
    errors: list[str] = []
    async with browser() as chromium:
        for size in ("desktop", "phone"):
            page = await new_page(chromium, SIZES[size], None, errors)
            await page.goto(server.url + "/")
            await page.wait_for_selector("#project-grid .card")
            # No choice stored: Chinese, and red is up.
            assert await page.get_attribute("html", "lang") == "zh-CN"
            assert await page.inner_text("#nav a >> nth=0") == "项目"
            assert await page.get_attribute("html", "data-colors") == "cn"
            colours = await page.evaluate("""() => {
              const s = getComputedStyle(document.documentElement);
              return [s.getPropertyValue('--up').trim(), s.getPropertyValue('--down').trim()];
            }""")
            assert colours == ["#c62828", "#18794e"]
            card = await page.inner_text("#project-grid .card")
            assert "纸莲花灯" in card and "发行人：江城灯具" in card and "剩余 9天" in card
            # Money stays exact, whatever the language.
            assert await page.evaluate(
                "import('/static/js/money.js').then((m) => m.yuan(2 ** 53 - 1))"
            ) == "¥90,071,992,547,409.91"
            await shot(page, tmp_path, f"{size}-cn2015")
            assert await axe_problems(page) == []
            # A user who picks English keeps it.
            await switch_language(page, "en")
            await page.reload()
            await page.wait_for_selector("#nav a >> text=Projects")
    assert errors == []


# ---- the dictionary -----------------------------------------------------------------------------


async def test_every_string_the_ui_uses_exists_in_both_languages(venue):
    """Every "area.name" key the UI's scripts mention is in js/strings.js with an English and a
    Chinese text (keys built at run time are listed by their families)."""
    url, _ = venue
    scripts = sorted(name for name in STATIC_FILES if name.endswith(".js")
                     and not name.startswith("vendor/") and name != "js/strings.js")
    async with browser() as chromium:
        page = await new_page(chromium, SIZES["desktop"], "en", [])
        await page.goto(url + "/")
        missing = await page.evaluate("""async (scripts) => {
          const { STRINGS } = await import('/static/js/strings.js');
          const bad = [];
          for (const [key, pair] of Object.entries(STRINGS)) {
            if (!Array.isArray(pair) || pair.length !== 2 || !pair[0] || !pair[1]) bad.push(key);
          }
          for (const name of scripts) {
            const text = await (await fetch('/static/' + name)).text();
            for (const m of text.matchAll(/"([a-z_]+\\.[a-z_0-9]+)"/g)) {
              if (!(m[1] in STRINGS)) bad.push(name + ': ' + m[1]);
            }
          }
          const BOARDS = ['equity', 'debt', 'ip', 'operating_rights', 'product'];
          const families = {
            status: ['open', 'pending_review', 'succeeded', 'trading', 'failed', 'rejected',
                     'accepted', 'cancelled', 'allocated', 'refunded', 'scheduled', 'paid',
                     'late', 'default', 'committed'],
            board: BOARDS, units: BOARDS, unitname: BOARDS, risk: BOARDS,
            side: ['buy', 'sell'], tif: ['gtc', 'ioc', 'fok'], interval: ['1m', '1h', '1d'],
            role: ['investor', 'issuer', 'operator'], live: ['live', 'connecting', 'offline'],
            class: ['retail', 'qualified', 'institutional'],
            order_status: ['open', 'partially_filled', 'filled', 'cancelled', 'rejected'],
            confirm: ['approve', 'reject', 'close', 'delivery', 'settle'],
            op: ['approve', 'reject', 'close', 'delivery'],
            movement: ['deposit', 'withdrawal', 'trade_cash', 'trade_units', 'trade_fee',
                       'subscription_payment', 'units_issued', 'success_fee', 'distribution',
                       'servicing_fee', 'payout_held', 'payout_released', 'held_refund',
                       'buyback', 'units_cancelled'],
          };
          for (const [family, names] of Object.entries(families)) {
            for (const key of names.map((name) => family + '.' + name)) {
              if (!(key in STRINGS)) bad.push(key);
            }
          }
          return bad;
        }""", scripts)
    assert missing == []
