/* test_sync.c: the happy paths and the definite bank answers of sync coupling
 * (docs/architecture.md, docs/ledger.md): top-up, P2P transfer, withdrawal, a bank decline, and a
 * withdrawal the bank expires while the wallet still waits (the hold goes back). Balances are
 * checked on both sides. */
#include "e2e.h"

#include <stdio.h>
#include <string.h>

#define OPENING_MINOR 1000000 /* --bank-opening-minor default */

/* alice tops up 50000 and the money shows up on both ledgers. */
static void test_sync_topup(void **state)
{
    struct e2e *e = *state;
    struct e2e_resp r;
    char id[64];
    e2e_start(e, NULL);
    e2e_user_add(e, "alice");
    assert_int_equal(e2e_bank_balance(e, "HDFC-ALICE"), OPENING_MINOR);
    assert_int_equal(e2e_bank_balance(e, "NODAL-PAYLAB"), 0);

    assert_int_equal(e2e_topup(e, "alice", 50000, "sync", NULL, &r), 200);
    e2e_expect_txn(r.json, "topup", "sync", "succeeded", 50000);
    assert_string_equal(e2e_str(r.json, "user"), "alice");
    assert_string_equal(e2e_str(r.json, "counterparty"), "HDFC-ALICE");
    assert_string_equal(e2e_str(r.json, "settled_by"), "response");
    assert_true(e2e_is_null(r.json, "failure_reason"));
    assert_int_equal(strncmp(e2e_str(r.json, "bank_payment_id"), "bp_", 3), 0);
    assert_int_equal(e2e_int(r.json, "balance_minor"), 50000);
    assert_false(r.replayed);
    pl_strlcpy(id, e2e_str(r.json, "id"), sizeof id);
    char bp[64];
    pl_strlcpy(bp, e2e_str(r.json, "bank_payment_id"), sizeof bp);
    e2e_resp_free(&r);

    assert_int_equal(e2e_wallet_balance(e, "alice"), 50000);
    assert_int_equal(e2e_bank_balance(e, "HDFC-ALICE"), OPENING_MINOR - 50000);
    assert_int_equal(e2e_bank_balance(e, "NODAL-PAYLAB"), 50000);

    cJSON *p = e2e_bank_payment(e, id);
    assert_non_null(p);
    assert_string_equal(e2e_str(p, "payment_id"), bp);
    assert_string_equal(e2e_str(p, "status"), "succeeded");
    assert_string_equal(e2e_str(p, "debit_account"), "HDFC-ALICE");
    assert_string_equal(e2e_str(p, "credit_account"), "NODAL-PAYLAB");
    assert_int_equal(e2e_int(p, "amount_minor"), 50000);
    assert_string_equal(e2e_str(p, "mode"), "sync");
    cJSON_Delete(p);

    cJSON *t = e2e_txn(e, id);
    assert_true(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(t, "timeline")) >= 1);
    cJSON_Delete(t);
    assert_int_equal(
        e2e_wallet_db_int(e, "SELECT count(*) FROM entries WHERE transaction_id=?1", id), 2);
    assert_int_equal(e2e_wallet_db_int(e,
                                       "SELECT coalesce(sum(amount_minor),0) FROM entries "
                                       "WHERE account_id='wallet:alice'",
                                       NULL),
                     50000);
    e2e_finish(e);
}

/* alice pays bob inside the wallet; an overdraft and a self-payment are refused. */
static void test_p2p(void **state)
{
    struct e2e *e = *state;
    struct e2e_resp r;
    e2e_start(e, NULL);
    e2e_user_add(e, "alice");
    e2e_user_add(e, "bob");
    assert_int_equal(e2e_topup(e, "alice", 50000, "sync", NULL, &r), 200);
    e2e_resp_free(&r);

    assert_int_equal(e2e_transfer(e, "alice", "bob", 10000, &r), 200);
    e2e_expect_txn(r.json, "p2p", "internal", "succeeded", 10000);
    assert_string_equal(e2e_str(r.json, "user"), "alice");
    assert_string_equal(e2e_str(r.json, "counterparty"), "bob");
    assert_int_equal(e2e_int(r.json, "balance_minor"), 40000);
    e2e_resp_free(&r);
    assert_int_equal(e2e_wallet_balance(e, "alice"), 40000);
    assert_int_equal(e2e_wallet_balance(e, "bob"), 10000);

    int64_t entries = e2e_wallet_db_int(e, "SELECT count(*) FROM entries", NULL);
    assert_int_equal(e2e_transfer(e, "alice", "bob", 40001, &r), 422);
    e2e_expect(&r, 422, "insufficient_funds");
    e2e_resp_free(&r);
    assert_int_equal(e2e_transfer(e, "alice", "alice", 100, &r), 422);
    e2e_expect(&r, 422, "same_account");
    e2e_resp_free(&r);
    assert_int_equal(e2e_wallet_balance(e, "alice"), 40000);
    assert_int_equal(e2e_wallet_balance(e, "bob"), 10000);
    assert_int_equal(e2e_wallet_db_int(e, "SELECT count(*) FROM entries", NULL), entries);

    /* P2P never touches the bank. */
    assert_int_equal(e2e_bank_balance(e, "NODAL-PAYLAB"), 50000);
    assert_int_equal(e2e_bank_balance(e, "HDFC-BOB"), OPENING_MINOR);
    e2e_finish(e);
}

