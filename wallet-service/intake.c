/* intake.c owns webhook intake: the ZMQ ROUTER the gateways' DEALERs connect to, the
 * relay messages [identity][request_id][json] of docs/contracts.md, the second signature
 * check, and applying a bank webhook to the wallet's state — idempotently, in ONE SQLite
 * transaction with its webhooks_seen row.
 * Must not: trust the relay or the webhook body (everything is checked, nothing asserted),
 * take amount or user from the webhook (they come from the wallet's own record), reverse a
 * final state, or answer before the COMMIT that records the answer.
 *
 * Invariants:
 *  - A webhook-id is applied at most once: its webhooks_seen row commits with its effects,
 *    so a repeat (the bank retries, duplicates, a second gateway) finds it and answers
 *    `duplicate` without touching anything else.
 *  - A transaction leaves pending/unknown at most once (settle_in_txn's guard); the same
 *    final status again is `duplicate`, the opposite one is a recorded `conflict`.
 *  - `retry` means nothing was committed: the gateway answers the bank 503 and the bank
 *    sends the webhook again. Every other result is durable before it is sent.
 *  - Every outcome but `retry` and `rejected` leaves a timeline line on the transaction it
 *    names (when it names one of ours), so `paylab tx` shows each arrival.
 *  - The two guards above are off under the teaching switch --unsafe-no-dedupe, and only
 *    there: a seen webhook-id is handled again and a final transaction takes the outcome
 *    again (settle_in_txn), each time with an UNSAFE warning. */
#include <assert.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

#include "ids.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "pl.h"
#include "sign.h"
#include "wallet.h"
#include "zbus.h"

/* Header values relayed by the gateway. */
#define INTAKE_WEBHOOK_ID_CHARS_MAX 64
#define INTAKE_TIMESTAMP_CHARS_MAX 20
#define INTAKE_SIGNATURE_CHARS_MAX 1024
/* A reference longer than this is not ours; it is still recorded (truncated) if unmatched. */
#define INTAKE_REFERENCE_CHARS_MAX 64
#define INTAKE_TYPE_CHARS_MAX 32

enum intake_result {
    INTAKE_APPLIED = 0,
    INTAKE_DUPLICATE,
    INTAKE_CONFLICT,
    INTAKE_IGNORED,
    INTAKE_RETRY,
    INTAKE_REJECTED,
};

static const char *const intake_result_names[] = {"applied", "duplicate", "conflict",
                                                  "ignored", "retry",     "rejected"};

/* The relay's fields; strings borrowed from the parsed relay JSON. */
struct intake_relay {
    const char *webhook_id;
    const char *signature;
    const char *traceparent;
    const char *body;
    size_t body_bytes;
    char timestamp[INTAKE_TIMESTAMP_CHARS_MAX + 1];
};

/* A webhook body as far as we understood it. valid == false: signed by the bank, but not a
 * payment webhook we can read; it is recorded as unmatched. */
struct intake_hook {
    bool valid;
    char type[INTAKE_TYPE_CHARS_MAX + 1];
    bool processing;        /* payment.processing */
    enum txn_status status; /* SUCCEEDED or FAILED when !processing */
    char reference[INTAKE_REFERENCE_CHARS_MAX + 1];
    int64_t amount_minor;
    char payment_id[ID_BYTES_MAX];
    char failure_reason[WALLET_FAILURE_BYTES_MAX];
};

/* What applying a webhook decided, and for which transaction. */
struct intake_verdict {
    enum intake_result result;
    char txn_id[ID_BYTES_MAX]; /* "" when none of ours */
    bool moved;                /* a status change committed: publish events */
};

/* ===================================================================== parsing ====== */

