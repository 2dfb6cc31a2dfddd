/* main.c owns the wallet-service process: its flags, the one `struct wallet_ctx`, the
 * libevent loop, signals, startup (data dir, secrets, wallet.db, the ZeroMQ context and
 * sockets, listener, timers) and a clean shutdown.
 * Must not: handle requests, touch the ledger beyond opening it, or block the loop.
 * Invariants: one process, one thread, one loop; the only mutable global is the context
 * built here; on SIGTERM/SIGINT the wallet stops taking money-moving requests, lets the
 * bank calls in flight finish (at most --bank-timeout-ms plus a margin), answers or drops
 * what is left, and exits 0. A second signal exits at once — still without losing
 * anything: every transaction is recorded before its bank call, and the reconciler of the
 * next run settles what was pending. */
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
#include "curlev.h"
#include "db.h"
#include "http.h"
#include "log.h"
#include "metrics.h"
#include "pl.h"
#include "secrets.h"
#include "wallet.h"

/* How often a draining wallet checks whether its last bank call has finished. */
#define WALLET_DRAIN_POLL_MS 50
/* Beyond --bank-timeout-ms, how long a drain may take before we answer what is left. */
#define WALLET_DRAIN_MARGIN_MS 500

struct wallet_main {
    struct wallet_ctx *ctx;
    struct event *sigterm;
    struct event *sigint;
    struct event *drain_timer;
    int64_t drain_deadline_ms;
};

static void wallet_defaults(struct wallet_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->http_port = 8080;
    pl_strlcpy(cfg->bind, "127.0.0.1", sizeof cfg->bind);
    pl_strlcpy(cfg->data_dir, "var", sizeof cfg->data_dir);
    pl_strlcpy(cfg->bank_url, "http://127.0.0.1:8081", sizeof cfg->bank_url);
    pl_strlcpy(cfg->notify_url, "http://127.0.0.1:8082/v1/webhooks/bank", sizeof cfg->notify_url);
    pl_strlcpy(cfg->zmq_router, "tcp://127.0.0.1:5555", sizeof cfg->zmq_router);
    pl_strlcpy(cfg->zmq_pub, "tcp://127.0.0.1:5556", sizeof cfg->zmq_pub);
    cfg->bank_timeout_ms = 2000;
    cfg->reconcile_ms = 1000;
    cfg->pending_grace_ms = 3000;
    cfg->payment_ttl_sync_ms = 5000;
    cfg->payment_ttl_async_ms = 60000;
    cfg->bank_opening_minor = 1000000;
    pl_strlcpy(cfg->nodal_account, "NODAL-PAYLAB", sizeof cfg->nodal_account);
    cfg->ws_token_ttl_s = 3600;
    pl_strlcpy(cfg->allowed_origin, WALLET_ALLOWED_ORIGIN_DEFAULT, sizeof cfg->allowed_origin);
    pl_strlcpy(cfg->log_level, "info", sizeof cfg->log_level);
}

