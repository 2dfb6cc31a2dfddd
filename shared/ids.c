/* ids.c owns random identifiers, the syntax of user handles and idempotency keys, and W3C
 * traceparent values.
 * Must not: use a non-cryptographic random source (ids are unguessable), or allocate.
 * Invariant: every id written is prefix + ID_HEX_CHARS lowercase hex chars, NUL-terminated. */
#include "ids.h"

#include "pl.h"

#include <assert.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <string.h>

#define ID_PREFIX_CHARS_MAX 8
#define ID_RANDOM_BYTES 12 /* 96 bits: collisions are not a concern at any scale we run */
#define ID_HEX_CHARS (2 * ID_RANDOM_BYTES)
#define TRACE_ID_HEX_CHARS 32
#define SPAN_ID_HEX_CHARS 16
#define TRACEPARENT_CHARS 55

_Static_assert(ID_PREFIX_CHARS_MAX + ID_HEX_CHARS + 1 <= ID_BYTES_MAX, "an id fits");
_Static_assert(TRACEPARENT_CHARS + 1 == TRACEPARENT_BYTES, "a traceparent fits");

static const char ids_hex_digits[] = "0123456789abcdef";

int ids_random(void *buf, size_t n)
{
    assert(buf != NULL);
    assert(n <= INT_MAX);
    if (RAND_bytes(buf, (int)n) != 1)
        return PL_EIO;
    return PL_OK;
}

/* Writes 2*n lowercase hex chars of fresh random bytes (no NUL). */
static int ids_random_hex(char *out, size_t n)
{
    unsigned char bytes[32];
    assert(n <= sizeof bytes);
    int rc = ids_random(bytes, n);
    if (rc != PL_OK)
        return rc;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = ids_hex_digits[bytes[i] >> 4];
        out[2 * i + 1] = ids_hex_digits[bytes[i] & 0xf];
    }
    return PL_OK;
}

static bool ids_is_lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    }
    return true;
}

int ids_new(const char *prefix, char *out, size_t cap)
{
    assert(prefix != NULL);
    assert(out != NULL);
    size_t prefix_chars = strlen(prefix);
    assert(prefix_chars <= ID_PREFIX_CHARS_MAX);
    if (prefix_chars + ID_HEX_CHARS + 1 > cap)
        return PL_ERANGE;
    memcpy(out, prefix, prefix_chars);
    int rc = ids_random_hex(out + prefix_chars, ID_RANDOM_BYTES);
    if (rc != PL_OK) {
        out[0] = '\0';
        return rc;
    }
    out[prefix_chars + ID_HEX_CHARS] = '\0';
    return PL_OK;
}

int ids_derived(const char *prefix, const char *text, char out[ID_BYTES_MAX])
{
    assert(prefix != NULL && text != NULL);
    size_t prefix_chars = strlen(prefix);
    assert(prefix_chars <= ID_PREFIX_CHARS_MAX);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_bytes = 0;
    out[0] = '\0';
    if (EVP_Digest(text, strlen(text), md, &md_bytes, EVP_sha256(), NULL) != 1)
        return PL_EIO;
    assert(md_bytes * 2 >= ID_HEX_CHARS);
    static const char hex[] = "0123456789abcdef";
    memcpy(out, prefix, prefix_chars);
    for (size_t i = 0; i < ID_HEX_CHARS / 2; i++) {
        out[prefix_chars + 2 * i] = hex[md[i] >> 4];
        out[prefix_chars + 2 * i + 1] = hex[md[i] & 0xf];
    }
    out[prefix_chars + ID_HEX_CHARS] = '\0';
    return PL_OK;
}

bool ids_valid(const char *prefix, const char *s)
{
    assert(prefix != NULL);
    if (s == NULL)
        return false;
    size_t prefix_chars = strlen(prefix);
    if (strncmp(s, prefix, prefix_chars) != 0)
        return false;
    const char *hex = s + prefix_chars;
    if (strnlen(hex, ID_HEX_CHARS + 1) != ID_HEX_CHARS)
        return false;
    return ids_is_lower_hex(hex, ID_HEX_CHARS);
}