/* Reads the relay JSON; false when it is not one we can verify. */
static bool intake_parse_relay(const cJSON *o, struct intake_relay *r)
{
    memset(r, 0, sizeof *r);
    if (json_get_string(o, "webhook_id", true, INTAKE_WEBHOOK_ID_CHARS_MAX, &r->webhook_id) !=
            JSON_OK ||
        json_get_string(o, "signature", true, INTAKE_SIGNATURE_CHARS_MAX, &r->signature) !=
            JSON_OK ||
        json_get_string(o, "body", true, INTAKE_BODY_BYTES_MAX, &r->body) != JSON_OK)
        return false;
    if (r->webhook_id[0] == '\0')
        return false;
    r->body_bytes = strlen(r->body);
    /* Only logged: a malformed one is dropped, not a reason to refuse the webhook. */
    if (json_get_string(o, "traceparent", false, TRACEPARENT_BYTES - 1, &r->traceparent) !=
            JSON_OK ||
        (r->traceparent != NULL && !ids_traceparent_valid(r->traceparent)))
        r->traceparent = NULL;
    /* The webhook-timestamp header: relayed as its text, or as a number. */
    const char *ts = NULL;
    int64_t ts_num = 0;
    if (json_get_string(o, "timestamp", true, INTAKE_TIMESTAMP_CHARS_MAX, &ts) == JSON_OK) {
        pl_strlcpy(r->timestamp, ts, sizeof r->timestamp);
        return true;
    }
    if (json_get_int64(o, "timestamp", true, &ts_num) != JSON_OK || ts_num < 0)
        return false;
    snprintf(r->timestamp, sizeof r->timestamp, "%lld", (long long)ts_num);
    return true;
}

/* type → processing / final status; false for any other type. */
static bool intake_parse_type(struct intake_hook *h, const char *type, const char *status)
{
    static const struct {
        const char *type, *status;
        bool processing;
        enum txn_status to;
    } types[] = {
        {"payment.processing", "processing", true, TXN_PENDING},
        {"payment.succeeded", "succeeded", false, TXN_SUCCEEDED},
        {"payment.failed", "failed", false, TXN_FAILED},
    };
    for (size_t i = 0; i < PL_ARRAY_LEN(types); i++) {
        if (strcmp(type, types[i].type) != 0)
            continue;
        if (status != NULL && strcmp(status, types[i].status) != 0)
            return false;
        h->processing = types[i].processing;
        h->status = types[i].to;
        return true;
    }
    return false;
}

/* Reads the webhook body strictly (docs/api.md). Sets h->valid. */
static void intake_parse_hook(const struct intake_relay *r, struct intake_hook *h)
{
    memset(h, 0, sizeof *h);
    cJSON *o = json_parse_object(r->body, r->body_bytes);
    const cJSON *data = o != NULL ? cJSON_GetObjectItemCaseSensitive(o, "data") : NULL;
    const char *id = NULL, *type = NULL, *ref = NULL, *status = NULL, *currency = NULL;
    const char *pid = NULL, *reason = NULL;
    bool ok =
        data != NULL && cJSON_IsObject(data) &&
        json_get_string(o, "id", true, INTAKE_WEBHOOK_ID_CHARS_MAX, &id) == JSON_OK &&
        json_get_string(o, "type", true, INTAKE_TYPE_CHARS_MAX, &type) == JSON_OK &&
        json_get_string(data, "reference", true, INTAKE_REFERENCE_CHARS_MAX, &ref) == JSON_OK &&
        json_get_int64(data, "amount_minor", true, &h->amount_minor) == JSON_OK &&
        json_get_string(data, "status", false, 16, &status) == JSON_OK &&
        json_get_string(data, "currency", false, 8, &currency) == JSON_OK &&
        json_get_string(data, "payment_id", false, ID_BYTES_MAX - 1, &pid) == JSON_OK &&
        json_get_string(data, "failure_reason", false, WALLET_FAILURE_BYTES_MAX - 1, &reason) ==
            JSON_OK;
    if (type != NULL)
        pl_strlcpy(h->type, type, sizeof h->type);
    if (ref != NULL)
        pl_strlcpy(h->reference, ref, sizeof h->reference);
    ok = ok && (currency == NULL || strcmp(currency, "INR") == 0) &&
         intake_parse_type(h, type, status);
    if (ok && pid != NULL)
        pl_strlcpy(h->payment_id, pid, sizeof h->payment_id);
    if (ok && reason != NULL)
        pl_strlcpy(h->failure_reason, reason, sizeof h->failure_reason);
    h->valid = ok;
    cJSON_Delete(o);
}

/* ===================================================================== applying ===== */

static int intake_seen_get(struct db *db, const char *webhook_id, char *txn_id, size_t cap,
                           bool *found_out)
{
    *found_out = false;
    sqlite3_stmt *st =
        db_stmt(db, "SELECT transaction_id FROM webhooks_seen WHERE webhook_id = ?1");
    if (st == NULL)
        return PL_EDB;
    db_bind_text(st, 1, webhook_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *found_out = true;
        db_column_copy(st, 0, txn_id, cap);
    }
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_rc(rc);
}

