/* payments.c owns bank.db: accounts, mandates, payments and idempotency keys.
 * Must not: know HTTP, hold requests, arm timers, or leave a transaction open on return.
 * Invariants:
 *  - no balance is ever below zero: a debit is `UPDATE … WHERE balance_minor >= amount`, and
 *    the schema's CHECK backs it up;
 *  - a payment moves money at most once: it leaves `processing` through one guarded
 *    `UPDATE … WHERE status = 'processing'`, in the same transaction as the balance change;
 *  - the deadline is checked inside that transaction (now < expires_at_ms), never on arrival;
 *  - one reference, at most one payment, forever (UNIQUE), whatever the idempotency key;
 *  - an idempotency key row is written in the same transaction as its payment;
 *  - a payment with a notify_url gets its webhook event (outbox.c) in the same transaction
 *    as the change it announces: `payment.processing` with the insert of an async payment,
 *    the outcome with the balance change (docs/api.md). */
#include "payments.h"

#include <assert.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "money.h"
#include "outbox.h"
#include "pl.h"

extern const char bank_schema_sql[];
extern const char bank_schema_002_sql[];

#define PAY_COLS                                                                                   \
    "id, reference, debit_account, credit_account, amount_minor, currency, mode, status, "         \
    "failure_reason, voided, notify_url, expires_at_ms, execute_at_ms, wallet_epoch, "             \
    "traceparent, idempotency_key, fingerprint, created_at_ms, settled_at_ms"

/* The canonical text hashed into a fingerprint: nine length-prefixed fields. */
#define PAYMENTS_CANON_BYTES_MAX 2048

static const struct payments_policy payments_policy_default = {
    .event_seed = PAYMENTS_POLICY_DEFAULT_SEED,
    .ignore_expiry = false,
};

bool payments_account_id_valid(const char *id)
{
    size_t n = 0;
    for (; id[n] != '\0'; n++) {
        char c = id[n];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
        if (!ok || n >= PAYMENTS_ACCOUNT_CHARS_MAX) {
            return false;
        }
    }
    return n >= 1;
}

/* ---------------------------------------------------------------- rows */

static void payments_read_row(sqlite3_stmt *s, struct payment *p)
{
    db_column_copy(s, 0, p->id, sizeof p->id);
    db_column_copy(s, 1, p->reference, sizeof p->reference);
    db_column_copy(s, 2, p->debit_account, sizeof p->debit_account);
    db_column_copy(s, 3, p->credit_account, sizeof p->credit_account);
    p->amount_minor = sqlite3_column_int64(s, 4);
    db_column_copy(s, 5, p->currency, sizeof p->currency);
    db_column_copy(s, 6, p->mode, sizeof p->mode);
    db_column_copy(s, 7, p->status, sizeof p->status);
    db_column_copy(s, 8, p->failure_reason, sizeof p->failure_reason);
    p->voided = sqlite3_column_int(s, 9) != 0;
    db_column_copy(s, 10, p->notify_url, sizeof p->notify_url);
    p->expires_at_ms = sqlite3_column_int64(s, 11);
    p->execute_at_ms = sqlite3_column_int64(s, 12);
    db_column_copy(s, 13, p->wallet_epoch, sizeof p->wallet_epoch);
    db_column_copy(s, 14, p->traceparent, sizeof p->traceparent);
    db_column_copy(s, 15, p->idempotency_key, sizeof p->idempotency_key);
    db_column_copy(s, 16, p->fingerprint, sizeof p->fingerprint);
    p->created_at_ms = sqlite3_column_int64(s, 17);
    p->settled_at_ms = sqlite3_column_int64(s, 18); /* NULL reads as 0 */
}

/* Steps a one-row lookup: 0 with *p filled, PL_ENOTFOUND, or a db_rc error. */
static int payments_step_one(sqlite3_stmt *s, struct payment *p)
{
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        payments_read_row(s, p);
        return PL_OK;
    }
    return rc == SQLITE_DONE ? PL_ENOTFOUND : db_rc(rc);
}

int payments_get(struct db *db, const char *id, struct payment *out)
{
    sqlite3_stmt *s = db_stmt(db, "SELECT " PAY_COLS " FROM payments WHERE id = ?1");
    if (s == NULL) {
        return PL_EDB;
    }
    db_bind_text(s, 1, id);
    int rc = payments_step_one(s, out);
    sqlite3_reset(s);
    return rc;
}

