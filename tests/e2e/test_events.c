/* test_events.c: the wallet's event stream (docs/ledger.md, docs/contracts.md "Events"). A ZMQ
 * SUB socket on the wallet's PUB endpoint sees every balance change of the users it
 * subscribed to, on consecutive seqs per user, transaction.updated before balance.updated
 * in each commit, and no balance event for a failed top-up; GET /v1/users/{u}/events
 * returns exactly the events that were published. The subscriber is raw libzmq on its own
 * thread (the test must not share the services' code); it waits for the first sys.heads
 * heartbeat before anything happens, so its subscriptions are in place (no slow joiner). */
#include "e2e.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define OPENING_MINOR 1000000
/* Messages the subscriber keeps: far more than the test causes (heartbeats included). */
#define SUB_MSGS_MAX 512
#define SUB_TOPIC_BYTES_MAX 64
/* The subscriber's poll period: how soon it notices it should stop. */
#define SUB_POLL_MS 50
/* sys.heads comes every second. */
#define HEADS_TIMEOUT_MS 5000
/* Requests in flight at once in the concurrent test (half top-ups, half transfers). */
#define CONCURRENT_REQUESTS 8
/* Seqs one user gets in this test: well under this. */
#define USER_SEQ_MAX 64

struct sub_msg {
    char topic[SUB_TOPIC_BYTES_MAX];
    cJSON *json;
};

/* The subscriber: its thread owns the socket; msgs[0..count) is shared under mu. */
struct sub {
    pthread_t thread;
    void *zctx;
    void *sock;
    atomic_bool stop;
    pthread_mutex_t mu;
    size_t count;
    int heads_seen;
    bool overflow;
    struct sub_msg msgs[SUB_MSGS_MAX];
};

/* Receives one multipart message (topic, json) already waiting; false when none. */
static bool sub_recv_one(struct sub *s)
{
    char topic[SUB_TOPIC_BYTES_MAX];
    zmq_msg_t body;
    int n = zmq_recv(s->sock, topic, sizeof topic - 1, ZMQ_DONTWAIT);
    if (n < 0)
        return false;
    topic[n < (int)sizeof topic - 1 ? n : (int)sizeof topic - 1] = '\0';
    int more = 0;
    size_t more_bytes = sizeof more;
    zmq_getsockopt(s->sock, ZMQ_RCVMORE, &more, &more_bytes);
    if (!more)
        return true;
    zmq_msg_init(&body);
    if (zmq_msg_recv(&body, s->sock, 0) < 0) {
        zmq_msg_close(&body);
        return true;
    }
    cJSON *json = cJSON_ParseWithLength(zmq_msg_data(&body), zmq_msg_size(&body));
    zmq_msg_close(&body);
    pthread_mutex_lock(&s->mu);
    if (strcmp(topic, "sys.heads") == 0) {
        s->heads_seen++;
        cJSON_Delete(json);
    } else if (s->count < SUB_MSGS_MAX) {
        pl_strlcpy(s->msgs[s->count].topic, topic, sizeof s->msgs[s->count].topic);
        s->msgs[s->count].json = json;
        s->count++;
    } else {
        s->overflow = true;
        cJSON_Delete(json);
    }
    pthread_mutex_unlock(&s->mu);
    return true;
}

static void *sub_run(void *arg)
{
    struct sub *s = arg;
    while (!atomic_load(&s->stop)) {
        zmq_pollitem_t item = {.socket = s->sock, .events = ZMQ_POLLIN};
        if (zmq_poll(&item, 1, SUB_POLL_MS) <= 0)
            continue;
        while (sub_recv_one(s)) {
        }
    }
    zmq_close(s->sock);
    return NULL;
}

