/* test_payments.c: the bank's book (bank-service/payments.c) on a real bank.db in a temp dir:
 * accounts and mandates, execution before and at the deadline, insufficient funds, no
 * balance below zero, one payment per reference forever, voids, idempotency keys and their
 * pruning, the webhook events written with each change, amount boundaries and SQLITE_BUSY. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "db.h"
#include "ids.h"
#include "log.h"
#include "money.h"
#include "payments.h"
#include "pl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NODAL "NODAL-PAYLAB"
#define NOW_MS 1700000000000LL
#define TTL_MS 60000LL

struct fixture {
    char dir[64];
    char path[128];
    struct db db;
};

/* ===================================================================== helpers ====== */

static int64_t q_int(struct db *db, const char *sql)
{
    sqlite3_stmt *st = db_stmt(db, sql);
    assert_non_null(st);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return v;
}

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

static int64_t balance(struct db *db, const char *id)
{
    struct account a;
    assert_int_equal(payments_account_get(db, id, &a), PL_OK);
    return a.balance_minor;
}

/* The bank never creates or destroys money: balances only move between accounts. */
static int64_t total(struct db *db)
{
    return q_int(db, "SELECT COALESCE(SUM(balance_minor), 0) FROM accounts");
}

static void assert_none_negative(struct db *db)
{
    assert_int_equal(q_int(db, "SELECT count(*) FROM accounts WHERE balance_minor < 0"), 0);
}

/* A valid sync request of amount from HDFC-ALICE to the nodal account, due before
 * NOW_MS + TTL_MS. key and reference are caller-owned. */
static struct payment_request request(const char *key, const char *reference, int64_t amount)
{
    struct payment_request r = {
        .idempotency_key = key,
        .reference = reference,
        .debit_account = "HDFC-ALICE",
        .credit_account = NODAL,
        .amount_minor = amount,
        .currency = "INR",
        .mode = "sync",
        .notify_url = NULL,
        .expires_at_ms = NOW_MS + TTL_MS,
        .wallet_epoch = "epoch-1",
        .traceparent = NULL,
    };
    return r;
}

static void create_ok(struct db *db, const struct payment_request *r, int64_t now_ms,
                      int64_t execute_at_ms, struct payment *out)
{
    enum payments_create_result res = PAYMENTS_KEY_REUSED;
    assert_int_equal(payments_create(db, r, NODAL, now_ms, execute_at_ms, out, &res), PL_OK);
    assert_int_equal(res, PAYMENTS_CREATED);
    assert_false(db->in_txn);
}

static int64_t payments_count(struct db *db)
{
    return q_int(db, "SELECT count(*) FROM payments");
}

/* ===================================================================== fixture ====== */

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "/tmp/paylab-test-payments-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/bank.db", f->dir);
    assert_int_equal(db_open(&f->db, f->path, false), PL_OK);
    assert_int_equal(payments_init(&f->db, NODAL, NOW_MS), PL_OK);
    struct account a;
    assert_int_equal(payments_account_create(&f->db, "HDFC-ALICE", "alice", 10000, NOW_MS, &a),
                     PL_OK);
    struct mandate m;
    bool created = false;
    assert_int_equal(payments_mandate_create(&f->db, "HDFC-ALICE", NODAL, NOW_MS, &m, &created),
                     PL_OK);
    assert_true(created);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    db_close(&f->db);
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

/* ===================================================================== accounts ===== */

