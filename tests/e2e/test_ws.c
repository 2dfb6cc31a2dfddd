/* test_ws.c: the live path end to end (docs/realtime.md and docs/ledger.md; docs/contracts.md "Real
 * time"). Real bank, wallet and gateways; the clients are the test's own RFC 6455 code (e2e_ws_*),
 * read by one reader thread (the collector) while the test drives money movements:
 *
 *  (a) every event reaches clients on two gateways exactly once and in order, per user, and
 *      equals what GET /v1/users/{u}/events returns;
 *  (b) a client that disconnects resumes with `after` on the other gateway: exactly the
 *      missing events, then live ones;
 *  (c) a gateway SIGKILLed and restarted under a subscribed client: it reconnects and resumes
 *      with no gap and no duplicate;
 *  (d) unauthorized subscriptions are refused and get no events;
 *  (e) a consumer that never reads is closed with 1008 while a fast one gets every event;
 *  (f) 1,000 connections held at once, each served the next event;
 *  (g) a resume from another epoch gets a fresh snapshot ("recovered":false), no replay.
 *
 * Every wait polls a condition with a deadline; every test ends with `paylab verify`. */
#include "e2e.h"

#include "sign.h"

#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

/* Each user's first top-up (the bank opens accounts with 1,000,000). */
#define FUND_MINOR 500000
/* A delivery (event made → event at the client) is well within this. */
#define DELIVERY_TIMEOUT_MS 15000L
/* The reader's poll period: how soon it notices a new client or the stop flag. */
#define READER_POLL_MS 20
/* (a): rounds of money movements (each a transfer; some also top up): a few hundred events. */
#define FANOUT_ROUNDS 80
#define FANOUT_USERS 4
/* (a): the share of the bus's events gateway 1 drops on arrival. */
#define DROP_RATE "0.2"
/* (b), (c), (g): rounds before, during and after the interruption. */
#define RESUME_ROUNDS 15
/* (e): the slow consumer's receive buffer (the kernel doubles it) and the time allowed to
 * queue a mebibyte for it. */
#define SLOW_RCVBUF_BYTES 4096
#define SLOW_TIMEOUT_MS 60000L
#define DRIVERS 3
/* (f) */
#define MANY_CLIENTS 1000
/* File descriptors (f) needs in this process and in the gateway, which inherits the limit. */
#define MANY_FDS (MANY_CLIENTS * 2 + 256)

/* ------------------------------------------------------------------ the collector */

/* One WebSocket client watched by the reader thread. Everything below w is under the
 * collector's mutex. A client is freed only when the collector stops (the reader may hold
 * a pointer to it until then). */
struct client {
    struct e2e_ws *w;
    bool active; /* the reader reads it */
    bool closed; /* the connection ended: close frame or EOF */
    int close_code;
    bool garbage; /* a message that was not JSON, or a frame out of place */
    cJSON **msgs; /* every JSON message, in arrival order */
    size_t count, cap;
    unsigned char *frag; /* a fragmented message being joined */
    size_t frag_len;
};

struct collector {
    pthread_t thread;
    pthread_mutex_t mu;
    atomic_bool stop;
    struct client **clients;
    size_t count, cap;
};

static void client_push(struct client *c, cJSON *m)
{
    if (c->count == c->cap) {
        size_t cap = c->cap == 0 ? 64 : c->cap * 2;
        cJSON **nm = realloc(c->msgs, cap * sizeof *nm);
        if (nm == NULL) {
            c->garbage = true;
            cJSON_Delete(m);
            return;
        }
        c->msgs = nm;
        c->cap = cap;
    }
    c->msgs[c->count++] = m;
}

static void client_ended(struct client *c, int code)
{
    if (!c->closed)
        c->close_code = code;
    c->closed = true;
    c->active = false;
}

/* A data frame: joined with the fragments before it; a whole message is parsed. */
static void client_data(struct client *c, const struct e2e_ws_frame *f)
{
    if ((f->opcode == E2E_WS_CONT) != (c->frag != NULL)) {
        c->garbage = true;
        return;
    }
    unsigned char *nb = realloc(c->frag, c->frag_len + f->len + 1);
    if (nb == NULL) {
        c->garbage = true;
        return;
    }
    memcpy(nb + c->frag_len, f->payload, f->len);
    c->frag = nb;
    c->frag_len += f->len;
    if (!f->fin)
        return;
    cJSON *m = cJSON_ParseWithLength((const char *)c->frag, c->frag_len);
    free(c->frag);
    c->frag = NULL;
    c->frag_len = 0;
    if (m == NULL)
        c->garbage = true;
    else
        client_push(c, m);
}

/* Under the mutex: every frame that has arrived for c. */
static void client_drain(struct client *c)
{
    for (;;) {
        struct e2e_ws_frame f;
        int r = e2e_ws_poll_frame(c->w, &f);
        if (r == 0)
            return;
        if (r < 0) {
            client_ended(c, E2E_WS_ABNORMAL);
            return;
        }
        switch (f.opcode) {
        case E2E_WS_PING:
            (void)e2e_ws_send_frame(c->w, E2E_WS_FIN | E2E_WS_PONG, f.payload, f.len);
            break;
        case E2E_WS_PONG:
            break;
        case E2E_WS_CLOSE:
            (void)e2e_ws_send_frame(c->w, E2E_WS_FIN | E2E_WS_CLOSE, f.payload, f.len >= 2 ? 2 : 0);
            client_ended(c, e2e_ws_close_code(&f));
            break;
        case E2E_WS_TEXT:
        case E2E_WS_CONT:
            client_data(c, &f);
            break;
        default:
            c->garbage = true;
            break;
        }
        e2e_ws_frame_free(&f);
        if (!c->active)
            return;
    }
}

