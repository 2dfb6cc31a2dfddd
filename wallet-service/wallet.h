/* wallet.h: the wallet-service's one context struct and the contracts between its modules
 * (main, api, ledger, bank_client, settle, reconciler, outbox, events, intake). Nothing here
 * is exported beyond the wallet-service binary. */
#ifndef PAYLAB_WALLET_H
#define PAYLAB_WALLET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "curlev.h"
#include "db.h"
#include "ids.h"
#include "secrets.h"

struct event;
struct event_base;
struct evhttp;
struct evhttp_request;
struct evhttp_connection;
struct metrics;
struct zbus;

/* ---- limits ---------------------------------------------------------------------------- */

/* Client requests held open while the bank answers (sync top-ups and withdrawals, user
 * creation). One more is refused with 429 before anything is recorded. */
#define WALLET_PENDING_MAX 1024
/* Idempotency keys in flight: at most one per pending record; the set is twice as large so
 * linear probing stays short. */
#define WALLET_IDEM_SET_SLOTS (2 * WALLET_PENDING_MAX)
/* Transactions the reconciler asks about per tick, and status queries it keeps in flight. */
#define RECON_BATCH_MAX 64
/* A transfer note, in bytes of UTF-8 (the API counts characters; ≤ 140 × 4 bytes). */
#define WALLET_NOTE_CHARS_MAX 140
#define WALLET_NOTE_BYTES_MAX (WALLET_NOTE_CHARS_MAX * 4 + 1)
#define WALLET_PHONE_CHARS_MAX 32
#define WALLET_BANK_ACCOUNT_CHARS_MAX 64
#define WALLET_REASON_BYTES_MAX 256
#define WALLET_FAILURE_BYTES_MAX 64
/* Longest account id: "wallet:" + a 32-char handle. */
#define WALLET_ACCOUNT_ID_BYTES_MAX 48
/* Idempotency keys live this long (docs/api.md). */
#define WALLET_IDEM_KEEP_MS (24LL * 3600 * 1000)
/* How often expired keys are pruned, and how many per pass (bounded work on the loop). */
#define WALLET_IDEM_PRUNE_MS 60000
#define WALLET_IDEM_PRUNE_BATCH 1000
/* SHA-256 in hex + NUL. */
#define WALLET_FINGERPRINT_BYTES 65

/* ---- limits of the asynchronous path --------------------------------------------------- */

/* Outbox sends in flight at once: a bank that is slow or down costs at most this many
 * connections, whatever the number of waiting rows. */
#define OUTBOX_INFLIGHT_MAX 32
/* How often the outbox looks for due rows (a fresh row is sent at once, without waiting). */
#define OUTBOX_TICK_MS 50
/* When the database is too busy to record an attempt's outcome, sending more would only
 * repeat requests whose results cannot be kept: all sends pause this long. */
#define OUTBOX_BUSY_PAUSE_MS 1000
/* Retry delays: the first retry after about OUTBOX_BACKOFF_MIN_MS, doubling per attempt, never
 * above OUTBOX_BACKOFF_MAX_MS; each delay is jittered into [delay/2, delay]. */
#define OUTBOX_BACKOFF_MIN_MS 100
#define OUTBOX_BACKOFF_MAX_MS 5000
/* Header lines stored with an outbox row (Content-Type, Accept, Idempotency-Key,
 * traceparent); the Authorization header is added at send time, never stored. */
#define OUTBOX_HEADERS_MAX 8
#define OUTBOX_HEADERS_BYTES_MAX 1024
/* Rows stopped at their deadline per tick (one short transaction). */
#define OUTBOX_EXPIRE_BATCH 64

/* Events published per pass after a commit; more wait for the next pass of the loop. */
#define EVENTS_PUBLISH_BATCH 256
/* How often the published flag of sent events is written (one UPDATE for all of them). */
#define EVENTS_MARK_MS 200
/* sys.heads: every second, the head seq of each user with events in the last minute. */
#define EVENTS_HEADS_MS 1000
#define EVENTS_HEADS_WINDOW_MS 60000
#define EVENTS_HEADS_USERS_MAX 1000
/* GET /v1/users/{user}/events?limit= (docs/contracts.md). */
#define EVENTS_LIST_LIMIT_DEFAULT 100
#define EVENTS_LIST_LIMIT_MAX 500
/* One event's JSON: a handle, ids, a traceparent and a few numbers. */
#define EVENTS_PAYLOAD_BYTES_MAX 1024
/* PUB high-water mark: a gateway further behind loses events and fetches them by seq. */
#define EVENTS_PUB_HWM 100000

