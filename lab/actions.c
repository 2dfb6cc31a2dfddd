/* actions.c owns what a scenario does to the cluster from the outside besides load: the
 * forger, which posts webhooks no bank signed (or signed wrongly) to both gateways, and the
 * slow subscribers, WebSocket clients that subscribe to everything and then never read.
 * Must not: use the cluster's secrets except where a forgery needs what an attacker might
 * hold (an old captured signature is modelled by signing with the real secret at a stale
 * timestamp; a tampered body by signing one body and sending another). */
#include "run.h"

#include "pl.h"
#include "sign.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Forgeries per cell, one every this long, alternating gateways and kinds. */
#define LAB_FORGE_COUNT 40
#define LAB_FORGE_PAUSE_MS 10
/* Older than the gateways' ±300 s window. */
#define LAB_FORGE_STALE_S 900
/* The amount a forgery claims: far above anything the lab pays, so an applied one shows. */
#define LAB_FORGE_AMOUNT_MINOR 99999900
/* The slow subscribers' receive buffer: small, so the gateway's queue fills, not the kernel's. */
#define LAB_SLOW_RCVBUF_BYTES 4096
#define LAB_SLOW_HANDSHAKE_TIMEOUT_MS 3000

enum forge_kind {
    FORGE_UNSIGNED = 0,
    FORGE_WRONG_SECRET,
    FORGE_TAMPERED,
    FORGE_STALE,
    FORGE_KINDS
};

/* A recent client transaction to claim, or a made-up reference when none is known yet. */
static void pick_reference(struct lab_run *r, int i, char *out, size_t cap)
{
    int sent = atomic_load(&r->ops_sent);
    snprintf(out, cap, "wtx_forged%08d", i);
    for (int k = sent - 1; k >= 0 && k >= sent - 8; k--) {
        if (r->ops[(k + i) % (sent > 0 ? sent : 1)].txn_id[0] != '\0') {
            snprintf(out, cap, "%s", r->ops[(k + i) % sent].txn_id);
            return;
        }
    }
}

static void forge_body(struct lab_run *r, const char *evt, const char *reference, int64_t amount,
                       char *out, size_t cap)
{
    int64_t now_ms = lab_wall_us() / 1000;
    snprintf(out, cap,
             "{\"id\":\"%s\",\"type\":\"payment.succeeded\",\"created\":%lld,\"data\":{"
             "\"payment_id\":\"bp_forged\",\"reference\":\"%s\",\"amount_minor\":%lld,"
             "\"currency\":\"INR\",\"status\":\"succeeded\",\"failure_reason\":null,"
             "\"wallet_epoch\":\"%s\"},\"created_ms\":%lld}",
             evt, (long long)(now_ms / 1000), reference, (long long)amount, r->epoch,
             (long long)now_ms);
}

static void forge_one(struct lab_run *r, struct lab_http *h, int i)
{
    enum forge_kind kind = (enum forge_kind)(i % FORGE_KINDS);
    char reference[ID_BYTES_MAX + 16], evt[48], body[1024], signed_body[1024], sig[256];
    char url[CLUSTER_URL_BYTES_MAX + 32], h_id[96], h_ts[64], h_sig[300];
    pick_reference(r, i, reference, sizeof reference);
    snprintf(evt, sizeof evt, "evt_forged%08d", i);
    forge_body(r, evt, reference, LAB_FORGE_AMOUNT_MINOR, body, sizeof body);
    int64_t ts = lab_wall_us() / 1000000 - (kind == FORGE_STALE ? LAB_FORGE_STALE_S : 0);
    const char *secret = r->webhook_secret;
    const char *to_sign = body;
    if (kind == FORGE_WRONG_SECRET)
        secret = "whsec_bm90IHRoZSBiYW5rJ3Mgc2VjcmV0LCBub3QgYXQgYWxsIQ==";
    if (kind == FORGE_TAMPERED) {
        forge_body(r, evt, reference, 100, signed_body, sizeof signed_body);
        to_sign = signed_body;
    }
    sig[0] = '\0';
    if (kind != FORGE_UNSIGNED &&
        sign_webhook(secret, evt, ts, to_sign, strlen(to_sign), sig, sizeof sig) != 0)
        return;
    snprintf(url, sizeof url, "%s/v1/webhooks/bank", r->c.gateway_url[i % 2]);
    snprintf(h_id, sizeof h_id, "webhook-id: %s", evt);
    snprintf(h_ts, sizeof h_ts, "webhook-timestamp: %lld", (long long)ts);
    snprintf(h_sig, sizeof h_sig, "webhook-signature: %s", sig);
    const char *const signed_hdrs[] = {h_id, h_ts, h_sig, NULL};
    const char *const unsigned_hdrs[] = {h_id, NULL};
    struct lab_reply rep;
    if (lab_http_call(h, "POST", url, body, kind == FORGE_UNSIGNED ? unsigned_hdrs : signed_hdrs,
                      5000, &rep) != 0 ||
        rep.status == 0)
        return; /* the gateway was not there: nothing was attempted */
    atomic_fetch_add(&r->forged_sent, 1);
    if (rep.status == 401)
        atomic_fetch_add(&r->forged_refused, 1);
    else if (rep.status >= 200 && rep.status < 300)
        atomic_fetch_add(&r->forged_applied, 1);
}

