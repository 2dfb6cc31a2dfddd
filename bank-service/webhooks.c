/* webhooks.c owns sending the outbox's webhooks (docs/api.md): one evtimer, armed for the
 * earliest next_attempt_at_ms of a pending delivery in bank.db, leases due deliveries into a
 * fixed table of WEBHOOKS_SLOTS_MAX slots and POSTs them on libcurl multi (curlev). The
 * database is the queue: a restart finds every delivery still pending (leases dropped) and
 * carries on with its schedule — nothing lives only in memory but the attempts under way.
 *
 * One attempt: the delivery's notify_url is a comma-separated list (at most
 * WEBHOOKS_URLS_MAX). The attempt starts at the URL that last answered 2xx for that list and
 * fails over to the next one on a transport error, a timeout or a 5xx; a 2xx delivers; any
 * other answer (or every URL failing) fails the attempt. A failed attempt is retried on the
 * Standard Webhooks schedule (0, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h) × --time-scale,
 * ±20 % jitter drawn from the fault hash; after the last one the delivery is dead. Each HTTP
 * request is signed afresh (webhook-timestamp is its own send time); webhook-id is the
 * event id, the same for every attempt and every redelivery.
 *
 * Faults (faults.c decides, from seed, event id and attempt): drop (the attempt is counted,
 * not sent, and fails), duplicate (the first request of the attempt is sent twice at once;
 * the copy's answer is only counted), delay (the attempt is held before sending; this is what
 * reorders events), stop (no delivery is leased, and held ones wait, until it is cleared).
 *
 * Must not: touch SQL beyond outbox.c, block the loop, or send an event before the commit
 * that wrote it (events only reach us from bank.db, so this holds by construction).
 * Invariants: a slot is FREE, or owns exactly one leased delivery; a leased delivery is in
 * exactly one slot; at most one request of a slot (besides a duplicate copy) is in flight. */
#include "bank.h"

#include <assert.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "curlev.h"
#include "log.h"
#include "metrics.h"
#include "outbox.h"
#include "pl.h"
#include "sign.h"

/* Attempts under way at once (held by a delay fault, or in HTTP flight): bounded
 * concurrency towards the gateways; the rest wait in bank.db. */
#define WEBHOOKS_SLOTS_MAX 64
_Static_assert(WEBHOOKS_SLOTS_MAX <= OUTBOX_LEASE_BATCH_MAX, "one pass can fill every slot");
/* URLs in one notify_url list (gateways to fail over along); api.c refuses more. */
#define WEBHOOKS_URLS_MAX PAYMENTS_NOTIFY_URLS_MAX
/* notify_url lists whose working URL is remembered (direct-mapped by hash; a collision only
 * costs a failover). */
#define WEBHOOKS_URL_MEMORY_MAX 64
/* After SQLITE_BUSY or an error, try again this much later. */
#define WEBHOOKS_RETRY_MS 10
/* A held attempt looks at webhook_stop this often. */
#define WEBHOOKS_STOP_POLL_MS 100
/* The timer never fires sooner than this after a pass that found work not yet due. */
#define WEBHOOKS_MIN_DELAY_MS 1
#define WEBHOOKS_CONNECT_TIMEOUT_MS_MAX 2000
#define WEBHOOKS_JITTER 0.2
#define WEBHOOKS_HEADER_BYTES_MAX 256

/* Delay before attempt n+1 (index n), Standard Webhooks; index 0 is the first attempt. */
static const int64_t webhooks_schedule_ms[OUTBOX_ATTEMPTS_MAX] = {
    0, 5000, 300000, 1800000, 7200000, 18000000, 36000000, 36000000,
};

enum webhooks_slot_state {
    WEBHOOKS_SLOT_FREE = 0,
    WEBHOOKS_SLOT_HELD,      /* waiting out a delay fault, or webhook_stop */
    WEBHOOKS_SLOT_SENDING,   /* one request in flight */
    WEBHOOKS_SLOT_FINISHING, /* the outcome is known; bank.db refused it, retrying */
};