static void test_accounts(void **state)
{
    struct fixture *f = *state;
    struct db *db = &f->db;
    struct account a;
    assert_int_equal(payments_account_get(db, "HDFC-ALICE", &a), PL_OK);
    assert_string_equal(a.id, "HDFC-ALICE");
    assert_string_equal(a.owner, "alice");
    assert_int_equal(a.balance_minor, 10000);
    assert_int_equal(balance(db, NODAL), 0); /* created by payments_init */
    /* the same id twice */
    assert_int_equal(payments_account_create(db, "HDFC-ALICE", "eve", 5, NOW_MS, &a), PL_ECONFLICT);
    assert_int_equal(balance(db, "HDFC-ALICE"), 10000);
    assert_int_equal(payments_account_get(db, "HDFC-NOBODY", &a), PL_ENOTFOUND);
    /* opening balances 0 and the maximum */
    assert_int_equal(payments_account_create(db, "HDFC-ZERO", "z", 0, NOW_MS, &a), PL_OK);
    assert_int_equal(balance(db, "HDFC-ZERO"), 0);
    assert_int_equal(
        payments_account_create(db, "HDFC-RICH", "r", MONEY_AMOUNT_MINOR_MAX, NOW_MS, &a), PL_OK);
    assert_int_equal(balance(db, "HDFC-RICH"), MONEY_AMOUNT_MINOR_MAX);
    /* payments_init again: no migration twice, the nodal balance is kept */
    sqlite3_stmt *st = db_stmt(db, "UPDATE accounts SET balance_minor = 7 WHERE id = ?1");
    db_bind_text(st, 1, NODAL);
    assert_int_equal(db_exec_stmt(st), PL_OK);
    assert_int_equal(payments_init(db, NODAL, NOW_MS + 1), PL_OK);
    assert_int_equal(balance(db, NODAL), 7);
    /* account ids: [A-Z0-9-]{1,64} */
    char id[PAYMENTS_ACCOUNT_CHARS_MAX + 2];
    memset(id, 'A', sizeof id - 1);
    id[sizeof id - 1] = '\0';
    assert_false(payments_account_id_valid(id)); /* 65 */
    id[PAYMENTS_ACCOUNT_CHARS_MAX] = '\0';
    assert_true(payments_account_id_valid(id)); /* 64 */
    assert_true(payments_account_id_valid("A"));
    assert_false(payments_account_id_valid(""));
    assert_false(payments_account_id_valid("hdfc-alice"));
    assert_false(payments_account_id_valid("HDFC_ALICE"));
}

static void test_mandates(void **state)
{
    struct fixture *f = *state;
    struct db *db = &f->db;
    struct account a;
    struct mandate m;
    struct payment p;
    bool created = true;
    enum payments_create_result res = PAYMENTS_CREATED;
    assert_int_equal(payments_account_create(db, "HDFC-BOB", "bob", 5000, NOW_MS, &a), PL_OK);
    /* the mandate of the fixture, again: kept, not created */
    assert_int_equal(payments_mandate_create(db, "HDFC-ALICE", NODAL, NOW_MS + 5, &m, &created),
                     PL_OK);
    assert_false(created);
    assert_int_equal(m.created_at_ms, NOW_MS);
    assert_int_equal(payments_mandate_create(db, "HDFC-NOBODY", NODAL, NOW_MS, &m, &created),
                     PL_ENOTFOUND);
    assert_int_equal(payments_mandate_create(db, "HDFC-BOB", "HDFC-NOBODY", NOW_MS, &m, &created),
                     PL_ENOTFOUND);
    assert_false(db->in_txn);

    /* Bob has no mandate towards the nodal account: refused, nothing written */
    struct payment_request r = request("k-bob", "wtx_bob", 100);
    r.debit_account = "HDFC-BOB";
    assert_int_equal(payments_create(db, &r, NODAL, NOW_MS, NOW_MS, &p, &res), PL_OK);
    assert_int_equal(res, PAYMENTS_MANDATE_MISSING);
    assert_int_equal(payments_count(db), 0);
    assert_int_equal(q_int(db, "SELECT count(*) FROM idempotency_keys"), 0);
    assert_int_equal(balance(db, "HDFC-BOB"), 5000);
    /* Alice's mandate is towards the nodal account only */
    r = request("k-ab", "wtx_ab", 100);
    r.credit_account = "HDFC-BOB";
    assert_int_equal(payments_create(db, &r, NODAL, NOW_MS, NOW_MS, &p, &res), PL_OK);
    assert_int_equal(res, PAYMENTS_MANDATE_MISSING);
    /* unknown accounts */
    r = request("k-x", "wtx_x", 100);
    r.credit_account = "HDFC-NOBODY";
    assert_int_equal(payments_create(db, &r, NODAL, NOW_MS, NOW_MS, &p, &res), PL_OK);
    assert_int_equal(res, PAYMENTS_UNKNOWN_ACCOUNT);
    assert_int_equal(payments_count(db), 0);

    /* with the mandate, it goes through */
    assert_int_equal(payments_mandate_create(db, "HDFC-BOB", NODAL, NOW_MS, &m, &created), PL_OK);
    assert_true(created);
    r = request("k-bob", "wtx_bob", 100);
    r.debit_account = "HDFC-BOB";
    create_ok(db, &r, NOW_MS, NOW_MS, &p);
    assert_string_equal(p.status, "succeeded");
    /* a payout from the nodal account needs no mandate */
    r = request("k-out", "wtx_out", 60);
    r.debit_account = NODAL;
    r.credit_account = "HDFC-BOB";
    create_ok(db, &r, NOW_MS, NOW_MS, &p);
    assert_string_equal(p.status, "succeeded");
    assert_int_equal(balance(db, "HDFC-BOB"), 5000 - 100 + 60);
    assert_int_equal(balance(db, NODAL), 40);
}

