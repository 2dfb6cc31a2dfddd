/* test_json.c: strict object parsing and typed field extraction. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "json.h"
#include "pl.h"

#include <stdlib.h>
#include <string.h>

static cJSON *parse(const char *text)
{
    return json_parse_object(text, strlen(text));
}

static void test_parse_objects(void **state)
{
    (void)state;
    const char *good[] = {"{}", " {} ", "{\"a\":1}\n", "{\"a\":[1,2,{\"b\":null}]}\r\n\t"};
    for (size_t i = 0; i < PL_ARRAY_LEN(good); i++) {
        cJSON *o = parse(good[i]);
        assert_non_null(o);
        cJSON_Delete(o);
    }
    const char *bad[] = {"",        "[]",         "1",       "\"x\"",  "null",
                         "{",       "{}}",        "{} {}",   "{}x",    "{\"a\":}",
                         "{'a':1}", "{\"a\":1,}", "{} \x01", "\x01{}", "{\"a\":01x}"};
    for (size_t i = 0; i < PL_ARRAY_LEN(bad); i++) {
        cJSON *o = parse(bad[i]);
        if (o != NULL)
            fail_msg("accepted: %s", bad[i]);
    }
    assert_null(json_parse_object(NULL, 0));
}

static void test_parse_length_bounded(void **state)
{
    (void)state;
    /* only len bytes count: the rest of the buffer is never read */
    const char text[] = "{\"a\":1}garbage";
    cJSON *o = json_parse_object(text, 7);
    assert_non_null(o);
    cJSON_Delete(o);
    assert_null(json_parse_object(text, 8));
    assert_null(json_parse_object(text, 6));
    /* an embedded NUL byte inside the length is trailing garbage */
    const char with_nul[] = "{\"a\":1}\0 ";
    assert_null(json_parse_object(with_nul, sizeof with_nul - 1));
}

/* Builds {"a":{"a":…{}…}} nested `depth` objects deep. */
static char *nested(size_t depth, bool brackets_in_string)
{
    size_t cap = depth * 8 + 64;
    char *s = malloc(cap);
    assert_non_null(s);
    size_t n = 0;
    for (size_t i = 0; i < depth; i++) {
        if (i > 0) {
            memcpy(s + n, "\"a\":", 4);
            n += 4;
        }
        s[n++] = '{';
    }
    if (brackets_in_string) {
        const char *extra = "\"s\":\"{{{{[[[[\\\"{{{{\"";
        memcpy(s + n, extra, strlen(extra));
        n += strlen(extra);
    }
    for (size_t i = 0; i < depth; i++)
        s[n++] = '}';
    s[n] = '\0';
    return s;
}

static void test_nesting(void **state)
{
    (void)state;
    char *ok = nested(JSON_NESTING_MAX, true);
    cJSON *o = parse(ok);
    assert_non_null(o);
    cJSON_Delete(o);
    free(ok);
    char *deep = nested(JSON_NESTING_MAX + 1, false);
    assert_null(parse(deep));
    free(deep);
    char *very_deep = nested(100000, false);
    assert_null(parse(very_deep));
    free(very_deep);
    assert_null(parse("{\"a\":[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]}"));
    o = parse("{\"a\":[[[[[[[[[[[[[[1]]]]]]]]]]]]]]}"); /* 15 arrays + the object = 16 */
    assert_non_null(o);
    cJSON_Delete(o);
}

static void test_strings(void **state)
{
    (void)state;
    cJSON *o = parse("{\"user\":\"alice\",\"n\":5,\"empty\":\"\",\"nul\":null,"
                     "\"z\":\"a\\u0000b\",\"ok\":\"caf\\u00e9\"}");
    assert_non_null(o);
    const char *s = NULL;
    assert_int_equal(json_get_string(o, "user", true, 32, &s), JSON_OK);
    assert_string_equal(s, "alice");
    assert_int_equal(json_get_string(o, "user", true, 5, &s), JSON_OK);
    assert_int_equal(json_get_string(o, "user", true, 4, &s), JSON_TOO_LONG);
    assert_int_equal(json_get_string(o, "empty", true, 4, &s), JSON_OK);
    assert_string_equal(s, "");
    assert_int_equal(json_get_string(o, "n", true, 32, &s), JSON_WRONG_TYPE);
    assert_int_equal(json_get_string(o, "missing", true, 32, &s), JSON_MISSING);
    assert_int_equal(json_get_string(o, "nul", true, 32, &s), JSON_MISSING);
    s = "untouched";
    assert_int_equal(json_get_string(o, "missing", false, 32, &s), JSON_OK);
    assert_string_equal(s, "untouched");
    assert_int_equal(json_get_string(o, "z", true, 32, &s), JSON_WRONG_TYPE);
    assert_int_equal(json_get_string(o, "ok", true, 32, &s), JSON_OK);
    assert_string_equal(s, "caf\xc3\xa9");
    assert_int_equal(json_get_string(o, "User", true, 32, &s), JSON_MISSING); /* case matters */
    cJSON_Delete(o);
    /* "\\u0000" is an escaped backslash followed by text, not a NUL */
    o = parse("{\"k\":\"a\\\\u0000\"}");
    assert_non_null(o);
    assert_int_equal(json_get_string(o, "k", true, 32, &s), JSON_OK);
    assert_string_equal(s, "a\\u0000");
    cJSON_Delete(o);
}