static enum config_result wallet_flags(struct wallet_config *cfg, int argc, char **argv)
{
    const double day_ms = 86400000.0;
    const struct config_opt opts[] = {
        {"http-port", CONFIG_INT, &cfg->http_port, 1, 65535, "HTTP API port"},
        {"bind", CONFIG_STR, cfg->bind, 0, 0, "address to listen on (loopback by default)"},
        {"data-dir", CONFIG_STR, cfg->data_dir, 0, 0, "holds wallet.db and secrets/"},
        {"bank-url", CONFIG_STR, cfg->bank_url, 0, 0, "the bank-service base URL"},
        {"notify-url", CONFIG_STR, cfg->notify_url, 0, 0, "webhook URL(s) sent to the bank"},
        {"zmq-router", CONFIG_STR, cfg->zmq_router, 0, 0, "ZMQ ROUTER endpoint (webhook intake)"},
        {"zmq-pub", CONFIG_STR, cfg->zmq_pub, 0, 0, "ZMQ PUB endpoint (events)"},
        {"bank-timeout-ms", CONFIG_INT, &cfg->bank_timeout_ms, 1, 600000,
         "a sync bank call gives up after this (then: unknown, 504)"},
        {"reconcile-ms", CONFIG_INT, &cfg->reconcile_ms, 1, 3600000, "reconciler period"},
        {"pending-grace-ms", CONFIG_INT, &cfg->pending_grace_ms, 0, day_ms,
         "pending longer than this is reconciled"},
        {"payment-ttl-sync-ms", CONFIG_INT, &cfg->payment_ttl_sync_ms, 1, day_ms,
         "deadline of a sync payment at the bank"},
        {"payment-ttl-async-ms", CONFIG_INT, &cfg->payment_ttl_async_ms, 1, day_ms,
         "deadline of an async payment at the bank"},
        {"bank-opening-minor", CONFIG_INT, &cfg->bank_opening_minor, 0, 1e12,
         "opening balance (paise) of a bank account the wallet opens for a new user"},
        {"nodal-account", CONFIG_STR, cfg->nodal_account, 0, 0, "the wallet's nodal account"},
        {"ws-token-ttl-s", CONFIG_INT, &cfg->ws_token_ttl_s, 1, 30 * 86400.0,
         "lifetime of a ws_token"},
        {"allowed-origin", CONFIG_STR, cfg->allowed_origin, 0, 0,
         "comma-separated browser origins allowed to call /v1 (CORS; the dashboard's)"},
        {"log-level", CONFIG_STR, cfg->log_level, 0, 0, "debug, info, warn or error"},
        {"id-seed", CONFIG_INT, &cfg->id_seed, 0, 9007199254740992.0,
         "lab runs: top-up and withdrawal ids derived from this seed and their number "
         "(0: random ids)"},
        {"unsafe-no-dedupe", CONFIG_BOOL, &cfg->unsafe_no_dedupe, 0, 0,
         "UNSAFE teaching switch: no webhook-id check and no state guard (a duplicated "
         "webhook credits again)"},
        {"unsafe-timeout-is-failure", CONFIG_BOOL, &cfg->unsafe_timeout_is_failure, 0, 0,
         "UNSAFE teaching switch: a sync bank call without a definite answer fails instead "
         "of unknown"},
    };
    return config_parse("WALLET", "wallet-service",
                        "paylab wallet: users, the double-entry ledger, top-ups, withdrawals and "
                        "transfers against the simulated bank",
                        opts, PL_ARRAY_LEN(opts), argc, argv);
}

/* Teaching switches are loud: one warning each at startup (and one per outcome changed). */
static void wallet_warn_unsafe(const struct wallet_config *cfg)
{
    if (cfg->unsafe_no_dedupe)
        log_warn("UNSAFE: --unsafe-no-dedupe — no webhook-id check and no state guard: a "
                 "repeated webhook or answer is applied again — for the lab's break-it "
                 "exercises only",
                 NULL);
    if (cfg->unsafe_timeout_is_failure)
        log_warn("UNSAFE: --unsafe-timeout-is-failure — a sync bank call without a definite "
                 "answer settles failed, though the bank may have moved the money — for the "
                 "lab's break-it exercises only",
                 NULL);
}

/* ===================================================================== shutdown ===== */

static void wallet_drain_check(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct wallet_main *wm = arg;
    if (api_drained(wm->ctx)) {
        event_base_loopexit(wm->ctx->base, NULL);
        return;
    }
    if (pl_mono_ms() < wm->drain_deadline_ms)
        return;
    log_warn("drain deadline passed: answering the requests still waiting with their state", NULL);
    api_abort_pending(wm->ctx);
    event_base_loopexit(wm->ctx->base, NULL);
}

