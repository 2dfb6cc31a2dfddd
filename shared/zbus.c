/* zbus.c owns one libzmq socket per struct zbus and its place on the libevent loop.
 *
 * ZMQ_FD is not a level-triggered "readable" signal: libzmq makes it readable when its
 * internal command queue changes state, and any zmq call on the socket (send, receive,
 * reading ZMQ_EVENTS) may consume that edge while messages stay queued. So we never trust
 * the fd alone. A persistent EV_READ event on ZMQ_FD wakes a receive pass; the pass reads
 * ZMQ_EVENTS before every message and receives with ZMQ_DONTWAIT while ZMQ_POLLIN is set.
 * It stops after ZBUS_RECV_BUDGET whole messages (or ZBUS_PASS_FRAMES_MAX frames) so one
 * busy socket cannot starve the loop, and then reschedules itself with event_active: the
 * fd will not fire again for messages already queued. event_active puts the event at the
 * tail of the active queue, so every callback already due runs before the next pass. A send
 * or a (un)subscribe may also consume the edge, so each ends with the same ZMQ_EVENTS
 * check and schedules a pass when ZMQ_POLLIN is set.
 *
 * A message is collected frame by frame into z->parts. Receiving more than
 * ZBUS_FRAMES_MAX frames, or one frame over ZBUS_FRAME_BYTES_MAX, switches the message to
 * "discarding": its remaining frames are read and closed, and it counts once as dropped.
 * Because a pass may end between two frames of a message (frame cap), the partial message
 * and the discarding flag live in the struct, never on the stack.
 *
 * Must not: block (every send and receive is ZMQ_DONTWAIT, ZMQ_LINGER is 0), spin on a
 * full high-water mark (EAGAIN is counted and returned as PL_EBUSY), or run an on_recv
 * callback from anywhere but the event callback (never from zbus_send or zbus_open).
 *
 * Invariant: z->parts[0 .. parts_count) are the initialised frames of the message being
 * received, and none are held while z->discarding. While a callback runs, z->dispatching
 * is true; zbus_close on that same zbus then only marks it (close_requested, event
 * removed) and the pass frees it once the callback returns, touching nothing else.
 * zbus_close on any other zbus frees it at once: event_free also takes it off the active
 * queue, so no pass of it runs later. */
#include "zbus.h"

#include "log.h"
#include "pl.h"

#include <assert.h>
#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

/* Endpoints are short ("tcp://127.0.0.1:5555", "inproc://…"); the copy is for log lines. */
#define ZBUS_ENDPOINT_BYTES_MAX 256
/* Frames read per pass: a full budget of maximal messages; discarded frames count too. */
#define ZBUS_PASS_FRAMES_MAX (ZBUS_RECV_BUDGET * ZBUS_FRAMES_MAX)

_Static_assert(ZBUS_FRAMES_MAX >= 1, "a message has a frame");
_Static_assert(ZBUS_RECV_BUDGET >= 1, "a pass receives something");
_Static_assert(ZBUS_PASS_FRAMES_MAX >= ZBUS_FRAMES_MAX, "a whole message fits in a pass");

struct zbus {
    struct event_base *base;
    void *sock;                       /* the libzmq socket; closed only in zbus_destroy */
    struct event *ev;                 /* persistent EV_READ on ZMQ_FD; also event_active'd */
    int type;                         /* ZMQ_ROUTER, ZMQ_DEALER, ZMQ_PUB, ZMQ_SUB */
    zbus_recv_fn on_recv;             /* NULL: received messages are dropped and counted */
    void *arg;                        /* on_recv's argument */
    zmq_msg_t parts[ZBUS_FRAMES_MAX]; /* the message being received */
    size_t parts_count;               /* initialised entries of parts */
    bool mid_message;                 /* the last frame read had ZMQ_RCVMORE */
    bool discarding;      /* the current message broke a cap: drop its remaining frames */
    bool dispatching;     /* on_recv is on the stack */
    bool close_requested; /* zbus_close was called by on_recv: free after it returns */
    unsigned long sent_count;
    unsigned long received_count;
    unsigned long dropped_count;
    char endpoint[ZBUS_ENDPOINT_BYTES_MAX];
};