static void sub_start(struct sub *s, struct e2e *e, const char *const *topics)
{
    char endpoint[64];
    int linger = 0;
    memset(s, 0, sizeof *s);
    atomic_init(&s->stop, false);
    assert_int_equal(pthread_mutex_init(&s->mu, NULL), 0);
    s->zctx = zmq_ctx_new();
    assert_non_null(s->zctx);
    s->sock = zmq_socket(s->zctx, ZMQ_SUB);
    assert_non_null(s->sock);
    zmq_setsockopt(s->sock, ZMQ_LINGER, &linger, sizeof linger);
    for (size_t i = 0; topics[i] != NULL; i++)
        assert_int_equal(zmq_setsockopt(s->sock, ZMQ_SUBSCRIBE, topics[i], strlen(topics[i])), 0);
    assert_int_equal(zmq_setsockopt(s->sock, ZMQ_SUBSCRIBE, "sys.heads", 9), 0);
    snprintf(endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", e->c.zmq_pub_port);
    assert_int_equal(zmq_connect(s->sock, endpoint), 0);
    assert_int_equal(pthread_create(&s->thread, NULL, sub_run, s), 0);
}

static void sub_stop(struct sub *s)
{
    atomic_store(&s->stop, true);
    assert_int_equal(pthread_join(s->thread, NULL), 0);
    zmq_ctx_term(s->zctx);
    for (size_t i = 0; i < s->count; i++)
        cJSON_Delete(s->msgs[i].json);
    pthread_mutex_destroy(&s->mu);
}

static bool heads_seen(void *arg)
{
    struct sub *s = arg;
    pthread_mutex_lock(&s->mu);
    bool seen = s->heads_seen > 0;
    pthread_mutex_unlock(&s->mu);
    return seen;
}

/* One user's events as the subscriber saw them, by seq (duplicates, which a restart may
 * re-publish, must be identical and are kept once). */
struct user_stream {
    const char *user;
    int64_t head_seq;
    const cJSON *by_seq[USER_SEQ_MAX + 1];
};

/* Under s->mu: files s's messages for st->user by seq; true once seqs 1..head are in. */
static bool stream_collect(struct sub *s, struct user_stream *st)
{
    char topic[SUB_TOPIC_BYTES_MAX];
    snprintf(topic, sizeof topic, "user.%s.", st->user);
    for (size_t i = 0; i < s->count; i++) {
        const cJSON *j = s->msgs[i].json;
        if (strcmp(s->msgs[i].topic, topic) != 0)
            continue;
        assert_non_null(j);
        assert_string_equal(e2e_str(j, "user"), st->user);
        int64_t seq = e2e_int(j, "seq");
        assert_in_range(seq, 1, USER_SEQ_MAX);
        if (st->by_seq[seq] != NULL && !cJSON_Compare(st->by_seq[seq], j, true))
            fail_msg("%s seq %lld published twice with different contents", st->user,
                     (long long)seq);
        st->by_seq[seq] = j;
    }
    for (int64_t seq = 1; seq <= st->head_seq; seq++) {
        if (st->by_seq[seq] == NULL)
            return false;
    }
    return true;
}

struct streams_probe {
    struct sub *s;
    struct user_stream *streams;
    size_t count;
};

static bool streams_complete(void *arg)
{
    struct streams_probe *p = arg;
    bool complete = true;
    pthread_mutex_lock(&p->s->mu);
    for (size_t i = 0; i < p->count; i++) {
        memset(p->streams[i].by_seq, 0, sizeof p->streams[i].by_seq);
        complete = stream_collect(p->s, &p->streams[i]) && complete;
    }
    pthread_mutex_unlock(&p->s->mu);
    return complete;
}

static const char *txn_field(const cJSON *ev, const char *key)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(ev, "transaction");
    assert_true(cJSON_IsObject(t));
    return e2e_str(t, key);
}

/* The stream is gapless from 1 to head, nothing beyond it, in the wallet's epoch; every
 * balance.updated follows its commit's transaction.updated; the balances it reports are
 * exactly `balances` (count of them) in order (balances NULL: any values, count of them). */
