/* outbox.c owns the asynchronous bank requests: the rows of `outbox`, their sending on the
 * loop (curlev, fresh connections), retries with backoff, and their deadline.
 * Must not: send a row before the COMMIT that wrote it, change a stored request, decide a
 * payment's outcome from anything but bank_classify(), keep more than OUTBOX_INFLIGHT_MAX
 * sends in flight, or send one row twice at once.
 *
 * Why an async top-up or withdrawal is neither lost nor doubled:
 *
 *  1. Recorded before anything leaves. api.c writes the transaction (pending), its hold,
 *     its idempotency key, its event rows and its outbox row in ONE commit, answers 202,
 *     and only then kicks the outbox. A crash before that commit leaves nothing behind; a
 *     crash after it leaves a row that the next run sends (rows are read from wallet.db,
 *     never from memory).
 *
 *  2. The same bytes every time. The row holds the request as it will be sent: method,
 *     path, headers (Idempotency-Key = reference = the wtx id, a traceparent) and the JSON
 *     body with its expires_at_ms. A retry re-sends them unchanged, so whichever attempt
 *     the bank sees first, it sees the same payment; the bank's UNIQUE reference makes a
 *     second arrival a replay, never a second payment. Only the Authorization header is
 *     added at send time: a secret does not belong in a database people open with sqlite3.
 *
 *  3. Fresh connections. Every send sets CURLOPT_FRESH_CONNECT (docs/architecture.md), so
 *     libcurl never re-sends on its own behind our back; every re-send is one we chose.
 *
 *  4. Only a definite acceptance ends a row. A 2xx whose reference and amount_minor are
 *     ours ends it: `processing` records the bank's payment id (the outcome comes by
 *     webhook); a final status is settled at once through settle_apply(). Anything else —
 *     refused, timeout, reset, 409, 422, 429, 5xx, a garbled or mismatched body — is
 *     retried after a jittered exponential backoff (OUTBOX_BACKOFF_MIN_MS doubling to
 *     OUTBOX_BACKOFF_MAX_MS), recorded on the row so a restart keeps the schedule.
 *
 *  5. A deadline on both sides. The bank executes a payment only while now < expires_at_ms,
 *     inside its own money-moving transaction. At that instant the row stops (done = 2) and
 *     the reconciler takes over: it asks the bank, and voids a reference the bank never saw,
 *     so no request still on the wire can execute later. A transaction that becomes final
 *     by any path stops its row in the same commit (done = 3, settle.c), so a row that is
 *     due always belongs to a transaction still pending.
 *
 *  6. One send per row at a time. A slot holds the row id while its send is in flight;
 *     rows held by a slot are skipped. A slot is either free (used == false, xfer == NULL)
 *     or owns exactly one transfer for exactly one row.
 */
#include <assert.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids.h"
#include "log.h"
#include "metrics.h"
#include "money.h"
#include "pl.h"
#include "wallet.h"

/* Rows read per pass: every in-flight row may appear before the due ones it hides. */
#define OUTBOX_SCAN_MAX (2 * OUTBOX_INFLIGHT_MAX)
/* Retries are written to the timeline for the first attempts, then every tenth. */
#define OUTBOX_LOG_ATTEMPTS_ALL 5
#define OUTBOX_LOG_ATTEMPTS_EVERY 10
#define OUTBOX_PATH "/v1/payments"

_Static_assert(OUTBOX_BACKOFF_MIN_MS < OUTBOX_BACKOFF_MAX_MS, "backoff grows");
_Static_assert(OUTBOX_HEADERS_MAX + 1 <= CURLEV_HEADERS_MAX, "stored headers + Authorization fit");

static void outbox_count(struct wallet_ctx *ctx, const char *outcome)
{
    char labels[64];
    snprintf(labels, sizeof labels, "outcome=\"%s\"", outcome);
    metrics_counter_add(ctx->metrics, "paylab_outbox_sends_total", labels, 1);
}

/* ===================================================================== rows ========= */

