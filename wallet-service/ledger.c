/* ledger.c owns wallet.db: its schema and migrations, users, accounts, the double-entry
 * postings, the transaction state machine, the timeline (transaction_log), conflicts and
 * idempotency-key rows.
 * Must not: do network I/O, know HTTP status codes, or open a transaction of its own for a
 * caller's write (callers group writes with db_begin … db_commit; only pruning, a
 * self-contained housekeeping job, opens its own).
 *
 * The ledger's invariants (docs/ledger.md), and why they hold:
 *
 *  1. The sum of all account balances is 0. Money is never created or destroyed inside the
 *     wallet: every movement is ledger_post(), which writes one entry of -amount on the
 *     source and one of +amount on the destination and adjusts both balances by the same
 *     amounts, in the caller's SQLite transaction. Money from outside enters through
 *     external:bank, which goes negative by exactly what the bank moved into the nodal
 *     account on the users' behalf.
 *
 *  2. Every balance equals the sum of its entries; every transaction's entries sum to 0.
 *     Balances change only in ledger_post(), next to the entries that explain them. A
 *     transaction gets postings at most twice: the withdrawal hold at creation, and one
 *     settlement posting when it leaves pending/unknown — the state-machine guard below
 *     lets exactly one path make that move.
 *
 *  3. No user wallet (and no payouts hold) is negative. ledger_post() debits with
 *     `… WHERE balance_minor >= amount` and reports LEDGER_EFUNDS when that matches no
 *     row; the schema's CHECK constraint is the backstop.
 *
 *  4. A final status is final. A status change is `UPDATE … WHERE id = ? AND status IN
 *     (allowed sources)`: pending → unknown, pending|unknown → succeeded|failed. Touching
 *     zero rows means another path (the reconciler, a webhook, a late reply) settled it
 *     first; callers re-read and report the current state. So a top-up is credited at most
 *     once and a withdrawal paid out at most once, whatever arrives twice.
 *
 *  5. Nothing outside sees a change before its COMMIT: this file only writes; callers reply,
 *     call the bank or publish after db_commit() returned 0.
 */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "db.h"
#include "ids.h"
#include "log.h"
#include "money.h"
#include "pl.h"
#include "wallet.h"

extern const char wallet_schema_sql[];

/* Migration 2: idempotency rows are updated by transaction when the first response is known. */
static const char ledger_migration_2[] =
    "CREATE INDEX idempotency_keys_by_txn ON idempotency_keys (transaction_id);";

/* Migration 3: the asynchronous path (docs/realtime.md and docs/ledger.md). outbox.c, events.c and
 * intake.c own the statements on these tables; docs/ledger.md explains each column.
 * - webhooks_seen: one row per webhook-id applied (any result but retry), kept 3 days.
 * - webhooks_unmatched: signed webhooks naming no transaction of ours, kept for people.
 * - outbox: async bank requests as the exact bytes to send; `done` 0 due, 1 accepted by the
 *   bank, 2 stopped at expires_at_ms, 3 the transaction settled first. Headers are
 *   "Name: value" lines without Authorization (the secret is added at send time).
 * - events: per-user gapless seq; payload is the event JSON exactly as published; the
 *   implicit rowid orders publication across users. */
