/* outbox.c owns the webhook outbox tables of bank.db: webhook_events and webhook_deliveries.
 * Must not: send anything, know HTTP, arm timers, or leave a transaction open on return.
 * Invariants:
 *  - an event is written in the same transaction as the payment change it announces (the
 *    caller's), so an event exists if and only if that change committed; its body is stored
 *    byte for byte as it will be sent, and never changes: every attempt and every
 *    redelivery carries the same webhook-id and the same body;
 *  - an event id is derived from (seed, reference, type), not drawn: a reference is unique
 *    forever and announces each type at most once, so ids are unique, and a lab run with
 *    the same seed and references names its events — and meets its webhook faults — alike;
 *  - a delivery leaves `pending` once, to `delivered` or `dead`, and never comes back;
 *  - attempts counts the attempts started (counted when leased, before sending), so a
 *    crash mid-attempt still uses up that attempt: no delivery is tried more than
 *    OUTBOX_ATTEMPTS_MAX times, whatever the restarts. */
#include "outbox.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "log.h"
#include "pl.h"

#define OUTBOX_DELIVERY_COLS                                                                       \
    "d.id, d.event_id, e.payment_id, p.reference, e.type, d.attempts, p.notify_url, "              \
    "p.traceparent, e.body"
#define OUTBOX_JOIN                                                                                \
    "FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id "                        \
    "JOIN payments p ON p.id = e.payment_id"

/* ---------------------------------------------------------------- adding events */

static bool outbox_add_opt_str(cJSON *o, const char *key, const char *v)
{
    if (v[0] == '\0') {
        return cJSON_AddNullToObject(o, key) != NULL;
    }
    return cJSON_AddStringToObject(o, key, v) != NULL;
}

/* The event body of docs/contracts.md; caller free()s; NULL on ENOMEM. */
static char *outbox_body(const struct payment *p, const char *event_id, const char *type,
                         int64_t now_ms)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *data = cJSON_CreateObject();
    bool ok = o != NULL && data != NULL && cJSON_AddStringToObject(o, "id", event_id) != NULL &&
              cJSON_AddStringToObject(o, "type", type) != NULL &&
              cJSON_AddNumberToObject(o, "created", (double)(now_ms / 1000)) != NULL &&
              cJSON_AddNumberToObject(o, "created_ms", (double)now_ms) != NULL &&
              cJSON_AddStringToObject(data, "payment_id", p->id) != NULL &&
              cJSON_AddStringToObject(data, "reference", p->reference) != NULL &&
              cJSON_AddNumberToObject(data, "amount_minor", (double)p->amount_minor) != NULL &&
              cJSON_AddStringToObject(data, "currency", p->currency) != NULL &&
              cJSON_AddStringToObject(data, "status", p->status) != NULL &&
              outbox_add_opt_str(data, "failure_reason", p->failure_reason) &&
              outbox_add_opt_str(data, "wallet_epoch", p->wallet_epoch);
    char *body = NULL;
    if (ok) {
        cJSON_AddItemToObject(o, "data", data);
        data = NULL;
        body = json_print(o);
    }
    cJSON_Delete(data);
    cJSON_Delete(o);
    return body;
}

static const char *outbox_type_of(const struct payment *p)
{
    if (strcmp(p->status, "succeeded") == 0) {
        return "payment.succeeded";
    }
    if (strcmp(p->status, "failed") == 0) {
        return "payment.failed";
    }
    assert(strcmp(p->status, "processing") == 0);
    return "payment.processing";
}

static int outbox_insert_delivery(struct db *db, const char *event_id, int64_t now_ms)
{
    sqlite3_stmt *s = db_stmt(db, "INSERT INTO webhook_deliveries (event_id, status, attempts, "
                                  "next_attempt_at_ms, created_ms, updated_ms) "
                                  "VALUES (?1, 'pending', 0, ?2, ?2, ?2)");
    if (s == NULL) {
        return PL_EDB;
    }
    db_bind_text(s, 1, event_id);
    sqlite3_bind_int64(s, 2, now_ms);
    return db_exec_stmt(s);
}

/* "<seed>:<reference>:<type>": a 20-digit seed, a reference ≤ 64, a type < 24. */
#define OUTBOX_EVENT_SEED_TEXT_BYTES 128

void outbox_event_id(int64_t seed, const char *reference, const char *type, char out[ID_BYTES_MAX])
{
    char text[OUTBOX_EVENT_SEED_TEXT_BYTES];
    int n = snprintf(text, sizeof text, "%lld:%s:%s", (long long)seed, reference, type);
    assert(n > 0 && (size_t)n < sizeof text); /* every part is bounded */
    int rc = ids_derived("evt_", text, out);
    assert(rc == 0); /* SHA-256 of a short text does not fail */
    (void)rc;
    assert(ids_valid("evt_", out));
}

