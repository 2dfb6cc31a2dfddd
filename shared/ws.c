/* ws.c owns WebSocket connections on the libevent loop (docs/realtime.md, RFC 6455): the opening
 * handshake on both sides (ours: it is small), and, through wslay, framing, the close
 * handshake, pings and the outbound queue bound.
 * Must not: block the loop (no DNS: the client takes IP literals and "localhost"), know what
 * the messages mean, or hand a freed connection to a callback.
 * Invariant: every connection ends in exactly one on_closed, always run from the loop by the
 * connection's own deferred event (never inside ws_conn_send_text / ws_conn_close / a wslay
 * call), after which nothing touches it; what it queues (wslay's queue + the socket's output
 * buffer) stays within WS_QUEUE_BYTES_MAX plus frame headers and control frames.
 *
 * Driving wslay: our send callback appends every byte wslay offers to the bufferevent's output
 * buffer, so wslay never holds a half-sent frame between calls and the output buffer is the
 * one real queue (its length is what ws_conn_send_text bounds). The recv callback drains the
 * input buffer and answers WOULDBLOCK when it is empty. wslay_event_recv runs only from our
 * read path (c->in_recv marks it); sends requested meanwhile are queued and flushed when it
 * returns. A connection ends in three steps: the close handshake (or a failure) leaves wslay
 * wanting neither to read nor to write; we wait for the output to drain (bounded by
 * WS_CLOSE_TIMEOUT_MS); then conn_reap schedules conn_finish, which calls on_closed and frees.
 *
 * Close codes: a violation wslay detects in a frame header (fragmented or over-long control
 * frame, non-minimal length) makes wslay 1.1.1 queue a close *without* a status code; we
 * write a proper 1002 close frame ourselves instead and stop wslay's writer. Binary messages
 * close with 1003, invalid UTF-8 with 1007 (wslay checks as frames arrive, we check again on
 * the whole message), over-long messages with 1009 (wslay, from the frame header). A peer
 * that misses WS_PONGS_MISSED_MAX pongs is dropped without a close handshake (it would not
 * answer one either): on_closed gets 1006. A slow consumer (queue past WS_QUEUE_BYTES_MAX) is
 * dropped at once with 1008: a close frame would wait behind the megabyte it is not reading. */
#include "ws.h"

#include "ids.h"
#include "log.h"
#include "pl.h"
#include "sign.h"

#include <arpa/inet.h>
#include <assert.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <wslay/wslay.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_KEY_BYTES 16
#define WS_KEY_CHARS 24 /* base64 of 16 bytes, with its "==" */
/* One header line: long enough for a browser's Cookie header, short of the whole head. */
#define WS_HEADER_LINE_BYTES_MAX 4096
/* Header fields per head: real browsers send about 15. */
#define WS_HEADER_FIELDS_MAX 64
/* A close frame's payload is ≤ 125 bytes: 2 for the code, 123 for the reason. */
#define WS_CLOSE_REASON_BYTES_MAX 123
/* How long a closing connection waits for the peer's close frame and for its own last bytes
 * to drain before the socket is dropped: a peer that stopped reading cannot hold it. */
#define WS_CLOSE_TIMEOUT_MS 2000
/* Input kept while wslay is not reading (closing): beyond it libevent stops reading. */
#define WS_INPUT_BYTES_MAX (64 * 1024)
/* At server shutdown a connection gets one non-blocking write of at most this much. */
#define WS_SHUTDOWN_WRITE_BYTES_MAX (64 * 1024)
#define WS_HOST_BYTES_MAX 64
#define WS_TARGET_BYTES_MAX 256
_Static_assert(WS_HEADER_LINE_BYTES_MAX <= WS_HANDSHAKE_BYTES_MAX, "a line fits the head");
_Static_assert(WS_MESSAGE_BYTES_MAX < WS_INPUT_BYTES_MAX, "a message fits the input bound");

struct ws_conn {
    struct event_base *base;
    struct bufferevent *bev;
    wslay_event_context_ptr ctx;
    struct ws_callbacks cb;
    void *arg;
    struct ws_server *server;    /* NULL unless accepted by a ws_server */
    struct ws_conn *prev, *next; /* in server->conns */
    struct event *async_ev;      /* deferred work: the first read, and the final teardown */
    struct event *ping_ev;       /* server role only: every ping interval */
    struct event *close_ev;      /* bounds the close handshake and the last flush */
    bool is_client;
    bool in_recv;         /* wslay_event_recv is on the stack: queue, never send or free */
    bool close_requested; /* we sent or queued a close (or failed): on_text stops */
    bool close_pending;   /* ws_conn_close's frame waits for the messages queued before it */
    bool close_timer_armed;
    bool flushing;    /* both directions done: waiting for the output buffer to drain */
    bool reaping;     /* conn_finish is scheduled: nothing else happens */
    int close_code;   /* the first close code we decided or received; 0 = none yet */
    int pongs_missed; /* pings sent since the last pong */
    int close_pending_code;
    size_t close_reason_bytes;
    char close_reason[WS_CLOSE_REASON_BYTES_MAX];
};

struct ws_pending {
    struct ws_server *server;
    struct bufferevent *bev;
    struct ws_pending *prev, *next;
    bool answering; /* an error answer is draining; the socket closes after it */
};

struct ws_server {
    struct event_base *base;
    struct evconnlistener *listener;
    char path[WS_TARGET_BYTES_MAX];
    char *allowed_origins;
    int connections_max;
    struct ws_callbacks conn_cb;
    void (*on_open)(struct ws_conn *c, void *arg);
    void *arg;
    struct ws_conn *conns;
    size_t conns_count;
    struct ws_pending *pending;
    size_t handshakes_count; /* pending entries not answering: they count toward the limit */
    int ping_interval_ms;
    int handshake_timeout_ms;
    int dispatch_depth; /* > 0 while user code runs inside one of our read paths */
    bool freeing;
};

struct ws_dial {
    struct event_base *base;
    struct bufferevent *bev;
    struct ws_client_callbacks cb;
    void *arg;
    char accept[WS_ACCEPT_BYTES];
};

static struct timeval ws_tv_ms(int ms)
{
    assert(ms >= 0);
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    return tv;
}

/* ---------------------------------------------------------------- UTF-8 */

/* Bytes in the well-formed UTF-8 sequence at s (n bytes available, n ≥ 1), or 0. The second
 * byte's range excludes overlong forms (E0, F0), surrogates (ED) and > U+10FFFF (F4). */
static size_t utf8_seq_bytes(const uint8_t *s, size_t n)
{
    uint8_t b = s[0];
    if (b < 0x80)
        return 1;
    size_t len = 0;
    uint8_t lo = 0x80;
    uint8_t hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) {
        len = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
        len = 3;
        lo = b == 0xE0 ? 0xA0 : lo;
        hi = b == 0xED ? 0x9F : hi;
    } else if (b >= 0xF0 && b <= 0xF4) {
        len = 4;
        lo = b == 0xF0 ? 0x90 : lo;
        hi = b == 0xF4 ? 0x8F : hi;
    }
    if (len == 0 || len > n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    }
    return len;
}

