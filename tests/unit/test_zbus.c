/* test_zbus.c: zbus over real libzmq sockets (tcp on 127.0.0.1 with a kernel-picked port,
 * and inproc) in one event loop: DEALER → ROUTER requests and ROUTER → DEALER replies with
 * identity frames, replies sent from inside the receive callback, PUB → SUB topic prefixes
 * and unsubscribe, a 1000-message burst spread over several budgeted passes, oversized and
 * over-long messages dropped and counted, high-water-mark refusals, unroutable ROUTER
 * sends, open failures, and zbus_close from inside receive callbacks. Every wait runs the
 * loop against a deadline timer, so a failure ends the test instead of hanging it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "log.h"
#include "pl.h"
#include "zbus.h"

#include <event2/event.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

/* Generous: loopback delivery takes microseconds, a slow CI box a few hundred ms. */
#define WAIT_MS 5000
#define OPEN_MAX 8
#define BURST_COUNT 1000
#define BODY_BYTES_MAX 64

struct fx {
    struct event_base *base;
    void *zctx;
    struct event *deadline;
    bool timed_out;
    struct zbus *open[OPEN_MAX]; /* closed by teardown when a failed test left them open */
};

/* ---------------------------------------------------------------- fixture */

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fx *f = arg;
    f->timed_out = true;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->base = event_base_new();
    assert_non_null(f->base);
    f->zctx = zmq_ctx_new();
    assert_non_null(f->zctx);
    f->deadline = evtimer_new(f->base, on_deadline, f);
    assert_non_null(f->deadline);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    for (size_t i = 0; i < OPEN_MAX; i++)
        zbus_close(f->open[i]);
    event_free(f->deadline);
    zmq_ctx_term(f->zctx); /* returns at once: every socket is closed and lingers 0 */
    event_base_free(f->base);
    free(f);
    return 0;
}

static struct zbus *fx_open(struct fx *f, int type, const char *endpoint, bool bind, int hwm,
                            zbus_recv_fn on_recv, void *arg)
{
    struct zbus *z = zbus_open(f->base, f->zctx, type, endpoint, bind, hwm, hwm, on_recv, arg);
    assert_non_null(z);
    for (size_t i = 0; i < OPEN_MAX; i++) {
        if (f->open[i] == NULL) {
            f->open[i] = z;
            return z;
        }
    }
    fail_msg("more than %d sockets", OPEN_MAX);
    return NULL;
}

/* Closes z (which fx_open returned) and forgets it. */
static void fx_close(struct fx *f, struct zbus *z)
{
    for (size_t i = 0; i < OPEN_MAX; i++) {
        if (f->open[i] == z)
            f->open[i] = NULL;
    }
    zbus_close(z);
}

/* The endpoint a "tcp://127.0.0.1:*" bind got from the kernel. */
static void fx_endpoint(struct zbus *z, char *out, size_t out_bytes)
{
    size_t len = out_bytes;
    assert_int_equal(zmq_getsockopt(zbus_socket(z), ZMQ_LAST_ENDPOINT, out, &len), 0);
    assert_non_null(strstr(out, "tcp://127.0.0.1:"));
}

typedef bool (*cond_fn)(void *arg);

/* Runs the loop until cond(arg) holds or timeout_ms pass; returns cond(arg). */
static bool pump(struct fx *f, cond_fn cond, void *arg, int timeout_ms)
{
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    f->timed_out = false;
    assert_int_equal(evtimer_add(f->deadline, &tv), 0);
    while (!cond(arg) && !f->timed_out)
        event_base_loop(f->base, EVLOOP_ONCE);
    evtimer_del(f->deadline);
    return cond(arg);
}

static bool never(void *arg)
{
    (void)arg;
    return false;
}

/* ---------------------------------------------------------------- a message log */

