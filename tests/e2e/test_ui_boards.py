"""Board-specific UI: the debt terms form with a rate auction, bids and their refusals, the
repayment schedule and a repayment; product tiers with remaining counts that update live; the
layout on a phone-sized screen."""

from __future__ import annotations

from gateway.client import Client
from tests.conftest import OPERATOR_KEY
from tests.e2e.browser import browser

MANUAL = ("--clock", "manual", "--start-time", "2026-03-01T00:00:00Z")


async def test_debt_auction_and_product_tiers(server_factory, tmp_path):
    server = server_factory(*MANUAL)
    server.start()
    async with Client(server.url, OPERATOR_KEY) as operator:
        issuer = await operator.create_account("issuer", "Tea House Co")
        investor = await operator.create_account("investor", "Mei Lin",
                                                 investor_class="qualified")
        rival = await operator.create_account("investor", "Rival Backer",
                                              investor_class="qualified")
        await operator.deposit(investor["account_id"], 10_000_00, "b-1")
        await operator.deposit(rival["account_id"], 10_000_00, "b-2")
        await operator.deposit(issuer["account_id"], 1_000_00, "b-3")
        issuer_cx = operator.with_key(issuer["api_key"])
        product = await issuer_cx.create_project(
            "product", "Paper lotus lamp", "A folding lamp.", "2026-03-10T00:00:00Z",
            {"goal": 1_000_00, "tiers": [{"tier_id": "early", "price": 199_00, "quantity": 10,
                                          "reward": "One lamp, signed by the maker",
                                          "estimated_delivery": "2026-10"},
                                         {"tier_id": "standard", "price": 249_00,
                                          "quantity": None}]})
        await operator.project_action(product["project_id"], "approve")

        async with browser() as chromium:
            errors: list[str] = []

            async def new_page(**options):
                context = await chromium.new_context(**options)
                context.set_default_timeout(10_000)
                page = await context.new_page()
                page.on("pageerror", lambda error: errors.append(str(error)))
                return page

            # ---- issuer lists a debt rate auction through the board-specific form ----
            iss = await new_page(viewport={"width": 1280, "height": 900})
            await iss.goto(server.url + "/#/signin")
            await iss.fill("#api-key", issuer["api_key"])
            await iss.click("#login-form button[type=submit]")
            await iss.wait_for_selector("#create-project-form")
            await iss.select_option("#new-board", "debt")
            await iss.fill("#new-title", "Tea house refit")
            await iss.fill("#new-deadline", "2026-03-15T00:00")
            await iss.fill("#terms-fields [name=face_value]", "100")
            await iss.fill("#terms-fields [name=min_quantity]", "10")
            await iss.fill("#terms-fields [name=max_quantity]", "50")
            await iss.fill("#terms-fields [name=term_months]", "12")
            await iss.check("#terms-fields [name=rate_mode][value=auction]")
            await iss.fill("#terms-fields [name=rate]", "9")
            await iss.click("#create-project-form button[type=submit]")
            await iss.wait_for_selector("#create-message.ok")
            debt_id = int(await iss.get_attribute("#create-message [data-project-id]",
                                                  "data-project-id"))
            debt = await operator.project(debt_id)
            assert debt["terms"]["auction"] == {"max_rate_bps": 900}
            assert debt["terms"]["face_value"] == 100_00
            await operator.project_action(debt_id, "approve")

            # ---- and an operating-rights listing through its own fields (issue 17) ----
            await iss.select_option("#new-board", "operating_rights")
            await iss.fill("#new-title", "Riverside café, second shop")
            await iss.fill("#new-deadline", "2026-03-25T00:00")  # 21 to 60 days on this board
            await iss.fill("#terms-fields [name=price]", "100")
            await iss.fill("#terms-fields [name=min_quantity]", "10")
            await iss.fill("#terms-fields [name=max_quantity]", "200")
            await iss.fill("#terms-fields [name=term_months]", "24")
            await iss.fill("#terms-fields [name=revenue_share]", "8.5")
            await iss.fill("#terms-fields [name=buyback_price]", "95.50")
            await iss.click("#create-project-form button[type=submit]")
            await iss.wait_for_selector(f"#create-message.ok [data-project-id]:not("
                                        f"[data-project-id='{debt_id}'])")
            or_id = int(await iss.get_attribute("#create-message [data-project-id]",
                                                "data-project-id"))
            listed = await operator.project(or_id)
            assert listed["board"] == "operating_rights"
            assert {k: listed["terms"][k] for k in ("price", "term_months", "revenue_share_bps",
                                                    "buyback_price", "lockup_days")} == {
                "price": 100_00, "term_months": 24, "revenue_share_bps": 850,
                "buyback_price": 95_50, "lockup_days": 90}

            # ---- investor bids: above the maximum is refused with its code ----
            inv = await new_page(viewport={"width": 1280, "height": 900})
            await inv.goto(server.url + "/#/signin")
            await inv.fill("#api-key", investor["api_key"])
            await inv.click("#login-form button[type=submit]")
            await inv.wait_for_selector("#account")
            await inv.goto(f"{server.url}/#/projects/{debt_id}")
            await inv.wait_for_selector("#sub-rate")
            assert "at most 9.00%" in await inv.inner_text("#terms [data-field=rate]")
            await inv.fill("#sub-quantity", "20")
            await inv.fill("#sub-rate", "9.5")
            await inv.check("#sub-ack")
            await inv.click("#subscribe-form button[type=submit]")
            await inv.wait_for_selector("#subscribe-message.error")
            assert "above the highest rate" in await inv.inner_text("#subscribe-message")
            await inv.fill("#sub-rate", "8.5")
            await inv.click("#subscribe-form button[type=submit]")
            await inv.wait_for_selector("#subscribe-message.ok >> text=¥2,000.00 reserved")
            subs = await operator.with_key(investor["api_key"]).request(
                "GET", "/v1/me/subscriptions")
            assert [(s["quantity"], s["rate_bps"]) for s in subs] == [(20, 850)]

            # ---- product: pick a tier; its remaining count updates live ----
            pid = product["project_id"]
            await inv.goto(f"{server.url}/#/projects/{pid}")
            await inv.wait_for_selector("#live[data-state=live]")
            await inv.select_option("#sub-tier", "early")
            await inv.fill("#sub-quantity", "2")
            assert "¥398.00" in await inv.inner_text("#sub-cost")
            await inv.check("#sub-ack")
            await inv.click("#subscribe-form button[type=submit]")
            await inv.wait_for_selector("#subscribe-message.ok >> text=¥398.00 reserved")
            tiers_text = await inv.inner_text("#tier-table")
            assert "One lamp, signed by the maker" in tiers_text and "Oct 2026" in tiers_text
            early = "#tier-table tr[data-tier=early] td:last-child"
            await inv.wait_for_selector(f"{early} >> text=8")
            await operator.with_key(rival["api_key"]).subscribe(pid, 8, tier_id="early")
            await inv.wait_for_selector(f"{early} >> text=sold out")
            assert await inv.is_disabled("#sub-tier option[value=early]")
            assert "¥1,990.00" in await inv.inner_text("#figures [data-field=raised]")
            await inv.screenshot(path=str(tmp_path / "product.png"), full_page=True)

            # ---- the loan closes: public schedule, the issuer repays through the UI ----
            closed = await operator.project_action(debt_id, "close")
            assert closed["status"] in ("succeeded", "trading")
            public = await new_page(viewport={"width": 390, "height": 844})  # a phone
            await public.goto(f"{server.url}/#/projects/{debt_id}")
            await public.wait_for_selector("#schedule table")
            assert await public.locator("#schedule tbody tr").count() == 12
            assert "8.50% (auction cleared)" in await public.inner_text("#terms [data-field=rate]")
            await public.screenshot(path=str(tmp_path / "debt-phone.png"), full_page=True)

            await iss.goto(f"{server.url}/#/projects/{debt_id}")
            await iss.wait_for_selector("#distribution-form")
            await iss.fill("#dist-amount", "175.5")
            await iss.click("#distribution-form button[type=submit]")
            await iss.wait_for_selector("#distribution-message.ok >> text=¥175.50")
            dists = await operator.request("GET", f"/v1/projects/{debt_id}/distributions")
            assert [d["amount"] for d in dists] == [175_50]

            # ---- the public board list on a phone: tabs by keyboard ----
            await public.goto(server.url + "/#/projects")
            await public.wait_for_selector("#project-grid .card")
            await public.focus("#tab-all")
            await public.keyboard.press("ArrowRight")
            await public.wait_for_selector("#tab-equity[aria-selected=true]:focus")
            await public.keyboard.press("End")
            await public.wait_for_selector("#tab-product[aria-selected=true]:focus")
            await public.wait_for_selector(f".card[data-project-id='{pid}']")
            assert await public.locator(f".card[data-project-id='{debt_id}']").count() == 0
            await public.screenshot(path=str(tmp_path / "list-phone.png"), full_page=True)
            assert errors == []