/* ---------------------------------------------------------------- helpers */

static void zbus_parts_close(struct zbus *z)
{
    for (size_t i = 0; i < z->parts_count; i++)
        zmq_msg_close(&z->parts[i]);
    z->parts_count = 0;
}

/* Frees everything z holds. Only called when no pass of z is on the stack. */
static void zbus_destroy(struct zbus *z)
{
    assert(!z->dispatching);
    zbus_parts_close(z);
    if (z->ev != NULL)
        event_free(z->ev);
    if (z->sock != NULL)
        zmq_close(z->sock);
    free(z);
}

/* ZMQ_EVENTS (0 when it cannot be read: a dead socket has nothing to receive). Reading it
 * also makes libzmq process its pending commands and re-arm the ZMQ_FD edge. */
static int zbus_events(struct zbus *z)
{
    int events = 0;
    size_t events_bytes = sizeof events;
    if (zmq_getsockopt(z->sock, ZMQ_EVENTS, &events, &events_bytes) != 0)
        return 0;
    return events;
}

/* After our own zmq call: the call may have consumed the fd's edge, so look at ZMQ_EVENTS
 * and schedule a receive pass if a message waits. Never receives here. */
static void zbus_kick(struct zbus *z)
{
    if (z->close_requested)
        return;
    if ((zbus_events(z) & ZMQ_POLLIN) != 0)
        event_active(z->ev, EV_READ, 0);
}

static int zbus_setopt_int(void *sock, int option, int value)
{
    return zmq_setsockopt(sock, option, &value, sizeof value) == 0 ? PL_OK : PL_EIO;
}

/* ---------------------------------------------------------------- receiving */

/* Starts discarding the current message (a cap was broken): frees what was collected. */
static void zbus_discard_begin(struct zbus *z, const char *reason)
{
    if (z->discarding)
        return;
    zbus_parts_close(z);
    z->discarding = true;
    log_warn("zbus message dropped", "endpoint=%s reason=%s", z->endpoint, reason);
}

/* Hands the complete message in z->parts to on_recv (or drops it without one). Returns
 * false when on_recv closed z: z is freed and must not be touched. */
static bool zbus_deliver(struct zbus *z)
{
    assert(z->parts_count >= 1);
    assert(z->parts_count <= ZBUS_FRAMES_MAX);
    if (z->on_recv == NULL) {
        zbus_parts_close(z);
        z->dropped_count++;
        return true;
    }
    struct zbus_frame frames[ZBUS_FRAMES_MAX];
    size_t frames_count = z->parts_count;
    for (size_t i = 0; i < frames_count; i++) {
        frames[i].data = zmq_msg_data(&z->parts[i]);
        frames[i].bytes = zmq_msg_size(&z->parts[i]);
    }
    z->received_count++;
    z->dispatching = true;
    z->on_recv(frames, frames_count, z->arg);
    z->dispatching = false;
    zbus_parts_close(z);
    if (z->close_requested) {
        zbus_destroy(z);
        return false;
    }
    return true;
}

/* Reads one frame into z->parts (or throws it away while discarding). Returns 1 when a
 * frame was read, 0 when none was waiting, PL_EIO on a socket error (logged). */
static int zbus_recv_frame(struct zbus *z)
{
    bool keep = !z->discarding && z->parts_count < ZBUS_FRAMES_MAX;
    zmq_msg_t scratch;
    memset(&scratch, 0, sizeof scratch);
    zmq_msg_t *m = keep ? &z->parts[z->parts_count] : &scratch;
    zmq_msg_init(m);
    if (zmq_msg_recv(m, z->sock, ZMQ_DONTWAIT) < 0) {
        int err = errno;
        zmq_msg_close(m);
        if (err == EAGAIN)
            return 0;
        log_warn("zbus receive failed", "endpoint=%s err=\"%s\"", z->endpoint, zmq_strerror(err));
        return PL_EIO;
    }
    z->mid_message = zmq_msg_more(m) != 0;
    if (!keep) {
        zmq_msg_close(m);
        zbus_discard_begin(z, "frames");
    } else if (zmq_msg_size(m) > ZBUS_FRAME_BYTES_MAX) {
        zmq_msg_close(m);
        zbus_discard_begin(z, "frame_bytes");
    } else {
        z->parts_count++;
    }
    return 1;
}