static const char ledger_migration_3[] =
    "CREATE TABLE webhooks_seen ("
    " webhook_id TEXT PRIMARY KEY, transaction_id TEXT, result TEXT NOT NULL"
    " CHECK (result IN ('applied', 'duplicate', 'conflict', 'ignored')),"
    " received_at_ms INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX webhooks_seen_by_age ON webhooks_seen (received_at_ms);"
    "CREATE TABLE webhooks_unmatched ("
    " id INTEGER PRIMARY KEY, webhook_id TEXT NOT NULL, reference TEXT, type TEXT,"
    " body TEXT NOT NULL, received_at_ms INTEGER NOT NULL);"
    "CREATE TABLE outbox ("
    " id INTEGER PRIMARY KEY, transaction_id TEXT NOT NULL UNIQUE REFERENCES transactions (id),"
    " method TEXT NOT NULL, path TEXT NOT NULL, headers TEXT NOT NULL, body TEXT NOT NULL,"
    " attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at_ms INTEGER NOT NULL,"
    " expires_at_ms INTEGER NOT NULL, done INTEGER NOT NULL DEFAULT 0 CHECK (done BETWEEN 0 AND 3),"
    " last_error TEXT, created_at_ms INTEGER NOT NULL, updated_at_ms INTEGER NOT NULL);"
    "CREATE INDEX outbox_due ON outbox (next_attempt_at_ms) WHERE done = 0;"
    "CREATE TABLE events ("
    " user TEXT NOT NULL REFERENCES users (user), seq INTEGER NOT NULL CHECK (seq >= 1),"
    " type TEXT NOT NULL CHECK (type IN ('transaction.updated', 'balance.updated')),"
    " payload TEXT NOT NULL, created_at_ms INTEGER NOT NULL,"
    " published INTEGER NOT NULL DEFAULT 0 CHECK (published IN (0, 1)),"
    " PRIMARY KEY (user, seq));"
    "CREATE INDEX events_unpublished ON events (published) WHERE published = 0;"
    "CREATE INDEX events_by_time ON events (created_at_ms);"
    "CREATE VIEW v_outbox AS SELECT id, transaction_id, done, attempts, next_attempt_at_ms,"
    " expires_at_ms, last_error FROM outbox WHERE done = 0 ORDER BY next_attempt_at_ms;";

#define TXN_COLUMNS                                                                                \
    "id, kind, mode, status, amount_minor, user, counterparty, note, bank_payment_id, "            \
    "failure_reason, settled_by, expires_at_ms, traceparent, created_at_ms, updated_at_ms"

/* ===================================================================== names ======== */

static const char *const kind_names[] = {"p2p", "topup", "withdrawal"};
static const char *const mode_names[] = {"internal", "sync", "async", "sync-blocking"};
static const char *const status_names[] = {"pending", "unknown", "succeeded", "failed"};
static const char *const settled_names[] = {NULL, "response", "webhook", "reconciler"};

const char *txn_kind_name(enum txn_kind k)
{
    assert((size_t)k < PL_ARRAY_LEN(kind_names));
    return kind_names[k];
}

const char *txn_mode_name(enum txn_mode m)
{
    assert((size_t)m < PL_ARRAY_LEN(mode_names));
    return mode_names[m];
}

const char *txn_status_name(enum txn_status s)
{
    assert((size_t)s < PL_ARRAY_LEN(status_names));
    return status_names[s];
}

const char *txn_settled_by_name(enum txn_settled_by s)
{
    assert((size_t)s < PL_ARRAY_LEN(settled_names));
    return settled_names[s];
}

bool txn_status_final(enum txn_status s)
{
    return s == TXN_SUCCEEDED || s == TXN_FAILED;
}

/* Index of s in names, or -1. */
static int name_index(const char *const *names, size_t count, const char *s)
{
    for (size_t i = 0; i < count; i++) {
        if (names[i] != NULL && strcmp(names[i], s) == 0)
            return (int)i;
    }
    return -1;
}

int txn_mode_parse(const char *s, enum txn_mode *out)
{
    int i = name_index(mode_names, PL_ARRAY_LEN(mode_names), s);
    if (i < 0)
        return PL_EINVAL;
    *out = (enum txn_mode)i;
    return 0;
}

void ledger_wallet_account(const char *user, char *out, size_t cap)
{
    assert(ids_user_valid(user));
    int n = snprintf(out, cap, "wallet:%s", user);
    assert(n > 0 && (size_t)n < cap);
}

/* ===================================================================== open ========= */

