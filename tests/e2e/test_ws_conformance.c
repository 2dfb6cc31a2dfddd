/* test_ws_conformance.c: the gateway's real /ws endpoint against RFC 6455, in groups modelled
 * on the Autobahn testsuite's: framing lengths, pings and pongs, reserved bits and opcodes,
 * fragmentation, UTF-8, close codes, limits, protocol violations — and a table of bad
 * opening handshakes. After a valid handshake every frame is written by hand over a plain
 * socket (e2e_ws_*), and each case asserts the exact close code the gateway answers with
 * (docs/realtime.md: 4 KiB messages, else 1009; invalid UTF-8 1007; protocol errors 1002).
 *
 * One cluster (bank, wallet, one gateway) serves the whole group; a text message that must be
 * accepted is a subscription for alice (padded with JSON whitespace to the length a case
 * needs), so the gateway's {"op":"subscribed"} proves it was read whole. Every test ends
 * with `paylab verify`. */
#include "e2e.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Close codes (RFC 6455 §7.4.1). */
#define NORMAL 1000
#define PROTOCOL_ERROR 1002
#define UNSUPPORTED_DATA 1003
#define INVALID_PAYLOAD 1007
#define TOO_BIG 1009
/* docs/realtime.md: a client message is at most 4 KiB. */
#define WS_LIMIT_BYTES 4096

/* The fixture shared by the group. */
struct conformance {
    struct e2e e;
    char token[E2E_SECRET_BYTES_MAX]; /* alice's ws_token */
    int port;                         /* the gateway's WebSocket port */
    int passed;                       /* tests that reached their end */
};

static int group_setup(void **state)
{
    struct conformance *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    *state = f;
    const struct e2e_opts opts = {.gateways = 1};
    e2e_start(&f->e, &opts);
    e2e_user_add(&f->e, "alice");
    e2e_ws_token(&f->e, "alice", f->token);
    f->port = f->e.c.gateways[0].ws_port;
    return 0;
}

/* The tests in main(): a passing group removes its directory. */
#define TESTS_COUNT 10

static int group_teardown(void **state)
{
    struct conformance *f = *state;
    if (f->passed == TESTS_COUNT)
        f->e.c.keep_dir = false;
    else
        fprintf(stderr, "e2e: %d of %d passed; gateway log: %s\n", f->passed, TESTS_COUNT,
                f->e.c.gateways[0].log_path);
    cluster_destroy(&f->e.c);
    free(f);
    return 0;
}

/* Every test ends here: the services are still consistent. */
static void test_done(struct conformance *f)
{
    assert_int_equal(cluster_verify(&f->e.c), 0);
    f->passed++;
}

/* {"op":"subscribe","user":"alice","token":…} padded with spaces to exactly len bytes
 * (malloc'ed). */
static char *subscribe_text(const struct conformance *f, size_t len)
{
    char head[E2E_SECRET_BYTES_MAX + 64];
    int n = snprintf(head, sizeof head, "{\"op\":\"subscribe\",\"user\":\"alice\",\"token\":\"%s\"",
                     f->token);
    assert_true(n > 0 && (size_t)n + 1 <= len);
    char *s = malloc(len + 1);
    assert_non_null(s);
    memcpy(s, head, (size_t)n);
    memset(s + n, ' ', len - (size_t)n - 1);
    s[len - 1] = '}';
    s[len] = '\0';
    return s;
}

static struct e2e_ws *open_ws(const struct conformance *f)
{
    return e2e_ws_connect(f->port, NULL, 0);
}

/* The next message is the gateway's "subscribed" for alice. */
static void expect_subscribed(struct e2e_ws *w, const char *what)
{
    cJSON *m = e2e_ws_recv_json(w, E2E_WS_TIMEOUT_MS);
    const cJSON *op = cJSON_GetObjectItemCaseSensitive(m, "op");
    if (!cJSON_IsString(op) || strcmp(op->valuestring, "subscribed") != 0) {
        char *s = cJSON_PrintUnformatted(m);
        fail_msg("%s: expected subscribed, got %.300s", what, s);
    }
    cJSON_Delete(m);
}