int payments_get_by_reference(struct db *db, const char *reference, struct payment *out)
{
    sqlite3_stmt *s = db_stmt(db, "SELECT " PAY_COLS " FROM payments WHERE reference = ?1");
    if (s == NULL) {
        return PL_EDB;
    }
    db_bind_text(s, 1, reference);
    int rc = payments_step_one(s, out);
    sqlite3_reset(s);
    return rc;
}

/* ---------------------------------------------------------------- setup */

int payments_init(struct db *db, const char *nodal_account, int64_t now_ms)
{
    assert(payments_account_id_valid(nodal_account));
    const char *const migrations[] = {bank_schema_sql, bank_schema_002_sql};
    int rc = db_migrate(db, migrations, PL_ARRAY_LEN(migrations));
    if (rc != 0) {
        return rc;
    }
    sqlite3_stmt *s = db_stmt(db, "INSERT OR IGNORE INTO accounts (id, owner, balance_minor, "
                                  "created_at_ms) VALUES (?1, 'paylab (nodal)', 0, ?2)");
    if (s == NULL) {
        return PL_EDB;
    }
    db_bind_text(s, 1, nodal_account);
    sqlite3_bind_int64(s, 2, now_ms);
    return db_exec_stmt(s);
}

/* ---------------------------------------------------------------- accounts, mandates */

int payments_account_get(struct db *db, const char *id, struct account *out)
{
    sqlite3_stmt *s = db_stmt(db, "SELECT id, owner, balance_minor, created_at_ms "
                                  "FROM accounts WHERE id = ?1");
    if (s == NULL) {
        return PL_EDB;
    }
    db_bind_text(s, 1, id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        db_column_copy(s, 0, out->id, sizeof out->id);
        db_column_copy(s, 1, out->owner, sizeof out->owner);
        out->balance_minor = sqlite3_column_int64(s, 2);
        out->created_at_ms = sqlite3_column_int64(s, 3);
    }
    sqlite3_reset(s);
    if (rc == SQLITE_ROW) {
        return PL_OK;
    }
    return rc == SQLITE_DONE ? PL_ENOTFOUND : db_rc(rc);
}

int payments_account_create(struct db *db, const char *id, const char *owner, int64_t opening_minor,
                            int64_t now_ms, struct account *out)
{
    assert(payments_account_id_valid(id));
    assert(opening_minor >= 0 && opening_minor <= MONEY_AMOUNT_MINOR_MAX);
    sqlite3_stmt *s = db_stmt(db, "INSERT INTO accounts (id, owner, balance_minor, "
                                  "created_at_ms) VALUES (?1, ?2, ?3, ?4)");
    if (s == NULL) {
        return PL_EDB;
    }
    db_bind_text(s, 1, id);
    db_bind_text(s, 2, owner);
    sqlite3_bind_int64(s, 3, opening_minor);
    sqlite3_bind_int64(s, 4, now_ms);
    int rc = db_exec_stmt(s); /* one statement: SQLite's own autocommit transaction */
    if (rc != 0) {
        return rc;
    }
    pl_strlcpy(out->id, id, sizeof out->id);
    pl_strlcpy(out->owner, owner, sizeof out->owner);
    out->balance_minor = opening_minor;
    out->created_at_ms = now_ms;
    return PL_OK;
}

/* 0 when the account exists, PL_ENOTFOUND, or an error; used inside transactions. */
static int payments_account_exists(struct db *db, const char *id)
{
    sqlite3_stmt *s = db_stmt(db, "SELECT 1 FROM accounts WHERE id = ?1");
    if (s == NULL) {
        return PL_EDB;
    }
    db_bind_text(s, 1, id);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc == SQLITE_ROW) {
        return PL_OK;
    }
    return rc == SQLITE_DONE ? PL_ENOTFOUND : db_rc(rc);
}

