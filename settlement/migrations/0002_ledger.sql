-- 0002: the double-entry ledger, the venue's book of record.
--
-- A settlement batch writes, in ONE transaction: its row in `batches`, two legs per engine
-- movement in `ledger_legs` (a debit with a negative amount, a credit with a positive one), the
-- netted custodian instructions per account and asset, and the running balances. The engine is
-- the source of truth; the constraints below are the second check on money:
--   * CHECKs on signs (debits < 0 < credits; account balances never negative),
--   * PRIMARY KEY (batch_id, movement_id, side) on legs: a batch holds a movement's legs once;
--     with non-overlapping movement ranges per batch (an exclusion constraint) and the batch
--     trigger's check that a batch's legs lie inside its range, no movement is stored twice,
--   * UNIQUE cutoff_sequence per batch,
--   * a deferred constraint trigger on `batches` that, at COMMIT, refuses a batch whose
--     instructions do not balance per asset, do not account for every leg, or name an unknown
--     account.
-- Account 0 is the world outside the venue (the custodian bank for cash, the issuance for
-- units); it is not a row of `accounts`, and its balances are the only negative ones.
-- Legs, instructions and balances carry no foreign keys: per-row FK checks cost more than the
-- COPY itself (measured). The batch trigger checks batch, account and asset references once per
-- batch instead.

CREATE TABLE assets (
    asset_id  bigint PRIMARY KEY CHECK (asset_id >= 0),
    kind      text   NOT NULL CHECK (kind IN ('cash', 'units')),
    CHECK ((asset_id = 0) = (kind = 'cash'))
);
INSERT INTO assets (asset_id, kind) VALUES (0, 'cash');

COMMENT ON TABLE assets IS 'Asset 0 is cash in fen; any other asset is an instrument id, in units.';

CREATE TABLE batches (
    batch_id          bigint      PRIMARY KEY CHECK (batch_id > 0),
    cutoff_sequence   bigint      NOT NULL UNIQUE CHECK (cutoff_sequence >= 0),
    first_movement_id bigint      CHECK (first_movement_id > 0),
    last_movement_id  bigint      CHECK (last_movement_id >= first_movement_id),
    movement_count    bigint      NOT NULL CHECK (movement_count >= 0),
    leg_count         bigint      NOT NULL CHECK (leg_count = 2 * movement_count),
    trade_count       bigint      NOT NULL CHECK (trade_count >= 0),
    status            text        NOT NULL CHECK (status = 'committed'),
    exchange_time     timestamptz NOT NULL,
    committed_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((movement_count = 0) = (first_movement_id IS NULL)),
    CHECK ((movement_count = 0) = (last_movement_id IS NULL)),
    CHECK (movement_count <= last_movement_id - first_movement_id + 1),
    -- No movement range may overlap another batch's: together with the legs' primary key this
    -- makes "settled twice" impossible to store.
    EXCLUDE USING gist (int8range(first_movement_id, last_movement_id, '[]') WITH &&)
        WHERE (movement_count > 0)
);

COMMENT ON TABLE batches IS 'Committed settlement batches; one that did not commit leaves no row.';
COMMENT ON COLUMN batches.cutoff_sequence IS
    'Engine sequence up to which (inclusive) movements are settled by this batch.';

CREATE TABLE ledger_legs (
    batch_id    bigint   NOT NULL CHECK (batch_id > 0),
    movement_id bigint   NOT NULL CHECK (movement_id > 0),
    side        smallint NOT NULL CHECK (side IN (1, 2)),  -- 1 debit, 2 credit
    account_id  bigint   NOT NULL CHECK (account_id >= 0),
    asset       bigint   NOT NULL CHECK (asset >= 0),
    amount      bigint   NOT NULL,
    kind        smallint NOT NULL CHECK (kind > 0),
    sequence    bigint   NOT NULL CHECK (sequence > 0),
    PRIMARY KEY (batch_id, movement_id, side),
    CHECK ((side = 1 AND amount < 0) OR (side = 2 AND amount > 0))
);

COMMENT ON TABLE ledger_legs IS
    'Double entry: each engine movement is a debit leg (amount < 0) and a credit leg (> 0).';

CREATE TABLE instructions (
    batch_id   bigint NOT NULL CHECK (batch_id > 0),
    account_id bigint NOT NULL CHECK (account_id >= 0),
    asset      bigint NOT NULL CHECK (asset >= 0),
    net_amount bigint NOT NULL,
    legs       bigint NOT NULL CHECK (legs > 0),
    PRIMARY KEY (batch_id, account_id, asset)
);

