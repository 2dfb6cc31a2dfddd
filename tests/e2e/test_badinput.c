/* test_badinput.c: requests the wallet must refuse (docs/api.md, docs/contracts.md), each with
 * its exact status and error code, and each leaving every balance, transaction, entry and
 * user exactly as it was. Also the boundaries that must pass: 1 minor unit, 10^12 refused
 * only by the bank, a 64-character key. */
#include "e2e.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#define OPENING_MINOR 1000000
/* Past the wallet's 64 KiB body limit, well under evhttp's own hard limit. */
#define BIG_BODY_BYTES (70 * 1024)

#define KEY_64 "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"
#define KEY_65 KEY_64 "k"

struct bad_case {
    const char *name;
    const char *method;
    const char *path;
    const char *content_type; /* NULL: application/json */
    const char *key;          /* NULL: a fresh valid key */
    const char *body;         /* NULL: the big body */
    long status;
    const char *code;
};

static const struct bad_case CASES[] = {
    /* POST /v1/topups */
    {"truncated JSON", "POST", "/v1/topups", NULL, NULL,
     "{\"user\":\"alice\",\"amount_minor\":500,\"mode\":\"sync\"", 400, "malformed_json"},
    {"not JSON", "POST", "/v1/topups", NULL, NULL, "user=alice&amount_minor=500", 400,
     "malformed_json"},
    {"JSON array", "POST", "/v1/topups", NULL, NULL, "[{\"user\":\"alice\"}]", 400,
     "malformed_json"},
    {"empty body", "POST", "/v1/topups", NULL, NULL, "", 400, "malformed_json"},
    {"trailing garbage", "POST", "/v1/topups", NULL, NULL,
     "{\"user\":\"alice\",\"amount_minor\":500,\"mode\":\"sync\"}x", 400, "malformed_json"},
    {"amount as string", "POST", "/v1/topups", NULL, NULL,
     "{\"user\":\"alice\",\"amount_minor\":\"500\",\"mode\":\"sync\"}", 400, "invalid_field"},
    {"amount as bool", "POST", "/v1/topups", NULL, NULL,
     "{\"user\":\"alice\",\"amount_minor\":true,\"mode\":\"sync\"}", 400, "invalid_field"},
    {"amount fractional", "POST", "/v1/topups", NULL, NULL,
     "{\"user\":\"alice\",\"amount_minor\":500.5,\"mode\":\"sync\"}", 400, "invalid_field"},
    {"user as number", "POST", "/v1/topups", NULL, NULL,
     "{\"user\":42,\"amount_minor\":500,\"mode\":\"sync\"}", 400, "invalid_field"},
    {"unknown mode", "POST", "/v1/topups", NULL, NULL,
     "{\"user\":\"alice\",\"amount_minor\":500,\"mode\":\"turbo\"}", 400, "invalid_field"},
    {"missing amount", "POST", "/v1/topups", NULL, NULL, "{\"user\":\"alice\",\"mode\":\"sync\"}",
     400, "missing_field"},
    {"null amount", "POST", "/v1/topups", NULL, NULL,
     "{\"user\":\"alice\",\"amount_minor\":null,\"mode\":\"sync\"}", 400, "missing_field"},
    {"missing user", "POST", "/v1/topups", NULL, NULL, "{\"amount_minor\":500,\"mode\":\"sync\"}",
     400, "missing_field"},
    {"amount 0", "POST", "/v1/topups", NULL, NULL,
     "{\"user\":\"alice\",\"amount_minor\":0,\"mode\":\"sync\"}", 422, "invalid_amount"},
    {"amount -1", "POST", "/v1/topups", NULL, NULL,
     "{\"user\":\"alice\",\"amount_minor\":-1,\"mode\":\"sync\"}", 422, "invalid_amount"},
    {"amount 10^12+1", "POST", "/v1/topups", NULL, NULL,
     "{\"user\":\"alice\",\"amount_minor\":1000000000001,\"mode\":\"sync\"}", 422,
     "invalid_amount"},
    {"amount 1e30", "POST", "/v1/topups", NULL, NULL,
     "{\"user\":\"alice\",\"amount_minor\":1e30,\"mode\":\"sync\"}", 422, "invalid_amount"},
    {"unknown user", "POST", "/v1/topups", NULL, NULL,
     "{\"user\":\"zed\",\"amount_minor\":500,\"mode\":\"sync\"}", 404, "unknown_user"},
    {"currency USD", "POST", "/v1/topups", NULL, NULL,
     "{\"user\":\"alice\",\"amount_minor\":500,\"currency\":\"USD\",\"mode\":\"sync\"}", 422,
     "unsupported_currency"},
    {"body over 64 KiB", "POST", "/v1/topups", NULL, NULL, NULL, 413, "body_too_large"},
    {"text/plain", "POST", "/v1/topups", "text/plain", NULL,
     "{\"user\":\"alice\",\"amount_minor\":500,\"mode\":\"sync\"}", 415, "unsupported_media_type"},
    {"form content type", "POST", "/v1/topups", "application/x-www-form-urlencoded", NULL,
     "{\"user\":\"alice\",\"amount_minor\":500,\"mode\":\"sync\"}", 415, "unsupported_media_type"},
    {"key of 65 chars", "POST", "/v1/topups", NULL, KEY_65,
     "{\"user\":\"alice\",\"amount_minor\":500,\"mode\":\"sync\"}", 400, "invalid_idempotency_key"},
    {"key with a space", "POST", "/v1/topups", NULL, "bad key",
     "{\"user\":\"alice\",\"amount_minor\":500,\"mode\":\"sync\"}", 400, "invalid_idempotency_key"},
    /* POST /v1/withdrawals */
    {"withdraw 0", "POST", "/v1/withdrawals", NULL, NULL,
     "{\"user\":\"alice\",\"amount_minor\":0,\"mode\":\"sync\"}", 422, "invalid_amount"},
    {"withdraw beyond balance", "POST", "/v1/withdrawals", NULL, NULL,
     "{\"user\":\"alice\",\"amount_minor\":50001,\"mode\":\"sync\"}", 422, "insufficient_funds"},
    {"withdraw unknown user", "POST", "/v1/withdrawals", NULL, NULL,
     "{\"user\":\"zed\",\"amount_minor\":500,\"mode\":\"sync\"}", 404, "unknown_user"},
    {"withdraw EUR", "POST", "/v1/withdrawals", NULL, NULL,
     "{\"user\":\"alice\",\"amount_minor\":500,\"currency\":\"EUR\",\"mode\":\"sync\"}", 422,
     "unsupported_currency"},
    /* POST /v1/transfers */
    {"transfer malformed", "POST", "/v1/transfers", NULL, NULL, "{\"from\":", 400,
     "malformed_json"},
    {"transfer amount 0", "POST", "/v1/transfers", NULL, NULL,
     "{\"from\":\"alice\",\"to\":\"bob\",\"amount_minor\":0}", 422, "invalid_amount"},
    {"transfer amount string", "POST", "/v1/transfers", NULL, NULL,
     "{\"from\":\"alice\",\"to\":\"bob\",\"amount_minor\":\"10\"}", 400, "invalid_field"},
    {"transfer missing to", "POST", "/v1/transfers", NULL, NULL,
     "{\"from\":\"alice\",\"amount_minor\":10}", 400, "missing_field"},
    {"transfer unknown payer", "POST", "/v1/transfers", NULL, NULL,
     "{\"from\":\"zed\",\"to\":\"bob\",\"amount_minor\":10}", 404, "unknown_user"},
    {"transfer unknown payee", "POST", "/v1/transfers", NULL, NULL,
     "{\"from\":\"alice\",\"to\":\"zed\",\"amount_minor\":10}", 404, "unknown_user"},
    {"transfer to self", "POST", "/v1/transfers", NULL, NULL,
     "{\"from\":\"alice\",\"to\":\"alice\",\"amount_minor\":10}", 422, "same_account"},
    {"transfer overdraft", "POST", "/v1/transfers", NULL, NULL,
     "{\"from\":\"alice\",\"to\":\"bob\",\"amount_minor\":50001}", 422, "insufficient_funds"},
    {"transfer USD", "POST", "/v1/transfers", NULL, NULL,
     "{\"from\":\"alice\",\"to\":\"bob\",\"amount_minor\":10,\"currency\":\"USD\"}", 422,
     "unsupported_currency"},
    /* POST /v1/users */
    {"user with capitals", "POST", "/v1/users", NULL, NULL, "{\"user\":\"Bad-Handle\"}", 400,
     "invalid_field"},
    {"user empty", "POST", "/v1/users", NULL, NULL, "{\"user\":\"\"}", 400, "invalid_field"},
    {"user of 33 chars", "POST", "/v1/users", NULL, NULL,
     "{\"user\":\"abcdefghijklmnopqrstuvwxyz0123456\"}", 400, "invalid_field"},
    {"user with a space", "POST", "/v1/users", NULL, NULL, "{\"user\":\"al ice\"}", 400,
     "invalid_field"},
    {"user as number", "POST", "/v1/users", NULL, NULL, "{\"user\":7}", 400, "invalid_field"},
    {"user missing", "POST", "/v1/users", NULL, NULL, "{\"phone\":\"+911234567890\"}", 400,
     "missing_field"},
    {"user exists", "POST", "/v1/users", NULL, NULL, "{\"user\":\"alice\"}", 409, "user_exists"},
    {"user malformed", "POST", "/v1/users", NULL, NULL, "{\"user\":\"carol\"", 400,
     "malformed_json"},
    {"user text/plain", "POST", "/v1/users", "text/plain", NULL, "{\"user\":\"carol\"}", 415,
     "unsupported_media_type"},
    /* look-ups and routing */
    {"unknown transaction", "GET", "/v1/transactions/wtx_000000000000000000000000", NULL, NULL,
     NULL, 404, "unknown_transaction"},
    {"unknown user GET", "GET", "/v1/users/zed", NULL, NULL, NULL, 404, "unknown_user"},
    {"unknown route", "GET", "/v1/nothing-here", NULL, NULL, NULL, 404, "not_found"},
    {"DELETE a top-up", "DELETE", "/v1/topups", NULL, NULL, NULL, 405, "method_not_allowed"},
};

