/* zbus.h: ZeroMQ sockets driven by the libevent loop (docs/architecture.md).
 *
 * ZMQ_FD is only an edge-triggered hint: after every wake-up AND after each of our own
 * sends or receives we read ZMQ_EVENTS and receive with ZMQ_DONTWAIT up to a budget; when
 * the budget runs out we reschedule with event_active, because the fd will not fire again
 * for messages already queued. EAGAIN on send means the high-water mark was hit: the send
 * is refused (PL_EBUSY), counted, never spun on. */
#ifndef PAYLAB_ZBUS_H
#define PAYLAB_ZBUS_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct zbus;

/* A message has at most this many frames (ROUTER: identity + request id + body). */
#define ZBUS_FRAMES_MAX 4
/* A frame above this is dropped on receive and counted (webhook bodies are ≤ 64 KiB). */
#define ZBUS_FRAME_BYTES_MAX (256 * 1024)
/* Messages received per wake-up before yielding to the rest of the loop. */
#define ZBUS_RECV_BUDGET 64

struct zbus_frame {
    const void *data;
    size_t bytes;
};

/* Called once per complete multipart message; frames borrowed for the call only. */
typedef void (*zbus_recv_fn)(const struct zbus_frame *frames, size_t frames_count, void *arg);

/* Creates a socket of zmq_type (ZMQ_ROUTER, ZMQ_DEALER, ZMQ_PUB, ZMQ_SUB) on the shared
 * zmq context zctx, binds (bind=true) or connects to endpoint, and watches it on base.
 * on_recv may be NULL for send-only sockets (PUB). sndhwm/rcvhwm 0 keeps ZMQ's default.
 * ZMQ_LINGER is 0 so shutdown never blocks. NULL on failure (logged with the endpoint). */
struct zbus *zbus_open(struct event_base *base, void *zctx, int zmq_type, const char *endpoint,
                       bool bind, int sndhwm, int rcvhwm, zbus_recv_fn on_recv, void *arg);
/* Removes the event, closes the socket (linger 0: queued outbound messages are discarded)
 * and frees z; NULL is a no-op. Safe inside any on_recv callback: closing another zbus
 * frees it at once (a pass it had pending never runs); closing the zbus whose callback is
 * running frees it when that callback returns. Either way z is invalid afterwards. */
void zbus_close(struct zbus *z);

/* Sends frames as one multipart message without blocking. 0, PL_EBUSY (high-water mark:
 * message dropped, counted), PL_EIO (other failure). */
int zbus_send(struct zbus *z, const struct zbus_frame *frames, size_t frames_count);

/* SUB only: add / remove a topic prefix (e.g. "user.alice."). 0 or PL_EIO. */
int zbus_subscribe(struct zbus *z, const char *prefix);
int zbus_unsubscribe(struct zbus *z, const char *prefix);

/* Counters for /metrics. */
unsigned long zbus_sent_count(const struct zbus *z);
unsigned long zbus_received_count(const struct zbus *z);
unsigned long zbus_dropped_count(const struct zbus *z); /* HWM refusals + oversized frames */

/* The raw libzmq socket, for options not covered here (e.g. ZMQ_ROUTER_MANDATORY). */
void *zbus_socket(struct zbus *z);

#endif
