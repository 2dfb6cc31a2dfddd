/* test_ws.c: ws over real loopback sockets in one event loop. The parsers on their own
 * (handshake table, origins, accept key, head length, UTF-8); the server's handshake answers
 * to raw requests (400/403/404/408/426/503, oversized heads); a ws client echoing through the
 * server; conformance cases sent as hand-built frames over a plain socket (reserved bits,
 * unknown opcodes, fragmented or over-long control frames, unmasked frames, binary, bad close
 * codes, invalid UTF-8 split across fragments, 4096 vs 4097 bytes, pings interleaved with
 * fragments, the close handshake); a slow reader dropped with 1008 while another keeps up;
 * the ping timeout; closing from inside on_text; server shutdown (1001); client failures.
 * Every wait runs the loop against a deadline timer, so a failure ends the test instead of
 * hanging it; nothing sleeps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "log.h"
#include "pl.h"
#include "ws.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Generous: loopback delivery takes microseconds, a slow CI box a few hundred ms. */
#define WAIT_MS 5000
#define CONNS_MAX 8
#define CLIS_MAX 4
#define RAWS_MAX 4
#define RAW_BYTES_MAX (64 * 1024)
#define FRAME_BYTES_MAX (WS_MESSAGE_BYTES_MAX + 64)
#define PATH "/ws"
#define ORIGINS "http://127.0.0.1:8082, http://localhost:8082"

/* RFC 6455 §1.3's example key and its accept value. */
#define KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define KEY_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

#define OP_CONT 0x0
#define OP_TEXT 0x1
#define OP_BINARY 0x2
#define OP_CLOSE 0x8
#define OP_PING 0x9
#define OP_PONG 0xA

/* The server's view of its connections. */
struct srv {
    size_t opened;
    size_t closed;
    int last_code;
    size_t texts;
    char last_text[WS_MESSAGE_BYTES_MAX + 1];
    size_t last_bytes;
    bool echo;
    bool close_on_text;
    const char *welcome; /* sent from on_open when set */
    struct ws_conn *conns[CONNS_MAX];
};

/* A ws client made with ws_client_connect. */
struct cli {
    bool used;
    struct ws_conn *c;
    bool opened;
    bool failed;
    bool closed;
    int code;
    char why[128];
    size_t texts;
    size_t bytes_total;
    char last[WS_MESSAGE_BYTES_MAX + 1];
    size_t last_bytes;
};

/* A plain socket speaking hand-made frames. */
struct raw {
    bool used;
    int fd;
    struct event *ev;
    uint8_t buf[RAW_BYTES_MAX];
    size_t bytes; /* received */
    size_t off;   /* consumed by raw_next_frame / the 101 head */
    bool eof;
};

struct frame {
    bool fin;
    bool masked;
    uint8_t opcode;
    uint8_t payload[FRAME_BYTES_MAX];
    size_t bytes;
};

struct fx {
    struct event_base *base;
    struct event *deadline;
    bool timed_out;
    struct ws_server *server;
    int port;
    struct srv srv;
    struct cli clis[CLIS_MAX];
    struct raw raws[RAWS_MAX];
};

/* ---------------------------------------------------------------- the loop */

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fx *f = arg;
    f->timed_out = true;
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

/* ---------------------------------------------------------------- server side */

static void srv_on_open(struct ws_conn *c, void *arg)
{
    struct srv *s = arg;
    s->opened++;
    if (s->welcome != NULL)
        assert_int_equal(ws_conn_send_text(c, s->welcome, strlen(s->welcome)), PL_OK);
    for (size_t i = 0; i < CONNS_MAX; i++) {
        if (s->conns[i] == NULL) {
            s->conns[i] = c;
            return;
        }
    }
    fail_msg("more than %d connections", CONNS_MAX);
}

static void srv_on_text(struct ws_conn *c, const char *msg, size_t bytes, void *arg)
{
    struct srv *s = arg;
    assert_true(bytes <= WS_MESSAGE_BYTES_MAX);
    s->texts++;
    memcpy(s->last_text, msg, bytes);
    s->last_text[bytes] = '\0';
    s->last_bytes = bytes;
    if (s->echo)
        assert_int_equal(ws_conn_send_text(c, msg, bytes), PL_OK);
    if (s->close_on_text)
        ws_conn_close(c, 1000, "bye");
}

/* Fires exactly once per connection: the connection must still be in the open list. */
static void srv_on_closed(struct ws_conn *c, int code, void *arg)
{
    struct srv *s = arg;
    size_t i = 0;
    while (i < CONNS_MAX && s->conns[i] != c)
        i++;
    if (i == CONNS_MAX)
        fail_msg("on_closed for a connection not open (twice?)");
    else
        s->conns[i] = NULL;
    s->closed++;
    s->last_code = code;
    assert_int_equal(ws_conn_send_text(c, "x", 1), PL_EIO);
    ws_conn_close(c, 1000, "ignored"); /* a no-op now */
}

static const struct ws_callbacks srv_cb = {srv_on_text, srv_on_closed};

static void fx_server(struct fx *f, int max_connections, int ping_ms, int handshake_ms)
{
    ws_server_free(f->server);
    f->server = ws_server_new(f->base, "127.0.0.1", 0, PATH, ORIGINS, max_connections, &srv_cb,
                              srv_on_open, &f->srv);
    assert_non_null(f->server);
    if (ping_ms > 0)
        ws_server_set_ping_interval_ms(f->server, ping_ms);
    if (handshake_ms > 0)
        ws_server_set_handshake_timeout_ms(f->server, handshake_ms);
    f->port = ws_server_port(f->server);
    assert_true(f->port > 0);
}

static bool srv_closed_1(void *arg)
{
    return ((struct srv *)arg)->closed >= 1;
}

static bool srv_all_closed(void *arg)
{
    struct srv *s = arg;
    return s->closed == s->opened;
}

static bool srv_texts_1(void *arg)
{
    return ((struct srv *)arg)->texts >= 1;
}

/* ---------------------------------------------------------------- ws clients */

static void cli_on_open(struct ws_conn *c, void *arg)
{
    struct cli *k = arg;
    assert_false(k->opened);
    k->c = c;
    k->opened = true;
}

static void cli_on_failed(const char *why, void *arg)
{
    struct cli *k = arg;
    assert_false(k->failed);
    k->failed = true;
    snprintf(k->why, sizeof k->why, "%s", why);
}

static void cli_on_text(struct ws_conn *c, const char *msg, size_t bytes, void *arg)
{
    struct cli *k = arg;
    assert_ptr_equal(c, k->c);
    k->texts++;
    k->bytes_total += bytes;
    memcpy(k->last, msg, bytes);
    k->last[bytes] = '\0';
    k->last_bytes = bytes;
}

static void cli_on_closed(struct ws_conn *c, int code, void *arg)
{
    struct cli *k = arg;
    assert_ptr_equal(c, k->c);
    assert_false(k->closed);
    k->closed = true;
    k->code = code;
    k->c = NULL;
}

