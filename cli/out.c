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
