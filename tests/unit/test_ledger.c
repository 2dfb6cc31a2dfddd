/* test_ledger.c: the wallet's double-entry ledger and its settlement (ledger.c, settle.c,
 * events.c) on a real wallet.db in a temp dir: postings and the invariants of docs/ledger.md after
 * each, the state machine, settling twice, conflicts, idempotency-key rows, the timeline,
 * event rows, amount boundaries and SQLITE_BUSY. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "db.h"
#include "ids.h"
#include "log.h"
#include "money.h"
#include "pl.h"
#include "wallet.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MASK(s) (1u << (unsigned)(s))
#define T0_MS 1700000000000LL

struct fixture {
    char dir[64];
    char path[128];
    struct wallet_ctx *ctx; /* large (pending records): on the heap */
};

/* ===================================================================== queries ====== */

/* One integer from a query without parameters. sql is a literal (db_stmt caches it). */
static int64_t q_int(struct db *db, const char *sql)
{
    sqlite3_stmt *st = db_stmt(db, sql);
    assert_non_null(st);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return v;
}

/* One integer from a query with one text parameter ?1. */
static int64_t q_int_s(struct db *db, const char *sql, const char *arg)
{
    sqlite3_stmt *st = db_stmt(db, sql);
    assert_non_null(st);
    assert_int_equal(db_bind_text(st, 1, arg), PL_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return v;
}

static int64_t balance(struct db *db, const char *account)
{
    int64_t v = -1;
    assert_int_equal(ledger_balance(db, account, &v), PL_OK);
    return v;
}

static int64_t wallet_balance(struct db *db, const char *user)
{
    char account[WALLET_ACCOUNT_ID_BYTES_MAX];
    ledger_wallet_account(user, account, sizeof account);
    return balance(db, account);
}

static int64_t entries_of(struct db *db, const char *txn_id)
{
    return q_int_s(db, "SELECT count(*) FROM entries WHERE transaction_id = ?1", txn_id);
}

static int64_t log_lines_of(struct db *db, const char *txn_id)
{
    return q_int_s(db, "SELECT count(*) FROM transaction_log WHERE transaction_id = ?1", txn_id);
}

static int64_t events_total(struct db *db)
{
    return q_int(db, "SELECT count(*) FROM events");
}

/* docs/ledger.md invariants 1-3, and the event stream's: each user's seqs are 1..n. */
static void check_invariants(struct db *db)
{
    /* 1. the sum of all balances is 0 */
    assert_int_equal(q_int(db, "SELECT COALESCE(SUM(balance_minor), 0) FROM accounts"), 0);
    /* 2a. every balance equals the sum of its entries */
    assert_int_equal(q_int(db, "SELECT count(*) FROM accounts a WHERE a.balance_minor <> "
                               "(SELECT COALESCE(SUM(e.amount_minor), 0) FROM entries e "
                               "WHERE e.account_id = a.id)"),
                     0);
    /* 2b. every transaction's entries sum to 0 */
    assert_int_equal(q_int(db, "SELECT count(*) FROM (SELECT transaction_id FROM entries "
                               "GROUP BY transaction_id HAVING SUM(amount_minor) <> 0)"),
                     0);
    /* 3. no wallet (and no payouts hold) is negative */
    assert_int_equal(
        q_int(db, "SELECT count(*) FROM accounts WHERE kind <> 'external' AND balance_minor < 0"),
        0);
    /* events: per user, gapless from 1 */
    assert_int_equal(q_int(db, "SELECT count(*) FROM (SELECT user FROM events GROUP BY user "
                               "HAVING MIN(seq) <> 1 OR MAX(seq) <> count(*))"),
                     0);
}

/* ===================================================================== writes ======= */

static void make_txn(struct ledger_txn *t, enum txn_kind kind, const char *user,
                     const char *counterparty, int64_t amount_minor)
{
    memset(t, 0, sizeof *t);
    assert_int_equal(ids_new("wtx_", t->id, sizeof t->id), PL_OK);
    t->kind = kind;
    t->mode = kind == TXN_KIND_P2P ? TXN_MODE_INTERNAL : TXN_MODE_SYNC;
    t->status = kind == TXN_KIND_P2P ? TXN_SUCCEEDED : TXN_PENDING;
    t->settled_by = kind == TXN_KIND_P2P ? SETTLED_RESPONSE : SETTLED_NONE;
    t->amount_minor = amount_minor;
    pl_strlcpy(t->user, user, sizeof t->user);
    pl_strlcpy(t->counterparty, counterparty, sizeof t->counterparty);
    t->expires_at_ms = kind == TXN_KIND_P2P ? 0 : T0_MS + 60000;
    t->created_at_ms = T0_MS;
    t->updated_at_ms = T0_MS;
}

/* What api.c does for a top-up or withdrawal: the row, the hold (withdrawal), the timeline
 * line and the events, in one commit. Returns the first error (rolled back). */
static int record_payment(struct wallet_ctx *ctx, const struct ledger_txn *t)
{
    int rc = db_begin(&ctx->db);
    if (rc != 0)
        return rc;
    rc = ledger_txn_insert(&ctx->db, t);
    if (rc == 0 && t->kind == TXN_KIND_WITHDRAWAL) {
        char wallet[WALLET_ACCOUNT_ID_BYTES_MAX];
        ledger_wallet_account(t->user, wallet, sizeof wallet);
        rc = ledger_post(&ctx->db, t->id, wallet, LEDGER_ACCOUNT_PAYOUTS, t->amount_minor,
                         t->created_at_ms);
    }
    if (rc == 0)
        rc = ledger_log(&ctx->db, t->id, t->created_at_ms, "created", t->status, "requested");
    if (rc == 0)
        rc = events_record(ctx, t, t->user, t->kind == TXN_KIND_WITHDRAWAL, t->created_at_ms);
    if (rc != 0) {
        db_rollback(&ctx->db);
        return rc;
    }
    return db_commit(&ctx->db);
}

/* What api.c does for a transfer: row, posting, timeline, both users' events, one commit. */
static int record_transfer(struct wallet_ctx *ctx, const struct ledger_txn *t)
{
    char from[WALLET_ACCOUNT_ID_BYTES_MAX], to[WALLET_ACCOUNT_ID_BYTES_MAX];
    ledger_wallet_account(t->user, from, sizeof from);
    ledger_wallet_account(t->counterparty, to, sizeof to);
    int rc = db_begin(&ctx->db);
    if (rc != 0)
        return rc;
    rc = ledger_txn_insert(&ctx->db, t);
    if (rc == 0)
        rc = ledger_post(&ctx->db, t->id, from, to, t->amount_minor, t->created_at_ms);
    if (rc == 0)
        rc = ledger_log(&ctx->db, t->id, t->created_at_ms, "settled", t->status, "transfer");
    if (rc == 0)
        rc = events_record(ctx, t, t->user, true, t->created_at_ms);
    if (rc == 0)
        rc = events_record(ctx, t, t->counterparty, true, t->created_at_ms);
    if (rc != 0) {
        db_rollback(&ctx->db);
        return rc;
    }
    return db_commit(&ctx->db);
}

static struct settle_outcome outcome(enum txn_status to, enum txn_settled_by by)
{
    struct settle_outcome o = {
        .to = to,
        .by = to == TXN_UNKNOWN ? SETTLED_NONE : by,
        .failure_reason = to == TXN_FAILED ? "insufficient_funds" : NULL,
        .bank_payment_id = NULL,
        .event = to == TXN_UNKNOWN ? "timeout" : "bank_answer",
        .reason = "test outcome",
        .idem_status_code = 0,
    };
    return o;
}

/* settle_apply; returns its rc and whether it moved the transaction. */
static int settle(struct wallet_ctx *ctx, const char *txn_id, enum txn_status to,
                  enum txn_settled_by by, struct ledger_txn *out, bool *changed)
{
    struct settle_outcome o = outcome(to, by);
    return settle_apply(ctx, txn_id, &o, out, changed);
}

/* A pending top-up of amount for user, settled succeeded: the wallet is funded. */
static void fund(struct wallet_ctx *ctx, const char *user, int64_t amount, struct ledger_txn *t)
{
    make_txn(t, TXN_KIND_TOPUP, user, "HDFC-TEST", amount);
    assert_int_equal(record_payment(ctx, t), PL_OK);
    struct ledger_txn out;
    bool changed = false;
    assert_int_equal(settle(ctx, t->id, TXN_SUCCEEDED, SETTLED_RESPONSE, &out, &changed), PL_OK);
    assert_true(changed);
    assert_int_equal(out.status, TXN_SUCCEEDED);
}

/* ===================================================================== fixture ====== */

static void add_user(struct db *db, const char *user)
{
    assert_int_equal(db_begin(db), PL_OK);
    assert_int_equal(ledger_user_insert(db, user, NULL, "HDFC-TEST", T0_MS), PL_OK);
    assert_int_equal(db_commit(db), PL_OK);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "/tmp/paylab-test-ledger-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/wallet.db", f->dir);
    f->ctx = calloc(1, sizeof *f->ctx);
    assert_non_null(f->ctx);
    struct wallet_ctx *ctx = f->ctx;
    assert_int_equal(ledger_open(&ctx->db, f->path, T0_MS, ctx->epoch, sizeof ctx->epoch), PL_OK);
    assert_true(ctx->epoch[0] != '\0');
    add_user(&ctx->db, "alice");
    add_user(&ctx->db, "bob");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    db_close(&f->ctx->db);
    free(f->ctx);
    char file[160];
    const char *suffixes[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < PL_ARRAY_LEN(suffixes); i++) {
        snprintf(file, sizeof file, "%s%s", f->path, suffixes[i]);
        unlink(file);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

/* ===================================================================== open ========= */

static void test_open_bootstrap(void **state)
{
    struct fixture *f = *state;
    struct db *db = &f->ctx->db;
    assert_int_equal(balance(db, LEDGER_ACCOUNT_BANK), 0);
    assert_int_equal(balance(db, LEDGER_ACCOUNT_PAYOUTS), 0);
    assert_int_equal(wallet_balance(db, "alice"), 0);
    assert_int_equal(q_int(db, "SELECT version FROM schema_version"), 3);
    /* reopening keeps the epoch and adds nothing */
    char epoch[ID_BYTES_MAX];
    pl_strlcpy(epoch, f->ctx->epoch, sizeof epoch);
    db_close(db);
    char again[ID_BYTES_MAX];
    assert_int_equal(ledger_open(db, f->path, T0_MS + 1, again, sizeof again), PL_OK);
    assert_string_equal(again, epoch);
    assert_int_equal(q_int(db, "SELECT count(*) FROM accounts"), 4);
    /* a second user of the same name is refused */
    assert_int_equal(db_begin(db), PL_OK);
    assert_int_equal(ledger_user_insert(db, "alice", NULL, "HDFC-X", T0_MS), PL_ECONFLICT);
    db_rollback(db);
    check_invariants(db);
}

/* ===================================================================== postings ===== */

static void test_topup_settle_posts(void **state)
{
    struct fixture *f = *state;
    struct wallet_ctx *ctx = f->ctx;
    struct ledger_txn t;
    make_txn(&t, TXN_KIND_TOPUP, "alice", "HDFC-ALICE", 50000);
    assert_int_equal(record_payment(ctx, &t), PL_OK);
    assert_int_equal(entries_of(&ctx->db, t.id), 0); /* a pending top-up moves nothing */
    check_invariants(&ctx->db);

    struct ledger_txn out;
    bool changed = false;
    struct settle_outcome o = outcome(TXN_SUCCEEDED, SETTLED_WEBHOOK);
    o.bank_payment_id = "bp_test1";
    assert_int_equal(settle_apply(ctx, t.id, &o, &out, &changed), PL_OK);
    assert_true(changed);
    assert_int_equal(out.status, TXN_SUCCEEDED);
    assert_int_equal(out.settled_by, SETTLED_WEBHOOK);
    assert_string_equal(out.bank_payment_id, "bp_test1");
    assert_int_equal(wallet_balance(&ctx->db, "alice"), 50000);
    assert_int_equal(balance(&ctx->db, LEDGER_ACCOUNT_BANK), -50000);
    assert_int_equal(entries_of(&ctx->db, t.id), 2);
    int64_t sum = -1;
    assert_int_equal(ledger_txn_entries_sum(&ctx->db, t.id, &sum), PL_OK);
    assert_int_equal(sum, 0);
    assert_int_equal(q_int_s(&ctx->db,
                             "SELECT amount_minor FROM entries WHERE transaction_id = ?1 "
                             "AND account_id = 'external:bank'",
                             t.id),
                     -50000);
    check_invariants(&ctx->db);
}

static void test_p2p_posts(void **state)
{
    struct fixture *f = *state;
    struct wallet_ctx *ctx = f->ctx;
    struct ledger_txn top, t;
    fund(ctx, "alice", 50000, &top);
    make_txn(&t, TXN_KIND_P2P, "alice", "bob", 10000);
    assert_int_equal(record_transfer(ctx, &t), PL_OK);
    assert_int_equal(wallet_balance(&ctx->db, "alice"), 40000);
    assert_int_equal(wallet_balance(&ctx->db, "bob"), 10000);
    assert_int_equal(balance(&ctx->db, LEDGER_ACCOUNT_BANK), -50000);
    assert_int_equal(entries_of(&ctx->db, t.id), 2);
    check_invariants(&ctx->db);
    /* the whole balance, to the last paisa, may be sent */
    make_txn(&t, TXN_KIND_P2P, "alice", "bob", 40000);
    assert_int_equal(record_transfer(ctx, &t), PL_OK);
    assert_int_equal(wallet_balance(&ctx->db, "alice"), 0);
    assert_int_equal(wallet_balance(&ctx->db, "bob"), 50000);
    check_invariants(&ctx->db);
}

static void test_withdrawal_hold_then_success(void **state)
{
    struct fixture *f = *state;
    struct wallet_ctx *ctx = f->ctx;
    struct ledger_txn top, t, out;
    fund(ctx, "bob", 20000, &top);
    make_txn(&t, TXN_KIND_WITHDRAWAL, "bob", "HDFC-BOB", 5000);
    assert_int_equal(record_payment(ctx, &t), PL_OK);
    /* the hold */
    assert_int_equal(wallet_balance(&ctx->db, "bob"), 15000);
    assert_int_equal(balance(&ctx->db, LEDGER_ACCOUNT_PAYOUTS), 5000);
    assert_int_equal(entries_of(&ctx->db, t.id), 2);
    check_invariants(&ctx->db);
    bool changed = false;
    assert_int_equal(settle(ctx, t.id, TXN_SUCCEEDED, SETTLED_RESPONSE, &out, &changed), PL_OK);
    assert_true(changed);
    assert_int_equal(wallet_balance(&ctx->db, "bob"), 15000);
    assert_int_equal(balance(&ctx->db, LEDGER_ACCOUNT_PAYOUTS), 0);
    assert_int_equal(balance(&ctx->db, LEDGER_ACCOUNT_BANK), -15000);
    assert_int_equal(entries_of(&ctx->db, t.id), 4);
    check_invariants(&ctx->db);
}

static void test_withdrawal_hold_then_failure(void **state)
{
    struct fixture *f = *state;
    struct wallet_ctx *ctx = f->ctx;
    struct ledger_txn top, t, out;
    fund(ctx, "bob", 20000, &top);
    make_txn(&t, TXN_KIND_WITHDRAWAL, "bob", "HDFC-BOB", 5000);
    assert_int_equal(record_payment(ctx, &t), PL_OK);
    assert_int_equal(wallet_balance(&ctx->db, "bob"), 15000);
    check_invariants(&ctx->db);
    bool changed = false;
    assert_int_equal(settle(ctx, t.id, TXN_FAILED, SETTLED_RECONCILER, &out, &changed), PL_OK);
    assert_true(changed);
    assert_int_equal(out.status, TXN_FAILED);
    assert_string_equal(out.failure_reason, "insufficient_funds");
    /* the hold came back */
    assert_int_equal(wallet_balance(&ctx->db, "bob"), 20000);
    assert_int_equal(balance(&ctx->db, LEDGER_ACCOUNT_PAYOUTS), 0);
    assert_int_equal(balance(&ctx->db, LEDGER_ACCOUNT_BANK), -20000);
    assert_int_equal(entries_of(&ctx->db, t.id), 4);
    check_invariants(&ctx->db);
}

static void test_failed_topup_moves_nothing(void **state)
{
    struct fixture *f = *state;
    struct wallet_ctx *ctx = f->ctx;
    struct ledger_txn t, out;
    make_txn(&t, TXN_KIND_TOPUP, "alice", "HDFC-ALICE", 700);
    assert_int_equal(record_payment(ctx, &t), PL_OK);
    bool changed = false;
    assert_int_equal(settle(ctx, t.id, TXN_FAILED, SETTLED_RESPONSE, &out, &changed), PL_OK);
    assert_true(changed);
    assert_int_equal(entries_of(&ctx->db, t.id), 0);
    assert_int_equal(wallet_balance(&ctx->db, "alice"), 0);
    assert_int_equal(balance(&ctx->db, LEDGER_ACCOUNT_BANK), 0);
    check_invariants(&ctx->db);
}

static void test_p2p_insufficient_funds(void **state)
{
    struct fixture *f = *state;
    struct wallet_ctx *ctx = f->ctx;
    struct ledger_txn top, t;
    fund(ctx, "alice", 100, &top);
    int64_t events_before = events_total(&ctx->db);
    int64_t log_before = q_int(&ctx->db, "SELECT count(*) FROM transaction_log");
    make_txn(&t, TXN_KIND_P2P, "alice", "bob", 101);
    assert_int_equal(record_transfer(ctx, &t), LEDGER_EFUNDS);
    /* nothing changed: no row, no entries, no balances, no timeline, no events */
    struct ledger_txn got;
    assert_int_equal(ledger_txn_get(&ctx->db, t.id, &got), PL_ENOTFOUND);
    assert_int_equal(entries_of(&ctx->db, t.id), 0);
    assert_int_equal(wallet_balance(&ctx->db, "alice"), 100);
    assert_int_equal(wallet_balance(&ctx->db, "bob"), 0);
    assert_int_equal(events_total(&ctx->db), events_before);
    assert_int_equal(q_int(&ctx->db, "SELECT count(*) FROM transaction_log"), log_before);
    check_invariants(&ctx->db);
    /* ledger_post itself writes nothing when it refuses */
    assert_int_equal(db_begin(&ctx->db), PL_OK);
    int64_t changes_before = sqlite3_total_changes(ctx->db.handle);
    assert_int_equal(ledger_post(&ctx->db, top.id, "wallet:alice", "wallet:bob", 101, T0_MS),
                     LEDGER_EFUNDS);
    assert_int_equal(sqlite3_total_changes(ctx->db.handle), changes_before);
    /* so does a hold beyond the payouts account */
    assert_int_equal(
        ledger_post(&ctx->db, top.id, LEDGER_ACCOUNT_PAYOUTS, LEDGER_ACCOUNT_BANK, 1, T0_MS),
        LEDGER_EFUNDS);
    assert_int_equal(sqlite3_total_changes(ctx->db.handle), changes_before);
    db_rollback(&ctx->db);
    /* a withdrawal beyond the balance is refused the same way */
    make_txn(&t, TXN_KIND_WITHDRAWAL, "alice", "HDFC-ALICE", 101);
    assert_int_equal(record_payment(ctx, &t), LEDGER_EFUNDS);
    assert_int_equal(ledger_txn_get(&ctx->db, t.id, &got), PL_ENOTFOUND);
    check_invariants(&ctx->db);
}

static void test_check_constraint_backstop(void **state)
{
    struct fixture *f = *state;
    struct db *db = &f->ctx->db;
    /* SQL that skips ledger_post's guard still cannot make a wallet or the hold negative */
    sqlite3_stmt *st =
        db_stmt(db, "UPDATE accounts SET balance_minor = balance_minor - ?2 WHERE id = ?1");
    assert_non_null(st);
    db_bind_text(st, 1, "wallet:alice");
    sqlite3_bind_int64(st, 2, 1);
    assert_int_equal(db_exec_stmt(st), PL_ECONFLICT);
    st = db_stmt(db, "UPDATE accounts SET balance_minor = balance_minor - ?2 WHERE id = ?1");
    db_bind_text(st, 1, LEDGER_ACCOUNT_PAYOUTS);
    sqlite3_bind_int64(st, 2, 1);
    assert_int_equal(db_exec_stmt(st), PL_ECONFLICT);
    assert_int_equal(wallet_balance(db, "alice"), 0);
    assert_int_equal(balance(db, LEDGER_ACCOUNT_PAYOUTS), 0);
    /* external:bank is the one account allowed below zero */
    st = db_stmt(db, "UPDATE accounts SET balance_minor = balance_minor - ?2 WHERE id = ?1");
    db_bind_text(st, 1, LEDGER_ACCOUNT_BANK);
    sqlite3_bind_int64(st, 2, 1);
    assert_int_equal(db_exec_stmt(st), PL_OK);
    assert_int_equal(balance(db, LEDGER_ACCOUNT_BANK), -1);
}

/* ===================================================================== state machine */

/* A pending top-up of 1000 for alice; returns its id in t. */
static void pending_topup(struct wallet_ctx *ctx, struct ledger_txn *t)
{
    make_txn(t, TXN_KIND_TOPUP, "alice", "HDFC-ALICE", 1000);
    assert_int_equal(record_payment(ctx, t), PL_OK);
}

static void test_transitions_allowed(void **state)
{
    struct fixture *f = *state;
    struct wallet_ctx *ctx = f->ctx;
    struct ledger_txn a, b, c, d, out;
    bool changed = false;

    /* pending -> succeeded */
    pending_topup(ctx, &a);
    assert_int_equal(settle(ctx, a.id, TXN_SUCCEEDED, SETTLED_RESPONSE, &out, &changed), PL_OK);
    assert_true(changed);
    assert_int_equal(out.status, TXN_SUCCEEDED);
    assert_int_equal(entries_of(&ctx->db, a.id), 2);

    /* pending -> failed */
    pending_topup(ctx, &b);
    assert_int_equal(settle(ctx, b.id, TXN_FAILED, SETTLED_RESPONSE, &out, &changed), PL_OK);
    assert_true(changed);
    assert_int_equal(out.status, TXN_FAILED);

    /* pending -> unknown -> succeeded */
    pending_topup(ctx, &c);
    assert_int_equal(settle(ctx, c.id, TXN_UNKNOWN, SETTLED_NONE, &out, &changed), PL_OK);
    assert_true(changed);
    assert_int_equal(out.status, TXN_UNKNOWN);
    assert_int_equal(out.settled_by, SETTLED_NONE);
    assert_int_equal(entries_of(&ctx->db, c.id), 0);
    /* unknown -> unknown is not a move */
    assert_int_equal(settle(ctx, c.id, TXN_UNKNOWN, SETTLED_NONE, &out, &changed), PL_OK);
    assert_false(changed);
    assert_int_equal(settle(ctx, c.id, TXN_SUCCEEDED, SETTLED_RECONCILER, &out, &changed), PL_OK);
    assert_true(changed);
    assert_int_equal(out.status, TXN_SUCCEEDED);
    assert_int_equal(out.settled_by, SETTLED_RECONCILER);
    assert_int_equal(entries_of(&ctx->db, c.id), 2);

    /* pending -> unknown -> failed */
    pending_topup(ctx, &d);
    assert_int_equal(settle(ctx, d.id, TXN_UNKNOWN, SETTLED_NONE, &out, &changed), PL_OK);
    assert_int_equal(settle(ctx, d.id, TXN_FAILED, SETTLED_WEBHOOK, &out, &changed), PL_OK);
    assert_true(changed);
    assert_int_equal(out.status, TXN_FAILED);
    assert_int_equal(entries_of(&ctx->db, d.id), 0);

    assert_int_equal(wallet_balance(&ctx->db, "alice"), 2000);
    assert_int_equal(q_int(&ctx->db, "SELECT count(*) FROM conflicts"), 0);
    check_invariants(&ctx->db);
}

/* The row as stored, for before/after comparisons. */
static void snapshot(struct db *db, const char *id, struct ledger_txn *out)
{
    assert_int_equal(ledger_txn_get(db, id, out), PL_OK);
}

static void assert_same_row(const struct ledger_txn *a, const struct ledger_txn *b)
{
    assert_int_equal(a->status, b->status);
    assert_int_equal(a->settled_by, b->settled_by);
    assert_int_equal(a->updated_at_ms, b->updated_at_ms);
    assert_string_equal(a->failure_reason, b->failure_reason);
    assert_string_equal(a->bank_payment_id, b->bank_payment_id);
}

static void test_transitions_refused(void **state)
{
    struct fixture *f = *state;
    struct wallet_ctx *ctx = f->ctx;
    struct db *db = &ctx->db;
    struct ledger_txn ok, ko, unk, before, after, out;
    bool changed = true;
    pending_topup(ctx, &ok);
    assert_int_equal(settle(ctx, ok.id, TXN_SUCCEEDED, SETTLED_RESPONSE, &out, &changed), PL_OK);
    pending_topup(ctx, &ko);
    assert_int_equal(settle(ctx, ko.id, TXN_FAILED, SETTLED_RESPONSE, &out, &changed), PL_OK);
    pending_topup(ctx, &unk);
    assert_int_equal(settle(ctx, unk.id, TXN_UNKNOWN, SETTLED_NONE, &out, &changed), PL_OK);
    int64_t alice = wallet_balance(db, "alice");
    assert_int_equal(alice, 1000);

    /* At the ledger: the guard with the sources settle uses touches zero rows. */
    const unsigned open = MASK(TXN_PENDING) | MASK(TXN_UNKNOWN);
    struct {
        const char *id;
        unsigned from;
        enum txn_status to;
        enum txn_settled_by by;
    } refused[] = {
        {ok.id, open, TXN_FAILED, SETTLED_WEBHOOK},             /* succeeded -> failed */
        {ko.id, open, TXN_SUCCEEDED, SETTLED_WEBHOOK},          /* failed -> succeeded */
        {ok.id, open, TXN_PENDING, SETTLED_NONE},               /* succeeded -> pending */
        {ok.id, MASK(TXN_PENDING), TXN_UNKNOWN, SETTLED_NONE},  /* succeeded -> unknown */
        {unk.id, MASK(TXN_PENDING), TXN_PENDING, SETTLED_NONE}, /* unknown -> pending */
    };
    for (size_t i = 0; i < PL_ARRAY_LEN(refused); i++) {
        snapshot(db, refused[i].id, &before);
        assert_int_equal(db_begin(db), PL_OK);
        int64_t changes = sqlite3_total_changes(db->handle);
        assert_int_equal(ledger_txn_transition(db, refused[i].id, refused[i].from, refused[i].to,
                                               refused[i].by, "expired", "bp_late", T0_MS + 99),
                         PL_ECONFLICT);
        assert_int_equal(sqlite3_total_changes(db->handle), changes);
        assert_int_equal(db_commit(db), PL_OK);
        snapshot(db, refused[i].id, &after);
        assert_same_row(&before, &after);
    }

    /* Through settle_apply: 0 with changed false ("another path settled it"), the state as it
     * stands, nothing posted twice. */
    snapshot(db, ok.id, &before);
    assert_int_equal(settle(ctx, ok.id, TXN_FAILED, SETTLED_WEBHOOK, &out, &changed), PL_OK);
    assert_false(changed);
    assert_int_equal(out.status, TXN_SUCCEEDED);
    assert_same_row(&before, &out);
    assert_int_equal(settle(ctx, ko.id, TXN_SUCCEEDED, SETTLED_WEBHOOK, &out, &changed), PL_OK);
    assert_false(changed);
    assert_int_equal(out.status, TXN_FAILED);
    assert_int_equal(settle(ctx, ok.id, TXN_UNKNOWN, SETTLED_NONE, &out, &changed), PL_OK);
    assert_false(changed);
    assert_int_equal(out.status, TXN_SUCCEEDED);
    assert_int_equal(entries_of(db, ok.id), 2);
    assert_int_equal(entries_of(db, ko.id), 0);
    assert_int_equal(wallet_balance(db, "alice"), alice);

    /* a transaction that does not exist */
    assert_int_equal(settle(ctx, "wtx_missing", TXN_SUCCEEDED, SETTLED_WEBHOOK, &out, &changed),
                     PL_ENOTFOUND);
    check_invariants(db);
}

static void test_settle_twice_is_noop(void **state)
{
    struct fixture *f = *state;
    struct wallet_ctx *ctx = f->ctx;
    struct db *db = &ctx->db;
    struct ledger_txn top, w, first, second;
    fund(ctx, "bob", 9000, &top);
    make_txn(&w, TXN_KIND_WITHDRAWAL, "bob", "HDFC-BOB", 4000);
    assert_int_equal(record_payment(ctx, &w), PL_OK);
    bool changed = false;
    assert_int_equal(settle(ctx, w.id, TXN_SUCCEEDED, SETTLED_RESPONSE, &first, &changed), PL_OK);
    assert_true(changed);
    int64_t logs = log_lines_of(db, w.id);
    int64_t events = events_total(db);
    /* the same outcome again, from another path */
    assert_int_equal(settle(ctx, w.id, TXN_SUCCEEDED, SETTLED_WEBHOOK, &second, &changed), PL_OK);
    assert_false(changed);
    assert_int_equal(second.status, TXN_SUCCEEDED);
    assert_int_equal(second.settled_by, SETTLED_RESPONSE); /* the first path's */
    assert_int_equal(second.updated_at_ms, first.updated_at_ms);
    assert_int_equal(entries_of(db, w.id), 4); /* hold + one payout */
    assert_int_equal(balance(db, LEDGER_ACCOUNT_BANK), -9000 + 4000);
    assert_int_equal(wallet_balance(db, "bob"), 5000);
    assert_int_equal(log_lines_of(db, w.id), logs);
    assert_int_equal(events_total(db), events);
    assert_int_equal(q_int(db, "SELECT count(*) FROM conflicts"), 0); /* agreeing: no conflict */
    check_invariants(db);
}

static void test_conflict_recorded_not_applied(void **state)
{
    struct fixture *f = *state;
    struct wallet_ctx *ctx = f->ctx;
    struct db *db = &ctx->db;
    struct ledger_txn t, out;
    fund(ctx, "alice", 3000, &t);
    int64_t logs = log_lines_of(db, t.id);
    bool changed = true;
    assert_int_equal(settle(ctx, t.id, TXN_FAILED, SETTLED_WEBHOOK, &out, &changed), PL_OK);
    assert_false(changed);
    assert_int_equal(out.status, TXN_SUCCEEDED);
    assert_int_equal(wallet_balance(db, "alice"), 3000);
    assert_int_equal(entries_of(db, t.id), 2);
    assert_int_equal(
        q_int_s(db,
                "SELECT count(*) FROM conflicts WHERE transaction_id = ?1 AND source = "
                "'webhook'",
                t.id),
        1);
    /* the timeline says so, with the status unchanged */
    assert_int_equal(log_lines_of(db, t.id), logs + 1);
    assert_int_equal(q_int_s(db,
                             "SELECT count(*) FROM transaction_log WHERE transaction_id = ?1 "
                             "AND event = 'conflict' AND status = 'succeeded'",
                             t.id),
                     1);
    /* settle_conflict records one without touching the transaction */
    assert_int_equal(settle_conflict(ctx, t.id, "reconciler", "amount differs"), PL_OK);
    assert_int_equal(q_int_s(db, "SELECT count(*) FROM conflicts WHERE transaction_id = ?1", t.id),
                     2);
    assert_int_equal(settle_conflict(ctx, "wtx_missing", "reconciler", "x"), PL_ENOTFOUND);
    assert_int_equal(q_int(db, "SELECT count(*) FROM conflicts"), 2);
    check_invariants(db);
}

/* ===================================================================== idempotency == */

static void test_idempotency_rows(void **state)
{
    struct fixture *f = *state;
    struct wallet_ctx *ctx = f->ctx;
    struct db *db = &ctx->db;
    struct ledger_txn t;
    pending_topup(ctx, &t);
    static const char fp_a[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    static const char fp_b[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab";

    assert_int_equal(db_begin(db), PL_OK);
    assert_int_equal(ledger_idem_insert(db, "key-1", fp_a, t.id, 202, T0_MS), PL_OK);
    /* the same key twice: the primary key refuses it, mapped to PL_ECONFLICT */
    assert_int_equal(ledger_idem_insert(db, "key-1", fp_b, t.id, 202, T0_MS), PL_ECONFLICT);
    /* a key must name a real transaction (foreign key) */
    assert_int_equal(ledger_idem_insert(db, "key-2", fp_a, "wtx_missing", 202, T0_MS),
                     PL_ECONFLICT);
    assert_int_equal(db_commit(db), PL_OK);

    struct ledger_idem row;
    assert_int_equal(ledger_idem_get(db, "key-1", &row), PL_OK);
    assert_string_equal(row.transaction_id, t.id);
    assert_int_equal(row.status_code, 202);
    /* api.c compares the stored fingerprint with the request's (strcmp): it comes back
     * exactly as stored, so one differing character is a different request */
    assert_string_equal(row.fingerprint, fp_a);
    assert_int_not_equal(strcmp(row.fingerprint, fp_b), 0);
    assert_int_equal(ledger_idem_get(db, "key-2", &row), PL_ENOTFOUND);
    assert_int_equal(ledger_idem_get(db, "KEY-1", &row), PL_ENOTFOUND); /* keys are exact */

    /* the first response's status is recorded by settle */
    struct ledger_txn out;
    bool changed = false;
    struct settle_outcome o = outcome(TXN_SUCCEEDED, SETTLED_RESPONSE);
    o.idem_status_code = 200;
    assert_int_equal(settle_apply(ctx, t.id, &o, &out, &changed), PL_OK);
    assert_int_equal(ledger_idem_get(db, "key-1", &row), PL_OK);
    assert_int_equal(row.status_code, 200);

    /* a key written in a transaction that rolls back is not there */
    struct ledger_txn t2;
    pending_topup(ctx, &t2);
    assert_int_equal(db_begin(db), PL_OK);
    assert_int_equal(ledger_idem_insert(db, "key-3", fp_a, t2.id, 202, T0_MS), PL_OK);
    db_rollback(db);
    assert_int_equal(ledger_idem_get(db, "key-3", &row), PL_ENOTFOUND);
}

static void test_idempotency_prune(void **state)
{
    struct fixture *f = *state;
    struct wallet_ctx *ctx = f->ctx;
    struct db *db = &ctx->db;
    struct ledger_txn t;
    pending_topup(ctx, &t);
    const int64_t now = T0_MS + 2 * WALLET_IDEM_KEEP_MS;
    const int64_t cutoff = now - WALLET_IDEM_KEEP_MS;
    assert_int_equal(db_begin(db), PL_OK);
    assert_int_equal(ledger_idem_insert(db, "old-25h", "f", t.id, 202, now - 25 * 3600 * 1000LL),
                     PL_OK);
    assert_int_equal(ledger_idem_insert(db, "old-24h+1", "f", t.id, 202, cutoff - 1), PL_OK);
    assert_int_equal(ledger_idem_insert(db, "at-24h", "f", t.id, 202, cutoff), PL_OK);
    assert_int_equal(ledger_idem_insert(db, "new-1h", "f", t.id, 202, now - 3600 * 1000LL), PL_OK);
    assert_int_equal(db_commit(db), PL_OK);
    int deleted = -1;
    assert_int_equal(ledger_idem_prune(db, cutoff, &deleted), PL_OK);
    assert_int_equal(deleted, 2);
    assert_false(db->in_txn);
    struct ledger_idem row;
    assert_int_equal(ledger_idem_get(db, "old-25h", &row), PL_ENOTFOUND);
    assert_int_equal(ledger_idem_get(db, "old-24h+1", &row), PL_ENOTFOUND);
    assert_int_equal(ledger_idem_get(db, "at-24h", &row), PL_OK);
    assert_int_equal(ledger_idem_get(db, "new-1h", &row), PL_OK);
    /* again: nothing left to prune */
    assert_int_equal(ledger_idem_prune(db, cutoff, &deleted), PL_OK);
    assert_int_equal(deleted, 0);
    /* the transactions stay */
    assert_int_equal(q_int(db, "SELECT count(*) FROM transactions"), 1);
}

/* ===================================================================== timeline ===== */

struct timeline {
    size_t count;
    char events[8][32];
    char statuses[8][16];
    int64_t at_ms[8];
};

static void timeline_cb(const struct ledger_log_line *line, void *arg)
{
    struct timeline *tl = arg;
    assert_true(tl->count < PL_ARRAY_LEN(tl->events));
    pl_strlcpy(tl->events[tl->count], line->event, sizeof tl->events[0]);
    pl_strlcpy(tl->statuses[tl->count], line->status, sizeof tl->statuses[0]);
    assert_non_null(line->reason);
    tl->at_ms[tl->count] = line->at_ms;
    tl->count++;
}

static void test_timeline_line_per_change(void **state)
{
    struct fixture *f = *state;
    struct wallet_ctx *ctx = f->ctx;
    struct ledger_txn t, out;
    bool changed = false;
    pending_topup(ctx, &t);
    assert_int_equal(settle(ctx, t.id, TXN_UNKNOWN, SETTLED_NONE, &out, &changed), PL_OK);
    assert_int_equal(settle(ctx, t.id, TXN_SUCCEEDED, SETTLED_RECONCILER, &out, &changed), PL_OK);
    /* a repeat is not a change: no line */
    assert_int_equal(settle(ctx, t.id, TXN_SUCCEEDED, SETTLED_WEBHOOK, &out, &changed), PL_OK);
    struct timeline tl = {0};
    assert_int_equal(ledger_timeline(&ctx->db, t.id, timeline_cb, &tl), PL_OK);
    assert_int_equal(tl.count, 3);
    assert_string_equal(tl.events[0], "created");
    assert_string_equal(tl.statuses[0], "pending");
    assert_string_equal(tl.events[1], "timeout");
    assert_string_equal(tl.statuses[1], "unknown");
    assert_string_equal(tl.events[2], "bank_answer");
    assert_string_equal(tl.statuses[2], "succeeded");
    assert_true(tl.at_ms[1] >= tl.at_ms[0]);
    assert_true(tl.at_ms[2] >= tl.at_ms[1]);
    /* ledger_txn_set_payment_id: once */
    bool set = false;
    assert_int_equal(db_begin(&ctx->db), PL_OK);
    assert_int_equal(ledger_txn_set_payment_id(&ctx->db, t.id, "bp_one", T0_MS, &set), PL_OK);
    assert_true(set);
    assert_int_equal(ledger_txn_set_payment_id(&ctx->db, t.id, "bp_two", T0_MS, &set), PL_OK);
    assert_false(set);
    assert_int_equal(db_commit(&ctx->db), PL_OK);
    assert_int_equal(ledger_txn_get(&ctx->db, t.id, &out), PL_OK);
    assert_string_equal(out.bank_payment_id, "bp_one");
}

/* ===================================================================== events ======= */

struct event_list {
    size_t count;
    char types[16][32];
    int64_t seqs[16];
    int64_t balances[16];
    char statuses[16][16];
    char epoch[ID_BYTES_MAX];
};

static void events_cb(const char *payload, void *arg)
{
    struct event_list *l = arg;
    assert_true(l->count < PL_ARRAY_LEN(l->types));
    cJSON *o = cJSON_Parse(payload);
    assert_non_null(o);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(o, "type");
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(o, "seq");
    const cJSON *bal = cJSON_GetObjectItemCaseSensitive(o, "balance_minor");
    const cJSON *epoch = cJSON_GetObjectItemCaseSensitive(o, "epoch");
    const cJSON *tx = cJSON_GetObjectItemCaseSensitive(o, "transaction");
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(tx, "status");
    assert_true(cJSON_IsString(type) && cJSON_IsNumber(seq) && cJSON_IsNumber(bal));
    assert_true(cJSON_IsString(epoch) && cJSON_IsString(status));
    pl_strlcpy(l->types[l->count], type->valuestring, sizeof l->types[0]);
    pl_strlcpy(l->statuses[l->count], status->valuestring, sizeof l->statuses[0]);
    pl_strlcpy(l->epoch, epoch->valuestring, sizeof l->epoch);
    l->seqs[l->count] = (int64_t)seq->valuedouble;
    l->balances[l->count] = (int64_t)bal->valuedouble;
    l->count++;
    cJSON_Delete(o);
}

static void test_events_order_and_seq(void **state)
{
    struct fixture *f = *state;
    struct wallet_ctx *ctx = f->ctx;
    struct db *db = &ctx->db;
    struct ledger_txn top, bad, p2p, out;
    bool changed = false;
    fund(ctx, "alice", 5000, &top); /* created; succeeded + balance */
    pending_topup(ctx, &bad);
    assert_int_equal(settle(ctx, bad.id, TXN_FAILED, SETTLED_RESPONSE, &out, &changed), PL_OK);
    make_txn(&p2p, TXN_KIND_P2P, "alice", "bob", 2000);
    assert_int_equal(record_transfer(ctx, &p2p), PL_OK);

    struct event_list l = {0};
    assert_int_equal(events_list(db, "alice", 0, EVENTS_LIST_LIMIT_MAX, events_cb, &l), PL_OK);
    static const char *const want[] = {
        "transaction.updated",                    /* top-up created */
        "transaction.updated", "balance.updated", /* top-up succeeded */
        "transaction.updated",                    /* 2nd top-up created */
        "transaction.updated",                    /* ... failed: no balance event */
        "transaction.updated", "balance.updated", /* transfer */
    };
    assert_int_equal(l.count, PL_ARRAY_LEN(want));
    for (size_t i = 0; i < l.count; i++) {
        assert_string_equal(l.types[i], want[i]);
        assert_int_equal(l.seqs[i], (int64_t)i + 1); /* gapless from 1 */
    }
    assert_string_equal(l.statuses[2], "succeeded");
    assert_int_equal(l.balances[2], 5000);
    assert_string_equal(l.statuses[4], "failed");
    assert_int_equal(l.balances[6], 3000);
    assert_string_equal(l.epoch, ctx->epoch);
    int64_t head = 0;
    assert_int_equal(events_head(db, "alice", &head), PL_OK);
    assert_int_equal(head, 7);

    /* bob's stream starts at 1 with the transfer */
    struct event_list b = {0};
    assert_int_equal(events_list(db, "bob", 0, EVENTS_LIST_LIMIT_MAX, events_cb, &b), PL_OK);
    assert_int_equal(b.count, 2);
    assert_string_equal(b.types[0], "transaction.updated");
    assert_int_equal(b.seqs[0], 1);
    assert_string_equal(b.types[1], "balance.updated");
    assert_int_equal(b.seqs[1], 2);
    assert_int_equal(b.balances[1], 2000);
    /* after= skips what the client has */
    struct event_list tail = {0};
    assert_int_equal(events_list(db, "alice", 5, EVENTS_LIST_LIMIT_MAX, events_cb, &tail), PL_OK);
    assert_int_equal(tail.count, 2);
    assert_int_equal(tail.seqs[0], 6);
    check_invariants(db);
}

/* ===================================================================== boundaries === */

static int insert_raw_amount(struct db *db, const char *id, int64_t amount)
{
    sqlite3_stmt *st = db_stmt(db, "INSERT INTO transactions (id, kind, mode, status, "
                                   "amount_minor, user, counterparty, created_at_ms, "
                                   "updated_at_ms) VALUES (?1, 'topup', 'sync', 'pending', ?2, "
                                   "'alice', 'HDFC-ALICE', 0, 0)");
    assert_non_null(st);
    db_bind_text(st, 1, id);
    sqlite3_bind_int64(st, 2, amount);
    return db_exec_stmt(st);
}

static void test_amount_boundaries(void **state)
{
    struct fixture *f = *state;
    struct wallet_ctx *ctx = f->ctx;
    struct db *db = &ctx->db;
    /* 1 and 10^12 go through the ledger's own functions and post */
    struct ledger_txn one, max;
    fund(ctx, "alice", MONEY_AMOUNT_MINOR_MIN, &one);
    fund(ctx, "bob", MONEY_AMOUNT_MINOR_MAX, &max);
    assert_int_equal(wallet_balance(db, "alice"), 1);
    assert_int_equal(wallet_balance(db, "bob"), MONEY_AMOUNT_MINOR_MAX);
    assert_int_equal(balance(db, LEDGER_ACCOUNT_BANK), -(MONEY_AMOUNT_MINOR_MAX + 1));
    check_invariants(db);
    /* 0 and 10^12+1 never reach ledger_txn_insert (asserted); the CHECK refuses them too */
    assert_int_equal(insert_raw_amount(db, "wtx_zero", 0), PL_ECONFLICT);
    assert_int_equal(insert_raw_amount(db, "wtx_over", MONEY_AMOUNT_MINOR_MAX + 1), PL_ECONFLICT);
    assert_int_equal(insert_raw_amount(db, "wtx_neg", -1), PL_ECONFLICT);
    assert_int_equal(insert_raw_amount(db, "wtx_min", 1), PL_OK);
    assert_int_equal(insert_raw_amount(db, "wtx_max", MONEY_AMOUNT_MINOR_MAX), PL_OK);
    /* an entry of 0 is refused as well (a posting always moves something) */
    sqlite3_stmt *st = db_stmt(db, "INSERT INTO entries (transaction_id, account_id, amount_minor, "
                                   "created_at_ms) VALUES ('wtx_min', 'external:bank', ?1, 0)");
    assert_non_null(st);
    sqlite3_bind_int64(st, 1, 0);
    assert_int_equal(db_exec_stmt(st), PL_ECONFLICT);
    st = db_stmt(db, "INSERT INTO entries (transaction_id, account_id, amount_minor, "
                     "created_at_ms) VALUES ('wtx_min', 'external:bank', ?1, 0)");
    sqlite3_bind_int64(st, 1, 1);
    assert_int_equal(db_exec_stmt(st), PL_OK);
    assert_int_equal(q_int(db, "SELECT count(*) FROM transactions WHERE id IN "
                               "('wtx_zero', 'wtx_over', 'wtx_neg')"),
                     0);
}

/* ===================================================================== busy ========= */

static void test_busy_leaves_nothing(void **state)
{
    struct fixture *f = *state;
    struct wallet_ctx *ctx = f->ctx;
    struct db *db = &ctx->db;
    struct ledger_txn t, p2p, before, out;
    struct ledger_txn top;
    fund(ctx, "alice", 1000, &top);
    pending_topup(ctx, &t);
    snapshot(db, t.id, &before);
    int64_t entries = q_int(db, "SELECT count(*) FROM entries");
    int64_t logs = q_int(db, "SELECT count(*) FROM transaction_log");
    int64_t events = events_total(db);

    struct db other;
    assert_int_equal(db_open(&other, f->path, false), PL_OK);
    assert_int_equal(db_begin(&other), PL_OK); /* BEGIN IMMEDIATE: holds the write lock */

    bool changed = true;
    int64_t start = pl_mono_ms();
    assert_int_equal(settle(ctx, t.id, TXN_SUCCEEDED, SETTLED_WEBHOOK, &out, &changed), PL_EBUSY);
    assert_true(pl_mono_ms() - start < 1000);
    assert_false(changed);
    assert_false(db->in_txn);
    make_txn(&p2p, TXN_KIND_P2P, "alice", "bob", 10);
    assert_int_equal(record_transfer(ctx, &p2p), PL_EBUSY);
    assert_int_equal(settle_conflict(ctx, t.id, "webhook", "x"), PL_EBUSY);
    int deleted = -1;
    assert_int_equal(ledger_idem_prune(db, T0_MS * 2, &deleted), PL_EBUSY);
    assert_int_equal(deleted, 0);
    assert_false(db->in_txn);

    db_rollback(&other);
    db_close(&other);
    /* nothing was left behind */
    struct ledger_txn after;
    snapshot(db, t.id, &after);
    assert_same_row(&before, &after);
    assert_int_equal(ledger_txn_get(db, p2p.id, &after), PL_ENOTFOUND);
    assert_int_equal(q_int(db, "SELECT count(*) FROM entries"), entries);
    assert_int_equal(q_int(db, "SELECT count(*) FROM transaction_log"), logs);
    assert_int_equal(q_int(db, "SELECT count(*) FROM conflicts"), 0);
    assert_int_equal(events_total(db), events);
    assert_int_equal(wallet_balance(db, "alice"), 1000);
    /* and the lock released, the same settle goes through */
    assert_int_equal(settle(ctx, t.id, TXN_SUCCEEDED, SETTLED_WEBHOOK, &out, &changed), PL_OK);
    assert_true(changed);
    assert_int_equal(wallet_balance(db, "alice"), 2000);
    check_invariants(db);
}

int main(void)
{
    log_init("test_ledger", LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_bootstrap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_topup_settle_posts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_p2p_posts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_withdrawal_hold_then_success, setup, teardown),
        cmocka_unit_test_setup_teardown(test_withdrawal_hold_then_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_topup_moves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_p2p_insufficient_funds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_constraint_backstop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transitions_allowed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_transitions_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_settle_twice_is_noop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conflict_recorded_not_applied, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotency_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotency_prune, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeline_line_per_change, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_order_and_seq, setup, teardown),
        cmocka_unit_test_setup_teardown(test_amount_boundaries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_busy_leaves_nothing, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