bool ws_utf8_valid(const void *text, size_t bytes)
{
    assert(text != NULL || bytes == 0);
    const uint8_t *s = text;
    size_t i = 0;
    while (i < bytes) {
        size_t n = utf8_seq_bytes(s + i, bytes - i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

/* ---------------------------------------------------------------- handshake parsing */

/* A cursor over the CRLF-ended lines of a message head. */
struct head_cursor {
    const char *p;
    const char *end;
};

struct head_field {
    const char *name;
    size_t name_bytes;
    const char *value;
    size_t value_bytes;
};

/* The next line (CRLF excluded): 1; 0 when no bytes are left; -1 when malformed (a CR or LF
 * outside a CRLF pair, a NUL, no CRLF, or longer than WS_HEADER_LINE_BYTES_MAX). */
static int head_next_line(struct head_cursor *hc, const char **line, size_t *bytes)
{
    if (hc->p >= hc->end)
        return 0;
    const char *start = hc->p;
    for (const char *q = start; q < hc->end; q++) {
        if (*q == '\0' || *q == '\n')
            return -1;
        if (*q != '\r')
            continue;
        if (q + 1 >= hc->end || q[1] != '\n')
            return -1;
        *line = start;
        *bytes = (size_t)(q - start);
        hc->p = q + 2;
        return *bytes <= WS_HEADER_LINE_BYTES_MAX ? 1 : -1;
    }
    return -1;
}

/* RFC 9110 tchar. */
static bool ws_is_tchar(char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool ws_is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Splits "name: value" (OWS trimmed). -1 for an obs-fold continuation line, a missing or
 * spaced colon, a bad name character or a control character in the value. */
static int head_field_parse(const char *line, size_t bytes, struct head_field *f)
{
    assert(bytes > 0);
    size_t i = 0;
    while (i < bytes && ws_is_tchar(line[i]))
        i++;
    if (i == 0 || i >= bytes || line[i] != ':')
        return -1;
    f->name = line;
    f->name_bytes = i;
    size_t v = i + 1;
    size_t end = bytes;
    while (v < end && ws_is_ows(line[v]))
        v++;
    while (end > v && ws_is_ows(line[end - 1]))
        end--;
    for (size_t k = v; k < end; k++) {
        unsigned char ch = (unsigned char)line[k];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return -1;
    }
    f->value = line + v;
    f->value_bytes = end - v;
    return 0;
}

static bool ws_field_is(const struct head_field *f, const char *name)
{
    size_t n = strlen(name);
    return f->name_bytes == n && strncasecmp(f->name, name, n) == 0;
}

static bool ws_value_is(const struct head_field *f, const char *value)
{
    size_t n = strlen(value);
    return f->value_bytes == n && memcmp(f->value, value, n) == 0;
}

/* True when the comma-separated list v (n bytes) holds token, case-insensitively. */
static bool ws_list_has(const char *v, size_t n, const char *token)
{
    size_t token_bytes = strlen(token);
    size_t i = 0;
    while (i <= n) {
        size_t j = i;
        while (j < n && v[j] != ',')
            j++;
        size_t s = i;
        size_t e = j;
        while (s < e && ws_is_ows(v[s]))
            s++;
        while (e > s && ws_is_ows(v[e - 1]))
            e--;
        if (e - s == token_bytes && strncasecmp(v + s, token, token_bytes) == 0)
            return true;
        i = j + 1;
    }
    return false;
}

static int ws_value_copy(const struct head_field *f, char *out, size_t cap)
{
    if (f->value_bytes >= cap)
        return -1;
    memcpy(out, f->value, f->value_bytes);
    out[f->value_bytes] = '\0';
    return 0;
}

/* "GET <target> HTTP/1.1": 0 with out->path set, or 400. */
static int ws_request_line_parse(const char *line, size_t bytes, struct ws_handshake *out)
{
    static const char method[] = "GET ";
    static const char version[] = " HTTP/1.1";
    size_t m = sizeof method - 1;
    size_t v = sizeof version - 1;
    if (bytes < m + 1 + v || memcmp(line, method, m) != 0)
        return 400;
    if (memcmp(line + bytes - v, version, v) != 0)
        return 400;
    size_t target_bytes = bytes - m - v;
    const char *target = line + m;
    if (target[0] != '/' || target_bytes >= sizeof out->path)
        return 400;
    for (size_t i = 0; i < target_bytes; i++) {
        if (target[i] <= ' ' || target[i] == 0x7f)
            return 400;
    }
    memcpy(out->path, target, target_bytes);
    out->path[target_bytes] = '\0';
    return 0;
}

/* What the header fields of an upgrade request said. */
struct ws_seen {
    int host_count;
    int key_count;
    int version_count;
    int origin_count;
    bool upgrade;
    bool connection;
    bool version_13;
};

static int ws_seen_field(struct ws_seen *seen, const struct head_field *f, struct ws_handshake *out)
{
    if (ws_field_is(f, "Host")) {
        seen->host_count++;
    } else if (ws_field_is(f, "Upgrade")) {
        seen->upgrade |= ws_list_has(f->value, f->value_bytes, "websocket");
    } else if (ws_field_is(f, "Connection")) {
        seen->connection |= ws_list_has(f->value, f->value_bytes, "upgrade");
    } else if (ws_field_is(f, "Sec-WebSocket-Key")) {
        seen->key_count++;
        return ws_value_copy(f, out->key, sizeof out->key);
    } else if (ws_field_is(f, "Sec-WebSocket-Version")) {
        seen->version_count++;
        seen->version_13 = ws_value_is(f, "13");
    } else if (ws_field_is(f, "Origin")) {
        seen->origin_count++;
        out->has_origin = true;
        return ws_value_copy(f, out->origin, sizeof out->origin);
    }
    return 0;
}

/* Reads header lines up to the blank line. 0, or -1 when malformed. */
static int ws_fields_parse(struct head_cursor *hc, struct ws_seen *seen, struct ws_handshake *out)
{
    for (int i = 0; i <= WS_HEADER_FIELDS_MAX; i++) {
        const char *line = NULL;
        size_t bytes = 0;
        if (head_next_line(hc, &line, &bytes) != 1)
            return -1;
        if (bytes == 0)
            return hc->p == hc->end ? 0 : -1;
        struct head_field f;
        if (head_field_parse(line, bytes, &f) != 0 || ws_seen_field(seen, &f, out) != 0)
            return -1;
    }
    return -1;
}

static bool ws_key_valid(const char *key)
{
    uint8_t raw[WS_KEY_BYTES + 2];
    return strlen(key) == WS_KEY_CHARS && sign_base64_decode(key, raw, sizeof raw) == WS_KEY_BYTES;
}

static bool ws_path_matches(const char *target, const char *expected_path)
{
    if (expected_path == NULL)
        return true;
    size_t n = strcspn(target, "?");
    return strlen(expected_path) == n && memcmp(target, expected_path, n) == 0;
}

int ws_handshake_parse(const char *head, size_t len, const char *expected_path,
                       struct ws_handshake *out)
{
    assert(head != NULL);
    assert(out != NULL);
    memset(out, 0, sizeof *out);
    struct head_cursor hc = {head, head + len};
    const char *line = NULL;
    size_t bytes = 0;
    if (head_next_line(&hc, &line, &bytes) != 1)
        return 400;
    if (ws_request_line_parse(line, bytes, out) != 0)
        return 400;
    struct ws_seen seen = {0};
    if (ws_fields_parse(&hc, &seen, out) != 0)
        return 400;
    if (!ws_path_matches(out->path, expected_path))
        return 404;
    if (seen.host_count != 1 || seen.origin_count > 1 || !seen.upgrade || !seen.connection)
        return 400;
    if (seen.key_count != 1 || !ws_key_valid(out->key))
        return 400;
    if (seen.version_count != 1 || !seen.version_13)
        return 426;
    return 101;
}

bool ws_origin_allowed(const char *allowed_csv, const char *origin)
{
    if (allowed_csv == NULL || origin == NULL || origin[0] == '\0')
        return false;
    size_t origin_bytes = strlen(origin);
    const char *p = allowed_csv;
    while (*p != '\0') {
        size_t n = strcspn(p, ",");
        const char *s = p;
        const char *e = p + n;
        while (s < e && ws_is_ows(*s))
            s++;
        while (e > s && ws_is_ows(e[-1]))
            e--;
        if ((size_t)(e - s) == origin_bytes && strncasecmp(s, origin, origin_bytes) == 0)
            return true;
        p += n;
        if (*p == ',')
            p++;
    }
    return false;
}

void ws_accept_key(const char *key, char out[WS_ACCEPT_BYTES])
{
    assert(key != NULL);
    assert(out != NULL);
    size_t key_bytes = strlen(key);
    assert(key_bytes < sizeof((struct ws_handshake *)0)->key);
    char text[sizeof((struct ws_handshake *)0)->key + sizeof WS_GUID];
    memcpy(text, key, key_bytes);
    memcpy(text + key_bytes, WS_GUID, sizeof WS_GUID - 1);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_bytes = 0;
    /* SHA-1 is always available in libcrypto (FIPS allows it outside signatures). */
    int ok = EVP_Digest(text, key_bytes + sizeof WS_GUID - 1, md, &md_bytes, EVP_sha1(), NULL);
    assert(ok == 1);
    assert(md_bytes == 20);
    int w = sign_base64(md, md_bytes, out, WS_ACCEPT_BYTES);
    assert(w == WS_ACCEPT_BYTES - 1);
    (void)ok;
    (void)w;
}

size_t ws_head_length(const char *buf, size_t len)
{
    assert(buf != NULL || len == 0);
    for (size_t i = 0; i + 4 <= len; i++) {
        if (memcmp(buf + i, "\r\n\r\n", 4) == 0)
            return i + 4;
    }
    return 0;
}

/* ---------------------------------------------------------------- connections: wslay glue */

static ssize_t conn_wslay_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                               void *user_data)
{
    (void)flags;
    struct ws_conn *c = user_data;
    int n = evbuffer_remove(bufferevent_get_input(c->bev), buf, len);
    if (n <= 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    return n;
}

/* Takes everything: the output buffer is the queue, bounded by ws_conn_send_text. */
static ssize_t conn_wslay_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len,
                               int flags, void *user_data)
{
    (void)flags;
    struct ws_conn *c = user_data;
    if (evbuffer_add(bufferevent_get_output(c->bev), data, len) != 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

static int conn_wslay_genmask(wslay_event_context_ptr ctx, uint8_t *buf, size_t len,
                              void *user_data)
{
    (void)ctx;
    (void)user_data;
    return ids_random(buf, len) == 0 ? 0 : -1;
}

/* ---------------------------------------------------------------- connections: ending */

static int conn_code(const struct ws_conn *c)
{
    if (c->close_code != 0)
        return c->close_code;
    if (wslay_event_get_close_sent(c->ctx))
        return wslay_event_get_status_code_sent(c->ctx);
    return WSLAY_CODE_ABNORMAL_CLOSURE;
}

static void conn_unlink(struct ws_conn *c)
{
    struct ws_server *s = c->server;
    if (s == NULL)
        return;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    assert(s->conns_count > 0);
    s->conns_count--;
    c->server = NULL;
}

/* Frees what conn_alloc built; bev too when given. */
static void conn_free_parts(struct ws_conn *c)
{
    if (c->async_ev != NULL)
        event_free(c->async_ev);
    if (c->ping_ev != NULL)
        event_free(c->ping_ev);
    if (c->close_ev != NULL)
        event_free(c->close_ev);
    if (c->bev != NULL)
        bufferevent_free(c->bev);
    if (c->ctx != NULL)
        wslay_event_context_free(c->ctx);
    free(c);
}

/* The end: on_closed (exactly once, c still readable, every ws_conn_* call a no-op), then
 * free. Runs only from c's own async event or from ws_server_free. */
static void conn_finish(struct ws_conn *c)
{
    int code = conn_code(c);
    c->reaping = true;
    conn_unlink(c);
    if (c->cb.on_closed != NULL)
        c->cb.on_closed(c, code, c->arg);
    conn_free_parts(c);
}

/* Schedules conn_finish on the loop: callers up the stack may still hold c. */
static void conn_reap(struct ws_conn *c)
{
    if (c->reaping)
        return;
    c->reaping = true;
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    event_active(c->async_ev, EV_TIMEOUT, 1);
}

static void conn_arm_close_timer(struct ws_conn *c)
{
    if (c->close_timer_armed)
        return;
    struct timeval tv = ws_tv_ms(WS_CLOSE_TIMEOUT_MS);
    if (evtimer_add(c->close_ev, &tv) != 0) {
        conn_reap(c);
        return;
    }
    c->close_timer_armed = true;
}

static void conn_flush_then_reap(struct ws_conn *c)
{
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
        conn_reap(c);
        return;
    }
    c->flushing = true;
    bufferevent_disable(c->bev, EV_READ);
    conn_arm_close_timer(c);
}

/* Hands wslay's queue to the output, then the close ws_conn_close asked for: wslay sends
 * control frames first, so queueing it earlier would drop the messages queued before it. */
static int conn_send(struct ws_conn *c)
{
    if (wslay_event_want_write(c->ctx) && wslay_event_send(c->ctx) != 0)
        return -1;
    if (!c->close_pending)
        return 0;
    c->close_pending = false;
    int r = wslay_event_queue_close(c->ctx, (uint16_t)c->close_pending_code,
                                    (const uint8_t *)c->close_reason, c->close_reason_bytes);
    if (r != 0 && r != WSLAY_ERR_NO_MORE_MSG)
        return -1;
    return wslay_event_want_write(c->ctx) ? wslay_event_send(c->ctx) : 0;
}

/* Sends what wslay queued and decides whether the connection is done. Never frees. */
static void conn_settle(struct ws_conn *c)
{
    if (c->reaping || c->in_recv)
        return;
    if (conn_send(c) != 0) {
        conn_reap(c); /* out of memory: nothing more can be said */
        return;
    }
    if (!wslay_event_want_read(c->ctx) && !wslay_event_want_write(c->ctx)) {
        conn_flush_then_reap(c);
        return;
    }
    if (c->close_requested || wslay_event_get_close_sent(c->ctx))
        conn_arm_close_timer(c);
}

/* We found a violation in a whole message: close with code, read no more, do not wait for
 * the peer's answer. Called inside wslay_event_recv. */
static void conn_fail(struct ws_conn *c, int code, const char *reason)
{
    if (c->close_code == 0)
        c->close_code = code;
    c->close_requested = true;
    (void)wslay_event_queue_close(c->ctx, (uint16_t)code, (const uint8_t *)reason, strlen(reason));
    wslay_event_shutdown_read(c->ctx);
}

/* Writes a close frame with code straight to the output (masked for a client). Safe between
 * wslay calls: our send callback takes whole frames, so the output ends on a frame boundary. */
static void conn_write_close(struct ws_conn *c, int code)
{
    uint8_t frame[8];
    uint8_t mask[4] = {0, 0, 0, 0};
    size_t n = 0;
    frame[n++] = 0x80 | WSLAY_CONNECTION_CLOSE;
    frame[n++] = (uint8_t)((c->is_client ? 0x80 : 0) | 2);
    if (c->is_client) {
        if (ids_random(mask, sizeof mask) != 0)
            return;
        memcpy(frame + n, mask, sizeof mask);
        n += sizeof mask;
    }
    frame[n++] = (uint8_t)((code >> 8) ^ mask[0]);
    frame[n++] = (uint8_t)((code & 0xff) ^ mask[1]);
    (void)evbuffer_add(bufferevent_get_output(c->bev), frame, n);
}

/* wslay_event_recv failed: a frame-level protocol error (wslay queued a close without a
 * status; we send 1002 in its place) or out of memory (1011). */
static void conn_fail_frame(struct ws_conn *c, int code)
{
    if (c->close_code == 0)
        c->close_code = code;
    c->close_requested = true;
    if (!wslay_event_get_close_sent(c->ctx))
        conn_write_close(c, code);
    wslay_event_shutdown_read(c->ctx);
    wslay_event_shutdown_write(c->ctx);
}

/* ---------------------------------------------------------------- connections: events */

static void conn_deliver_text(struct ws_conn *c, const uint8_t *msg, size_t bytes)
{
    assert(bytes <= WS_MESSAGE_BYTES_MAX); /* wslay's max_recv_msg_length */
    if (!ws_utf8_valid(msg, bytes)) {
        conn_fail(c, WSLAY_CODE_INVALID_FRAME_PAYLOAD_DATA, "invalid utf-8");
        return;
    }
    if (c->close_requested || c->reaping || c->cb.on_text == NULL)
        return;
    c->cb.on_text(c, bytes == 0 ? "" : (const char *)msg, bytes, c->arg);
}

static void conn_on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *m,
                        void *user_data)
{
    (void)ctx;
    struct ws_conn *c = user_data;
    switch (m->opcode) {
    case WSLAY_TEXT_FRAME:
        conn_deliver_text(c, m->msg, m->msg_length);
        break;
    case WSLAY_BINARY_FRAME:
        conn_fail(c, WSLAY_CODE_UNSUPPORTED_DATA, "text only");
        break;
    case WSLAY_CONNECTION_CLOSE:
        if (m->msg_length == 1) {
            conn_fail_frame(c, WSLAY_CODE_PROTOCOL_ERROR); /* wslay would echo an empty close */
            break;
        }
        if (c->close_code == 0)
            c->close_code = m->status_code != 0 ? m->status_code : WSLAY_CODE_NO_STATUS_RCVD;
        break;
    case WSLAY_PONG:
        c->pongs_missed = 0;
        break;
    default:
        break; /* a ping: wslay has queued the pong */
    }
}

static void conn_receive(struct ws_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    if (c->reaping || c->flushing || !wslay_event_want_read(c->ctx)) {
        evbuffer_drain(in, evbuffer_get_length(in));
        return;
    }
    struct ws_server *s = c->server;
    c->in_recv = true;
    if (s != NULL)
        s->dispatch_depth++;
    int r = wslay_event_recv(c->ctx);
    if (s != NULL)
        s->dispatch_depth--;
    c->in_recv = false;
    if (r != 0)
        conn_fail_frame(c, r == WSLAY_ERR_NOMEM ? WSLAY_CODE_INTERNAL_SERVER_ERROR
                                                : WSLAY_CODE_PROTOCOL_ERROR);
}

static void conn_on_read(struct bufferevent *bev, void *arg)
{
    (void)bev;
    struct ws_conn *c = arg;
    conn_receive(c);
    conn_settle(c);
}

static void conn_on_write(struct bufferevent *bev, void *arg)
{
    struct ws_conn *c = arg;
    if (c->flushing && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        conn_reap(c);
}

static void conn_on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    struct ws_conn *c = arg;
    if ((what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) != 0)
        conn_reap(c);
}

/* The first pass reads what arrived with the handshake; the last one finishes c. */
static void conn_on_async(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct ws_conn *c = arg;
    if (c->reaping) {
        conn_finish(c);
        return;
    }
    conn_receive(c);
    conn_settle(c);
}

static void conn_on_close_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_reap(arg);
}

static void conn_on_ping(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct ws_conn *c = arg;
    if (c->reaping || c->close_requested)
        return;
    if (c->pongs_missed >= WS_PONGS_MISSED_MAX) {
        log_info("ws ping timeout", "pongs_missed=%d", c->pongs_missed);
        if (c->close_code == 0)
            c->close_code = WSLAY_CODE_ABNORMAL_CLOSURE;
        conn_reap(c);
        return;
    }
    c->pongs_missed++;
    struct wslay_event_msg ping = {WSLAY_PING, NULL, 0};
    (void)wslay_event_queue_msg(c->ctx, &ping); /* refused only while closing */
    conn_settle(c);
}

/* ---------------------------------------------------------------- connections: API */

static struct ws_conn *conn_alloc(struct event_base *base, bool is_client, int ping_interval_ms)
{
    static const struct wslay_event_callbacks wcb = {
        conn_wslay_recv, conn_wslay_send, conn_wslay_genmask, NULL, NULL, NULL, conn_on_msg};
    struct ws_conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->base = base;
    c->is_client = is_client;
    int r = is_client ? wslay_event_context_client_init(&c->ctx, &wcb, c)
                      : wslay_event_context_server_init(&c->ctx, &wcb, c);
    c->async_ev = event_new(base, -1, 0, conn_on_async, c);
    c->close_ev = evtimer_new(base, conn_on_close_timeout, c);
    if (!is_client)
        c->ping_ev = event_new(base, -1, EV_PERSIST, conn_on_ping, c);
    struct timeval every = ws_tv_ms(ping_interval_ms);
    bool ok = r == 0 && c->async_ev != NULL && c->close_ev != NULL;
    ok = ok && (is_client || (c->ping_ev != NULL && event_add(c->ping_ev, &every) == 0));
    if (!ok) {
        if (r != 0)
            c->ctx = NULL;
        conn_free_parts(c);
        return NULL;
    }
    wslay_event_config_set_max_recv_msg_length(c->ctx, WS_MESSAGE_BYTES_MAX);
    return c;
}

static void ws_set_nodelay(struct bufferevent *bev)
{
    int one = 1;
    evutil_socket_t fd = bufferevent_getfd(bev);
    if (fd >= 0)
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static struct ws_conn *conn_create(struct event_base *base, struct bufferevent *bev, bool is_client,
                                   const struct ws_callbacks *cb, void *arg,
                                   struct ws_server *server, int ping_interval_ms)
{
    assert(base != NULL);
    assert(bev != NULL);
    assert(cb != NULL);
    struct ws_conn *c = conn_alloc(base, is_client, ping_interval_ms);
    if (c == NULL) {
        log_warn("ws connection dropped", "reason=%s", "out_of_memory");
        bufferevent_free(bev);
        return NULL;
    }
    c->bev = bev;
    c->cb = *cb;
    c->arg = arg;
    ws_set_nodelay(bev);
    bufferevent_setcb(bev, conn_on_read, conn_on_write, conn_on_event, c);
    bufferevent_setwatermark(bev, EV_READ, 0, WS_INPUT_BYTES_MAX);
    bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    if (server != NULL) {
        c->server = server;
        c->next = server->conns;
        if (server->conns != NULL)
            server->conns->prev = c;
        server->conns = c;
        server->conns_count++;
    }
    /* Bytes that came with the handshake sit in the input already: read them next pass,
     * after the caller has had its on_open. */
    event_active(c->async_ev, EV_TIMEOUT, 1);
    return c;
}

struct ws_conn *ws_conn_new(struct event_base *base, struct bufferevent *bev, bool is_client,
                            const struct ws_callbacks *cb, void *arg)
{
    return conn_create(base, bev, is_client, cb, arg, NULL, WS_PING_INTERVAL_S * 1000);
}

size_t ws_conn_queued_bytes(const struct ws_conn *c)
{
    assert(c != NULL);
    return wslay_event_get_queued_msg_length(c->ctx) +
           evbuffer_get_length(bufferevent_get_output(c->bev));
}

int ws_conn_send_text(struct ws_conn *c, const char *msg, size_t bytes)
{
    assert(c != NULL);
    assert(msg != NULL || bytes == 0);
    if (c->reaping || c->close_requested || !wslay_event_get_write_enabled(c->ctx))
        return PL_EIO;
    if (bytes > WS_MESSAGE_BYTES_MAX || !ws_utf8_valid(msg, bytes))
        return PL_EINVAL;
    size_t queued = ws_conn_queued_bytes(c);
    if (queued + bytes > WS_QUEUE_BYTES_MAX) {
        log_warn("ws slow consumer dropped", "queued_bytes=%zu", queued);
        if (c->close_code == 0)
            c->close_code = WSLAY_CODE_POLICY_VIOLATION;
        c->close_requested = true;
        wslay_event_shutdown_read(c->ctx);
        conn_reap(c);
        return PL_ERANGE;
    }
    struct wslay_event_msg m = {WSLAY_TEXT_FRAME, (const uint8_t *)msg, bytes};
    int r = wslay_event_queue_msg(c->ctx, &m);
    if (r != 0)
        return r == WSLAY_ERR_NOMEM ? PL_ENOMEM : PL_EIO;
    conn_settle(c);
    return PL_OK;
}

static bool ws_code_sendable(int code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) ||
           (code >= 3000 && code <= 4999);
}

void ws_conn_close(struct ws_conn *c, int code, const char *reason)
{
    assert(c != NULL);
    assert(ws_code_sendable(code));
    if (c->reaping || c->close_requested)
        return;
    const char *why = reason == NULL ? "" : reason;
    size_t n = strlen(why);
    if (n > WS_CLOSE_REASON_BYTES_MAX) {
        n = WS_CLOSE_REASON_BYTES_MAX;
        while (n > 0 && ((unsigned char)why[n] & 0xC0) == 0x80)
            n--; /* never cut a UTF-8 sequence */
    }
    c->close_requested = true;
    if (c->close_code == 0)
        c->close_code = code;
    c->close_pending = true;
    c->close_pending_code = code;
    memcpy(c->close_reason, why, n);
    c->close_reason_bytes = n;
    conn_settle(c);
}

void ws_conn_set_arg(struct ws_conn *c, void *arg)
{
    assert(c != NULL);
    c->arg = arg;
}

/* ---------------------------------------------------------------- server */

static const struct {
    int status;
    const char *reason;
    const char *body;
} ws_answers[] = {
    {400, "Bad Request",
     "{\"error\":{\"code\":\"bad_request\",\"message\":\"the request is not a valid WebSocket "
     "upgrade\"}}"},
    {403, "Forbidden",
     "{\"error\":{\"code\":\"origin_not_allowed\",\"message\":\"this Origin may not open a "
     "WebSocket here (see --allowed-origin)\"}}"},
    {404, "Not Found",
     "{\"error\":{\"code\":\"not_found\",\"message\":\"the WebSocket endpoint is /ws\"}}"},
    {408, "Request Timeout",
     "{\"error\":{\"code\":\"timeout\",\"message\":\"the handshake did not complete in time\"}}"},
    {426, "Upgrade Required",
     "{\"error\":{\"code\":\"websocket_version\",\"message\":\"only WebSocket version 13 is "
     "supported\"}}"},
    {503, "Service Unavailable",
     "{\"error\":{\"code\":\"too_many_connections\",\"message\":\"the gateway holds its maximum "
     "number of connections; retry later\"}}"},
};

static void pending_free(struct ws_pending *p)
{
    struct ws_server *s = p->server;
    if (p->prev != NULL)
        p->prev->next = p->next;
    else
        s->pending = p->next;
    if (p->next != NULL)
        p->next->prev = p->prev;
    if (!p->answering) {
        assert(s->handshakes_count > 0);
        s->handshakes_count--;
    }
    if (p->bev != NULL)
        bufferevent_free(p->bev);
    free(p);
}

/* Answers status with a short JSON body; the socket closes once it is written. */
static void pending_answer(struct ws_pending *p, int status)
{
    assert(!p->answering);
    size_t i = 0;
    while (i + 1 < PL_ARRAY_LEN(ws_answers) && ws_answers[i].status != status)
        i++;
    assert(ws_answers[i].status == status);
    p->answering = true;
    p->server->handshakes_count--;
    int w = evbuffer_add_printf(bufferevent_get_output(p->bev),
                                "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                                "Content-Length: %zu\r\nConnection: close\r\n%s\r\n%s",
                                status, ws_answers[i].reason, strlen(ws_answers[i].body),
                                status == 426 ? "Sec-WebSocket-Version: 13\r\n" : "",
                                ws_answers[i].body);
    if (w < 0)
        pending_free(p);
}

/* A valid upgrade: answer 101 and hand the socket over to a ws_conn. */
static void pending_upgrade(struct ws_pending *p, const struct ws_handshake *hs, size_t head_bytes)
{
    struct ws_server *s = p->server;
    char accept[WS_ACCEPT_BYTES];
    ws_accept_key(hs->key, accept);
    struct bufferevent *bev = p->bev;
    evbuffer_drain(bufferevent_get_input(bev), head_bytes);
    int w = evbuffer_add_printf(bufferevent_get_output(bev),
                                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                                accept);
    if (w < 0) {
        pending_free(p);
        return;
    }
    p->bev = NULL;
    pending_free(p);
    bufferevent_set_timeouts(bev, NULL, NULL);
    struct ws_conn *c =
        conn_create(s->base, bev, false, &s->conn_cb, s->arg, s, s->ping_interval_ms);
    if (c == NULL)
        return;
    s->dispatch_depth++;
    s->on_open(c, s->arg);
    s->dispatch_depth--;
}

static void pending_on_read(struct bufferevent *bev, void *arg)
{
    struct ws_pending *p = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t have = evbuffer_get_length(in);
    if (p->answering || have == 0) {
        evbuffer_drain(in, have);
        return;
    }
    size_t look = have < WS_HANDSHAKE_BYTES_MAX ? have : WS_HANDSHAKE_BYTES_MAX;
    const char *head = (const char *)evbuffer_pullup(in, (ev_ssize_t)look);
    size_t head_bytes = head == NULL ? 0 : ws_head_length(head, look);
    if (head_bytes == 0) {
        if (have >= WS_HANDSHAKE_BYTES_MAX)
            pending_answer(p, 400);
        return;
    }
    struct ws_handshake hs;
    int status = ws_handshake_parse(head, head_bytes, p->server->path, &hs);
    if (status == 101 && hs.has_origin && !ws_origin_allowed(p->server->allowed_origins, hs.origin))
        status = 403;
    if (status != 101) {
        log_debug("ws handshake refused", "status=%d", status);
        pending_answer(p, status);
        return;
    }
    pending_upgrade(p, &hs, head_bytes);
}

static void pending_on_write(struct bufferevent *bev, void *arg)
{
    (void)bev;
    struct ws_pending *p = arg;
    if (p->answering)
        pending_free(p);
}

static void pending_on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    struct ws_pending *p = arg;
    bool read_timeout = (what & BEV_EVENT_TIMEOUT) != 0 && (what & BEV_EVENT_READING) != 0;
    if (read_timeout && !p->answering) {
        pending_answer(p, 408);
        return;
    }
    pending_free(p);
}

static void server_on_accept(struct evconnlistener *listener, evutil_socket_t fd,
                             struct sockaddr *sa, int socklen, void *arg)
{
    (void)listener;
    (void)sa;
    (void)socklen;
    struct ws_server *s = arg;
    struct bufferevent *bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
    struct ws_pending *p = bev == NULL ? NULL : calloc(1, sizeof *p);
    if (p == NULL) {
        log_warn("ws connection dropped", "reason=%s", "out_of_memory");
        if (bev != NULL)
            bufferevent_free(bev);
        else
            evutil_closesocket(fd);
        return;
    }
    bool full = s->conns_count + s->handshakes_count >= (size_t)s->connections_max;
    p->server = s;
    p->bev = bev;
    p->next = s->pending;
    if (s->pending != NULL)
        s->pending->prev = p;
    s->pending = p;
    s->handshakes_count++;
    struct timeval tv = ws_tv_ms(s->handshake_timeout_ms);
    bufferevent_set_timeouts(bev, &tv, &tv);
    bufferevent_setcb(bev, pending_on_read, pending_on_write, pending_on_event, p);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    if (full) {
        log_info("ws connection refused", "reason=%s max=%d", "max_connections",
                 s->connections_max);
        pending_answer(p, 503);
    }
}

static void server_on_listen_error(struct evconnlistener *listener, void *arg)
{
    (void)listener;
    (void)arg;
    int err = EVUTIL_SOCKET_ERROR();
    log_warn("ws accept failed", "err=\"%s\"", evutil_socket_error_to_string(err));
}

/* host (an IP literal, optionally in brackets, or "localhost") and port into a sockaddr. */
static int ws_addr_parse(const char *host, int port, struct sockaddr_storage *ss, ev_socklen_t *len)
{
    char text[WS_HOST_BYTES_MAX];
    size_t n = strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        host++;
        n -= 2;
    }
    if (n >= sizeof text)
        return PL_EINVAL;
    memcpy(text, host, n);
    text[n] = '\0';
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    const char *v4 = strcasecmp(text, "localhost") == 0 ? "127.0.0.1" : text;
    if (evutil_inet_pton(AF_INET, v4, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        *len = sizeof *in4;
        return 0;
    }
    if (evutil_inet_pton(AF_INET6, text, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        *len = sizeof *in6;
        return 0;
    }
    return PL_EINVAL;
}

static size_t ws_list_count(const char *csv)
{
    size_t n = 0;
    for (const char *p = csv; *p != '\0'; p++)
        n += *p == ',';
    return csv[0] == '\0' ? 0 : n + 1;
}

static void server_free_parts(struct ws_server *s)
{
    if (s->listener != NULL)
        evconnlistener_free(s->listener);
    free(s->allowed_origins);
    free(s);
}

struct ws_server *ws_server_new(struct event_base *base, const char *bind_addr, int port,
                                const char *path, const char *allowed_origins, int max_connections,
                                const struct ws_callbacks *conn_cb,
                                void (*on_open)(struct ws_conn *c, void *arg), void *arg)
{
    assert(base != NULL && bind_addr != NULL && path != NULL);
    assert(conn_cb != NULL && on_open != NULL);
    assert(port >= 0 && port <= 65535);
    assert(max_connections > 0);
    struct sockaddr_storage ss;
    ev_socklen_t ss_len = 0;
    const char *origins = allowed_origins == NULL ? "" : allowed_origins;
    if (ws_addr_parse(bind_addr, port, &ss, &ss_len) != 0 ||
        ws_list_count(origins) > WS_ORIGINS_MAX) {
        log_error("ws listen failed", "addr=%s port=%d reason=%s", bind_addr, port, "bad_config");
        return NULL;
    }
    struct ws_server *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    *s = (struct ws_server){.base = base,
                            .connections_max = max_connections,
                            .conn_cb = *conn_cb,
                            .on_open = on_open,
                            .arg = arg,
                            .ping_interval_ms = WS_PING_INTERVAL_S * 1000,
                            .handshake_timeout_ms = WS_HANDSHAKE_TIMEOUT_MS};
    s->allowed_origins = strdup(origins);
    if (s->allowed_origins == NULL || pl_strlcpy(s->path, path, sizeof s->path) != 0) {
        server_free_parts(s);
        return NULL;
    }
    s->listener = evconnlistener_new_bind(base, server_on_accept, s,
                                          LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE, -1,
                                          (struct sockaddr *)&ss, (int)ss_len);
    if (s->listener == NULL) {
        int err = EVUTIL_SOCKET_ERROR();
        log_error("ws listen failed", "addr=%s port=%d err=\"%s\"", bind_addr, port,
                  evutil_socket_error_to_string(err));
        server_free_parts(s);
        return NULL;
    }
    evconnlistener_set_error_cb(s->listener, server_on_listen_error);
    return s;
}

/* Server shutdown: a best-effort 1001 close frame pushed once to the socket, then the end. */
static void conn_shutdown(struct ws_conn *c)
{
    if (!c->reaping && !c->close_requested) {
        c->close_requested = true;
        if (c->close_code == 0)
            c->close_code = WSLAY_CODE_GOING_AWAY;
        static const char why[] = "going away";
        (void)wslay_event_queue_close(c->ctx, WSLAY_CODE_GOING_AWAY, (const uint8_t *)why,
                                      sizeof why - 1);
        (void)wslay_event_send(c->ctx);
    }
    /* The bufferevent's output is frozen at its start (only libevent drains it): copy the
     * tail out with send(). A partial frame is harmless, the socket closes right after. */
    struct evbuffer *out = bufferevent_get_output(c->bev);
    size_t n = evbuffer_get_length(out);
    evutil_socket_t fd = bufferevent_getfd(c->bev);
    if (fd >= 0 && n > 0 && n <= WS_SHUTDOWN_WRITE_BYTES_MAX) {
        const unsigned char *data = evbuffer_pullup(out, -1);
        if (data != NULL)
            (void)send(fd, data, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    }
    conn_finish(c);
}

void ws_server_free(struct ws_server *s)
{
    if (s == NULL)
        return;
    assert(s->dispatch_depth == 0); /* not from inside on_open / on_text of its connections */
    assert(!s->freeing);            /* not from an on_closed that ws_server_free caused */
    s->freeing = true;
    evconnlistener_free(s->listener);
    s->listener = NULL;
    /* Saved-next walks: an on_closed may close other connections, but that only schedules
     * their end (never frees), and it may not free this server (asserted above). */
    struct ws_pending *p_next = NULL;
    for (struct ws_pending *p = s->pending; p != NULL; p = p_next) {
        p_next = p->next;
        pending_free(p);
    }
    struct ws_conn *c_next = NULL;
    for (struct ws_conn *c = s->conns; c != NULL; c = c_next) {
        c_next = c->next;
        conn_shutdown(c);
    }
    assert(s->pending == NULL);
    assert(s->conns_count == 0);
    server_free_parts(s);
}

size_t ws_server_connections(const struct ws_server *s)
{
    assert(s != NULL);
    return s->conns_count;
}

int ws_server_port(const struct ws_server *s)
{
    assert(s != NULL);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(evconnlistener_get_fd(s->listener), (struct sockaddr *)&ss, &len) != 0)
        return PL_EIO;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

void ws_server_set_ping_interval_ms(struct ws_server *s, int interval_ms)
{
    assert(s != NULL);
    assert(interval_ms > 0);
    s->ping_interval_ms = interval_ms;
}

void ws_server_set_handshake_timeout_ms(struct ws_server *s, int timeout_ms)
{
    assert(s != NULL);
    assert(timeout_ms > 0);
    s->handshake_timeout_ms = timeout_ms;
}

/* ---------------------------------------------------------------- client */

struct ws_url {
    char host[WS_HOST_BYTES_MAX];          /* as written, brackets included */
    char authority[WS_HOST_BYTES_MAX + 8]; /* host[:port], for the Host header */
    char path[WS_TARGET_BYTES_MAX];
    int port;
};

static bool ws_visible(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] <= ' ' || s[i] == 0x7f)
            return false;
    }
    return true;
}

