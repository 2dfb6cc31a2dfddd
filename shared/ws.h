/* ws.h: WebSocket connections on the libevent loop (RFC 6455): our own opening handshake
 * (it is small) and wslay for the framing (docs/realtime.md). Used by the gateway (server side),
 * by `paylab watch` and by the tests (client side).
 *
 * Limits: a message is ≤ WS_MESSAGE_BYTES_MAX (else close 1009); text must be valid UTF-8
 * (else close 1007); protocol errors close 1002; the outbound queue is ≤ WS_QUEUE_BYTES_MAX
 * (else close 1008 "slow consumer"): one slow peer never delays the others or grows memory.
 * Server side pings every WS_PING_INTERVAL_S and closes after WS_PONGS_MISSED_MAX missed pongs. */
#ifndef PAYLAB_WS_H
#define PAYLAB_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct bufferevent;
struct ws_conn;

#define WS_MESSAGE_BYTES_MAX 4096
#define WS_QUEUE_BYTES_MAX (1024 * 1024)
#define WS_HANDSHAKE_BYTES_MAX 8192
#define WS_HANDSHAKE_TIMEOUT_MS 5000
#define WS_PING_INTERVAL_S 20
#define WS_PONGS_MISSED_MAX 2
#define WS_ORIGINS_MAX 16
#define WS_ACCEPT_BYTES 29 /* base64 of SHA-1 (28) + NUL */
_Static_assert(WS_MESSAGE_BYTES_MAX < WS_QUEUE_BYTES_MAX, "a message fits the queue");

/* ---------------------------------------------------------------- handshake */

struct ws_handshake {
    char path[256];   /* request target, e.g. "/ws" */
    char key[64];     /* Sec-WebSocket-Key as sent */
    char origin[256]; /* "" when the client sent none */
    bool has_origin;
};

/* Parses one HTTP/1.1 request head (up to and including the blank line). Returns the HTTP
 * status to answer: 101 (valid upgrade; *out filled), 400 (malformed, missing Upgrade /
 * Connection / key, key not base64 of 16 bytes, not GET), 426 (Sec-WebSocket-Version is not
 * 13: answer with "Sec-WebSocket-Version: 13"), 404 (path is not expected_path). Never
 * reads past len. */
int ws_handshake_parse(const char *head, size_t len, const char *expected_path,
                       struct ws_handshake *out);
/* True when origin is in the comma-separated allowed list (exact, case-insensitive). */
bool ws_origin_allowed(const char *allowed_csv, const char *origin);
/* Sec-WebSocket-Accept for key: base64(SHA-1(key + GUID)). */
void ws_accept_key(const char *key, char out[WS_ACCEPT_BYTES]);
/* Length of a complete request head in buf (through "\r\n\r\n"), or 0 if not complete. */
size_t ws_head_length(const char *buf, size_t len);
/* True when text is well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing
 * above U+10FFFF). */
bool ws_utf8_valid(const void *text, size_t bytes);

/* ---------------------------------------------------------------- connections */

struct ws_callbacks {
    /* A complete, valid text message (UTF-8 checked, ≤ WS_MESSAGE_BYTES_MAX). */
    void (*on_text)(struct ws_conn *c, const char *msg, size_t bytes, void *arg);
    /* The connection is gone (close handshake done, error, timeout or local close).
     * code is the close code sent or received (1000, 1002, 1007, 1008, 1009, 1006 for an
     * abrupt end). After this returns the ws_conn is freed: do not touch it again.
     * It always runs from the loop (a deferred event), never inside ws_conn_send_text or
     * ws_conn_close; inside it every ws_conn_* call on c is a no-op (send: PL_EIO).
     * A server connection whose peer misses WS_PONGS_MISSED_MAX pongs is dropped without a
     * close handshake (code 1006); a slow consumer is dropped at once (code 1008). */
    void (*on_closed)(struct ws_conn *c, int code, void *arg);
};

