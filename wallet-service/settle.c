/* settle.c owns "settle this transaction to this outcome": the status change, the postings
 * that go with it, the timeline line and the idempotency status, in ONE SQLite transaction.
 * Every path that learns an outcome goes through here: the sync response and the outbox's
 * 2xx (settle_apply), the reconciler (settle_apply), and webhook intake (settle_in_txn,
 * inside the transaction that also records its webhooks_seen row). The same commit writes
 * the user's event rows (transaction.updated, then balance.updated when the wallet balance
 * moved) and stops the transaction's outbox row once it is final.
 * Must not: do network I/O or reply to clients; callers act on the returned state after
 * the commit.
 * Invariant: the state-machine guard (ledger_txn_transition) lets exactly one path move a
 * transaction out of pending/unknown, so its settlement postings are written at most once;
 * a path that loses the race changes nothing and reports the state the winner committed.
 * The one exception is deliberate and loud: the teaching switch --unsafe-no-dedupe turns
 * the guard off (settle_unguarded), so a repeated outcome posts again — what verify's
 * invariant 5 exists to catch. Even then no wallet or payouts account goes below zero. */
#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "db.h"
#include "log.h"
#include "pl.h"
#include "wallet.h"

#define MASK(s) (1u << (unsigned)(s))

/* True when t moving to `to` changes its user's wallet balance (a credited top-up, a
 * returned withdrawal hold). */
static bool settle_moves_wallet(const struct ledger_txn *t, enum txn_status to)
{
    return (t->kind == TXN_KIND_TOPUP && to == TXN_SUCCEEDED) ||
           (t->kind == TXN_KIND_WITHDRAWAL && to == TXN_FAILED);
}

/* The accounts of the settlement posting of docs/ledger.md for t moving to `to` (wallet is
 * the caller's buffer for the user's account); false when nothing moves (a failed top-up,
 * an unknown). */
static bool settle_accounts(const struct ledger_txn *t, enum txn_status to,
                            char wallet[WALLET_ACCOUNT_ID_BYTES_MAX], const char **from,
                            const char **dest)
{
    ledger_wallet_account(t->user, wallet, WALLET_ACCOUNT_ID_BYTES_MAX);
    *from = NULL;
    *dest = NULL;
    if (t->kind == TXN_KIND_TOPUP && to == TXN_SUCCEEDED) {
        *from = LEDGER_ACCOUNT_BANK;
        *dest = wallet;
    } else if (t->kind == TXN_KIND_WITHDRAWAL && to == TXN_SUCCEEDED) {
        *from = LEDGER_ACCOUNT_PAYOUTS;
        *dest = LEDGER_ACCOUNT_BANK;
    } else if (t->kind == TXN_KIND_WITHDRAWAL && to == TXN_FAILED) {
        *from = LEDGER_ACCOUNT_PAYOUTS;
        *dest = wallet;
    }
    return *from != NULL;
}

/* The settlement postings of docs/ledger.md for t moving to `to`. */
static int settle_post(struct wallet_ctx *ctx, const struct ledger_txn *t, enum txn_status to,
                       int64_t now_ms)
{
    char wallet[WALLET_ACCOUNT_ID_BYTES_MAX];
    const char *from = NULL, *dest = NULL;
    if (!settle_accounts(t, to, wallet, &from, &dest))
        return 0;
    int rc = ledger_post(&ctx->db, t->id, from, dest, t->amount_minor, now_ms);
    assert(rc != LEDGER_EFUNDS); /* the withdrawal's hold is in payouts:in_flight */
    if (rc != 0)
        return rc;
    int64_t sum = -1;
    rc = ledger_txn_entries_sum(&ctx->db, t->id, &sum);
    if (rc != 0)
        return rc;
    assert(sum == 0); /* invariant 2 */
    return 0;
}