struct webhooks_slot {
    enum webhooks_slot_state state;
    struct webhooks *w;
    struct event *timer; /* HELD: the end of the hold; FINISHING: the next try */
    struct outbox_delivery d;
    char urls[WEBHOOKS_URLS_MAX][PAYMENTS_URL_CHARS_MAX + 1];
    size_t urls_count;
    size_t url_index; /* the URL of the request in flight (or last sent) */
    size_t tries;     /* requests made in this attempt: ≤ urls_count */
    bool duplicate;   /* the fault: the first request goes out twice */
    uint64_t url_hash;
    /* the outcome, kept while FINISHING */
    enum outbox_result result;
    int64_t next_attempt_at_ms;
    int64_t backoff_ms;    /* RETRY: how long after the failure */
    int64_t retry_after_s; /* the last answer's Retry-After; 0 when none */
    long http_status;
    char error[OUTBOX_ERROR_BYTES_MAX];
};

struct webhooks_url_memory {
    uint64_t hash; /* 0: empty */
    size_t index;
};

struct webhooks {
    struct bank_ctx *ctx;
    struct curlev *curl;
    struct event *timer;
    int64_t timer_at_ms; /* when the timer is armed for; 0 when not armed */
    size_t busy_count;   /* slots not FREE */
    struct webhooks_slot slots[WEBHOOKS_SLOTS_MAX];
    struct webhooks_url_memory urls[WEBHOOKS_URL_MEMORY_MAX];
};

static void webhooks_slot_send(struct webhooks_slot *s);
static void webhooks_slot_finish(struct webhooks_slot *s);

/* ================================================================ small helpers */

static void webhooks_count(struct webhooks *w, const char *name, const char *key, const char *value)
{
    char labels[METRICS_LABELS_BYTES_MAX];
    int n = snprintf(labels, sizeof labels, "%s=\"%s\"", key, value);
    assert(n > 0 && (size_t)n < sizeof labels);
    (void)n;
    metrics_counter_add(w->ctx->metrics, name, labels, 1);
}

static struct timeval webhooks_tv(int64_t delay_ms)
{
    if (delay_ms < 0) {
        delay_ms = 0;
    }
    struct timeval tv = {.tv_sec = (time_t)(delay_ms / 1000),
                         .tv_usec = (suseconds_t)((delay_ms % 1000) * 1000)};
    return tv;
}

static void webhooks_arm(struct webhooks *w, int64_t at_ms)
{
    int64_t now_ms = pl_now_ms();
    int64_t delay_ms = at_ms > now_ms ? at_ms - now_ms : 0;
    struct timeval tv = webhooks_tv(delay_ms);
    evtimer_add(w->timer, &tv);
    w->timer_at_ms = now_ms + delay_ms;
}

void bank_webhooks_kick(struct bank_ctx *ctx)
{
    struct webhooks *w = ctx->webhooks;
    if (w == NULL) {
        return; /* not started (startup order): its first pass finds everything */
    }
    int64_t now_ms = pl_now_ms();
    if (w->timer_at_ms != 0 && w->timer_at_ms <= now_ms) {
        return;
    }
    webhooks_arm(w, now_ms);
}

/* FNV-1a of a notify_url list, never 0 (0 marks an empty memory slot). */
static uint64_t webhooks_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s != '\0'; s++) {
        h ^= (uint8_t)*s;
        h *= 1099511628211ULL;
    }
    return h != 0 ? h : 1;
}

/* Splits d.notify_url at commas (spaces around entries ignored) into s->urls. */
static void webhooks_split_urls(struct webhooks_slot *s)
{
    s->urls_count = 0;
    const char *p = s->d.notify_url;
    while (*p != '\0' && s->urls_count < WEBHOOKS_URLS_MAX) {
        p += strspn(p, " ,");
        size_t n = strcspn(p, ", ");
        if (n > 0 && n <= PAYMENTS_URL_CHARS_MAX) {
            memcpy(s->urls[s->urls_count], p, n);
            s->urls[s->urls_count][n] = '\0';
            s->urls_count++;
        }
        p += n;
    }
}

