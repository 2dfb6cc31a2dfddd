/* metrics.c owns the process's Prometheus series: a fixed table of counters, gauges and
 * histograms, rendered in the text exposition format (docs/architecture.md).
 * Must not: grow past METRICS_SERIES_MAX (extra series are dropped and counted), or do I/O.
 * Invariant: a series' name and labels never change once created, and a name keeps one type;
 * a histogram's bucket counts are cumulative only when rendered. */
#include "metrics.h"

#include "pl.h"

#include <assert.h>
#include <event2/buffer.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum metrics_type { METRICS_COUNTER, METRICS_GAUGE, METRICS_HISTOGRAM };

/* Upper bounds in seconds, 0.5 ms … 10 s; +Inf is implicit (the series' count). */
static const double metrics_buckets_s[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                           0.1,    0.25,  0.5,    1,     2.5,  5,     10};
#define METRICS_BUCKETS_COUNT (sizeof metrics_buckets_s / sizeof metrics_buckets_s[0])

struct metrics_series {
    char name[METRICS_NAME_BYTES_MAX];
    char labels[METRICS_LABELS_BYTES_MAX];
    enum metrics_type type;
    uint64_t counter;
    double gauge;
    uint64_t buckets[METRICS_BUCKETS_COUNT]; /* per bucket, not cumulative */
    uint64_t count;
    double sum;
};

struct metrics {
    size_t series_count;
    uint64_t dropped; /* series refused because the table was full, or names too long */
    struct metrics_series series[METRICS_SERIES_MAX];
};

struct metrics *metrics_new(void)
{
    return calloc(1, sizeof(struct metrics));
}

void metrics_free(struct metrics *m)
{
    free(m);
}

/* Finds or creates the series; NULL (and counted as dropped) when full, oversized, or the
 * name is already used with another type. A linear scan: METRICS_SERIES_MAX is small and
 * the cost is a few microseconds per request at most. */
static struct metrics_series *metrics_find(struct metrics *m, const char *name, const char *labels,
                                           enum metrics_type type)
{
    assert(m != NULL);
    assert(name != NULL);
    if (labels == NULL)
        labels = "";
    for (size_t i = 0; i < m->series_count; i++) {
        struct metrics_series *s = &m->series[i];
        if (strcmp(s->name, name) != 0)
            continue;
        if (s->type != type)
            break;
        if (strcmp(s->labels, labels) == 0)
            return s;
    }
    bool fits = strlen(name) < METRICS_NAME_BYTES_MAX && strlen(labels) < METRICS_LABELS_BYTES_MAX;
    bool type_clash = false;
    for (size_t i = 0; i < m->series_count && !type_clash; i++) {
        type_clash = strcmp(m->series[i].name, name) == 0 && m->series[i].type != type;
    }
    if (!fits || type_clash || m->series_count == METRICS_SERIES_MAX) {
        m->dropped++;
        return NULL;
    }
    struct metrics_series *s = &m->series[m->series_count++];
    memset(s, 0, sizeof *s);
    pl_strlcpy(s->name, name, sizeof s->name);
    pl_strlcpy(s->labels, labels, sizeof s->labels);
    s->type = type;
    return s;
}

void metrics_counter_add(struct metrics *m, const char *name, const char *labels, uint64_t n)
{
    struct metrics_series *s = metrics_find(m, name, labels, METRICS_COUNTER);
    if (s != NULL)
        s->counter += n;
}

void metrics_gauge_set(struct metrics *m, const char *name, const char *labels, double value)
{
    struct metrics_series *s = metrics_find(m, name, labels, METRICS_GAUGE);
    if (s != NULL)
        s->gauge = value;
}

void metrics_observe_seconds(struct metrics *m, const char *name, const char *labels,
                             double seconds)
{
    struct metrics_series *s = metrics_find(m, name, labels, METRICS_HISTOGRAM);
    if (s == NULL)
        return;
    if (!(seconds >= 0))
        seconds = 0; /* a clock step backwards, or NaN */
    for (size_t i = 0; i < METRICS_BUCKETS_COUNT; i++) {
        if (seconds <= metrics_buckets_s[i]) {
            s->buckets[i]++;
            break;
        }
    }
    s->count++;
    s->sum += seconds;
}

