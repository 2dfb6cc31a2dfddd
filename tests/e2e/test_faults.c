/* test_faults.c: what a sync top-up answers when the bank misbehaves (docs/architecture.md and
 * docs/api.md): slow (504 unknown → reconciled), lost response (504 → reconciled, credited once),
 * stopped (503 failed, nothing posted), down (502 unknown, stays unknown past its deadline until
 * the bank can be asked, then voided), a payment past its deadline (expired at the bank),
 * and the bank's own guards: mandates and the API key. */
#include "e2e.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

#define OPENING_MINOR 1000000

static void expect_credited_once(struct e2e *e, const char *id, int64_t amount_minor)
{
    assert_int_equal(e2e_wallet_balance(e, "alice"), amount_minor);
    assert_int_equal(e2e_bank_balance(e, "HDFC-ALICE"), OPENING_MINOR - amount_minor);
    assert_int_equal(e2e_bank_balance(e, "NODAL-PAYLAB"), amount_minor);
    assert_int_equal(
        e2e_wallet_db_int(e, "SELECT count(*) FROM entries WHERE transaction_id=?1", id), 2);
    assert_int_equal(e2e_wallet_db_int(e,
                                       "SELECT count(*) FROM entries WHERE account_id="
                                       "'wallet:alice'",
                                       NULL),
                     1);
}

static void expect_nothing_moved(struct e2e *e, const char *id)
{
    assert_int_equal(e2e_wallet_balance(e, "alice"), 0);
    assert_int_equal(e2e_bank_balance(e, "HDFC-ALICE"), OPENING_MINOR);
    assert_int_equal(e2e_bank_balance(e, "NODAL-PAYLAB"), 0);
    assert_int_equal(
        e2e_wallet_db_int(e, "SELECT count(*) FROM entries WHERE transaction_id=?1", id), 0);
}

/* Top-up of 50000 that must answer status/code/txn_status; the id goes to id_out. */
static void topup_expect(struct e2e *e, long status, const char *code, const char *txn_status,
                         char id_out[64], int64_t *elapsed_ms)
{
    struct e2e_resp r;
    e2e_topup(e, "alice", 50000, "sync", NULL, &r);
    pl_strlcpy(id_out, e2e_expect_txn_error(&r, status, code, txn_status), 64);
    if (elapsed_ms != NULL)
        *elapsed_ms = r.raw.elapsed_ms;
    e2e_resp_free(&r);
}

/* The bank answers after 800 ms, the wallet waits 300: 504 unknown, then the reconciler
 * learns the bank's truth (succeeded) and credits exactly once. */
static void test_bank_slow(void **state)
{
    struct e2e *e = *state;
    char id[64];
    int64_t elapsed_ms = 0;
    e2e_start(e, NULL);
    e2e_user_add(e, "alice");
    e2e_faults(e, "{\"latency_ms\":800}");
    topup_expect(e, 504, "bank_timeout", "unknown", id, &elapsed_ms);
    /* The wallet gave up at its own timeout, not at the bank's answer. */
    assert_true(elapsed_ms < 750);

    cJSON *t = e2e_wait_final(e, id, E2E_SETTLE_TIMEOUT_MS);
    e2e_expect_txn(t, "topup", "sync", "succeeded", 50000);
    assert_string_equal(e2e_str(t, "settled_by"), "reconciler");
    assert_true(e2e_is_null(t, "failure_reason"));
    cJSON_Delete(t);
    cJSON *p = e2e_bank_payment(e, id);
    assert_non_null(p);
    assert_string_equal(e2e_str(p, "status"), "succeeded");
    cJSON_Delete(p);
    expect_credited_once(e, id, 50000);
    e2e_faults(e, "{\"clear\":true}");
    e2e_finish(e);
}

/* The bank commits and never answers: 504 unknown → reconciled succeeded, one credit. */
static void test_lost_response(void **state)
{
    struct e2e *e = *state;
    char id[64];
    e2e_start(e, NULL);
    e2e_user_add(e, "alice");
    e2e_faults(e, "{\"lost_response_rate\":1}");
    topup_expect(e, 504, "bank_timeout", "unknown", id, NULL);

    cJSON *t = e2e_wait_final(e, id, E2E_SETTLE_TIMEOUT_MS);
    e2e_expect_txn(t, "topup", "sync", "succeeded", 50000);
    assert_string_equal(e2e_str(t, "settled_by"), "reconciler");
    cJSON_Delete(t);
    expect_credited_once(e, id, 50000);
    e2e_faults(e, "{\"clear\":true}");
    e2e_finish(e);
}