/* replace: --unsafe-no-dedupe handles a seen webhook-id again, so its row is overwritten. */
static int intake_seen_insert(struct db *db, const char *webhook_id, const struct intake_verdict *v,
                              bool replace, int64_t now_ms)
{
    sqlite3_stmt *st =
        replace ? db_stmt(db, "INSERT OR REPLACE INTO webhooks_seen (webhook_id, transaction_id, "
                              "result, received_at_ms) VALUES (?1, ?2, ?3, ?4)")
                : db_stmt(db, "INSERT INTO webhooks_seen (webhook_id, transaction_id, result, "
                              "received_at_ms) VALUES (?1, ?2, ?3, ?4)");
    if (st == NULL)
        return PL_EDB;
    db_bind_text(st, 1, webhook_id);
    db_bind_text(st, 2, v->txn_id[0] != '\0' ? v->txn_id : NULL);
    db_bind_text(st, 3, intake_result_names[v->result]);
    sqlite3_bind_int64(st, 4, now_ms);
    return db_exec_stmt(st);
}

static int intake_unmatched_insert(struct db *db, const struct intake_relay *r,
                                   const struct intake_hook *h, int64_t now_ms)
{
    sqlite3_stmt *st = db_stmt(db, "INSERT INTO webhooks_unmatched (webhook_id, reference, type, "
                                   "body, received_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)");
    if (st == NULL)
        return PL_EDB;
    db_bind_text(st, 1, r->webhook_id);
    db_bind_text(st, 2, h->reference[0] != '\0' ? h->reference : NULL);
    db_bind_text(st, 3, h->type[0] != '\0' ? h->type : NULL);
    db_bind_text(st, 4, r->body);
    sqlite3_bind_int64(st, 5, now_ms);
    return db_exec_stmt(st);
}

/* The timeline line of a webhook that did not move the transaction. */
static int intake_log(struct wallet_ctx *ctx, const struct ledger_txn *t,
                      const struct intake_relay *r, const struct intake_hook *h,
                      enum intake_result result, const char *why, int64_t now_ms)
{
    char reason[WALLET_REASON_BYTES_MAX + 128];
    snprintf(reason, sizeof reason, "%s from the bank (webhook %s, %s%s%s)",
             h->type[0] != '\0' ? h->type : "a webhook", r->webhook_id, intake_result_names[result],
             why[0] != '\0' ? ": " : "", why);
    return ledger_log(&ctx->db, t->id, now_ms, "webhook", t->status, reason);
}

/* A contradiction: recorded in conflicts and on the timeline, never applied. */
static int intake_conflict(struct wallet_ctx *ctx, const struct ledger_txn *t,
                           const struct intake_relay *r, const struct intake_hook *h,
                           const char *why, int64_t now_ms)
{
    char detail[WALLET_REASON_BYTES_MAX + 128];
    snprintf(detail, sizeof detail, "webhook %s (%s): %s", r->webhook_id, h->type, why);
    log_warn("conflicting webhook recorded, not applied", "txn=%s webhook=%s why=\"%s\"", t->id,
             r->webhook_id, why);
    int rc = ledger_conflict_insert(&ctx->db, t->id, "webhook", detail, now_ms);
    if (rc != 0)
        return rc;
    return intake_log(ctx, t, r, h, INTAKE_CONFLICT, why, now_ms);
}

/* payment.processing: the bank has the payment; its id is news at most once. */
static int intake_processing(struct wallet_ctx *ctx, const struct ledger_txn *t,
                             const struct intake_relay *r, const struct intake_hook *h,
                             int64_t now_ms, struct intake_verdict *v)
{
    if (txn_status_final(t->status)) {
        v->result = INTAKE_IGNORED;
        return intake_log(ctx, t, r, h, v->result, "the transaction is already final", now_ms);
    }
    if (h->payment_id[0] != '\0' && t->bank_payment_id[0] != '\0' &&
        strcmp(h->payment_id, t->bank_payment_id) != 0) {
        v->result = INTAKE_CONFLICT;
        return intake_conflict(ctx, t, r, h, "another bank payment id for this reference", now_ms);
    }
    bool changed = false;
    int rc = 0;
    if (h->payment_id[0] != '\0')
        rc = ledger_txn_set_payment_id(&ctx->db, t->id, h->payment_id, now_ms, &changed);
    /* The bank has the payment: the outbox need not send it again. */
    if (rc == 0)
        rc = outbox_close(&ctx->db, t->id, OUTBOX_ACCEPTED, now_ms);
    if (rc != 0)
        return rc;
    v->result = changed ? INTAKE_APPLIED : INTAKE_DUPLICATE;
    return intake_log(ctx, t, r, h, v->result,
                      changed ? "the bank is processing the payment"
                              : "the wallet already knew the bank is processing it",
                      now_ms);
}