/* What a receiving socket saw: each message's frames as strings (NUL added). */
struct inbox {
    size_t messages_count;
    size_t frames_count[BURST_COUNT];
    char frames[BURST_COUNT][ZBUS_FRAMES_MAX][BODY_BYTES_MAX];
    size_t frame_bytes[BURST_COUNT][ZBUS_FRAMES_MAX];
};

static void inbox_add(struct inbox *in, const struct zbus_frame *frames, size_t frames_count)
{
    assert_true(frames_count >= 1);
    assert_true(frames_count <= ZBUS_FRAMES_MAX);
    assert_true(in->messages_count < BURST_COUNT);
    size_t m = in->messages_count++;
    in->frames_count[m] = frames_count;
    for (size_t i = 0; i < frames_count; i++) {
        size_t n = frames[i].bytes < BODY_BYTES_MAX - 1 ? frames[i].bytes : BODY_BYTES_MAX - 1;
        memcpy(in->frames[m][i], frames[i].data, n);
        in->frames[m][i][n] = '\0';
        in->frame_bytes[m][i] = frames[i].bytes;
    }
}

static void on_inbox(const struct zbus_frame *frames, size_t frames_count, void *arg)
{
    inbox_add(arg, frames, frames_count);
}

struct wait_count {
    const struct inbox *in;
    size_t messages_count;
};

static bool inbox_has(void *arg)
{
    const struct wait_count *w = arg;
    return w->in->messages_count >= w->messages_count;
}

static bool wait_messages(struct fx *f, const struct inbox *in, size_t messages_count)
{
    struct wait_count w = {in, messages_count};
    return pump(f, inbox_has, &w, WAIT_MS);
}

static struct inbox *inbox_new(void)
{
    struct inbox *in = calloc(1, sizeof *in);
    assert_non_null(in);
    return in;
}

static int send_strs(struct zbus *z, const char *const *strs, size_t strs_count)
{
    struct zbus_frame frames[ZBUS_FRAMES_MAX];
    assert_true(strs_count <= ZBUS_FRAMES_MAX);
    for (size_t i = 0; i < strs_count; i++)
        frames[i] = (struct zbus_frame){strs[i], strlen(strs[i])};
    return zbus_send(z, frames, strs_count);
}

/* ---------------------------------------------------------------- ROUTER / DEALER */

/* The wallet's side: answer [identity][request id][body] with [identity][request id][ack]. */
struct router_echo {
    struct zbus *router;
    struct inbox *in;
    int reply_rc;
};

static void on_router_echo(const struct zbus_frame *frames, size_t frames_count, void *arg)
{
    struct router_echo *r = arg;
    inbox_add(r->in, frames, frames_count);
    assert_int_equal(frames_count, 3);
    struct zbus_frame reply[3] = {frames[0], frames[1], {"ack", 3}};
    r->reply_rc = zbus_send(r->router, reply, 3);
}

static void test_router_dealer_tcp(void **state)
{
    struct fx *f = *state;
    struct router_echo r = {.in = inbox_new()};
    struct inbox *dealer_in = inbox_new();
    r.router = fx_open(f, ZMQ_ROUTER, "tcp://127.0.0.1:*", true, 0, on_router_echo, &r);
    char endpoint[128];
    fx_endpoint(r.router, endpoint, sizeof endpoint);
    struct zbus *dealer = fx_open(f, ZMQ_DEALER, endpoint, false, 0, on_inbox, dealer_in);

    const char *req[] = {"req-1", "{\"webhook_id\":\"wh_1\"}"};
    assert_int_equal(send_strs(dealer, req, 2), PL_OK);
    assert_true(wait_messages(f, dealer_in, 1));

    /* The ROUTER saw the DEALER's identity first, then our two frames. */
    assert_int_equal(r.in->messages_count, 1);
    assert_int_equal(r.in->frames_count[0], 3);
    assert_true(r.in->frame_bytes[0][0] > 0);
    assert_string_equal(r.in->frames[0][1], "req-1");
    assert_string_equal(r.in->frames[0][2], "{\"webhook_id\":\"wh_1\"}");
    assert_int_equal(r.reply_rc, PL_OK);
    /* The DEALER gets the reply without the identity frame. */
    assert_int_equal(dealer_in->frames_count[0], 2);
    assert_string_equal(dealer_in->frames[0][0], "req-1");
    assert_string_equal(dealer_in->frames[0][1], "ack");

    assert_int_equal(zbus_sent_count(dealer), 1);
    assert_int_equal(zbus_received_count(dealer), 1);
    assert_int_equal(zbus_sent_count(r.router), 1);
    assert_int_equal(zbus_received_count(r.router), 1);
    assert_int_equal(zbus_dropped_count(dealer), 0);
    assert_int_equal(zbus_dropped_count(r.router), 0);
    free(r.in);
    free(dealer_in);
}