/* Joins the call's headers but Authorization (hdrs[0]) into "Name: value\n" lines. */
static int outbox_headers_text(const struct bank_call *call, char *out, size_t cap)
{
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 1; i < PL_ARRAY_LEN(call->hdrs); i++) {
        if (call->hdrs[i][0] == '\0')
            continue;
        assert(strncmp(call->hdrs[i], "Authorization:", 14) != 0);
        int n = snprintf(out + used, cap - used, "%s\n", call->hdrs[i]);
        if (n < 0 || (size_t)n >= cap - used)
            return PL_ERANGE;
        used += (size_t)n;
    }
    return 0;
}

int outbox_insert(struct wallet_ctx *ctx, const struct ledger_txn *t, int64_t now_ms)
{
    assert(ctx->db.in_txn);
    assert(t->mode == TXN_MODE_ASYNC);
    assert(t->expires_at_ms > now_ms);
    struct bank_call call;
    char headers[OUTBOX_HEADERS_BYTES_MAX];
    int rc = bank_payment_call(ctx, t, &call);
    if (rc == 0)
        rc = outbox_headers_text(&call, headers, sizeof headers);
    sqlite3_stmt *st = NULL;
    if (rc == 0) {
        st = db_stmt(&ctx->db,
                     "INSERT INTO outbox (transaction_id, method, path, headers, body, "
                     "attempts, next_attempt_at_ms, expires_at_ms, done, created_at_ms, "
                     "updated_at_ms) VALUES (?1, 'POST', ?2, ?3, ?4, 0, ?5, ?6, 0, ?5, ?5)");
        if (st == NULL)
            rc = PL_EDB;
    }
    if (rc == 0) {
        db_bind_text(st, 1, t->id);
        db_bind_text(st, 2, OUTBOX_PATH);
        db_bind_text(st, 3, headers);
        db_bind_text(st, 4, call.body);
        sqlite3_bind_int64(st, 5, now_ms);
        sqlite3_bind_int64(st, 6, t->expires_at_ms);
        rc = db_exec_stmt(st);
    }
    bank_call_free(&call);
    return rc;
}

int outbox_close(struct db *db, const char *txn_id, enum outbox_state state, int64_t now_ms)
{
    assert(db->in_txn);
    assert(state == OUTBOX_ACCEPTED || state == OUTBOX_SETTLED);
    sqlite3_stmt *st = db_stmt(db, "UPDATE outbox SET done = ?1, updated_at_ms = ?2 "
                                   "WHERE transaction_id = ?3 AND done = 0");
    if (st == NULL)
        return PL_EDB;
    sqlite3_bind_int(st, 1, (int)state);
    sqlite3_bind_int64(st, 2, now_ms);
    db_bind_text(st, 3, txn_id);
    return db_exec_stmt(st);
}

int64_t outbox_depth(struct wallet_ctx *ctx)
{
    sqlite3_stmt *st = db_stmt(&ctx->db, "SELECT count(*) FROM outbox WHERE done = 0");
    if (st == NULL)
        return -1;
    int64_t n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_reset(st);
    return n;
}

/* Sets the row's state, attempts, schedule and last error (own statement, caller's txn). */
static int outbox_row_update(struct db *db, int64_t row_id, enum outbox_state state,
                             int64_t attempts, int64_t next_ms, const char *error, int64_t now_ms)
{
    sqlite3_stmt *st = db_stmt(db, "UPDATE outbox SET done = ?1, attempts = ?2, "
                                   "next_attempt_at_ms = ?3, last_error = ?4, updated_at_ms = ?5 "
                                   "WHERE id = ?6 AND done = 0");
    if (st == NULL)
        return PL_EDB;
    sqlite3_bind_int(st, 1, (int)state);
    sqlite3_bind_int64(st, 2, attempts);
    sqlite3_bind_int64(st, 3, next_ms);
    db_bind_text(st, 4, error);
    sqlite3_bind_int64(st, 5, now_ms);
    sqlite3_bind_int64(st, 6, row_id);
    return db_exec_stmt(st);
}

/* ===================================================================== slots ======== */

static bool outbox_row_busy(const struct wallet_ctx *ctx, int64_t row_id)
{
    for (size_t i = 0; i < OUTBOX_INFLIGHT_MAX; i++) {
        if (ctx->outbox[i].used && ctx->outbox[i].row_id == row_id)
            return true;
    }
    return false;
}

