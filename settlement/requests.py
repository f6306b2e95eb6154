"""The durable ``Idempotency-Key`` of settlement batches (the ``batch_requests`` table, 0005).

A batch is a PostgreSQL transaction between two journaled engine commands, so neither the
engine's memory of idempotent replies nor the gateway's response cache (lost on restart) can
promise that a retried batch writes nothing new. The key is therefore written in the batch's own
transaction: if the batch committed, its key did. A retry with the key, even after a crash,
finds the batch it wrote (or the refusal it got) and answers that.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from engine.errors import CrowdexError


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """Who asked for a batch, with which key, and the fingerprint of the request's body."""

    requested_by: int
    idempotency_key: str
    fingerprint: str

    @property
    def key_bytes(self) -> bytes:
        # bytea, not text: a header may hold bytes PostgreSQL's text refuses (NUL).
        return self.idempotency_key.encode("utf-8", "surrogateescape")


_SELECT = """
SELECT fingerprint, batch_id, refusal_code, refusal_message FROM batch_requests
 WHERE requested_by = $1 AND idempotency_key = $2
"""

_INSERT = """
INSERT INTO batch_requests (requested_by, idempotency_key, fingerprint, batch_id, refusal_code,
                            refusal_message)
VALUES ($1, $2, $3, $4, $5, $6)
"""


async def earlier_outcome(conn: asyncpg.Connection | asyncpg.Pool,
                          request: BatchRequest) -> int | None:
    """The batch this key wrote, or None if it is new; raises the refusal it got before, or
    409 ``idempotency_key_conflict`` if the key came with a different request."""
    row = await conn.fetchrow(_SELECT, request.requested_by, request.key_bytes)
    if row is None:
        return None
    if row["fingerprint"] != request.fingerprint:
        raise CrowdexError("idempotency_key_conflict",
                           "this Idempotency-Key was used with a different request")
    if row["batch_id"] is None:
        raise CrowdexError(row["refusal_code"], row["refusal_message"])
    return row["batch_id"]


async def record_batch(conn: asyncpg.Connection, request: BatchRequest, batch_id: int) -> None:
    """Inside the batch's transaction: this key wrote ``batch_id``."""
    await conn.execute(_INSERT, request.requested_by, request.key_bytes, request.fingerprint,
                       batch_id, None, None)


async def record_refusal(conn: asyncpg.Connection | asyncpg.Pool, request: BatchRequest,
                         refusal: CrowdexError) -> None:
    """This key was refused (a retry gets the same answer, like any idempotent POST)."""
    await conn.execute(_INSERT, request.requested_by, request.key_bytes, request.fingerprint,
                       None, refusal.code, refusal.message)
