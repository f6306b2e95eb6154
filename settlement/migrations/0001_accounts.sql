-- 0001: accounts, the first settlement table.
--
-- One row per exchange account, written by settlement from the engine's AccountCreated events.
-- The engine is the source of truth; these constraints are the second check on what it sends.
-- created_at has no default on purpose: it is the exchange clock's time (which may be the
-- manual clock), not the database server's.

CREATE TABLE accounts (
    account_id       bigint      PRIMARY KEY CHECK (account_id > 0),
    role             text        NOT NULL
                                 CHECK (role IN ('investor', 'issuer', 'operator', 'fee')),
    name             text        NOT NULL,
    investor_class   text        CHECK (investor_class IN ('retail', 'qualified', 'institutional')),
    created_at       timestamptz NOT NULL,
    created_sequence bigint      NOT NULL CHECK (created_sequence >= 0)
);

COMMENT ON TABLE accounts IS 'Exchange accounts, projected from the engine journal.';
COMMENT ON COLUMN accounts.created_sequence IS 'Sequence number of the command that created it.';
