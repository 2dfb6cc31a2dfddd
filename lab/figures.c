/* figures.c owns how the lab's writers read and say a cell's figures: durations for people,
 * invariant names, cell labels, horizons, display widths.
 * Must not: write files or decide what a figure means for a scenario (narrate.c does).
 * Invariant: every helper writes into the caller's bounded buffer, NUL-terminated. */
#include "figures.h"

#include <assert.h>
#include <string.h>

#include "pl.h"

const char *fig_duration(int64_t us, char buf[FIG_TEXT_BYTES_MAX])
{
    if (us < 0)
        us = 0;
    if (us < 10000) {
        snprintf(buf, FIG_TEXT_BYTES_MAX, "%.1f ms", (double)us / 1000.0);
    } else if (us < 10000000) {
        /* Rounded to the nearest ms, as a person would read it off a clock. */
        snprintf(buf, FIG_TEXT_BYTES_MAX, "%lld ms", (long long)((us + 500) / 1000));
    } else {
        snprintf(buf, FIG_TEXT_BYTES_MAX, "%.1f s", (double)us / 1e6);
    }
    return buf;
}

const char *fig_duration_ms(int64_t ms, char buf[FIG_TEXT_BYTES_MAX])
{
    /* A horizon or a timing fits an int64 of µs by far; the clamp keeps the product defined. */
    if (ms > INT64_MAX / 1000)
        ms = INT64_MAX / 1000;
    return fig_duration(ms * 1000, buf);
}

int64_t fig_quantile_us(const struct lab_hist *h, double q)
{
    assert(q >= 0.0 && q <= 1.0);
    if (h->count == 0)
        return 0;
    return q >= 1.0 ? h->max : hist_quantile(h, q);
}

/* The names `paylab verify` prints, shortened to fit a sentence. */
static const char *const invariant_names[FIG_INVARIANTS_COUNT + 1] = {
    "",
    "balances sum to zero",
    "every balance equals its entries",
    "no wallet is negative",
    "wallet and bank agree",
    "nothing credited or paid out twice",
    "nothing open past its horizon",
};

const char *fig_invariant_name(int i)
{
    if (i < 1 || i > FIG_INVARIANTS_COUNT)
        return "an invariant";
    return invariant_names[i];
}

bool fig_breached(const struct lab_cell *c, int i)
{
    assert(i >= 0 && (size_t)i < PL_ARRAY_LEN(c->breached));
    return c->breached[i] != 0;
}

const char *fig_breached_list(const struct lab_cell *c, char *buf, size_t cap)
{
    assert(cap > 0);
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 1; (size_t)i < PL_ARRAY_LEN(c->breached) && used < cap; i++) {
        if (!fig_breached(c, i))
            continue;
        int n = snprintf(buf + used, cap - used, "%s%d", used > 0 ? ", " : "", i);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    return buf;
}

bool fig_measured(const struct lab_cell *c)
{
    return c->applies && c->ran;
}

const char *fig_cell_label(const struct lab_cell *c, char *buf, size_t cap)
{
    assert(cap > 0);
    if (c->case_label[0] == '\0')
        snprintf(buf, cap, "%s", c->scenario);
    else
        snprintf(buf, cap, "%s (%s)", c->scenario, c->case_label);
    return buf;
}

bool fig_same_case(const struct lab_cell *a, const struct lab_cell *b)
{
    return strcmp(a->scenario, b->scenario) == 0 && strcmp(a->case_label, b->case_label) == 0;
}

int64_t fig_horizon_ms(const struct lab_timing *t, enum lab_mode m)
{
    int64_t ttl = m == LAB_MODE_ASYNC ? t->payment_ttl_async_ms : t->payment_ttl_sync_ms;
    return ttl + t->pending_grace_ms + 2 * t->reconcile_ms;
}

size_t fig_width(const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if ((*p & 0xC0) != 0x80) /* not a UTF-8 continuation byte: a new code point */
            n++;
    }
    return n;
}

void fig_pad(FILE *f, const char *s, size_t width, bool right)
{
    size_t w = fig_width(s);
    size_t gap = w < width ? width - w : 0;
    if (right)
        fprintf(f, "%*s%s", (int)gap, "", s);
    else
        fprintf(f, "%s%*s", s, (int)gap, "");
}

const char *fig_count(int64_t n, const char *one, const char *many, char *buf, size_t cap)
{
    assert(cap > 0);
    snprintf(buf, cap, "%lld %s", (long long)n, n == 1 || n == -1 ? one : many);
    return buf;
}
