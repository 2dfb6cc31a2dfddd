/* curlev.c owns libcurl's multi interface on the libevent loop (the hiperfifo pattern):
 * curl tells us which sockets to watch (socket callback → one persistent event per socket,
 * kept with curl_multi_assign) and when to wake it (timer callback → one evtimer); we hand
 * every readiness back with curl_multi_socket_action and then drain curl_multi_info_read.
 * Must not: block (curl_easy_perform lives only in curlev_perform_blocking), buffer more
 * than CURLEV_RESPONSE_BYTES_MAX per response, or call a done callback twice or after a
 * cancel.
 * Invariant: a transfer is on c->xfers (and in the multi handle) exactly while in flight;
 * it is unlinked and removed from the multi handle before its done callback runs, so the
 * callback may start new transfers or cancel other ones, and nothing touches it after the
 * callback returns but its own free. A done callback must not call curlev_free. */
#include "curlev.h"

#include "log.h"
#include "pl.h"

#include <assert.h>
#include <curl/curl.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

/* A connection pool of this many hosts serves every service (wallet → bank, bank → gateways). */
#define CURLEV_HOST_CONNECTIONS_MAX 64

struct curlev_xfer {
    struct curlev *c;
    CURL *easy;
    struct curl_slist *headers;
    char *body; /* our copy of the request body */
    char *resp; /* the response so far, NUL-terminated */
    size_t resp_bytes;
    size_t resp_cap;
    bool resp_overflow; /* the response passed CURLEV_RESPONSE_BYTES_MAX */
    int64_t started_ms; /* pl_mono_ms() at start */
    curlev_done_fn done;
    void *arg;
    struct curlev_xfer *prev, *next; /* c->xfers while in flight */
    char error[CURL_ERROR_SIZE];
};

struct curlev_sock {
    struct event *ev;
    curl_socket_t fd;
    struct curlev_sock *prev, *next; /* c->socks: what curlev_free must release */
};

struct curlev {
    struct event_base *base;
    CURLM *multi;
    struct event *timer;
    struct curlev_xfer *xfers;
    struct curlev_sock *socks;
    size_t inflight;
};

/* curl_global_init is not thread-safe and must run once per process before any handle:
 * a static flag is the simplest correct guard in our single-threaded processes. */
static bool curlev_global_ready;

static int curlev_global_init(void)
{
    if (curlev_global_ready)
        return PL_OK;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return PL_ENOMEM;
    curlev_global_ready = true;
    return PL_OK;
}

/* ---------------------------------------------------------------- transfers */

static void curlev_xfer_free(struct curlev_xfer *x)
{
    if (x == NULL)
        return;
    if (x->easy != NULL)
        curl_easy_cleanup(x->easy);
    curl_slist_free_all(x->headers);
    free(x->body);
    free(x->resp);
    free(x);
}

static void curlev_unlink(struct curlev *c, struct curlev_xfer *x)
{
    if (x->prev != NULL)
        x->prev->next = x->next;
    else
        c->xfers = x->next;
    if (x->next != NULL)
        x->next->prev = x->prev;
    x->prev = x->next = NULL;
    assert(c->inflight > 0);
    c->inflight--;
}

static size_t curlev_write_cb(char *data, size_t size, size_t nmemb, void *userp)
{
    struct curlev_xfer *x = userp;
    size_t n = size * nmemb;
    if (x->resp_bytes + n > CURLEV_RESPONSE_BYTES_MAX) {
        x->resp_overflow = true;
        return 0; /* CURLE_WRITE_ERROR: the transfer ends as CURLEV_BAD */
    }
    if (x->resp_bytes + n + 1 > x->resp_cap) {
        size_t cap = x->resp_cap == 0 ? 4096 : x->resp_cap;
        while (cap < x->resp_bytes + n + 1)
            cap *= 2;
        char *grown = realloc(x->resp, cap);
        if (grown == NULL)
            return 0;
        x->resp = grown;
        x->resp_cap = cap;
    }
    memcpy(x->resp + x->resp_bytes, data, n);
    x->resp_bytes += n;
    x->resp[x->resp_bytes] = '\0';
    return n;
}