/* The backoff before the attempt after `attempts` (1..7): the schedule × time scale with a
 * deterministic ±WEBHOOKS_JITTER, stretched to the receiver's Retry-After when it asked for
 * longer (capped at the schedule's longest step × time scale). Retry-After only ever delays:
 * taken as the whole backoff, a gateway's "Retry-After: 1" would burn the whole schedule in
 * seconds while the wallet is down. Retry-After is in real seconds, not compressed. */
static int64_t webhooks_backoff_ms(const struct webhooks *w, const struct outbox_delivery *d,
                                   int64_t retry_after_s)
{
    assert(d->attempts >= 1 && d->attempts < OUTBOX_ATTEMPTS_MAX);
    const struct bank_ctx *ctx = w->ctx;
    double base_ms = (double)webhooks_schedule_ms[d->attempts] * ctx->time_scale;
    double draw = faults_draw(ctx->faults.seed, d->event_id, (uint32_t)d->attempts,
                              FAULTS_WEBHOOK_RETRY_JITTER);
    double ms = base_ms * (1.0 + WEBHOOKS_JITTER * (2.0 * draw - 1.0));
    double cap_ms = (double)webhooks_schedule_ms[OUTBOX_ATTEMPTS_MAX - 1] * ctx->time_scale;
    double asked_ms = (double)retry_after_s * 1000.0;
    if (asked_ms > ms)
        ms = asked_ms < cap_ms ? asked_ms : (ms > cap_ms ? ms : cap_ms);
    return ms < 1.0 ? 1 : (int64_t)ms;
}

/* ================================================================ slots */

static void webhooks_slot_release(struct webhooks_slot *s)
{
    struct webhooks *w = s->w;
    assert(s->state != WEBHOOKS_SLOT_FREE);
    assert(w->busy_count > 0);
    evtimer_del(s->timer);
    s->state = WEBHOOKS_SLOT_FREE;
    w->busy_count--;
    bank_webhooks_kick(w->ctx); /* a free slot: due deliveries may be waiting for it */
}

static void webhooks_slot_hold(struct webhooks_slot *s, int64_t delay_ms)
{
    s->state = WEBHOOKS_SLOT_HELD;
    struct timeval tv = webhooks_tv(delay_ms);
    evtimer_add(s->timer, &tv);
}

/* The attempt failed (no URL answered 2xx): retry on the schedule, or dead after the last. */
static void webhooks_slot_fail(struct webhooks_slot *s, long http_status, const char *error)
{
    s->http_status = http_status;
    pl_strlcpy(s->error, error, sizeof s->error); /* truncation is fine for a message */
    if (s->d.attempts >= OUTBOX_ATTEMPTS_MAX) {
        s->result = OUTBOX_DEAD;
        s->next_attempt_at_ms = pl_now_ms();
    } else {
        s->result = OUTBOX_RETRY;
        s->backoff_ms = webhooks_backoff_ms(s->w, &s->d, s->retry_after_s);
        s->next_attempt_at_ms = pl_now_ms() + s->backoff_ms;
    }
    webhooks_count(s->w, "paylab_bank_webhook_attempts_total", "outcome", "failed");
    webhooks_slot_finish(s);
}

static void webhooks_slot_delivered(struct webhooks_slot *s, long http_status)
{
    s->result = OUTBOX_DELIVERED;
    s->http_status = http_status;
    s->error[0] = '\0';
    s->next_attempt_at_ms = pl_now_ms();
    struct webhooks_url_memory *m = &s->w->urls[s->url_hash % WEBHOOKS_URL_MEMORY_MAX];
    m->hash = s->url_hash;
    m->index = s->url_index;
    webhooks_count(s->w, "paylab_bank_webhook_attempts_total", "outcome", "delivered");
    webhooks_slot_finish(s);
}

static void webhooks_log_outcome(const struct webhooks_slot *s)
{
    const struct outbox_delivery *d = &s->d;
    const char *url = s->tries > 0 ? s->urls[s->url_index] : "-";
    if (s->result == OUTBOX_DELIVERED) {
        log_info("webhook delivered",
                 "event=%s type=%s payment=%s attempt=%lld url=\"%s\" status=%ld", d->event_id,
                 d->type, d->payment_id, (long long)d->attempts, url, s->http_status);
    } else if (s->result == OUTBOX_RETRY) {
        log_info("webhook attempt failed",
                 "event=%s type=%s payment=%s attempt=%lld error=\"%s\" retry_in_ms=%lld",
                 d->event_id, d->type, d->payment_id, (long long)d->attempts, s->error,
                 (long long)s->backoff_ms);
    } else {
        log_warn("webhook dead", "event=%s type=%s payment=%s attempts=%lld error=\"%s\"",
                 d->event_id, d->type, d->payment_id, (long long)d->attempts, s->error);
    }
}

