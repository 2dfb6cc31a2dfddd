/* sign.c owns every MAC in paylab: HMAC-SHA256, base64 codecs, constant-time comparison,
 * ws_token (docs/architecture.md) and Standard Webhooks signatures (docs/api.md).
 * Must not: log or return secrets or expected MACs, or compare MACs with memcmp/strcmp.
 * Invariant: a verification touches every byte of the candidate whatever its content, and
 * answers only yes or no. */
#include "sign.h"

#include "pl.h"

#include <assert.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIGN_WEBHOOK_PREFIX "whsec_"
/* A webhook key decodes to at most this many bytes (ours are 32). */
#define SIGN_KEY_BYTES_MAX 96
/* A webhook-signature header lists at most this many signatures (rotation needs two). */
#define SIGN_SIGNATURES_MAX 16
/* Decimal seconds: 19 digits hold any int64_t. */
#define SIGN_TS_DIGITS_MAX 18

static const char sign_b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void sign_hmac_sha256(const void *key, size_t key_bytes, const void *msg, size_t msg_bytes,
                      uint8_t mac[SIGN_MAC_BYTES])
{
    assert(key != NULL || key_bytes == 0);
    assert(msg != NULL || msg_bytes == 0);
    assert(key_bytes <= INT32_MAX);
    unsigned int mac_bytes = 0;
    static const uint8_t empty[1] = {0};
    const uint8_t *result = HMAC(EVP_sha256(), key != NULL ? key : empty, (int)key_bytes,
                                 msg != NULL ? msg : empty, msg_bytes, mac, &mac_bytes);
    /* HMAC fails only when OpenSSL cannot allocate its context: nothing sensible to sign. */
    assert(result != NULL);
    assert(mac_bytes == SIGN_MAC_BYTES);
    (void)result;
}

int sign_base64(const void *in, size_t n, char *out, size_t cap)
{
    assert(in != NULL || n == 0);
    assert(out != NULL);
    size_t need = 4 * ((n + 2) / 3);
    if (need + 1 > cap || n > INT32_MAX)
        return PL_ERANGE;
    int w = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    assert((size_t)w == need);
    return w;
}

int sign_base64url(const void *in, size_t n, char *out, size_t cap)
{
    assert(out != NULL);
    size_t need = 4 * ((n + 2) / 3);
    char *tmp = malloc(need + 1);
    if (tmp == NULL)
        return PL_ENOMEM;
    int w = sign_base64(in, n, tmp, need + 1);
    assert(w >= 0);
    size_t len = (size_t)w;
    while (len > 0 && tmp[len - 1] == '=')
        len--;
    int rc = PL_ERANGE;
    if (len + 1 <= cap) {
        for (size_t i = 0; i < len; i++) {
            out[i] = tmp[i] == '+' ? '-' : (tmp[i] == '/' ? '_' : tmp[i]);
        }
        out[len] = '\0';
        rc = (int)len;
    }
    free(tmp);
    return rc;
}

static int sign_b64_value(char c)
{
    const char *p = c == '\0' ? NULL : strchr(sign_b64_alphabet, c);
    return p == NULL ? -1 : (int)(p - sign_b64_alphabet);
}

int sign_base64_decode(const char *in, uint8_t *out, size_t cap)
{
    assert(in != NULL);
    assert(out != NULL);
    size_t len = strlen(in);
    /* Padding is optional; '=' may only end the text, and at most two of them. */
    size_t pad = 0;
    while (len > 0 && in[len - 1] == '=' && pad < 2) {
        len--;
        pad++;
    }
    if (len % 4 == 1 || (pad > 0 && (len + pad) % 4 != 0))
        return PL_EINVAL;
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = sign_b64_value(in[i]);
        if (v < 0)
            return PL_EINVAL;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n >= cap)
                return PL_ERANGE;
            out[n++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (n > INT32_MAX)
        return PL_ERANGE;
    return (int)n;
}

bool sign_equal(const char *a, const char *b)
{
    assert(a != NULL);
    assert(b != NULL);
    size_t la = strlen(a);
    size_t lb = strlen(b);
    /* Walk all of a; where b is shorter compare against 0, so the time depends on a only. */
    unsigned char diff = la != lb;
    for (size_t i = 0; i < la; i++) {
        unsigned char cb = i < lb ? (unsigned char)b[i] : 0;
        diff |= (unsigned char)a[i] ^ cb;
    }
    return diff == 0;
}

int sign_ws_token(const char *secret, const char *user, int64_t expiry_s, char *out, size_t cap)
{
    assert(secret != NULL);
    assert(user != NULL);
    assert(out != NULL);
    if (user[0] == '\0' || strchr(user, '.') != NULL || expiry_s < 0)
        return PL_EINVAL;
    char msg[SIGN_TOKEN_BYTES_MAX];
    int w = snprintf(msg, sizeof msg, "ws.%s.%" PRId64, user, expiry_s);
    if (w < 0 || (size_t)w >= sizeof msg)
        return PL_ERANGE;
    uint8_t mac[SIGN_MAC_BYTES];
    sign_hmac_sha256(secret, strlen(secret), msg, (size_t)w, mac);
    char mac_b64[64];
    int mac_chars = sign_base64url(mac, sizeof mac, mac_b64, sizeof mac_b64);
    OPENSSL_cleanse(mac, sizeof mac);
    if (mac_chars < 0)
        return mac_chars;
    w = snprintf(out, cap, "v1.%s.%" PRId64 ".%s", user, expiry_s, mac_b64);
    if (w < 0 || (size_t)w >= cap) {
        if (cap > 0)
            out[0] = '\0';
        return PL_ERANGE;
    }
    return PL_OK;
}

