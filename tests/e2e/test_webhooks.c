/* test_webhooks.c: what the webhook path does with what the world sends it (docs/api.md and
 * docs/ledger.md). Delivery is at least once: every webhook delivered several times, some at once,
 * credits once. A late payment.failed after payment.succeeded, or a webhook with another amount, is
 * a conflict: recorded, answered 200 (so the bank stops retrying), never applied. A late
 * payment.processing is ignored. A forged webhook — no signature, another secret, a
 * tampered body, a timestamp outside the 300 s window — is 401 at the gateway and changes
 * nothing. Lost deliveries (webhook_drop_rate) are made good by the bank's retries.
 * "Forged but signed" messages are signed with the cluster's real webhook_secret. */
#include "e2e.h"

#include "sign.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define OPENING_MINOR 1000000
/* Top-ups per test where several are needed. */
#define TOPUPS 3
#define DROP_TOPUPS 6
/* Identical deliveries of one signed message sent at once. */
#define SAME_SENDERS 3
/* The replay window of the gateway (docs/api.md). */
#define TOLERANCE_S SIGN_WEBHOOK_TOLERANCE_S
/* The wallet acks a relayed webhook well within this. */
#define RELAY_ACK_TIMEOUT_MS 5000

/* A well-formed secret that is not the cluster's: whsec_ + base64 of 24 random bytes. */
static const char other_secret[] = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

static const struct e2e_opts webhook_opts = {
    .gateways = 1,
    .pending_grace_ms = 15000,
};

static int64_t now_s(void)
{
    return pl_now_ms() / 1000;
}

/* An async top-up of amount_minor the bank has executed while it holds every webhook
 * (webhook_stop): the wallet still says pending. Returns the bank payment. */
static cJSON *topup_executed_webhooks_held(struct e2e *e, int64_t amount_minor, char id[64])
{
    e2e_faults(e, "{\"webhook_stop\":true}");
    e2e_topup_async(e, "alice", amount_minor, id);
    cJSON *p = e2e_wait_bank_final(e, id, E2E_SETTLE_TIMEOUT_MS);
    assert_string_equal(e2e_str(p, "status"), "succeeded");
    cJSON *t = e2e_txn(e, id);
    assert_string_equal(e2e_str(t, "status"), "pending");
    cJSON_Delete(t);
    return p;
}

/* Releases the held webhooks and waits for the bank's own to settle id. */
static void release_webhooks(struct e2e *e, const char *id)
{
    e2e_faults(e, "{\"webhook_stop\":false}");
    cJSON *t = e2e_wait_final(e, id, E2E_SETTLE_TIMEOUT_MS);
    cJSON_Delete(t);
    e2e_wait_webhooks_idle(e, E2E_SETTLE_TIMEOUT_MS);
}

static int64_t conflicts_count(struct e2e *e)
{
    return e2e_wallet_db_int(e, "SELECT count(*) FROM conflicts", NULL);
}

static int64_t seen_count(struct e2e *e)
{
    return e2e_wallet_db_int(e, "SELECT count(*) FROM webhooks_seen", NULL);
}

/* ------------------------------------------------------------------ at least once */

struct deliveries_probe {
    struct e2e *e;
    char (*ids)[64];
    size_t count;
    int64_t delivered_min;
};

static bool deliveries_done(void *arg)
{
    struct deliveries_probe *p = arg;
    for (size_t i = 0; i < p->count; i++) {
        struct e2e_webhook_stats st;
        e2e_bank_webhook_stats(p->e, p->ids[i], &st);
        if (st.pending > 0 || st.delivered < p->delivered_min)
            return false;
    }
    return true;
}

/* Each event is sent twice at once (webhook_duplicate_rate=1), then redelivered (and that
 * twice too): four deliveries per webhook, one credit per top-up. */
