/* verify.h: the checks behind `paylab verify` — the invariants of docs/ledger.md read from
 * wallet.db (schema main) and, when given, bank.db (ATTACHed as schema bank) on one
 * read-only connection, inside one read transaction. */
#ifndef PAYLAB_CLI_VERIFY_H
#define PAYLAB_CLI_VERIFY_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "db.h"

#define VERIFY_INVARIANTS_COUNT 6
/* A report lists this many breaches per invariant and counts the rest. */
#define VERIFY_BREACHES_SHOWN 50
#define VERIFY_CONFLICTS_SHOWN 10
#define VERIFY_EPOCH_BYTES_MAX 80
#define VERIFY_ACCOUNT_BYTES_MAX 72
/* A payment without a deadline (should not happen) gets the async TTL default. */
#define VERIFY_TTL_FALLBACK_MS 60000

struct verify_invariant {
    int id;           /* 1..6 */
    const char *name; /* "balances sum to zero" */
    bool skipped;
    size_t breaches_count;
    cJSON *breaches;  /* array of {"subject","message"}, at most VERIFY_BREACHES_SHOWN */
    char detail[160]; /* a short note for the ✓ line: "(7 accounts)" */
};

struct verify {
    struct db *db;
    bool have_bank;
    char epoch[VERIFY_EPOCH_BYTES_MAX];   /* the wallet database's meta epoch */
    char nodal[VERIFY_ACCOUNT_BYTES_MAX]; /* --nodal-account */
    int64_t now_ms;                       /* the wall clock when the check began */
    int64_t snapshot_ms;                  /* just before the wallet snapshot was taken */
    int64_t grace_ms, reconcile_ms;       /* --pending-grace-ms, --reconcile-ms */
    struct verify_invariant inv[VERIFY_INVARIANTS_COUNT + 1]; /* [1..6] */
    size_t in_flight_count; /* open transactions still within their horizon */
};

/* Records a breach of invariant id (subject: the account, transaction or payment). */
void verify_breach(struct verify *v, int id, const char *subject, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The reconciliation horizon of something with deadline expires_at_ms (docs/architecture.md). */
int64_t verify_horizon_ms(const struct verify *v, int64_t expires_at_ms);

/* Invariants 1, 2, 3, 5 (the wallet's postings) and 6, from schema main. 0 or PL_EDB. */
int verify_wallet(struct verify *v);
/* Invariant 4 and the bank's half of 5, joining schema main to schema bank. 0 or PL_EDB. */
int verify_bank(struct verify *v);

#endif
