"""The three roles through the web UI, end to end, against a real server (manual clock, embedded
PostgreSQL) in a real headless Chromium: accounts, listing, review, subscribing, live figures
over the WebSocket, disclosures, the close, settlement and reconciliation."""

from __future__ import annotations

from gateway.client import Client
from tests.conftest import OPERATOR_KEY
from tests.e2e.browser import browser

START = "2026-03-01T00:00:00Z"
MANUAL = ("--clock", "manual", "--start-time", START)


async def sign_in(page, url: str, key: str, landing: str) -> None:
    await page.goto(url + "/#/signin")
    await page.fill("#api-key", key)
    await page.click("#login-form button[type=submit]")
    await page.wait_for_selector(landing)


async def create_account_via_ui(page, role: str, name: str) -> tuple[int, str]:
    await page.select_option("#acc-role", role)
    await page.fill("#acc-name", name)
    await page.click("#create-account-form button[type=submit]")
    key = page.locator(".api-key", has_text="cdx_")
    await page.wait_for_selector(f"#new-key >> text={name}")
    return int(await key.get_attribute("data-account-id")), await key.inner_text()


async def test_roles_end_to_end(server_factory, tmp_path):
    server = server_factory(*MANUAL)
    server.start()
    async with browser() as chromium:
        errors: list[str] = []

        async def new_page():
            context = await chromium.new_context(viewport={"width": 1280, "height": 900})
            context.set_default_timeout(10_000)
            page = await context.new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            return page

        # ---- operator: accounts and deposits through the UI ----
        op = await new_page()
        await sign_in(op, server.url, OPERATOR_KEY, "#create-account-form")
        assert "2026-03-01 00:00 UTC" in await op.inner_text("#exchange-state")
        issuer_id, issuer_key = await create_account_via_ui(op, "issuer", "Jade Optics Ltd")
        alice_id, alice_key = await create_account_via_ui(op, "investor", "Alice Zhang")
        bob_id, bob_key = await create_account_via_ui(op, "investor", "Bob Chen")
        assert len({issuer_key, alice_key, bob_key}) == 3
        # Creating an account pre-fills the deposit form with its id.
        assert await op.input_value("#dep-account") == str(bob_id)
        for account_id, amount in ((alice_id, "2,000"), (bob_id, "1500.5")):
            await op.fill("#dep-account", str(account_id))
            await op.fill("#dep-amount", amount)
            await op.click("#deposit-form button[type=submit]")
            await op.wait_for_selector(f"#deposit-message.ok >> text=account #{account_id}")
        assert "¥1,500.50" in await op.inner_text("#deposit-message")

        # ---- issuer: lists an equity project through the UI ----
        iss = await new_page()
        await sign_in(iss, server.url, issuer_key, "#create-project-form")
        await iss.select_option("#new-board", "equity")
        await iss.fill("#new-title", "Lens coating line")
        await iss.fill("#new-description", "A second coating line for the Suzhou plant.")
        await iss.fill("#new-deadline", "2026-03-31T00:00")
        await iss.fill("#terms-fields [name=price]", "10")
        await iss.fill("#terms-fields [name=min_quantity]", "50")
        await iss.fill("#terms-fields [name=max_quantity]", "500")
        await iss.fill("#terms-fields [name=lockup_days]", "30")
        await iss.click("#create-project-form button[type=submit]")
        await iss.wait_for_selector("#create-message.ok")
        project_id = int(await iss.get_attribute("#create-message [data-project-id]",
                                                 "data-project-id"))
        await iss.wait_for_selector(f"#my-projects-table tr[data-project-id='{project_id}']")
        assert "Pending review" in await iss.inner_text(
            f"#my-projects-table tr[data-project-id='{project_id}']")
        # A refused listing says why in words (a deadline out of the board's range).
        await iss.fill("#new-title", "Too soon")
        await iss.fill("#new-deadline", "2026-03-05T00:00")
        await iss.click("#create-project-form button[type=submit]")
        await iss.wait_for_selector("#create-message.error")
        assert "do not fit this board's rules" in await iss.inner_text("#create-message")
        code = await iss.get_attribute("#create-message .error-text", "data-code")
        assert code == "invalid_terms"

        # ---- operator: approves it from the review queue ----
        await op.reload()
        approve = f"#review-table button[data-action=approve][data-project-id='{project_id}']"
        await op.click(approve)
        await op.click("#confirm-ok")  # the operator confirms in a dialog first
        await op.wait_for_selector("#review-message.ok >> text=Open")
        await op.wait_for_selector(f"#open-table tr[data-project-id='{project_id}']")

        # ---- anyone: browses the equity board and opens the project ----
        alice = await new_page()
        await alice.goto(server.url + "/")
        await alice.click("#tab-equity")
        await alice.wait_for_selector(f".card[data-project-id='{project_id}']")
        await alice.select_option("#status-filter", "open")
        await alice.click(f".card[data-project-id='{project_id}'] h3 a")
        await alice.wait_for_selector("#project-title >> text=Lens coating line")
        assert "¥10.00" in await alice.inner_text("#terms [data-field=price]")

        # ---- investor: signs in and subscribes through the UI ----
        await sign_in(alice, server.url, alice_key, "#account")
        await alice.goto(f"{server.url}/#/projects/{project_id}")
        await alice.wait_for_selector("#live[data-state=live]")
        await alice.fill("#sub-quantity", "30")
        assert "¥300.00" in await alice.inner_text("#sub-cost")
        await alice.check("#sub-ack")
        await alice.click("#subscribe-form button[type=submit]")
        await alice.wait_for_selector("#subscribe-message.ok")
        assert "¥300.00 reserved" in await alice.inner_text("#subscribe-message")
        assert await alice.inner_text("#my-cash [data-field=reserved]") == "¥300.00"
        assert await alice.inner_text("#my-cash [data-field=available]") == "¥1,700.00"
        await alice.wait_for_selector("#figures [data-field=raised] >> text=¥300.00")
        # A business-rule refusal is shown in words and yuan (more than Alice's cash).
        await alice.fill("#sub-quantity", "180")
        await alice.click("#subscribe-form button[type=submit]")
        await alice.wait_for_selector("#subscribe-message.error")
        text = await alice.inner_text("#subscribe-message")
        assert "¥1,800.00" in text and "¥1,700.00" in text and "fen" not in text

        # ---- live: Bob subscribes through the API; Alice's page updates over the WebSocket ----
        async with Client(server.url, bob_key) as bob:
            await bob.subscribe(project_id, 25)
            await alice.wait_for_selector("#figures [data-field=raised] >> text=¥550.00")
            assert await alice.inner_text("#figures [data-field=investors]") == "2"
            assert "55 shares" in await alice.inner_text("#figures [data-field=subscribed]")
            second = await bob.subscribe(project_id, 10)
            await alice.wait_for_selector("#figures [data-field=raised] >> text=¥650.00")
            await bob.cancel_subscription(second["subscription_id"])
            await alice.wait_for_selector("#figures [data-field=raised] >> text=¥550.00")
        await alice.screenshot(path=str(tmp_path / "project-live.png"), full_page=True)

        # ---- investor: own subscriptions, cancel one through the UI ----
        async with Client(server.url, alice_key) as cx:
            extra = await cx.subscribe(project_id, 5)
        await alice.click("#nav >> text=My account")
        row = f"#subscriptions tr[data-subscription-id='{extra['subscription_id']}']"
        await alice.wait_for_selector(row)
        assert await alice.inner_text("#account [data-field=reserved]") == "¥350.00"
        await alice.click(f"{row} button")
        await alice.wait_for_selector("#subscriptions-message.ok")
        await alice.wait_for_selector(f"{row}[data-status=cancelled]")
        assert await alice.inner_text("#account [data-field=reserved]") == "¥300.00"

        # ---- issuer: posts a disclosure on the project page; the public sees it ----
        await iss.click(f"#my-projects-table tr[data-project-id='{project_id}'] a")
        await iss.wait_for_selector("#disclosure-form")
        await iss.fill("#disc-title", "March update")
        await iss.fill("#disc-body", "Equipment ordered.\nInstallation in April.")
        await iss.click("#disclosure-form button[type=submit]")
        await iss.wait_for_selector("#disclosures >> text=March update")

        # ---- operator: advances the clock, closes the offering, settles ----
        await op.click("#nav >> text=Operator desk")
        await op.wait_for_selector("#clock-form")
        await op.fill("#clock-amount", "2")
        await op.select_option("#clock-unit", "86400")
        await op.click("#clock-form button[type=submit]")
        await op.wait_for_selector("#clock-message.ok >> text=2026-03-03 00:00 UTC")
        await op.click(f"#open-table tr[data-project-id='{project_id}'] button")
        await op.click("#confirm-ok")
        await op.wait_for_selector("#review-message.ok >> text=Succeeded")
        # Alice's open project page redraws with the new status, live.
        await alice.goto(f"{server.url}/#/projects/{project_id}")
        await alice.wait_for_selector("#project-status >> text=Succeeded")
        await alice.wait_for_selector("#allocations")
        await op.click("#run-batch")
        await op.click("#confirm-ok")
        await op.wait_for_selector("#settlement-message.ok >> text=committed")
        await op.wait_for_selector("#batch-table tr[data-batch-id='1']")
        await op.wait_for_selector("#recon-status[data-balanced=true]")
        await op.screenshot(path=str(tmp_path / "operator.png"), full_page=True)

        # After the batch the issuer's proceeds are withdrawable: ¥550 less the 6 % fee.
        await iss.click("#nav >> text=My account")
        await iss.wait_for_selector("#account [data-field=withdrawable] >> text=¥517.00")
        await alice.click("#nav >> text=My account")
        await alice.wait_for_selector("#holdings >> text=Lens coating line")
        assert await alice.inner_text("#holdings tbody td:nth-child(2)") == "30 shares"
        assert errors == []
