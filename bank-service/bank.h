/* bank.h: the bank-service's one context struct (built in main.c) and the entry points its
 * modules offer each other: api.c (HTTP), exec.c (running payments when they are due),
 * webhooks.c (sending the outbox's webhooks). */
#ifndef PAYLAB_BANK_H
#define PAYLAB_BANK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "db.h"
#include "faults.h"
#include "ids.h"
#include "payments.h"
#include "secrets.h"

struct event;
struct event_base;
struct evhttp;
struct evhttp_connection;
struct evhttp_request;
struct metrics;
struct webhooks;

/* Requests held open at once: sync payments waiting for their execution, lost responses
 * waiting for the client to give up, "down" connections waiting to close. Past it, a new
 * payment is refused with 429 before anything is recorded. */
#define BANK_HOLDS_MAX 4096
/* evhttp stops reading a connection while its request awaits a reply, so it would never see
 * the client leave: each hold watches its socket itself. A hold also ends, without an answer,
 * after this long (longer than the largest injected latency): no hold lives forever. */
#define BANK_HOLD_MS_MAX (FAULTS_LATENCY_MS_MAX + 60000)
/* Origins in --allowed-origin. */
#define BANK_ORIGINS_MAX 8

enum bank_hold_kind {
    BANK_HOLD_FREE = 0,
    BANK_HOLD_WAITING, /* a sync payment: answered when it is executed */
    BANK_HOLD_LOST,    /* lost_response: never answered; freed when the client gives up */
    BANK_HOLD_DROPPED, /* down: socket shut down; freed when evhttp sees it close */
};

/* A request that got no reply yet. Freed (kind FREE) exactly once: by its reply, or by the
 * connection's close callback — never both, and a freed hold is never answered. */
struct bank_hold {
    enum bank_hold_kind kind;
    struct evhttp_request *req;
    struct evhttp_connection *evcon;
    char payment_id[ID_BYTES_MAX]; /* WAITING and LOST payments; "" otherwise */
    const char *route;             /* static route label for metrics */
    int64_t start_us;
    struct event *watch; /* EOF on the socket, or BANK_HOLD_MS_MAX elapsed */
    int64_t deadline_ms; /* pl_mono_ms() at which the hold ends unanswered */
    struct bank_ctx *ctx;
};

struct bank_ctx {
    /* flags (config.h targets) */
    int64_t http_port;
    char bind[CONFIG_STR_BYTES_MAX];
    char data_dir[CONFIG_STR_BYTES_MAX];
    char nodal_account[CONFIG_STR_BYTES_MAX];
    char allowed_origin[CONFIG_STR_BYTES_MAX]; /* comma-separated */
    char log_level[CONFIG_STR_BYTES_MAX];
    double time_scale;          /* multiplies the webhook retry schedule and Retry-After */
    int64_t webhook_timeout_ms; /* one webhook POST, connect included */
    bool down;                  /* initial faults, copied into `faults` at startup */
    int64_t seed;
    int64_t latency_ms;
    int64_t latency_jitter_ms;
    double error_rate;
    double lost_response_rate;
    double webhook_drop_rate;
    double webhook_duplicate_rate;
    int64_t webhook_delay_ms;
    int64_t webhook_delay_jitter_ms;
    bool webhook_stop;
    bool unsafe_ignore_expiry; /* teaching switch: deadlines not honoured (payments.h) */

    /* secrets: never logged */
    char bank_api_key[SECRET_BYTES_MAX];
    char admin_token[SECRET_BYTES_MAX];
    char webhook_secret[SECRET_BYTES_MAX]; /* "whsec_<base64>" */

    /* runtime */
    struct event_base *base;
    struct evhttp *http;
    struct db db;
    struct metrics *metrics;
    struct faults faults;             /* current faults; the admin API changes them */
    struct faults_attempts *attempts; /* heap: ~1.3 MB */
    struct bank_hold *holds;          /* heap: BANK_HOLDS_MAX */
    size_t holds_count;               /* holds not FREE */
    struct event *exec_timer;         /* exec.c: fires at the next execute_at_ms */
    int64_t exec_timer_at_ms;         /* when it is armed for; 0 when not armed */
    struct event *prune_timer;        /* idempotency keys older than 24 h */
    struct webhooks *webhooks;        /* webhooks.c: the sender (heap) */
    struct event *sigterm_ev;
    struct event *sigint_ev;
};

/* What payments.c decides by, now: the current fault seed names the webhook events (so a
 * lab run with the same --seed repeats the webhook fault decisions), and the teaching
 * switch. */
static inline struct payments_policy bank_payments_policy(const struct bank_ctx *ctx)
{
    struct payments_policy pol = {.event_seed = ctx->faults.seed,
                                  .ignore_expiry = ctx->unsafe_ignore_expiry};
    return pol;
}

/* api.c: the evhttp handler for every request (arg is the bank_ctx). */
void bank_api_handle(struct evhttp_request *req, void *arg);
/* api.c: payment p has reached a final state: answers its held sync request, if any. */
void bank_api_settled(struct bank_ctx *ctx, const struct payment *p);
/* api.c: true when a sync request for payment_id is held, waiting for its execution. */
bool bank_api_in_flight(const struct bank_ctx *ctx, const char *payment_id);

/* exec.c: creates the execution timer and arms it at once, which resumes every payment left
 * `processing` by a previous run. 0 or PL_ENOMEM. */
int bank_exec_start(struct bank_ctx *ctx);
/* exec.c: a payment is due at execute_at_ms: make sure the timer fires by then. */
void bank_exec_kick(struct bank_ctx *ctx, int64_t execute_at_ms);
/* exec.c: counts the outcome of an executed payment in the metrics. */
void bank_exec_count(struct bank_ctx *ctx, const struct payment *p);
void bank_exec_stop(struct bank_ctx *ctx);

/* webhooks.c: drops the leases of a previous run (a restart resumes its deliveries), creates
 * the sender and arms its timer at once. 0, PL_ENOMEM or a database error. */
int bank_webhooks_start(struct bank_ctx *ctx);
/* webhooks.c: something changed (a new event, a redelivery, the faults): run a pass soon. */
void bank_webhooks_kick(struct bank_ctx *ctx);
/* webhooks.c: sets the webhook gauges (outbox depth, dead, in flight) before a scrape. */
void bank_webhooks_gauges(struct bank_ctx *ctx);
/* webhooks.c: cancels every attempt in flight (their deliveries stay leased in bank.db and
 * are resumed at the next start) and frees the sender. Safe when never started. */
void bank_webhooks_stop(struct bank_ctx *ctx);

#endif