static void test_duplicates_and_redelivery(void **state)
{
    struct e2e *e = *state;
    char ids[TOPUPS][64];
    struct e2e_resp r;
    e2e_start(e, &webhook_opts);
    e2e_user_add(e, "alice");
    e2e_faults(e, "{\"webhook_duplicate_rate\":1}");
    for (size_t i = 0; i < TOPUPS; i++)
        e2e_topup_async(e, "alice", 10000, ids[i]);
    e2e_wait_all_final(e, ids, TOPUPS, E2E_SETTLE_TIMEOUT_MS);
    /* processing and succeeded, one delivery each so far */
    struct deliveries_probe probe = {.e = e, .ids = ids, .count = TOPUPS, .delivered_min = 2};
    assert_true(cluster_wait_for(deliveries_done, &probe, cluster_deadline_ms(10000)));

    for (size_t i = 0; i < TOPUPS; i++) {
        char body[256];
        snprintf(body, sizeof body, "{\"reference\":\"%s\"}", ids[i]);
        e2e_bank(e, "POST", "/admin/webhooks/redeliver", body, e->admin_token, &r);
        e2e_expect(&r, 202, NULL);
        assert_int_equal(e2e_int(r.json, "events"), 2);
        e2e_resp_free(&r);
    }
    probe.delivered_min = 4;
    assert_true(cluster_wait_for(deliveries_done, &probe, cluster_deadline_ms(10000)));

    for (size_t i = 0; i < TOPUPS; i++) {
        e2e_expect_settled(e, ids[i], "succeeded", "webhook", 2);
        /* one row per webhook-id: processing and succeeded */
        assert_int_equal(
            e2e_wallet_db_int(e, "SELECT count(*) FROM webhooks_seen WHERE transaction_id=?1",
                              ids[i]),
            2);
    }
    assert_int_equal(e2e_wallet_balance(e, "alice"), TOPUPS * 10000);
    assert_int_equal(e2e_bank_balance(e, "NODAL-PAYLAB"), TOPUPS * 10000);
    assert_int_equal(conflicts_count(e), 0);
    e2e_faults(e, "{\"clear\":true}");
    e2e_finish(e);
}

/* One signed message POSTed from its own thread (no cmocka asserts there). */
struct same_sender {
    pthread_t thread;
    char url[CLUSTER_URL_BYTES_MAX + 64];
    const char *const *headers;
    const char *body;
    struct cluster_reply reply;
    int rc;
};

static void *same_send(void *arg)
{
    struct same_sender *s = arg;
    s->rc = cluster_http_full("POST", s->url, s->body, strlen(s->body), s->headers,
                              E2E_HTTP_TIMEOUT_MS, &s->reply);
    return NULL;
}

/* The result ("applied", "duplicate" …) of a sender's 200, or "" for any other answer. */
static const char *sender_result(const struct same_sender *s, char out[32])
{
    out[0] = '\0';
    if (s->rc != 0 || s->reply.status != 200)
        return out;
    cJSON *j = cJSON_Parse(s->reply.body);
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(j, "result");
    if (cJSON_IsString(res))
        pl_strlcpy(out, res->valuestring, 32);
    cJSON_Delete(j);
    return out;
}

/* The same signed payment.succeeded arrives three times at once: one applies, the others
 * are duplicates; the bank's own webhooks, released later, change nothing. */
