/* gateway.h: the webhook-gateway's one context struct and the contracts between its files:
 * main.c (the process: flags, loop, signals, startup, shutdown), api.c (HTTP routing,
 * /healthz, /metrics, the dashboard's files and /config.json), webhooks.c (POST
 * /v1/webhooks/bank: verify, relay, hold, answer) and ws_hub.c (the WebSocket listener, the
 * ZMQ SUB for events and the per-user streams of docs/realtime.md). Nothing here is exported beyond
 * the webhook-gateway binary. */
#ifndef PAYLAB_GATEWAY_H
#define PAYLAB_GATEWAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "secrets.h"
#include "zbus.h"

struct event;
struct event_base;
struct hub;
struct evhttp;
struct evhttp_request;
struct metrics;
struct webhooks;

/* ---- limits ---------------------------------------------------------------------------- */

/* Relays waiting for an ack (--max-inflight). Each holds a bank connection open; the table
 * is allocated once at startup, so its size is bounded here. */
#define GATEWAY_INFLIGHT_MAX 65536
/* --ack-timeout-ms: a relay holds the bank's request at most this long. The bank waits
 * --webhook-timeout-ms (5000 by default) and should wait longer than we do (docs/api.md). */
#define GATEWAY_ACK_TIMEOUT_MS_MAX 60000
/* ZMQ high-water mark of the DEALER, both ways. While the wallet is unreachable the DEALER
 * queues relays up to this many; past it a send is refused at once (503) instead. */
#define GATEWAY_ZMQ_HWM 1000
/* A request id on the bus: "<8 hex>.<slot>.<generation>" (≤ 8 + 1 + 5 + 1 + 10 + NUL). */
#define GATEWAY_REQUEST_ID_BYTES_MAX 32
/* The Retry-After we send with 429 and 503: the bank's own backoff decides beyond it. */
#define GATEWAY_RETRY_AFTER_S "1"
/* After a signal, how long the loop keeps running so the 503s already queued reach the bank. */
#define GATEWAY_SHUTDOWN_FLUSH_MS 200

/* --max-connections: open WebSocket connections; beyond, a new one gets 503 (ws.c). Each
 * costs a socket and up to WS_QUEUE_BYTES_MAX of queue, so the bound is explicit. */
#define GATEWAY_WS_CONNECTIONS_MAX 200000
/* --peer-ws: other gateways' WebSocket URLs listed in /config.json for the dashboard. */
#define GATEWAY_PEERS_MAX 8
/* A dashboard file (index.html, app.js, style.css) larger than this is refused (500). */
#define GATEWAY_WEB_FILE_BYTES_MAX (1024 * 1024)

_Static_assert(GATEWAY_INFLIGHT_MAX <= 99999, "a slot index fits the 5 digits of a request id");

/* ---- configuration (docs/api.md: flags and PAYLAB_GATEWAY_* variables) ------------------ */

struct gateway_config {
    int64_t http_port;                         /* --http-port: webhooks, health, metrics */
    int64_t ws_port;                           /* --ws-port: the WebSocket listener (GET /ws) */
    char bind[CONFIG_STR_BYTES_MAX];           /* --bind: every listener's address */
    char data_dir[CONFIG_STR_BYTES_MAX];       /* --data-dir: secrets/ live here */
    char wallet_url[CONFIG_STR_BYTES_MAX];     /* --wallet-url: snapshots, replays, gap fills */
    char zmq_router[CONFIG_STR_BYTES_MAX];     /* --zmq-router: the wallet's webhook intake */
    char zmq_pub[CONFIG_STR_BYTES_MAX];        /* --zmq-pub: the wallet's events (SUB) */
    char allowed_origin[CONFIG_STR_BYTES_MAX]; /* --allowed-origin: comma-separated */
    int64_t ack_timeout_ms;                    /* --ack-timeout-ms: then 503, the bank retries */
    int64_t max_inflight;                      /* --max-inflight: then 429 + Retry-After */
    char log_level[CONFIG_STR_BYTES_MAX];      /* --log-level */
    int64_t max_connections;                   /* --max-connections: WebSocket connections */
    char web_dir[CONFIG_STR_BYTES_MAX];        /* --web-dir: the dashboard's three files */
    char peer_ws[CONFIG_STR_BYTES_MAX];        /* --peer-ws: other gateways' ws:// URLs */
    char bank_url[CONFIG_STR_BYTES_MAX];       /* --bank-url: for the dashboard's fault panel */
    double drop_events_rate; /* --drop-events-rate: fault injection, events lost on the SUB */
};

