"""The operator's boards file: the defaults of BOARDS.md, overridden per board and per profile.

    crowdex serve --boards boards.toml

    [equity]                  # any board: equity, debt, ip, product, operating_rights
    success_fee_bps = 500
    duration_days_max = 90
    cancel_window_hours = 24
    lockup_days = 180
    seller_fee_bps = 80       # boards with a secondary market

    [equity.cn2015]           # under that profile only, over [equity]
    holders_max = 150

    [markets]
    auction_hour_utc = 14     # the IP board's daily uncross

Every key is optional; what a key does not name keeps BOARDS.md's default. The file is checked
whole before anything is applied (``BoardsFileError`` names the first bad key), then journaled
as one command (``SetBoardRules``), so a replay rebuilds the same venue. A project keeps the
rules in force when it was listed: a later file changes only projects listed after it.

Pure functions of their arguments, like the rest of ``boards/``.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

from boards.rules import US_PER_HOUR, BoardConfig

PROFILES = ("intl", "cn2015")
AUCTION_HOUR_UTC_DEFAULT = 15  # BOARDS.md: the IP uncross, daily at 15:00 UTC
AMOUNT_MAX_FEN = 2**53
DAYS_MAX = 3650


@dataclasses.dataclass(frozen=True, slots=True)
class Key:
    """A key of a board's section: the ``BoardConfig`` field it sets, its bounds and scale."""

    field: str
    low: int
    high: int
    scale: int = 1  # file unit -> config unit (hours -> microseconds)
    only: tuple[str, ...] = ()  # the boards that have it (empty: every board)


KEYS: dict[str, Key] = {
    "duration_days_min": Key("duration_days_min", 1, DAYS_MAX),
    "duration_days_max": Key("duration_days_max", 1, DAYS_MAX),
    "cancel_window_hours": Key("cancel_window_us", 0, 24 * DAYS_MAX, US_PER_HOUR),
    "success_fee_bps": Key("success_fee_bps", 0, 10_000),
    "lockup_days": Key("lockup_days_default", 0, DAYS_MAX),
    "seller_fee_bps": Key("seller_fee_bps", 0, 10_000,
                          only=("equity", "debt", "ip", "operating_rights")),
    "distribution_fee_bps": Key("distribution_fee_bps", 0, 10_000,
                                only=("debt", "ip", "operating_rights")),
    "borrower_cap_fen": Key("borrower_cap_fen", 1, AMOUNT_MAX_FEN, only=("debt",)),
    "holders_max": Key("holders_max_cn2015", 1, 1_000_000,
                       only=("equity", "ip", "operating_rights")),
    "payout_released_pct": Key("payout_released_pct", 0, 100, only=("product",)),
}
MARKETS_KEYS: dict[str, tuple[int, int]] = {"auction_hour_utc": (0, 23)}


class BoardsFileError(ValueError):
    """A boards file that cannot be applied; the message names the key."""


def load(path: Path, boards: dict[str, Any]) -> dict[str, Any]:
    """Read and check a boards file; returns its content as plain data (the command's)."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise BoardsFileError(f"{path}: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise BoardsFileError(f"{path}: not TOML: {error}") from None
    check(raw, boards)
    return raw


def check(rules: dict[str, Any], boards: dict[str, Any]) -> None:
    """Raise ``BoardsFileError`` unless ``rules`` (a parsed boards file) can be applied whole:
    known sections and keys, integers in range, and durations whose minimum is not above their
    maximum under every profile."""
    if not isinstance(rules, dict):
        raise BoardsFileError("the boards file must be a table of sections")
    for section, table in rules.items():
        if section == "markets":
            _check_markets(table)
        elif section in boards:
            _check_board(section, table)
        else:
            raise BoardsFileError(f"unknown section [{section}]: the sections are "
                                  f"{', '.join(sorted([*boards, 'markets']))}")
    for name, board in boards.items():
        for profile in PROFILES:
            config = configured(board.config, overrides(rules, name, profile))
            if config.duration_days_min > config.duration_days_max:
                raise BoardsFileError(
                    f"{name}: duration_days_min ({config.duration_days_min}) exceeds "
                    f"duration_days_max ({config.duration_days_max}) under {profile}")


def _check_board(name: str, table: Any, where: str = "") -> None:
    where = where or name
    if not isinstance(table, dict):
        raise BoardsFileError(f"[{where}] must be a table")
    for key, value in table.items():
        if key in PROFILES and not where.count("."):
            _check_board(name, value, f"{name}.{key}")
            continue
        spec = KEYS.get(key)
        if spec is None:
            raise BoardsFileError(f"{where}.{key}: unknown key; the keys are "
                                  f"{', '.join(sorted(KEYS))} and the profile tables "
                                  f"{', '.join(PROFILES)}")
        if spec.only and name not in spec.only:
            raise BoardsFileError(f"{where}.{key}: the {name} board has no such rule (only "
                                  f"{', '.join(spec.only)})")
        _check_int(f"{where}.{key}", value, spec.low, spec.high)


def _check_markets(table: Any) -> None:
    if not isinstance(table, dict):
        raise BoardsFileError("[markets] must be a table")
    for key, value in table.items():
        bounds = MARKETS_KEYS.get(key)
        if bounds is None:
            raise BoardsFileError(f"markets.{key}: unknown key; the keys are "
                                  f"{', '.join(sorted(MARKETS_KEYS))}")
        _check_int(f"markets.{key}", value, *bounds)


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if type(value) is not int or not low <= value <= high:
        raise BoardsFileError(f"{name}: must be an integer from {low} to {high}, got {value!r}")


def overrides(rules: dict[str, Any], board: str, profile: str) -> dict[str, int]:
    """The ``BoardConfig`` fields a checked file sets for ``board`` under ``profile``."""
    table = rules.get(board, {})
    out: dict[str, int] = {}
    for source in (table, table.get(profile, {})):
        for key, value in source.items():
            if key in KEYS:
                spec = KEYS[key]
                out[spec.field] = value * spec.scale
    return out


def configured(config: BoardConfig, fields: dict[str, int]) -> BoardConfig:
    """``config`` with ``fields`` replaced (the defaults when there are none)."""
    return dataclasses.replace(config, **fields) if fields else config


def auction_hour_utc(rules: dict[str, Any]) -> int:
    return rules.get("markets", {}).get("auction_hour_utc", AUCTION_HOUR_UTC_DEFAULT)


def view(config: BoardConfig, profile: str) -> dict[str, Any]:
    """A board's rules in force, as ``GET /v1/boards`` shows them (the file's units)."""
    out: dict[str, Any] = {"board": config.name}
    for key, spec in KEYS.items():
        if spec.only and config.name not in spec.only:
            continue
        if key == "holders_max" and profile != "cn2015":
            continue
        value = getattr(config, spec.field)
        if value is None:
            continue
        out[key] = value // spec.scale
    out["secondary_market"] = config.tradable
    return out
