/* sign.h: HMAC-SHA256, base64, constant-time comparison, ws_token (docs/architecture.md) and
 * Standard Webhooks signatures (docs/api.md). All comparisons of secrets or MACs are
 * constant-time (CRYPTO_memcmp). */
#ifndef PAYLAB_SIGN_H
#define PAYLAB_SIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SIGN_MAC_BYTES 32
#define SIGN_TOKEN_BYTES_MAX 160
#define SIGN_SIGNATURE_BYTES_MAX 64 /* "v1," + base64 of 32 bytes + NUL */
/* The replay window for webhook timestamps, either side of our clock. */
#define SIGN_WEBHOOK_TOLERANCE_S 300

void sign_hmac_sha256(const void *key, size_t key_bytes, const void *msg, size_t msg_bytes,
                      uint8_t mac[SIGN_MAC_BYTES]);
/* Standard base64 (with padding) / base64url (no padding). Return the length written
 * (excluding NUL) or PL_ERANGE. */
int sign_base64(const void *in, size_t n, char *out, size_t cap);
int sign_base64url(const void *in, size_t n, char *out, size_t cap);
/* Decodes standard base64; returns bytes written or PL_EINVAL / PL_ERANGE. */
int sign_base64_decode(const char *in, uint8_t *out, size_t cap);
/* Constant-time equality of two strings; lengths may differ (then false, still no early exit
 * over the shorter one's bytes). */
bool sign_equal(const char *a, const char *b);

/* ws_token = "v1.<user>.<expiry>.<base64url HMAC-SHA256(secret, "ws.<user>.<expiry>")>". */
int sign_ws_token(const char *secret, const char *user, int64_t expiry_s, char *out, size_t cap);
/* True when token is well-formed, for `user`, unexpired at now_s, and its MAC matches. */
bool sign_ws_token_verify(const char *secret, const char *token, const char *user, int64_t now_s);

/* Signs per Standard Webhooks: "v1," + base64(HMAC(key, id "." ts "." body)), where key is
 * the base64-decoded bytes after "whsec_" in secret. 0 or PL_EINVAL (bad secret). */
int sign_webhook(const char *secret, const char *msg_id, int64_t timestamp_s, const char *body,
                 size_t body_bytes, char *out, size_t cap);
/* Verifies a webhook-signature header (space-separated "v1,…" entries; any match wins) and
 * the timestamp header (decimal seconds within ±SIGN_WEBHOOK_TOLERANCE_S of now_s).
 * 0 ok; PL_EINVAL otherwise. */
int sign_webhook_verify(const char *secret, const char *msg_id, const char *timestamp_hdr,
                        const char *signature_hdr, const char *body, size_t body_bytes,
                        int64_t now_s);

#endif
