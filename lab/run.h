/* run.h: the state one lab cell shares between its threads — the clients (load.c), the
 * WebSocket watchers (watch.c), the forger and the slow subscribers (actions.c) and the
 * cell's own thread (cell.c), which starts and stops the cluster. Internal to lab/. */
#ifndef PAYLAB_LAB_RUN_H
#define PAYLAB_LAB_RUN_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "cluster.h"
#include "ids.h"
#include "lab.h"

/* Subject users (one per client) and the operations of one cell. */
#define LAB_CLIENTS_MAX 64
#define LAB_OPS_MAX 4096
/* Final states the watchers remember, keyed by transaction id: every top-up and withdrawal of
 * the cell (funding included) with room for the probing to stay short. */
#define LAB_SEEN_SLOTS 16384
#define LAB_USER_BYTES_MAX 24
#define LAB_SECRET_BYTES_MAX 256
/* A client gives up on one request after this long without an answer (a sync-blocking
 * wallet serves clients one after another behind a slow bank). */
#define LAB_REQUEST_TIMEOUT_MS 20000
/* A client resends a request that got no answer (a crashed wallet) for this long. */
#define LAB_RETRY_WINDOW_MS 20000
#define LAB_RETRY_PAUSE_MS 200

enum lab_op_kind { LAB_OP_TOPUP = 0, LAB_OP_WITHDRAWAL };

/* One top-up or withdrawal as a client saw it. Written by its client thread only. */
struct lab_op {
    enum lab_op_kind kind;
    int client;
    char txn_id[ID_BYTES_MAX]; /* "" when no answer named it */
    int64_t sent_us;           /* monotonic µs of the first send */
    int64_t answered_us;       /* of the answer kept; 0 when none */
    int64_t known_us;          /* when the final state was known to the client; 0 never */
    long http_status;
    char status[16];     /* the answer's status: succeeded, failed, pending, unknown */
    char final[16];      /* the final status learned, "" when never */
    bool answered_final; /* the answer itself was final */
};

/* One watcher's view of one user's event stream. */
struct lab_seq {
    int64_t first, last; /* 0 before the first event */
};

struct lab_seen_slot {
    char txn_id[ID_BYTES_MAX]; /* "" free */
    int64_t final_us;          /* monotonic µs the first watcher saw the final state */
    char final[16];
};

struct lab_run {
    const struct lab_config *cfg;
    const struct lab_case *kase;
    enum lab_mode mode;
    char wait[LAB_WAIT_BYTES_MAX];
    int poll_ms; /* 0: learn by WebSocket */
    struct cluster c;
    struct lab_cell *cell;
    char admin_token[LAB_SECRET_BYTES_MAX];
    char webhook_secret[LAB_SECRET_BYTES_MAX];
    char epoch[64];

    int clients_count;
    char users[LAB_CLIENTS_MAX][LAB_USER_BYTES_MAX]; /* subject users, one per client */
    char p2p_users[4][LAB_USER_BYTES_MAX];           /* 0,1: background; 2,3: burst */

    struct lab_op *ops; /* ops_count entries */
    int ops_count;
    atomic_int next_op;    /* the next op index to take */
    atomic_int ops_sent;   /* ops whose first request left */
    atomic_int ops_done;   /* ops whose client is finished with them */
    int gate;              /* ops with an index at or above wait for gate_open */
    atomic_bool gate_open; /* the scenario's action has begun */
    atomic_bool stop;      /* Ctrl-C or end of the cell: every thread winds down */
    atomic_bool load_done; /* the clients are finished: background threads stop */

    /* Guarded by mu: the final states seen by the watchers, the merged figures. */
    pthread_mutex_t mu;
    pthread_cond_t seen_cv;
    struct lab_seen_slot *seen; /* LAB_SEEN_SLOTS */
    struct lab_seq seqs[2][LAB_CLIENTS_MAX];
    /* Per-thread figures are merged into cell under mu. */
    atomic_llong polls_sent, poll_bytes, ws_messages, ws_bytes, client_retries;
    atomic_llong watcher_gaps, watcher_reorders, watcher_resubscribes;
    atomic_llong forged_sent, forged_refused, forged_applied;
    atomic_llong p2p_ok, p2p_errors;
    struct lab_hist p2p_latency_us; /* under mu */
};

/* Monotonic and wall clocks in µs. */
int64_t lab_mono_us(void);
int64_t lab_wall_us(void);
/* Sleeps ms, in steps of at most 50 ms, returning early once r->stop is set. */
void lab_pause_ms(struct lab_run *r, int64_t ms);

/* ---- http.c: one blocking exchange on a reused handle (a client's keep-alive connection) */
struct lab_http {
    void *curl; /* CURL * */
    const atomic_bool *stop;
};
struct lab_reply {
    long status; /* 0: no answer */
    char body[8192];
    size_t body_bytes;
    int64_t bytes; /* request + response bytes on the wire (headers and bodies) */
    int64_t elapsed_us;
    char error[128];
};
int lab_http_init(struct lab_http *h, const atomic_bool *stop);
void lab_http_free(struct lab_http *h);
/* method/url/body (NULL for none); extra headers NULL-terminated (may be NULL). 0, or a
 * negative PL_E* for local failures; a transport failure is status 0 with error set. */
int lab_http_call(struct lab_http *h, const char *method, const char *url, const char *body,
                  const char *const *headers, long timeout_ms, struct lab_reply *out);

/* ---- seen table (watch.c) ------------------------------------------------------------- */
/* Records that a watcher saw txn_id final (first sighting wins). Takes mu. */
void lab_seen_record(struct lab_run *r, const char *txn_id, const char *final, int64_t at_us);
/* Waits until txn_id is seen final or deadline_us (monotonic) passes. true when seen, with
 * *at_us and final filled. Takes mu. */
bool lab_seen_wait(struct lab_run *r, const char *txn_id, int64_t deadline_us, int64_t *at_us,
                   char *final, size_t cap);

/* ---- threads -------------------------------------------------------------------------- */
void *lab_client_main(void *arg);  /* arg: struct lab_client * (load.c) */
void *lab_p2p_main(void *arg);     /* arg: struct lab_run *; until load_done */
void *lab_burst_main(void *arg);   /* arg: struct lab_run *; a fast P2P burst */
void *lab_watcher_main(void *arg); /* arg: struct lab_watcher * (watch.c) */
void *lab_forger_main(void *arg);  /* arg: struct lab_run *; until load_done */

struct lab_client {
    struct lab_run *run;
    int index;
    struct lab_hist client_latency_us, time_to_final_us, not_knowing_us;
};
struct lab_watcher {
    struct lab_run *run;
    int index;            /* 0 or 1: which gateway it tries first */
    atomic_bool started;  /* subscribed at least once */
    atomic_bool finished; /* its loop returned */
    struct lab_hist push_delay_us;
};

/* Opens count WebSocket connections to gateway 0 that subscribe to every user and then never
 * read (actions.c). Returns how many opened; fds[] gets their sockets. */
int lab_slow_subscribers_open(struct lab_run *r, int *fds, int count);
/* How many of them the gateway has closed (reads each without blocking). */
int lab_slow_subscribers_dropped(int *fds, int count);

#endif
