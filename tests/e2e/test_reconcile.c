/* test_reconcile.c: how the wallet closes what it does not know, and how soon a waiting
 * client learns an outcome another path found (docs/architecture.md):
 *  - a bank that still holds a payment `processing` past its deadline is asked to void it:
 *    a sync top-up and a sync withdrawal end failed/expired within the reconciliation
 *    horizon, the withdrawal's hold goes back, and the bank's later scheduled execution
 *    moves nothing;
 *  - more open transactions than one reconciler batch, the oldest of them staying open: a
 *    newer one is still asked about at once (the batches rotate), and every one settles;
 *  - the bank commits a sync payment and never answers: its webhook settles the transaction
 *    and the waiting client is answered at once, long before its timeout; with the webhook
 *    dropped too, the client gets 504 unknown at its timeout and the reconciler settles it;
 *  - --id-seed: two wallets started with the same seed on fresh directories give the same
 *    top-up and withdrawal ids (counted across a restart), and the bank, seeded alike, the
 *    same webhook event ids; transfers keep random ids. */
#include "e2e.h"

#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OPENING_MINOR 1000000
/* The suite's wallet timings (as e2e.c's defaults): the horizon is TTL + 300 + 2 × 100 ms. */
#define RECONCILE_MS 100
#define GRACE_MS 300
#define HORIZON_EXTRA_MS (GRACE_MS + 2 * RECONCILE_MS)
/* What an ASan build on a busy machine may add to the horizon. */
#define SLACK_MS 1000
/* More than the wallet's RECON_BATCH_MAX (64) open transactions. */
#define OPEN_MANY 70

/* Starts bank and wallet like e2e_start, the wallet with wallet_extra flags appended
 * (NULL-terminated, may be NULL). */
static void start_with(struct e2e *e, const struct e2e_opts *opts, const char *const *wallet_extra)
{
    char timeout[24], ttl[24], grace[24], ttl_async[24], reconcile[24];
    if (opts != NULL)
        e->opts = *opts;
    if (e->opts.bank_timeout_ms == 0)
        e->opts.bank_timeout_ms = 300;
    if (e->opts.payment_ttl_sync_ms == 0)
        e->opts.payment_ttl_sync_ms = 1500;
    if (e->opts.pending_grace_ms == 0)
        e->opts.pending_grace_ms = GRACE_MS;
    if (e->opts.payment_ttl_async_ms == 0)
        e->opts.payment_ttl_async_ms = 20000;
    snprintf(timeout, sizeof timeout, "%ld", e->opts.bank_timeout_ms);
    snprintf(ttl, sizeof ttl, "%ld", e->opts.payment_ttl_sync_ms);
    snprintf(grace, sizeof grace, "%ld", e->opts.pending_grace_ms);
    snprintf(ttl_async, sizeof ttl_async, "%ld", e->opts.payment_ttl_async_ms);
    snprintf(reconcile, sizeof reconcile, "%d", RECONCILE_MS);
    const char *argv[CLUSTER_ARGS_MAX] = {
        "--bank-timeout-ms",      timeout,   "--reconcile-ms",        reconcile,
        "--pending-grace-ms",     grace,     "--payment-ttl-sync-ms", ttl,
        "--payment-ttl-async-ms", ttl_async,
    };
    size_t n = 10;
    for (size_t i = 0; wallet_extra != NULL && wallet_extra[i] != NULL; i++) {
        assert_true(n + 1 < CLUSTER_ARGS_MAX);
        argv[n++] = wallet_extra[i];
    }
    argv[n] = NULL;
    assert_int_equal(cluster_init(&e->c, NULL), 0);
    e->c.keep_dir = true; /* until e2e_finish */
    if (e->opts.gateways > 0)
        assert_int_equal(cluster_use_gateways(&e->c, e->opts.gateways), 0);
    assert_int_equal(cluster_start_bank(&e->c, NULL), 0);
    assert_int_equal(cluster_start_wallet(&e->c, argv), 0);
    for (int i = 0; i < e->opts.gateways; i++)
        e2e_start_gateway(e, i);
    assert_int_equal(cluster_read_secret(&e->c, "bank_api_key", e->api_key, sizeof e->api_key), 0);
    assert_int_equal(
        cluster_read_secret(&e->c, "admin_token", e->admin_token, sizeof e->admin_token), 0);
    assert_int_equal(
        cluster_read_secret(&e->c, "webhook_secret", e->webhook_secret, sizeof e->webhook_secret),
        0);
}

