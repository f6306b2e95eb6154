"""Helpers for the web UI tests: a venue seeded over plain HTTP, pages at desktop and phone
sizes in either language, screenshots kept as test artifacts, and axe-core's verdict.

The seeding speaks HTTP with aiohttp directly (not the Python client), so these tests depend on
API.md only. axe-core is vendored beside this file (tests/e2e/vendor/axe.min.js, MPL-2.0, its
licence beside it) and injected into the page under test; nothing is fetched at run time.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import aiohttp

AXE_JS = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
SIZES = {"desktop": DESKTOP, "phone": PHONE}
SERIOUS = ("serious", "critical")


class Api:
    """A few API calls as one account, each POST with a fresh Idempotency-Key."""

    def __init__(self, session: aiohttp.ClientSession, base: str, key: str) -> None:
        self.session, self.base, self.key = session, base, key

    def as_key(self, key: str) -> Api:
        return Api(self.session, self.base, key)

    async def call(self, method: str, path: str, body: dict | None = None) -> dict | list:
        headers = {"Authorization": f"Bearer {self.key}", "Idempotency-Key": uuid.uuid4().hex}
        async with self.session.request(method, self.base + path, json=body,
                                        headers=headers) as response:
            payload = await response.json()
            if response.status >= 400:
                raise AssertionError(f"{method} {path} -> {response.status} {payload}")
            return payload

    async def account(self, role: str, name: str, cash_fen: int = 0, **extra: str) -> dict:
        made = await self.call("POST", "/v1/accounts", {"role": role, "name": name, **extra})
        if cash_fen:
            await self.call("POST", f"/v1/accounts/{made['account_id']}/deposits",
                            {"amount": cash_fen, "reference": uuid.uuid4().hex})
        return made

    async def project(self, issuer_key: str, board: str, title: str, deadline: str,
                      terms: dict, approve: bool = True) -> int:
        made = await self.as_key(issuer_key).call("POST", "/v1/projects", {
            "board": board, "title": title, "description": f"{title}: a test listing.",
            "deadline": deadline, "terms": terms})
        if approve:
            await self.call("POST", f"/v1/projects/{made['project_id']}/approve")
        return made["project_id"]


async def new_page(chromium, size: dict, lang: str | None, errors: list[str]):
    """A fresh context (its own storage) at `size`; `lang` preset as the remembered choice."""
    context = await chromium.new_context(viewport=size)
    context.set_default_timeout(10_000)
    if lang is not None:
        await context.add_init_script(
            f"try {{ localStorage.setItem('crowdex_lang', {json.dumps(lang)}); }} catch (e) {{}}")
    page = await context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    return page


async def sign_in(page, url: str, key: str, landing: str) -> None:
    await page.goto(url + "/#/signin")
    await page.fill("#api-key", key)
    await page.click("#login-form button[type=submit]")
    await page.wait_for_selector(landing)


NAV_PROJECTS = {"en": "Projects", "zh": "项目"}


async def ready(page) -> None:
    """The routed view has rendered: its heading is there and nothing is loading."""
    await page.wait_for_selector("main h1")
    await page.wait_for_function("!document.querySelector('#view[aria-busy], #view [aria-busy]')")


async def switch_language(page, lang: str) -> None:
    await page.select_option("#lang-select", lang)
    await page.wait_for_selector(f"#nav a >> text={NAV_PROJECTS[lang]}")
    await ready(page)


async def set_width(page, width: int, height: int) -> None:
    """A new window size, and two frames for the resize observers (card tables, the chart)."""
    await page.set_viewport_size({"width": width, "height": height})
    await page.evaluate("new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")


async def walk_widths(chromium, url: str, walks: list, size: dict, widths: tuple[int, ...],
                      check, tmp_path: Path, errors: list[str]) -> dict[str, list[str]]:
    """Every route of every reader at every width, in English then in Chinese: `walks` is
    [(who, None or (key, landing selector), [(name, route)])]; one page a reader, resized
    (Chinese walks the widths back). `check(page)` lists what is wrong with the page as it
    stands; a page with anything wrong is kept as a screenshot. Returns the problems by
    "who-name-language-width"."""
    problems: dict[str, list[str]] = {}
    for who, login, routes in walks:
        page = await new_page(chromium, size, "en", errors)
        if login:
            await sign_in(page, url, *login)
        for name, route in routes:
            await page.goto(url + route)
            await ready(page)
            for lang in ("en", "zh"):
                if lang == "zh":
                    await switch_language(page, "zh")
                for width in widths if lang == "en" else widths[::-1]:
                    await set_width(page, width, size["height"])
                    found = await check(page)
                    if found:
                        key = f"{who}-{name}-{lang}-{width}"
                        problems[key] = found
                        await shot(page, tmp_path, key)
            await switch_language(page, "en")
        await page.context.close()
    return problems


async def shot(page, tmp_path: Path, name: str) -> Path:
    """A full-page screenshot kept under the test's tmp_path; its path is printed."""
    path = tmp_path / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