/* Ping-pong where both sides send from inside their receive callbacks: each send may
 * consume the other socket's fd edge, so this hangs if a send forgets to look at
 * ZMQ_EVENTS afterwards. */
struct pingpong {
    struct zbus *dealer;
    size_t replies_count;
    int rc;
};

static void on_pong(const struct zbus_frame *frames, size_t frames_count, void *arg)
{
    struct pingpong *p = arg;
    assert_int_equal(frames_count, 2);
    char want[32];
    snprintf(want, sizeof want, "%zu", p->replies_count);
    assert_int_equal(frames[0].bytes, strlen(want));
    assert_memory_equal(frames[0].data, want, frames[0].bytes);
    p->replies_count++;
    if (p->replies_count == 200)
        return;
    snprintf(want, sizeof want, "%zu", p->replies_count);
    const char *req[] = {want, "ping"};
    p->rc = send_strs(p->dealer, req, 2);
}

static bool pingpong_done(void *arg)
{
    const struct pingpong *p = arg;
    return p->replies_count == 200 || p->rc != PL_OK;
}

static void test_echo_from_callback_inproc(void **state)
{
    struct fx *f = *state;
    struct router_echo r = {.in = inbox_new()};
    struct pingpong p = {0};
    r.router = fx_open(f, ZMQ_ROUTER, "inproc://echo", true, 0, on_router_echo, &r);
    p.dealer = fx_open(f, ZMQ_DEALER, "inproc://echo", false, 0, on_pong, &p);
    const char *req[] = {"0", "ping"};
    assert_int_equal(send_strs(p.dealer, req, 2), PL_OK);
    assert_true(pump(f, pingpong_done, &p, WAIT_MS));
    assert_int_equal(p.rc, PL_OK);
    assert_int_equal(p.replies_count, 200);
    assert_int_equal(zbus_sent_count(r.router), 200);
    assert_int_equal(zbus_received_count(p.dealer), 200);
    assert_int_equal(r.reply_rc, PL_OK);
    free(r.in);
}

/* libzmq resets ZMQ_FD whenever it processes its command queue, which a send may do: a
 * message that has already made the fd readable is then announced by nothing. zbus_send
 * must look at ZMQ_EVENTS afterwards, or the message below waits for the next arrival. */
static void test_send_consumes_edge(void **state)
{
    struct fx *f = *state;
    struct inbox *in = inbox_new();
    struct zbus *a = fx_open(f, ZMQ_DEALER, "tcp://127.0.0.1:*", true, 0, on_inbox, in);
    char endpoint[128];
    fx_endpoint(a, endpoint, sizeof endpoint);
    struct zbus *b = fx_open(f, ZMQ_DEALER, endpoint, false, 0, NULL, NULL);
    const char *first[] = {"first"};
    assert_int_equal(send_strs(b, first, 1), PL_OK);
    assert_true(wait_messages(f, in, 1)); /* connected, and a's pass left it idle */

    const char *second[] = {"second"};
    assert_int_equal(send_strs(b, second, 1), PL_OK);
    int fd = -1;
    size_t fd_bytes = sizeof fd;
    assert_int_equal(zmq_getsockopt(zbus_socket(a), ZMQ_FD, &fd, &fd_bytes), 0);
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, WAIT_MS), 1); /* the edge is up; the loop has not run */
    const char *reply[] = {"reply"};
    assert_int_equal(send_strs(a, reply, 1), PL_OK);
    assert_true(wait_messages(f, in, 2));
    assert_string_equal(in->frames[1][0], "second");
    free(in);
}

