/* main.c owns the bank-service process: flags, the one context struct, the event loop,
 * signals, startup (data dir, secrets, bank.db, nodal account, resuming payments left
 * processing and webhook deliveries left pending) and a clean shutdown.
 * Must not: handle requests (api.c) or touch SQL beyond payments_init / pruning.
 * Invariant: one process, one thread, one libevent loop; every timer and the listener are
 * freed before the database is closed, so no callback runs against a closed database. */
#include "bank.h"

#include <assert.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/http.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>

#include "http.h"
#include "log.h"
#include "metrics.h"
#include "pl.h"

/* Idempotency keys are pruned this often, or sooner while a full batch keeps coming. */
#define BANK_PRUNE_INTERVAL_S 60
#define BANK_PRUNE_BACKLOG_S 1
#define BANK_PATH_BYTES_MAX 1100
#define BANK_LINE_BYTES_MAX (CONFIG_STR_BYTES_MAX + 64)

static const char BANK_SUMMARY[] =
    "paylab's simulated bank: accounts, mandates and payments in <data-dir>/bank.db, signed "
    "webhooks from an outbox, and deterministic fault injection (GET|PUT /admin/faults).";

static enum config_result bank_parse_flags(struct bank_ctx *ctx, int argc, char **argv)
{
    const struct config_opt opts[] = {
        {"http-port", CONFIG_INT, &ctx->http_port, 1, 65535, "HTTP port"},
        {"bind", CONFIG_STR, ctx->bind, 0, 0, "address to listen on"},
        {"data-dir", CONFIG_STR, ctx->data_dir, 0, 0, "bank.db and secrets/ live here"},
        {"seed", CONFIG_INT, &ctx->seed, -9007199254740992.0, 9007199254740992.0,
         "seed of every fault decision"},
        {"time-scale", CONFIG_DOUBLE, &ctx->time_scale, 0.000001, 1000,
         "multiplies webhook retry schedules (0.001 in the demo and lab)"},
        {"nodal-account", CONFIG_STR, ctx->nodal_account, 0, 0,
         "the wallet company's account, created at startup"},
        {"latency-ms", CONFIG_INT, &ctx->latency_ms, 0, FAULTS_LATENCY_MS_MAX,
         "injected delay before a payment executes"},
        {"latency-jitter-ms", CONFIG_INT, &ctx->latency_jitter_ms, 0, FAULTS_LATENCY_MS_MAX,
         "plus a deterministic 0..N ms per payment"},
        {"error-rate", CONFIG_DOUBLE, &ctx->error_rate, 0, 1,
         "share of payment requests answered 500 before anything happens"},
        {"lost-response-rate", CONFIG_DOUBLE, &ctx->lost_response_rate, 0, 1,
         "share of payment requests executed but never answered"},
        {"down", CONFIG_BOOL, &ctx->down, 0, 0, "close every /v1 connection without an answer"},
        {"allowed-origin", CONFIG_STR, ctx->allowed_origin, 0, 0,
         "comma-separated origins allowed to call /admin from a browser"},
        {"log-level", CONFIG_STR, ctx->log_level, 0, 0, "debug, info, warn or error"},
        {"webhook-timeout-ms", CONFIG_INT, &ctx->webhook_timeout_ms, 100, 600000,
         "how long one webhook POST may take"},
        {"webhook-drop-rate", CONFIG_DOUBLE, &ctx->webhook_drop_rate, 0, 1,
         "share of webhook attempts silently not sent (and retried)"},
        {"webhook-duplicate-rate", CONFIG_DOUBLE, &ctx->webhook_duplicate_rate, 0, 1,
         "share of webhook attempts sent twice, concurrently"},
        {"webhook-delay-ms", CONFIG_INT, &ctx->webhook_delay_ms, 0, FAULTS_LATENCY_MS_MAX,
         "each webhook attempt is held this long (reorders events)"},
        {"webhook-delay-jitter-ms", CONFIG_INT, &ctx->webhook_delay_jitter_ms, 0,
         FAULTS_LATENCY_MS_MAX, "plus a deterministic 0..N ms per webhook attempt"},
        {"webhook-stop", CONFIG_BOOL, &ctx->webhook_stop, 0, 0, "hold every webhook delivery"},
        {"unsafe-ignore-expiry", CONFIG_BOOL, &ctx->unsafe_ignore_expiry, 0, 0,
         "UNSAFE teaching switch: execute payments past their deadline; a void answers expired "
         "without stopping the execution"},
    };
    return config_parse("BANK", "bank-service", BANK_SUMMARY, opts, PL_ARRAY_LEN(opts), argc, argv);
}

