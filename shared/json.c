/* json.c owns the strict reading of request bodies: one object, bounded nesting, typed and
 * bounded fields, so that code past the edge can assert instead of checking.
 * Must not: recurse over input (cJSON recurses, so depth is checked before cJSON sees it),
 * or let a "\u0000" escape silently cut a string short.
 * Invariant: json_parse_object returns NULL or an object nested at most JSON_NESTING_MAX. */
#include "json.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Integers beyond ±(2^53 - 1) cannot be told apart from their neighbours in a double. */
#define JSON_INT_SAFE_MAX 9007199254740991.0
/* "\u0000" is rewritten to U+FFFF before parsing; its UTF-8 form marks the spot. */
#define JSON_NUL_MARK "\xEF\xBF\xBF"

struct json_scan {
    bool too_deep;
    bool has_nul_escape;
};

/* One pass over the raw text, outside-in, without recursion: measures the nesting depth
 * (ignoring brackets inside strings) and spots "\u0000" escapes. */
static struct json_scan json_prescan(const char *buf, size_t len)
{
    struct json_scan scan = {false, false};
    size_t depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < len && !scan.too_deep; i++) {
        char c = buf[i];
        if (in_string) {
            if (c == '"')
                in_string = false;
            if (c != '\\' || i + 1 >= len)
                continue;
            i++; /* the escaped char is never a quote that ends the string */
            if (buf[i] == 'u' && i + 4 < len && memcmp(buf + i + 1, "0000", 4) == 0)
                scan.has_nul_escape = true;
            continue;
        }
        if (c == '"')
            in_string = true;
        if (c == '{' || c == '[')
            scan.too_deep = ++depth > JSON_NESTING_MAX;
        if ((c == '}' || c == ']') && depth > 0)
            depth--;
    }
    return scan;
}

/* Rewrites every "\u0000" escape of copy (a private copy of the text) to "\uFFFF". */
static void json_mark_nul_escapes(char *copy, size_t len)
{
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        if (!in_string) {
            in_string = copy[i] == '"';
            continue;
        }
        if (copy[i] == '"')
            in_string = false;
        if (copy[i] != '\\' || i + 1 >= len)
            continue;
        i++;
        if (copy[i] == 'u' && i + 4 < len && memcmp(copy + i + 1, "0000", 4) == 0)
            memcpy(copy + i + 1, "FFFF", 4);
    }
}

static bool json_is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static cJSON *json_parse_checked(const char *buf, size_t len)
{
    /* cJSON skips any byte <= 0x20 before a value; JSON allows only four of them. */
    size_t lead = 0;
    while (lead < len && json_is_space(buf[lead]))
        lead++;
    if (lead == len || buf[lead] != '{')
        return NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
    if (root == NULL)
        return NULL;
    bool ok = cJSON_IsObject(root) && end != NULL && end >= buf && end <= buf + len;
    for (const char *p = end; ok && p < buf + len; p++)
        ok = json_is_space(*p);
    if (!ok) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

cJSON *json_parse_object(const char *buf, size_t len)
{
    if (buf == NULL || len == 0)
        return NULL;
    struct json_scan scan = json_prescan(buf, len);
    if (scan.too_deep)
        return NULL;
    if (!scan.has_nul_escape)
        return json_parse_checked(buf, len);
    char *copy = malloc(len);
    if (copy == NULL)
        return NULL;
    memcpy(copy, buf, len);
    json_mark_nul_escapes(copy, len);
    cJSON *root = json_parse_checked(copy, len);
    free(copy);
    return root;
}

/* The item under key, or NULL when absent or JSON null (both count as missing). */
static const cJSON *json_item(const cJSON *obj, const char *key)
{
    assert(key != NULL);
    if (obj == NULL || !cJSON_IsObject(obj))
        return NULL;
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (item == NULL || cJSON_IsNull(item))
        return NULL;
    return item;
}

enum json_status json_get_string(const cJSON *obj, const char *key, bool required, size_t max_chars,
                                 const char **out)
{
    assert(out != NULL);
    const cJSON *item = json_item(obj, key);
    if (item == NULL)
        return required ? JSON_MISSING : JSON_OK;
    if (!cJSON_IsString(item) || item->valuestring == NULL)
        return JSON_WRONG_TYPE;
    if (strstr(item->valuestring, JSON_NUL_MARK) != NULL)
        return JSON_WRONG_TYPE;
    if (strlen(item->valuestring) > max_chars)
        return JSON_TOO_LONG;
    *out = item->valuestring;
    return JSON_OK;
}

enum json_status json_get_int64(const cJSON *obj, const char *key, bool required, int64_t *out)
{
    assert(out != NULL);
    const cJSON *item = json_item(obj, key);
    if (item == NULL)
        return required ? JSON_MISSING : JSON_OK;
    if (!cJSON_IsNumber(item))
        return JSON_WRONG_TYPE;
    double v = item->valuedouble;
    if (!isfinite(v))
        return JSON_TOO_LONG;
    if (v > JSON_INT_SAFE_MAX || v < -JSON_INT_SAFE_MAX)
        return JSON_TOO_LONG;
    int64_t i = (int64_t)v; /* in range: the cast truncates, never overflows */
    if ((double)i != v)
        return JSON_WRONG_TYPE;
    *out = i;
    return JSON_OK;
}

enum json_status json_get_bool(const cJSON *obj, const char *key, bool required, bool *out)
{
    assert(out != NULL);
    const cJSON *item = json_item(obj, key);
    if (item == NULL)
        return required ? JSON_MISSING : JSON_OK;
    if (!cJSON_IsBool(item))
        return JSON_WRONG_TYPE;
    *out = cJSON_IsTrue(item);
    return JSON_OK;
}

char *json_print(const cJSON *obj)
{
    assert(obj != NULL);
    return cJSON_PrintUnformatted(obj);
}

cJSON *json_add_int64(cJSON *obj, const char *key, int64_t v)
{
    char text[24]; /* "-9223372036854775808" + NUL */
    snprintf(text, sizeof text, "%lld", (long long)v);
    return cJSON_AddRawToObject(obj, key, text);
}