/* ---------------------------------------------------------------- PUB / SUB */

struct pubsub {
    struct fx *f;
    struct zbus *pub;
    struct inbox *alice;     /* subscribed to "user.alice." */
    struct inbox *all;       /* subscribed to "user." */
    const char *probe_topic; /* what on_probe_tick publishes */
};

static void publish(struct zbus *pub, const char *topic, const char *body)
{
    const char *msg[] = {topic, body};
    assert_int_equal(send_strs(pub, msg, 2), PL_OK);
}

static void on_probe_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct pubsub *ps = arg;
    publish(ps->pub, ps->probe_topic, "probe");
}

struct topic_wait {
    const struct inbox *in;
    const char *topic;
};

static bool has_topic(void *arg)
{
    const struct topic_wait *w = arg;
    for (size_t i = 0; i < w->in->messages_count; i++) {
        if (strcmp(w->in->frames[i][0], w->topic) == 0)
            return true;
    }
    return false;
}

/* Slow joiner: a subscription is live only once the PUB has seen it, which takes a round
 * trip. Publish a probe every 5 ms until the subscriber receives one; never sleep. */
static void await_subscription(struct pubsub *ps, const char *topic, struct inbox *in)
{
    struct timeval every = {.tv_sec = 0, .tv_usec = 5000};
    struct event *tick = event_new(ps->f->base, -1, EV_PERSIST, on_probe_tick, ps);
    assert_non_null(tick);
    ps->probe_topic = topic;
    assert_int_equal(event_add(tick, &every), 0);
    struct topic_wait w = {in, topic};
    bool live = pump(ps->f, has_topic, &w, WAIT_MS);
    event_free(tick);
    assert_true(live);
}

/* Counts the messages in in whose body is body. */
static size_t count_body(const struct inbox *in, const char *body)
{
    size_t n = 0;
    for (size_t i = 0; i < in->messages_count; i++)
        n += in->frames_count[i] == 2 && strcmp(in->frames[i][1], body) == 0;
    return n;
}

static bool has_end(void *arg)
{
    return count_body(arg, "end") > 0;
}

static void pubsub_open(struct fx *f, struct pubsub *ps, struct zbus **sub_alice,
                        struct zbus **sub_all)
{
    *ps = (struct pubsub){.f = f, .alice = inbox_new(), .all = inbox_new()};
    ps->pub = fx_open(f, ZMQ_PUB, "tcp://127.0.0.1:*", true, 0, NULL, NULL);
    char endpoint[128];
    fx_endpoint(ps->pub, endpoint, sizeof endpoint);
    *sub_alice = fx_open(f, ZMQ_SUB, endpoint, false, 0, on_inbox, ps->alice);
    *sub_all = fx_open(f, ZMQ_SUB, endpoint, false, 0, on_inbox, ps->all);
    assert_int_equal(zbus_subscribe(*sub_alice, "user.alice."), PL_OK);
    assert_int_equal(zbus_subscribe(*sub_all, "user."), PL_OK);
    await_subscription(ps, "user.alice.", ps->alice);
    await_subscription(ps, "user.alice.", ps->all);
}