static struct outbox_slot *outbox_slot_take(struct wallet_ctx *ctx)
{
    if (ctx->outbox_inflight >= OUTBOX_INFLIGHT_MAX)
        return NULL;
    for (size_t i = 0; i < OUTBOX_INFLIGHT_MAX; i++) {
        struct outbox_slot *s = &ctx->outbox[i];
        if (s->used)
            continue;
        memset(s, 0, sizeof *s);
        s->used = true;
        s->ctx = ctx;
        ctx->outbox_inflight++;
        return s;
    }
    assert(!"outbox_inflight says a slot is free");
    return NULL;
}

static void outbox_slot_free(struct outbox_slot *s)
{
    assert(s->used);
    assert(s->xfer == NULL);
    assert(s->ctx->outbox_inflight > 0);
    s->ctx->outbox_inflight--;
    memset(s, 0, sizeof *s);
}

/* ===================================================================== answers ====== */

/* Jittered exponential backoff after `attempts` failed sends: [d/2, d], d = min·2^(a-1). */
static int64_t outbox_backoff_ms(int64_t attempts)
{
    assert(attempts >= 1);
    int64_t d = OUTBOX_BACKOFF_MIN_MS;
    for (int64_t i = 1; i < attempts && d < OUTBOX_BACKOFF_MAX_MS; i++)
        d *= 2;
    if (d > OUTBOX_BACKOFF_MAX_MS)
        d = OUTBOX_BACKOFF_MAX_MS;
    uint32_t r = 0;
    if (ids_random(&r, sizeof r) != 0)
        r = 0;
    return d / 2 + (int64_t)(r % (uint32_t)(d / 2 + 1));
}

/* The database could not record a send's outcome: the row stays due, and every send waits
 * OUTBOX_BUSY_PAUSE_MS instead of repeating requests whose results cannot be kept. */
static void outbox_pause(struct wallet_ctx *ctx, int64_t now_ms)
{
    ctx->outbox_paused_until_ms = now_ms + OUTBOX_BUSY_PAUSE_MS;
}

/* The row goes on: one more failed attempt, the next one after a backoff. */
static void outbox_retry(struct outbox_slot *s, const struct ledger_txn *t, const char *why)
{
    struct wallet_ctx *ctx = s->ctx;
    int64_t now_ms = pl_now_ms(), attempts = s->attempts + 1;
    int64_t delay_ms = outbox_backoff_ms(attempts);
    char reason[WALLET_REASON_BYTES_MAX + 128];
    snprintf(reason, sizeof reason,
             "the bank did not take the payment (attempt %lld: %s); the "
             "outbox re-sends the same request in %lld ms",
             (long long)attempts, why, (long long)delay_ms);
    bool timeline =
        attempts <= OUTBOX_LOG_ATTEMPTS_ALL || attempts % OUTBOX_LOG_ATTEMPTS_EVERY == 0;
    int rc = db_begin(&ctx->db);
    if (rc != 0) {
        outbox_pause(ctx, now_ms);
        return;
    }
    rc = outbox_row_update(&ctx->db, s->row_id, OUTBOX_DUE, attempts, now_ms + delay_ms, why,
                           now_ms);
    if (rc == 0 && timeline)
        rc = ledger_log(&ctx->db, t->id, now_ms, "bank_retry", t->status, reason);
    if (rc != 0) {
        db_rollback(&ctx->db);
        outbox_pause(ctx, now_ms);
        return;
    }
    if (db_commit(&ctx->db) != 0) {
        outbox_pause(ctx, now_ms);
        return;
    }
    log_info("outbox will retry", "txn=%s trace=%s attempt=%lld delay_ms=%lld why=\"%s\"", t->id,
             t->traceparent, (long long)attempts, (long long)delay_ms, why);
}

