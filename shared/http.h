/* http.h: evhttp helpers shared by every service: listening, JSON replies, the error body of
 * docs/api.md, the 64 KiB body limit, the content-type check, loopback and header helpers.
 *
 * Rule (evhttp): every request ends in exactly one reply. The helpers below each send one.
 *
 * Error codes used across services (docs/api.md lists them with their statuses):
 *   400 malformed_json, invalid_field, missing_field, invalid_idempotency_key
 *   401 unauthorized            403 forbidden, mandate_missing, not_loopback
 *   404 not_found, unknown_user, unknown_account, unknown_transaction, unknown_payment
 *   405 method_not_allowed      409 idempotency_key_in_use, user_exists, account_exists
 *   413 body_too_large          415 unsupported_media_type
 *   422 invalid_amount, unsupported_currency, insufficient_funds, idempotency_key_reused,
 *       same_account
 *   402 bank_declined           429 overloaded (+ Retry-After)
 *   502 bank_error (unknown)    503 bank_unreachable (failed), busy (+ Retry-After)
 *   504 bank_timeout (unknown)  500 internal
 */
#ifndef PAYLAB_HTTP_H
#define PAYLAB_HTTP_H

#include <cjson/cJSON.h>
#include <event2/http.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A request body above this is refused with 413 body_too_large (docs/api.md). */
#define HTTP_BODY_BYTES_MAX (64 * 1024)
/* evhttp itself drops bodies beyond this (its own 413), bounding memory per connection;
 * between the two limits we answer the JSON 413. */
#define HTTP_BODY_BYTES_HARD_MAX (1024 * 1024)
#define HTTP_HEADERS_BYTES_MAX (16 * 1024)
/* An idle or trickling client connection is closed after this. */
#define HTTP_CONN_TIMEOUT_S 30

/* Creates an evhttp on base bound to bind_addr:port with the limits above, gencb as the
 * single handler. NULL (and a logged error naming the address) on failure. */
struct evhttp *http_listen(struct event_base *base, const char *bind_addr, int port,
                           void (*gencb)(struct evhttp_request *, void *), void *arg);

/* Sends status with body_json (a complete JSON text) and Content-Type application/json. */
void http_reply_raw(struct evhttp_request *req, int status, const char *body_json);
/* Sends status with obj printed compactly. obj stays the caller's. */
void http_reply_json(struct evhttp_request *req, int status, const cJSON *obj);
/* Sends {"error":{"code":code,"message":message}}. */
void http_reply_error(struct evhttp_request *req, int status, const char *code,
                      const char *message);
/* Like http_reply_error, plus every member of extra copied to the top level (e.g. the
 * transaction's "id" and "status" on a top-up error). extra stays the caller's. */
void http_reply_error_extra(struct evhttp_request *req, int status, const char *code,
                            const char *message, const cJSON *extra);
/* Adds a response header before a reply (e.g. "Retry-After", "Idempotent-Replayed"). */
void http_add_header(struct evhttp_request *req, const char *name, const char *value);

/* Reads the body of a POST/PUT as one JSON object. On failure it has already replied —
 * 415 unsupported_media_type (Content-Type not application/json), 413 body_too_large,
 * 400 malformed_json (not one object, bad UTF-8 is the parser's call) — and returns
 * PL_EINVAL. On success *out is the caller's (cJSON_Delete) and, if raw is not NULL,
 * *raw is a malloc'ed NUL-terminated copy of the body (*raw_bytes long), caller free()s. */
int http_read_json(struct evhttp_request *req, cJSON **out, char **raw, size_t *raw_bytes);

/* True when a Content-Type value is application/json, with or without parameters
 * (";charset=utf-8"), case-insensitive. For handlers that must see the raw body first. */
bool http_is_json_type(const char *content_type);

/* The decoded path of the request without the query ("/v1/payments/bp_…"); borrowed,
 * valid until the reply. NULL for an unparsable URI. */
const char *http_path(struct evhttp_request *req);
/* If path is prefix followed by one non-empty segment without '/', copies that segment
 * into out and returns true ("/v1/users/" + "alice"). */
bool http_path_tail(const char *path, const char *prefix, char *out, size_t cap);
/* Copies query parameter key into out; PL_ENOTFOUND if absent, PL_ERANGE if too long. */
int http_query_get(struct evhttp_request *req, const char *key, char *out, size_t cap);
/* The request header value or NULL. Borrowed until the reply. */
const char *http_header(struct evhttp_request *req, const char *name);
/* True when the peer address is 127.0.0.0/8 or ::1. */
bool http_peer_is_loopback(struct evhttp_request *req);
/* True when "Authorization: Bearer <token>" matches (constant time). */
bool http_bearer_ok(struct evhttp_request *req, const char *token);
/* The method as text ("GET", "POST", …). */
const char *http_method(struct evhttp_request *req);

#endif