static enum curlev_outcome curlev_outcome_of(CURLcode code, bool overflow)
{
    if (overflow)
        return CURLEV_BAD;
    switch (code) {
    case CURLE_OK:
        return CURLEV_ANSWERED;
    case CURLE_COULDNT_CONNECT:
        return CURLEV_REFUSED;
    case CURLE_OPERATION_TIMEDOUT:
        return CURLEV_TIMEOUT;
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
        return CURLEV_RESET;
    default:
        return CURLEV_BAD;
    }
}

/* Sets the method and body options; the body is copied into x->body first. */
static int curlev_set_method(struct curlev_xfer *x, const struct curlev_request *req)
{
    const char *method = req->method != NULL ? req->method : "GET";
    bool has_body = req->body != NULL;
    if (has_body) {
        x->body = malloc(req->body_bytes + 1);
        if (x->body == NULL)
            return PL_ENOMEM;
        memcpy(x->body, req->body, req->body_bytes);
        x->body[req->body_bytes] = '\0';
    }
    CURL *e = x->easy;
    if (strcmp(method, "GET") == 0 && !has_body)
        return PL_OK;
    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
        return PL_OK;
    }
    if (strcmp(method, "POST") != 0)
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "POST") == 0 || has_body) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->body != NULL ? x->body : "");
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)(has_body ? req->body_bytes : 0));
    }
    return PL_OK;
}

/* Builds the easy handle of x from req with every option we always pass explicitly. */
static int curlev_prepare(struct curlev_xfer *x, const struct curlev_request *req)
{
    x->easy = curl_easy_init();
    if (x->easy == NULL)
        return PL_ENOMEM;
    size_t headers_count = 0;
    for (; req->headers[headers_count] != NULL; headers_count++) {
        if (headers_count >= CURLEV_HEADERS_MAX)
            return PL_ERANGE;
        if (strlen(req->headers[headers_count]) >= CURLEV_HEADER_BYTES_MAX)
            return PL_ERANGE;
        struct curl_slist *l = curl_slist_append(x->headers, req->headers[headers_count]);
        if (l == NULL)
            return PL_ENOMEM;
        x->headers = l;
    }
    /* No "Expect: 100-continue" round trip: our bodies are small and the wait is pure latency. */
    struct curl_slist *l = curl_slist_append(x->headers, "Expect:");
    if (l == NULL)
        return PL_ENOMEM;
    x->headers = l;
    CURL *e = x->easy;
    curl_easy_setopt(e, CURLOPT_URL, req->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, curlev_write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->error);
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, req->timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, req->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    if (req->fresh_connect) {
        /* A money-moving POST never rides a reused connection: libcurl would silently resend
         * it if that connection died, and "refused" would no longer mean "not executed". */
        curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
        curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
    }
    return curlev_set_method(x, req);
}

static bool curlev_request_ok(const struct curlev_request *req)
{
    return req->url != NULL && req->timeout_ms > 0 && req->connect_timeout_ms > 0 &&
           (req->body != NULL || req->body_bytes == 0);
}

/* ---------------------------------------------------------------- the loop glue */

/* Hands every finished transfer to its callback. The transfer leaves the multi handle and
 * the in-flight list first, so the callback may start or cancel transfers freely. */
