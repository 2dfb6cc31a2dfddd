/* e2e.h: helpers shared by the end-to-end suites: one cluster per test (bank-service,
 * wallet-service and, for the asynchronous path, webhook-gateways on free ports, short
 * timeouts), JSON requests to the services with the right keys, signed (or forged) webhooks,
 * balance and transaction look-ups, waits on conditions with deadlines, and read-only queries of
 * wallet.db. Helpers assert with cmocka, so they run on the test's own thread only; e2e_bg_* is the
 * thread-safe way to keep a request in flight. */
#ifndef PAYLAB_E2E_H
#define PAYLAB_E2E_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdbool.h>

#include "cluster.h"
#include "pl.h"

#define E2E_SECRET_BYTES_MAX 160
#define E2E_KEY_BYTES_MAX 80
#define E2E_BODY_BYTES_MAX 1024
/* Every HTTP exchange of a test ends within this (the longest bank timeout used is 3 s). */
#define E2E_HTTP_TIMEOUT_MS 10000L
/* A transaction left unknown/pending is settled well within this (horizon ≈ 2 s). */
#define E2E_SETTLE_TIMEOUT_MS 10000L

/* The wallet's timing flags for one test; 0 takes the suite's default. */
struct e2e_opts {
    long bank_timeout_ms;      /* default 300 */
    long payment_ttl_sync_ms;  /* default 1500 */
    long pending_grace_ms;     /* default 300; the async suites raise it so that webhooks,
                                * not the reconciler, settle what they test */
    long payment_ttl_async_ms; /* default 20000 */
    int gateways;              /* webhook-gateways started and in --notify-url (default 0:
                                * the sync suites see no webhook at all) */
};

struct e2e {
    struct cluster c;
    struct e2e_opts opts;
    char api_key[E2E_SECRET_BYTES_MAX];        /* secrets/bank_api_key */
    char admin_token[E2E_SECRET_BYTES_MAX];    /* secrets/admin_token */
    char webhook_secret[E2E_SECRET_BYTES_MAX]; /* secrets/webhook_secret ("whsec_…") */
    unsigned key_seq;
};

struct e2e_resp {
    long status;   /* 0: no answer */
    cJSON *json;   /* NULL when the body is not JSON */
    bool replayed; /* Idempotent-Replayed: true */
    struct cluster_reply raw;
};

/* Runs only the tests matching $E2E_TEST (a cmocka filter, e.g. "test_bank_*"), if set. */
void e2e_filter_from_env(void);

/* cmocka setup/teardown: allocate the state; teardown destroys the cluster and keeps the
 * directory (printing the logs' paths) unless e2e_finish ran. */
int e2e_setup(void **state);
int e2e_teardown(void **state);

/* Starts bank and wallet (opts may be NULL) and loads the secrets. */
void e2e_start(struct e2e *e, const struct e2e_opts *opts);
/* Starts the wallet alone again (after cluster_stop), with the same flags. */
void e2e_restart_wallet(struct e2e *e);
void e2e_restart_bank(struct e2e *e);
/* Starts gateway index (0 or 1) for the first time (opts.gateways did not) or again. */
void e2e_start_gateway(struct e2e *e, int index);
/* Asserts `paylab verify` exits 0, then marks the test as passed (its dir is removed). */
void e2e_finish(struct e2e *e);

/* A fresh Idempotency-Key into out (E2E_KEY_BYTES_MAX). */
void e2e_new_key(struct e2e *e, char *out);

/* Exchanges; r must be freed with e2e_resp_free. headers: "Name: value", NULL-terminated.
 * e2e_wallet adds Content-Type: application/json when there is a body, and the key. */
void e2e_request(const char *method, const char *url, const char *body, size_t body_bytes,
                 const char *const *headers, struct e2e_resp *r);
void e2e_wallet(struct e2e *e, const char *method, const char *path, const char *body,
                const char *idem_key, struct e2e_resp *r);
/* bearer: the token to send (NULL: no Authorization header). */
void e2e_bank(struct e2e *e, const char *method, const char *path, const char *body,
              const char *bearer, struct e2e_resp *r);
void e2e_resp_free(struct e2e_resp *r);