static int payments_mandate_insert(struct db *db, const char *account, const char *payee,
                                   int64_t now_ms, struct mandate *out, bool *created)
{
    sqlite3_stmt *s = db_stmt(db, "INSERT OR IGNORE INTO mandates (account, payee, "
                                  "created_at_ms) VALUES (?1, ?2, ?3)");
    if (s == NULL) {
        return PL_EDB;
    }
    db_bind_text(s, 1, account);
    db_bind_text(s, 2, payee);
    sqlite3_bind_int64(s, 3, now_ms);
    int rc = db_exec_stmt(s);
    if (rc != 0) {
        return rc;
    }
    *created = sqlite3_changes(db->handle) == 1;
    s = db_stmt(db, "SELECT created_at_ms FROM mandates WHERE account = ?1 AND payee = ?2");
    if (s == NULL) {
        return PL_EDB;
    }
    db_bind_text(s, 1, account);
    db_bind_text(s, 2, payee);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        out->created_at_ms = sqlite3_column_int64(s, 0);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_ROW) {
        return rc == SQLITE_DONE ? PL_EDB : db_rc(rc);
    }
    pl_strlcpy(out->account, account, sizeof out->account);
    pl_strlcpy(out->payee, payee, sizeof out->payee);
    return PL_OK;
}

int payments_mandate_create(struct db *db, const char *account, const char *payee, int64_t now_ms,
                            struct mandate *out, bool *created)
{
    assert(payments_account_id_valid(account));
    assert(payments_account_id_valid(payee));
    int rc = db_begin(db);
    if (rc != 0) {
        return rc;
    }
    rc = payments_account_exists(db, account);
    if (rc == 0) {
        rc = payments_account_exists(db, payee);
    }
    if (rc == 0) {
        rc = payments_mandate_insert(db, account, payee, now_ms, out, created);
    }
    if (rc != 0) {
        db_rollback(db);
        return rc;
    }
    return db_commit(db);
}

/* ---------------------------------------------------------------- fingerprint */

static size_t payments_canon_put(char *buf, size_t used, const char *name, const char *value)
{
    const char *v = value != NULL ? value : "";
    /* "-" marks NULL, so an absent optional field differs from an empty one. */
    int n = snprintf(buf + used, PAYMENTS_CANON_BYTES_MAX - used, "%s=%c%zu:%s\n", name,
                     value != NULL ? '+' : '-', strlen(v), v);
    assert(n > 0 && (size_t)n < PAYMENTS_CANON_BYTES_MAX - used); /* fields are bounded */
    return used + (size_t)n;
}

void payments_fingerprint(const struct payment_request *req,
                          char out[PAYMENTS_FINGERPRINT_CHARS + 1])
{
    char buf[PAYMENTS_CANON_BYTES_MAX];
    char amount[24];
    char expires[24];
    snprintf(amount, sizeof amount, "%lld", (long long)req->amount_minor);
    snprintf(expires, sizeof expires, "%lld", (long long)req->expires_at_ms);
    size_t n = 0;
    n = payments_canon_put(buf, n, "reference", req->reference);
    n = payments_canon_put(buf, n, "debit_account", req->debit_account);
    n = payments_canon_put(buf, n, "credit_account", req->credit_account);
    n = payments_canon_put(buf, n, "amount_minor", amount);
    n = payments_canon_put(buf, n, "currency", req->currency);
    n = payments_canon_put(buf, n, "mode", req->mode);
    n = payments_canon_put(buf, n, "notify_url", req->notify_url);
    n = payments_canon_put(buf, n, "expires_at_ms", expires);
    n = payments_canon_put(buf, n, "wallet_epoch", req->wallet_epoch);

    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int md_bytes = 0;
    int ok = EVP_Digest(buf, n, md, &md_bytes, EVP_sha256(), NULL);
    assert(ok == 1 && md_bytes == 32);
    (void)ok;
    static const char hex[] = "0123456789abcdef";
    for (unsigned int i = 0; i < 32; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 0xf];
    }
    out[PAYMENTS_FINGERPRINT_CHARS] = '\0';
}

/* ---------------------------------------------------------------- execution */

/* Sets the outcome of a processing payment; exactly one row must change. */
static int payments_settle_row(struct db *db, struct payment *p, const char *status,
                               const char *failure_reason, int64_t now_ms)
{
    sqlite3_stmt *s = db_stmt(db, "UPDATE payments SET status = ?2, failure_reason = ?3, "
                                  "settled_at_ms = ?4 WHERE id = ?1 AND status = 'processing'");
    if (s == NULL) {
        return PL_EDB;
    }
    db_bind_text(s, 1, p->id);
    db_bind_text(s, 2, status);
    db_bind_text(s, 3, failure_reason);
    sqlite3_bind_int64(s, 4, now_ms);
    int rc = db_exec_stmt(s);
    if (rc != 0) {
        return rc;
    }
    if (sqlite3_changes(db->handle) != 1) {
        log_error("payment not processing at settle", "payment=%s", p->id);
        return PL_EDB;
    }
    pl_strlcpy(p->status, status, sizeof p->status);
    pl_strlcpy(p->failure_reason, failure_reason != NULL ? failure_reason : "",
               sizeof p->failure_reason);
    p->settled_at_ms = now_ms;
    return PL_OK;
}