/* ===================================================================== execution ==== */

static void test_sync_before_deadline_moves_money(void **state)
{
    struct fixture *f = *state;
    struct db *db = &f->db;
    int64_t sum = total(db);
    struct payment p;
    struct payment_request r = request("k1", "wtx_1", 2500);
    create_ok(db, &r, NOW_MS, NOW_MS, &p);
    assert_true(strncmp(p.id, "bp_", 3) == 0);
    assert_string_equal(p.reference, "wtx_1");
    assert_string_equal(p.status, "succeeded");
    assert_string_equal(p.failure_reason, "");
    assert_int_equal(p.settled_at_ms, NOW_MS);
    assert_int_equal(balance(db, "HDFC-ALICE"), 7500);
    assert_int_equal(balance(db, NODAL), 2500);
    assert_int_equal(total(db), sum);
    /* executing it again changes nothing */
    bool executed = true;
    struct payment again;
    assert_int_equal(payments_execute(db, p.id, NOW_MS + 1, &again, &executed), PL_OK);
    assert_false(executed);
    assert_string_equal(again.status, "succeeded");
    assert_int_equal(balance(db, "HDFC-ALICE"), 7500);
    assert_int_equal(payments_execute(db, "bp_missing", NOW_MS, &again, &executed), PL_ENOTFOUND);
    assert_false(db->in_txn);
    /* one millisecond before the deadline still executes */
    r = request("k2", "wtx_2", 500);
    create_ok(db, &r, NOW_MS, NOW_MS + 10, &p);
    assert_string_equal(p.status, "processing"); /* latency: not due yet */
    assert_int_equal(balance(db, "HDFC-ALICE"), 7500);
    assert_int_equal(payments_execute(db, p.id, r.expires_at_ms - 1, &p, &executed), PL_OK);
    assert_true(executed);
    assert_string_equal(p.status, "succeeded");
    assert_int_equal(balance(db, "HDFC-ALICE"), 7000);
    assert_int_equal(total(db), sum);
}

static void test_expired_moves_nothing(void **state)
{
    struct fixture *f = *state;
    struct db *db = &f->db;
    struct payment p;
    bool executed = false;
    /* executed exactly at expires_at_ms: expired */
    struct payment_request r = request("k1", "wtx_at", 100);
    create_ok(db, &r, NOW_MS, NOW_MS + 50, &p);
    assert_int_equal(payments_execute(db, p.id, r.expires_at_ms, &p, &executed), PL_OK);
    assert_true(executed);
    assert_string_equal(p.status, "failed");
    assert_string_equal(p.failure_reason, "expired");
    /* and after it */
    r = request("k2", "wtx_after", 100);
    r.mode = "async";
    create_ok(db, &r, NOW_MS, NOW_MS, &p);
    assert_string_equal(p.status, "processing"); /* async waits for the scheduler */
    assert_int_equal(payments_execute(db, p.id, r.expires_at_ms + 5000, &p, &executed), PL_OK);
    assert_string_equal(p.failure_reason, "expired");
    /* a sync one due at once, but already past its deadline on arrival */
    r = request("k3", "wtx_late", 100);
    r.expires_at_ms = NOW_MS;
    create_ok(db, &r, NOW_MS, NOW_MS, &p);
    assert_string_equal(p.status, "failed");
    assert_string_equal(p.failure_reason, "expired");
    assert_int_equal(balance(db, "HDFC-ALICE"), 10000);
    assert_int_equal(balance(db, NODAL), 0);
    /* a failed payment never runs again */
    assert_int_equal(payments_execute(db, p.id, NOW_MS - 1, &p, &executed), PL_OK);
    assert_false(executed);
    assert_int_equal(balance(db, "HDFC-ALICE"), 10000);
}

