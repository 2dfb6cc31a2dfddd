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
#define CLUSTER_ARGS_MAX 48
#define CLUSTER_READY_TIMEOUT_MS 10000

struct cluster_proc {
    const char *name;        /* "bank-service", "wallet-service" */
    pid_t pid;               /* 0 when not running */
    int http_port;
    char log_path[CLUSTER_PATH_BYTES_MAX]; /* stderr of the process, appended across restarts */
    char *argv[CLUSTER_ARGS_MAX + 1];      /* owned copy, reused by cluster_restart */
};

struct cluster {
    char dir[CLUSTER_PATH_BYTES_MAX];     /* the temp data dir (secrets, dbs, logs) */
    char bin_dir[CLUSTER_PATH_BYTES_MAX];
    bool keep_dir;                        /* leave dir behind (set when a test failed) */
    char bank_url[CLUSTER_URL_BYTES_MAX]; /* http://127.0.0.1:PORT */
    char wallet_url[CLUSTER_URL_BYTES_MAX];
    int zmq_router_port, zmq_pub_port;
    struct cluster_proc bank, wallet;
};

/* Makes a fresh temp dir, picks free ports, finds bin_dir (NULL → $PAYLAB_BIN_DIR, else the
 * directory of /proc/self/exe). 0 or a negative PL_E* with a message on stderr. */
int cluster_init(struct cluster *c, const char *bin_dir);
/* Starts bank-service with --data-dir, --http-port, --seed 1, --time-scale 0.001 and the
 * NULL-terminated extra_args (may be NULL), and waits until /healthz answers 200. */
int cluster_start_bank(struct cluster *c, const char *const *extra_args);
/* Starts wallet-service pointed at the bank (and ZMQ ports), with extra_args, and waits
 * until /healthz answers 200. */
int cluster_start_wallet(struct cluster *c, const char *const *extra_args);
/* Sends sig (SIGTERM: waits for a clean exit and returns its status; SIGKILL: reaps). */
int cluster_stop(struct cluster_proc *p, int sig);
/* Starts p again with the same arguments and waits until it is ready. */
int cluster_restart(struct cluster *c, struct cluster_proc *p);
/* Stops everything (SIGTERM), removes dir unless keep_dir. */
void cluster_destroy(struct cluster *c);

/* Runs `paylab verify --wallet-db … --bank-db …` from bin_dir; returns its exit code
 * (0 = every invariant holds), printing its report on failure. */
int cluster_verify(struct cluster *c);
/* Runs bin_dir/paylab with --wallet/--bank/--data-dir of this cluster plus args
 * (NULL-terminated); captures stdout into a malloc'ed *out (may be NULL). Returns the exit code. */
int cluster_paylab(struct cluster *c, const char *const *args, char **out);

/* One blocking HTTP exchange for tests (libcurl easy). body may be NULL; headers is a
 * NULL-terminated list of "Name: value" (may be NULL). On success *status_out is the HTTP
 * status (0 when no answer) and *body_out a malloc'ed NUL-terminated body (caller frees).
 * Returns 0 even for HTTP errors; a negative PL_E* only for local failures. */
int cluster_http(const char *method, const char *url, const char *body,
                 const char *const *headers, long timeout_ms, long *status_out, char **body_out);

/* Polls fn(arg) every few ms until it returns true or deadline_ms passes; true if it did. */
bool cluster_wait_for(bool (*fn)(void *arg), void *arg, int64_t deadline_ms);

#endif
