/* ids.h: random prefixed ids (the wallet's --id-seed derives its payment ids instead: see
 * wallet-service/ledger.c), user handles, idempotency keys, W3C traceparent. */
#ifndef PAYLAB_IDS_H
#define PAYLAB_IDS_H

#include <stdbool.h>
#include <stddef.h>

/* prefix (≤ 8 chars) + 24 lowercase hex chars (96 random bits) + NUL fits. */
#define ID_BYTES_MAX 40
#define USER_HANDLE_CHARS_MAX 32
#define IDEM_KEY_CHARS_MAX 64
/* "00-" 32 hex "-" 16 hex "-01" + NUL */
#define TRACEPARENT_BYTES 56

/* Fills buf with n cryptographically random bytes (OpenSSL RAND_bytes). 0 or PL_EIO. */
int ids_random(void *buf, size_t n);
/* Writes prefix + 24 random hex chars, e.g. ids_new("wtx_", out, sizeof out). */
int ids_new(const char *prefix, char *out, size_t cap);
/* Writes prefix + the first 24 hex chars of SHA-256(text): an id derived, not drawn (the
 * wallet's --id-seed payment ids, the bank's seeded webhook event ids, and the lab, which
 * recomputes them). 0 or PL_EIO. */
int ids_derived(const char *prefix, const char *text, char out[ID_BYTES_MAX]);
/* True for prefix followed by exactly 24 lowercase hex chars. */
bool ids_valid(const char *prefix, const char *s);
/* True for [a-z0-9_]{1,32}. */
bool ids_user_valid(const char *s);
/* True for 1..64 printable ASCII chars (0x21..0x7e, no spaces). */
bool ids_idem_key_valid(const char *s);
/* A fresh W3C traceparent "00-<trace-id>-<span-id>-01". */
int ids_traceparent_new(char out[TRACEPARENT_BYTES]);
/* A child span of parent (same trace-id, new span-id); a malformed parent gives a fresh one. */
int ids_traceparent_child(const char *parent, char out[TRACEPARENT_BYTES]);
bool ids_traceparent_valid(const char *s);

#endif