static void test_insufficient_funds(void **state)
{
    struct fixture *f = *state;
    struct db *db = &f->db;
    struct payment p;
    int64_t sum = total(db);
    struct payment_request r = request("k1", "wtx_big", 10001);
    create_ok(db, &r, NOW_MS, NOW_MS, &p);
    assert_string_equal(p.status, "failed");
    assert_string_equal(p.failure_reason, "insufficient_funds");
    assert_int_equal(balance(db, "HDFC-ALICE"), 10000);
    assert_int_equal(balance(db, NODAL), 0);
    /* the exact balance goes through, down to zero */
    r = request("k2", "wtx_all", 10000);
    create_ok(db, &r, NOW_MS, NOW_MS, &p);
    assert_string_equal(p.status, "succeeded");
    assert_int_equal(balance(db, "HDFC-ALICE"), 0);
    /* then even 1 is refused */
    r = request("k3", "wtx_one", 1);
    create_ok(db, &r, NOW_MS, NOW_MS, &p);
    assert_string_equal(p.failure_reason, "insufficient_funds");
    /* a payout the nodal account cannot cover */
    r = request("k4", "wtx_payout", 10001);
    r.debit_account = NODAL;
    r.credit_account = "HDFC-ALICE";
    create_ok(db, &r, NOW_MS, NOW_MS, &p);
    assert_string_equal(p.failure_reason, "insufficient_funds");
    assert_int_equal(balance(db, NODAL), 10000);
    assert_int_equal(total(db), sum);
    assert_none_negative(db);
    /* the CHECK backs the guard: SQL that skips it still cannot go below zero */
    sqlite3_stmt *st =
        db_stmt(db, "UPDATE accounts SET balance_minor = balance_minor - 1 WHERE id = ?1");
    db_bind_text(st, 1, "HDFC-ALICE");
    assert_int_equal(db_exec_stmt(st), PL_ECONFLICT);
    assert_int_equal(balance(db, "HDFC-ALICE"), 0);
    assert_none_negative(db);
}

/* ===================================================================== references === */

