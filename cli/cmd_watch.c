/* cmd_watch.c owns `paylab watch USER|'*'`: the live events of a user (or of everyone, with
 * the admin token) over the gateway's WebSocket, one tidy line each, on the CLI's own
 * event_base (wsub.c keeps the stream whole across reconnects and fail-overs).
 * Must not: busy-wait (the loop sleeps until a message, a timer or a signal), or print an
 * event twice.
 * Invariant: the process ends through wsub's on_ended, whatever stopped it (Ctrl-C,
 * --count, --timeout-ms, a refused token), so the connection is always closed cleanly. */
#include <cjson/cJSON.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "ids.h"
#include "out.h"
#include "pl.h"
#include "wsub.h"

#define WATCH_COUNT_MAX 1000000000L
#define WATCH_TIMEOUT_MS_MAX 86400000L /* a day: longer watches need no timeout at all */
#define WATCH_USER_WIDTH_MIN 6

static const struct cli_opt watch_opts[] = {
    {"all", NULL, "every user's events (same as USER '*'; needs the admin token)"},
    {"token", "T", "subscribe with this ws_token (default: a fresh one from the wallet)"},
    {"count", "N", "exit 0 after N events (exit 4 if --timeout-ms comes first)"},
    {"timeout-ms", "MS", "stop after MS ms (exit 0, or 4 when --count was not reached)"},
};
enum { OPT_ALL, OPT_TOKEN, OPT_COUNT, OPT_TIMEOUT };

static const struct cli_spec watch_spec = {
    .usage = "watch USER|'*' [--count N] [--timeout-ms MS] [--token T]",
    .summary =
        "Prints USER's events live over the gateway's WebSocket (--gateway, a list for\n"
        "fail-over): the wallet's commit time, seq, user, event type, transaction id, kind,\n"
        "mode, status, amount, how long the push took after the commit, and the new balance\n"
        "on balance.updated lines. Reconnects by itself and resumes after the last\n"
        "seq, so nothing is missed or shown twice. '*' (or --all) shows every user (admin\n"
        "token from --data-dir). --json prints each event as received. Ctrl-C stops (exit 0).",
    .pos_min = 0,
    .pos_max = 1,
    .opts = watch_opts,
    .opts_count = PL_ARRAY_LEN(watch_opts),
};

struct watch {
    const struct cli *cli;
    struct event_base *base;
    struct wsub *sub;
    const char *user;
    long count_max; /* 0: no limit */
    long count;
    int rc;
    bool dim;
    size_t user_width; /* grows with the handles seen ("*") */
};

static const char *dim_on(const struct watch *w)
{
    return w->dim ? "\033[2m" : "";
}

static const char *dim_off(const struct watch *w)
{
    return w->dim ? "\033[0m" : "";
}

/* ---------------------------------------------------------------- printing */

/* Widths of the fixed columns: "transaction.updated", "wtx_" + 24 hex digits,
 * "sync-blocking", "succeeded", "replayed, 1234 ms after the commit" fits the last. */
#define WATCH_TYPE_WIDTH 19
#define WATCH_ID_WIDTH 28
#define WATCH_PUSH_WIDTH 18