static int ledger_bootstrap(struct db *db, int64_t now_ms)
{
    char epoch[ID_BYTES_MAX];
    if (ids_new("", epoch, sizeof epoch) != 0)
        return PL_EIO;
    int rc = db_begin(db);
    if (rc != 0)
        return rc;
    sqlite3_stmt *st = db_stmt(db, "INSERT OR IGNORE INTO meta (key, value) VALUES ('epoch', ?1)");
    if (st == NULL)
        goto fail;
    db_bind_text(st, 1, epoch);
    if (db_exec_stmt(st) != 0)
        goto fail;
    static const char *const system_accounts[][2] = {
        {LEDGER_ACCOUNT_BANK, "external"},
        {LEDGER_ACCOUNT_PAYOUTS, "payouts"},
    };
    for (size_t i = 0; i < PL_ARRAY_LEN(system_accounts); i++) {
        st = db_stmt(
            db, "INSERT OR IGNORE INTO accounts (id, kind, owner, balance_minor, created_at_ms) "
                "VALUES (?1, ?2, NULL, 0, ?3)");
        if (st == NULL)
            goto fail;
        db_bind_text(st, 1, system_accounts[i][0]);
        db_bind_text(st, 2, system_accounts[i][1]);
        sqlite3_bind_int64(st, 3, now_ms);
        if (db_exec_stmt(st) != 0)
            goto fail;
    }
    return db_commit(db);
fail:
    db_rollback(db);
    return PL_EDB;
}

int ledger_open(struct db *db, const char *path, int64_t now_ms, char *epoch_out, size_t cap)
{
    static const char *const migrations[] = {wallet_schema_sql, ledger_migration_2,
                                             ledger_migration_3};
    if (db_open(db, path, false) != 0)
        return PL_EDB;
    if (db_migrate(db, migrations, PL_ARRAY_LEN(migrations)) != 0)
        return PL_EDB;
    int rc = ledger_bootstrap(db, now_ms);
    if (rc != 0)
        return rc;
    sqlite3_stmt *st = db_stmt(db, "SELECT value FROM meta WHERE key = 'epoch'");
    if (st == NULL)
        return PL_EDB;
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(st);
        return PL_EDB;
    }
    db_column_copy(st, 0, epoch_out, cap);
    sqlite3_reset(st);
    return 0;
}

/* ===================================================================== writes ======= */

int ledger_user_insert(struct db *db, const char *user, const char *phone, const char *bank_account,
                       int64_t now_ms)
{
    assert(db->in_txn);
    assert(ids_user_valid(user));
    sqlite3_stmt *st = db_stmt(db, "INSERT INTO users (user, phone, bank_account, created_at_ms) "
                                   "VALUES (?1, ?2, ?3, ?4)");
    if (st == NULL)
        return PL_EDB;
    db_bind_text(st, 1, user);
    db_bind_text(st, 2, phone);
    db_bind_text(st, 3, bank_account);
    sqlite3_bind_int64(st, 4, now_ms);
    int rc = db_exec_stmt(st);
    if (rc != 0)
        return rc; /* PL_ECONFLICT: the user exists */
    char account[WALLET_ACCOUNT_ID_BYTES_MAX];
    ledger_wallet_account(user, account, sizeof account);
    st = db_stmt(db, "INSERT INTO accounts (id, kind, owner, balance_minor, created_at_ms) "
                     "VALUES (?1, 'wallet', ?2, 0, ?3)");
    if (st == NULL)
        return PL_EDB;
    db_bind_text(st, 1, account);
    db_bind_text(st, 2, user);
    sqlite3_bind_int64(st, 3, now_ms);
    return db_exec_stmt(st);
}

int ledger_seeded_txn_id(struct db *db, int64_t seed, char out[ID_BYTES_MAX])
{
    assert(db->in_txn); /* n and the insert that uses it commit together */
    assert(seed != 0);
    int64_t count = 0;
    sqlite3_stmt *st = db_stmt(db, "SELECT count(*) FROM transactions WHERE kind IN ('topup', "
                                   "'withdrawal')");
    int rc = st != NULL ? db_query_int64(st, &count) : PL_EDB;
    if (rc != 0)
        return rc;
    char text[48];
    int n = snprintf(text, sizeof text, "%lld:%lld", (long long)seed, (long long)(count + 1));
    assert(n > 0 && (size_t)n < sizeof text);
    rc = ids_derived("wtx_", text, out);
    if (rc != 0)
        return rc;
    assert(ids_valid("wtx_", out));
    return 0;
}