static void test_concurrent_identical_deliveries(void **state)
{
    struct e2e *e = *state;
    struct same_sender senders[SAME_SENDERS];
    char id[64], id_hdr[96], ts_hdr[64], sig[SIGN_SIGNATURE_BYTES_MAX];
    char sig_hdr[SIGN_SIGNATURE_BYTES_MAX + 32];
    e2e_start(e, &webhook_opts);
    e2e_user_add(e, "alice");
    cJSON *p = topup_executed_webhooks_held(e, 50000, id);
    char *body = e2e_webhook_body("evt_e2e_same", "succeeded", p, 50000);
    cJSON_Delete(p);
    int64_t ts = now_s();
    assert_int_equal(
        sign_webhook(e->webhook_secret, "evt_e2e_same", ts, body, strlen(body), sig, sizeof sig),
        0);
    snprintf(id_hdr, sizeof id_hdr, "webhook-id: evt_e2e_same");
    snprintf(ts_hdr, sizeof ts_hdr, "webhook-timestamp: %lld", (long long)ts);
    snprintf(sig_hdr, sizeof sig_hdr, "webhook-signature: %s", sig);
    const char *const headers[] = {"Content-Type: application/json", id_hdr, ts_hdr, sig_hdr, NULL};

    for (size_t i = 0; i < SAME_SENDERS; i++) {
        memset(&senders[i], 0, sizeof senders[i]);
        snprintf(senders[i].url, sizeof senders[i].url, "%s/v1/webhooks/bank", e->c.gateway_url[0]);
        senders[i].headers = headers;
        senders[i].body = body;
        assert_int_equal(pthread_create(&senders[i].thread, NULL, same_send, &senders[i]), 0);
    }
    int applied = 0, duplicate = 0;
    for (size_t i = 0; i < SAME_SENDERS; i++) {
        char res[32];
        assert_int_equal(pthread_join(senders[i].thread, NULL), 0);
        sender_result(&senders[i], res);
        if (strcmp(res, "applied") == 0)
            applied++;
        else if (strcmp(res, "duplicate") == 0)
            duplicate++;
        else
            fprintf(stderr, "e2e: sender %zu: HTTP %ld %s\n", i, senders[i].reply.status,
                    senders[i].reply.body != NULL ? senders[i].reply.body : "");
        cluster_reply_free(&senders[i].reply);
    }
    free(body);
    assert_int_equal(applied, 1);
    assert_int_equal(duplicate, SAME_SENDERS - 1);
    e2e_expect_settled(e, id, "succeeded", "webhook", 2);
    assert_int_equal(e2e_wallet_balance(e, "alice"), 50000);

    release_webhooks(e, id);
    e2e_expect_settled(e, id, "succeeded", "webhook", 2);
    assert_int_equal(e2e_wallet_balance(e, "alice"), 50000);
    assert_int_equal(conflicts_count(e), 0);
    e2e_finish(e);
}

/* ------------------------------------------------------------------ late and contradicting */

/* A settled async top-up of 50000 (by the bank's webhook); returns its bank payment. */
static cJSON *settled_topup(struct e2e *e, char id[64])
{
    e2e_topup_async(e, "alice", 50000, id);
    cJSON *t = e2e_wait_final(e, id, E2E_SETTLE_TIMEOUT_MS);
    e2e_expect_txn(t, "topup", "async", "succeeded", 50000);
    cJSON_Delete(t);
    e2e_wait_webhooks_idle(e, E2E_SETTLE_TIMEOUT_MS);
    cJSON *p = e2e_bank_payment(e, id);
    assert_non_null(p);
    return p;
}

/* payment.failed after payment.succeeded: 200 conflict, recorded once, never a reversal. */
static void test_late_failed_is_conflict(void **state)
{
    struct e2e *e = *state;
    struct e2e_resp r;
    struct e2e_snapshot before, after;
    char id[64];
    e2e_start(e, &webhook_opts);
    e2e_user_add(e, "alice");
    e2e_user_add(e, "bob");
    cJSON *p = settled_topup(e, id);
    e2e_snapshot_take(e, &before);
    char *body = e2e_webhook_body("evt_e2e_late_failed", "failed", p, 50000);
    cJSON_Delete(p);

    e2e_webhook_post_signed(e, 0, "evt_e2e_late_failed", body, &r);
    e2e_expect_result(&r, "conflict");
    e2e_resp_free(&r);
    assert_int_equal(conflicts_count(e), 1);
    /* the same message again: a duplicate of a seen webhook-id, not a second conflict */
    e2e_webhook_post_signed(e, 0, "evt_e2e_late_failed", body, &r);
    e2e_expect_result(&r, "duplicate");
    e2e_resp_free(&r);
    free(body);

    assert_int_equal(conflicts_count(e), 1);
    e2e_expect_settled(e, id, "succeeded", "webhook", 2);
    e2e_snapshot_take(e, &after);
    e2e_snapshot_equal(&before, &after, "a late payment.failed");
    e2e_finish(e);
}

