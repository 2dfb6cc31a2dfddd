/* cluster.h: start and stop paylab services on free loopback ports in a fresh directory.
 * Used by the e2e tests now and by `paylab lab` later: the binaries are found in bin_dir
 * (the folder the caller itself runs from, or $PAYLAB_BIN_DIR).
 * Every wait here polls a condition with a deadline; nothing sleeps for synchronisation. */
#ifndef PAYLAB_CLUSTER_H
#define PAYLAB_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CLUSTER_PATH_BYTES_MAX 512
#define CLUSTER_URL_BYTES_MAX 128
/* `paylab lab` runs two gateways (docs/coursework.md); the tests use one or both. */
#define CLUSTER_GATEWAYS_MAX 2
/* The wallet's --notify-url: every gateway's webhook URL, comma-separated. */
#define CLUSTER_NOTIFY_BYTES_MAX (CLUSTER_GATEWAYS_MAX * CLUSTER_URL_BYTES_MAX)
#define CLUSTER_ARGS_MAX 48
#define CLUSTER_READY_TIMEOUT_MS 10000
/* A service that has not exited this long after SIGTERM is SIGKILLed (and reported). */
#define CLUSTER_STOP_TIMEOUT_MS 10000
/* A paylab command (verify, topup …) that runs longer than this is killed. */
#define CLUSTER_CMD_TIMEOUT_MS 60000
/* Captured stdout of a paylab command beyond this is dropped (the rest is drained). */
#define CLUSTER_OUTPUT_BYTES_MAX (4 * 1024 * 1024)

struct cluster_proc {
    const char *name; /* the binary: "bank-service", "wallet-service", "webhook-gateway" */
    pid_t pid;        /* 0 when not running */
    int http_port;
    int ws_port; /* webhook-gateway only (its WebSocket listener); 0 for the others */
    char log_path[CLUSTER_PATH_BYTES_MAX]; /* stderr of the process, appended across restarts */
    char *argv[CLUSTER_ARGS_MAX + 1];      /* owned copy, reused by cluster_restart */
};

struct cluster {
    char dir[CLUSTER_PATH_BYTES_MAX]; /* the temp data dir (secrets, dbs, logs) */
    char bin_dir[CLUSTER_PATH_BYTES_MAX];
    bool keep_dir;                        /* leave dir behind (set when a test failed) */
    char bank_url[CLUSTER_URL_BYTES_MAX]; /* http://127.0.0.1:PORT */
    char wallet_url[CLUSTER_URL_BYTES_MAX];
    int zmq_router_port, zmq_pub_port;
    struct cluster_proc bank, wallet;
    /* A free port the wallet's --notify-url points at; nothing listens there until a
     * gateway is started on it, so the bank's webhooks never reach a demo on :8082.
     * It is gateways[0].http_port. */
    int notify_port;
    /* Gateway i listens on gateways[i].http_port (webhooks, dashboard) and .ws_port; the
     * ports are picked by cluster_init whether or not the gateway is ever started. */
    struct cluster_proc gateways[CLUSTER_GATEWAYS_MAX];
    char gateway_url[CLUSTER_GATEWAYS_MAX][CLUSTER_URL_BYTES_MAX];    /* http://127.0.0.1:P */
    char gateway_ws_url[CLUSTER_GATEWAYS_MAX][CLUSTER_URL_BYTES_MAX]; /* ws://127.0.0.1:P */
    /* The wallet's --notify-url as cluster_start_wallet passes it: gateway 0's webhook URL
     * after cluster_init; cluster_use_gateways (or the caller) may change it before the
     * wallet starts. A later change takes effect at the wallet's next start, not restart. */
    char notify_url[CLUSTER_NOTIFY_BYTES_MAX];
};

/* The services and paylab inherit no PAYLAB_* variable from the caller (a demo's ports or
 * secrets): the cluster is all flags. On Linux a service dies with the thread that started
 * it (PR_SET_PDEATHSIG), so start them from a thread that outlives the cluster.
 * stdout and stderr of each service are appended to its log_path. */

/* Makes a fresh temp dir, picks free ports, finds bin_dir (NULL → $PAYLAB_BIN_DIR, else the
 * directory of /proc/self/exe). 0 or a negative PL_E* with a message on stderr. */
int cluster_init(struct cluster *c, const char *bin_dir);
/* Starts bank-service with --data-dir, --http-port, --seed 1, --time-scale 0.001 and the
 * NULL-terminated extra_args (may be NULL), and waits until /healthz answers 200. */
int cluster_start_bank(struct cluster *c, const char *const *extra_args);
/* Starts wallet-service pointed at the bank (and ZMQ ports), with extra_args, and waits
 * until /healthz answers 200. */
