/* test_money.c: money_parse / money_format boundaries (docs/api.md). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "money.h"
#include "pl.h"

#include <string.h>

static void parse_ok(const char *s, int64_t want)
{
    int64_t got = -1;
    int rc = money_parse(s, &got);
    if (rc != PL_OK || got != want)
        fail_msg("money_parse(\"%s\"): rc=%d got=%lld", s, rc, (long long)got);
}

static void parse_err(const char *s, int want_rc)
{
    int64_t got = 12345;
    int rc = money_parse(s, &got);
    if (rc != want_rc)
        fail_msg("money_parse(\"%s\"): rc=%d want %d", s != NULL ? s : "(null)", rc, want_rc);
    assert_int_equal(got, 12345); /* untouched on error */
}

static void test_parse_valid(void **state)
{
    (void)state;
    parse_ok("500", 50000);
    parse_ok("500.5", 50050);
    parse_ok("500.50", 50050);
    parse_ok("0.01", 1);
    parse_ok("0", 0);
    parse_ok("0.00", 0);
    parse_ok("1", 100);
    parse_ok("\xE2\x82\xB9"
             "500.50",
             50050);
    parse_ok("10000000000", MONEY_AMOUNT_MINOR_MAX);
    parse_ok("10000000000.00", MONEY_AMOUNT_MINOR_MAX);
    parse_ok("9999999999.99", MONEY_AMOUNT_MINOR_MAX - 1);
    parse_ok("007", 700);
}

static void test_parse_invalid(void **state)
{
    (void)state;
    const char *bad[] = {"",
                         ".",
                         "5.",
                         ".5",
                         "1.234",
                         "-5",
                         "+5",
                         " 5",
                         "5 ",
                         "1e3",
                         "1,000",
                         "abc",
                         "5..0",
                         "5.0.0",
                         "\xE2\x82\xB9",
                         "\xE2\x82\xB9 5",
                         "5\xE2\x82\xB9",
                         "0x10",
                         "5.-1",
                         "1_000"};
    for (size_t i = 0; i < PL_ARRAY_LEN(bad); i++)
        parse_err(bad[i], PL_EINVAL);
    parse_err(NULL, PL_EINVAL);
}

static void test_parse_range(void **state)
{
    (void)state;
    parse_err("10000000000.01", PL_ERANGE);
    parse_err("10000000001", PL_ERANGE);
    parse_err("123456789012345678901234567890", PL_ERANGE);
    parse_err("123456789012345678901234567890.99", PL_ERANGE);
    /* syntax errors win over size */
    parse_err("123456789012345678901234567890x", PL_EINVAL);
}

static void format_is(int64_t minor, const char *want)
{
    char out[MONEY_FORMAT_BYTES_MAX];
    assert_int_equal(money_format(minor, out, sizeof out), PL_OK);
    assert_string_equal(out, want);
}

static void test_format(void **state)
{
    (void)state;
    format_is(0, "\xE2\x82\xB9"
                 "0.00");
    format_is(5, "\xE2\x82\xB9"
                 "0.05");
    format_is(100, "\xE2\x82\xB9"
                   "1.00");
    format_is(50050, "\xE2\x82\xB9"
                     "500.50");
    format_is(100000, "\xE2\x82\xB9"
                      "1,000.00");
    format_is(1234567, "\xE2\x82\xB9"
                       "12,345.67");
    format_is(12345678, "\xE2\x82\xB9"
                        "1,23,456.78");
    format_is(10000000, "\xE2\x82\xB9"
                        "1,00,000.00");
    format_is(MONEY_AMOUNT_MINOR_MAX, "\xE2\x82\xB9"
                                      "10,00,00,00,000.00");
    format_is(-1200, "-\xE2\x82\xB9"
                     "12.00");
    format_is(-5, "-\xE2\x82\xB9"
                  "0.05");
    format_is(INT64_MAX, "\xE2\x82\xB9"
                         "92,23,37,20,36,85,47,758.07");
    format_is(INT64_MIN, "-\xE2\x82\xB9"
                         "92,23,37,20,36,85,47,758.08");
}

static void test_format_plain(void **state)
{
    (void)state;
    char out[MONEY_FORMAT_BYTES_MAX];
    assert_int_equal(money_format_plain(50050, out, sizeof out), PL_OK);
    assert_string_equal(out, "500.50");
    assert_int_equal(money_format_plain(-1200, out, sizeof out), PL_OK);
    assert_string_equal(out, "-12.00");
    assert_int_equal(money_format_plain(12345678, out, sizeof out), PL_OK);
    assert_string_equal(out, "123456.78");
    assert_int_equal(money_format_plain(INT64_MIN, out, sizeof out), PL_OK);
    assert_string_equal(out, "-92233720368547758.08");
}

static void test_format_small_cap(void **state)
{
    (void)state;
    char out[MONEY_FORMAT_BYTES_MAX];
    /* "₹0.05" is 7 bytes + NUL: 8 fits, 7 does not. */
    assert_int_equal(money_format(5, out, 8), PL_OK);
    assert_int_equal(money_format(5, out, 7), PL_ERANGE);
    assert_string_equal(out, "");
    assert_int_equal(money_format(5, out, 1), PL_ERANGE);
    assert_int_equal(money_format_plain(5, out, 5), PL_OK);
    assert_int_equal(money_format_plain(5, out, 4), PL_ERANGE);
}

static void test_round_trip(void **state)
{
    (void)state;
    const int64_t values[] = {0, 1, 9, 10, 99, 100, 101, 12345, 50050, MONEY_AMOUNT_MINOR_MAX};
    for (size_t i = 0; i < PL_ARRAY_LEN(values); i++) {
        char out[MONEY_FORMAT_BYTES_MAX];
        assert_int_equal(money_format_plain(values[i], out, sizeof out), PL_OK);
        int64_t back = -1;
        assert_int_equal(money_parse(out, &back), PL_OK);
        assert_int_equal(back, values[i]);
    }
}

static void test_amount_valid(void **state)
{
    (void)state;
    assert_false(money_amount_valid(0));
    assert_true(money_amount_valid(1));
    assert_true(money_amount_valid(MONEY_AMOUNT_MINOR_MAX));
    assert_false(money_amount_valid(MONEY_AMOUNT_MINOR_MAX + 1));
    assert_false(money_amount_valid(-1));
    assert_false(money_amount_valid(INT64_MIN));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid),  cmocka_unit_test(test_parse_invalid),
        cmocka_unit_test(test_parse_range),  cmocka_unit_test(test_format),
        cmocka_unit_test(test_format_plain), cmocka_unit_test(test_format_small_cap),
        cmocka_unit_test(test_round_trip),   cmocka_unit_test(test_amount_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