static void wallet_on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct wallet_main *wm = arg;
    struct wallet_ctx *ctx = wm->ctx;
    if (ctx->draining) {
        log_warn("second signal: stopping now", "signal=%d", (int)sig);
        api_abort_pending(ctx);
        event_base_loopbreak(ctx->base);
        return;
    }
    ctx->draining = true;
    log_info("shutting down: finishing the bank calls in flight", "signal=%d pending=%zu", (int)sig,
             ctx->pending_count);
    wm->drain_deadline_ms = pl_mono_ms() + ctx->cfg.bank_timeout_ms + WALLET_DRAIN_MARGIN_MS;
    struct timeval tv = {.tv_sec = 0, .tv_usec = WALLET_DRAIN_POLL_MS * 1000};
    if (wm->drain_timer == NULL || event_add(wm->drain_timer, &tv) != 0) {
        api_abort_pending(ctx);
        event_base_loopexit(ctx->base, NULL);
    }
    wallet_drain_check(-1, 0, wm);
}

/* ===================================================================== housekeeping = */

static void wallet_prune(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct wallet_ctx *ctx = arg;
    int deleted = 0;
    int rc = ledger_idem_prune(&ctx->db, pl_now_ms() - WALLET_IDEM_KEEP_MS, &deleted);
    if (rc != 0) {
        log_warn("could not prune idempotency keys; next time", "rc=%d", rc);
    } else if (deleted > 0) {
        log_info("pruned idempotency keys older than 24 h", "count=%d", deleted);
    }
    rc = intake_prune(&ctx->db, pl_now_ms() - WEBHOOKS_KEEP_MS, &deleted);
    if (rc != 0) {
        log_warn("could not prune seen webhook ids; next time", "rc=%d", rc);
    } else if (deleted > 0) {
        log_info("pruned webhook ids older than 3 days", "count=%d", deleted);
    }
}

/* ===================================================================== startup ====== */

static int wallet_secrets(struct wallet_ctx *ctx)
{
    int rc = secrets_load(ctx->cfg.data_dir, "bank_api_key", "PAYLAB_BANK_API_KEY", "",
                          ctx->bank_api_key, sizeof ctx->bank_api_key);
    if (rc != 0)
        return rc;
    rc = secrets_load(ctx->cfg.data_dir, "webhook_secret", "PAYLAB_WEBHOOK_SECRET", "whsec_",
                      ctx->webhook_secret, sizeof ctx->webhook_secret);
    if (rc != 0)
        return rc;
    return secrets_load(ctx->cfg.data_dir, "token_secret", "PAYLAB_TOKEN_SECRET", "",
                        ctx->token_secret, sizeof ctx->token_secret);
}

/* The ZeroMQ side: events out (publishing what an earlier run left), webhooks in, and the
 * outbox resuming the rows an earlier run left. */
static int wallet_async_start(struct wallet_ctx *ctx)
{
    ctx->zctx = zmq_ctx_new();
    if (ctx->zctx == NULL)
        return PL_ENOMEM;
    int rc = events_start(ctx);
    if (rc == 0)
        rc = intake_start(ctx);
    if (rc == 0)
        rc = outbox_start(ctx);
    return rc;
}

static int wallet_open(struct wallet_ctx *ctx)
{
    if (mkdir(ctx->cfg.data_dir, 0755) != 0 && errno != EEXIST) {
        log_error("cannot create the data dir", "path=\"%s\" errno=%d", ctx->cfg.data_dir, errno);
        return PL_EIO;
    }
    if (wallet_secrets(ctx) != 0)
        return PL_EIO;
    char path[CONFIG_STR_BYTES_MAX + 16];
    int n = snprintf(path, sizeof path, "%s/wallet.db", ctx->cfg.data_dir);
    if (n < 0 || (size_t)n >= sizeof path)
        return PL_ERANGE;
    if (ledger_open(&ctx->db, path, pl_now_ms(), ctx->epoch, sizeof ctx->epoch) != 0) {
        log_error("cannot open wallet.db", "path=\"%s\"", path);
        return PL_EDB;
    }
    ctx->base = event_base_new();
    ctx->metrics = metrics_new();
    if (ctx->base == NULL || ctx->metrics == NULL)
        return PL_ENOMEM;
    ctx->curl = curlev_new(ctx->base);
    if (ctx->curl == NULL)
        return PL_ENOMEM;
    ctx->prune_timer = event_new(ctx->base, -1, EV_PERSIST, wallet_prune, ctx);
    if (ctx->prune_timer == NULL)
        return PL_ENOMEM;
    struct timeval tv = {.tv_sec = WALLET_IDEM_PRUNE_MS / 1000, .tv_usec = 0};
    if (event_add(ctx->prune_timer, &tv) != 0)
        return PL_EIO;
    wallet_prune(-1, 0, ctx);
    int rc = reconciler_start(ctx);
    return rc != 0 ? rc : wallet_async_start(ctx);
}