/* A stopped bank refuses the connection: a top-up and a withdrawal answer 503 failed and
 * post nothing (the withdrawal's hold goes back); P2P needs no bank and still works. */
static void test_bank_stopped(void **state)
{
    struct e2e *e = *state;
    struct e2e_resp r;
    char id[64], wid[64];
    e2e_start(e, NULL);
    e2e_user_add(e, "alice");
    e2e_user_add(e, "bob");
    assert_int_equal(e2e_topup(e, "alice", 50000, "sync", NULL, &r), 200);
    e2e_resp_free(&r);
    assert_int_equal(cluster_stop(&e->c.bank, SIGTERM), 0);

    e2e_topup(e, "alice", 20000, "sync", NULL, &r);
    pl_strlcpy(id, e2e_expect_txn_error(&r, 503, "bank_unreachable", "failed"), sizeof id);
    e2e_resp_free(&r);
    cJSON *t = e2e_txn(e, id);
    e2e_expect_txn(t, "topup", "sync", "failed", 20000);
    assert_string_equal(e2e_str(t, "failure_reason"), "bank_unreachable");
    assert_string_equal(e2e_str(t, "settled_by"), "response");
    cJSON_Delete(t);

    e2e_withdraw(e, "alice", 30000, "sync", NULL, &r);
    pl_strlcpy(wid, e2e_expect_txn_error(&r, 503, "bank_unreachable", "failed"), sizeof wid);
    e2e_resp_free(&r);
    t = e2e_txn(e, wid);
    e2e_expect_txn(t, "withdrawal", "sync", "failed", 30000);
    assert_string_equal(e2e_str(t, "failure_reason"), "bank_unreachable");
    cJSON_Delete(t);
    assert_int_equal(e2e_wallet_balance(e, "alice"), 50000);
    assert_int_equal(e2e_wallet_db_int(e,
                                       "SELECT balance_minor FROM accounts "
                                       "WHERE id='payouts:in_flight'",
                                       NULL),
                     0);
    assert_int_equal(e2e_transfer(e, "alice", "bob", 10000, &r), 200);
    e2e_resp_free(&r);

    e2e_restart_bank(e);
    assert_null(e2e_bank_payment(e, id));
    assert_null(e2e_bank_payment(e, wid));
    assert_int_equal(
        e2e_wallet_db_int(e, "SELECT count(*) FROM entries WHERE transaction_id=?1", id), 0);
    assert_int_equal(e2e_wallet_balance(e, "alice"), 40000);
    assert_int_equal(e2e_wallet_balance(e, "bob"), 10000);
    assert_int_equal(e2e_bank_balance(e, "HDFC-ALICE"), OPENING_MINOR - 50000);
    assert_int_equal(e2e_bank_balance(e, "NODAL-PAYLAB"), 50000);
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

/* A bank that closes every /v1 connection unanswered: 502 unknown. The wallet cannot ask,
 * so the transaction stays unknown past its deadline (never failed on the wallet's own
 * clock); once the fault is cleared the reconciler voids the never-seen reference. */
static void test_bank_down(void **state)
{
    struct e2e *e = *state;
    char id[64];
    e2e_start(e, NULL);
    e2e_user_add(e, "alice");
    e2e_faults(e, "{\"down\":true}");
    topup_expect(e, 502, "bank_error", "unknown", id, NULL);

    cJSON *t = e2e_txn(e, id);
    struct clock_probe past = {.after_ms = e2e_int(t, "expires_at_ms") + 300};
    cJSON_Delete(t);
    assert_true(cluster_wait_for(wall_clock_past, &past, cluster_deadline_ms(5000)));
    t = e2e_txn(e, id);
    assert_string_equal(e2e_str(t, "status"), "unknown");
    cJSON_Delete(t);

    e2e_faults(e, "{\"clear\":true}");
    t = e2e_wait_final(e, id, E2E_SETTLE_TIMEOUT_MS);
    e2e_expect_txn(t, "topup", "sync", "failed", 50000);
    assert_string_equal(e2e_str(t, "failure_reason"), "expired");
    assert_string_equal(e2e_str(t, "settled_by"), "reconciler");
    cJSON_Delete(t);
    cJSON *p = e2e_bank_payment(e, id);
    assert_non_null(p);
    assert_string_equal(e2e_str(p, "status"), "failed");
    assert_string_equal(e2e_str(p, "failure_reason"), "expired");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "voided")));
    cJSON_Delete(p);
    expect_nothing_moved(e, id);
    e2e_finish(e);
}