static void print_event(struct watch *w, const cJSON *ev, bool replayed)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(ev, "transaction");
    char when[OUT_TIME_BYTES_MAX], seq[32], amount[MONEY_FORMAT_BYTES_MAX];
    char push[OUT_MS_BYTES_MAX + 32], ms[OUT_MS_BYTES_MAX], money[MONEY_FORMAT_BYTES_MAX];
    int64_t ts_us = 0, n = 0, amount_minor = 0, balance_minor = 0;
    out_int(ev, "ts_us", &ts_us);
    out_int(ev, "seq", &n);
    out_int(t, "amount_minor", &amount_minor);
    snprintf(seq, sizeof seq, "#%lld", (long long)n);
    const char *user = out_str(ev, "user", "?");
    const char *type = out_str(ev, "type", "?");
    size_t width = out_width(user);
    w->user_width = width > w->user_width ? width : w->user_width;
    out_ms_us(pl_now_us() - ts_us, ms);
    snprintf(push, sizeof push, "%s %s%s", replayed ? "replayed," : "pushed in", ms,
             replayed ? " after the commit" : "");
    out_cell(stdout, out_time(ts_us / 1000, false, when), 12, false, 2);
    out_cell(stdout, seq, 6, true, 2);
    out_cell(stdout, user, w->user_width, false, 2);
    out_cell(stdout, type, WATCH_TYPE_WIDTH, false, 2);
    out_cell(stdout, out_str(t, "id", "?"), WATCH_ID_WIDTH, false, 2);
    out_cell(stdout, out_kind_label(out_str(t, "kind", "?")), 10, false, 2);
    out_cell(stdout, out_str(t, "mode", "?"), 13, false, 2);
    out_cell(stdout, out_str(t, "status", "?"), 9, false, 2);
    out_cell(stdout, out_money(amount_minor, amount), 14, true, 2);
    printf("%s", replayed ? dim_on(w) : "");
    bool balance =
        strcmp(type, "balance.updated") == 0 && out_int(ev, "balance_minor", &balance_minor);
    out_cell(stdout, push, balance ? WATCH_PUSH_WIDTH : 0, false, balance ? 2 : 0);
    printf("%s", replayed ? dim_off(w) : "");
    if (balance) {
        printf("balance %s", out_money(balance_minor, money));
    }
    printf("\n");
}

/* ---------------------------------------------------------------- callbacks */

static void on_subscribed(const cJSON *reply, bool first, void *arg)
{
    struct watch *w = arg;
    if (!first) {
        return; /* wsub printed "reconnected via …" */
    }
    FILE *f = w->cli->json ? stderr : stdout;
    char money[MONEY_FORMAT_BYTES_MAX];
    int64_t seq = 0, balance = 0;
    if (strcmp(w->user, "*") == 0) {
        fprintf(f, "%swatching every user via %s (Ctrl-C to stop)%s\n", dim_on(w), wsub_url(w->sub),
                dim_off(w));
    } else {
        out_int(reply, "seq", &seq);
        out_int(reply, "balance_minor", &balance);
        fprintf(f, "%swatching %s via %s — balance %s at seq %lld (Ctrl-C to stop)%s\n", dim_on(w),
                w->user, wsub_url(w->sub), out_money(balance, money), (long long)seq, dim_off(w));
    }
    fflush(f);
}

static void on_event(const cJSON *ev, const char *raw, size_t raw_bytes, bool replayed, void *arg)
{
    struct watch *w = arg;
    if (w->cli->json) {
        printf("%.*s\n", (int)raw_bytes, raw);
    } else {
        print_event(w, ev, replayed);
    }
    fflush(stdout);
    w->count++;
    if (w->count_max > 0 && w->count >= w->count_max) {
        wsub_stop(w->sub, CLI_EXIT_OK, NULL);
    }
}

static void on_ended(int exit_code, const char *why, void *arg)
{
    struct watch *w = arg;
    w->rc = exit_code;
    if (exit_code == CLI_EXIT_UNREACHABLE) {
        fprintf(stderr,
                "✗ cannot reach the gateway at %s — is webhook-gateway running? (or pass "
                "--gateway ws://IP:PORT)\n",
                why);
    } else if (why[0] != '\0') {
        fprintf(stderr, "%s%s\n", exit_code == CLI_EXIT_OK ? "" : "✗ ", why);
    }
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct watch *w = arg;
    (void)sig;
    (void)what;
    wsub_stop(w->sub, CLI_EXIT_OK, NULL);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct watch *w = arg;
    (void)fd;
    (void)what;
    char why[128] = "";
    if (w->count_max > 0) {
        snprintf(why, sizeof why, "%ld of %ld %s before the timeout", w->count, w->count_max,
                 out_plural(w->count_max, "event", "events"));
    }
    wsub_stop(w->sub, w->count_max > 0 ? CLI_EXIT_NOT_FINAL : CLI_EXIT_OK, why);
}

/* ---------------------------------------------------------------- the command */

static int parse_long_opt(const char *s, long max, long *out)
{
    char *end = NULL;
    long v = s != NULL ? strtol(s, &end, 10) : 0;
    if (s != NULL && (end == s || *end != '\0' || v < 1 || v > max)) {
        return PL_EINVAL;
    }
    *out = v;
    return 0;
}