int cluster_start_wallet(struct cluster *c, const char *const *extra_args);
/* Points notify_url at the webhook URLs of gateways 0 .. count-1, comma-separated, so the
 * bank fails over along them (docs/realtime.md). Call before cluster_start_wallet. 0, or
 * PL_EINVAL when count is not 1 .. CLUSTER_GATEWAYS_MAX. */
int cluster_use_gateways(struct cluster *c, int count);
/* Starts webhook-gateway number index (0 .. CLUSTER_GATEWAYS_MAX-1) with --http-port,
 * --ws-port, --data-dir (the cluster's: it shares the secrets), --wallet-url and the
 * wallet's ZMQ endpoints, plus extra_args; waits until /healthz answers 200. The wallet
 * may start before or after it. 0, PL_EINVAL (bad index, already running) or PL_EIO. */
int cluster_start_gateway(struct cluster *c, int index, const char *const *extra_args);
/* Sends sig (SIGTERM: waits for a clean exit and returns its status; SIGKILL: reaps).
 * Returns the exit code (0 = clean), 128 + the signal for a death by another signal than
 * the one sent, 0 for a SIGKILL sent and received; PL_EINVAL when p is not running,
 * PL_ERANGE when it outlived CLUSTER_STOP_TIMEOUT_MS (it is then SIGKILLed and reaped). */
int cluster_stop(struct cluster_proc *p, int sig);
/* Starts p again with the same arguments and waits until it is ready. */
int cluster_restart(struct cluster *c, struct cluster_proc *p);
/* Stops everything (SIGTERM: gateways, wallet, bank), removes dir unless keep_dir. */
void cluster_destroy(struct cluster *c);

/* Runs `paylab verify --wallet-db … --bank-db …` from bin_dir; returns its exit code
 * (0 = every invariant holds), printing its report on failure. */
int cluster_verify(struct cluster *c);
/* Runs bin_dir/paylab with --wallet/--bank/--data-dir of this cluster plus args
 * (NULL-terminated) and PAYLAB_GATEWAY_URL naming the running gateways' WebSocket URLs;
 * captures stdout into a malloc'ed *out (may be NULL). Returns the exit code. */
int cluster_paylab(struct cluster *c, const char *const *args, char **out);

/* One blocking HTTP exchange for tests (libcurl easy). body may be NULL; headers is a
 * NULL-terminated list of "Name: value" (may be NULL). On success *status_out is the HTTP
 * status (0 when no answer) and *body_out a malloc'ed NUL-terminated body (caller frees).
 * Returns 0 even for HTTP errors; a negative PL_E* only for local failures. */
int cluster_http(const char *method, const char *url, const char *body, const char *const *headers,
                 long timeout_ms, long *status_out, char **body_out);

/* One reply of cluster_http_full; every pointer is malloc'ed, free with cluster_reply_free. */
struct cluster_reply {
    long status; /* HTTP status; 0 when no answer arrived (refused, reset, timeout) */
    char *body;  /* NUL-terminated, "" when empty */
    size_t body_bytes;
    char *headers; /* the raw response header block, "" when no answer */
    int64_t elapsed_ms;
};

/* Like cluster_http, with the response headers (Idempotent-Replayed, Retry-After …) and a
 * body of body_bytes (may hold anything). Sends no "Expect: 100-continue". Safe to call
 * from several threads at once (each call has its own handle; cluster_init has run
 * curl_global_init). 0, or PL_ENOMEM / PL_EINVAL for local failures. */
int cluster_http_full(const char *method, const char *url, const char *body, size_t body_bytes,
                      const char *const *headers, long timeout_ms, struct cluster_reply *reply);
void cluster_reply_free(struct cluster_reply *reply);
/* Copies the value of response header name (case-insensitive, surrounding blanks trimmed)
 * into out; true when present. */
bool cluster_reply_header(const struct cluster_reply *reply, const char *name, char *out,
                          size_t cap);

/* Reads <dir>/secrets/<name> (e.g. "bank_api_key", "admin_token") into out without the
 * trailing newline. 0, PL_EIO (missing, unreadable) or PL_ERANGE (longer than cap). */
int cluster_read_secret(const struct cluster *c, const char *name, char *out, size_t cap);

/* Polls fn(arg) every few ms until it returns true or deadline_ms passes; true if it did.
 * deadline_ms is on the pl_mono_ms() clock: cluster_deadline_ms(timeout) makes one. */
bool cluster_wait_for(bool (*fn)(void *arg), void *arg, int64_t deadline_ms);
int64_t cluster_deadline_ms(int64_t timeout_ms);

#endif