static void *collector_run(void *arg)
{
    struct collector *col = arg;
    struct pollfd *pfds = NULL;
    struct client **who = NULL;
    size_t cap = 0;
    while (!atomic_load(&col->stop)) {
        size_t n = 0;
        pthread_mutex_lock(&col->mu);
        if (cap < col->count) {
            cap = col->cap;
            free(pfds);
            free(who);
            pfds = calloc(cap, sizeof *pfds);
            who = calloc(cap, sizeof *who);
        }
        for (size_t i = 0; pfds != NULL && who != NULL && i < col->count; i++) {
            if (!col->clients[i]->active)
                continue;
            pfds[n] = (struct pollfd){.fd = col->clients[i]->w->fd, .events = POLLIN};
            who[n++] = col->clients[i];
        }
        pthread_mutex_unlock(&col->mu);
        int pr = poll(pfds, (nfds_t)n, READER_POLL_MS);
        if (pr <= 0)
            continue;
        pthread_mutex_lock(&col->mu);
        for (size_t i = 0; i < n; i++) {
            if (pfds[i].revents != 0 && who[i]->active)
                client_drain(who[i]);
        }
        pthread_mutex_unlock(&col->mu);
    }
    free(pfds);
    free(who);
    return NULL;
}

static void collector_start(struct collector *col)
{
    memset(col, 0, sizeof *col);
    atomic_init(&col->stop, false);
    assert_int_equal(pthread_mutex_init(&col->mu, NULL), 0);
    assert_int_equal(pthread_create(&col->thread, NULL, collector_run, col), 0);
}

static void collector_stop(struct collector *col)
{
    atomic_store(&col->stop, true);
    assert_int_equal(pthread_join(col->thread, NULL), 0);
    for (size_t i = 0; i < col->count; i++) {
        struct client *c = col->clients[i];
        e2e_ws_free(c->w, c->closed ? 0 : 1000);
        for (size_t j = 0; j < c->count; j++)
            cJSON_Delete(c->msgs[j]);
        free(c->msgs);
        free(c->frag);
        free(c);
    }
    free(col->clients);
    pthread_mutex_destroy(&col->mu);
}

/* Connects to gateway index and hands the connection to the reader. */
static struct client *client_open(struct collector *col, struct e2e *e, int index)
{
    struct client *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->w = e2e_ws_connect(e->c.gateways[index].ws_port, NULL, 0);
    c->active = true;
    pthread_mutex_lock(&col->mu);
    if (col->count == col->cap) {
        size_t cap = col->cap == 0 ? 16 : col->cap * 2;
        struct client **nc = realloc(col->clients, cap * sizeof *nc);
        assert_non_null(nc);
        col->clients = nc;
        col->cap = cap;
    }
    col->clients[col->count++] = c;
    pthread_mutex_unlock(&col->mu);
    return c;
}

/* The client leaves: a close frame, then the reader stops reading it. */
static void client_leave(struct collector *col, struct client *c)
{
    pthread_mutex_lock(&col->mu);
    if (!c->closed) {
        unsigned char code[2] = {1000 >> 8, 1000 & 0xff};
        (void)e2e_ws_send_frame(c->w, E2E_WS_FIN | E2E_WS_CLOSE, code, sizeof code);
        shutdown(c->w->fd, SHUT_RDWR);
        client_ended(c, 1000);
    }
    pthread_mutex_unlock(&col->mu);
}

static bool is_op(const cJSON *m, const char *op)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, "op");
    return cJSON_IsString(v) && strcmp(v->valuestring, op) == 0;
}

static bool is_for(const cJSON *m, const char *user)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, "user");
    return cJSON_IsString(v) && strcmp(v->valuestring, user) == 0;
}

struct msg_probe {
    struct collector *col;
    struct client *c;
    const char *op;   /* wait for a message with this op … */
    const char *user; /* … for this user (NULL: any) */
    int64_t seq;      /* an event with seq >= this (when op is "event") */
    cJSON *found;     /* a copy of it */
    size_t count;     /* or: this many clients have one (many_probe) */
};

/* Under the mutex: the first message of c matching p, or NULL. */
static const cJSON *client_find(const struct client *c, const struct msg_probe *p)
{
    for (size_t i = 0; i < c->count; i++) {
        const cJSON *m = c->msgs[i];
        if (!is_op(m, p->op) || (p->user != NULL && !is_for(m, p->user)))
            continue;
        if (strcmp(p->op, "event") == 0) {
            const cJSON *s = cJSON_GetObjectItemCaseSensitive(m, "seq");
            if (!cJSON_IsNumber(s) || (int64_t)s->valuedouble < p->seq)
                continue;
        }
        return m;
    }
    return NULL;
}

static bool msg_arrived(void *arg)
{
    struct msg_probe *p = arg;
    pthread_mutex_lock(&p->col->mu);
    const cJSON *m = client_find(p->c, p);
    if (m != NULL)
        p->found = cJSON_Duplicate(m, true);
    bool closed = p->c->closed;
    pthread_mutex_unlock(&p->col->mu);
    return m != NULL || closed;
}

static void dump_client(struct collector *col, struct client *c)
{
    pthread_mutex_lock(&col->mu);
    fprintf(stderr, "client: %zu messages, closed=%d code=%d garbage=%d\n", c->count, c->closed,
            c->close_code, c->garbage);
    size_t from = c->count > 6 ? c->count - 6 : 0;
    for (size_t i = from; i < c->count; i++) {
        char *s = cJSON_PrintUnformatted(c->msgs[i]);
        fprintf(stderr, "  [%zu] %.300s\n", i, s != NULL ? s : "?");
        free(s);
    }
    pthread_mutex_unlock(&col->mu);
}

/* Waits for a message of op (for user; an event: with seq >= seq); returns a copy. */
static cJSON *client_wait(struct collector *col, struct client *c, const char *op, const char *user,
                          int64_t seq, long timeout_ms)
{
    struct msg_probe p = {.col = col, .c = c, .op = op, .user = user, .seq = seq};
    if (!cluster_wait_for(msg_arrived, &p, cluster_deadline_ms(timeout_ms)) || p.found == NULL) {
        dump_client(col, c);
        fail_msg("no \"%s\" message for %s (seq >= %lld) within %ld ms", op,
                 user != NULL ? user : "*", (long long)seq, timeout_ms);
    }
    return p.found;
}