int ledger_txn_insert(struct db *db, const struct ledger_txn *t)
{
    assert(db->in_txn);
    assert(money_amount_valid(t->amount_minor));
    sqlite3_stmt *st =
        db_stmt(db, "INSERT INTO transactions (" TXN_COLUMNS ") VALUES "
                    "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)");
    if (st == NULL)
        return PL_EDB;
    db_bind_text(st, 1, t->id);
    db_bind_text(st, 2, txn_kind_name(t->kind));
    db_bind_text(st, 3, txn_mode_name(t->mode));
    db_bind_text(st, 4, txn_status_name(t->status));
    sqlite3_bind_int64(st, 5, t->amount_minor);
    db_bind_text(st, 6, t->user);
    db_bind_text(st, 7, t->counterparty);
    db_bind_text(st, 8, t->has_note ? t->note : NULL);
    db_bind_text(st, 9, t->bank_payment_id[0] != '\0' ? t->bank_payment_id : NULL);
    db_bind_text(st, 10, t->failure_reason[0] != '\0' ? t->failure_reason : NULL);
    db_bind_text(st, 11, txn_settled_by_name(t->settled_by));
    if (t->expires_at_ms > 0) {
        sqlite3_bind_int64(st, 12, t->expires_at_ms);
    } else {
        sqlite3_bind_null(st, 12);
    }
    db_bind_text(st, 13, t->traceparent[0] != '\0' ? t->traceparent : NULL);
    sqlite3_bind_int64(st, 14, t->created_at_ms);
    sqlite3_bind_int64(st, 15, t->updated_at_ms);
    return db_exec_stmt(st);
}

int ledger_log(struct db *db, const char *txn_id, int64_t now_ms, const char *event,
               enum txn_status status, const char *reason)
{
    assert(db->in_txn);
    sqlite3_stmt *st = db_stmt(db, "INSERT INTO transaction_log (transaction_id, at_ms, event, "
                                   "status, reason) VALUES (?1, ?2, ?3, ?4, ?5)");
    if (st == NULL)
        return PL_EDB;
    db_bind_text(st, 1, txn_id);
    sqlite3_bind_int64(st, 2, now_ms);
    db_bind_text(st, 3, event);
    db_bind_text(st, 4, txn_status_name(status));
    db_bind_text(st, 5, reason);
    return db_exec_stmt(st);
}

static int ledger_entry(struct db *db, const char *txn_id, const char *account, int64_t amount,
                        int64_t now_ms)
{
    sqlite3_stmt *st = db_stmt(db, "INSERT INTO entries (transaction_id, account_id, amount_minor, "
                                   "created_at_ms) VALUES (?1, ?2, ?3, ?4)");
    if (st == NULL)
        return PL_EDB;
    db_bind_text(st, 1, txn_id);
    db_bind_text(st, 2, account);
    sqlite3_bind_int64(st, 3, amount);
    sqlite3_bind_int64(st, 4, now_ms);
    return db_exec_stmt(st);
}

int ledger_post(struct db *db, const char *txn_id, const char *from_account, const char *to_account,
                int64_t amount_minor, int64_t now_ms)
{
    assert(db->in_txn);
    assert(amount_minor > 0);
    assert(strcmp(from_account, to_account) != 0);
    sqlite3_stmt *st = db_stmt(db, "UPDATE accounts SET balance_minor = balance_minor - ?1 "
                                   "WHERE id = ?2 AND (kind = 'external' OR balance_minor >= ?1)");
    if (st == NULL)
        return PL_EDB;
    sqlite3_bind_int64(st, 1, amount_minor);
    db_bind_text(st, 2, from_account);
    int rc = db_exec_stmt(st);
    if (rc != 0)
        return rc;
    if (sqlite3_changes(db->handle) != 1)
        return LEDGER_EFUNDS;
    st = db_stmt(db, "UPDATE accounts SET balance_minor = balance_minor + ?1 WHERE id = ?2");
    if (st == NULL)
        return PL_EDB;
    sqlite3_bind_int64(st, 1, amount_minor);
    db_bind_text(st, 2, to_account);
    rc = db_exec_stmt(st);
    if (rc != 0)
        return rc;
    if (sqlite3_changes(db->handle) != 1)
        return PL_ENOTFOUND;
    rc = ledger_entry(db, txn_id, from_account, -amount_minor, now_ms);
    if (rc != 0)
        return rc;
    return ledger_entry(db, txn_id, to_account, amount_minor, now_ms);
}