/* ---- the process's one context (built in main.c) --------------------------------------- */

struct gateway_ctx {
    struct gateway_config cfg;
    struct event_base *base;
    struct evhttp *http;       /* the HTTP listener (--http-port) */
    void *zctx;                /* the libzmq context every zbus socket shares */
    struct zbus *dealer;       /* DEALER connected to --zmq-router: relays out, acks in */
    struct metrics *metrics;   /* Prometheus series of /metrics */
    struct webhooks *webhooks; /* the relays waiting for their ack (webhooks.c) */
    struct hub *hub;           /* WebSocket clients, the SUB and the per-user streams */
    char webhook_secret[SECRET_BYTES_MAX]; /* "whsec_…"; never logged */
    char token_secret[SECRET_BYTES_MAX]; /* verifies ws_tokens (docs/architecture.md); never logged
                                          */
    char admin_token[SECRET_BYTES_MAX];  /* lets a client subscribe to "*"; never logged */
    bool draining;                       /* a signal arrived: new webhooks get 503 */
    /* zbus counters already added to /metrics (they are absolute; metrics only adds). */
    unsigned long zmq_sent_seen;
    unsigned long zmq_received_seen;
    unsigned long zmq_dropped_seen;
};

/* ---- api.c ----------------------------------------------------------------------------- */

/* evhttp's callback for every request on the HTTP listener (arg: the gateway_ctx). Routes to
 * webhooks_handle, /healthz and /metrics; 404/405 JSON otherwise. Exactly one reply, or a
 * hold owned by webhooks.c. */
void api_handle(struct evhttp_request *req, void *arg);
/* Counts one answered request in paylab_http_requests_total and the latency histogram. */
void api_observe(struct gateway_ctx *ctx, const char *route, int status, int64_t start_us);

/* ---- webhooks.c ------------------------------------------------------------------------ */

/* Allocates the relay table (cfg.max_inflight slots) and picks this process's request-id
 * prefix. 0, PL_ENOMEM or PL_EIO (no randomness). Freed by webhooks_free. */
int webhooks_new(struct gateway_ctx *ctx);
/* Frees the table. Every relay must have been answered or aborted before. */
void webhooks_free(struct gateway_ctx *ctx);

/* POST /v1/webhooks/bank (and its 405). start_us: pl_now_us() at arrival, also the relay's
 * received_at_us. Replies at once (401, 4xx, 429, 503) or holds the request until the ack,
 * the ack deadline or the client leaving; never replies twice, never to a dead request. */
void webhooks_handle(struct gateway_ctx *ctx, struct evhttp_request *req, int64_t start_us);

/* The DEALER's zbus_recv_fn (arg: the gateway_ctx): one ack [request_id][{"result":…}]. An
 * ack nobody waits for any more (timed out, client gone) is dropped and counted. */
void webhooks_on_ack(const struct zbus_frame *frames, size_t frames_count, void *arg);

/* Answers every waiting relay 503 + Retry-After (shutdown). */
void webhooks_abort_all(struct gateway_ctx *ctx);

/* Relays waiting for their ack now. */
size_t webhooks_in_flight(const struct gateway_ctx *ctx);

/* ---- ws_hub.c -------------------------------------------------------------------------- */

/* Creates the hub: its curl multi (wallet fetches), the SUB connected to --zmq-pub
 * (subscribed to "sys.heads" only; user topics follow the clients) and its timers.
 * 0, PL_ENOMEM or PL_EIO. Freed by hub_free. */
int hub_new(struct gateway_ctx *ctx);
/* Opens the WebSocket listener on --bind:--ws-port, path "/ws", --allowed-origin,
 * --max-connections. 0 or PL_EIO (logged). */
int hub_listen(struct gateway_ctx *ctx);
/* Closes every connection (1001; their state is freed), the listener, the SUB, the fetches.
 * Safe on a partly created hub and on NULL. */
void hub_free(struct gateway_ctx *ctx);
/* Adds the hub's series to ctx->metrics (counters as deltas since the last call). */
void hub_export_metrics(struct gateway_ctx *ctx);

#endif
