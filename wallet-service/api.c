/* api.c owns the wallet's HTTP edge: routing, CORS for the dashboard, the traceparent a new
 * transaction starts from, validation of every request field, the Idempotency-Key protocol
 * (fingerprints, the in-memory in-flight set, replays), the JSON replies, and the deferred
 * replies of sync top-ups/withdrawals and user creation (a pending record per held request,
 * with a close callback so a client that went away is never answered).
 * Must not: write SQL (ledger.c does), decide a payment's outcome from anything but
 * bank_classify(), or reply before the COMMIT that records what the reply says.
 * Invariants: every request gets exactly one reply, or none when its client is gone; a
 * pending record holds at most one bank call; an Idempotency-Key is in the in-flight set
 * exactly while a pending record for it exists. */
#include <assert.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "http.h"
#include "ids.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "money.h"
#include "pl.h"
#include "sign.h"
#include "wallet.h"
#include "zbus.h"

/* One request being handled (or a deferred one being answered). */
struct api_call {
    struct wallet_ctx *ctx;
    struct evhttp_request *req; /* NULL: the client is gone, answer nobody */
    const char *route;          /* metrics label, a literal */
    int64_t start_us;
};

/* GET /v1/users/{user}/transactions?limit= bounds (docs/contracts.md). */
#define API_LIST_LIMIT_DEFAULT 50
#define API_LIST_LIMIT_MAX 200
/* GET /v1/users?limit= bounds (docs/contracts.md: the dashboard's list of balances). */
#define API_USERS_LIMIT_DEFAULT 100
#define API_USERS_LIMIT_MAX 500

/* ===================================================================== idempotency set == */

static size_t idem_hash(const char *key)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (const char *p = key; *p != '\0'; p++) {
        h ^= (unsigned char)*p;
        h *= 1099511628211ULL;
    }
    return (size_t)(h % WALLET_IDEM_SET_SLOTS);
}

/* Slot holding key, or the free slot where it would go. */
static size_t idem_probe(const struct idem_set *s, const char *key)
{
    size_t i = idem_hash(key);
    for (size_t n = 0; n < WALLET_IDEM_SET_SLOTS; n++) {
        if (s->keys[i][0] == '\0' || strcmp(s->keys[i], key) == 0)
            return i;
        i = (i + 1) % WALLET_IDEM_SET_SLOTS;
    }
    assert(!"the idempotency set is never full: count <= WALLET_PENDING_MAX");
    return 0;
}

static bool idem_set_has(const struct idem_set *s, const char *key)
{
    return s->keys[idem_probe(s, key)][0] != '\0';
}

static void idem_set_add(struct idem_set *s, const char *key)
{
    assert(s->count < WALLET_PENDING_MAX);
    size_t i = idem_probe(s, key);
    assert(s->keys[i][0] == '\0'); /* callers checked idem_set_has */
    pl_strlcpy(s->keys[i], key, sizeof s->keys[i]);
    s->count++;
}

/* True when slot h lies cyclically in (i, j]. */
static bool idem_between(size_t i, size_t h, size_t j)
{
    return i <= j ? (i < h && h <= j) : (i < h || h <= j);
}

/* Linear-probing removal with backward shift, so no tombstones accumulate. */
static void idem_set_remove(struct idem_set *s, const char *key)
{
    size_t i = idem_probe(s, key);
    if (s->keys[i][0] == '\0')
        return;
    s->keys[i][0] = '\0';
    s->count--;
    size_t j = i;
    for (size_t n = 0; n < WALLET_IDEM_SET_SLOTS; n++) {
        j = (j + 1) % WALLET_IDEM_SET_SLOTS;
        if (s->keys[j][0] == '\0')
            return;
        if (idem_between(i, idem_hash(s->keys[j]), j))
            continue;
        memcpy(s->keys[i], s->keys[j], sizeof s->keys[i]);
        s->keys[j][0] = '\0';
        i = j;
    }
}

/* ===================================================================== replies ====== */

/* A client that went away is counted as 499 (nginx's "client closed request"). */
static void api_observe(const struct api_call *c, int status)
{
    metrics_http_observe(c->ctx->metrics, c->route, c->req == NULL ? 499 : status, c->start_us);
}

static void api_error_extra(const struct api_call *c, int status, const char *code,
                            const char *message, const cJSON *extra)
{
    api_observe(c, status);
    if (c->req == NULL)
        return;
    if (status == 429 || (status == 503 && strcmp(code, "busy") == 0))
        http_add_header(c->req, "Retry-After", "1");
    http_reply_error_extra(c->req, status, code, message, extra);
}

static void api_error(const struct api_call *c, int status, const char *code, const char *message)
{
    api_error_extra(c, status, code, message, NULL);
}

static void api_json(const struct api_call *c, int status, const cJSON *obj)
{
    api_observe(c, status);
    if (c->req == NULL)
        return;
    if (obj == NULL) {
        http_reply_error(c->req, 500, "internal", "out of memory");
        return;
    }
    http_reply_json(c->req, status, obj);
}

/* The answer to a database failure: 503 busy (retry) or 500 without any SQL text. */
static void api_db_error(const struct api_call *c, int rc, const cJSON *extra)
{
    if (rc == PL_EBUSY) {
        api_error_extra(c, 503, "busy", "the database is busy; retry in a second", extra);
        return;
    }
    log_error("database error", "route=%s rc=%d", c->route, rc);
    api_error_extra(c, 500, "internal", "internal error", extra);
}

static void json_add_string_or_null(cJSON *o, const char *key, const char *s, bool present)
{
    if (present && s != NULL) {
        cJSON_AddStringToObject(o, key, s);
    } else {
        cJSON_AddNullToObject(o, key);
    }
}

/* The transaction object of docs/contracts.md with balance_minor of balance_user (NULL: the
 * transaction's user); caller cJSON_Delete()s. NULL on ENOMEM. */
static cJSON *api_txn_json(struct wallet_ctx *ctx, const struct ledger_txn *t,
                           const char *balance_user)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        return NULL;
    cJSON_AddStringToObject(o, "id", t->id);
    cJSON_AddStringToObject(o, "kind", txn_kind_name(t->kind));
    cJSON_AddStringToObject(o, "mode", txn_mode_name(t->mode));
    cJSON_AddStringToObject(o, "status", txn_status_name(t->status));
    cJSON_AddNumberToObject(o, "amount_minor", (double)t->amount_minor);
    cJSON_AddStringToObject(o, "currency", "INR");
    cJSON_AddStringToObject(o, "user", t->user);
    cJSON_AddStringToObject(o, "counterparty", t->counterparty);
    json_add_string_or_null(o, "note", t->note, t->has_note);
    json_add_string_or_null(o, "bank_payment_id", t->bank_payment_id,
                            t->bank_payment_id[0] != '\0');
    json_add_string_or_null(o, "failure_reason", t->failure_reason, t->failure_reason[0] != '\0');
    json_add_string_or_null(o, "settled_by", txn_settled_by_name(t->settled_by),
                            t->settled_by != SETTLED_NONE);
    if (t->expires_at_ms > 0) {
        cJSON_AddNumberToObject(o, "expires_at_ms", (double)t->expires_at_ms);
    } else {
        cJSON_AddNullToObject(o, "expires_at_ms");
    }
    cJSON_AddNumberToObject(o, "created_at_ms", (double)t->created_at_ms);
    cJSON_AddNumberToObject(o, "updated_at_ms", (double)t->updated_at_ms);
    char account[WALLET_ACCOUNT_ID_BYTES_MAX];
    ledger_wallet_account(balance_user != NULL ? balance_user : t->user, account, sizeof account);
    int64_t balance = 0;
    if (ledger_balance(&ctx->db, account, &balance) == 0)
        cJSON_AddNumberToObject(o, "balance_minor", (double)balance);
    return o;
}

/* Answers with t's current state (docs/api.md and docs/architecture.md). unknown_status is the
 * status of the first response for an `unknown` transaction (502 or 504; 502 when not known). */
static void api_reply_txn(const struct api_call *c, const struct ledger_txn *t, int unknown_status,
                          bool replayed)
{
    if (c->req != NULL && replayed)
        http_add_header(c->req, "Idempotent-Replayed", "true");
    if (c->req != NULL && t->traceparent[0] != '\0')
        http_add_header(c->req, "traceparent", t->traceparent);
    cJSON *o = api_txn_json(c->ctx, t, NULL);
    if (t->status == TXN_SUCCEEDED) {
        api_json(c, 200, o);
    } else if (t->status == TXN_PENDING) {
        api_json(c, 202, o);
    } else if (t->status == TXN_FAILED && (strcmp(t->failure_reason, "bank_unreachable") == 0 ||
                                           strcmp(t->failure_reason, "not_sent") == 0)) {
        api_error_extra(c, 503, "bank_unreachable",
                        "the bank refused the connection; nothing was moved", o);
    } else if (t->status == TXN_FAILED && (strcmp(t->failure_reason, "bank_timeout") == 0 ||
                                           strcmp(t->failure_reason, "bank_error") == 0)) {
        bool timeout = strcmp(t->failure_reason, "bank_timeout") == 0;
        api_error_extra(c, timeout ? 504 : 502, t->failure_reason,
                        "UNSAFE --unsafe-timeout-is-failure: the bank gave no definite answer and "
                        "the wallet called the payment failed without asking; the bank may "
                        "still have moved the money",
                        o);
    } else if (t->status == TXN_FAILED) {
        char msg[128];
        snprintf(msg, sizeof msg, "the bank declined the payment: %s", t->failure_reason);
        api_error_extra(c, 402, "bank_declined", msg, o);
    } else if (unknown_status == 504) {
        api_error_extra(c, 504, "bank_timeout",
                        "the bank did not answer in time; the outcome is unknown until the "
                        "reconciler asks the bank",
                        o);
    } else {
        api_error_extra(c, 502, "bank_error",
                        "the bank's answer was not definite; the outcome is unknown until the "
                        "reconciler asks the bank",
                        o);
    }
    cJSON_Delete(o);
}