void *lab_forger_main(void *arg)
{
    /* A fixed count, whatever the load's speed, so every run shows the same attempts. */
    struct lab_run *r = arg;
    struct lab_http h;
    if (lab_http_init(&h, &r->stop) != 0)
        return NULL;
    for (int i = 0; i < LAB_FORGE_COUNT && !atomic_load(&r->stop); i++) {
        forge_one(r, &h, i);
        lab_pause_ms(r, LAB_FORGE_PAUSE_MS);
    }
    lab_http_free(&h);
    return NULL;
}

/* ---------------------------------------------------------------- slow subscribers */

/* Reads until the end of the HTTP response head ("\r\n\r\n"), bounded in time; true on 101. */
static bool read_upgrade(int fd)
{
    char head[2048];
    size_t used = 0;
    int64_t end_us = lab_mono_us() + LAB_SLOW_HANDSHAKE_TIMEOUT_MS * 1000LL;
    while (used < sizeof head - 1) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int left_ms = (int)((end_us - lab_mono_us()) / 1000);
        if (left_ms <= 0 || poll(&p, 1, left_ms) <= 0)
            return false;
        /* One byte at a time: the head must not swallow the first frame. */
        ssize_t n = read(fd, head + used, 1);
        if (n <= 0)
            return false;
        used += (size_t)n;
        head[used] = '\0';
        if (used >= 4 && memcmp(head + used - 4, "\r\n\r\n", 4) == 0)
            return strncmp(head, "HTTP/1.1 101", 12) == 0;
    }
    return false;
}

/* A masked client text frame (RFC 6455 §5.3) of text into out; its length, or 0. */
static size_t text_frame(const char *text, uint8_t *out, size_t cap)
{
    size_t n = strlen(text);
    const uint8_t mask[4] = {0x5a, 0x13, 0xc7, 0x2e};
    size_t head = n < 126 ? 2 : 4;
    if (n > 0xffff || head + 4 + n > cap)
        return 0;
    out[0] = 0x81;
    if (n < 126) {
        out[1] = (uint8_t)(0x80 | n);
    } else {
        out[1] = 0x80 | 126;
        out[2] = (uint8_t)(n >> 8);
        out[3] = (uint8_t)(n & 0xff);
    }
    memcpy(out + head, mask, 4);
    for (size_t i = 0; i < n; i++)
        out[head + 4 + i] = (uint8_t)text[i] ^ mask[i % 4];
    return head + 4 + n;
}

static int slow_open(struct lab_run *r)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int rcvbuf = LAB_SLOW_RCVBUF_BYTES;
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)r->c.gateways[0].ws_port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    char req[512], sub[LAB_SECRET_BYTES_MAX + 64];
    uint8_t frame[LAB_SECRET_BYTES_MAX + 128];
    int n = snprintf(req, sizeof req,
                     "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     r->c.gateways[0].ws_port);
    snprintf(sub, sizeof sub, "{\"op\":\"subscribe\",\"user\":\"*\",\"token\":\"%s\"}",
             r->admin_token);
    size_t frame_bytes = text_frame(sub, frame, sizeof frame);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || n <= 0 ||
        write(fd, req, (size_t)n) != n || !read_upgrade(fd) || frame_bytes == 0 ||
        write(fd, frame, frame_bytes) != (ssize_t)frame_bytes) {
        close(fd);
        return -1;
    }
    return fd;
}

int lab_slow_subscribers_open(struct lab_run *r, int *fds, int count)
{
    int opened = 0;
    for (int i = 0; i < count; i++) {
        fds[i] = slow_open(r);
        opened += fds[i] >= 0 ? 1 : 0;
    }
    return opened;
}

/* Drains what the kernel holds for fd without blocking; true once the peer has closed. */
static bool peer_closed(int fd)
{
    char buf[65536];
    for (int rounds = 0; rounds < 4096; rounds++) {
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n == 0)
            return true;
        if (n < 0)
            return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
    }
    return false;
}

int lab_slow_subscribers_dropped(int *fds, int count)
{
    int dropped = 0;
    for (int i = 0; i < count; i++) {
        if (fds[i] < 0)
            continue;
        dropped += peer_closed(fds[i]) ? 1 : 0;
        close(fds[i]);
        fds[i] = -1;
    }
    return dropped;
}
