/* webhooks.c owns POST /v1/webhooks/bank: the Standard Webhooks check (docs/api.md) over the
 * raw body bytes exactly as received, the relay to the wallet over the DEALER (docs/realtime.md,
 * docs/contracts.md "The asynchronous path"), the table of relays waiting for their ack, and
 * the one reply each of them gets.
 *
 * A webhook goes: 405/503(draining)/415/413 on the request line, headers and length alone →
 * sign_webhook_verify over the raw bytes (401, nothing relayed) → 400 if the signed body is
 * not one JSON object → 429 if every relay slot is taken → the relay
 * [request_id][{"webhook_id","timestamp","signature","traceparent","received_at_us","body"}]
 * → held until the ack: applied/duplicate/conflict/ignored → 200 {"result":…}; retry → 503
 * + Retry-After; rejected → 401; no ack by --ack-timeout-ms → 503 (the bank retries). The
 * gateway answers 200 only on the wallet's word that it committed.
 *
 * Must not: relay, parse or log anything from a body whose signature is not verified yet;
 * answer 200 without an ack; answer a request whose connection is gone; block the loop.
 *
 * Invariants: a slot is in use exactly while its request waits; it then holds one watch
 * event (the socket's EOF and the ack deadline) and the connection's close callback, and
 * both are detached before the request is answered or dropped, so a request gets at most
 * one reply. A request id names one slot and one use of it (its generation), so a late ack
 * never answers a later relay that reused the slot. */
#include "gateway.h"

#include <assert.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "http.h"
#include "ids.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "pl.h"
#include "sign.h"

#define WEBHOOKS_ROUTE "/v1/webhooks/bank"
/* A webhook-id echoed into a log line is cut to this (it is the sender's text). */
#define WEBHOOKS_LOG_ID_BYTES_MAX 64
/* Longest ack result we know ("duplicate") with room to spare; longer is malformed. */
#define WEBHOOKS_RESULT_CHARS_MAX 16
#define WEBHOOKS_TXN_ID_CHARS_MAX 64
/* The request-id prefix: 4 random bytes in hex, so two runs of one gateway never share ids. */
#define WEBHOOKS_PREFIX_BYTES 9

/* One relay slot. Free when req == NULL. */
struct relay {
    struct gateway_ctx *ctx;
    struct evhttp_request *req;     /* the bank's request, waiting for our reply */
    struct evhttp_connection *conn; /* its connection (close callback set while in use) */
    struct event *watch;            /* EV_READ on the socket (EOF) + the ack deadline */
    int64_t deadline_ms;            /* pl_mono_ms() when the ack is too late */
    int64_t start_us;               /* arrival, for the latency histogram */
    uint32_t generation;            /* bumped at every release */
    char request_id[GATEWAY_REQUEST_ID_BYTES_MAX];
    char webhook_id[WEBHOOKS_LOG_ID_BYTES_MAX]; /* verified, for log lines */
};

struct webhooks {
    struct relay *relays; /* cfg.max_inflight slots */
    size_t *free_slots;   /* stack of free slot indices */
    size_t slots_count;   /* cfg.max_inflight */
    size_t free_count;    /* entries of free_slots */
    char prefix[WEBHOOKS_PREFIX_BYTES];
};

/* ===================================================================== table ========= */