/* ===================================================================== pending records == */

bool api_payment_in_flight(const struct wallet_ctx *ctx, const char *txn_id)
{
    for (size_t i = 0; i < WALLET_PENDING_MAX; i++) {
        const struct api_pending *p = &ctx->pending[i];
        if (p->kind == PENDING_PAYMENT && strcmp(p->txn_id, txn_id) == 0)
            return true;
    }
    return false;
}

static void api_conn_closed(struct evhttp_connection *conn, void *arg)
{
    struct api_pending *p = arg;
    if (p->kind == PENDING_FREE || p->conn != conn)
        return;
    log_info("client went away; its bank call goes on and will settle", "txn=%s user=%s", p->txn_id,
             p->user);
    struct evhttp_request *req = p->req;
    if (p->watch != NULL)
        event_free(p->watch);
    p->watch = NULL;
    p->req = NULL;
    p->conn = NULL;
    /* evhttp detached a request awaiting our reply from its dead connection: it is ours. */
    if (req != NULL && evhttp_request_get_connection(req) == NULL)
        evhttp_request_free(req);
}

/* evhttp 2.1 stops reading a connection while its request awaits our reply, so it never
 * notices the client leaving. We watch the socket ourselves: EOF or an error means the client
 * is gone, and we free the connection (and with it the request) instead of answering later. */
static void api_client_watch(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct api_pending *p = arg;
    assert(p->kind != PENDING_FREE && p->conn != NULL);
    char byte;
    ssize_t n = recv(fd, &byte, 1, MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        event_add(p->watch, NULL);
        return;
    }
    if (n > 0)
        return; /* a pipelined request: stop watching, evhttp reads it later */
    log_info("client went away; its bank call goes on and will settle", "txn=%s user=%s", p->txn_id,
             p->user);
    struct evhttp_connection *conn = p->conn;
    evhttp_connection_set_closecb(conn, NULL, NULL);
    p->req = NULL;
    p->conn = NULL;
    evhttp_connection_free(conn); /* frees the request still queued on it */
}

static void api_watch_start(struct api_pending *p)
{
    struct bufferevent *bev = evhttp_connection_get_bufferevent(p->conn);
    evutil_socket_t fd = bev != NULL ? bufferevent_getfd(bev) : -1;
    if (fd < 0)
        return;
    p->watch = event_new(p->ctx->base, fd, EV_READ, api_client_watch, p);
    if (p->watch != NULL)
        event_add(p->watch, NULL);
}

static struct api_pending *api_pending_take(struct wallet_ctx *ctx, const struct api_call *c,
                                            enum pending_kind kind)
{
    if (ctx->pending_count >= WALLET_PENDING_MAX)
        return NULL;
    for (size_t i = 0; i < WALLET_PENDING_MAX; i++) {
        struct api_pending *p = &ctx->pending[i];
        if (p->kind != PENDING_FREE)
            continue;
        memset(p, 0, sizeof *p);
        p->kind = kind;
        p->ctx = ctx;
        p->req = c->req;
        p->route = c->route;
        p->start_us = c->start_us;
        p->conn = evhttp_request_get_connection(c->req);
        if (p->conn != NULL)
            evhttp_connection_set_closecb(p->conn, api_conn_closed, p);
        if (p->conn != NULL)
            api_watch_start(p);
        ctx->pending_count++;
        return p;
    }
    assert(!"pending_count says a slot is free");
    return NULL;
}

/* The call through which p's client is answered; detaches the close callback first. */
static struct api_call api_pending_call(struct api_pending *p)
{
    if (p->watch != NULL)
        event_free(p->watch);
    p->watch = NULL;
    if (p->conn != NULL)
        evhttp_connection_set_closecb(p->conn, NULL, NULL);
    struct api_call c = {.ctx = p->ctx, .req = p->req, .route = p->route, .start_us = p->start_us};
    p->req = NULL;
    p->conn = NULL;
    return c;
}

static void api_pending_release(struct api_pending *p)
{
    struct wallet_ctx *ctx = p->ctx;
    assert(p->kind != PENDING_FREE);
    assert(p->xfer == NULL);
    assert(p->req == NULL);
    assert(p->watch == NULL);
    if (p->idem_key[0] != '\0')
        idem_set_remove(&ctx->inflight_keys, p->idem_key);
    memset(p, 0, sizeof *p);
    assert(ctx->pending_count > 0);
    ctx->pending_count--;
}

bool api_drained(const struct wallet_ctx *ctx)
{
    return ctx->pending_count == 0;
}

void api_abort_pending(struct wallet_ctx *ctx)
{
    for (size_t i = 0; i < WALLET_PENDING_MAX; i++) {
        struct api_pending *p = &ctx->pending[i];
        if (p->kind == PENDING_FREE)
            continue;
        if (p->xfer != NULL)
            curlev_cancel(ctx->curl, p->xfer);
        p->xfer = NULL;
        struct api_call c = api_pending_call(p);
        struct ledger_txn t;
        if (p->kind == PENDING_PAYMENT && ledger_txn_get(&ctx->db, p->txn_id, &t) == 0) {
            api_reply_txn(&c, &t, 502, false); /* still pending: 202, the reconciler finishes */
        } else {
            api_error(&c, 503, "busy", "the wallet is shutting down; retry");
        }
        api_pending_release(p);
    }
}

/* ===================================================================== fields ======= */

static bool api_field_string(const struct api_call *c, const cJSON *o, const char *key,
                             bool required, size_t max_chars, const char **out)
{
    enum json_status st = json_get_string(o, key, required, max_chars, out);
    if (st == JSON_OK)
        return true;
    char msg[128];
    if (st == JSON_MISSING) {
        snprintf(msg, sizeof msg, "\"%s\" is required", key);
        api_error(c, 400, "missing_field", msg);
        return false;
    }
    snprintf(msg, sizeof msg, "\"%s\" must be a string of at most %zu characters", key, max_chars);
    api_error(c, 400, "invalid_field", msg);
    return false;
}

static bool api_field_user(const struct api_call *c, const cJSON *o, const char *key,
                           const char **out)
{
    if (!api_field_string(c, o, key, true, USER_HANDLE_CHARS_MAX, out))
        return false;
    if (ids_user_valid(*out))
        return true;
    char msg[128];
    snprintf(msg, sizeof msg, "\"%s\" must match [a-z0-9_]{1,32}", key);
    api_error(c, 400, "invalid_field", msg);
    return false;
}

static bool api_field_amount(const struct api_call *c, const cJSON *o, int64_t *out)
{
    enum json_status st = json_get_int64(o, "amount_minor", true, out);
    if (st == JSON_MISSING) {
        api_error(c, 400, "missing_field", "\"amount_minor\" is required");
        return false;
    }
    if (st == JSON_WRONG_TYPE) {
        api_error(c, 400, "invalid_field", "\"amount_minor\" must be a JSON integer of paise");
        return false;
    }
    if (st != JSON_OK || !money_amount_valid(*out)) {
        api_error(c, 422, "invalid_amount", "\"amount_minor\" must be between 1 and 10^12 paise");
        return false;
    }
    return true;
}

static bool api_field_currency(const struct api_call *c, const cJSON *o)
{
    const char *currency = NULL;
    if (!api_field_string(c, o, "currency", false, 64, &currency))
        return false;
    if (currency == NULL || strcmp(currency, "INR") == 0)
        return true;
    api_error(c, 422, "unsupported_currency", "only INR is supported");
    return false;
}

static bool api_field_mode(const struct api_call *c, const cJSON *o, enum txn_mode *out)
{
    const char *mode = NULL;
    if (!api_field_string(c, o, "mode", true, 16, &mode))
        return false;
    if (txn_mode_parse(mode, out) != 0 || *out == TXN_MODE_INTERNAL) {
        api_error(c, 400, "invalid_field", "\"mode\" must be sync, sync-blocking or async");
        return false;
    }
    return true;
}

/* The Idempotency-Key header: *key_out NULL when absent; false (after a 400) when invalid. */
static bool api_idem_header(const struct api_call *c, const char **key_out)
{
    *key_out = http_header(c->req, "Idempotency-Key");
    if (*key_out == NULL || ids_idem_key_valid(*key_out))
        return true;
    api_error(c, 400, "invalid_idempotency_key",
              "Idempotency-Key must be 1..64 printable ASCII characters without spaces");
    return false;
}