static void bank_defaults(struct bank_ctx *ctx)
{
    ctx->http_port = 8081;
    pl_strlcpy(ctx->bind, "127.0.0.1", sizeof ctx->bind);
    pl_strlcpy(ctx->data_dir, "var", sizeof ctx->data_dir);
    pl_strlcpy(ctx->nodal_account, "NODAL-PAYLAB", sizeof ctx->nodal_account);
    pl_strlcpy(ctx->allowed_origin, "http://127.0.0.1:8082,http://localhost:8082",
               sizeof ctx->allowed_origin);
    pl_strlcpy(ctx->log_level, "info", sizeof ctx->log_level);
    ctx->seed = 1;
    ctx->time_scale = 1.0;
    ctx->webhook_timeout_ms = 5000;
}

/* mkdir -p: creates every missing component of path. 0 or PL_EIO (logged). */
static int bank_mkdirs(const char *path)
{
    char buf[CONFIG_STR_BYTES_MAX];
    if (pl_strlcpy(buf, path, sizeof buf) != 0 || buf[0] == '\0') {
        return PL_EINVAL;
    }
    for (char *p = buf + 1;; p++) {
        bool end = *p == '\0';
        if (*p != '/' && !end) {
            continue;
        }
        *p = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST) {
            log_error("cannot create the data directory", "path=\"%s\" errno=%d", buf, errno);
            return PL_EIO;
        }
        if (end) {
            return PL_OK;
        }
        *p = '/';
    }
}

/* Data dir, secrets, bank.db with its migrations and the nodal account. */
static int bank_open_state(struct bank_ctx *ctx)
{
    int rc = bank_mkdirs(ctx->data_dir);
    if (rc != 0) {
        return rc;
    }
    rc = secrets_load(ctx->data_dir, "bank_api_key", "PAYLAB_BANK_API_KEY", "", ctx->bank_api_key,
                      sizeof ctx->bank_api_key);
    if (rc == 0) {
        rc = secrets_load(ctx->data_dir, "admin_token", "PAYLAB_ADMIN_TOKEN", "", ctx->admin_token,
                          sizeof ctx->admin_token);
    }
    if (rc == 0) {
        rc = secrets_load(ctx->data_dir, "webhook_secret", "PAYLAB_WEBHOOK_SECRET", "whsec_",
                          ctx->webhook_secret, sizeof ctx->webhook_secret);
    }
    if (rc != 0) {
        return rc;
    }
    char path[BANK_PATH_BYTES_MAX];
    int n = snprintf(path, sizeof path, "%s/bank.db", ctx->data_dir);
    assert(n > 0 && (size_t)n < sizeof path); /* data_dir < CONFIG_STR_BYTES_MAX */
    rc = db_open(&ctx->db, path, false);
    if (rc == 0) {
        rc = payments_init(&ctx->db, ctx->nodal_account, pl_now_ms());
    }
    if (rc != 0) {
        log_error("cannot prepare bank.db", "path=\"%s\" error=%d", path, rc);
    }
    return rc;
}

static void bank_prune_arm(struct bank_ctx *ctx, int seconds)
{
    struct timeval tv = {.tv_sec = seconds, .tv_usec = 0};
    evtimer_add(ctx->prune_timer, &tv);
}

static void bank_prune_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct bank_ctx *ctx = arg;
    size_t deleted = 0;
    int rc = payments_prune_keys(&ctx->db, pl_now_ms(), &deleted);
    if (rc != 0) {
        log_warn("idempotency key pruning deferred", "error=%d", rc);
    } else if (deleted > 0) {
        log_info("idempotency keys pruned", "count=%zu", deleted);
    }
    bool backlog = rc == 0 && deleted == PAYMENTS_PRUNE_BATCH_MAX;
    bank_prune_arm(ctx, backlog ? BANK_PRUNE_BACKLOG_S : BANK_PRUNE_INTERVAL_S);
}

static void bank_signal_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct bank_ctx *ctx = arg;
    log_info("stopping", "signal=%d", (int)sig);
    event_base_loopexit(ctx->base, NULL);
}

/* Memory, loop, timers, signals. 0 or PL_ENOMEM. */
static int bank_start_runtime(struct bank_ctx *ctx)
{
    ctx->holds = calloc(BANK_HOLDS_MAX, sizeof *ctx->holds);
    ctx->attempts = calloc(1, sizeof *ctx->attempts);
    ctx->metrics = metrics_new();
    ctx->base = event_base_new();
    if (ctx->holds == NULL || ctx->attempts == NULL || ctx->metrics == NULL || ctx->base == NULL) {
        return PL_ENOMEM;
    }
    for (size_t i = 0; i < BANK_HOLDS_MAX; i++) {
        ctx->holds[i].ctx = ctx;
    }
    ctx->prune_timer = evtimer_new(ctx->base, bank_prune_cb, ctx);
    ctx->sigterm_ev = evsignal_new(ctx->base, SIGTERM, bank_signal_cb, ctx);
    ctx->sigint_ev = evsignal_new(ctx->base, SIGINT, bank_signal_cb, ctx);
    if (ctx->prune_timer == NULL || ctx->sigterm_ev == NULL || ctx->sigint_ev == NULL ||
        evsignal_add(ctx->sigterm_ev, NULL) != 0 || evsignal_add(ctx->sigint_ev, NULL) != 0) {
        return PL_ENOMEM;
    }
    bank_prune_arm(ctx, 0);
    int rc = bank_exec_start(ctx);
    if (rc == 0) {
        rc = bank_webhooks_start(ctx);
    }
    return rc;
}