/* A subscription over a collected client; its answer must be "subscribed". */
static cJSON *client_subscribe(struct collector *col, struct client *c, const char *user,
                               const char *token, const char *epoch, int64_t after)
{
    e2e_ws_subscribe(c->w, user, token, epoch, after);
    cJSON *m = client_wait(col, c, "subscribed", user, 0, E2E_WS_TIMEOUT_MS);
    return m;
}

/* The events c got for user, in arrival order (copies; caller deletes the array). */
static cJSON *client_events(struct collector *col, struct client *c, const char *user)
{
    cJSON *list = cJSON_CreateArray();
    assert_non_null(list);
    pthread_mutex_lock(&col->mu);
    for (size_t i = 0; i < c->count; i++) {
        if (is_op(c->msgs[i], "event") && is_for(c->msgs[i], user))
            cJSON_AddItemToArray(list, cJSON_Duplicate(c->msgs[i], true));
    }
    bool garbage = c->garbage;
    pthread_mutex_unlock(&col->mu);
    assert_false(garbage);
    return list;
}

/* ------------------------------------------------------------------ comparing streams */

static int64_t num_or(const cJSON *obj, const char *key, int64_t dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : dflt;
}

/* The delivered event equals the wallet's record of it (docs/ledger.md's fields). */
static void expect_same_event(const cJSON *got, const cJSON *want)
{
    assert_string_equal(e2e_str(got, "type"), e2e_str(want, "type"));
    assert_string_equal(e2e_str(got, "user"), e2e_str(want, "user"));
    assert_string_equal(e2e_str(got, "epoch"), e2e_str(want, "epoch"));
    assert_int_equal(e2e_int(got, "seq"), e2e_int(want, "seq"));
    assert_int_equal(num_or(got, "balance_minor", -1), num_or(want, "balance_minor", -1));
    const cJSON *gt = cJSON_GetObjectItemCaseSensitive(got, "transaction");
    const cJSON *wt = cJSON_GetObjectItemCaseSensitive(want, "transaction");
    assert_int_equal(cJSON_IsObject(gt), cJSON_IsObject(wt));
    if (cJSON_IsObject(wt)) {
        assert_string_equal(e2e_str(gt, "id"), e2e_str(wt, "id"));
        assert_string_equal(e2e_str(gt, "status"), e2e_str(wt, "status"));
        assert_int_equal(e2e_int(gt, "amount_minor"), e2e_int(wt, "amount_minor"));
    }
}

static void print_seqs(const char *what, const cJSON *events)
{
    const cJSON *ev = NULL;
    fprintf(stderr, "%s:", what);
    cJSON_ArrayForEach(ev, events)
    {
        fprintf(stderr, " %lld", (long long)num_or(ev, "seq", -1));
    }
    fprintf(stderr, "\n");
}

struct stream_probe {
    struct collector *col;
    struct client *c;
    const char *user;
    int64_t head;
};

static bool stream_reached(void *arg)
{
    struct stream_probe *p = arg;
    struct msg_probe m = {.col = p->col, .c = p->c, .op = "event", .user = p->user, .seq = p->head};
    pthread_mutex_lock(&p->col->mu);
    bool done = client_find(p->c, &m) != NULL || p->c->closed;
    pthread_mutex_unlock(&p->col->mu);
    return done;
}

static void wait_stream(struct collector *col, struct client *c, const char *user, int64_t head)
{
    struct stream_probe p = {.col = col, .c = c, .user = user, .head = head};
    if (head <= 0)
        return;
    if (!cluster_wait_for(stream_reached, &p, cluster_deadline_ms(DELIVERY_TIMEOUT_MS))) {
        dump_client(col, c);
        fail_msg("%s's events up to seq %lld did not arrive within %ld ms", user, (long long)head,
                 DELIVERY_TIMEOUT_MS);
    }
}

/* got (events in arrival order) is exactly the wallet's events of user with seq > after,
 * up to the current head: every one once, in order. */
static void expect_exact_stream(struct e2e *e, const char *user, const cJSON *got, int64_t after)
{
    cJSON *want = e2e_user_events(e, user, after);
    if (cJSON_GetArraySize(got) != cJSON_GetArraySize(want)) {
        print_seqs("delivered", got);
        print_seqs("wallet   ", want);
        fail_msg("%s: %d events delivered after seq %lld, the wallet has %d", user,
                 cJSON_GetArraySize(got), (long long)after, cJSON_GetArraySize(want));
    }
    const cJSON *g = got->child;
    const cJSON *w = want->child;
    for (; g != NULL && w != NULL; g = g->next, w = w->next)
        expect_same_event(g, w);
    cJSON_Delete(want);
}

/* A client that waited for user's events up to the wallet's head and got exactly those
 * after `after`. */
static void expect_client_stream(struct e2e *e, struct collector *col, struct client *c,
                                 const char *user, int64_t after)
{
    int64_t head = e2e_user_head(e, user, NULL);
    wait_stream(col, c, user, head);
    cJSON *got = client_events(col, c, user);
    expect_exact_stream(e, user, got, after);
    cJSON_Delete(got);
}

/* A "*" client (no replay: it starts at the first event after it subscribed): its events of
 * user are consecutive, each once, and end at the head; the first is at most first_max. */
static void expect_star_stream(struct e2e *e, struct collector *col, struct client *c,
                               const char *user, int64_t first_max)
{
    int64_t head = e2e_user_head(e, user, NULL);
    wait_stream(col, c, user, head);
    cJSON *got = client_events(col, c, user);
    assert_true(cJSON_GetArraySize(got) > 0);
    int64_t first = e2e_int(got->child, "seq");
    if (first > first_max) {
        print_seqs("delivered", got);
        fail_msg("%s: the \"*\" client's first event is seq %lld, expected <= %lld", user,
                 (long long)first, (long long)first_max);
    }
    expect_exact_stream(e, user, got, first - 1);
    cJSON_Delete(got);
}

/* ------------------------------------------------------------------ driving events */

static void topup_sync(struct e2e *e, const char *user, int64_t amount)
{
    struct e2e_resp r;
    assert_int_equal(e2e_topup(e, user, amount, "sync", NULL, &r), 200);
    e2e_resp_free(&r);
}