/* A wallet user may bind only a bank account in their own name: neither naming alice's
 * account nor a handle whose default account name already belongs to alice gets a mandate
 * on it, so nobody can top up from HDFC-ALICE but alice. */
static void test_foreign_bank_account(void **state)
{
    struct e2e *e = *state;
    struct e2e_resp r;
    e2e_start(e, NULL);
    e2e_user_add(e, "alice");
    int64_t users = e2e_wallet_db_int(e, "SELECT count(*) FROM users", NULL);

    e2e_wallet(e, "POST", "/v1/users", "{\"user\":\"mallory\",\"bank_account\":\"HDFC-ALICE\"}",
               NULL, &r);
    e2e_expect(&r, 403, "forbidden");
    e2e_resp_free(&r);
    e2e_wallet(e, "POST", "/v1/users", "{\"user\":\"carol\",\"bank_account\":\"HDFC-NOBODY\"}",
               NULL, &r);
    e2e_expect(&r, 422, "unknown_bank_account");
    e2e_resp_free(&r);
    assert_int_equal(e2e_wallet_db_int(e, "SELECT count(*) FROM users", NULL), users);

    /* An account opened at the bank in dave's name may be bound by the wallet user dave. */
    e2e_bank(e, "POST", "/v1/accounts",
             "{\"id\":\"SBI-DAVE\",\"owner\":\"dave\",\"opening_minor\":7000}", e->api_key, &r);
    e2e_expect(&r, 201, NULL);
    e2e_resp_free(&r);
    e2e_wallet(e, "POST", "/v1/users", "{\"user\":\"dave\",\"bank_account\":\"SBI-DAVE\"}", NULL,
               &r);
    e2e_expect(&r, 201, NULL);
    e2e_resp_free(&r);
    assert_int_equal(e2e_topup(e, "dave", 7000, "sync", NULL, &r), 200);
    e2e_resp_free(&r);
    assert_int_equal(e2e_bank_balance(e, "SBI-DAVE"), 0);
    assert_int_equal(e2e_bank_balance(e, "HDFC-ALICE"), OPENING_MINOR);
    e2e_wallet(e, "GET", "/v1/users/mallory", NULL, NULL, &r);
    assert_int_equal(r.status, 404);
    e2e_resp_free(&r);
    e2e_finish(e);
}

/* bob withdraws 5000 to HDFC-BOB; more than his balance is refused before the bank. */
static void test_withdrawal(void **state)
{
    struct e2e *e = *state;
    struct e2e_resp r;
    e2e_start(e, NULL);
    e2e_user_add(e, "alice");
    e2e_user_add(e, "bob");
    assert_int_equal(e2e_topup(e, "alice", 50000, "sync", NULL, &r), 200);
    e2e_resp_free(&r);
    assert_int_equal(e2e_transfer(e, "alice", "bob", 10000, &r), 200);
    e2e_resp_free(&r);

    assert_int_equal(e2e_withdraw(e, "bob", 5000, "sync", NULL, &r), 200);
    e2e_expect_txn(r.json, "withdrawal", "sync", "succeeded", 5000);
    assert_string_equal(e2e_str(r.json, "user"), "bob");
    assert_string_equal(e2e_str(r.json, "counterparty"), "HDFC-BOB");
    assert_string_equal(e2e_str(r.json, "settled_by"), "response");
    assert_int_equal(e2e_int(r.json, "balance_minor"), 5000);
    char id[64];
    pl_strlcpy(id, e2e_str(r.json, "id"), sizeof id);
    e2e_resp_free(&r);

    assert_int_equal(e2e_wallet_balance(e, "bob"), 5000);
    assert_int_equal(e2e_bank_balance(e, "HDFC-BOB"), OPENING_MINOR + 5000);
    assert_int_equal(e2e_bank_balance(e, "NODAL-PAYLAB"), 45000);
    cJSON *p = e2e_bank_payment(e, id);
    assert_non_null(p);
    assert_string_equal(e2e_str(p, "debit_account"), "NODAL-PAYLAB");
    assert_string_equal(e2e_str(p, "credit_account"), "HDFC-BOB");
    assert_string_equal(e2e_str(p, "status"), "succeeded");
    cJSON_Delete(p);
    assert_int_equal(e2e_wallet_db_int(e,
                                       "SELECT balance_minor FROM accounts "
                                       "WHERE id='payouts:in_flight'",
                                       NULL),
                     0);

    assert_int_equal(e2e_withdraw(e, "bob", 5001, "sync", NULL, &r), 422);
    e2e_expect(&r, 422, "insufficient_funds");
    e2e_resp_free(&r);
    assert_int_equal(e2e_wallet_balance(e, "bob"), 5000);
    assert_int_equal(e2e_bank_balance(e, "HDFC-BOB"), OPENING_MINOR + 5000);
    e2e_finish(e);
}

