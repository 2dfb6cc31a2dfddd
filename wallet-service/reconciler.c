/* reconciler.c owns closing what the wallet does not know: every --reconcile-ms it takes
 * transactions `unknown`, or `pending` for longer than --pending-grace-ms (a crash, a lost
 * answer), asks the bank by reference and settles on the bank's word. A reference the bank
 * never saw, or still holds as `processing`, is closed once its expires_at_ms has passed
 * with POST /v1/payments/void — on the bank's word, not the wallet's clock: the bank expires
 * a payment not yet executed — so no success can arrive late and nothing outlives the
 * horizon. Batches rotate: each tick starts after the last transaction the previous one
 * took, oldest first, and wraps at the end, so open transactions that stay open (an async
 * payment with a far deadline) never starve newer ones.
 * Must not: decide an outcome itself (only the bank's definite answer settles), keep more
 * than RECON_BATCH_MAX queries in flight, or query a transaction twice at once (including
 * one whose sync call is still in flight).
 * Invariant: a slot is either free (used == false, xfer == NULL) or owns exactly one bank
 * call for exactly one transaction. */
#include <assert.h>
#include <event2/event.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "pl.h"
#include "wallet.h"

static void recon_count(struct wallet_ctx *ctx, const char *action)
{
    char labels[64];
    snprintf(labels, sizeof labels, "action=\"%s\"", action);
    metrics_counter_add(ctx->metrics, "paylab_reconciler_actions_total", labels, 1);
}

static void recon_bank_count(struct wallet_ctx *ctx, const char *call, enum bank_verdict v)
{
    char labels[96];
    snprintf(labels, sizeof labels, "call=\"%s\",outcome=\"%s\"", call, bank_verdict_name(v));
    metrics_counter_add(ctx->metrics, "paylab_bank_calls_total", labels, 1);
}

static void recon_slot_free(struct recon_slot *s)
{
    assert(s->used);
    assert(s->ctx->recon_inflight > 0);
    s->ctx->recon_inflight--;
    memset(s, 0, sizeof *s);
}

bool reconciler_busy_with(const struct wallet_ctx *ctx, const char *txn_id)
{
    for (size_t i = 0; i < RECON_BATCH_MAX; i++) {
        if (ctx->recon[i].used && strcmp(ctx->recon[i].txn_id, txn_id) == 0)
            return true;
    }
    return false;
}

static void recon_done(const struct curlev_result *res, void *arg);

/* Starts the slot's next call (a query, or a void when s->voiding). Frees it on failure. */
static void recon_call(struct recon_slot *s)
{
    struct wallet_ctx *ctx = s->ctx;
    struct bank_call call;
    int rc =
        s->voiding ? bank_void_call(ctx, s->txn_id, &call) : bank_query_call(ctx, s->txn_id, &call);
    if (rc == 0)
        rc = curlev_start(ctx->curl, &call.req, recon_done, s, &s->xfer);
    bank_call_free(&call);
    if (rc != 0) {
        log_warn("reconciler could not start a bank call", "txn=%s rc=%d", s->txn_id, rc);
        recon_slot_free(s);
    }
}

/* Settles t on a definite answer from the bank. */
static void recon_settle(struct recon_slot *s, const struct ledger_txn *t,
                         const struct bank_answer *a)
{
    char reason[WALLET_REASON_BYTES_MAX + 64];
    snprintf(reason, sizeof reason, "%s: %s",
             s->voiding ? "the reconciler voided the reference" : "the reconciler asked the bank",
             a->detail);
    struct settle_outcome o = {
        .to = a->verdict == BANK_SUCCEEDED ? TXN_SUCCEEDED : TXN_FAILED,
        .by = SETTLED_RECONCILER,
        .failure_reason = a->failure_reason[0] != '\0' ? a->failure_reason : "failed",
        .bank_payment_id = a->payment_id,
        .event = "reconcile",
        .reason = reason,
    };
    struct ledger_txn now;
    bool changed = false;
    int rc = settle_apply(s->ctx, t->id, &o, &now, &changed);
    if (rc != 0) {
        log_warn("reconciler could not settle; next tick", "txn=%s rc=%d", t->id, rc);
        return;
    }
    recon_count(s->ctx, changed ? "settled" : "already_settled");
    if (changed)
        api_payment_settled(s->ctx, t->id);
}

/* Acts on the answer; returns true when the slot goes on with a void. */
static bool recon_act(struct recon_slot *s, const struct ledger_txn *t, const struct bank_answer *a)
{
    switch (a->verdict) {
    case BANK_SUCCEEDED:
    case BANK_FAILED:
        recon_settle(s, t, a);
        return false;
    case BANK_MISMATCH:
        settle_conflict(s->ctx, t->id, "reconciler", a->detail);
        recon_count(s->ctx, "conflict");
        return false;
    case BANK_NOT_FOUND:
        if (s->voiding || pl_now_ms() < t->expires_at_ms) {
            recon_count(s->ctx, "wait_expiry");
            return false;
        }
        recon_count(s->ctx, "void");
        log_info("reference unknown to the bank past its deadline: voiding", "txn=%s trace=%s",
                 t->id, t->traceparent);
        return true;
    case BANK_PROCESSING:
        /* Past its deadline the bank expires a payment it has not executed: ask it to. */
        if (s->voiding || pl_now_ms() < t->expires_at_ms) {
            recon_count(s->ctx, "wait_processing");
            return false;
        }
        recon_count(s->ctx, "void");
        log_info("the bank still holds the payment as processing past its deadline: voiding",
                 "txn=%s trace=%s", t->id, t->traceparent);
        return true;
    case BANK_REFUSED:
    case BANK_TIMEOUT:
    case BANK_ERROR:
        recon_count(s->ctx, "bank_unavailable");
        return false;
    }
    return false;
}