/* --unsafe-no-dedupe: a final webhook for a final transaction goes to settle_in_txn all the
 * same, which applies it again (or records why it could not). */
static int intake_final_unguarded(struct wallet_ctx *ctx, const struct ledger_txn *t,
                                  const struct intake_relay *r, const struct intake_hook *h,
                                  const struct settle_outcome *o, int64_t now_ms,
                                  struct intake_verdict *v)
{
    int rc = settle_in_txn(ctx, t, o, now_ms, &v->moved);
    if (rc != 0 || v->moved) {
        v->result = INTAKE_APPLIED;
        return rc;
    }
    v->result = t->status == h->status ? INTAKE_DUPLICATE : INTAKE_CONFLICT;
    return intake_log(ctx, t, r, h, v->result, "UNSAFE --unsafe-no-dedupe: not applied again",
                      now_ms);
}

/* payment.succeeded / payment.failed through the state-machine guard. */
static int intake_final(struct wallet_ctx *ctx, const struct ledger_txn *t,
                        const struct intake_relay *r, const struct intake_hook *h, int64_t now_ms,
                        struct intake_verdict *v)
{
    char reason[WALLET_REASON_BYTES_MAX + 128];
    snprintf(reason, sizeof reason, "%s from the bank (webhook %s, applied)%s%s", h->type,
             r->webhook_id, h->status == TXN_FAILED ? ": " : "",
             h->status == TXN_FAILED ? (h->failure_reason[0] != '\0' ? h->failure_reason : "failed")
                                     : "");
    struct settle_outcome o = {
        .to = h->status,
        .by = SETTLED_WEBHOOK,
        .failure_reason = h->failure_reason[0] != '\0' ? h->failure_reason : "failed",
        .bank_payment_id = h->payment_id,
        .event = "webhook",
        .reason = reason,
    };
    if (ctx->cfg.unsafe_no_dedupe && txn_status_final(t->status))
        return intake_final_unguarded(ctx, t, r, h, &o, now_ms, v);
    if (t->status == h->status) {
        v->result = INTAKE_DUPLICATE;
        return intake_log(ctx, t, r, h, v->result, "the transaction already has this outcome",
                          now_ms);
    }
    if (txn_status_final(t->status)) {
        v->result = INTAKE_CONFLICT;
        return intake_conflict(ctx, t, r, h, "the opposite of the transaction's final status",
                               now_ms);
    }
    int rc = settle_in_txn(ctx, t, &o, now_ms, &v->moved);
    if (rc != 0)
        return rc;
    assert(v->moved); /* read in this transaction as pending/unknown */
    v->result = INTAKE_APPLIED;
    return 0;
}

/* Decides and writes everything but the webhooks_seen row, inside the open transaction. */
static int intake_decide(struct wallet_ctx *ctx, const struct intake_relay *r,
                         const struct intake_hook *h, int64_t now_ms, struct intake_verdict *v)
{
    struct ledger_txn t;
    int rc = PL_ENOTFOUND;
    if (h->valid && ids_valid("wtx_", h->reference))
        rc = ledger_txn_get(&ctx->db, h->reference, &t);
    if (rc == PL_ENOTFOUND) {
        log_warn("webhook names no transaction of ours; recorded as unmatched",
                 "webhook=%s reference=\"%s\" type=\"%s\" readable=%s", r->webhook_id, h->reference,
                 h->type, h->valid ? "yes" : "no");
        v->result = INTAKE_IGNORED;
        return intake_unmatched_insert(&ctx->db, r, h, now_ms);
    }
    if (rc != 0)
        return rc;
    pl_strlcpy(v->txn_id, t.id, sizeof v->txn_id);
    if (h->amount_minor != t.amount_minor) {
        char why[128];
        snprintf(why, sizeof why, "the webhook says %lld paise, the transaction is for %lld",
                 (long long)h->amount_minor, (long long)t.amount_minor);
        v->result = INTAKE_CONFLICT;
        return intake_conflict(ctx, &t, r, h, why, now_ms);
    }
    if (h->processing)
        return intake_processing(ctx, &t, r, h, now_ms, v);
    return intake_final(ctx, &t, r, h, now_ms, v);
}

