"""The Markets view in a real headless Chromium: a live book, a crossing order, trades."""

from __future__ import annotations

from gateway.client import Client
from tests.conftest import OPERATOR_KEY
from tests.e2e.browser import browser

START = "2026-01-01T00:00:00Z"


async def _trading_equity(url: str) -> tuple[int, dict, dict]:
    async with Client(url, OPERATOR_KEY) as operator:
        issuer = await operator.create_account("issuer", "Optics Ltd")
        seller = await operator.create_account("investor", "Seller", investor_class="qualified")
        buyer = await operator.create_account("investor", "Buyer", investor_class="qualified")
        for n, who in enumerate((seller, buyer)):
            await operator.deposit(who["account_id"], 100_000_00, f"d{n}")
        project = await operator.with_key(issuer["api_key"]).create_project(
            "equity", "Lens plant", "demo", "2026-01-31T00:00:00Z",
            {"price": 10_00, "min_quantity": 10, "max_quantity": 1000, "lockup_days": 0})
        pid = project["project_id"]
        await operator.project_action(pid, "approve")
        await operator.with_key(seller["api_key"]).subscribe(pid, 100)
        await operator.project_action(pid, "close")
        return pid, seller, buyer


async def _sign_in(page, url: str, key: str, pid: int) -> None:
    await page.goto(f"{url}/#/signin?next=/markets/{pid}")
    await page.fill("#api-key", key)
    await page.click("#login-form button[type=submit]")
    await page.wait_for_selector("#order-ticket")


async def test_book_and_trades_update_live_across_two_traders(server_factory, tmp_path):
    server = server_factory("--clock", "manual", "--start-time", START)
    server.start()
    pid, seller, buyer = await _trading_equity(server.url)
    async with browser() as chromium:
        seller_page = await (await chromium.new_context()).new_page()
        buyer_page = await (await chromium.new_context()).new_page()
        await _sign_in(seller_page, server.url, seller["api_key"], pid)
        await _sign_in(buyer_page, server.url, buyer["api_key"], pid)
        await buyer_page.wait_for_selector("#book")

        await seller_page.select_option("#order-side", "sell")
        await seller_page.fill("#order-price", "10.50")
        await seller_page.fill("#order-quantity", "40")
        await seller_page.click("#order-ticket button[type=submit]")
        await seller_page.wait_for_selector("#open-orders-table")
        # The buyer's book shows the new ask live, over the WebSocket.
        await buyer_page.wait_for_selector("#asks td:has-text('¥10.50')")

        await buyer_page.select_option("#order-side", "buy")
        await buyer_page.fill("#order-price", "11")
        await buyer_page.fill("#order-quantity", "15")
        await buyer_page.click("#order-ticket button[type=submit]")
        await buyer_page.wait_for_selector("#order-result:has-text('filled 15 of 15')")
        for page in (seller_page, buyer_page):
            await page.wait_for_selector("#trades-table td:has-text('¥10.50')")
            await page.wait_for_selector("#asks td:has-text('25')")
        # A refusal shows its code: more than the buyer can pay.
        await buyer_page.fill("#order-price", "50")
        await buyer_page.fill("#order-quantity", "100000")
        await buyer_page.click("#order-ticket button[type=submit]")
        await buyer_page.wait_for_selector("#order-ticket .message.error")
        assert "insufficient_funds" in await buyer_page.inner_text("#order-ticket .message.error")
        # The seller cancels the rest of the order from "My open orders".
        await seller_page.click("#open-orders-table button:has-text('Cancel')")
        await seller_page.wait_for_selector("#open-orders:has-text('No open orders.')")
        await buyer_page.wait_for_selector("#asks:has-text('No asks.')")
        await buyer_page.screenshot(path=str(tmp_path / "markets.png"), full_page=True)
