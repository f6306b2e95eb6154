-- 0006: an account's movements, newest first (GET /v1/me/movements), without a scan of the
-- whole ledger. The legs' primary key leads with the batch; this index leads with the account.
-- Partial: trades (kinds 3 trade cash, 4 trade units, 5 trade fee), which are most legs, stay
-- out of it, so a batch's COPY does not maintain an index entry per fill (an index over every
-- leg took a third off the settlement benchmark's legs/s); a trade's history is its order's.

CREATE INDEX ledger_legs_by_account ON ledger_legs (account_id, movement_id)
    WHERE kind NOT IN (3, 4, 5);