static void test_reference_unique_forever(void **state)
{
    struct fixture *f = *state;
    struct db *db = &f->db;
    struct payment first, p;
    enum payments_create_result res = PAYMENTS_CREATED;
    struct payment_request r = request("k1", "wtx_r", 1000);
    create_ok(db, &r, NOW_MS, NOW_MS, &first);
    assert_string_equal(first.status, "succeeded");

    /* the same key and request: a replay of the payment as it stands */
    assert_int_equal(payments_create(db, &r, NODAL, NOW_MS + 1, NOW_MS + 1, &p, &res), PL_OK);
    assert_int_equal(res, PAYMENTS_REPLAY_KEY);
    assert_string_equal(p.id, first.id);
    /* the same key, another request */
    struct payment_request other = request("k1", "wtx_r", 999);
    assert_int_equal(payments_create(db, &other, NODAL, NOW_MS + 1, NOW_MS + 1, &p, &res), PL_OK);
    assert_int_equal(res, PAYMENTS_KEY_REUSED);
    /* a new key, the same request: the existing payment */
    r.idempotency_key = "k2";
    assert_int_equal(payments_create(db, &r, NODAL, NOW_MS + 2, NOW_MS + 2, &p, &res), PL_OK);
    assert_int_equal(res, PAYMENTS_REFERENCE_KNOWN);
    assert_string_equal(p.id, first.id);
    /* a new key, the same reference, another request: refused */
    other.idempotency_key = "k3";
    assert_int_equal(payments_create(db, &other, NODAL, NOW_MS + 3, NOW_MS + 3, &p, &res), PL_OK);
    assert_int_equal(res, PAYMENTS_REFERENCE_REUSED);
    /* one payment, one key row, the money moved once */
    assert_int_equal(payments_count(db), 1);
    assert_int_equal(q_int(db, "SELECT count(*) FROM idempotency_keys"), 1);
    assert_int_equal(balance(db, "HDFC-ALICE"), 9000);
    assert_int_equal(balance(db, NODAL), 1000);
    /* the UNIQUE constraint is the backstop */
    sqlite3_stmt *st = db_stmt(db, "INSERT INTO payments (id, reference, amount_minor, mode, "
                                   "status, voided, expires_at_ms, execute_at_ms, created_at_ms) "
                                   "VALUES ('bp_dup', ?1, 0, 'void', 'failed', 1, 0, 0, 0)");
    db_bind_text(st, 1, "wtx_r");
    assert_int_equal(db_exec_stmt(st), PL_ECONFLICT);
    assert_int_equal(payments_count(db), 1);
    struct payment got;
    assert_int_equal(payments_get_by_reference(db, "wtx_r", &got), PL_OK);
    assert_string_equal(got.id, first.id);
    assert_int_equal(payments_get(db, first.id, &got), PL_OK);
    assert_string_equal(got.reference, "wtx_r");
    assert_int_equal(payments_get_by_reference(db, "wtx_none", &got), PL_ENOTFOUND);
}

static void test_void(void **state)
{
    struct fixture *f = *state;
    struct db *db = &f->db;
    struct payment v, p;
    bool created = false, executed = true;
    enum payments_create_result res = PAYMENTS_CREATED;
    /* a never-seen reference: recorded failed / expired, voided, moving nothing */
    assert_int_equal(payments_void(db, "wtx_v", NOW_MS, &v, &created, &executed), PL_OK);
    assert_true(created);
    assert_false(executed);
    assert_true(v.voided);
    assert_string_equal(v.status, "failed");
    assert_string_equal(v.failure_reason, "expired");
    assert_string_equal(v.mode, "void");
    assert_int_equal(v.amount_minor, 0);
    /* the payment arrives late, under a key: it never executes */
    struct payment_request r = request("k1", "wtx_v", 1000);
    assert_int_equal(payments_create(db, &r, NODAL, NOW_MS + 1, NOW_MS + 1, &p, &res), PL_OK);
    assert_int_equal(res, PAYMENTS_REFERENCE_KNOWN);
    assert_string_equal(p.id, v.id);
    assert_string_equal(p.status, "failed");
    assert_true(p.voided);
    assert_int_equal(payments_count(db), 1);
    assert_int_equal(balance(db, "HDFC-ALICE"), 10000);
    int64_t due = 0;
    assert_int_equal(payments_next_due(db, &due), PL_ENOTFOUND);
    bool ran = true;
    assert_int_equal(payments_execute(db, v.id, NOW_MS + 2, &p, &ran), PL_OK);
    assert_false(ran);
    assert_int_equal(balance(db, "HDFC-ALICE"), 10000);
    /* voiding again: the same row */
    assert_int_equal(payments_void(db, "wtx_v", NOW_MS + 3, &p, &created, &executed), PL_OK);
    assert_false(created);
    assert_string_equal(p.id, v.id);

    /* a processing payment before its deadline is left as it stands */
    r = request("k2", "wtx_p", 300);
    r.mode = "async";
    struct payment q;
    create_ok(db, &r, NOW_MS, NOW_MS + 100, &q);
    assert_int_equal(payments_void(db, "wtx_p", r.expires_at_ms - 1, &p, &created, &executed),
                     PL_OK);
    assert_false(created);
    assert_false(executed);
    assert_string_equal(p.status, "processing");
    /* ... and past it, expired by the void itself */
    assert_int_equal(payments_void(db, "wtx_p", r.expires_at_ms, &p, &created, &executed), PL_OK);
    assert_true(executed);
    assert_string_equal(p.status, "failed");
    assert_string_equal(p.failure_reason, "expired");
    assert_int_equal(balance(db, "HDFC-ALICE"), 10000);
    assert_none_negative(db);
}