/* payment.processing after the final event: 200 ignored, nothing changes. */
static void test_late_processing_is_ignored(void **state)
{
    struct e2e *e = *state;
    struct e2e_resp r;
    struct e2e_snapshot before, after;
    char id[64];
    e2e_start(e, &webhook_opts);
    e2e_user_add(e, "alice");
    e2e_user_add(e, "bob");
    cJSON *p = settled_topup(e, id);
    e2e_snapshot_take(e, &before);
    char *body = e2e_webhook_body("evt_e2e_late_processing", "processing", p, 50000);
    cJSON_Delete(p);

    e2e_webhook_post_signed(e, 0, "evt_e2e_late_processing", body, &r);
    free(body);
    e2e_expect_result(&r, "ignored");
    e2e_resp_free(&r);
    assert_int_equal(conflicts_count(e), 0);
    e2e_expect_settled(e, id, "succeeded", "webhook", 2);
    e2e_snapshot_take(e, &after);
    e2e_snapshot_equal(&before, &after, "a late payment.processing");
    e2e_finish(e);
}

/* A signed payment.succeeded for another amount than the wallet recorded: conflict, not a
 * credit; the bank's true webhook settles the transaction afterwards. */
static void test_amount_mismatch_is_conflict(void **state)
{
    struct e2e *e = *state;
    struct e2e_resp r;
    char id[64];
    e2e_start(e, &webhook_opts);
    e2e_user_add(e, "alice");
    cJSON *p = topup_executed_webhooks_held(e, 50000, id);
    char *body = e2e_webhook_body("evt_e2e_amount", "succeeded", p, 5000000);
    cJSON_Delete(p);

    e2e_webhook_post_signed(e, 0, "evt_e2e_amount", body, &r);
    free(body);
    e2e_expect_result(&r, "conflict");
    e2e_resp_free(&r);
    assert_int_equal(conflicts_count(e), 1);
    cJSON *t = e2e_txn(e, id);
    assert_string_equal(e2e_str(t, "status"), "pending");
    cJSON_Delete(t);
    assert_int_equal(e2e_wallet_balance(e, "alice"), 0);
    assert_int_equal(
        e2e_wallet_db_int(e, "SELECT count(*) FROM entries WHERE transaction_id=?1", id), 0);

    release_webhooks(e, id);
    e2e_expect_settled(e, id, "succeeded", "webhook", 2);
    assert_int_equal(e2e_wallet_balance(e, "alice"), 50000);
    assert_int_equal(conflicts_count(e), 1);
    e2e_finish(e);
}

/* ------------------------------------------------------------------ forged */

enum forgery {
    FORGE_NO_SIGNATURE,
    FORGE_WRONG_SECRET,
    FORGE_TAMPERED_BODY,
    FORGE_OTHER_ID,
    FORGE_GARBLED_SIGNATURE,
    FORGE_OLD_TIMESTAMP,
    FORGE_FUTURE_TIMESTAMP,
    FORGE_REPLAYED,
    FORGE_COUNT,
};

static const char *const forgery_names[FORGE_COUNT] = {
    "no signature",      "wrong secret",   "tampered body",    "signed for another id",
    "garbled signature", "10 minutes old", "10 minutes ahead", "replayed after the window",
};