/* Parses the decimal digits s[0..n) (1..SIGN_TS_DIGITS_MAX of them) into *out. */
static bool sign_parse_digits(const char *s, size_t n, int64_t *out)
{
    if (n == 0 || n > SIGN_TS_DIGITS_MAX)
        return false;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

bool sign_ws_token_verify(const char *secret, const char *token, const char *user, int64_t now_s)
{
    assert(secret != NULL);
    if (token == NULL || user == NULL)
        return false;
    if (strnlen(token, SIGN_TOKEN_BYTES_MAX) >= SIGN_TOKEN_BYTES_MAX)
        return false;
    if (strncmp(token, "v1.", 3) != 0)
        return false;
    size_t user_chars = strlen(user);
    const char *p = token + 3;
    if (strncmp(p, user, user_chars) != 0 || p[user_chars] != '.')
        return false;
    const char *expiry = p + user_chars + 1;
    const char *dot = strchr(expiry, '.');
    int64_t expiry_s = 0;
    if (dot == NULL || !sign_parse_digits(expiry, (size_t)(dot - expiry), &expiry_s))
        return false;
    if (now_s >= expiry_s)
        return false;
    char expected[SIGN_TOKEN_BYTES_MAX];
    if (sign_ws_token(secret, user, expiry_s, expected, sizeof expected) != PL_OK)
        return false;
    bool ok = sign_equal(token, expected);
    OPENSSL_cleanse(expected, sizeof expected);
    return ok;
}

/* Decodes the key of a "whsec_<base64>" secret (the prefix is optional, as in the reference
 * libraries). Returns the key length or PL_EINVAL. */
static int sign_webhook_key(const char *secret, uint8_t key[SIGN_KEY_BYTES_MAX])
{
    size_t prefix_chars = strlen(SIGN_WEBHOOK_PREFIX);
    if (strncmp(secret, SIGN_WEBHOOK_PREFIX, prefix_chars) == 0)
        secret += prefix_chars;
    int n = sign_base64_decode(secret, key, SIGN_KEY_BYTES_MAX);
    if (n <= 0)
        return PL_EINVAL;
    return n;
}

int sign_webhook(const char *secret, const char *msg_id, int64_t timestamp_s, const char *body,
                 size_t body_bytes, char *out, size_t cap)
{
    assert(secret != NULL);
    assert(msg_id != NULL);
    assert(body != NULL || body_bytes == 0);
    assert(out != NULL);
    uint8_t key[SIGN_KEY_BYTES_MAX];
    int key_bytes = sign_webhook_key(secret, key);
    if (key_bytes < 0)
        return PL_EINVAL;
    char head[128];
    int head_chars = snprintf(head, sizeof head, "%s.%" PRId64 ".", msg_id, timestamp_s);
    if (head_chars < 0 || (size_t)head_chars >= sizeof head)
        return PL_EINVAL;
    size_t msg_bytes = (size_t)head_chars + body_bytes;
    char *msg = malloc(msg_bytes + 1);
    if (msg == NULL)
        return PL_ENOMEM;
    memcpy(msg, head, (size_t)head_chars);
    if (body_bytes > 0)
        memcpy(msg + head_chars, body, body_bytes);
    uint8_t mac[SIGN_MAC_BYTES];
    sign_hmac_sha256(key, (size_t)key_bytes, msg, msg_bytes, mac);
    free(msg);
    OPENSSL_cleanse(key, sizeof key);
    char mac_b64[64];
    int mac_chars = sign_base64(mac, sizeof mac, mac_b64, sizeof mac_b64);
    assert(mac_chars > 0);
    int w = snprintf(out, cap, "v1,%s", mac_b64);
    if (w < 0 || (size_t)w >= cap)
        return PL_ERANGE;
    return PL_OK;
}

/* True when any space-separated entry of header equals expected (constant time per entry). */
static bool sign_header_has(const char *header, const char *expected)
{
    char entry[SIGN_SIGNATURE_BYTES_MAX * 2];
    bool found = false;
    const char *p = header;
    for (int i = 0; i < SIGN_SIGNATURES_MAX && *p != '\0'; i++) {
        while (*p == ' ')
            p++;
        size_t n = strcspn(p, " ");
        if (n == 0)
            break;
        if (n < sizeof entry) {
            memcpy(entry, p, n);
            entry[n] = '\0';
            found |= sign_equal(entry, expected); /* no early exit: every entry is compared */
        }
        p += n;
    }
    return found;
}

int sign_webhook_verify(const char *secret, const char *msg_id, const char *timestamp_hdr,
                        const char *signature_hdr, const char *body, size_t body_bytes,
                        int64_t now_s)
{
    assert(secret != NULL);
    if (msg_id == NULL || timestamp_hdr == NULL || signature_hdr == NULL)
        return PL_EINVAL;
    if (body == NULL && body_bytes > 0)
        return PL_EINVAL;
    int64_t ts = 0;
    if (!sign_parse_digits(timestamp_hdr, strlen(timestamp_hdr), &ts))
        return PL_EINVAL;
    if (ts < now_s - SIGN_WEBHOOK_TOLERANCE_S || ts > now_s + SIGN_WEBHOOK_TOLERANCE_S)
        return PL_EINVAL;
    char expected[SIGN_SIGNATURE_BYTES_MAX];
    int rc = sign_webhook(secret, msg_id, ts, body, body_bytes, expected, sizeof expected);
    if (rc != PL_OK)
        return PL_EINVAL;
    bool ok = sign_header_has(signature_hdr, expected);
    OPENSSL_cleanse(expected, sizeof expected);
    return ok ? PL_OK : PL_EINVAL;
}
