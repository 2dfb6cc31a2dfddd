/* watch.c owns the lab's WebSocket watchers and the table of final states they saw. Two
 * watchers each hold one subscription per subject user (with that user's ws_token), one watcher
 * through each gateway first, each subscription failing over to the other gateway and resuming by
 * seq (the CLI's wsub), as a user's own client does; per subject user they
 * check that seqs arrive consecutively, and they record when each top-up or withdrawal was
 * first seen final — which is when a user pushed over a WebSocket learns it.
 * Must not: block its event loop (the table's lock is held for a lookup only).
 * Invariant: a seen slot, once written, keeps its first sighting. */
#include "run.h"

#include "cli.h"
#include "pl.h"
#include "wsub.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How often a watcher's loop looks at the run's stop flag. */
#define LAB_WATCH_TICK_MS 50
/* How long a watcher's loop runs on after its last subscription ended. */
#define LAB_WATCH_LINGER_MS 300

/* FNV-1a: the ids are random, any spread will do. */
static size_t slot_of(const char *id)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = id; *p != '\0'; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ULL;
    return (size_t)(h % LAB_SEEN_SLOTS);
}

/* The slot holding id, or the free one where it would go; NULL when the table is full. */
static struct lab_seen_slot *find_slot(struct lab_run *r, const char *id)
{
    size_t i = slot_of(id);
    for (size_t probes = 0; probes < LAB_SEEN_SLOTS; probes++) {
        struct lab_seen_slot *s = &r->seen[(i + probes) % LAB_SEEN_SLOTS];
        if (s->txn_id[0] == '\0' || strcmp(s->txn_id, id) == 0)
            return s;
    }
    return NULL;
}

void lab_seen_record(struct lab_run *r, const char *txn_id, const char *final, int64_t at_us)
{
    pthread_mutex_lock(&r->mu);
    struct lab_seen_slot *s = find_slot(r, txn_id);
    if (s != NULL && s->txn_id[0] == '\0') {
        pl_strlcpy(s->txn_id, txn_id, sizeof s->txn_id);
        pl_strlcpy(s->final, final, sizeof s->final);
        s->final_us = at_us;
        pthread_cond_broadcast(&r->seen_cv);
    }
    pthread_mutex_unlock(&r->mu);
}

bool lab_seen_wait(struct lab_run *r, const char *txn_id, int64_t deadline_us, int64_t *at_us,
                   char *final, size_t cap)
{
    bool seen = false;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        struct lab_seen_slot *s = find_slot(r, txn_id);
        if (s != NULL && s->txn_id[0] != '\0') {
            *at_us = s->final_us;
            pl_strlcpy(final, s->final, cap);
            seen = true;
            break;
        }
        int64_t now = lab_mono_us();
        if (now >= deadline_us || atomic_load(&r->stop))
            break;
        /* Wake at least every 100 ms to notice a stop. */
        int64_t wake_us = lab_wall_us() + (deadline_us - now < 100000 ? deadline_us - now : 100000);
        struct timespec ts = {.tv_sec = wake_us / 1000000, .tv_nsec = (wake_us % 1000000) * 1000};
        pthread_cond_timedwait(&r->seen_cv, &r->mu, &ts);
    }
    pthread_mutex_unlock(&r->mu);
    return seen;
}

struct watch_ctx;

/* One user's subscription on a watcher's loop. */
struct watch_sub {
    struct watch_ctx *x;
    int user_index;
    struct wsub *sub;
    bool started, ended;
};

struct watch_ctx {
    struct lab_watcher *w;
    struct event_base *base;
    struct watch_sub subs[LAB_CLIENTS_MAX];
    int subs_count, started_count, ended_count;
    struct event *tick;
    bool stopping;
};

static void check_seq(struct lab_run *r, int watcher, int user_index, int64_t seq)
{
    struct lab_seq *q = &r->seqs[watcher][user_index];
    if (q->first == 0) {
        q->first = seq;
    } else if (seq < q->last) {
        atomic_fetch_add(&r->watcher_reorders, 1);
    } else if (seq > q->last + 1) {
        atomic_fetch_add(&r->watcher_gaps, seq - q->last - 1);
    }
    if (seq > q->last)
        q->last = seq;
}

static void on_event(const cJSON *ev, const char *raw, size_t raw_bytes, bool replayed, void *arg)
{
    (void)replayed, (void)raw;
    struct watch_sub *ws = arg;
    struct lab_watcher *w = ws->x->w;
    struct lab_run *r = w->run;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(ev, "type");
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(ev, "seq");
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(ev, "ts_us");
    if (!cJSON_IsString(type))
        return;
    if (cJSON_IsNumber(seq)) {
        pthread_mutex_lock(&r->mu);
        check_seq(r, w->index, ws->user_index, (int64_t)seq->valuedouble);
        pthread_mutex_unlock(&r->mu);
    }
    if (w->index == 0) {
        atomic_fetch_add(&r->ws_messages, 1);
        atomic_fetch_add(&r->ws_bytes, (long long)raw_bytes);
    }
    if (cJSON_IsNumber(ts) && !replayed)
        hist_record(&w->push_delay_us, lab_wall_us() - (int64_t)ts->valuedouble);
    if (strcmp(type->valuestring, "transaction.updated") != 0)
        return;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(ev, "transaction");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(t, "id");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(t, "status");
    if (!cJSON_IsString(id) || !cJSON_IsString(st))
        return;
    if (strcmp(st->valuestring, "succeeded") == 0 || strcmp(st->valuestring, "failed") == 0)
        lab_seen_record(r, id->valuestring, st->valuestring, lab_mono_us());
}

