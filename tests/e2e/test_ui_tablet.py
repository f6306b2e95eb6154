"""The web UI at tablet and small-laptop widths (660 to 1024 px) and at the desktop's 1280, in
English and Chinese, in a real headless Chromium against a real `crowdex serve`: on every page,
as a visitor, an investor, an issuer and the operator, nothing scrolls sideways (neither the
page nor a table inside its panel), no text is cut or runs out of its panel, and no value (an
amount, a date, a quantity with its unit) is broken across two lines.

Above the phone's 40rem the desktop tables used to be kept whatever their width, so at these
widths some scrolled inside their panels (the product's tiers, the trades beside the book, the
account's tables beside the withdrawal form, the allocations in the project's side column).

One server for the module, seeded as the people tests seed theirs; one browser, one page for
each signed-in person, resized through the widths. A failing page is kept as a screenshot.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.conftest import OPERATOR_KEY, ServerProcess
from tests.e2e.browser import browser
from tests.e2e.test_ui_people import START, _phone_boards, _seed
from tests.e2e.ui_support import (
    Api,
    fit_problems,
    page_overflows,
    sideways_scrollers,
    walk_widths,
)

WIDTHS = (660, 768, 820, 900, 1024, 1280)
HEIGHT = 900


async def _pending(url: str, seed: dict) -> None:
    """A debt offering awaiting review: the operator's queue shows its terms and actions."""
    async with aiohttp.ClientSession() as session:
        op = Api(session, url, OPERATOR_KEY)
        await op.project(seed["issuer"]["api_key"], "debt", "Harbour ferry refit",
                         "2026-03-28T00:00:00Z", {
                             "face_value": 100_00, "min_quantity": 10, "max_quantity": 50,
                             "term_months": 12, "repayment": "amortizing", "rate_bps": 900},
                         approve=False)


@pytest.fixture(scope="module")
def venue(tmp_path_factory: pytest.TempPathFactory):
    server = ServerProcess(tmp_path_factory.mktemp("ui-tablet") / "data",
                           "--clock", "manual", "--start-time", START)
    server.start()

    async def seed() -> tuple[dict, dict]:
        made = await _seed(server.url)
        boards = dict(await _phone_boards(server.url, made))
        await _pending(server.url, made)
        return made, boards

    try:
        yield server.url, *asyncio.run(seed())
    finally:
        server.stop()


def _walks(seed: dict, boards: dict) -> list[tuple]:
    """Who reads, how they sign in (None, or key and landing selector) and the routes they
    see. The project pages differ by reader: the subscribe form, the issuer's tools, the
    allocations."""
    market = f"/#/markets/{seed['trading']}"
    project = f"/#/projects/{seed['open']}"
    return [
        ("visitor", None, [("projects", "/#/projects"), ("project", project), ("markets", market),
                ("integrity", "/#/integrity"), ("signin", "/#/signin"), *boards.items()]),
        ("investor", (seed["li"]["api_key"], "#account"),
         [("account", "/#/account"), ("ticket", market), ("project", project),
          ("product", boards["product"])]),
        ("issuer", (seed["issuer"]["api_key"], "#create-project-form"),
         [("issuer", "/#/issuer"), ("project", project), ("debt", boards["debt"])]),
        ("operator", (OPERATOR_KEY, "#create-account-form"),
         [("operator", "/#/operator"), ("project", project), ("debt", boards["debt"])]),
    ]


async def _findings(page) -> list[str]:
    found = [f"scrolls sideways: {x}" for x in await sideways_scrollers(page)]
    if await page_overflows(page):
        found.append("the page scrolls sideways")
    return found + await fit_problems(page)


async def test_tablet_and_laptop_widths_fit_every_page(venue, tmp_path):
    """At 660, 768, 820, 900, 1024 and 1280 px, in English and Chinese, on every page as every
    reader: no sideways scroll of the page or of a table in its panel, no text cut or out of its
    panel, no value broken across lines."""
    url, seed, boards = venue
    errors: list[str] = []
    async with browser() as chromium:
        problems = await walk_widths(chromium, url, _walks(seed, boards),
                                     {"width": WIDTHS[-1], "height": HEIGHT}, WIDTHS, _findings,
                                     tmp_path, errors)
    assert errors == []
    count = sum(len(found) for found in problems.values())
    assert problems == {}, f"{count} findings on {len(problems)} page widths:\n" + "\n".join(
        f"{k}: {v}" for k, v in problems.items())