async def axe_problems(page) -> list[str]:
    """axe-core's serious and critical violations on the page as it stands."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.add_script_tag(path=str(AXE_JS))
    result = await page.evaluate("""async () => {
      const r = await axe.run(document, { resultTypes: ["violations"] });
      return r.violations.map((v) => ({ id: v.id, impact: v.impact,
        nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ")) }));
    }""")
    return [f"{v['id']} ({v['impact']}): {v['nodes']}" for v in result if v["impact"] in SERIOUS]


async def off_screen_actions(page) -> list[str]:
    """Buttons and links that sit (partly) outside the viewport horizontally or are clipped by a
    scrolled container: on a phone every action must be reachable without side-scrolling."""
    return await page.evaluate("""() => {
      const width = document.documentElement.clientWidth;
      const out = [];
      for (const el of document.querySelectorAll("main button, main a.button, main [role=tab]")) {
        const r = el.getBoundingClientRect();
        if (!r.width || !r.height || el.closest("[hidden], details:not([open])")) continue;
        let clipped = r.left < -1 || r.right > width + 1;
        for (let p = el.parentElement; p && !clipped; p = p.parentElement) {
          const style = getComputedStyle(p);
          if (style.overflowX === "visible") continue;
          const box = p.getBoundingClientRect();
          clipped = r.left < box.left - 1 || r.right > box.right + 1;
        }
        if (clipped) out.push((el.id || el.textContent.trim()).slice(0, 40));
      }
      return out;
    }""")


async def page_overflows(page) -> bool:
    """Whether the page itself scrolls sideways (a layout wider than the screen)."""
    return await page.evaluate(
        "document.documentElement.scrollWidth > document.documentElement.clientWidth + 1")


async def header_cut(page) -> list[str]:
    """The header's parts (navigation tabs, language, sign-in) that are not wholly on the screen,
    or that their navigation bar clips: on a phone every tab must be visible without scrolling."""
    return await page.evaluate("""() => {
      const width = document.documentElement.clientWidth;
      const nav = document.querySelector("#nav").getBoundingClientRect();
      const out = [];
      for (const el of document.querySelectorAll(".topbar-inner > *, .session > *, #nav a")) {
        const r = el.getBoundingClientRect();
        if (!r.width || !r.height) continue;
        let cut = r.left < -1 || r.right > width + 1;
        if (el.closest("#nav")) cut = cut || r.left < nav.left - 1 || r.right > nav.right + 1
          || r.top < nav.top - 1 || r.bottom > nav.bottom + 1;
        if (cut) out.push((el.id || el.textContent.trim()).slice(0, 40));
      }
      return out;
    }""")


async def sideways_scrollers(page) -> list[str]:
    """The parts of the page that scroll sideways (a table wider than its panel, a tab bar wider
    than the screen), named by their id or their table's id."""
    return await page.evaluate("""() => {
      const out = [];
      for (const el of document.querySelectorAll("body *")) {
        const overflow = getComputedStyle(el).overflowX;
        if (overflow !== "auto" && overflow !== "scroll") continue;
        if (el.scrollWidth <= el.clientWidth + 1 || !el.getClientRects().length) continue;
        const table = el.querySelector("table[id]");
        out.push(el.id || (table && table.id) || el.getAttribute("aria-label") || el.tagName);
      }
      return out;
    }""")


async def card_spills(page) -> list[str]:
    """Cells of tables shown as cards whose value runs into the label's column (a second node
    of the value placed under the label), as "table id: label"."""
    return await page.evaluate("""() => {
      const out = [];
      for (const td of document.querySelectorAll(".as-cards td")) {
        const box = td.getBoundingClientRect();
        const columns = getComputedStyle(td).gridTemplateColumns.split(" ");
        if (!box.width || columns.length < 2) continue;  // not a card here (a wide screen)
        const valueLeft = box.left + parseFloat(getComputedStyle(td).paddingLeft)
          + parseFloat(columns[0]);
        const range = document.createRange();
        range.selectNodeContents(td);
        if ([...range.getClientRects()].some((r) => r.width && r.left < valueLeft - 1)) {
          out.push(`${td.closest("table").id}: ${td.dataset.label}`);
        }
      }
      return [...new Set(out)];
    }""")


# What reads as one value: a date and time, an amount, a percentage, an order number, "15/40",
# and where data is shown, a count with its unit ("155 shares", "155 股"). Such a run broken
# across two lines reads as two values; prose around it may wrap where it likes.
UNITS = ("shares?|notes?|units?|rewards?|days?|hours?|minutes?|months?|"
         "股|份债权|份收益权|份回报|份经营权|份|天|小时|分钟|个月")
NUMBER_PATTERN = r"[#+\-−]?¥?\d[\d,.:/%\-]*(?: (?:UTC|\d[\d:]*))*"
VALUE_PATTERN = NUMBER_PATTERN + rf"(?: ?(?:{UNITS})(?![A-Za-z]))?"
# Where values are shown as data (not prose): table cells, figures, badges, the header's facts.
VALUE_PLACES = ("td, dd, .stat-value, .badge, .chip, .header-fact, .card-stats, .progress-label,"
                " .spread, .order-card-line, .total, .who")


async def fit_problems(page) -> list[str]:
    """Whatever does not fit at the page's width, in words: text cut by a clipping box (its own
    or an ancestor's, the screen's edge included) or running out of its panel or card, and a
    value broken across two lines. Sideways scrolling is `sideways_scrollers` and
    `page_overflows`."""
    return await page.evaluate("""([pattern, numberPattern, places]) => {
      const out = new Set();
      const width = document.documentElement.clientWidth;
      const where = (el) => {
        const named = el.closest("[id]");
        const table = el.closest("table[id]");
        const label = el.dataset && el.dataset.label ? ` (${el.dataset.label})` : "";
        return (table ? "#" + table.id : named ? "#" + named.id : el.tagName) + label;
      };
      // The skip link waits off the screen until it has the focus; a card table's header row is
      // there for screen readers only (each card labels its values).
      const skip = (el) => !el.getClientRects().length || el.closest(
        "[hidden], details:not([open]) > :not(summary), .sr-only, .chart-canvas, .skip-link")
        || (el.closest("thead") && getComputedStyle(el.closest("thead")).position === "absolute");
      const ownText = (el) => [...el.childNodes].some(
        (n) => n.nodeType === 3 && n.textContent.trim());
      const leaves = [...document.querySelectorAll(
        "body *:not(script):not(style)")].filter((el) => !skip(el)
        && (ownText(el) || el.matches("button, input, select, textarea, img, canvas")));
      // A box text must stay inside: past its border it runs over the next one.
      const boxes = ".panel, .card, .stat, .order-card, .as-cards.cards-on tr, dialog";
      for (const el of leaves) {
        // A control whole; text by where its letters are (a block's box is not its text's).
        let r = el.getBoundingClientRect();
        if (!el.matches("button, input, select, textarea, img, canvas")) {
          const range = document.createRange();
          range.selectNodeContents(el);
          r = range.getBoundingClientRect();
        }
        const text = (el.textContent || el.value || el.tagName).trim().slice(0, 30);
        const box = el.closest(boxes);
        if (box) {
          const b = box.getBoundingClientRect();
          if (r.left < b.left - 1 || r.right > b.right + 1) {
            out.add(`out of its box: ${where(el)} "${text}"`);
            continue;
          }
        }
        if (r.left < -1 || r.right > width + 1) {
          out.add(`off the screen: ${where(el)} "${text}"`);
          continue;
        }
        const style = getComputedStyle(el);
        if (style.textOverflow === "ellipsis" && el.scrollWidth > el.clientWidth + 1) {
          out.add(`cut: ${where(el)} "${text}"`);
          continue;
        }
        for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
          const o = getComputedStyle(p).overflowX;
          if (o === "visible") continue;
          const box = p.getBoundingClientRect();
          if (r.left < box.left - 1 || r.right > box.right + 1) {
            out.add(`cut by ${where(p)}: ${where(el)} "${text}"`);
            break;
          }
        }
      }
      const value = new RegExp(pattern, "g");
      const number = new RegExp(numberPattern, "g");
      const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
      for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        const parent = node.parentElement;
        if (parent.closest("script, style") || skip(parent)) continue;
        for (const m of node.textContent.matchAll(parent.closest(places) ? value : number)) {
          const range = document.createRange();
          range.setStart(node, m.index);
          range.setEnd(node, m.index + m[0].trimEnd().length);
          const rects = [...range.getClientRects()].filter((x) => x.width);
          if (rects.length > 1 && rects[rects.length - 1].top >= rects[0].bottom - 2) {
            out.add(`wrapped: ${where(parent)} "${m[0]}"`);
          }
        }
      }
      return [...out];
    }""", [VALUE_PATTERN, NUMBER_PATTERN, VALUE_PLACES])