/* A valid top-up padded past 64 KiB with an extra string member. */
static char *big_body(void)
{
    const char *head = "{\"user\":\"alice\",\"amount_minor\":500,\"mode\":\"sync\",\"note\":\"";
    size_t head_len = strlen(head);
    char *b = malloc(BIG_BODY_BYTES + 1);
    assert_non_null(b);
    memcpy(b, head, head_len);
    memset(b + head_len, 'x', BIG_BODY_BYTES - head_len - 2);
    memcpy(b + BIG_BODY_BYTES - 2, "\"}", 2);
    b[BIG_BODY_BYTES] = '\0';
    return b;
}

static void run_case(struct e2e *e, const struct bad_case *bc)
{
    char url[CLUSTER_URL_BYTES_MAX + 256], ct[96], key_hdr[E2E_KEY_BYTES_MAX + 32];
    char key[E2E_KEY_BYTES_MAX];
    const char *headers[3] = {NULL, NULL, NULL};
    struct e2e_resp r;
    bool is_post = strcmp(bc->method, "POST") == 0;
    char *owned = (is_post && bc->body == NULL) ? big_body() : NULL;
    const char *body = owned != NULL ? owned : bc->body;
    snprintf(url, sizeof url, "%s%s", e->c.wallet_url, bc->path);
    if (is_post) {
        snprintf(ct, sizeof ct, "Content-Type: %s",
                 bc->content_type != NULL ? bc->content_type : "application/json");
        e2e_new_key(e, key);
        snprintf(key_hdr, sizeof key_hdr, "Idempotency-Key: %s", bc->key != NULL ? bc->key : key);
        headers[0] = ct;
        headers[1] = key_hdr;
    }
    e2e_request(bc->method, url, body, body != NULL ? strlen(body) : 0, headers, &r);
    free(owned);
    if (r.status != bc->status || r.json == NULL) {
        fail_msg("%s: expected HTTP %ld %s, got %ld: %.300s", bc->name, bc->status, bc->code,
                 r.status, r.raw.body);
    }
    const char *code = e2e_error_code(&r);
    if (strcmp(code, bc->code) != 0) {
        fail_msg("%s: expected error %s, got %s", bc->name, bc->code, code);
    }
    /* Refused before anything was recorded: no transaction to name. */
    assert_null(cJSON_GetObjectItemCaseSensitive(r.json, "id"));
    e2e_resp_free(&r);
}