/* ===================================================================== keys ========= */

static void test_idempotency_keys(void **state)
{
    struct fixture *f = *state;
    struct db *db = &f->db;
    struct payment p;
    struct payment_request r = request("key-a", "wtx_a", 100);
    create_ok(db, &r, NOW_MS, NOW_MS, &p);
    /* the key row names the payment, with the request's fingerprint */
    char fp[PAYMENTS_FINGERPRINT_CHARS + 1];
    payments_fingerprint(&r, fp);
    assert_int_equal(strlen(fp), PAYMENTS_FINGERPRINT_CHARS);
    assert_int_equal(q_int_s(db, "SELECT count(*) FROM idempotency_keys WHERE key = ?1", "key-a"),
                     1);
    sqlite3_stmt *st = db_stmt(db, "SELECT payment_id, fingerprint FROM idempotency_keys "
                                   "WHERE key = ?1");
    db_bind_text(st, 1, "key-a");
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), p.id);
    assert_string_equal((const char *)sqlite3_column_text(st, 1), fp);
    sqlite3_reset(st);
    assert_string_equal(p.idempotency_key, "key-a");
    assert_string_equal(p.fingerprint, fp);

    /* the fingerprint covers every field but the key and the traceparent */
    char other[PAYMENTS_FINGERPRINT_CHARS + 1];
    struct payment_request s = r;
    s.idempotency_key = "key-b";
    s.traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    payments_fingerprint(&s, other);
    assert_string_equal(other, fp);
    struct payment_request changed[7];
    for (size_t i = 0; i < PL_ARRAY_LEN(changed); i++) {
        changed[i] = r;
    }
    changed[0].reference = "wtx_b";
    changed[1].amount_minor = 101;
    changed[2].mode = "async";
    changed[3].expires_at_ms += 1;
    changed[4].notify_url = ""; /* empty differs from absent */
    changed[5].wallet_epoch = NULL;
    changed[6].credit_account = "HDFC-ALICE2";
    for (size_t i = 0; i < PL_ARRAY_LEN(changed); i++) {
        payments_fingerprint(&changed[i], other);
        assert_string_not_equal(other, fp);
    }

    /* pruning: only keys older than 24 h; their payments stay */
    const int64_t now = NOW_MS + 10 * PAYMENTS_KEY_TTL_MS;
    const int64_t cutoff = now - PAYMENTS_KEY_TTL_MS;
    struct {
        const char *key, *ref;
        int64_t at;
    } rows[] = {
        {"old-25h", "wtx_o1", now - 25 * 3600 * 1000LL},
        {"old-24h+1", "wtx_o2", cutoff - 1},
        {"at-24h", "wtx_o3", cutoff},
        {"new-1h", "wtx_o4", now - 3600 * 1000LL},
    };
    for (size_t i = 0; i < PL_ARRAY_LEN(rows); i++) {
        struct payment_request k = request(rows[i].key, rows[i].ref, 1);
        k.mode = "async";
        k.expires_at_ms = rows[i].at + TTL_MS;
        create_ok(db, &k, rows[i].at, rows[i].at, &p);
    }
    size_t deleted = 99;
    assert_int_equal(payments_prune_keys(db, now, &deleted), PL_OK);
    assert_int_equal(deleted, 3); /* key-a (NOW_MS) and the two older than the cutoff */
    assert_int_equal(q_int_s(db, "SELECT count(*) FROM idempotency_keys WHERE key = ?1", "at-24h"),
                     1);
    assert_int_equal(q_int_s(db, "SELECT count(*) FROM idempotency_keys WHERE key = ?1", "new-1h"),
                     1);
    assert_int_equal(q_int(db, "SELECT count(*) FROM idempotency_keys"), 2);
    assert_int_equal(payments_count(db), 5);
    assert_int_equal(payments_prune_keys(db, now, &deleted), PL_OK);
    assert_int_equal(deleted, 0);
    /* a pruned key is new again, but its reference is not: still one payment */
    enum payments_create_result res = PAYMENTS_CREATED;
    assert_int_equal(payments_create(db, &r, NODAL, now, now, &p, &res), PL_OK);
    assert_int_equal(res, PAYMENTS_REFERENCE_KNOWN);
    assert_int_equal(payments_count(db), 5);
}