/* ":<1..65535>" at p; *end after it. -1 when malformed. */
static int ws_port_parse(const char *p, const char **end)
{
    int port = 0;
    size_t digits = 0;
    while (p[digits] >= '0' && p[digits] <= '9' && digits < 5) {
        port = port * 10 + (p[digits] - '0');
        digits++;
    }
    *end = p + digits;
    return digits == 0 || port == 0 || port > 65535 ? -1 : port;
}

static int ws_url_parse(const char *url, struct ws_url *u)
{
    memset(u, 0, sizeof *u);
    if (strncmp(url, "ws://", 5) != 0)
        return PL_EINVAL;
    const char *host = url + 5;
    const char *p = host[0] == '[' ? strchr(host, ']') : host + strcspn(host, ":/");
    if (p == NULL)
        return PL_EINVAL;
    p += host[0] == '[';
    size_t host_bytes = (size_t)(p - host);
    if (host_bytes == 0 || host_bytes >= sizeof u->host || !ws_visible(host, host_bytes))
        return PL_EINVAL;
    memcpy(u->host, host, host_bytes);
    u->port = 80;
    if (*p == ':')
        u->port = ws_port_parse(p + 1, &p);
    size_t authority_bytes = (size_t)(p - host);
    if (u->port < 0 || authority_bytes >= sizeof u->authority)
        return PL_EINVAL;
    memcpy(u->authority, host, authority_bytes);
    const char *path = *p == '\0' ? "/" : p;
    if (path[0] != '/' || !ws_visible(path, strlen(path)))
        return PL_EINVAL;
    return pl_strlcpy(u->path, path, sizeof u->path) == 0 ? 0 : PL_EINVAL;
}