int ledger_txn_transition(struct db *db, const char *txn_id, unsigned from_mask, enum txn_status to,
                          enum txn_settled_by by, const char *failure_reason,
                          const char *bank_payment_id, int64_t now_ms)
{
    assert(db->in_txn);
    assert(from_mask != 0);
    /* Final is final: no caller may name succeeded (4) or failed (8) as a state to leave. */
    assert((from_mask & ~3u) == 0);
    assert(txn_status_final(to) == (by != SETTLED_NONE));
    sqlite3_stmt *st =
        db_stmt(db, "UPDATE transactions SET status = ?1, settled_by = ?2, "
                    "failure_reason = COALESCE(?3, failure_reason), "
                    "bank_payment_id = COALESCE(?4, bank_payment_id), updated_at_ms = ?5 "
                    "WHERE id = ?6 AND ((status = 'pending' AND (?7 & 1)) OR (status = 'unknown' "
                    "AND (?7 & 2)))");
    if (st == NULL)
        return PL_EDB;
    db_bind_text(st, 1, txn_status_name(to));
    db_bind_text(st, 2, txn_settled_by_name(by));
    db_bind_text(st, 3, failure_reason);
    db_bind_text(st, 4,
                 bank_payment_id != NULL && bank_payment_id[0] != '\0' ? bank_payment_id : NULL);
    sqlite3_bind_int64(st, 5, now_ms);
    db_bind_text(st, 6, txn_id);
    sqlite3_bind_int64(st, 7, (sqlite3_int64)from_mask);
    int rc = db_exec_stmt(st);
    if (rc != 0)
        return rc;
    return sqlite3_changes(db->handle) == 1 ? 0 : PL_ECONFLICT;
}

int ledger_txn_force(struct db *db, const char *txn_id, enum txn_status to, enum txn_settled_by by,
                     const char *failure_reason, const char *bank_payment_id, int64_t now_ms)
{
    assert(db->in_txn);
    assert(txn_status_final(to));
    sqlite3_stmt *st =
        db_stmt(db, "UPDATE transactions SET status = ?1, settled_by = ?2, "
                    "failure_reason = COALESCE(?3, failure_reason), "
                    "bank_payment_id = COALESCE(?4, bank_payment_id), updated_at_ms = ?5 "
                    "WHERE id = ?6");
    if (st == NULL)
        return PL_EDB;
    db_bind_text(st, 1, txn_status_name(to));
    db_bind_text(st, 2, txn_settled_by_name(by));
    db_bind_text(st, 3, failure_reason);
    db_bind_text(st, 4,
                 bank_payment_id != NULL && bank_payment_id[0] != '\0' ? bank_payment_id : NULL);
    sqlite3_bind_int64(st, 5, now_ms);
    db_bind_text(st, 6, txn_id);
    int rc = db_exec_stmt(st);
    if (rc != 0)
        return rc;
    return sqlite3_changes(db->handle) == 1 ? 0 : PL_ENOTFOUND;
}

int ledger_conflict_insert(struct db *db, const char *txn_id, const char *source,
                           const char *detail, int64_t now_ms)
{
    assert(db->in_txn);
    sqlite3_stmt *st = db_stmt(db, "INSERT INTO conflicts (transaction_id, source, detail, "
                                   "created_at_ms) VALUES (?1, ?2, ?3, ?4)");
    if (st == NULL)
        return PL_EDB;
    db_bind_text(st, 1, txn_id);
    db_bind_text(st, 2, source);
    db_bind_text(st, 3, detail);
    sqlite3_bind_int64(st, 4, now_ms);
    return db_exec_stmt(st);
}

int ledger_txn_set_payment_id(struct db *db, const char *txn_id, const char *bank_payment_id,
                              int64_t now_ms, bool *changed_out)
{
    assert(db->in_txn);
    assert(bank_payment_id != NULL && bank_payment_id[0] != '\0');
    *changed_out = false;
    sqlite3_stmt *st =
        db_stmt(db, "UPDATE transactions SET bank_payment_id = ?1, updated_at_ms = ?2 "
                    "WHERE id = ?3 AND bank_payment_id IS NULL");
    if (st == NULL)
        return PL_EDB;
    db_bind_text(st, 1, bank_payment_id);
    sqlite3_bind_int64(st, 2, now_ms);
    db_bind_text(st, 3, txn_id);
    int rc = db_exec_stmt(st);
    if (rc == 0)
        *changed_out = sqlite3_changes(db->handle) == 1;
    return rc;
}

