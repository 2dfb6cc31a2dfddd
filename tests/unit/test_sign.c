/* test_sign.c: HMAC, base64, constant-time equality, ws_token and Standard Webhooks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "pl.h"
#include "sign.h"

#include <stdio.h>
#include <string.h>

static void hex(const uint8_t *in, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", in[i]);
}

static void test_hmac_rfc4231(void **state)
{
    (void)state;
    uint8_t mac[SIGN_MAC_BYTES];
    char text[2 * SIGN_MAC_BYTES + 1];
    /* RFC 4231 test case 2 */
    const char *msg = "what do ya want for nothing?";
    sign_hmac_sha256("Jefe", 4, msg, strlen(msg), mac);
    hex(mac, sizeof mac, text);
    assert_string_equal(text, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    /* RFC 4231 test case 1 */
    uint8_t key[20];
    memset(key, 0x0b, sizeof key);
    sign_hmac_sha256(key, sizeof key, "Hi There", 8, mac);
    hex(mac, sizeof mac, text);
    assert_string_equal(text, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
}

static void test_base64(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(sign_base64("", 0, out, sizeof out), 0);
    assert_string_equal(out, "");
    assert_int_equal(sign_base64("f", 1, out, sizeof out), 4);
    assert_string_equal(out, "Zg==");
    assert_int_equal(sign_base64("foobar", 6, out, sizeof out), 8);
    assert_string_equal(out, "Zm9vYmFy");
    assert_int_equal(sign_base64("foobar", 6, out, 8), PL_ERANGE); /* no room for NUL */
    const uint8_t bin[] = {0xfb, 0xff, 0xfe};
    assert_int_equal(sign_base64(bin, 3, out, sizeof out), 4);
    assert_string_equal(out, "+//+");
    assert_int_equal(sign_base64url(bin, 3, out, sizeof out), 4);
    assert_string_equal(out, "-__-");
    assert_int_equal(sign_base64url("f", 1, out, sizeof out), 2);
    assert_string_equal(out, "Zg");
    assert_int_equal(sign_base64url("f", 1, out, 2), PL_ERANGE);
}

static void test_base64_round_trip(void **state)
{
    (void)state;
    uint8_t in[100], back[100];
    char text[200];
    for (size_t i = 0; i < sizeof in; i++)
        in[i] = (uint8_t)(i * 37 + 11);
    for (size_t n = 0; n <= sizeof in; n++) {
        int w = sign_base64(in, n, text, sizeof text);
        assert_true(w >= 0);
        int r = sign_base64_decode(text, back, sizeof back);
        assert_int_equal(r, (int)n);
        assert_memory_equal(in, back, n);
    }
}

static void test_base64_decode_errors(void **state)
{
    (void)state;
    uint8_t out[16];
    assert_int_equal(sign_base64_decode("Zm9v", out, sizeof out), 3);
    assert_int_equal(sign_base64_decode("Zg", out, sizeof out), 1); /* padding optional */
    assert_int_equal(sign_base64_decode("Z", out, sizeof out), PL_EINVAL);
    assert_int_equal(sign_base64_decode("Zm9v!", out, sizeof out), PL_EINVAL);
    assert_int_equal(sign_base64_decode("Zm-v", out, sizeof out), PL_EINVAL); /* url alphabet */
    assert_int_equal(sign_base64_decode("Zg=", out, sizeof out), PL_EINVAL);
    assert_int_equal(sign_base64_decode("Zg===", out, sizeof out), PL_EINVAL);
    assert_int_equal(sign_base64_decode("Zm9vYmFy", out, 5), PL_ERANGE);
    assert_int_equal(sign_base64_decode("", out, sizeof out), 0);
}

static void test_equal(void **state)
{
    (void)state;
    assert_true(sign_equal("", ""));
    assert_true(sign_equal("abc", "abc"));
    assert_false(sign_equal("abc", "abd"));
    assert_false(sign_equal("abc", "ab"));
    assert_false(sign_equal("ab", "abc"));
    assert_false(sign_equal("", "a"));
    assert_false(sign_equal("a", ""));
}

static void test_ws_token(void **state)
{
    (void)state;
    const char *secret = "s3cret";
    char token[SIGN_TOKEN_BYTES_MAX];
    assert_int_equal(sign_ws_token(secret, "alice", 1000, token, sizeof token), PL_OK);
    assert_memory_equal(token, "v1.alice.1000.", 14);
    assert_int_equal(strlen(token), 14 + 43);
    assert_true(sign_ws_token_verify(secret, token, "alice", 999));
    assert_false(sign_ws_token_verify(secret, token, "alice", 1000)); /* expired */
    assert_false(sign_ws_token_verify(secret, token, "alice", 5000));
    assert_false(sign_ws_token_verify(secret, token, "bob", 999));
    assert_false(sign_ws_token_verify(secret, token, "alic", 999));
    assert_false(sign_ws_token_verify("other", token, "alice", 999));
    assert_false(sign_ws_token_verify(secret, NULL, "alice", 999));
    assert_false(sign_ws_token_verify(secret, "", "alice", 999));

    char tampered[SIGN_TOKEN_BYTES_MAX];
    memcpy(tampered, token, sizeof tampered);
    tampered[strlen(tampered) - 1] ^= 1;
    assert_false(sign_ws_token_verify(secret, tampered, "alice", 999));
    /* a later expiry with the old MAC */
    char forged[SIGN_TOKEN_BYTES_MAX];
    snprintf(forged, sizeof forged, "v1.alice.9999.%s", token + 14);
    assert_false(sign_ws_token_verify(secret, forged, "alice", 999));
    snprintf(forged, sizeof forged, "v1.alice.-1.%s", token + 14);
    assert_false(sign_ws_token_verify(secret, forged, "alice", -5));
    /* the token is bound to the user */
    assert_int_equal(sign_ws_token(secret, "bob", 1000, forged, sizeof forged), PL_OK);
    assert_false(sign_ws_token_verify(secret, forged, "alice", 999));
    assert_int_equal(sign_ws_token(secret, "alice", 1000, token, 20), PL_ERANGE);
    assert_int_equal(sign_ws_token(secret, "a.b", 1000, token, sizeof token), PL_EINVAL);
}

#define WH_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define WH_ID "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define WH_TS 1614265330
#define WH_BODY "{\"test\": 2432232314}"
#define WH_SIG "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

static int verify(const char *secret, const char *ts, const char *sig, const char *body,
                  int64_t now_s)
{
    return sign_webhook_verify(secret, WH_ID, ts, sig, body, strlen(body), now_s);
}

static void test_webhook_known_vector(void **state)
{
    (void)state;
    char sig[SIGN_SIGNATURE_BYTES_MAX];
    assert_int_equal(
        sign_webhook(WH_SECRET, WH_ID, WH_TS, WH_BODY, strlen(WH_BODY), sig, sizeof sig), PL_OK);
    assert_string_equal(sig, WH_SIG);
    assert_int_equal(verify(WH_SECRET, "1614265330", WH_SIG, WH_BODY, WH_TS), PL_OK);
}

static void test_webhook_verify(void **state)
{
    (void)state;
    const char *ts = "1614265330";
    /* several signatures, the good one anywhere */
    assert_int_equal(verify(WH_SECRET, ts, "v1,bm9wZQ== " WH_SIG, WH_BODY, WH_TS), PL_OK);
    assert_int_equal(verify(WH_SECRET, ts, WH_SIG " v1,bm9wZQ==", WH_BODY, WH_TS), PL_OK);
    assert_int_equal(verify(WH_SECRET, ts, "v1,bm9wZQ== v1,eWV0IG5vcGU=", WH_BODY, WH_TS),
                     PL_EINVAL);
    /* wrong secret, tampered body, empty or garbled headers */
    assert_int_equal(verify("whsec_c2VjcmV0c2VjcmV0c2VjcmV0", ts, WH_SIG, WH_BODY, WH_TS),
                     PL_EINVAL);
    assert_int_equal(verify(WH_SECRET, ts, WH_SIG, "{\"test\": 2432232315}", WH_TS), PL_EINVAL);
    assert_int_equal(verify(WH_SECRET, ts, "", WH_BODY, WH_TS), PL_EINVAL);
    assert_int_equal(verify(WH_SECRET, ts, "v1,", WH_BODY, WH_TS), PL_EINVAL);
    assert_int_equal(
        verify(WH_SECRET, ts, "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", WH_BODY, WH_TS),
        PL_EINVAL);
    assert_int_equal(verify(WH_SECRET, "", WH_SIG, WH_BODY, WH_TS), PL_EINVAL);
    assert_int_equal(verify(WH_SECRET, "1614265330x", WH_SIG, WH_BODY, WH_TS), PL_EINVAL);
    assert_int_equal(verify(WH_SECRET, "-1614265330", WH_SIG, WH_BODY, WH_TS), PL_EINVAL);
    assert_int_equal(verify("not base64!", ts, WH_SIG, WH_BODY, WH_TS), PL_EINVAL);
}

static void test_webhook_timestamp_window(void **state)
{
    (void)state;
    const char *ts = "1614265330";
    assert_int_equal(verify(WH_SECRET, ts, WH_SIG, WH_BODY, WH_TS + 300), PL_OK);
    assert_int_equal(verify(WH_SECRET, ts, WH_SIG, WH_BODY, WH_TS - 300), PL_OK);
    assert_int_equal(verify(WH_SECRET, ts, WH_SIG, WH_BODY, WH_TS + 301), PL_EINVAL);
    assert_int_equal(verify(WH_SECRET, ts, WH_SIG, WH_BODY, WH_TS - 301), PL_EINVAL);
}

static void test_webhook_round_trip(void **state)
{
    (void)state;
    const char *secret = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const char *body = "{\"id\":\"evt_1\",\"type\":\"payment.succeeded\"}";
    char sig[SIGN_SIGNATURE_BYTES_MAX];
    assert_int_equal(sign_webhook(secret, "evt_1", 1700000000, body, strlen(body), sig, sizeof sig),
                     PL_OK);
    assert_int_equal(
        sign_webhook_verify(secret, "evt_1", "1700000000", sig, body, strlen(body), 1700000100),
        PL_OK);
    assert_int_equal(
        sign_webhook_verify(secret, "evt_2", "1700000000", sig, body, strlen(body), 1700000100),
        PL_EINVAL);
    assert_int_equal(
        sign_webhook_verify(secret, "evt_1", "1700000001", sig, body, strlen(body), 1700000100),
        PL_EINVAL);
    assert_int_equal(sign_webhook("whsec_", "evt_1", 1, body, strlen(body), sig, sizeof sig),
                     PL_EINVAL);
    assert_int_equal(sign_webhook(secret, "evt_1", 1, body, strlen(body), sig, 10), PL_ERANGE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hmac_rfc4231),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_base64_round_trip),
        cmocka_unit_test(test_base64_decode_errors),
        cmocka_unit_test(test_equal),
        cmocka_unit_test(test_ws_token),
        cmocka_unit_test(test_webhook_known_vector),
        cmocka_unit_test(test_webhook_verify),
        cmocka_unit_test(test_webhook_timestamp_window),
        cmocka_unit_test(test_webhook_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