struct clock_probe {
    int64_t after_ms;
};

static bool wall_clock_past(void *arg)
{
    const struct clock_probe *p = arg;
    return pl_now_ms() > p->after_ms;
}

/* Waits for id to be final no later than the wall-clock time by_ms. */
static cJSON *wait_final_by(struct e2e *e, const char *id, int64_t by_ms)
{
    int64_t left_ms = by_ms - pl_now_ms();
    assert_true(left_ms > 0);
    return e2e_wait_final(e, id, (long)left_ms);
}

static void expect_expired(struct e2e *e, const char *id, const char *kind, int64_t amount_minor,
                           int64_t by_ms)
{
    cJSON *t = wait_final_by(e, id, by_ms);
    e2e_expect_txn(t, kind, "sync", "failed", amount_minor);
    assert_string_equal(e2e_str(t, "failure_reason"), "expired");
    assert_string_equal(e2e_str(t, "settled_by"), "reconciler");
    cJSON_Delete(t);
}

/* The bank's payment of reference: failed/expired, not a void of a never-seen reference. */
static int64_t expect_bank_expired(struct e2e *e, const char *reference)
{
    cJSON *p = e2e_bank_payment(e, reference);
    assert_non_null(p);
    assert_string_equal(e2e_str(p, "status"), "failed");
    assert_string_equal(e2e_str(p, "failure_reason"), "expired");
    assert_false(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "voided")));
    int64_t execute_at_ms = e2e_int(p, "execute_at_ms");
    cJSON_Delete(p);
    return execute_at_ms;
}

static void expect_balances(struct e2e *e, int64_t wallet_minor, int64_t moved_minor)
{
    assert_int_equal(e2e_wallet_balance(e, "alice"), wallet_minor);
    assert_int_equal(
        e2e_wallet_db_int(e, "SELECT balance_minor FROM accounts WHERE id='payouts:in_flight'",
                          NULL),
        0);
    assert_int_equal(e2e_bank_balance(e, "HDFC-ALICE"), OPENING_MINOR - moved_minor);
    assert_int_equal(e2e_bank_balance(e, "NODAL-PAYLAB"), moved_minor);
}

/* Latency 6000 ms, far beyond the 1500 ms deadline: the bank holds both payments as
 * processing until then. Once the deadline has passed the reconciler voids them: the bank
 * expires them at once, and the wallet settles failed/expired within the horizon, not when
 * the bank would have come to execute them. That execution later finds nothing to do. */
static void test_processing_past_deadline_voided(void **state)
{
    struct e2e *e = *state;
    struct e2e_resp r;
    char tid[64], wid[64];
    start_with(e, NULL, NULL);
    e2e_user_add(e, "alice");
    assert_int_equal(e2e_topup(e, "alice", 100000, "sync", NULL, &r), 200);
    e2e_resp_free(&r);
    e2e_faults(e, "{\"latency_ms\":6000}");

    e2e_topup(e, "alice", 50000, "sync", NULL, &r);
    pl_strlcpy(tid, e2e_expect_txn_error(&r, 504, "bank_timeout", "unknown"), sizeof tid);
    e2e_resp_free(&r);
    e2e_withdraw(e, "alice", 30000, "sync", NULL, &r);
    pl_strlcpy(wid, e2e_expect_txn_error(&r, 504, "bank_timeout", "unknown"), sizeof wid);
    int64_t expires_ms = e2e_int(r.json, "expires_at_ms");
    e2e_resp_free(&r);
    assert_int_equal(e2e_wallet_balance(e, "alice"), 70000); /* the withdrawal's hold */

    int64_t by_ms = expires_ms + HORIZON_EXTRA_MS + SLACK_MS;
    expect_expired(e, tid, "topup", 50000, by_ms);
    expect_expired(e, wid, "withdrawal", 30000, by_ms);
    expect_bank_expired(e, tid);
    int64_t execute_at_ms = expect_bank_expired(e, wid);
    assert_true(execute_at_ms > by_ms); /* settled well before the bank's own execution */
    expect_balances(e, 100000, 100000);

    /* The bank's scheduled execution comes and goes without moving anything. */
    struct clock_probe past = {.after_ms = execute_at_ms + 300};
    assert_true(cluster_wait_for(wall_clock_past, &past, cluster_deadline_ms(10000)));
    expect_bank_expired(e, tid);
    expect_bank_expired(e, wid);
    expect_balances(e, 100000, 100000);
    e2e_faults(e, "{\"clear\":true}");
    e2e_finish(e);
}