static void test_pubsub_topics(void **state)
{
    struct fx *f = *state;
    struct pubsub ps;
    struct zbus *sub_alice = NULL;
    struct zbus *sub_all = NULL;
    pubsub_open(f, &ps, &sub_alice, &sub_all);

    /* Per connection, messages arrive in order: once "end" is in, so is everything before. */
    publish(ps.pub, "user.alice.", "a1");
    publish(ps.pub, "user.alicia.", "x1");
    publish(ps.pub, "user.al.", "x2");
    publish(ps.pub, "user.bob.", "b1");
    publish(ps.pub, "sys.heads", "h1");
    publish(ps.pub, "user.alice.", "end");
    assert_true(pump(f, has_end, ps.alice, WAIT_MS));
    assert_true(pump(f, has_end, ps.all, WAIT_MS));
    assert_int_equal(count_body(ps.alice, "a1"), 1);
    assert_int_equal(count_body(ps.alice, "x1") + count_body(ps.alice, "x2"), 0);
    assert_int_equal(count_body(ps.alice, "b1") + count_body(ps.alice, "h1"), 0);
    assert_int_equal(count_body(ps.all, "a1") + count_body(ps.all, "x1"), 2);
    assert_int_equal(count_body(ps.all, "x2") + count_body(ps.all, "b1"), 2);
    assert_int_equal(count_body(ps.all, "h1"), 0);
    assert_string_equal(ps.alice->frames[ps.alice->messages_count - 1][0], "user.alice.");

    free(ps.alice);
    free(ps.all);
}

static void test_pubsub_unsubscribe(void **state)
{
    struct fx *f = *state;
    struct pubsub ps;
    struct zbus *sub_alice = NULL;
    struct zbus *sub_all = NULL;
    pubsub_open(f, &ps, &sub_alice, &sub_all);

    /* Fence: subscription changes travel in order on one connection, so once the newer
     * "sys.fence." subscription is live at the PUB, the unsubscribe before it is too. */
    assert_int_equal(zbus_unsubscribe(sub_alice, "user.alice."), PL_OK);
    assert_int_equal(zbus_subscribe(sub_alice, "sys.fence."), PL_OK);
    await_subscription(&ps, "sys.fence.", ps.alice);

    publish(ps.pub, "user.alice.", "a2");
    publish(ps.pub, "sys.fence.", "end");
    assert_true(pump(f, has_end, ps.alice, WAIT_MS));
    assert_int_equal(count_body(ps.alice, "a2"), 0);
    /* "user." still gets alice's events; it never subscribed to "sys.". */
    publish(ps.pub, "user.alice.", "end");
    assert_true(pump(f, has_end, ps.all, WAIT_MS));
    assert_int_equal(count_body(ps.all, "a2"), 1);
    struct topic_wait sys = {ps.all, "sys.fence."};
    assert_false(has_topic(&sys));
    free(ps.alice);
    free(ps.all);
}

/* ---------------------------------------------------------------- budget */

/* An observer event is made active by the first message after each of its runs. zbus
 * reschedules with event_active, which queues behind it, so the observer runs between
 * two passes: at most ZBUS_RECV_BUDGET messages may arrive between its runs. */
struct burst {
    struct event *observer;
    bool observer_active;
    size_t since_yield_count;
    size_t since_yield_max;
    size_t yields_count;
    size_t received_count;
    bool out_of_order;
};

static void on_observer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct burst *b = arg;
    b->observer_active = false;
    b->since_yield_count = 0;
    b->yields_count++;
}

static void on_burst(const struct zbus_frame *frames, size_t frames_count, void *arg)
{
    struct burst *b = arg;
    char want[32];
    int n = snprintf(want, sizeof want, "%zu", b->received_count);
    if (frames_count != 1 || frames[0].bytes != (size_t)n ||
        memcmp(frames[0].data, want, frames[0].bytes) != 0)
        b->out_of_order = true;
    b->received_count++;
    b->since_yield_count++;
    if (b->since_yield_count > b->since_yield_max)
        b->since_yield_max = b->since_yield_count;
    if (!b->observer_active) {
        b->observer_active = true;
        event_active(b->observer, EV_TIMEOUT, 0);
    }
}

static bool burst_done(void *arg)
{
    const struct burst *b = arg;
    return b->received_count >= BURST_COUNT;
}

