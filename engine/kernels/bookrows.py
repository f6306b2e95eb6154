"""The rows of a kernel call's book updates: each command's net change of each level it
touched, with the level's quantity as of that command, in one compiled pass.

The fold writes a row per level change (``engine.lifecycle.LEVEL_ROW_DTYPE``, in command
order); a book update publishes, per command and instrument, the levels it changed by (side,
price) with their absolute quantities as of the command: the quantity now, less the changes
of the later commands of the call. Done with numpy this took some twenty calls per kernel
call, each costing more than its rows in a live batch; ``Markets._book_updates`` builds the
published lists from what this writes.

A level is named by its row in the engine's level table (``level_base + side * width +
offset``): instruments' ladders are laid out by instrument id, bids before asks, prices
upwards, so that index orders levels as (instrument, side, price) do. A price outside its
instrument's ladder (a level the call emptied before a relayout moved the ladder) has no row:
the kernel then returns -1 and the caller uses its numpy path.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def book_rows(levels, instruments, level_table, books, out, bounds):
    """Net changes of ``levels`` (``LEVEL_ROW_DTYPE`` rows, commands in order) per (command,
    level), sorted by command, instrument, side and price, into ``out`` (one row each:
    side, price, quantity as of the command); per row of ``books`` (``BOOK_ROW_DTYPE``), the
    ``[start, end)`` of its instrument's rows of its command in ``bounds``. Returns how many
    rows were written, or -1 if a level has no row in ``level_table`` (the engine's levels)."""
    n = len(levels)
    total_levels = len(level_table)
    index = np.empty(n, dtype=np.int64)
    keys = np.empty(n, dtype=np.int64)
    for i in range(n):
        row = instruments[levels[i]["instrument"]]
        offset = levels[i]["price"] - row["ladder_lo"]
        if offset < 0 or offset >= row["ladder_width"]:
            return -1
        index[i] = row["level_base"] + levels[i]["side"] * row["ladder_width"] + offset
        keys[i] = levels[i]["pos"] * total_levels + index[i]
    order = np.argsort(keys, kind="mergesort")
    # One row per (command, level): its net change.
    unique_keys = np.empty(n, dtype=np.int64)
    change = np.zeros(n, dtype=np.int64)
    count = 0
    for j in range(n):
        i = order[j]
        if count == 0 or unique_keys[count - 1] != keys[i]:
            unique_keys[count] = keys[i]
            out[count, 0] = levels[i]["side"]
            out[count, 1] = levels[i]["price"]
            count += 1
        change[count - 1] += levels[i]["change"]
    # Each level's rows in command order: the quantity now, less the changes after each row.
    commands = unique_keys[:count] // total_levels
    level = unique_keys[:count] - commands * total_levels
    by_level = np.argsort(level * (commands[count - 1] + 1) + commands, kind="mergesort")
    start = 0
    while start < count:
        lv = level[by_level[start]]
        end = start
        total = 0
        while end < count and level[by_level[end]] == lv:
            total += change[by_level[end]]
            end += 1
        so_far = level_table[lv]["qty"] - total
        for j in range(start, end):
            so_far += change[by_level[j]]
            out[by_level[j], 2] = so_far
        start = end
    # Each book row's rows: its command's, of its instrument's levels (a key range).
    for b in range(len(books)):
        row = instruments[books[b]["instrument"]]
        first = books[b]["pos"] * total_levels + row["level_base"]
        bounds[b, 0] = np.searchsorted(unique_keys[:count], first)
        bounds[b, 1] = np.searchsorted(unique_keys[:count], first + 2 * row["ladder_width"])
    return count