/* One receive pass: whole messages up to ZBUS_RECV_BUDGET (and frames up to
 * ZBUS_PASS_FRAMES_MAX). Reschedules itself when it stopped on a cap with more waiting. */
static void zbus_recv_pass(struct zbus *z)
{
    size_t messages_count = 0;
    size_t frames_count = 0;
    while (messages_count < ZBUS_RECV_BUDGET && frames_count < ZBUS_PASS_FRAMES_MAX) {
        /* Between messages ask ZMQ_EVENTS; inside one the rest is already here (atomic). */
        if (!z->mid_message && (zbus_events(z) & ZMQ_POLLIN) == 0)
            return;
        int rc = zbus_recv_frame(z);
        if (rc <= 0)
            return;
        frames_count++;
        if (z->mid_message)
            continue;
        messages_count++;
        if (z->discarding) {
            z->discarding = false;
            z->dropped_count++;
            continue;
        }
        if (!zbus_deliver(z))
            return;
    }
    /* A cap stopped us: come back after the rest of the loop had its turn. */
    if (z->mid_message || (zbus_events(z) & ZMQ_POLLIN) != 0)
        event_active(z->ev, EV_READ, 0);
}

static void zbus_on_event(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct zbus *z = arg;
    assert(!z->dispatching);
    assert(!z->close_requested);
    zbus_recv_pass(z);
}

/* ---------------------------------------------------------------- open / close */

/* Creates z->sock with our options, binds or connects it and watches its ZMQ_FD. */
static int zbus_setup(struct zbus *z, void *zctx, bool bind, int sndhwm, int rcvhwm)
{
    const char *op = "socket";
    z->sock = zmq_socket(zctx, z->type);
    if (z->sock == NULL)
        goto fail;
    op = "setsockopt";
    if (zbus_setopt_int(z->sock, ZMQ_LINGER, 0) != PL_OK)
        goto fail;
    /* libzmq would otherwise take in a frame of any size before we could drop it: a peer on
     * the unauthenticated loopback port must not make us hold hundreds of megabytes. */
    int64_t frame_bytes_max = ZBUS_FRAME_BYTES_MAX;
    if (zmq_setsockopt(z->sock, ZMQ_MAXMSGSIZE, &frame_bytes_max, sizeof frame_bytes_max) != 0)
        goto fail;
    if (sndhwm > 0 && zbus_setopt_int(z->sock, ZMQ_SNDHWM, sndhwm) != PL_OK)
        goto fail;
    if (rcvhwm > 0 && zbus_setopt_int(z->sock, ZMQ_RCVHWM, rcvhwm) != PL_OK)
        goto fail;
    op = bind ? "bind" : "connect";
    int rc = bind ? zmq_bind(z->sock, z->endpoint) : zmq_connect(z->sock, z->endpoint);
    if (rc != 0)
        goto fail;
    op = "fd";
    int fd = -1;
    size_t fd_bytes = sizeof fd;
    if (zmq_getsockopt(z->sock, ZMQ_FD, &fd, &fd_bytes) != 0)
        goto fail;
    z->ev = event_new(z->base, fd, EV_READ | EV_PERSIST, zbus_on_event, z);
    if (z->ev == NULL || event_add(z->ev, NULL) != 0) {
        log_error("zbus open failed", "endpoint=%s op=event", z->endpoint);
        return PL_ENOMEM;
    }
    return PL_OK;
fail:
    log_error("zbus open failed", "endpoint=%s op=%s err=\"%s\"", z->endpoint, op,
              zmq_strerror(errno));
    return PL_EIO;
}