static void stream_check(const struct user_stream *st, const char *epoch, const int64_t *balances,
                         size_t balances_count)
{
    size_t balance_index = 0;
    assert_true(st->head_seq < USER_SEQ_MAX);
    assert_null(st->by_seq[st->head_seq + 1]); /* nothing published beyond the head */
    for (int64_t seq = 1; seq <= st->head_seq; seq++) {
        const cJSON *ev = st->by_seq[seq];
        assert_string_equal(e2e_str(ev, "epoch"), epoch);
        const char *type = e2e_str(ev, "type");
        if (strcmp(type, "transaction.updated") == 0)
            continue;
        assert_string_equal(type, "balance.updated");
        assert_true(seq > 1);
        const cJSON *before = st->by_seq[seq - 1];
        assert_string_equal(e2e_str(before, "type"), "transaction.updated");
        assert_string_equal(txn_field(before, "id"), txn_field(ev, "id"));
        assert_string_equal(txn_field(before, "status"), txn_field(ev, "status"));
        assert_in_range(balance_index, 0, balances_count - 1);
        if (balances != NULL)
            assert_int_equal(e2e_int(ev, "balance_minor"), balances[balance_index]);
        balance_index++;
    }
    assert_int_equal(balance_index, balances_count);
}

/* The last transaction.updated of transaction id in the stream has status; the stream
 * has a balance.updated for it only when has_balance. */
static void stream_expect_txn(const struct user_stream *st, const char *id, const char *status,
                              bool has_balance)
{
    const cJSON *last = NULL;
    bool balance = false;
    for (int64_t seq = 1; seq <= st->head_seq; seq++) {
        const cJSON *ev = st->by_seq[seq];
        if (strcmp(txn_field(ev, "id"), id) != 0)
            continue;
        if (strcmp(e2e_str(ev, "type"), "transaction.updated") == 0)
            last = ev;
        else
            balance = true;
    }
    if (last == NULL)
        fail_msg("no transaction.updated for %s in %s's stream", id, st->user);
    assert_string_equal(txn_field(last, "status"), status);
    assert_int_equal(balance, has_balance);
}

/* GET /v1/users/{user}/events?after=after returns the published events with seq > after,
 * identical, oldest first. */
static void events_api_check(struct e2e *e, const struct user_stream *st, int64_t after,
                             const char *epoch)
{
    char path[128];
    struct e2e_resp r;
    snprintf(path, sizeof path, "/v1/users/%s/events?after=%lld", st->user, (long long)after);
    e2e_wallet(e, "GET", path, NULL, NULL, &r);
    e2e_expect(&r, 200, NULL);
    assert_string_equal(e2e_str(r.json, "user"), st->user);
    assert_string_equal(e2e_str(r.json, "epoch"), epoch);
    assert_int_equal(e2e_int(r.json, "head_seq"), st->head_seq);
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(r.json, "events");
    assert_true(cJSON_IsArray(list));
    assert_int_equal(cJSON_GetArraySize(list), st->head_seq - after);
    int64_t seq = after;
    const cJSON *ev = NULL;
    cJSON_ArrayForEach(ev, list)
    {
        seq++;
        assert_int_equal(e2e_int(ev, "seq"), seq);
        if (!cJSON_Compare(ev, st->by_seq[seq], true)) {
            char *a = cJSON_PrintUnformatted(ev), *b = cJSON_PrintUnformatted(st->by_seq[seq]);
            fprintf(stderr, "e2e: API  %s\ne2e: PUB  %s\n", a, b);
            free(a);
            free(b);
            fail_msg("%s seq %lld differs between the API and the PUB socket", st->user,
                     (long long)seq);
        }
    }
    e2e_resp_free(&r);
}

/* GET /v1/users/{user}: its epoch into epoch_out (65 bytes) and its head_seq. */
static int64_t user_head(struct e2e *e, const char *user, char epoch_out[65])
{
    char path[96];
    struct e2e_resp r;
    snprintf(path, sizeof path, "/v1/users/%s", user);
    e2e_wallet(e, "GET", path, NULL, NULL, &r);
    e2e_expect(&r, 200, NULL);
    int64_t head = e2e_int(r.json, "head_seq");
    assert_int_equal(pl_strlcpy(epoch_out, e2e_str(r.json, "epoch"), 65), 0);
    e2e_resp_free(&r);
    return head;
}

/* Top-ups (async and sync), a transfer, an async withdrawal and a declined async top-up:
 * the SUB socket and the events API tell the same gapless story for alice and bob. */
