/* api.c owns the gateway's HTTP routing: POST /v1/webhooks/bank goes to webhooks.c; GET
 * /healthz, GET /metrics, the dashboard (GET /, /app.js, /style.css from --web-dir) and GET
 * /config.json are answered here; anything else is a JSON 404 or 405.
 * Must not: look at a webhook's body or headers (webhooks.c verifies them first), serve any
 * file but the dashboard's three (a fixed table: no path from the request ever reaches the
 * file system), or block (the files are small and local).
 * Invariant: every request routed here gets exactly one reply, or is handed to
 * webhooks_handle, which then owns it. Route labels of the metrics are a fixed set, so a
 * scanner's random paths cannot grow the series table. */
#include "gateway.h"

#include <assert.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http.h"
#include "log.h"
#include "metrics.h"
#include "pl.h"

void api_observe(struct gateway_ctx *ctx, const char *route, int status, int64_t start_us)
{
    metrics_http_observe(ctx->metrics, route, status, start_us);
}

/* GET only; otherwise answers 405 with Allow and returns false. */
static bool api_get_only(struct gateway_ctx *ctx, struct evhttp_request *req, const char *route,
                         int64_t start_us)
{
    if (evhttp_request_get_command(req) == EVHTTP_REQ_GET)
        return true;
    http_add_header(req, "Allow", "GET");
    http_reply_error(req, 405, "method_not_allowed", "use GET");
    api_observe(ctx, route, 405, start_us);
    return false;
}

static void api_healthz(struct gateway_ctx *ctx, struct evhttp_request *req, int64_t start_us)
{
    if (!api_get_only(ctx, req, "/healthz", start_us))
        return;
    http_reply_raw(
        req, 200, "{\"status\":\"ok\",\"service\":\"gateway\",\"version\":\"" PAYLAB_VERSION "\"}");
    api_observe(ctx, "/healthz", 200, start_us);
}

/* ===================================================================== dashboard ==== */

/* The only files served: request path → file in --web-dir, with its media type. */
struct api_file {
    const char *route;
    const char *file;
    const char *type;
};

static const struct api_file api_files[] = {
    {"/", "index.html", "text/html; charset=utf-8"},
    {"/index.html", "index.html", "text/html; charset=utf-8"},
    {"/app.js", "app.js", "text/javascript; charset=utf-8"},
    {"/style.css", "style.css", "text/css; charset=utf-8"},
};

/* Reads dir/name (a regular file ≤ GATEWAY_WEB_FILE_BYTES_MAX) into out. 0, PL_ENOTFOUND,
 * PL_ERANGE (too large) or PL_EIO. */
static int api_read_file(const char *dir, const char *name, struct evbuffer *out)
{
    char path[CONFIG_STR_BYTES_MAX + 32];
    int n = snprintf(path, sizeof path, "%s/%s", dir, name);
    if (n <= 0 || (size_t)n >= sizeof path)
        return PL_ERANGE;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return PL_ENOTFOUND;
    struct stat st;
    int rc = PL_OK;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        rc = PL_ENOTFOUND;
    else if (st.st_size > GATEWAY_WEB_FILE_BYTES_MAX)
        rc = PL_ERANGE;
    size_t left = rc == PL_OK ? (size_t)st.st_size : 0;
    while (rc == PL_OK && left > 0) {
        int got = evbuffer_read(out, fd, (int)left);
        if (got <= 0)
            rc = got == 0 ? PL_OK : PL_EIO; /* a file that shrank is served as it is now */
        if (got <= 0)
            break;
        left -= (size_t)got;
    }
    close(fd);
    return rc;
}