static int bank_listen(struct bank_ctx *ctx)
{
    ctx->http = http_listen(ctx->base, ctx->bind, (int)ctx->http_port, bank_api_handle, ctx);
    if (ctx->http == NULL) {
        return PL_EIO;
    }
    char line[BANK_LINE_BYTES_MAX];
    snprintf(line, sizeof line, "listening http=%s:%lld", ctx->bind, (long long)ctx->http_port);
    log_info(line, "nodal=%s seed=%lld data_dir=\"%s\"", ctx->nodal_account,
             (long long)ctx->faults.seed, ctx->data_dir);
    printf("%s\n", line);
    fflush(stdout);
    return PL_OK;
}

/* Frees everything in the reverse order of creation; safe on a partly started ctx. The
 * listener goes first: its close callbacks release the held requests. */
static void bank_stop(struct bank_ctx *ctx)
{
    if (ctx->http != NULL) {
        evhttp_free(ctx->http);
    }
    assert(ctx->holds == NULL || ctx->holds_count == 0);
    bank_webhooks_stop(ctx);
    bank_exec_stop(ctx);
    struct event *evs[] = {ctx->prune_timer, ctx->sigterm_ev, ctx->sigint_ev};
    for (size_t i = 0; i < PL_ARRAY_LEN(evs); i++) {
        if (evs[i] != NULL) {
            event_free(evs[i]);
        }
    }
    if (ctx->base != NULL) {
        event_base_free(ctx->base);
    }
    db_close(&ctx->db);
    metrics_free(ctx->metrics);
    free(ctx->attempts);
    free(ctx->holds);
}

static int bank_configure(struct bank_ctx *ctx, int argc, char **argv)
{
    bank_defaults(ctx);
    enum config_result cr = bank_parse_flags(ctx, argc, argv);
    if (cr != CONFIG_OK) {
        return cr == CONFIG_EXIT_OK ? 0 : 2;
    }
    enum log_level level = LOG_INFO;
    if (log_level_parse(ctx->log_level, &level) != 0) {
        fprintf(stderr, "bank-service: --log-level must be debug, info, warn or error\n");
        return 2;
    }
    log_init("bank", level);
    if (ctx->unsafe_ignore_expiry) {
        log_warn("UNSAFE: --unsafe-ignore-expiry — payments execute past their deadline and a "
                 "void only pretends to stop them — for the lab's break-it exercises only",
                 NULL);
    }
    if (!payments_account_id_valid(ctx->nodal_account)) {
        fprintf(stderr, "bank-service: --nodal-account must match [A-Z0-9-]{1,64}\n");
        return 2;
    }
    struct faults f = {.seed = ctx->seed,
                       .latency_ms = ctx->latency_ms,
                       .latency_jitter_ms = ctx->latency_jitter_ms,
                       .error_rate = ctx->error_rate,
                       .lost_response_rate = ctx->lost_response_rate,
                       .down = ctx->down,
                       .webhook_drop_rate = ctx->webhook_drop_rate,
                       .webhook_duplicate_rate = ctx->webhook_duplicate_rate,
                       .webhook_delay_ms = ctx->webhook_delay_ms,
                       .webhook_delay_jitter_ms = ctx->webhook_delay_jitter_ms,
                       .webhook_stop = ctx->webhook_stop};
    ctx->faults = f;
    return -1; /* go on */
}

int main(int argc, char **argv)
{
    static struct bank_ctx ctx; /* the process's one context; static: it is ~8 KB */
    signal(SIGPIPE, SIG_IGN);
    int exit_code = bank_configure(&ctx, argc, argv);
    if (exit_code >= 0) {
        return exit_code;
    }
    exit_code = 1;
    if (bank_open_state(&ctx) == 0 && bank_start_runtime(&ctx) == 0 && bank_listen(&ctx) == 0) {
        event_base_dispatch(ctx.base);
        exit_code = 0;
    }
    bank_stop(&ctx);
    log_info("stopped", "exit=%d", exit_code);
    return exit_code;
}