static void test_events_stream(void **state)
{
    struct e2e *e = *state;
    struct sub sub;
    struct e2e_resp r;
    char top_async[64], top_sync[64], p2p[64], payout[64], declined[64];
    char epoch[65], epoch_bob[65];
    const struct e2e_opts opts = {.gateways = 1, .pending_grace_ms = 15000};
    const char *const topics[] = {"user.alice.", "user.bob.", NULL};
    e2e_start(e, &opts);
    e2e_user_add(e, "alice");
    e2e_user_add(e, "bob");
    sub_start(&sub, e, topics);
    assert_true(cluster_wait_for(heads_seen, &sub, cluster_deadline_ms(HEADS_TIMEOUT_MS)));

    e2e_topup_async(e, "alice", 50000, top_async);
    cJSON_Delete(e2e_wait_final(e, top_async, E2E_SETTLE_TIMEOUT_MS));
    assert_int_equal(e2e_topup(e, "alice", 20000, "sync", NULL, &r), 200);
    pl_strlcpy(top_sync, e2e_str(r.json, "id"), sizeof top_sync);
    e2e_resp_free(&r);
    assert_int_equal(e2e_transfer(e, "alice", "bob", 10000, &r), 200);
    pl_strlcpy(p2p, e2e_str(r.json, "id"), sizeof p2p);
    e2e_resp_free(&r);
    e2e_withdraw_async(e, "bob", 4000, payout);
    cJSON_Delete(e2e_wait_final(e, payout, E2E_SETTLE_TIMEOUT_MS));
    e2e_topup_async(e, "alice", 2 * OPENING_MINOR, declined);
    cJSON_Delete(e2e_wait_final(e, declined, E2E_SETTLE_TIMEOUT_MS));

    struct user_stream streams[2] = {{.user = "alice"}, {.user = "bob"}};
    streams[0].head_seq = user_head(e, "alice", epoch);
    streams[1].head_seq = user_head(e, "bob", epoch_bob);
    assert_string_equal(epoch, epoch_bob);
    assert_in_range(streams[0].head_seq, 1, USER_SEQ_MAX - 1);
    assert_in_range(streams[1].head_seq, 1, USER_SEQ_MAX - 1);
    struct streams_probe probe = {.s = &sub, .streams = streams, .count = 2};
    assert_true(cluster_wait_for(streams_complete, &probe, cluster_deadline_ms(5000)));
    assert_false(sub.overflow);

    /* alice: +50000, +20000, -10000; the declined top-up moves nothing */
    const int64_t alice_balances[] = {50000, 70000, 60000};
    /* bob: +10000, then the withdrawal's hold -4000; its payout moves nothing of his */
    const int64_t bob_balances[] = {10000, 6000};
    stream_check(&streams[0], epoch, alice_balances, PL_ARRAY_LEN(alice_balances));
    stream_check(&streams[1], epoch, bob_balances, PL_ARRAY_LEN(bob_balances));
    stream_expect_txn(&streams[0], top_async, "succeeded", true);
    stream_expect_txn(&streams[0], top_sync, "succeeded", true);
    stream_expect_txn(&streams[0], p2p, "succeeded", true);
    stream_expect_txn(&streams[0], declined, "failed", false);
    stream_expect_txn(&streams[1], p2p, "succeeded", true);
    stream_expect_txn(&streams[1], payout, "succeeded", true);
    assert_int_equal(e2e_wallet_balance(e, "alice"), 60000);
    assert_int_equal(e2e_wallet_balance(e, "bob"), 6000);

    events_api_check(e, &streams[0], 0, epoch);
    events_api_check(e, &streams[0], 2, epoch);
    events_api_check(e, &streams[1], 0, epoch);
    events_api_check(e, &streams[1], streams[1].head_seq, epoch);
    sub_stop(&sub);
    e2e_finish(e);
}

/* The balance the last balance.updated of the stream reports. */
static int64_t stream_last_balance(const struct user_stream *st)
{
    for (int64_t seq = st->head_seq; seq >= 1; seq--) {
        if (strcmp(e2e_str(st->by_seq[seq], "type"), "balance.updated") == 0)
            return e2e_int(st->by_seq[seq], "balance_minor");
    }
    fail_msg("no balance.updated in %s's stream", st->user);
    return -1;
}

