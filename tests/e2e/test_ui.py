"""The web UI in a real headless Chromium against a real `crowdex serve`: signing in, the
exact money helpers, and what a wall-clock exchange refuses."""

from __future__ import annotations

from gateway.client import Client
from tests.conftest import OPERATOR_KEY
from tests.e2e.browser import browser

MONEY_CASES = """async () => {
  const m = await import("/static/js/money.js");
  const refused = (f) => { try { f(); return null; } catch (e) { return e.message; } };
  return {
    yuan: [m.yuan(0), m.yuan(5), m.yuan(1234567), m.yuan(-250), m.yuan(2 ** 53),
           m.yuan(9007199254740991), m.yuan(m.times(1999, 3))],
    parsed: [m.parseYuan("12.3"), m.parseYuan("12.30"), m.parseYuan("0.01"), m.parseYuan(".5"),
             m.parseYuan("1,000"), m.parseYuan("¥ 7"), m.parseYuan("90071992547409.92"),
             m.parseHundredths("8.25"), m.parseCount("1,200")],
    refused: [refused(() => m.parseYuan("12.345")), refused(() => m.parseYuan("-1")),
              refused(() => m.parseYuan("1e3")), refused(() => m.parseYuan("0")),
              refused(() => m.parseYuan("")), refused(() => m.parseYuan("90071992547409.93")),
              refused(() => m.parseCount("1.5"))],
    percent: [m.percent(825), m.percent(5), m.percentOf(1, 3), m.percentOf(250, 100)],
  };
}"""


async def test_money_is_exact_and_sign_in_shows_balances(server_factory, tmp_path):
    server = server_factory()
    server.start()
    async with Client(server.url, OPERATOR_KEY) as operator:
        investor = await operator.create_account("investor", "Li Wei")
        await operator.deposit(investor["account_id"], 123_456_78, "bank-1")
    async with browser() as chromium:
        page = await chromium.new_page()
        page_errors: list[str] = []
        page.on("pageerror", lambda error: page_errors.append(str(error)))
        await page.goto(server.url + "/")
        await page.wait_for_selector("#health.ok")

        money = await page.evaluate(MONEY_CASES)
        assert money["yuan"] == ["¥0.00", "¥0.05", "¥12,345.67", "-¥2.50",
                                 "¥90,071,992,547,409.92", "¥90,071,992,547,409.91", "¥59.97"]
        assert money["parsed"] == [1230, 1230, 1, 50, 100000, 700, 2**53, 825, 1200]
        assert money["refused"][0] == "amount: at most 2 decimals"
        assert all(money["refused"]), money["refused"]
        assert money["percent"] == ["8.25%", "0.05%", 33, 250]

        # Public browsing needs no key; the sign-in page refuses a bad key, in words.
        await page.click("#signin-link")
        await page.fill("#api-key", "wrong-key")
        await page.click("#login-form button[type=submit]")
        await page.wait_for_selector("#login-error.error")
        assert "API key is not valid" in await page.inner_text("#login-error")
        assert await page.get_attribute("#login-error .error-text", "data-code") == "unauthorized"

        await page.fill("#api-key", investor["api_key"])
        await page.click("#login-form button[type=submit]")
        await page.wait_for_selector("#account")
        assert await page.inner_text("[data-field=available]") == "¥123,456.78"
        assert await page.inner_text("[data-field=withdrawable]") == "¥123,456.78"
        assert await page.inner_text("dd[data-field=name]") == "Li Wei"
        assert await page.is_visible("#logout")
        assert not await page.is_visible("#signin-link")

        # A withdrawal beyond the balance says so in yuan; a valid one updates the cash.
        await page.fill("#withdraw-amount", "200000")
        await page.click("#withdraw-form button[type=submit]")
        await page.wait_for_selector("#withdraw-message.error")
        text = await page.inner_text("#withdraw-message")
        assert "¥123,456.78" in text and "fen" not in text and "insufficient_funds" not in text
        await page.fill("#withdraw-amount", "1.234")
        await page.click("#withdraw-form button[type=submit]")
        await page.wait_for_selector("#withdraw-message.error >> text=at most 2 decimals")
        await page.fill("#withdraw-amount", "56.7")
        await page.click("#withdraw-form button[type=submit]")
        await page.wait_for_selector("#withdraw-message.ok")
        assert await page.inner_text("[data-field=available]") == "¥123,400.08"
        await page.screenshot(path=str(tmp_path / "account.png"), full_page=True)

        # The key lives in sessionStorage: a reload keeps the tab signed in, sign-out forgets it.
        await page.reload()
        await page.wait_for_selector("#who:not([hidden])")
        await page.click("#logout")
        await page.wait_for_selector("#signin-link:not([hidden])")
        assert await page.evaluate("sessionStorage.getItem('crowdex_key')") is None

        # The operator desk on a wall-clock exchange offers no clock form (it could not work).
        await page.goto(server.url + "/#/signin")
        await page.fill("#api-key", OPERATOR_KEY)
        await page.click("#login-form button[type=submit]")
        await page.wait_for_selector("#create-account-form")
        await page.wait_for_selector("#exchange-state [data-field=clock] >> text=wall clock")
        assert await page.locator("#clock-form").count() == 0
        assert page_errors == []
    async with Client(server.url, investor["api_key"]) as cx:
        assert (await cx.me())["cash_available"] == 123_456_78 - 56_70
