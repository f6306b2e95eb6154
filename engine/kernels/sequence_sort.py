"""The movement log's rows of a run put in sequence order, compiled (``MovementLog.sort_since``).

A replay's run applies the commands it carries before its orders, so their movements are
recorded before the fills' of orders that came earlier. ``numpy.argsort`` of the sequences and a
fancy index of the rows did the sort, about 20 us a run of a mixed replay (a structured row
copy by numpy costs that much); one compiled pass here costs a few.
"""

from __future__ import annotations

from engine.kernels.jit import kernel


@kernel
def sort_by_sequence(rows, start, end, first_id, order, spare, scratch):
    """Put ``rows[start:end]`` in sequence order, stably (rows of one sequence keep theirs),
    and number them ``first_id`` on: a merge sort of their positions (``order`` and
    ``spare``: room for ``end - start`` each), then the rows moved through ``scratch`` (room
    for as many rows)."""
    n = end - start
    for i in range(n):
        order[i] = i
    source, target = order, spare
    width = 1
    while width < n:
        for lo in range(0, n, 2 * width):
            mid = min(lo + width, n)
            hi = min(lo + 2 * width, n)
            i, j, k = lo, mid, lo
            while i < mid and j < hi:
                if rows[start + source[j]]["sequence"] < rows[start + source[i]]["sequence"]:
                    target[k] = source[j]
                    j += 1
                else:
                    target[k] = source[i]
                    i += 1
                k += 1
            while i < mid:
                target[k] = source[i]
                i += 1
                k += 1
            while j < hi:
                target[k] = source[j]
                j += 1
                k += 1
        source, target = target, source
        width *= 2
    for i in range(n):
        scratch[i] = rows[start + source[i]]
    for i in range(n):
        rows[start + i] = scratch[i]
        rows[start + i]["movement_id"] = first_id + i


@kernel
def merge_by_key(keys, rows, new_keys, new_rows, out_keys, out_rows):
    """Merge two runs sorted by key, ``(keys, rows)`` and ``(new_keys, new_rows)``, into
    ``out_keys`` and ``out_rows`` (room for both): one pass, where sorting them again took
    12-17 ms at 400k rows (``engine.state.RowsByKey``)."""
    i = j = k = 0
    while i < len(keys) and j < len(new_keys):
        if new_keys[j] < keys[i]:
            out_keys[k], out_rows[k] = new_keys[j], new_rows[j]
            j += 1
        else:
            out_keys[k], out_rows[k] = keys[i], rows[i]
            i += 1
        k += 1
    while i < len(keys):
        out_keys[k], out_rows[k] = keys[i], rows[i]
        i += 1
        k += 1
    while j < len(new_keys):
        out_keys[k], out_rows[k] = new_keys[j], new_rows[j]
        j += 1
        k += 1