static void transfer(struct e2e *e, const char *from, const char *to, int64_t amount)
{
    struct e2e_resp r;
    assert_int_equal(e2e_transfer(e, from, to, amount, &r), 200);
    e2e_resp_free(&r);
}

/* One round of money movements among users: a transfer; every 5th round a sync top-up;
 * every 7th an async one (its id appended to ids when ids is not NULL). */
static void drive_round(struct e2e *e, const char *const *users, size_t n, int i, char (*ids)[64],
                        size_t *ids_count)
{
    transfer(e, users[(size_t)i % n], users[(size_t)(i + 1) % n], 100 + i);
    if (i % 5 == 0)
        topup_sync(e, users[(size_t)(i + 2) % n], 1000 + i);
    if (ids != NULL && i % 7 == 0)
        e2e_topup_async(e, users[(size_t)(i + 3) % n], 2000 + i, ids[(*ids_count)++]);
}

static void add_and_fund(struct e2e *e, const char *const *users, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        e2e_user_add(e, users[i]);
        topup_sync(e, users[i], FUND_MINOR);
    }
}

/* Transfers kept running from threads (no cmocka there): between users[k] and users[k+1]. */
struct driver {
    pthread_t thread;
    struct e2e *e;
    const char *from, *to;
    atomic_bool *stop;
    long sent, failed;
};

static void *driver_run(void *arg)
{
    struct driver *d = arg;
    char url[CLUSTER_URL_BYTES_MAX + 32], body[160];
    const char *headers[] = {"Content-Type: application/json", NULL};
    snprintf(url, sizeof url, "%s/v1/transfers", d->e->c.wallet_url);
    snprintf(body, sizeof body, "{\"from\":\"%s\",\"to\":\"%s\",\"amount_minor\":1}", d->from,
             d->to);
    while (!atomic_load(d->stop)) {
        struct cluster_reply r;
        int rc =
            cluster_http_full("POST", url, body, strlen(body), headers, E2E_HTTP_TIMEOUT_MS, &r);
        if (rc != 0 || r.status != 200)
            d->failed++;
        else
            d->sent++;
        if (rc == 0)
            cluster_reply_free(&r);
        const char *t = d->from; /* back and forth: no balance runs dry */
        d->from = d->to;
        d->to = t;
        snprintf(body, sizeof body, "{\"from\":\"%s\",\"to\":\"%s\",\"amount_minor\":1}", d->from,
                 d->to);
    }
    return NULL;
}

static void drivers_start(struct driver *d, size_t n, struct e2e *e, const char *const *users,
                          size_t users_n, atomic_bool *stop)
{
    atomic_store(stop, false);
    for (size_t i = 0; i < n; i++) {
        d[i] = (struct driver){
            .e = e, .from = users[i % users_n], .to = users[(i + 1) % users_n], .stop = stop};
        assert_int_equal(pthread_create(&d[i].thread, NULL, driver_run, &d[i]), 0);
    }
}

static long drivers_stop(struct driver *d, size_t n, atomic_bool *stop)
{
    long sent = 0, failed = 0;
    atomic_store(stop, true);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(pthread_join(d[i].thread, NULL), 0);
        sent += d[i].sent;
        failed += d[i].failed;
    }
    assert_int_equal(failed, 0);
    return sent;
}

/* ------------------------------------------------------------------ gateway metrics */

/* The value of one series (name{labels}) on gateway index's /metrics; 0 when absent. */
static int64_t gateway_metric(struct e2e *e, int index, const char *series)
{
    char url[CLUSTER_URL_BYTES_MAX + 16];
    struct e2e_resp r;
    snprintf(url, sizeof url, "%s/metrics", e->c.gateway_url[index]);
    e2e_request("GET", url, NULL, 0, NULL, &r);
    e2e_expect(&r, 200, NULL);
    int64_t v = 0;
    size_t len = strlen(series);
    for (const char *at = r.raw.body; (at = strstr(at, series)) != NULL; at += len) {
        if ((at == r.raw.body || at[-1] == '\n') && at[len] == ' ') {
            v = strtoll(at + len + 1, NULL, 10);
            break;
        }
    }
    e2e_resp_free(&r);
    return v;
}

/* ------------------------------------------------------------------ (a) fan-out */

/* Clients on both gateways: per-user subscriptions from seq 0 (a replay of what exists, then
 * live) and "*" ones; a few hundred events from transfers and sync and async top-ups.
 * Gateway 1 drops a share of the bus's events on arrival (--drop-events-rate), so what its
 * clients get also comes through gap fills from the wallet. */