/* Hex SHA-256 of the route and the request's fields (not its bytes: key order and spacing
 * do not matter). */
static void api_fingerprint(const char *route, const char *a, const char *b, int64_t amount_minor,
                            const char *extra, char out[WALLET_FINGERPRINT_BYTES])
{
    char text[1024];
    int n = snprintf(text, sizeof text, "%s\n%s\n%s\n%lld\n%zu:%s", route, a, b,
                     (long long)amount_minor, extra != NULL ? strlen(extra) : (size_t)0,
                     extra != NULL ? extra : "");
    assert(n > 0 && (size_t)n < sizeof text);
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)text, (size_t)n, md);
    for (size_t i = 0; i < SHA256_DIGEST_LENGTH; i++) {
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    }
}

/* Replies when key was seen: 422 reused, 409 in flight, or a replay of the transaction's
 * current state. Returns false when the key is new (nothing was sent). */
static bool api_idem_seen(const struct api_call *c, const char *key, const char *fingerprint)
{
    if (key == NULL)
        return false;
    struct wallet_ctx *ctx = c->ctx;
    struct ledger_idem row;
    int rc = ledger_idem_get(&ctx->db, key, &row);
    if (rc == PL_ENOTFOUND)
        return false;
    if (rc != 0) {
        api_db_error(c, rc, NULL);
        return true;
    }
    if (strcmp(row.fingerprint, fingerprint) != 0) {
        api_error(c, 422, "idempotency_key_reused",
                  "this Idempotency-Key was used with another request");
        return true;
    }
    if (idem_set_has(&ctx->inflight_keys, key)) {
        api_error(c, 409, "idempotency_key_in_use",
                  "the first request with this Idempotency-Key is still in progress");
        return true;
    }
    struct ledger_txn t;
    rc = ledger_txn_get(&ctx->db, row.transaction_id, &t);
    if (rc != 0) {
        api_db_error(c, rc, NULL);
        return true;
    }
    log_info("idempotent replay", "txn=%s status=%s", t.id, txn_status_name(t.status));
    api_reply_txn(c, &t, row.status_code, true);
    return true;
}

/* Reads the JSON body; false after the reply http_read_json already sent. */
static bool api_body(const struct api_call *c, cJSON **out)
{
    if (http_read_json(c->req, out, NULL, NULL) == 0)
        return true;
    api_observe(c, 400);
    return false;
}

/* ===================================================================== payments ===== */

/* What a sync call's answer means for the transaction (docs/architecture.md). */
static void api_outcome_of(const struct bank_answer *a, struct settle_outcome *o,
                           int *unknown_status)
{
    memset(o, 0, sizeof *o);
    o->bank_payment_id = a->payment_id;
    o->reason = a->detail;
    o->event = "bank_answer";
    *unknown_status = 502;
    switch (a->verdict) {
    case BANK_SUCCEEDED:
        o->to = TXN_SUCCEEDED;
        o->by = SETTLED_RESPONSE;
        o->idem_status_code = 200;
        return;
    case BANK_FAILED:
        o->to = TXN_FAILED;
        o->by = SETTLED_RESPONSE;
        o->failure_reason = a->failure_reason[0] != '\0' ? a->failure_reason : "failed";
        o->idem_status_code = 402;
        return;
    case BANK_REFUSED:
        o->to = TXN_FAILED;
        o->by = SETTLED_RESPONSE;
        o->failure_reason = "bank_unreachable";
        o->event = "bank_unreachable";
        o->idem_status_code = 503;
        return;
    case BANK_TIMEOUT:
        o->to = TXN_UNKNOWN;
        o->event = "timeout";
        o->idem_status_code = 504;
        *unknown_status = 504;
        return;
    case BANK_PROCESSING:
    case BANK_NOT_FOUND:
    case BANK_MISMATCH:
    case BANK_ERROR:
        o->to = TXN_UNKNOWN;
        o->event = "bank_error";
        o->idem_status_code = 502;
        return;
    }
}

/* --unsafe-timeout-is-failure: an answer that is not definite settles failed at once (the
 * anti-pattern the lab breaks on purpose), reason in the caller's buffer. */
static void api_unsafe_failure(const struct ledger_txn *t, const struct bank_answer *a,
                               struct settle_outcome *o, char *reason, size_t cap)
{
    assert(o->to == TXN_UNKNOWN);
    bool timeout = a->verdict == BANK_TIMEOUT;
    snprintf(reason, cap,
             "UNSAFE --unsafe-timeout-is-failure: %s — settled failed without asking the bank",
             a->detail);
    o->to = TXN_FAILED;
    o->by = SETTLED_RESPONSE;
    o->failure_reason = timeout ? "bank_timeout" : "bank_error";
    o->reason = reason;
    log_warn("UNSAFE --unsafe-timeout-is-failure: no definite answer from the bank, settled "
             "failed (the bank may have moved the money)",
             "txn=%s trace=%s verdict=%s", t->id, t->traceparent, bank_verdict_name(a->verdict));
}

static void api_bank_count(struct wallet_ctx *ctx, const char *call, const char *outcome)
{
    char labels[96];
    snprintf(labels, sizeof labels, "call=\"%s\",outcome=\"%s\"", call, outcome);
    metrics_counter_add(ctx->metrics, "paylab_bank_calls_total", labels, 1);
}

/* Answers p's client (if still there) with the settled state, and frees p. */
static void api_payment_finish(struct api_pending *p, int rc, const struct ledger_txn *now,
                               int unknown_status)
{
    struct api_call c = api_pending_call(p);
    if (rc == 0) {
        api_reply_txn(&c, now, unknown_status, false);
    } else {
        cJSON *extra = cJSON_CreateObject();
        if (extra != NULL) {
            cJSON_AddStringToObject(extra, "id", p->txn_id);
            cJSON_AddStringToObject(extra, "status", "pending");
        }
        api_db_error(&c, rc, extra);
        cJSON_Delete(extra);
    }
    api_pending_release(p);
}

static void api_payment_done(const struct curlev_result *res, void *arg)
{
    struct api_pending *p = arg;
    assert(p->kind == PENDING_PAYMENT);
    struct wallet_ctx *ctx = p->ctx;
    p->xfer = NULL;
    struct ledger_txn t, now;
    int rc = ledger_txn_get(&ctx->db, p->txn_id, &t);
    if (rc != 0) {
        api_payment_finish(p, rc, NULL, 0);
        return;
    }
    struct bank_answer a;
    bank_classify(res, &t, &a);
    if (a.verdict == BANK_NOT_FOUND || a.verdict == BANK_PROCESSING) {
        snprintf(a.detail, sizeof a.detail,
                 "the bank answered HTTP %ld %s to a sync payment; the "
                 "reconciler will ask",
                 a.http_status, a.verdict == BANK_PROCESSING ? "processing" : "");
    }
    api_bank_count(ctx, "payment", bank_verdict_name(a.verdict));
    struct settle_outcome o;
    int unknown_status = 502;
    api_outcome_of(&a, &o, &unknown_status);
    char unsafe_reason[WALLET_REASON_BYTES_MAX + 96];
    if (o.to == TXN_UNKNOWN && ctx->cfg.unsafe_timeout_is_failure)
        api_unsafe_failure(&t, &a, &o, unsafe_reason, sizeof unsafe_reason);
    bool changed = false;
    rc = settle_apply(ctx, t.id, &o, &now, &changed);
    if (rc == 0 && !changed) {
        log_info("another path settled first; answering its outcome", "txn=%s status=%s", t.id,
                 txn_status_name(now.status));
    }
    api_payment_finish(p, rc, &now, unknown_status);
}

void api_payment_settled(struct wallet_ctx *ctx, const char *txn_id)
{
    assert(!ctx->db.in_txn); /* the state it answers is committed */
    for (size_t i = 0; i < WALLET_PENDING_MAX; i++) {
        struct api_pending *p = &ctx->pending[i];
        if (p->kind != PENDING_PAYMENT || strcmp(p->txn_id, txn_id) != 0)
            continue;
        /* Without a transfer in flight (sync-blocking) the call's own answer comes next. */
        if (p->xfer == NULL)
            return;
        struct ledger_txn now;
        int rc = ledger_txn_get(&ctx->db, txn_id, &now);
        if (rc != 0 || !txn_status_final(now.status))
            return; /* then the bank call's own answer settles and replies, as before */
        /* Its answer, if it ever came, would meet a final state and change nothing. */
        curlev_cancel(ctx->curl, p->xfer);
        p->xfer = NULL;
        api_bank_count(ctx, "payment", "cancelled");
        log_info("settled by another path while the bank call was in flight: answering now",
                 "txn=%s trace=%s status=%s by=%s", txn_id, now.traceparent,
                 txn_status_name(now.status), txn_settled_by_name(now.settled_by));
        api_payment_finish(p, 0, &now, 502);
        return;
    }
}

