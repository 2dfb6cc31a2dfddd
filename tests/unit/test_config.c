/* test_config.c: flags, PAYLAB_<SERVICE>_<FLAG> fallbacks, bounds and built-ins (docs/api.md). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "config.h"
#include "pl.h"

#include <stdlib.h>
#include <string.h>

struct settings {
    int64_t http_port;
    char bank_url[CONFIG_STR_BYTES_MAX];
    double time_scale;
    bool unsafe_no_dedupe;
};

static struct settings s;

static struct config_opt opts[] = {
    {"http-port", CONFIG_INT, &s.http_port, 1, 65535, "port of the HTTP API"},
    {"bank-url", CONFIG_STR, &s.bank_url, 0, 0, "base URL of the bank"},
    {"time-scale", CONFIG_DOUBLE, &s.time_scale, 0.0001, 1000, "multiplies every delay"},
    {"unsafe-no-dedupe", CONFIG_BOOL, &s.unsafe_no_dedupe, 0, 0, "teaching switch"},
};

static int setup(void **state)
{
    (void)state;
    s.http_port = 8080;
    pl_strlcpy(s.bank_url, "http://127.0.0.1:8081", sizeof s.bank_url);
    s.time_scale = 1.0;
    s.unsafe_no_dedupe = false;
    unsetenv("PAYLAB_TEST_HTTP_PORT");
    unsetenv("PAYLAB_TEST_BANK_URL");
    unsetenv("PAYLAB_TEST_TIME_SCALE");
    unsetenv("PAYLAB_TEST_UNSAFE_NO_DEDUPE");
    return 0;
}

/* Runs config_parse over a NULL-terminated list of arguments (argv[0] added). */
static enum config_result parse(const char *first, ...)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)"test";
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a != NULL && argc < 31; a = va_arg(ap, const char *)) {
        argv[argc++] = (char *)a;
    }
    va_end(ap);
    argv[argc] = NULL;
    return config_parse("TEST", "test", "a test program", opts, PL_ARRAY_LEN(opts), argc, argv);
}

static void test_defaults(void **state)
{
    (void)state;
    assert_int_equal(parse((char *)NULL), CONFIG_OK);
    assert_int_equal(s.http_port, 8080);
    assert_string_equal(s.bank_url, "http://127.0.0.1:8081");
    assert_false(s.unsafe_no_dedupe);
}

static void test_flags(void **state)
{
    (void)state;
    assert_int_equal(parse("--http-port", "9000", "--bank-url=http://x:1", "--time-scale", "0.001",
                           "--unsafe-no-dedupe", (char *)NULL),
                     CONFIG_OK);
    assert_int_equal(s.http_port, 9000);
    assert_string_equal(s.bank_url, "http://x:1");
    assert_true(s.time_scale > 0.00099 && s.time_scale < 0.00101);
    assert_true(s.unsafe_no_dedupe);
}

static void test_env_fallback(void **state)
{
    (void)state;
    setenv("PAYLAB_TEST_HTTP_PORT", "7000", 1);
    setenv("PAYLAB_TEST_BANK_URL", "http://env:2", 1);
    setenv("PAYLAB_TEST_UNSAFE_NO_DEDUPE", "true", 1);
    assert_int_equal(parse((char *)NULL), CONFIG_OK);
    assert_int_equal(s.http_port, 7000);
    assert_string_equal(s.bank_url, "http://env:2");
    assert_true(s.unsafe_no_dedupe);
}

static void test_flag_wins_over_env(void **state)
{
    (void)state;
    setenv("PAYLAB_TEST_HTTP_PORT", "7000", 1);
    assert_int_equal(parse("--http-port", "9001", (char *)NULL), CONFIG_OK);
    assert_int_equal(s.http_port, 9001);
    /* a bad variable behind a flag is never read */
    setenv("PAYLAB_TEST_HTTP_PORT", "not-a-number", 1);
    assert_int_equal(parse("--http-port", "9002", (char *)NULL), CONFIG_OK);
    assert_int_equal(s.http_port, 9002);
}