/* Latency 2000 ms > TTL 1500 ms: the bank expires the payment when it comes to execute it;
 * the wallet (504 unknown at 300 ms) settles failed/expired from the bank's answer. */
static void test_expired_at_bank(void **state)
{
    struct e2e *e = *state;
    char id[64];
    e2e_start(e, NULL);
    e2e_user_add(e, "alice");
    e2e_faults(e, "{\"latency_ms\":2000}");
    topup_expect(e, 504, "bank_timeout", "unknown", id, NULL);

    cJSON *t = e2e_wait_final(e, id, E2E_SETTLE_TIMEOUT_MS);
    e2e_expect_txn(t, "topup", "sync", "failed", 50000);
    assert_string_equal(e2e_str(t, "failure_reason"), "expired");
    assert_string_equal(e2e_str(t, "settled_by"), "reconciler");
    cJSON_Delete(t);
    cJSON *p = e2e_bank_payment(e, id);
    assert_non_null(p);
    assert_string_equal(e2e_str(p, "status"), "failed");
    assert_string_equal(e2e_str(p, "failure_reason"), "expired");
    assert_false(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "voided")));
    cJSON_Delete(p);
    expect_nothing_moved(e, id);
    e2e_faults(e, "{\"clear\":true}");
    e2e_finish(e);
}

/* POST /v1/payments with the wallet's key, debiting an account without a mandate. */
static void pay_without_mandate(struct e2e *e, const char *debit, const char *credit)
{
    char body[E2E_BODY_BYTES_MAX], ref[48], auth[E2E_SECRET_BYTES_MAX + 32], url[256];
    char key[E2E_KEY_BYTES_MAX + 32], k[E2E_KEY_BYTES_MAX];
    struct e2e_resp r;
    e2e_new_key(e, k);
    snprintf(ref, sizeof ref, "wtx_%024llx", (unsigned long long)pl_now_us());
    snprintf(body, sizeof body,
             "{\"reference\":\"%s\",\"debit_account\":\"%s\",\"credit_account\":\"%s\","
             "\"amount_minor\":1000,\"currency\":\"INR\",\"mode\":\"sync\","
             "\"expires_at_ms\":%lld}",
             ref, debit, credit, (long long)(pl_now_ms() + 60000));
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", e->api_key);
    snprintf(key, sizeof key, "Idempotency-Key: %s", k);
    snprintf(url, sizeof url, "%s/v1/payments", e->c.bank_url);
    const char *const headers[] = {"Content-Type: application/json", auth, key, NULL};
    e2e_request("POST", url, body, strlen(body), headers, &r);
    e2e_expect(&r, 403, "mandate_missing");
    e2e_resp_free(&r);
    assert_null(e2e_bank_payment(e, ref));
}

/* Nobody can top up from an account that gave no mandate to the payee. */
static void test_mandate_missing(void **state)
{
    struct e2e *e = *state;
    struct e2e_resp r;
    struct e2e_snapshot before, after;
    e2e_start(e, NULL);
    e2e_user_add(e, "alice");
    e2e_user_add(e, "bob");
    e2e_bank(e, "POST", "/v1/accounts",
             "{\"id\":\"HDFC-MALLORY\",\"owner\":\"mallory\",\"opening_minor\":5000}", e->api_key,
             &r);
    e2e_expect(&r, 201, NULL);
    assert_int_equal(e2e_int(r.json, "balance_minor"), 5000);
    e2e_resp_free(&r);
    e2e_snapshot_take(e, &before);

    pay_without_mandate(e, "HDFC-MALLORY", "NODAL-PAYLAB");
    pay_without_mandate(e, "HDFC-ALICE", "HDFC-BOB");
    pay_without_mandate(e, "HDFC-BOB", "HDFC-MALLORY");

    e2e_snapshot_take(e, &after);
    e2e_snapshot_equal(&before, &after, "a payment without a mandate");
    assert_int_equal(e2e_bank_balance(e, "HDFC-MALLORY"), 5000);
    e2e_finish(e);
}