/* webhooks_seen rows cover the bank's whole retry schedule (about 28 h at --time-scale 1)
 * with room to spare; older ones are pruned in batches with the idempotency keys. */
#define WEBHOOKS_KEEP_MS (3LL * 24 * 3600 * 1000)
#define WEBHOOKS_PRUNE_BATCH 1000
/* A gateway's request id is a short ASCII id; anything longer is not ours. */
#define INTAKE_REQUEST_ID_BYTES_MAX 128
/* The relayed webhook body (the gateway refuses bodies above 64 KiB). */
#define INTAKE_BODY_BYTES_MAX (64 * 1024)

/* The wallet's own error code beside PL_E*: a wallet would go below zero. */
#define LEDGER_EFUNDS (-20)

/* ---- configuration (flags, docs/api.md) ------------------------------------------------- */

/* --allowed-origin by default: the dashboard served by the gateway on :8082, under every
 * loopback name a browser may use for it. */
#define WALLET_ALLOWED_ORIGIN_DEFAULT                                                              \
    "http://127.0.0.1:8082,http://localhost:8082,http://[::1]:8082"

struct wallet_config {
    int64_t http_port;
    char bind[CONFIG_STR_BYTES_MAX];
    char data_dir[CONFIG_STR_BYTES_MAX];
    char bank_url[CONFIG_STR_BYTES_MAX];
    char notify_url[CONFIG_STR_BYTES_MAX]; /* sent to the bank with every payment */
    char zmq_router[CONFIG_STR_BYTES_MAX]; /* ROUTER bound here: webhook intake */
    char zmq_pub[CONFIG_STR_BYTES_MAX];    /* PUB bound here: events */
    int64_t bank_timeout_ms;               /* a sync bank call gives up after this */
    int64_t reconcile_ms;                  /* reconciler tick */
    int64_t pending_grace_ms;              /* pending older than this is reconciled */
    int64_t payment_ttl_sync_ms;           /* expires_at_ms = now + this (sync modes) */
    int64_t payment_ttl_async_ms;          /* the same for async */
    int64_t bank_opening_minor;            /* opening balance of an account we open */
    char nodal_account[CONFIG_STR_BYTES_MAX];
    int64_t ws_token_ttl_s;
    char allowed_origin[CONFIG_STR_BYTES_MAX]; /* comma-separated browser origins (CORS) */
    char log_level[CONFIG_STR_BYTES_MAX];
    /* Teaching switches (docs/api.md), each loud in the log and in /healthz while on. */
    bool unsafe_no_dedupe;          /* no webhook-id check, no state guard */
    bool unsafe_timeout_is_failure; /* a sync call without a definite answer fails */
    int64_t id_seed;                /* 0: random transaction ids; else seeded (lab runs) */
};

/* ---- ledger values -------------------------------------------------------------------- */

enum txn_kind { TXN_KIND_P2P = 0, TXN_KIND_TOPUP, TXN_KIND_WITHDRAWAL };
enum txn_mode { TXN_MODE_INTERNAL = 0, TXN_MODE_SYNC, TXN_MODE_ASYNC, TXN_MODE_SYNC_BLOCKING };
enum txn_status { TXN_PENDING = 0, TXN_UNKNOWN, TXN_SUCCEEDED, TXN_FAILED };
enum txn_settled_by { SETTLED_NONE = 0, SETTLED_RESPONSE, SETTLED_WEBHOOK, SETTLED_RECONCILER };

/* One row of `transactions`. Strings are empty when the column is NULL. */
struct ledger_txn {
    char id[ID_BYTES_MAX];
    enum txn_kind kind;
    enum txn_mode mode;
    enum txn_status status;
    int64_t amount_minor;
    char user[USER_HANDLE_CHARS_MAX + 1];
    char counterparty[WALLET_BANK_ACCOUNT_CHARS_MAX + 1];
    char note[WALLET_NOTE_BYTES_MAX];
    bool has_note;
    char bank_payment_id[ID_BYTES_MAX];
    char failure_reason[WALLET_FAILURE_BYTES_MAX];
    enum txn_settled_by settled_by;
    int64_t expires_at_ms; /* 0 when NULL (p2p) */
    char traceparent[TRACEPARENT_BYTES];
    int64_t created_at_ms;
    int64_t updated_at_ms;
};

