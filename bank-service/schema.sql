-- bank.db, migration 1. docs/ledger.md explains it; docs/api.md is the contract.
-- Times: *_ms are unix milliseconds. Money: *_minor are integer paise, never floats.
-- The nodal account (--nodal-account, default NODAL-PAYLAB) is inserted at startup with
-- INSERT OR IGNORE and a zero balance, since its name is a flag.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE accounts (
    id            TEXT PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 64),
    owner         TEXT NOT NULL,
    balance_minor INTEGER NOT NULL CHECK (balance_minor >= 0),  -- no account below zero
    created_at_ms INTEGER NOT NULL
) WITHOUT ROWID;

-- A customer account may be debited only towards a payee it has a mandate for.
CREATE TABLE mandates (
    account       TEXT NOT NULL REFERENCES accounts (id),
    payee         TEXT NOT NULL REFERENCES accounts (id),
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (account, payee)
) WITHOUT ROWID;

-- One reference, at most one payment, forever. A void of a never-seen reference is a row
-- with voided = 1, status failed / expired, no accounts and amount 0: it can never execute.
CREATE TABLE payments (
    id              TEXT PRIMARY KEY,                   -- bp_...
    reference       TEXT NOT NULL UNIQUE,               -- the wallet's wtx_...
    debit_account   TEXT REFERENCES accounts (id),
    credit_account  TEXT REFERENCES accounts (id),
    amount_minor    INTEGER NOT NULL CHECK (amount_minor BETWEEN 0 AND 1000000000000),
    currency        TEXT NOT NULL DEFAULT 'INR',
    mode            TEXT NOT NULL CHECK (mode IN ('sync', 'async', 'void')),
    status          TEXT NOT NULL CHECK (status IN ('processing', 'succeeded', 'failed')),
    failure_reason  TEXT,                               -- insufficient_funds, expired
    voided          INTEGER NOT NULL DEFAULT 0,
    notify_url      TEXT,
    expires_at_ms   INTEGER NOT NULL,
    execute_at_ms   INTEGER NOT NULL,                   -- planned execution (after injected latency)
    wallet_epoch    TEXT,
    traceparent     TEXT,
    idempotency_key TEXT,
    fingerprint     TEXT,                               -- hex SHA-256 of the request's fields
    created_at_ms   INTEGER NOT NULL,
    settled_at_ms   INTEGER,
    CHECK (voided = 1 OR (debit_account IS NOT NULL AND credit_account IS NOT NULL AND amount_minor > 0))
) WITHOUT ROWID;
CREATE INDEX payments_processing ON payments (execute_at_ms) WHERE status = 'processing';

-- Idempotency-Key -> the payment it created; kept 24 h.
CREATE TABLE idempotency_keys (
    key           TEXT PRIMARY KEY,
    fingerprint   TEXT NOT NULL,
    payment_id    TEXT NOT NULL REFERENCES payments (id),
    created_at_ms INTEGER NOT NULL
) WITHOUT ROWID;

-- Double-entry view of the bank's own book: each succeeded payment moves amount_minor
-- from debit_account to credit_account.
CREATE VIEW v_balances AS
    SELECT id AS account, owner, balance_minor,
           printf('%d.%02d', balance_minor / 100, balance_minor % 100) AS balance_inr
    FROM accounts ORDER BY id;
