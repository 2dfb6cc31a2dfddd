/* metrics.h: Prometheus text-format counters, gauges and latency histograms (docs/architecture.md).
 * A fixed table of series; a series beyond METRICS_SERIES_MAX is dropped and counted in
 * paylab_metrics_dropped_total rather than growing memory. */
#ifndef PAYLAB_METRICS_H
#define PAYLAB_METRICS_H

#include <stdint.h>

struct evbuffer;
struct metrics;

#define METRICS_SERIES_MAX 512
#define METRICS_NAME_BYTES_MAX 64
#define METRICS_LABELS_BYTES_MAX 160

struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);

/* labels is the text inside the braces ("route=\"/v1/topups\",code=\"200\"") or "". */
void metrics_counter_add(struct metrics *m, const char *name, const char *labels, uint64_t n);
void metrics_gauge_set(struct metrics *m, const char *name, const char *labels, double value);
/* Observes seconds into buckets 0.5 ms … 10 s (+Inf), with _sum and _count. */
void metrics_observe_seconds(struct metrics *m, const char *name, const char *labels,
                             double seconds);
/* Appends the whole text exposition (with # TYPE lines) to out. */
void metrics_render(const struct metrics *m, struct evbuffer *out);

/* Convenience: counts paylab_http_requests_total{route,code} and observes
 * paylab_http_request_duration_seconds{route} since start_us (pl_now_us()). */
void metrics_http_observe(struct metrics *m, const char *route, int status, int64_t start_us);

#endif