/* Async top-ups and transfers in flight at once: the commits interleave, the seqs stay
 * gapless per user and the stream ends on the balance the wallet reports. */
static void test_events_concurrent(void **state)
{
    struct e2e *e = *state;
    struct sub sub;
    struct e2e_resp r;
    struct e2e_bg bgs[CONCURRENT_REQUESTS];
    char ids[CONCURRENT_REQUESTS][64], epoch[65], epoch_bob[65];
    size_t topups = 0;
    const struct e2e_opts opts = {.gateways = 1, .pending_grace_ms = 15000};
    const char *const topics[] = {"user.alice.", "user.bob.", NULL};
    e2e_start(e, &opts);
    e2e_user_add(e, "alice");
    e2e_user_add(e, "bob");
    sub_start(&sub, e, topics);
    assert_true(cluster_wait_for(heads_seen, &sub, cluster_deadline_ms(HEADS_TIMEOUT_MS)));
    assert_int_equal(e2e_topup(e, "alice", 100000, "sync", NULL, &r), 200);
    e2e_resp_free(&r);

    for (size_t i = 0; i < CONCURRENT_REQUESTS; i++) {
        char key[E2E_KEY_BYTES_MAX];
        bool topup = i % 2 == 0;
        e2e_new_key(e, key);
        e2e_bg_start(&bgs[i], e, topup ? "/v1/topups" : "/v1/transfers",
                     topup ? "{\"user\":\"alice\",\"amount_minor\":1000,\"mode\":\"async\"}"
                           : "{\"from\":\"alice\",\"to\":\"bob\",\"amount_minor\":500}",
                     key);
    }
    for (size_t i = 0; i < CONCURRENT_REQUESTS; i++) {
        e2e_bg_join(&bgs[i], &r);
        e2e_expect(&r, i % 2 == 0 ? 202 : 200, NULL);
        pl_strlcpy(ids[i], e2e_str(r.json, "id"), sizeof ids[i]);
        e2e_resp_free(&r);
        topups += i % 2 == 0;
    }
    e2e_wait_all_final(e, ids, CONCURRENT_REQUESTS, E2E_SETTLE_TIMEOUT_MS);
    int64_t transfers = (int64_t)(CONCURRENT_REQUESTS - topups);
    int64_t alice = 100000 + (int64_t)topups * 1000 - transfers * 500;
    assert_int_equal(e2e_wallet_balance(e, "alice"), alice);
    assert_int_equal(e2e_wallet_balance(e, "bob"), transfers * 500);

    struct user_stream streams[2] = {{.user = "alice"}, {.user = "bob"}};
    streams[0].head_seq = user_head(e, "alice", epoch);
    streams[1].head_seq = user_head(e, "bob", epoch_bob);
    assert_string_equal(epoch, epoch_bob);
    struct streams_probe probe = {.s = &sub, .streams = streams, .count = 2};
    assert_true(cluster_wait_for(streams_complete, &probe, cluster_deadline_ms(5000)));
    assert_false(sub.overflow);
    /* alice: the first top-up, then one balance change per request; bob: one per transfer */
    stream_check(&streams[0], epoch, NULL, 1 + CONCURRENT_REQUESTS);
    stream_check(&streams[1], epoch, NULL, (size_t)transfers);
    assert_int_equal(stream_last_balance(&streams[0]), alice);
    assert_int_equal(stream_last_balance(&streams[1]), transfers * 500);
    for (size_t i = 0; i < CONCURRENT_REQUESTS; i++)
        stream_expect_txn(&streams[0], ids[i], "succeeded", true);
    events_api_check(e, &streams[0], 0, epoch);
    events_api_check(e, &streams[1], 0, epoch);
    sub_stop(&sub);
    e2e_finish(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_events_stream, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_events_concurrent, e2e_setup, e2e_teardown),
    };
    e2e_filter_from_env();
    return cmocka_run_group_tests_name("e2e_events", tests, NULL, NULL);
}
