"""The Markets view in a real headless Chromium against a real server.

Two traders in separate browser contexts: the seller's ask appears live in the buyer's book, the
buyer's crossing order through the ticket trades, both pages see the trade and the book change,
the seller's open orders follow the fill over the private `orders` channel, refusals show their
API code, and a cancel empties the book everywhere. An operator uncrosses an IP call auction.
"""

from __future__ import annotations

from gateway.client import Client
from tests.conftest import OPERATOR_KEY
from tests.e2e.browser import browser

START = "2026-01-01T00:00:00Z"
DEADLINE = "2026-01-31T00:00:00Z"


async def _listed(operator: Client, board: str, terms: dict) -> tuple[int, list[dict], dict]:
    """A trading instrument: two qualified holders from the offering and a buyer with cash."""
    issuer = await operator.create_account("issuer", "Optics Ltd")
    holders = [await operator.create_account("investor", name, investor_class="qualified")
               for name in ("Seller", "Holder")]
    buyer = await operator.create_account("investor", "Buyer", investor_class="qualified")
    for n, who in enumerate((*holders, buyer)):
        await operator.deposit(who["account_id"], 5_000_00, f"d{n}")
    project = await operator.with_key(issuer["api_key"]).create_project(
        board, "Lens plant", "A plant for lenses.", DEADLINE, {**terms, "lockup_days": 0})
    pid = project["project_id"]
    await operator.project_action(pid, "approve")
    await operator.with_key(holders[0]["api_key"]).subscribe(pid, 100)
    await operator.with_key(holders[1]["api_key"]).subscribe(pid, 50)
    await operator.project_action(pid, "close")
    # With lockup_days 0, trading begins the moment the offering closes.
    assert (await operator.project(pid))["status"] == "trading"
    return pid, holders, buyer


async def _open(chromium, url: str, key: str, pid: int, width: int = 1280):
    page = await (await chromium.new_context(viewport={"width": width, "height": 900})).new_page()
    await page.goto(f"{url}/#/signin?next=/markets/{pid}")
    await page.fill("#api-key", key)
    await page.click("#login-form button[type=submit]")
    await page.wait_for_selector("#live[data-state=live]")
    return page


async def _order(page, side: str, price: str, quantity: str, *, post_only: bool = False) -> None:
    await page.check(f"#side-{side}")
    await page.fill("#order-price", price)
    await page.fill("#order-quantity", quantity)
    if post_only:
        await page.check("#order-post-only")
    await page.click("#order-submit")