/* Wraps an already-upgraded socket (the 101 was sent / received): takes ownership of bev.
 * is_client selects masking (client) or the server role with pings. NULL on failure (bev
 * is then freed). */
struct ws_conn *ws_conn_new(struct event_base *base, struct bufferevent *bev, bool is_client,
                            const struct ws_callbacks *cb, void *arg);
/* Queues a text message. 0; PL_ERANGE if it would push the queue past WS_QUEUE_BYTES_MAX
 * (the connection is then closed with 1008); PL_EIO if the connection is closing; PL_EINVAL
 * if msg is over WS_MESSAGE_BYTES_MAX or not UTF-8 (the peer would close with 1009 / 1007). */
int ws_conn_send_text(struct ws_conn *c, const char *msg, size_t bytes);
/* Starts the close handshake with code (1000-1003, 1007-1011, 3000-4999) and reason (cut to
 * 123 bytes); on_closed follows once the peer answers or after a 2 s bound. */
void ws_conn_close(struct ws_conn *c, int code, const char *reason);
/* Bytes queued but not yet written (for back-pressure decisions such as paced replays). */
size_t ws_conn_queued_bytes(const struct ws_conn *c);
void ws_conn_set_arg(struct ws_conn *c, void *arg);

/* ---------------------------------------------------------------- server */

struct ws_server;
/* Listens on bind_addr:port; for each connection reads the request head (≤
 * WS_HANDSHAKE_BYTES_MAX within WS_HANDSHAKE_TIMEOUT_MS, else 400/408 and close), answers
 * 400/403 (Origin not allowed)/404/426 with a short JSON body, or 101 and then calls
 * on_open(conn, arg) — the callee sets the connection's callbacks' arg with ws_conn_set_arg.
 * Beyond max_connections a new connection gets 503 and is closed. allowed_origins is a
 * comma-separated list (copied); a request without Origin is allowed. NULL on failure. */
struct ws_server *ws_server_new(struct event_base *base, const char *bind_addr, int port,
                                const char *path, const char *allowed_origins, int max_connections,
                                const struct ws_callbacks *conn_cb,
                                void (*on_open)(struct ws_conn *c, void *arg), void *arg);
/* Closes the listener and every connection (1001 going away, one best-effort write; their
 * on_closed run before this returns). Not from inside on_open / on_text of one of its
 * connections, nor from an on_closed it caused. */
void ws_server_free(struct ws_server *s);
/* Open WebSocket connections (handshakes in progress not included). */
size_t ws_server_connections(const struct ws_server *s);
/* The port listened on (what the kernel picked when port was 0), or PL_EIO. */
int ws_server_port(const struct ws_server *s);
/* Overrides WS_PING_INTERVAL_S / WS_HANDSHAKE_TIMEOUT_MS for connections accepted from now on
 * (tests use short ones). */
void ws_server_set_ping_interval_ms(struct ws_server *s, int interval_ms);
void ws_server_set_handshake_timeout_ms(struct ws_server *s, int timeout_ms);

/* ---------------------------------------------------------------- client */

/* Connects to ws://host:port/path (blocking connect is NOT used: the handshake runs on the
 * loop), sends the upgrade with a random key and an optional origin, checks the 101 and
 * Sec-WebSocket-Accept, then calls on_open(conn, arg) or on_failed(why, arg); the connection's
 * callbacks get arg too. host is an IP literal ([::1] for IPv6) or "localhost": resolving other
 * names would block the loop. Returns 0 (one of the two callbacks follows, from the loop),
 * PL_EINVAL (bad URL, a host name, bad origin), PL_ENOMEM or PL_EIO (no callback then). */
struct ws_client_callbacks {
    void (*on_open)(struct ws_conn *c, void *arg);
    void (*on_failed)(const char *why, void *arg); /* connect or handshake failed */
    struct ws_callbacks conn;
};
int ws_client_connect(struct event_base *base, const char *url, const char *origin,
                      const struct ws_client_callbacks *cb, void *arg);

#endif