static void test_ws_fanout_two_gateways(void **state)
{
    struct e2e *e = *state;
    static const char *const users[FANOUT_USERS] = {"ann", "ben", "cat", "dan"};
    const struct e2e_opts opts = {.gateways = 1, .pending_grace_ms = 15000};
    const char *const lossy[] = {"--ack-timeout-ms", "500", "--drop-events-rate", DROP_RATE, NULL};
    char tokens[FANOUT_USERS][E2E_SECRET_BYTES_MAX], epoch[E2E_SECRET_BYTES_MAX];
    char ids[FANOUT_ROUNDS / 7 + 2][64];
    size_t ids_count = 0;
    struct collector col;
    e2e_start(e, &opts);
    assert_int_equal(cluster_start_gateway(&e->c, 1, lossy), 0);
    add_and_fund(e, users, FANOUT_USERS);
    for (size_t i = 0; i < FANOUT_USERS; i++)
        e2e_ws_token(e, users[i], tokens[i]);
    e2e_user_head(e, users[0], epoch);

    collector_start(&col);
    /* Gateway 0: ann, ben, cat on one connection; gateway 1: ben, cat, dan. */
    struct client *a = client_open(&col, e, 0);
    struct client *b = client_open(&col, e, 1);
    struct client *star0 = client_open(&col, e, 0);
    struct client *star1 = client_open(&col, e, 1);
    for (size_t i = 0; i < 3; i++) {
        cJSON *m = client_subscribe(&col, a, users[i], tokens[i], epoch, 0);
        assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "recovered")));
        cJSON_Delete(m);
        m = client_subscribe(&col, b, users[i + 1], tokens[i + 1], epoch, 0);
        cJSON_Delete(m);
    }
    cJSON *m = client_subscribe(&col, star0, "*", e->admin_token, NULL, -1);
    assert_true(e2e_is_null(m, "seq"));
    assert_true(e2e_is_null(m, "balance_minor"));
    cJSON_Delete(m);
    cJSON_Delete(client_subscribe(&col, star1, "*", e->admin_token, NULL, -1));

    /* The "*" clients are live once they see an event of every user. */
    int64_t first_max[FANOUT_USERS];
    for (size_t i = 0; i < FANOUT_USERS; i++) {
        topup_sync(e, users[i], 100);
        first_max[i] = e2e_user_head(e, users[i], NULL);
        cJSON_Delete(
            client_wait(&col, star0, "event", users[i], first_max[i], DELIVERY_TIMEOUT_MS));
        cJSON_Delete(
            client_wait(&col, star1, "event", users[i], first_max[i], DELIVERY_TIMEOUT_MS));
    }

    for (int i = 0; i < FANOUT_ROUNDS; i++)
        drive_round(e, users, FANOUT_USERS, i, ids, &ids_count);
    e2e_wait_all_final(e, ids, ids_count, E2E_SETTLE_TIMEOUT_MS);

    int64_t total = 0;
    for (size_t i = 0; i < FANOUT_USERS; i++)
        total += e2e_user_head(e, users[i], NULL);
    assert_true(total >= 300); /* "a few hundred events" */
    for (size_t i = 0; i < 3; i++) {
        expect_client_stream(e, &col, a, users[i], 0);
        expect_client_stream(e, &col, b, users[i + 1], 0);
    }
    for (size_t i = 0; i < FANOUT_USERS; i++) {
        expect_star_stream(e, &col, star0, users[i], first_max[i]);
        expect_star_stream(e, &col, star1, users[i], first_max[i]);
    }
    /* Gateway 1 did lose events, and filled the gaps. */
    assert_true(gateway_metric(e, 1, "paylab_gateway_ws_gap_fills_total{reason=\"gap\"}") > 0);
    /* a never subscribed to dan, b never to ann. */
    cJSON *none = client_events(&col, a, users[3]);
    assert_int_equal(cJSON_GetArraySize(none), 0);
    cJSON_Delete(none);
    none = client_events(&col, b, users[0]);
    assert_int_equal(cJSON_GetArraySize(none), 0);
    cJSON_Delete(none);
    collector_stop(&col);
    e2e_finish(e);
}

/* ------------------------------------------------------------------ (b) resume */

/* The last event seq c got for user (0 when none). */
static int64_t client_last_seq(struct collector *col, struct client *c, const char *user)
{
    cJSON *got = client_events(col, c, user);
    int n = cJSON_GetArraySize(got);
    int64_t last = n > 0 ? e2e_int(cJSON_GetArrayItem(got, n - 1), "seq") : 0;
    cJSON_Delete(got);
    return last;
}

static void test_ws_resume_other_gateway(void **state)
{
    struct e2e *e = *state;
    static const char *const users[] = {"ann", "ben"};
    const struct e2e_opts opts = {.gateways = 2};
    char token[E2E_SECRET_BYTES_MAX], epoch[E2E_SECRET_BYTES_MAX];
    struct collector col;
    e2e_start(e, &opts);
    add_and_fund(e, users, 2);
    e2e_ws_token(e, "ann", token);
    e2e_user_head(e, "ann", epoch);
    collector_start(&col);

    struct client *first = client_open(&col, e, 0);
    cJSON_Delete(client_subscribe(&col, first, "ann", token, epoch, 0));
    for (int i = 0; i < RESUME_ROUNDS; i++)
        drive_round(e, users, 2, i, NULL, NULL);
    expect_client_stream(e, &col, first, "ann", 0);
    int64_t last = client_last_seq(&col, first, "ann");
    client_leave(&col, first);

    /* Events while nobody watches. */
    for (int i = 0; i < RESUME_ROUNDS; i++)
        drive_round(e, users, 2, i, NULL, NULL);
    int64_t head = e2e_user_head(e, "ann", NULL);
    assert_true(head > last);

    struct client *second = client_open(&col, e, 1);
    cJSON *m = client_subscribe(&col, second, "ann", token, epoch, last);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "recovered")));
    assert_string_equal(e2e_str(m, "epoch"), epoch);
    assert_true(e2e_int(m, "seq") >= last);
    cJSON_Delete(m);
    /* Exactly the missing ones … */
    wait_stream(&col, second, "ann", head);
    cJSON *got = client_events(&col, second, "ann");
    assert_int_equal(e2e_int(got->child, "seq"), last + 1);
    cJSON_Delete(got);
    /* … then live ones. */
    for (int i = 0; i < RESUME_ROUNDS; i++)
        drive_round(e, users, 2, i, NULL, NULL);
    expect_client_stream(e, &col, second, "ann", last);
    /* Nothing reached the first connection after it left. */
    assert_int_equal(client_last_seq(&col, first, "ann"), last);
    collector_stop(&col);
    e2e_finish(e);
}

/* ------------------------------------------------------------------ (c) gateway restart */

static bool client_closed(void *arg)
{
    struct msg_probe *p = arg;
    pthread_mutex_lock(&p->col->mu);
    bool closed = p->c->closed;
    pthread_mutex_unlock(&p->col->mu);
    return closed;
}