static void recon_done(const struct curlev_result *res, void *arg)
{
    struct recon_slot *s = arg;
    assert(s->used);
    s->xfer = NULL;
    struct ledger_txn t;
    if (ledger_txn_get(&s->ctx->db, s->txn_id, &t) != 0 || txn_status_final(t.status)) {
        recon_slot_free(s);
        return;
    }
    struct bank_answer a;
    bank_classify(res, &t, &a);
    recon_bank_count(s->ctx, s->voiding ? "void" : "query", a.verdict);
    log_debug("reconciler heard from the bank", "txn=%s verdict=%s http=%ld", t.id,
              bank_verdict_name(a.verdict), a.http_status);
    if (recon_act(s, &t, &a)) {
        s->voiding = true;
        recon_call(s);
        return;
    }
    recon_slot_free(s);
}

static struct recon_slot *recon_slot_take(struct wallet_ctx *ctx, const char *txn_id)
{
    for (size_t i = 0; i < RECON_BATCH_MAX; i++) {
        struct recon_slot *s = &ctx->recon[i];
        if (s->used)
            continue;
        s->used = true;
        s->ctx = ctx;
        s->voiding = false;
        s->xfer = NULL;
        pl_strlcpy(s->txn_id, txn_id, sizeof s->txn_id);
        ctx->recon_inflight++;
        return s;
    }
    return NULL;
}

static void recon_cursor_reset(struct wallet_ctx *ctx)
{
    ctx->recon_cursor_created_ms = -1;
    ctx->recon_cursor_id[0] = '\0';
}

/* Starts queries for the open transactions after the cursor, as many as there are free
 * slots, and moves the cursor past each one taken or skipped (already being asked about,
 * or waiting for its sync call). Returns true when the batch reached the end of the open
 * transactions: the cursor then wraps to the oldest. */
static bool recon_batch(struct wallet_ctx *ctx)
{
    size_t room = RECON_BATCH_MAX - ctx->recon_inflight;
    if (room == 0)
        return false;
    struct ledger_open_row rows[RECON_BATCH_MAX];
    size_t count = 0;
    int rc =
        ledger_open_txns(&ctx->db, pl_now_ms() - ctx->cfg.pending_grace_ms,
                         ctx->recon_cursor_created_ms, ctx->recon_cursor_id, rows, room, &count);
    if (rc != 0) {
        log_warn("reconciler could not read open transactions", "rc=%d", rc);
        return false;
    }
    for (size_t i = 0; i < count; i++) {
        bool busy = reconciler_busy_with(ctx, rows[i].id) || api_payment_in_flight(ctx, rows[i].id);
        struct recon_slot *s = busy ? NULL : recon_slot_take(ctx, rows[i].id);
        if (!busy && s == NULL)
            return false; /* no slot: this one comes first next tick */
        ctx->recon_cursor_created_ms = rows[i].created_at_ms;
        pl_strlcpy(ctx->recon_cursor_id, rows[i].id, sizeof ctx->recon_cursor_id);
        if (s == NULL)
            continue;
        recon_count(ctx, "query");
        recon_call(s);
    }
    if (count < room) {
        recon_cursor_reset(ctx);
        return true;
    }
    return false;
}

static void recon_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct wallet_ctx *ctx = arg;
    if (ctx->draining)
        return;
    bool from_oldest = ctx->recon_cursor_created_ms < 0;
    /* A batch that ended early wrapped: the rest of its room goes to the oldest ones. */
    if (recon_batch(ctx) && !from_oldest)
        recon_batch(ctx);
}

int reconciler_start(struct wallet_ctx *ctx)
{
    assert(ctx->recon_timer == NULL);
    recon_cursor_reset(ctx);
    ctx->recon_timer = event_new(ctx->base, -1, EV_PERSIST, recon_tick, ctx);
    if (ctx->recon_timer == NULL)
        return PL_ENOMEM;
    struct timeval tv = {
        .tv_sec = (time_t)(ctx->cfg.reconcile_ms / 1000),
        .tv_usec = (suseconds_t)((ctx->cfg.reconcile_ms % 1000) * 1000),
    };
    if (event_add(ctx->recon_timer, &tv) != 0)
        return PL_EIO;
    return 0;
}

void reconciler_stop(struct wallet_ctx *ctx)
{
    if (ctx->recon_timer != NULL) {
        event_free(ctx->recon_timer);
        ctx->recon_timer = NULL;
    }
    for (size_t i = 0; i < RECON_BATCH_MAX; i++) {
        struct recon_slot *s = &ctx->recon[i];
        if (!s->used)
            continue;
        if (s->xfer != NULL)
            curlev_cancel(ctx->curl, s->xfer);
        recon_slot_free(s);
    }
}
