/* main.c (lab) owns `paylab lab`: its arguments, the list of scenarios, the run over every
 * scenario × case × mode × wait style, the progress line, Ctrl-C, and handing the results to
 * the writers.
 * Must not: measure anything itself (cell.c does), or leave a cluster running: a signal only
 * sets a flag, and the cell in progress stops its cluster before the run ends. */
#include "cell.h"
#include "lab.h"

#include "pl.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#ifndef PAYLAB_COMMIT
#define PAYLAB_COMMIT "unknown"
#endif

/* Exit codes, as the rest of paylab uses them. */
#define LAB_EXIT_OK 0
#define LAB_EXIT_FAILED 1 /* a cell could not run */
#define LAB_EXIT_USAGE 2
#define LAB_EXIT_BREACH 5 /* an invariant broke where no teaching switch was on */
#define LAB_EXIT_INTERRUPTED 130

#define LAB_N_DEFAULT 40
#define LAB_N_MAX LAB_OPS_MAX_PUBLIC
#define LAB_OPS_MAX_PUBLIC 4096
#define LAB_CONCURRENCY_DEFAULT 8
#define LAB_CONCURRENCY_MAX 64

static volatile sig_atomic_t interrupted; /* written by the signal handler only */

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static const struct option long_opts[] = {
    {"modes", required_argument, NULL, 'm'}, {"wait", required_argument, NULL, 'w'},
    {"n", required_argument, NULL, 'n'},     {"concurrency", required_argument, NULL, 'c'},
    {"seed", required_argument, NULL, 's'},  {"out", required_argument, NULL, 'o'},
    {"list", no_argument, NULL, 'l'},        {"keep", no_argument, NULL, 'k'},
    {"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0},
};

static void print_help(void)
{
    printf(
        "usage: paylab lab [SCENARIO…] [--modes sync,async,sync-blocking] [--wait ws,poll:200]\n"
        "                  [--n N] [--concurrency C] [--seed S] [--out DIR] [--keep] [--list]\n\n"
        "Runs the failure-mode lab: for each scenario (all of them when none is named), each\n"
        "of its cases and each mode and wait style, it starts a cluster of its own (bank,\n"
        "wallet, two gateways) on free loopback ports in a fresh directory, drives N top-ups\n"
        "and withdrawals with C concurrent clients while WebSocket watchers listen on both\n"
        "gateways and two unrelated users keep making P2P transfers, applies the scenario's\n"
        "faults or kills, clears them, waits for the reconciliation horizon, runs paylab\n"
        "verify, and stops the cluster. It prints a table and writes report.md, results.csv,\n"
        "results.json and charts to DIR (default lab-results/<timestamp>/).\n\n"
        "  --modes LIST       coupling modes to compare (default sync,async); blocking-client\n"
        "                     always compares sync with sync-blocking\n"
        "  --wait LIST        how clients learn a final state: ws (WebSocket push) and/or\n"
        "                     poll:MS (GET every MS ms); default ws; poll-vs-ws runs both\n"
        "  --n N              top-ups and withdrawals per cell (default %d)\n"
        "  --concurrency C    concurrent clients, one user each (default %d)\n"
        "  --seed S           the bank's fault decisions and the wallet's ids derive from S:\n"
        "                     the same seed repeats the same decisions (default 1)\n"
        "  --out DIR          where the report goes\n"
        "  --keep             keep every cell's data directory (databases, logs)\n"
        "  --list             list the scenarios, the claim each shows and its run time\n\n"
        "Exit: 0 all held (break-it scenarios may breach: that is their point), 1 a cell could\n"
        "not run, 2 usage, 5 an invariant broke in a safe scenario, 130 interrupted.\n"
        "docs/coursework.md explains each scenario and has exercises.\n",
        LAB_N_DEFAULT, LAB_CONCURRENCY_DEFAULT);
}

static void print_list(void)
{
    size_t count = 0;
    const struct lab_scenario *s = lab_scenarios(&count);
    int total = 0;
    for (size_t i = 0; i < count; i++) {
        printf("%-26s ~%3d s  %s\n", s[i].name, s[i].expected_s, s[i].claim);
        printf("%-26s         sets: %s\n\n", "", s[i].sets);
        total += s[i].expected_s;
    }
    printf("All %zu scenarios: about %d min at the defaults (--n %d --concurrency %d).\n", count,
           (total + 59) / 60, LAB_N_DEFAULT, LAB_CONCURRENCY_DEFAULT);
}

static int parse_modes(const char *text, unsigned *out)
{
    char buf[128];
    *out = 0;
    if (pl_strlcpy(buf, text, sizeof buf) != 0)
        return PL_ERANGE;
    for (char *p = buf; p != NULL && *p != '\0';) {
        char *comma = strchr(p, ',');
        if (comma != NULL)
            *comma = '\0';
        bool found = false;
        for (int m = 0; m < LAB_MODES_COUNT; m++) {
            if (strcmp(p, lab_mode_name((enum lab_mode)m)) == 0) {
                *out |= LAB_MODE_BIT(m);
                found = true;
            }
        }
        if (!found) {
            fprintf(stderr, "paylab lab: unknown mode '%s' (sync, async, sync-blocking)\n", p);
            return PL_EINVAL;
        }
        p = comma != NULL ? comma + 1 : NULL;
    }
    return *out != 0 ? 0 : PL_EINVAL;
}

/* Splits a wait list ("ws,poll:200") into waits[]; returns the count, 0 on a bad entry. */
static size_t parse_waits(const char *text, char waits[][LAB_WAIT_BYTES_MAX], size_t cap)
{
    char buf[128];
    size_t n = 0;
    if (pl_strlcpy(buf, text, sizeof buf) != 0)
        return 0;
    for (char *p = buf; p != NULL && *p != '\0' && n < cap;) {
        char *comma = strchr(p, ',');
        if (comma != NULL)
            *comma = '\0';
        char *end = NULL;
        long ms = strncmp(p, "poll:", 5) == 0 ? strtol(p + 5, &end, 10) : 0;
        bool ok = strcmp(p, "ws") == 0 || (end != NULL && *end == '\0' && ms >= 10 && ms <= 60000);
        if (!ok) {
            fprintf(stderr,
                    "paylab lab: bad wait style '%s' (ws, or poll:MS with 10 ≤ MS ≤ "
                    "60000)\n",
                    p);
            return 0;
        }
        pl_strlcpy(waits[n++], p, LAB_WAIT_BYTES_MAX);
        p = comma != NULL ? comma + 1 : NULL;
    }
    return n;
}

static bool parse_int(const char *text, long min, long max, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static int parse_option(struct lab_config *cfg, int opt, const char *arg)
{
    long v = 0;
    switch (opt) {
    case 'm':
        return parse_modes(arg, &cfg->modes);
    case 'w':
        cfg->waits_count = parse_waits(arg, cfg->waits, PL_ARRAY_LEN(cfg->waits));
        return cfg->waits_count > 0 ? 0 : PL_EINVAL;
    case 'n':
        if (!parse_int(arg, 2, LAB_N_MAX, &v))
            break;
        cfg->n = (int)v;
        return 0;
    case 'c':
        if (!parse_int(arg, 1, LAB_CONCURRENCY_MAX, &v))
            break;
        cfg->concurrency = (int)v;
        return 0;
    case 's':
        if (!parse_int(arg, 1, 1000000000L, &v))
            break;
        cfg->seed = v;
        return 0;
    case 'o':
        return pl_strlcpy(cfg->out_dir, arg, sizeof cfg->out_dir);
    case 'k':
        cfg->keep = true;
        return 0;
    default:
        return PL_EINVAL;
    }
    fprintf(stderr, "paylab lab: bad value '%s' (--n 2..%d, --concurrency 1..%d, --seed ≥ 1)\n",
            arg, LAB_N_MAX, LAB_CONCURRENCY_MAX);
    return PL_EINVAL;
}

static void config_defaults(struct lab_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->modes = LAB_MODE_BIT(LAB_MODE_SYNC) | LAB_MODE_BIT(LAB_MODE_ASYNC);
    pl_strlcpy(cfg->waits[0], "ws", sizeof cfg->waits[0]);
    cfg->waits_count = 1;
    cfg->n = LAB_N_DEFAULT;
    cfg->concurrency = LAB_CONCURRENCY_DEFAULT;
    cfg->seed = 1;
    cfg->timing = (struct lab_timing){.bank_timeout_ms = 1000,
                                      .payment_ttl_sync_ms = 3000,
                                      .payment_ttl_async_ms = 8000,
                                      .pending_grace_ms = 1000,
                                      .reconcile_ms = 250};
    cfg->tty = isatty(STDOUT_FILENO) != 0;
}

/* Returns -1 to go on, or an exit code. */
static int parse_args(struct lab_config *cfg, int argc, char **argv)
{
    int opt;
    optind = 0; /* 0: a full re-initialisation (paylab parsed its global options already) */
    while ((opt = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
        if (opt == 'h') {
            print_help();
            return LAB_EXIT_OK;
        }
        if (opt == 'l') {
            print_list();
            return LAB_EXIT_OK;
        }
        if (opt == '?' || parse_option(cfg, opt, optarg) != 0) {
            fprintf(stderr, "paylab lab: see paylab lab --help\n");
            return LAB_EXIT_USAGE;
        }
    }
    size_t count = 0;
    const struct lab_scenario *all = lab_scenarios(&count);
    for (int i = optind; i < argc; i++) {
        const struct lab_scenario *s = lab_scenario_find(argv[i]);
        if (s == NULL) {
            fprintf(stderr, "paylab lab: unknown scenario '%s' (paylab lab --list)\n", argv[i]);
            return LAB_EXIT_USAGE;
        }
        if (cfg->scenarios_count < PL_ARRAY_LEN(cfg->scenarios))
            cfg->scenarios[cfg->scenarios_count++] = s;
    }
    for (size_t i = 0; cfg->scenarios_count == 0 && i < count && i < PL_ARRAY_LEN(cfg->scenarios);
         i++)
        cfg->scenarios[i] = &all[i];
    if (cfg->scenarios_count == 0)
        cfg->scenarios_count = count < PL_ARRAY_LEN(cfg->scenarios) ? count : 0;
    size_t used = 0;
    for (int i = 0; i < argc && used < sizeof cfg->argv_text; i++) {
        int w = snprintf(cfg->argv_text + used, sizeof cfg->argv_text - used, "%s%s",
                         i > 0 ? " " : "paylab ", argv[i]);
        used += w > 0 ? (size_t)w : 0;
    }
    return -1;
}

/* ---------------------------------------------------------------- the run */

struct run_state {
    const struct lab_config *cfg;
    struct lab_results *res;
    size_t cell_index, cells_total;
    int64_t started_ms;
    const struct lab_cell *current;
};

static void progress(void *arg, int done, int total, int64_t elapsed_ms)
{
    struct run_state *s = arg;
    if (!s->cfg->tty)
        return;
    const struct lab_cell *c = s->current;
    printf("\r\033[K  [%zu/%zu] %s%s%s · %s · %s   %d/%d ops   %.1f s", s->cell_index + 1,
           s->cells_total, c->scenario, c->case_label[0] ? " · " : "", c->case_label,
           lab_mode_name(c->mode), c->wait, done, total, (double)elapsed_ms / 1000.0);
    fflush(stdout);
}

static bool mode_runs(const struct lab_config *cfg, const struct lab_case *k, enum lab_mode m)
{
    unsigned bit = LAB_MODE_BIT(m);
    if ((k->modes & bit) == 0)
        return false;
    return (cfg->modes & bit) != 0 || (k->modes_forced & bit) != 0;
}

/* The wait styles of case k: its own when it forces them, else --wait. */
static size_t case_waits(const struct lab_config *cfg, const struct lab_case *k,
                         char waits[][LAB_WAIT_BYTES_MAX], size_t cap)
{
    if (k->waits_forced != NULL)
        return parse_waits(k->waits_forced, waits, cap);
    for (size_t i = 0; i < cfg->waits_count && i < cap; i++)
        pl_strlcpy(waits[i], cfg->waits[i], LAB_WAIT_BYTES_MAX);
    return cfg->waits_count < cap ? cfg->waits_count : cap;
}

/* Adds a cell for every combination, n/a ones included (a requested mode the case lacks). */
static void plan(const struct lab_config *cfg, struct lab_results *res)
{
    for (size_t i = 0; i < cfg->scenarios_count; i++) {
        const struct lab_scenario *s = cfg->scenarios[i];
        for (size_t k = 0; k < s->cases_count; k++) {
            const struct lab_case *kc = &s->cases[k];
            char waits[4][LAB_WAIT_BYTES_MAX];
            size_t wn = case_waits(cfg, kc, waits, 4);
            for (int m = 0; m < LAB_MODES_COUNT; m++) {
                bool runs = mode_runs(cfg, kc, (enum lab_mode)m);
                if (!runs && (cfg->modes & LAB_MODE_BIT(m)) == 0)
                    continue;
                for (size_t w = 0; w < (runs ? wn : 1) && res->cells_count < LAB_CELLS_MAX; w++) {
                    struct lab_cell *c = &res->cells[res->cells_count++];
                    memset(c, 0, sizeof *c);
                    pl_strlcpy(c->scenario, s->name, sizeof c->scenario);
                    pl_strlcpy(c->case_label, kc->label, sizeof c->case_label);
                    pl_strlcpy(c->faults, s->sets, sizeof c->faults);
                    c->mode = (enum lab_mode)m;
                    pl_strlcpy(c->wait, runs ? waits[w] : "-", sizeof c->wait);
                    c->applies = runs;
                    c->breach_expected = kc->breach_expected;
                    hist_init(&c->client_latency_us);
                    hist_init(&c->time_to_final_us);
                    hist_init(&c->not_knowing_us);
                    hist_init(&c->push_delay_us);
                    hist_init(&c->p2p_latency_us);
                }
            }
        }
    }
}

static const struct lab_case *case_of(const struct lab_cell *c)
{
    const struct lab_scenario *s = lab_scenario_find(c->scenario);
    for (size_t k = 0; s != NULL && k < s->cases_count; k++) {
        if (strcmp(s->cases[k].label, c->case_label) == 0)
            return &s->cases[k];
    }
    return NULL;
}

static void report_cell(const struct run_state *s, const struct lab_cell *c)
{
    if (s->cfg->tty)
        printf("\r\033[K");
    const char *verdict = !c->ran                   ? "did not run"
                          : c->invariants_held      ? "invariants held"
                          : c->breach_expected != 0 ? "breach caught by verify"
                                                    : "INVARIANT BROKEN";
    printf("  [%zu/%zu] %s%s%s · %s · %s: ok %lld, declined %lld, errors %lld, unknown %lld, "
           "stuck %lld — %s%s%s\n",
           s->cell_index + 1, s->cells_total, c->scenario, c->case_label[0] ? " · " : "",
           c->case_label, lab_mode_name(c->mode), c->wait, (long long)c->ok, (long long)c->declined,
           (long long)c->errors, (long long)c->unknown, (long long)c->stuck, verdict,
           c->breaches[0] ? ": " : "", c->breaches);
    fflush(stdout);
}

static int run_all(const struct lab_config *cfg, struct lab_results *res)
{
    struct run_state s = {.cfg = cfg, .res = res, .cells_total = res->cells_count};
    struct lab_progress prog = {.fn = progress, .arg = &s, .interrupted = &interrupted};
    int exit_code = LAB_EXIT_OK;
    for (size_t i = 0; i < res->cells_count && !interrupted; i++) {
        struct lab_cell *c = &res->cells[i];
        s.cell_index = i;
        s.current = c;
        if (!c->applies)
            continue;
        if (!cfg->tty)
            printf("  [%zu/%zu] %s%s%s · %s · %s …\n", i + 1, res->cells_count, c->scenario,
                   c->case_label[0] ? " · " : "", c->case_label, lab_mode_name(c->mode), c->wait);
        const struct lab_case *k = case_of(c);
        if (k == NULL)
            continue;
        if (lab_cell_run(cfg, k, c->mode, c->wait, c, &prog) != 0 && !interrupted) {
            fprintf(stderr, "lab: %s · %s could not run: %s\n", c->scenario, lab_mode_name(c->mode),
                    c->error);
            exit_code = LAB_EXIT_FAILED;
        }
        if (interrupted)
            break;
        report_cell(&s, c);
        if (c->ran && !c->invariants_held && c->breach_expected == 0)
            exit_code = LAB_EXIT_BREACH;
    }
    return interrupted ? LAB_EXIT_INTERRUPTED : exit_code;
}

/* ---------------------------------------------------------------- manifest and output */

static void fill_manifest(const struct lab_config *cfg, struct lab_results *res)
{
    struct lab_manifest *m = &res->manifest;
    struct utsname u;
    char model[160] = "";
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[256];
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && colon != NULL) {
            pl_strlcpy(model, colon + 2, sizeof model);
            model[strcspn(model, "\n")] = '\0';
            break;
        }
    }
    if (f != NULL)
        fclose(f);
    pl_strlcpy(m->version, PAYLAB_VERSION, sizeof m->version);
    pl_strlcpy(m->commit, PAYLAB_COMMIT, sizeof m->commit);
    m->seed = cfg->seed;
    pl_strlcpy(m->arguments, cfg->argv_text, sizeof m->arguments);
    if (uname(&u) == 0)
        snprintf(m->machine, sizeof m->machine, "%s %s %s, %ld cores%s%s", u.sysname, u.release,
                 u.machine, sysconf(_SC_NPROCESSORS_ONLN), model[0] ? ", " : "", model);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(m->started_at, sizeof m->started_at, "%Y-%m-%dT%H:%M:%SZ", &tm);
    res->timing = cfg->timing;
    res->n = cfg->n;
    res->concurrency = cfg->concurrency;
}

/* mkdir -p for the output directory. */
static int make_out_dir(struct lab_config *cfg)
{
    if (cfg->out_dir[0] == '\0') {
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        char stamp[32];
        strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
        snprintf(cfg->out_dir, sizeof cfg->out_dir, "lab-results/%s", stamp);
    }
    char path[LAB_PATH_BYTES_MAX];
    pl_strlcpy(path, cfg->out_dir, sizeof path);
    for (char *p = path + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
            return PL_EIO;
        *p = '/';
    }
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "paylab lab: cannot create %s: %s\n", path, strerror(errno));
        return PL_EIO;
    }
    return 0;
}