struct ledger_user {
    char user[USER_HANDLE_CHARS_MAX + 1];
    char phone[WALLET_PHONE_CHARS_MAX * 4 + 1];
    bool has_phone;
    char bank_account[WALLET_BANK_ACCOUNT_CHARS_MAX + 1];
    int64_t balance_minor;
    int64_t created_at_ms;
};

/* One row of GET /v1/users: a user, its wallet balance and its latest event seq. */
struct ledger_user_summary {
    char user[USER_HANDLE_CHARS_MAX + 1];
    char bank_account[WALLET_BANK_ACCOUNT_CHARS_MAX + 1];
    int64_t balance_minor;
    int64_t head_seq; /* 0 for a user without events */
};

struct ledger_idem {
    char fingerprint[WALLET_FINGERPRINT_BYTES];
    char transaction_id[ID_BYTES_MAX];
    int status_code;
};

struct ledger_log_line {
    int64_t at_ms;
    const char *event; /* borrowed for the callback */
    const char *status;
    const char *reason;
};

const char *txn_kind_name(enum txn_kind k);
const char *txn_mode_name(enum txn_mode m);
const char *txn_status_name(enum txn_status s);
const char *txn_settled_by_name(enum txn_settled_by s); /* NULL for SETTLED_NONE */
bool txn_status_final(enum txn_status s);
/* Parses a mode name; PL_EINVAL for anything else. */
int txn_mode_parse(const char *s, enum txn_mode *out);

/* ---- ledger.c: wallet.db (no network, no HTTP) ----------------------------------------- */

/* Opens wallet.db, applies migrations, and on first run writes the random epoch and the
 * accounts external:bank and payouts:in_flight. epoch_out gets the epoch. 0 or PL_EDB. */
int ledger_open(struct db *db, const char *path, int64_t now_ms, char *epoch_out, size_t cap);

/* Every write below must run inside db_begin … db_commit (asserted). */
/* Inserts the user and its wallet:<user> account. PL_ECONFLICT if the user exists. */
int ledger_user_insert(struct db *db, const char *user, const char *phone, const char *bank_account,
                       int64_t now_ms);
int ledger_txn_insert(struct db *db, const struct ledger_txn *t);
/* --id-seed: the id of the next top-up or withdrawal, wtx_ + the first 24 hex chars of
 * SHA-256("<seed>:<n>"), n = 1 + the top-ups and withdrawals already in wallet.db — read in
 * the caller's transaction, the one that inserts the row, so n is never handed out twice,
 * across restarts too. seed != 0. 0 or PL_EDB. */
int ledger_seeded_txn_id(struct db *db, int64_t seed, char out[ID_BYTES_MAX]);
/* Appends a timeline line for txn_id (its status after this line, and a human reason). */
int ledger_log(struct db *db, const char *txn_id, int64_t now_ms, const char *event,
               enum txn_status status, const char *reason);
/* Moves amount_minor from from_account to to_account: two entries that sum to 0 and the two
 * balance updates. LEDGER_EFUNDS when from_account is a wallet or payouts account that would
 * go below zero (nothing is written then). */
int ledger_post(struct db *db, const char *txn_id, const char *from_account, const char *to_account,
                int64_t amount_minor, int64_t now_ms);
/* The state-machine guard: UPDATE … WHERE id=? AND status IN (from_mask). from_mask is a
 * bit set of (1 << enum txn_status). 0 when the row moved, PL_ECONFLICT when no row matched
 * (another path got there first). failure_reason / bank_payment_id may be NULL (kept). */
int ledger_txn_transition(struct db *db, const char *txn_id, unsigned from_mask, enum txn_status to,
                          enum txn_settled_by by, const char *failure_reason,
                          const char *bank_payment_id, int64_t now_ms);
/* The same UPDATE without the guard: any status, final ones included, moves to `to` (a final
 * one). For the teaching switch --unsafe-no-dedupe only. 0 or PL_ENOTFOUND. */
