"""The web UI in a real headless Chromium against a real server."""

from __future__ import annotations

from gateway.client import Client
from tests.conftest import OPERATOR_KEY
from tests.e2e.browser import browser


async def test_sign_in_shows_balances_in_yuan(server_factory, tmp_path):
    server = server_factory()
    server.start()
    async with Client(server.url, OPERATOR_KEY) as operator:
        investor = await operator.create_account("investor", "Li Wei")
        await operator.deposit(investor["account_id"], 123_456_78, "bank-1")
    async with browser() as chromium:
        page = await chromium.new_page()
        await page.goto(server.url + "/")
        await page.wait_for_selector("#health.ok")
        await page.fill("#api-key", "wrong-key")
        await page.click("#login-form button")
        await page.wait_for_selector("#login-error:not([hidden])")
        assert "unauthorized" in await page.inner_text("#login-error")
        await page.fill("#api-key", investor["api_key"])
        await page.click("#login-form button")
        await page.wait_for_selector("#account:not([hidden])")
        assert await page.inner_text("dd[data-field=available]") == "¥123,456.78"
        assert await page.inner_text("dd[data-field=name]") == "Li Wei"
        await page.screenshot(path=str(tmp_path / "account.png"))
