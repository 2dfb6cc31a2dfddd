/* api.c owns the bank's HTTP edge: routing, authentication, validation of every input,
 * fault injection at the door, the held requests of sync payments, and every reply.
 * Must not: touch SQL (payments.c does), decide a fault other than through faults.c, or
 * answer a request twice — or at all once its connection is gone.
 * Invariants:
 *  - every request ends in exactly one reply, or in a hold (struct bank_hold) that is freed
 *    exactly once: by its reply, or by the connection's close callback (then never answered);
 *  - input reaching payments.c has been validated here, so payments.c may assert on it;
 *  - nothing is changed by a request answered 4xx, or by an injected error. */
#include "bank.h"

#include <assert.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "http.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "money.h"
#include "outbox.h"
#include "pl.h"

#define API_MESSAGE_BYTES_MAX 160
#define API_TAIL_BYTES_MAX 80
#define API_ORIGIN_BYTES_MAX 256
#define API_CURRENCY_CHARS_MAX 8
#define API_MODE_CHARS_MAX 16

enum api_route {
    API_NONE = 0,
    API_HEALTHZ,
    API_METRICS,
    API_ACCOUNTS,
    API_ACCOUNT,
    API_MANDATES,
    API_PAYMENTS,
    API_PAYMENT_VOID,
    API_PAYMENT,
    API_ADMIN_FAULTS,
    API_ADMIN_WEBHOOKS,
    API_ADMIN_REDELIVER,
};

/* Metrics labels, indexed by enum api_route. */
static const char *const api_route_labels[] = {
    "other",         "/healthz",          "/metrics",
    "/v1/accounts",  "/v1/accounts/{id}", "/v1/mandates",
    "/v1/payments",  "/v1/payments/void", "/v1/payments/{id}",
    "/admin/faults", "/admin/webhooks",   "/admin/webhooks/redeliver",
};
_Static_assert(PL_ARRAY_LEN(api_route_labels) == API_ADMIN_REDELIVER + 1, "one label per route");

/* One request on its way through the handlers. */
struct api_call {
    struct bank_ctx *ctx;
    struct evhttp_request *req;
    enum api_route route;
    char tail[API_TAIL_BYTES_MAX]; /* the {id} of API_ACCOUNT / API_PAYMENT */
    int64_t start_us;
    bool lost; /* lost_response decided: whatever the reply would be, it is never sent */
};

/* ================================================================ holds */

static struct bank_hold *api_hold_alloc(struct bank_ctx *ctx)
{
    for (size_t i = 0; i < BANK_HOLDS_MAX; i++) {
        if (ctx->holds[i].kind == BANK_HOLD_FREE) {
            return &ctx->holds[i];
        }
    }
    return NULL;
}

static void api_hold_release(struct bank_hold *h)
{
    assert(h->kind != BANK_HOLD_FREE);
    assert(h->ctx->holds_count > 0);
    h->ctx->holds_count--;
    if (h->watch != NULL) {
        event_free(h->watch);
    }
    struct bank_ctx *ctx = h->ctx;
    memset(h, 0, sizeof *h);
    h->ctx = ctx;
}

/* The connection of a held request closed (the client gave up, the watch below dropped it,
 * or the server is shutting down): forget the hold, never answer. A request evhttp detached
 * from its connection is ours to free; one still attached is freed by evhttp right after. */
static void api_hold_closecb(struct evhttp_connection *evcon, void *arg)
{
    struct bank_hold *h = arg;
    if (h->kind == BANK_HOLD_FREE || h->evcon != evcon) {
        return;
    }
    struct evhttp_request *req = h->req;
    log_debug("held request closed", "kind=%d payment=%s", (int)h->kind,
              h->payment_id[0] != '\0' ? h->payment_id : "-");
    api_hold_release(h);
    if (evhttp_request_get_connection(req) == NULL) {
        evhttp_request_free(req);
    }
}

static void api_hold_watch_cb(evutil_socket_t fd, short what, void *arg);

/* Watches fd for EOF (or only the time left, when fd < 0) until deadline_ms. */
static int api_hold_watch(struct bank_hold *h, evutil_socket_t fd, int64_t deadline_ms)
{
    int64_t left_ms = deadline_ms - pl_mono_ms();
    if (left_ms < 0) {
        left_ms = 0;
    }
    struct timeval tv = {.tv_sec = (time_t)(left_ms / 1000),
                         .tv_usec = (suseconds_t)((left_ms % 1000) * 1000)};
    short what = fd >= 0 ? EV_READ : 0;
    h->watch = event_new(h->ctx->base, fd, what, api_hold_watch_cb, h);
    if (h->watch == NULL || event_add(h->watch, &tv) != 0) {
        return PL_ENOMEM;
    }
    return PL_OK;
}

/* Readable with nothing to read is EOF: the client left. Bytes waiting (a pipelined request)
 * say nothing about the client leaving: then only the time cap is watched. */
static void api_hold_watch_cb(evutil_socket_t fd, short what, void *arg)
{
    struct bank_hold *h = arg;
    assert(h->kind != BANK_HOLD_FREE);
    if ((what & EV_READ) != 0) {
        char byte = 0;
        ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))) {
            event_free(h->watch);
            h->watch = NULL;
            if (api_hold_watch(h, -1, h->deadline_ms) == 0) {
                return;
            }
        }
    }
    /* EOF, a socket error or the time cap: close without an answer; the close callback
     * releases the hold and evhttp frees the request. */
    evhttp_connection_free(h->evcon);
}

