/* test_metrics.c: counters, gauges, histograms, rendering and the series cap. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "metrics.h"
#include "pl.h"

#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Renders m into a new NUL-terminated string; caller free()s. */
static char *render(const struct metrics *m)
{
    struct evbuffer *buf = evbuffer_new();
    assert_non_null(buf);
    metrics_render(m, buf);
    size_t n = evbuffer_get_length(buf);
    char *text = malloc(n + 1);
    assert_non_null(text);
    evbuffer_remove(buf, text, n);
    text[n] = '\0';
    evbuffer_free(buf);
    return text;
}

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    return n;
}

static void test_counters_and_gauges(void **state)
{
    (void)state;
    struct metrics *m = metrics_new();
    assert_non_null(m);
    metrics_counter_add(m, "paylab_bank_calls_total", "outcome=\"answered\"", 2);
    metrics_counter_add(m, "paylab_ws_connections", "", 0);
    metrics_counter_add(m, "paylab_bank_calls_total", "outcome=\"timeout\"", 1);
    metrics_counter_add(m, "paylab_bank_calls_total", "outcome=\"answered\"", 3);
    metrics_gauge_set(m, "paylab_outbox_depth", "", 7);
    metrics_gauge_set(m, "paylab_outbox_depth", "", 4);
    char *text = render(m);
    assert_non_null(strstr(text, "# TYPE paylab_bank_calls_total counter\n"
                                 "paylab_bank_calls_total{outcome=\"answered\"} 5\n"
                                 "paylab_bank_calls_total{outcome=\"timeout\"} 1\n"));
    assert_non_null(strstr(text, "paylab_ws_connections 0\n"));
    assert_non_null(strstr(text, "# TYPE paylab_outbox_depth gauge\npaylab_outbox_depth 4\n"));
    assert_int_equal(count(text, "# TYPE paylab_bank_calls_total"), 1);
    assert_non_null(strstr(text, "paylab_metrics_dropped_total 0\n"));
    free(text);
    metrics_free(m);
}

static void test_histogram(void **state)
{
    (void)state;
    struct metrics *m = metrics_new();
    assert_non_null(m);
    metrics_observe_seconds(m, "lat_seconds", "route=\"/x\"", 0.0004); /* first bucket */
    metrics_observe_seconds(m, "lat_seconds", "route=\"/x\"", 0.0005); /* le is inclusive */
    metrics_observe_seconds(m, "lat_seconds", "route=\"/x\"", 0.003);
    metrics_observe_seconds(m, "lat_seconds", "route=\"/x\"", 11); /* +Inf only */
    metrics_observe_seconds(m, "lat_seconds", "route=\"/x\"", -1); /* clamped to 0 */
    char *text = render(m);
    assert_non_null(strstr(text, "# TYPE lat_seconds histogram\n"));
    assert_non_null(strstr(text, "lat_seconds_bucket{route=\"/x\",le=\"0.0005\"} 3\n"));
    assert_non_null(strstr(text, "lat_seconds_bucket{route=\"/x\",le=\"0.001\"} 3\n"));
    assert_non_null(strstr(text, "lat_seconds_bucket{route=\"/x\",le=\"0.005\"} 4\n"));
    assert_non_null(strstr(text, "lat_seconds_bucket{route=\"/x\",le=\"10\"} 4\n"));
    assert_non_null(strstr(text, "lat_seconds_bucket{route=\"/x\",le=\"+Inf\"} 5\n"));
    assert_non_null(strstr(text, "lat_seconds_count{route=\"/x\"} 5\n"));
    assert_non_null(strstr(text, "lat_seconds_sum{route=\"/x\"} 11.0039"));
    assert_int_equal(count(text, "lat_seconds_bucket"), 15);
    free(text);
    metrics_free(m);
}

static void test_histogram_no_labels(void **state)
{
    (void)state;
    struct metrics *m = metrics_new();
    metrics_observe_seconds(m, "h", "", 0.2);
    char *text = render(m);
    assert_non_null(strstr(text, "h_bucket{le=\"0.25\"} 1\n"));
    assert_non_null(strstr(text, "h_count 1\n"));
    free(text);
    metrics_free(m);
}

static void test_http_observe(void **state)
{
    (void)state;
    struct metrics *m = metrics_new();
    metrics_http_observe(m, "/v1/topups", 200, pl_now_us() - 2000);
    metrics_http_observe(m, "/v1/topups", 422, pl_now_us());
    char *text = render(m);
    assert_non_null(
        strstr(text, "paylab_http_requests_total{route=\"/v1/topups\",code=\"200\"} 1\n"));
    assert_non_null(
        strstr(text, "paylab_http_requests_total{route=\"/v1/topups\",code=\"422\"} 1\n"));
    assert_non_null(
        strstr(text, "paylab_http_request_duration_seconds_count{route=\"/v1/topups\"} 2\n"));
    free(text);
    metrics_free(m);
}

static void test_series_cap(void **state)
{
    (void)state;
    struct metrics *m = metrics_new();
    char labels[32];
    for (int i = 0; i < METRICS_SERIES_MAX + 10; i++) {
        snprintf(labels, sizeof labels, "i=\"%d\"", i);
        metrics_counter_add(m, "many_total", labels, 1);
    }
    /* an existing series still counts when the table is full */
    metrics_counter_add(m, "many_total", "i=\"0\"", 1);
    char *text = render(m);
    assert_int_equal(count(text, "many_total{"), METRICS_SERIES_MAX);
    assert_non_null(strstr(text, "many_total{i=\"0\"} 2\n"));
    assert_null(strstr(text, "many_total{i=\"512\"}"));
    assert_non_null(strstr(text, "paylab_metrics_dropped_total 10\n"));
    free(text);
    metrics_free(m);
}

static void test_oversized_and_type_clash(void **state)
{
    (void)state;
    struct metrics *m = metrics_new();
    char name[METRICS_NAME_BYTES_MAX + 1];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    metrics_counter_add(m, name, "", 1);
    metrics_counter_add(m, "c_total", "", 1);
    metrics_gauge_set(m, "c_total", "x=\"1\"", 5); /* one name, one type */
    char *text = render(m);
    assert_null(strstr(text, name));
    assert_int_equal(count(text, "c_total"), 2); /* # TYPE line and the series */
    assert_non_null(strstr(text, "paylab_metrics_dropped_total 2\n"));
    free(text);
    metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counters_and_gauges), cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_histogram_no_labels), cmocka_unit_test(test_http_observe),
        cmocka_unit_test(test_series_cap),          cmocka_unit_test(test_oversized_and_type_clash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