static void write_outputs(const struct lab_config *cfg, const struct lab_results *res)
{
    printf("\n");
    lab_print_table(res, cfg->tty);
    int rc = lab_write_report(res, cfg->out_dir);
    if (rc == 0)
        rc = lab_write_csv(res, cfg->out_dir);
    if (rc == 0)
        rc = lab_write_json(res, cfg->out_dir);
    if (rc != 0)
        fprintf(stderr, "paylab lab: could not write the results to %s\n", cfg->out_dir);
    int charts = lab_write_charts(res, cfg->out_dir);
    printf("\nReport: %s/report.md  (results.csv, results.json%s)\n", cfg->out_dir,
           charts == 0 ? ", client-latency.svg, time-to-final.svg, settled-by.svg + .png" : "");
}

int lab_main(int argc, char **argv)
{
    struct lab_config *cfg = calloc(1, sizeof *cfg);
    struct lab_results *res = calloc(1, sizeof *res); /* LAB_CELLS_MAX cells: megabytes */
    int rc = LAB_EXIT_FAILED;
    if (cfg == NULL || res == NULL)
        goto done;
    config_defaults(cfg);
    rc = parse_args(cfg, argc, argv);
    if (rc >= 0)
        goto done;
    rc = LAB_EXIT_FAILED;
    if (make_out_dir(cfg) != 0)
        goto done;
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    fill_manifest(cfg, res);
    plan(cfg, res);
    printf("paylab lab: %zu cells, --n %d --concurrency %d --seed %lld; horizons %lld ms "
           "(sync) and %lld ms (async); results in %s\n",
           res->cells_count, cfg->n, cfg->concurrency, (long long)cfg->seed,
           (long long)lab_horizon_ms(&cfg->timing, LAB_MODE_SYNC),
           (long long)lab_horizon_ms(&cfg->timing, LAB_MODE_ASYNC), cfg->out_dir);
    int64_t start = pl_mono_ms();
    rc = run_all(cfg, res);
    res->manifest.elapsed_ms = pl_mono_ms() - start;
    if (rc == LAB_EXIT_INTERRUPTED)
        printf("\npaylab lab: interrupted; every cluster is stopped. Partial results follow.\n");
    write_outputs(cfg, res);
done:
    free(cfg);
    free(res);
    return rc;
}