struct bank_known_probe {
    struct e2e *e;
    char (*ids)[64];
    size_t count, next;
};

static bool bank_knows_all(void *arg)
{
    struct bank_known_probe *p = arg;
    for (; p->next < p->count; p->next++) {
        cJSON *pay = e2e_bank_payment(p->e, p->ids[p->next]);
        bool known = pay != NULL;
        cJSON_Delete(pay);
        if (!known)
            return false;
    }
    return true;
}

/* OPEN_MANY async top-ups the bank holds as processing with a deadline 6 s away: all of them
 * older than one sync top-up whose answer is lost. The reconciler's oldest-first batch is
 * full of the async ones, which stay open; the rotation still reaches the sync one at once.
 * Then every async one is voided at its deadline. */
static void test_batches_rotate(void **state)
{
    struct e2e *e = *state;
    char ids[OPEN_MANY][64];
    struct e2e_resp r;
    struct e2e_opts opts = {.payment_ttl_async_ms = 6000};
    start_with(e, &opts, NULL);
    e2e_user_add(e, "alice");
    e2e_faults(e, "{\"latency_ms\":30000}");
    for (size_t i = 0; i < OPEN_MANY; i++)
        e2e_topup_async(e, "alice", 1000, ids[i]);
    struct bank_known_probe known = {.e = e, .ids = ids, .count = OPEN_MANY, .next = 0};
    assert_true(cluster_wait_for(bank_knows_all, &known, cluster_deadline_ms(10000)));

    e2e_faults(e, "{\"latency_ms\":0,\"lost_response_rate\":1}");
    char sid[64];
    e2e_topup(e, "alice", 50000, "sync", NULL, &r);
    pl_strlcpy(sid, e2e_expect_txn_error(&r, 504, "bank_timeout", "unknown"), sizeof sid);
    e2e_resp_free(&r);
    /* Starved, it would wait for the async ones to leave the batch (6 s and more). */
    cJSON *t = e2e_wait_final(e, sid, 2500);
    e2e_expect_txn(t, "topup", "sync", "succeeded", 50000);
    assert_string_equal(e2e_str(t, "settled_by"), "reconciler");
    cJSON_Delete(t);
    e2e_faults(e, "{\"clear\":true}");

    e2e_wait_all_final(e, ids, OPEN_MANY, 15000);
    for (size_t i = 0; i < OPEN_MANY; i++) {
        t = e2e_txn(e, ids[i]);
        e2e_expect_txn(t, "topup", "async", "failed", 1000);
        assert_string_equal(e2e_str(t, "failure_reason"), "expired");
        assert_string_equal(e2e_str(t, "settled_by"), "reconciler");
        cJSON_Delete(t);
    }
    assert_int_equal(e2e_wallet_balance(e, "alice"), 50000);
    assert_int_equal(e2e_bank_balance(e, "NODAL-PAYLAB"), 50000);
    e2e_finish(e);
}

/* The bank commits a sync top-up and a sync withdrawal and never answers; their webhooks
 * settle them within milliseconds, and each client is answered then — 200 succeeded,
 * settled_by webhook — not after --bank-timeout-ms (5000). */