/* The bank call could not even be started: nothing left, so the transaction fails. */
static void api_payment_not_sent(struct api_pending *p)
{
    struct settle_outcome o = {
        .to = TXN_FAILED,
        .by = SETTLED_RESPONSE,
        .failure_reason = "not_sent",
        .event = "not_sent",
        .reason = "the wallet could not start the bank call; the request was never sent",
        .idem_status_code = 503,
    };
    struct ledger_txn now;
    bool changed = false;
    int rc = settle_apply(p->ctx, p->txn_id, &o, &now, &changed);
    api_payment_finish(p, rc, &now, 502);
}

static void api_payment_send(struct api_pending *p, const struct ledger_txn *t)
{
    struct wallet_ctx *ctx = p->ctx;
    struct bank_call call;
    int rc = bank_payment_call(ctx, t, &call);
    if (rc == 0 && t->mode == TXN_MODE_SYNC_BLOCKING) {
        log_warn("sync-blocking: curl_easy_perform ON the event loop; every other request "
                 "of the wallet waits until the bank answers (the anti-pattern)",
                 "txn=%s trace=%s", t->id, t->traceparent);
        struct curlev_result res;
        rc = curlev_perform_blocking(&call.req, &res);
        bank_call_free(&call);
        if (rc == 0) {
            api_payment_done(&res, p); /* answers and frees p */
            curlev_result_free(&res);
            return;
        }
    } else if (rc == 0) {
        rc = curlev_start(ctx->curl, &call.req, api_payment_done, p, &p->xfer);
    }
    bank_call_free(&call);
    if (rc != 0) {
        log_error("could not start the bank call", "txn=%s rc=%d", t->id, rc);
        api_payment_not_sent(p);
    }
}

/* The second timeline line of a new payment: how it goes to the bank. */
static void api_payment_call_reason(const struct wallet_ctx *ctx, const struct ledger_txn *t,
                                    char *reason, size_t cap)
{
    if (t->mode == TXN_MODE_ASYNC) {
        snprintf(reason, cap,
                 "POST /v1/payments (mode async) stored in the outbox: sent after "
                 "this commit and re-sent unchanged until the bank takes it (deadline "
                 "expires_at_ms %lld); the outcome arrives by webhook",
                 (long long)t->expires_at_ms);
        return;
    }
    snprintf(reason, cap,
             "POST /v1/payments to the bank on a fresh connection%s "
             "(timeout %lld ms, deadline expires_at_ms %lld)",
             t->mode == TXN_MODE_SYNC_BLOCKING ? ", blocking the event loop" : "",
             (long long)ctx->cfg.bank_timeout_ms, (long long)t->expires_at_ms);
}

/* ONE commit: the transaction, its hold (withdrawal), its timeline, its key, its events and
 * (async) its outbox row. Under --id-seed, t's id is chosen here, in that same commit. */
static int api_payment_record(struct wallet_ctx *ctx, struct ledger_txn *t, const char *key,
                              const char *fingerprint)
{
    char amount[MONEY_FORMAT_BYTES_MAX], reason[WALLET_REASON_BYTES_MAX];
    money_format(t->amount_minor, amount, sizeof amount);
    int rc = db_begin(&ctx->db);
    if (rc != 0)
        return rc;
    if (ctx->cfg.id_seed != 0)
        rc = ledger_seeded_txn_id(&ctx->db, ctx->cfg.id_seed, t->id);
    if (rc == 0)
        rc = ledger_txn_insert(&ctx->db, t);
    if (rc == 0 && t->kind == TXN_KIND_WITHDRAWAL) {
        char wallet[WALLET_ACCOUNT_ID_BYTES_MAX];
        ledger_wallet_account(t->user, wallet, sizeof wallet);
        rc = ledger_post(&ctx->db, t->id, wallet, LEDGER_ACCOUNT_PAYOUTS, t->amount_minor,
                         t->created_at_ms);
    }
    snprintf(reason, sizeof reason, "%s of %s %s %s requested (%s)%s",
             t->kind == TXN_KIND_TOPUP ? "top-up" : "withdrawal", amount,
             t->kind == TXN_KIND_TOPUP ? "from" : "to", t->counterparty, txn_mode_name(t->mode),
             t->kind == TXN_KIND_TOPUP ? "" : "; the amount is held in payouts:in_flight");
    if (rc == 0)
        rc = ledger_log(&ctx->db, t->id, t->created_at_ms, "created", t->status, reason);
    api_payment_call_reason(ctx, t, reason, sizeof reason);
    const char *event = t->mode == TXN_MODE_ASYNC ? "outbox" : "bank_call";
    if (rc == 0)
        rc = ledger_log(&ctx->db, t->id, t->created_at_ms, event, t->status, reason);
    if (rc == 0 && key != NULL)
        rc = ledger_idem_insert(&ctx->db, key, fingerprint, t->id, 202, t->created_at_ms);
    if (rc == 0 && t->mode == TXN_MODE_ASYNC)
        rc = outbox_insert(ctx, t, t->created_at_ms);
    if (rc == 0)
        rc = events_record(ctx, t, t->user, t->kind == TXN_KIND_WITHDRAWAL, t->created_at_ms);
    if (rc != 0) {
        db_rollback(&ctx->db);
        return rc;
    }
    rc = db_commit(&ctx->db);
    if (rc == 0)
        events_kick(ctx);
    return rc;
}

/* Fills t from the validated body; false after an error reply. */
static bool api_payment_parse(const struct api_call *c, const cJSON *o, enum txn_kind kind,
                              struct ledger_txn *t)
{
    const char *user = NULL;
    memset(t, 0, sizeof *t);
    t->kind = kind;
    if (!api_field_user(c, o, "user", &user))
        return false;
    if (!api_field_amount(c, o, &t->amount_minor))
        return false;
    if (!api_field_mode(c, o, &t->mode))
        return false;
    if (!api_field_currency(c, o))
        return false;
    struct ledger_user u;
    int rc = ledger_user_get(&c->ctx->db, user, &u);
    if (rc == PL_ENOTFOUND) {
        api_error(c, 404, "unknown_user", "no such user");
        return false;
    }
    if (rc != 0) {
        api_db_error(c, rc, NULL);
        return false;
    }
    pl_strlcpy(t->user, u.user, sizeof t->user);
    pl_strlcpy(t->counterparty, u.bank_account, sizeof t->counterparty);
    return true;
}

/* A new transaction's traceparent: a child of the request's `traceparent` header when that
 * is a valid W3C one (the caller's trace goes on), else a fresh trace. */
static int api_traceparent(const struct api_call *c, char out[TRACEPARENT_BYTES])
{
    const char *parent = c->req != NULL ? http_header(c->req, "traceparent") : NULL;
    if (parent != NULL && ids_traceparent_valid(parent))
        return ids_traceparent_child(parent, out);
    return ids_traceparent_new(out);
}

/* The fields every new top-up or withdrawal gets: id, traceparent, times, deadline. */
static int api_payment_init(const struct api_call *c, struct ledger_txn *t)
{
    const struct wallet_ctx *ctx = c->ctx;
    int64_t now_ms = pl_now_ms();
    t->status = TXN_PENDING;
    t->created_at_ms = now_ms;
    t->updated_at_ms = now_ms;
    t->expires_at_ms = now_ms + (t->mode == TXN_MODE_ASYNC ? ctx->cfg.payment_ttl_async_ms
                                                           : ctx->cfg.payment_ttl_sync_ms);
    int rc = ids_new("wtx_", t->id, sizeof t->id);
    if (rc == 0)
        rc = api_traceparent(c, t->traceparent);
    return rc;
}

/* Async: ONE commit (transaction, hold, key, events, outbox row), then 202 at once; the
 * outbox sends the request after the commit. */
static void api_payment_async(const struct api_call *c, struct ledger_txn *t, const char *key,
                              const char *fingerprint)
{
    struct wallet_ctx *ctx = c->ctx;
    int rc = api_payment_init(c, t);
    if (rc == 0)
        rc = api_payment_record(ctx, t, key, fingerprint);
    if (rc == LEDGER_EFUNDS) {
        api_error(c, 422, "insufficient_funds", "the wallet balance is too low");
        return;
    }
    if (rc != 0) {
        api_db_error(c, rc, NULL);
        return;
    }
    log_info("payment requested", "txn=%s trace=%s kind=%s mode=async amount_minor=%lld user=%s",
             t->id, t->traceparent, txn_kind_name(t->kind), (long long)t->amount_minor, t->user);
    outbox_kick(ctx);
    api_reply_txn(c, t, 0, false);
}

