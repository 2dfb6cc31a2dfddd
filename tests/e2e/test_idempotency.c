/* test_idempotency.c: the Idempotency-Key contract of docs/api.md at the wallet. The same key
 * and body replay the first answer (Idempotent-Replayed: true, one credit); another body is
 * 422 idempotency_key_reused; a repeat while the first is in flight is 409
 * idempotency_key_in_use; a replay of a not-final answer gives the current state. */
#include "e2e.h"

#include <stdio.h>
#include <string.h>

#define OPENING_MINOR 1000000

static const char *const BODY_50000 =
    "{\"user\":\"alice\",\"amount_minor\":50000,\"mode\":\"sync\"}";

static void post_topup(struct e2e *e, const char *body, const char *key, struct e2e_resp *r)
{
    e2e_wallet(e, "POST", "/v1/topups", body, key, r);
}

/* A replay of a success and of a decline, and a key reused with another body. */
static void test_replay_and_reuse(void **state)
{
    struct e2e *e = *state;
    struct e2e_resp r;
    char key[E2E_KEY_BYTES_MAX], id[64];
    e2e_start(e, NULL);
    e2e_user_add(e, "alice");
    e2e_new_key(e, key);
    post_topup(e, BODY_50000, key, &r);
    e2e_expect(&r, 200, NULL);
    assert_false(r.replayed);
    pl_strlcpy(id, e2e_str(r.json, "id"), sizeof id);
    e2e_resp_free(&r);

    for (int i = 0; i < 2; i++) {
        post_topup(e, BODY_50000, key, &r);
        e2e_expect(&r, 200, NULL);
        assert_true(r.replayed);
        assert_string_equal(e2e_str(r.json, "id"), id);
        assert_string_equal(e2e_str(r.json, "status"), "succeeded");
        e2e_resp_free(&r);
    }
    post_topup(e, "{\"user\":\"alice\",\"amount_minor\":20000,\"mode\":\"sync\"}", key, &r);
    e2e_expect(&r, 422, "idempotency_key_reused");
    e2e_resp_free(&r);

    assert_int_equal(e2e_wallet_balance(e, "alice"), 50000);
    assert_int_equal(e2e_bank_balance(e, "NODAL-PAYLAB"), 50000);
    assert_int_equal(e2e_bank_balance(e, "HDFC-ALICE"), OPENING_MINOR - 50000);
    assert_int_equal(e2e_wallet_db_int(e, "SELECT count(*) FROM transactions", NULL), 1);
    assert_int_equal(e2e_wallet_db_int(e, "SELECT count(*) FROM entries", NULL), 2);

    /* A definite decline replays as the same decline. */
    const char *big = "{\"user\":\"alice\",\"amount_minor\":2000000,\"mode\":\"sync\"}";
    e2e_new_key(e, key);
    post_topup(e, big, key, &r);
    pl_strlcpy(id, e2e_expect_txn_error(&r, 402, "bank_declined", "failed"), sizeof id);
    assert_false(r.replayed);
    e2e_resp_free(&r);
    post_topup(e, big, key, &r);
    assert_string_equal(e2e_expect_txn_error(&r, 402, "bank_declined", "failed"), id);
    assert_true(r.replayed);
    e2e_resp_free(&r);
    assert_int_equal(e2e_wallet_db_int(e, "SELECT count(*) FROM transactions", NULL), 2);
    assert_int_equal(e2e_wallet_balance(e, "alice"), 50000);
    e2e_finish(e);
}

/* The first request waits 1000 ms for the bank (the wallet would wait 3000): a repeat
 * meanwhile is 409, and after the first answered it replays that answer. */
static void test_key_in_use(void **state)
{
    struct e2e *e = *state;
    struct e2e_bg bg;
    struct e2e_resp r;
    char key[E2E_KEY_BYTES_MAX];
    const struct e2e_opts opts = {.bank_timeout_ms = 3000};
    e2e_start(e, &opts);
    e2e_user_add(e, "alice");
    e2e_faults(e, "{\"latency_ms\":1000}");
    e2e_new_key(e, key);
    e2e_bg_start(&bg, e, "/v1/topups", BODY_50000, key);

    char id[64];
    e2e_wait_newest_txn(e, "alice", id, 3000);
    post_topup(e, BODY_50000, key, &r);
    e2e_expect(&r, 409, "idempotency_key_in_use");
    e2e_resp_free(&r);

    e2e_bg_join(&bg, &r);
    e2e_expect(&r, 200, NULL);
    assert_false(r.replayed);
    assert_string_equal(e2e_str(r.json, "id"), id);
    assert_string_equal(e2e_str(r.json, "status"), "succeeded");
    e2e_resp_free(&r);

    post_topup(e, BODY_50000, key, &r);
    e2e_expect(&r, 200, NULL);
    assert_true(r.replayed);
    assert_string_equal(e2e_str(r.json, "id"), id);
    e2e_resp_free(&r);
    assert_int_equal(e2e_wallet_balance(e, "alice"), 50000);
    assert_int_equal(e2e_bank_balance(e, "NODAL-PAYLAB"), 50000);
    assert_int_equal(e2e_wallet_db_int(e, "SELECT count(*) FROM transactions", NULL), 1);
    e2e_faults(e, "{\"clear\":true}");
    e2e_finish(e);
}

/* The first answer was 504 unknown; once reconciled, the replay answers 200 succeeded. */
static void test_replay_after_unknown(void **state)
{
    struct e2e *e = *state;
    struct e2e_resp r;
    char key[E2E_KEY_BYTES_MAX], id[64];
    e2e_start(e, NULL);
    e2e_user_add(e, "alice");
    e2e_faults(e, "{\"latency_ms\":800}");
    e2e_new_key(e, key);
    post_topup(e, BODY_50000, key, &r);
    pl_strlcpy(id, e2e_expect_txn_error(&r, 504, "bank_timeout", "unknown"), sizeof id);
    e2e_resp_free(&r);

    cJSON *t = e2e_wait_final(e, id, E2E_SETTLE_TIMEOUT_MS);
    assert_string_equal(e2e_str(t, "status"), "succeeded");
    cJSON_Delete(t);
    post_topup(e, BODY_50000, key, &r);
    e2e_expect(&r, 200, NULL);
    assert_true(r.replayed);
    assert_string_equal(e2e_str(r.json, "id"), id);
    assert_string_equal(e2e_str(r.json, "status"), "succeeded");
    e2e_resp_free(&r);
    assert_int_equal(e2e_wallet_balance(e, "alice"), 50000);
    assert_int_equal(e2e_wallet_db_int(e, "SELECT count(*) FROM entries", NULL), 2);
    e2e_faults(e, "{\"clear\":true}");
    e2e_finish(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_replay_and_reuse, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_key_in_use, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_replay_after_unknown, e2e_setup, e2e_teardown),
    };
    e2e_filter_from_env();
    return cmocka_run_group_tests_name("e2e_idempotency", tests, NULL, NULL);
}
