/* log.c owns the process's log lines: logfmt on stderr, one write() per line
 * (docs/architecture.md). Must not: allocate, block on anything but stderr, or print secrets
 * (callers never pass them). Invariant: every call writes at most one line of at most
 * LOG_LINE_BYTES_MAX bytes, ending in '\n', so lines from concurrent processes sharing a terminal
 * never interleave mid-line. */
#include "log.h"

#include "pl.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* A longer line is truncated: a log line is for a person, not a data channel. */
#define LOG_LINE_BYTES_MAX 2048

/* The logger's settings are the one piece of library state besides each process's context
 * struct: every module logs, and threading a logger through every call would add noise
 * without adding safety (each process is single-threaded). Set once in main. */
static struct {
    const char *svc;
    enum log_level level_min;
} log_state = {"paylab", LOG_INFO};

static const char *const log_level_names[] = {"debug", "info", "warn", "error"};

void log_init(const char *svc, enum log_level level_min)
{
    assert(svc != NULL);
    assert(level_min <= LOG_ERROR);
    log_state.svc = svc;
    log_state.level_min = level_min;
}

int log_level_parse(const char *s, enum log_level *out)
{
    assert(out != NULL);
    if (s == NULL)
        return PL_EINVAL;
    for (size_t i = 0; i < PL_ARRAY_LEN(log_level_names); i++) {
        if (strcasecmp(s, log_level_names[i]) == 0) {
            *out = (enum log_level)i;
            return PL_OK;
        }
    }
    return PL_EINVAL;
}

/* Appends the UTC timestamp "2026-11-25T21:30:00.123Z"; returns bytes written. */
static size_t log_put_ts(char *out, size_t cap)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    char date[32];
    size_t n = strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    date[n] = '\0';
    int w = snprintf(out, cap, "%s.%03ldZ", date, (long)(ts.tv_nsec / 1000000));
    if (w < 0)
        return 0;
    return (size_t)w < cap ? (size_t)w : cap - 1;
}

/* Appends msg quoted, with '"' and '\\' escaped and control characters as spaces. */
static size_t log_put_quoted(char *out, size_t cap, const char *msg)
{
    size_t n = 0;
    if (n + 1 < cap)
        out[n++] = '"';
    for (const char *p = msg; *p != '\0' && n + 3 < cap; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '"' || ch == '\\') {
            out[n++] = '\\';
            out[n++] = (char)ch;
        } else {
            out[n++] = ch < 0x20 ? ' ' : (char)ch;
        }
    }
    if (n + 1 < cap)
        out[n++] = '"';
    out[n] = '\0';
    return n;
}

void log_write(enum log_level level, const char *msg, const char *kv_fmt, ...)
{
    assert(level <= LOG_ERROR);
    assert(msg != NULL);
    if (level < log_state.level_min)
        return;

    char line[LOG_LINE_BYTES_MAX];
    size_t cap = sizeof line - 1; /* room for the final '\n' */
    size_t n = 0;
    n += (size_t)snprintf(line + n, cap - n, "ts=");
    n += log_put_ts(line + n, cap - n);
    int w =
        snprintf(line + n, cap - n, " svc=%s level=%s msg=", log_state.svc, log_level_names[level]);
    n = w < 0 ? n : n + (size_t)w;
    if (n >= cap)
        n = cap - 1;
    n += log_put_quoted(line + n, cap - n, msg);
    if (kv_fmt != NULL && kv_fmt[0] != '\0' && n + 1 < cap) {
        line[n++] = ' ';
        va_list ap;
        va_start(ap, kv_fmt);
        w = vsnprintf(line + n, cap - n, kv_fmt, ap);
        va_end(ap);
        n = w < 0 ? n : n + (size_t)w;
        if (n >= cap)
            n = cap - 1;
    }
    for (size_t i = 0; i < n; i++) {
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' '; /* one event, one line */
    }
    line[n++] = '\n';
    ssize_t rc = write(STDERR_FILENO, line, n);
    (void)rc; /* nowhere left to report a failing stderr */
}
