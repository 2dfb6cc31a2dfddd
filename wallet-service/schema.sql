-- wallet.db, migration 1. docs/ledger.md explains every table; docs/ledger.md is the contract.
-- Times: *_ms are unix milliseconds. Money: *_minor are integer paise, never floats.

-- Key/value facts about this database; 'epoch' is its random id, made at creation.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE users (
    user          TEXT PRIMARY KEY CHECK (length(user) BETWEEN 1 AND 32),
    phone         TEXT,
    bank_account  TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
) WITHOUT ROWID;

-- wallet:<user> (never negative), external:bank (money from/to the bank; may be
-- negative), payouts:in_flight (withdrawal holds; never negative).
CREATE TABLE accounts (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('wallet', 'external', 'payouts')),
    owner         TEXT REFERENCES users (user),
    balance_minor INTEGER NOT NULL DEFAULT 0,
    created_at_ms INTEGER NOT NULL,
    CHECK (kind = 'external' OR balance_minor >= 0),
    CHECK ((kind = 'wallet') = (owner IS NOT NULL))
) WITHOUT ROWID;

CREATE TABLE transactions (
    id              TEXT PRIMARY KEY,                      -- wtx_...
    kind            TEXT NOT NULL CHECK (kind IN ('p2p', 'topup', 'withdrawal')),
    mode            TEXT NOT NULL CHECK (mode IN ('internal', 'sync', 'async', 'sync-blocking')),
    status          TEXT NOT NULL CHECK (status IN ('pending', 'unknown', 'succeeded', 'failed')),
    amount_minor    INTEGER NOT NULL CHECK (amount_minor BETWEEN 1 AND 1000000000000),
    user            TEXT NOT NULL REFERENCES users (user),  -- payer (p2p), or the user topping up / withdrawing
    counterparty    TEXT NOT NULL,                          -- p2p: payee user; else the user's bank account
    note            TEXT,
    bank_payment_id TEXT,                                   -- bp_... once the bank named it
    failure_reason  TEXT,
    settled_by      TEXT CHECK (settled_by IN ('response', 'webhook', 'reconciler')),
    expires_at_ms   INTEGER,                                -- the deadline sent to the bank
    traceparent     TEXT,
    created_at_ms   INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL,
    CHECK ((status IN ('succeeded', 'failed')) = (settled_by IS NOT NULL))
) WITHOUT ROWID;
CREATE INDEX transactions_by_user ON transactions (user, created_at_ms);
CREATE INDEX transactions_by_counterparty ON transactions (counterparty, created_at_ms);
CREATE INDEX transactions_open ON transactions (status, updated_at_ms)
    WHERE status IN ('pending', 'unknown');

-- Every status change (and every notable non-change: a duplicate, a conflict, a bank call)
-- with a millisecond timestamp and a human reason: the timeline `paylab tx` draws.
CREATE TABLE transaction_log (
    id             INTEGER PRIMARY KEY,
    transaction_id TEXT NOT NULL REFERENCES transactions (id),
    at_ms          INTEGER NOT NULL,
    event          TEXT NOT NULL,   -- created, bank_call, bank_answer, timeout, settled, reconcile, conflict, ...
    status         TEXT NOT NULL,   -- the transaction's status after this line
    reason         TEXT NOT NULL
);
CREATE INDEX transaction_log_by_txn ON transaction_log (transaction_id, id);

-- Signed postings; one transaction's entries sum to 0.
CREATE TABLE entries (
    id             INTEGER PRIMARY KEY,
    transaction_id TEXT NOT NULL REFERENCES transactions (id),
    account_id     TEXT NOT NULL REFERENCES accounts (id),
    amount_minor   INTEGER NOT NULL CHECK (amount_minor <> 0),
    created_at_ms  INTEGER NOT NULL
);
CREATE INDEX entries_by_txn ON entries (transaction_id);
CREATE INDEX entries_by_account ON entries (account_id);

-- Answers or webhooks that contradict a final state: recorded, never applied.
CREATE TABLE conflicts (
    id             INTEGER PRIMARY KEY,
    transaction_id TEXT NOT NULL,
    source         TEXT NOT NULL,   -- response, webhook, reconciler
    detail         TEXT NOT NULL,
    created_at_ms  INTEGER NOT NULL
);

-- Idempotency-Key rows, written in the same commit as the transaction they created;
-- kept 24 h. The "in flight" mark lives in memory only.
CREATE TABLE idempotency_keys (
    key            TEXT PRIMARY KEY,
    fingerprint    TEXT NOT NULL,   -- hex SHA-256 of route + the request's fields
    transaction_id TEXT NOT NULL REFERENCES transactions (id),
    status_code    INTEGER NOT NULL, -- the first response's HTTP status
    created_at_ms  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at_ms);

-- Views for people with `sqlite3 -readonly var/wallet.db`.
CREATE VIEW v_balances AS
    SELECT id AS account, kind, owner, balance_minor,
           printf('%s%d.%02d', CASE WHEN balance_minor < 0 THEN '-' ELSE '' END,
                  abs(balance_minor) / 100, abs(balance_minor) % 100) AS balance_inr
    FROM accounts ORDER BY kind, id;

CREATE VIEW v_ledger AS
    SELECT e.id AS entry, t.id AS transaction_id, t.kind, t.mode, t.status, t.user,
           e.account_id AS account, e.amount_minor,
           printf('%s%d.%02d', CASE WHEN e.amount_minor < 0 THEN '-' ELSE '' END,
                  abs(e.amount_minor) / 100, abs(e.amount_minor) % 100) AS amount_inr,
           strftime('%Y-%m-%d %H:%M:%f', e.created_at_ms / 1000.0, 'unixepoch') AS at
    FROM entries e JOIN transactions t ON t.id = e.transaction_id ORDER BY e.id;

CREATE VIEW v_pending AS
    SELECT id, kind, mode, status, user, amount_minor, expires_at_ms,
           (CAST(strftime('%s', 'now') AS INTEGER) * 1000 - updated_at_ms) AS age_ms
    FROM transactions WHERE status IN ('pending', 'unknown') ORDER BY created_at_ms;