/* A webhook-id seen before: a timeline line on its transaction, nothing else. */
static int intake_repeat(struct wallet_ctx *ctx, const struct intake_relay *r,
                         const struct intake_hook *h, int64_t now_ms, struct intake_verdict *v)
{
    v->result = INTAKE_DUPLICATE;
    struct ledger_txn t;
    if (v->txn_id[0] == '\0' || ledger_txn_get(&ctx->db, v->txn_id, &t) != 0)
        return 0;
    return intake_log(ctx, &t, r, h, v->result, "this webhook-id was handled before", now_ms);
}

/* ONE transaction: the effects and the webhooks_seen row. RETRY when nothing committed. */
static void intake_apply(struct wallet_ctx *ctx, const struct intake_relay *r,
                         const struct intake_hook *h, struct intake_verdict *v)
{
    memset(v, 0, sizeof *v);
    int64_t now_ms = pl_now_ms();
    int rc = db_begin(&ctx->db);
    if (rc != 0) {
        v->result = INTAKE_RETRY;
        return;
    }
    bool seen = false;
    rc = intake_seen_get(&ctx->db, r->webhook_id, v->txn_id, sizeof v->txn_id, &seen);
    bool again = rc == 0 && seen && ctx->cfg.unsafe_no_dedupe;
    if (again) {
        log_warn("UNSAFE --unsafe-no-dedupe: webhook-id seen before, handled again (the "
                 "webhook-id check is off)",
                 "webhook=%s txn=%s", r->webhook_id, v->txn_id[0] != '\0' ? v->txn_id : "-");
        v->txn_id[0] = '\0';
        seen = false;
    }
    if (rc == 0 && seen)
        rc = intake_repeat(ctx, r, h, now_ms, v);
    if (rc == 0 && !seen)
        rc = intake_decide(ctx, r, h, now_ms, v);
    if (rc == 0 && !seen)
        rc = intake_seen_insert(&ctx->db, r->webhook_id, v, again, now_ms);
    if (rc != 0) {
        db_rollback(&ctx->db);
    } else {
        rc = db_commit(&ctx->db);
    }
    if (rc != 0) {
        log_warn("webhook not applied; the bank will send it again", "webhook=%s rc=%d",
                 r->webhook_id, rc);
        memset(v, 0, sizeof *v);
        v->result = INTAKE_RETRY;
        return;
    }
    if (v->moved) {
        events_kick(ctx);
        api_payment_settled(ctx, v->txn_id); /* a sync client still waiting hears it now */
    }
}

/* ===================================================================== the socket === */

/* [identity][request_id][{"result","transaction_id"}], sent after the commit. */
static void intake_reply(struct wallet_ctx *ctx, const struct zbus_frame *in,
                         const struct intake_verdict *v)
{
    char body[128 + ID_BYTES_MAX];
    int n = v->txn_id[0] != '\0'
                ? snprintf(body, sizeof body, "{\"result\":\"%s\",\"transaction_id\":\"%s\"}",
                           intake_result_names[v->result], v->txn_id)
                : snprintf(body, sizeof body, "{\"result\":\"%s\",\"transaction_id\":null}",
                           intake_result_names[v->result]);
    assert(n > 0 && (size_t)n < sizeof body);
    struct zbus_frame out[3] = {in[0], in[1], {.data = body, .bytes = (size_t)n}};
    if (zbus_send(ctx->router, out, 3) != 0)
        log_warn("could not answer the gateway; it will time out and the bank retries", NULL);
    char labels[48];
    snprintf(labels, sizeof labels, "result=\"%s\"", intake_result_names[v->result]);
    metrics_counter_add(ctx->metrics, "paylab_webhooks_total", labels, 1);
}