int ledger_txn_force(struct db *db, const char *txn_id, enum txn_status to, enum txn_settled_by by,
                     const char *failure_reason, const char *bank_payment_id, int64_t now_ms);
int ledger_conflict_insert(struct db *db, const char *txn_id, const char *source,
                           const char *detail, int64_t now_ms);
/* Records the bank's payment id of txn_id when it has none yet (status unchanged).
 * *changed_out: whether it was new. */
int ledger_txn_set_payment_id(struct db *db, const char *txn_id, const char *bank_payment_id,
                              int64_t now_ms, bool *changed_out);
int ledger_idem_insert(struct db *db, const char *key, const char *fingerprint, const char *txn_id,
                       int status_code, int64_t now_ms);
/* Records the status code of the first response for the keys of txn_id (0 rows is fine). */
int ledger_idem_set_status(struct db *db, const char *txn_id, int status_code);
/* Deletes at most WALLET_IDEM_PRUNE_BATCH keys created before cutoff_ms (own transaction). */
int ledger_idem_prune(struct db *db, int64_t cutoff_ms, int *deleted_out);

/* Reads (no transaction needed). PL_ENOTFOUND when absent. */
int ledger_user_get(struct db *db, const char *user, struct ledger_user *out);
int ledger_txn_get(struct db *db, const char *txn_id, struct ledger_txn *out);
int ledger_balance(struct db *db, const char *account_id, int64_t *out);
int ledger_idem_get(struct db *db, const char *key, struct ledger_idem *out);
/* Calls fn for each timeline line of txn_id, oldest first. */
int ledger_timeline(struct db *db, const char *txn_id,
                    void (*fn)(const struct ledger_log_line *line, void *arg), void *arg);
/* Calls fn for the newest `limit` transactions user paid or received, newest first. */
int ledger_user_txns(struct db *db, const char *user, int limit,
                     void (*fn)(const struct ledger_txn *t, void *arg), void *arg);
/* Calls fn for the first `limit` users ordered by handle (one statement with LIMIT). */
int ledger_users_list(struct db *db, int limit,
                      void (*fn)(const struct ledger_user_summary *u, void *arg), void *arg);
/* One transaction the reconciler may ask about, with its place in the rotation. */
struct ledger_open_row {
    char id[ID_BYTES_MAX];
    int64_t created_at_ms;
};
/* Transactions to reconcile — unknown, or pending with updated_at_ms < pending_before_ms —
 * that come after (after_created_ms, after_id) in (created_at_ms, id) order, oldest first;
 * at most cap. after_created_ms -1 and after_id "" start from the oldest. Those with a
 * reconciler conflict on record are left to people. */
int ledger_open_txns(struct db *db, int64_t pending_before_ms, int64_t after_created_ms,
                     const char *after_id, struct ledger_open_row *rows, size_t cap,
                     size_t *count_out);
/* Calls fn(status_name, count) for every status present. */
int ledger_status_counts(struct db *db, void (*fn)(const char *status, int64_t count, void *arg),
                         void *arg);
/* *sum_out = the sum of txn_id's entries (0 by invariant 2; for asserts). */
int ledger_txn_entries_sum(struct db *db, const char *txn_id, int64_t *sum_out);
/* Account ids. */
void ledger_wallet_account(const char *user, char *out, size_t cap);
#define LEDGER_ACCOUNT_BANK "external:bank"
#define LEDGER_ACCOUNT_PAYOUTS "payouts:in_flight"

/* ---- bank_client.c: requests to the bank and what their answers mean ------------------ */

enum bank_verdict {
    BANK_SUCCEEDED = 0, /* 200, status succeeded, reference and amount match */
    BANK_FAILED,        /* 200, status failed, reference and amount match */
    BANK_PROCESSING,    /* 2xx, status processing */
    BANK_REFUSED,       /* connection refused: the request never left */
    BANK_TIMEOUT,       /* no answer in time: may have been executed */
    BANK_NOT_FOUND,     /* 404 on a status query: the bank never saw the reference */
    BANK_MISMATCH,      /* a final answer whose amount differs from ours */
    BANK_ERROR,         /* reset, 5xx, other 4xx, garbage: may have been executed */
};