static void bank_expect_401(struct e2e *e, const char *method, const char *path, const char *body,
                            const char *auth_header)
{
    char url[256];
    struct e2e_resp r;
    const char *const headers[] = {"Content-Type: application/json", auth_header, NULL};
    snprintf(url, sizeof url, "%s%s", e->c.bank_url, path);
    e2e_request(method, url, body, body != NULL ? strlen(body) : 0, headers, &r);
    e2e_expect(&r, 401, "unauthorized");
    e2e_resp_free(&r);
}

/* The bank's API wants the wallet's key; the admin API wants the admin token. */
static void test_bank_unauthorized(void **state)
{
    struct e2e *e = *state;
    struct e2e_resp r;
    char wrong[E2E_SECRET_BYTES_MAX + 32], longer[E2E_SECRET_BYTES_MAX + 32];
    char admin_as_key[E2E_SECRET_BYTES_MAX + 32], key_as_admin[E2E_SECRET_BYTES_MAX + 32];
    const char *acct = "{\"id\":\"HDFC-EVE\",\"owner\":\"eve\",\"opening_minor\":100}";
    e2e_start(e, NULL);
    snprintf(wrong, sizeof wrong, "Authorization: Bearer %.8sWRONG", e->api_key);
    snprintf(longer, sizeof longer, "Authorization: Bearer %sX", e->api_key);
    snprintf(admin_as_key, sizeof admin_as_key, "Authorization: Bearer %s", e->admin_token);
    snprintf(key_as_admin, sizeof key_as_admin, "Authorization: Bearer %s", e->api_key);

    const char *auths[] = {"X-None: 1", wrong, longer, admin_as_key, "Authorization: Basic Zm9v"};
    for (size_t i = 0; i < PL_ARRAY_LEN(auths); i++) {
        bank_expect_401(e, "GET", "/v1/accounts/NODAL-PAYLAB", NULL, auths[i]);
        bank_expect_401(e, "POST", "/v1/accounts", acct, auths[i]);
        bank_expect_401(e, "POST", "/v1/mandates",
                        "{\"account\":\"HDFC-EVE\",\"payee\":\"NODAL-PAYLAB\"}", auths[i]);
        bank_expect_401(e, "GET", "/v1/payments?reference=wtx_000000000000000000000000", NULL,
                        auths[i]);
    }
    bank_expect_401(e, "GET", "/admin/faults", NULL, "X-None: 1");
    bank_expect_401(e, "GET", "/admin/faults", NULL, key_as_admin);
    bank_expect_401(e, "PUT", "/admin/faults", "{\"down\":true}", key_as_admin);

    e2e_bank(e, "GET", "/healthz", NULL, NULL, &r);
    e2e_expect(&r, 200, NULL);
    assert_string_equal(e2e_str(r.json, "status"), "ok");
    e2e_resp_free(&r);
    e2e_bank(e, "GET", "/admin/faults", NULL, e->admin_token, &r);
    e2e_expect(&r, 200, NULL);
    assert_false(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r.json, "down")));
    e2e_resp_free(&r);
    e2e_bank(e, "GET", "/v1/accounts/HDFC-EVE", NULL, e->api_key, &r);
    e2e_expect(&r, 404, "unknown_account");
    e2e_resp_free(&r);
    e2e_finish(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bank_slow, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_lost_response, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_bank_stopped, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_bank_down, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_expired_at_bank, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_mandate_missing, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_bank_unauthorized, e2e_setup, e2e_teardown),
    };
    e2e_filter_from_env();
    return cmocka_run_group_tests_name("e2e_faults", tests, NULL, NULL);
}