static void test_webhook_answers_sync_client(void **state)
{
    struct e2e *e = *state;
    struct e2e_resp r;
    struct e2e_opts opts = {.bank_timeout_ms = 5000, .payment_ttl_sync_ms = 8000, .gateways = 1};
    start_with(e, &opts, NULL);
    e2e_user_add(e, "alice");
    e2e_faults(e, "{\"lost_response_rate\":1}");

    assert_int_equal(e2e_topup(e, "alice", 50000, "sync", NULL, &r), 200);
    e2e_expect_txn(r.json, "topup", "sync", "succeeded", 50000);
    assert_string_equal(e2e_str(r.json, "settled_by"), "webhook");
    assert_int_equal(e2e_int(r.json, "balance_minor"), 50000);
    assert_true(r.raw.elapsed_ms < 2500);
    char tid[64];
    pl_strlcpy(tid, e2e_str(r.json, "id"), sizeof tid);
    e2e_resp_free(&r);

    assert_int_equal(e2e_withdraw(e, "alice", 20000, "sync", NULL, &r), 200);
    e2e_expect_txn(r.json, "withdrawal", "sync", "succeeded", 20000);
    assert_string_equal(e2e_str(r.json, "settled_by"), "webhook");
    assert_true(r.raw.elapsed_ms < 2500);
    char wid[64];
    pl_strlcpy(wid, e2e_str(r.json, "id"), sizeof wid);
    e2e_resp_free(&r);

    e2e_expect_settled(e, tid, "succeeded", "webhook", 2);
    e2e_expect_settled(e, wid, "succeeded", "webhook", 4);
    assert_int_equal(e2e_wallet_balance(e, "alice"), 30000);
    assert_int_equal(e2e_bank_balance(e, "NODAL-PAYLAB"), 30000);
    e2e_faults(e, "{\"clear\":true}");
    e2e_wait_webhooks_idle(e, 10000);
    e2e_finish(e);
}

/* The same, but every webhook attempt is dropped too: nothing settles the top-up while the
 * client waits, so it gets 504 unknown at its timeout, and the reconciler settles it. */
static void test_no_webhook_then_reconciled(void **state)
{
    struct e2e *e = *state;
    struct e2e_resp r;
    struct e2e_opts opts = {.bank_timeout_ms = 5000, .payment_ttl_sync_ms = 8000, .gateways = 1};
    start_with(e, &opts, NULL);
    e2e_user_add(e, "alice");
    e2e_faults(e, "{\"lost_response_rate\":1,\"webhook_drop_rate\":1}");

    char id[64];
    e2e_topup(e, "alice", 50000, "sync", NULL, &r);
    pl_strlcpy(id, e2e_expect_txn_error(&r, 504, "bank_timeout", "unknown"), sizeof id);
    assert_true(r.raw.elapsed_ms >= 4900);
    e2e_resp_free(&r);
    cJSON *t = e2e_wait_final(e, id, E2E_SETTLE_TIMEOUT_MS);
    e2e_expect_txn(t, "topup", "sync", "succeeded", 50000);
    assert_string_equal(e2e_str(t, "settled_by"), "reconciler");
    cJSON_Delete(t);
    e2e_expect_settled(e, id, "succeeded", "reconciler", 2);
    e2e_faults(e, "{\"clear\":true}");
    e2e_finish(e);
}

/* prefix + the first 24 hex chars of SHA-256(text): the seeded ids of docs/api.md. */
static void seeded_id(const char *prefix, const char *text, char out[64])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_bytes = 0;
    assert_int_equal(EVP_Digest(text, strlen(text), md, &md_bytes, EVP_sha256(), NULL), 1);
    int n = snprintf(out, 64, "%s", prefix);
    for (size_t i = 0; i < 12; i++)
        n += snprintf(out + n, (size_t)(64 - n), "%02x", md[i]);
    assert_int_equal(n, (int)strlen(prefix) + 24);
}