/* ===================================================================== webhooks ===== */

static void test_webhook_events_with_changes(void **state)
{
    struct fixture *f = *state;
    struct db *db = &f->db;
    struct payment p;
    bool executed = false;
    struct payment_request r = request("k1", "wtx_w", 100);
    r.mode = "async";
    r.notify_url = "http://127.0.0.1:8082/webhooks/bank";
    create_ok(db, &r, NOW_MS, NOW_MS + 10, &p);
    assert_int_equal(q_int_s(db,
                             "SELECT count(*) FROM webhook_events WHERE payment_id = ?1 "
                             "AND type = 'payment.processing'",
                             p.id),
                     1);
    int64_t due = 0;
    assert_int_equal(payments_next_due(db, &due), PL_OK);
    assert_int_equal(due, NOW_MS + 10);
    char ids[4][ID_BYTES_MAX];
    size_t count = 9;
    assert_int_equal(payments_due(db, NOW_MS + 9, ids, 4, &count), PL_OK);
    assert_int_equal(count, 0);
    assert_int_equal(payments_due(db, NOW_MS + 10, ids, 4, &count), PL_OK);
    assert_int_equal(count, 1);
    assert_string_equal(ids[0], p.id);
    assert_int_equal(payments_execute(db, p.id, NOW_MS + 10, &p, &executed), PL_OK);
    assert_true(executed);
    assert_int_equal(q_int_s(db,
                             "SELECT count(*) FROM webhook_events WHERE payment_id = ?1 "
                             "AND type = 'payment.succeeded'",
                             p.id),
                     1);
    assert_int_equal(q_int(db, "SELECT count(*) FROM webhook_deliveries"), 2);
    /* without a notify_url, none */
    r = request("k2", "wtx_quiet", 100);
    create_ok(db, &r, NOW_MS, NOW_MS, &p);
    assert_int_equal(q_int_s(db, "SELECT count(*) FROM webhook_events WHERE payment_id = ?1", p.id),
                     0);
}

/* ===================================================================== boundaries === */

static int insert_raw(struct db *db, const char *id, const char *ref, int64_t amount)
{
    sqlite3_stmt *st = db_stmt(db, "INSERT INTO payments (id, reference, debit_account, "
                                   "credit_account, amount_minor, mode, status, voided, "
                                   "expires_at_ms, execute_at_ms, created_at_ms) VALUES "
                                   "(?1, ?2, 'HDFC-ALICE', 'NODAL-PAYLAB', ?3, 'sync', "
                                   "'failed', 0, 0, 0, 0)");
    assert_non_null(st);
    db_bind_text(st, 1, id);
    db_bind_text(st, 2, ref);
    sqlite3_bind_int64(st, 3, amount);
    return db_exec_stmt(st);
}