int ledger_idem_insert(struct db *db, const char *key, const char *fingerprint, const char *txn_id,
                       int status_code, int64_t now_ms)
{
    assert(db->in_txn);
    sqlite3_stmt *st =
        db_stmt(db, "INSERT INTO idempotency_keys (key, fingerprint, transaction_id, "
                    "status_code, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)");
    if (st == NULL)
        return PL_EDB;
    db_bind_text(st, 1, key);
    db_bind_text(st, 2, fingerprint);
    db_bind_text(st, 3, txn_id);
    sqlite3_bind_int(st, 4, status_code);
    sqlite3_bind_int64(st, 5, now_ms);
    return db_exec_stmt(st);
}

int ledger_idem_set_status(struct db *db, const char *txn_id, int status_code)
{
    assert(db->in_txn);
    sqlite3_stmt *st =
        db_stmt(db, "UPDATE idempotency_keys SET status_code = ?1 WHERE transaction_id = ?2");
    if (st == NULL)
        return PL_EDB;
    sqlite3_bind_int(st, 1, status_code);
    db_bind_text(st, 2, txn_id);
    return db_exec_stmt(st);
}

int ledger_idem_prune(struct db *db, int64_t cutoff_ms, int *deleted_out)
{
    assert(!db->in_txn);
    *deleted_out = 0;
    int rc = db_begin(db);
    if (rc != 0)
        return rc;
    sqlite3_stmt *st = db_stmt(db, "DELETE FROM idempotency_keys WHERE key IN (SELECT key FROM "
                                   "idempotency_keys WHERE created_at_ms < ?1 LIMIT ?2)");
    if (st == NULL) {
        db_rollback(db);
        return PL_EDB;
    }
    sqlite3_bind_int64(st, 1, cutoff_ms);
    sqlite3_bind_int(st, 2, WALLET_IDEM_PRUNE_BATCH);
    rc = db_exec_stmt(st);
    if (rc != 0) {
        db_rollback(db);
        return rc;
    }
    *deleted_out = sqlite3_changes(db->handle);
    return db_commit(db);
}

/* ===================================================================== reads ======== */

static void ledger_read_txn(sqlite3_stmt *st, struct ledger_txn *t)
{
    char text[32];
    memset(t, 0, sizeof *t);
    db_column_copy(st, 0, t->id, sizeof t->id);
    db_column_copy(st, 1, text, sizeof text);
    int i = name_index(kind_names, PL_ARRAY_LEN(kind_names), text);
    assert(i >= 0); /* the schema's CHECK */
    t->kind = (enum txn_kind)i;
    db_column_copy(st, 2, text, sizeof text);
    i = name_index(mode_names, PL_ARRAY_LEN(mode_names), text);
    assert(i >= 0);
    t->mode = (enum txn_mode)i;
    db_column_copy(st, 3, text, sizeof text);
    i = name_index(status_names, PL_ARRAY_LEN(status_names), text);
    assert(i >= 0);
    t->status = (enum txn_status)i;
    t->amount_minor = sqlite3_column_int64(st, 4);
    db_column_copy(st, 5, t->user, sizeof t->user);
    db_column_copy(st, 6, t->counterparty, sizeof t->counterparty);
    t->has_note = sqlite3_column_type(st, 7) != SQLITE_NULL;
    db_column_copy(st, 7, t->note, sizeof t->note);
    db_column_copy(st, 8, t->bank_payment_id, sizeof t->bank_payment_id);
    db_column_copy(st, 9, t->failure_reason, sizeof t->failure_reason);
    db_column_copy(st, 10, text, sizeof text);
    i = name_index(settled_names, PL_ARRAY_LEN(settled_names), text);
    t->settled_by = i < 0 ? SETTLED_NONE : (enum txn_settled_by)i;
    t->expires_at_ms = sqlite3_column_int64(st, 11); /* NULL reads as 0 */
    db_column_copy(st, 12, t->traceparent, sizeof t->traceparent);
    t->created_at_ms = sqlite3_column_int64(st, 13);
    t->updated_at_ms = sqlite3_column_int64(st, 14);
}

