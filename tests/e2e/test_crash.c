/* test_crash.c: kill -9 in the middle of a payment (docs/api.md and docs/architecture.md). The bank
 * stores each payment's planned execution time, so a bank restarted mid-latency executes it (or
 * expires it, when its deadline passed meanwhile) instead of forgetting it; a wallet killed while
 * it waits for the bank finds the transaction again and the reconciler settles it. */
#include "e2e.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

#define OPENING_MINOR 1000000

/* A 504 unknown top-up of 50000 the bank holds as `processing`; id into id_out. */
static void topup_in_flight_at_bank(struct e2e *e, char id_out[64])
{
    struct e2e_resp r;
    e2e_topup(e, "alice", 50000, "sync", NULL, &r);
    pl_strlcpy(id_out, e2e_expect_txn_error(&r, 504, "bank_timeout", "unknown"), 64);
    e2e_resp_free(&r);
    cJSON *p = e2e_wait_bank_payment(e, id_out, 2000);
    assert_string_equal(e2e_str(p, "status"), "processing");
    cJSON_Delete(p);
}

/* SIGKILL the bank while a payment waits out its latency; restarted before its deadline,
 * the bank executes it and the reconciler credits it once. */
static void test_bank_kill_resumes(void **state)
{
    struct e2e *e = *state;
    char id[64];
    const struct e2e_opts opts = {.payment_ttl_sync_ms = 5000};
    e2e_start(e, &opts);
    e2e_user_add(e, "alice");
    e2e_faults(e, "{\"latency_ms\":1000}");
    topup_in_flight_at_bank(e, id);

    assert_int_equal(cluster_stop(&e->c.bank, SIGKILL), 0);
    cJSON *t = e2e_txn(e, id);
    assert_string_equal(e2e_str(t, "status"), "unknown");
    cJSON_Delete(t);
    e2e_restart_bank(e);

    cJSON *p = e2e_wait_bank_final(e, id, 5000);
    assert_string_equal(e2e_str(p, "status"), "succeeded");
    cJSON_Delete(p);
    t = e2e_wait_final(e, id, E2E_SETTLE_TIMEOUT_MS);
    e2e_expect_txn(t, "topup", "sync", "succeeded", 50000);
    assert_string_equal(e2e_str(t, "settled_by"), "reconciler");
    cJSON_Delete(t);
    assert_int_equal(e2e_wallet_balance(e, "alice"), 50000);
    assert_int_equal(e2e_bank_balance(e, "HDFC-ALICE"), OPENING_MINOR - 50000);
    assert_int_equal(e2e_bank_balance(e, "NODAL-PAYLAB"), 50000);
    assert_int_equal(
        e2e_wallet_db_int(e, "SELECT count(*) FROM entries WHERE transaction_id=?1", id), 2);
    e2e_finish(e);
}

struct clock_probe {
    int64_t after_ms;
};

static bool wall_clock_past(void *arg)
{
    const struct clock_probe *p = arg;
    return pl_now_ms() > p->after_ms;
}

/* SIGKILL the bank mid-latency and keep it down past the payment's deadline: restarted, it
 * expires the payment (nothing moves) and the wallet settles failed/expired. */
static void test_bank_kill_expires(void **state)
{
    struct e2e *e = *state;
    char id[64];
    e2e_start(e, NULL);
    e2e_user_add(e, "alice");
    e2e_faults(e, "{\"latency_ms\":1000}");
    topup_in_flight_at_bank(e, id);
    cJSON *p = e2e_bank_payment(e, id);
    struct clock_probe past = {.after_ms = e2e_int(p, "expires_at_ms") + 100};
    cJSON_Delete(p);

    assert_int_equal(cluster_stop(&e->c.bank, SIGKILL), 0);
    assert_true(cluster_wait_for(wall_clock_past, &past, cluster_deadline_ms(5000)));
    e2e_restart_bank(e);

    p = e2e_wait_bank_final(e, id, 5000);
    assert_string_equal(e2e_str(p, "status"), "failed");
    assert_string_equal(e2e_str(p, "failure_reason"), "expired");
    assert_false(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "voided")));
    cJSON_Delete(p);
    cJSON *t = e2e_wait_final(e, id, E2E_SETTLE_TIMEOUT_MS);
    e2e_expect_txn(t, "topup", "sync", "failed", 50000);
    assert_string_equal(e2e_str(t, "failure_reason"), "expired");
    assert_string_equal(e2e_str(t, "settled_by"), "reconciler");
    cJSON_Delete(t);
    assert_int_equal(e2e_wallet_balance(e, "alice"), 0);
    assert_int_equal(e2e_bank_balance(e, "HDFC-ALICE"), OPENING_MINOR);
    assert_int_equal(e2e_bank_balance(e, "NODAL-PAYLAB"), 0);
    e2e_finish(e);
}

/* SIGKILL the wallet while it holds a sync top-up open (the bank has the payment): the
 * restarted wallet's reconciler settles it, and the key answers the settled state (not a
 * stale 409: the in-flight mark died with the process). */
static void test_wallet_kill_mid_topup(void **state)
{
    struct e2e *e = *state;
    struct e2e_bg bg;
    struct e2e_resp r;
    char key[E2E_KEY_BYTES_MAX];
    const char *body = "{\"user\":\"alice\",\"amount_minor\":50000,\"mode\":\"sync\"}";
    const struct e2e_opts opts = {.bank_timeout_ms = 3000};
    e2e_start(e, &opts);
    e2e_user_add(e, "alice");
    e2e_faults(e, "{\"latency_ms\":800}");
    e2e_new_key(e, key);
    e2e_bg_start(&bg, e, "/v1/topups", body, key);

    char id[64];
    e2e_wait_newest_txn(e, "alice", id, 3000);
    cJSON *p = e2e_wait_bank_payment(e, id, 3000);
    assert_string_equal(e2e_str(p, "status"), "processing");
    cJSON_Delete(p);
    assert_int_equal(cluster_stop(&e->c.wallet, SIGKILL), 0);
    e2e_bg_join(&bg, &r);
    assert_int_equal(r.status, 0); /* the client saw the connection die */
    e2e_resp_free(&r);
    e2e_restart_wallet(e);

    cJSON *t = e2e_wait_final(e, id, E2E_SETTLE_TIMEOUT_MS);
    e2e_expect_txn(t, "topup", "sync", "succeeded", 50000);
    assert_string_equal(e2e_str(t, "settled_by"), "reconciler");
    cJSON_Delete(t);
    assert_int_equal(e2e_wallet_balance(e, "alice"), 50000);
    assert_int_equal(e2e_bank_balance(e, "NODAL-PAYLAB"), 50000);
    assert_int_equal(
        e2e_wallet_db_int(e, "SELECT count(*) FROM entries WHERE transaction_id=?1", id), 2);

    e2e_wallet(e, "POST", "/v1/topups", body, key, &r);
    e2e_expect(&r, 200, NULL);
    assert_true(r.replayed);
    assert_string_equal(e2e_str(r.json, "id"), id);
    assert_string_equal(e2e_str(r.json, "status"), "succeeded");
    e2e_resp_free(&r);
    assert_int_equal(e2e_wallet_balance(e, "alice"), 50000);
    e2e_faults(e, "{\"clear\":true}");
    e2e_finish(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bank_kill_resumes, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_bank_kill_expires, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_wallet_kill_mid_topup, e2e_setup, e2e_teardown),
    };
    e2e_filter_from_env();
    return cmocka_run_group_tests_name("e2e_crash", tests, NULL, NULL);
}