struct bank_answer {
    enum bank_verdict verdict;
    long http_status;
    char payment_id[ID_BYTES_MAX];
    char failure_reason[WALLET_FAILURE_BYTES_MAX];
    bool voided;
    int64_t elapsed_ms;
    char detail[WALLET_REASON_BYTES_MAX]; /* a human sentence for the timeline */
};

const char *bank_verdict_name(enum bank_verdict v);

/* A prepared bank request: req points into url, hdrs and body, so the struct must outlive
 * curlev_start / curlev_perform_blocking (both copy what they keep); then bank_call_free. */
#define BANK_HDR_BYTES_MAX 256
struct bank_call {
    struct curlev_request req;
    char url[CONFIG_STR_BYTES_MAX + 128];
    char hdrs[5][BANK_HDR_BYTES_MAX];
    char *body; /* malloc'ed, or NULL */
};
struct wallet_ctx;
/* POST {bank}/v1/payments for t: fresh connection, Idempotency-Key = reference = t->id,
 * traceparent a child of t's. 0, PL_ENOMEM, PL_ERANGE (URL too long) or PL_EIO. */
int bank_payment_call(const struct wallet_ctx *ctx, const struct ledger_txn *t,
                      struct bank_call *call);
/* GET {bank}/v1/payments?reference=… (may reuse connections). */
int bank_query_call(const struct wallet_ctx *ctx, const char *reference, struct bank_call *call);
/* POST {bank}/v1/payments/void {"reference"} (fresh connection). */
int bank_void_call(const struct wallet_ctx *ctx, const char *reference, struct bank_call *call);
/* POST {bank}/v1/accounts and POST {bank}/v1/mandates for user creation. */
int bank_account_call(const struct wallet_ctx *ctx, const char *account, const char *owner,
                      struct bank_call *call);
int bank_mandate_call(const struct wallet_ctx *ctx, const char *account, struct bank_call *call);
/* GET {bank}/v1/accounts/{account}: who owns an account the user names (may reuse a connection). */
int bank_account_get_call(const struct wallet_ctx *ctx, const char *account,
                          struct bank_call *call);
void bank_call_free(struct bank_call *call);
/* Classifies the answer to a payment, status query or void for t (docs/architecture.md). */
void bank_classify(const struct curlev_result *res, const struct ledger_txn *t,
                   struct bank_answer *out);

/* ---- settle.c: apply an outcome in one SQLite transaction ------------------------------ */

struct settle_outcome {
    enum txn_status to;          /* UNKNOWN, SUCCEEDED or FAILED */
    enum txn_settled_by by;      /* for a final `to` */
    const char *failure_reason;  /* FAILED only; may be NULL */
    const char *bank_payment_id; /* may be NULL */
    const char *event;           /* timeline event name ("bank_answer", "timeout", …) */
    const char *reason;          /* human sentence for the timeline */
    int idem_status_code;        /* status of the first response to record, 0 = keep */
};

/* Applies o to txn_id: status + postings + log (+ idempotency status) in one commit, guarded
 * by the state machine. When another path settled it first, nothing changes (a contradicting
 * final outcome is recorded as a conflict). *out is the transaction as committed.
 * *changed_out tells whether this call moved it. 0, PL_EBUSY, PL_EDB, PL_ENOTFOUND. */
int settle_apply(struct wallet_ctx *ctx, const char *txn_id, const struct settle_outcome *o,
                 struct ledger_txn *out, bool *changed_out);
/* settle_apply's body for callers that hold the transaction open themselves (webhook intake
 * writes its webhooks_seen row in the same commit): t is the row as read inside it. Moves t,
 * posts, logs, writes its event rows and closes its outbox row; or, when the guard refuses,
 * records a contradicting final outcome as a conflict. The caller commits, then calls
 * events_kick. *moved_out tells whether t moved. 0 or a PL_E* (the caller rolls back). */
int settle_in_txn(struct wallet_ctx *ctx, const struct ledger_txn *t,
                  const struct settle_outcome *o, int64_t now_ms, bool *moved_out);
/* Records a contradicting answer without applying it (own commit). */
int settle_conflict(struct wallet_ctx *ctx, const char *txn_id, const char *source,
                    const char *detail);

/* ---- reconciler.c --------------------------------------------------------------------- */

