/* test_ids.c: random ids, user handles, idempotency keys and traceparent (docs/api.md and
 * docs/architecture.md). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "ids.h"
#include "pl.h"

#include <string.h>

static void test_new_and_valid(void **state)
{
    (void)state;
    char a[ID_BYTES_MAX], b[ID_BYTES_MAX];
    assert_int_equal(ids_new("wtx_", a, sizeof a), PL_OK);
    assert_int_equal(ids_new("wtx_", b, sizeof b), PL_OK);
    assert_int_equal(strlen(a), 4 + 24);
    assert_memory_equal(a, "wtx_", 4);
    assert_string_not_equal(a, b);
    assert_true(ids_valid("wtx_", a));
    assert_false(ids_valid("bp_", a));
    assert_true(ids_valid("", a + 4));
    char longest[ID_BYTES_MAX];
    assert_int_equal(ids_new("abcdefgh", longest, sizeof longest), PL_OK);
    assert_true(ids_valid("abcdefgh", longest));
}

static void test_new_small_cap(void **state)
{
    (void)state;
    char out[ID_BYTES_MAX];
    assert_int_equal(ids_new("bp_", out, 3 + 24 + 1), PL_OK);
    assert_int_equal(ids_new("bp_", out, 3 + 24), PL_ERANGE);
}

static void test_valid_rejects(void **state)
{
    (void)state;
    assert_true(ids_valid("evt_", "evt_0123456789abcdef01234567"));
    assert_false(ids_valid("evt_", "evt_0123456789abcdef0123456"));   /* 23 */
    assert_false(ids_valid("evt_", "evt_0123456789abcdef012345678")); /* 25 */
    assert_false(ids_valid("evt_", "evt_0123456789ABCDEF01234567"));  /* uppercase */
    assert_false(ids_valid("evt_", "evt_0123456789abcdeg01234567"));  /* not hex */
    assert_false(ids_valid("evt_", "evx_0123456789abcdef01234567"));
    assert_false(ids_valid("evt_", ""));
    assert_false(ids_valid("evt_", NULL));
}

static void test_user_handles(void **state)
{
    (void)state;
    assert_true(ids_user_valid("alice"));
    assert_true(ids_user_valid("a"));
    assert_true(ids_user_valid("bob_2"));
    assert_true(ids_user_valid("abcdefghijklmnopqrstuvwxyz012345"));   /* 32 */
    assert_false(ids_user_valid("abcdefghijklmnopqrstuvwxyz0123456")); /* 33 */
    assert_false(ids_user_valid(""));
    assert_false(ids_user_valid(NULL));
    assert_false(ids_user_valid("Alice"));
    assert_false(ids_user_valid("al ice"));
    assert_false(ids_user_valid("al-ice"));
    assert_false(ids_user_valid("al.ice"));
    assert_false(ids_user_valid("*"));
}

static void test_idem_keys(void **state)
{
    (void)state;
    char key[IDEM_KEY_CHARS_MAX + 2];
    memset(key, 'k', sizeof key);
    key[IDEM_KEY_CHARS_MAX] = '\0';
    assert_true(ids_idem_key_valid(key)); /* 64 */
    key[IDEM_KEY_CHARS_MAX] = 'k';
    key[IDEM_KEY_CHARS_MAX + 1] = '\0';
    assert_false(ids_idem_key_valid(key)); /* 65 */
    assert_true(ids_idem_key_valid("x"));
    assert_true(ids_idem_key_valid("wtx_abc-123:!~"));
    assert_false(ids_idem_key_valid(""));
    assert_false(ids_idem_key_valid(NULL));
    assert_false(ids_idem_key_valid("a b"));
    assert_false(ids_idem_key_valid("a\tb"));
    assert_false(ids_idem_key_valid("caf\xc3\xa9"));
    assert_false(ids_idem_key_valid("a\x7f"));
}

static void test_random(void **state)
{
    (void)state;
    uint8_t a[32] = {0}, b[32] = {0};
    assert_int_equal(ids_random(a, sizeof a), PL_OK);
    assert_int_equal(ids_random(b, sizeof b), PL_OK);
    assert_memory_not_equal(a, b, sizeof a);
    assert_int_equal(ids_random(a, 0), PL_OK);
}

static void test_traceparent(void **state)
{
    (void)state;
    char tp[TRACEPARENT_BYTES], child[TRACEPARENT_BYTES];
    assert_int_equal(ids_traceparent_new(tp), PL_OK);
    assert_int_equal(strlen(tp), 55);
    assert_true(ids_traceparent_valid(tp));
    assert_memory_equal(tp, "00-", 3);
    assert_string_equal(tp + 52, "-01");
    assert_int_equal(ids_traceparent_child(tp, child), PL_OK);
    assert_true(ids_traceparent_valid(child));
    assert_memory_equal(tp, child, 3 + 32 + 1);       /* same trace id */
    assert_memory_not_equal(tp + 36, child + 36, 16); /* new span id */
    assert_int_equal(ids_traceparent_child("garbage", child), PL_OK);
    assert_true(ids_traceparent_valid(child));
    assert_int_equal(ids_traceparent_child(NULL, child), PL_OK);
    assert_true(ids_traceparent_valid(child));
}

static void test_traceparent_valid(void **state)
{
    (void)state;
    assert_true(ids_traceparent_valid("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
    assert_true(ids_traceparent_valid("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"));
    assert_false(ids_traceparent_valid("00-00000000000000000000000000000000-00f067aa0ba902b7-01"));
    assert_false(ids_traceparent_valid("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"));
    assert_false(ids_traceparent_valid("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"));
    assert_false(ids_traceparent_valid("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
    assert_false(ids_traceparent_valid("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-"));
    assert_false(ids_traceparent_valid("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01"));
    assert_false(ids_traceparent_valid("00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
    assert_false(ids_traceparent_valid(""));
    assert_false(ids_traceparent_valid(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_and_valid), cmocka_unit_test(test_new_small_cap),
        cmocka_unit_test(test_valid_rejects), cmocka_unit_test(test_user_handles),
        cmocka_unit_test(test_idem_keys),     cmocka_unit_test(test_random),
        cmocka_unit_test(test_traceparent),   cmocka_unit_test(test_traceparent_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
