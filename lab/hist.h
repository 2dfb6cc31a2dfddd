/* hist.h: an HDR-style latency histogram — log-linear buckets with 3 significant digits
 * (a relative error below 0.1 %), fixed size, no allocation — for the lab and the
 * benchmarks. Values are non-negative integers (the lab records microseconds); a value
 * above HIST_VALUE_MAX is recorded as HIST_VALUE_MAX and counted in `clamped`. */
#ifndef PAYLAB_HIST_H
#define PAYLAB_HIST_H

#include <stdint.h>

/* Each power of two from 2^HIST_SUB_BITS up is split into 2^HIST_SUB_BITS linear buckets:
 * 1024 sub-buckets give 3 significant digits. */
#define HIST_SUB_BITS 10
#define HIST_SUB_COUNT (1 << HIST_SUB_BITS)
/* 2^36 µs is 19 hours: far beyond any latency the lab sees. */
#define HIST_MAGNITUDES 27
#define HIST_BUCKETS (HIST_SUB_COUNT + (HIST_MAGNITUDES - 1) * (HIST_SUB_COUNT / 2))
#define HIST_VALUE_MAX ((INT64_C(1) << (HIST_SUB_BITS + HIST_MAGNITUDES - 1)) - 1)

struct lab_hist {
    int64_t count;
    int64_t min, max; /* exact; 0 when empty */
    int64_t sum;
    int64_t clamped;
    uint32_t buckets[HIST_BUCKETS];
};

void hist_init(struct lab_hist *h);
void hist_record(struct lab_hist *h, int64_t value);
/* Adds every value of from into into. */
void hist_merge(struct lab_hist *into, const struct lab_hist *from);
/* The value at quantile q in [0, 1] (0.5: the median), within 0.1 %; the exact max for
 * q = 1; 0 when empty. */
int64_t hist_quantile(const struct lab_hist *h, double q);
/* The mean, rounded down; 0 when empty. */
int64_t hist_mean(const struct lab_hist *h);

#endif
