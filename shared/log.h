/* log.h: one line per event, logfmt, on stderr (docs/architecture.md):
 *   ts=2026-11-25T21:30:00.123Z svc=wallet level=info msg="payment settled" txn=wtx_… */
#ifndef PAYLAB_LOG_H
#define PAYLAB_LOG_H

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Sets the service name (a static string) and the lowest level printed. Call once in main. */
void log_init(const char *svc, enum log_level level_min);
/* Parses "debug|info|warn|error"; returns 0 or PL_EINVAL. */
int log_level_parse(const char *s, enum log_level *out);
/* Writes one line: ts, svc, level, msg (quoted), then the printf-formatted key=value tail
 * (may be NULL). Values with spaces must be quoted by the caller ("reason=\"%s\"").
 * Never pass a secret. Lines are capped at 2 KiB (truncated, still one line). */
void log_write(enum log_level level, const char *msg, const char *kv_fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(msg, ...) log_write(LOG_DEBUG, msg, __VA_ARGS__)
#define log_info(msg, ...) log_write(LOG_INFO, msg, __VA_ARGS__)
#define log_warn(msg, ...) log_write(LOG_WARN, msg, __VA_ARGS__)
#define log_error(msg, ...) log_write(LOG_ERROR, msg, __VA_ARGS__)

#endif