static void test_ws_gateway_restart(void **state)
{
    struct e2e *e = *state;
    static const char *const users[] = {"ann", "ben"};
    const struct e2e_opts opts = {.gateways = 1};
    char token[E2E_SECRET_BYTES_MAX], epoch[E2E_SECRET_BYTES_MAX];
    struct collector col;
    struct driver drivers[1];
    atomic_bool stop;
    e2e_start(e, &opts);
    add_and_fund(e, users, 2);
    e2e_ws_token(e, "ann", token);
    e2e_user_head(e, "ann", epoch);
    collector_start(&col);

    struct client *first = client_open(&col, e, 0);
    cJSON_Delete(client_subscribe(&col, first, "ann", token, epoch, 0));
    drivers_start(drivers, 1, e, users, 2, &stop);
    /* Events flow; then the gateway dies under the client, mid-stream. */
    int64_t seen = e2e_user_head(e, "ann", NULL) + 20;
    cJSON_Delete(client_wait(&col, first, "event", "ann", seen, DELIVERY_TIMEOUT_MS));
    assert_int_equal(cluster_stop(&e->c.gateways[0], SIGKILL), 0);
    struct msg_probe closed = {.col = &col, .c = first};
    assert_true(cluster_wait_for(client_closed, &closed, cluster_deadline_ms(E2E_WS_TIMEOUT_MS)));
    int64_t last = client_last_seq(&col, first, "ann");
    assert_true(last >= seen);
    /* More events while the gateway is down, then it comes back; the client resumes. */
    int64_t down_head = e2e_user_head(e, "ann", NULL);
    for (int i = 0; i < RESUME_ROUNDS; i++)
        transfer(e, "ben", "ann", 10 + i);
    e2e_start_gateway(e, 0);
    struct client *second = client_open(&col, e, 0);
    cJSON *m = client_subscribe(&col, second, "ann", token, epoch, last);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "recovered")));
    cJSON_Delete(m);
    assert_true(e2e_user_head(e, "ann", NULL) > down_head);
    /* Live again for a while, then stop and compare: both connections together got every
     * seq once, in order. */
    int64_t live = e2e_user_head(e, "ann", NULL) + 20;
    cJSON_Delete(client_wait(&col, second, "event", "ann", live, DELIVERY_TIMEOUT_MS));
    long sent = drivers_stop(drivers, 1, &stop);
    assert_true(sent > 0);
    int64_t head = e2e_user_head(e, "ann", NULL);
    wait_stream(&col, second, "ann", head);
    cJSON *got = client_events(&col, first, "ann");
    cJSON *more = client_events(&col, second, "ann");
    while (cJSON_GetArraySize(more) > 0)
        cJSON_AddItemToArray(got, cJSON_DetachItemFromArray(more, 0));
    cJSON_Delete(more);
    expect_exact_stream(e, "ann", got, 0);
    cJSON_Delete(got);
    collector_stop(&col);
    e2e_finish(e);
}

/* ------------------------------------------------------------------ (d) unauthorized */

/* After an event of alice reached an authorized client on the same gateway, a refused
 * connection must have got none: one more refused request is a barrier — its error is the
 * next message. (A gateway that closes refused connections is fine too.) */
static void expect_no_event(struct e2e_ws *w, const char *what)
{
    const char barrier[] = "{\"op\":\"subscribe\",\"user\":\"alice\"}";
    if (e2e_ws_send_frame(w, E2E_WS_FIN | E2E_WS_TEXT, barrier, strlen(barrier)) != 0)
        return;
    int64_t deadline = cluster_deadline_ms(E2E_WS_TIMEOUT_MS);
    for (;;) {
        struct e2e_ws_frame f;
        int r = e2e_ws_read_frame(w, deadline, &f);
        if (r == 0)
            fail_msg("%s: no answer to the barrier", what);
        if (r < 0)
            return;
        if (f.opcode == E2E_WS_CLOSE) {
            e2e_ws_frame_free(&f);
            return;
        }
        if (f.opcode == E2E_WS_TEXT) {
            cJSON *m = cJSON_ParseWithLength((const char *)f.payload, f.len);
            if (m == NULL || !is_op(m, "error"))
                fail_msg("%s: got %.300s after being refused", what, (const char *)f.payload);
            cJSON_Delete(m);
            e2e_ws_frame_free(&f);
            return;
        }
        e2e_ws_frame_free(&f);
    }
}

static void test_ws_unauthorized(void **state)
{
    struct e2e *e = *state;
    const struct e2e_opts opts = {.gateways = 1};
    char alice[E2E_SECRET_BYTES_MAX], bob[E2E_SECRET_BYTES_MAX], secret[E2E_SECRET_BYTES_MAX];
    char expired[E2E_SECRET_BYTES_MAX], tampered[E2E_SECRET_BYTES_MAX],
        future[E2E_SECRET_BYTES_MAX];
    e2e_start(e, &opts);
    e2e_user_add(e, "alice");
    e2e_user_add(e, "bob");
    e2e_ws_token(e, "alice", alice);
    e2e_ws_token(e, "bob", bob);
    assert_int_equal(cluster_read_secret(&e->c, "token_secret", secret, sizeof secret), 0);
    int64_t now_s = pl_now_ms() / 1000;
    assert_int_equal(sign_ws_token(secret, "alice", now_s - 60, expired, sizeof expired), 0);
    /* A well-formed token for a long expiry, signed with another secret. */
    assert_int_equal(
        sign_ws_token("not-the-token-secret", "alice", now_s + 3600, future, sizeof future), 0);
    /* alice's real token with one MAC character changed. */
    assert_int_equal(pl_strlcpy(tampered, alice, sizeof tampered), 0);
    size_t n = strlen(tampered);
    tampered[n - 2] = tampered[n - 2] == 'A' ? 'B' : 'A';
    char admin_bad[E2E_SECRET_BYTES_MAX + 8];
    snprintf(admin_bad, sizeof admin_bad, "%sx", e->admin_token);

    const struct {
        const char *what, *user, *token;
    } cases[] = {
        {"no token", "alice", NULL},
        {"empty token", "alice", ""},
        {"bob's token for alice", "alice", bob},
        {"expired token", "alice", expired},
        {"tampered token", "alice", tampered},
        {"token signed with another secret", "alice", future},
        {"not a token", "alice", "v1.alice"},
        {"* without a token", "*", NULL},
        {"* with a wrong admin token", "*", admin_bad},
        {"* with a user's token", "*", alice},
    };
    struct e2e_ws *refused[PL_ARRAY_LEN(cases)];
    int port = e->c.gateways[0].ws_port;
    for (size_t i = 0; i < PL_ARRAY_LEN(cases); i++) {
        refused[i] = e2e_ws_connect(port, NULL, 0);
        e2e_ws_subscribe(refused[i], cases[i].user, cases[i].token, NULL, -1);
        cJSON *m = e2e_ws_recv_json(refused[i], E2E_WS_TIMEOUT_MS);
        if (!is_op(m, "error")) {
            char *s = cJSON_PrintUnformatted(m);
            fail_msg("%s: answered %s", cases[i].what, s);
        }
        assert_string_equal(e2e_str(m, "code"), "unauthorized");
        cJSON_Delete(m);
    }
    /* An authorized client on the same gateway sees alice's next events … */
    struct e2e_ws *ok = e2e_ws_connect(port, NULL, 0);
    cJSON_Delete(e2e_ws_subscribe_ok(ok, "alice", alice, NULL, -1));
    struct e2e_ws *admin = e2e_ws_connect(port, NULL, 0);
    cJSON_Delete(e2e_ws_subscribe_ok(admin, "*", e->admin_token, NULL, -1));
    topup_sync(e, "alice", 5000);
    int64_t head = e2e_user_head(e, "alice", NULL);
    for (struct e2e_ws *w = ok;; w = admin) {
        for (;;) {
            cJSON *m = e2e_ws_recv_json(w, DELIVERY_TIMEOUT_MS);
            bool last = is_op(m, "event") && e2e_int(m, "seq") == head;
            cJSON_Delete(m);
            if (last)
                break;
        }
        if (w == admin)
            break;
    }
    /* … and the refused ones none. */
    for (size_t i = 0; i < PL_ARRAY_LEN(cases); i++) {
        expect_no_event(refused[i], cases[i].what);
        e2e_ws_free(refused[i], 1000);
    }
    e2e_ws_free(ok, 1000);
    e2e_ws_free(admin, 1000);
    e2e_finish(e);
}