static void dial_fail(struct ws_dial *d, const char *why)
{
    void (*on_failed)(const char *, void *) = d->cb.on_failed;
    void *arg = d->arg;
    bufferevent_free(d->bev);
    free(d);
    log_debug("ws connect failed", "reason=\"%s\"", why);
    if (on_failed != NULL)
        on_failed(why, arg);
}

/* NULL when head is a 101 that upgrades to WebSocket with the expected accept key. */
static const char *dial_check(const char *head, size_t bytes, const char *accept)
{
    struct head_cursor hc = {head, head + bytes};
    const char *line = NULL;
    size_t n = 0;
    static const char ok[] = "HTTP/1.1 101";
    size_t ok_bytes = sizeof ok - 1;
    if (head_next_line(&hc, &line, &n) != 1 || n < ok_bytes || memcmp(line, ok, ok_bytes) != 0 ||
        (n > ok_bytes && line[ok_bytes] != ' '))
        return "handshake refused";
    bool upgrade = false;
    bool connection = false;
    int accepts = 0;
    for (int i = 0; i <= WS_HEADER_FIELDS_MAX; i++) {
        struct head_field f;
        if (head_next_line(&hc, &line, &n) != 1)
            return "malformed handshake answer";
        if (n == 0)
            break;
        if (head_field_parse(line, n, &f) != 0)
            return "malformed handshake answer";
        upgrade |= ws_field_is(&f, "Upgrade") && ws_list_has(f.value, f.value_bytes, "websocket");
        connection |=
            ws_field_is(&f, "Connection") && ws_list_has(f.value, f.value_bytes, "upgrade");
        if (ws_field_is(&f, "Sec-WebSocket-Accept"))
            accepts += ws_value_is(&f, accept) ? 1 : 2;
    }
    if (!upgrade || !connection)
        return "handshake without upgrade";
    return accepts == 1 ? NULL : "bad Sec-WebSocket-Accept";
}

