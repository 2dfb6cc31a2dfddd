/* api.c owns the gateway's HTTP routing: POST /v1/webhooks/bank goes to webhooks.c; GET
 * /healthz and GET /metrics are answered here; anything else is a JSON 404 or 405.
 * Must not: look at a webhook's body or headers (webhooks.c verifies them first), or block.
 * Invariant: every request routed here gets exactly one reply, or is handed to
 * webhooks_handle, which then owns it. Route labels of the metrics are a fixed set, so a
 * scanner's random paths cannot grow the series table. */
#include "gateway.h"

#include <assert.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <string.h>

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
    log_debug("no such route", "method=%s status=404", http_method(req));
    http_reply_error(req, 404, "not_found", "no such route");
    api_observe(ctx, "other", 404, start_us);
}