/* Moves the money: debit guarded by the balance, then credit. *moved false on short funds. */
static int payments_move(struct db *db, const struct payment *p, bool *moved)
{
    sqlite3_stmt *s = db_stmt(db, "UPDATE accounts SET balance_minor = balance_minor - ?2 "
                                  "WHERE id = ?1 AND balance_minor >= ?2");
    if (s == NULL) {
        return PL_EDB;
    }
    db_bind_text(s, 1, p->debit_account);
    sqlite3_bind_int64(s, 2, p->amount_minor);
    int rc = db_exec_stmt(s);
    if (rc != 0) {
        return rc;
    }
    *moved = sqlite3_changes(db->handle) == 1;
    if (!*moved) {
        return PL_OK;
    }
    s = db_stmt(db, "UPDATE accounts SET balance_minor = balance_minor + ?2 WHERE id = ?1");
    if (s == NULL) {
        return PL_EDB;
    }
    db_bind_text(s, 1, p->credit_account);
    sqlite3_bind_int64(s, 2, p->amount_minor);
    rc = db_exec_stmt(s);
    if (rc == 0 && sqlite3_changes(db->handle) != 1) {
        log_error("credit account vanished", "payment=%s account=%s", p->id, p->credit_account);
        rc = PL_EDB;
    }
    return rc;
}

/* Decides the outcome and moves the money, inside the caller's transaction. */
static int payments_settle_locked(struct db *db, const struct payments_policy *pol,
                                  struct payment *p, int64_t now_ms)
{
    bool late = now_ms >= p->expires_at_ms;
    if (late && !pol->ignore_expiry) {
        return payments_settle_row(db, p, "failed", "expired", now_ms);
    }
    if (late) {
        log_warn("UNSAFE --unsafe-ignore-expiry: executing a payment past its deadline",
                 "payment=%s reference=%s late_ms=%lld", p->id, p->reference,
                 (long long)(now_ms - p->expires_at_ms));
    }
    bool moved = false;
    int rc = payments_move(db, p, &moved);
    if (rc != 0) {
        return rc;
    }
    if (!moved) {
        return payments_settle_row(db, p, "failed", "insufficient_funds", now_ms);
    }
    return payments_settle_row(db, p, "succeeded", NULL, now_ms);
}

/* The execute step, inside the caller's transaction: the outcome and its webhook event
 * commit or roll back together with the balance change. */
static int payments_execute_locked(struct db *db, const struct payments_policy *pol,
                                   struct payment *p, int64_t now_ms)
{
    assert(db->in_txn);
    assert(strcmp(p->status, "processing") == 0);
    assert(!p->voided);
    assert(p->amount_minor > 0);
    int rc = payments_settle_locked(db, pol, p, now_ms);
    if (rc == 0) {
        rc = outbox_add_locked(db, p, pol->event_seed, now_ms);
    }
    return rc;
}

int payments_execute(struct db *db, const char *id, int64_t now_ms, struct payment *out,
                     bool *executed)
{
    return payments_execute_with(db, &payments_policy_default, id, now_ms, out, executed);
}

int payments_execute_with(struct db *db, const struct payments_policy *pol, const char *id,
                          int64_t now_ms, struct payment *out, bool *executed)
{
    *executed = false;
    int rc = db_begin(db);
    if (rc != 0) {
        return rc;
    }
    rc = payments_get(db, id, out);
    if (rc == 0 && strcmp(out->status, "processing") == 0) {
        rc = payments_execute_locked(db, pol, out, now_ms);
        *executed = rc == 0;
    }
    if (rc != 0) {
        *executed = false;
        db_rollback(db);
        return rc;
    }
    rc = db_commit(db);
    if (rc != 0) {
        *executed = false;
    }
    return rc;
}

/* ---------------------------------------------------------------- creation */

