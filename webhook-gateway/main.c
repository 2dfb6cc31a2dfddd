/* main.c owns the webhook-gateway process: its flags, the one `struct gateway_ctx`, the
 * libevent loop, signals, startup and a clean shutdown.
 *
 * Startup runs in four steps, each undone by gateway_close in reverse: state (data dir, the
 * webhook secret, the ws_token secret, the admin token), runtime (loop, metrics, relay
 * table), bus (the libzmq context, the DEALER to the wallet's ROUTER, the hub with its SUB
 * on the wallet's PUB), listeners (HTTP, then WebSocket). "listening http=… ws=…" is printed
 * once all of them are up.
 *
 * Must not: handle requests (api.c, webhooks.c), keep state a restart would lose (the gateway
 * is a stateless edge: docs/architecture.md), or block the loop.
 * Invariants: one process, one thread, one loop; the only mutable global is the context
 * built here. On SIGTERM/SIGINT new webhooks get 503, every relay still waiting is answered
 * 503 (the bank retries; the wallet deduplicates), the loop runs GATEWAY_SHUTDOWN_FLUSH_MS
 * more so those answers leave, and the process exits 0. A second signal stops at once. */
#include <errno.h>
#include <event2/event.h>
#include <event2/http.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zmq.h>

#include "config.h"
#include "gateway.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "pl.h"
#include "secrets.h"
#include "sign.h"

/* The dashboard's files: in a checkout, the web/ folder next to this source (CMake passes
 * its absolute path); otherwise ./web, so `--web-dir` is needed for an installed binary. */
#ifndef PAYLAB_WEB_DIR
#define PAYLAB_WEB_DIR "web"
#endif
/* The listening line: "listening http=<bind>:<port>", bind bracketed when it is IPv6. */
#define GATEWAY_LINE_BYTES_MAX (2 * CONFIG_STR_BYTES_MAX + 64)

struct gateway_main {
    struct gateway_ctx *ctx;
    struct event *sigterm;
    struct event *sigint;
};

static void gateway_defaults(struct gateway_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->http_port = 8082;
    cfg->ws_port = 8083;
    pl_strlcpy(cfg->bind, "127.0.0.1", sizeof cfg->bind);
    pl_strlcpy(cfg->data_dir, "var", sizeof cfg->data_dir);
    pl_strlcpy(cfg->wallet_url, "http://127.0.0.1:8080", sizeof cfg->wallet_url);
    pl_strlcpy(cfg->zmq_router, "tcp://127.0.0.1:5555", sizeof cfg->zmq_router);
    pl_strlcpy(cfg->zmq_pub, "tcp://127.0.0.1:5556", sizeof cfg->zmq_pub);
    cfg->allowed_origin[0] = '\0'; /* filled from --http-port after parsing */
    cfg->ack_timeout_ms = 2000;
    cfg->max_inflight = 1024;
    pl_strlcpy(cfg->log_level, "info", sizeof cfg->log_level);
    cfg->max_connections = 10000;
    pl_strlcpy(cfg->web_dir, PAYLAB_WEB_DIR, sizeof cfg->web_dir);
    cfg->peer_ws[0] = '\0';
    pl_strlcpy(cfg->bank_url, "http://127.0.0.1:8081", sizeof cfg->bank_url);
}

