/* payments.h: the bank's book in bank.db — accounts, mandates, payments, idempotency keys
 * (docs/api.md). Every state change is one BEGIN IMMEDIATE … COMMIT; nothing here knows HTTP.
 * Callers validate input at the edge (api.c): the functions below assert what it checked. */
#ifndef PAYLAB_BANK_PAYMENTS_H
#define PAYLAB_BANK_PAYMENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db.h"
#include "ids.h"

#define PAYMENTS_ACCOUNT_CHARS_MAX 64
#define PAYMENTS_OWNER_CHARS_MAX 64
#define PAYMENTS_REFERENCE_CHARS_MAX 64
#define PAYMENTS_EPOCH_CHARS_MAX 64
/* notify_url: one URL or a comma-separated list of them (the sender fails over along it). */
#define PAYMENTS_URL_CHARS_MAX 512
/* URLs in one notify_url list: a few gateways; more is a 400. */
#define PAYMENTS_NOTIFY_URLS_MAX 4
#define PAYMENTS_FINGERPRINT_CHARS 64 /* hex SHA-256 */
#define PAYMENTS_WORD_BYTES 24        /* mode, status, currency, failure_reason */
/* Idempotency keys are kept this long (docs/api.md). */
#define PAYMENTS_KEY_TTL_MS (24LL * 3600 * 1000)
/* Rows pruned per pass, so one pass stays short on the loop. */
#define PAYMENTS_PRUNE_BATCH_MAX 1000
/* Due payments executed per scheduler pass; the rest go in the next pass. */
#define PAYMENTS_DUE_BATCH_MAX 64

struct account {
    char id[PAYMENTS_ACCOUNT_CHARS_MAX + 1];
    char owner[PAYMENTS_OWNER_CHARS_MAX + 1];
    int64_t balance_minor;
    int64_t created_at_ms;
};

struct mandate {
    char account[PAYMENTS_ACCOUNT_CHARS_MAX + 1];
    char payee[PAYMENTS_ACCOUNT_CHARS_MAX + 1];
    int64_t created_at_ms;
};

/* One row of payments. Empty strings stand for SQL NULL; settled_at_ms 0 for NULL. */
struct payment {
    char id[ID_BYTES_MAX];
    char reference[PAYMENTS_REFERENCE_CHARS_MAX + 1];
    char debit_account[PAYMENTS_ACCOUNT_CHARS_MAX + 1];
    char credit_account[PAYMENTS_ACCOUNT_CHARS_MAX + 1];
    int64_t amount_minor;
    char currency[PAYMENTS_WORD_BYTES];
    char mode[PAYMENTS_WORD_BYTES];           /* sync | async | void */
    char status[PAYMENTS_WORD_BYTES];         /* processing | succeeded | failed */
    char failure_reason[PAYMENTS_WORD_BYTES]; /* "" | insufficient_funds | expired */
    bool voided;
    char notify_url[PAYMENTS_URL_CHARS_MAX + 1];
    int64_t expires_at_ms;
    int64_t execute_at_ms;
    char wallet_epoch[PAYMENTS_EPOCH_CHARS_MAX + 1];
    char traceparent[TRACEPARENT_BYTES];
    char idempotency_key[IDEM_KEY_CHARS_MAX + 1];
    char fingerprint[PAYMENTS_FINGERPRINT_CHARS + 1];
    int64_t created_at_ms;
    int64_t settled_at_ms;
};

/* A validated POST /v1/payments. Strings are borrowed; optional ones may be NULL. */
struct payment_request {
    const char *idempotency_key; /* ids_idem_key_valid */
    const char *reference;       /* 1..64 printable */
    const char *debit_account;   /* payments_account_id_valid */
    const char *credit_account;  /* payments_account_id_valid, != debit_account */
    int64_t amount_minor;        /* money_amount_valid */
    const char *currency;        /* "INR" */
    const char *mode;            /* "sync" or "async" */
    const char *notify_url;      /* NULL or ≤ PAYMENTS_URL_CHARS_MAX */
    int64_t expires_at_ms;
    const char *wallet_epoch; /* NULL or ≤ PAYMENTS_EPOCH_CHARS_MAX */
    const char *traceparent;  /* NULL or a valid W3C traceparent; not part of the fingerprint */
};

enum payments_create_result {
    PAYMENTS_CREATED = 0,      /* a new payment (already executed if it was due) */
    PAYMENTS_REPLAY_KEY,       /* same key, same request: *out is the payment now */
    PAYMENTS_KEY_REUSED,       /* same key, another request: nothing changed */
    PAYMENTS_REFERENCE_KNOWN,  /* new key, known reference, same request (or voided) */
    PAYMENTS_REFERENCE_REUSED, /* new key, known reference, another request */
    PAYMENTS_UNKNOWN_ACCOUNT,  /* debit or credit account does not exist */
    PAYMENTS_MANDATE_MISSING,  /* debit from a customer account without a mandate */
};

/* What the bank decides that no request says: how its webhook events are named, and the
 * teaching switch --unsafe-ignore-expiry. The functions without a policy use
 * PAYMENTS_POLICY_DEFAULT's values: event seed 1, deadlines honoured. */