/* Same key seen before: decides replay or reuse. PL_ENOTFOUND when the key is new. */
static int payments_check_key(struct db *db, const struct payment_request *req,
                              const char *fingerprint, struct payment *out,
                              enum payments_create_result *result)
{
    sqlite3_stmt *s = db_stmt(db, "SELECT fingerprint, payment_id FROM idempotency_keys "
                                  "WHERE key = ?1");
    if (s == NULL) {
        return PL_EDB;
    }
    db_bind_text(s, 1, req->idempotency_key);
    char stored_fp[PAYMENTS_FINGERPRINT_CHARS + 1];
    char payment_id[ID_BYTES_MAX];
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        db_column_copy(s, 0, stored_fp, sizeof stored_fp);
        db_column_copy(s, 1, payment_id, sizeof payment_id);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_ROW) {
        return rc == SQLITE_DONE ? PL_ENOTFOUND : db_rc(rc);
    }
    if (strcmp(stored_fp, fingerprint) != 0) {
        *result = PAYMENTS_KEY_REUSED;
        return PL_OK;
    }
    *result = PAYMENTS_REPLAY_KEY;
    rc = payments_get(db, payment_id, out);
    return rc == PL_ENOTFOUND ? PL_EDB : rc; /* the key row references it */
}

/* Known reference under another key. PL_ENOTFOUND when the reference is new. A voided
 * reference answers as it stands: it can never execute, whatever is asked now. */
static int payments_check_reference(struct db *db, const struct payment_request *req,
                                    const char *fingerprint, struct payment *out,
                                    enum payments_create_result *result)
{
    int rc = payments_get_by_reference(db, req->reference, out);
    if (rc != 0) {
        return rc;
    }
    bool same = out->voided || strcmp(out->fingerprint, fingerprint) == 0;
    *result = same ? PAYMENTS_REFERENCE_KNOWN : PAYMENTS_REFERENCE_REUSED;
    return PL_OK;
}

/* Accounts and mandate. 0 with *result PAYMENTS_CREATED when the payment may proceed. */
static int payments_check_parties(struct db *db, const struct payment_request *req,
                                  const char *nodal_account, enum payments_create_result *result)
{
    int rc = payments_account_exists(db, req->debit_account);
    if (rc == 0) {
        rc = payments_account_exists(db, req->credit_account);
    }
    if (rc == PL_ENOTFOUND) {
        *result = PAYMENTS_UNKNOWN_ACCOUNT;
        return PL_OK;
    }
    if (rc != 0 || strcmp(req->debit_account, nodal_account) == 0) {
        *result = PAYMENTS_CREATED;
        return rc;
    }
    sqlite3_stmt *s = db_stmt(db, "SELECT 1 FROM mandates WHERE account = ?1 AND payee = ?2");
    if (s == NULL) {
        return PL_EDB;
    }
    db_bind_text(s, 1, req->debit_account);
    db_bind_text(s, 2, req->credit_account);
    rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        return db_rc(rc);
    }
    *result = rc == SQLITE_ROW ? PAYMENTS_CREATED : PAYMENTS_MANDATE_MISSING;
    return PL_OK;
}

static int payments_insert(struct db *db, const struct payment_request *req, const char *id,
                           const char *fingerprint, int64_t now_ms, int64_t execute_at_ms)
{
    sqlite3_stmt *s = db_stmt(
        db, "INSERT INTO payments (id, reference, debit_account, credit_account, amount_minor, "
            "currency, mode, status, voided, notify_url, expires_at_ms, execute_at_ms, "
            "wallet_epoch, traceparent, idempotency_key, fingerprint, created_at_ms) VALUES "
            "(?1, ?2, ?3, ?4, ?5, ?6, ?7, 'processing', 0, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)");
    if (s == NULL) {
        return PL_EDB;
    }
    db_bind_text(s, 1, id);
    db_bind_text(s, 2, req->reference);
    db_bind_text(s, 3, req->debit_account);
    db_bind_text(s, 4, req->credit_account);
    sqlite3_bind_int64(s, 5, req->amount_minor);
    db_bind_text(s, 6, req->currency);
    db_bind_text(s, 7, req->mode);
    db_bind_text(s, 8, req->notify_url);
    sqlite3_bind_int64(s, 9, req->expires_at_ms);
    sqlite3_bind_int64(s, 10, execute_at_ms);
    db_bind_text(s, 11, req->wallet_epoch);
    db_bind_text(s, 12, req->traceparent);
    db_bind_text(s, 13, req->idempotency_key);
    db_bind_text(s, 14, fingerprint);
    sqlite3_bind_int64(s, 15, now_ms);
    int rc = db_exec_stmt(s);
    if (rc != 0) {
        return rc;
    }
    s = db_stmt(db, "INSERT INTO idempotency_keys (key, fingerprint, payment_id, created_at_ms) "
                    "VALUES (?1, ?2, ?3, ?4)");
    if (s == NULL) {
        return PL_EDB;
    }
    db_bind_text(s, 1, req->idempotency_key);
    db_bind_text(s, 2, fingerprint);
    db_bind_text(s, 3, id);
    sqlite3_bind_int64(s, 4, now_ms);
    return db_exec_stmt(s);
}