/* The bank took the payment and is processing it: the row ends. */
static void outbox_accepted(struct outbox_slot *s, const struct ledger_txn *t,
                            const struct bank_answer *a)
{
    struct wallet_ctx *ctx = s->ctx;
    int64_t now_ms = pl_now_ms();
    char reason[WALLET_REASON_BYTES_MAX + 96];
    snprintf(reason, sizeof reason,
             "the bank accepted the payment (processing) as %s after %lld "
             "attempt(s), in %lld ms; the outcome arrives by webhook",
             a->payment_id[0] != '\0' ? a->payment_id : "an unnamed payment",
             (long long)(s->attempts + 1), (long long)a->elapsed_ms);
    bool changed = false;
    int rc = db_begin(&ctx->db);
    if (rc != 0) {
        outbox_pause(ctx, now_ms);
        return;
    }
    rc = outbox_row_update(&ctx->db, s->row_id, OUTBOX_ACCEPTED, s->attempts + 1, now_ms, NULL,
                           now_ms);
    if (rc == 0 && a->payment_id[0] != '\0')
        rc = ledger_txn_set_payment_id(&ctx->db, t->id, a->payment_id, now_ms, &changed);
    if (rc == 0)
        rc = ledger_log(&ctx->db, t->id, now_ms, "bank_accepted", t->status, reason);
    if (rc != 0) {
        db_rollback(&ctx->db);
        outbox_pause(ctx, now_ms);
        return;
    }
    if (db_commit(&ctx->db) != 0) {
        outbox_pause(ctx, now_ms);
        return;
    }
    log_info("bank accepted the payment (processing)", "txn=%s trace=%s payment=%s attempts=%lld",
             t->id, t->traceparent, a->payment_id, (long long)(s->attempts + 1));
}

/* A 2xx with a final status: settled on the bank's word, like a sync answer. The settling
 * commit also stops the row (settle.c). */
static void outbox_final(struct outbox_slot *s, const struct ledger_txn *t,
                         const struct bank_answer *a)
{
    struct settle_outcome o = {
        .to = a->verdict == BANK_SUCCEEDED ? TXN_SUCCEEDED : TXN_FAILED,
        .by = SETTLED_RESPONSE,
        .failure_reason = a->failure_reason[0] != '\0' ? a->failure_reason : "failed",
        .bank_payment_id = a->payment_id,
        .event = "bank_answer",
        .reason = a->detail,
    };
    struct ledger_txn now;
    bool changed = false;
    if (settle_apply(s->ctx, t->id, &o, &now, &changed) != 0) {
        log_warn("outbox could not settle a final answer; the row is re-sent", "txn=%s", t->id);
        outbox_pause(s->ctx, pl_now_ms());
    }
}

/* Why a send did not end its row, in a few words for the timeline and last_error. */
static void outbox_why(const struct curlev_result *res, const struct bank_answer *a, char *out,
                       size_t cap)
{
    switch (res->outcome) {
    case CURLEV_REFUSED:
        snprintf(out, cap, "connection refused");
        return;
    case CURLEV_TIMEOUT:
        snprintf(out, cap, "no answer in %lld ms", (long long)res->elapsed_ms);
        return;
    case CURLEV_RESET:
        snprintf(out, cap, "connection closed without an answer");
        return;
    case CURLEV_BAD:
        snprintf(out, cap, "unreadable answer");
        return;
    case CURLEV_ANSWERED:
        break;
    }
    if (res->http_status < 200 || res->http_status > 299) {
        snprintf(out, cap, "HTTP %ld", res->http_status);
    } else if (a->verdict == BANK_MISMATCH) {
        snprintf(out, cap, "HTTP %ld for another amount", res->http_status);
    } else {
        snprintf(out, cap, "HTTP %ld with a body that is not this payment", res->http_status);
    }
}

static void outbox_done(const struct curlev_result *res, void *arg)
{
    struct outbox_slot *s = arg;
    struct wallet_ctx *ctx = s->ctx;
    assert(s->used);
    s->xfer = NULL;
    struct ledger_txn t;
    if (ledger_txn_get(&ctx->db, s->txn_id, &t) != 0 || txn_status_final(t.status)) {
        outbox_count(ctx, "already_final");
        outbox_slot_free(s);
        return;
    }
    /* Any 2xx may carry the payment (202 processing, 200 for a known reference). */
    struct curlev_result r = *res;
    bool ok_2xx = r.outcome == CURLEV_ANSWERED && r.http_status >= 200 && r.http_status <= 299;
    if (ok_2xx)
        r.http_status = 200;
    struct bank_answer a;
    bank_classify(&r, &t, &a);
    if (ok_2xx && a.verdict == BANK_PROCESSING) {
        outbox_count(ctx, "accepted");
        outbox_accepted(s, &t, &a);
    } else if (ok_2xx && (a.verdict == BANK_SUCCEEDED || a.verdict == BANK_FAILED)) {
        outbox_count(ctx, "final");
        outbox_final(s, &t, &a);
    } else {
        char why[WALLET_REASON_BYTES_MAX];
        outbox_why(res, &a, why, sizeof why);
        outbox_count(ctx, bank_verdict_name(a.verdict));
        outbox_retry(s, &t, why);
    }
    outbox_slot_free(s);
    outbox_kick(ctx);
}