struct zbus *zbus_open(struct event_base *base, void *zctx, int zmq_type, const char *endpoint,
                       bool bind, int sndhwm, int rcvhwm, zbus_recv_fn on_recv, void *arg)
{
    assert(base != NULL);
    assert(zctx != NULL);
    assert(endpoint != NULL);
    assert(sndhwm >= 0);
    assert(rcvhwm >= 0);
    assert(zmq_type == ZMQ_ROUTER || zmq_type == ZMQ_DEALER || zmq_type == ZMQ_PUB ||
           zmq_type == ZMQ_SUB);
    struct zbus *z = calloc(1, sizeof *z);
    if (z == NULL) {
        log_error("zbus open failed", "endpoint=%s op=alloc", endpoint);
        return NULL;
    }
    z->base = base;
    z->type = zmq_type;
    z->on_recv = on_recv;
    z->arg = arg;
    if (pl_strlcpy(z->endpoint, endpoint, sizeof z->endpoint) != PL_OK) {
        log_error("zbus open failed", "endpoint_bytes=%zu op=endpoint_too_long", strlen(endpoint));
        free(z);
        return NULL;
    }
    if (zbus_setup(z, zctx, bind, sndhwm, rcvhwm) != PL_OK) {
        zbus_destroy(z);
        return NULL;
    }
    zbus_kick(z);
    return z;
}

void zbus_close(struct zbus *z)
{
    if (z == NULL)
        return;
    assert(!z->close_requested); /* closed twice */
    if (z->dispatching) {
        /* Our own on_recv is on the stack: zbus_deliver frees z when it returns. */
        z->close_requested = true;
        event_del(z->ev);
        return;
    }
    zbus_destroy(z);
}

/* ---------------------------------------------------------------- sending */

/* Maps a failed zmq_send's errno; EAGAIN is the high-water mark (or no peer yet). */
static int zbus_send_error(struct zbus *z, int err, size_t frame_index)
{
    if (err == EAGAIN && frame_index == 0) {
        z->dropped_count++;
        return PL_EBUSY;
    }
    /* EHOSTUNREACH (ROUTER_MANDATORY, unknown identity) and anything else. A later frame
     * cannot hit the high-water mark (libzmq checks it on the first), so mid-message
     * failures mean the socket broke. */
    log_warn("zbus send failed", "endpoint=%s frame=%zu err=\"%s\"", z->endpoint, frame_index,
             zmq_strerror(err));
    return PL_EIO;
}

int zbus_send(struct zbus *z, const struct zbus_frame *frames, size_t frames_count)
{
    assert(z != NULL);
    assert(!z->close_requested);
    assert(frames != NULL);
    assert(frames_count >= 1);
    assert(frames_count <= ZBUS_FRAMES_MAX);
    int rc = PL_OK;
    for (size_t i = 0; i < frames_count; i++) {
        assert(frames[i].data != NULL || frames[i].bytes == 0);
        int flags = ZMQ_DONTWAIT | (i + 1 < frames_count ? ZMQ_SNDMORE : 0);
        if (zmq_send(z->sock, frames[i].data, frames[i].bytes, flags) < 0) {
            rc = zbus_send_error(z, errno, i);
            break;
        }
    }
    if (rc == PL_OK)
        z->sent_count++;
    zbus_kick(z);
    return rc;
}

/* ---------------------------------------------------------------- subscriptions */

static int zbus_subscription(struct zbus *z, int option, const char *prefix)
{
    assert(z != NULL);
    assert(z->type == ZMQ_SUB);
    assert(prefix != NULL);
    int rc = PL_OK;
    if (zmq_setsockopt(z->sock, option, prefix, strlen(prefix)) != 0) {
        log_warn("zbus subscription failed", "endpoint=%s prefix=\"%s\" err=\"%s\"", z->endpoint,
                 prefix, zmq_strerror(errno));
        rc = PL_EIO;
    }
    zbus_kick(z);
    return rc;
}

int zbus_subscribe(struct zbus *z, const char *prefix)
{
    return zbus_subscription(z, ZMQ_SUBSCRIBE, prefix);
}

int zbus_unsubscribe(struct zbus *z, const char *prefix)
{
    return zbus_subscription(z, ZMQ_UNSUBSCRIBE, prefix);
}

/* ---------------------------------------------------------------- accessors */

unsigned long zbus_sent_count(const struct zbus *z)
{
    return z->sent_count;
}

unsigned long zbus_received_count(const struct zbus *z)
{
    return z->received_count;
}

unsigned long zbus_dropped_count(const struct zbus *z)
{
    return z->dropped_count;
}

void *zbus_socket(struct zbus *z)
{
    return z->sock;
}