/* Steps a single-row query: 0 with the row current, PL_ENOTFOUND, or an error (reset). */
static int ledger_step_one(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        return 0;
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? PL_ENOTFOUND : db_rc(rc);
}

int ledger_user_get(struct db *db, const char *user, struct ledger_user *out)
{
    sqlite3_stmt *st =
        db_stmt(db, "SELECT u.user, u.phone, u.bank_account, a.balance_minor, "
                    "u.created_at_ms FROM users u JOIN accounts a ON a.owner = u.user "
                    "AND a.kind = 'wallet' WHERE u.user = ?1");
    if (st == NULL)
        return PL_EDB;
    db_bind_text(st, 1, user);
    int rc = ledger_step_one(st);
    if (rc != 0)
        return rc;
    memset(out, 0, sizeof *out);
    db_column_copy(st, 0, out->user, sizeof out->user);
    out->has_phone = sqlite3_column_type(st, 1) != SQLITE_NULL;
    db_column_copy(st, 1, out->phone, sizeof out->phone);
    db_column_copy(st, 2, out->bank_account, sizeof out->bank_account);
    out->balance_minor = sqlite3_column_int64(st, 3);
    out->created_at_ms = sqlite3_column_int64(st, 4);
    sqlite3_reset(st);
    assert(out->balance_minor >= 0); /* invariant 3 */
    return 0;
}

int ledger_txn_get(struct db *db, const char *txn_id, struct ledger_txn *out)
{
    sqlite3_stmt *st = db_stmt(db, "SELECT " TXN_COLUMNS " FROM transactions WHERE id = ?1");
    if (st == NULL)
        return PL_EDB;
    db_bind_text(st, 1, txn_id);
    int rc = ledger_step_one(st);
    if (rc != 0)
        return rc;
    ledger_read_txn(st, out);
    sqlite3_reset(st);
    return 0;
}

int ledger_balance(struct db *db, const char *account_id, int64_t *out)
{
    sqlite3_stmt *st = db_stmt(db, "SELECT balance_minor FROM accounts WHERE id = ?1");
    if (st == NULL)
        return PL_EDB;
    db_bind_text(st, 1, account_id);
    int rc = ledger_step_one(st);
    if (rc != 0)
        return rc;
    *out = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return 0;
}

int ledger_idem_get(struct db *db, const char *key, struct ledger_idem *out)
{
    sqlite3_stmt *st = db_stmt(db, "SELECT fingerprint, transaction_id, status_code FROM "
                                   "idempotency_keys WHERE key = ?1");
    if (st == NULL)
        return PL_EDB;
    db_bind_text(st, 1, key);
    int rc = ledger_step_one(st);
    if (rc != 0)
        return rc;
    db_column_copy(st, 0, out->fingerprint, sizeof out->fingerprint);
    db_column_copy(st, 1, out->transaction_id, sizeof out->transaction_id);
    out->status_code = sqlite3_column_int(st, 2);
    sqlite3_reset(st);
    return 0;
}