static void test_burst_budget(void **state)
{
    struct fx *f = *state;
    struct burst b = {0};
    b.observer = event_new(f->base, -1, 0, on_observer, &b);
    assert_non_null(b.observer);
    struct zbus *rx = fx_open(f, ZMQ_DEALER, "inproc://burst", true, 2 * BURST_COUNT, on_burst, &b);
    struct zbus *tx = fx_open(f, ZMQ_DEALER, "inproc://burst", false, 2 * BURST_COUNT, NULL, NULL);
    /* All of it is queued before the loop runs: the first pass finds 1000 waiting. */
    for (size_t i = 0; i < BURST_COUNT; i++) {
        char seq[32];
        int n = snprintf(seq, sizeof seq, "%zu", i);
        struct zbus_frame frame = {seq, (size_t)n};
        assert_int_equal(zbus_send(tx, &frame, 1), PL_OK);
    }
    assert_true(pump(f, burst_done, &b, WAIT_MS));
    assert_false(b.out_of_order);
    assert_int_equal(b.received_count, BURST_COUNT);
    assert_int_equal(b.since_yield_max, ZBUS_RECV_BUDGET);
    assert_true(b.yields_count >= BURST_COUNT / ZBUS_RECV_BUDGET);
    assert_int_equal(zbus_received_count(rx), BURST_COUNT);
    assert_int_equal(zbus_sent_count(tx), BURST_COUNT);
    fx_close(f, rx);
    event_free(b.observer);
}

/* ---------------------------------------------------------------- caps */

static void send_raw(struct zbus *z, const char *const *strs, size_t strs_count)
{
    for (size_t i = 0; i < strs_count; i++) {
        int flags = ZMQ_DONTWAIT | (i + 1 < strs_count ? ZMQ_SNDMORE : 0);
        assert_true(zmq_send(zbus_socket(z), strs[i], strlen(strs[i]), flags) >= 0);
    }
}

static void test_caps_dropped(void **state)
{
    struct fx *f = *state;
    struct inbox *in = inbox_new();
    struct zbus *rx = fx_open(f, ZMQ_DEALER, "inproc://caps", true, 0, on_inbox, in);
    struct zbus *tx = fx_open(f, ZMQ_DEALER, "inproc://caps", false, 0, NULL, NULL);
    char *big = malloc(ZBUS_FRAME_BYTES_MAX + 2);
    assert_non_null(big);
    memset(big, 'x', ZBUS_FRAME_BYTES_MAX + 1);
    big[ZBUS_FRAME_BYTES_MAX + 1] = '\0';

    struct zbus_frame at_max = {big, ZBUS_FRAME_BYTES_MAX};
    struct zbus_frame over_max = {big, ZBUS_FRAME_BYTES_MAX + 1};
    assert_int_equal(zbus_send(tx, &at_max, 1), PL_OK);   /* kept: exactly the cap */
    assert_int_equal(zbus_send(tx, &over_max, 1), PL_OK); /* dropped */
    const char *four[] = {"1", "2", "3", "4"};
    _Static_assert(ZBUS_FRAMES_MAX == 4, "the lists below match the cap");
    assert_int_equal(send_strs(tx, four, 4), PL_OK); /* kept */
    const char *five[] = {"1", "2", "3", "4", "5"};
    send_raw(tx, five, 5); /* dropped whole, the 5th frame not mistaken for a message */
    const char *mid_big[] = {"a", big, "c"};
    send_raw(tx, mid_big, 3); /* dropped whole: the frames after the big one too */
    const char *empty[] = {""};
    assert_int_equal(send_strs(tx, empty, 1), PL_OK); /* kept: a 0-byte frame */
    const char *end[] = {"end", "x"};
    assert_int_equal(send_strs(tx, end, 2), PL_OK);

    assert_true(wait_messages(f, in, 4));
    assert_int_equal(in->messages_count, 4);
    assert_int_equal(in->frames_count[0], 1);
    assert_int_equal(in->frame_bytes[0][0], ZBUS_FRAME_BYTES_MAX);
    assert_int_equal(in->frames_count[1], 4);
    assert_string_equal(in->frames[1][3], "4");
    assert_int_equal(in->frames_count[2], 1);
    assert_int_equal(in->frame_bytes[2][0], 0);
    assert_int_equal(in->frames_count[3], 2);
    assert_string_equal(in->frames[3][0], "end");
    assert_int_equal(zbus_dropped_count(rx), 3);
    assert_int_equal(zbus_received_count(rx), 4);
    free(big);
    free(in);
}