static enum config_result gateway_flags(struct gateway_config *cfg, int argc, char **argv)
{
    const struct config_opt opts[] = {
        {"http-port", CONFIG_INT, &cfg->http_port, 1, 65535,
         "HTTP port: POST /v1/webhooks/bank, the dashboard (/), /config.json, /healthz, /metrics"},
        {"ws-port", CONFIG_INT, &cfg->ws_port, 1, 65535, "WebSocket port (GET /ws)"},
        {"bind", CONFIG_STR, cfg->bind, 0, 0, "address to listen on (loopback by default)"},
        {"data-dir", CONFIG_STR, cfg->data_dir, 0, 0, "holds secrets/ (webhook_secret)"},
        {"wallet-url", CONFIG_STR, cfg->wallet_url, 0, 0, "the wallet-service base URL"},
        {"zmq-router", CONFIG_STR, cfg->zmq_router, 0, 0,
         "the wallet's ZMQ ROUTER (webhook relay and acks)"},
        {"zmq-pub", CONFIG_STR, cfg->zmq_pub, 0, 0, "the wallet's ZMQ PUB (events)"},
        {"allowed-origin", CONFIG_STR, cfg->allowed_origin, 0, 0,
         "comma-separated browser origins allowed on the WebSocket (empty: this gateway's own "
         "HTTP origin under 127.0.0.1, localhost and [::1])"},
        {"ack-timeout-ms", CONFIG_INT, &cfg->ack_timeout_ms, 1, GATEWAY_ACK_TIMEOUT_MS_MAX,
         "wait this long for the wallet's ack, then answer the bank 503"},
        {"max-inflight", CONFIG_INT, &cfg->max_inflight, 1, GATEWAY_INFLIGHT_MAX,
         "relays waiting for an ack at once; beyond, 429 + Retry-After"},
        {"log-level", CONFIG_STR, cfg->log_level, 0, 0, "debug, info, warn or error"},
        {"max-connections", CONFIG_INT, &cfg->max_connections, 1, GATEWAY_WS_CONNECTIONS_MAX,
         "open WebSocket connections; beyond, a new one gets 503"},
        {"web-dir", CONFIG_STR, cfg->web_dir, 0, 0,
         "the dashboard's folder (index.html, app.js, style.css)"},
        {"peer-ws", CONFIG_STR, cfg->peer_ws, 0, 0,
         "comma-separated ws:// URLs of the other gateways, for the dashboard's failover"},
        {"bank-url", CONFIG_STR, cfg->bank_url, 0, 0,
         "the bank-service base URL, for the dashboard's fault switches"},
        {"drop-events-rate", CONFIG_DOUBLE, &cfg->drop_events_rate, 0, 1,
         "fault injection: share of events from the bus dropped on arrival (deterministic per "
         "user and seq), to watch the gap fills"},
    };
    return config_parse("GATEWAY", "webhook-gateway",
                        "paylab webhook gateway: verifies the bank's signed webhooks and relays "
                        "them to the wallet over ZeroMQ; pushes the wallet's events to "
                        "WebSocket clients; serves the dashboard",
                        opts, PL_ARRAY_LEN(opts), argc, argv);
}

/* The default --allowed-origin: our own HTTP origin under every loopback name (docs/realtime.md).
 */
static int gateway_default_origins(struct gateway_config *cfg)
{
    if (cfg->allowed_origin[0] != '\0')
        return PL_OK;
    long long port = (long long)cfg->http_port;
    int n =
        snprintf(cfg->allowed_origin, sizeof cfg->allowed_origin,
                 "http://127.0.0.1:%lld,http://localhost:%lld,http://[::1]:%lld", port, port, port);
    return n > 0 && (size_t)n < sizeof cfg->allowed_origin ? PL_OK : PL_ERANGE;
}

/* Strips trailing slashes from a base URL, so "<url>/v1/…" has exactly one. */
static void gateway_trim_url(char *url)
{
    size_t n = strlen(url);
    while (n > 0 && url[n - 1] == '/')
        url[--n] = '\0';
}

/* --peer-ws: at most GATEWAY_PEERS_MAX entries, each ws:// or wss://, no quotes or
 * backslashes (they go into /config.json verbatim). */
static bool gateway_peers_valid(const char *csv)
{
    size_t count = 0;
    const char *p = csv;
    while (*p != '\0') {
        const char *end = strchr(p, ',');
        size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
        bool scheme =
            (n > 5 && strncmp(p, "ws://", 5) == 0) || (n > 6 && strncmp(p, "wss://", 6) == 0);
        if (!scheme || memchr(p, '"', n) != NULL || memchr(p, '\\', n) != NULL ||
            ++count > GATEWAY_PEERS_MAX)
            return false;
        p += n;
        if (*p == ',')
            p++;
    }
    return true;
}

/* ===================================================================== shutdown ===== */