/* Records the outcome in bank.db, then frees the slot; retried while bank.db refuses. */
static void webhooks_slot_finish(struct webhooks_slot *s)
{
    const char *url = s->tries > 0 ? s->urls[s->url_index] : NULL;
    int rc =
        outbox_finish(&s->w->ctx->db, s->d.id, s->result, s->next_attempt_at_ms, s->http_status,
                      s->result == OUTBOX_DELIVERED ? NULL : s->error, url, pl_now_ms());
    if (rc != 0) {
        log_warn("webhook outcome not recorded yet", "event=%s error=%d", s->d.event_id, rc);
        s->state = WEBHOOKS_SLOT_FINISHING;
        struct timeval tv = webhooks_tv(WEBHOOKS_RETRY_MS);
        evtimer_add(s->timer, &tv);
        return;
    }
    webhooks_log_outcome(s);
    if (s->result != OUTBOX_RETRY) {
        webhooks_count(s->w, "paylab_bank_webhook_deliveries_total", "outcome",
                       s->result == OUTBOX_DELIVERED ? "delivered" : "dead");
    }
    webhooks_slot_release(s);
}

/* The slot's timer: a hold ended (send, unless stopped) or a finish is to be retried. */
static void webhooks_slot_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct webhooks_slot *s = arg;
    if (s->state == WEBHOOKS_SLOT_FINISHING) {
        webhooks_slot_finish(s);
        return;
    }
    assert(s->state == WEBHOOKS_SLOT_HELD);
    if (s->w->ctx->faults.webhook_stop) {
        webhooks_slot_hold(s, WEBHOOKS_STOP_POLL_MS);
        return;
    }
    webhooks_slot_send(s);
}

/* ================================================================ requests */

/* Classifies an answer for the logs and the metrics. *failover: try the next URL. */
static const char *webhooks_classify(const struct curlev_result *res, char *error, size_t cap,
                                     bool *failover)
{
    *failover = true;
    switch (res->outcome) {
    case CURLEV_ANSWERED:
        *failover = res->http_status >= 500;
        snprintf(error, cap, "HTTP %ld", res->http_status);
        return res->http_status >= 200 && res->http_status < 300 ? "2xx" : "http_error";
    case CURLEV_REFUSED:
        snprintf(error, cap, "connection refused");
        return "refused";
    case CURLEV_TIMEOUT:
        snprintf(error, cap, "no answer within %lld ms", (long long)res->elapsed_ms);
        return "timeout";
    case CURLEV_RESET:
    case CURLEV_BAD:
        break;
    }
    snprintf(error, cap, "transport error: %.100s", res->error != NULL ? res->error : "?");
    return "transport_error";
}

static void webhooks_request_done(const struct curlev_result *res, void *arg)
{
    struct webhooks_slot *s = arg;
    assert(s->state == WEBHOOKS_SLOT_SENDING);
    char error[OUTBOX_ERROR_BYTES_MAX];
    bool failover = false;
    const char *outcome = webhooks_classify(res, error, sizeof error, &failover);
    webhooks_count(s->w, "paylab_bank_webhook_requests_total", "outcome", outcome);
    s->retry_after_s = res->retry_after_s;
    log_debug("webhook request", "event=%s url=\"%s\" outcome=%s status=%ld ms=%lld", s->d.event_id,
              s->urls[s->url_index], outcome, res->http_status, (long long)res->elapsed_ms);
    if (strcmp(outcome, "2xx") == 0) {
        webhooks_slot_delivered(s, res->http_status);
        return;
    }
    if (failover && s->tries < s->urls_count) {
        s->url_index = (s->url_index + 1) % s->urls_count;
        log_info("webhook failing over", "event=%s error=\"%s\" next_url=\"%s\"", s->d.event_id,
                 error, s->urls[s->url_index]);
        metrics_counter_add(s->w->ctx->metrics, "paylab_bank_webhook_failovers_total", "", 1);
        webhooks_slot_send(s);
        return;
    }
    webhooks_slot_fail(s, res->outcome == CURLEV_ANSWERED ? res->http_status : 0, error);
}