static void curlev_drain(struct curlev *c)
{
    int left = 0;
    CURLMsg *msg = NULL;
    for (msg = curl_multi_info_read(c->multi, &left); msg != NULL;
         msg = curl_multi_info_read(c->multi, &left)) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode code = msg->data.result;
        struct curlev_xfer *x = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
        assert(x != NULL && x->easy == easy);
        curl_multi_remove_handle(c->multi, easy);
        curlev_unlink(c, x);
        struct curlev_result res = {
            .outcome = curlev_outcome_of(code, x->resp_overflow),
            .body = x->resp != NULL ? x->resp : "",
            .body_bytes = x->resp_bytes,
            .elapsed_ms = pl_mono_ms() - x->started_ms,
            .error = x->error[0] != '\0' ? x->error : curl_easy_strerror(code),
        };
        if (res.outcome == CURLEV_ANSWERED) {
            curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &res.http_status);
            curl_off_t retry_after_s = 0;
            if (curl_easy_getinfo(easy, CURLINFO_RETRY_AFTER, &retry_after_s) == CURLE_OK &&
                retry_after_s > 0)
                res.retry_after_s = (int64_t)retry_after_s;
        }
        x->done(&res, x->arg);
        curlev_xfer_free(x);
    }
}

static void curlev_event_cb(evutil_socket_t fd, short kind, void *arg)
{
    struct curlev *c = arg;
    int action =
        ((kind & EV_READ) ? CURL_CSELECT_IN : 0) | ((kind & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    int running = 0;
    curl_multi_socket_action(c->multi, fd, action, &running);
    /* No evtimer_del here even when nothing runs: a done callback may just have added a
     * transfer, and curl's kick-off for it is that very timer. curl disarms it itself. */
    curlev_drain(c);
}

static void curlev_timer_cb(evutil_socket_t fd, short kind, void *arg)
{
    (void)fd;
    (void)kind;
    struct curlev *c = arg;
    int running = 0;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    curlev_drain(c);
}

/* CURLMOPT_TIMERFUNCTION: arm (or disarm, -1) our one timer. curl must not be called back
 * from inside this callback, so even a 0 ms timeout goes through the loop. */
static int curlev_multi_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    struct curlev *c = userp;
    if (timeout_ms < 0) {
        evtimer_del(c->timer);
        return 0;
    }
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    return evtimer_add(c->timer, &tv) == 0 ? 0 : -1;
}

static void curlev_sock_free(struct curlev *c, struct curlev_sock *s)
{
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        c->socks = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    event_free(s->ev);
    free(s);
}

/* CURLMOPT_SOCKETFUNCTION: keep one persistent event per socket, re-armed when curl changes
 * what it waits for, freed on CURL_POLL_REMOVE. */
static int curlev_sock_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *sockp)
{
    (void)easy;
    struct curlev *c = userp;
    struct curlev_sock *s = sockp;
    if (what == CURL_POLL_REMOVE) {
        if (s != NULL) {
            curlev_sock_free(c, s);
            curl_multi_assign(c->multi, fd, NULL);
        }
        return 0;
    }
    short kind = (short)(((what & CURL_POLL_IN) ? EV_READ : 0) |
                         ((what & CURL_POLL_OUT) ? EV_WRITE : 0) | EV_PERSIST);
    if (s == NULL) {
        s = calloc(1, sizeof *s);
        if (s == NULL)
            return -1;
        s->fd = fd;
        s->ev = event_new(c->base, fd, kind, curlev_event_cb, c);
        if (s->ev == NULL) {
            free(s);
            return -1;
        }
        s->next = c->socks;
        if (c->socks != NULL)
            c->socks->prev = s;
        c->socks = s;
        curl_multi_assign(c->multi, fd, s);
    } else {
        event_del(s->ev);
        event_assign(s->ev, c->base, fd, kind, curlev_event_cb, c);
    }
    return event_add(s->ev, NULL) == 0 ? 0 : -1;
}

/* ---------------------------------------------------------------- public API */

struct curlev *curlev_new(struct event_base *base)
{
    assert(base != NULL);
    if (curlev_global_init() != PL_OK)
        return NULL;
    struct curlev *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->base = base;
    c->multi = curl_multi_init();
    c->timer = evtimer_new(base, curlev_timer_cb, c);
    if (c->multi == NULL || c->timer == NULL) {
        curlev_free(c);
        return NULL;
    }
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, curlev_sock_cb);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, curlev_multi_timer_cb);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)CURLEV_HOST_CONNECTIONS_MAX);
    return c;
}