/* Holds c's request; false when the table is full or memory ran out (nothing held). */
static bool api_hold(struct api_call *c, enum bank_hold_kind kind, const char *payment_id)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(c->req);
    struct bufferevent *bev = evcon != NULL ? evhttp_connection_get_bufferevent(evcon) : NULL;
    evutil_socket_t fd = bev != NULL ? bufferevent_getfd(bev) : -1;
    struct bank_hold *h = api_hold_alloc(c->ctx);
    if (h == NULL || fd < 0) {
        return false;
    }
    h->kind = kind;
    h->req = c->req;
    h->evcon = evcon;
    pl_strlcpy(h->payment_id, payment_id != NULL ? payment_id : "", sizeof h->payment_id);
    h->route = api_route_labels[c->route];
    h->start_us = c->start_us;
    h->deadline_ms = pl_mono_ms() + BANK_HOLD_MS_MAX;
    c->ctx->holds_count++;
    if (api_hold_watch(h, fd, h->deadline_ms) != 0) {
        api_hold_release(h);
        return false;
    }
    evhttp_connection_set_closecb(evcon, api_hold_closecb, h);
    return true;
}

bool bank_api_in_flight(const struct bank_ctx *ctx, const char *payment_id)
{
    for (size_t i = 0; i < BANK_HOLDS_MAX; i++) {
        const struct bank_hold *h = &ctx->holds[i];
        if (h->kind == BANK_HOLD_WAITING && strcmp(h->payment_id, payment_id) == 0) {
            return true;
        }
    }
    return false;
}

/* ================================================================ replies */

static void api_observe(struct api_call *c, int status)
{
    metrics_http_observe(c->ctx->metrics, api_route_labels[c->route], status, c->start_us);
    log_debug("request", "method=%s route=%s status=%d", http_method(c->req),
              api_route_labels[c->route], status);
}

static void api_count_fault(struct bank_ctx *ctx, const char *kind)
{
    char labels[64];
    int n = snprintf(labels, sizeof labels, "kind=\"%s\"", kind);
    assert(n > 0 && (size_t)n < sizeof labels);
    (void)n;
    metrics_counter_add(ctx->metrics, "paylab_bank_faults_injected_total", labels, 1);
}

/* lost_response: keep the request, answer nothing. Without a free hold slot the request is
 * answered after all (the table is sized so this does not happen in a lab run). */
static bool api_lose(struct api_call *c, const char *payment_id)
{
    if (!c->lost) {
        return false;
    }
    if (!api_hold(c, BANK_HOLD_LOST, payment_id)) {
        log_warn("lost response not held: hold table full", "max=%d", BANK_HOLDS_MAX);
        return false;
    }
    api_count_fault(c->ctx, FAULTS_LOST_RESPONSE);
    api_observe(c, 0);
    log_info("response withheld (fault)", "fault=lost_response payment=%s",
             payment_id != NULL ? payment_id : "-");
    return true;
}

static void api_error(struct api_call *c, int status, const char *code, const char *message)
{
    if (api_lose(c, NULL)) {
        return;
    }
    if (status == 503 || status == 429) {
        http_add_header(c->req, "Retry-After", "1");
    }
    http_reply_error(c->req, status, code, message);
    api_observe(c, status);
}

static void api_json(struct api_call *c, int status, const cJSON *obj)
{
    if (obj == NULL) {
        api_error(c, 500, "internal", "out of memory");
        return;
    }
    http_reply_json(c->req, status, obj);
    api_observe(c, status);
}

/* Maps a storage failure to its reply: busy → 503 + Retry-After, anything else → 500. */
static void api_db_error(struct api_call *c, int rc)
{
    if (rc == PL_EBUSY) {
        api_error(c, 503, "busy", "the bank's database is busy; retry");
        return;
    }
    log_error("storage error", "route=%s error=%d", api_route_labels[c->route], rc);
    api_error(c, 500, "internal", "internal error");
}

static bool api_add_opt_str(cJSON *o, const char *key, const char *v)
{
    if (v[0] == '\0') {
        return cJSON_AddNullToObject(o, key) != NULL;
    }
    return cJSON_AddStringToObject(o, key, v) != NULL;
}

