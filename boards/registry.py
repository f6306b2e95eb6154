"""The boards the venue runs, by name. A new board is a module plus one entry here."""

from __future__ import annotations

from boards.debt import DebtBoard
from boards.equity import EquityBoard
from boards.errors import CrowdexError
from boards.ip import IpBoard
from boards.operating_rights import OperatingRightsBoard
from boards.product import ProductBoard
from boards.rules import Board

BOARDS: dict[str, Board] = {
    "equity": EquityBoard(),
    "debt": DebtBoard(),
    "ip": IpBoard(),
    "product": ProductBoard(),
    "operating_rights": OperatingRightsBoard(),
}


def board(name: str) -> Board:
    """The board called ``name``; 400 ``invalid_field`` for an unknown one."""
    found = BOARDS.get(name)
    if found is None:
        raise CrowdexError("invalid_field",
                           f"board must be one of {', '.join(sorted(BOARDS))}")
    return found
