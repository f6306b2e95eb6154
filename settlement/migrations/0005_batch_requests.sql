-- 0005: a settlement batch's Idempotency-Key is as durable as the batch it wrote.
--
-- A batch is not one engine command (it is a PostgreSQL transaction between two journaled
-- commands), so the engine's memory of idempotent replies does not cover it, and the gateway's
-- is lost on restart: a retry after a crash used to write a new batch. The key now lives here,
-- written in the batch's own transaction, so "the batch committed" and "this key asked for it"
-- are one fact. A refusal (a reconciliation break) is remembered too, as API.md asks of any POST.

CREATE TABLE batch_requests (
    requested_by    bigint      NOT NULL CHECK (requested_by > 0),
    idempotency_key bytea       NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 1024),
    fingerprint     text        NOT NULL,
    batch_id        bigint      UNIQUE REFERENCES batches (batch_id),
    refusal_code    text,
    refusal_message text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (requested_by, idempotency_key),
    -- Either the batch it wrote or the refusal it got, never both.
    CHECK ((batch_id IS NULL) = (refusal_code IS NOT NULL)),
    CHECK ((refusal_code IS NULL) = (refusal_message IS NULL))
);

COMMENT ON TABLE batch_requests IS
    'The Idempotency-Key of each settlement batch request (per operator account) and its outcome.';

CREATE TRIGGER batch_requests_append_only BEFORE UPDATE OR DELETE ON batch_requests
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