static void dial_on_read(struct bufferevent *bev, void *arg)
{
    struct ws_dial *d = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t have = evbuffer_get_length(in);
    size_t look = have < WS_HANDSHAKE_BYTES_MAX ? have : WS_HANDSHAKE_BYTES_MAX;
    const char *head = look == 0 ? NULL : (const char *)evbuffer_pullup(in, (ev_ssize_t)look);
    size_t head_bytes = head == NULL ? 0 : ws_head_length(head, look);
    if (head_bytes == 0) {
        if (have >= WS_HANDSHAKE_BYTES_MAX)
            dial_fail(d, "handshake answer too large");
        return;
    }
    const char *why = dial_check(head, head_bytes, d->accept);
    if (why != NULL) {
        dial_fail(d, why);
        return;
    }
    evbuffer_drain(in, head_bytes);
    /* The server pings every WS_PING_INTERVAL_S: a client that hears nothing for longer than
     * the server's own patience is talking to a frozen peer (a stopped process keeps the TCP
     * connection open). The read timeout ends it as 1006, so the caller can fail over. */
    struct timeval silent = {.tv_sec = WS_PING_INTERVAL_S * (WS_PONGS_MISSED_MAX + 1)};
    bufferevent_set_timeouts(bev, &silent, NULL);
    struct ws_client_callbacks cb = d->cb;
    void *user_arg = d->arg;
    struct event_base *base = d->base;
    free(d);
    struct ws_conn *c = conn_create(base, bev, true, &cb.conn, user_arg, NULL, 0);
    if (c == NULL) {
        if (cb.on_failed != NULL)
            cb.on_failed("out of memory", user_arg);
        return;
    }
    if (cb.on_open != NULL)
        cb.on_open(c, user_arg);
}

