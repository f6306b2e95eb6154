"""The monthly integrity list: issuers in breach (black) and issuers clean for 6 months (red).

An issuer is on the black list for a month when any instalment of its loans was ``late`` (or in
``default``) at some moment of that month, or when one of its debt or IP offerings, succeeded
before the month began, got no disclosure during that (finished) month, or when a month's
revenue report or the buy-back of its operating-rights projects was ``late`` (or in ``default``)
at some moment of that month (a report is its monthly disclosure, so it owes no other). It is on
the red list after 6 months in a row in which it owed disclosures or reports and was never black.
Computed on read from the journaled state and the exchange clock, so it needs no state of its own.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from boards import debt, rules

CLEAN_MONTHS_FOR_RED = 6


def parse_month(text: str) -> tuple[int, int]:
    """``YYYY-MM`` → (year, month); ValueError otherwise."""
    if len(text) != 7 or text[4] != "-" or not (text[:4] + text[5:]).isdigit():
        raise ValueError("month must be YYYY-MM")
    year, month = int(text[:4]), int(text[5:])
    if not 1 <= month <= 12 or year < 1970:
        raise ValueError("month must be YYYY-MM")
    return year, month


def month_bounds_us(year: int, month: int, shift: int = 0) -> tuple[int, int]:
    index = year * 12 + month - 1 + shift
    start = datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)
    nxt = index + 1
    end = datetime(nxt // 12, nxt % 12 + 1, 1, tzinfo=UTC)
    return int(start.timestamp()) * 1_000_000, int(end.timestamp()) * 1_000_000


def _late_during(offerings: Any, project: Any, start: int, end: int) -> bool:
    late_after = debt.LATE_AFTER_DAYS * rules.US_PER_DAY
    for instalment, (_, paid_when) in zip(offerings.instalments(project),
                                          offerings.instalments_paid(project), strict=True):
        late_from = instalment.due_us + late_after
        late_until = paid_when if paid_when is not None else end
        # The instalment was late during [late_from, late_until); does that meet the month?
        if late_from < end and late_until > start and late_from < late_until:
            return True
    return False


def _month_state(offerings: Any, issuer: int, projects: list, start: int, end: int,
                 now: int) -> tuple[bool, list[str]]:
    """Whether the issuer owed disclosures this month, and its breaches."""
    reasons = []
    owed = False
    upto = min(end, now)
    terms = offerings.terms
    for project in projects:
        if project.closed_us == 0 or project.closed_us > start:
            continue
        if terms.watches(project):  # operating rights: monthly revenue and the buy-back
            owed = owed or terms.owes_during(project.project_id, start)
            # Up to and including this instant: an item in default now is listed now.
            reasons.extend(terms.breaches(project.project_id, start, min(end, now + 1)))
            continue
        owed = True
        if project.board == "debt" and _late_during(offerings, project, start, upto):
            reasons.append(f"late instalment on project {project.project_id}")
        if end <= now and not any(start <= d.time_us < end
                                  for d in offerings.project_disclosures(project.project_id)):
            reasons.append(f"no disclosure on project {project.project_id}")
    return owed, reasons


def integrity_lists(offerings: Any, year: int, month: int) -> dict[str, list[dict]]:
    now = offerings.machine.now_us
    by_issuer: dict[int, list] = {}
    for project in offerings.projects.values():
        if ((offerings.board(project).config.owes_disclosures
             or offerings.terms.watches(project))
                and project.status in (rules.SUCCEEDED, rules.TRADING)):
            by_issuer.setdefault(project.issuer_id, []).append(project)
    black, red = [], []
    for issuer in sorted(by_issuer):
        name = offerings.machine.accounts[issuer].name
        start, end = month_bounds_us(year, month)
        _, reasons = _month_state(offerings, issuer, by_issuer[issuer], start, end, now)
        if reasons:
            black.append({"account_id": issuer, "name": name, "reasons": reasons})
            continue
        clean = 0
        for shift in range(0, -CLEAN_MONTHS_FOR_RED, -1):
            s, e = month_bounds_us(year, month, shift)
            owed, bad = _month_state(offerings, issuer, by_issuer[issuer], s, e, now)
            if not owed or bad:
                break
            clean += 1
        if clean == CLEAN_MONTHS_FOR_RED:
            red.append({"account_id": issuer, "name": name})
    return {"black": black, "red": red}
