"""The operating-rights board in the web UI (real Chromium): a project's months and buy-back as
a table anyone can read, the issuer reporting a month's revenue through its form, and the
buy-back form refusing an amount that is not exactly the buy-back."""

from __future__ import annotations

from gateway.client import Client
from tests.conftest import OPERATOR_KEY
from tests.e2e.browser import browser

MANUAL = ("--clock", "manual", "--start-time", "2026-01-01T00:00:00Z")
TERMS = {"price": 20_00, "min_quantity": 10, "max_quantity": 100, "term_months": 6,
         "revenue_share_bps": 1_000, "buyback_price": 18_00, "lockup_days": 0}
DAY_S = 86_400


async def test_months_and_buyback_shown_and_revenue_reported(server_factory, tmp_path):
    server = server_factory(*MANUAL)
    server.start()
    async with Client(server.url, OPERATOR_KEY) as operator:
        issuer = await operator.create_account("issuer", "Riverside Café Chain")
        investor = await operator.create_account("investor", "Mei Lin",
                                                 investor_class="qualified")
        await operator.deposit(investor["account_id"], 10_000_00, "i-1")
        await operator.deposit(issuer["account_id"], 1_000_00, "c-1")
        issuer_cx = operator.with_key(issuer["api_key"])
        project = await issuer_cx.create_project(
            "operating_rights", "Café chain: the riverside flagship", "Ten branches.",
            "2026-01-22T00:00:00Z", TERMS)
        pid = project["project_id"]
        await operator.project_action(pid, "approve")
        await operator.with_key(investor["api_key"]).subscribe(pid, 50)
        await operator.request("POST", "/v1/admin/clock", {"advance_seconds": 21 * DAY_S})
        # 2026-03-01: February is over and may be reported.
        await operator.request("POST", "/v1/admin/clock", {"advance_seconds": 38 * DAY_S})

        async with browser() as chromium:
            errors: list[str] = []

            async def new_page(**options):
                context = await chromium.new_context(**options)
                context.set_default_timeout(10_000)
                page = await context.new_page()
                page.on("pageerror", lambda error: errors.append(str(error)))
                return page

            public = await new_page(viewport={"width": 390, "height": 844})  # a phone
            await public.goto(f"{server.url}/#/projects/{pid}")
            await public.wait_for_selector("#months")
            assert await public.locator("#months tbody tr").count() == 7
            feb = await public.inner_text("#months tr[data-month='2026-02']")
            assert "2026-03-15" in feb and "Scheduled" in feb
            buyback = await public.inner_text("#months tr[data-month=buyback]")
            assert "Buy-back" in buyback and "¥900.00" in buyback  # 18.00 x 50 units
            await public.screenshot(path=str(tmp_path / "months-phone.png"), full_page=True)

            iss = await new_page(viewport={"width": 1280, "height": 900})
            await iss.goto(server.url + "/#/signin")
            await iss.fill("#api-key", issuer["api_key"])
            await iss.click("#login-form button[type=submit]")
            await iss.wait_for_selector("#create-project-form")
            await iss.goto(f"{server.url}/#/projects/{pid}")
            await iss.wait_for_selector("#revenue-form")
            await iss.fill("#rev-month", "2026-02")
            await iss.fill("#rev-amount", "1234.56")
            await iss.click("#revenue-form button[type=submit]")
            # 123,456 fen x 10 % = 12,345.6 -> 12,345 fen owed.
            await iss.wait_for_selector("#revenue-message.ok >> text=¥123.45")
            await iss.fill("#rev-month", "2026-02")
            await iss.fill("#rev-amount", "0")
            await iss.click("#revenue-form button[type=submit]")
            await iss.wait_for_selector("#revenue-message.error")
            assert "already_reported" in await iss.inner_html("#revenue-message")
            await iss.fill("#dist-amount", "899.99")
            await iss.click("#distribution-form button[type=submit]")
            await iss.wait_for_selector("#distribution-message.error")
            assert "invalid_state" in await iss.inner_html("#distribution-message")

            await public.reload()
            await public.wait_for_selector("#months tr[data-month='2026-02'] >> text=Paid")
            feb = await public.inner_text("#months tr[data-month='2026-02']")
            assert "¥1,234.56" in feb and "¥123.45" in feb
            assert errors == []