static void dial_on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    struct ws_dial *d = arg;
    if ((what & BEV_EVENT_CONNECTED) != 0) {
        ws_set_nodelay(d->bev);
        return;
    }
    if ((what & BEV_EVENT_TIMEOUT) != 0)
        dial_fail(d, "handshake timed out");
    else if ((what & BEV_EVENT_EOF) != 0)
        dial_fail(d, "connection closed during handshake");
    else
        dial_fail(d, "connect failed");
}

/* Queues the upgrade request in d's output (sent once connected). */
static int dial_request(struct ws_dial *d, const struct ws_url *u, const char *origin)
{
    uint8_t key_raw[WS_KEY_BYTES];
    char key[WS_KEY_CHARS + 1];
    if (ids_random(key_raw, sizeof key_raw) != 0)
        return PL_EIO;
    int w = sign_base64(key_raw, sizeof key_raw, key, sizeof key);
    assert(w == WS_KEY_CHARS);
    (void)w;
    ws_accept_key(key, d->accept);
    struct evbuffer *out = bufferevent_get_output(d->bev);
    int r = evbuffer_add_printf(out,
                                "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                                "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                                "Sec-WebSocket-Version: 13\r\n",
                                u->path, u->authority, key);
    if (r >= 0 && origin != NULL)
        r = evbuffer_add_printf(out, "Origin: %s\r\n", origin);
    if (r >= 0)
        r = evbuffer_add(out, "\r\n", 2);
    return r < 0 ? PL_ENOMEM : 0;
}