static int parse(struct cli *cli, int argc, char **argv, struct watch *w, struct cli_args *a,
                 long *timeout_ms)
{
    int rc = cli_parse(cli, &watch_spec, argc, argv, a);
    if (rc != CLI_CONTINUE) {
        return rc;
    }
    w->user = a->opt[OPT_ALL] != NULL ? "*" : a->pos[0];
    if (w->user == NULL || (a->opt[OPT_ALL] != NULL && a->pos_count > 0)) {
        return cli_usage_error(&watch_spec, "give one USER, or '*' (--all) for everyone");
    }
    if (strcmp(w->user, "*") != 0 && !ids_user_valid(w->user)) {
        return cli_usage_error(&watch_spec, "'%s' is not a user handle ([a-z0-9_], 1 to 32)",
                               w->user);
    }
    if (parse_long_opt(a->opt[OPT_COUNT], WATCH_COUNT_MAX, &w->count_max) != 0) {
        return cli_usage_error(&watch_spec, "--count takes 1..%ld", WATCH_COUNT_MAX);
    }
    if (parse_long_opt(a->opt[OPT_TIMEOUT], WATCH_TIMEOUT_MS_MAX, timeout_ms) != 0) {
        return cli_usage_error(&watch_spec, "--timeout-ms takes 1..%ld", WATCH_TIMEOUT_MS_MAX);
    }
    return CLI_CONTINUE;
}

static const struct wsub_callbacks watch_cb = {
    .on_subscribed = on_subscribed, .on_event = on_event, .on_ended = on_ended};

/* Runs the loop until wsub ends; SIGINT/SIGTERM and the deadline stop it cleanly. */
static int run(struct watch *w, const char *token, long timeout_ms)
{
    struct wsub_config cfg = {.cli = w->cli,
                              .user = w->user,
                              .token = token,
                              .notices = w->cli->json ? stderr : stdout,
                              .dim = w->dim};
    int rc = CLI_EXIT_USAGE;
    struct event *sigint = evsignal_new(w->base, SIGINT, on_signal, w);
    struct event *sigterm = evsignal_new(w->base, SIGTERM, on_signal, w);
    struct event *deadline = evtimer_new(w->base, on_deadline, w);
    w->sub = wsub_new(w->base, &cfg, &watch_cb, w);
    if (sigint == NULL || sigterm == NULL || deadline == NULL || w->sub == NULL) {
        fprintf(stderr, "paylab: out of memory\n");
        goto done;
    }
    rc = wsub_start(w->sub);
    if (rc != CLI_CONTINUE) {
        goto done;
    }
    evsignal_add(sigint, NULL);
    evsignal_add(sigterm, NULL);
    if (timeout_ms > 0) {
        struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
        evtimer_add(deadline, &tv);
    }
    event_base_dispatch(w->base);
    rc = w->rc;
done:
    wsub_free(w->sub);
    if (sigint != NULL) {
        event_free(sigint);
    }
    if (sigterm != NULL) {
        event_free(sigterm);
    }
    if (deadline != NULL) {
        event_free(deadline);
    }
    return rc;
}

int cmd_watch(struct cli *cli, int argc, char **argv)
{
    struct watch w = {.cli = cli, .user_width = WATCH_USER_WIDTH_MIN};
    struct cli_args a;
    long timeout_ms = 0;
    int rc = parse(cli, argc, argv, &w, &a, &timeout_ms);
    if (rc != CLI_CONTINUE) {
        return rc;
    }
    const char *no_color = getenv("NO_COLOR");
    w.dim = !cli->json && isatty(STDOUT_FILENO) && (no_color == NULL || no_color[0] == '\0');
    signal(SIGPIPE, SIG_IGN); /* a gateway gone mid-write is an error return, not a death */
    w.base = event_base_new();
    if (w.base == NULL) {
        fprintf(stderr, "paylab: cannot create the event loop\n");
        return CLI_EXIT_USAGE;
    }
    rc = run(&w, a.opt[OPT_TOKEN], timeout_ms);
    event_base_free(w.base);
    return rc;
}
