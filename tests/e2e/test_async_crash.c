/* test_async_crash.c: processes of the async path that die (docs/api.md and docs/realtime.md and
 * docs/coursework.md). A gateway that is down makes the bank retry its webhooks until a gateway is
 * back; with two gateways in --notify-url the bank fails over to the one that is up; a wallet
 * SIGKILLed while webhooks are in flight loses nothing and credits nothing twice after its restart
 * (the gateway answered 503, never 200, for what the wallet had not committed). */
#include "e2e.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

#define OPENING_MINOR 1000000
#define TOPUPS 3
#define CRASH_TOPUPS 6
/* The bank's retries after a refused delivery come at 5 ms, 300 ms, 1.8 s, 7.2 s (× the
 * --time-scale 0.001 schedule): a restarted gateway gets the next one within this. */
#define REDELIVERY_TIMEOUT_MS 30000

struct retried_probe {
    struct e2e *e;
    char (*ids)[64];
    size_t count;
};

/* Every reference's webhooks were attempted at least twice (a failure, then a retry). */
static bool webhooks_retried(void *arg)
{
    struct retried_probe *p = arg;
    for (size_t i = 0; i < p->count; i++) {
        struct e2e_webhook_stats st;
        e2e_bank_webhook_stats(p->e, p->ids[i], &st);
        if (st.attempts < 2 || st.delivered > 0)
            return false;
    }
    return true;
}

static void expect_all_settled(struct e2e *e, char ids[][64], size_t count, const char *by)
{
    for (size_t i = 0; i < count; i++)
        e2e_expect_settled(e, ids[i], "succeeded", by, 2);
}

/* No gateway is up while the bank executes and delivers: it keeps retrying; the wallet
 * stays pending (its grace is long); a gateway started later gets the retries and
 * everything settles by webhook. */
static void test_gateway_down_bank_retries(void **state)
{
    struct e2e *e = *state;
    char ids[TOPUPS][64];
    const struct e2e_opts opts = {.gateways = 1, .pending_grace_ms = 30000};
    e2e_start(e, &opts);
    e2e_user_add(e, "alice");
    assert_int_equal(cluster_stop(&e->c.gateways[0], SIGTERM), 0);

    for (size_t i = 0; i < TOPUPS; i++)
        e2e_topup_async(e, "alice", 10000, ids[i]);
    for (size_t i = 0; i < TOPUPS; i++) {
        cJSON *p = e2e_wait_bank_final(e, ids[i], E2E_SETTLE_TIMEOUT_MS);
        assert_string_equal(e2e_str(p, "status"), "succeeded");
        cJSON_Delete(p);
    }
    struct retried_probe probe = {.e = e, .ids = ids, .count = TOPUPS};
    assert_true(cluster_wait_for(webhooks_retried, &probe, cluster_deadline_ms(5000)));
    for (size_t i = 0; i < TOPUPS; i++) {
        cJSON *t = e2e_txn(e, ids[i]);
        assert_string_equal(e2e_str(t, "status"), "pending");
        cJSON_Delete(t);
    }
    assert_int_equal(e2e_wallet_balance(e, "alice"), 0);

    e2e_start_gateway(e, 0);
    e2e_wait_all_final(e, ids, TOPUPS, REDELIVERY_TIMEOUT_MS);
    expect_all_settled(e, ids, TOPUPS, "webhook");
    assert_int_equal(e2e_wallet_balance(e, "alice"), TOPUPS * 10000);
    assert_int_equal(e2e_bank_balance(e, "NODAL-PAYLAB"), TOPUPS * 10000);
    e2e_finish(e);
}

/* Two gateways in --notify-url: with the first one down the bank delivers to the second,
 * and the other way round. */