struct payments_policy {
    int64_t event_seed; /* an event id is evt_ + SHA-256("<seed>:<reference>:<type>") (outbox.h) */
    bool ignore_expiry; /* UNSAFE: execute past expires_at_ms; a void answers `expired` without
                         * stopping the execution */
};
#define PAYMENTS_POLICY_DEFAULT_SEED 1

/* True for [A-Z0-9-]{1,64}. */
bool payments_account_id_valid(const char *id);

/* Applies the embedded migrations and creates the nodal account (INSERT OR IGNORE, zero
 * balance). 0, PL_EDB or PL_EBUSY. */
int payments_init(struct db *db, const char *nodal_account, int64_t now_ms);

/* PL_ECONFLICT when the id exists. *out is the new row. */
int payments_account_create(struct db *db, const char *id, const char *owner, int64_t opening_minor,
                            int64_t now_ms, struct account *out);
/* PL_ENOTFOUND when unknown. */
int payments_account_get(struct db *db, const char *id, struct account *out);
/* PL_ENOTFOUND when either account is unknown; *created false when it already existed. */
int payments_mandate_create(struct db *db, const char *account, const char *payee, int64_t now_ms,
                            struct mandate *out, bool *created);

/* Fills req's fingerprint: hex SHA-256 of the canonical request fields (every field but the
 * key and traceparent, each length-prefixed). */
void payments_fingerprint(const struct payment_request *req,
                          char out[PAYMENTS_FINGERPRINT_CHARS + 1]);

/* Decides and, for PAYMENTS_CREATED, records a payment `processing` with execute_at_ms and
 * its idempotency key in one transaction; a sync one with execute_at_ms ≤ now_ms is executed
 * in that same transaction (an async one always waits for the scheduler, and gets its
 * payment.processing event, when it has a notify_url, in this transaction). *out is the
 * payment as it now stands (for CREATED, REPLAY_KEY and REFERENCE_KNOWN). Returns 0 with *result
 * set, or PL_EBUSY / PL_EDB (nothing changed). */
int payments_create(struct db *db, const struct payment_request *req, const char *nodal_account,
                    int64_t now_ms, int64_t execute_at_ms, struct payment *out,
                    enum payments_create_result *result);
/* payments_create under policy pol. */
int payments_create_with(struct db *db, const struct payments_policy *pol,
                         const struct payment_request *req, const char *nodal_account,
                         int64_t now_ms, int64_t execute_at_ms, struct payment *out,
                         enum payments_create_result *result);

/* Executes payment id if it is still processing, in one BEGIN IMMEDIATE transaction: past
 * its deadline (now_ms ≥ expires_at_ms) it fails `expired`; without the funds it fails
 * `insufficient_funds`; else the money moves. The outcome's webhook event (when the payment
 * has a notify_url) is written in the same transaction. *executed is false when it was already
 * final (then nothing changed). *out is the payment now. PL_ENOTFOUND, PL_EBUSY, PL_EDB. */
int payments_execute(struct db *db, const char *id, int64_t now_ms, struct payment *out,
                     bool *executed);
/* payments_execute under policy pol: with pol->ignore_expiry a payment past its deadline is
 * executed all the same (logged as UNSAFE). */
int payments_execute_with(struct db *db, const struct payments_policy *pol, const char *id,
                          int64_t now_ms, struct payment *out, bool *executed);

/* POST /v1/payments/void: a never-seen reference is recorded voided (failed / expired, no
 * accounts, amount 0; *created true); a processing one past its deadline is executed now
 * (which expires it; *executed true); anything else is left as it stands. */
int payments_void(struct db *db, const char *reference, int64_t now_ms, struct payment *out,
                  bool *created, bool *executed);
/* payments_void under policy pol. With pol->ignore_expiry a processing payment past its
 * deadline is left processing (it still executes when due), but *out says failed / expired
 * as if it had been stopped, and *pretended is true: the lie the teaching switch tells. */
int payments_void_with(struct db *db, const struct payments_policy *pol, const char *reference,
                       int64_t now_ms, struct payment *out, bool *created, bool *executed,
                       bool *pretended);

/* PL_ENOTFOUND when unknown. */
int payments_get(struct db *db, const char *id, struct payment *out);
int payments_get_by_reference(struct db *db, const char *reference, struct payment *out);

/* The earliest execute_at_ms of a processing payment; PL_ENOTFOUND when there is none. */
int payments_next_due(struct db *db, int64_t *execute_at_ms);
/* Copies the ids of up to cap processing payments with execute_at_ms ≤ now_ms, earliest
 * first, into ids; *count how many. */
int payments_due(struct db *db, int64_t now_ms, char (*ids)[ID_BYTES_MAX], size_t cap,
                 size_t *count);

/* Deletes up to PAYMENTS_PRUNE_BATCH_MAX idempotency keys older than PAYMENTS_KEY_TTL_MS;
 * *deleted how many (a full batch means: call again soon). */
int payments_prune_keys(struct db *db, int64_t now_ms, size_t *deleted);

#endif