static const struct ws_client_callbacks cli_cb = {
    cli_on_open, cli_on_failed, {cli_on_text, cli_on_closed}};

static bool cli_settled(void *arg)
{
    struct cli *k = arg;
    return k->opened || k->failed;
}

static bool cli_gone(void *arg)
{
    struct cli *k = arg;
    return k->closed || k->failed || !k->used;
}

static bool cli_texts_1(void *arg)
{
    return ((struct cli *)arg)->texts >= 1;
}

static struct cli *cli_new(struct fx *f)
{
    for (size_t i = 0; i < CLIS_MAX; i++) {
        if (!f->clis[i].used) {
            f->clis[i] = (struct cli){.used = true};
            return &f->clis[i];
        }
    }
    fail_msg("more than %d clients", CLIS_MAX);
    return NULL;
}

/* Starts a client on url and runs the loop until it opened or failed. */
static struct cli *cli_dial(struct fx *f, const char *url, const char *origin)
{
    struct cli *k = cli_new(f);
    assert_int_equal(ws_client_connect(f->base, url, origin, &cli_cb, k), 0);
    assert_true(pump(f, cli_settled, k, WAIT_MS));
    return k;
}

static struct cli *cli_open(struct fx *f)
{
    char url[64];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d%s", f->port, PATH);
    struct cli *k = cli_dial(f, url, NULL);
    assert_true(k->opened);
    return k;
}

/* ---------------------------------------------------------------- raw sockets and frames */

