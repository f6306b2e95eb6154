"""Request and response bodies of settlement (batches, reports, reconciliation)."""

from __future__ import annotations

import msgspec

from gateway import schemas
from gateway.schemas import Time


class RunBatchRequest(schemas.Request):
    """No fields yet: a batch settles everything up to now (the body may be left out)."""


class ResolveRequest(schemas.Request):
    note: schemas.Name


class BatchView(msgspec.Struct):
    batch_id: int
    cutoff_sequence: int
    trade_count: int
    entry_count: int
    status: str
    movement_count: int | None = None
    first_movement_id: int | None = None
    last_movement_id: int | None = None
    instruction_count: int | None = None
    exchange_time: Time | None = None


class BatchList(msgspec.Struct):
    batches: list[BatchView]


class Mismatch(msgspec.Struct):
    account_id: int
    asset: int
    ledger_amount: int
    engine_amount: int
    difference: int
    accepted: bool = False


class ReconciliationView(msgspec.Struct):
    balanced: bool
    cash_total: int
    mismatches: list[Mismatch]
    engine_cash_total: int | None = None
    ledger_asset_sums_zero: bool | None = None
    accounts_checked: int | None = None
    last_batch_id: int | None = None
    mismatch_count: int | None = None


class Progress(msgspec.Struct):
    phase: str
    batch_id: int | None = None
    legs_total: int = 0
    legs_written: int = 0
    elapsed_seconds: float = 0.0


class ResolveResult(msgspec.Struct):
    resolved: int
    reconciliation: ReconciliationView


class Movement(msgspec.Struct):
    """One change of what an account owns (GET /v1/me/movements), signed: + in, - out."""

    movement_id: int
    kind: str  # deposit, withdrawal, trade_cash, trade_units, trade_fee, distribution, ...
    asset: str  # cash (fen) or units (of instrument_id)
    amount: int
    status: str  # pending (not yet in a settlement batch) or settled
    batch_id: int | None
    settled_at: Time | None
    instrument_id: int | None = None
