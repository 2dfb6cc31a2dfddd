/* test_async.c: async coupling end to end (docs/architecture.md and docs/api.md and
 * docs/ledger.md): the wallet answers 202 pending at once, whatever the bank does; the bank
 * executes after its latency and the outcome comes back as a signed webhook through the gateway and
 * ZeroMQ, settling the transaction (settled_by webhook). A top-up, a withdrawal (held at once, paid
 * out later), a decline, and top-ups accepted while the bank is stopped (the wallet's outbox
 * retries until the bank is back). The reconciler's grace is long here, so that what settles is the
 * webhook, not the reconciler. */
#include "e2e.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

#define OPENING_MINOR 1000000
/* The bank's latency in these tests: an async answer must come back well before it. */
#define BANK_LATENCY_MS 1000
#define ASYNC_ANSWER_MS_MAX (BANK_LATENCY_MS / 2)
/* Top-ups accepted while the bank is stopped. */
#define OUTAGE_TOPUPS 4

static const struct e2e_opts async_opts = {
    .gateways = 1,
    .pending_grace_ms = 15000,
};

/* 202 pending in well under the bank's latency, then succeeded by webhook. */
static void test_async_topup(void **state)
{
    struct e2e *e = *state;
    struct e2e_resp r;
    char id[64], key[E2E_KEY_BYTES_MAX];
    e2e_start(e, &async_opts);
    e2e_user_add(e, "alice");
    e2e_faults(e, "{\"latency_ms\":1000}");

    e2e_new_key(e, key);
    assert_int_equal(e2e_topup(e, "alice", 50000, "async", key, &r), 202);
    assert_true(r.raw.elapsed_ms < ASYNC_ANSWER_MS_MAX);
    e2e_expect_txn(r.json, "topup", "async", "pending", 50000);
    assert_true(e2e_is_null(r.json, "settled_by"));
    assert_int_equal(e2e_int(r.json, "balance_minor"), 0);
    pl_strlcpy(id, e2e_str(r.json, "id"), sizeof id);
    e2e_resp_free(&r);
    assert_int_equal(e2e_wallet_balance(e, "alice"), 0);

    cJSON *t = e2e_wait_final(e, id, E2E_SETTLE_TIMEOUT_MS);
    e2e_expect_txn(t, "topup", "async", "succeeded", 50000);
    assert_string_equal(e2e_str(t, "settled_by"), "webhook");
    assert_int_equal(strncmp(e2e_str(t, "bank_payment_id"), "bp_", 3), 0);
    assert_true(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(t, "timeline")) >= 2);
    cJSON_Delete(t);
    cJSON *p = e2e_bank_payment(e, id);
    assert_non_null(p);
    assert_string_equal(e2e_str(p, "mode"), "async");
    assert_string_equal(e2e_str(p, "status"), "succeeded");
    cJSON_Delete(p);
    e2e_expect_settled(e, id, "succeeded", "webhook", 2);
    assert_int_equal(e2e_wallet_balance(e, "alice"), 50000);
    assert_int_equal(e2e_bank_balance(e, "HDFC-ALICE"), OPENING_MINOR - 50000);
    assert_int_equal(e2e_bank_balance(e, "NODAL-PAYLAB"), 50000);

    /* The key answers the settled state now, not the stale 202 (docs/api.md). */
    assert_int_equal(e2e_topup(e, "alice", 50000, "async", key, &r), 200);
    assert_true(r.replayed);
    assert_string_equal(e2e_str(r.json, "id"), id);
    assert_string_equal(e2e_str(r.json, "status"), "succeeded");
    e2e_resp_free(&r);
    assert_int_equal(e2e_wallet_balance(e, "alice"), 50000);
    e2e_faults(e, "{\"clear\":true}");
    e2e_finish(e);
}