COMMENT ON TABLE instructions IS
    'Custodian instructions: each batch''s legs netted per account and asset.';

CREATE TABLE balances (
    account_id bigint NOT NULL CHECK (account_id >= 0),
    asset      bigint NOT NULL CHECK (asset >= 0),
    amount     bigint NOT NULL,
    last_batch_id bigint NOT NULL CHECK (last_batch_id > 0),
    PRIMARY KEY (account_id, asset),
    -- Accounts hold what they own; only the outside world (account 0) can be short.
    CHECK ((account_id = 0 AND amount <= 0) OR (account_id > 0 AND amount >= 0))
);

COMMENT ON TABLE balances IS 'Settled holdings per account and asset, the sum of all batches.';

-- Differences between the ledger and the engine that an operator has looked at and accepted.
-- A mismatch blocks the next batch unless a resolved break with the same account, asset and
-- difference exists (the difference survives later batches unchanged, since both sides move by
-- the same legs).
CREATE TABLE reconciliation_breaks (
    break_id      bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id    bigint      NOT NULL CHECK (account_id >= 0),
    asset         bigint      NOT NULL CHECK (asset >= 0),
    ledger_amount bigint      NOT NULL,
    engine_amount bigint      NOT NULL,
    difference    bigint      NOT NULL CHECK (difference <> 0),
    detected_at   timestamptz NOT NULL DEFAULT now(),
    resolved_at   timestamptz,
    resolved_by   bigint,
    note          text,
    CHECK (difference = ledger_amount - engine_amount),
    CHECK ((resolved_at IS NULL) = (resolved_by IS NULL))
);

CREATE UNIQUE INDEX reconciliation_breaks_open
    ON reconciliation_breaks (account_id, asset, difference) WHERE resolved_at IS NULL;

-- The batch check, run once per batch at COMMIT (deferred): every asset nets to zero, the
-- instructions account for every leg the batch claims, the legs lie inside the batch's movement
-- range, and every account but the outside world exists.
CREATE FUNCTION check_batch_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    unbalanced bigint;
    instructed bigint;
    low bigint;
    high bigint;
    unknown bigint;
BEGIN
    SELECT asset INTO unbalanced FROM instructions
     WHERE batch_id = NEW.batch_id GROUP BY asset HAVING sum(net_amount) <> 0 LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'batch % does not balance in asset %', NEW.batch_id, unbalanced
            USING ERRCODE = 'check_violation';
    END IF;
    SELECT coalesce(sum(legs), 0) INTO instructed FROM instructions
     WHERE batch_id = NEW.batch_id;
    IF instructed <> NEW.leg_count THEN
        RAISE EXCEPTION 'batch % instructs % legs but holds %', NEW.batch_id, instructed,
            NEW.leg_count USING ERRCODE = 'check_violation';
    END IF;
    -- Through the primary key, two index probes: the batch's legs lie inside its range.
    SELECT min(movement_id), max(movement_id) INTO low, high FROM ledger_legs
     WHERE batch_id = NEW.batch_id;
    IF low < NEW.first_movement_id OR high > NEW.last_movement_id THEN
        RAISE EXCEPTION 'batch % has legs of movements %..% outside its range %..%',
            NEW.batch_id, low, high, NEW.first_movement_id, NEW.last_movement_id
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.movement_count = 0 AND low IS NOT NULL THEN
        RAISE EXCEPTION 'empty batch % has legs', NEW.batch_id USING ERRCODE = 'check_violation';
    END IF;
    SELECT i.account_id INTO unknown FROM instructions i
     WHERE i.batch_id = NEW.batch_id AND i.account_id > 0
       AND NOT EXISTS (SELECT 1 FROM accounts a WHERE a.account_id = i.account_id) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'batch % names unknown account %', NEW.batch_id, unknown
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    SELECT i.asset INTO unknown FROM instructions i
     WHERE i.batch_id = NEW.batch_id
       AND NOT EXISTS (SELECT 1 FROM assets s WHERE s.asset_id = i.asset) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'batch % names unknown asset %', NEW.batch_id, unknown
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER batches_balanced
    AFTER INSERT ON batches DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION check_batch_balanced();

-- The ledger is append-only: committed legs, instructions and batches are never changed.
CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER ledger_legs_append_only BEFORE UPDATE OR DELETE ON ledger_legs
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
CREATE TRIGGER instructions_append_only BEFORE UPDATE OR DELETE ON instructions
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
CREATE TRIGGER batches_append_only BEFORE UPDATE OR DELETE ON batches
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