/* Everything payments_create does between BEGIN and COMMIT. */
static int payments_create_locked(struct db *db, const struct payments_policy *pol,
                                  const struct payment_request *req, const char *nodal_account,
                                  int64_t now_ms, int64_t execute_at_ms, struct payment *out,
                                  enum payments_create_result *result)
{
    char fingerprint[PAYMENTS_FINGERPRINT_CHARS + 1];
    payments_fingerprint(req, fingerprint);
    int rc = payments_check_key(db, req, fingerprint, out, result);
    if (rc != PL_ENOTFOUND) {
        return rc;
    }
    rc = payments_check_reference(db, req, fingerprint, out, result);
    if (rc != PL_ENOTFOUND) {
        return rc;
    }
    rc = payments_check_parties(db, req, nodal_account, result);
    if (rc != 0 || *result != PAYMENTS_CREATED) {
        return rc;
    }
    char id[ID_BYTES_MAX];
    rc = ids_new("bp_", id, sizeof id);
    if (rc != 0) {
        return rc;
    }
    rc = payments_insert(db, req, id, fingerprint, now_ms, execute_at_ms);
    if (rc == 0) {
        rc = payments_get(db, id, out);
    }
    /* async: accepted now, announced now, executed by the scheduler (even when due at once),
     * so `processing` always precedes the outcome. sync: run now when no latency is due. */
    bool async = strcmp(req->mode, "async") == 0;
    if (rc == 0 && async) {
        rc = outbox_add_locked(db, out, pol->event_seed, now_ms);
    }
    if (rc == 0 && !async && execute_at_ms <= now_ms) {
        rc = payments_execute_locked(db, pol, out, now_ms);
    }
    return rc;
}

int payments_create(struct db *db, const struct payment_request *req, const char *nodal_account,
                    int64_t now_ms, int64_t execute_at_ms, struct payment *out,
                    enum payments_create_result *result)
{
    return payments_create_with(db, &payments_policy_default, req, nodal_account, now_ms,
                                execute_at_ms, out, result);
}

int payments_create_with(struct db *db, const struct payments_policy *pol,
                         const struct payment_request *req, const char *nodal_account,
                         int64_t now_ms, int64_t execute_at_ms, struct payment *out,
                         enum payments_create_result *result)
{
    assert(money_amount_valid(req->amount_minor));
    assert(strcmp(req->debit_account, req->credit_account) != 0);
    assert(execute_at_ms >= now_ms);
    int rc = db_begin(db);
    if (rc != 0) {
        return rc;
    }
    rc = payments_create_locked(db, pol, req, nodal_account, now_ms, execute_at_ms, out, result);
    if (rc != 0 || *result != PAYMENTS_CREATED) {
        /* Nothing was written on the other outcomes: ending the read is all there is. */
        db_rollback(db);
        return rc;
    }
    return db_commit(db);
}

/* ---------------------------------------------------------------- void */

static int payments_insert_void(struct db *db, const char *reference, int64_t now_ms,
                                struct payment *out)
{
    char id[ID_BYTES_MAX];
    int rc = ids_new("bp_", id, sizeof id);
    if (rc != 0) {
        return rc;
    }
    sqlite3_stmt *s = db_stmt(
        db, "INSERT INTO payments (id, reference, amount_minor, currency, mode, status, "
            "failure_reason, voided, expires_at_ms, execute_at_ms, created_at_ms, settled_at_ms) "
            "VALUES (?1, ?2, 0, 'INR', 'void', 'failed', 'expired', 1, ?3, ?3, ?3, ?3)");
    if (s == NULL) {
        return PL_EDB;
    }
    db_bind_text(s, 1, id);
    db_bind_text(s, 2, reference);
    sqlite3_bind_int64(s, 3, now_ms);
    rc = db_exec_stmt(s);
    if (rc != 0) {
        return rc;
    }
    return payments_get(db, id, out);
}