/* ------------------------------------------------------------------ (e) slow consumer */

static int64_t gateway_closes_1008(struct e2e *e, int index)
{
    return gateway_metric(e, index, "paylab_gateway_ws_closes_total{code=\"1008\"}");
}

struct closes_probe {
    struct e2e *e;
    int64_t at_least;
};

static bool slow_dropped(void *arg)
{
    struct closes_probe *p = arg;
    return gateway_closes_1008(p->e, 0) >= p->at_least;
}

/* Reads w to its end: every complete message is an event and each user's seqs are
 * consecutive. Returns the events read. */
static int64_t slow_drain(struct e2e_ws *w, const char *const *users, size_t n)
{
    int64_t last[8] = {0};
    int64_t events = 0;
    int64_t deadline = cluster_deadline_ms(DELIVERY_TIMEOUT_MS);
    assert_true(n <= PL_ARRAY_LEN(last));
    for (;;) {
        struct e2e_ws_frame f;
        int r = e2e_ws_read_frame(w, deadline, &f);
        if (r == 0)
            fail_msg("the slow consumer's connection did not end");
        if (r < 0)
            return events;
        if (f.opcode == E2E_WS_CLOSE) {
            assert_int_equal(e2e_ws_close_code(&f), 1008);
            e2e_ws_frame_free(&f);
            return events;
        }
        assert_int_equal(f.opcode, E2E_WS_TEXT);
        assert_true(f.fin);
        cJSON *m = cJSON_ParseWithLength((const char *)f.payload, f.len);
        assert_non_null(m);
        assert_true(is_op(m, "event"));
        size_t u = 0;
        while (u < n && !is_for(m, users[u]))
            u++;
        assert_true(u < n);
        int64_t seq = e2e_int(m, "seq");
        if (last[u] != 0 && seq != last[u] + 1)
            fail_msg("the slow consumer got %s's seq %lld after %lld", users[u], (long long)seq,
                     (long long)last[u]);
        last[u] = seq;
        events++;
        cJSON_Delete(m);
        e2e_ws_frame_free(&f);
    }
}

static void test_ws_slow_consumer(void **state)
{
    struct e2e *e = *state;
    static const char *const users[] = {"ann", "ben", "cat", "dan"};
    const struct e2e_opts opts = {.gateways = 1};
    struct collector col;
    struct driver drivers[DRIVERS];
    atomic_bool stop;
    e2e_start(e, &opts);
    add_and_fund(e, users, 4);
    int port = e->c.gateways[0].ws_port;
    collector_start(&col);
    struct client *fast = client_open(&col, e, 0);
    cJSON_Delete(client_subscribe(&col, fast, "*", e->admin_token, NULL, -1));
    /* The slow one: a small receive window, subscribed to everything, and then never reads. */
    struct e2e_ws *slow = e2e_ws_connect(port, NULL, SLOW_RCVBUF_BYTES);
    cJSON_Delete(e2e_ws_subscribe_ok(slow, "*", e->admin_token, NULL, -1));
    int64_t first_max[4];
    for (size_t i = 0; i < 4; i++) {
        topup_sync(e, users[i], 100);
        first_max[i] = e2e_user_head(e, users[i], NULL);
        cJSON_Delete(client_wait(&col, fast, "event", users[i], first_max[i], DELIVERY_TIMEOUT_MS));
    }
    int64_t before = gateway_closes_1008(e, 0);

    drivers_start(drivers, DRIVERS, e, users, 4, &stop);
    struct closes_probe p = {.e = e, .at_least = before + 1};
    bool dropped = cluster_wait_for(slow_dropped, &p, cluster_deadline_ms(SLOW_TIMEOUT_MS));
    /* A little more traffic after the drop: the fast client must get it too. */
    int64_t after_drop = e2e_user_head(e, "ann", NULL) + 8;
    if (dropped)
        cJSON_Delete(client_wait(&col, fast, "event", "ann", after_drop, DELIVERY_TIMEOUT_MS));
    long sent = drivers_stop(drivers, DRIVERS, &stop);
    if (!dropped)
        fail_msg("the slow consumer was not closed (1008) after %ld transfers in %ld ms", sent,
                 SLOW_TIMEOUT_MS);
    assert_int_equal(gateway_closes_1008(e, 0), before + 1); /* only the slow one */

    /* The fast client got every event of every user, once, in order, and is still open. */
    for (size_t i = 0; i < 4; i++)
        expect_star_stream(e, &col, fast, users[i], first_max[i]);
    pthread_mutex_lock(&col.mu);
    bool fast_closed = fast->closed;
    pthread_mutex_unlock(&col.mu);
    assert_false(fast_closed);

    /* The slow one now reads what the kernel still held for it: events, each user's in
     * order (the last one possibly cut short), then the end of the connection. It was dropped
     * at once, not sent a close frame that would wait behind the megabyte it was not reading;
     * a close frame, if one made it, says 1008. */
    int64_t got = slow_drain(slow, users, 4);
    assert_true(got > 0);
    e2e_ws_free(slow, 0);
    collector_stop(&col);
    e2e_finish(e);
}