/* A socket opened without on_recv drops what it is sent and counts it. */
static bool dropped_two(void *arg)
{
    return zbus_dropped_count(arg) >= 2;
}

static void test_no_callback_drops(void **state)
{
    struct fx *f = *state;
    struct zbus *rx = fx_open(f, ZMQ_DEALER, "inproc://mute", true, 0, NULL, NULL);
    struct zbus *tx = fx_open(f, ZMQ_DEALER, "inproc://mute", false, 0, NULL, NULL);
    const char *msg[] = {"a", "b"};
    assert_int_equal(send_strs(tx, msg, 2), PL_OK);
    assert_int_equal(send_strs(tx, msg, 1), PL_OK);
    assert_true(pump(f, dropped_two, rx, WAIT_MS));
    assert_int_equal(zbus_received_count(rx), 0);
}

/* ---------------------------------------------------------------- send failures */

static void test_hwm_busy(void **state)
{
    struct fx *f = *state;
    const char *msg[] = {"req", "body"};
    /* Bound, no peer: no pipe at all, the first send is refused. */
    struct zbus *lonely = fx_open(f, ZMQ_DEALER, "tcp://127.0.0.1:*", true, 1, NULL, NULL);
    assert_int_equal(send_strs(lonely, msg, 2), PL_EBUSY);
    assert_int_equal(zbus_dropped_count(lonely), 1);
    assert_int_equal(zbus_sent_count(lonely), 0);

    /* Connected to a port nobody listens on: ZMQ queues up to the high-water mark, then
     * refuses; the refusal is immediate every time (no spinning, no blocking). */
    char endpoint[128];
    fx_endpoint(lonely, endpoint, sizeof endpoint);
    fx_close(f, lonely);
    struct zbus *z = fx_open(f, ZMQ_DEALER, endpoint, false, 5, NULL, NULL);
    size_t ok_count = 0;
    size_t busy_count = 0;
    for (size_t i = 0; i < 1000 && busy_count < 3; i++) {
        int rc = send_strs(z, msg, 2);
        assert_true(rc == PL_OK || rc == PL_EBUSY);
        if (rc == PL_OK)
            ok_count++;
        else
            busy_count++;
    }
    assert_int_equal(busy_count, 3);
    assert_true(ok_count >= 1);
    assert_true(ok_count <= 100);
    assert_int_equal(zbus_sent_count(z), ok_count);
    assert_int_equal(zbus_dropped_count(z), busy_count);
}

static void test_router_unroutable(void **state)
{
    struct fx *f = *state;
    const char *msg[] = {"no-such-peer", "req", "body"};
    /* Default ROUTER: libzmq drops an unroutable message silently. */
    struct zbus *quiet = fx_open(f, ZMQ_ROUTER, "inproc://quiet", true, 0, NULL, NULL);
    assert_int_equal(send_strs(quiet, msg, 3), PL_OK);
    /* With ZMQ_ROUTER_MANDATORY the caller hears about it: EHOSTUNREACH → PL_EIO. */
    struct zbus *strict = fx_open(f, ZMQ_ROUTER, "inproc://strict", true, 0, NULL, NULL);
    int one = 1;
    assert_int_equal(zmq_setsockopt(zbus_socket(strict), ZMQ_ROUTER_MANDATORY, &one, sizeof one),
                     0);
    assert_int_equal(send_strs(strict, msg, 3), PL_EIO);
    assert_int_equal(zbus_sent_count(strict), 0);
    assert_int_equal(zbus_dropped_count(strict), 0);
}