struct recon_slot {
    bool used;
    struct wallet_ctx *ctx;
    char txn_id[ID_BYTES_MAX];
    bool voiding;
    struct curlev_xfer *xfer;
};

int reconciler_start(struct wallet_ctx *ctx);
void reconciler_stop(struct wallet_ctx *ctx);
/* True when a status query or void for txn_id is in flight. */
bool reconciler_busy_with(const struct wallet_ctx *ctx, const char *txn_id);

/* ---- outbox.c: async bank requests, stored as bytes, sent after their commit ------------ */

/* What an outbox row's `done` column says. */
enum outbox_state {
    OUTBOX_DUE = 0,      /* to be sent (again) at next_attempt_at_ms */
    OUTBOX_ACCEPTED = 1, /* the bank took it (2xx, reference and amount ours) */
    OUTBOX_EXPIRED = 2,  /* stopped at expires_at_ms: the reconciler takes over */
    OUTBOX_SETTLED = 3,  /* the transaction became final first (webhook, reconciler) */
};

struct outbox_slot {
    bool used;
    struct wallet_ctx *ctx;
    int64_t row_id;
    char txn_id[ID_BYTES_MAX];
    int64_t attempts; /* attempts recorded before this one */
    struct curlev_xfer *xfer;
};

/* Inside an open transaction: stores t's bank request (POST /v1/payments, mode async,
 * notify_url, Idempotency-Key = reference = t->id, a traceparent child of t's) as the exact
 * bytes to send, due at once. 0, PL_ENOMEM, PL_ERANGE, PL_EDB. */
int outbox_insert(struct wallet_ctx *ctx, const struct ledger_txn *t, int64_t now_ms);
/* Inside an open transaction: txn_id's row (if still due) stops — OUTBOX_SETTLED when the
 * transaction became final, OUTBOX_ACCEPTED when a webhook shows the bank has the payment. */
int outbox_close(struct db *db, const char *txn_id, enum outbox_state state, int64_t now_ms);
/* Schedules a send pass on the loop (call after the COMMIT that wrote a row). */
void outbox_kick(struct wallet_ctx *ctx);
/* Rows still to be sent (for /metrics); -1 on a database error. */
int64_t outbox_depth(struct wallet_ctx *ctx);
int outbox_start(struct wallet_ctx *ctx);
/* Cancels the sends in flight; their rows are re-sent by the next run. */
void outbox_stop(struct wallet_ctx *ctx);

/* ---- events.c: per-user event rows, written with the change, published after it ---------- */

/* Inside an open transaction: appends user's events for t's new state — transaction.updated,
 * then balance.updated when balance_changed — on the next gapless seqs. 0 or PL_E*. */
int events_record(struct wallet_ctx *ctx, const struct ledger_txn *t, const char *user,
                  bool balance_changed, int64_t now_ms);
/* Schedules publication of committed, unpublished events (call after the COMMIT). */
void events_kick(struct wallet_ctx *ctx);
/* user's latest seq (0 when none). */
int events_head(struct db *db, const char *user, int64_t *head_out);
/* Calls fn with the stored JSON of user's events with seq > after, oldest first, at most
 * limit. The payload is borrowed for the call. */
int events_list(struct db *db, const char *user, int64_t after, int limit,
                void (*fn)(const char *payload, void *arg), void *arg);
/* Binds the PUB socket, publishes what an earlier run left unpublished, starts sys.heads. */
int events_start(struct wallet_ctx *ctx);
void events_stop(struct wallet_ctx *ctx);

/* ---- intake.c: signed webhooks relayed by the gateways over ZMQ ------------------------- */

int intake_start(struct wallet_ctx *ctx);
void intake_stop(struct wallet_ctx *ctx);
/* Deletes at most WEBHOOKS_PRUNE_BATCH webhooks_seen rows received before cutoff_ms (own
 * transaction). */
int intake_prune(struct db *db, int64_t cutoff_ms, int *deleted_out);

/* ---- api.c ---------------------------------------------------------------------------- */

enum pending_kind { PENDING_FREE = 0, PENDING_PAYMENT, PENDING_USER };

