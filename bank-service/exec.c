/* exec.c owns *when* payments run: one evtimer, armed for the earliest execute_at_ms among
 * the `processing` rows of bank.db (the payments_processing index), never one timer per
 * payment. The database is the schedule, so a bank restarted mid-latency finds every
 * payment it left behind and runs it (or expires it) — nothing lives only in memory.
 * Must not: move money itself (payments.c does, in one transaction), or answer requests
 * other than through bank_api_settled.
 * Invariant: while a processing payment exists and the database answers, the timer is armed
 * no later than that payment's execute_at_ms (plus a retry delay after SQLITE_BUSY). */
#include "bank.h"

#include <assert.h>
#include <event2/event.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

#include "log.h"
#include "metrics.h"
#include "pl.h"

/* After SQLITE_BUSY or an error, try again this much later. */
#define EXEC_RETRY_MS 10
/* The timer never fires sooner than this after a pass: a clock step cannot make it spin. */
#define EXEC_MIN_DELAY_MS 1

static void exec_arm(struct bank_ctx *ctx, int64_t at_ms)
{
    int64_t now_ms = pl_now_ms();
    int64_t delay_ms = at_ms - now_ms;
    if (delay_ms < 0) {
        delay_ms = 0;
    }
    struct timeval tv = {.tv_sec = (time_t)(delay_ms / 1000),
                         .tv_usec = (suseconds_t)((delay_ms % 1000) * 1000)};
    evtimer_add(ctx->exec_timer, &tv);
    ctx->exec_timer_at_ms = now_ms + delay_ms;
}

void bank_exec_kick(struct bank_ctx *ctx, int64_t execute_at_ms)
{
    assert(ctx->exec_timer != NULL);
    if (ctx->exec_timer_at_ms != 0 && ctx->exec_timer_at_ms <= execute_at_ms) {
        return; /* already armed early enough; that pass re-arms for the rest */
    }
    exec_arm(ctx, execute_at_ms);
}

void bank_exec_count(struct bank_ctx *ctx, const struct payment *p)
{
    const char *outcome = p->failure_reason[0] != '\0' ? p->failure_reason : p->status;
    if (strcmp(outcome, "expired") == 0) {
        outcome = "expired";
    } else if (strcmp(outcome, "insufficient_funds") == 0) {
        outcome = "insufficient_funds";
    } else {
        outcome = "succeeded";
    }
    char labels[64];
    int n = snprintf(labels, sizeof labels, "outcome=\"%s\"", outcome);
    assert(n > 0 && (size_t)n < sizeof labels);
    (void)n;
    metrics_counter_add(ctx->metrics, "paylab_bank_payments_total", labels, 1);
}

/* Executes one due payment and answers its held request. false on SQLITE_BUSY or error. */
static bool exec_one(struct bank_ctx *ctx, const char *id)
{
    struct payment p;
    bool executed = false;
    struct payments_policy pol = bank_payments_policy(ctx);
    int rc = payments_execute_with(&ctx->db, &pol, id, pl_now_ms(), &p, &executed);
    if (rc != 0) {
        log_warn("payment execution deferred", "payment=%s error=%d", id, rc);
        return false;
    }
    if (executed) {
        bank_exec_count(ctx, &p);
        if (p.notify_url[0] != '\0') {
            bank_webhooks_kick(ctx); /* its outcome event committed with the balance change */
        }
        log_info("payment executed", "payment=%s reference=%s status=%s reason=%s", p.id,
                 p.reference, p.status, p.failure_reason[0] != '\0' ? p.failure_reason : "-");
    }
    bank_api_settled(ctx, &p);
    return true;
}

/* One pass: at most PAYMENTS_DUE_BATCH_MAX due payments, then re-arm. A full batch re-arms
 * at once, so a backlog (after a restart) drains without stalling the loop. */
static void exec_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct bank_ctx *ctx = arg;
    ctx->exec_timer_at_ms = 0;
    char ids[PAYMENTS_DUE_BATCH_MAX][ID_BYTES_MAX];
    size_t count = 0;
    int64_t now_ms = pl_now_ms();
    int rc = payments_due(&ctx->db, now_ms, ids, PAYMENTS_DUE_BATCH_MAX, &count);
    bool ok = rc == 0;
    for (size_t i = 0; ok && i < count; i++) {
        ok = exec_one(ctx, ids[i]);
    }
    if (!ok) {
        exec_arm(ctx, now_ms + EXEC_RETRY_MS);
        return;
    }
    int64_t next_ms = 0;
    rc = payments_next_due(&ctx->db, &next_ms);
    if (rc == PL_ENOTFOUND) {
        return; /* nothing processing: the next payment kicks the timer */
    }
    if (rc != 0) {
        exec_arm(ctx, now_ms + EXEC_RETRY_MS);
        return;
    }
    if (next_ms < now_ms + EXEC_MIN_DELAY_MS && count < PAYMENTS_DUE_BATCH_MAX) {
        next_ms = now_ms + EXEC_MIN_DELAY_MS;
    }
    exec_arm(ctx, next_ms);
}

int bank_exec_start(struct bank_ctx *ctx)
{
    assert(ctx->exec_timer == NULL);
    ctx->exec_timer = evtimer_new(ctx->base, exec_timer_cb, ctx);
    if (ctx->exec_timer == NULL) {
        return PL_ENOMEM;
    }
    exec_arm(ctx, 0); /* resume: the first pass finds what a previous run left processing */
    return PL_OK;
}

void bank_exec_stop(struct bank_ctx *ctx)
{
    if (ctx->exec_timer != NULL) {
        event_free(ctx->exec_timer);
        ctx->exec_timer = NULL;
    }
    ctx->exec_timer_at_ms = 0;
}
