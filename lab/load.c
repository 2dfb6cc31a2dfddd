/* load.c owns the lab's load: the client threads that send the cell's top-ups and
 * withdrawals and then learn each outcome the way the cell's wait style says (the answer, a
 * WebSocket watcher, or polling), the background P2P transfers between two unrelated users,
 * and the P2P burst of the slow-subscriber scenario.
 * Must not: sleep in place of a condition (a poller's interval is its design; waiting for a
 * watcher is a condition wait with a deadline), or retry a request under a new key: a client
 * that got no answer resends the same body with the same Idempotency-Key, as a careful
 * client does.
 * Invariant: each op is written by its own client thread only, and read after it joined. */
#include "run.h"

#include "pl.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Amounts: small against the funding (lab_cell_setup) so no withdrawal lacks funds. */
#define LAB_TOPUP_MINOR 10000
#define LAB_WITHDRAW_MINOR 5000
#define LAB_P2P_MINOR 100
/* The background P2P pace: about 50 transfers a second, a steady probe of the wallet's loop. */
#define LAB_P2P_PAUSE_MS 20
/* The burst: a slow reader's kernel buffers on loopback hold megabytes before the gateway's
 * own 1 MiB queue fills, so the burst runs until the gateway has dropped every slow
 * subscriber (looked up every LAB_BURST_CHECK transfers), at most LAB_BURST_TRANSFERS. */
#define LAB_BURST_TRANSFERS 12000
#define LAB_BURST_CHECK 200

static bool status_final(const char *s)
{
    return strcmp(s, "succeeded") == 0 || strcmp(s, "failed") == 0;
}

/* Copies the answer's "id" and "status" (either may be absent). */
static void read_answer(const struct lab_reply *rep, struct lab_op *op)
{
    cJSON *j = cJSON_ParseWithLength(rep->body, rep->body_bytes);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "id");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(j, "status");
    if (cJSON_IsString(id) && op->txn_id[0] == '\0')
        pl_strlcpy(op->txn_id, id->valuestring, sizeof op->txn_id);
    op->status[0] = '\0';
    if (cJSON_IsString(st))
        pl_strlcpy(op->status, st->valuestring, sizeof op->status);
    cJSON_Delete(j);
}

/* An answer a careful client resends the same request for: none at all, or "busy, retry". */
static bool worth_resending(const struct lab_reply *rep)
{
    return rep->status == 0 || rep->status == 429 ||
           (rep->status == 503 && strstr(rep->body, "\"busy\"") != NULL);
}

static void send_op(struct lab_client *cl, struct lab_http *h, struct lab_op *op, int index)
{
    struct lab_run *r = cl->run;
    char body[256], key[96], key_hdr[128], url[CLUSTER_URL_BYTES_MAX + 32];
    const char *path = op->kind == LAB_OP_TOPUP ? "/v1/topups" : "/v1/withdrawals";
    snprintf(url, sizeof url, "%s%s", r->c.wallet_url, path);
    snprintf(body, sizeof body, "{\"user\":\"%s\",\"amount_minor\":%d,\"mode\":\"%s\"}",
             r->users[cl->index], op->kind == LAB_OP_TOPUP ? LAB_TOPUP_MINOR : LAB_WITHDRAW_MINOR,
             lab_mode_name(r->mode));
    snprintf(key, sizeof key, "lab-%lld-%d-%lld", (long long)r->cfg->seed, index,
             (long long)(lab_wall_us() % 1000000000));
    snprintf(key_hdr, sizeof key_hdr, "Idempotency-Key: %s", key);
    const char *const hdrs[] = {key_hdr, NULL};
    struct lab_reply rep;
    op->sent_us = lab_mono_us();
    atomic_fetch_add(&r->ops_sent, 1);
    int64_t give_up_us = op->sent_us + (int64_t)LAB_RETRY_WINDOW_MS * 1000;
    for (;;) {
        if (lab_http_call(h, "POST", url, body, hdrs, LAB_REQUEST_TIMEOUT_MS, &rep) != 0)
            rep.status = 0;
        if (!worth_resending(&rep) || lab_mono_us() >= give_up_us || atomic_load(&r->stop))
            break;
        atomic_fetch_add(&r->client_retries, 1);
        lab_pause_ms(r, LAB_RETRY_PAUSE_MS);
    }
    op->http_status = rep.status;
    if (rep.status == 0)
        return;
    op->answered_us = lab_mono_us();
    read_answer(&rep, op);
    op->answered_final = status_final(op->status);
    if (op->answered_final) {
        op->known_us = op->answered_us;
        pl_strlcpy(op->final, op->status, sizeof op->final);
    }
}

/* Learns op's final state by polling GET /v1/transactions/ID every poll_ms. */
static void learn_by_polling(struct lab_run *r, struct lab_http *h, struct lab_op *op,
                             int64_t deadline_us)
{
    char url[CLUSTER_URL_BYTES_MAX + 64];
    snprintf(url, sizeof url, "%s/v1/transactions/%s", r->c.wallet_url, op->txn_id);
    struct lab_reply rep;
    while (!atomic_load(&r->stop) && lab_mono_us() < deadline_us) {
        lab_pause_ms(r, r->poll_ms);
        if (lab_http_call(h, "GET", url, NULL, NULL, 5000, &rep) != 0)
            continue;
        atomic_fetch_add(&r->polls_sent, 1);
        atomic_fetch_add(&r->poll_bytes, rep.bytes);
        if (rep.status != 200)
            continue;
        struct lab_op probe = {0};
        read_answer(&rep, &probe);
        if (status_final(probe.status)) {
            op->known_us = lab_mono_us();
            pl_strlcpy(op->final, probe.status, sizeof op->final);
            return;
        }
    }
}