static void test_int64(void **state)
{
    (void)state;
    cJSON *o = parse("{\"a\":50000,\"neg\":-7,\"zero\":0,\"frac\":500.5,\"str\":\"500\","
                     "\"t\":true,\"big\":1e300,\"max\":9007199254740991,"
                     "\"over\":9007199254740992,\"min\":-9007199254740991,"
                     "\"under\":-9007199254740992,\"exp\":5e2,\"null\":null}");
    assert_non_null(o);
    int64_t v = 0;
    assert_int_equal(json_get_int64(o, "a", true, &v), JSON_OK);
    assert_int_equal(v, 50000);
    assert_int_equal(json_get_int64(o, "neg", true, &v), JSON_OK);
    assert_int_equal(v, -7);
    assert_int_equal(json_get_int64(o, "zero", true, &v), JSON_OK);
    assert_int_equal(v, 0);
    assert_int_equal(json_get_int64(o, "max", true, &v), JSON_OK);
    assert_int_equal(v, 9007199254740991LL);
    assert_int_equal(json_get_int64(o, "min", true, &v), JSON_OK);
    assert_int_equal(v, -9007199254740991LL);
    assert_int_equal(json_get_int64(o, "exp", true, &v), JSON_OK);
    assert_int_equal(v, 500);
    v = 42;
    assert_int_equal(json_get_int64(o, "frac", true, &v), JSON_WRONG_TYPE);
    assert_int_equal(json_get_int64(o, "str", true, &v), JSON_WRONG_TYPE);
    assert_int_equal(json_get_int64(o, "t", true, &v), JSON_WRONG_TYPE);
    assert_int_equal(json_get_int64(o, "big", true, &v), JSON_TOO_LONG);
    assert_int_equal(json_get_int64(o, "over", true, &v), JSON_TOO_LONG);
    assert_int_equal(json_get_int64(o, "under", true, &v), JSON_TOO_LONG);
    assert_int_equal(json_get_int64(o, "missing", true, &v), JSON_MISSING);
    assert_int_equal(json_get_int64(o, "null", true, &v), JSON_MISSING);
    assert_int_equal(json_get_int64(o, "missing", false, &v), JSON_OK);
    assert_int_equal(v, 42);
    cJSON_Delete(o);
}

static void test_bool(void **state)
{
    (void)state;
    cJSON *o = parse("{\"t\":true,\"f\":false,\"n\":1,\"s\":\"true\"}");
    assert_non_null(o);
    bool b = false;
    assert_int_equal(json_get_bool(o, "t", true, &b), JSON_OK);
    assert_true(b);
    assert_int_equal(json_get_bool(o, "f", true, &b), JSON_OK);
    assert_false(b);
    assert_int_equal(json_get_bool(o, "n", true, &b), JSON_WRONG_TYPE);
    assert_int_equal(json_get_bool(o, "s", true, &b), JSON_WRONG_TYPE);
    assert_int_equal(json_get_bool(o, "x", true, &b), JSON_MISSING);
    assert_int_equal(json_get_bool(o, "x", false, &b), JSON_OK);
    cJSON_Delete(o);
}

static void test_print(void **state)
{
    (void)state;
    cJSON *o = parse("{ \"a\" : 1 , \"b\" : [ true ] }");
    assert_non_null(o);
    char *text = json_print(o);
    assert_string_equal(text, "{\"a\":1,\"b\":[true]}");
    free(text);
    cJSON_Delete(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_objects), cmocka_unit_test(test_parse_length_bounded),
        cmocka_unit_test(test_nesting),       cmocka_unit_test(test_strings),
        cmocka_unit_test(test_int64),         cmocka_unit_test(test_bool),
        cmocka_unit_test(test_print),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