static void on_subscribed(const cJSON *reply, bool first, void *arg)
{
    (void)reply;
    struct watch_sub *ws = arg;
    if (!first) {
        atomic_fetch_add(&ws->x->w->run->watcher_resubscribes, 1);
        return;
    }
    ws->started = true;
    if (++ws->x->started_count == ws->x->subs_count)
        atomic_store(&ws->x->w->started, true);
}

static void on_ended(int exit_code, const char *why, void *arg)
{
    struct watch_sub *ws = arg;
    struct watch_ctx *x = ws->x;
    if (exit_code != 0 && !x->stopping)
        fprintf(stderr, "lab: watcher %d of %s ended: %s\n", x->w->index,
                x->w->run->users[ws->user_index], why != NULL ? why : "");
    ws->ended = true;
    /* The closes still finish on the loop (close frames, deferred frees): let it run a little
     * longer before it returns and everything is freed. */
    struct timeval linger = {.tv_sec = 0, .tv_usec = LAB_WATCH_LINGER_MS * 1000};
    if (++x->ended_count == x->subs_count)
        event_base_loopexit(x->base, &linger);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct watch_ctx *x = arg;
    if (!atomic_load(&x->w->run->stop) || x->stopping)
        return;
    x->stopping = true;
    for (int i = 0; i < x->subs_count; i++) {
        if (!x->subs[i].ended)
            wsub_stop(x->subs[i].sub, 0, NULL);
    }
}

/* Starts one subscription per subject user; false when none could start. */
static bool start_subs(struct watch_ctx *x, const struct cli *cli)
{
    struct lab_run *r = x->w->run;
    const struct wsub_callbacks cb = {
        .on_subscribed = on_subscribed, .on_event = on_event, .on_ended = on_ended};
    for (int i = 0; i < r->clients_count; i++) {
        struct watch_sub *ws = &x->subs[x->subs_count];
        const struct wsub_config cfg = {.cli = cli, .user = r->users[i], .token = NULL};
        ws->x = x;
        ws->user_index = i;
        ws->sub = wsub_new(x->base, &cfg, &cb, ws);
        if (ws->sub == NULL)
            break;
        x->subs_count++;
        if (wsub_start(ws->sub) != CLI_CONTINUE) {
            fprintf(stderr, "lab: watcher %d could not subscribe to %s\n", x->w->index,
                    r->users[i]);
            ws->ended = true;
            x->ended_count++;
        }
    }
    return x->ended_count < x->subs_count;
}

void *lab_watcher_main(void *arg)
{
    struct lab_watcher *w = arg;
    struct lab_run *r = w->run;
    /* Every user's subscription tries this watcher's gateway first, then the other one. */
    struct cli cli;
    memset(&cli, 0, sizeof cli);
    int first = w->index, second = 1 - w->index;
    snprintf(cli.gateway_url, sizeof cli.gateway_url, "%s,%s", r->c.gateway_ws_url[first],
             r->c.gateway_ws_url[second]);
    pl_strlcpy(cli.wallet_url, r->c.wallet_url, sizeof cli.wallet_url);
    pl_strlcpy(cli.data_dir, r->c.dir, sizeof cli.data_dir);
    struct watch_ctx *x = calloc(1, sizeof *x);
    if (x == NULL)
        goto done;
    x->w = w;
    x->base = event_base_new();
    if (x->base != NULL && start_subs(x, &cli)) {
        struct timeval tv = {.tv_sec = 0, .tv_usec = LAB_WATCH_TICK_MS * 1000};
        x->tick = event_new(x->base, -1, EV_PERSIST, on_tick, x);
        /* Each subscription's end breaks the loop it runs on (wsub is built for one per
         * loop): go on until every one has ended, then the linger exit returns. */
        bool armed = x->tick != NULL && event_add(x->tick, &tv) == 0;
        for (int rounds = 0;
             armed && x->ended_count < x->subs_count && rounds < 4 * LAB_CLIENTS_MAX; rounds++)
            event_base_dispatch(x->base);
        if (armed)
            event_base_dispatch(x->base); /* until the linger exit: the last closes finish */
    }
    if (x->tick != NULL)
        event_free(x->tick);
    for (int i = 0; i < x->subs_count; i++)
        wsub_free(x->subs[i].sub);
    if (x->base != NULL)
        event_base_free(x->base);
    free(x);
done:
    atomic_store(&w->finished, true);
    return NULL;
}