static void learn(struct lab_client *cl, struct lab_http *h, struct lab_op *op)
{
    struct lab_run *r = cl->run;
    if (op->answered_us == 0 || op->answered_final || op->txn_id[0] == '\0')
        return;
    /* A user waits as long as the system promises to settle: the horizon, and a little. */
    int64_t deadline_us = op->answered_us + (r->cell->horizon_ms + 2000) * 1000;
    if (r->poll_ms > 0) {
        learn_by_polling(r, h, op, deadline_us);
        return;
    }
    int64_t at_us = 0;
    if (lab_seen_wait(r, op->txn_id, deadline_us, &at_us, op->final, sizeof op->final))
        op->known_us = at_us > op->answered_us ? at_us : op->answered_us;
}

void *lab_client_main(void *arg)
{
    struct lab_client *cl = arg;
    struct lab_run *r = cl->run;
    struct lab_http h;
    if (lab_http_init(&h, &r->stop) != 0)
        return NULL;
    for (int mine = 0; !atomic_load(&r->stop); mine++) {
        int index = atomic_fetch_add(&r->next_op, 1);
        if (index >= r->ops_count)
            break;
        /* Held at the gate until the scenario's action begins (bounded: a cell whose action
         * never comes still finishes). */
        int64_t gate_end_us = lab_mono_us() + (int64_t)LAB_RETRY_WINDOW_MS * 1000;
        while (index >= r->gate && !atomic_load(&r->gate_open) && lab_mono_us() < gate_end_us &&
               !atomic_load(&r->stop))
            lab_pause_ms(r, 2);
        struct lab_op *op = &r->ops[index];
        op->client = cl->index;
        op->kind = mine % 2 == 0 ? LAB_OP_TOPUP : LAB_OP_WITHDRAWAL;
        send_op(cl, &h, op, index);
        if (op->answered_us != 0)
            hist_record(&cl->client_latency_us, op->answered_us - op->sent_us);
        learn(cl, &h, op);
        if (op->known_us != 0) {
            hist_record(&cl->time_to_final_us, op->known_us - op->sent_us);
            if (!op->answered_final)
                hist_record(&cl->not_knowing_us, op->known_us - op->answered_us);
        }
        atomic_fetch_add(&r->ops_done, 1);
    }
    lab_http_free(&h);
    return NULL;
}

/* One transfer from → to; its latency into *hist. */
static void transfer(struct lab_run *r, struct lab_http *h, const char *from, const char *to,
                     struct lab_hist *hist)
{
    /* The burst (hist NULL) is load, not a probe: only the background transfers count. */
    char body[160], url[CLUSTER_URL_BYTES_MAX + 32];
    snprintf(url, sizeof url, "%s/v1/transfers", r->c.wallet_url);
    snprintf(body, sizeof body, "{\"from\":\"%s\",\"to\":\"%s\",\"amount_minor\":%d}", from, to,
             LAB_P2P_MINOR);
    struct lab_reply rep;
    bool ok = lab_http_call(h, "POST", url, body, NULL, LAB_REQUEST_TIMEOUT_MS, &rep) == 0 &&
              rep.status == 200;
    if (hist == NULL)
        return;
    atomic_fetch_add(ok ? &r->p2p_ok : &r->p2p_errors, 1);
    if (ok)
        hist_record(hist, rep.elapsed_us);
}

void *lab_p2p_main(void *arg)
{
    struct lab_run *r = arg;
    struct lab_http h;
    static _Thread_local struct lab_hist hist; /* 100 KB: off the thread's stack */
    hist_init(&hist);
    if (lab_http_init(&h, &r->stop) != 0)
        return NULL;
    for (int i = 0; !atomic_load(&r->stop) && !atomic_load(&r->load_done); i++) {
        const char *a = r->p2p_users[i % 2], *b = r->p2p_users[(i + 1) % 2];
        transfer(r, &h, a, b, &hist);
        lab_pause_ms(r, LAB_P2P_PAUSE_MS);
    }
    lab_http_free(&h);
    pthread_mutex_lock(&r->mu);
    hist_merge(&r->p2p_latency_us, &hist);
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* How many slow consumers gateway 0 has dropped so far (its /metrics). */
static int64_t slow_drops(struct lab_run *r, struct lab_http *h)
{
    char url[CLUSTER_URL_BYTES_MAX + 16];
    struct lab_reply rep;
    snprintf(url, sizeof url, "%s/metrics", r->c.gateway_url[0]);
    if (lab_http_call(h, "GET", url, NULL, NULL, 3000, &rep) != 0 || rep.status != 200)
        return 0;
    const char *at = strstr(rep.body, "paylab_gateway_ws_closes_total{code=\"1008\"}");
    return at != NULL ? strtoll(strchr(at, ' ') + 1, NULL, 10) : 0;
}

void *lab_burst_main(void *arg)
{
    struct lab_run *r = arg;
    struct lab_http h;
    if (lab_http_init(&h, &r->stop) != 0)
        return NULL;
    for (int i = 0; i < LAB_BURST_TRANSFERS && !atomic_load(&r->stop); i++) {
        if (i % LAB_BURST_CHECK == 0 && slow_drops(r, &h) >= r->cell->slow_subscribers)
            break;
        const char *a = r->p2p_users[2 + i % 2], *b = r->p2p_users[2 + (i + 1) % 2];
        transfer(r, &h, a, b, NULL);
    }
    lab_http_free(&h);
    return NULL;
}
