/* events.c owns the per-user event stream of docs/ledger.md: the rows of `events`, their
 * publication on the wallet's ZMQ PUB socket, the `sys.heads` heartbeat, and the reads
 * behind GET /v1/users/{user}/events and head_seq.
 * Must not: publish anything before the COMMIT that wrote it, hold a transaction open across
 * a return to the loop, or decide what changed (settle.c and api.c say so).
 *
 * How the stream stays whole:
 *
 *  1. Written with the change. events_record() runs inside the caller's BEGIN IMMEDIATE
 *     transaction, next to the status change or posting it describes: either both commit
 *     or neither does. So every committed change has its events, and no event describes a
 *     change that was rolled back.
 *
 *  2. Gapless, per user. A user's next seq is MAX(seq) + 1 read inside that same write
 *     transaction; SQLite allows one writer at a time and the wallet is its only writer,
 *     so two commits can never take the same seq, and PRIMARY KEY (user, seq) is the
 *     backstop. Within one commit a user gets transaction.updated first, then
 *     balance.updated when the wallet balance moved; a transfer writes both users' events.
 *     The seqs restart only with a new database, which has a new epoch (clients compare
 *     it before resuming).
 *
 *  3. Published after the commit, in commit order. Callers call events_kick() after
 *     db_commit(); the publication pass runs later on the loop, never inside a transaction
 *     (asserted). It sends every row with rowid > events_sent_rowid in rowid order: rowids
 *     only grow (rows are never deleted), so rowid order is commit order, across users too.
 *
 *  4. At least once across crashes. The `published` flag is written after the send, for all
 *     sent rows in one UPDATE every EVENTS_MARK_MS (not one fsync per event). Unpublished
 *     rows therefore form a suffix of the table in rowid order; a restart publishes that
 *     suffix again from its first row. A crash between a send and its mark re-publishes a
 *     few events: clients and gateways drop any seq they already have.
 *
 *  5. Lost events are found, never silently missing. PUB drops messages to a subscriber
 *     beyond its high-water mark, and a subscriber that joins late misses what came before.
 *     A gap in seq reveals a drop; a lost *last* event is revealed by sys.heads (each
 *     active user's head seq, every second). The gateway then fetches the missing seqs with
 *     GET /v1/users/{user}/events?after=N, served from the same rows.
 */
#include <assert.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "ids.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "pl.h"
#include "wallet.h"
#include "zbus.h"

/* "user." + handle + "." + NUL */
#define EVENTS_TOPIC_BYTES_MAX (USER_HANDLE_CHARS_MAX + 8)

static const char events_heads_topic[] = "sys.heads";

/* ===================================================================== writing ====== */

/* The event JSON of docs/ledger.md in a new string; caller free()s. NULL on ENOMEM. */
static char *events_json(const struct wallet_ctx *ctx, const struct ledger_txn *t, const char *user,
                         const char *type, int64_t seq, int64_t balance_minor, int64_t ts_us)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        return NULL;
    cJSON_AddStringToObject(o, "type", type);
    cJSON_AddStringToObject(o, "user", user);
    cJSON_AddStringToObject(o, "epoch", ctx->epoch);
    cJSON_AddNumberToObject(o, "seq", (double)seq);
    cJSON_AddNumberToObject(o, "balance_minor", (double)balance_minor);
    cJSON *tx = cJSON_AddObjectToObject(o, "transaction");
    if (tx != NULL) {
        cJSON_AddStringToObject(tx, "id", t->id);
        cJSON_AddStringToObject(tx, "kind", txn_kind_name(t->kind));
        cJSON_AddStringToObject(tx, "mode", txn_mode_name(t->mode));
        cJSON_AddStringToObject(tx, "status", txn_status_name(t->status));
        cJSON_AddNumberToObject(tx, "amount_minor", (double)t->amount_minor);
    }
    json_add_int64(o, "ts_us", ts_us);
    if (t->traceparent[0] != '\0') {
        cJSON_AddStringToObject(o, "traceparent", t->traceparent);
    } else {
        cJSON_AddNullToObject(o, "traceparent");
    }
    char *s = tx != NULL ? json_print(o) : NULL;
    cJSON_Delete(o);
    if (s != NULL && strlen(s) >= EVENTS_PAYLOAD_BYTES_MAX) {
        free(s); /* cannot happen with bounded fields; refuse rather than store it */
        return NULL;
    }
    return s;
}