static void gateway_on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct gateway_main *gm = arg;
    struct gateway_ctx *ctx = gm->ctx;
    if (ctx->draining) {
        log_warn("second signal: stopping now", "signal=%d", (int)sig);
        event_base_loopbreak(ctx->base);
        return;
    }
    ctx->draining = true;
    log_info("shutting down: answering the relays still waiting with 503", "signal=%d waiting=%zu",
             (int)sig, webhooks_in_flight(ctx));
    webhooks_abort_all(ctx);
    struct timeval flush = {.tv_sec = 0, .tv_usec = GATEWAY_SHUTDOWN_FLUSH_MS * 1000};
    event_base_loopexit(ctx->base, &flush);
}

/* ===================================================================== startup ====== */

/* Data dir and the webhook secret, checked usable now rather than at the first webhook. */
static int gateway_state(struct gateway_ctx *ctx)
{
    const char *dir = ctx->cfg.data_dir;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        log_error("cannot create the data dir", "path=\"%s\" errno=%d", dir, errno);
        return PL_EIO;
    }
    int rc = secrets_load(dir, "webhook_secret", "PAYLAB_WEBHOOK_SECRET", "whsec_",
                          ctx->webhook_secret, sizeof ctx->webhook_secret);
    if (rc != 0)
        return rc;
    char probe[SIGN_SIGNATURE_BYTES_MAX];
    if (sign_webhook(ctx->webhook_secret, "probe", 0, "", 0, probe, sizeof probe) != 0) {
        log_error("the webhook secret is not whsec_<base64>", "data_dir=\"%s\" fix=\"%s\"", dir,
                  "check PAYLAB_WEBHOOK_SECRET or <data-dir>/secrets/webhook_secret");
        return PL_EINVAL;
    }
    rc = secrets_load(dir, "token_secret", "PAYLAB_TOKEN_SECRET", "", ctx->token_secret,
                      sizeof ctx->token_secret);
    if (rc == 0)
        rc = secrets_load(dir, "admin_token", "PAYLAB_ADMIN_TOKEN", "", ctx->admin_token,
                          sizeof ctx->admin_token);
    return rc;
}

static int gateway_runtime(struct gateway_ctx *ctx)
{
    ctx->base = event_base_new();
    ctx->metrics = metrics_new();
    if (ctx->base == NULL || ctx->metrics == NULL)
        return PL_ENOMEM;
    return webhooks_new(ctx);
}

/* The DEALER connects (docs/architecture.md: the wallet binds); it queues while the wallet is away.
 */
static int gateway_bus(struct gateway_ctx *ctx)
{
    ctx->zctx = zmq_ctx_new();
    if (ctx->zctx == NULL) {
        log_error("cannot create the ZeroMQ context", "errno=%d", errno);
        return PL_ENOMEM;
    }
    ctx->dealer = zbus_open(ctx->base, ctx->zctx, ZMQ_DEALER, ctx->cfg.zmq_router, false,
                            GATEWAY_ZMQ_HWM, GATEWAY_ZMQ_HWM, webhooks_on_ack, ctx);
    if (ctx->dealer == NULL)
        return PL_EIO;
    return hub_new(ctx);
}

static int gateway_listeners(struct gateway_ctx *ctx)
{
    ctx->http = http_listen(ctx->base, ctx->cfg.bind, (int)ctx->cfg.http_port, api_handle, ctx);
    if (ctx->http == NULL)
        return PL_EIO;
    return hub_listen(ctx);
}

static int gateway_signals(struct gateway_main *gm)
{
    struct event_base *base = gm->ctx->base;
    gm->sigterm = evsignal_new(base, SIGTERM, gateway_on_signal, gm);
    gm->sigint = evsignal_new(base, SIGINT, gateway_on_signal, gm);
    if (gm->sigterm == NULL || gm->sigint == NULL)
        return PL_ENOMEM;
    if (event_add(gm->sigterm, NULL) != 0 || event_add(gm->sigint, NULL) != 0)
        return PL_EIO;
    return PL_OK;
}

static int gateway_start(struct gateway_main *gm)
{
    struct gateway_ctx *ctx = gm->ctx;
    int rc = gateway_state(ctx);
    if (rc == 0)
        rc = gateway_runtime(ctx);
    if (rc == 0)
        rc = gateway_signals(gm);
    if (rc == 0)
        rc = gateway_bus(ctx);
    if (rc == 0)
        rc = gateway_listeners(ctx);
    return rc;
}

