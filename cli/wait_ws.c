/* wait_ws.c owns `--wait ws`: the subscription made before a money request and the wait
 * for that transaction's final event. The order is the point: subscribed first (the reply
 * gives the head seq), request second, so the final event — whose seq is above that head —
 * can only arrive on a connection that is already listening; a reconnect in between resumes
 * after the last seq seen (wsub.c), so it is not lost either.
 * Must not: send the money request (cmd_money.c does, between wait_ws_open and
 * wait_ws_until_final), or poll the wallet.
 * Invariant: the loop runs only inside wait_ws_open, wait_ws_until_final and wait_ws_close,
 * each bounded (handshake 5 s per address, the caller's deadline, the 2 s close bound). */
#include "wait_ws.h"

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json.h"
#include "out.h"
#include "pl.h"
#include "wsub.h"

struct wait_ws {
    const struct cli *cli;
    const char *user;
    struct event_base *base;
    struct wsub *sub;
    struct event *deadline;
    bool subscribed, ended;
    int end_code;
    char why[WSUB_WHY_BYTES_MAX];
    int64_t head_seq;
    char url[WSUB_URL_BYTES_MAX];
    const char *txn_id; /* NULL until the request has made it */
    struct wait_ws_final *res;
};

static void on_subscribed(const cJSON *reply, bool first, void *arg)
{
    struct wait_ws *w = arg;
    if (first) {
        out_int(reply, "seq", &w->head_seq);
        pl_strlcpy(w->url, wsub_url(w->sub), sizeof w->url);
        w->subscribed = true;
        event_base_loopbreak(w->base); /* back to the caller: now send the request */
    }
    if (w->cli->verbose) {
        char *s = json_print(reply);
        fprintf(stderr, "< ws %s %s\n", wsub_url(w->sub), s != NULL ? s : "");
        free(s);
    }
}

static void on_event(const cJSON *ev, const char *raw, size_t raw_bytes, bool replayed, void *arg)
{
    struct wait_ws *w = arg;
    (void)replayed;
    if (w->cli->verbose) {
        fprintf(stderr, "< ws %.*s\n", (int)raw_bytes, raw);
    }
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(ev, "transaction");
    const char *status = out_str(t, "status", "");
    bool final = strcmp(status, "succeeded") == 0 || strcmp(status, "failed") == 0;
    if (w->txn_id == NULL || w->res == NULL || w->res->final || !final ||
        strcmp(out_str(ev, "type", ""), "transaction.updated") != 0 ||
        strcmp(out_str(t, "id", ""), w->txn_id) != 0) {
        return;
    }
    struct wait_ws_final *r = w->res;
    int64_t ts_us = 0;
    r->final = true;
    r->received_mono_ms = pl_mono_ms();
    out_int(ev, "ts_us", &ts_us);
    r->push_us = pl_now_us() - ts_us;
    pl_strlcpy(r->status, status, sizeof r->status);
    r->has_balance = out_int(ev, "balance_minor", &r->balance_minor);
    out_int(ev, "seq", &r->seq);
    event_base_loopbreak(w->base);
}

static void on_ended(int exit_code, const char *why, void *arg)
{
    struct wait_ws *w = arg;
    w->ended = true;
    w->end_code = exit_code;
    pl_strlcpy(w->why, why, sizeof w->why);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct wait_ws *w = arg;
    (void)fd;
    (void)what;
    event_base_loopbreak(w->base);
}

static const struct wsub_callbacks wait_cb = {
    .on_subscribed = on_subscribed, .on_event = on_event, .on_ended = on_ended};

static void arm_deadline(struct wait_ws *w, int64_t deadline_mono_ms)
{
    int64_t left_ms = deadline_mono_ms - pl_mono_ms();
    left_ms = left_ms > 0 ? left_ms : 0;
    struct timeval tv = {.tv_sec = (time_t)(left_ms / 1000),
                         .tv_usec = (suseconds_t)(left_ms % 1000) * 1000};
    evtimer_add(w->deadline, &tv);
}

/* Prints why the subscription could not start; returns the exit code. */
static int report_open_failure(const struct wait_ws *w)
{
    if (w->end_code == CLI_EXIT_UNREACHABLE) {
        fprintf(stderr, "✗ cannot reach the gateway at %s; try --wait poll:200\n", w->why);
    } else {
        fprintf(stderr, "✗ %s\n", w->why[0] != '\0' ? w->why : "the subscription ended");
    }
    fprintf(stderr, "  no request was sent (it waits for the subscription)\n");
    return w->end_code != CLI_EXIT_OK ? w->end_code : CLI_EXIT_UNREACHABLE;
}

int wait_ws_open(const struct cli *cli, const char *user, struct wait_ws **out)
{
    struct wait_ws *w = calloc(1, sizeof *w);
    if (w == NULL) {
        return CLI_EXIT_USAGE;
    }
    signal(SIGPIPE, SIG_IGN); /* a gateway gone mid-write is an error return, not a death */
    w->cli = cli;
    w->user = user;
    w->base = event_base_new();
    struct wsub_config cfg = {
        .cli = cli, .user = user, .notices = stderr, .dim = isatty(STDERR_FILENO) != 0};
    w->sub = w->base != NULL ? wsub_new(w->base, &cfg, &wait_cb, w) : NULL;
    w->deadline = w->base != NULL ? evtimer_new(w->base, on_deadline, w) : NULL;
    if (w->sub == NULL || w->deadline == NULL) {
        fprintf(stderr, "paylab: out of memory\n");
        wait_ws_close(w);
        return CLI_EXIT_USAGE;
    }
    int rc = wsub_start(w->sub);
    if (rc != CLI_CONTINUE) {
        wait_ws_close(w);
        return rc;
    }
    event_base_dispatch(w->base); /* until subscribed (loopbreak) or ended */
    if (!w->subscribed) {
        rc = report_open_failure(w);
        wait_ws_close(w);
        return rc;
    }
    *out = w;
    return CLI_CONTINUE;
}

void wait_ws_until_final(struct wait_ws *w, const char *txn_id, int64_t deadline_mono_ms,
                         struct wait_ws_final *res)
{
    memset(res, 0, sizeof *res);
    w->txn_id = txn_id;
    w->res = res;
    if (!w->ended) {
        arm_deadline(w, deadline_mono_ms);
        event_base_dispatch(w->base);
        evtimer_del(w->deadline);
    }
    w->res = NULL;
    w->txn_id = NULL;
}

const char *wait_ws_url(const struct wait_ws *w)
{
    return w->url;
}

int64_t wait_ws_head_seq(const struct wait_ws *w)
{
    return w->head_seq;
}

const char *wait_ws_error(const struct wait_ws *w)
{
    return w->ended ? w->why : "";
}

void wait_ws_close(struct wait_ws *w)
{
    if (w == NULL) {
        return;
    }
    if (w->sub != NULL && !w->ended) {
        wsub_stop(w->sub, CLI_EXIT_OK, NULL);
        while (!w->ended && event_base_dispatch(w->base) == 0) {
            /* until on_ended (the close handshake is bounded by 2 s) */
        }
    }
    wsub_free(w->sub);
    if (w->deadline != NULL) {
        event_free(w->deadline);
    }
    if (w->base != NULL) {
        event_base_free(w->base);
    }
    free(w);
}
