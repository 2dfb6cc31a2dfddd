/* lab.h: the failure-mode lab behind `paylab lab` — its scenarios, one run's settings, the
 * figures measured per scenario × case × mode × wait style (a "cell"), and the writers of
 * the report, the CSV, the JSON and the charts.
 *
 * A cell is measured on a cluster of its own (bank, wallet, two gateways, started by
 * cluster.c in a fresh directory): the clients and the watchers observe it from outside,
 * over HTTP and WebSocket, and the services' own counters (/metrics) and databases
 * (read-only, after the run) complete the picture. Every figure here is what was measured;
 * nothing is filled in from what a scenario is expected to show. */
#ifndef PAYLAB_LAB_H
#define PAYLAB_LAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hist.h"

/* ---- limits ---------------------------------------------------------------------------- */

#define LAB_CELLS_MAX 256
#define LAB_NAME_BYTES_MAX 40
#define LAB_WAIT_BYTES_MAX 24
#define LAB_TEXT_BYTES_MAX 512
#define LAB_PATH_BYTES_MAX 512
/* The figures of one invariant breach line kept per cell (`paylab verify` names each). */
#define LAB_BREACH_BYTES_MAX 256
/* Two letters and a space per payment: the first 340 or so of a cell. */
#define LAB_OUTCOMES_BYTES_MAX 1024

/* ---- scenarios ------------------------------------------------------------------------- */

enum lab_mode { LAB_MODE_SYNC = 0, LAB_MODE_ASYNC, LAB_MODE_SYNC_BLOCKING, LAB_MODES_COUNT };

/* Bit set of modes. */
#define LAB_MODE_BIT(m) (1u << (m))

/* What a process-level event the scenario performs mid-run. */
enum lab_action {
    LAB_ACTION_NONE = 0,
    LAB_ACTION_STOP_BANK,        /* SIGTERM the bank, restart it after action_ms */
    LAB_ACTION_KILL_WALLET,      /* SIGKILL the wallet, restart it at once */
    LAB_ACTION_KILL_GATEWAY,     /* SIGKILL gateway 0, restart it after action_ms */
    LAB_ACTION_FORGE,            /* post forged webhooks to both gateways while the load runs */
    LAB_ACTION_SLOW_SUBSCRIBERS, /* WebSocket clients that never read, plus a P2P burst */
};

/* One case of a scenario: a scenario has one case, or a few that it contrasts
 * (lost-response: webhooks on, webhooks dropped). */
struct lab_case {
    const char *label;       /* "" for a scenario's only case, else "webhooks dropped" */
    const char *faults;      /* the bank's faults as `paylab faults set` takes them, "" none */
    const char *wallet_args; /* extra wallet-service flags, space-separated, "" none */
    const char *bank_args;   /* extra bank-service flags, "" none */
    enum lab_action action;
    int64_t action_ms;        /* how long the stopped process stays down */
    double action_at;         /* when, as the fraction of operations sent (0.5: half way) */
    unsigned modes;           /* the modes this case applies to (others print n/a) */
    unsigned modes_forced;    /* modes run whatever --modes says (blocking-client), or 0 */
    const char *waits_forced; /* "poll:100,ws" for poll-vs-ws, or NULL: --wait decides */
    int ops_max;              /* cap on --n for slow cases (0: none) */
    /* A break-it case runs a teaching switch: a breach of this invariant is what it must
     * show (0: none expected, every invariant must hold). */
    int breach_expected;
};

#define LAB_CASES_MAX 2

struct lab_scenario {
    const char *name;  /* fixed: coursework cites it */
    const char *claim; /* the lecture claim it shows, one sentence */
    const char *sets;  /* what it does, in words: the faults, kills, switches */
    int expected_s;    /* expected run time at the defaults, both modes, seconds */
    struct lab_case cases[LAB_CASES_MAX];
    size_t cases_count;
};

/* The scenario table, in the order `--list` and a full run show them. */
const struct lab_scenario *lab_scenarios(size_t *count_out);
/* NULL when no scenario has that name. */
const struct lab_scenario *lab_scenario_find(const char *name);
const char *lab_mode_name(enum lab_mode m); /* "sync", "async", "sync-blocking" */

/* ---- one run's settings ---------------------------------------------------------------- */

/* The wallet's timings in the lab: short, so a run takes seconds, with the same shape as
 * the defaults (the bank timeout below the sync deadline, the async deadline long enough to
 * ride out the bank-down outage). The report prints them and the horizons they give. */
struct lab_timing {
    int64_t bank_timeout_ms;
    int64_t payment_ttl_sync_ms;
    int64_t payment_ttl_async_ms;
    int64_t pending_grace_ms;
    int64_t reconcile_ms;
};

struct lab_config {
    const struct lab_scenario *scenarios[64]; /* in run order */
    size_t scenarios_count;
    unsigned modes;                    /* --modes */
    char waits[4][LAB_WAIT_BYTES_MAX]; /* --wait list: "ws", "poll:200" */
    size_t waits_count;
    int n;           /* --n: top-ups and withdrawals per cell */
    int concurrency; /* --concurrency */
    int64_t seed;    /* --seed */
    char out_dir[LAB_PATH_BYTES_MAX];
    char bin_dir[LAB_PATH_BYTES_MAX];   /* where the service binaries are */
    char argv_text[LAB_TEXT_BYTES_MAX]; /* the command line, for the manifest */
    struct lab_timing timing;
    bool tty;  /* progress line with \r and colours; plain lines otherwise */
    bool keep; /* --keep: leave every cell's directory (data, logs) behind */
};