static void gateway_announce(const struct gateway_ctx *ctx)
{
    const struct gateway_config *cfg = &ctx->cfg;
    bool v6 = strchr(cfg->bind, ':') != NULL;
    char line[GATEWAY_LINE_BYTES_MAX];
    snprintf(line, sizeof line, "listening http=%s%s%s:%lld ws=%s%s%s:%lld", v6 ? "[" : "",
             cfg->bind, v6 ? "]" : "", (long long)cfg->http_port, v6 ? "[" : "", cfg->bind,
             v6 ? "]" : "", (long long)cfg->ws_port);
    log_info("started",
             "zmq_router=%s zmq_pub=%s wallet_url=%s ack_timeout_ms=%lld max_inflight=%lld "
             "max_connections=%lld web_dir=\"%s\" data_dir=\"%s\"",
             cfg->zmq_router, cfg->zmq_pub, cfg->wallet_url, (long long)cfg->ack_timeout_ms,
             (long long)cfg->max_inflight, (long long)cfg->max_connections, cfg->web_dir,
             cfg->data_dir);
    printf("%s\n", line);
    fflush(stdout);
}

/* Frees everything in the reverse order of creation; safe on a partly started context. */
static void gateway_close(struct gateway_main *gm)
{
    struct gateway_ctx *ctx = gm->ctx;
    webhooks_abort_all(ctx); /* a second signal may have left relays waiting */
    hub_free(ctx);           /* WebSocket clients first (1001), then the SUB and the fetches */
    if (ctx->http != NULL)
        evhttp_free(ctx->http);
    zbus_close(ctx->dealer);
    if (ctx->zctx != NULL)
        zmq_ctx_term(ctx->zctx); /* returns at once: every socket has ZMQ_LINGER 0 */
    if (gm->sigterm != NULL)
        event_free(gm->sigterm);
    if (gm->sigint != NULL)
        event_free(gm->sigint);
    webhooks_free(ctx);
    metrics_free(ctx->metrics);
    if (ctx->base != NULL)
        event_base_free(ctx->base);
    memset(ctx->webhook_secret, 0, sizeof ctx->webhook_secret);
    memset(ctx->token_secret, 0, sizeof ctx->token_secret);
    memset(ctx->admin_token, 0, sizeof ctx->admin_token);
    free(ctx);
}

/* Flags, environment, defaults that depend on them, logging. -1: go on; else the exit code. */
static int gateway_configure(struct gateway_ctx *ctx, int argc, char **argv)
{
    gateway_defaults(&ctx->cfg);
    enum config_result cr = gateway_flags(&ctx->cfg, argc, argv);
    if (cr != CONFIG_OK)
        return cr == CONFIG_EXIT_OK ? 0 : 2;
    enum log_level level = LOG_INFO;
    if (log_level_parse(ctx->cfg.log_level, &level) != 0) {
        fprintf(stderr, "webhook-gateway: --log-level must be debug, info, warn or error\n");
        return 2;
    }
    if (gateway_default_origins(&ctx->cfg) != 0) {
        fprintf(stderr, "webhook-gateway: the default --allowed-origin does not fit\n");
        return 2;
    }
    if (!gateway_peers_valid(ctx->cfg.peer_ws)) {
        fprintf(stderr,
                "webhook-gateway: --peer-ws takes up to %d comma-separated ws:// or "
                "wss:// URLs\n",
                GATEWAY_PEERS_MAX);
        return 2;
    }
    gateway_trim_url(ctx->cfg.wallet_url);
    gateway_trim_url(ctx->cfg.bank_url);
    log_init("gateway", level);
    return -1;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    struct gateway_ctx *ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL)
        return 1;
    int exit_code = gateway_configure(ctx, argc, argv);
    if (exit_code >= 0) {
        free(ctx);
        return exit_code;
    }
    struct gateway_main gm = {.ctx = ctx};
    int rc = gateway_start(&gm);
    if (rc != 0) {
        log_error("webhook-gateway could not start", "rc=%d", rc);
        gateway_close(&gm);
        return 1;
    }
    gateway_announce(ctx);
    event_base_dispatch(ctx->base);
    log_info("stopped", NULL);
    gateway_close(&gm);
    return 0;
}