int webhooks_new(struct gateway_ctx *ctx)
{
    assert(ctx->webhooks == NULL);
    assert(ctx->cfg.max_inflight >= 1 && ctx->cfg.max_inflight <= GATEWAY_INFLIGHT_MAX);
    size_t n = (size_t)ctx->cfg.max_inflight;
    struct webhooks *wh = calloc(1, sizeof *wh);
    if (wh == NULL)
        return PL_ENOMEM;
    ctx->webhooks = wh;
    wh->relays = calloc(n, sizeof *wh->relays);
    wh->free_slots = calloc(n, sizeof *wh->free_slots);
    if (wh->relays == NULL || wh->free_slots == NULL)
        return PL_ENOMEM;
    wh->slots_count = n;
    for (size_t i = 0; i < n; i++) {
        wh->relays[i].ctx = ctx;
        wh->free_slots[i] = n - 1 - i; /* slot 0 is taken first */
    }
    wh->free_count = n;
    unsigned char rnd[4];
    if (ids_random(rnd, sizeof rnd) != 0)
        return PL_EIO;
    snprintf(wh->prefix, sizeof wh->prefix, "%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3]);
    return PL_OK;
}

void webhooks_free(struct gateway_ctx *ctx)
{
    struct webhooks *wh = ctx->webhooks;
    if (wh == NULL)
        return;
    assert(wh->relays == NULL || wh->free_count == wh->slots_count);
    free(wh->relays);
    free(wh->free_slots);
    free(wh);
    ctx->webhooks = NULL;
}

size_t webhooks_in_flight(const struct gateway_ctx *ctx)
{
    const struct webhooks *wh = ctx->webhooks;
    return wh == NULL ? 0 : wh->slots_count - wh->free_count;
}

static size_t relay_index(const struct relay *r)
{
    const struct webhooks *wh = r->ctx->webhooks;
    assert(r >= wh->relays && r < wh->relays + wh->slots_count);
    return (size_t)(r - wh->relays);
}

/* Takes a free slot and names this use of it; NULL when all are in use. */
static struct relay *relay_alloc(struct gateway_ctx *ctx, struct evhttp_request *req,
                                 int64_t start_us)
{
    struct webhooks *wh = ctx->webhooks;
    if (wh->free_count == 0)
        return NULL;
    struct relay *r = &wh->relays[wh->free_slots[--wh->free_count]];
    assert(r->req == NULL);
    assert(r->watch == NULL);
    r->req = req;
    r->conn = evhttp_request_get_connection(req);
    r->start_us = start_us;
    r->deadline_ms = pl_mono_ms() + r->ctx->cfg.ack_timeout_ms;
    int n = snprintf(r->request_id, sizeof r->request_id, "%s.%zu.%lu", wh->prefix, relay_index(r),
                     (unsigned long)r->generation);
    assert(n > 0 && (size_t)n < sizeof r->request_id);
    return r;
}

/* Detaches the watch and the close callback and frees the slot. r->req is forgotten: the
 * caller has answered it, is about to, or the connection that owned it is gone. */
static void relay_release(struct relay *r)
{
    struct webhooks *wh = r->ctx->webhooks;
    assert(r->req != NULL);
    assert(wh->free_count < wh->slots_count);
    if (r->watch != NULL)
        event_free(r->watch);
    if (r->conn != NULL)
        evhttp_connection_set_closecb(r->conn, NULL, NULL);
    r->watch = NULL;
    r->req = NULL;
    r->conn = NULL;
    r->request_id[0] = '\0';
    r->webhook_id[0] = '\0';
    r->generation++;
    wh->free_slots[wh->free_count++] = relay_index(r);
}

/* The slot an ack's request id names, or NULL (*late: ours, but nobody waits any more). */
static struct relay *relay_find(struct webhooks *wh, const struct zbus_frame *id, bool *late)
{
    *late = false;
    char buf[GATEWAY_REQUEST_ID_BYTES_MAX];
    size_t prefix_bytes = strlen(wh->prefix);
    if (id->bytes >= sizeof buf || id->bytes <= prefix_bytes + 1)
        return NULL;
    memcpy(buf, id->data, id->bytes);
    buf[id->bytes] = '\0';
    if (memcmp(buf, wh->prefix, prefix_bytes) != 0 || buf[prefix_bytes] != '.')
        return NULL;
    size_t slot = 0;
    const char *p = buf + prefix_bytes + 1;
    for (; *p >= '0' && *p <= '9' && slot < wh->slots_count; p++)
        slot = slot * 10 + (size_t)(*p - '0');
    if (*p != '.' || slot >= wh->slots_count)
        return NULL;
    *late = true;
    struct relay *r = &wh->relays[slot];
    if (r->req == NULL || strcmp(r->request_id, buf) != 0)
        return NULL;
    *late = false;
    return r;
}

/* ===================================================================== replies ======= */

static void webhooks_count(struct gateway_ctx *ctx, const char *result)
{
    char labels[64];
    int n = snprintf(labels, sizeof labels, "result=\"%s\"", result);
    assert(n > 0 && (size_t)n < sizeof labels);
    metrics_counter_add(ctx->metrics, "paylab_gateway_webhooks_total", labels, 1);
}

/* One error reply; result labels paylab_gateway_webhooks_total. */
static void webhooks_error(struct gateway_ctx *ctx, struct evhttp_request *req, int64_t start_us,
                           int status, const char *code, const char *message, const char *result)
{
    if (status == 429 || status == 503)
        http_add_header(req, "Retry-After", GATEWAY_RETRY_AFTER_S);
    http_reply_error(req, status, code, message);
    api_observe(ctx, WEBHOOKS_ROUTE, status, start_us);
    webhooks_count(ctx, result);
}

/* 200 {"result":…[,"transaction_id":…]} for an ack saying the wallet committed. */
static void webhooks_ok(struct gateway_ctx *ctx, struct evhttp_request *req, int64_t start_us,
                        const char *result, const char *txn_id)
{
    cJSON *o = cJSON_CreateObject();
    bool ok = o != NULL && cJSON_AddStringToObject(o, "result", result) != NULL;
    if (ok && txn_id != NULL)
        ok = cJSON_AddStringToObject(o, "transaction_id", txn_id) != NULL;
    if (!ok) {
        /* The wallet committed; a 500 only makes the bank retry into a duplicate. */
        webhooks_error(ctx, req, start_us, 500, "internal", "out of memory", "internal");
    } else {
        http_reply_json(req, 200, o);
        api_observe(ctx, WEBHOOKS_ROUTE, 200, start_us);
        webhooks_count(ctx, result);
    }
    cJSON_Delete(o);
}

/* ===================================================================== holding ======= */

static void relay_watch_cb(evutil_socket_t fd, short what, void *arg);

/* Watches fd for EOF (fd < 0: the deadline alone) until r->deadline_ms. 0 or PL_ENOMEM. */
static int relay_watch(struct relay *r, evutil_socket_t fd)
{
    assert(r->watch == NULL);
    int64_t left_ms = r->deadline_ms - pl_mono_ms();
    if (left_ms < 0)
        left_ms = 0;
    struct timeval tv = {.tv_sec = (time_t)(left_ms / 1000),
                         .tv_usec = (suseconds_t)((left_ms % 1000) * 1000)};
    r->watch = event_new(r->ctx->base, fd, fd >= 0 ? EV_READ : 0, relay_watch_cb, r);
    if (r->watch == NULL || event_add(r->watch, &tv) != 0)
        return PL_ENOMEM;
    return PL_OK;
}

/* No ack in time: 503, the bank retries (the wallet may still apply this one; its retry is
 * then a duplicate). A later ack for this request id is dropped as late. */
static void relay_timeout(struct relay *r)
{
    struct gateway_ctx *ctx = r->ctx;
    log_warn("no ack from the wallet in time; 503, the bank retries",
             "webhook_id=%s request_id=%s ack_timeout_ms=%lld", r->webhook_id, r->request_id,
             (long long)ctx->cfg.ack_timeout_ms);
    metrics_counter_add(ctx->metrics, "paylab_gateway_ack_timeouts_total", "", 1);
    struct evhttp_request *req = r->req;
    int64_t start_us = r->start_us;
    relay_release(r);
    webhooks_error(ctx, req, start_us, 503, "wallet_unavailable",
                   "the wallet did not acknowledge the webhook in time; retry", "timeout");
}

/* The bank hung up while its request waited: drop it, never answer. Freeing the connection
 * frees the request queued on it. */
static void relay_client_gone(struct relay *r)
{
    struct gateway_ctx *ctx = r->ctx;
    log_info("the bank closed the connection while waiting; its webhook is not answered",
             "webhook_id=%s request_id=%s", r->webhook_id, r->request_id);
    webhooks_count(ctx, "client_gone");
    struct evhttp_connection *conn = r->conn;
    relay_release(r);
    if (conn != NULL)
        evhttp_connection_free(conn);
}

/* libevent 2.1's evhttp stops reading a connection while its request awaits our reply, so
 * its close callback does not fire when the client leaves. We watch the socket: readable with
 * nothing to read is EOF. Bytes waiting (a pipelined request) say nothing about leaving: then
 * only the deadline is watched. */
static void relay_watch_cb(evutil_socket_t fd, short what, void *arg)
{
    struct relay *r = arg;
    assert(r->req != NULL);
    if ((what & EV_TIMEOUT) != 0) {
        relay_timeout(r);
        return;
    }
    char byte = 0;
    ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    bool spurious = n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
    if (n > 0 || spurious) {
        event_free(r->watch);
        r->watch = NULL;
        if (relay_watch(r, spurious ? fd : -1) == 0)
            return;
        relay_timeout(r); /* no memory to keep waiting: answer the bank now */
        return;
    }
    relay_client_gone(r);
}

/* The connection closed for another reason (server shutdown, an evhttp error). A request
 * evhttp detached from its connection is ours to free; one still attached goes with it. */
static void relay_conn_closed(struct evhttp_connection *conn, void *arg)
{
    struct relay *r = arg;
    if (r->req == NULL || r->conn != conn)
        return;
    struct evhttp_request *req = r->req;
    log_info("the bank's connection closed while waiting", "webhook_id=%s request_id=%s",
             r->webhook_id, r->request_id);
    webhooks_count(r->ctx, "client_gone");
    r->conn = NULL; /* going away: no callback to detach */
    relay_release(r);
    if (evhttp_request_get_connection(req) == NULL)
        evhttp_request_free(req);
}

/* Starts watching r's connection. 0 or PL_ENOMEM. */
static int relay_hold(struct relay *r)
{
    struct bufferevent *bev = r->conn != NULL ? evhttp_connection_get_bufferevent(r->conn) : NULL;
    evutil_socket_t fd = bev != NULL ? bufferevent_getfd(bev) : -1;
    int rc = relay_watch(r, fd);
    if (rc != 0)
        return rc;
    if (r->conn != NULL)
        evhttp_connection_set_closecb(r->conn, relay_conn_closed, r);
    return PL_OK;
}

void webhooks_abort_all(struct gateway_ctx *ctx)
{
    struct webhooks *wh = ctx->webhooks;
    if (wh == NULL || wh->relays == NULL)
        return;
    for (size_t i = 0; i < wh->slots_count; i++) {
        struct relay *r = &wh->relays[i];
        if (r->req == NULL)
            continue;
        struct evhttp_request *req = r->req;
        int64_t start_us = r->start_us;
        relay_release(r);
        webhooks_error(ctx, req, start_us, 503, "busy", "the gateway is shutting down; retry",
                       "shutdown");
    }
}

/* ===================================================================== acks ========== */

/* Answers r from the ack's JSON and frees the slot. */
static void relay_answer(struct relay *r, const struct zbus_frame *body)
{
    struct gateway_ctx *ctx = r->ctx;
    struct evhttp_request *req = r->req;
    int64_t start_us = r->start_us;
    cJSON *o = json_parse_object(body->data, body->bytes);
    const char *result = NULL;
    const char *txn_id = NULL;
    if (o != NULL && json_get_string(o, "result", true, WEBHOOKS_RESULT_CHARS_MAX, &result) == 0)
        json_get_string(o, "transaction_id", false, WEBHOOKS_TXN_ID_CHARS_MAX, &txn_id);
    else
        result = NULL;
    log_info("webhook acked", "webhook_id=%s request_id=%s result=%s", r->webhook_id, r->request_id,
             result != NULL ? result : "-");
    relay_release(r);
    static const char *committed[] = {"applied", "duplicate", "conflict", "ignored"};
    bool done = false;
    for (size_t i = 0; i < PL_ARRAY_LEN(committed) && result != NULL && !done; i++) {
        done = strcmp(result, committed[i]) == 0;
    }
    if (done) {
        webhooks_ok(ctx, req, start_us, result, txn_id);
    } else if (result != NULL && strcmp(result, "retry") == 0) {
        webhooks_error(ctx, req, start_us, 503, "busy", "the wallet is busy; retry", "retry");
    } else if (result != NULL && strcmp(result, "rejected") == 0) {
        webhooks_error(ctx, req, start_us, 401, "unauthorized",
                       "the wallet could not verify the webhook signature", "rejected");
    } else {
        log_error("the wallet's ack is not one we know; 503", "bytes=%zu", body->bytes);
        webhooks_error(ctx, req, start_us, 503, "wallet_error",
                       "the wallet's answer was not understood; retry", "bad_ack");
    }
    cJSON_Delete(o);
}

static void webhooks_ack_dropped(struct gateway_ctx *ctx, const char *reason)
{
    char labels[64];
    int n = snprintf(labels, sizeof labels, "reason=\"%s\"", reason);
    assert(n > 0 && (size_t)n < sizeof labels);
    metrics_counter_add(ctx->metrics, "paylab_gateway_acks_dropped_total", labels, 1);
}

void webhooks_on_ack(const struct zbus_frame *frames, size_t frames_count, void *arg)
{
    struct gateway_ctx *ctx = arg;
    if (frames_count == 3 && frames[0].bytes == 0) {
        frames++; /* an empty delimiter frame (REQ-style ROUTER peers add one) */
        frames_count--;
    }
    if (frames_count != 2) {
        log_warn("ack dropped: not [request_id][json]", "frames=%zu", frames_count);
        webhooks_ack_dropped(ctx, "malformed");
        return;
    }
    bool late = false;
    struct relay *r = relay_find(ctx->webhooks, &frames[0], &late);
    if (r == NULL) {
        log_info("ack dropped: nobody waits for it (timed out or client gone)", "late=%s",
                 late ? "true" : "false");
        webhooks_ack_dropped(ctx, late ? "late" : "unknown");
        return;
    }
    relay_answer(r, &frames[1]);
}

/* ===================================================================== intake ======== */

/* True for "application/json", any case, optionally followed by parameters. (http.c has the
 * same test, static; http_read_json would parse the body before we verified it.) */
/* The sender's text made safe for a logfmt value: printable, no quotes or spaces, cut. */
static void webhooks_log_copy(const char *in, char *out, size_t cap)
{
    size_t i = 0;
    for (; in != NULL && in[i] != '\0' && i + 1 < cap; i++) {
        char c = in[i];
        out[i] = (c > ' ' && c < 0x7f && c != '"' && c != '\\') ? c : '?';
    }
    out[i] = '\0';
    if (i == 0 && cap > 1)
        pl_strlcpy(out, "-", cap);
}

/* Why a signature check failed, for the log line only (the reply is the same 401). */
static const char *webhooks_refusal(const char *id, const char *ts, const char *sig)
{
    if (id == NULL || ts == NULL || sig == NULL)
        return "missing webhook-id, webhook-timestamp or webhook-signature";
    int64_t t = 0;
    size_t len = strlen(ts);
    for (size_t i = 0; i < len && len <= 12; i++) {
        if (ts[i] < '0' || ts[i] > '9')
            return "malformed webhook-timestamp";
        t = t * 10 + (ts[i] - '0');
    }
    int64_t now_s = pl_now_ms() / 1000;
    if (len == 0 || len > 12 || t < now_s - SIGN_WEBHOOK_TOLERANCE_S ||
        t > now_s + SIGN_WEBHOOK_TOLERANCE_S)
        return "webhook-timestamp outside the 300 s window (replay or clock skew)";
    return "no signature matches (wrong secret or altered body)";
}

/* Verifies the three headers over the raw body; on failure answers 401. */
static bool webhooks_verify(struct gateway_ctx *ctx, struct evhttp_request *req, const char *body,
                            size_t body_bytes, int64_t start_us)
{
    const char *id = http_header(req, "webhook-id");
    const char *ts = http_header(req, "webhook-timestamp");
    const char *sig = http_header(req, "webhook-signature");
    int rc =
        sign_webhook_verify(ctx->webhook_secret, id, ts, sig, body, body_bytes, pl_now_ms() / 1000);
    if (rc == 0)
        return true;
    char id_log[WEBHOOKS_LOG_ID_BYTES_MAX];
    webhooks_log_copy(id, id_log, sizeof id_log);
    log_warn("webhook refused: nothing relayed", "status=401 webhook_id=%s reason=\"%s\"", id_log,
             webhooks_refusal(id, ts, sig));
    webhooks_error(ctx, req, start_us, 401, "unauthorized",
                   "missing or invalid webhook signature or timestamp", "unauthorized");
    return false;
}

/* The checks that need no body bytes: method, draining, Content-Type, length. Returns the
 * raw body (NULL when empty) in *body, or false after answering. */
static bool webhooks_precheck(struct gateway_ctx *ctx, struct evhttp_request *req, int64_t start_us,
                              const char **body, size_t *body_bytes)
{
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        http_add_header(req, "Allow", "POST");
        webhooks_error(ctx, req, start_us, 405, "method_not_allowed", "use POST",
                       "method_not_allowed");
        return false;
    }
    if (ctx->draining) {
        webhooks_error(ctx, req, start_us, 503, "busy", "the gateway is shutting down; retry",
                       "shutdown");
        return false;
    }
    if (!http_is_json_type(http_header(req, "Content-Type"))) {
        webhooks_error(ctx, req, start_us, 415, "unsupported_media_type",
                       "the body must be JSON (Content-Type: application/json)", "bad_request");
        return false;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    if (len > HTTP_BODY_BYTES_MAX) {
        webhooks_error(ctx, req, start_us, 413, "body_too_large", "the body is larger than 64 KiB",
                       "bad_request");
        return false;
    }
    *body = len > 0 ? (const char *)evbuffer_pullup(in, (ev_ssize_t)len) : NULL;
    *body_bytes = len;
    return true;
}

/* ===================================================================== relaying ====== */

/* The relay's JSON (docs/contracts.md) in a new string, caller free()s; NULL: no memory. */
static char *webhooks_relay_json(struct evhttp_request *req, const char *body, size_t body_bytes,
                                 int64_t received_at_us)
{
    const char *tp = http_header(req, "traceparent");
    char *body_copy = malloc(body_bytes + 1);
    cJSON *o = cJSON_CreateObject();
    bool ok = body_copy != NULL && o != NULL;
    if (ok) {
        memcpy(body_copy, body, body_bytes);
        body_copy[body_bytes] = '\0';
    }
    ok = ok && cJSON_AddStringToObject(o, "webhook_id", http_header(req, "webhook-id")) != NULL;
    ok = ok && cJSON_AddStringToObject(o, "timestamp", http_header(req, "webhook-timestamp"));
    ok = ok && cJSON_AddStringToObject(o, "signature", http_header(req, "webhook-signature"));
    if (ok && tp != NULL && ids_traceparent_valid(tp))
        ok = cJSON_AddStringToObject(o, "traceparent", tp) != NULL;
    else if (ok)
        ok = cJSON_AddNullToObject(o, "traceparent") != NULL;
    ok = ok && json_add_int64(o, "received_at_us", received_at_us) != NULL;
    ok = ok && cJSON_AddStringToObject(o, "body", body_copy) != NULL;
    char *text = ok ? json_print(o) : NULL;
    cJSON_Delete(o);
    free(body_copy);
    return text;
}

/* Sends r's relay. 0, or answers r's request (503/413) and frees the slot. */
static int relay_send(struct relay *r, const char *json)
{
    struct gateway_ctx *ctx = r->ctx;
    size_t json_bytes = strlen(json);
    struct zbus_frame frames[2] = {{r->request_id, strlen(r->request_id)}, {json, json_bytes}};
    int rc = json_bytes > ZBUS_FRAME_BYTES_MAX ? PL_ERANGE : zbus_send(ctx->dealer, frames, 2);
    if (rc == 0)
        return 0;
    struct evhttp_request *req = r->req;
    int64_t start_us = r->start_us;
    log_warn("relay not sent", "webhook_id=%s request_id=%s rc=%d", r->webhook_id, r->request_id,
             rc);
    relay_release(r);
    if (rc == PL_ERANGE) {
        webhooks_error(ctx, req, start_us, 413, "body_too_large",
                       "the escaped body is too large for the bus", "bad_request");
    } else {
        webhooks_error(ctx, req, start_us, 503, "wallet_unavailable",
                       "the relay queue to the wallet is full; retry", "unavailable");
    }
    return rc;
}

/* Verified body → relay slot, relay, hold. Answers at once on every failure. */
static void webhooks_relay(struct gateway_ctx *ctx, struct evhttp_request *req, const char *body,
                           size_t body_bytes, int64_t start_us)
{
    struct relay *r = relay_alloc(ctx, req, start_us);
    if (r == NULL) {
        log_warn("webhook shed: every relay slot is waiting for an ack", "max_inflight=%lld",
                 (long long)ctx->cfg.max_inflight);
        webhooks_error(ctx, req, start_us, 429, "overloaded",
                       "too many webhooks waiting for the wallet; retry", "overloaded");
        return;
    }
    webhooks_log_copy(http_header(req, "webhook-id"), r->webhook_id, sizeof r->webhook_id);
    char *json = webhooks_relay_json(req, body, body_bytes, start_us);
    if (json == NULL || relay_hold(r) != 0) {
        free(json);
        relay_release(r);
        webhooks_error(ctx, req, start_us, 500, "internal", "out of memory", "internal");
        return;
    }
    if (relay_send(r, json) == 0) {
        log_debug("webhook relayed", "webhook_id=%s request_id=%s bytes=%zu", r->webhook_id,
                  r->request_id, body_bytes);
    }
    free(json);
}

void webhooks_handle(struct gateway_ctx *ctx, struct evhttp_request *req, int64_t start_us)
{
    const char *body = NULL;
    size_t body_bytes = 0;
    if (!webhooks_precheck(ctx, req, start_us, &body, &body_bytes))
        return;
    if (!webhooks_verify(ctx, req, body, body_bytes, start_us))
        return;
    /* Signed by the bank from here on. A body that is not one JSON object (or carries a NUL
     * byte, which a JSON string on the bus cannot hold) is refused rather than relayed. */
    cJSON *o = body != NULL ? json_parse_object(body, body_bytes) : NULL;
    bool json_ok = o != NULL && memchr(body, '\0', body_bytes) == NULL;
    cJSON_Delete(o);
    if (!json_ok) {
        webhooks_error(ctx, req, start_us, 400, "malformed_json",
                       "the body must be one JSON object, nested at most 16 deep", "bad_request");
        return;
    }
    webhooks_relay(ctx, req, body, body_bytes, start_us);
}