/* The gateway closes with exactly code, then ends the TCP connection. */
static void expect_close(struct e2e_ws *w, int code, const char *what)
{
    int got = e2e_ws_wait_close(w, E2E_WS_TIMEOUT_MS, NULL);
    if (got != code)
        fail_msg("%s: expected close %d, got %d%s", what, code, got,
                 got == E2E_WS_ABNORMAL ? " (no close frame)" : "");
    struct e2e_ws_frame fr;
    int r = e2e_ws_read_frame(w, cluster_deadline_ms(E2E_WS_TIMEOUT_MS), &fr);
    if (r > 0) {
        int op = fr.opcode;
        e2e_ws_frame_free(&fr);
        fail_msg("%s: a frame (opcode %d) after the close", what, op);
    }
    if (r == 0)
        fail_msg("%s: the TCP connection stayed open after the close", what);
}

static void send_frame(struct e2e_ws *w, unsigned b0, const void *payload, size_t len)
{
    /* The gateway may already have closed (a violation found early): that is its answer. */
    (void)e2e_ws_send_frame(w, b0, payload, len);
}

static void send_close(struct e2e_ws *w, int code, const char *reason, size_t reason_len)
{
    unsigned char p[125];
    assert_true(reason_len <= 123);
    p[0] = (unsigned char)(code >> 8);
    p[1] = (unsigned char)code;
    if (reason_len > 0)
        memcpy(p + 2, reason, reason_len);
    send_frame(w, E2E_WS_FIN | E2E_WS_CLOSE, p, 2 + reason_len);
}

/* A fresh connection gets one frame and must close with code. */
static void one_frame_closes(const struct conformance *f, unsigned b0, const void *payload,
                             size_t len, int code, const char *what)
{
    struct e2e_ws *w = open_ws(f);
    send_frame(w, b0, payload, len);
    expect_close(w, code, what);
    e2e_ws_free(w, 0);
}

/* ------------------------------------------------------------------ handshakes */

struct handshake_case {
    const char *what;
    const char *method, *path;
    const char *key;         /* NULL: no Sec-WebSocket-Key */
    const char *version;     /* NULL: no Sec-WebSocket-Version */
    const char *upgrade;     /* NULL: no Upgrade */
    const char *connection;  /* NULL: no Connection */
    const char *origin;      /* NULL: no Origin; "SELF" / "SELF-LOCALHOST": our HTTP origin */
    long status, status_alt; /* alt: another acceptable answer (0: none) */
};