static void test_gateway_failover(void **state)
{
    struct e2e *e = *state;
    char first[TOPUPS][64], second[TOPUPS][64];
    const struct e2e_opts opts = {.gateways = 2, .pending_grace_ms = 30000};
    e2e_start(e, &opts);
    assert_non_null(strchr(e->c.notify_url, ','));
    e2e_user_add(e, "alice");

    assert_int_equal(cluster_stop(&e->c.gateways[0], SIGTERM), 0);
    for (size_t i = 0; i < TOPUPS; i++)
        e2e_topup_async(e, "alice", 10000, first[i]);
    e2e_wait_all_final(e, first, TOPUPS, E2E_SETTLE_TIMEOUT_MS);
    expect_all_settled(e, first, TOPUPS, "webhook");

    e2e_start_gateway(e, 0);
    assert_int_equal(cluster_stop(&e->c.gateways[1], SIGTERM), 0);
    for (size_t i = 0; i < TOPUPS; i++)
        e2e_topup_async(e, "alice", 10000, second[i]);
    e2e_wait_all_final(e, second, TOPUPS, E2E_SETTLE_TIMEOUT_MS);
    expect_all_settled(e, second, TOPUPS, "webhook");

    assert_int_equal(e2e_wallet_balance(e, "alice"), 2 * TOPUPS * 10000);
    assert_int_equal(e2e_bank_balance(e, "NODAL-PAYLAB"), 2 * TOPUPS * 10000);
    e2e_finish(e);
}

struct executed_probe {
    struct e2e *e;
    char (*ids)[64];
    size_t count;
};

/* At least one of the payments is executed at the bank: its webhooks are on their way. */
static bool some_executed(void *arg)
{
    struct executed_probe *p = arg;
    for (size_t i = 0; i < p->count; i++) {
        cJSON *pay = e2e_bank_payment(p->e, p->ids[i]);
        bool final = pay != NULL && strcmp(e2e_str(pay, "status"), "processing") != 0;
        cJSON_Delete(pay);
        if (final)
            return true;
    }
    return false;
}

/* Some delivery attempt failed (the gateway answered 503: no ack from the wallet) and the
 * bank is retrying it. */
static bool some_delivery_failed(void *arg)
{
    struct executed_probe *p = arg;
    for (size_t i = 0; i < p->count; i++) {
        struct e2e_webhook_stats st;
        e2e_bank_webhook_stats(p->e, p->ids[i], &st);
        if (st.attempts_max >= 2)
            return true;
    }
    return false;
}

/* SIGKILL the wallet while the bank delivers webhooks (delayed, so that some are in flight):
 * after a restart every top-up is final and credited exactly once. */
static void test_wallet_kill_webhooks_in_flight(void **state)
{
    struct e2e *e = *state;
    char ids[CRASH_TOPUPS][64];
    const struct e2e_opts opts = {.gateways = 1, .pending_grace_ms = 3000};
    e2e_start(e, &opts);
    e2e_user_add(e, "alice");
    /* Executions spread over a second, deliveries delayed: the kill lands mid-stream. */
    e2e_faults(e, "{\"latency_ms\":100,\"latency_jitter_ms\":1000,\"webhook_delay_ms\":100,"
                  "\"webhook_delay_jitter_ms\":300}");
    for (size_t i = 0; i < CRASH_TOPUPS; i++)
        e2e_topup_async(e, "alice", 10000, ids[i]);
    struct executed_probe probe = {.e = e, .ids = ids, .count = CRASH_TOPUPS};
    assert_true(cluster_wait_for(some_executed, &probe, cluster_deadline_ms(5000)));

    assert_int_equal(cluster_stop(&e->c.wallet, SIGKILL), 0);
    /* The bank keeps delivering meanwhile: wait until one delivery failed for it. */
    assert_true(cluster_wait_for(some_delivery_failed, &probe, cluster_deadline_ms(10000)));
    e2e_restart_wallet(e);

    e2e_wait_all_final(e, ids, CRASH_TOPUPS, REDELIVERY_TIMEOUT_MS);
    expect_all_settled(e, ids, CRASH_TOPUPS, NULL);
    assert_int_equal(e2e_wallet_balance(e, "alice"), CRASH_TOPUPS * 10000);
    assert_int_equal(e2e_bank_balance(e, "HDFC-ALICE"), OPENING_MINOR - CRASH_TOPUPS * 10000);
    assert_int_equal(e2e_bank_balance(e, "NODAL-PAYLAB"), CRASH_TOPUPS * 10000);
    assert_int_equal(e2e_wallet_db_int(e,
                                       "SELECT count(*) FROM entries WHERE account_id="
                                       "'wallet:alice'",
                                       NULL),
                     CRASH_TOPUPS);
    e2e_faults(e, "{\"clear\":true}");
    e2e_finish(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_gateway_down_bank_retries, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_gateway_failover, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_wallet_kill_webhooks_in_flight, e2e_setup,
                                        e2e_teardown),
    };
    e2e_filter_from_env();
    return cmocka_run_group_tests_name("e2e_async_crash", tests, NULL, NULL);
}