/* The duplicate fault's copy: only counted; the slot decides on the original's answer. */
static void webhooks_copy_done(const struct curlev_result *res, void *arg)
{
    struct webhooks *w = arg;
    char error[OUTBOX_ERROR_BYTES_MAX];
    bool failover = false;
    const char *outcome = webhooks_classify(res, error, sizeof error, &failover);
    webhooks_count(w, "paylab_bank_webhook_duplicate_requests_total", "outcome", outcome);
}

/* The signed request of this slot's current URL. The header strings live in hdrs. */
static int webhooks_request(struct webhooks_slot *s, struct curlev_request *req,
                            char (*hdrs)[WEBHOOKS_HEADER_BYTES_MAX])
{
    const struct bank_ctx *ctx = s->w->ctx;
    int64_t ts_s = pl_now_ms() / 1000;
    char sig[SIGN_SIGNATURE_BYTES_MAX];
    int rc = sign_webhook(ctx->webhook_secret, s->d.event_id, ts_s, s->d.body, s->d.body_bytes, sig,
                          sizeof sig);
    if (rc != 0) {
        return rc;
    }
    size_t n = 0;
    snprintf(hdrs[n++], WEBHOOKS_HEADER_BYTES_MAX, "Content-Type: application/json");
    snprintf(hdrs[n++], WEBHOOKS_HEADER_BYTES_MAX, "User-Agent: paylab-bank/%s", PAYLAB_VERSION);
    snprintf(hdrs[n++], WEBHOOKS_HEADER_BYTES_MAX, "webhook-id: %s", s->d.event_id);
    snprintf(hdrs[n++], WEBHOOKS_HEADER_BYTES_MAX, "webhook-timestamp: %lld", (long long)ts_s);
    snprintf(hdrs[n++], WEBHOOKS_HEADER_BYTES_MAX, "webhook-signature: %s", sig);
    if (s->d.traceparent[0] != '\0') {
        snprintf(hdrs[n++], WEBHOOKS_HEADER_BYTES_MAX, "traceparent: %s", s->d.traceparent);
    }
    for (size_t i = 0; i < n; i++) {
        req->headers[i] = hdrs[i];
    }
    req->headers[n] = NULL;
    req->method = "POST";
    req->url = s->urls[s->url_index];
    req->body = s->d.body;
    req->body_bytes = s->d.body_bytes;
    req->timeout_ms = (long)ctx->webhook_timeout_ms;
    req->connect_timeout_ms = (long)(ctx->webhook_timeout_ms < WEBHOOKS_CONNECT_TIMEOUT_MS_MAX
                                         ? ctx->webhook_timeout_ms
                                         : WEBHOOKS_CONNECT_TIMEOUT_MS_MAX);
    return PL_OK;
}

/* Sends the attempt's next request (and, on its first, the duplicate fault's copy). */
static void webhooks_slot_send(struct webhooks_slot *s)
{
    struct webhooks *w = s->w;
    struct curlev_request req = {0};
    char hdrs[CURLEV_HEADERS_MAX][WEBHOOKS_HEADER_BYTES_MAX];
    int rc = webhooks_request(s, &req, hdrs);
    if (rc != 0) {
        webhooks_slot_fail(s, 0, "cannot sign: bad webhook_secret");
        return;
    }
    s->state = WEBHOOKS_SLOT_SENDING;
    s->tries++;
    if (s->duplicate && s->tries == 1) {
        webhooks_count(w, "paylab_bank_faults_injected_total", "kind", FAULTS_WEBHOOK_DUPLICATE);
        log_info("webhook duplicated (fault)", "event=%s attempt=%lld", s->d.event_id,
                 (long long)s->d.attempts);
        if (curlev_start(w->curl, &req, webhooks_copy_done, w, NULL) != 0) {
            log_warn("duplicate webhook not sent", "event=%s", s->d.event_id);
        }
    }
    rc = curlev_start(w->curl, &req, webhooks_request_done, s, NULL);
    if (rc != 0) {
        log_warn("webhook request not started", "event=%s error=%d", s->d.event_id, rc);
        webhooks_slot_fail(s, 0, "request not started (out of memory or transfers)");
    }
}