async def test_book_trades_and_orders_update_live_across_two_traders(server_factory, tmp_path):
    server = server_factory("--clock", "manual", "--start-time", START)
    server.start()
    async with Client(server.url, OPERATOR_KEY) as operator:
        pid, (seller, _), buyer = await _listed(
            operator, "equity", {"price": 10_00, "min_quantity": 10, "max_quantity": 1000})
    async with browser() as chromium:
        seller_page = await _open(chromium, server.url, seller["api_key"], pid)
        buyer_page = await _open(chromium, server.url, buyer["api_key"], pid)
        for page in (seller_page, buyer_page):
            await page.wait_for_selector("#spread:has-text('The book is empty')")
            await page.wait_for_selector("#open-orders-table:has-text('No open orders.')")
        assert "100 shares" in await seller_page.inner_text("#available")

        # The seller's limit sell rests; the buyer's page shows the ask live, over the WebSocket.
        await _order(seller_page, "sell", "10.50", "40")
        await seller_page.wait_for_selector("#order-result:has-text('filled 0 of 40')")
        remaining = "#open-orders-table [data-field=remaining]"
        await seller_page.wait_for_selector(f"{remaining}:text-is('40')")
        await buyer_page.wait_for_selector("#asks tr[data-price='1050']:has-text('40')")
        assert await buyer_page.inner_text("#market-stats [data-field=best_ask]") == "¥10.50"

        # The buyer crosses through the ticket; the result shows the order and its fill.
        await _order(buyer_page, "buy", "11", "15")
        await buyer_page.wait_for_selector("#order-result:has-text('filled 15 of 15')")
        assert "Filled" in await buyer_page.inner_text("#order-result")
        fill = await buyer_page.inner_text("#order-fills tbody tr")
        assert "¥10.50" in fill and "15" in fill
        for page in (seller_page, buyer_page):
            await page.wait_for_selector("#trades-table tbody tr:has-text('¥10.50'):has-text('15')")
            await page.wait_for_selector("#asks tr[data-price='1050']:has-text('25')")
            await page.wait_for_selector("#market-stats [data-field=last]:text-is('¥10.50')")
            await page.wait_for_selector("#chart[data-candles='1'] canvas")
        # The seller's open order follows the fill live (the `orders` channel), no reload.
        await seller_page.wait_for_selector(f"{remaining}:text-is('25')")
        assert "15/40" in await seller_page.inner_text("#open-orders-table")

        # Refusals in words: a post-only buy that would cross, then too little cash (in yuan).
        await _order(buyer_page, "buy", "10.50", "5", post_only=True)
        error = buyer_page.locator("#order-ticket .message.error")
        await error.locator("[data-code=post_only_would_cross]").wait_for()
        await buyer_page.uncheck("#order-post-only")
        await _order(buyer_page, "buy", "50", "100000")
        await error.locator("[data-code=insufficient_funds]").wait_for()
        assert "¥5,000,000.00" in await error.inner_text()
        assert await buyer_page.is_hidden("#order-result")
        # A malformed price never reaches the server.
        await _order(buyer_page, "buy", "10.505", "1")
        await error.locator("text=at most 2 decimals").wait_for()

        await buyer_page.screenshot(path=str(tmp_path / "markets-buyer.png"), full_page=True)
        # The seller cancels the rest from "My open orders"; both books empty out.
        await seller_page.click("#open-orders-table button:has-text('Cancel')")
        await seller_page.wait_for_selector("#open-orders-table:has-text('No open orders.')")
        for page in (seller_page, buyer_page):
            await page.wait_for_selector("#asks:has-text('No asks.')")
        narrow = await _open(chromium, server.url, seller["api_key"], pid, width=390)
        await narrow.wait_for_selector("#trades-table tbody tr")
        await narrow.screenshot(path=str(tmp_path / "markets-narrow.png"), full_page=True)


async def test_operator_runs_an_ip_call_auction(server_factory, tmp_path):
    server = server_factory("--clock", "manual", "--start-time", START)
    server.start()
    async with Client(server.url, OPERATOR_KEY) as operator:
        pid, (seller, _), buyer = await _listed(operator, "ip", {
            "price": 5_00, "min_quantity": 100, "max_quantity": 1000, "royalty_share_bps": 2000})
        await operator.with_key(seller["api_key"]).place_order(
            instrument_id=pid, side="sell", type="limit", price=5_00, quantity=30)
        await operator.with_key(buyer["api_key"]).place_order(
            instrument_id=pid, side="buy", type="limit", price=6_50, quantity=40)
    async with browser() as chromium:
        page = await _open(chromium, server.url, OPERATOR_KEY, pid)
        # Crossed orders rest; the indicative uncross: 30 units, at the price nearest the
        # reference (the offering's ¥5.00) among equal volume and imbalance.
        await page.wait_for_selector("#spread:has-text('next call auction')")
        await page.wait_for_selector("#indicative-price:text-is('¥5.00')")
        assert await page.inner_text("#indicative-quantity") == "30 units"
        assert await page.is_hidden("#order-ticket")
        await page.click("#run-auction")
        await page.wait_for_selector("text=Uncrossed 30 units at ¥5.00 in 1 trade.")
        await page.wait_for_selector("#trades-table tbody tr:has-text('¥5.00'):has-text('30')")
        await page.wait_for_selector("#asks:has-text('No asks.')")
        await page.wait_for_selector("#bids tr[data-price='650']:has-text('10')")
        await page.wait_for_selector("#indicative-price:text-is('no cross')")
        await page.screenshot(path=str(tmp_path / "markets-ip.png"), full_page=True)