/* ---- what one cell measured ------------------------------------------------------------ */

struct lab_cell {
    char scenario[LAB_NAME_BYTES_MAX];
    char case_label[LAB_NAME_BYTES_MAX]; /* "" for a single-case scenario */
    enum lab_mode mode;
    char wait[LAB_WAIT_BYTES_MAX]; /* "ws" or "poll:MS" */
    bool applies; /* false: this combination does not apply (n/a), nothing else is set */
    bool ran;     /* false: the cell could not run (setup failed: see error) */
    char error[LAB_TEXT_BYTES_MAX];
    char faults[LAB_TEXT_BYTES_MAX]; /* what was set, in words, for the table */
    int breach_expected;             /* copied from the case */

    int64_t duration_ms; /* first request → last transaction final (or the horizon) */
    int64_t horizon_ms;  /* the reconciliation horizon of this cell's mode */

    /* Top-ups and withdrawals, by the client's first answer. */
    int64_t ops;                       /* requests sent (each with its own Idempotency-Key) */
    int64_t ok;                        /* 200 succeeded, or 202 pending accepted */
    int64_t declined;                  /* 402, or another definite refusal (4xx, failed) */
    int64_t errors;                    /* no answer, 5xx other than unknown, a refused connection */
    int64_t unknown;                   /* 502/504 with status unknown */
    int64_t pending;                   /* 202 pending (async): accepted, outcome to come */
    int64_t client_retries;            /* resends with the same key after no answer (crashes) */
    struct lab_hist client_latency_us; /* request sent → first answer */

    /* What the user ended up knowing. */
    struct lab_hist time_to_final_us; /* request sent → final state seen (answer, watcher, poll) */
    int64_t final_succeeded, final_failed;
    int64_t not_knowing_count;      /* answered with a non-final state */
    struct lab_hist not_knowing_us; /* for those: first answer → final state seen */
    int64_t settled_response, settled_webhook, settled_reconciler; /* from wallet.db */
    int64_t stuck;          /* not final when the horizon passed */
    int64_t double_credits; /* top-ups credited twice / withdrawals paid out twice */
    int64_t conflicts;      /* rows in the wallet's conflicts table */
    bool invariants_held;
    char breaches[LAB_BREACH_BYTES_MAX]; /* "4 wallet and bank agree (3 breaches); 5 …" */
    int breached[8];                     /* breached[i] != 0: invariant i failed */
    /* Every top-up and withdrawal of the cell (funding included) in the order the wallet
     * created them, two letters each: s/f/o (succeeded, failed, open) and r/w/c/- (who
     * settled it). With --seed the ids, so the bank's fault decisions, repeat: so does this. */
    char outcomes[LAB_OUTCOMES_BYTES_MAX];

    /* The services' counters (summed over restarts). */
    int64_t bank_calls;          /* wallet → bank requests (payments, queries, voids) */
    int64_t bank_payments_seen;  /* POST /v1/payments the bank received */
    int64_t webhook_deliveries;  /* webhook requests the bank sent */
    int64_t webhooks_applied;    /* the wallet's intake results */
    int64_t duplicates_absorbed; /* result "duplicate" (or "ignored" for a late non-final) */
    int64_t forged_sent, forged_refused, forged_applied;
    int64_t reconciler_actions;

    /* How the users learned: polling vs push. */
    int64_t polls_sent, poll_bytes;
    int64_t ws_messages, ws_bytes; /* event messages the watchers received for these users */
    struct lab_hist push_delay_us; /* wallet commit (event ts_us) → watcher received */
    int64_t watcher_dupes, watcher_gaps, watcher_reorders; /* per-user seq checks */
    int64_t watcher_failovers;

    /* Unrelated users' P2P transfers during the cell. */
    int64_t p2p_ok, p2p_errors;
    struct lab_hist p2p_latency_us;

    /* Process events. */
    int64_t kills, restarts;
    int64_t slow_subscribers, slow_subscribers_dropped;
};

struct lab_manifest {
    char version[32];
    char commit[48];
    int64_t seed;
    char arguments[LAB_TEXT_BYTES_MAX];
    char machine[LAB_TEXT_BYTES_MAX]; /* "Linux 6.1 x86_64, 2 cores, Intel …" */
    char started_at[40];              /* ISO 8601 UTC */
    int64_t elapsed_ms;
};

struct lab_results {
    struct lab_manifest manifest;
    struct lab_timing timing;
    int n, concurrency;
    struct lab_cell cells[LAB_CELLS_MAX];
    size_t cells_count;
};

/* ---- writers (report.c, results.c, charts.c) -------------------------------------------- */

/* Writes dir/report.md: the table, then one paragraph per scenario generated from the
 * measured numbers. 0 or PL_EIO. */
int lab_write_report(const struct lab_results *r, const char *dir);
/* Writes dir/results.csv (one row per cell) and dir/results.json (manifest + cells). */
int lab_write_csv(const struct lab_results *r, const char *dir);
int lab_write_json(const struct lab_results *r, const char *dir);
/* Draws dir/client-latency.svg, time-to-final.svg, settled-by.svg and PNG copies with
 * gnuplot. 0; PL_ENOTFOUND when gnuplot is missing (a message says how to install it);
 * PL_EIO when it failed. */
int lab_write_charts(const struct lab_results *r, const char *dir);
/* Prints the summary table on stdout, readable on a projector (tty: with colour). */
void lab_print_table(const struct lab_results *r, bool tty);

/* `paylab lab …` (argv[0] is "lab"); returns a CLI exit code. */
int lab_main(int argc, char **argv);

#endif
