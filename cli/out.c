/* out.c owns how the CLI prints things for people: amounts through money_format (never a
 * float), local times with milliseconds, columns aligned by display width.
 * Must not: decide exit codes or talk to services.
 * Invariant: every helper writes into the caller's bounded buffer and returns it. */
#include "out.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json.h"
#include "pl.h"

const char *out_money(int64_t minor, char buf[MONEY_FORMAT_BYTES_MAX])
{
    if (money_format(minor, buf, MONEY_FORMAT_BYTES_MAX) != 0) {
        snprintf(buf, MONEY_FORMAT_BYTES_MAX, "%lld paise", (long long)minor);
    }
    return buf;
}

const char *out_money_signed(int64_t minor, char buf[MONEY_FORMAT_BYTES_MAX])
{
    if (minor < 0) {
        return out_money(minor, buf);
    }
    char plain[MONEY_FORMAT_BYTES_MAX];
    const char *text = out_money(minor, plain);
    /* "+" and a formatted non-negative int64 fit: the widest is 28 bytes with grouping. */
    buf[0] = '+';
    pl_strlcpy(buf + 1, text, MONEY_FORMAT_BYTES_MAX - 1);
    return buf;
}

const char *out_time(int64_t at_ms, bool with_date, char buf[OUT_TIME_BYTES_MAX])
{
    time_t secs = (time_t)(at_ms / 1000);
    struct tm tm;
    char base[32];
    if (at_ms <= 0 || localtime_r(&secs, &tm) == NULL ||
        strftime(base, sizeof base, with_date ? "%Y-%m-%d %H:%M:%S" : "%H:%M:%S", &tm) == 0) {
        snprintf(buf, OUT_TIME_BYTES_MAX, "-");
        return buf;
    }
    snprintf(buf, OUT_TIME_BYTES_MAX, "%s.%03d", base, (int)(at_ms % 1000));
    return buf;
}

/* A unix-ms timestamp in text: 13 digits (2001 … 2286) with no letter, digit or _ either side. */
#define OUT_UNIX_MS_DIGITS 13
static const char out_unix_ms_field[] = "expires_at_ms ";

static bool is_word_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

/* The length of the digit run at p when it is a timestamp standing alone, else 0. */
static size_t unix_ms_at(const char *text, const char *p)
{
    if (p > text && is_word_char(p[-1])) {
        return 0;
    }
    size_t n = strspn(p, "0123456789");
    return n == OUT_UNIX_MS_DIGITS && !is_word_char(p[n]) && p[0] != '0' ? n : 0;
}

const char *out_reason(const char *text, int64_t origin_ms, char buf[OUT_REASON_BYTES_MAX])
{
    size_t len = 0, field_bytes = sizeof out_unix_ms_field - 1;
    buf[0] = '\0';
    for (const char *p = text; *p != '\0' && len + 1 < OUT_REASON_BYTES_MAX;) {
        bool field = strncmp(p, out_unix_ms_field, field_bytes) == 0 &&
                     unix_ms_at(text, p + field_bytes) > 0;
        size_t digits = field ? 0 : unix_ms_at(text, p);
        if (field) {
            p += field_bytes; /* the time says what it is; the next pass formats it */
            continue;
        }
        if (digits == 0) {
            buf[len++] = *p++;
            buf[len] = '\0';
            continue;
        }
        char when[OUT_TIME_BYTES_MAX];
        int64_t at_ms = strtoll(p, NULL, 10);
        /* "(deadline …, +5000 ms)" rather than a parenthesis inside another. */
        const char *format = p[digits] == ')' ? "%s, %+lld ms" : "%s (%+lld ms)";
        int n = snprintf(buf + len, OUT_REASON_BYTES_MAX - len, format,
                         out_time(at_ms, false, when), (long long)(at_ms - origin_ms));
        len = n > 0 && len + (size_t)n < OUT_REASON_BYTES_MAX ? len + (size_t)n
                                                              : OUT_REASON_BYTES_MAX - 1;
        p += digits;
    }
    return buf;
}

const char *out_ms_us(int64_t us, char buf[OUT_MS_BYTES_MAX])
{
    if (us > -10000 && us < 10000) {
        snprintf(buf, OUT_MS_BYTES_MAX, "%.1f ms", (double)us / 1000.0);
    } else {
        snprintf(buf, OUT_MS_BYTES_MAX, "%lld ms", (long long)(us / 1000));
    }
    return buf;
}

size_t out_width(const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if ((*p & 0xC0) != 0x80) { /* not a continuation byte: a new code point */
            n++;
        }
    }
    return n;
}

void out_cell(FILE *f, const char *s, size_t width, bool right, size_t gap)
{
    size_t w = out_width(s);
    size_t pad = w < width ? width - w : 0;
    if (right) {
        fprintf(f, "%*s%s", (int)pad, "", s);
    } else {
        fprintf(f, "%s%*s", s, (int)pad, "");
    }
    fprintf(f, "%*s", (int)gap, "");
}

const char *out_str(const cJSON *o, const char *key, const char *fallback)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) && v->valuestring != NULL ? v->valuestring : fallback;
}

bool out_int(const cJSON *o, const char *key, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v)) {
        return false;
    }
    *out = (int64_t)v->valuedouble;
    return true;
}

void out_json(const cJSON *obj)
{
    char *s = json_print(obj);
    if (s == NULL) {
        fprintf(stderr, "paylab: out of memory\n");
        return;
    }
    printf("%s\n", s);
    free(s);
}

const char *out_kind_label(const char *kind)
{
    if (strcmp(kind, "topup") == 0) {
        return "top-up";
    }
    if (strcmp(kind, "withdrawal") == 0) {
        return "withdrawal";
    }
    if (strcmp(kind, "p2p") == 0) {
        return "transfer";
    }
    return kind;
}

const char *out_plural(int64_t n, const char *one, const char *many)
{
    return n == 1 || n == -1 ? one : many;
}