int outbox_add_locked(struct db *db, const struct payment *p, int64_t seed, int64_t now_ms)
{
    assert(db->in_txn);
    if (p->notify_url[0] == '\0') {
        return PL_OK;
    }
    const char *type = outbox_type_of(p);
    char event_id[ID_BYTES_MAX];
    outbox_event_id(seed, p->reference, type, event_id);
    char *body = outbox_body(p, event_id, type, now_ms);
    if (body == NULL) {
        return PL_ENOMEM;
    }
    assert(strlen(body) < OUTBOX_BODY_BYTES_MAX); /* every field is bounded */
    sqlite3_stmt *s = db_stmt(db, "INSERT INTO webhook_events (id, payment_id, type, body, "
                                  "created_ms) VALUES (?1, ?2, ?3, ?4, ?5)");
    if (s == NULL) {
        free(body);
        return PL_EDB;
    }
    db_bind_text(s, 1, event_id);
    db_bind_text(s, 2, p->id);
    db_bind_text(s, 3, type);
    db_bind_text(s, 4, body);
    sqlite3_bind_int64(s, 5, now_ms);
    free(body);
    int rc = db_exec_stmt(s);
    if (rc == 0) {
        rc = outbox_insert_delivery(db, event_id, now_ms);
    }
    return rc;
}

/* ---------------------------------------------------------------- the sender's side */

int outbox_reset_leases(struct db *db, int64_t now_ms)
{
    /* The last attempt was under way: it may or may not have been sent; it counted. */
    sqlite3_stmt *s = db_stmt(db, "UPDATE webhook_deliveries SET status = 'dead', leased = 0, "
                                  "last_error = 'last attempt interrupted by a restart', "
                                  "updated_ms = ?1 WHERE status = 'pending' AND leased = 1 "
                                  "AND attempts >= ?2");
    if (s == NULL) {
        return PL_EDB;
    }
    sqlite3_bind_int64(s, 1, now_ms);
    sqlite3_bind_int64(s, 2, OUTBOX_ATTEMPTS_MAX);
    int rc = db_exec_stmt(s);
    if (rc != 0) {
        return rc;
    }
    s = db_stmt(db, "UPDATE webhook_deliveries SET leased = 0, next_attempt_at_ms = ?1, "
                    "updated_ms = ?1 WHERE status = 'pending' AND leased = 1");
    if (s == NULL) {
        return PL_EDB;
    }
    sqlite3_bind_int64(s, 1, now_ms);
    rc = db_exec_stmt(s);
    if (rc == 0 && sqlite3_changes(db->handle) > 0) {
        log_info("webhook deliveries resumed", "count=%d", sqlite3_changes(db->handle));
    }
    return rc;
}

int outbox_next_due(struct db *db, int64_t *at_ms)
{
    sqlite3_stmt *s = db_stmt(db, "SELECT min(next_attempt_at_ms) FROM webhook_deliveries "
                                  "WHERE status = 'pending' AND leased = 0");
    return s != NULL ? db_query_int64(s, at_ms) : PL_EDB;
}

int outbox_due(struct db *db, int64_t now_ms, int64_t *ids, size_t cap, size_t *count)
{
    assert(cap > 0 && cap <= 2 * OUTBOX_LEASE_BATCH_MAX);
    *count = 0;
    sqlite3_stmt *s = db_stmt(db, "SELECT id FROM webhook_deliveries WHERE status = 'pending' "
                                  "AND leased = 0 AND next_attempt_at_ms <= ?1 "
                                  "ORDER BY next_attempt_at_ms, id LIMIT ?2");
    if (s == NULL) {
        return PL_EDB;
    }
    sqlite3_bind_int64(s, 1, now_ms);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)cap);
    int rc = sqlite3_step(s);
    while (rc == SQLITE_ROW && *count < cap) {
        ids[(*count)++] = sqlite3_column_int64(s, 0);
        rc = sqlite3_step(s);
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? PL_OK : db_rc(rc);
}

static void outbox_read_delivery(sqlite3_stmt *s, struct outbox_delivery *d)
{
    d->id = sqlite3_column_int64(s, 0);
    db_column_copy(s, 1, d->event_id, sizeof d->event_id);
    db_column_copy(s, 2, d->payment_id, sizeof d->payment_id);
    db_column_copy(s, 3, d->reference, sizeof d->reference);
    db_column_copy(s, 4, d->type, sizeof d->type);
    d->attempts = sqlite3_column_int64(s, 5);
    db_column_copy(s, 6, d->notify_url, sizeof d->notify_url);
    db_column_copy(s, 7, d->traceparent, sizeof d->traceparent);
    db_column_copy(s, 8, d->body, sizeof d->body);
    d->body_bytes = strlen(d->body);
}