/* Posts forgery f of the true webhook `genuine` (signed as event evt_e2e_forged). */
static void post_forgery(struct e2e *e, enum forgery f, const char *genuine, const char *tampered,
                         struct e2e_resp *r)
{
    const char *id = "evt_e2e_forged";
    int64_t now = now_s();
    switch (f) {
    case FORGE_NO_SIGNATURE:
        e2e_webhook_post(e, 0, id, now, genuine, genuine, NULL, r);
        break;
    case FORGE_WRONG_SECRET:
        e2e_webhook_post(e, 0, id, now, genuine, genuine, other_secret, r);
        break;
    case FORGE_TAMPERED_BODY:
        e2e_webhook_post(e, 0, id, now, genuine, tampered, e->webhook_secret, r);
        break;
    case FORGE_OTHER_ID: {
        /* signed as evt_e2e_forged, sent as evt_e2e_other */
        char url[CLUSTER_URL_BYTES_MAX + 64], ts_hdr[64], sig[SIGN_SIGNATURE_BYTES_MAX];
        char sig_hdr[SIGN_SIGNATURE_BYTES_MAX + 32];
        assert_int_equal(
            sign_webhook(e->webhook_secret, id, now, genuine, strlen(genuine), sig, sizeof sig), 0);
        snprintf(url, sizeof url, "%s/v1/webhooks/bank", e->c.gateway_url[0]);
        snprintf(ts_hdr, sizeof ts_hdr, "webhook-timestamp: %lld", (long long)now);
        snprintf(sig_hdr, sizeof sig_hdr, "webhook-signature: %s", sig);
        const char *const h[] = {"Content-Type: application/json", "webhook-id: evt_e2e_other",
                                 ts_hdr, sig_hdr, NULL};
        e2e_request("POST", url, genuine, strlen(genuine), h, r);
        break;
    }
    case FORGE_GARBLED_SIGNATURE: {
        char url[CLUSTER_URL_BYTES_MAX + 64], ts_hdr[64];
        snprintf(url, sizeof url, "%s/v1/webhooks/bank", e->c.gateway_url[0]);
        snprintf(ts_hdr, sizeof ts_hdr, "webhook-timestamp: %lld", (long long)now);
        const char *const h[] = {"Content-Type: application/json", "webhook-id: evt_e2e_forged",
                                 ts_hdr, "webhook-signature: v1,not-base64!! v2,AAAA", NULL};
        e2e_request("POST", url, genuine, strlen(genuine), h, r);
        break;
    }
    case FORGE_OLD_TIMESTAMP:
        e2e_webhook_post(e, 0, id, now - 600, genuine, genuine, e->webhook_secret, r);
        break;
    case FORGE_FUTURE_TIMESTAMP:
        e2e_webhook_post(e, 0, id, now + 600, genuine, genuine, e->webhook_secret, r);
        break;
    case FORGE_REPLAYED:
        /* a message the bank really could have signed, captured and sent again later */
        e2e_webhook_post(e, 0, id, now - TOLERANCE_S - 30, genuine, genuine, e->webhook_secret, r);
        break;
    case FORGE_COUNT:
        fail();
    }
}

/* Every forgery of a webhook that would credit alice is 401 and changes nothing: not the
 * balances, not the transaction, not the webhooks the wallet has seen. */
static void test_forged_webhooks_rejected(void **state)
{
    struct e2e *e = *state;
    struct e2e_snapshot before, after;
    char id[64];
    e2e_start(e, &webhook_opts);
    e2e_user_add(e, "alice");
    e2e_user_add(e, "bob");
    cJSON *p = topup_executed_webhooks_held(e, 50000, id);
    char *genuine = e2e_webhook_body("evt_e2e_forged", "succeeded", p, 50000);
    char *tampered = e2e_webhook_body("evt_e2e_forged", "succeeded", p, 5000000);
    cJSON_Delete(p);
    e2e_snapshot_take(e, &before);
    int64_t seen = seen_count(e);

    for (int f = 0; f < FORGE_COUNT; f++) {
        struct e2e_resp r;
        post_forgery(e, (enum forgery)f, genuine, tampered, &r);
        if (r.status != 401)
            fail_msg("forgery \"%s\": expected 401, got %ld: %.300s", forgery_names[f], r.status,
                     r.raw.body);
        e2e_expect(&r, 401, "unauthorized");
        e2e_resp_free(&r);
    }
    free(genuine);
    free(tampered);

    e2e_snapshot_take(e, &after);
    e2e_snapshot_equal(&before, &after, "a forged webhook");
    assert_int_equal(seen_count(e), seen);
    assert_int_equal(conflicts_count(e), 0);
    cJSON *t = e2e_txn(e, id);
    assert_string_equal(e2e_str(t, "status"), "pending");
    cJSON_Delete(t);

    release_webhooks(e, id);
    e2e_expect_settled(e, id, "succeeded", "webhook", 2);
    assert_int_equal(e2e_wallet_balance(e, "alice"), 50000);
    e2e_finish(e);
}

