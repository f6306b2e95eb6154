"""The engine's side of settlement: which batches the engine has learned, and their effects.

PostgreSQL is the book of record for batches; the engine learns each committed batch through a
journaled ``BatchCommitted`` command, so a restart replays the same releases. Applying it drops
the batch's movements from the movement log and clears ``cash_unsettled`` for the settled cash
credits, which is what makes proceeds withdrawable. It is idempotent per batch id: a batch the
engine already knows changes nothing, which is what makes catching up after a crash safe.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import numpy as np

from engine import movements as mv
from engine.errors import CrowdexError
from engine.kernels.movements import unsettled_credits as credits_kernel
from engine.machine import Reply
from settlement.commands import BatchCommitted, PrepareSettlement

# The hook other components offer to run when a batch is prepared (holders of record are
# those at the next batch): a method of this name, called with no arguments.
PREPARE_HOOK = "pay_pending_distributions"
# By movement kind, whether it is taken out of proceeds (``movements.FROM_PROCEEDS``).
FROM_PROCEEDS_KINDS = np.zeros(max(mv.KIND_NAMES) + 1, dtype=np.bool_)
FROM_PROCEEDS_KINDS[list(mv.FROM_PROCEEDS)] = True


class SettlementMeta(msgspec.Struct, array_like=True):
    last_batch_id: int = 0
    last_cutoff_sequence: int = 0
    last_movement_id: int = 0
    settled_movement_count: int = 0


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(SettlementMeta)


def unsettled_credits(movements: np.ndarray, account_count: int, *,
                      net: bool) -> np.ndarray:
    """Per account, the cash credited by ``movements`` that ``credit_cash`` marked unsettled.

    Every cash credit to a venue account other than a deposit is proceeds (``credit_cash``);
    deposits are settled on arrival. With ``net`` (rules 4), less what was taken out of the
    proceeds as they came (``movements.FROM_PROCEEDS``): it never counted as unsettled. The
    sums are exact int64, in one compiled pass over the rows (``unsettled_credits`` of
    ``engine.kernels.movements``; ``tests/settlement/test_unsettled_credits.py`` holds it to numpy).
    """
    credits = np.zeros(account_count, dtype=np.int64)
    bad = credits_kernel(movements, FROM_PROCEEDS_KINDS, net, credits)
    if bad >= 0:
        raise IndexError(f"movement {int(movements['movement_id'][bad])} names an account "
                         f"outside the {account_count} the engine has")
    return credits


class SettlementComponent:
    """Knows the last batch the engine has applied; applies new ones exactly once."""

    name = "settlement"

    def __init__(self, machine: Any) -> None:
        self.machine = machine
        self.state = SettlementMeta()

    def handlers(self) -> dict[type, Callable[[Any, int], Reply]]:
        return {PrepareSettlement: self._prepare, BatchCommitted: self._committed}

    # ---- commands -----------------------------------------------------------------------------

    def _prepare(self, cmd: PrepareSettlement, actor: int) -> Reply:
        for component in self.machine.components:
            hook = getattr(component, PREPARE_HOOK, None)
            if callable(hook):
                hook()
        return Reply(200, {"sequence": self.machine.last_sequence,
                           "last_batch_id": self.state.last_batch_id})

    def _committed(self, cmd: BatchCommitted, actor: int) -> Reply:
        state = self.state
        if cmd.batch_id <= state.last_batch_id:
            # Already applied (a retry, or a catch-up racing a normal finish): change nothing.
            return Reply(200, self.view(already_applied=True))
        if cmd.batch_id != state.last_batch_id + 1:
            raise CrowdexError("invalid_state", f"batch {cmd.batch_id} does not follow "
                               f"batch {state.last_batch_id}")
        machine = self.machine
        if not state.last_cutoff_sequence <= cmd.cutoff_sequence <= machine.last_sequence:
            raise CrowdexError("invalid_state", f"cutoff {cmd.cutoff_sequence} is outside "
                               f"{state.last_cutoff_sequence}..{machine.last_sequence}")
        pending = machine.movements.upto(cmd.cutoff_sequence)
        last_id = int(pending["movement_id"][-1]) if len(pending) else 0
        if len(pending) != cmd.movement_count or (len(pending) and last_id != cmd.last_movement_id):
            raise CrowdexError(
                "invalid_state",
                f"batch {cmd.batch_id} holds {cmd.movement_count} movements up to id "
                f"{cmd.last_movement_id}; the engine has {len(pending)} up to id {last_id}",
            )
        rows = machine.balances.accounts.rows
        count = machine.balances.accounts.count
        # Read off the rows where they are, then drop them (``release`` would copy them out).
        credits = unsettled_credits(pending, count, net=machine.rules >= 4)
        settled = len(pending)
        machine.movements.drop(settled)
        unsettled = rows["cash_unsettled"][:count]
        np.maximum(unsettled - credits, 0, out=unsettled)
        state.last_batch_id = cmd.batch_id
        state.last_cutoff_sequence = cmd.cutoff_sequence
        if settled:
            state.last_movement_id = last_id
        state.settled_movement_count += settled
        return Reply(200, self.view(already_applied=False))

    def view(self, already_applied: bool = False) -> dict:
        return {
            "last_batch_id": self.state.last_batch_id,
            "cutoff_sequence": self.state.last_cutoff_sequence,
            "settled_movement_count": self.state.settled_movement_count,
            "already_applied": already_applied,
        }

    # ---- component protocol -------------------------------------------------------------------

    def arrays(self) -> dict[str, np.ndarray]:
        return {}

    def meta(self) -> bytes:
        return _encoder.encode(self.state)

    def load(self, arrays: dict[str, np.ndarray], meta: bytes) -> None:
        self.state = _decoder.decode(meta)

    def on_time(self) -> None:
        return None

    def next_deadline_us(self) -> int | None:
        return None