static void test_handshake_table(void **state)
{
    struct conformance *f = *state;
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
    const struct handshake_case cases[] = {
        {"valid, no Origin (the CLI)", "GET", "/ws", key, "13", "websocket", "Upgrade", NULL, 101,
         0},
        {"valid, the gateway's own origin", "GET", "/ws", key, "13", "websocket", "Upgrade", "SELF",
         101, 0},
        {"valid, the gateway's origin as localhost", "GET", "/ws", key, "13", "websocket",
         "Upgrade", "SELF-LOCALHOST", 101, 0},
        {"header values are case-insensitive, Connection is a list", "GET", "/ws", key, "13",
         "WebSocket", "keep-alive, upgrade", NULL, 101, 0},
        {"missing key", "GET", "/ws", NULL, "13", "websocket", "Upgrade", NULL, 400, 0},
        {"key not 16 bytes of base64", "GET", "/ws", "c2hvcnQ=", "13", "websocket", "Upgrade", NULL,
         400, 0},
        {"version 8", "GET", "/ws", key, "8", "websocket", "Upgrade", NULL, 426, 0},
        {"foreign Origin", "GET", "/ws", key, "13", "websocket", "Upgrade", "http://evil.example",
         403, 0},
        {"Origin on another port", "GET", "/ws", key, "13", "websocket", "Upgrade",
         "http://127.0.0.1:1", 403, 0},
        {"wrong path", "GET", "/nope", key, "13", "websocket", "Upgrade", NULL, 404, 0},
        {"POST", "POST", "/ws", key, "13", "websocket", "Upgrade", NULL, 400, 405},
        {"no Upgrade", "GET", "/ws", key, "13", NULL, "Upgrade", NULL, 400, 0},
        {"Upgrade to another protocol", "GET", "/ws", key, "13", "h2c", "Upgrade", NULL, 400, 0},
        {"Connection without upgrade", "GET", "/ws", key, "13", "websocket", "keep-alive", NULL,
         400, 0},
    };
    for (size_t i = 0; i < PL_ARRAY_LEN(cases); i++) {
        const struct handshake_case *c = &cases[i];
        char req[1024], line[320], head[E2E_WS_HEAD_BYTES_MAX];
        size_t n = 0;
        n += (size_t)snprintf(req + n, sizeof req - n, "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n",
                              c->method, c->path, f->port);
        if (c->upgrade != NULL)
            n += (size_t)snprintf(req + n, sizeof req - n, "Upgrade: %s\r\n", c->upgrade);
        if (c->connection != NULL)
            n += (size_t)snprintf(req + n, sizeof req - n, "Connection: %s\r\n", c->connection);
        if (c->key != NULL)
            n += (size_t)snprintf(req + n, sizeof req - n, "Sec-WebSocket-Key: %s\r\n", c->key);
        if (c->version != NULL)
            n += (size_t)snprintf(req + n, sizeof req - n, "Sec-WebSocket-Version: %s\r\n",
                                  c->version);
        if (c->origin != NULL) {
            if (strcmp(c->origin, "SELF") == 0)
                snprintf(line, sizeof line, "http://127.0.0.1:%d", f->e.c.gateways[0].http_port);
            else if (strcmp(c->origin, "SELF-LOCALHOST") == 0)
                snprintf(line, sizeof line, "http://localhost:%d", f->e.c.gateways[0].http_port);
            else
                snprintf(line, sizeof line, "%s", c->origin);
            n += (size_t)snprintf(req + n, sizeof req - n, "Origin: %s\r\n", line);
        }
        if (strcmp(c->method, "POST") == 0)
            n += (size_t)snprintf(req + n, sizeof req - n, "Content-Length: 0\r\n");
        n += (size_t)snprintf(req + n, sizeof req - n, "\r\n");
        assert_true(n < sizeof req);
        long status = e2e_http_raw(f->port, req, n, head, sizeof head);
        if (status != c->status && (c->status_alt == 0 || status != c->status_alt))
            fail_msg("%s: expected HTTP %ld, got %ld: %.300s", c->what, c->status, status, head);
        if (status == 101) {
            /* RFC 6455 §1.3's example key has a known accept value. */
            struct cluster_reply r = {.headers = head};
            char v[64];
            assert_true(cluster_reply_header(&r, "Sec-WebSocket-Accept", v, sizeof v));
            assert_string_equal(v, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        }
        if (status == 426) {
            struct cluster_reply r = {.headers = head};
            char v[16];
            if (!cluster_reply_header(&r, "Sec-WebSocket-Version", v, sizeof v))
                fail_msg("%s: 426 without Sec-WebSocket-Version: %.300s", c->what, head);
            assert_string_equal(v, "13");
        }
    }
    /* A request head over the 8 KiB limit. */
    size_t big = E2E_WS_HEAD_BYTES_MAX + 1024;
    char *req = malloc(big + 512);
    char head[E2E_WS_HEAD_BYTES_MAX];
    assert_non_null(req);
    int n = snprintf(req, 512,
                     "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nX-Pad: ",
                     key);
    memset(req + n, 'a', big);
    memcpy(req + n + big, "\r\n\r\n", 4);
    long status = e2e_http_raw(f->port, req, (size_t)n + big + 4, head, sizeof head);
    free(req);
    if (status != 400 && status != 431)
        fail_msg("a %zu-byte request head: expected HTTP 400, got %ld: %.200s", big, status, head);
    /* After all that, a valid client still gets in. */
    struct e2e_ws *w = open_ws(f);
    e2e_ws_subscribe(w, "alice", f->token, NULL, -1);
    expect_subscribed(w, "after the bad handshakes");
    e2e_ws_free(w, NORMAL);
    test_done(f);
}

/* ------------------------------------------------------------------ framing (Autobahn 1.x) */

static void test_framing_lengths(void **state)
{
    struct conformance *f = *state;
    /* 7-bit, the 7/16-bit boundary, 16-bit, and the 4 KiB limit itself. */
    const size_t accepted[] = {110, 125, 126, 127, 1000, 4095, WS_LIMIT_BYTES};
    for (size_t i = 0; i < PL_ARRAY_LEN(accepted); i++) {
        char what[64];
        snprintf(what, sizeof what, "a %zu-byte text message", accepted[i]);
        struct e2e_ws *w = open_ws(f);
        char *text = subscribe_text(f, accepted[i]);
        send_frame(w, E2E_WS_FIN | E2E_WS_TEXT, text, accepted[i]);
        free(text);
        expect_subscribed(w, what);
        e2e_ws_free(w, NORMAL);
    }
    /* Over the limit: one byte over, the 16-bit maximum, and a 64-bit length. */
    const size_t refused[] = {WS_LIMIT_BYTES + 1, 65535, 65536};
    for (size_t i = 0; i < PL_ARRAY_LEN(refused); i++) {
        char what[64];
        snprintf(what, sizeof what, "a %zu-byte text message", refused[i]);
        char *text = subscribe_text(f, refused[i]);
        one_frame_closes(f, E2E_WS_FIN | E2E_WS_TEXT, text, refused[i], TOO_BIG, what);
        free(text);
    }
    /* An empty text message is not JSON: an error answer, and the connection stays. */
    struct e2e_ws *w = open_ws(f);
    send_frame(w, E2E_WS_FIN | E2E_WS_TEXT, "", 0);
    cJSON *m = e2e_ws_recv_json(w, E2E_WS_TIMEOUT_MS);
    assert_string_equal(e2e_str(m, "op"), "error");
    assert_string_equal(e2e_str(m, "code"), "bad_request");
    cJSON_Delete(m);
    e2e_ws_subscribe(w, "alice", f->token, NULL, -1);
    expect_subscribed(w, "after an empty message");
    e2e_ws_free(w, NORMAL);
    test_done(f);
}

/* ------------------------------------------------------------------ pings (Autobahn 2.x) */

/* The next frame other than a ping is a pong carrying payload. */
static void expect_pong(struct e2e_ws *w, const void *payload, size_t len, const char *what)
{
    int64_t deadline = cluster_deadline_ms(E2E_WS_TIMEOUT_MS);
    for (;;) {
        struct e2e_ws_frame fr;
        int r = e2e_ws_read_frame(w, deadline, &fr);
        if (r <= 0)
            fail_msg("%s: no pong (%s)", what, r == 0 ? "timeout" : "connection ended");
        if (fr.opcode == E2E_WS_PING) {
            e2e_ws_frame_free(&fr);
            continue;
        }
        if (fr.opcode != E2E_WS_PONG)
            fail_msg("%s: expected a pong, got opcode %d", what, fr.opcode);
        assert_true(fr.fin);
        assert_false(fr.masked); /* a server never masks */
        assert_int_equal(fr.len, len);
        if (len > 0)
            assert_memory_equal(fr.payload, payload, len);
        e2e_ws_frame_free(&fr);
        return;
    }
}

static void test_ping_pong(void **state)
{
    struct conformance *f = *state;
    unsigned char bin[125];
    for (size_t i = 0; i < sizeof bin; i++)
        bin[i] = (unsigned char)(i * 7 + 1);
    struct e2e_ws *w = open_ws(f);
    send_frame(w, E2E_WS_FIN | E2E_WS_PING, NULL, 0);
    expect_pong(w, NULL, 0, "an empty ping");
    send_frame(w, E2E_WS_FIN | E2E_WS_PING, "Hello, world!", 13);
    expect_pong(w, "Hello, world!", 13, "a text ping");
    send_frame(w, E2E_WS_FIN | E2E_WS_PING, bin, 125);
    expect_pong(w, bin, 125, "a 125-byte binary ping");
    /* An unsolicited pong is ignored. */
    send_frame(w, E2E_WS_FIN | E2E_WS_PONG, "unsolicited", 11);
    /* Ten pings in a row: ten pongs, in order. */
    for (int i = 0; i < 10; i++) {
        char p[8];
        snprintf(p, sizeof p, "p%d", i);
        send_frame(w, E2E_WS_FIN | E2E_WS_PING, p, strlen(p));
    }
    for (int i = 0; i < 10; i++) {
        char p[8];
        snprintf(p, sizeof p, "p%d", i);
        expect_pong(w, p, strlen(p), "one of ten pings");
    }
    e2e_ws_subscribe(w, "alice", f->token, NULL, -1);
    expect_subscribed(w, "after the pings");
    e2e_ws_free(w, NORMAL);
    /* A control frame over 125 bytes (a 16-bit length) is a protocol error. */
    unsigned char big[126];
    memset(big, 'p', sizeof big);
    one_frame_closes(f, E2E_WS_FIN | E2E_WS_PING, big, sizeof big, PROTOCOL_ERROR,
                     "a 126-byte ping");
    one_frame_closes(f, E2E_WS_FIN | E2E_WS_PONG, big, sizeof big, PROTOCOL_ERROR,
                     "a 126-byte pong");
    test_done(f);
}

/* ------------------------------------------------------------------ reserved bits (3.x) */

static void test_reserved_bits(void **state)
{
    struct conformance *f = *state;
    char *text = subscribe_text(f, 120);
    for (unsigned rsv = 1; rsv <= 7; rsv++) {
        char what[64];
        snprintf(what, sizeof what, "a text frame with RSV bits %u", rsv);
        one_frame_closes(f, E2E_WS_FIN | (rsv << 4) | E2E_WS_TEXT, text, 120, PROTOCOL_ERROR, what);
    }
    one_frame_closes(f, E2E_WS_FIN | 0x40 | E2E_WS_PING, "x", 1, PROTOCOL_ERROR,
                     "a ping with RSV1");
    /* A valid message first, then a frame with RSV2: the answer, then 1002. */
    struct e2e_ws *w = open_ws(f);
    send_frame(w, E2E_WS_FIN | E2E_WS_TEXT, text, 120);
    send_frame(w, E2E_WS_FIN | 0x20 | E2E_WS_TEXT, text, 120);
    expect_subscribed(w, "the message before the bad frame");
    expect_close(w, PROTOCOL_ERROR, "RSV2 after a valid message");
    e2e_ws_free(w, 0);
    free(text);
    test_done(f);
}

/* ------------------------------------------------------------------ opcodes (4.x) */

static void test_reserved_opcodes(void **state)
{
    struct conformance *f = *state;
    const int opcodes[] = {3, 4, 5, 6, 7, 11, 12, 13, 14, 15};
    for (size_t i = 0; i < PL_ARRAY_LEN(opcodes); i++) {
        char what[64];
        snprintf(what, sizeof what, "reserved opcode %d", opcodes[i]);
        one_frame_closes(f, E2E_WS_FIN | (unsigned)opcodes[i], "reserved", 8, PROTOCOL_ERROR, what);
        one_frame_closes(f, E2E_WS_FIN | (unsigned)opcodes[i], NULL, 0, PROTOCOL_ERROR, what);
    }
    test_done(f);
}

/* ------------------------------------------------------------------ fragmentation (5.x) */

static void test_fragmentation(void **state)
{
    struct conformance *f = *state;
    char *text = subscribe_text(f, 300);
    /* Three fragments with a ping between the first two: the pong comes at once, then the
     * reassembled message's answer. */
    struct e2e_ws *w = open_ws(f);
    send_frame(w, E2E_WS_TEXT, text, 10);
    send_frame(w, E2E_WS_FIN | E2E_WS_PING, "between", 7);
    expect_pong(w, "between", 7, "a ping between fragments");
    send_frame(w, E2E_WS_CONT, text + 10, 100);
    send_frame(w, E2E_WS_FIN | E2E_WS_CONT, text + 110, 190);
    expect_subscribed(w, "a message in three fragments");
    e2e_ws_free(w, NORMAL);
    /* One byte per fragment, with empty first and last fragments. */
    w = open_ws(f);
    send_frame(w, E2E_WS_TEXT, NULL, 0);
    for (size_t i = 0; i < 300; i++)
        send_frame(w, E2E_WS_CONT, text + i, 1);
    send_frame(w, E2E_WS_FIN | E2E_WS_CONT, NULL, 0);
    expect_subscribed(w, "a message in 302 fragments");
    e2e_ws_free(w, NORMAL);
    /* Continuations without a start. */
    one_frame_closes(f, E2E_WS_FIN | E2E_WS_CONT, text, 300, PROTOCOL_ERROR,
                     "a final continuation without a start");
    one_frame_closes(f, E2E_WS_CONT, text, 300, PROTOCOL_ERROR, "a continuation without a start");
    /* A new message while one is fragmented. */
    w = open_ws(f);
    send_frame(w, E2E_WS_TEXT, text, 10);
    send_frame(w, E2E_WS_FIN | E2E_WS_TEXT, text, 300);
    expect_close(w, PROTOCOL_ERROR, "a text frame inside a fragmented message");
    e2e_ws_free(w, 0);
    /* Control frames must not be fragmented. */
    one_frame_closes(f, E2E_WS_PING, "frag", 4, PROTOCOL_ERROR, "a fragmented ping");
    w = open_ws(f);
    send_frame(w, E2E_WS_PING, "fr", 2);
    send_frame(w, E2E_WS_FIN | E2E_WS_CONT, "ag", 2);
    expect_close(w, PROTOCOL_ERROR, "a ping continued");
    e2e_ws_free(w, 0);
    free(text);
    test_done(f);
}

/* ------------------------------------------------------------------ UTF-8 (6.x) */

/* A subscription whose token is `token` (raw bytes). */
static size_t token_message(char *out, size_t cap, const char *token, size_t token_len)
{
    const char pre[] = "{\"op\":\"subscribe\",\"user\":\"alice\",\"token\":\"";
    const char post[] = "\"}";
    assert_true(sizeof pre + token_len + sizeof post < cap);
    memcpy(out, pre, sizeof pre - 1);
    memcpy(out + sizeof pre - 1, token, token_len);
    memcpy(out + sizeof pre - 1 + token_len, post, sizeof post - 1);
    return sizeof pre - 1 + token_len + sizeof post - 1;
}

/* The next message is {"op":"error","code":"unauthorized"}: the text was read (its UTF-8 was
 * fine), the token was not. */
static void expect_unauthorized(struct e2e_ws *w, const char *what)
{
    cJSON *m = e2e_ws_recv_json(w, E2E_WS_TIMEOUT_MS);
    const cJSON *op = cJSON_GetObjectItemCaseSensitive(m, "op");
    if (!cJSON_IsString(op) || strcmp(op->valuestring, "error") != 0) {
        char *s = cJSON_PrintUnformatted(m);
        fail_msg("%s: expected an error, got %.300s", what, s);
    }
    assert_string_equal(e2e_str(m, "code"), "unauthorized");
    cJSON_Delete(m);
}

static void test_utf8(void **state)
{
    struct conformance *f = *state;
    char msg[512];
    /* Valid: Greek, the euro sign, a 4-byte character (U+1D11E), the largest (U+10FFFF), and
     * the last before the surrogates (U+D7FF). */
    const char *valid[] = {"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", "\xe2\x82\xac",
                           "\xf0\x9d\x84\x9e", "\xf4\x8f\xbf\xbf", "\xed\x9f\xbf"};
    struct e2e_ws *w = open_ws(f);
    for (size_t i = 0; i < PL_ARRAY_LEN(valid); i++) {
        size_t n = token_message(msg, sizeof msg, valid[i], strlen(valid[i]));
        send_frame(w, E2E_WS_FIN | E2E_WS_TEXT, msg, n);
        expect_unauthorized(w, "valid multi-byte UTF-8");
    }
    /* Valid, split inside a character across fragments (€ = E2 82 AC). */
    size_t n = token_message(msg, sizeof msg, "\xe2\x82\xac\xe2\x82\xac", 6);
    size_t cut = 43; /* inside the first € */
    assert_int_equal((unsigned char)msg[cut - 1], 0xe2);
    send_frame(w, E2E_WS_TEXT, msg, cut);
    send_frame(w, E2E_WS_CONT, msg + cut, 1);
    send_frame(w, E2E_WS_FIN | E2E_WS_CONT, msg + cut + 1, n - cut - 1);
    expect_unauthorized(w, "a character split across fragments");
    e2e_ws_subscribe(w, "alice", f->token, NULL, -1);
    expect_subscribed(w, "after the UTF-8 messages");
    e2e_ws_free(w, NORMAL);

    /* Invalid: a lone continuation byte, an overlong '/', an overlong NUL, a surrogate, above
     * U+10FFFF, 0xFE and 0xFF, a truncated character at the end, a 5-byte form. */
    const struct {
        const char *bytes;
        size_t len;
        const char *what;
    } invalid[] = {
        {"\x80", 1, "a lone continuation byte"},
        {"\xc0\xaf", 2, "an overlong /"},
        {"\xc0\x80", 2, "an overlong NUL"},
        {"\xed\xa0\x80", 3, "a surrogate (U+D800)"},
        {"\xf4\x90\x80\x80", 4, "above U+10FFFF"},
        {"\xfe", 1, "0xFE"},
        {"\xff", 1, "0xFF"},
        {"\xf8\x88\x80\x80\x80", 5, "a 5-byte form"},
    };
    for (size_t i = 0; i < PL_ARRAY_LEN(invalid); i++) {
        n = token_message(msg, sizeof msg, invalid[i].bytes, invalid[i].len);
        one_frame_closes(f, E2E_WS_FIN | E2E_WS_TEXT, msg, n, INVALID_PAYLOAD, invalid[i].what);
    }
    /* A message that ends inside a character. */
    one_frame_closes(f, E2E_WS_FIN | E2E_WS_TEXT, "{\"op\":\"x\xe2\x82", 10, INVALID_PAYLOAD,
                     "a message cut inside a character");
    /* An invalid sequence split across fragments: E2 82 | 28. */
    n = token_message(msg, sizeof msg, "\xe2\x82\x28", 3);
    w = open_ws(f);
    send_frame(w, E2E_WS_TEXT, msg, 44);
    send_frame(w, E2E_WS_FIN | E2E_WS_CONT, msg + 44, n - 44);
    expect_close(w, INVALID_PAYLOAD, "an invalid sequence split across fragments");
    e2e_ws_free(w, 0);
    test_done(f);
}

/* ------------------------------------------------------------------ close (7.x) */

static void test_close_codes(void **state)
{
    struct conformance *f = *state;
    /* 1000 is echoed; so is any other valid code. */
    const int valid[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009,
                         1010, 1011, 3000, 3999, 4000, 4999};
    for (size_t i = 0; i < PL_ARRAY_LEN(valid); i++) {
        char what[64];
        snprintf(what, sizeof what, "close %d", valid[i]);
        struct e2e_ws *w = open_ws(f);
        send_close(w, valid[i], NULL, 0);
        expect_close(w, valid[i], what);
        e2e_ws_free(w, 0);
    }
    /* With a reason, after a message. */
    struct e2e_ws *w = open_ws(f);
    e2e_ws_subscribe(w, "alice", f->token, NULL, -1);
    expect_subscribed(w, "before the close");
    send_close(w, NORMAL, "bye \xe2\x82\xac", 7);
    expect_close(w, NORMAL, "close 1000 with a reason");
    e2e_ws_free(w, 0);
    /* The longest reason: 123 bytes. */
    char reason[123];
    memset(reason, 'r', sizeof reason);
    w = open_ws(f);
    send_close(w, NORMAL, reason, sizeof reason);
    expect_close(w, NORMAL, "close 1000 with a 123-byte reason");
    e2e_ws_free(w, 0);
    /* An empty close: the answer carries no code (or 1000). */
    w = open_ws(f);
    send_frame(w, E2E_WS_FIN | E2E_WS_CLOSE, NULL, 0);
    int got = e2e_ws_wait_close(w, E2E_WS_TIMEOUT_MS, NULL);
    if (got != E2E_WS_NO_STATUS && got != NORMAL)
        fail_msg("an empty close: answered %d", got);
    e2e_ws_free(w, 0);
    /* Nothing after a close is read: a message sent after it gets no answer. */
    w = open_ws(f);
    send_close(w, NORMAL, NULL, 0);
    char *text = subscribe_text(f, 120);
    send_frame(w, E2E_WS_FIN | E2E_WS_TEXT, text, 120);
    free(text);
    int skipped = 0;
    assert_int_equal(e2e_ws_wait_close(w, E2E_WS_TIMEOUT_MS, &skipped), NORMAL);
    assert_int_equal(skipped, 0);
    e2e_ws_free(w, 0);
    /* A one-byte close payload and invalid codes: 1002. */
    one_frame_closes(f, E2E_WS_FIN | E2E_WS_CLOSE, "\x03", 1, PROTOCOL_ERROR,
                     "a 1-byte close payload");
    const int invalid[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535};
    for (size_t i = 0; i < PL_ARRAY_LEN(invalid); i++) {
        char what[64];
        snprintf(what, sizeof what, "close with the invalid code %d", invalid[i]);
        w = open_ws(f);
        send_close(w, invalid[i], NULL, 0);
        expect_close(w, PROTOCOL_ERROR, what);
        e2e_ws_free(w, 0);
    }
    /* A reason that is not UTF-8. */
    w = open_ws(f);
    send_close(w, NORMAL, "bad \xc0\xaf", 6);
    expect_close(w, INVALID_PAYLOAD, "a close reason that is not UTF-8");
    e2e_ws_free(w, 0);
    test_done(f);
}

/* ------------------------------------------------------------------ limits (9.x) */

static void test_message_too_big(void **state)
{
    struct conformance *f = *state;
    /* Fragments adding up to exactly 4 KiB are fine; one byte more is 1009. */
    char *text = subscribe_text(f, WS_LIMIT_BYTES);
    struct e2e_ws *w = open_ws(f);
    send_frame(w, E2E_WS_TEXT, text, 2048);
    send_frame(w, E2E_WS_FIN | E2E_WS_CONT, text + 2048, WS_LIMIT_BYTES - 2048);
    expect_subscribed(w, "4096 bytes in two fragments");
    e2e_ws_free(w, NORMAL);
    free(text);
    text = subscribe_text(f, WS_LIMIT_BYTES + 1);
    w = open_ws(f);
    send_frame(w, E2E_WS_TEXT, text, 2048);
    send_frame(w, E2E_WS_FIN | E2E_WS_CONT, text + 2048, WS_LIMIT_BYTES + 1 - 2048);
    expect_close(w, TOO_BIG, "4097 bytes in two fragments");
    e2e_ws_free(w, 0);
    /* Many small fragments past the limit, never finished. */
    w = open_ws(f);
    send_frame(w, E2E_WS_TEXT, text, 1000);
    for (int i = 0; i < 8; i++)
        send_frame(w, E2E_WS_CONT, text + 1000, 1000);
    expect_close(w, TOO_BIG, "an unfinished message past 4 KiB");
    e2e_ws_free(w, 0);
    free(text);
    /* A 1 MiB frame is refused from its header. */
    size_t big = 1024 * 1024;
    char *huge = malloc(big);
    assert_non_null(huge);
    memset(huge, ' ', big);
    one_frame_closes(f, E2E_WS_FIN | E2E_WS_TEXT, huge, big, TOO_BIG, "a 1 MiB text frame");
    free(huge);
    test_done(f);
}

/* ------------------------------------------------------------------ other violations */

/* Writes bytes as they are (no masking). */
static void send_raw(struct e2e_ws *w, const void *bytes, size_t len)
{
    const char *p = bytes;
    while (len > 0) {
        ssize_t n = send(w->fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        p += n;
        len -= (size_t)n;
    }
}

static void test_protocol_violations(void **state)
{
    struct conformance *f = *state;
    /* A client frame without a mask (RFC 6455 §5.1: the server must close). */
    struct e2e_ws *w = open_ws(f);
    const unsigned char unmasked[] = {0x81, 0x05, 'h', 'e', 'l', 'l', 'o'};
    send_raw(w, unmasked, sizeof unmasked);
    expect_close(w, PROTOCOL_ERROR, "an unmasked frame");
    e2e_ws_free(w, 0);
    /* Binary messages: the protocol is JSON text only. */
    one_frame_closes(f, E2E_WS_FIN | E2E_WS_BINARY, "\x00\x01\x02", 3, UNSUPPORTED_DATA,
                     "a binary message");
    w = open_ws(f);
    send_frame(w, E2E_WS_BINARY, "\x00\x01", 2);
    send_frame(w, E2E_WS_FIN | E2E_WS_CONT, "\x02\x03", 2);
    expect_close(w, UNSUPPORTED_DATA, "a fragmented binary message");
    e2e_ws_free(w, 0);
    /* A text message that is JSON but not an object, and one with an unknown op: errors,
     * and the connection goes on. */
    w = open_ws(f);
    const char *bad[] = {"[1,2,3]", "{\"op\":\"dance\"}", "not json"};
    for (size_t i = 0; i < PL_ARRAY_LEN(bad); i++) {
        e2e_ws_send_text(w, bad[i]);
        cJSON *m = e2e_ws_recv_json(w, E2E_WS_TIMEOUT_MS);
        assert_string_equal(e2e_str(m, "op"), "error");
        assert_string_equal(e2e_str(m, "code"), "bad_request");
        cJSON_Delete(m);
    }
    e2e_ws_subscribe(w, "alice", f->token, NULL, -1);
    expect_subscribed(w, "after the bad requests");
    e2e_ws_free(w, NORMAL);
    test_done(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_table),
        cmocka_unit_test(test_framing_lengths),
        cmocka_unit_test(test_ping_pong),
        cmocka_unit_test(test_reserved_bits),
        cmocka_unit_test(test_reserved_opcodes),
        cmocka_unit_test(test_fragmentation),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_close_codes),
        cmocka_unit_test(test_message_too_big),
        cmocka_unit_test(test_protocol_violations),
    };
    _Static_assert(PL_ARRAY_LEN(tests) == TESTS_COUNT, "TESTS_COUNT counts them");
    e2e_filter_from_env();
    return cmocka_run_group_tests_name("e2e_ws_conformance", tests, group_setup, group_teardown);
}