/* Verifies and applies one relayed webhook. */
static void intake_handle(struct wallet_ctx *ctx, const struct zbus_frame *frames,
                          struct intake_verdict *v)
{
    memset(v, 0, sizeof *v);
    v->result = INTAKE_REJECTED;
    cJSON *o = json_parse_object(frames[2].data, frames[2].bytes);
    struct intake_relay r;
    if (o == NULL || !intake_parse_relay(o, &r)) {
        log_warn("unreadable relay message rejected", "bytes=%zu", frames[2].bytes);
        cJSON_Delete(o);
        return;
    }
    if (sign_webhook_verify(ctx->webhook_secret, r.webhook_id, r.timestamp, r.signature, r.body,
                            r.body_bytes, pl_now_ms() / 1000) != 0) {
        log_warn("relayed webhook with a bad signature or timestamp rejected", "webhook=%s",
                 r.webhook_id);
        cJSON_Delete(o);
        return;
    }
    struct intake_hook h;
    intake_parse_hook(&r, &h);
    intake_apply(ctx, &r, &h, v);
    log_info("webhook handled", "webhook=%s type=\"%s\" reference=\"%s\" result=%s txn=%s trace=%s",
             r.webhook_id, h.type, h.reference, intake_result_names[v->result],
             v->txn_id[0] != '\0' ? v->txn_id : "-", r.traceparent != NULL ? r.traceparent : "-");
    cJSON_Delete(o);
}

static void intake_on_message(const struct zbus_frame *frames, size_t frames_count, void *arg)
{
    struct wallet_ctx *ctx = arg;
    assert(!ctx->db.in_txn);
    if (frames_count != 3 || frames[1].bytes == 0 ||
        frames[1].bytes > INTAKE_REQUEST_ID_BYTES_MAX) {
        log_warn("relay message of the wrong shape dropped", "frames=%zu", frames_count);
        metrics_counter_add(ctx->metrics, "paylab_webhooks_total", "result=\"malformed\"", 1);
        return;
    }
    struct intake_verdict v;
    intake_handle(ctx, frames, &v);
    intake_reply(ctx, frames, &v);
    assert(!ctx->db.in_txn);
}

/* ===================================================================== lifecycle ==== */

int intake_start(struct wallet_ctx *ctx)
{
    assert(ctx->zctx != NULL);
    assert(ctx->router == NULL);
    ctx->router = zbus_open(ctx->base, ctx->zctx, ZMQ_ROUTER, ctx->cfg.zmq_router, true, 0, 0,
                            intake_on_message, ctx);
    return ctx->router != NULL ? 0 : PL_EIO;
}

void intake_stop(struct wallet_ctx *ctx)
{
    zbus_close(ctx->router);
    ctx->router = NULL;
}

int intake_prune(struct db *db, int64_t cutoff_ms, int *deleted_out)
{
    assert(!db->in_txn);
    *deleted_out = 0;
    int rc = db_begin(db);
    if (rc != 0)
        return rc;
    sqlite3_stmt *st =
        db_stmt(db, "DELETE FROM webhooks_seen WHERE webhook_id IN (SELECT "
                    "webhook_id FROM webhooks_seen WHERE received_at_ms < ?1 LIMIT ?2)");
    rc = st != NULL ? 0 : PL_EDB;
    if (rc == 0) {
        sqlite3_bind_int64(st, 1, cutoff_ms);
        sqlite3_bind_int(st, 2, WEBHOOKS_PRUNE_BATCH);
        rc = db_exec_stmt(st);
    }
    if (rc != 0) {
        db_rollback(db);
        return rc;
    }
    *deleted_out = sqlite3_changes(db->handle);
    /* Unmatched webhooks (signed, but for no reference of ours) age out the same way. */
    st = db_stmt(db, "DELETE FROM webhooks_unmatched WHERE rowid IN (SELECT rowid FROM "
                     "webhooks_unmatched WHERE received_at_ms < ?1 LIMIT ?2)");
    rc = st != NULL ? 0 : PL_EDB;
    if (rc == 0) {
        sqlite3_bind_int64(st, 1, cutoff_ms);
        sqlite3_bind_int(st, 2, WEBHOOKS_PRUNE_BATCH);
        rc = db_exec_stmt(st);
    }
    if (rc != 0) {
        db_rollback(db);
        return rc;
    }
    *deleted_out += sqlite3_changes(db->handle);
    return db_commit(db);
}