/* Records t and calls the bank; answers later (or at once on a refusal). */
static void api_payment_begin(const struct api_call *c, struct ledger_txn *t, const char *key)
{
    struct wallet_ctx *ctx = c->ctx;
    char fingerprint[WALLET_FINGERPRINT_BYTES];
    api_fingerprint(c->route, t->user, txn_mode_name(t->mode), t->amount_minor, "INR", fingerprint);
    if (api_idem_seen(c, key, fingerprint))
        return;
    if (t->mode == TXN_MODE_ASYNC) {
        api_payment_async(c, t, key, fingerprint);
        return;
    }
    struct api_pending *p = api_pending_take(ctx, c, PENDING_PAYMENT);
    if (p == NULL) {
        api_error(c, 429, "overloaded", "too many requests in flight; retry in a second");
        return;
    }
    int rc = api_payment_init(c, t);
    if (rc == 0)
        rc = api_payment_record(ctx, t, key, fingerprint);
    if (rc != 0) {
        struct api_call held = api_pending_call(p);
        if (rc == LEDGER_EFUNDS) {
            api_error(&held, 422, "insufficient_funds", "the wallet balance is too low");
        } else {
            api_db_error(&held, rc, NULL);
        }
        api_pending_release(p);
        return;
    }
    pl_strlcpy(p->txn_id, t->id, sizeof p->txn_id);
    pl_strlcpy(p->user, t->user, sizeof p->user);
    if (key != NULL) {
        pl_strlcpy(p->idem_key, key, sizeof p->idem_key);
        idem_set_add(&ctx->inflight_keys, key);
    }
    log_info("payment requested", "txn=%s trace=%s kind=%s mode=%s amount_minor=%lld user=%s",
             t->id, t->traceparent, txn_kind_name(t->kind), txn_mode_name(t->mode),
             (long long)t->amount_minor, t->user);
    api_payment_send(p, t);
}

static void api_payment(const struct api_call *c, enum txn_kind kind)
{
    if (c->ctx->draining) {
        api_error(c, 503, "busy", "the wallet is shutting down; retry");
        return;
    }
    const char *key = NULL;
    if (!api_idem_header(c, &key))
        return;
    cJSON *o = NULL;
    if (!api_body(c, &o))
        return;
    struct ledger_txn t;
    if (api_payment_parse(c, o, kind, &t))
        api_payment_begin(c, &t, key);
    cJSON_Delete(o);
}

/* ===================================================================== users ======== */

static bool api_bank_account_valid(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > WALLET_BANK_ACCOUNT_CHARS_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        bool ok = (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-';
        if (!ok)
            return false;
    }
    return true;
}

/* "HDFC-" + the handle uppercased, '_' → '-' (a handle is [a-z0-9_]{1,32}). */
static void api_default_bank_account(const char *user, char *out, size_t cap)
{
    int n = snprintf(out, cap, "HDFC-%s", user);
    assert(n > 0 && (size_t)n < cap);
    for (char *p = out; *p != '\0'; p++) {
        if (*p >= 'a' && *p <= 'z')
            *p = (char)(*p - 'a' + 'A');
        if (*p == '_')
            *p = '-';
    }
}

static cJSON *api_user_json(struct wallet_ctx *ctx, const struct ledger_user *u)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        return NULL;
    cJSON_AddStringToObject(o, "user", u->user);
    json_add_string_or_null(o, "phone", u->phone, u->has_phone);
    cJSON_AddStringToObject(o, "bank_account", u->bank_account);
    cJSON_AddNumberToObject(o, "balance_minor", (double)u->balance_minor);
    cJSON_AddStringToObject(o, "epoch", ctx->epoch);
    int64_t head = 0;
    if (events_head(&ctx->db, u->user, &head) != 0) {
        cJSON_Delete(o);
        return NULL;
    }
    cJSON_AddNumberToObject(o, "head_seq", (double)head);
    cJSON_AddNumberToObject(o, "created_at_ms", (double)u->created_at_ms);
    return o;
}

/* Adds "ws_token" (and its expiry) for user to o. */
static int api_add_ws_token(struct wallet_ctx *ctx, const char *user, cJSON *o,
                            const char *token_key, const char *expiry_key)
{
    char token[SIGN_TOKEN_BYTES_MAX];
    int64_t expires_at = pl_now_ms() / 1000 + ctx->cfg.ws_token_ttl_s;
    int rc = sign_ws_token(ctx->token_secret, user, expires_at, token, sizeof token);
    if (rc < 0)
        return rc;
    cJSON_AddStringToObject(o, token_key, token);
    cJSON_AddNumberToObject(o, expiry_key, (double)expires_at);
    return 0;
}

static void api_user_finish_error(struct api_pending *p, int status, const char *code,
                                  const char *message)
{
    struct api_call c = api_pending_call(p);
    api_error(&c, status, code, message);
    api_pending_release(p);
}

/* The bank agreed: the user and its wallet account, in one commit. */
static void api_user_insert(struct api_pending *p)
{
    struct wallet_ctx *ctx = p->ctx;
    int rc = db_begin(&ctx->db);
    if (rc == 0) {
        rc = ledger_user_insert(&ctx->db, p->user, p->has_phone ? p->phone : NULL, p->bank_account,
                                pl_now_ms());
        if (rc != 0) {
            db_rollback(&ctx->db);
        } else {
            rc = db_commit(&ctx->db);
        }
    }
    struct api_call c = api_pending_call(p);
    struct ledger_user u;
    if (rc == 0)
        rc = ledger_user_get(&ctx->db, p->user, &u);
    if (rc == PL_ECONFLICT) {
        api_error(&c, 409, "user_exists", "this user already exists");
    } else if (rc != 0) {
        api_db_error(&c, rc, NULL);
    } else {
        log_info("user created", "user=%s bank_account=%s", u.user, u.bank_account);
        cJSON *o = cJSON_CreateObject();
        if (o != NULL) {
            cJSON_AddStringToObject(o, "user", u.user);
            json_add_string_or_null(o, "phone", u.phone, u.has_phone);
            cJSON_AddStringToObject(o, "bank_account", u.bank_account);
            cJSON_AddNumberToObject(o, "balance_minor", (double)u.balance_minor);
            api_add_ws_token(ctx, u.user, o, "ws_token", "ws_token_expires_at");
        }
        api_json(&c, 201, o);
        cJSON_Delete(o);
    }
    api_pending_release(p);
}

static void api_user_step(struct api_pending *p);

/* The bank named the owner of the account the user wants: only their own may be bound, or a
 * new wallet user could top up from someone else's account (the mandate would be ours). */
static void api_user_owner_checked(struct api_pending *p, const struct curlev_result *res)
{
    cJSON *o = json_parse_object(res->body, res->body_bytes);
    const char *owner = NULL;
    bool known = o != NULL && json_get_string(o, "owner", true, 64, &owner) == JSON_OK;
    bool mine = known && strcmp(owner, p->user) == 0;
    cJSON_Delete(o);
    if (!known) {
        api_user_finish_error(p, 502, "bank_error", "the bank's account answer was unreadable");
        return;
    }
    if (!mine) {
        log_warn("refused to bind another customer's bank account", "user=%s account=%s", p->user,
                 p->bank_account);
        api_user_finish_error(p, 403, "forbidden",
                              "that bank account belongs to another customer: a wallet user "
                              "can only use a bank account in their own name");
        return;
    }
    p->user_step = USER_STEP_MANDATE;
    api_user_step(p);
}

static void api_user_done(const struct curlev_result *res, void *arg)
{
    struct api_pending *p = arg;
    assert(p->kind == PENDING_USER);
    p->xfer = NULL;
    static const char *const calls[] = {"account", "account_owner", "mandate"};
    const char *call = calls[p->user_step];
    char outcome[32];
    snprintf(outcome, sizeof outcome, "http_%ld", res->http_status);
    bool answered = res->outcome == CURLEV_ANSWERED;
    api_bank_count(p->ctx, call,
                   answered ? outcome
                            : (res->outcome == CURLEV_REFUSED   ? "refused"
                               : res->outcome == CURLEV_TIMEOUT ? "timeout"
                                                                : "error"));
    if (res->outcome == CURLEV_REFUSED) {
        api_user_finish_error(p, 503, "bank_unreachable", "the bank refused the connection");
    } else if (res->outcome == CURLEV_TIMEOUT) {
        api_user_finish_error(p, 504, "bank_timeout", "the bank did not answer in time");
    } else if (!answered) {
        api_user_finish_error(p, 502, "bank_error", "the bank closed the connection");
    } else if (p->user_step == USER_STEP_OPEN &&
               (res->http_status == 201 || res->http_status == 409)) {
        /* opened in this user's name, or it existed already: then whose is it? */
        p->user_step = res->http_status == 201 ? USER_STEP_MANDATE : USER_STEP_OWNER;
        api_user_step(p);
    } else if (p->user_step == USER_STEP_OWNER && res->http_status == 200) {
        api_user_owner_checked(p, res);
    } else if (p->user_step == USER_STEP_OWNER && res->http_status == 404) {
        api_user_finish_error(p, 422, "unknown_bank_account", "the bank has no such account");
    } else if (p->user_step == USER_STEP_MANDATE &&
               (res->http_status == 200 || res->http_status == 201)) {
        api_user_insert(p);
    } else {
        log_warn("the bank refused a user-creation call", "user=%s call=%s http=%ld", p->user, call,
                 res->http_status);
        api_user_finish_error(p, 502, "bank_error", "the bank did not accept the request");
    }
}

