/* outbox.h: the bank's webhook outbox in bank.db (migration 2, docs/api.md): events
 * (webhook_events, the exact body sent) and their deliveries (webhook_deliveries: pending,
 * delivered or dead, with attempts, the next attempt's time and the last error). Events are
 * added inside the caller's payment transaction; everything else is one short statement or
 * one BEGIN IMMEDIATE … COMMIT. Nothing here knows HTTP or the network (webhooks.c sends). */
#ifndef PAYLAB_BANK_OUTBOX_H
#define PAYLAB_BANK_OUTBOX_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db.h"
#include "ids.h"
#include "payments.h"

/* Standard Webhooks' schedule has 8 attempts; after the last one a delivery is dead. */
#define OUTBOX_ATTEMPTS_MAX 8
/* An event body: fixed fields with bounded strings (ids, reference ≤ 64, epoch ≤ 64) fit
 * in well under this; outbox_add_locked asserts it. */
#define OUTBOX_BODY_BYTES_MAX 1024
#define OUTBOX_TYPE_BYTES 24 /* "payment.processing" */
#define OUTBOX_ERROR_BYTES_MAX 160
/* Deliveries listed by GET /admin/webhooks at most (default OUTBOX_LIST_DEFAULT). */
#define OUTBOX_LIST_MAX 500
#define OUTBOX_LIST_DEFAULT 50
/* Deliveries leased per sender pass at most. */
#define OUTBOX_LEASE_BATCH_MAX 64
/* Events of one payment: processing and one outcome; room for a mistake is an error. */
#define OUTBOX_EVENTS_PER_PAYMENT_MAX 4

/* One leased delivery, with what an attempt needs to send it. */
struct outbox_delivery {
    int64_t id;
    char event_id[ID_BYTES_MAX];
    char payment_id[ID_BYTES_MAX];
    char reference[PAYMENTS_REFERENCE_CHARS_MAX + 1];
    char type[OUTBOX_TYPE_BYTES];
    int64_t attempts; /* including the attempt now leased: 1..OUTBOX_ATTEMPTS_MAX */
    char notify_url[PAYMENTS_URL_CHARS_MAX + 1];
    char traceparent[TRACEPARENT_BYTES]; /* "" when the payment had none */
    char body[OUTBOX_BODY_BYTES_MAX];
    size_t body_bytes;
};

enum outbox_result {
    OUTBOX_DELIVERED = 0, /* a 2xx */
    OUTBOX_RETRY,         /* failed; next attempt at next_attempt_at_ms */
    OUTBOX_DEAD,          /* failed, and it was the last attempt */
};

/* Inside the caller's transaction (db->in_txn): when p has a notify_url, records the event
 * announcing p's current status (processing / succeeded / failed) with one pending
 * delivery due at now_ms (nothing without a notify_url). The event id is deterministic:
 * evt_ + the first 24 hex chars of SHA-256("<seed>:<reference>:<type>") — unique because a
 * reference is unique forever and announces each type at most once. 0 or PL_EDB / PL_EBUSY
 * / PL_ENOMEM. */
int outbox_add_locked(struct db *db, const struct payment *p, int64_t seed, int64_t now_ms);
/* Writes evt_ + hex(SHA-256("<seed>:<reference>:<type>")) cut to 24 chars into out. */
void outbox_event_id(int64_t seed, const char *reference, const char *type, char out[ID_BYTES_MAX]);

/* Startup: every lease left by a previous run is dropped and its delivery made due at
 * now_ms (the attempt it counted stays counted; when that was the last one, it is dead). */
int outbox_reset_leases(struct db *db, int64_t now_ms);

/* The earliest next_attempt_at_ms of a pending, unleased delivery; PL_ENOTFOUND when none. */
int outbox_next_due(struct db *db, int64_t *at_ms);
/* Ids of up to cap pending, unleased deliveries due at now_ms, earliest first. */
int outbox_due(struct db *db, int64_t now_ms, int64_t *ids, size_t cap, size_t *count);
/* In one transaction, for each id still pending and unleased: counts one more attempt,
 * leases it (until outbox_finish, or a restart) and fills out[*leased]; others are skipped. */
int outbox_lease(struct db *db, const int64_t *ids, size_t count, int64_t now_ms,
                 struct outbox_delivery *const *out, size_t *leased);
/* Ends the leased attempt of delivery id: delivered, retry at next_attempt_at_ms, or dead.
 * http_status 0 when nothing answered; error NULL on success; url where it went (or NULL). */
int outbox_finish(struct db *db, int64_t id, enum outbox_result result, int64_t next_attempt_at_ms,
                  long http_status, const char *error, const char *url, int64_t now_ms);

/* GET /admin/webhooks: up to limit (1..OUTBOX_LIST_MAX) deliveries, newest first, with
 * status (NULL: any) as {"webhooks":[…]}. *out is the caller's (cJSON_Delete). PL_ENOMEM. */
int outbox_list(struct db *db, const char *status, int64_t limit, cJSON **out);
/* POST /admin/webhooks/redeliver: a new pending delivery, due now, for every event of the
 * payment with this id (or, when payment_id is NULL, this reference). *events how many.
 * PL_ENOTFOUND when the payment is unknown. */
int outbox_redeliver(struct db *db, const char *payment_id, const char *reference, int64_t now_ms,
                     size_t *events);
/* Deliveries pending (the outbox depth) and dead, for /metrics. */
int outbox_counts(struct db *db, int64_t *pending, int64_t *dead);

#endif
