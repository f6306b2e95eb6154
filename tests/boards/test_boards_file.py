"""The operator's boards file (``crowdex serve --boards``): checked whole at start with errors
that name the key, journaled, applied to projects listed after it, shown by GET /v1/boards."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from boards import overrides
from boards.registry import BOARDS
from engine.sequencer import replay_from_empty
from gateway import keys
from gateway.app import create_app
from tests.boards.conftest import OPERATOR, Venue, manual_config

ROOT = Path(__file__).resolve().parents[2]
EQUITY = {"price": 100, "min_quantity": 10, "max_quantity": 100, "lockup_days": 0}


@pytest.mark.parametrize(("rules", "message"), [
    ({"shares": {}}, "unknown section [shares]"),
    ({"equity": {"fee": 1}}, "equity.fee: unknown key"),
    ({"equity": {"success_fee_bps": 10_001}}, "equity.success_fee_bps: must be an integer "
                                              "from 0 to 10000, got 10001"),
    ({"equity": {"success_fee_bps": "600"}}, "equity.success_fee_bps: must be an integer"),
    ({"equity": {"success_fee_bps": 6.0}}, "equity.success_fee_bps: must be an integer"),
    ({"equity": {"lockup_days": True}}, "equity.lockup_days: must be an integer"),
    ({"equity": {"lockup_days": -1}}, "equity.lockup_days: must be an integer from 0"),
    ({"product": {"seller_fee_bps": 50}}, "product.seller_fee_bps: the product board has no "
                                          "such rule"),
    ({"equity": {"borrower_cap_fen": 5}}, "equity.borrower_cap_fen: the equity board has no"),
    ({"equity": {"cn2015": {"holders_max": 0}}}, "equity.cn2015.holders_max: must be an "
                                                 "integer from 1"),
    ({"equity": {"cn2015": {"cn2015": {}}}}, "equity.cn2015.cn2015: unknown key"),
    ({"equity": {"duration_days_min": 70}}, "equity: duration_days_min (70) exceeds "
                                            "duration_days_max (60) under intl"),
    ({"debt": {"cn2015": {"duration_days_max": 5}}}, "debt: duration_days_min (7) exceeds "
                                                     "duration_days_max (5) under cn2015"),
    ({"markets": {"auction_hour_utc": 24}}, "markets.auction_hour_utc: must be an integer "
                                            "from 0 to 23"),
    ({"markets": {"auction_minute": 3}}, "markets.auction_minute: unknown key"),
    ({"equity": 3}, "[equity] must be a table"),
])
def test_a_bad_boards_file_is_refused_whole_naming_the_key(rules, message):
    with pytest.raises(overrides.BoardsFileError) as refused:
        overrides.check(rules, BOARDS)
    assert message in str(refused.value)


def test_profile_tables_override_the_board_table():
    rules = {"equity": {"success_fee_bps": 500, "cn2015": {"success_fee_bps": 400}},
             "ip": {"cancel_window_hours": 24}}
    overrides.check(rules, BOARDS)
    assert overrides.overrides(rules, "equity", "intl") == {"success_fee_bps": 500}
    assert overrides.overrides(rules, "equity", "cn2015") == {"success_fee_bps": 400}
    assert overrides.overrides(rules, "ip", "intl") == {"cancel_window_us": 24 * 3600 * 10**6}
    assert overrides.overrides(rules, "debt", "intl") == {}


def test_a_file_that_is_not_toml_names_its_line(tmp_path: Path):
    path = tmp_path / "boards.toml"
    path.write_text("[equity]\nsuccess_fee_bps = \n")
    with pytest.raises(overrides.BoardsFileError, match="not TOML.*line 2"):
        overrides.load(path, BOARDS)


@pytest.mark.one_machine  # replays the data dir's journal
async def test_a_boards_file_applies_to_projects_listed_after_it_and_replays(tmp_path: Path):
    """Done when (issue 17): a file changes a fee and a duration; a project listed after it
    uses them, one listed before keeps the old ones; a replay gives the same state hash."""
    data_dir = tmp_path / "data"
    rules = {"equity": {"success_fee_bps": 300, "duration_days_max": 90,
                        "seller_fee_bps": 50},
             "markets": {"auction_hour_utc": 9}}
    async with TestClient(TestServer(create_app(manual_config(data_dir)))) as client:
        venue = Venue(client)
        issuer = await venue.issuer()
        before = await venue.listed(issuer, "equity", EQUITY, 30)
        assert await venue.error("POST", "/v1/projects", issuer, {
            "board": "equity", "title": "t", "description": "d", "deadline": venue.at(80),
            "terms": EQUITY}) == (422, "invalid_terms")  # 60 days at most, by default
        _, shown = await venue.call("GET", "/v1/boards", None, expect=200)
        equity = next(b for b in shown["boards"] if b["board"] == "equity")
        assert (equity["success_fee_bps"], equity["duration_days_max"],
                equity["seller_fee_bps"], shown["auction_hour_utc"]) == (600, 60, 100, 15)

        engine = client.server.app[keys.ENGINE]
        from engine import offerings_commands as oc

        assert (await engine.submit(oc.SetBoardRules(rules), 0)).status == 200
        after = await venue.listed(issuer, "equity", EQUITY, 80)  # 90 days now allowed
        _, shown = await venue.call("GET", "/v1/boards", None, expect=200)
        equity = next(b for b in shown["boards"] if b["board"] == "equity")
        assert (equity["success_fee_bps"], equity["duration_days_max"],
                equity["seller_fee_bps"], shown["auction_hour_utc"]) == (300, 90, 50, 9)
        assert next(b for b in shown["boards"] if b["board"] == "debt")["success_fee_bps"] == 300

        a, b = await venue.investor(100_000), await venue.investor(100_000)
        for pid in (before, after):
            await venue.subscribe(a, pid, 50)
            await venue.subscribe(b, pid, 50)
            await venue.call("POST", f"/v1/projects/{pid}/close", OPERATOR, expect=200)
        # Raised 10,000 each: 600 bps (600 fen) before the file, 300 bps (300) after it.
        fees = venue.machine.balances.accounts.rows[1]["cash_available"]
        assert int(fees) == 600 + 300
        for pid, fee in ((before, 50), (after, 25)):  # 100 and 50 bps of 5,000 fen sold
            start = int(venue.machine.balances.accounts.rows[1]["cash_available"])
            await venue.call("POST", "/v1/orders", a, {"instrument_id": pid, "side": "sell",
                             "type": "limit", "price": 100, "quantity": 50}, expect=201)
            await venue.call("POST", "/v1/orders", b, {"instrument_id": pid, "side": "buy",
                             "type": "limit", "price": 100, "quantity": 50}, expect=201)
            now = int(venue.machine.balances.accounts.rows[1]["cash_available"])
            assert now - start == fee
        live_hash = venue.machine.state_hash()
    assert replay_from_empty(data_dir).state_hash() == live_hash


async def test_an_operator_may_not_be_forged_and_an_engine_checks_the_file_too(tmp_path):
    async with TestClient(TestServer(create_app(manual_config(tmp_path / "data")))) as client:
        venue = Venue(client)
        issuer = await venue.issuer()
        engine = client.server.app[keys.ENGINE]
        from engine import offerings_commands as oc

        refused = await engine.submit(oc.SetBoardRules({"equity": {"fee": 1}}), 0)
        assert (refused.status, refused.body["error"]["code"]) == (422, "invalid_terms")
        refused = await engine.submit(oc.SetBoardRules({}), issuer["account_id"])
        assert refused.status == 403


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", "serve", *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_serve_refuses_a_bad_boards_file_before_it_starts(tmp_path: Path):
    path = tmp_path / "boards.toml"
    path.write_text("[equity]\nsuccess_fee_bps = 12000\n")
    done = _serve("--data-dir", str(tmp_path / "data"), "--boards", str(path))
    assert done.returncode == 2
    assert "--boards: equity.success_fee_bps: must be an integer from 0 to 10000" in done.stderr
    assert not (tmp_path / "data").exists()  # nothing was started, nothing half-applied


def test_serve_journals_the_file_and_a_restart_without_it_keeps_the_rules(tmp_path: Path):
    import json
    import urllib.request

    from tests.conftest import ServerProcess

    path = tmp_path / "boards.toml"
    path.write_text("[equity]\nsuccess_fee_bps = 300\n\n[equity.cn2015]\nsuccess_fee_bps = 200\n")

    def equity_fee(server: ServerProcess) -> int:
        with urllib.request.urlopen(server.url + "/v1/boards", timeout=30) as response:
            shown = json.loads(response.read())
        return next(b for b in shown["boards"] if b["board"] == "equity")["success_fee_bps"]

    server = ServerProcess(tmp_path / "data", "--no-fsync", "--boards", str(path))
    server.start()
    try:
        assert equity_fee(server) == 300  # intl: the [equity] table
    finally:
        assert server.stop() == 0
    server.extra = ["--no-fsync"]
    server.start()
    try:
        assert equity_fee(server) == 300  # journaled: the rules stay without --boards
    finally:
        assert server.stop() == 0
