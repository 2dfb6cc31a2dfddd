/* test_http.c: the evhttp helpers and curlev together, over loopback in one event loop:
 * JSON replies and errors, the content-type / size / JSON checks, path decoding, queries,
 * bearer tokens, loopback peers, and curlev outcomes (answered, refused, timeout, over cap),
 * cancellation and starting transfers from a done callback; then the blocking client
 * against a server in a child process. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "curlev.h"
#include "http.h"
#include "json.h"
#include "pl.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define BIG_BYTES (CURLEV_RESPONSE_BYTES_MAX + 10)

struct server {
    struct event_base *base;
    struct evhttp *http;
    int port;
};

static void reply_bool(struct evhttp_request *req, const char *key, bool v)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, key, v);
    http_reply_json(req, 200, o);
    cJSON_Delete(o);
}

static void handle_echo(struct evhttp_request *req)
{
    cJSON *body = NULL;
    char *raw = NULL;
    size_t raw_bytes = 0;
    if (http_read_json(req, &body, &raw, &raw_bytes) != PL_OK)
        return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "raw", raw_bytes < 1024 ? raw : "(long)");
    cJSON_AddNumberToObject(o, "bytes", (double)raw_bytes);
    http_add_header(req, "Idempotent-Replayed", "true");
    http_reply_json(req, 200, o);
    cJSON_Delete(o);
    cJSON_Delete(body);
    free(raw);
}

static void handle(struct evhttp_request *req, void *arg)
{
    (void)arg;
    const char *path = http_path(req);
    char tail[64];
    if (path == NULL) {
        http_reply_error(req, 400, "bad_path", "unparsable");
    } else if (strcmp(path, "/echo") == 0) {
        handle_echo(req);
    } else if (http_path_tail(path, "/users/", tail, sizeof tail)) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "user", tail);
        cJSON_AddStringToObject(o, "method", http_method(req));
        http_reply_json(req, 200, o);
        cJSON_Delete(o);
    } else if (strcmp(path, "/query") == 0) {
        char ref[8];
        int rc = http_query_get(req, "reference", ref, sizeof ref);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "rc", rc);
        cJSON_AddStringToObject(o, "reference", rc == PL_OK ? ref : "");
        http_reply_json(req, 200, o);
        cJSON_Delete(o);
    } else if (strcmp(path, "/auth") == 0) {
        reply_bool(req, "ok", http_bearer_ok(req, "tok-123"));
    } else if (strcmp(path, "/loopback") == 0) {
        reply_bool(req, "loopback", http_peer_is_loopback(req));
    } else if (strcmp(path, "/err") == 0) {
        cJSON *extra = cJSON_CreateObject();
        cJSON_AddStringToObject(extra, "id", "wtx_1");
        cJSON_AddStringToObject(extra, "status", "unknown");
        http_reply_error_extra(req, 504, "bank_timeout", "no answer", extra);
        cJSON_Delete(extra);
    } else if (strcmp(path, "/big") == 0) {
        char *big = malloc(BIG_BYTES + 1);
        memset(big, ' ', BIG_BYTES);
        big[0] = '{';
        big[BIG_BYTES - 1] = '}';
        big[BIG_BYTES] = '\0';
        http_reply_raw(req, 200, big);
        free(big);
    } else if (strcmp(path, "/slow") == 0) {
        /* never answered: the client times out; evhttp frees it when the client leaves */
    } else {
        http_reply_error(req, 404, "not_found", "no such route");
    }
}

static void bound_port_cb(struct evhttp_bound_socket *bs, void *arg)
{
    int *port = arg;
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    evutil_socket_t fd = evhttp_bound_socket_get_fd(bs);
    if (getsockname(fd, (struct sockaddr *)&sa, &len) == 0 && sa.sin_family == AF_INET)
        *port = ntohs(sa.sin_port);
}

/* The port the kernel picked for our listener (http_listen was given port 0). */
static int bound_port(struct evhttp *http)
{
    int port = 0;
    evhttp_foreach_bound_socket(http, bound_port_cb, &port);
    return port;
}

static int setup(void **state)
{
    struct server *s = calloc(1, sizeof *s);
    assert_non_null(s);
    s->base = event_base_new();
    assert_non_null(s->base);
    s->http = http_listen(s->base, "127.0.0.1", 0, handle, s);
    assert_non_null(s->http);
    s->port = bound_port(s->http);
    assert_true(s->port > 0);
    *state = s;
    return 0;
}

static int teardown(void **state)
{
    struct server *s = *state;
    evhttp_free(s->http);
    event_base_free(s->base);
    free(s);
    return 0;
}