/* Another path moved t first: a contradicting final outcome is recorded, never applied. */
static int settle_lost_race(struct wallet_ctx *ctx, const struct ledger_txn *t,
                            const struct settle_outcome *o, int64_t now_ms)
{
    if (!txn_status_final(t->status) || !txn_status_final(o->to) || t->status == o->to)
        return 0;
    char detail[WALLET_REASON_BYTES_MAX + 64];
    snprintf(detail, sizeof detail, "%s said %s, but the transaction is already %s: %s",
             txn_settled_by_name(o->by), txn_status_name(o->to), txn_status_name(t->status),
             o->reason);
    log_warn("conflicting outcome recorded, not applied", "txn=%s trace=%s now=%s said=%s", t->id,
             t->traceparent, txn_status_name(t->status), txn_status_name(o->to));
    int rc = ledger_conflict_insert(&ctx->db, t->id, txn_settled_by_name(o->by), detail, now_ms);
    if (rc != 0)
        return rc;
    return ledger_log(&ctx->db, t->id, now_ms, "conflict", t->status, detail);
}

/* What goes with a move the guard allowed: postings, timeline, idempotency status, the
 * outbox row, the events. Any failure here is a real one (never "lost the race"). */
static int settle_effects(struct wallet_ctx *ctx, const struct ledger_txn *t,
                          const struct settle_outcome *o, int64_t now_ms)
{
    int rc = settle_post(ctx, t, o->to, now_ms);
    if (rc != 0)
        return rc;
    rc = ledger_log(&ctx->db, t->id, now_ms, o->event, o->to, o->reason);
    if (rc != 0)
        return rc;
    if (o->idem_status_code != 0)
        rc = ledger_idem_set_status(&ctx->db, t->id, o->idem_status_code);
    if (rc == 0 && txn_status_final(o->to))
        rc = outbox_close(&ctx->db, t->id, OUTBOX_SETTLED, now_ms);
    if (rc != 0)
        return rc;
    struct ledger_txn after = *t;
    after.status = o->to;
    after.settled_by = o->by;
    after.updated_at_ms = now_ms;
    return events_record(ctx, &after, t->user, settle_moves_wallet(t, o->to), now_ms);
}

/* Moves t to o->to inside the open transaction; PL_ECONFLICT only when the guard refused. */
static int settle_move(struct wallet_ctx *ctx, const struct ledger_txn *t,
                       const struct settle_outcome *o, int64_t now_ms)
{
    unsigned from =
        o->to == TXN_UNKNOWN ? MASK(TXN_PENDING) : MASK(TXN_PENDING) | MASK(TXN_UNKNOWN);
    const char *reason = o->to == TXN_FAILED ? o->failure_reason : NULL;
    int rc = ledger_txn_transition(&ctx->db, t->id, from, o->to, o->by, reason, o->bank_payment_id,
                                   now_ms);
    if (rc != 0)
        return rc;
    rc = settle_effects(ctx, t, o, now_ms);
    return rc == PL_ECONFLICT ? PL_EDB : rc; /* a constraint after the move is a failure */
}

/* --unsafe-no-dedupe: the guard refused because t is already final; apply o all the same —
 * status, postings, timeline, events — and say so. The ledger's floor still holds: only a
 * posting from external:bank (a top-up's credit: money made) is repeated. One that would
 * come from payouts:in_flight or a wallet is recorded as a conflict instead (*moved_out stays
 * false): that account pools every user's holds, so a balance check on it would let one
 * withdrawal's repeat spend another's hold, and that one's own settlement then fail. */
static int settle_unguarded(struct wallet_ctx *ctx, const struct ledger_txn *t,
                            const struct settle_outcome *o, int64_t now_ms, bool *moved_out)
{
    assert(ctx->cfg.unsafe_no_dedupe);
    assert(txn_status_final(t->status) && txn_status_final(o->to));
    char wallet[WALLET_ACCOUNT_ID_BYTES_MAX];
    const char *from = NULL, *dest = NULL;
    int rc = 0;
    if (settle_accounts(t, o->to, wallet, &from, &dest) && strcmp(from, LEDGER_ACCOUNT_BANK) != 0) {
        log_warn("UNSAFE --unsafe-no-dedupe: a repeated outcome would spend held money; "
                 "recorded as a conflict",
                 "txn=%s account=%s", t->id, from);
        rc = ledger_conflict_insert(&ctx->db, t->id, txn_settled_by_name(o->by),
                                    "UNSAFE --unsafe-no-dedupe: applying this outcome again "
                                    "would spend money held for other transactions",
                                    now_ms);
        return rc != 0 ? rc : ledger_log(&ctx->db, t->id, now_ms, "conflict", t->status, o->reason);
    }
    rc = ledger_txn_force(&ctx->db, t->id, o->to, o->by,
                          o->to == TXN_FAILED ? o->failure_reason : NULL, o->bank_payment_id,
                          now_ms);
    if (rc == 0)
        rc = settle_effects(ctx, t, o, now_ms);
    if (rc != 0)
        return rc == PL_ECONFLICT ? PL_EDB : rc;
    log_warn("UNSAFE --unsafe-no-dedupe: outcome applied again to a final transaction (the "
             "state guard is off)",
             "txn=%s trace=%s was=%s now=%s by=%s", t->id, t->traceparent,
             txn_status_name(t->status), txn_status_name(o->to), txn_settled_by_name(o->by));
    *moved_out = true;
    return 0;
}