static int events_next_seq(struct db *db, const char *user, int64_t *seq_out)
{
    sqlite3_stmt *st = db_stmt(db, "SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE user = ?1");
    if (st == NULL)
        return PL_EDB;
    db_bind_text(st, 1, user);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *seq_out = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? 0 : db_rc(rc);
}

static int events_insert(struct db *db, const char *user, int64_t seq, const char *type,
                         const char *payload, int64_t now_ms)
{
    sqlite3_stmt *st = db_stmt(db, "INSERT INTO events (user, seq, type, payload, created_at_ms, "
                                   "published) VALUES (?1, ?2, ?3, ?4, ?5, 0)");
    if (st == NULL)
        return PL_EDB;
    db_bind_text(st, 1, user);
    sqlite3_bind_int64(st, 2, seq);
    db_bind_text(st, 3, type);
    db_bind_text(st, 4, payload);
    sqlite3_bind_int64(st, 5, now_ms);
    return db_exec_stmt(st);
}

int events_record(struct wallet_ctx *ctx, const struct ledger_txn *t, const char *user,
                  bool balance_changed, int64_t now_ms)
{
    static const char *const types[] = {"transaction.updated", "balance.updated"};
    assert(ctx->db.in_txn);
    assert(ids_user_valid(user));
    char account[WALLET_ACCOUNT_ID_BYTES_MAX];
    ledger_wallet_account(user, account, sizeof account);
    int64_t balance = 0, seq = 0;
    int rc = ledger_balance(&ctx->db, account, &balance);
    if (rc == 0)
        rc = events_next_seq(&ctx->db, user, &seq);
    if (rc != 0)
        return rc;
    assert(seq >= 1);
    int64_t ts_us = pl_now_us();
    size_t count = balance_changed ? 2 : 1;
    for (size_t i = 0; i < count; i++) {
        char *payload = events_json(ctx, t, user, types[i], seq + (int64_t)i, balance, ts_us);
        if (payload == NULL)
            return PL_ENOMEM;
        rc = events_insert(&ctx->db, user, seq + (int64_t)i, types[i], payload, now_ms);
        free(payload);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ===================================================================== reads ======== */

int events_head(struct db *db, const char *user, int64_t *head_out)
{
    sqlite3_stmt *st = db_stmt(db, "SELECT COALESCE(MAX(seq), 0) FROM events WHERE user = ?1");
    if (st == NULL)
        return PL_EDB;
    db_bind_text(st, 1, user);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *head_out = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? 0 : db_rc(rc);
}

int events_list(struct db *db, const char *user, int64_t after, int limit,
                void (*fn)(const char *payload, void *arg), void *arg)
{
    assert(limit >= 1 && limit <= EVENTS_LIST_LIMIT_MAX);
    assert(after >= 0);
    sqlite3_stmt *st = db_stmt(db, "SELECT payload FROM events WHERE user = ?1 AND seq > ?2 "
                                   "ORDER BY seq LIMIT ?3");
    if (st == NULL)
        return PL_EDB;
    db_bind_text(st, 1, user);
    sqlite3_bind_int64(st, 2, after);
    sqlite3_bind_int(st, 3, limit);
    int rc = sqlite3_step(st);
    for (; rc == SQLITE_ROW; rc = sqlite3_step(st)) {
        fn((const char *)sqlite3_column_text(st, 0), arg);
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : db_rc(rc);
}

/* ===================================================================== publishing === */

static void events_count(struct wallet_ctx *ctx, const char *outcome)
{
    char labels[64];
    snprintf(labels, sizeof labels, "outcome=\"%s\"", outcome);
    metrics_counter_add(ctx->metrics, "paylab_events_published_total", labels, 1);
}

static void events_send(struct wallet_ctx *ctx, const char *user, const char *payload)
{
    char topic[EVENTS_TOPIC_BYTES_MAX];
    int n = snprintf(topic, sizeof topic, "user.%s.", user);
    assert(n > 0 && (size_t)n < sizeof topic); /* user comes from our own rows */
    struct zbus_frame frames[2] = {
        {.data = topic, .bytes = (size_t)n},
        {.data = payload, .bytes = strlen(payload)},
    };
    /* PUB never blocks: past a subscriber's high-water mark libzmq drops for that
     * subscriber only, and the gap is found by seq (point 5 above). */
    events_count(ctx, zbus_send(ctx->pub, frames, 2) == 0 ? "sent" : "dropped");
}

/* One publication pass: at most EVENTS_PUBLISH_BATCH committed rows after the cursor. */
static void events_publish(struct wallet_ctx *ctx)
{
    assert(!ctx->db.in_txn); /* point 3: only committed rows */
    if (ctx->pub == NULL)
        return;
    sqlite3_stmt *st = db_stmt(&ctx->db, "SELECT rowid, user, payload FROM events WHERE "
                                         "rowid > ?1 ORDER BY rowid LIMIT ?2");
    if (st == NULL)
        return;
    sqlite3_bind_int64(st, 1, ctx->events_sent_rowid);
    sqlite3_bind_int(st, 2, EVENTS_PUBLISH_BATCH);
    int count = 0;
    int rc = sqlite3_step(st);
    for (; rc == SQLITE_ROW; rc = sqlite3_step(st)) {
        int64_t rowid = sqlite3_column_int64(st, 0);
        assert(rowid > ctx->events_sent_rowid);
        events_send(ctx, (const char *)sqlite3_column_text(st, 1),
                    (const char *)sqlite3_column_text(st, 2));
        ctx->events_sent_rowid = rowid;
        count++;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        log_warn("could not read events to publish; next pass", "rc=%d", rc);
    if (count == EVENTS_PUBLISH_BATCH)
        event_active(ctx->events_flush, 0, 0);
}

static void events_on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    events_publish(arg);
}

void events_kick(struct wallet_ctx *ctx)
{
    if (ctx->events_flush != NULL)
        event_active(ctx->events_flush, 0, 0);
}

/* Point 4: one UPDATE marks everything sent since the last mark. */
static void events_mark(struct wallet_ctx *ctx)
{
    assert(!ctx->db.in_txn);
    if (ctx->events_sent_rowid <= ctx->events_marked_rowid)
        return;
    int rc = db_begin(&ctx->db);
    if (rc != 0)
        return; /* busy: next time */
    sqlite3_stmt *st = db_stmt(&ctx->db, "UPDATE events SET published = 1 WHERE published = 0 "
                                         "AND rowid <= ?1");
    rc = st != NULL ? 0 : PL_EDB;
    if (rc == 0) {
        sqlite3_bind_int64(st, 1, ctx->events_sent_rowid);
        rc = db_exec_stmt(st);
    }
    if (rc != 0) {
        db_rollback(&ctx->db);
        return;
    }
    if (db_commit(&ctx->db) == 0)
        ctx->events_marked_rowid = ctx->events_sent_rowid;
}

static void events_on_mark(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    events_mark(arg);
}

/* {"epoch","heads":{user:head_seq}} for users with events in the last minute. */
static char *events_heads_json(struct wallet_ctx *ctx)
{
    sqlite3_stmt *st =
        db_stmt(&ctx->db, "SELECT user, MAX(seq) FROM events WHERE "
                          "created_at_ms >= ?1 GROUP BY user ORDER BY user LIMIT ?2");
    if (st == NULL)
        return NULL;
    cJSON *o = cJSON_CreateObject();
    cJSON *heads = o != NULL ? cJSON_AddObjectToObject(o, "heads") : NULL;
    if (heads == NULL) {
        cJSON_Delete(o);
        return NULL;
    }
    cJSON_AddStringToObject(o, "epoch", ctx->epoch);
    sqlite3_bind_int64(st, 1, pl_now_ms() - EVENTS_HEADS_WINDOW_MS);
    sqlite3_bind_int(st, 2, EVENTS_HEADS_USERS_MAX);
    int rc = sqlite3_step(st);
    for (; rc == SQLITE_ROW; rc = sqlite3_step(st)) {
        cJSON_AddNumberToObject(heads, (const char *)sqlite3_column_text(st, 0),
                                (double)sqlite3_column_int64(st, 1));
    }
    sqlite3_reset(st);
    char *s = rc == SQLITE_DONE ? json_print(o) : NULL;
    cJSON_Delete(o);
    return s;
}

static void events_on_heads(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct wallet_ctx *ctx = arg;
    events_publish(ctx); /* so a head never runs ahead of what was sent */
    char *json = events_heads_json(ctx);
    if (json == NULL)
        return;
    struct zbus_frame frames[2] = {
        {.data = events_heads_topic, .bytes = sizeof events_heads_topic - 1},
        {.data = json, .bytes = strlen(json)},
    };
    zbus_send(ctx->pub, frames, 2);
    free(json);
}

/* ===================================================================== lifecycle ==== */

/* Point 4: unpublished rows are a suffix; resume from its first row. */
static int events_cursor_init(struct wallet_ctx *ctx)
{
    sqlite3_stmt *st =
        db_stmt(&ctx->db, "SELECT (SELECT MIN(rowid) FROM events WHERE "
                          "published = 0), (SELECT COALESCE(MAX(rowid), 0) FROM events)");
    if (st == NULL)
        return PL_EDB;
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(st);
        return db_rc(rc);
    }
    bool pending = sqlite3_column_type(st, 0) != SQLITE_NULL;
    int64_t first = sqlite3_column_int64(st, 0), last = sqlite3_column_int64(st, 1);
    sqlite3_reset(st);
    ctx->events_sent_rowid = pending ? first - 1 : last;
    ctx->events_marked_rowid = ctx->events_sent_rowid;
    if (pending) {
        log_info("publishing the events an earlier run left unpublished",
                 "from_rowid=%lld "
                 "to_rowid=%lld",
                 (long long)first, (long long)last);
    }
    return 0;
}

static int events_timer(struct wallet_ctx *ctx, struct event **ev, int64_t period_ms,
                        event_callback_fn fn)
{
    *ev = event_new(ctx->base, -1, EV_PERSIST, fn, ctx);
    if (*ev == NULL)
        return PL_ENOMEM;
    struct timeval tv = {.tv_sec = (time_t)(period_ms / 1000),
                         .tv_usec = (suseconds_t)((period_ms % 1000) * 1000)};
    return event_add(*ev, &tv) == 0 ? 0 : PL_EIO;
}

int events_start(struct wallet_ctx *ctx)
{
    assert(ctx->zctx != NULL);
    assert(ctx->pub == NULL);
    int rc = events_cursor_init(ctx);
    if (rc != 0)
        return rc;
    ctx->pub = zbus_open(ctx->base, ctx->zctx, ZMQ_PUB, ctx->cfg.zmq_pub, true, EVENTS_PUB_HWM, 0,
                         NULL, NULL);
    if (ctx->pub == NULL)
        return PL_EIO;
    ctx->events_flush = event_new(ctx->base, -1, 0, events_on_flush, ctx);
    if (ctx->events_flush == NULL)
        return PL_ENOMEM;
    rc = events_timer(ctx, &ctx->events_mark_timer, EVENTS_MARK_MS, events_on_mark);
    if (rc == 0)
        rc = events_timer(ctx, &ctx->events_heads_timer, EVENTS_HEADS_MS, events_on_heads);
    if (rc == 0)
        events_kick(ctx);
    return rc;
}

void events_stop(struct wallet_ctx *ctx)
{
    if (ctx->pub != NULL && ctx->db.handle != NULL)
        events_mark(ctx);
    if (ctx->events_flush != NULL)
        event_free(ctx->events_flush);
    if (ctx->events_mark_timer != NULL)
        event_free(ctx->events_mark_timer);
    if (ctx->events_heads_timer != NULL)
        event_free(ctx->events_heads_timer);
    ctx->events_flush = NULL;
    ctx->events_mark_timer = NULL;
    ctx->events_heads_timer = NULL;
    zbus_close(ctx->pub);
    ctx->pub = NULL;
}