static void test_int_bounds(void **state)
{
    (void)state;
    assert_int_equal(parse("--http-port", "1", (char *)NULL), CONFIG_OK);
    assert_int_equal(s.http_port, 1);
    assert_int_equal(parse("--http-port", "65535", (char *)NULL), CONFIG_OK);
    assert_int_equal(s.http_port, 65535);
    assert_int_equal(parse("--http-port", "0", (char *)NULL), CONFIG_ERROR);
    assert_int_equal(parse("--http-port", "65536", (char *)NULL), CONFIG_ERROR);
    assert_int_equal(parse("--http-port", "x", (char *)NULL), CONFIG_ERROR);
    assert_int_equal(parse("--http-port", "80x", (char *)NULL), CONFIG_ERROR);
    assert_int_equal(parse("--http-port", "", (char *)NULL), CONFIG_ERROR);
    assert_int_equal(parse("--http-port", " 80", (char *)NULL), CONFIG_ERROR);
    assert_int_equal(parse("--http-port", "99999999999999999999999", (char *)NULL), CONFIG_ERROR);
    assert_int_equal(s.http_port, 65535); /* untouched by the failures */
    setenv("PAYLAB_TEST_HTTP_PORT", "70000", 1);
    assert_int_equal(parse((char *)NULL), CONFIG_ERROR);
}

static void test_double_bounds(void **state)
{
    (void)state;
    assert_int_equal(parse("--time-scale", "1000", (char *)NULL), CONFIG_OK);
    assert_int_equal(parse("--time-scale", "1000.1", (char *)NULL), CONFIG_ERROR);
    assert_int_equal(parse("--time-scale", "0", (char *)NULL), CONFIG_ERROR);
    assert_int_equal(parse("--time-scale", "nan", (char *)NULL), CONFIG_ERROR);
    assert_int_equal(parse("--time-scale", "inf", (char *)NULL), CONFIG_ERROR);
    assert_int_equal(parse("--time-scale", "1x", (char *)NULL), CONFIG_ERROR);
}

static void test_bools_from_env(void **state)
{
    (void)state;
    setenv("PAYLAB_TEST_UNSAFE_NO_DEDUPE", "1", 1);
    assert_int_equal(parse((char *)NULL), CONFIG_OK);
    assert_true(s.unsafe_no_dedupe);
    setenv("PAYLAB_TEST_UNSAFE_NO_DEDUPE", "false", 1);
    assert_int_equal(parse((char *)NULL), CONFIG_OK);
    assert_false(s.unsafe_no_dedupe);
    setenv("PAYLAB_TEST_UNSAFE_NO_DEDUPE", "yes please", 1);
    assert_int_equal(parse((char *)NULL), CONFIG_ERROR);
}

static void test_usage_errors(void **state)
{
    (void)state;
    assert_int_equal(parse("--no-such-flag", (char *)NULL), CONFIG_ERROR);
    assert_int_equal(parse("--http-port", (char *)NULL), CONFIG_ERROR); /* value missing */
    assert_int_equal(parse("positional", (char *)NULL), CONFIG_ERROR);
    assert_int_equal(parse("-x", (char *)NULL), CONFIG_ERROR);
}

static void test_string_too_long(void **state)
{
    (void)state;
    static char long_value[CONFIG_STR_BYTES_MAX + 1];
    memset(long_value, 'a', CONFIG_STR_BYTES_MAX);
    long_value[CONFIG_STR_BYTES_MAX] = '\0';
    assert_int_equal(parse("--bank-url", long_value, (char *)NULL), CONFIG_ERROR);
    long_value[CONFIG_STR_BYTES_MAX - 1] = '\0';
    assert_int_equal(parse("--bank-url", long_value, (char *)NULL), CONFIG_OK);
    assert_int_equal(strlen(s.bank_url), CONFIG_STR_BYTES_MAX - 1);
}

static void test_help_version(void **state)
{
    (void)state;
    assert_int_equal(parse("--help", (char *)NULL), CONFIG_EXIT_OK);
    assert_int_equal(parse("--version", (char *)NULL), CONFIG_EXIT_OK);
    assert_int_equal(parse("--http-port", "1", "--help", (char *)NULL), CONFIG_EXIT_OK);
    assert_int_equal(s.http_port, 8080); /* --help changes nothing */
}

static void test_repeatable(void **state)
{
    (void)state;
    /* getopt state is reset on each call: parsing twice gives the same answer */
    assert_int_equal(parse("--http-port", "1234", (char *)NULL), CONFIG_OK);
    assert_int_equal(parse("--http-port", "4321", (char *)NULL), CONFIG_OK);
    assert_int_equal(s.http_port, 4321);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults, setup),
        cmocka_unit_test_setup(test_flags, setup),
        cmocka_unit_test_setup(test_env_fallback, setup),
        cmocka_unit_test_setup(test_flag_wins_over_env, setup),
        cmocka_unit_test_setup(test_int_bounds, setup),
        cmocka_unit_test_setup(test_double_bounds, setup),
        cmocka_unit_test_setup(test_bools_from_env, setup),
        cmocka_unit_test_setup(test_usage_errors, setup),
        cmocka_unit_test_setup(test_string_too_long, setup),
        cmocka_unit_test_setup(test_help_version, setup),
        cmocka_unit_test_setup(test_repeatable, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