/* ================================================================ the pass */

/* A freshly leased delivery: decides the faults of this attempt, then sends or holds. */
static void webhooks_slot_start(struct webhooks_slot *s)
{
    struct webhooks *w = s->w;
    const struct faults *f = &w->ctx->faults;
    w->busy_count++;
    s->state = WEBHOOKS_SLOT_HELD;
    s->tries = 0;
    s->retry_after_s = 0;
    s->url_hash = webhooks_hash(s->d.notify_url);
    webhooks_split_urls(s);
    const struct webhooks_url_memory *m = &w->urls[s->url_hash % WEBHOOKS_URL_MEMORY_MAX];
    s->url_index = m->hash == s->url_hash && m->index < s->urls_count ? m->index : 0;
    uint32_t attempt = (uint32_t)s->d.attempts;
    if (s->urls_count == 0 || s->d.attempts > OUTBOX_ATTEMPTS_MAX) {
        s->d.attempts = OUTBOX_ATTEMPTS_MAX; /* nothing to retry: dead */
        webhooks_slot_fail(s, 0, s->urls_count == 0 ? "no usable notify_url" : "no attempts left");
        return;
    }
    if (faults_hit(f, s->d.event_id, attempt, FAULTS_WEBHOOK_DROP, f->webhook_drop_rate)) {
        webhooks_count(w, "paylab_bank_faults_injected_total", "kind", FAULTS_WEBHOOK_DROP);
        log_info("webhook dropped (fault)", "event=%s attempt=%u", s->d.event_id, attempt);
        webhooks_slot_fail(s, 0, "dropped by the webhook_drop_rate fault");
        return;
    }
    s->duplicate =
        faults_hit(f, s->d.event_id, attempt, FAULTS_WEBHOOK_DUPLICATE, f->webhook_duplicate_rate);
    int64_t delay_ms = faults_webhook_delay_ms(f, s->d.event_id, attempt);
    if (delay_ms > 0) {
        webhooks_count(w, "paylab_bank_faults_injected_total", "kind", FAULTS_WEBHOOK_DELAY);
    }
    if (delay_ms > 0 || f->webhook_stop) {
        webhooks_slot_hold(s, f->webhook_stop && delay_ms == 0 ? WEBHOOKS_STOP_POLL_MS : delay_ms);
        return;
    }
    webhooks_slot_send(s);
}

/* Leases up to one slot per free slot of the due deliveries and starts them. false on a
 * database error (then retried soon). */
static bool webhooks_lease_due(struct webhooks *w, int64_t now_ms)
{
    size_t free_count = WEBHOOKS_SLOTS_MAX - w->busy_count;
    if (free_count == 0) {
        return true;
    }
    int64_t ids[WEBHOOKS_SLOTS_MAX];
    size_t count = 0;
    int rc = outbox_due(&w->ctx->db, now_ms, ids, free_count, &count);
    if (rc != 0 || count == 0) {
        return rc == 0;
    }
    struct outbox_delivery *out[WEBHOOKS_SLOTS_MAX];
    struct webhooks_slot *slots[WEBHOOKS_SLOTS_MAX];
    size_t n = 0;
    for (size_t i = 0; i < WEBHOOKS_SLOTS_MAX && n < count; i++) {
        if (w->slots[i].state == WEBHOOKS_SLOT_FREE) {
            slots[n] = &w->slots[i];
            out[n] = &w->slots[i].d;
            n++;
        }
    }
    assert(n == count);
    size_t leased = 0;
    rc = outbox_lease(&w->ctx->db, ids, count, now_ms, out, &leased);
    if (rc != 0) {
        log_warn("webhook leasing deferred", "error=%d", rc);
        return false;
    }
    for (size_t i = 0; i < leased; i++) {
        webhooks_slot_start(slots[i]);
    }
    return true;
}