async def test_an_open_order_is_amended_from_its_card(server_factory, tmp_path):
    """Issue 17: the open orders get an edit action (PATCH /v1/orders/{id}), desktop and phone."""
    server = server_factory("--clock", "manual", "--start-time", START)
    server.start()
    async with Client(server.url, OPERATOR_KEY) as operator:
        pid, (seller, _), _buyer = await _listed(
            operator, "equity", {"price": 10_00, "min_quantity": 10, "max_quantity": 1000})
    async with browser() as chromium:
        for n, (width, name) in enumerate(((1280, "desktop"), (390, "phone")), start=1):
            page = await _open(chromium, server.url, seller["api_key"], pid, width)
            await _order(page, "sell", "10.50", "40")
            card = "#open-orders-table .order-card:last-child"
            await page.wait_for_selector(f"{card} [data-field=remaining]:text-is('40')")
            await page.click(f"{card} button:has-text('Edit')")
            await page.fill(f"{card} input[name=quantity]", "25")
            await page.fill(f"{card} input[name=price]", "10.80")
            await page.click(f"{card} button:has-text('Save')")
            await page.wait_for_selector(f"{card} [data-field=remaining]:text-is('25')")
            await page.wait_for_selector(f"{card}:has-text('¥10.80')")
            # Each pass amends a new order to 25 at 10.80: the level holds 25 per pass.
            await page.wait_for_selector(f"#asks tr[data-price='1080']:has-text('{25 * n}')")
            box = await page.locator(f"{card} button:has-text('Edit')").bounding_box()
            assert box is not None and box["x"] + box["width"] <= width  # in view on a phone
            # Nothing changed: said in words, nothing sent.
            await page.click(f"{card} button:has-text('Edit')")
            await page.click(f"{card} button:has-text('Save')")
            await page.wait_for_selector("text=Change the price or the quantity first.")
            shot = tmp_path / f"{name}-amend.png"
            await page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot: {shot}")
            await page.context.close()
    async with Client(server.url, seller["api_key"]) as client:
        orders = await client.orders(status="open")
    assert sorted((o["price"], o["remaining_quantity"]) for o in orders) == [
        (10_80, 25), (10_80, 25)]


async def test_the_cn2015_bulletin_board_posts_accepts_and_withdraws_offers(server_factory,
                                                                           tmp_path):
    """Under cn2015 the markets page is a bulletin board (no order book): a holder posts an offer,
    another qualified investor takes part of it, the holder withdraws the rest; in Chinese, the
    venue's default there, at desktop and phone sizes."""
    server = server_factory("--clock", "manual", "--start-time", START, "--profile", "cn2015")
    server.start()
    async with Client(server.url, OPERATOR_KEY) as operator:
        pid, (holder, _), buyer = await _listed(
            operator, "equity", {"price": 10_00, "min_quantity": 10, "max_quantity": 1000})
        await operator.advance_clock(8 * 86_400)  # past the T+5 holding period
    async with browser() as chromium:
        seller_page = await _open(chromium, server.url, holder["api_key"], pid)
        buyer_page = await _open(chromium, server.url, buyer["api_key"], pid, 390)
        for page in (seller_page, buyer_page):
            assert (await page.get_attribute("html", "lang")).startswith("zh")
            assert await page.locator("#order-ticket").count() == 0  # no central book
            await page.wait_for_selector("#offers-list .empty")
        await seller_page.check("#offer-side-sell")
        await seller_page.fill("#post-offer [name=price]", "10.50")
        await seller_page.fill("#post-offer [name=quantity]", "10")
        await seller_page.click("#post-offer-submit")
        mine = "#offers-table tr[data-mine=true]"
        await seller_page.wait_for_selector(f"{mine}:has-text('¥10.50')")
        theirs = "#offers-table tr[data-mine=false]"
        await buyer_page.reload()
        await buyer_page.wait_for_selector(f"{theirs}:has-text('¥10.50')")
        await buyer_page.fill(f"{theirs} input[name=quantity]", "4")
        await buyer_page.click(f"{theirs} .accept-form button")
        await buyer_page.wait_for_selector("text=成交：4")
        await buyer_page.wait_for_selector(f"{theirs} td:has-text('6')")
        await seller_page.wait_for_selector(f"{mine} td:has-text('6')")  # over the trades feed
        shots = []
        for page, name in ((seller_page, "desktop"), (buyer_page, "phone")):
            shot = tmp_path / f"{name}-zh-offers.png"
            await page.screenshot(path=str(shot), full_page=True)
            shots.append(shot)
        await seller_page.click(f"{mine} button")
        await seller_page.wait_for_selector("#offers-list .empty")
        print("screenshots:", *shots)