static void api_user_step(struct api_pending *p)
{
    struct wallet_ctx *ctx = p->ctx;
    struct bank_call call;
    int rc = p->user_step == USER_STEP_OPEN
                 ? bank_account_call(ctx, p->bank_account, p->user, &call)
             : p->user_step == USER_STEP_OWNER ? bank_account_get_call(ctx, p->bank_account, &call)
                                               : bank_mandate_call(ctx, p->bank_account, &call);
    if (rc == 0)
        rc = curlev_start(ctx->curl, &call.req, api_user_done, p, &p->xfer);
    bank_call_free(&call);
    if (rc != 0) {
        log_error("could not start a bank call", "user=%s rc=%d", p->user, rc);
        api_user_finish_error(p, 500, "internal", "internal error");
    }
}

static void api_user_create(const struct api_call *c)
{
    cJSON *o = NULL;
    if (!api_body(c, &o))
        return;
    const char *user = NULL, *phone = NULL, *account = NULL;
    if (!api_field_user(c, o, "user", &user) ||
        !api_field_string(c, o, "phone", false, WALLET_PHONE_CHARS_MAX, &phone) ||
        !api_field_string(c, o, "bank_account", false, WALLET_BANK_ACCOUNT_CHARS_MAX, &account))
        goto done;
    if (account != NULL && !api_bank_account_valid(account)) {
        api_error(c, 400, "invalid_field", "\"bank_account\" must match [A-Z0-9-]{1,64}");
        goto done;
    }
    struct ledger_user u;
    int rc = ledger_user_get(&c->ctx->db, user, &u);
    if (rc != PL_ENOTFOUND) {
        if (rc == 0)
            api_error(c, 409, "user_exists", "this user already exists");
        if (rc != 0)
            api_db_error(c, rc, NULL);
        goto done;
    }
    struct api_pending *p = api_pending_take(c->ctx, c, PENDING_USER);
    if (p == NULL) {
        api_error(c, 429, "overloaded", "too many requests in flight; retry in a second");
        goto done;
    }
    pl_strlcpy(p->user, user, sizeof p->user);
    p->has_phone = phone != NULL;
    if (phone != NULL)
        pl_strlcpy(p->phone, phone, sizeof p->phone);
    if (account != NULL)
        pl_strlcpy(p->bank_account, account, sizeof p->bank_account);
    if (account == NULL)
        api_default_bank_account(user, p->bank_account, sizeof p->bank_account);
    /* a named account is not opened: its owner is checked, then the mandate recorded */
    p->user_step = account != NULL ? USER_STEP_OWNER : USER_STEP_OPEN;
    api_user_step(p);
done:
    cJSON_Delete(o);
}

static void api_user_get(const struct api_call *c, const char *user)
{
    struct ledger_user u;
    int rc = ledger_user_get(&c->ctx->db, user, &u);
    if (rc == PL_ENOTFOUND) {
        api_error(c, 404, "unknown_user", "no such user");
        return;
    }
    if (rc != 0) {
        api_db_error(c, rc, NULL);
        return;
    }
    cJSON *o = api_user_json(c->ctx, &u);
    api_json(c, 200, o);
    cJSON_Delete(o);
}