/* A client request held open while the bank answers (a deferred reply with a closecb). */
struct api_pending {
    enum pending_kind kind;
    struct wallet_ctx *ctx;
    struct evhttp_request *req;     /* NULL once the client went away or was answered */
    struct evhttp_connection *conn; /* whose closecb points at this record */
    struct curlev_xfer *xfer;       /* the bank call in flight, or NULL */
    struct event *watch;            /* EV_READ on the client's socket: notices it leaving */
    int64_t start_us;
    const char *route;                     /* metrics label, a literal */
    char txn_id[ID_BYTES_MAX];             /* PENDING_PAYMENT */
    char idem_key[IDEM_KEY_CHARS_MAX + 1]; /* "" when none */
    /* PENDING_USER */
    char user[USER_HANDLE_CHARS_MAX + 1];
    char phone[WALLET_PHONE_CHARS_MAX * 4 + 1];
    bool has_phone;
    char bank_account[WALLET_BANK_ACCOUNT_CHARS_MAX + 1];
    int user_step; /* USER_STEP_OPEN, USER_STEP_OWNER or USER_STEP_MANDATE */
};

/* The bank calls of POST /v1/users, in order. A named or already existing account is first
 * checked for its owner: a wallet user may only bind a bank account in their own name. */
enum { USER_STEP_OPEN = 0, USER_STEP_OWNER = 1, USER_STEP_MANDATE = 2 };

struct idem_set {
    char keys[WALLET_IDEM_SET_SLOTS][IDEM_KEY_CHARS_MAX + 1]; /* "" = free slot */
    size_t count;
};

/* The handler given to http_listen; arg is the wallet_ctx. */
void api_handle(struct evhttp_request *req, void *arg);
/* True when a sync call of txn_id is still waiting for the bank. */
bool api_payment_in_flight(const struct wallet_ctx *ctx, const char *txn_id);
/* Another path (webhook intake, the reconciler) has just committed txn_id's final state:
 * when a sync client still waits on its bank call, cancels that call and answers the client
 * now with the committed state. Call after the COMMIT; a no-op for anything else. */
void api_payment_settled(struct wallet_ctx *ctx, const char *txn_id);
/* Starts draining: new money-moving requests are refused; true when nothing is pending. */
bool api_drained(const struct wallet_ctx *ctx);
/* Cancels the bank calls still in flight and answers their clients with the current state. */
void api_abort_pending(struct wallet_ctx *ctx);

/* ---- main.c: the one context ---------------------------------------------------------- */

struct wallet_ctx {
    struct wallet_config cfg;
    struct event_base *base;
    struct evhttp *http;
    struct db db;
    struct curlev *curl;
    struct metrics *metrics;
    char bank_api_key[SECRET_BYTES_MAX];
    char token_secret[SECRET_BYTES_MAX];
    char webhook_secret[SECRET_BYTES_MAX]; /* verifies relayed webhooks (defence in depth) */
    char epoch[ID_BYTES_MAX];              /* wallet.db's random id */
    bool draining;                         /* SIGTERM seen: finishing in-flight work */
    struct event *recon_timer;
    struct event *prune_timer;
    struct api_pending pending[WALLET_PENDING_MAX];
    size_t pending_count;
    struct idem_set inflight_keys; /* Idempotency-Keys whose request is in flight */
    struct recon_slot recon[RECON_BATCH_MAX];
    size_t recon_inflight;
    /* The rotation: the next batch starts after this (created_at_ms, id); -1 and "" start
     * again from the oldest open transaction. */
    int64_t recon_cursor_created_ms;
    char recon_cursor_id[ID_BYTES_MAX];
    /* ZeroMQ: one context, the ROUTER (webhooks in) and the PUB (events out). */
    void *zctx;
    struct zbus *router;
    struct zbus *pub;
    /* outbox.c */
    struct event *outbox_timer; /* periodic: due rows, retries, deadlines */
    struct event *outbox_now;   /* event_active'd by outbox_kick */
    struct outbox_slot outbox[OUTBOX_INFLIGHT_MAX];
    size_t outbox_inflight;
    int64_t outbox_paused_until_ms; /* wall clock; 0 = not paused (OUTBOX_BUSY_PAUSE_MS) */
    /* events.c */
    struct event *events_flush; /* event_active'd by events_kick */
    struct event *events_mark_timer;
    struct event *events_heads_timer;
    int64_t events_sent_rowid;   /* every event with rowid <= this was handed to PUB */
    int64_t events_marked_rowid; /* ... and its published flag written */
};

#endif