/* The payment object of docs/contracts.md; caller cJSON_Delete()s; NULL on ENOMEM. */
static cJSON *api_payment_json(const struct payment *p)
{
    cJSON *o = cJSON_CreateObject();
    bool ok = o != NULL && cJSON_AddStringToObject(o, "payment_id", p->id) != NULL &&
              cJSON_AddStringToObject(o, "reference", p->reference) != NULL &&
              api_add_opt_str(o, "debit_account", p->debit_account) &&
              api_add_opt_str(o, "credit_account", p->credit_account) &&
              cJSON_AddNumberToObject(o, "amount_minor", (double)p->amount_minor) != NULL &&
              cJSON_AddStringToObject(o, "currency", p->currency) != NULL &&
              cJSON_AddStringToObject(o, "mode", p->mode) != NULL &&
              cJSON_AddStringToObject(o, "status", p->status) != NULL &&
              api_add_opt_str(o, "failure_reason", p->failure_reason) &&
              cJSON_AddBoolToObject(o, "voided", p->voided) != NULL &&
              cJSON_AddNumberToObject(o, "expires_at_ms", (double)p->expires_at_ms) != NULL &&
              cJSON_AddNumberToObject(o, "execute_at_ms", (double)p->execute_at_ms) != NULL &&
              cJSON_AddNumberToObject(o, "created_at_ms", (double)p->created_at_ms) != NULL &&
              api_add_opt_str(o, "wallet_epoch", p->wallet_epoch);
    if (ok && p->settled_at_ms != 0) {
        ok = cJSON_AddNumberToObject(o, "settled_at_ms", (double)p->settled_at_ms) != NULL;
    } else if (ok) {
        ok = cJSON_AddNullToObject(o, "settled_at_ms") != NULL;
    }
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static void api_payment(struct api_call *c, int status, const struct payment *p, bool replayed)
{
    if (api_lose(c, p->id)) {
        return;
    }
    if (replayed) {
        http_add_header(c->req, "Idempotent-Replayed", "true");
    }
    cJSON *o = api_payment_json(p);
    api_json(c, status, o);
    cJSON_Delete(o);
}

void bank_api_settled(struct bank_ctx *ctx, const struct payment *p)
{
    assert(strcmp(p->status, "processing") != 0);
    for (size_t i = 0; i < BANK_HOLDS_MAX; i++) {
        struct bank_hold *h = &ctx->holds[i];
        if (h->kind != BANK_HOLD_WAITING || strcmp(h->payment_id, p->id) != 0) {
            continue;
        }
        struct api_call c = {
            .ctx = ctx, .req = h->req, .start_us = h->start_us, .route = API_PAYMENTS};
        evhttp_connection_set_closecb(h->evcon, NULL, NULL);
        api_hold_release(h);
        api_payment(&c, 200, p, false);
    }
}

/* ================================================================ input */

/* Reads a string field; on a problem replies 400 and returns false. */
static bool api_str(struct api_call *c, const cJSON *body, const char *key, bool required,
                    size_t max_chars, const char **out)
{
    enum json_status st = json_get_string(body, key, required, max_chars, out);
    if (st == JSON_OK) {
        return true;
    }
    char msg[API_MESSAGE_BYTES_MAX];
    if (st == JSON_MISSING) {
        snprintf(msg, sizeof msg, "%s is required", key);
        api_error(c, 400, "missing_field", msg);
        return false;
    }
    snprintf(msg, sizeof msg, "%s must be a string of at most %zu characters", key, max_chars);
    api_error(c, 400, "invalid_field", msg);
    return false;
}

static bool api_invalid(struct api_call *c, const char *key, const char *what)
{
    char msg[API_MESSAGE_BYTES_MAX];
    snprintf(msg, sizeof msg, "%s %s", key, what);
    api_error(c, 400, "invalid_field", msg);
    return false;
}

/* An account id field ([A-Z0-9-]{1,64}); replies 400 on a problem. */
static bool api_account_field(struct api_call *c, const cJSON *body, const char *key,
                              const char **out)
{
    if (!api_str(c, body, key, true, PAYMENTS_ACCOUNT_CHARS_MAX, out)) {
        return false;
    }
    if (!payments_account_id_valid(*out)) {
        return api_invalid(c, key, "must match [A-Z0-9-]{1,64}");
    }
    return true;
}

/* An amount in minor units within [min, MONEY_AMOUNT_MINOR_MAX]: a non-integer is 400
 * invalid_field, out of range 422 invalid_amount. A missing optional one leaves *out. */
static bool api_amount(struct api_call *c, const cJSON *body, const char *key, bool required,
                       int64_t min, int64_t *out)
{
    enum json_status st = json_get_int64(body, key, required, out);
    char msg[API_MESSAGE_BYTES_MAX];
    if (st == JSON_MISSING) {
        snprintf(msg, sizeof msg, "%s is required", key);
        api_error(c, 400, "missing_field", msg);
        return false;
    }
    if (st == JSON_WRONG_TYPE) {
        return api_invalid(c, key, "must be an integer count of paise");
    }
    if (st == JSON_TOO_LONG || *out < min || *out > MONEY_AMOUNT_MINOR_MAX) {
        snprintf(msg, sizeof msg, "%s must be between %lld and %lld", key, (long long)min,
                 (long long)MONEY_AMOUNT_MINOR_MAX);
        api_error(c, 422, "invalid_amount", msg);
        return false;
    }
    return true;
}

/* Reads the JSON body; on failure the reply is already sent (and counted here). */
static bool api_body(struct api_call *c, cJSON **out)
{
    int rc = http_read_json(c->req, out, NULL, NULL);
    if (rc == 0) {
        return true;
    }
    /* The reply is queued, not yet written: the request lives until a later loop pass. */
    api_observe(c, evhttp_request_get_response_code(c->req));
    return false;
}

static bool api_method(struct api_call *c, enum evhttp_cmd_type want, const char *allow)
{
    if (evhttp_request_get_command(c->req) == want) {
        return true;
    }
    http_add_header(c->req, "Allow", allow);
    api_error(c, 405, "method_not_allowed", "method not allowed on this path");
    return false;
}

/* ================================================================ accounts, mandates */

static cJSON *api_account_json(const struct account *a)
{
    cJSON *o = cJSON_CreateObject();
    bool ok = o != NULL && cJSON_AddStringToObject(o, "id", a->id) != NULL &&
              cJSON_AddStringToObject(o, "owner", a->owner) != NULL &&
              cJSON_AddNumberToObject(o, "balance_minor", (double)a->balance_minor) != NULL &&
              cJSON_AddNumberToObject(o, "created_at_ms", (double)a->created_at_ms) != NULL;
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static void api_account_reply(struct api_call *c, int status, const struct account *a)
{
    cJSON *o = api_account_json(a);
    api_json(c, status, o);
    cJSON_Delete(o);
}

static void api_account_create(struct api_call *c, const cJSON *body)
{
    const char *id = NULL;
    const char *owner = NULL;
    int64_t opening_minor = 0;
    if (!api_account_field(c, body, "id", &id) ||
        !api_str(c, body, "owner", true, PAYMENTS_OWNER_CHARS_MAX, &owner) ||
        !api_amount(c, body, "opening_minor", false, 0, &opening_minor)) {
        return;
    }
    if (owner[0] == '\0') {
        api_invalid(c, "owner", "must not be empty");
        return;
    }
    struct account a;
    int rc = payments_account_create(&c->ctx->db, id, owner, opening_minor, pl_now_ms(), &a);
    if (rc == PL_ECONFLICT) {
        api_error(c, 409, "account_exists", "an account with this id exists");
        return;
    }
    if (rc != 0) {
        api_db_error(c, rc);
        return;
    }
    log_info("account opened", "account=%s opening_minor=%lld", a.id, (long long)opening_minor);
    api_account_reply(c, 201, &a);
}

static void api_account_get(struct api_call *c)
{
    struct account a;
    int rc = PL_ENOTFOUND;
    if (payments_account_id_valid(c->tail)) {
        rc = payments_account_get(&c->ctx->db, c->tail, &a);
    }
    if (rc == PL_ENOTFOUND) {
        api_error(c, 404, "unknown_account", "no such account");
        return;
    }
    if (rc != 0) {
        api_db_error(c, rc);
        return;
    }
    api_account_reply(c, 200, &a);
}

static void api_mandate_create(struct api_call *c, const cJSON *body)
{
    const char *account = NULL;
    const char *payee = NULL;
    if (!api_account_field(c, body, "account", &account) ||
        !api_account_field(c, body, "payee", &payee)) {
        return;
    }
    if (strcmp(account, payee) == 0) {
        api_error(c, 422, "same_account", "an account needs no mandate towards itself");
        return;
    }
    struct mandate m;
    bool created = false;
    int rc = payments_mandate_create(&c->ctx->db, account, payee, pl_now_ms(), &m, &created);
    if (rc == PL_ENOTFOUND) {
        api_error(c, 404, "unknown_account", "account or payee does not exist");
        return;
    }
    if (rc != 0) {
        api_db_error(c, rc);
        return;
    }
    if (created) {
        log_info("mandate recorded", "account=%s payee=%s", m.account, m.payee);
    }
    cJSON *o = cJSON_CreateObject();
    bool ok = o != NULL && cJSON_AddStringToObject(o, "account", m.account) != NULL &&
              cJSON_AddStringToObject(o, "payee", m.payee) != NULL &&
              cJSON_AddNumberToObject(o, "created_at_ms", (double)m.created_at_ms) != NULL;
    api_json(c, created ? 201 : 200, ok ? o : NULL);
    cJSON_Delete(o);
}

/* ================================================================ payments */

/* notify_url: 1..PAYMENTS_NOTIFY_URLS_MAX comma-separated http:// or https:// URLs (spaces
 * around the commas allowed), none empty. */
static bool api_notify_url_ok(const char *list)
{
    const char *p = list;
    size_t count = 0;
    while (*p != '\0') {
        p += strspn(p, " ");
        size_t n = strcspn(p, ", ");
        bool http = n > 7 && strncmp(p, "http://", 7) == 0;
        bool https = n > 8 && strncmp(p, "https://", 8) == 0;
        if ((!http && !https) || ++count > PAYMENTS_NOTIFY_URLS_MAX) {
            return false;
        }
        p += n;
        p += strspn(p, " ");
        if (*p != ',' && *p != '\0') {
            return false; /* entries are separated by commas */
        }
        if (*p == ',') {
            p++;
            if (p[strspn(p, " ")] == '\0') {
                return false; /* a trailing comma: an empty entry */
            }
        }
    }
    return count >= 1;
}

/* The optional fields of a payment; replies 400 on a problem. */
static bool api_payment_optional(struct api_call *c, const cJSON *body, struct payment_request *pr)
{
    if (!api_str(c, body, "notify_url", false, PAYMENTS_URL_CHARS_MAX, &pr->notify_url) ||
        !api_str(c, body, "wallet_epoch", false, PAYMENTS_EPOCH_CHARS_MAX, &pr->wallet_epoch)) {
        return false;
    }
    if (pr->notify_url != NULL && !api_notify_url_ok(pr->notify_url)) {
        return api_invalid(c, "notify_url", "must be 1..4 comma-separated http(s):// URLs");
    }
    enum json_status st = json_get_int64(body, "expires_at_ms", true, &pr->expires_at_ms);
    if (st == JSON_MISSING) {
        api_error(c, 400, "missing_field", "expires_at_ms is required");
        return false;
    }
    if (st != JSON_OK || pr->expires_at_ms <= 0) {
        return api_invalid(c, "expires_at_ms", "must be a positive unix time in milliseconds");
    }
    return true;
}

/* Validates a POST /v1/payments body into pr; replies on a problem. */
static bool api_payment_parse(struct api_call *c, const cJSON *body, struct payment_request *pr)
{
    if (!api_str(c, body, "reference", true, PAYMENTS_REFERENCE_CHARS_MAX, &pr->reference)) {
        return false;
    }
    if (!ids_idem_key_valid(pr->reference)) {
        return api_invalid(c, "reference", "must be 1..64 printable characters");
    }
    if (!api_account_field(c, body, "debit_account", &pr->debit_account) ||
        !api_account_field(c, body, "credit_account", &pr->credit_account) ||
        !api_amount(c, body, "amount_minor", true, MONEY_AMOUNT_MINOR_MIN, &pr->amount_minor) ||
        !api_str(c, body, "currency", true, API_CURRENCY_CHARS_MAX, &pr->currency) ||
        !api_str(c, body, "mode", true, API_MODE_CHARS_MAX, &pr->mode) ||
        !api_payment_optional(c, body, pr)) {
        return false;
    }
    if (strcmp(pr->currency, "INR") != 0) {
        api_error(c, 422, "unsupported_currency", "currency must be INR");
        return false;
    }
    if (strcmp(pr->mode, "sync") != 0 && strcmp(pr->mode, "async") != 0) {
        return api_invalid(c, "mode", "must be \"sync\" or \"async\"");
    }
    if (strcmp(pr->debit_account, pr->credit_account) == 0) {
        api_error(c, 422, "same_account", "debit and credit accounts are the same");
        return false;
    }
    return true;
}

/* A request for a payment that already exists: 409 while its first request is held,
 * else the payment as it stands. */
static void api_payment_known(struct api_call *c, const struct payment *p)
{
    bool processing = strcmp(p->status, "processing") == 0;
    if (processing && bank_api_in_flight(c->ctx, p->id)) {
        api_error(c, 409, "idempotency_key_in_use", "this payment's first request is in flight");
        return;
    }
    /* An async payment answers 202 while it is processing, like its first answer. */
    bool accepted = processing && strcmp(p->mode, "async") == 0;
    api_payment(c, accepted ? 202 : 200, p, true);
}

/* A newly created payment: answered now if it already ran, else held until it does. */
static void api_payment_created(struct api_call *c, const struct payment *p)
{
    log_info("payment accepted", "payment=%s reference=%s amount_minor=%lld execute_at_ms=%lld",
             p->id, p->reference, (long long)p->amount_minor, (long long)p->execute_at_ms);
    if (p->notify_url[0] != '\0') {
        bank_webhooks_kick(c->ctx); /* its processing (async) or outcome event committed */
    }
    if (strcmp(p->status, "processing") != 0) {
        bank_exec_count(c->ctx, p);
        api_payment(c, 200, p, false);
        return;
    }
    bank_exec_kick(c->ctx, p->execute_at_ms);
    if (strcmp(p->mode, "async") == 0) {
        api_payment(c, 202, p, false); /* the outcome comes by webhook (or a status query) */
        return;
    }
    if (api_lose(c, p->id)) {
        return;
    }
    if (!api_hold(c, BANK_HOLD_WAITING, p->id)) {
        /* Out of memory for the watch: answer the truth now; the payment still runs. */
        log_warn("sync request not held", "payment=%s", p->id);
        api_payment(c, 200, p, false);
    }
}

static void api_payment_result(struct api_call *c, enum payments_create_result result,
                               const struct payment *p)
{
    switch (result) {
    case PAYMENTS_CREATED:
        api_payment_created(c, p);
        return;
    case PAYMENTS_REPLAY_KEY:
    case PAYMENTS_REFERENCE_KNOWN:
        api_payment_known(c, p);
        return;
    case PAYMENTS_KEY_REUSED:
        api_error(c, 422, "idempotency_key_reused", "this key was used with another request");
        return;
    case PAYMENTS_REFERENCE_REUSED:
        api_error(c, 422, "reference_reused", "this reference was used with another request");
        return;
    case PAYMENTS_UNKNOWN_ACCOUNT:
        api_error(c, 404, "unknown_account", "debit or credit account does not exist");
        return;
    case PAYMENTS_MANDATE_MISSING:
        api_error(c, 403, "mandate_missing", "no mandate from the debit account to the payee");
        return;
    }
    assert(false);
}

/* Fault decisions for this arrival. false when an injected error was answered. */
static bool api_payment_faults(struct api_call *c, const char *reference, int64_t *delay_ms)
{
    struct bank_ctx *ctx = c->ctx;
    uint32_t attempt = faults_attempt_next(ctx->attempts, reference);
    if (faults_hit(&ctx->faults, reference, attempt, FAULTS_ERROR, ctx->faults.error_rate)) {
        api_count_fault(ctx, FAULTS_ERROR);
        log_info("error injected (fault)", "reference=%s attempt=%u", reference, attempt);
        api_error(c, 500, "injected_error", "injected fault: error_rate");
        return false;
    }
    c->lost = faults_hit(&ctx->faults, reference, attempt, FAULTS_LOST_RESPONSE,
                         ctx->faults.lost_response_rate);
    *delay_ms = faults_delay_ms(&ctx->faults, reference, attempt);
    if (*delay_ms > 0) {
        api_count_fault(ctx, "latency");
    }
    return true;
}

static void api_payment_create(struct api_call *c, const cJSON *body, const char *key)
{
    struct payment_request pr = {.idempotency_key = key};
    if (!api_payment_parse(c, body, &pr)) {
        return;
    }
    const char *traceparent = http_header(c->req, "traceparent");
    pr.traceparent = traceparent != NULL && ids_traceparent_valid(traceparent) ? traceparent : NULL;
    int64_t delay_ms = 0;
    if (!api_payment_faults(c, pr.reference, &delay_ms)) {
        return;
    }
    int64_t now_ms = pl_now_ms();
    struct payment p;
    enum payments_create_result result = PAYMENTS_CREATED;
    struct payments_policy pol = bank_payments_policy(c->ctx);
    int rc = payments_create_with(&c->ctx->db, &pol, &pr, c->ctx->nodal_account, now_ms,
                                  now_ms + delay_ms, &p, &result);
    if (rc != 0) {
        api_db_error(c, rc);
        return;
    }
    api_payment_result(c, result, &p);
}

static void api_payments_post(struct api_call *c)
{
    if (c->ctx->holds_count >= BANK_HOLDS_MAX) {
        api_error(c, 429, "overloaded", "too many requests held open; retry");
        return;
    }
    const char *key = http_header(c->req, "Idempotency-Key");
    if (key == NULL || !ids_idem_key_valid(key)) {
        api_error(c, 400, "invalid_idempotency_key",
                  "Idempotency-Key must be 1..64 printable characters");
        return;
    }
    cJSON *body = NULL;
    if (!api_body(c, &body)) {
        return;
    }
    api_payment_create(c, body, key);
    cJSON_Delete(body);
}

static void api_payment_lookup_reply(struct api_call *c, int rc, const struct payment *p)
{
    if (rc == PL_ENOTFOUND) {
        api_error(c, 404, "unknown_payment", "no such payment");
        return;
    }
    if (rc != 0) {
        api_db_error(c, rc);
        return;
    }
    api_payment(c, 200, p, false);
}

static void api_payments_get(struct api_call *c)
{
    char reference[PAYMENTS_REFERENCE_CHARS_MAX + 1];
    int rc = http_query_get(c->req, "reference", reference, sizeof reference);
    if (rc == PL_ENOTFOUND) {
        api_error(c, 400, "missing_field", "the reference query parameter is required");
        return;
    }
    if (rc != 0 || !ids_idem_key_valid(reference)) {
        api_invalid(c, "reference", "must be 1..64 printable characters");
        return;
    }
    struct payment p;
    rc = payments_get_by_reference(&c->ctx->db, reference, &p);
    api_payment_lookup_reply(c, rc, &p);
}

static void api_payment_get(struct api_call *c)
{
    struct payment p;
    int rc = payments_get(&c->ctx->db, c->tail, &p);
    api_payment_lookup_reply(c, rc, &p);
}

static void api_payment_void(struct api_call *c, const cJSON *body)
{
    const char *reference = NULL;
    if (!api_str(c, body, "reference", true, PAYMENTS_REFERENCE_CHARS_MAX, &reference)) {
        return;
    }
    if (!ids_idem_key_valid(reference)) {
        api_invalid(c, "reference", "must be 1..64 printable characters");
        return;
    }
    struct payment p;
    bool created = false;
    bool executed = false;
    bool pretended = false;
    struct payments_policy pol = bank_payments_policy(c->ctx);
    int rc = payments_void_with(&c->ctx->db, &pol, reference, pl_now_ms(), &p, &created, &executed,
                                &pretended);
    if (rc != 0) {
        api_db_error(c, rc);
        return;
    }
    if (pretended) {
        log_warn("UNSAFE --unsafe-ignore-expiry: answered a void failed/expired, but the payment "
                 "stays processing and will still execute",
                 "reference=%s payment=%s execute_at_ms=%lld", p.reference, p.id,
                 (long long)p.execute_at_ms);
    }
    if (created) {
        log_info("reference voided", "reference=%s payment=%s", p.reference, p.id);
    }
    if (executed) {
        bank_exec_count(c->ctx, &p);
        if (p.notify_url[0] != '\0') {
            bank_webhooks_kick(c->ctx);
        }
        log_info("payment expired by void", "reference=%s payment=%s", p.reference, p.id);
        bank_api_settled(c->ctx, &p);
    }
    api_payment(c, 200, &p, false);
}

/* ================================================================ faults: down */

/* down: the connection is shut without a byte of answer (the client sees an empty reply).
 * The request stays held until evhttp notices the close and frees it through the hold. */
static void api_drop(struct api_call *c)
{
    api_count_fault(c->ctx, FAULTS_DOWN);
    api_observe(c, 0);
    struct evhttp_connection *evcon = evhttp_request_get_connection(c->req);
    struct bufferevent *bev = evcon != NULL ? evhttp_connection_get_bufferevent(evcon) : NULL;
    evutil_socket_t fd = bev != NULL ? bufferevent_getfd(bev) : -1;
    if (fd >= 0) {
        shutdown(fd, SHUT_RDWR);
    }
    if (!api_hold(c, BANK_HOLD_DROPPED, NULL)) {
        /* No slot: a reply into the shut socket fails to write, evhttp frees the connection,
         * and the client has still seen no byte. */
        evhttp_send_reply(c->req, 503, NULL, NULL);
    }
}

/* ================================================================ admin */

static bool api_origin_allowed(const struct bank_ctx *ctx, const char *origin)
{
    size_t origin_bytes = strlen(origin);
    const char *p = ctx->allowed_origin;
    for (size_t i = 0; i < BANK_ORIGINS_MAX && *p != '\0'; i++) {
        while (*p == ' ') {
            p++;
        }
        size_t n = strcspn(p, ", ");
        if (n == origin_bytes && n > 0 && strncmp(p, origin, n) == 0) {
            return true;
        }
        p += n;
        p += strspn(p, ", ");
    }
    return false;
}

static void api_preflight(struct api_call *c, bool cors)
{
    if (!cors) {
        api_error(c, 403, "forbidden", "origin not allowed");
        return;
    }
    http_add_header(c->req, "Access-Control-Allow-Methods", "GET, PUT, POST, OPTIONS");
    http_add_header(c->req, "Access-Control-Allow-Headers", "Authorization, Content-Type");
    http_add_header(c->req, "Access-Control-Max-Age", "600");
    evhttp_send_reply(c->req, 204, "No Content", NULL);
    api_observe(c, 204);
}

static void api_faults_put(struct api_call *c)
{
    cJSON *body = NULL;
    if (!api_body(c, &body)) {
        return;
    }
    const char *bad = NULL;
    if (faults_apply_json(&c->ctx->faults, body, &bad) != 0) {
        char msg[API_MESSAGE_BYTES_MAX];
        snprintf(msg, sizeof msg, "bad or unknown field: %.64s", bad);
        api_error(c, 400, "invalid_field", msg);
        cJSON_Delete(body);
        return;
    }
    cJSON_Delete(body);
    const struct faults *f = &c->ctx->faults;
    log_warn("faults changed",
             "seed=%lld latency_ms=%lld latency_jitter_ms=%lld "
             "error_rate=%g lost_response_rate=%g down=%s webhook_drop_rate=%g "
             "webhook_duplicate_rate=%g webhook_delay_ms=%lld webhook_delay_jitter_ms=%lld "
             "webhook_stop=%s",
             (long long)f->seed, (long long)f->latency_ms, (long long)f->latency_jitter_ms,
             f->error_rate, f->lost_response_rate, f->down ? "true" : "false", f->webhook_drop_rate,
             f->webhook_duplicate_rate, (long long)f->webhook_delay_ms,
             (long long)f->webhook_delay_jitter_ms, f->webhook_stop ? "true" : "false");
    bank_webhooks_kick(c->ctx); /* webhook_stop may have been cleared */
    cJSON *o = faults_to_json(f);
    api_json(c, 200, o);
    cJSON_Delete(o);
}

static void api_admin_faults(struct api_call *c)
{
    if (evhttp_request_get_command(c->req) == EVHTTP_REQ_PUT) {
        api_faults_put(c);
        return;
    }
    if (!api_method(c, EVHTTP_REQ_GET, "GET, PUT, OPTIONS")) {
        return;
    }
    cJSON *o = faults_to_json(&c->ctx->faults);
    api_json(c, 200, o);
    cJSON_Delete(o);
}

static void api_with_body(struct api_call *c, void (*fn)(struct api_call *, const cJSON *))
{
    cJSON *body = NULL;
    if (!api_body(c, &body)) {
        return;
    }
    fn(c, body);
    cJSON_Delete(body);
}

/* A decimal integer in 1..max of at most 9 digits; false otherwise. */
static bool api_small_int(const char *text, int64_t max, int64_t *out)
{
    size_t len = strlen(text);
    if (len == 0 || len > 9) {
        return false;
    }
    int64_t v = 0;
    for (size_t n = 0; n < len; n++) {
        if (text[n] < '0' || text[n] > '9') {
            return false;
        }
        v = v * 10 + (text[n] - '0');
    }
    if (v < 1 || v > max) {
        return false;
    }
    *out = v;
    return true;
}

/* GET /admin/webhooks?status=pending|delivered|dead&limit=N */
static void api_admin_webhooks(struct api_call *c)
{
    if (!api_method(c, EVHTTP_REQ_GET, "GET, OPTIONS")) {
        return;
    }
    char status[16];
    int rc = http_query_get(c->req, "status", status, sizeof status);
    bool known = rc == 0 && (strcmp(status, "pending") == 0 || strcmp(status, "delivered") == 0 ||
                             strcmp(status, "dead") == 0);
    if (rc != PL_ENOTFOUND && !known) {
        api_invalid(c, "status", "must be pending, delivered or dead");
        return;
    }
    char limit_text[16];
    int64_t limit = OUTBOX_LIST_DEFAULT;
    rc = http_query_get(c->req, "limit", limit_text, sizeof limit_text);
    if (rc != PL_ENOTFOUND && !api_small_int(rc == 0 ? limit_text : "", OUTBOX_LIST_MAX, &limit)) {
        api_invalid(c, "limit", "must be an integer from 1 to 500");
        return;
    }
    cJSON *o = NULL;
    rc = outbox_list(&c->ctx->db, known ? status : NULL, limit, &o);
    if (rc != 0) {
        api_db_error(c, rc);
        return;
    }
    api_json(c, 200, o);
    cJSON_Delete(o);
}

/* POST /admin/webhooks/redeliver {"payment_id"} or {"reference"} → 202 {"events":N} */
static void api_admin_redeliver(struct api_call *c, const cJSON *body)
{
    const char *payment_id = NULL;
    const char *reference = NULL;
    if (!api_str(c, body, "payment_id", false, ID_BYTES_MAX - 1, &payment_id) ||
        !api_str(c, body, "reference", false, PAYMENTS_REFERENCE_CHARS_MAX, &reference)) {
        return;
    }
    if ((payment_id == NULL) == (reference == NULL)) {
        api_error(c, 400, "missing_field", "exactly one of payment_id and reference is required");
        return;
    }
    size_t events = 0;
    int rc = outbox_redeliver(&c->ctx->db, payment_id, reference, pl_now_ms(), &events);
    if (rc == PL_ENOTFOUND) {
        api_error(c, 404, "unknown_payment", "no such payment");
        return;
    }
    if (rc != 0) {
        api_db_error(c, rc);
        return;
    }
    log_info("webhooks redelivered", "payment=%s reference=%s events=%zu",
             payment_id != NULL ? payment_id : "-", reference != NULL ? reference : "-", events);
    bank_webhooks_kick(c->ctx);
    cJSON *o = cJSON_CreateObject();
    bool ok = o != NULL && cJSON_AddNumberToObject(o, "events", (double)events) != NULL;
    api_json(c, 202, ok ? o : NULL);
    cJSON_Delete(o);
}

/* Every /admin route: CORS for the dashboard, then loopback, then the admin token. */
static void api_admin(struct api_call *c)
{
    const char *origin = http_header(c->req, "Origin");
    bool cors = origin != NULL && api_origin_allowed(c->ctx, origin);
    if (cors) {
        http_add_header(c->req, "Access-Control-Allow-Origin", origin);
        http_add_header(c->req, "Vary", "Origin");
    }
    if (evhttp_request_get_command(c->req) == EVHTTP_REQ_OPTIONS) {
        api_preflight(c, cors);
        return;
    }
    if (!http_peer_is_loopback(c->req)) {
        api_error(c, 403, "not_loopback", "the admin API answers loopback clients only");
        return;
    }
    if (!http_bearer_ok(c->req, c->ctx->admin_token)) {
        api_error(c, 401, "unauthorized", "Authorization: Bearer <admin_token> required");
        return;
    }
    if (c->route == API_ADMIN_FAULTS) {
        api_admin_faults(c);
    } else if (c->route == API_ADMIN_WEBHOOKS) {
        api_admin_webhooks(c);
    } else if (api_method(c, EVHTTP_REQ_POST, "POST, OPTIONS")) {
        api_with_body(c, api_admin_redeliver);
    }
}

/* ================================================================ open endpoints */

/* GET /healthz: open, and readable by the dashboard's origin (a simple GET: no preflight),
 * which shows a banner while a teaching switch is on. */
static void api_healthz(struct api_call *c)
{
    if (!api_method(c, EVHTTP_REQ_GET, "GET")) {
        return;
    }
    const char *origin = http_header(c->req, "Origin");
    if (origin != NULL && api_origin_allowed(c->ctx, origin)) {
        http_add_header(c->req, "Access-Control-Allow-Origin", origin);
        http_add_header(c->req, "Vary", "Origin");
    }
    cJSON *o = cJSON_CreateObject();
    bool ok = o != NULL && cJSON_AddStringToObject(o, "status", "ok") != NULL &&
              cJSON_AddStringToObject(o, "service", "bank") != NULL &&
              cJSON_AddStringToObject(o, "version", PAYLAB_VERSION) != NULL;
    cJSON *unsafe = ok ? cJSON_AddArrayToObject(o, "unsafe") : NULL;
    ok = unsafe != NULL;
    if (ok && c->ctx->unsafe_ignore_expiry) {
        cJSON *name = cJSON_CreateString("ignore-expiry");
        ok = name != NULL && cJSON_AddItemToArray(unsafe, name);
    }
    api_json(c, 200, ok ? o : NULL);
    cJSON_Delete(o);
}

static void api_metrics(struct api_call *c)
{
    if (!api_method(c, EVHTTP_REQ_GET, "GET")) {
        return;
    }
    struct bank_ctx *ctx = c->ctx;
    metrics_gauge_set(ctx->metrics, "paylab_bank_held_requests", "", (double)ctx->holds_count);
    bank_webhooks_gauges(ctx);
    struct evbuffer *buf = evbuffer_new();
    if (buf == NULL) {
        api_error(c, 500, "internal", "out of memory");
        return;
    }
    metrics_render(ctx->metrics, buf);
    struct evkeyvalq *out = evhttp_request_get_output_headers(c->req);
    evhttp_add_header(out, "Content-Type", "text/plain; version=0.0.4");
    evhttp_send_reply(c->req, 200, "OK", buf);
    evbuffer_free(buf);
    api_observe(c, 200);
}

/* ================================================================ routing */

static enum api_route api_match(const char *path, char *tail, size_t cap)
{
    static const struct {
        const char *path;
        enum api_route route;
    } exact[] = {
        {"/healthz", API_HEALTHZ},
        {"/metrics", API_METRICS},
        {"/v1/accounts", API_ACCOUNTS},
        {"/v1/mandates", API_MANDATES},
        {"/v1/payments", API_PAYMENTS},
        {"/v1/payments/void", API_PAYMENT_VOID},
        {"/admin/faults", API_ADMIN_FAULTS},
        {"/admin/webhooks", API_ADMIN_WEBHOOKS},
        {"/admin/webhooks/redeliver", API_ADMIN_REDELIVER},
    };
    if (path == NULL) {
        return API_NONE;
    }
    for (size_t i = 0; i < PL_ARRAY_LEN(exact); i++) {
        if (strcmp(path, exact[i].path) == 0) {
            return exact[i].route;
        }
    }
    if (http_path_tail(path, "/v1/accounts/", tail, cap)) {
        return API_ACCOUNT;
    }
    if (http_path_tail(path, "/v1/payments/", tail, cap)) {
        return API_PAYMENT;
    }
    return API_NONE;
}

static void api_v1(struct api_call *c)
{
    if (c->ctx->faults.down) {
        api_drop(c);
        return;
    }
    if (!http_bearer_ok(c->req, c->ctx->bank_api_key)) {
        api_error(c, 401, "unauthorized", "Authorization: Bearer <bank_api_key> required");
        return;
    }
    enum evhttp_cmd_type cmd = evhttp_request_get_command(c->req);
    switch (c->route) {
    case API_ACCOUNTS:
        if (api_method(c, EVHTTP_REQ_POST, "POST")) {
            api_with_body(c, api_account_create);
        }
        return;
    case API_ACCOUNT:
        if (api_method(c, EVHTTP_REQ_GET, "GET")) {
            api_account_get(c);
        }
        return;
    case API_MANDATES:
        if (api_method(c, EVHTTP_REQ_POST, "POST")) {
            api_with_body(c, api_mandate_create);
        }
        return;
    case API_PAYMENTS:
        if (cmd == EVHTTP_REQ_GET) {
            api_payments_get(c);
        } else if (api_method(c, EVHTTP_REQ_POST, "GET, POST")) {
            api_payments_post(c);
        }
        return;
    case API_PAYMENT_VOID:
        if (api_method(c, EVHTTP_REQ_POST, "POST")) {
            api_with_body(c, api_payment_void);
        }
        return;
    case API_PAYMENT:
        if (api_method(c, EVHTTP_REQ_GET, "GET")) {
            api_payment_get(c);
        }
        return;
    default:
        api_error(c, 404, "not_found", "no such endpoint");
        return;
    }
}

void bank_api_handle(struct evhttp_request *req, void *arg)
{
    struct api_call c = {.ctx = arg, .req = req, .start_us = pl_now_us()};
    const char *path = http_path(req);
    c.route = api_match(path, c.tail, sizeof c.tail);
    if (path != NULL && strncmp(path, "/v1/", 4) == 0) {
        api_v1(&c);
        return;
    }
    switch (c.route) {
    case API_HEALTHZ:
        api_healthz(&c);
        return;
    case API_METRICS:
        api_metrics(&c);
        return;
    case API_ADMIN_FAULTS:
    case API_ADMIN_WEBHOOKS:
    case API_ADMIN_REDELIVER:
        api_admin(&c);
        return;
    default:
        api_error(&c, 404, "not_found", "no such endpoint");
        return;
    }
}