/* ------------------------------------------------------------ a small async client */

struct call {
    struct server *s;
    int pending; /* calls still running in this batch */
    struct curlev_result res;
    char body[4096];
    bool done;
};

static void on_done(const struct curlev_result *res, void *arg)
{
    struct call *c = arg;
    c->res = *res;
    pl_strlcpy(c->body, res->body, sizeof c->body);
    c->res.body = c->body;
    c->res.error = NULL;
    c->done = true;
}

/* Runs one request through curlev on the server's loop and waits for its answer. */
static void run(struct server *s, struct curlev *cv, struct curlev_request *req, struct call *c)
{
    memset(c, 0, sizeof *c);
    if (req->timeout_ms == 0)
        req->timeout_ms = 2000;
    if (req->connect_timeout_ms == 0)
        req->connect_timeout_ms = 1000;
    assert_int_equal(curlev_start(cv, req, on_done, c, NULL), PL_OK);
    int64_t deadline = pl_mono_ms() + 5000;
    while (!c->done && pl_mono_ms() < deadline)
        event_base_loop(s->base, EVLOOP_ONCE);
    assert_true(c->done);
}

static cJSON *run_json(struct server *s, struct curlev *cv, struct curlev_request *req,
                       long want_status)
{
    struct call c;
    run(s, cv, req, &c);
    assert_int_equal(c.res.outcome, CURLEV_ANSWERED);
    if (c.res.http_status != want_status)
        fail_msg("status %ld: %s", c.res.http_status, c.body);
    cJSON *o = json_parse_object(c.body, strlen(c.body));
    assert_non_null(o);
    return o;
}

static const char *str(const cJSON *o, const char *key)
{
    const char *v = NULL;
    assert_int_equal(json_get_string(o, key, true, 4096, &v), JSON_OK);
    return v;
}

static const char *error_code(const cJSON *o)
{
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "error");
    assert_non_null(e);
    return str(e, "code");
}

static void url(struct server *s, const char *path, char *out, size_t cap)
{
    snprintf(out, cap, "http://127.0.0.1:%d%s", s->port, path);
}

static void test_read_json(void **state)
{
    struct server *s = *state;
    struct curlev *cv = curlev_new(s->base);
    assert_non_null(cv);
    char u[128];
    url(s, "/echo", u, sizeof u);
    const char *body = "{\"a\":1}";
    struct curlev_request req = {.method = "POST",
                                 .url = u,
                                 .body = body,
                                 .body_bytes = 7,
                                 .headers = {"Content-Type: Application/JSON; charset=utf-8"}};
    cJSON *o = run_json(s, cv, &req, 200);
    assert_string_equal(str(o, "raw"), body);
    cJSON_Delete(o);

    req.headers[0] = "Content-Type: text/plain";
    o = run_json(s, cv, &req, 415);
    assert_string_equal(error_code(o), "unsupported_media_type");
    cJSON_Delete(o);
    req.headers[0] = "Content-Type: application/jsonx";
    o = run_json(s, cv, &req, 415);
    cJSON_Delete(o);
    req.headers[0] = NULL;
    o = run_json(s, cv, &req, 415);
    cJSON_Delete(o);

    req.headers[0] = "Content-Type: application/json";
    req.body = "{\"a\":";
    req.body_bytes = 5;
    o = run_json(s, cv, &req, 400);
    assert_string_equal(error_code(o), "malformed_json");
    cJSON_Delete(o);
    req.body = "[1]";
    req.body_bytes = 3;
    o = run_json(s, cv, &req, 400);
    cJSON_Delete(o);
    curlev_free(cv);
}

static void test_body_limits(void **state)
{
    struct server *s = *state;
    struct curlev *cv = curlev_new(s->base);
    char u[128];
    url(s, "/echo", u, sizeof u);
    size_t n = HTTP_BODY_BYTES_MAX + 1;
    char *body = malloc(n);
    memset(body, ' ', n);
    body[0] = '{';
    body[n - 2] = '}';
    struct curlev_request req = {.method = "POST",
                                 .url = u,
                                 .body = body,
                                 .body_bytes = n - 1,
                                 .headers = {"Content-Type: application/json"}};
    cJSON *o = run_json(s, cv, &req, 200); /* exactly 64 KiB: accepted */
    assert_true(cJSON_GetObjectItem(o, "bytes")->valuedouble == HTTP_BODY_BYTES_MAX);
    cJSON_Delete(o);
    body[n - 2] = ' ';
    body[n - 1] = '}';
    req.body_bytes = n;
    o = run_json(s, cv, &req, 413);
    assert_string_equal(error_code(o), "body_too_large");
    cJSON_Delete(o);
    free(body);
    curlev_free(cv);
}