/* One pass: lease what is due into free slots, then re-arm for the next due delivery. While
 * every slot is busy, or webhook_stop holds everything, the timer stays unarmed: a slot
 * freed, a new event or a change of faults kicks it. */
static void webhooks_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct webhooks *w = arg;
    w->timer_at_ms = 0;
    if (w->ctx->faults.webhook_stop) {
        return;
    }
    int64_t now_ms = pl_now_ms();
    if (!webhooks_lease_due(w, now_ms)) {
        webhooks_arm(w, now_ms + WEBHOOKS_RETRY_MS);
        return;
    }
    if (w->busy_count >= WEBHOOKS_SLOTS_MAX || w->timer_at_ms != 0) {
        return; /* full; or a slot already finished and kicked the timer */
    }
    int64_t next_ms = 0;
    int rc = outbox_next_due(&w->ctx->db, &next_ms);
    if (rc == PL_ENOTFOUND) {
        return;
    }
    if (rc != 0) {
        webhooks_arm(w, now_ms + WEBHOOKS_RETRY_MS);
        return;
    }
    webhooks_arm(w, next_ms > now_ms ? next_ms : now_ms + WEBHOOKS_MIN_DELAY_MS);
}

/* ================================================================ lifecycle */

int bank_webhooks_start(struct bank_ctx *ctx)
{
    assert(ctx->webhooks == NULL);
    char probe[SIGN_SIGNATURE_BYTES_MAX];
    if (sign_webhook(ctx->webhook_secret, "evt_probe", 0, "{}", 2, probe, sizeof probe) != 0) {
        log_error("webhook_secret is not whsec_<base64>", "%s", "fix or delete the secret file");
        return PL_EINVAL;
    }
    int rc = outbox_reset_leases(&ctx->db, pl_now_ms());
    if (rc != 0) {
        return rc;
    }
    struct webhooks *w = calloc(1, sizeof *w);
    if (w == NULL) {
        return PL_ENOMEM;
    }
    ctx->webhooks = w;
    w->ctx = ctx;
    w->curl = curlev_new(ctx->base);
    w->timer = evtimer_new(ctx->base, webhooks_timer_cb, w);
    if (w->curl == NULL || w->timer == NULL) {
        return PL_ENOMEM;
    }
    for (size_t i = 0; i < WEBHOOKS_SLOTS_MAX; i++) {
        w->slots[i].w = w;
        w->slots[i].timer = evtimer_new(ctx->base, webhooks_slot_timer_cb, &w->slots[i]);
        if (w->slots[i].timer == NULL) {
            return PL_ENOMEM;
        }
    }
    webhooks_arm(w, 0);
    return PL_OK;
}

void bank_webhooks_gauges(struct bank_ctx *ctx)
{
    struct webhooks *w = ctx->webhooks;
    int64_t pending = 0;
    int64_t dead = 0;
    if (outbox_counts(&ctx->db, &pending, &dead) == 0) {
        metrics_gauge_set(ctx->metrics, "paylab_bank_webhook_outbox_depth", "", (double)pending);
        metrics_gauge_set(ctx->metrics, "paylab_bank_webhook_dead", "", (double)dead);
    }
    metrics_gauge_set(ctx->metrics, "paylab_bank_webhooks_in_flight", "",
                      w != NULL ? (double)w->busy_count : 0.0);
}

void bank_webhooks_stop(struct bank_ctx *ctx)
{
    struct webhooks *w = ctx->webhooks;
    if (w == NULL) {
        return;
    }
    curlev_free(w->curl); /* cancels every request: no callback runs */
    for (size_t i = 0; i < WEBHOOKS_SLOTS_MAX; i++) {
        if (w->slots[i].timer != NULL) {
            event_free(w->slots[i].timer);
        }
    }
    if (w->timer != NULL) {
        event_free(w->timer);
    }
    if (w->busy_count > 0) {
        log_info("webhook attempts interrupted", "count=%zu", w->busy_count);
    }
    free(w);
    ctx->webhooks = NULL;
}