bool ids_user_valid(const char *s)
{
    if (s == NULL)
        return false;
    size_t n = strnlen(s, USER_HANDLE_CHARS_MAX + 1);
    if (n == 0 || n > USER_HANDLE_CHARS_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
    }
    return true;
}

bool ids_idem_key_valid(const char *s)
{
    if (s == NULL)
        return false;
    size_t n = strnlen(s, IDEM_KEY_CHARS_MAX + 1);
    if (n == 0 || n > IDEM_KEY_CHARS_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x21 || c > 0x7e)
            return false;
    }
    return true;
}

static bool ids_all_zero(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '0')
            return false;
    }
    return true;
}

bool ids_traceparent_valid(const char *s)
{
    if (s == NULL)
        return false;
    if (strnlen(s, TRACEPARENT_CHARS + 1) != TRACEPARENT_CHARS)
        return false;
    /* version 00 only: "00-" trace "-" span "-" flags */
    if (s[0] != '0' || s[1] != '0' || s[2] != '-')
        return false;
    const char *trace = s + 3;
    const char *span = trace + TRACE_ID_HEX_CHARS + 1;
    const char *flags = span + SPAN_ID_HEX_CHARS + 1;
    if (trace[TRACE_ID_HEX_CHARS] != '-' || span[SPAN_ID_HEX_CHARS] != '-')
        return false;
    if (!ids_is_lower_hex(trace, TRACE_ID_HEX_CHARS) || ids_all_zero(trace, TRACE_ID_HEX_CHARS))
        return false;
    if (!ids_is_lower_hex(span, SPAN_ID_HEX_CHARS) || ids_all_zero(span, SPAN_ID_HEX_CHARS))
        return false;
    return ids_is_lower_hex(flags, 2);
}

/* Writes a fresh non-zero span id (SPAN_ID_HEX_CHARS chars, no NUL). */
static int ids_span_new(char *out)
{
    for (int attempt = 0; attempt < 4; attempt++) {
        int rc = ids_random_hex(out, SPAN_ID_HEX_CHARS / 2);
        if (rc != PL_OK)
            return rc;
        if (!ids_all_zero(out, SPAN_ID_HEX_CHARS))
            return PL_OK;
    }
    return PL_EIO; /* four all-zero draws in a row: the random source is broken */
}

int ids_traceparent_new(char out[TRACEPARENT_BYTES])
{
    assert(out != NULL);
    memcpy(out, "00-", 3);
    char *trace = out + 3;
    int rc = PL_EIO;
    for (int attempt = 0; attempt < 4 && rc != PL_OK; attempt++) {
        rc = ids_random_hex(trace, TRACE_ID_HEX_CHARS / 2);
        if (rc == PL_OK && ids_all_zero(trace, TRACE_ID_HEX_CHARS))
            rc = PL_EIO;
    }
    if (rc != PL_OK)
        return rc;
    trace[TRACE_ID_HEX_CHARS] = '-';
    char *span = trace + TRACE_ID_HEX_CHARS + 1;
    rc = ids_span_new(span);
    if (rc != PL_OK)
        return rc;
    memcpy(span + SPAN_ID_HEX_CHARS, "-01", 4);
    assert(ids_traceparent_valid(out));
    return PL_OK;
}

int ids_traceparent_child(const char *parent, char out[TRACEPARENT_BYTES])
{
    assert(out != NULL);
    if (!ids_traceparent_valid(parent))
        return ids_traceparent_new(out);
    memcpy(out, parent, TRACEPARENT_BYTES); /* keeps version, trace-id and flags */
    int rc = ids_span_new(out + 3 + TRACE_ID_HEX_CHARS + 1);
    if (rc != PL_OK)
        return rc;
    assert(ids_traceparent_valid(out));
    return PL_OK;
}