static void raw_fill(struct raw *r)
{
    while (!r->eof && r->bytes < RAW_BYTES_MAX) {
        ssize_t n = recv(r->fd, r->buf + r->bytes, RAW_BYTES_MAX - r->bytes, MSG_DONTWAIT);
        if (n > 0) {
            r->bytes += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        r->eof = true; /* 0, or ECONNRESET: either way the server is gone */
    }
}

static void raw_on_readable(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct raw *r = arg;
    raw_fill(r);
    if (r->eof)
        event_del(r->ev);
}

/* Connects a plain socket (rcvbuf_bytes > 0 shrinks its receive buffer first). */
static struct raw *raw_open(struct fx *f, int rcvbuf_bytes)
{
    struct raw *r = NULL;
    for (size_t i = 0; i < RAWS_MAX && r == NULL; i++)
        r = f->raws[i].used ? NULL : &f->raws[i];
    assert_non_null(r);
    memset(r, 0, sizeof *r);
    r->used = true;
    r->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(r->fd >= 0);
    if (rcvbuf_bytes > 0)
        assert_int_equal(
            setsockopt(r->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf_bytes, sizeof rcvbuf_bytes), 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)f->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* Blocking is fine here: the kernel completes it from the listen backlog. */
    assert_int_equal(connect(r->fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(fcntl(r->fd, F_SETFL, fcntl(r->fd, F_GETFL) | O_NONBLOCK), 0);
    r->ev = event_new(f->base, r->fd, EV_READ | EV_PERSIST, raw_on_readable, r);
    assert_non_null(r->ev);
    assert_int_equal(event_add(r->ev, NULL), 0);
    return r;
}

static void raw_close(struct raw *r)
{
    if (!r->used)
        return;
    event_free(r->ev);
    close(r->fd);
    r->used = false;
}

static void raw_send(struct fx *f, struct raw *r, const void *data, size_t n)
{
    const uint8_t *p = data;
    size_t sent = 0;
    for (int tries = 0; sent < n && tries < 1000; tries++) {
        ssize_t w = send(r->fd, p + sent, n - sent, MSG_NOSIGNAL);
        if (w > 0)
            sent += (size_t)w;
        else
            event_base_loop(f->base, EVLOOP_NONBLOCK);
    }
    assert_int_equal(sent, n);
}

static void raw_send_str(struct fx *f, struct raw *r, const char *s)
{
    raw_send(f, r, s, strlen(s));
}

/* One frame: fin, rsv bits (0x40 = RSV1), opcode, masked with a fixed key when masked. */
static size_t frame_build(uint8_t *out, size_t cap, bool fin, uint8_t rsv, uint8_t opcode,
                          bool masked, const void *payload, size_t n)
{
    static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    assert_true(n + 14 <= cap);
    size_t h = 0;
    out[h++] = (uint8_t)((fin ? 0x80 : 0) | rsv | opcode);
    uint8_t mask_bit = masked ? 0x80 : 0;
    if (n < 126) {
        out[h++] = (uint8_t)(mask_bit | n);
    } else {
        assert_true(n <= 0xffff);
        out[h++] = mask_bit | 126;
        out[h++] = (uint8_t)(n >> 8);
        out[h++] = (uint8_t)(n & 0xff);
    }
    if (masked) {
        memcpy(out + h, key, 4);
        h += 4;
    }
    const uint8_t *p = payload;
    for (size_t i = 0; i < n; i++)
        out[h + i] = masked ? (uint8_t)(p[i] ^ key[i % 4]) : p[i];
    return h + n;
}

static void raw_send_frame(struct fx *f, struct raw *r, bool fin, uint8_t rsv, uint8_t opcode,
                           bool masked, const void *payload, size_t n)
{
    static uint8_t frame[FRAME_BYTES_MAX];
    size_t bytes = frame_build(frame, sizeof frame, fin, rsv, opcode, masked, payload, n);
    raw_send(f, r, frame, bytes);
}

/* Frame length at b (n bytes), or 0 while incomplete. */
static size_t frame_parse(const uint8_t *b, size_t n, struct frame *fr)
{
    if (n < 2)
        return 0;
    size_t len = b[1] & 0x7f;
    size_t h = 2;
    if (len == 126) {
        if (n < 4)
            return 0;
        len = ((size_t)b[2] << 8) | b[3];
        h = 4;
    }
    assert_true(len != 127); /* never that long here */
    fr->masked = (b[1] & 0x80) != 0;
    if (n < h + len)
        return 0;
    assert_true(len <= sizeof fr->payload);
    fr->fin = (b[0] & 0x80) != 0;
    fr->opcode = b[0] & 0x0f;
    fr->bytes = len;
    memcpy(fr->payload, b + h, len);
    return h + len;
}

static bool raw_has_head(void *arg)
{
    struct raw *r = arg;
    return r->eof || ws_head_length((const char *)r->buf, r->bytes) > 0;
}

static bool raw_has_frame(void *arg)
{
    struct raw *r = arg;
    struct frame fr;
    return r->eof || frame_parse(r->buf + r->off, r->bytes - r->off, &fr) > 0;
}

static bool raw_is_eof(void *arg)
{
    return ((struct raw *)arg)->eof;
}

/* The status of the HTTP answer, or 0 when the socket closed without one. */
static int raw_status(struct fx *f, struct raw *r)
{
    assert_true(pump(f, raw_has_head, r, WAIT_MS));
    size_t head = ws_head_length((const char *)r->buf, r->bytes);
    if (head == 0)
        return 0;
    assert_true(r->bytes >= 12);
    assert_memory_equal(r->buf, "HTTP/1.1 ", 9);
    r->off = head;
    return (r->buf[9] - '0') * 100 + (r->buf[10] - '0') * 10 + (r->buf[11] - '0');
}

static bool raw_answer_has(const struct raw *r, const char *text)
{
    size_t n = strlen(text);
    for (size_t i = 0; i + n <= r->bytes; i++) {
        if (memcmp(r->buf + i, text, n) == 0)
            return true;
    }
    return false;
}

#define REQ_LINE "GET /ws HTTP/1.1\r\n"
#define H_HOST "Host: 127.0.0.1:8083\r\n"
#define H_UPGRADE "Upgrade: websocket\r\n"
#define H_CONN "Connection: Upgrade\r\n"
#define H_KEY "Sec-WebSocket-Key: " KEY "\r\n"
#define H_VER "Sec-WebSocket-Version: 13\r\n"
#define GOOD_REQ REQ_LINE H_HOST H_UPGRADE H_CONN H_KEY H_VER "\r\n"

/* Opens a raw socket and upgrades it; the server has its connection when this returns. */
static struct raw *raw_upgraded(struct fx *f, int rcvbuf_bytes)
{
    size_t opened = f->srv.opened;
    struct raw *r = raw_open(f, rcvbuf_bytes);
    raw_send_str(f, r, GOOD_REQ);
    assert_int_equal(raw_status(f, r), 101);
    assert_true(f->srv.opened == opened + 1);
    return r;
}

static void raw_next_frame(struct fx *f, struct raw *r, struct frame *fr)
{
    assert_true(pump(f, raw_has_frame, r, WAIT_MS));
    size_t n = frame_parse(r->buf + r->off, r->bytes - r->off, fr);
    assert_true(n > 0);
    assert_false(fr->masked); /* servers never mask */
    r->off += n;
}

/* The next frame is a close with code, then the server closes the TCP connection. */
static void raw_expect_close(struct fx *f, struct raw *r, int code)
{
    struct frame fr;
    raw_next_frame(f, r, &fr);
    assert_int_equal(fr.opcode, OP_CLOSE);
    assert_true(fr.bytes >= 2);
    assert_int_equal((fr.payload[0] << 8) | fr.payload[1], code);
    assert_true(pump(f, raw_is_eof, r, WAIT_MS));
}

/* ---------------------------------------------------------------- fixture */

static int setup(void **state)
{
    log_init("test_ws", LOG_ERROR);
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->base = event_base_new();
    assert_non_null(f->base);
    f->deadline = evtimer_new(f->base, on_deadline, f);
    assert_non_null(f->deadline);
    fx_server(f, 4, 0, 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    ws_server_free(f->server); /* closes what a failed test left open (1001) */
    for (size_t i = 0; i < CLIS_MAX; i++)
        assert_true(pump(f, cli_gone, &f->clis[i], WAIT_MS));
    for (size_t i = 0; i < RAWS_MAX; i++)
        raw_close(&f->raws[i]);
    event_free(f->deadline);
    event_base_free(f->base);
    free(f);
    return 0;
}

/* ---------------------------------------------------------------- parsers */

static void test_accept_key(void **state)
{
    (void)state;
    char out[WS_ACCEPT_BYTES];
    ws_accept_key(KEY, out);
    assert_string_equal(out, KEY_ACCEPT);
}

static void test_head_length(void **state)
{
    (void)state;
    const char *head = "GET / HTTP/1.1\r\n\r\nrest";
    assert_int_equal(ws_head_length(head, strlen(head)), 18);
    assert_int_equal(ws_head_length(head, 17), 0);
    assert_int_equal(ws_head_length(head, 18), 18);
    assert_int_equal(ws_head_length("", 0), 0);
    assert_int_equal(ws_head_length("\n\n", 2), 0);
}

static void test_utf8(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        bool valid;
    } cases[] = {
        {"", true},
        {"plain ascii", true},
        {"\xC3\xA9", true},         /* é */
        {"\xE2\x82\xAC", true},     /* € */
        {"\xEF\xBF\xBF", true},     /* U+FFFF */
        {"\xED\x9F\xBF", true},     /* U+D7FF, just below the surrogates */
        {"\xF0\x9F\x98\x80", true}, /* U+1F600 */
        {"\xF4\x8F\xBF\xBF", true}, /* U+10FFFF */
        {"\xC0\x80", false},        /* overlong NUL */
        {"\xC1\xBF", false},        /* overlong */
        {"\xE0\x80\x80", false},    /* overlong */
        {"\xE0\x9F\xBF", false},    /* overlong */
        {"\xF0\x80\x80\x80", false},
        {"\xF0\x8F\xBF\xBF", false}, /* overlong */
        {"\xED\xA0\x80", false},     /* U+D800 surrogate */
        {"\xED\xBF\xBF", false},     /* U+DFFF surrogate */
        {"\xF4\x90\x80\x80", false}, /* U+110000 */
        {"\xF5\x80\x80\x80", false},
        {"\xFF", false},
        {"\xFE", false},
        {"\x80", false},         /* lone continuation */
        {"a\xC3", false},        /* truncated */
        {"\xE2\x82", false},     /* truncated */
        {"\xE2\x28\xA1", false}, /* bad continuation */
        {"\xF0\x9F\x98", false}, /* truncated 4-byte */
    };
    for (size_t i = 0; i < PL_ARRAY_LEN(cases); i++) {
        bool got = ws_utf8_valid(cases[i].s, strlen(cases[i].s));
        if (got != cases[i].valid)
            fail_msg("case %zu: got %d", i, got);
    }
    assert_true(ws_utf8_valid("a\0b", 3)); /* U+0000 is valid UTF-8 */
    assert_true(ws_utf8_valid(NULL, 0));
}

static void test_origin_allowed(void **state)
{
    (void)state;
    const char *list = " http://127.0.0.1:8082 ,http://localhost:8082,,http://[::1]:8082";
    assert_true(ws_origin_allowed(list, "http://127.0.0.1:8082"));
    assert_true(ws_origin_allowed(list, "HTTP://LOCALHOST:8082"));
    assert_true(ws_origin_allowed(list, "http://[::1]:8082"));
    assert_false(ws_origin_allowed(list, "http://localhost:808"));
    assert_false(ws_origin_allowed(list, "http://localhost:80822"));
    assert_false(ws_origin_allowed(list, "http://evil.example"));
    assert_false(ws_origin_allowed(list, ""));
    assert_false(ws_origin_allowed("", "http://localhost:8082"));
    assert_false(ws_origin_allowed(NULL, "http://localhost:8082"));
    assert_false(ws_origin_allowed(list, NULL));
}

/* Request heads and the status ws_handshake_parse must answer (path "/ws"). */
static const struct {
    const char *name;
    const char *req;
    int status;
} parse_cases[] = {
    {"good", GOOD_REQ, 101},
    {"query", "GET /ws?x=1 HTTP/1.1\r\n" H_HOST H_UPGRADE H_CONN H_KEY H_VER "\r\n", 101},
    {"case",
     REQ_LINE "host: h\r\nUPGRADE: WebSocket\r\nconnection: keep-alive, UPGRADE\r\n"
              "sec-websocket-key:" KEY "  \r\nsec-websocket-version: 13\r\n\r\n",
     101},
    {"upgrade list", REQ_LINE H_HOST "Upgrade: h2c, websocket\r\n" H_CONN H_KEY H_VER "\r\n", 101},
    {"no upgrade", REQ_LINE H_HOST H_CONN H_KEY H_VER "\r\n", 400},
    {"upgrade other", REQ_LINE H_HOST "Upgrade: h2c\r\n" H_CONN H_KEY H_VER "\r\n", 400},
    {"keep-alive only", REQ_LINE H_HOST H_UPGRADE "Connection: keep-alive\r\n" H_KEY H_VER "\r\n",
     400},
    {"connection substring",
     REQ_LINE H_HOST H_UPGRADE "Connection: upgraded\r\n" H_KEY H_VER "\r\n", 400},
    {"no host", REQ_LINE H_UPGRADE H_CONN H_KEY H_VER "\r\n", 400},
    {"two hosts", REQ_LINE H_HOST H_HOST H_UPGRADE H_CONN H_KEY H_VER "\r\n", 400},
    {"no key", REQ_LINE H_HOST H_UPGRADE H_CONN H_VER "\r\n", 400},
    {"two keys", REQ_LINE H_HOST H_UPGRADE H_CONN H_KEY H_KEY H_VER "\r\n", 400},
    {"key 15 bytes",
     REQ_LINE H_HOST H_UPGRADE H_CONN "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA\r\n" H_VER "\r\n",
     400},
    {"key of zeros",
     REQ_LINE H_HOST H_UPGRADE H_CONN "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n" H_VER
                                      "\r\n",
     101},
    {"key 17 bytes",
     REQ_LINE H_HOST H_UPGRADE H_CONN "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA=\r\n" H_VER
                                      "\r\n",
     400},
    {"key unpadded",
     REQ_LINE H_HOST H_UPGRADE H_CONN "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ\r\n" H_VER "\r\n",
     400},
    {"key bad base64",
     REQ_LINE H_HOST H_UPGRADE H_CONN "Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!==\r\n" H_VER
                                      "\r\n",
     400},
    {"version 8", REQ_LINE H_HOST H_UPGRADE H_CONN H_KEY "Sec-WebSocket-Version: 8\r\n\r\n", 426},
    {"version 130", REQ_LINE H_HOST H_UPGRADE H_CONN H_KEY "Sec-WebSocket-Version: 130\r\n\r\n",
     426},
    {"no version", REQ_LINE H_HOST H_UPGRADE H_CONN H_KEY "\r\n", 426},
    {"POST", "POST /ws HTTP/1.1\r\n" H_HOST H_UPGRADE H_CONN H_KEY H_VER "\r\n", 400},
    {"lowercase get", "get /ws HTTP/1.1\r\n" H_HOST H_UPGRADE H_CONN H_KEY H_VER "\r\n", 400},
    {"HTTP/1.0", "GET /ws HTTP/1.0\r\n" H_HOST H_UPGRADE H_CONN H_KEY H_VER "\r\n", 400},
    {"two spaces", "GET  /ws HTTP/1.1\r\n" H_HOST H_UPGRADE H_CONN H_KEY H_VER "\r\n", 400},
    {"absolute form", "GET http://h/ws HTTP/1.1\r\n" H_HOST H_UPGRADE H_CONN H_KEY H_VER "\r\n",
     400},
    {"wrong path", "GET /other HTTP/1.1\r\n" H_HOST H_UPGRADE H_CONN H_KEY H_VER "\r\n", 404},
    {"path prefix", "GET /wsx HTTP/1.1\r\n" H_HOST H_UPGRADE H_CONN H_KEY H_VER "\r\n", 404},
    {"obs-fold",
     REQ_LINE H_HOST H_UPGRADE "Connection: keep-alive,\r\n Upgrade\r\n" H_KEY H_VER "\r\n", 400},
    {"space before colon", REQ_LINE "Host : h\r\n" H_UPGRADE H_CONN H_KEY H_VER "\r\n", 400},
    {"no colon", REQ_LINE H_HOST "Upgrade websocket\r\n" H_CONN H_KEY H_VER "\r\n", 400},
    {"bare LF", REQ_LINE H_HOST H_UPGRADE "Connection: Upgrade\n" H_KEY H_VER "\r\n", 400},
    {"control char",
     REQ_LINE "Host: a\x01"
              "b\r\n" H_UPGRADE H_CONN H_KEY H_VER "\r\n",
     400},
    {"no blank line", REQ_LINE H_HOST H_UPGRADE H_CONN H_KEY H_VER, 400},
    {"empty", "", 400},
};

static void test_handshake_parse(void **state)
{
    (void)state;
    for (size_t i = 0; i < PL_ARRAY_LEN(parse_cases); i++) {
        struct ws_handshake hs;
        int got = ws_handshake_parse(parse_cases[i].req, strlen(parse_cases[i].req), PATH, &hs);
        if (got != parse_cases[i].status)
            fail_msg("%s: got %d, want %d", parse_cases[i].name, got, parse_cases[i].status);
    }
}

static void test_handshake_parse_fields(void **state)
{
    (void)state;
    struct ws_handshake hs;
    const char *req = "GET /ws?t=1 HTTP/1.1\r\n" H_HOST H_UPGRADE H_CONN H_KEY H_VER
                      "Origin:   http://localhost:8082 \r\n\r\n";
    assert_int_equal(ws_handshake_parse(req, strlen(req), PATH, &hs), 101);
    assert_string_equal(hs.path, "/ws?t=1");
    assert_string_equal(hs.key, KEY);
    assert_true(hs.has_origin);
    assert_string_equal(hs.origin, "http://localhost:8082");
    assert_int_equal(ws_handshake_parse(GOOD_REQ, strlen(GOOD_REQ), NULL, &hs), 101);
    assert_false(hs.has_origin);
    assert_string_equal(hs.origin, "");
    /* Never past len: the same request cut anywhere is refused, never read beyond. */
    for (size_t n = 0; n < strlen(GOOD_REQ); n++) {
        char *copy = malloc(n + 1);
        assert_non_null(copy);
        memcpy(copy, GOOD_REQ, n);
        assert_int_equal(ws_handshake_parse(copy, n, PATH, &hs), 400);
        free(copy);
    }
    /* A NUL inside a header line. */
    static const char nul[] = REQ_LINE "Host: a\0b\r\n" H_UPGRADE H_CONN H_KEY H_VER "\r\n";
    assert_int_equal(ws_handshake_parse(nul, sizeof nul - 1, PATH, &hs), 400);
    /* A line over the bound. */
    size_t pad = 5000;
    size_t cap = strlen(GOOD_REQ) + pad + 16;
    char *big = malloc(cap);
    assert_non_null(big);
    int w = snprintf(big, cap, "%s%s", REQ_LINE H_HOST H_UPGRADE H_CONN H_KEY H_VER, "X-Pad: ");
    memset(big + w, 'a', pad);
    memcpy(big + (size_t)w + pad, "\r\n\r\n", 4);
    assert_int_equal(ws_handshake_parse(big, (size_t)w + pad + 4, PATH, &hs), 400);
    free(big);
}

/* ---------------------------------------------------------------- handshakes on the wire */

static void expect_answer(struct fx *f, const char *req, int status, const char *must_have)
{
    struct raw *r = raw_open(f, 0);
    raw_send_str(f, r, req);
    int got = raw_status(f, r);
    if (got != status)
        fail_msg("want %d, got %d for:\n%s", status, got, req);
    if (status != 101)
        assert_true(pump(f, raw_is_eof, r, WAIT_MS)); /* the server closes after answering */
    if (must_have != NULL && !raw_answer_has(r, must_have))
        fail_msg("no \"%s\" in the answer to:\n%s", must_have, req);
    raw_close(r);
}

static void test_handshake_answers(void **state)
{
    struct fx *f = *state;
    static const struct {
        const char *req;
        int status;
        const char *must_have;
    } cases[] = {
        {GOOD_REQ, 101, "Sec-WebSocket-Accept: " KEY_ACCEPT "\r\n"},
        {REQ_LINE H_HOST H_CONN H_KEY H_VER "\r\n", 400, "Content-Type: application/json"},
        {REQ_LINE H_HOST H_UPGRADE "Connection: keep-alive\r\n" H_KEY H_VER "\r\n", 400, NULL},
        {REQ_LINE H_HOST H_UPGRADE H_CONN H_KEY "Sec-WebSocket-Version: 8\r\n\r\n", 426,
         "Sec-WebSocket-Version: 13\r\n"},
        {REQ_LINE H_HOST H_UPGRADE H_CONN "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA\r\n" H_VER
                                          "\r\n",
         400, NULL},
        {REQ_LINE H_HOST H_UPGRADE H_CONN "Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!==\r\n" H_VER
                                          "\r\n",
         400, NULL},
        {"POST /ws HTTP/1.1\r\n" H_HOST H_UPGRADE H_CONN H_KEY H_VER "\r\n", 400, NULL},
        {"GET /ws HTTP/1.0\r\n" H_HOST H_UPGRADE H_CONN H_KEY H_VER "\r\n", 400, NULL},
        {REQ_LINE H_HOST H_UPGRADE H_CONN H_KEY H_VER "Origin: http://localhost:8082\r\n\r\n", 101,
         "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"},
        {REQ_LINE H_HOST H_UPGRADE H_CONN H_KEY H_VER "Origin: http://evil.example\r\n\r\n", 403,
         "{\"error\":{\"code\":\"origin_not_allowed\","},
        {"GET /other HTTP/1.1\r\n" H_HOST H_UPGRADE H_CONN H_KEY H_VER "\r\n", 404, NULL},
    };
    for (size_t i = 0; i < PL_ARRAY_LEN(cases); i++)
        expect_answer(f, cases[i].req, cases[i].status, cases[i].must_have);
    /* The two 101s opened connections; closing their sockets ends them as 1006. */
    assert_int_equal(f->srv.opened, 2);
    assert_true(pump(f, srv_all_closed, &f->srv, WAIT_MS));
    assert_int_equal(f->srv.last_code, 1006);
}

static void test_handshake_oversized(void **state)
{
    struct fx *f = *state;
    struct raw *r = raw_open(f, 0);
    raw_send_str(f, r, REQ_LINE H_HOST "X-Pad: ");
    static char pad[WS_HANDSHAKE_BYTES_MAX + 1024];
    memset(pad, 'a', sizeof pad);
    raw_send(f, r, pad, sizeof pad);
    int status = raw_status(f, r);
    assert_true(status == 400 || status == 0); /* 400, or a reset that beat it */
    assert_true(pump(f, raw_is_eof, r, WAIT_MS));
    assert_int_equal(f->srv.opened, 0);
}

static void test_handshake_timeout(void **state)
{
    struct fx *f = *state;
    fx_server(f, 4, 0, 50);
    struct raw *r = raw_open(f, 0);
    raw_send_str(f, r, REQ_LINE H_HOST); /* and never the rest */
    assert_int_equal(raw_status(f, r), 408);
    assert_true(pump(f, raw_is_eof, r, WAIT_MS));
}

static void test_max_connections(void **state)
{
    struct fx *f = *state;
    fx_server(f, 1, 0, 0);
    struct cli *a = cli_open(f);
    assert_int_equal(ws_server_connections(f->server), 1);
    struct raw *r = raw_open(f, 0);
    raw_send_str(f, r, GOOD_REQ);
    assert_int_equal(raw_status(f, r), 503);
    assert_true(pump(f, raw_is_eof, r, WAIT_MS));
    char url[64];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d%s", f->port, PATH);
    struct cli *b = cli_dial(f, url, NULL);
    assert_true(b->failed);
    ws_conn_close(a->c, 1000, "done");
    assert_true(pump(f, srv_closed_1, &f->srv, WAIT_MS));
    assert_int_equal(ws_server_connections(f->server), 0);
    struct cli *c = cli_open(f); /* the slot is free again */
    assert_int_equal(ws_server_connections(f->server), 1);
    (void)c;
}

/* ---------------------------------------------------------------- messages */

static void test_echo(void **state)
{
    struct fx *f = *state;
    f->srv.echo = true;
    struct cli *k = cli_open(f);
    assert_int_equal(ws_conn_send_text(k->c, "hello", 5), PL_OK);
    assert_true(pump(f, cli_texts_1, k, WAIT_MS));
    assert_string_equal(k->last, "hello");
    const char *multi = "gr\xC3\xBC\xC3\x9F"
                        "e \xE2\x82\xAC \xF0\x9F\x98\x80";
    k->texts = 0;
    assert_int_equal(ws_conn_send_text(k->c, multi, strlen(multi)), PL_OK);
    assert_true(pump(f, cli_texts_1, k, WAIT_MS));
    assert_string_equal(k->last, multi);
    k->texts = 0;
    assert_int_equal(ws_conn_send_text(k->c, "", 0), PL_OK);
    assert_true(pump(f, cli_texts_1, k, WAIT_MS));
    assert_int_equal(k->last_bytes, 0);
    /* Refused before anything is queued: invalid UTF-8, over the message bound. */
    assert_int_equal(ws_conn_send_text(k->c, "\xC0\x80", 2), PL_EINVAL);
    ws_conn_close(k->c, 1000, "done");
    assert_int_equal(ws_conn_send_text(k->c, "late", 4), PL_EIO);
    assert_true(pump(f, cli_gone, k, WAIT_MS));
    assert_int_equal(k->code, 1000);
    assert_true(pump(f, srv_closed_1, &f->srv, WAIT_MS));
    assert_int_equal(f->srv.last_code, 1000);
    assert_int_equal(f->srv.texts, 3);
}

static void test_welcome_with_101(void **state)
{
    struct fx *f = *state;
    f->srv.welcome = "welcome"; /* sent from on_open: may arrive with the 101 */
    struct cli *k = cli_open(f);
    assert_true(pump(f, cli_texts_1, k, WAIT_MS));
    assert_string_equal(k->last, "welcome");
}

static void test_first_frame_with_head(void **state)
{
    struct fx *f = *state;
    struct raw *r = raw_open(f, 0);
    uint8_t buf[512];
    size_t head = strlen(GOOD_REQ);
    memcpy(buf, GOOD_REQ, head);
    size_t n = frame_build(buf + head, sizeof buf - head, true, 0, OP_TEXT, true, "early", 5);
    raw_send(f, r, buf, head + n); /* one write: the frame rides with the head */
    assert_true(pump(f, srv_texts_1, &f->srv, WAIT_MS));
    assert_string_equal(f->srv.last_text, "early");
    assert_int_equal(raw_status(f, r), 101);
}

static void test_message_limits(void **state)
{
    struct fx *f = *state;
    f->srv.echo = true;
    static char big[WS_MESSAGE_BYTES_MAX + 1];
    memset(big, 'a', sizeof big);
    struct cli *k = cli_open(f);
    assert_int_equal(ws_conn_send_text(k->c, big, WS_MESSAGE_BYTES_MAX), PL_OK);
    assert_true(pump(f, cli_texts_1, k, WAIT_MS));
    assert_int_equal(k->last_bytes, WS_MESSAGE_BYTES_MAX);
    assert_int_equal(f->srv.last_bytes, WS_MESSAGE_BYTES_MAX);
    assert_int_equal(ws_conn_send_text(k->c, big, WS_MESSAGE_BYTES_MAX + 1), PL_EINVAL);
    /* 4097 bytes in one frame: 1009. */
    struct raw *r = raw_upgraded(f, 0);
    raw_send_frame(f, r, true, 0, OP_TEXT, true, big, WS_MESSAGE_BYTES_MAX + 1);
    raw_expect_close(f, r, 1009);
    assert_true(pump(f, srv_closed_1, &f->srv, WAIT_MS));
    assert_int_equal(f->srv.last_code, 1009);
    raw_close(r);
    /* 4000 + 97 in two fragments: 1009 too. */
    r = raw_upgraded(f, 0);
    raw_send_frame(f, r, false, 0, OP_TEXT, true, big, 4000);
    raw_send_frame(f, r, true, 0, OP_CONT, true, big, 97);
    raw_expect_close(f, r, 1009);
    raw_close(r);
    assert_int_equal(f->srv.texts, 1);
}

static void test_utf8_on_the_wire(void **state)
{
    struct fx *f = *state;
    struct raw *r = raw_upgraded(f, 0);
    raw_send_frame(f, r, true, 0, OP_TEXT, true, "\xC0\x80", 2);
    raw_expect_close(f, r, 1007);
    assert_true(pump(f, srv_closed_1, &f->srv, WAIT_MS));
    assert_int_equal(f->srv.last_code, 1007);
    raw_close(r);
    /* A sequence split across fragments that turns out invalid in the second one. */
    r = raw_upgraded(f, 0);
    raw_send_frame(f, r, false, 0, OP_TEXT, true, "ab\xE2\x82", 4);
    raw_send_frame(f, r, true, 0, OP_CONT, true, "\x28", 1);
    raw_expect_close(f, r, 1007);
    raw_close(r);
    /* A message that ends inside a sequence. */
    r = raw_upgraded(f, 0);
    raw_send_frame(f, r, false, 0, OP_TEXT, true, "ab", 2);
    raw_send_frame(f, r, true, 0, OP_CONT, true, "\xE2\x82", 2);
    raw_expect_close(f, r, 1007);
    raw_close(r);
    /* A valid one split the same way is reassembled. */
    r = raw_upgraded(f, 0);
    raw_send_frame(f, r, false, 0, OP_TEXT, true, "ab\xE2\x82", 4);
    raw_send_frame(f, r, true, 0, OP_CONT, true, "\xAC", 1);
    assert_true(pump(f, srv_texts_1, &f->srv, WAIT_MS));
    assert_string_equal(f->srv.last_text, "ab\xE2\x82\xAC");
    raw_close(r);
}

static void test_protocol_errors(void **state)
{
    struct fx *f = *state;
    static uint8_t ping126[126];
    static const uint8_t close_1005[] = {0x03, 0xED};
    static const uint8_t close_short[] = {0x03};
    static const struct {
        const char *name;
        bool fin;
        uint8_t rsv;
        uint8_t opcode;
        bool masked;
        const void *payload;
        size_t bytes;
        int code;
    } cases[] = {
        {"rsv1", true, 0x40, OP_TEXT, true, "hi", 2, 1002},
        {"rsv3", true, 0x10, OP_TEXT, true, "hi", 2, 1002},
        {"opcode 3", true, 0, 0x3, true, "hi", 2, 1002},
        {"opcode 11", true, 0, 0xB, true, "hi", 2, 1002},
        {"fragmented ping", false, 0, OP_PING, true, "p", 1, 1002},
        {"ping 126 bytes", true, 0, OP_PING, true, ping126, sizeof ping126, 1002},
        {"unmasked", true, 0, OP_TEXT, false, "hi", 2, 1002},
        {"continuation first", true, 0, OP_CONT, true, "hi", 2, 1002},
        {"binary", true, 0, OP_BINARY, true, "hi", 2, 1003},
        {"close 1005", true, 0, OP_CLOSE, true, close_1005, sizeof close_1005, 1002},
        {"close 1 byte", true, 0, OP_CLOSE, true, close_short, sizeof close_short, 1002},
    };
    for (size_t i = 0; i < PL_ARRAY_LEN(cases); i++) {
        struct raw *r = raw_upgraded(f, 0);
        size_t closed = f->srv.closed;
        raw_send_frame(f, r, cases[i].fin, cases[i].rsv, cases[i].opcode, cases[i].masked,
                       cases[i].payload, cases[i].bytes);
        print_message("case %s\n", cases[i].name);
        raw_expect_close(f, r, cases[i].code);
        raw_close(r);
        assert_int_equal(f->srv.closed, closed + 1);
        assert_int_equal(f->srv.last_code, cases[i].code);
    }
    /* A text frame inside a fragmented text message. */
    struct raw *r = raw_upgraded(f, 0);
    raw_send_frame(f, r, false, 0, OP_TEXT, true, "a", 1);
    raw_send_frame(f, r, true, 0, OP_TEXT, true, "b", 1);
    raw_expect_close(f, r, 1002);
    raw_close(r);
    assert_int_equal(f->srv.texts, 0);
}

static void test_ping_pong(void **state)
{
    struct fx *f = *state;
    struct raw *r = raw_upgraded(f, 0);
    raw_send_frame(f, r, true, 0, OP_PING, true, "hello", 5);
    struct frame fr;
    raw_next_frame(f, r, &fr);
    assert_int_equal(fr.opcode, OP_PONG);
    assert_true(fr.fin);
    assert_int_equal(fr.bytes, 5);
    assert_memory_equal(fr.payload, "hello", 5);
    /* An unsolicited pong is fine. */
    raw_send_frame(f, r, true, 0, OP_PONG, true, "x", 1);
    raw_send_frame(f, r, true, 0, OP_TEXT, true, "still here", 10);
    assert_true(pump(f, srv_texts_1, &f->srv, WAIT_MS));
    assert_string_equal(f->srv.last_text, "still here");
}

static void test_fragments_with_ping(void **state)
{
    struct fx *f = *state;
    struct raw *r = raw_upgraded(f, 0);
    uint8_t buf[256];
    size_t n = frame_build(buf, sizeof buf, false, 0, OP_TEXT, true, "Hel", 3);
    n += frame_build(buf + n, sizeof buf - n, true, 0, OP_PING, true, "p1", 2);
    n += frame_build(buf + n, sizeof buf - n, true, 0, OP_CONT, true, "lo", 2);
    raw_send(f, r, buf, n);
    struct frame fr;
    raw_next_frame(f, r, &fr);
    assert_int_equal(fr.opcode, OP_PONG);
    assert_int_equal(fr.bytes, 2);
    assert_memory_equal(fr.payload, "p1", 2);
    assert_true(pump(f, srv_texts_1, &f->srv, WAIT_MS));
    assert_string_equal(f->srv.last_text, "Hello");
    assert_int_equal(f->srv.texts, 1);
}

/* ---------------------------------------------------------------- closing */

static void test_close_handshake(void **state)
{
    struct fx *f = *state;
    struct raw *r = raw_upgraded(f, 0);
    static const uint8_t payload[] = {0x03, 0xE8, 'b', 'y', 'e'};
    raw_send_frame(f, r, true, 0, OP_CLOSE, true, payload, sizeof payload);
    raw_expect_close(f, r, 1000); /* echoed, then the TCP connection closes */
    assert_true(pump(f, srv_closed_1, &f->srv, WAIT_MS));
    assert_int_equal(f->srv.last_code, 1000);
    assert_int_equal(ws_server_connections(f->server), 0);
}

static void test_close_from_on_text(void **state)
{
    struct fx *f = *state;
    f->srv.close_on_text = true;
    f->srv.echo = true; /* the echo goes out before the close */
    struct cli *k = cli_open(f);
    assert_int_equal(ws_conn_send_text(k->c, "one", 3), PL_OK);
    assert_true(pump(f, cli_gone, k, WAIT_MS));
    assert_int_equal(k->code, 1000);
    assert_int_equal(k->texts, 1);
    assert_true(pump(f, srv_closed_1, &f->srv, WAIT_MS));
    assert_int_equal(f->srv.closed, 1);
    assert_int_equal(f->srv.last_code, 1000);
}

static void test_server_close_unanswered(void **state)
{
    struct fx *f = *state;
    /* A raw peer that reads but never answers our close: the close timer ends it. */
    struct raw *r = raw_upgraded(f, 0);
    struct ws_conn *c = f->srv.conns[0];
    assert_non_null(c);
    ws_conn_close(c, 4000, "policy");
    struct frame fr;
    raw_next_frame(f, r, &fr);
    assert_int_equal(fr.opcode, OP_CLOSE);
    assert_int_equal((fr.payload[0] << 8) | fr.payload[1], 4000);
    assert_memory_equal(fr.payload + 2, "policy", 6);
    assert_int_equal(f->srv.closed, 0); /* still waiting for the answer */
    assert_true(pump(f, srv_closed_1, &f->srv, WAIT_MS));
    assert_int_equal(f->srv.last_code, 4000);
    assert_true(pump(f, raw_is_eof, r, WAIT_MS));
}

static void test_server_free_goes_away(void **state)
{
    struct fx *f = *state;
    struct cli *a = cli_open(f);
    struct cli *b = cli_open(f);
    assert_int_equal(ws_server_connections(f->server), 2);
    ws_server_free(f->server);
    f->server = NULL;
    assert_int_equal(f->srv.closed, 2); /* on_closed ran before ws_server_free returned */
    assert_int_equal(f->srv.last_code, 1001);
    assert_true(pump(f, cli_gone, a, WAIT_MS));
    assert_true(pump(f, cli_gone, b, WAIT_MS));
    assert_int_equal(a->code, 1001);
    assert_int_equal(b->code, 1001);
}

/* ---------------------------------------------------------------- slow consumers, pings */

struct flood {
    struct fx *f;
    struct ws_conn *slow;
    struct ws_conn *fast;
    size_t fast_sent;
    size_t slow_queued_max;
    int slow_rc;
    bool slow_dropped;
    int ticks;
};

static char flood_msg[4000];

/* Every tick: 8 messages to each; the slow peer's queue fills, the fast one's drains. */
static void flood_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct flood *fl = arg;
    fl->ticks++;
    for (int i = 0; i < 8 && !fl->slow_dropped; i++) {
        size_t q = ws_conn_queued_bytes(fl->slow);
        fl->slow_queued_max = q > fl->slow_queued_max ? q : fl->slow_queued_max;
        fl->slow_rc = ws_conn_send_text(fl->slow, flood_msg, sizeof flood_msg);
        fl->slow_dropped = fl->slow_rc != PL_OK;
        assert_int_equal(ws_conn_send_text(fl->fast, flood_msg, sizeof flood_msg), PL_OK);
        fl->fast_sent++;
    }
}

static bool flood_done(void *arg)
{
    struct flood *fl = arg;
    return fl->slow_dropped && fl->f->srv.closed >= 1;
}

struct got_all {
    struct cli *k;
    size_t want;
};

static bool cli_got_all(void *arg)
{
    struct got_all *g = arg;
    return g->k->texts >= g->want;
}

static void test_slow_consumer(void **state)
{
    struct fx *f = *state;
    memset(flood_msg, 'z', sizeof flood_msg);
    struct raw *slow = raw_upgraded(f, 4096);
    event_del(slow->ev); /* and it never reads again */
    struct cli *fast = cli_open(f);
    struct flood fl = {.f = f, .slow = f->srv.conns[0], .fast = f->srv.conns[1]};
    assert_non_null(fl.slow);
    assert_non_null(fl.fast);
    struct event *tick = event_new(f->base, -1, EV_PERSIST, flood_tick, &fl);
    assert_non_null(tick);
    struct timeval every = {0, 1000};
    assert_int_equal(event_add(tick, &every), 0);
    bool done = pump(f, flood_done, &fl, 4 * WAIT_MS);
    event_free(tick);
    assert_true(done);
    assert_int_equal(fl.slow_rc, PL_ERANGE);
    assert_int_equal(f->srv.last_code, 1008);
    assert_true(fl.slow_queued_max + sizeof flood_msg > WS_QUEUE_BYTES_MAX);
    assert_true(fl.slow_queued_max <= WS_QUEUE_BYTES_MAX);
    /* The fast client got every message and is still open. */
    struct got_all g = {fast, fl.fast_sent};
    assert_true(pump(f, cli_got_all, &g, WAIT_MS));
    assert_int_equal(fast->bytes_total, fl.fast_sent * sizeof flood_msg);
    assert_false(fast->closed);
    assert_int_equal(ws_server_connections(f->server), 1);
    print_message("slow consumer dropped after %d ticks, %zu messages to the fast one\n", fl.ticks,
                  fl.fast_sent);
}

static size_t raw_count_pings(const struct raw *r)
{
    size_t pings = 0;
    size_t off = r->off;
    struct frame fr;
    for (size_t n = 1; n > 0; off += n) {
        n = frame_parse(r->buf + off, r->bytes - off, &fr);
        pings += n > 0 && fr.opcode == OP_PING;
    }
    return pings;
}

static void test_ping_timeout(void **state)
{
    struct fx *f = *state;
    fx_server(f, 4, 30, 0);
    struct raw *mute = raw_upgraded(f, 0); /* reads, never answers a ping */
    struct cli *k = cli_open(f);           /* wslay answers pings for it */
    assert_true(pump(f, srv_closed_1, &f->srv, WAIT_MS));
    assert_int_equal(f->srv.last_code, 1006);
    assert_true(pump(f, raw_is_eof, mute, WAIT_MS));
    assert_true(raw_count_pings(mute) >= WS_PONGS_MISSED_MAX);
    /* Ten more intervals: the answering client stays. */
    (void)pump(f, never, NULL, 300);
    assert_false(k->closed);
    assert_int_equal(f->srv.closed, 1);
    assert_int_equal(ws_server_connections(f->server), 1);
}

/* ---------------------------------------------------------------- client failures */

static void test_client_urls(void **state)
{
    struct fx *f = *state;
    struct cli *k = cli_new(f);
    static const char *const bad[] = {
        "http://127.0.0.1:1/ws",  "ws://example.com/ws", "ws://127.0.0.1:0/ws",
        "ws://127.0.0.1:65536/",  "ws://127.0.0.1:x/ws", "ws:///ws",
        "ws://127.0.0.1:80ws",    "ws://[::1/ws",        "ws://127.0.0.1/a b",
        "ws://127.0.0.1/a\r\nX:", "wss://127.0.0.1/ws",
    };
    for (size_t i = 0; i < PL_ARRAY_LEN(bad); i++) {
        if (ws_client_connect(f->base, bad[i], NULL, &cli_cb, k) != PL_EINVAL)
            fail_msg("accepted %s", bad[i]);
    }
    assert_int_equal(ws_client_connect(f->base, "ws://127.0.0.1/ws", "a\r\nb", &cli_cb, k),
                     PL_EINVAL);
    k->used = false;
    char url[96];
    snprintf(url, sizeof url, "ws://localhost:%d%s", f->port, PATH);
    struct cli *ok = cli_dial(f, url, "http://localhost:8082");
    assert_true(ok->opened);
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/elsewhere", f->port);
    struct cli *lost = cli_dial(f, url, NULL);
    assert_true(lost->failed);
    assert_string_equal(lost->why, "handshake refused");
    snprintf(url, sizeof url, "ws://127.0.0.1:%d%s", f->port, PATH);
    struct cli *foreign = cli_dial(f, url, "http://evil.example");
    assert_true(foreign->failed);
}

static void test_client_connect_refused(void **state)
{
    struct fx *f = *state;
    /* A port that was just free: bind, read it, close. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    char url[64];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/ws", ntohs(sa.sin_port));
    struct cli *k = cli_dial(f, url, NULL);
    assert_true(k->failed);
    /* IPv6 literal: parsed; connects or fails on the loop (no IPv6 in some sandboxes). */
    struct cli *v6 = cli_new(f);
    int rc = ws_client_connect(f->base, "ws://[::1]:1/ws", NULL, &cli_cb, v6);
    assert_true(rc == 0 || rc == PL_EIO);
    if (rc == 0)
        assert_true(pump(f, cli_settled, v6, WAIT_MS));
    else
        v6->used = false;
}

/* A server that answers the upgrade with a wrong accept key. */
static void on_fake_accept(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    (void)arg;
    int c = accept(fd, NULL, NULL);
    assert_true(c >= 0);
    static const char answer[] =
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Accept: " KEY_ACCEPT "\r\n\r\n";
    assert_int_equal(send(c, answer, sizeof answer - 1, MSG_NOSIGNAL), sizeof answer - 1);
    close(c);
}

static void test_client_bad_accept(void **state)
{
    struct fx *f = *state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 4), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    struct event *ev = event_new(f->base, fd, EV_READ, on_fake_accept, NULL);
    assert_non_null(ev);
    assert_int_equal(event_add(ev, NULL), 0);
    char url[64];
    snprintf(url, sizeof url, "ws://127.0.0.1:%d/ws", ntohs(sa.sin_port));
    struct cli *k = cli_dial(f, url, NULL);
    assert_true(k->failed);
    assert_string_equal(k->why, "bad Sec-WebSocket-Accept");
    event_free(ev);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_key),
        cmocka_unit_test(test_head_length),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_origin_allowed),
        cmocka_unit_test(test_handshake_parse),
        cmocka_unit_test(test_handshake_parse_fields),
        cmocka_unit_test_setup_teardown(test_handshake_answers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handshake_oversized, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handshake_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_connections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_echo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_welcome_with_101, setup, teardown),
        cmocka_unit_test_setup_teardown(test_first_frame_with_head, setup, teardown),
        cmocka_unit_test_setup_teardown(test_message_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_utf8_on_the_wire, setup, teardown),
        cmocka_unit_test_setup_teardown(test_protocol_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ping_pong, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fragments_with_ping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_handshake, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_from_on_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_close_unanswered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_free_goes_away, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_consumer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ping_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_urls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_connect_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_bad_accept, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
