"""The columns a kernel call's trade and order updates are built from, read in one compiled
pass each.

``Markets._publish`` publishes, per command, its trades (from the call's fill events) and the
orders it changed (the fold's change rows, each to its order's owner). Read with numpy, a
call's fill rows took a mask of the events and a column each (some seven numpy calls, ~10 us
for a live batch of 16 orders, more than the Python that builds the updates), and the owners
of the changed orders four more. Here each is one call that writes plain int64 rows, turned
into lists with one ``tolist``.
"""

from __future__ import annotations

from engine.kernels.codes import EV_FILL
from engine.kernels.jit import kernel

# The columns of ``trade_rows``' output, in this order.
TRADE_ROW_COLUMNS = 6  # command, instrument, trade id, price, quantity, taker side


@kernel
def trade_rows(events, out):
    """Per fill among ``events`` (``EVENT_DTYPE``; the rows of other kinds skipped), in order,
    a row of ``out``: its command's position in the call, instrument, trade id, price,
    quantity and taker side. Returns how many fills there were; rows past ``out``'s end are
    counted, not written (the caller sizes ``out`` by the call's trade count and checks)."""
    n = 0
    room = len(out)
    for i in range(len(events)):
        if events[i]["kind"] != EV_FILL:
            continue
        if n < room:
            out[n, 0] = events[i]["cmd"]
            out[n, 1] = events[i]["instrument"]
            out[n, 2] = events[i]["trade_id"]
            out[n, 3] = events[i]["price"]
            out[n, 4] = events[i]["qty"]
            out[n, 5] = events[i]["side"]
        n += 1
    return n


@kernel
def change_owners(changes, records, out):
    """Per change row (``CHANGE_DTYPE``, a fold's), the owner of its order (``records``:
    ``RECORD_DTYPE``) into ``out[0, i]`` and its command's position into ``out[1, i]``
    (``out`` has room for every row)."""
    for i in range(len(changes)):
        out[0, i] = records[changes[i]["oid"]]["account"]
        out[1, i] = changes[i]["pos"]
