/* http.c owns the evhttp plumbing every service shares: the listener and its limits, JSON
 * replies and the error body of docs/api.md, reading a JSON body, and request accessors.
 * Must not: decide business outcomes, or reply twice: each reply helper sends exactly one
 * reply, and every failure path of http_read_json has sent exactly one.
 * Invariant: every reply carries Content-Type: application/json and Cache-Control: no-store,
 * and no reply body ever holds a stack, SQL text or a secret. */
#include "http.h"

#include "json.h"
#include "log.h"
#include "pl.h"
#include "sign.h"

#include <arpa/inet.h>
#include <assert.h>
#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The decoded path lives among the request's own input headers under a name no client can
 * send (a header name never contains ':'), so it is freed with the request. */
#define HTTP_PATH_HEADER ":paylab-decoded-path"

struct evhttp *http_listen(struct event_base *base, const char *bind_addr, int port,
                           void (*gencb)(struct evhttp_request *, void *), void *arg)
{
    assert(base != NULL);
    assert(bind_addr != NULL);
    assert(gencb != NULL);
    if (port < 0 || port > 65535)
        return NULL;
    struct evhttp *http = evhttp_new(base);
    if (http == NULL) {
        log_error("cannot create the HTTP server", "addr=%s port=%d", bind_addr, port);
        return NULL;
    }
    evhttp_set_max_body_size(http, HTTP_BODY_BYTES_HARD_MAX);
    evhttp_set_max_headers_size(http, HTTP_HEADERS_BYTES_MAX);
    evhttp_set_timeout(http, HTTP_CONN_TIMEOUT_S);
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                         EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_HEAD);
    evhttp_set_gencb(http, gencb, arg);
    if (evhttp_bind_socket_with_handle(http, bind_addr, (ev_uint16_t)port) == NULL) {
        log_error("cannot listen", "addr=%s port=%d fix=\"%s\"", bind_addr, port,
                  "is another process using this port? pick one with --http-port");
        evhttp_free(http);
        return NULL;
    }
    return http;
}

static void http_send(struct evhttp_request *req, int status, const char *body, size_t len)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    evhttp_remove_header(out, "Content-Type");
    evhttp_add_header(out, "Content-Type", "application/json");
    evhttp_remove_header(out, "Cache-Control");
    evhttp_add_header(out, "Cache-Control", "no-store");
    struct evbuffer *buf = evbuffer_new();
    if (buf == NULL || evbuffer_add(buf, body, len) != 0) {
        /* Out of memory: still exactly one reply, without a body. */
        evhttp_send_reply(req, 500, NULL, NULL);
    } else {
        evhttp_send_reply(req, status, NULL, buf);
    }
    if (buf != NULL)
        evbuffer_free(buf);
}

void http_reply_raw(struct evhttp_request *req, int status, const char *body_json)
{
    assert(req != NULL);
    assert(body_json != NULL);
    http_send(req, status, body_json, strlen(body_json));
}

void http_reply_json(struct evhttp_request *req, int status, const cJSON *obj)
{
    assert(req != NULL);
    assert(obj != NULL);
    char *text = json_print(obj);
    if (text == NULL) {
        http_reply_raw(req, 500,
                       "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}");
        return;
    }
    http_reply_raw(req, status, text);
    free(text);
}

void http_reply_error_extra(struct evhttp_request *req, int status, const char *code,
                            const char *message, const cJSON *extra)
{
    assert(req != NULL);
    assert(code != NULL);
    cJSON *root = cJSON_CreateObject();
    cJSON *err = cJSON_CreateObject();
    bool ok = root != NULL && err != NULL;
    ok = ok && cJSON_AddStringToObject(err, "code", code) != NULL;
    ok = ok && cJSON_AddStringToObject(err, "message", message != NULL ? message : "") != NULL;
    if (ok) {
        cJSON_AddItemToObject(root, "error", err);
        err = NULL;
    }
    const cJSON *member = NULL;
    cJSON_ArrayForEach(member, extra)
    {
        if (!ok || member->string == NULL || strcmp(member->string, "error") == 0)
            continue;
        cJSON *copy = cJSON_Duplicate(member, 1);
        ok = copy != NULL && cJSON_AddItemToObject(root, member->string, copy);
        if (!ok)
            cJSON_Delete(copy);
    }
    if (ok)
        http_reply_json(req, status, root);
    else
        http_reply_raw(req, 500,
                       "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}");
    cJSON_Delete(err);
    cJSON_Delete(root);
}

void http_reply_error(struct evhttp_request *req, int status, const char *code, const char *message)
{
    http_reply_error_extra(req, status, code, message, NULL);
}

void http_add_header(struct evhttp_request *req, const char *name, const char *value)
{
    assert(req != NULL);
    assert(name != NULL && value != NULL);
    evhttp_add_header(evhttp_request_get_output_headers(req), name, value);
}

/* True for "application/json", any case, optionally followed by parameters. */
bool http_is_json_type(const char *ct)
{
    if (ct == NULL)
        return false;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    const char *want = "application/json";
    size_t n = strlen(want);
    if (strncasecmp(ct, want, n) != 0)
        return false;
    char next = ct[n];
    return next == '\0' || next == ';' || next == ' ' || next == '\t';
}