/* ------------------------------------------------------------------ straight to ZMQ */

/* Sends one relay message as a gateway would, [request_id][json], on a DEALER connected to
 * the wallet's ROUTER, and returns the wallet's "result" (into result, 32 bytes). */
static void relay(void *dealer, const char *request_id, const char *event_id, int64_t ts,
                  const char *signature, const char *body, char result[32])
{
    char got_id[64], ts_text[24];
    snprintf(ts_text, sizeof ts_text, "%lld", (long long)ts);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "webhook_id", event_id);
    cJSON_AddStringToObject(o, "timestamp", ts_text);
    cJSON_AddStringToObject(o, "signature", signature);
    cJSON_AddNullToObject(o, "traceparent");
    cJSON_AddNumberToObject(o, "received_at_us", (double)pl_now_us());
    cJSON_AddStringToObject(o, "body", body);
    char *json = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    assert_non_null(json);
    assert_true(zmq_send(dealer, request_id, strlen(request_id), ZMQ_SNDMORE) >= 0);
    assert_true(zmq_send(dealer, json, strlen(json), 0) >= 0);
    free(json);

    zmq_pollitem_t item = {.socket = dealer, .events = ZMQ_POLLIN};
    assert_int_equal(zmq_poll(&item, 1, RELAY_ACK_TIMEOUT_MS), 1);
    int n = zmq_recv(dealer, got_id, sizeof got_id - 1, 0);
    assert_true(n >= 0 && n < (int)sizeof got_id);
    got_id[n] = '\0';
    assert_string_equal(got_id, request_id);
    zmq_msg_t ack;
    zmq_msg_init(&ack);
    assert_true(zmq_msg_recv(&ack, dealer, 0) >= 0);
    cJSON *a = cJSON_ParseWithLength(zmq_msg_data(&ack), zmq_msg_size(&ack));
    zmq_msg_close(&ack);
    assert_non_null(a);
    pl_strlcpy(result, e2e_str(a, "result"), 32);
    cJSON_Delete(a);
}

/* The wallet checks the signature of what reaches its ROUTER again (the ZMQ port is not
 * authenticated): a relay signed with another secret, or over another body, is "rejected"
 * and changes nothing; the same relay correctly signed applies. */