/* JSON access; each asserts the member exists with that type. */
const char *e2e_str(const cJSON *obj, const char *key);
int64_t e2e_int(const cJSON *obj, const char *key);
bool e2e_is_null(const cJSON *obj, const char *key);
/* {"error":{"code":…}} → code (asserted present). */
const char *e2e_error_code(const struct e2e_resp *r);
/* Asserts r->status == status and, when code is not NULL, the error code. */
void e2e_expect(const struct e2e_resp *r, long status, const char *code);

/* Asserts the transaction object of docs/contracts.md: id wtx_…, kind, mode, status,
 * amount_minor, currency INR. */
void e2e_expect_txn(const cJSON *t, const char *kind, const char *mode, const char *status,
                    int64_t amount_minor);
/* Asserts an error answer about a transaction: top-level "id" (wtx_…) and "status";
 * returns the id (borrowed from r). */
const char *e2e_expect_txn_error(const struct e2e_resp *r, long status, const char *code,
                                 const char *txn_status);

/* Domain helpers (assert success). */
void e2e_user_add(struct e2e *e, const char *user);
int64_t e2e_wallet_balance(struct e2e *e, const char *user);
int64_t e2e_bank_balance(struct e2e *e, const char *account);
void e2e_faults(struct e2e *e, const char *json);
/* POST /v1/topups (or /v1/withdrawals) {"user","amount_minor","mode"} with key (NULL →
 * fresh). Returns the status; r holds the answer. */
long e2e_topup(struct e2e *e, const char *user, int64_t amount_minor, const char *mode,
               const char *key, struct e2e_resp *r);
long e2e_withdraw(struct e2e *e, const char *user, int64_t amount_minor, const char *mode,
                  const char *key, struct e2e_resp *r);
long e2e_transfer(struct e2e *e, const char *from, const char *to, int64_t amount_minor,
                  struct e2e_resp *r);
/* GET /v1/transactions/{id}: 200 asserted; caller cJSON_Delete()s. */
cJSON *e2e_txn(struct e2e *e, const char *id);
/* Polls the transaction until succeeded or failed (asserted within the timeout). */
cJSON *e2e_wait_final(struct e2e *e, const char *id, long timeout_ms);
/* GET /v1/payments?reference=…: the payment (200) or NULL (404); other statuses fail. */
cJSON *e2e_bank_payment(struct e2e *e, const char *reference);
/* Polls the bank until it knows reference; returns the payment. */
cJSON *e2e_wait_bank_payment(struct e2e *e, const char *reference, long timeout_ms);
/* Polls the bank until the payment of reference is succeeded or failed. */
cJSON *e2e_wait_bank_final(struct e2e *e, const char *reference, long timeout_ms);

/* Polls GET /v1/users/{user}/transactions until it lists one; its newest id → id_out. */
void e2e_wait_newest_txn(struct e2e *e, const char *user, char id_out[64], long timeout_ms);

/* One integer from a read-only query of wallet.db; arg binds ?1 when not NULL. */
int64_t e2e_wallet_db_int(struct e2e *e, const char *sql, const char *arg);

/* A request kept in flight on its own thread (no cmocka asserts there). */
struct e2e_bg {
    pthread_t thread;
    char url[CLUSTER_URL_BYTES_MAX + 64];
    char body[E2E_BODY_BYTES_MAX];
    char key_header[E2E_KEY_BYTES_MAX + 32];
    struct cluster_reply reply;
    int rc;
};
void e2e_bg_start(struct e2e_bg *bg, struct e2e *e, const char *path, const char *body,
                  const char *idem_key);
/* Joins the thread and moves its answer into r (free with e2e_resp_free). */
void e2e_bg_join(struct e2e_bg *bg, struct e2e_resp *r);

/* ------------------------------------------------------------------ the async path */

/* A webhook body as the bank sends it (docs/api.md) for the bank payment `payment` (its
 * payment_id, reference, currency, wallet_epoch), with type payment.<status> and
 * amount_minor; malloc'ed, caller free()s. */
char *e2e_webhook_body(const char *event_id, const char *status, const cJSON *payment,
                       int64_t amount_minor);
/* POSTs sent_body to gateway index's /v1/webhooks/bank with webhook-id event_id (NULL: no
 * header), webhook-timestamp timestamp_s and a webhook-signature computed with secret over
 * signed_body (secret NULL: no signature header). Signing one body and sending another
 * is a tampered message. */