static void test_amount_boundaries(void **state)
{
    struct fixture *f = *state;
    struct db *db = &f->db;
    struct account a;
    struct mandate m;
    struct payment p;
    bool created = false;
    assert_int_equal(
        payments_account_create(db, "HDFC-RICH", "r", MONEY_AMOUNT_MINOR_MAX, NOW_MS, &a), PL_OK);
    assert_int_equal(payments_mandate_create(db, "HDFC-RICH", NODAL, NOW_MS, &m, &created), PL_OK);
    struct payment_request r = request("k1", "wtx_min", MONEY_AMOUNT_MINOR_MIN);
    create_ok(db, &r, NOW_MS, NOW_MS, &p);
    assert_string_equal(p.status, "succeeded");
    r = request("k2", "wtx_max", MONEY_AMOUNT_MINOR_MAX);
    r.debit_account = "HDFC-RICH";
    create_ok(db, &r, NOW_MS, NOW_MS, &p);
    assert_string_equal(p.status, "succeeded");
    assert_int_equal(p.amount_minor, MONEY_AMOUNT_MINOR_MAX);
    assert_int_equal(balance(db, "HDFC-RICH"), 0);
    assert_int_equal(balance(db, NODAL), MONEY_AMOUNT_MINOR_MAX + 1);
    /* 0 (not voided) and 10^12 + 1 never reach payments_create (asserted); the CHECKs refuse
     * them as well */
    assert_int_equal(insert_raw(db, "bp_zero", "wtx_zero", 0), PL_ECONFLICT);
    assert_int_equal(insert_raw(db, "bp_over", "wtx_over", MONEY_AMOUNT_MINOR_MAX + 1),
                     PL_ECONFLICT);
    assert_int_equal(insert_raw(db, "bp_one", "wtx_one", 1), PL_OK);
    assert_int_equal(insert_raw(db, "bp_top", "wtx_top", MONEY_AMOUNT_MINOR_MAX), PL_OK);
    assert_int_equal(payments_count(db), 4);
    /* and no account balance may be set below zero */
    sqlite3_stmt *st = db_stmt(db, "UPDATE accounts SET balance_minor = ?2 WHERE id = ?1");
    db_bind_text(st, 1, "HDFC-RICH");
    sqlite3_bind_int64(st, 2, -1);
    assert_int_equal(db_exec_stmt(st), PL_ECONFLICT);
}

/* ===================================================================== busy ========= */

static void test_busy_leaves_nothing(void **state)
{
    struct fixture *f = *state;
    struct db *db = &f->db;
    struct payment pending, p;
    struct payment_request r = request("k1", "wtx_1", 100);
    r.mode = "async";
    create_ok(db, &r, NOW_MS, NOW_MS, &pending);

    struct db other;
    assert_int_equal(db_open(&other, f->path, false), PL_OK);
    assert_int_equal(db_begin(&other), PL_OK);
    enum payments_create_result res = PAYMENTS_CREATED;
    struct payment_request r2 = request("k2", "wtx_2", 100);
    int64_t start = pl_mono_ms();
    assert_int_equal(payments_create(db, &r2, NODAL, NOW_MS, NOW_MS, &p, &res), PL_EBUSY);
    assert_true(pl_mono_ms() - start < 1000);
    bool executed = true, created = true;
    assert_int_equal(payments_execute(db, pending.id, NOW_MS + 1, &p, &executed), PL_EBUSY);
    assert_false(executed);
    assert_int_equal(payments_void(db, "wtx_3", NOW_MS, &p, &created, &executed), PL_EBUSY);
    assert_false(created);
    struct mandate m;
    assert_int_equal(payments_mandate_create(db, "HDFC-ALICE", NODAL, NOW_MS, &m, &created),
                     PL_EBUSY);
    assert_false(db->in_txn);
    db_rollback(&other);
    db_close(&other);

    assert_int_equal(payments_count(db), 1);
    assert_int_equal(payments_get_by_reference(db, "wtx_2", &p), PL_ENOTFOUND);
    assert_int_equal(payments_get_by_reference(db, "wtx_3", &p), PL_ENOTFOUND);
    assert_int_equal(payments_get(db, pending.id, &p), PL_OK);
    assert_string_equal(p.status, "processing");
    assert_int_equal(balance(db, "HDFC-ALICE"), 10000);
    /* the lock released, the same calls go through */
    assert_int_equal(payments_execute(db, pending.id, NOW_MS + 1, &p, &executed), PL_OK);
    assert_true(executed);
    assert_int_equal(balance(db, "HDFC-ALICE"), 9900);
}

int main(void)
{
    log_init("test_payments", LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_accounts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mandates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sync_before_deadline_moves_money, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expired_moves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_insufficient_funds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reference_unique_forever, setup, teardown),
        cmocka_unit_test_setup_teardown(test_void, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotency_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_webhook_events_with_changes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_amount_boundaries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_busy_leaves_nothing, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