/* Leases one delivery inside the caller's transaction; PL_ENOTFOUND when not pending. */
static int outbox_lease_one(struct db *db, int64_t id, int64_t now_ms, struct outbox_delivery *out)
{
    sqlite3_stmt *s = db_stmt(db, "UPDATE webhook_deliveries SET attempts = attempts + 1, "
                                  "leased = 1, updated_ms = ?2 WHERE id = ?1 AND "
                                  "status = 'pending' AND leased = 0");
    if (s == NULL) {
        return PL_EDB;
    }
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int64(s, 2, now_ms);
    int rc = db_exec_stmt(s);
    if (rc != 0) {
        return rc;
    }
    if (sqlite3_changes(db->handle) != 1) {
        return PL_ENOTFOUND;
    }
    s = db_stmt(db, "SELECT " OUTBOX_DELIVERY_COLS " " OUTBOX_JOIN " WHERE d.id = ?1");
    if (s == NULL) {
        return PL_EDB;
    }
    sqlite3_bind_int64(s, 1, id);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        outbox_read_delivery(s, out);
    }
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? PL_OK : (rc == SQLITE_DONE ? PL_EDB : db_rc(rc));
}

int outbox_lease(struct db *db, const int64_t *ids, size_t count, int64_t now_ms,
                 struct outbox_delivery *const *out, size_t *leased)
{
    assert(count <= OUTBOX_LEASE_BATCH_MAX);
    *leased = 0;
    int rc = db_begin(db);
    if (rc != 0) {
        return rc;
    }
    for (size_t i = 0; i < count && rc == 0; i++) {
        rc = outbox_lease_one(db, ids[i], now_ms, out[*leased]);
        if (rc == 0) {
            (*leased)++;
        } else if (rc == PL_ENOTFOUND) {
            rc = PL_OK; /* no longer pending: nothing to send */
        }
    }
    if (rc != 0) {
        db_rollback(db);
        *leased = 0;
        return rc;
    }
    rc = db_commit(db);
    if (rc != 0) {
        *leased = 0;
    }
    return rc;
}

int outbox_finish(struct db *db, int64_t id, enum outbox_result result, int64_t next_attempt_at_ms,
                  long http_status, const char *error, const char *url, int64_t now_ms)
{
    static const char *const statuses[] = {"delivered", "pending", "dead"};
    assert((size_t)result < PL_ARRAY_LEN(statuses));
    sqlite3_stmt *s = db_stmt(db, "UPDATE webhook_deliveries SET status = ?2, leased = 0, "
                                  "next_attempt_at_ms = ?3, last_status = ?4, last_error = ?5, "
                                  "last_url = ?6, updated_ms = ?7 "
                                  "WHERE id = ?1 AND status = 'pending'");
    if (s == NULL) {
        return PL_EDB;
    }
    sqlite3_bind_int64(s, 1, id);
    db_bind_text(s, 2, statuses[result]);
    sqlite3_bind_int64(s, 3, next_attempt_at_ms);
    if (http_status > 0) {
        sqlite3_bind_int64(s, 4, http_status);
    } else {
        sqlite3_bind_null(s, 4);
    }
    db_bind_text(s, 5, error);
    db_bind_text(s, 6, url);
    sqlite3_bind_int64(s, 7, now_ms);
    return db_exec_stmt(s);
}

/* ---------------------------------------------------------------- admin */