/* ===================================================================== sending ====== */

/* Starts the slot's send from the row's stored bytes; 0 or PL_E* (slot left to the caller). */
static int outbox_send(struct outbox_slot *s, const char *path, const char *headers,
                       const char *body)
{
    struct wallet_ctx *ctx = s->ctx;
    char url[CONFIG_STR_BYTES_MAX + 128], auth[BANK_HDR_BYTES_MAX];
    char lines[OUTBOX_HEADERS_BYTES_MAX];
    int n = snprintf(url, sizeof url, "%s%s", ctx->cfg.bank_url, path);
    if (n < 0 || (size_t)n >= sizeof url)
        return PL_ERANGE;
    n = snprintf(auth, sizeof auth, "Authorization: Bearer %s", ctx->bank_api_key);
    if (n < 0 || (size_t)n >= sizeof auth)
        return PL_ERANGE;
    if (pl_strlcpy(lines, headers, sizeof lines) != 0)
        return PL_ERANGE;
    struct curlev_request req = {
        .method = "POST",
        .url = url,
        .body = body,
        .body_bytes = strlen(body),
        .timeout_ms = (long)ctx->cfg.bank_timeout_ms,
        .connect_timeout_ms = (long)ctx->cfg.bank_timeout_ms,
        .fresh_connect = true, /* point 3 */
    };
    req.headers[0] = auth;
    size_t count = 1;
    for (char *line = lines; *line != '\0' && count <= OUTBOX_HEADERS_MAX;) {
        char *end = strchr(line, '\n');
        if (end == NULL)
            break;
        *end = '\0';
        req.headers[count++] = line;
        line = end + 1;
    }
    return curlev_start(ctx->curl, &req, outbox_done, s, &s->xfer);
}

/* Takes a slot for the current row of st and starts its send. False when no slot is free. */
static bool outbox_start_row(struct wallet_ctx *ctx, sqlite3_stmt *st)
{
    struct outbox_slot *s = outbox_slot_take(ctx);
    if (s == NULL)
        return false;
    s->row_id = sqlite3_column_int64(st, 0);
    db_column_copy(st, 1, s->txn_id, sizeof s->txn_id);
    s->attempts = sqlite3_column_int64(st, 5);
    int rc = outbox_send(s, (const char *)sqlite3_column_text(st, 2),
                         (const char *)sqlite3_column_text(st, 3),
                         (const char *)sqlite3_column_text(st, 4));
    if (rc != 0) {
        /* Nothing left: the row stays due and the next tick tries again. */
        log_warn("outbox could not start a send", "txn=%s rc=%d", s->txn_id, rc);
        outbox_slot_free(s);
    }
    return true;
}

/* Starts sends for due rows, oldest schedule first, while slots are free. */
static void outbox_send_due(struct wallet_ctx *ctx, int64_t now_ms)
{
    if (ctx->outbox_inflight >= OUTBOX_INFLIGHT_MAX || now_ms < ctx->outbox_paused_until_ms)
        return;
    sqlite3_stmt *st =
        db_stmt(&ctx->db, "SELECT id, transaction_id, path, headers, body, attempts "
                          "FROM outbox WHERE done = 0 AND next_attempt_at_ms <= ?1 "
                          "AND expires_at_ms > ?1 ORDER BY next_attempt_at_ms LIMIT ?2");
    if (st == NULL)
        return;
    sqlite3_bind_int64(st, 1, now_ms);
    sqlite3_bind_int(st, 2, OUTBOX_SCAN_MAX);
    int rc = sqlite3_step(st);
    for (; rc == SQLITE_ROW; rc = sqlite3_step(st)) {
        if (outbox_row_busy(ctx, sqlite3_column_int64(st, 0)))
            continue;
        if (!outbox_start_row(ctx, st))
            break;
    }
    sqlite3_reset(st);
}