int http_read_json(struct evhttp_request *req, cJSON **out, char **raw, size_t *raw_bytes)
{
    assert(req != NULL);
    assert(out != NULL);
    *out = NULL;
    if (raw != NULL)
        *raw = NULL;
    if (raw_bytes != NULL)
        *raw_bytes = 0;
    if (!http_is_json_type(http_header(req, "Content-Type"))) {
        http_reply_error(req, 415, "unsupported_media_type",
                         "the body must be JSON (Content-Type: application/json)");
        return PL_EINVAL;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    if (len > HTTP_BODY_BYTES_MAX) {
        http_reply_error(req, 413, "body_too_large", "the body is larger than 64 KiB");
        return PL_EINVAL;
    }
    const char *body = len > 0 ? (const char *)evbuffer_pullup(in, (ev_ssize_t)len) : NULL;
    cJSON *obj = body != NULL ? json_parse_object(body, len) : NULL;
    if (obj == NULL) {
        http_reply_error(req, 400, "malformed_json",
                         "the body must be one JSON object, nested at most 16 deep");
        return PL_EINVAL;
    }
    if (raw != NULL) {
        *raw = malloc(len + 1);
        if (*raw == NULL) {
            cJSON_Delete(obj);
            http_reply_error(req, 500, "internal", "out of memory");
            return PL_ENOMEM;
        }
        memcpy(*raw, body, len);
        (*raw)[len] = '\0';
        if (raw_bytes != NULL)
            *raw_bytes = len;
    }
    *out = obj;
    return PL_OK;
}

const char *http_path(struct evhttp_request *req)
{
    assert(req != NULL);
    struct evkeyvalq *in = evhttp_request_get_input_headers(req);
    const char *cached = evhttp_find_header(in, HTTP_PATH_HEADER);
    if (cached != NULL)
        return cached;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *raw = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
    if (raw == NULL)
        return NULL;
    size_t len = 0;
    char *decoded = evhttp_uridecode(raw, 0, &len);
    if (decoded == NULL)
        return NULL;
    /* "%00" would hide the rest of the path; a path with CR/LF cannot be stored as a value. */
    bool ok = strlen(decoded) == len && strpbrk(decoded, "\r\n") == NULL;
    ok = ok && evhttp_add_header(in, HTTP_PATH_HEADER, decoded) == 0;
    free(decoded);
    return ok ? evhttp_find_header(in, HTTP_PATH_HEADER) : NULL;
}

bool http_path_tail(const char *path, const char *prefix, char *out, size_t cap)
{
    assert(prefix != NULL);
    assert(out != NULL && cap > 0);
    if (path == NULL)
        return false;
    size_t n = strlen(prefix);
    if (strncmp(path, prefix, n) != 0)
        return false;
    const char *tail = path + n;
    if (tail[0] == '\0' || strchr(tail, '/') != NULL)
        return false;
    return pl_strlcpy(out, tail, cap) == PL_OK;
}

int http_query_get(struct evhttp_request *req, const char *key, char *out, size_t cap)
{
    assert(req != NULL);
    assert(key != NULL);
    assert(out != NULL && cap > 0);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *query = uri != NULL ? evhttp_uri_get_query(uri) : NULL;
    if (query == NULL)
        return PL_ENOTFOUND;
    struct evkeyvalq params = {0};
    if (evhttp_parse_query_str(query, &params) != 0) {
        evhttp_clear_headers(&params);
        return PL_ENOTFOUND;
    }
    const char *value = evhttp_find_header(&params, key);
    int rc = PL_ENOTFOUND;
    if (value != NULL)
        rc = pl_strlcpy(out, value, cap);
    evhttp_clear_headers(&params);
    return rc;
}

const char *http_header(struct evhttp_request *req, const char *name)
{
    assert(req != NULL);
    assert(name != NULL);
    return evhttp_find_header(evhttp_request_get_input_headers(req), name);
}

bool http_peer_is_loopback(struct evhttp_request *req)
{
    assert(req != NULL);
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    if (conn == NULL)
        return false;
    char *addr = NULL;
    ev_uint16_t port = 0;
    evhttp_connection_get_peer(conn, &addr, &port);
    if (addr == NULL)
        return false;
    struct in_addr v4;
    struct in6_addr v6;
    if (inet_pton(AF_INET, addr, &v4) == 1)
        return (ntohl(v4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, addr, &v6) != 1)
        return false;
    if (IN6_IS_ADDR_LOOPBACK(&v6))
        return true;
    return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
}

bool http_bearer_ok(struct evhttp_request *req, const char *token)
{
    assert(req != NULL);
    assert(token != NULL && token[0] != '\0'); /* an empty secret would accept anyone */
    const char *auth = http_header(req, "Authorization");
    if (auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0)
        return false;
    const char *given = auth + 7;
    while (*given == ' ')
        given++;
    return sign_equal(given, token);
}

const char *http_method(struct evhttp_request *req)
{
    assert(req != NULL);
    switch (evhttp_request_get_command(req)) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    case EVHTTP_REQ_OPTIONS:
        return "OPTIONS";
    case EVHTTP_REQ_TRACE:
        return "TRACE";
    case EVHTTP_REQ_CONNECT:
        return "CONNECT";
    case EVHTTP_REQ_PATCH:
        return "PATCH";
    }
    return "UNKNOWN";
}