/* ------------------------------------------------------------------ (f) 1,000 connections */

struct many_probe {
    struct collector *col;
    struct client **clients;
    size_t n;
    const char *op;
    int64_t seq;
    size_t done;
};

static bool many_have(void *arg)
{
    struct many_probe *p = arg;
    struct msg_probe m = {.op = p->op, .user = "ann", .seq = p->seq};
    pthread_mutex_lock(&p->col->mu);
    for (; p->done < p->n; p->done++) {
        if (client_find(p->clients[p->done], &m) == NULL)
            break;
    }
    pthread_mutex_unlock(&p->col->mu);
    return p->done == p->n;
}

static void wait_many(struct many_probe *p, const char *op, int64_t seq)
{
    p->op = op;
    p->seq = seq;
    p->done = 0;
    if (!cluster_wait_for(many_have, p, cluster_deadline_ms(DELIVERY_TIMEOUT_MS * 2))) {
        dump_client(p->col, p->clients[p->done]);
        fail_msg("%zu of %zu connections got \"%s\" (seq %lld)", p->done, p->n, op, (long long)seq);
    }
}

static void test_ws_thousand_connections(void **state)
{
    struct e2e *e = *state;
    const struct e2e_opts opts = {.gateways = 1};
    char token[E2E_SECRET_BYTES_MAX];
    struct collector col;
    /* Before the gateway starts: it inherits the limit. */
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < MANY_FDS) {
        rl.rlim_cur =
            rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= MANY_FDS ? MANY_FDS : rl.rlim_max;
        assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
    }
    if (rl.rlim_cur < MANY_FDS)
        fail_msg("RLIMIT_NOFILE is %llu; %d connections need %d", (unsigned long long)rl.rlim_cur,
                 MANY_CLIENTS, MANY_FDS);
    e2e_start(e, &opts);
    e2e_user_add(e, "ann");
    topup_sync(e, "ann", FUND_MINOR);
    e2e_ws_token(e, "ann", token);
    collector_start(&col);
    struct client **clients = calloc(MANY_CLIENTS, sizeof *clients);
    assert_non_null(clients);
    for (size_t i = 0; i < MANY_CLIENTS; i++) {
        clients[i] = client_open(&col, e, 0);
        e2e_ws_subscribe(clients[i]->w, "ann", token, NULL, -1);
    }
    struct many_probe p = {.col = &col, .clients = clients, .n = MANY_CLIENTS};
    wait_many(&p, "subscribed", 0);
    /* All held at once: the next event reaches every one of them. */
    int64_t head = e2e_user_head(e, "ann", NULL);
    topup_sync(e, "ann", 700);
    wait_many(&p, "event", head + 1);
    int64_t new_head = e2e_user_head(e, "ann", NULL);
    wait_many(&p, "event", new_head);
    /* Each got exactly head+1 .. new_head, and none was closed. */
    for (size_t i = 0; i < MANY_CLIENTS; i += 97) {
        cJSON *got = client_events(&col, clients[i], "ann");
        expect_exact_stream(e, "ann", got, head);
        cJSON_Delete(got);
    }
    pthread_mutex_lock(&col.mu);
    size_t closed = 0;
    for (size_t i = 0; i < MANY_CLIENTS; i++)
        closed += clients[i]->closed || clients[i]->garbage;
    pthread_mutex_unlock(&col.mu);
    assert_int_equal(closed, 0);
    free(clients);
    collector_stop(&col);
    e2e_finish(e);
}

/* ------------------------------------------------------------------ (g) epoch */

static void test_ws_epoch_mismatch(void **state)
{
    struct e2e *e = *state;
    static const char *const users[] = {"ann", "ben"};
    const struct e2e_opts opts = {.gateways = 1};
    char token[E2E_SECRET_BYTES_MAX], epoch[E2E_SECRET_BYTES_MAX];
    struct collector col;
    e2e_start(e, &opts);
    add_and_fund(e, users, 2);
    for (int i = 0; i < RESUME_ROUNDS; i++)
        drive_round(e, users, 2, i, NULL, NULL);
    e2e_ws_token(e, "ann", token);
    int64_t head = e2e_user_head(e, "ann", epoch);
    assert_true(head > 3);
    collector_start(&col);
    /* A client that remembers seq 2 of another database's stream. */
    struct client *c = client_open(&col, e, 0);
    char wrong[E2E_SECRET_BYTES_MAX + 8];
    snprintf(wrong, sizeof wrong, "x%s", epoch);
    cJSON *m = client_subscribe(&col, c, "ann", token, wrong, 2);
    assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(m, "recovered")));
    assert_string_equal(e2e_str(m, "epoch"), epoch);
    assert_int_equal(e2e_int(m, "seq"), head);
    assert_int_equal(e2e_int(m, "balance_minor"), e2e_wallet_balance(e, "ann"));
    cJSON_Delete(m);
    /* A fresh snapshot: no replay; the next event is head + 1. */
    for (int i = 0; i < 4; i++)
        drive_round(e, users, 2, i, NULL, NULL);
    expect_client_stream(e, &col, c, "ann", head);
    collector_stop(&col);
    e2e_finish(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ws_fanout_two_gateways, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_ws_resume_other_gateway, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_ws_gateway_restart, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_ws_unauthorized, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_ws_slow_consumer, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_ws_thousand_connections, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_ws_epoch_mismatch, e2e_setup, e2e_teardown),
    };
    e2e_filter_from_env();
    return cmocka_run_group_tests_name("e2e_ws", tests, NULL, NULL);
}