static void test_paths_queries_auth(void **state)
{
    struct server *s = *state;
    struct curlev *cv = curlev_new(s->base);
    char u[256];
    url(s, "/users/al%69ce?x=1", u, sizeof u);
    struct curlev_request req = {.method = "GET", .url = u};
    cJSON *o = run_json(s, cv, &req, 200);
    assert_string_equal(str(o, "user"), "alice");
    assert_string_equal(str(o, "method"), "GET");
    cJSON_Delete(o);
    url(s, "/users/a%2Fb", u, sizeof u); /* a decoded '/' is not a segment */
    o = run_json(s, cv, &req, 404);
    cJSON_Delete(o);
    url(s, "/users/a%00b", u, sizeof u);
    o = run_json(s, cv, &req, 400);
    cJSON_Delete(o);
    url(s, "/users/", u, sizeof u);
    o = run_json(s, cv, &req, 404);
    cJSON_Delete(o);

    url(s, "/query?reference=wtx_1&b=2", u, sizeof u);
    o = run_json(s, cv, &req, 200);
    assert_string_equal(str(o, "reference"), "wtx_1");
    cJSON_Delete(o);
    url(s, "/query?reference=wtx_1234567", u, sizeof u);
    o = run_json(s, cv, &req, 200);
    assert_true(cJSON_GetObjectItem(o, "rc")->valuedouble == PL_ERANGE);
    cJSON_Delete(o);
    url(s, "/query?other=1", u, sizeof u);
    o = run_json(s, cv, &req, 200);
    assert_true(cJSON_GetObjectItem(o, "rc")->valuedouble == PL_ENOTFOUND);
    cJSON_Delete(o);

    url(s, "/auth", u, sizeof u);
    req.headers[0] = "Authorization: Bearer tok-123";
    o = run_json(s, cv, &req, 200);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(o, "ok")));
    cJSON_Delete(o);
    const char *bad[] = {"Authorization: Bearer tok-12", "Authorization: Bearer tok-1234",
                         "Authorization: Basic tok-123", "X-Other: 1"};
    for (size_t i = 0; i < PL_ARRAY_LEN(bad); i++) {
        req.headers[0] = bad[i];
        o = run_json(s, cv, &req, 200);
        assert_true(cJSON_IsFalse(cJSON_GetObjectItem(o, "ok")));
        cJSON_Delete(o);
    }
    req.headers[0] = NULL;
    url(s, "/loopback", u, sizeof u);
    o = run_json(s, cv, &req, 200);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(o, "loopback")));
    cJSON_Delete(o);
    curlev_free(cv);
}

static void test_error_extra(void **state)
{
    struct server *s = *state;
    struct curlev *cv = curlev_new(s->base);
    char u[128];
    url(s, "/err", u, sizeof u);
    struct curlev_request req = {.method = "GET", .url = u};
    cJSON *o = run_json(s, cv, &req, 504);
    assert_string_equal(error_code(o), "bank_timeout");
    assert_string_equal(str(o, "id"), "wtx_1");
    assert_string_equal(str(o, "status"), "unknown");
    cJSON_Delete(o);
    curlev_free(cv);
}

static void test_outcomes(void **state)
{
    struct server *s = *state;
    struct curlev *cv = curlev_new(s->base);
    char u[128];
    struct call c;
    /* a port nobody listens on: bind one, then close it */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t len = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &len);
    close(fd);
    snprintf(u, sizeof u, "http://127.0.0.1:%d/x", ntohs(sa.sin_port));
    struct curlev_request req = {
        .method = "POST", .url = u, .body = "{}", .body_bytes = 2, .fresh_connect = true};
    run(s, cv, &req, &c);
    assert_int_equal(c.res.outcome, CURLEV_REFUSED);
    assert_int_equal(c.res.http_status, 0);

    url(s, "/slow", u, sizeof u);
    req.timeout_ms = 200;
    run(s, cv, &req, &c);
    assert_int_equal(c.res.outcome, CURLEV_TIMEOUT);
    assert_true(c.res.elapsed_ms >= 150);

    url(s, "/big", u, sizeof u);
    req.timeout_ms = 0;
    req.method = "GET";
    req.body = NULL;
    req.body_bytes = 0;
    run(s, cv, &req, &c);
    assert_int_equal(c.res.outcome, CURLEV_BAD);

    snprintf(u, sizeof u, "ftp://127.0.0.1:%d/x", s->port);
    run(s, cv, &req, &c);
    assert_int_equal(c.res.outcome, CURLEV_BAD);
    assert_int_equal(curlev_inflight(cv), 0);
    curlev_free(cv);
}

