/* hist.c owns the log-linear histogram of hist.h.
 * Must not: allocate, or lose a recorded value (a value past the range is clamped, counted).
 * Invariant: count equals the sum of the buckets. */
#include "hist.h"

#include <assert.h>
#include <string.h>

_Static_assert(HIST_BUCKETS < 20000, "a histogram stays small enough to embed in a cell");

void hist_init(struct lab_hist *h)
{
    memset(h, 0, sizeof *h);
}

/* Values below HIST_SUB_COUNT have a bucket each; above, each power of two [2^k, 2^(k+1))
 * is cut into HIST_SUB_COUNT / 2 equal buckets. */
static int bucket_of(int64_t v)
{
    assert(v >= 0 && v <= HIST_VALUE_MAX);
    if (v < HIST_SUB_COUNT)
        return (int)v;
    int k = 63 - __builtin_clzll((unsigned long long)v); /* 2^k <= v */
    int shift = k - (HIST_SUB_BITS - 1);
    int sub = (int)(v >> shift) - HIST_SUB_COUNT / 2; /* 0 .. SUB_COUNT/2 - 1 */
    int index = HIST_SUB_COUNT + (shift - 1) * (HIST_SUB_COUNT / 2) + sub;
    assert(index >= HIST_SUB_COUNT && index < HIST_BUCKETS);
    return index;
}

/* The highest value that lands in bucket i (reported values err upwards, as HDR's do). */
static int64_t bucket_high(int i)
{
    if (i < HIST_SUB_COUNT)
        return i;
    int shift = (i - HIST_SUB_COUNT) / (HIST_SUB_COUNT / 2) + 1;
    int64_t sub = (i - HIST_SUB_COUNT) % (HIST_SUB_COUNT / 2) + HIST_SUB_COUNT / 2;
    return ((sub + 1) << shift) - 1;
}

void hist_record(struct lab_hist *h, int64_t value)
{
    if (value < 0)
        value = 0;
    if (value > HIST_VALUE_MAX) {
        value = HIST_VALUE_MAX;
        h->clamped++;
    }
    h->buckets[bucket_of(value)]++;
    if (h->count == 0 || value < h->min)
        h->min = value;
    if (value > h->max)
        h->max = value;
    h->count++;
    h->sum += value;
}

void hist_merge(struct lab_hist *into, const struct lab_hist *from)
{
    if (from->count == 0)
        return;
    for (int i = 0; i < HIST_BUCKETS; i++)
        into->buckets[i] += from->buckets[i];
    if (into->count == 0 || from->min < into->min)
        into->min = from->min;
    if (from->max > into->max)
        into->max = from->max;
    into->count += from->count;
    into->sum += from->sum;
    into->clamped += from->clamped;
}

int64_t hist_quantile(const struct lab_hist *h, double q)
{
    if (h->count == 0)
        return 0;
    if (q >= 1.0)
        return h->max;
    if (q < 0.0)
        q = 0.0;
    /* The rank of the value wanted, 1-based: the smallest value with at least q of the
     * values at or below it. */
    int64_t rank = (int64_t)(q * (double)h->count + 0.999999);
    if (rank < 1)
        rank = 1;
    int64_t seen = 0;
    for (int i = 0; i < HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            int64_t v = bucket_high(i);
            if (v > h->max)
                v = h->max;
            if (v < h->min)
                v = h->min;
            return v;
        }
    }
    return h->max;
}

int64_t hist_mean(const struct lab_hist *h)
{
    return h->count == 0 ? 0 : h->sum / h->count;
}