int ws_client_connect(struct event_base *base, const char *url, const char *origin,
                      const struct ws_client_callbacks *cb, void *arg)
{
    assert(base != NULL);
    assert(url != NULL);
    assert(cb != NULL);
    struct ws_url u;
    struct sockaddr_storage ss;
    ev_socklen_t ss_len = 0;
    if (ws_url_parse(url, &u) != 0 || ws_addr_parse(u.host, u.port, &ss, &ss_len) != 0)
        return PL_EINVAL; /* a name other than localhost would need DNS: refused */
    if (origin != NULL && (strlen(origin) > 255 || !ws_visible(origin, strlen(origin))))
        return PL_EINVAL;
    struct ws_dial *d = calloc(1, sizeof *d);
    if (d == NULL)
        return PL_ENOMEM;
    *d = (struct ws_dial){.base = base, .cb = *cb, .arg = arg};
    d->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    int rc = d->bev == NULL ? PL_ENOMEM : dial_request(d, &u, origin);
    if (rc != 0)
        goto fail;
    struct timeval tv = ws_tv_ms(WS_HANDSHAKE_TIMEOUT_MS);
    bufferevent_set_timeouts(d->bev, &tv, &tv);
    bufferevent_setcb(d->bev, dial_on_read, NULL, dial_on_event, d);
    bufferevent_enable(d->bev, EV_READ | EV_WRITE);
    if (bufferevent_socket_connect(d->bev, (struct sockaddr *)&ss, (int)ss_len) != 0) {
        rc = PL_EIO;
        goto fail;
    }
    return 0;
fail:
    if (d->bev != NULL)
        bufferevent_free(d->bev);
    free(d);
    return rc;
}
