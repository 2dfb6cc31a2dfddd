/* test_unsafe.c: the teaching switches break what they say they break, and `paylab verify`
 * catches each one (docs/api.md, docs/architecture.md). Each test turns one switch on, does
 * the damage, checks /healthz names the switch, and expects verify to exit 5 with the
 * invariant the switch violates:
 *  - wallet --unsafe-no-dedupe, webhooks duplicated: a top-up is credited again → 5;
 *  - wallet --unsafe-timeout-is-failure, a bank slower than the wallet's timeout: the wallet
 *    says failed (a withdrawal's hold goes back) while the bank moves the money; the late
 *    webhooks are conflicts, never applied → 4;
 *  - bank --unsafe-ignore-expiry, a bank slower than the deadline: the bank answers the
 *    reconciler's void failed/expired, the wallet settles failed, then the bank executes
 *    the payment all the same → 4.
 * Without the switches the same faults leave every invariant intact (the other suites). */
#include "e2e.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OPENING_MINOR 1000000
#define RECONCILE_MS "100"
/* paylab's exit code for an invariant breach. */
#define VERIFY_BREACH_EXIT 5

/* Starts bank and wallet like e2e_start, each with its extra flags (NULL-terminated lists,
 * may be NULL). */
static void start_with(struct e2e *e, const struct e2e_opts *opts, const char *const *wallet_extra,
                       const char *const *bank_extra)
{
    char timeout[24], ttl[24], grace[24], ttl_async[24];
    if (opts != NULL)
        e->opts = *opts;
    if (e->opts.bank_timeout_ms == 0)
        e->opts.bank_timeout_ms = 300;
    if (e->opts.payment_ttl_sync_ms == 0)
        e->opts.payment_ttl_sync_ms = 1500;
    if (e->opts.pending_grace_ms == 0)
        e->opts.pending_grace_ms = 300;
    if (e->opts.payment_ttl_async_ms == 0)
        e->opts.payment_ttl_async_ms = 20000;
    snprintf(timeout, sizeof timeout, "%ld", e->opts.bank_timeout_ms);
    snprintf(ttl, sizeof ttl, "%ld", e->opts.payment_ttl_sync_ms);
    snprintf(grace, sizeof grace, "%ld", e->opts.pending_grace_ms);
    snprintf(ttl_async, sizeof ttl_async, "%ld", e->opts.payment_ttl_async_ms);
    const char *argv[CLUSTER_ARGS_MAX] = {
        "--bank-timeout-ms",      timeout,   "--reconcile-ms",        RECONCILE_MS,
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
    e->c.keep_dir = true; /* until the test has passed */
    if (e->opts.gateways > 0)
        assert_int_equal(cluster_use_gateways(&e->c, e->opts.gateways), 0);
    assert_int_equal(cluster_start_bank(&e->c, bank_extra), 0);
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

/* GET base/healthz lists exactly the one switch `name` in "unsafe". */
static void expect_healthz_unsafe(const char *base, const char *name)
{
    char url[CLUSTER_URL_BYTES_MAX + 16];
    struct e2e_resp r;
    snprintf(url, sizeof url, "%s/healthz", base);
    e2e_request("GET", url, NULL, 0, NULL, &r);
    e2e_expect(&r, 200, NULL);
    assert_string_equal(e2e_str(r.json, "status"), "ok");
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(r.json, "unsafe");
    assert_true(cJSON_IsArray(list));
    if (name == NULL) {
        assert_int_equal(cJSON_GetArraySize(list), 0);
    } else {
        assert_int_equal(cJSON_GetArraySize(list), 1);
        const cJSON *item = cJSON_GetArrayItem(list, 0);
        assert_true(cJSON_IsString(item));
        assert_string_equal(item->valuestring, name);
    }
    e2e_resp_free(&r);
}

/* Runs `paylab verify --json`, asserts it exits 5 with invariant `broken` in breach, and
 * marks the test passed. */
static void finish_with_breach(struct e2e *e, int broken)
{
    char wallet_db[CLUSTER_PATH_BYTES_MAX + 16], bank_db[CLUSTER_PATH_BYTES_MAX + 16];
    snprintf(wallet_db, sizeof wallet_db, "%s/wallet.db", e->c.dir);
    snprintf(bank_db, sizeof bank_db, "%s/bank.db", e->c.dir);
    const char *const args[] = {"verify",    "--json", "--wallet-db", wallet_db,
                                "--bank-db", bank_db,  NULL};
    char *out = NULL;
    int rc = cluster_paylab(&e->c, args, &out);
    if (rc != VERIFY_BREACH_EXIT)
        fprintf(stderr, "e2e: paylab verify exited %d:\n%s\n", rc, out != NULL ? out : "");
    assert_int_equal(rc, VERIFY_BREACH_EXIT);
    cJSON *report = cJSON_Parse(out);
    free(out);
    assert_non_null(report);
    assert_false(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(report, "ok")));
    const cJSON *inv = NULL;
    bool found = false;
    cJSON_ArrayForEach(inv, cJSON_GetObjectItemCaseSensitive(report, "invariants"))
    {
        if (e2e_int(inv, "id") != broken)
            continue;
        found = true;
        assert_string_equal(e2e_str(inv, "status"), "breach");
        assert_true(e2e_int(inv, "breach_count") >= 1);
    }
    assert_true(found);
    cJSON_Delete(report);
    const char *keep = getenv("E2E_KEEP");
    e->c.keep_dir = keep != NULL && strcmp(keep, "1") == 0;
}

struct entries_probe {
    struct e2e *e;
    const char *id;
    int64_t at_least;
};

static bool entries_reach(void *arg)
{
    struct entries_probe *p = arg;
    return e2e_wallet_db_int(p->e, "SELECT count(*) FROM entries WHERE transaction_id=?1", p->id) >=
           p->at_least;
}

struct conflicts_probe {
    struct e2e *e;
    int64_t at_least;
};

static bool conflicts_reach(void *arg)
{
    struct conflicts_probe *p = arg;
    return e2e_wallet_db_int(p->e, "SELECT count(*) FROM conflicts", NULL) >= p->at_least;
}

/* Every webhook delivered twice: without the webhook-id check and the state guard, the
 * second payment.succeeded credits the top-up again. verify: invariant 5. */
static void test_no_dedupe_credits_twice(void **state)
{
    struct e2e *e = *state;
    const char *const wallet_extra[] = {"--unsafe-no-dedupe", NULL};
    struct e2e_opts opts = {.pending_grace_ms = 30000, .gateways = 1};
    start_with(e, &opts, wallet_extra, NULL);
    expect_healthz_unsafe(e->c.wallet_url, "no-dedupe");
    expect_healthz_unsafe(e->c.bank_url, NULL);
    e2e_user_add(e, "alice");
    e2e_faults(e, "{\"webhook_duplicate_rate\":1}");

    char id[64];
    e2e_topup_async(e, "alice", 50000, id);
    struct entries_probe twice = {.e = e, .id = id, .at_least = 4};
    assert_true(cluster_wait_for(entries_reach, &twice, cluster_deadline_ms(10000)));
    /* The bank moved 500 once; the wallet credited it at least twice. */
    assert_true(e2e_wallet_balance(e, "alice") >= 2 * 50000);
    assert_int_equal(e2e_bank_balance(e, "NODAL-PAYLAB"), 50000);
    assert_int_equal(e2e_bank_balance(e, "HDFC-ALICE"), OPENING_MINOR - 50000);
    e2e_faults(e, "{\"clear\":true}");
    e2e_wait_webhooks_idle(e, 10000);
    finish_with_breach(e, 5);
}

/* A bank slower (800 ms) than the wallet's timeout (300 ms), within the deadline: the
 * wallet calls both payments failed at its timeout — the withdrawal's hold goes back — and
 * the bank moves the money. The webhooks that follow are conflicts, never applied.
 * verify: invariant 4 (wallet and bank disagree). */
static void test_timeout_is_failure_disagrees(void **state)
{
    struct e2e *e = *state;
    struct e2e_resp r;
    const char *const wallet_extra[] = {"--unsafe-timeout-is-failure", NULL};
    struct e2e_opts opts = {.gateways = 1};
    start_with(e, &opts, wallet_extra, NULL);
    expect_healthz_unsafe(e->c.wallet_url, "timeout-is-failure");
    e2e_user_add(e, "alice");
    assert_int_equal(e2e_topup(e, "alice", 100000, "sync", NULL, &r), 200);
    e2e_resp_free(&r);
    e2e_faults(e, "{\"latency_ms\":800}");

    char tid[64], wid[64];
    e2e_topup(e, "alice", 50000, "sync", NULL, &r);
    pl_strlcpy(tid, e2e_expect_txn_error(&r, 504, "bank_timeout", "failed"), sizeof tid);
    assert_string_equal(e2e_str(r.json, "failure_reason"), "bank_timeout");
    e2e_resp_free(&r);
    e2e_withdraw(e, "alice", 30000, "sync", NULL, &r);
    pl_strlcpy(wid, e2e_expect_txn_error(&r, 504, "bank_timeout", "failed"), sizeof wid);
    e2e_resp_free(&r);
    assert_int_equal(e2e_wallet_balance(e, "alice"), 100000); /* the hold went back */

    cJSON *p = e2e_wait_bank_final(e, tid, 10000);
    assert_string_equal(e2e_str(p, "status"), "succeeded");
    cJSON_Delete(p);
    p = e2e_wait_bank_final(e, wid, 10000);
    assert_string_equal(e2e_str(p, "status"), "succeeded");
    cJSON_Delete(p);
    struct conflicts_probe two = {.e = e, .at_least = 2};
    assert_true(cluster_wait_for(conflicts_reach, &two, cluster_deadline_ms(10000)));
    e2e_expect_settled(e, tid, "failed", "response", 0);
    e2e_expect_settled(e, wid, "failed", "response", 4);
    assert_int_equal(e2e_wallet_balance(e, "alice"), 100000);
    /* The bank took 500 from alice's account and paid her 300 on top of her wallet. */
    assert_int_equal(e2e_bank_balance(e, "HDFC-ALICE"), OPENING_MINOR - 100000 - 50000 + 30000);
    e2e_faults(e, "{\"clear\":true}");
    e2e_wait_webhooks_idle(e, 10000);
    finish_with_breach(e, 4);
}

/* A bank slower (3000 ms) than the deadline (1500 ms) that ignores deadlines: past the
 * deadline the reconciler voids the payment; the bank answers failed/expired but leaves it
 * processing, the wallet settles failed, and at 3000 ms the bank moves the money.
 * verify: invariant 4. */
static void test_ignore_expiry_late_success(void **state)
{
    struct e2e *e = *state;
    struct e2e_resp r;
    const char *const bank_extra[] = {"--unsafe-ignore-expiry", NULL};
    start_with(e, NULL, NULL, bank_extra);
    expect_healthz_unsafe(e->c.bank_url, "ignore-expiry");
    expect_healthz_unsafe(e->c.wallet_url, NULL);
    e2e_user_add(e, "alice");
    e2e_faults(e, "{\"latency_ms\":3000}");

    char id[64];
    e2e_topup(e, "alice", 50000, "sync", NULL, &r);
    pl_strlcpy(id, e2e_expect_txn_error(&r, 504, "bank_timeout", "unknown"), sizeof id);
    e2e_resp_free(&r);
    cJSON *t = e2e_wait_final(e, id, 2800);
    e2e_expect_txn(t, "topup", "sync", "failed", 50000);
    assert_string_equal(e2e_str(t, "failure_reason"), "expired");
    assert_string_equal(e2e_str(t, "settled_by"), "reconciler");
    int64_t expires_ms = e2e_int(t, "expires_at_ms");
    cJSON_Delete(t);

    cJSON *p = e2e_wait_bank_final(e, id, 10000);
    assert_string_equal(e2e_str(p, "status"), "succeeded");
    assert_true(e2e_int(p, "settled_at_ms") > expires_ms); /* executed past its deadline */
    cJSON_Delete(p);
    assert_int_equal(e2e_wallet_balance(e, "alice"), 0);
    assert_int_equal(e2e_bank_balance(e, "NODAL-PAYLAB"), 50000);
    e2e_faults(e, "{\"clear\":true}");
    finish_with_breach(e, 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_no_dedupe_credits_twice, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_timeout_is_failure_disagrees, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_ignore_expiry_late_success, e2e_setup, e2e_teardown),
    };
    e2e_filter_from_env();
    return cmocka_run_group_tests_name("e2e_unsafe", tests, NULL, NULL);
}