int ledger_timeline(struct db *db, const char *txn_id,
                    void (*fn)(const struct ledger_log_line *line, void *arg), void *arg)
{
    sqlite3_stmt *st = db_stmt(db, "SELECT at_ms, event, status, reason FROM transaction_log "
                                   "WHERE transaction_id = ?1 ORDER BY id");
    if (st == NULL)
        return PL_EDB;
    db_bind_text(st, 1, txn_id);
    int rc = sqlite3_step(st);
    for (; rc == SQLITE_ROW; rc = sqlite3_step(st)) {
        struct ledger_log_line line = {
            .at_ms = sqlite3_column_int64(st, 0),
            .event = (const char *)sqlite3_column_text(st, 1),
            .status = (const char *)sqlite3_column_text(st, 2),
            .reason = (const char *)sqlite3_column_text(st, 3),
        };
        fn(&line, arg);
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : db_rc(rc);
}

int ledger_user_txns(struct db *db, const char *user, int limit,
                     void (*fn)(const struct ledger_txn *t, void *arg), void *arg)
{
    assert(limit > 0);
    sqlite3_stmt *st = db_stmt(db, "SELECT " TXN_COLUMNS " FROM transactions WHERE user = ?1 "
                                   "OR (kind = 'p2p' AND counterparty = ?1) "
                                   "ORDER BY created_at_ms DESC, id DESC LIMIT ?2");
    if (st == NULL)
        return PL_EDB;
    db_bind_text(st, 1, user);
    sqlite3_bind_int(st, 2, limit);
    struct ledger_txn t;
    int rc = sqlite3_step(st);
    for (; rc == SQLITE_ROW; rc = sqlite3_step(st)) {
        ledger_read_txn(st, &t);
        fn(&t, arg);
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : db_rc(rc);
}

int ledger_users_list(struct db *db, int limit,
                      void (*fn)(const struct ledger_user_summary *u, void *arg), void *arg)
{
    assert(limit > 0);
    /* The wallet account by primary key; head_seq by the events primary key (user, seq). */
    sqlite3_stmt *st =
        db_stmt(db, "SELECT u.user, u.bank_account, a.balance_minor, "
                    "(SELECT COALESCE(MAX(e.seq), 0) FROM events e WHERE e.user = u.user) "
                    "FROM users u JOIN accounts a ON a.id = 'wallet:' || u.user "
                    "ORDER BY u.user LIMIT ?1");
    if (st == NULL)
        return PL_EDB;
    sqlite3_bind_int(st, 1, limit);
    struct ledger_user_summary u;
    int rc = sqlite3_step(st);
    for (; rc == SQLITE_ROW; rc = sqlite3_step(st)) {
        memset(&u, 0, sizeof u);
        db_column_copy(st, 0, u.user, sizeof u.user);
        db_column_copy(st, 1, u.bank_account, sizeof u.bank_account);
        u.balance_minor = sqlite3_column_int64(st, 2);
        u.head_seq = sqlite3_column_int64(st, 3);
        assert(u.balance_minor >= 0); /* invariant 3 */
        fn(&u, arg);
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : db_rc(rc);
}

int ledger_open_txns(struct db *db, int64_t pending_before_ms, int64_t after_created_ms,
                     const char *after_id, struct ledger_open_row *rows, size_t cap,
                     size_t *count_out)
{
    *count_out = 0;
    sqlite3_stmt *st = db_stmt(
        db, "SELECT id, created_at_ms FROM transactions WHERE (status = 'unknown' OR (status = "
            "'pending' AND updated_at_ms < ?1)) AND (created_at_ms > ?3 OR (created_at_ms = ?3 "
            "AND id > ?4)) AND id NOT IN (SELECT transaction_id FROM conflicts WHERE source = "
            "'reconciler') ORDER BY created_at_ms, id LIMIT ?2");
    if (st == NULL)
        return PL_EDB;
    sqlite3_bind_int64(st, 1, pending_before_ms);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)cap);
    sqlite3_bind_int64(st, 3, after_created_ms);
    db_bind_text(st, 4, after_id);
    int rc = sqlite3_step(st);
    for (; rc == SQLITE_ROW; rc = sqlite3_step(st)) {
        assert(*count_out < cap);
        db_column_copy(st, 0, rows[*count_out].id, ID_BYTES_MAX);
        rows[*count_out].created_at_ms = sqlite3_column_int64(st, 1);
        (*count_out)++;
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : db_rc(rc);
}

int ledger_status_counts(struct db *db, void (*fn)(const char *status, int64_t count, void *arg),
                         void *arg)
{
    sqlite3_stmt *st = db_stmt(db, "SELECT status, count(*) FROM transactions GROUP BY status");
    if (st == NULL)
        return PL_EDB;
    int rc = sqlite3_step(st);
    for (; rc == SQLITE_ROW; rc = sqlite3_step(st)) {
        fn((const char *)sqlite3_column_text(st, 0), sqlite3_column_int64(st, 1), arg);
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : db_rc(rc);
}

int ledger_txn_entries_sum(struct db *db, const char *txn_id, int64_t *sum_out)
{
    sqlite3_stmt *st =
        db_stmt(db, "SELECT COALESCE(SUM(amount_minor), 0) FROM entries WHERE transaction_id = ?1");
    if (st == NULL)
        return PL_EDB;
    db_bind_text(st, 1, txn_id);
    int rc = ledger_step_one(st);
    if (rc != 0)
        return rc;
    *sum_out = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return 0;
}