/* A top-up above the bank balance: 402 bank_declined, failed, nothing credited. */
static void test_bank_declines(void **state)
{
    struct e2e *e = *state;
    struct e2e_resp r;
    char id[64];
    e2e_start(e, NULL);
    e2e_user_add(e, "alice");
    assert_int_equal(e2e_topup(e, "alice", OPENING_MINOR + 1, "sync", NULL, &r), 402);
    pl_strlcpy(id, e2e_expect_txn_error(&r, 402, "bank_declined", "failed"), sizeof id);
    e2e_resp_free(&r);

    cJSON *t = e2e_txn(e, id);
    e2e_expect_txn(t, "topup", "sync", "failed", OPENING_MINOR + 1);
    assert_string_equal(e2e_str(t, "failure_reason"), "insufficient_funds");
    assert_string_equal(e2e_str(t, "settled_by"), "response");
    cJSON_Delete(t);
    cJSON *p = e2e_bank_payment(e, id);
    assert_non_null(p);
    assert_string_equal(e2e_str(p, "status"), "failed");
    assert_string_equal(e2e_str(p, "failure_reason"), "insufficient_funds");
    cJSON_Delete(p);

    assert_int_equal(e2e_wallet_balance(e, "alice"), 0);
    assert_int_equal(e2e_bank_balance(e, "HDFC-ALICE"), OPENING_MINOR);
    assert_int_equal(e2e_bank_balance(e, "NODAL-PAYLAB"), 0);
    assert_int_equal(
        e2e_wallet_db_int(e, "SELECT count(*) FROM entries WHERE transaction_id=?1", id), 0);
    e2e_finish(e);
}

struct balance_probe {
    struct e2e *e;
    const char *user;
    int64_t want;
};

static bool balance_is(void *arg)
{
    struct balance_probe *b = arg;
    return e2e_wallet_balance(b->e, b->user) == b->want;
}

/* The bank answers after its deadline passed (latency 1000 ms > TTL 500 ms, the wallet
 * waits up to 3 s): 402 failed/expired, and the hold taken meanwhile goes back. */
static void test_withdrawal_expired_hold_returned(void **state)
{
    struct e2e *e = *state;
    struct e2e_resp r;
    struct e2e_bg bg;
    char key[E2E_KEY_BYTES_MAX], id[64];
    const struct e2e_opts opts = {.bank_timeout_ms = 3000, .payment_ttl_sync_ms = 500};
    e2e_start(e, &opts);
    e2e_user_add(e, "alice");
    assert_int_equal(e2e_topup(e, "alice", 50000, "sync", NULL, &r), 200);
    e2e_resp_free(&r);
    e2e_faults(e, "{\"latency_ms\":1000}");

    e2e_new_key(e, key);
    e2e_bg_start(&bg, e, "/v1/withdrawals",
                 "{\"user\":\"alice\",\"amount_minor\":20000,\"mode\":\"sync\"}", key);
    struct balance_probe held = {.e = e, .user = "alice", .want = 30000};
    assert_true(cluster_wait_for(balance_is, &held, cluster_deadline_ms(2000)));
    e2e_bg_join(&bg, &r);
    pl_strlcpy(id, e2e_expect_txn_error(&r, 402, "bank_declined", "failed"), sizeof id);
    e2e_resp_free(&r);

    cJSON *t = e2e_txn(e, id);
    e2e_expect_txn(t, "withdrawal", "sync", "failed", 20000);
    assert_string_equal(e2e_str(t, "failure_reason"), "expired");
    assert_string_equal(e2e_str(t, "settled_by"), "response");
    cJSON_Delete(t);
    cJSON *p = e2e_bank_payment(e, id);
    assert_non_null(p);
    assert_string_equal(e2e_str(p, "status"), "failed");
    assert_string_equal(e2e_str(p, "failure_reason"), "expired");
    cJSON_Delete(p);

    assert_int_equal(e2e_wallet_balance(e, "alice"), 50000);
    assert_int_equal(e2e_bank_balance(e, "HDFC-ALICE"), OPENING_MINOR - 50000);
    assert_int_equal(e2e_bank_balance(e, "NODAL-PAYLAB"), 50000);
    assert_int_equal(e2e_wallet_db_int(e,
                                       "SELECT balance_minor FROM accounts "
                                       "WHERE id='payouts:in_flight'",
                                       NULL),
                     0);
    e2e_faults(e, "{\"clear\":true}");
    e2e_finish(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sync_topup, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_p2p, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_foreign_bank_account, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_withdrawal, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_bank_declines, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_withdrawal_expired_hold_returned, e2e_setup,
                                        e2e_teardown),
    };
    e2e_filter_from_env();
    return cmocka_run_group_tests_name("e2e_sync", tests, NULL, NULL);
}
