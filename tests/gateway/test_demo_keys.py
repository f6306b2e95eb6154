"""Demo keys can be printed again: on every start with ``--demo`` and by ``crowdex demo-keys``.

The venue keeps keys only as hashes; a demo account's key is derived from a secret the data
dir keeps (0600), so only the demo accounts' keys can come back, and they still work.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from gateway import cli
from gateway.app import create_app
from gateway.demo import DEMO_NAMES, DEMO_SECRET_FILE
from tests.gateway.conftest import make_config

KEY_LINE = re.compile(r"^crowdex demo: (.+): (\S+)$", re.MULTILINE)


async def _start(data_dir: Path, capsys, **config) -> dict[str, str]:
    """Start the demo venue, check every printed key opens its account; return the keys."""
    app = create_app(make_config(data_dir, demo=True, **config))
    async with TestClient(TestServer(app)) as client:
        keys = dict(KEY_LINE.findall(capsys.readouterr().out))
        for name, key in keys.items():
            response = await client.get("/v1/me", headers={"Authorization": f"Bearer {key}"})
            assert response.status == 200 and (await response.json())["name"] == name
    return keys


async def test_every_start_prints_the_same_demo_keys(tmp_path: Path, capsys):
    data_dir = tmp_path / "data"
    first = await _start(data_dir, capsys)
    assert sorted(first) == sorted(DEMO_NAMES)
    assert stat.S_IMODE((data_dir / DEMO_SECRET_FILE).stat().st_mode) == 0o600
    assert await _start(data_dir, capsys) == first  # printed again after a restart
    assert cli.main(["demo-keys", "--data-dir", str(data_dir)]) == 0
    assert dict(KEY_LINE.findall(capsys.readouterr().out)) == first


async def test_no_demo_secret_no_keys(tmp_path: Path, capsys):
    async with TestClient(TestServer(create_app(make_config(tmp_path / "data")))):
        pass
    assert cli.main(["demo-keys", "--data-dir", str(tmp_path / "data")]) == 1
    err = capsys.readouterr().err
    assert "kept only as hashes" in err and "crowdex demo:" not in err


async def test_the_demo_seeds_under_cn2015_too(tmp_path: Path, capsys):
    """cn2015 shows equity offerings to qualified investors only and allows no matching: the
    demo's retail equity subscriptions and its orders are left out there (it failed to start)."""
    keys = await _start(tmp_path / "data", capsys, profile="cn2015")
    assert sorted(keys) == sorted(DEMO_NAMES)