/* Point 5: rows past their deadline stop; the reconciler asks the bank from here on. */
static void outbox_expire(struct wallet_ctx *ctx, int64_t now_ms)
{
    sqlite3_stmt *st = db_stmt(&ctx->db, "SELECT id, transaction_id, attempts FROM outbox WHERE "
                                         "done = 0 AND expires_at_ms <= ?1 LIMIT ?2");
    if (st == NULL)
        return;
    struct {
        int64_t id, attempts;
        char txn_id[ID_BYTES_MAX];
    } rows[OUTBOX_EXPIRE_BATCH];
    size_t count = 0;
    sqlite3_bind_int64(st, 1, now_ms);
    sqlite3_bind_int(st, 2, OUTBOX_EXPIRE_BATCH);
    while (count < OUTBOX_EXPIRE_BATCH && sqlite3_step(st) == SQLITE_ROW) {
        rows[count].id = sqlite3_column_int64(st, 0);
        db_column_copy(st, 1, rows[count].txn_id, sizeof rows[count].txn_id);
        rows[count].attempts = sqlite3_column_int64(st, 2);
        if (!outbox_row_busy(ctx, rows[count].id))
            count++;
    }
    sqlite3_reset(st);
    if (count == 0 || db_begin(&ctx->db) != 0)
        return;
    int rc = 0;
    for (size_t i = 0; i < count && rc == 0; i++) {
        char reason[WALLET_REASON_BYTES_MAX];
        snprintf(reason, sizeof reason,
                 "the payment's deadline passed after %lld attempt(s) "
                 "without the bank taking it; the outbox stops and the reconciler asks the bank",
                 (long long)rows[i].attempts);
        rc = outbox_row_update(&ctx->db, rows[i].id, OUTBOX_EXPIRED, rows[i].attempts, now_ms,
                               "expired", now_ms);
        if (rc == 0)
            rc =
                ledger_log(&ctx->db, rows[i].txn_id, now_ms, "outbox_expired", TXN_PENDING, reason);
    }
    if (rc != 0 || db_commit(&ctx->db) != 0) {
        db_rollback(&ctx->db);
        return;
    }
    for (size_t i = 0; i < count; i++)
        log_warn("outbox stopped at the deadline; the reconciler takes over",
                 "txn=%s attempts=%lld", rows[i].txn_id, (long long)rows[i].attempts);
}

static void outbox_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct wallet_ctx *ctx = arg;
    assert(!ctx->db.in_txn);
    if (ctx->draining)
        return;
    int64_t now_ms = pl_now_ms();
    outbox_expire(ctx, now_ms);
    outbox_send_due(ctx, now_ms);
}

void outbox_kick(struct wallet_ctx *ctx)
{
    if (ctx->outbox_now != NULL)
        event_active(ctx->outbox_now, 0, 0);
}

int outbox_start(struct wallet_ctx *ctx)
{
    assert(ctx->outbox_timer == NULL);
    ctx->outbox_timer = event_new(ctx->base, -1, EV_PERSIST, outbox_tick, ctx);
    ctx->outbox_now = event_new(ctx->base, -1, 0, outbox_tick, ctx);
    if (ctx->outbox_timer == NULL || ctx->outbox_now == NULL)
        return PL_ENOMEM;
    struct timeval tv = {.tv_sec = 0, .tv_usec = OUTBOX_TICK_MS * 1000};
    if (event_add(ctx->outbox_timer, &tv) != 0)
        return PL_EIO;
    int64_t depth = outbox_depth(ctx);
    if (depth > 0)
        log_info("resuming the outbox rows of an earlier run", "rows=%lld", (long long)depth);
    outbox_kick(ctx);
    return 0;
}

void outbox_stop(struct wallet_ctx *ctx)
{
    if (ctx->outbox_timer != NULL)
        event_free(ctx->outbox_timer);
    if (ctx->outbox_now != NULL)
        event_free(ctx->outbox_now);
    ctx->outbox_timer = NULL;
    ctx->outbox_now = NULL;
    for (size_t i = 0; i < OUTBOX_INFLIGHT_MAX; i++) {
        struct outbox_slot *s = &ctx->outbox[i];
        if (!s->used)
            continue;
        if (s->xfer != NULL)
            curlev_cancel(ctx->curl, s->xfer);
        s->xfer = NULL;
        outbox_slot_free(s);
    }
}
