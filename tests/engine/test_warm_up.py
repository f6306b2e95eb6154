"""``engine.markets.warm_up`` loads every kernel a live batch runs, so none is loaded (tens of
milliseconds each) in the middle of a client's batch.

Checked in a fresh interpreter: in the test process other tests have loaded the kernels."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# After warm_up and a venue set up with no listener (so its few orders build no update), two
# live batches (16 orders and 2 amends, under the columns' threshold; 80, read as columns)
# with every channel listened to, with fills and refused cancels, each framed for the journal
# first: prints each kernel that gained a compiled signature during the batches.
_SCRIPT = """
import importlib, pkgutil
import numba
import engine, engine.kernels
from engine import commands as c
from engine import journal
from engine import markets_commands as mc
from engine.machine import StateMachine
from engine.markets import warm_up
from tests.engine import test_live_columns as venue

warm_up()
machine = StateMachine()
machine.wants = lambda channel: False
for sequence, entry in enumerate(venue._venue(), 1):
    machine.apply(sequence, entry)
modules = [importlib.import_module(f"{package.__name__}.{m.name}")
           for package in (engine, engine.kernels)
           for m in pkgutil.iter_modules(package.__path__) if not m.ispkg]
kernels = {f"{o.py_func.__module__}.{o.py_func.__name__}": o for module in modules
           for o in vars(module).values() if isinstance(o, numba.core.dispatcher.Dispatcher)}
before = {name: len(kernel.signatures) for name, kernel in kernels.items()}
machine.wants = lambda channel: True
for size in (16, 80):
    entries = [c.Entry(venue.START_US, 4 + n % 3, mc.CancelOrder(n)) if n % 8 == 7 else
               c.Entry(venue.START_US, 4 + n % 2, mc.PlaceOrder(
                   1, "buy" if n % 2 else "sell", "limit", venue.PRICE + n % 3, 1))
               for n in range(size)]
    if size == 16:  # amends: of an order of the batch, and of one resting before it
        entries[3:3] = [c.Entry(venue.START_US, 5, mc.AmendOrder(2, quantity=3)),
                        c.Entry(venue.START_US, 4, mc.AmendOrder(1, quantity=5))]
    payloads = list(map(c.encode_entry, entries))
    journal.frame_payloads(machine.last_sequence + 1, payloads)  # as the sequencer frames it
    replies = machine.apply_batch(machine.last_sequence + 1, entries, payloads=payloads)
    assert any(reply.status == 409 for reply in replies)  # a cancel of a filled order
print(len(kernels))
for name, kernel in sorted(kernels.items()):
    if len(kernel.signatures) != before[name]:
        print(name)
"""


@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT") == "1", reason="nothing is compiled")
def test_a_live_batch_loads_no_kernel_after_warm_up():
    done = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    counted, *loaded = done.stdout.split()
    assert int(counted) > 20  # the kernels were found
    assert loaded == []