/* Appends "{labels,extra}" (or nothing when both are empty). */
static void metrics_put_labels(struct evbuffer *out, const char *labels, const char *extra)
{
    bool has_labels = labels[0] != '\0';
    bool has_extra = extra != NULL && extra[0] != '\0';
    if (!has_labels && !has_extra)
        return;
    evbuffer_add_printf(out, "{%s%s%s}", labels, has_labels && has_extra ? "," : "",
                        has_extra ? extra : "");
}

static void metrics_render_histogram(const struct metrics_series *s, struct evbuffer *out)
{
    uint64_t cumulative = 0;
    char le[48];
    for (size_t i = 0; i < METRICS_BUCKETS_COUNT; i++) {
        cumulative += s->buckets[i];
        snprintf(le, sizeof le, "le=\"%g\"", metrics_buckets_s[i]);
        evbuffer_add_printf(out, "%s_bucket", s->name);
        metrics_put_labels(out, s->labels, le);
        evbuffer_add_printf(out, " %" PRIu64 "\n", cumulative);
    }
    evbuffer_add_printf(out, "%s_bucket", s->name);
    metrics_put_labels(out, s->labels, "le=\"+Inf\"");
    evbuffer_add_printf(out, " %" PRIu64 "\n%s_sum", s->count, s->name);
    metrics_put_labels(out, s->labels, NULL);
    evbuffer_add_printf(out, " %.9g\n%s_count", s->sum, s->name);
    metrics_put_labels(out, s->labels, NULL);
    evbuffer_add_printf(out, " %" PRIu64 "\n", s->count);
}

static void metrics_render_series(const struct metrics_series *s, struct evbuffer *out)
{
    switch (s->type) {
    case METRICS_COUNTER:
        evbuffer_add_printf(out, "%s", s->name);
        metrics_put_labels(out, s->labels, NULL);
        evbuffer_add_printf(out, " %" PRIu64 "\n", s->counter);
        break;
    case METRICS_GAUGE:
        evbuffer_add_printf(out, "%s", s->name);
        metrics_put_labels(out, s->labels, NULL);
        evbuffer_add_printf(out, " %.17g\n", s->gauge);
        break;
    case METRICS_HISTOGRAM:
        metrics_render_histogram(s, out);
        break;
    }
}

void metrics_render(const struct metrics *m, struct evbuffer *out)
{
    assert(m != NULL);
    assert(out != NULL);
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    /* Group by name in order of first appearance: the format wants one # TYPE per name with
     * all of its series right after it. Quadratic, over at most METRICS_SERIES_MAX. */
    for (size_t i = 0; i < m->series_count; i++) {
        const struct metrics_series *first = &m->series[i];
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(m->series[j].name, first->name) == 0;
        if (seen)
            continue;
        evbuffer_add_printf(out, "# TYPE %s %s\n", first->name, type_names[first->type]);
        for (size_t j = i; j < m->series_count; j++) {
            if (strcmp(m->series[j].name, first->name) == 0)
                metrics_render_series(&m->series[j], out);
        }
    }
    evbuffer_add_printf(out,
                        "# TYPE paylab_metrics_dropped_total counter\n"
                        "paylab_metrics_dropped_total %" PRIu64 "\n",
                        m->dropped);
}

void metrics_http_observe(struct metrics *m, const char *route, int status, int64_t start_us)
{
    assert(m != NULL);
    assert(route != NULL);
    char labels[METRICS_LABELS_BYTES_MAX];
    int w = snprintf(labels, sizeof labels, "route=\"%s\",code=\"%d\"", route, status);
    if (w < 0 || (size_t)w >= sizeof labels) {
        m->dropped++;
        return;
    }
    metrics_counter_add(m, "paylab_http_requests_total", labels, 1);
    w = snprintf(labels, sizeof labels, "route=\"%s\"", route);
    assert(w > 0 && (size_t)w < sizeof labels);
    int64_t elapsed_us = pl_now_us() - start_us;
    metrics_observe_seconds(m, "paylab_http_request_duration_seconds", labels,
                            (double)elapsed_us / 1e6);
}