void e2e_webhook_post(struct e2e *e, int index, const char *event_id, int64_t timestamp_s,
                      const char *signed_body, const char *sent_body, const char *secret,
                      struct e2e_resp *r);
/* The same, signed with the cluster's real webhook_secret over sent_body ("forged but
 * signed"), timestamp now. */
void e2e_webhook_post_signed(struct e2e *e, int index, const char *event_id, const char *body,
                             struct e2e_resp *r);
/* Asserts r is 200 {"result":result}. */
void e2e_expect_result(const struct e2e_resp *r, const char *result);
/* GET /admin/webhooks?status=…&limit=500 → the "webhooks" array of the answer, owned by
 * the returned root object (caller cJSON_Delete()s the root, *list borrowed from it). */
cJSON *e2e_bank_webhooks(struct e2e *e, const char *status, const cJSON **list);
/* The bank's webhook deliveries of one reference (a redelivery adds one per event): how
 * many are in each status, and their attempts summed. */
struct e2e_webhook_stats {
    int64_t pending, delivered, dead, attempts;
    int64_t attempts_max; /* of one delivery: 2 or more means one attempt failed */
};
void e2e_bank_webhook_stats(struct e2e *e, const char *reference, struct e2e_webhook_stats *st);
/* Polls until the bank has no webhook left in status pending. */
void e2e_wait_webhooks_idle(struct e2e *e, long timeout_ms);
/* POSTs an async top-up (or withdrawal) that must answer 202 pending; its id → id_out.
 * Returns the client's latency in ms. */
int64_t e2e_topup_async(struct e2e *e, const char *user, int64_t amount_minor, char id_out[64]);
int64_t e2e_withdraw_async(struct e2e *e, const char *user, int64_t amount_minor, char id_out[64]);
/* Polls until every one of ids[0..count-1] is final (asserted within the timeout). */
void e2e_wait_all_final(struct e2e *e, char ids[][64], size_t count, long timeout_ms);
/* The wallet's transaction is `status` (settled by settled_by unless NULL) and has exactly
 * entries_count ledger entries: 2 for a top-up credited once, 0 for a failed one, 4 for a
 * withdrawal paid out once (hold, then payout) — never a second posting. */
void e2e_expect_settled(struct e2e *e, const char *id, const char *status, const char *settled_by,
                        int64_t entries_count);

/* Snapshot of what a refused request must not change. */
struct e2e_snapshot {
    int64_t wallet_alice, wallet_bob, bank_alice, bank_bob, bank_nodal;
    int64_t transactions, entries, users;
};
void e2e_snapshot_take(struct e2e *e, struct e2e_snapshot *s);
void e2e_snapshot_equal(const struct e2e_snapshot *a, const struct e2e_snapshot *b,
                        const char *what);

/* ------------------------------------------------------------------ WebSockets (docs/realtime.md)
 */

/* A test's own RFC 6455 client over a plain socket, independent of shared/ws.c, so the
 * gateway is checked against code that does not share its bugs: the opening handshake and
 * every frame are written by hand (masked, as a client must), frames are parsed from a
 * buffer. e2e_ws_send_frame and e2e_ws_poll_frame never assert and may run on a reader
 * thread; the other e2e_ws_* helpers assert, on the test's thread. */
#define E2E_WS_TIMEOUT_MS 10000L
/* The largest frame a test reads (the gateway sends ≤ 4 KiB messages). */
#define E2E_WS_FRAME_BYTES_MAX (1024 * 1024)
#define E2E_WS_HEAD_BYTES_MAX 8192
/* Close codes as the reader reports them: no status in the close frame, no close frame. */
#define E2E_WS_NO_STATUS 1005
#define E2E_WS_ABNORMAL 1006

enum {
    E2E_WS_CONT = 0x0,
    E2E_WS_TEXT = 0x1,
    E2E_WS_BINARY = 0x2,
    E2E_WS_CLOSE = 0x8,
    E2E_WS_PING = 0x9,
    E2E_WS_PONG = 0xA,
    E2E_WS_FIN = 0x80,
};

struct e2e_ws {
    int fd;
    pthread_mutex_t write_mu; /* a pong and a message from two threads never interleave */
    unsigned char *in;        /* bytes read and not yet parsed */
    size_t in_len, in_cap;
    bool eof;   /* the peer closed (or reset) the TCP connection */
    void *user; /* the test's own per-connection data */
};

