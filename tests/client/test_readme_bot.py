"""The README's bot in 20 lines runs as printed against ``crowdex serve --demo``: it finds the
trading instrument, subscribes to its trades and quotes both sides."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from crowdex_client import Client
from tests.conftest import ServerProcess

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## A bot in 20 lines"
DEMO_KEY_LINE = re.compile(r"crowdex demo: Li Wei: (\S+)$", re.MULTILINE)
QUOTE_TIMEOUT_S = 30
LINES_MAX = 25  # "20 lines" of code, give or take the blank ones


def readme_bot() -> str:
    text = README.read_text()
    section = text[text.index(SECTION):]
    start = section.index("```python\n") + len("```python\n")
    return section[start:section.index("\n```", start)]


def test_the_readme_bot_quotes_both_sides(tmp_path):
    code = readme_bot()
    assert len([line for line in code.splitlines() if line.strip()]) <= LINES_MAX
    server = ServerProcess(tmp_path / "data", "--demo", "--no-fsync")
    server.start()
    bot = None
    try:
        key = DEMO_KEY_LINE.search(server.log_path.read_text()).group(1)
        script = code.replace('"http://127.0.0.1:8080"', repr(server.url)).replace(
            '"cdx_demo_..."', repr(key))
        bot = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
        line = bot.stdout.readline()  # blocks until the first quote (or the bot dies)
        assert line.startswith("quoting "), line + bot.stdout.read()
        deadline = time.monotonic() + QUOTE_TIMEOUT_S
        with Client(server.url, key) as cx:
            while len(cx.orders("open")) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            sides = {order.side for order in cx.orders("open")}
        assert {"buy", "sell"} <= sides
    finally:
        if bot is not None:
            bot.kill()
            bot.communicate(timeout=10)
        assert server.stop() == 0