static void setup_alice_bob(struct e2e *e)
{
    struct e2e_resp r;
    e2e_start(e, NULL);
    e2e_user_add(e, "alice");
    e2e_user_add(e, "bob");
    assert_int_equal(e2e_topup(e, "alice", 50000, "sync", NULL, &r), 200);
    e2e_resp_free(&r);
}

static void test_bad_inputs(void **state)
{
    struct e2e *e = *state;
    struct e2e_snapshot before, after;
    setup_alice_bob(e);
    e2e_snapshot_take(e, &before);
    for (size_t i = 0; i < PL_ARRAY_LEN(CASES); i++) {
        run_case(e, &CASES[i]);
        e2e_snapshot_take(e, &after);
        e2e_snapshot_equal(&before, &after, CASES[i].name);
    }
    struct e2e_resp r;
    e2e_wallet(e, "GET", "/v1/users/carol", NULL, NULL, &r);
    e2e_expect(&r, 404, "unknown_user");
    e2e_resp_free(&r);
    e2e_finish(e);
}

/* The edges that must be accepted: 1 minor unit, a 64-character key, and 10^12 (valid at
 * the wallet, declined by the bank for want of funds). */
static void test_accepted_boundaries(void **state)
{
    struct e2e *e = *state;
    struct e2e_resp r;
    setup_alice_bob(e);
    assert_int_equal(e2e_topup(e, "alice", 1, "sync", KEY_64, &r), 200);
    e2e_expect_txn(r.json, "topup", "sync", "succeeded", 1);
    e2e_resp_free(&r);
    assert_int_equal(e2e_topup(e, "alice", 1000000000000LL, "sync", NULL, &r), 402);
    e2e_expect_txn_error(&r, 402, "bank_declined", "failed");
    e2e_resp_free(&r);
    assert_int_equal(e2e_transfer(e, "alice", "bob", 50001, &r), 200);
    e2e_expect_txn(r.json, "p2p", "internal", "succeeded", 50001);
    e2e_resp_free(&r);
    assert_int_equal(e2e_wallet_balance(e, "alice"), 0);
    assert_int_equal(e2e_wallet_balance(e, "bob"), 50001);
    assert_int_equal(e2e_bank_balance(e, "NODAL-PAYLAB"), 50001);
    assert_int_equal(e2e_bank_balance(e, "HDFC-ALICE"), OPENING_MINOR - 50001);
    e2e_finish(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bad_inputs, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_accepted_boundaries, e2e_setup, e2e_teardown),
    };
    e2e_filter_from_env();
    return cmocka_run_group_tests_name("e2e_badinput", tests, NULL, NULL);
}
