"""The settlement component's journaled commands (tags are stable journal format).

``PrepareSettlement`` runs first in every batch: it lets other components post what must be in
the batch (distributions to holders of record) before the cutoff is chosen. ``BatchCommitted``
tells the engine that PostgreSQL committed a batch up to a cutoff sequence, so the engine drops
those movements from its log and counts the settled cash credits as withdrawable.
"""

from __future__ import annotations

import msgspec


class PrepareSettlement(msgspec.Struct, tag="settlement_prepare", array_like=True, gc=False):
    """Before a batch picks its cutoff: pay pending distributions, so they are in the batch."""


class BatchCommitted(msgspec.Struct, tag="settlement_batch_committed", array_like=True, gc=False):
    """PostgreSQL committed batch ``batch_id`` holding the movements up to ``cutoff_sequence``.

    ``movement_count`` and ``last_movement_id`` let the engine check that it releases exactly
    the movements the ledger holds.
    """

    batch_id: int
    cutoff_sequence: int
    movement_count: int
    last_movement_id: int


SETTLEMENT_COMMANDS: tuple[type, ...] = (PrepareSettlement, BatchCommitted)