static void test_open_failures(void **state)
{
    struct fx *f = *state;
    assert_null(zbus_open(f->base, f->zctx, ZMQ_DEALER, "nope://x", true, 0, 0, NULL, NULL));
    assert_null(
        zbus_open(f->base, f->zctx, ZMQ_DEALER, "tcp://127.0.0.1:port", false, 0, 0, NULL, NULL));
    char long_endpoint[400];
    memset(long_endpoint, 'a', sizeof long_endpoint - 1);
    long_endpoint[sizeof long_endpoint - 1] = '\0';
    memcpy(long_endpoint, "inproc://", 9);
    assert_null(zbus_open(f->base, f->zctx, ZMQ_DEALER, long_endpoint, true, 0, 0, NULL, NULL));
    /* The same port twice: the second bind fails (EADDRINUSE). */
    struct zbus *first = fx_open(f, ZMQ_PUB, "tcp://127.0.0.1:*", true, 0, NULL, NULL);
    char endpoint[128];
    fx_endpoint(first, endpoint, sizeof endpoint);
    assert_null(zbus_open(f->base, f->zctx, ZMQ_PUB, endpoint, true, 0, 0, NULL, NULL));
}

/* ---------------------------------------------------------------- closing in callbacks */

struct closer {
    struct fx *f;
    struct zbus *z[2];
    size_t calls_count[2];
};

struct closer_side {
    struct closer *c;
    size_t index;
};

/* Side i closes the socket named by close_index (itself or the other one) once. */
static void on_closer(const struct zbus_frame *frames, size_t frames_count, void *arg)
{
    (void)frames;
    (void)frames_count;
    struct closer_side *s = arg;
    struct closer *c = s->c;
    c->calls_count[s->index]++;
    size_t victim = c->z[1 - s->index] != NULL ? 1 - s->index : s->index;
    if (c->z[victim] == NULL)
        return;
    fx_close(c->f, c->z[victim]);
    c->z[victim] = NULL;
}

static void send_n(struct zbus *tx, size_t n)
{
    const char *msg[] = {"m"};
    for (size_t i = 0; i < n; i++)
        assert_int_equal(send_strs(tx, msg, 1), PL_OK);
}

/* Both sockets have messages waiting when the loop starts, so both events are active in
 * one loop iteration: the first callback closes the other socket (taking its event off
 * the active queue), then itself on its next message while more are still queued. */
static void test_close_in_callback(void **state)
{
    struct fx *f = *state;
    struct closer c = {.f = f};
    struct closer_side sides[2] = {{&c, 0}, {&c, 1}};
    c.z[0] = fx_open(f, ZMQ_DEALER, "inproc://c0", true, 0, on_closer, &sides[0]);
    c.z[1] = fx_open(f, ZMQ_DEALER, "inproc://c1", true, 0, on_closer, &sides[1]);
    struct zbus *tx0 = fx_open(f, ZMQ_DEALER, "inproc://c0", false, 0, NULL, NULL);
    struct zbus *tx1 = fx_open(f, ZMQ_DEALER, "inproc://c1", false, 0, NULL, NULL);
    send_n(tx0, 10);
    send_n(tx1, 10);
    assert_false(pump(f, never, NULL, 200));
    assert_null(c.z[0]);
    assert_null(c.z[1]);
    /* One side ran twice (closed the other, then itself); the other never ran. */
    assert_int_equal(c.calls_count[0] + c.calls_count[1], 2);
    assert_true(c.calls_count[0] == 0 || c.calls_count[1] == 0);
}

int main(void)
{
    log_init("test_zbus", LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_router_dealer_tcp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_echo_from_callback_inproc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_consumes_edge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pubsub_topics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pubsub_unsubscribe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_burst_budget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_caps_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_callback_drops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hwm_busy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_router_unroutable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_in_callback, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