static int wallet_signals(struct wallet_main *wm)
{
    struct event_base *base = wm->ctx->base;
    signal(SIGPIPE, SIG_IGN);
    wm->sigterm = evsignal_new(base, SIGTERM, wallet_on_signal, wm);
    wm->sigint = evsignal_new(base, SIGINT, wallet_on_signal, wm);
    wm->drain_timer = event_new(base, -1, EV_PERSIST, wallet_drain_check, wm);
    if (wm->sigterm == NULL || wm->sigint == NULL || wm->drain_timer == NULL)
        return PL_ENOMEM;
    if (event_add(wm->sigterm, NULL) != 0 || event_add(wm->sigint, NULL) != 0)
        return PL_EIO;
    return 0;
}

static void wallet_close(struct wallet_main *wm)
{
    struct wallet_ctx *ctx = wm->ctx;
    if (ctx->curl != NULL)
        api_abort_pending(ctx);
    reconciler_stop(ctx);
    outbox_stop(ctx);
    intake_stop(ctx);
    events_stop(ctx);
    if (ctx->zctx != NULL)
        zmq_ctx_term(ctx->zctx);
    if (ctx->http != NULL)
        evhttp_free(ctx->http);
    if (wm->sigterm != NULL)
        event_free(wm->sigterm);
    if (wm->sigint != NULL)
        event_free(wm->sigint);
    if (wm->drain_timer != NULL)
        event_free(wm->drain_timer);
    if (ctx->prune_timer != NULL)
        event_free(ctx->prune_timer);
    if (ctx->curl != NULL)
        curlev_free(ctx->curl);
    db_close(&ctx->db);
    if (ctx->metrics != NULL)
        metrics_free(ctx->metrics);
    if (ctx->base != NULL)
        event_base_free(ctx->base);
    free(ctx);
}

int main(int argc, char **argv)
{
    struct wallet_ctx *ctx = calloc(1, sizeof *ctx);
    if (ctx == NULL)
        return 1;
    wallet_defaults(&ctx->cfg);
    enum config_result cr = wallet_flags(&ctx->cfg, argc, argv);
    if (cr != CONFIG_OK) {
        free(ctx);
        return cr == CONFIG_EXIT_OK ? 0 : 2;
    }
    enum log_level level;
    if (log_level_parse(ctx->cfg.log_level, &level) != 0) {
        fprintf(stderr, "wallet-service: --log-level must be debug, info, warn or error\n");
        free(ctx);
        return 2;
    }
    log_init("wallet", level);
    wallet_warn_unsafe(&ctx->cfg);
    struct wallet_main wm = {.ctx = ctx};
    int rc = wallet_open(ctx);
    if (rc == 0)
        rc = wallet_signals(&wm);
    if (rc == 0) {
        ctx->http = http_listen(ctx->base, ctx->cfg.bind, (int)ctx->cfg.http_port, api_handle, ctx);
        if (ctx->http == NULL)
            rc = PL_EIO;
    }
    if (rc != 0) {
        log_error("wallet-service could not start", "rc=%d", rc);
        wallet_close(&wm);
        return 1;
    }
    log_info("started", "epoch=%s bank=%s data_dir=\"%s\"", ctx->epoch, ctx->cfg.bank_url,
             ctx->cfg.data_dir);
    printf("listening http=%s:%lld\n", ctx->cfg.bind, (long long)ctx->cfg.http_port);
    fflush(stdout);
    event_base_dispatch(ctx->base);
    log_info("stopped", NULL);
    wallet_close(&wm);
    return 0;
}