/* One row of the admin list as JSON; NULL on ENOMEM. */
static cJSON *outbox_row_json(sqlite3_stmt *s)
{
    cJSON *o = cJSON_CreateObject();
    const char *text_cols[] = {"event_id", "payment_id", "reference", "type", "status"};
    bool ok =
        o != NULL && cJSON_AddNumberToObject(o, "delivery_id", (double)sqlite3_column_int64(s, 0));
    for (size_t i = 0; ok && i < PL_ARRAY_LEN(text_cols); i++) {
        const char *v = (const char *)sqlite3_column_text(s, (int)i + 1);
        ok = cJSON_AddStringToObject(o, text_cols[i], v != NULL ? v : "") != NULL;
    }
    ok = ok && cJSON_AddNumberToObject(o, "attempts", (double)sqlite3_column_int64(s, 6)) &&
         cJSON_AddNumberToObject(o, "next_attempt_at_ms", (double)sqlite3_column_int64(s, 7));
    const char *last_error = (const char *)sqlite3_column_text(s, 8);
    ok = ok && (last_error != NULL ? cJSON_AddStringToObject(o, "last_error", last_error)
                                   : cJSON_AddNullToObject(o, "last_error")) != NULL;
    ok = ok && (sqlite3_column_type(s, 9) != SQLITE_NULL
                    ? cJSON_AddNumberToObject(o, "last_status", sqlite3_column_double(s, 9))
                    : cJSON_AddNullToObject(o, "last_status")) != NULL;
    ok = ok && cJSON_AddNumberToObject(o, "created_ms", (double)sqlite3_column_int64(s, 10));
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

int outbox_list(struct db *db, const char *status, int64_t limit, cJSON **out)
{
    assert(limit >= 1 && limit <= OUTBOX_LIST_MAX);
    *out = NULL;
    sqlite3_stmt *s = db_stmt(db, "SELECT d.id, d.event_id, e.payment_id, p.reference, e.type, "
                                  "d.status, d.attempts, d.next_attempt_at_ms, d.last_error, "
                                  "d.last_status, d.created_ms " OUTBOX_JOIN
                                  " WHERE ?1 IS NULL OR d.status = ?1 ORDER BY d.id DESC LIMIT ?2");
    if (s == NULL) {
        return PL_EDB;
    }
    db_bind_text(s, 1, status);
    sqlite3_bind_int64(s, 2, limit);
    cJSON *o = cJSON_CreateObject();
    cJSON *list = o != NULL ? cJSON_AddArrayToObject(o, "webhooks") : NULL;
    int rc = list != NULL ? sqlite3_step(s) : SQLITE_NOMEM;
    while (rc == SQLITE_ROW) {
        cJSON *row = outbox_row_json(s);
        if (row == NULL) {
            rc = SQLITE_NOMEM;
            break;
        }
        cJSON_AddItemToArray(list, row);
        rc = sqlite3_step(s);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        cJSON_Delete(o);
        return rc == SQLITE_NOMEM ? PL_ENOMEM : db_rc(rc);
    }
    *out = o;
    return PL_OK;
}

/* The events of payment_id, oldest first, into ids (up to OUTBOX_EVENTS_PER_PAYMENT_MAX). */
static int outbox_events_of(struct db *db, const char *payment_id, char (*ids)[ID_BYTES_MAX],
                            size_t *count)
{
    *count = 0;
    sqlite3_stmt *s = db_stmt(db, "SELECT id FROM webhook_events WHERE payment_id = ?1 "
                                  "ORDER BY created_ms, id LIMIT ?2");
    if (s == NULL) {
        return PL_EDB;
    }
    db_bind_text(s, 1, payment_id);
    sqlite3_bind_int64(s, 2, OUTBOX_EVENTS_PER_PAYMENT_MAX);
    int rc = sqlite3_step(s);
    while (rc == SQLITE_ROW && *count < OUTBOX_EVENTS_PER_PAYMENT_MAX) {
        db_column_copy(s, 0, ids[(*count)++], ID_BYTES_MAX);
        rc = sqlite3_step(s);
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? PL_OK : db_rc(rc);
}

static int outbox_redeliver_locked(struct db *db, const char *payment_id, const char *reference,
                                   int64_t now_ms, size_t *events)
{
    struct payment p;
    int rc = payment_id != NULL ? payments_get(db, payment_id, &p)
                                : payments_get_by_reference(db, reference, &p);
    if (rc != 0) {
        return rc;
    }
    char ids[OUTBOX_EVENTS_PER_PAYMENT_MAX][ID_BYTES_MAX];
    size_t count = 0;
    rc = outbox_events_of(db, p.id, ids, &count);
    for (size_t i = 0; rc == 0 && i < count; i++) {
        rc = outbox_insert_delivery(db, ids[i], now_ms);
    }
    *events = rc == 0 ? count : 0;
    return rc;
}

int outbox_redeliver(struct db *db, const char *payment_id, const char *reference, int64_t now_ms,
                     size_t *events)
{
    assert((payment_id != NULL) != (reference != NULL));
    *events = 0;
    int rc = db_begin(db);
    if (rc != 0) {
        return rc;
    }
    rc = outbox_redeliver_locked(db, payment_id, reference, now_ms, events);
    if (rc != 0) {
        db_rollback(db);
        *events = 0;
        return rc;
    }
    rc = db_commit(db);
    if (rc != 0) {
        *events = 0;
    }
    return rc;
}

int outbox_counts(struct db *db, int64_t *pending, int64_t *dead)
{
    sqlite3_stmt *s = db_stmt(db, "SELECT (SELECT count(*) FROM webhook_deliveries WHERE "
                                  "status = 'pending'), (SELECT count(*) FROM "
                                  "webhook_deliveries WHERE status = 'dead')");
    if (s == NULL) {
        return PL_EDB;
    }
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *pending = sqlite3_column_int64(s, 0);
        *dead = sqlite3_column_int64(s, 1);
    }
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? PL_OK : db_rc(rc);
}