int payments_void(struct db *db, const char *reference, int64_t now_ms, struct payment *out,
                  bool *created, bool *executed)
{
    bool pretended = false;
    return payments_void_with(db, &payments_policy_default, reference, now_ms, out, created,
                              executed, &pretended);
}

/* --unsafe-ignore-expiry: the answer a void would give had it expired p, while p stays
 * processing in bank.db and executes when due. */
static void payments_pretend_expired(struct payment *p, int64_t now_ms)
{
    pl_strlcpy(p->status, "failed", sizeof p->status);
    pl_strlcpy(p->failure_reason, "expired", sizeof p->failure_reason);
    p->settled_at_ms = now_ms;
}

int payments_void_with(struct db *db, const struct payments_policy *pol, const char *reference,
                       int64_t now_ms, struct payment *out, bool *created, bool *executed,
                       bool *pretended)
{
    *created = false;
    *executed = false;
    *pretended = false;
    int rc = db_begin(db);
    if (rc != 0) {
        return rc;
    }
    rc = payments_get_by_reference(db, reference, out);
    bool due = rc == 0 && strcmp(out->status, "processing") == 0 && now_ms >= out->expires_at_ms;
    if (rc == PL_ENOTFOUND) {
        rc = payments_insert_void(db, reference, now_ms, out);
        *created = rc == 0;
    } else if (due && !pol->ignore_expiry) {
        rc = payments_execute_locked(db, pol, out, now_ms);
        *executed = rc == 0;
    }
    if (rc != 0) {
        db_rollback(db);
        *created = false;
        *executed = false;
        return rc;
    }
    rc = db_commit(db);
    if (rc != 0) {
        *created = false;
        *executed = false;
        return rc;
    }
    if (due && pol->ignore_expiry) {
        payments_pretend_expired(out, now_ms);
        *pretended = true;
    }
    return rc;
}

/* ---------------------------------------------------------------- scheduling, pruning */

int payments_next_due(struct db *db, int64_t *execute_at_ms)
{
    sqlite3_stmt *s = db_stmt(db, "SELECT min(execute_at_ms) FROM payments "
                                  "WHERE status = 'processing'");
    return s != NULL ? db_query_int64(s, execute_at_ms) : PL_EDB;
}

int payments_due(struct db *db, int64_t now_ms, char (*ids)[ID_BYTES_MAX], size_t cap,
                 size_t *count)
{
    assert(cap > 0 && cap <= PAYMENTS_DUE_BATCH_MAX);
    *count = 0;
    sqlite3_stmt *s = db_stmt(db, "SELECT id FROM payments WHERE status = 'processing' AND "
                                  "execute_at_ms <= ?1 ORDER BY execute_at_ms LIMIT ?2");
    if (s == NULL) {
        return PL_EDB;
    }
    sqlite3_bind_int64(s, 1, now_ms);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)cap);
    int rc = sqlite3_step(s);
    while (rc == SQLITE_ROW && *count < cap) {
        db_column_copy(s, 0, ids[*count], ID_BYTES_MAX);
        (*count)++;
        rc = sqlite3_step(s);
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? PL_OK : db_rc(rc);
}

int payments_prune_keys(struct db *db, int64_t now_ms, size_t *deleted)
{
    *deleted = 0;
    sqlite3_stmt *s = db_stmt(db, "DELETE FROM idempotency_keys WHERE key IN (SELECT key FROM "
                                  "idempotency_keys WHERE created_at_ms < ?1 LIMIT ?2)");
    if (s == NULL) {
        return PL_EDB;
    }
    sqlite3_bind_int64(s, 1, now_ms - PAYMENTS_KEY_TTL_MS);
    sqlite3_bind_int64(s, 2, PAYMENTS_PRUNE_BATCH_MAX);
    int rc = db_exec_stmt(s);
    if (rc == 0) {
        *deleted = (size_t)sqlite3_changes(db->handle);
    }
    return rc;
}
