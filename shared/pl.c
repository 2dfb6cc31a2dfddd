/* pl.c owns the small helpers every module shares: clocks and bounded string copies.
 * Must not: allocate, log, or know about any service.
 * Invariant: pl_strlcpy always leaves dst NUL-terminated when cap > 0. */
#include "pl.h"

#include <assert.h>
#include <string.h>
#include <time.h>

static int64_t pl_clock_us(clockid_t id)
{
    struct timespec ts;
    int rc = clock_gettime(id, &ts);
    assert(rc == 0); /* both clocks exist on every platform we build for */
    (void)rc;
    return (int64_t)ts.tv_sec * 1000000 + (int64_t)ts.tv_nsec / 1000;
}

int64_t pl_now_ms(void)
{
    return pl_clock_us(CLOCK_REALTIME) / 1000;
}

int64_t pl_now_us(void)
{
    return pl_clock_us(CLOCK_REALTIME);
}

int64_t pl_mono_ms(void)
{
    return pl_clock_us(CLOCK_MONOTONIC) / 1000;
}

int pl_strlcpy(char *dst, const char *src, size_t cap)
{
    assert(dst != NULL);
    assert(src != NULL);
    assert(cap > 0);
    size_t n = strlen(src);
    if (n >= cap) {
        memcpy(dst, src, cap - 1);
        dst[cap - 1] = '\0';
        return PL_ERANGE;
    }
    memcpy(dst, src, n + 1);
    return PL_OK;
}