/* The hold is taken at once (202), the payout settles by webhook, the hold is spent. */
static void test_async_withdrawal(void **state)
{
    struct e2e *e = *state;
    char top[64], out[64];
    e2e_start(e, &async_opts);
    e2e_user_add(e, "alice");
    e2e_topup_async(e, "alice", 50000, top);
    cJSON_Delete(e2e_wait_final(e, top, E2E_SETTLE_TIMEOUT_MS));
    e2e_faults(e, "{\"latency_ms\":1000}");

    assert_true(e2e_withdraw_async(e, "alice", 20000, out) < ASYNC_ANSWER_MS_MAX);
    assert_int_equal(e2e_wallet_balance(e, "alice"), 30000);
    assert_int_equal(
        e2e_wallet_db_int(e, "SELECT balance_minor FROM accounts WHERE id='payouts:in_flight'",
                          NULL),
        20000);

    cJSON *t = e2e_wait_final(e, out, E2E_SETTLE_TIMEOUT_MS);
    e2e_expect_txn(t, "withdrawal", "async", "succeeded", 20000);
    assert_string_equal(e2e_str(t, "settled_by"), "webhook");
    cJSON_Delete(t);
    e2e_expect_settled(e, out, "succeeded", "webhook", 4);
    assert_int_equal(e2e_wallet_balance(e, "alice"), 30000);
    assert_int_equal(
        e2e_wallet_db_int(e, "SELECT balance_minor FROM accounts WHERE id='payouts:in_flight'",
                          NULL),
        0);
    assert_int_equal(e2e_bank_balance(e, "HDFC-ALICE"), OPENING_MINOR - 30000);
    assert_int_equal(e2e_bank_balance(e, "NODAL-PAYLAB"), 30000);
    e2e_faults(e, "{\"clear\":true}");
    e2e_finish(e);
}

/* More than the bank account holds: accepted (202), then failed by webhook, nothing moved. */
static void test_async_declined(void **state)
{
    struct e2e *e = *state;
    char id[64];
    e2e_start(e, &async_opts);
    e2e_user_add(e, "alice");
    e2e_topup_async(e, "alice", OPENING_MINOR + 1, id);
    cJSON *t = e2e_wait_final(e, id, E2E_SETTLE_TIMEOUT_MS);
    e2e_expect_txn(t, "topup", "async", "failed", OPENING_MINOR + 1);
    assert_string_equal(e2e_str(t, "failure_reason"), "insufficient_funds");
    assert_string_equal(e2e_str(t, "settled_by"), "webhook");
    cJSON_Delete(t);
    e2e_expect_settled(e, id, "failed", "webhook", 0);
    assert_int_equal(e2e_wallet_balance(e, "alice"), 0);
    assert_int_equal(e2e_bank_balance(e, "HDFC-ALICE"), OPENING_MINOR);
    assert_int_equal(e2e_bank_balance(e, "NODAL-PAYLAB"), 0);
    e2e_finish(e);
}

/* Every outbox row has been tried and refused (the bank is stopped): what settles it later
 * is a retry. */
static bool outbox_all_refused(void *arg)
{
    return e2e_wallet_db_int(arg,
                             "SELECT count(*) FROM outbox WHERE attempts < 1 OR last_error IS NULL",
                             NULL) == 0;
}

/* The bank process is stopped: async top-ups are still accepted at once (the request sits
 * in the wallet's outbox); once the bank is back, the outbox delivers and all settle. */
static void test_async_bank_down(void **state)
{
    struct e2e *e = *state;
    char ids[OUTAGE_TOPUPS][64];
    e2e_start(e, &async_opts);
    e2e_user_add(e, "alice");
    assert_int_equal(cluster_stop(&e->c.bank, SIGTERM), 0);

    for (size_t i = 0; i < OUTAGE_TOPUPS; i++)
        assert_true(e2e_topup_async(e, "alice", 10000, ids[i]) < ASYNC_ANSWER_MS_MAX);
    for (size_t i = 0; i < OUTAGE_TOPUPS; i++) {
        cJSON *t = e2e_txn(e, ids[i]);
        assert_string_equal(e2e_str(t, "status"), "pending");
        cJSON_Delete(t);
    }
    assert_int_equal(e2e_wallet_balance(e, "alice"), 0);
    /* Every request has been tried (and refused) before the bank comes back. */
    assert_true(cluster_wait_for(outbox_all_refused, e, cluster_deadline_ms(5000)));
    e2e_restart_bank(e);

    e2e_wait_all_final(e, ids, OUTAGE_TOPUPS, 30000);
    for (size_t i = 0; i < OUTAGE_TOPUPS; i++)
        e2e_expect_settled(e, ids[i], "succeeded", "webhook", 2);
    assert_int_equal(e2e_wallet_balance(e, "alice"), OUTAGE_TOPUPS * 10000);
    assert_int_equal(e2e_bank_balance(e, "NODAL-PAYLAB"), OUTAGE_TOPUPS * 10000);
    e2e_finish(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_async_topup, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_async_withdrawal, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_async_declined, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_async_bank_down, e2e_setup, e2e_teardown),
    };
    e2e_filter_from_env();
    return cmocka_run_group_tests_name("e2e_async", tests, NULL, NULL);
}