static void api_ws_token(const struct api_call *c, const char *user)
{
    struct ledger_user u;
    int rc = ledger_user_get(&c->ctx->db, user, &u);
    if (rc == PL_ENOTFOUND) {
        api_error(c, 404, "unknown_user", "no such user");
        return;
    }
    if (rc != 0) {
        api_db_error(c, rc, NULL);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    if (o != NULL && api_add_ws_token(c->ctx, user, o, "token", "expires_at") != 0) {
        cJSON_Delete(o);
        o = NULL;
    }
    api_json(c, 200, o);
    cJSON_Delete(o);
}

/* ===================================================================== transfers ==== */

/* ONE commit: the transfer, its posting, its timeline line, its key and both users' events. */
static int api_transfer_record(struct wallet_ctx *ctx, const struct ledger_txn *t, const char *key,
                               const char *fingerprint)
{
    char amount[MONEY_FORMAT_BYTES_MAX], reason[WALLET_REASON_BYTES_MAX];
    char from[WALLET_ACCOUNT_ID_BYTES_MAX], to[WALLET_ACCOUNT_ID_BYTES_MAX];
    money_format(t->amount_minor, amount, sizeof amount);
    ledger_wallet_account(t->user, from, sizeof from);
    ledger_wallet_account(t->counterparty, to, sizeof to);
    snprintf(reason, sizeof reason, "%s from %s to %s inside the wallet, one database transaction",
             amount, t->user, t->counterparty);
    int rc = db_begin(&ctx->db);
    if (rc != 0)
        return rc;
    rc = ledger_txn_insert(&ctx->db, t);
    if (rc == 0)
        rc = ledger_post(&ctx->db, t->id, from, to, t->amount_minor, t->created_at_ms);
    if (rc == 0)
        rc = ledger_log(&ctx->db, t->id, t->created_at_ms, "settled", t->status, reason);
    if (rc == 0 && key != NULL)
        rc = ledger_idem_insert(&ctx->db, key, fingerprint, t->id, 200, t->created_at_ms);
    if (rc == 0)
        rc = events_record(ctx, t, t->user, true, t->created_at_ms);
    if (rc == 0)
        rc = events_record(ctx, t, t->counterparty, true, t->created_at_ms);
    if (rc != 0) {
        db_rollback(&ctx->db);
        return rc;
    }
    rc = db_commit(&ctx->db);
    if (rc == 0)
        events_kick(ctx);
    return rc;
}

/* Fills t from the validated body (users checked to exist); false after an error reply. */
static bool api_transfer_parse(const struct api_call *c, const cJSON *o, struct ledger_txn *t)
{
    const char *from = NULL, *to = NULL, *note = NULL;
    memset(t, 0, sizeof *t);
    if (!api_field_user(c, o, "from", &from) || !api_field_user(c, o, "to", &to) ||
        !api_field_amount(c, o, &t->amount_minor) ||
        !api_field_string(c, o, "note", false, WALLET_NOTE_CHARS_MAX, &note) ||
        !api_field_currency(c, o))
        return false;
    if (strcmp(from, to) == 0) {
        api_error(c, 422, "same_account", "\"from\" and \"to\" are the same user");
        return false;
    }
    struct ledger_user u;
    for (int i = 0; i < 2; i++) {
        int rc = ledger_user_get(&c->ctx->db, i == 0 ? from : to, &u);
        if (rc == PL_ENOTFOUND) {
            api_error(c, 404, "unknown_user", i == 0 ? "no such user (from)" : "no such user (to)");
            return false;
        }
        if (rc != 0) {
            api_db_error(c, rc, NULL);
            return false;
        }
    }
    t->kind = TXN_KIND_P2P;
    t->mode = TXN_MODE_INTERNAL;
    t->status = TXN_SUCCEEDED;
    t->settled_by = SETTLED_RESPONSE;
    pl_strlcpy(t->user, from, sizeof t->user);
    pl_strlcpy(t->counterparty, to, sizeof t->counterparty);
    t->has_note = note != NULL;
    if (note != NULL)
        pl_strlcpy(t->note, note, sizeof t->note);
    return true;
}

static void api_transfer(const struct api_call *c)
{
    if (c->ctx->draining) {
        api_error(c, 503, "busy", "the wallet is shutting down; retry");
        return;
    }
    const char *key = NULL;
    if (!api_idem_header(c, &key))
        return;
    cJSON *o = NULL;
    if (!api_body(c, &o))
        return;
    struct ledger_txn t;
    if (!api_transfer_parse(c, o, &t))
        goto done;
    char fingerprint[WALLET_FINGERPRINT_BYTES];
    api_fingerprint(c->route, t.user, t.counterparty, t.amount_minor, t.has_note ? t.note : NULL,
                    fingerprint);
    if (api_idem_seen(c, key, fingerprint))
        goto done;
    t.created_at_ms = pl_now_ms();
    t.updated_at_ms = t.created_at_ms;
    int rc = ids_new("wtx_", t.id, sizeof t.id);
    if (rc == 0)
        rc = api_traceparent(c, t.traceparent);
    if (rc == 0)
        rc = api_transfer_record(c->ctx, &t, key, fingerprint);
    if (rc == LEDGER_EFUNDS) {
        api_error(c, 422, "insufficient_funds", "the wallet balance is too low");
    } else if (rc != 0) {
        api_db_error(c, rc, NULL);
    } else {
        log_info("transfer done", "txn=%s trace=%s from=%s to=%s amount_minor=%lld", t.id,
                 t.traceparent, t.user, t.counterparty, (long long)t.amount_minor);
        api_reply_txn(c, &t, 0, false);
    }
done:
    cJSON_Delete(o);
}

/* ===================================================================== reads ======== */

static void api_timeline_line(const struct ledger_log_line *line, void *arg)
{
    cJSON *item = cJSON_CreateObject();
    if (item == NULL)
        return;
    cJSON_AddNumberToObject(item, "at_ms", (double)line->at_ms);
    cJSON_AddStringToObject(item, "event", line->event);
    cJSON_AddStringToObject(item, "status", line->status);
    cJSON_AddStringToObject(item, "reason", line->reason);
    cJSON_AddItemToArray(arg, item);
}

static void api_txn_get(const struct api_call *c, const char *id)
{
    struct ledger_txn t;
    int rc = ids_valid("wtx_", id) ? ledger_txn_get(&c->ctx->db, id, &t) : PL_ENOTFOUND;
    if (rc == PL_ENOTFOUND) {
        api_error(c, 404, "unknown_transaction", "no such transaction");
        return;
    }
    if (rc != 0) {
        api_db_error(c, rc, NULL);
        return;
    }
    if (t.traceparent[0] != '\0')
        http_add_header(c->req, "traceparent", t.traceparent);
    cJSON *o = api_txn_json(c->ctx, &t, NULL);
    cJSON *timeline = o != NULL ? cJSON_AddArrayToObject(o, "timeline") : NULL;
    rc = timeline != NULL ? ledger_timeline(&c->ctx->db, id, api_timeline_line, timeline) : 0;
    if (rc != 0) {
        api_db_error(c, rc, NULL);
    } else {
        api_json(c, 200, o);
    }
    cJSON_Delete(o);
}

struct api_list {
    struct wallet_ctx *ctx;
    const char *user;
    cJSON *array;
};

static void api_list_txn(const struct ledger_txn *t, void *arg)
{
    struct api_list *l = arg;
    cJSON *item = api_txn_json(l->ctx, t, l->user);
    if (item != NULL)
        cJSON_AddItemToArray(l->array, item);
}

/* Parses the decimal query parameter key within [min, max] (dflt when absent); false when
 * it is not such a number. */
static bool api_query_int(struct evhttp_request *req, const char *key, int64_t dflt, int64_t min,
                          int64_t max, int64_t *out)
{
    char text[20];
    int rc = http_query_get(req, key, text, sizeof text);
    *out = dflt;
    if (rc == PL_ENOTFOUND)
        return true;
    if (rc != 0 || text[0] == '\0' || strlen(text) > 15)
        return false; /* < 10^15 < 2^53 */
    int64_t v = 0;
    for (const char *p = text; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return false;
        v = v * 10 + (*p - '0');
    }
    *out = v;
    return v >= min && v <= max;
}

/* Parses ?limit= (1..API_LIST_LIMIT_MAX, default API_LIST_LIMIT_DEFAULT); -1 when invalid. */
static int api_list_limit(struct evhttp_request *req)
{
    int64_t limit = 0;
    if (!api_query_int(req, "limit", API_LIST_LIMIT_DEFAULT, 1, API_LIST_LIMIT_MAX, &limit))
        return -1;
    return (int)limit;
}

static void api_user_txns(const struct api_call *c, const char *user)
{
    int limit = api_list_limit(c->req);
    if (limit < 0) {
        api_error(c, 400, "invalid_field", "limit must be an integer in 1..200");
        return;
    }
    struct ledger_user u;
    int rc = ledger_user_get(&c->ctx->db, user, &u);
    if (rc == PL_ENOTFOUND) {
        api_error(c, 404, "unknown_user", "no such user");
        return;
    }
    cJSON *o = rc == 0 ? cJSON_CreateObject() : NULL;
    struct api_list l = {.ctx = c->ctx, .user = user, .array = NULL};
    if (o != NULL) {
        cJSON_AddStringToObject(o, "user", user);
        l.array = cJSON_AddArrayToObject(o, "transactions");
    }
    if (rc == 0 && l.array != NULL)
        rc = ledger_user_txns(&c->ctx->db, user, limit, api_list_txn, &l);
    if (rc != 0) {
        api_db_error(c, rc, NULL);
    } else {
        api_json(c, 200, o);
    }
    cJSON_Delete(o);
}

static void api_users_item(const struct ledger_user_summary *u, void *arg)
{
    cJSON *item = cJSON_CreateObject();
    if (item == NULL)
        return;
    cJSON_AddStringToObject(item, "user", u->user);
    cJSON_AddStringToObject(item, "bank_account", u->bank_account);
    cJSON_AddNumberToObject(item, "balance_minor", (double)u->balance_minor);
    cJSON_AddNumberToObject(item, "head_seq", (double)u->head_seq);
    cJSON_AddItemToArray(arg, item);
}

/* GET /v1/users?limit=N: the first N users by handle with their balances and head seqs (the
 * dashboard's balance cards). */
static void api_users_list(const struct api_call *c)
{
    int64_t limit = 0;
    if (!api_query_int(c->req, "limit", API_USERS_LIMIT_DEFAULT, 1, API_USERS_LIMIT_MAX, &limit)) {
        api_error(c, 400, "invalid_field", "limit must be an integer in 1..500");
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON *users = o != NULL ? cJSON_AddArrayToObject(o, "users") : NULL;
    int rc = users != NULL ? ledger_users_list(&c->ctx->db, (int)limit, api_users_item, users) : 0;
    if (rc != 0) {
        api_db_error(c, rc, NULL);
    } else {
        api_json(c, 200, users != NULL ? o : NULL);
    }
    cJSON_Delete(o);
}

static void api_event_item(const char *payload, void *arg)
{
    cJSON *item = cJSON_CreateRaw(payload); /* stored exactly as published */
    if (item != NULL)
        cJSON_AddItemToArray(arg, item);
}

/* GET /v1/users/{user}/events?after=SEQ&limit=N: the user's events after SEQ, oldest first,
 * with the head seq and balance they lead to (one read: nothing writes in between). */
static void api_user_events(const struct api_call *c, const char *user)
{
    int64_t after = 0, limit = 0;
    if (!api_query_int(c->req, "after", 0, 0, (int64_t)1 << 53, &after) ||
        !api_query_int(c->req, "limit", EVENTS_LIST_LIMIT_DEFAULT, 1, EVENTS_LIST_LIMIT_MAX,
                       &limit)) {
        api_error(c, 400, "invalid_field", "after must be an integer >= 0 and limit in 1..500");
        return;
    }
    struct ledger_user u;
    int64_t head = 0;
    int rc = ledger_user_get(&c->ctx->db, user, &u);
    if (rc == PL_ENOTFOUND) {
        api_error(c, 404, "unknown_user", "no such user");
        return;
    }
    if (rc == 0)
        rc = events_head(&c->ctx->db, user, &head);
    cJSON *o = rc == 0 ? cJSON_CreateObject() : NULL;
    cJSON *events = NULL;
    if (o != NULL) {
        cJSON_AddStringToObject(o, "user", user);
        cJSON_AddStringToObject(o, "epoch", c->ctx->epoch);
        cJSON_AddNumberToObject(o, "head_seq", (double)head);
        cJSON_AddNumberToObject(o, "balance_minor", (double)u.balance_minor);
        events = cJSON_AddArrayToObject(o, "events");
    }
    if (rc == 0 && events != NULL)
        rc = events_list(&c->ctx->db, user, after, (int)limit, api_event_item, events);
    if (rc != 0) {
        api_db_error(c, rc, NULL);
    } else {
        api_json(c, 200, events != NULL ? o : NULL);
    }
    cJSON_Delete(o);
}

/* GET /healthz: alive, and which teaching switches are on ("unsafe", [] when none): the
 * dashboard shows a red banner while the list is not empty. */
static void api_healthz(const struct api_call *c)
{
    const struct wallet_config *cfg = &c->ctx->cfg;
    cJSON *o = cJSON_CreateObject();
    if (o != NULL) {
        cJSON_AddStringToObject(o, "status", "ok");
        cJSON_AddStringToObject(o, "service", "wallet");
        cJSON_AddStringToObject(o, "version", PAYLAB_VERSION);
    }
    cJSON *unsafe = o != NULL ? cJSON_AddArrayToObject(o, "unsafe") : NULL;
    if (unsafe != NULL) {
        if (cfg->unsafe_no_dedupe)
            cJSON_AddItemToArray(unsafe, cJSON_CreateString("no-dedupe"));
        if (cfg->unsafe_timeout_is_failure)
            cJSON_AddItemToArray(unsafe, cJSON_CreateString("timeout-is-failure"));
    }
    api_json(c, 200, unsafe != NULL ? o : NULL);
    cJSON_Delete(o);
}

static void api_status_gauge(const char *status, int64_t count, void *arg)
{
    char labels[64];
    snprintf(labels, sizeof labels, "status=\"%s\"", status);
    metrics_gauge_set(arg, "paylab_transactions", labels, (double)count);
}

static void api_metrics(const struct api_call *c)
{
    struct wallet_ctx *ctx = c->ctx;
    static const char *const statuses[] = {"pending", "unknown", "succeeded", "failed"};
    for (size_t i = 0; i < PL_ARRAY_LEN(statuses); i++)
        api_status_gauge(statuses[i], 0, ctx->metrics);
    ledger_status_counts(&ctx->db, api_status_gauge, ctx->metrics);
    metrics_gauge_set(ctx->metrics, "paylab_pending_requests", "", (double)ctx->pending_count);
    metrics_gauge_set(ctx->metrics, "paylab_reconciler_inflight", "", (double)ctx->recon_inflight);
    metrics_gauge_set(ctx->metrics, "paylab_outbox_depth", "", (double)outbox_depth(ctx));
    metrics_gauge_set(ctx->metrics, "paylab_outbox_inflight", "", (double)ctx->outbox_inflight);
    if (ctx->pub != NULL) {
        metrics_gauge_set(ctx->metrics, "paylab_zmq_messages_sent", "socket=\"pub\"",
                          (double)zbus_sent_count(ctx->pub));
        metrics_gauge_set(ctx->metrics, "paylab_zmq_messages_dropped", "socket=\"pub\"",
                          (double)zbus_dropped_count(ctx->pub));
    }
    if (ctx->router != NULL) {
        metrics_gauge_set(ctx->metrics, "paylab_zmq_messages_received", "socket=\"router\"",
                          (double)zbus_received_count(ctx->router));
    }
    struct evbuffer *out = evbuffer_new();
    if (out == NULL) {
        api_error(c, 500, "internal", "out of memory");
        return;
    }
    metrics_render(ctx->metrics, out);
    api_observe(c, 200);
    evhttp_add_header(evhttp_request_get_output_headers(c->req), "Content-Type",
                      "text/plain; version=0.0.4");
    evhttp_send_reply(c->req, 200, "OK", out);
    evbuffer_free(out);
}

/* ===================================================================== CORS ========= */

/* True when origin is one entry of the comma-separated list, byte for byte (browsers send
 * an origin serialised: lowercase scheme and host, no trailing slash). */
static bool api_origin_allowed(const char *list, const char *origin)
{
    size_t origin_bytes = strlen(origin);
    const char *p = list;
    /* Every pass consumes at least one byte of a list shorter than CONFIG_STR_BYTES_MAX. */
    for (size_t i = 0; i < CONFIG_STR_BYTES_MAX && *p != '\0'; i++) {
        p += strspn(p, ", ");
        size_t n = strcspn(p, ", ");
        if (n > 0 && n == origin_bytes && memcmp(p, origin, n) == 0)
            return true;
        p += n;
    }
    return false;
}

/* For an allowed Origin, adds the CORS headers to the response now, when the request
 * arrives: a reply deferred until the bank answers carries them too. True when allowed. */
static bool api_cors(const struct api_call *c)
{
    const char *origin = http_header(c->req, "Origin");
    if (origin == NULL || !api_origin_allowed(c->ctx->cfg.allowed_origin, origin))
        return false;
    http_add_header(c->req, "Access-Control-Allow-Origin", origin);
    http_add_header(c->req, "Vary", "Origin");
    http_add_header(c->req, "Access-Control-Expose-Headers", "Idempotent-Replayed, traceparent");
    return true;
}

/* OPTIONS on a /v1 path: a CORS preflight; 204 for an allowed origin, else 403. */
static void api_preflight(const struct api_call *c, bool allowed)
{
    if (!allowed) {
        api_error(c, 403, "forbidden", "this Origin is not in the wallet's --allowed-origin");
        return;
    }
    http_add_header(c->req, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    http_add_header(c->req, "Access-Control-Allow-Headers",
                    "Content-Type, Idempotency-Key, Authorization, traceparent");
    http_add_header(c->req, "Access-Control-Max-Age", "600");
    api_observe(c, 204);
    evhttp_send_reply(c->req, 204, "No Content", NULL);
}

/* ===================================================================== routing ====== */

/* Splits "/v1/users/<user><rest>": false unless the segment is a valid handle. */
static bool api_split_user(const char *path, char *user, size_t cap, const char **rest)
{
    static const char prefix[] = "/v1/users/";
    if (strncmp(path, prefix, sizeof prefix - 1) != 0)
        return false;
    const char *seg = path + sizeof prefix - 1;
    const char *end = strchr(seg, '/');
    size_t n = end != NULL ? (size_t)(end - seg) : strlen(seg);
    if (n == 0 || n >= cap)
        return false;
    memcpy(user, seg, n);
    user[n] = '\0';
    *rest = seg + n;
    return ids_user_valid(user);
}

static void api_wrong_method(const struct api_call *c, const char *allow)
{
    if (c->req != NULL)
        http_add_header(c->req, "Allow", allow);
    api_error(c, 405, "method_not_allowed", "method not allowed on this path");
}

/* Routes under /v1/users/{user}; false when the path is not one of them. */
/* The per-user endpoints: /v1/users/{user}<suffix>, one method each. */
static const struct {
    const char *suffix;
    const char *route; /* metrics label */
    enum evhttp_cmd_type method;
    const char *allow;
    void (*handler)(const struct api_call *c, const char *user);
} api_user_routes[] = {
    {"", "/v1/users/{user}", EVHTTP_REQ_GET, "GET", api_user_get},
    {"/ws-token", "/v1/users/{user}/ws-token", EVHTTP_REQ_POST, "POST", api_ws_token},
    {"/transactions", "/v1/users/{user}/transactions", EVHTTP_REQ_GET, "GET", api_user_txns},
    {"/events", "/v1/users/{user}/events", EVHTTP_REQ_GET, "GET", api_user_events},
};

static bool api_route_user(struct api_call *c, const char *path, enum evhttp_cmd_type m)
{
    char user[USER_HANDLE_CHARS_MAX + 1];
    const char *rest = NULL;
    if (!api_split_user(path, user, sizeof user, &rest))
        return false;
    for (size_t i = 0; i < PL_ARRAY_LEN(api_user_routes); i++) {
        if (strcmp(rest, api_user_routes[i].suffix) != 0)
            continue;
        c->route = api_user_routes[i].route;
        if (m == api_user_routes[i].method)
            api_user_routes[i].handler(c, user);
        else
            api_wrong_method(c, api_user_routes[i].allow);
        return true;
    }
    return false;
}

/* /v1/users: GET lists the users, POST creates one. */
static bool api_route_users(struct api_call *c, const char *path, enum evhttp_cmd_type m)
{
    if (strcmp(path, "/v1/users") != 0)
        return false;
    c->route = "/v1/users";
    if (m == EVHTTP_REQ_GET) {
        api_users_list(c);
    } else if (m == EVHTTP_REQ_POST) {
        api_user_create(c);
    } else {
        api_wrong_method(c, "GET, POST");
    }
    return true;
}

/* Exact paths, one method each. */
static bool api_route_exact(struct api_call *c, const char *path, enum evhttp_cmd_type m)
{
    static const struct {
        const char *path;
        enum evhttp_cmd_type method;
        int handler;
    } routes[] = {
        {"/v1/topups", EVHTTP_REQ_POST, 1},    {"/v1/withdrawals", EVHTTP_REQ_POST, 2},
        {"/v1/transfers", EVHTTP_REQ_POST, 3}, {"/healthz", EVHTTP_REQ_GET, 4},
        {"/metrics", EVHTTP_REQ_GET, 5},
    };
    for (size_t i = 0; i < PL_ARRAY_LEN(routes); i++) {
        if (strcmp(path, routes[i].path) != 0)
            continue;
        c->route = routes[i].path;
        if (m != routes[i].method) {
            api_wrong_method(c, routes[i].method == EVHTTP_REQ_GET ? "GET" : "POST");
            return true;
        }
        switch (routes[i].handler) {
        case 1:
            api_payment(c, TXN_KIND_TOPUP);
            break;
        case 2:
            api_payment(c, TXN_KIND_WITHDRAWAL);
            break;
        case 3:
            api_transfer(c);
            break;
        case 4:
            api_healthz(c);
            break;
        default:
            api_metrics(c);
            break;
        }
        return true;
    }
    return false;
}

void api_handle(struct evhttp_request *req, void *arg)
{
    struct wallet_ctx *ctx = arg;
    assert(!ctx->db.in_txn); /* never a transaction open across a return to the loop */
    struct api_call c = {.ctx = ctx, .req = req, .route = "other", .start_us = pl_now_us()};
    const char *path = http_path(req);
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    bool cors = api_cors(&c); /* before any reply, deferred ones included */
    if (path == NULL) {
        api_error(&c, 404, "not_found", "no such path");
    } else if (m == EVHTTP_REQ_OPTIONS &&
               (strcmp(path, "/v1") == 0 || strncmp(path, "/v1/", 4) == 0)) {
        c.route = "preflight";
        api_preflight(&c, cors);
    } else if (api_route_exact(&c, path, m) || api_route_users(&c, path, m) ||
               api_route_user(&c, path, m)) {
        /* answered, or held for a bank answer */
    } else if (strncmp(path, "/v1/transactions/", 17) == 0 && strchr(path + 17, '/') == NULL) {
        c.route = "/v1/transactions/{id}";
        if (m == EVHTTP_REQ_GET)
            api_txn_get(&c, path + 17);
        if (m != EVHTTP_REQ_GET)
            api_wrong_method(&c, "GET");
    } else if (strncmp(path, "/v1/users/", 10) == 0 && strchr(path + 10, '/') == NULL) {
        c.route = "/v1/users/{user}";
        api_error(&c, 404, "unknown_user", "no such user");
    } else {
        api_error(&c, 404, "not_found", "no such path");
    }
    assert(!ctx->db.in_txn);
}
