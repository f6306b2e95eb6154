"""A replay's objects leave ``paused_gc`` in the oldest generation, unscanned, unless the
process keeps its state frozen.

``engine.replay.paused_gc`` keeps the cyclic collector off while a replay runs. When it is
switched back on, what the replay built (the venue's state) is moved to the oldest generation
without a collection, so no young collection scans it at the next allocation; where the
process froze its state (``freeze_state``, as the server does once recovered) that stays
frozen. Each case runs in a fresh interpreter: the collector's state is the process's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import gc, json, sys
from engine.replay import freeze_state, paused_gc, thaw_state

frozen_before, enabled_before, thawed = (int(arg) for arg in sys.argv[1:4])
held = [[] for _ in range(1000)]  # what a server recovered
if frozen_before:
    freeze_state()
    if thawed:
        thaw_state()
(gc.enable if enabled_before else gc.disable)()
frozen = gc.get_freeze_count()
young_collections = gc.get_stats()[0]["collections"]
kept = []
with paused_gc():
    kept.extend([n] for n in range(100_000))  # tracked objects the replay keeps (its state)
    assert not gc.isenabled()
enabled = gc.isenabled()
extra = [[] for _ in range(10)]  # the next allocations after the replay
print(json.dumps({
    "enabled": enabled,
    "young_collections": gc.get_stats()[0]["collections"] - young_collections,
    "frozen": frozen,
    "frozen_kept": gc.get_freeze_count() == frozen,
    "in_oldest": any(o is kept[-1] for o in gc.get_objects(generation=2)),
}))
"""


def _run(frozen: bool, enabled: bool, thawed: bool = False) -> dict:
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(int(frozen)), str(int(enabled)),
                          str(int(thawed))], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def test_the_replays_objects_go_to_the_oldest_generation_without_a_collection():
    got = _run(frozen=False, enabled=True)
    assert got == {"enabled": True, "young_collections": 0, "frozen": 0,
                   "frozen_kept": True, "in_oldest": True}


def test_a_frozen_state_stays_frozen_and_the_replays_objects_stay_young():
    got = _run(frozen=True, enabled=True)
    assert got["frozen"] > 1000 and got["enabled"] and got["frozen_kept"]
    assert not got["in_oldest"]  # collected young as before: nothing was thawed for them


def test_once_thawed_a_replay_moves_its_objects_again():
    got = _run(frozen=True, enabled=True, thawed=True)
    assert got == {"enabled": True, "young_collections": 0, "frozen": 0,
                   "frozen_kept": True, "in_oldest": True}


@pytest.mark.parametrize("frozen", [False, True])
def test_a_collector_that_was_off_stays_off_and_nothing_moves(frozen):
    got = _run(frozen=frozen, enabled=False)
    assert got["enabled"] is False and got["young_collections"] == 0 and got["frozen_kept"]
    assert got["in_oldest"] is False