static void test_start_errors(void **state)
{
    struct server *s = *state;
    struct curlev *cv = curlev_new(s->base);
    struct call c;
    struct curlev_request req = {.method = "GET", .url = "http://127.0.0.1:1/"};
    assert_int_equal(curlev_start(cv, &req, on_done, &c, NULL), PL_EINVAL); /* no timeouts */
    req.timeout_ms = 100;
    req.connect_timeout_ms = 100;
    for (int i = 0; i < CURLEV_HEADERS_MAX; i++)
        req.headers[i] = "X-A: 1";
    req.headers[CURLEV_HEADERS_MAX] = NULL;
    struct curlev_xfer *x = NULL;
    assert_int_equal(curlev_start(cv, &req, on_done, &c, &x), PL_OK); /* 16 headers fit */
    assert_non_null(x);
    curlev_cancel(cv, x);
    assert_int_equal(curlev_inflight(cv), 0);
    curlev_free(cv);
}

/* Batch test: a done callback that starts a new transfer and cancels another. */
struct batch {
    struct curlev *cv;
    struct curlev_request req;
    struct curlev_xfer *victim;
    int done_count;
    bool victim_called;
    bool chained;
};

static void on_victim(const struct curlev_result *res, void *arg)
{
    (void)res;
    struct batch *b = arg;
    b->victim_called = true;
}

static void on_chained(const struct curlev_result *res, void *arg)
{
    struct batch *b = arg;
    assert_int_equal(res->outcome, CURLEV_ANSWERED);
    b->done_count++;
}

static void on_first(const struct curlev_result *res, void *arg)
{
    struct batch *b = arg;
    assert_int_equal(res->outcome, CURLEV_ANSWERED);
    b->done_count++;
    curlev_cancel(b->cv, b->victim);
    b->victim = NULL;
    assert_int_equal(curlev_start(b->cv, &b->req, on_chained, b, NULL), PL_OK);
    b->chained = true;
}

static void test_reentrancy(void **state)
{
    struct server *s = *state;
    struct batch b = {.cv = curlev_new(s->base)};
    char fast[128], slow[128];
    url(s, "/users/bob", fast, sizeof fast);
    url(s, "/slow", slow, sizeof slow);
    b.req = (struct curlev_request){
        .method = "GET", .url = fast, .timeout_ms = 2000, .connect_timeout_ms = 1000};
    struct curlev_request slow_req = b.req;
    slow_req.url = slow;
    assert_int_equal(curlev_start(b.cv, &slow_req, on_victim, &b, &b.victim), PL_OK);
    assert_int_equal(curlev_start(b.cv, &b.req, on_first, &b, NULL), PL_OK);
    assert_int_equal(curlev_inflight(b.cv), 2);
    int64_t deadline = pl_mono_ms() + 5000;
    while (b.done_count < 2 && pl_mono_ms() < deadline)
        event_base_loop(s->base, EVLOOP_ONCE);
    assert_int_equal(b.done_count, 2);
    assert_true(b.chained);
    assert_false(b.victim_called);
    assert_int_equal(curlev_inflight(b.cv), 0);
    /* freeing with a transfer in flight cancels it without calling back */
    assert_int_equal(curlev_start(b.cv, &slow_req, on_victim, &b, NULL), PL_OK);
    event_base_loop(s->base, EVLOOP_NONBLOCK);
    curlev_free(b.cv);
    assert_false(b.victim_called);
}

static void test_blocking(void **state)
{
    struct server *s = *state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        event_reinit(s->base);
        event_base_dispatch(s->base);
        _exit(0);
    }
    char u[128];
    url(s, "/users/carol", u, sizeof u);
    struct curlev_request req = {
        .method = "GET", .url = u, .timeout_ms = 2000, .connect_timeout_ms = 1000};
    struct curlev_result res;
    assert_int_equal(curlev_perform_blocking(&req, &res), PL_OK);
    assert_int_equal(res.outcome, CURLEV_ANSWERED);
    assert_int_equal(res.http_status, 200);
    assert_non_null(strstr(res.body, "\"user\":\"carol\""));
    curlev_result_free(&res);
    url(s, "/slow", u, sizeof u);
    req.timeout_ms = 200;
    assert_int_equal(curlev_perform_blocking(&req, &res), PL_OK);
    assert_int_equal(res.outcome, CURLEV_TIMEOUT);
    assert_non_null(res.error);
    curlev_result_free(&res);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_read_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_paths_queries_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_extra, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outcomes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reentrancy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blocking, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