/* The event id of the bank's webhook `type` for reference (asserted to exist). */
static void bank_event_id(struct e2e *e, const char *reference, const char *type, char out[64])
{
    const cJSON *list = NULL;
    cJSON *root = e2e_bank_webhooks(e, "delivered", &list);
    const cJSON *d = NULL;
    bool found = false;
    cJSON_ArrayForEach(d, list)
    {
        if (strcmp(e2e_str(d, "reference"), reference) != 0 || strcmp(e2e_str(d, "type"), type))
            continue;
        pl_strlcpy(out, e2e_str(d, "event_id"), 64);
        found = true;
    }
    cJSON_Delete(root);
    assert_true(found);
}

struct seeded_ids {
    char topup[64], withdrawal[64], after_restart[64], transfer[64], event[64];
};

static void sync_money(struct e2e *e, bool topup, int64_t amount_minor, char id_out[64])
{
    struct e2e_resp r;
    long status = topup ? e2e_topup(e, "alice", amount_minor, "sync", NULL, &r)
                        : e2e_withdraw(e, "alice", amount_minor, "sync", NULL, &r);
    assert_int_equal(status, 200);
    pl_strlcpy(id_out, e2e_str(r.json, "id"), 64);
    e2e_resp_free(&r);
}

/* One cluster with --id-seed 42: a top-up, a transfer, a withdrawal, a wallet restart, a
 * top-up; the ids it handed out and the bank's event id for the first top-up. */
static void seeded_run(struct e2e *e, struct seeded_ids *ids)
{
    const char *const extra[] = {"--id-seed", "42", NULL};
    struct e2e_opts opts = {.gateways = 1};
    struct e2e_resp r;
    start_with(e, &opts, extra);
    e2e_user_add(e, "alice");
    e2e_user_add(e, "bob");
    sync_money(e, true, 10000, ids->topup);
    assert_int_equal(e2e_transfer(e, "alice", "bob", 1000, &r), 200);
    pl_strlcpy(ids->transfer, e2e_str(r.json, "id"), sizeof ids->transfer);
    e2e_resp_free(&r);
    sync_money(e, false, 2000, ids->withdrawal);
    assert_int_equal(cluster_stop(&e->c.wallet, SIGTERM), 0);
    e2e_restart_wallet(e);
    sync_money(e, true, 3000, ids->after_restart);
    e2e_wait_webhooks_idle(e, 10000);
    bank_event_id(e, ids->topup, "payment.succeeded", ids->event);
    e2e_finish(e);
}

/* The same seed on fresh directories: the same ids, n counted in wallet.db (so across a
 * restart), the bank's event ids from (seed, reference, type); transfers stay random. */
static void test_id_seed_repeats(void **state)
{
    struct e2e *e = *state;
    struct seeded_ids a, b;
    seeded_run(e, &a);
    struct e2e *other = calloc(1, sizeof *other);
    assert_non_null(other);
    seeded_run(other, &b);
    cluster_destroy(&other->c);
    free(other);

    char want[64], text[128];
    seeded_id("wtx_", "42:1", want);
    assert_string_equal(a.topup, want);
    seeded_id("wtx_", "42:2", want);
    assert_string_equal(a.withdrawal, want);
    seeded_id("wtx_", "42:3", want);
    assert_string_equal(a.after_restart, want);
    snprintf(text, sizeof text, "1:%s:payment.succeeded", a.topup);
    seeded_id("evt_", text, want);
    assert_string_equal(a.event, want);
    assert_string_equal(a.topup, b.topup);
    assert_string_equal(a.withdrawal, b.withdrawal);
    assert_string_equal(a.after_restart, b.after_restart);
    assert_string_equal(a.event, b.event);
    assert_string_not_equal(a.transfer, b.transfer);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_processing_past_deadline_voided, e2e_setup,
                                        e2e_teardown),
        cmocka_unit_test_setup_teardown(test_batches_rotate, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_webhook_answers_sync_client, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_no_webhook_then_reconciled, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_id_seed_repeats, e2e_setup, e2e_teardown),
    };
    e2e_filter_from_env();
    return cmocka_run_group_tests_name("e2e_reconcile", tests, NULL, NULL);
}