void curlev_free(struct curlev *c)
{
    if (c == NULL)
        return;
    while (c->xfers != NULL)
        curlev_cancel(c, c->xfers);
    if (c->multi != NULL)
        curl_multi_cleanup(c->multi);
    while (c->socks != NULL)
        curlev_sock_free(c, c->socks); /* any curl did not remove */
    if (c->timer != NULL)
        event_free(c->timer);
    free(c);
}

int curlev_start(struct curlev *c, const struct curlev_request *req, curlev_done_fn done, void *arg,
                 struct curlev_xfer **xfer_out)
{
    assert(c != NULL);
    assert(req != NULL);
    assert(done != NULL);
    if (xfer_out != NULL)
        *xfer_out = NULL;
    if (!curlev_request_ok(req))
        return PL_EINVAL;
    if (c->inflight >= CURLEV_INFLIGHT_MAX)
        return PL_ERANGE;
    struct curlev_xfer *x = calloc(1, sizeof *x);
    if (x == NULL)
        return PL_ENOMEM;
    x->c = c;
    x->done = done;
    x->arg = arg;
    x->started_ms = pl_mono_ms();
    int rc = curlev_prepare(x, req);
    if (rc == PL_OK && curl_multi_add_handle(c->multi, x->easy) != CURLM_OK)
        rc = PL_ENOMEM;
    if (rc != PL_OK) {
        curlev_xfer_free(x);
        return rc;
    }
    x->next = c->xfers;
    if (c->xfers != NULL)
        c->xfers->prev = x;
    c->xfers = x;
    c->inflight++;
    if (xfer_out != NULL)
        *xfer_out = x;
    return PL_OK;
}

void curlev_cancel(struct curlev *c, struct curlev_xfer *xfer)
{
    assert(c != NULL);
    if (xfer == NULL)
        return;
    assert(xfer->c == c);
    curl_multi_remove_handle(c->multi, xfer->easy); /* also drops its pending DONE message */
    curlev_unlink(c, xfer);
    curlev_xfer_free(xfer);
}

size_t curlev_inflight(const struct curlev *c)
{
    assert(c != NULL);
    return c->inflight;
}

int curlev_perform_blocking(const struct curlev_request *req, struct curlev_result *res)
{
    assert(req != NULL);
    assert(res != NULL);
    memset(res, 0, sizeof *res);
    res->outcome = CURLEV_BAD;
    res->error = "invalid request";
    if (!curlev_request_ok(req))
        return PL_EINVAL;
    if (curlev_global_init() != PL_OK)
        return PL_ENOMEM;
    struct curlev_xfer *x = calloc(1, sizeof *x);
    if (x == NULL)
        return PL_ENOMEM;
    x->started_ms = pl_mono_ms();
    int rc = curlev_prepare(x, req);
    if (rc != PL_OK) {
        curlev_xfer_free(x);
        return rc == PL_ERANGE ? PL_EINVAL : rc;
    }
    CURLcode code = curl_easy_perform(x->easy);
    res->outcome = curlev_outcome_of(code, x->resp_overflow);
    res->elapsed_ms = pl_mono_ms() - x->started_ms;
    res->error = curl_easy_strerror(code); /* a static string: outlives the handle */
    if (res->outcome == CURLEV_ANSWERED)
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &res->http_status);
    if (x->resp == NULL)
        x->resp = calloc(1, 1);
    if (x->resp == NULL) {
        curlev_xfer_free(x);
        return PL_ENOMEM;
    }
    res->body = x->resp;
    res->body_bytes = x->resp_bytes;
    x->resp = NULL; /* now the caller's, via curlev_result_free */
    curlev_xfer_free(x);
    return PL_OK;
}

void curlev_result_free(struct curlev_result *res)
{
    if (res == NULL)
        return;
    free((char *)res->body);
    res->body = NULL;
    res->body_bytes = 0;
}