int settle_in_txn(struct wallet_ctx *ctx, const struct ledger_txn *t,
                  const struct settle_outcome *o, int64_t now_ms, bool *moved_out)
{
    assert(ctx->db.in_txn);
    assert(o->to != TXN_PENDING);
    assert(txn_status_final(o->to) == (o->by != SETTLED_NONE));
    *moved_out = false;
    int rc = settle_move(ctx, t, o, now_ms);
    if (rc == 0) {
        *moved_out = true;
        return 0;
    }
    if (rc != PL_ECONFLICT)
        return rc;
    if (ctx->cfg.unsafe_no_dedupe && txn_status_final(t->status) && txn_status_final(o->to))
        return settle_unguarded(ctx, t, o, now_ms, moved_out);
    return settle_lost_race(ctx, t, o, now_ms);
}

int settle_apply(struct wallet_ctx *ctx, const char *txn_id, const struct settle_outcome *o,
                 struct ledger_txn *out, bool *changed_out)
{
    assert(o->to != TXN_PENDING);
    assert(txn_status_final(o->to) == (o->by != SETTLED_NONE));
    assert(o->event != NULL && o->reason != NULL);
    *changed_out = false;
    int64_t now_ms = pl_now_ms();
    int rc = db_begin(&ctx->db);
    if (rc != 0)
        return rc;
    struct ledger_txn t;
    rc = ledger_txn_get(&ctx->db, txn_id, &t);
    if (rc != 0)
        goto fail;
    bool moved = false;
    rc = settle_in_txn(ctx, &t, o, now_ms, &moved);
    if (rc != 0)
        goto fail;
    rc = db_commit(&ctx->db);
    if (rc != 0)
        return rc;
    *changed_out = moved;
    if (moved) {
        events_kick(ctx);
        log_info("transaction updated", "txn=%s trace=%s status=%s by=%s reason=\"%s\"", txn_id,
                 t.traceparent, txn_status_name(o->to),
                 o->by != SETTLED_NONE ? txn_settled_by_name(o->by) : "-", o->reason);
    }
    return ledger_txn_get(&ctx->db, txn_id, out);
fail:
    db_rollback(&ctx->db);
    if (rc == PL_ENOTFOUND)
        log_warn("nothing to settle: no such transaction", "txn=%s", txn_id);
    else if (rc != PL_EBUSY)
        log_error("settling failed", "txn=%s rc=%d", txn_id, rc);
    return rc;
}

int settle_conflict(struct wallet_ctx *ctx, const char *txn_id, const char *source,
                    const char *detail)
{
    int64_t now_ms = pl_now_ms();
    int rc = db_begin(&ctx->db);
    if (rc != 0)
        return rc;
    struct ledger_txn t;
    rc = ledger_txn_get(&ctx->db, txn_id, &t);
    if (rc == 0)
        rc = ledger_conflict_insert(&ctx->db, txn_id, source, detail, now_ms);
    if (rc == 0)
        rc = ledger_log(&ctx->db, txn_id, now_ms, "conflict", t.status, detail);
    if (rc != 0) {
        db_rollback(&ctx->db);
        return rc;
    }
    rc = db_commit(&ctx->db);
    if (rc == 0)
        log_warn("conflict recorded, not applied", "txn=%s detail=\"%s\"", txn_id, detail);
    return rc;
}