struct e2e_ws_frame {
    bool fin;
    unsigned rsv; /* RSV1..RSV3 as bits 2..0 */
    int opcode;
    bool masked;
    unsigned char *payload; /* malloc'ed, NUL-terminated (not counted in len) */
    size_t len;
};

/* A blocking TCP connection to 127.0.0.1:port (asserted). rcvbuf_bytes > 0 sets SO_RCVBUF
 * before connecting (a small window: a consumer that will not read). */
int e2e_tcp_connect(int port, int rcvbuf_bytes);
/* Writes request to a fresh connection to port and reads the answer's head (up to the blank
 * line, or what came before the peer closed) into head (NUL-terminated). Returns the HTTP
 * status, 0 when none came. For handshakes that must fail. */
long e2e_http_raw(int port, const char *request, size_t request_bytes, char *head, size_t cap);
/* Connects to ws://127.0.0.1:port/ws with a fresh random key (and Origin when not NULL),
 * and asserts 101 with the right Upgrade, Connection and Sec-WebSocket-Accept. */
struct e2e_ws *e2e_ws_connect(int port, const char *origin, int rcvbuf_bytes);
/* Sends the close frame (when code > 0 and the socket still takes it) and frees. */
void e2e_ws_free(struct e2e_ws *w, int code);
/* One frame, masked with a random key, with first byte b0 (FIN | RSV | opcode) and the
 * shortest length encoding. 0, or -1 when the peer is gone. Thread-safe. */
int e2e_ws_send_frame(struct e2e_ws *w, unsigned b0, const void *payload, size_t len);
/* Sends one unfragmented text message (asserted). */
void e2e_ws_send_text(struct e2e_ws *w, const char *text);
/* A frame parsed from what has arrived, reading once without blocking: 1 (f filled, free
 * with e2e_ws_frame_free), 0 (none complete yet), -1 (the peer closed, or sent garbage). */
int e2e_ws_poll_frame(struct e2e_ws *w, struct e2e_ws_frame *f);
/* The same, waiting until deadline_ms (pl_mono_ms clock): 1, 0 (timeout) or -1. */
int e2e_ws_read_frame(struct e2e_ws *w, int64_t deadline_ms, struct e2e_ws_frame *f);
void e2e_ws_frame_free(struct e2e_ws_frame *f);
/* The close code of a close frame's payload (E2E_WS_NO_STATUS when it has none). */
int e2e_ws_close_code(const struct e2e_ws_frame *f);
/* The next server message as JSON: pings are answered, pongs skipped, fragments joined.
 * Fails the test on a timeout, a close, a non-text message or text that is not JSON. */
cJSON *e2e_ws_recv_json(struct e2e_ws *w, long timeout_ms);
/* Reads until the server's close frame and returns its code (E2E_WS_NO_STATUS when empty);
 * E2E_WS_ABNORMAL when the connection ends without one. Messages before it are skipped
 * (counted in *skipped when not NULL). Fails the test on a timeout. */
int e2e_ws_wait_close(struct e2e_ws *w, long timeout_ms, int *skipped);
/* {"op":"subscribe","user":user,"token":token,"epoch":epoch,"after":after}; token and epoch
 * are left out when NULL, after when negative. */
void e2e_ws_subscribe(struct e2e_ws *w, const char *user, const char *token, const char *epoch,
                      int64_t after);
/* Sends a subscription and asserts its {"op":"subscribed"} answer for user; returns it. */
cJSON *e2e_ws_subscribe_ok(struct e2e_ws *w, const char *user, const char *token, const char *epoch,
                           int64_t after);

/* POST /v1/users/{user}/ws-token → the token (into out, E2E_SECRET_BYTES_MAX). */
void e2e_ws_token(struct e2e *e, const char *user, char *out);
/* GET /v1/users/{user}: epoch (into out, E2E_SECRET_BYTES_MAX) and head_seq. */
int64_t e2e_user_head(struct e2e *e, const char *user, char *epoch_out);
/* Every event of user with seq > after, paged through GET /v1/users/{user}/events: a cJSON
 * array (caller deletes) in seq order. */
cJSON *e2e_user_events(struct e2e *e, const char *user, int64_t after);

#endif