static void test_wallet_rejects_forged_relay(void **state)
{
    struct e2e *e = *state;
    struct e2e_snapshot before, after;
    char id[64], endpoint[64], result[32], sig[SIGN_SIGNATURE_BYTES_MAX];
    int linger = 0;
    e2e_start(e, &webhook_opts);
    e2e_user_add(e, "alice");
    e2e_user_add(e, "bob");
    cJSON *p = topup_executed_webhooks_held(e, 50000, id);
    char *genuine = e2e_webhook_body("evt_e2e_relay", "succeeded", p, 50000);
    char *tampered = e2e_webhook_body("evt_e2e_relay", "succeeded", p, 5000000);
    cJSON_Delete(p);
    void *zctx = zmq_ctx_new();
    void *dealer = zmq_socket(zctx, ZMQ_DEALER);
    assert_non_null(dealer);
    zmq_setsockopt(dealer, ZMQ_LINGER, &linger, sizeof linger);
    snprintf(endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", e->c.zmq_router_port);
    assert_int_equal(zmq_connect(dealer, endpoint), 0);
    e2e_snapshot_take(e, &before);
    int64_t ts = now_s();

    assert_int_equal(
        sign_webhook(other_secret, "evt_e2e_relay", ts, genuine, strlen(genuine), sig, sizeof sig),
        0);
    relay(dealer, "e2e.1", "evt_e2e_relay", ts, sig, genuine, result);
    assert_string_equal(result, "rejected");
    assert_int_equal(sign_webhook(e->webhook_secret, "evt_e2e_relay", ts, genuine, strlen(genuine),
                                  sig, sizeof sig),
                     0);
    relay(dealer, "e2e.2", "evt_e2e_relay", ts, sig, tampered, result);
    assert_string_equal(result, "rejected");
    e2e_snapshot_take(e, &after);
    e2e_snapshot_equal(&before, &after, "a forged relay");
    assert_int_equal(seen_count(e), 0);

    relay(dealer, "e2e.3", "evt_e2e_relay", ts, sig, genuine, result);
    assert_string_equal(result, "applied");
    zmq_close(dealer);
    zmq_ctx_term(zctx);
    free(genuine);
    free(tampered);
    e2e_expect_settled(e, id, "succeeded", "webhook", 2);
    assert_int_equal(e2e_wallet_balance(e, "alice"), 50000);
    release_webhooks(e, id);
    e2e_expect_settled(e, id, "succeeded", "webhook", 2);
    e2e_finish(e);
}

/* ------------------------------------------------------------------ lost deliveries */

/* Half the delivery attempts are silently dropped: the bank's retries (or, for the unlucky
 * few past the wallet's grace, the reconciler) settle everything, each credited once. */
static void test_webhook_drops_retried(void **state)
{
    struct e2e *e = *state;
    char ids[DROP_TOPUPS][64];
    const struct e2e_opts opts = {.gateways = 1, .pending_grace_ms = 5000};
    e2e_start(e, &opts);
    e2e_user_add(e, "alice");
    e2e_faults(e, "{\"webhook_drop_rate\":0.5}");
    for (size_t i = 0; i < DROP_TOPUPS; i++)
        e2e_topup_async(e, "alice", 10000, ids[i]);
    e2e_wait_all_final(e, ids, DROP_TOPUPS, 30000);

    int64_t attempts = 0, deliveries = 0, by_webhook = 0;
    for (size_t i = 0; i < DROP_TOPUPS; i++) {
        struct e2e_webhook_stats st;
        e2e_expect_settled(e, ids[i], "succeeded", NULL, 2);
        cJSON *t = e2e_txn(e, ids[i]);
        by_webhook += strcmp(e2e_str(t, "settled_by"), "webhook") == 0;
        cJSON_Delete(t);
        e2e_bank_webhook_stats(e, ids[i], &st);
        attempts += st.attempts;
        deliveries += st.pending + st.delivered + st.dead;
    }
    /* 12 deliveries at a drop rate of 0.5: some needed a retry */
    assert_true(attempts > deliveries);
    assert_true(by_webhook >= 1);
    assert_int_equal(e2e_wallet_balance(e, "alice"), DROP_TOPUPS * 10000);
    assert_int_equal(e2e_bank_balance(e, "NODAL-PAYLAB"), DROP_TOPUPS * 10000);
    e2e_faults(e, "{\"clear\":true}");
    e2e_finish(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_duplicates_and_redelivery, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_identical_deliveries, e2e_setup,
                                        e2e_teardown),
        cmocka_unit_test_setup_teardown(test_late_failed_is_conflict, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_late_processing_is_ignored, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_amount_mismatch_is_conflict, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_forged_webhooks_rejected, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_wallet_rejects_forged_relay, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_webhook_drops_retried, e2e_setup, e2e_teardown),
    };
    e2e_filter_from_env();
    return cmocka_run_group_tests_name("e2e_webhooks", tests, NULL, NULL);
}
