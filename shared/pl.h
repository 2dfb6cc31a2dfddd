/* pl.h: error codes and small helpers every paylab module shares.
 * A function that can fail returns 0 (PL_OK) or one of the negative PL_E* codes below. */
#ifndef PAYLAB_PL_H
#define PAYLAB_PL_H

#include <stddef.h>
#include <stdint.h>

#define PL_OK 0
#define PL_ENOMEM (-1)    /* allocation failed */
#define PL_EINVAL (-2)    /* bad input (caller's or the outside world's) */
#define PL_EBUSY (-3)     /* SQLITE_BUSY: try again later (503 + Retry-After) */
#define PL_EDB (-4)       /* any other SQLite failure */
#define PL_ENOTFOUND (-5) /* no such row / key */
#define PL_EIO (-6)       /* file or socket I/O failed */
#define PL_ERANGE (-7)    /* a value or a buffer is out of its bounds */
#define PL_ECONFLICT (-8) /* a UNIQUE or state-machine guard refused the change */

#define PL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Wall-clock time (CLOCK_REALTIME) in milliseconds / microseconds since the epoch. */
int64_t pl_now_ms(void);
int64_t pl_now_us(void);
/* Monotonic time (CLOCK_MONOTONIC) in milliseconds, for durations. */
int64_t pl_mono_ms(void);

/* Copies src into dst (cap bytes) always NUL-terminated; returns PL_ERANGE when src did not
 * fit (dst then holds a truncated copy). Our replacement for strncpy/strcpy. */
int pl_strlcpy(char *dst, const char *src, size_t cap);

#endif