/* The dashboard is edited in place by students: never cached, never sniffed. */
static void api_static_headers(struct evhttp_request *req, const char *type)
{
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    evhttp_add_header(out, "Content-Type", type);
    evhttp_add_header(out, "Cache-Control", "no-cache");
    evhttp_add_header(out, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(out, "Referrer-Policy", "no-referrer");
}

static void api_static(struct gateway_ctx *ctx, struct evhttp_request *req,
                       const struct api_file *f, int64_t start_us)
{
    if (!api_get_only(ctx, req, f->route, start_us))
        return;
    struct evbuffer *buf = evbuffer_new();
    int rc = buf != NULL ? api_read_file(ctx->cfg.web_dir, f->file, buf) : PL_ENOMEM;
    if (rc != PL_OK) {
        int status = rc == PL_ENOTFOUND ? 404 : 500;
        log_warn("dashboard file not served", "file=%s web_dir=\"%s\" rc=%d fix=\"%s\"", f->file,
                 ctx->cfg.web_dir, rc, "point --web-dir at webhook-gateway/web");
        http_reply_error(req, status, status == 404 ? "not_found" : "internal",
                         "dashboard file missing or unreadable: check --web-dir");
        api_observe(ctx, f->route, status, start_us);
    } else {
        api_static_headers(req, f->type);
        evhttp_send_reply(req, 200, "OK", buf);
        api_observe(ctx, f->route, 200, start_us);
    }
    if (buf != NULL)
        evbuffer_free(buf);
}

/* The host the dashboard should use for this gateway: --bind, or 127.0.0.1 for a wildcard,
 * bracketed when IPv6. */
static void api_public_host(const struct gateway_config *cfg, char *out, size_t cap)
{
    const char *b = cfg->bind;
    if (b[0] == '\0' || strcmp(b, "0.0.0.0") == 0 || strcmp(b, "::") == 0)
        b = "127.0.0.1";
    bool v6 = strchr(b, ':') != NULL;
    snprintf(out, cap, "%s%s%s", v6 ? "[" : "", b, v6 ? "]" : "");
}

/* Adds our ws URL, then each --peer-ws entry, to the array. */
static void api_ws_urls(const struct gateway_config *cfg, const char *own, cJSON *urls)
{
    cJSON_AddItemToArray(urls, cJSON_CreateString(own));
    const char *p = cfg->peer_ws;
    while (*p != '\0') {
        const char *end = strchr(p, ',');
        size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
        char url[CONFIG_STR_BYTES_MAX];
        if (n > 0 && n < sizeof url) {
            memcpy(url, p, n);
            url[n] = '\0';
            cJSON_AddItemToArray(urls, cJSON_CreateString(url));
        }
        p += n;
        if (*p == ',')
            p++;
    }
}

/* GET /config.json: where the dashboard finds the gateways, the wallet and the bank. */
static void api_config(struct gateway_ctx *ctx, struct evhttp_request *req, int64_t start_us)
{
    if (!api_get_only(ctx, req, "/config.json", start_us))
        return;
    const struct gateway_config *cfg = &ctx->cfg;
    char host[CONFIG_STR_BYTES_MAX + 2], gateway[CONFIG_STR_BYTES_MAX + 16];
    char ws_url[CONFIG_STR_BYTES_MAX + 32];
    api_public_host(cfg, host, sizeof host);
    snprintf(gateway, sizeof gateway, "%s:%lld", host, (long long)cfg->http_port);
    snprintf(ws_url, sizeof ws_url, "ws://%s:%lld/ws", host, (long long)cfg->ws_port);
    cJSON *o = cJSON_CreateObject();
    cJSON *urls = o != NULL ? cJSON_CreateArray() : NULL;
    if (urls == NULL) {
        cJSON_Delete(o);
        http_reply_error(req, 500, "internal", "out of memory");
        api_observe(ctx, "/config.json", 500, start_us);
        return;
    }
    cJSON_AddStringToObject(o, "gateway", gateway);
    cJSON_AddStringToObject(o, "ws_url", ws_url);
    api_ws_urls(cfg, ws_url, urls);
    cJSON_AddItemToObject(o, "ws_urls", urls);
    cJSON_AddStringToObject(o, "wallet_url", cfg->wallet_url);
    cJSON_AddStringToObject(o, "bank_url", cfg->bank_url);
    http_add_header(req, "Cache-Control", "no-cache");
    http_reply_json(req, 200, o);
    api_observe(ctx, "/config.json", 200, start_us);
    cJSON_Delete(o);
}

/* ===================================================================== metrics ====== */

/* Adds what a zbus counter gained since the last scrape (zbus counts are absolute). */
static void api_zmq_counter(struct gateway_ctx *ctx, const char *direction, unsigned long now,
                            unsigned long *seen)
{
    char labels[64];
    int n = snprintf(labels, sizeof labels, "socket=\"dealer\",direction=\"%s\"", direction);
    assert(n > 0 && (size_t)n < sizeof labels);
    assert(now >= *seen);
    metrics_counter_add(ctx->metrics, "paylab_zmq_messages_total", labels, now - *seen);
    *seen = now;
}

static void api_metrics(struct gateway_ctx *ctx, struct evhttp_request *req, int64_t start_us)
{
    if (!api_get_only(ctx, req, "/metrics", start_us))
        return;
    metrics_gauge_set(ctx->metrics, "paylab_gateway_relays_in_flight", "",
                      (double)webhooks_in_flight(ctx));
    metrics_gauge_set(ctx->metrics, "paylab_gateway_relays_in_flight_max", "",
                      (double)ctx->cfg.max_inflight);
    /* Created at zero on every scrape, so a dashboard sees the series before the first one. */
    metrics_counter_add(ctx->metrics, "paylab_gateway_ack_timeouts_total", "", 0);
    if (ctx->dealer != NULL) {
        api_zmq_counter(ctx, "sent", zbus_sent_count(ctx->dealer), &ctx->zmq_sent_seen);
        api_zmq_counter(ctx, "received", zbus_received_count(ctx->dealer), &ctx->zmq_received_seen);
        api_zmq_counter(ctx, "dropped", zbus_dropped_count(ctx->dealer), &ctx->zmq_dropped_seen);
    }
    hub_export_metrics(ctx);
    api_observe(ctx, "/metrics", 200, start_us); /* counted before rendering, like the rest */
    struct evbuffer *buf = evbuffer_new();
    if (buf == NULL) {
        http_reply_error(req, 500, "internal", "out of memory");
        return;
    }
    metrics_render(ctx->metrics, buf);
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    evhttp_add_header(out, "Content-Type", "text/plain; version=0.0.4");
    evhttp_add_header(out, "Cache-Control", "no-store");
    evhttp_send_reply(req, 200, "OK", buf);
    evbuffer_free(buf);
}

void api_handle(struct evhttp_request *req, void *arg)
{
    struct gateway_ctx *ctx = arg;
    int64_t start_us = pl_now_us();
    const char *path = http_path(req);
    if (path != NULL && strcmp(path, "/v1/webhooks/bank") == 0) {
        webhooks_handle(ctx, req, start_us);
        return;
    }
    if (path != NULL && strcmp(path, "/healthz") == 0) {
        api_healthz(ctx, req, start_us);
        return;
    }
    if (path != NULL && strcmp(path, "/metrics") == 0) {
        api_metrics(ctx, req, start_us);
        return;
    }
    if (path != NULL && strcmp(path, "/config.json") == 0) {
        api_config(ctx, req, start_us);
        return;
    }
    for (size_t i = 0; path != NULL && i < PL_ARRAY_LEN(api_files); i++) {
        if (strcmp(path, api_files[i].route) == 0) {
            api_static(ctx, req, &api_files[i], start_us);
            return;
        }
    }
    log_debug("no such route", "method=%s status=404", http_method(req));
    http_reply_error(req, 404, "not_found", "no such route");
    api_observe(ctx, "other", 404, start_us);
}
