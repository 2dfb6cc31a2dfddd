/* ws_hub.c owns the gateway's real-time half (docs/realtime.md): the WebSocket listener, each
 * client's subscriptions, the ZMQ SUB that brings the wallet's events, and one ordered
 * stream per user that turns an unreliable bus into "every seq exactly once, in order".
 * Must not: write anything durable (the gateway is a stateless edge: a restart loses only
 * what the wallet can replay), block the loop, or touch a ws_conn after its on_closed.
 *
 * How a client sees every seq exactly once and in order:
 *
 *  1. One stream per user (struct hub_user). It remembers `last_seq`, the last seq it
 *     delivered, and delivers an event only when its seq is last_seq + 1. A duplicate
 *     (seq <= last_seq) is dropped. A later seq is held in a bounded buffer and a fetch of
 *     GET {wallet}/v1/users/U/events?after=last_seq fills the gap (one fetch in flight per
 *     user; a full buffer drops and refetches). A lost *last* event is revealed by
 *     `sys.heads` (head > last_seq → fetch), and after a silence of the SUB longer than
 *     HUB_SUB_SILENCE_MS (heads come every second, so silence means a reconnect) every
 *     subscribed user is refetched.
 *
 *  2. One cursor per subscription (struct hub_sub): `sent_seq`, the last seq this client
 *     got for this user. Live events reach it only through its user's stream and only when
 *     seq == sent_seq + 1; anything <= sent_seq is skipped, anything beyond makes the
 *     subscription fetch the missing range itself. So the replay/live boundary cannot
 *     duplicate or skip: both paths go through the same cursor.
 *
 *  3. A subscription starts by fetching: a snapshot (no `after`: head seq and balance), or
 *     a resume (`after`: that page, replayed to this client only, paced by the client's
 *     queue: past HUB_REPLAY_QUEUE_BYTES_MAX queued it waits HUB_REPLAY_PACE_MS). It goes
 *     live when its cursor has reached the stream's last_seq; the first one to go live
 *     starts a stream that had no starting point, and every one refetches after=last_seq
 *     (an event may have been lost while it was replaying).
 *
 *  4. `*` (admin) clients get every user's stream: the SUB then also holds "user.", and a
 *     user seen only through `*` starts its stream at its first event (no replay for `*`).
 *     Such users are forgotten after HUB_USER_IDLE_MS without events.
 *
 *  5. The wallet's epoch changes only with a new database: then every stream restarts and
 *     every subscription gets a fresh snapshot ("recovered":false).
 *
 * Invariants: a ws_conn is only used between on_open and on_closed; a client that a send
 * refused (slow consumer, closing) is never sent to again; every fetch in flight belongs to
 * exactly one user or subscription and is cancelled when that is freed. */
#include "gateway.h"

#include <assert.h>
#include <cjson/cJSON.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "curlev.h"
#include "ids.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "pl.h"
#include "sign.h"
#include "ws.h"

/* ---- limits ---------------------------------------------------------------------------- */

/* Users with a stream at once (subscribed ones and those seen through "*"). Past it, a "*"
 * client still gets the events of further users, unordered (counted as passthrough). */
#define HUB_USERS_MAX 65536
#define HUB_USER_BUCKETS 4096
/* Subscriptions one client may hold (a dashboard needs one, `paylab watch` a few). */
#define HUB_CLIENT_SUBS_MAX 16
/* Live events held per user while a fetch is in flight; beyond, dropped and refetched. */
#define HUB_USER_BUFFER_MAX 128
/* Events per wallet fetch: the wallet's own maximum (EVENTS_LIST_LIMIT_MAX). */
#define HUB_FETCH_LIMIT 500
#define HUB_FETCH_TIMEOUT_MS 5000
#define HUB_FETCH_CONNECT_TIMEOUT_MS 1000
/* A failed fetch is retried after 250 ms, doubling up to 5 s (the wallet may be restarting). */
#define HUB_RETRY_MS_MIN 250
#define HUB_RETRY_MS_MAX 5000
/* A replay pauses while its client has more than this queued (a quarter of the 1 MiB
 * slow-consumer bound, leaving room for live events) and looks again after the pace delay. */
#define HUB_REPLAY_QUEUE_BYTES_MAX (256 * 1024)
#define HUB_REPLAY_PACE_MS 20
/* The wallet sends sys.heads every second: a longer silence means the SUB reconnected. */
#define HUB_SUB_SILENCE_MS 3000
/* Users seen only through "*" are forgotten after this long without an event. */
#define HUB_USER_IDLE_MS 60000
#define HUB_SWEEP_MS 10000
/* The SUB's receive high-water mark: a burst beyond it is dropped by ZMQ and gap-filled. */
#define HUB_SUB_HWM 10000
/* Entries of one sys.heads read (the wallet sends at most 1000). */
#define HUB_HEADS_USERS_MAX 10000
/* The wallet's epoch is 24 hex characters; anything up to this is accepted. */
#define HUB_EPOCH_BYTES_MAX 64
/* `after` is passed to the wallet, which takes at most 15 digits. */
#define HUB_AFTER_MAX 999999999999999LL
/* after= beyond every seq: the answer is the head seq and balance, without events. */
#define HUB_SNAPSHOT_AFTER HUB_AFTER_MAX
#define HUB_TOPIC_BYTES_MAX (USER_HANDLE_CHARS_MAX + 8)
#define HUB_URL_BYTES_MAX (CONFIG_STR_BYTES_MAX + 128)
#define HUB_OP_CHARS_MAX 16

_Static_assert(HUB_REPLAY_QUEUE_BYTES_MAX + WS_MESSAGE_BYTES_MAX < WS_QUEUE_BYTES_MAX,
               "a paced replay never trips the slow-consumer bound by itself");
_Static_assert(HUB_USERS_MAX >= HUB_USER_BUCKETS, "buckets stay short");

static const char hub_heads_topic[] = "sys.heads";
static const char hub_all_topic[] = "user.";
static const char hub_event_prefix[] = "{\"op\":\"event\",";

/* ---- counters of /metrics --------------------------------------------------------------- */

enum hub_stat {
    HS_EVENTS_LIVE,
    HS_EVENTS_REPLAY,
    HS_FILL_GAP,
    HS_FILL_HEADS,
    HS_FILL_LIVE,
    HS_FILL_RECONNECT,
    HS_FILL_CLIENT,
    HS_FETCH_ERRORS,
    HS_REPLAY_RECOVERED,
    HS_REPLAY_SNAPSHOT,
    HS_CLOSE_1000,
    HS_CLOSE_1001,
    HS_CLOSE_1006,
    HS_CLOSE_1008,
    HS_CLOSE_OTHER,
    HS_ERR_UNAUTHORIZED,
    HS_ERR_BAD_REQUEST,
    HS_ERR_LIMIT,
    HS_DROP_DUPLICATE,
    HS_DROP_BUFFER,
    HS_DROP_MALFORMED,
    HS_PASSTHROUGH,
    HS_DROP_INJECTED,
    HS_EPOCH_RESETS,
    HS_COUNT,
};

struct hub_stat_def {
    const char *name;
    const char *labels;
};

static const struct hub_stat_def hub_stat_defs[HS_COUNT] = {
    [HS_EVENTS_LIVE] = {"paylab_gateway_ws_events_delivered_total", "path=\"live\""},
    [HS_EVENTS_REPLAY] = {"paylab_gateway_ws_events_delivered_total", "path=\"replay\""},
    [HS_FILL_GAP] = {"paylab_gateway_ws_gap_fills_total", "reason=\"gap\""},
    [HS_FILL_HEADS] = {"paylab_gateway_ws_gap_fills_total", "reason=\"heads\""},
    [HS_FILL_LIVE] = {"paylab_gateway_ws_gap_fills_total", "reason=\"live\""},
    [HS_FILL_RECONNECT] = {"paylab_gateway_ws_gap_fills_total", "reason=\"reconnect\""},
    [HS_FILL_CLIENT] = {"paylab_gateway_ws_gap_fills_total", "reason=\"client\""},
    [HS_FETCH_ERRORS] = {"paylab_gateway_ws_fetch_errors_total", ""},
    [HS_REPLAY_RECOVERED] = {"paylab_gateway_ws_replays_total", "result=\"recovered\""},
    [HS_REPLAY_SNAPSHOT] = {"paylab_gateway_ws_replays_total", "result=\"snapshot\""},
    [HS_CLOSE_1000] = {"paylab_gateway_ws_closes_total", "code=\"1000\""},
    [HS_CLOSE_1001] = {"paylab_gateway_ws_closes_total", "code=\"1001\""},
    [HS_CLOSE_1006] = {"paylab_gateway_ws_closes_total", "code=\"1006\""},
    [HS_CLOSE_1008] = {"paylab_gateway_ws_closes_total", "code=\"1008\""},
    [HS_CLOSE_OTHER] = {"paylab_gateway_ws_closes_total", "code=\"other\""},
    [HS_ERR_UNAUTHORIZED] = {"paylab_gateway_ws_errors_total", "code=\"unauthorized\""},
    [HS_ERR_BAD_REQUEST] = {"paylab_gateway_ws_errors_total", "code=\"bad_request\""},
    [HS_ERR_LIMIT] = {"paylab_gateway_ws_errors_total", "code=\"limit\""},
    [HS_DROP_DUPLICATE] = {"paylab_gateway_ws_events_dropped_total", "reason=\"duplicate\""},
    [HS_DROP_BUFFER] = {"paylab_gateway_ws_events_dropped_total", "reason=\"buffer_full\""},
    [HS_DROP_MALFORMED] = {"paylab_gateway_ws_events_dropped_total", "reason=\"malformed\""},
    [HS_PASSTHROUGH] = {"paylab_gateway_ws_events_unordered_total", ""},
    [HS_DROP_INJECTED] = {"paylab_gateway_ws_events_dropped_total", "reason=\"injected\""},
    [HS_EPOCH_RESETS] = {"paylab_gateway_ws_epoch_resets_total", ""},
};

/* ---- state ------------------------------------------------------------------------------ */

struct hub_client;

/* A live event held by a user's stream: the seq and the message ready to send. */
struct hub_held {
    int64_t seq;
    char *msg; /* {"op":"event",…}, malloc'ed */
    size_t bytes;
};

/* One subscription's fetches: a snapshot, a resume (the subscribe's `after`), or a fill
 * (the cursor fell behind the stream; already answered). */
enum sub_mode { SUB_SNAPSHOT, SUB_RESUME, SUB_FILL };
enum sub_state { SUB_WAITING, SUB_PUMPING, SUB_LIVE };

struct hub_sub {
    struct hub_client *client;
    struct hub_user *user;
    struct hub_sub *prev, *next; /* in user->subs */
    enum sub_mode mode;
    enum sub_state state;
    int64_t after;                   /* SUB_RESUME: the client's `after` */
    char epoch[HUB_EPOCH_BYTES_MAX]; /* SUB_RESUME: the client's `epoch` ("" if none) */
    int64_t sent_seq;                /* the last seq sent to this client for this user */
    struct curlev_xfer *xfer;        /* the fetch in flight, or NULL */
    struct event *timer;             /* pacing and retry */
    int failures;                    /* consecutive failed fetches (backoff) */
    cJSON *page;                     /* SUB_PUMPING: the fetched page being replayed */
    const cJSON *page_next;          /* its next event */
    bool page_full;                  /* it held HUB_FETCH_LIMIT events: there is more */
};

struct hub_user {
    struct hub *hub;
    char name[USER_HANDLE_CHARS_MAX + 1];
    struct hub_user *bucket_next;
    struct hub_user *prev, *next; /* in hub->users */
    bool synced;                  /* last_seq is known (a starting point exists) */
    int64_t last_seq;
    struct curlev_xfer *xfer; /* the stream's fetch in flight, or NULL */
    bool refetch;             /* fetch after=last_seq again when the current one ends */
    int failures;
    struct event *retry;
    struct hub_held held[HUB_USER_BUFFER_MAX];
    size_t held_count;
    struct hub_sub *subs; /* this user's subscriptions, every client */
    size_t subs_count;
    int64_t last_event_ms; /* monotonic; for forgetting "*"-only users */
};

struct hub_client {
    struct hub *hub;
    struct ws_conn *conn;
    struct hub_sub *subs[HUB_CLIENT_SUBS_MAX];
    size_t subs_count;
    bool star;
    struct hub_client *star_prev, *star_next;
    bool dead; /* a send was refused: the connection is closing, on_closed follows */
};

struct hub {
    struct gateway_ctx *ctx;
    struct curlev *curl;
    struct zbus *sub;
    struct ws_server *server;
    struct event *sweep;
    struct hub_user *buckets[HUB_USER_BUCKETS];
    struct hub_user *users;
    size_t users_count;
    struct hub_client *stars;
    size_t stars_count;
    size_t user_subs_count;
    char epoch[HUB_EPOCH_BYTES_MAX]; /* the wallet's, "" until first seen */
    int64_t sub_last_ms;             /* monotonic time of the SUB's last message */
    uint64_t stats[HS_COUNT];
    uint64_t stats_reported[HS_COUNT];
    unsigned long zmq_received_seen;
    unsigned long zmq_dropped_seen;
};

static void stream_fetch(struct hub *hub, struct hub_user *u, enum hub_stat reason);
static void sub_fetch(struct hub *hub, struct hub_sub *s);
static void hub_epoch_reset(struct hub *hub, const char *epoch);

/* ===================================================================== helpers ====== */

static int64_t hub_backoff_ms(int failures)
{
    int64_t ms = HUB_RETRY_MS_MIN;
    for (int i = 1; i < failures && ms < HUB_RETRY_MS_MAX; i++)
        ms *= 2;
    return ms < HUB_RETRY_MS_MAX ? ms : HUB_RETRY_MS_MAX;
}

static void hub_arm(struct event *ev, int64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(ev, &tv);
}

static void hub_topic(const char *user, char out[HUB_TOPIC_BYTES_MAX])
{
    int n = snprintf(out, HUB_TOPIC_BYTES_MAX, "user.%s.", user);
    assert(n > 0 && n < HUB_TOPIC_BYTES_MAX);
}

/* {"op":"event",…} from an event's JSON text {…}: the event's own fields after "op". NULL
 * when json is not an object that starts with a member, or on allocation failure. */
static char *hub_event_msg(const char *json, size_t bytes, size_t *out_bytes)
{
    size_t i = 0;
    while (i < bytes && (json[i] == ' ' || json[i] == '\n' || json[i] == '\t' || json[i] == '\r'))
        i++;
    if (bytes - i < 2 || json[i] != '{' || json[i + 1] != '"')
        return NULL;
    size_t rest = bytes - i - 1;
    size_t prefix = sizeof hub_event_prefix - 1;
    if (prefix + rest > WS_MESSAGE_BYTES_MAX)
        return NULL;
    char *out = malloc(prefix + rest + 1);
    if (out == NULL)
        return NULL;
    memcpy(out, hub_event_prefix, prefix);
    memcpy(out + prefix, json + i + 1, rest);
    out[prefix + rest] = '\0';
    *out_bytes = prefix + rest;
    return out;
}

/* --drop-events-rate: whether this event is "lost on the bus". A hash of (user, seq), not a
 * draw, so a run repeats; both gateways lose the same events. */
static bool hub_drop_injected(const struct hub *hub, const char *user, int64_t seq)
{
    double rate = hub->ctx->cfg.drop_events_rate;
    if (rate <= 0)
        return false;
    uint64_t h = 14695981039346656037ull; /* FNV-1a 64 over user and seq */
    for (const unsigned char *p = (const unsigned char *)user; *p != '\0'; p++)
        h = (h ^ *p) * 1099511628211ull;
    for (int i = 0; i < 8; i++)
        h = (h ^ (uint64_t)((seq >> (8 * i)) & 0xff)) * 1099511628211ull;
    return (double)(h >> 11) / 9007199254740992.0 < rate;
}

/* The message for one event of a fetched page, and its seq. NULL when malformed. */
static char *hub_item_msg(const cJSON *item, int64_t *seq, size_t *bytes)
{
    if (!cJSON_IsObject(item) || json_get_int64(item, "seq", true, seq) != JSON_OK || *seq < 1)
        return NULL;
    char *text = cJSON_PrintUnformatted(item);
    if (text == NULL)
        return NULL;
    char *msg = hub_event_msg(text, strlen(text), bytes);
    free(text);
    return msg;
}

/* Sends one text message; a refusal (slow consumer: ws.c closes with 1008; closing) marks
 * the client dead so nothing is sent to it again before its on_closed. */
static void client_send(struct hub_client *c, const char *msg, size_t bytes)
{
    if (c->dead)
        return;
    int rc = ws_conn_send_text(c->conn, msg, bytes);
    if (rc == PL_ERANGE || rc == PL_EIO)
        c->dead = true;
    if (rc == PL_EINVAL || rc == PL_ENOMEM)
        log_error("ws message not sent", "rc=%d bytes=%zu", rc, bytes);
}

static void client_send_json(struct hub_client *c, const cJSON *o)
{
    char *text = o != NULL ? json_print(o) : NULL;
    if (text == NULL) {
        log_error("ws message not built", "reason=\"out of memory\"");
        return;
    }
    client_send(c, text, strlen(text));
    free(text);
}

/* {"op":"error","code":…,"message":…[,"user":…]}; user only when it is a valid handle/"*". */
static void client_error(struct hub_client *c, enum hub_stat stat, const char *code,
                         const char *message, const char *user)
{
    c->hub->stats[stat]++;
    cJSON *o = cJSON_CreateObject();
    if (o != NULL) {
        cJSON_AddStringToObject(o, "op", "error");
        cJSON_AddStringToObject(o, "code", code);
        cJSON_AddStringToObject(o, "message", message);
        if (user != NULL)
            cJSON_AddStringToObject(o, "user", user);
    }
    client_send_json(c, o);
    cJSON_Delete(o);
}

static bool client_has_sub(const struct hub_client *c, const struct hub_user *u)
{
    for (size_t i = 0; i < c->subs_count; i++) {
        if (c->subs[i]->user == u)
            return true;
    }
    return false;
}

/* ===================================================================== users ======== */

static size_t user_bucket(const char *name)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++)
        h = (h ^ *p) * 16777619u;
    return h % HUB_USER_BUCKETS;
}

static struct hub_user *user_find(struct hub *hub, const char *name)
{
    for (struct hub_user *u = hub->buckets[user_bucket(name)]; u != NULL; u = u->bucket_next) {
        if (strcmp(u->name, name) == 0)
            return u;
    }
    return NULL;
}

static void stream_on_retry(evutil_socket_t fd, short what, void *arg);

/* The user's stream, created without a starting point. NULL when HUB_USERS_MAX are
 * tracked or on allocation failure. */
static struct hub_user *user_get(struct hub *hub, const char *name)
{
    assert(ids_user_valid(name));
    struct hub_user *u = user_find(hub, name);
    if (u != NULL || hub->users_count >= HUB_USERS_MAX)
        return u;
    u = calloc(1, sizeof *u);
    if (u == NULL)
        return NULL;
    u->retry = evtimer_new(hub->ctx->base, stream_on_retry, u);
    if (u->retry == NULL) {
        free(u);
        return NULL;
    }
    u->hub = hub;
    pl_strlcpy(u->name, name, sizeof u->name);
    u->last_event_ms = pl_mono_ms();
    size_t b = user_bucket(name);
    u->bucket_next = hub->buckets[b];
    hub->buckets[b] = u;
    u->next = hub->users;
    if (hub->users != NULL)
        hub->users->prev = u;
    hub->users = u;
    hub->users_count++;
    return u;
}

static void user_drop_held(struct hub_user *u)
{
    for (size_t i = 0; i < u->held_count; i++)
        free(u->held[i].msg);
    u->held_count = 0;
}

/* Forgets the stream's position and anything in flight (a new epoch, or the user's end). */
static void user_reset(struct hub *hub, struct hub_user *u)
{
    curlev_cancel(hub->curl, u->xfer);
    u->xfer = NULL;
    evtimer_del(u->retry);
    user_drop_held(u);
    u->synced = false;
    u->refetch = false;
    u->failures = 0;
}

static void user_free(struct hub *hub, struct hub_user *u)
{
    assert(u->subs_count == 0);
    assert(u->subs == NULL);
    user_reset(hub, u);
    event_free(u->retry);
    struct hub_user **pp = &hub->buckets[user_bucket(u->name)];
    while (*pp != u)
        pp = &(*pp)->bucket_next;
    *pp = u->bucket_next;
    if (u->prev != NULL)
        u->prev->next = u->next;
    else
        hub->users = u->next;
    if (u->next != NULL)
        u->next->prev = u->prev;
    assert(hub->users_count > 0);
    hub->users_count--;
    free(u);
}

/* ===================================================================== wallet fetches === */

/* GET {wallet}/v1/users/{user}/events?after=…&limit=… on the loop. 0 or a curlev error. */
static int hub_fetch_start(struct hub *hub, const char *user, int64_t after, int limit,
                           curlev_done_fn done, void *arg, struct curlev_xfer **xfer)
{
    char url[HUB_URL_BYTES_MAX];
    int n = snprintf(url, sizeof url, "%s/v1/users/%s/events?after=%lld&limit=%d",
                     hub->ctx->cfg.wallet_url, user, (long long)after, limit);
    if (n <= 0 || (size_t)n >= sizeof url)
        return PL_ERANGE;
    struct curlev_request req = {
        .method = "GET",
        .url = url,
        .headers = {NULL},
        .timeout_ms = HUB_FETCH_TIMEOUT_MS,
        .connect_timeout_ms = HUB_FETCH_CONNECT_TIMEOUT_MS,
    };
    return curlev_start(hub->curl, &req, done, arg, xfer);
}

/* One page of GET …/events: {"user","epoch","head_seq","balance_minor","events":[…]}. */
struct hub_page {
    cJSON *root; /* owned: cJSON_Delete */
    const char *epoch;
    int64_t head_seq;
    int64_t balance_minor;
    const cJSON *events;
    int count;
};

/* 0; PL_ENOTFOUND (404: no such user); PL_EIO (no answer, another status, or a body that
 * is not a page). */
static int hub_page_parse(const struct curlev_result *res, struct hub_page *p)
{
    memset(p, 0, sizeof *p);
    if (res->outcome != CURLEV_ANSWERED)
        return PL_EIO;
    if (res->http_status == 404)
        return PL_ENOTFOUND;
    if (res->http_status != 200)
        return PL_EIO;
    p->root = json_parse_object(res->body, res->body_bytes);
    if (p->root == NULL)
        return PL_EIO;
    bool ok =
        json_get_string(p->root, "epoch", true, HUB_EPOCH_BYTES_MAX - 1, &p->epoch) == JSON_OK &&
        json_get_int64(p->root, "head_seq", true, &p->head_seq) == JSON_OK &&
        json_get_int64(p->root, "balance_minor", true, &p->balance_minor) == JSON_OK;
    p->events = cJSON_GetObjectItemCaseSensitive(p->root, "events");
    if (!ok || !cJSON_IsArray(p->events) || p->head_seq < 0) {
        cJSON_Delete(p->root);
        p->root = NULL;
        return PL_EIO;
    }
    p->count = cJSON_GetArraySize(p->events);
    return PL_OK;
}

/* Adopts the wallet's epoch when none is known. True when it differs from the known one:
 * the caller must stop and call hub_epoch_reset. */
static bool hub_epoch_differs(struct hub *hub, const char *epoch)
{
    if (hub->epoch[0] == '\0') {
        pl_strlcpy(hub->epoch, epoch, sizeof hub->epoch);
        return false;
    }
    return strcmp(hub->epoch, epoch) != 0;
}

/* ===================================================================== streams ====== */

/* Delivers seq (== last_seq + 1) to the user's live subscriptions and the "*" clients. */
static void stream_deliver(struct hub *hub, struct hub_user *u, int64_t seq, const char *msg,
                           size_t bytes)
{
    assert(u->synced);
    assert(seq == u->last_seq + 1);
    u->last_seq = seq;
    u->last_event_ms = pl_mono_ms();
    for (struct hub_sub *s = u->subs; s != NULL; s = s->next) {
        if (s->state != SUB_LIVE || seq <= s->sent_seq || s->client->dead)
            continue;
        if (seq == s->sent_seq + 1) {
            client_send(s->client, msg, bytes);
            s->sent_seq = seq;
            hub->stats[HS_EVENTS_LIVE]++;
            continue;
        }
        s->mode = SUB_FILL; /* this client is behind the stream: it catches up itself */
        s->state = SUB_WAITING;
        hub->stats[HS_FILL_CLIENT]++;
        sub_fetch(hub, s);
    }
    for (struct hub_client *c = hub->stars; c != NULL; c = c->star_next) {
        if (c->dead || client_has_sub(c, u))
            continue; /* a client subscribed to u by name gets it through its cursor */
        client_send(c, msg, bytes);
        hub->stats[HS_EVENTS_LIVE]++;
    }
}

/* Delivers every held event that continues the stream, drops the stale ones, and fetches
 * when a gap remains and nothing is in flight. */
static void stream_drain(struct hub *hub, struct hub_user *u)
{
    if (!u->synced)
        return;
    bool progress = true;
    while (progress && u->held_count > 0) {
        progress = false;
        for (size_t i = 0; i < u->held_count; i++) {
            struct hub_held h = u->held[i];
            if (h.seq > u->last_seq + 1)
                continue;
            u->held[i] = u->held[--u->held_count];
            if (h.seq == u->last_seq + 1)
                stream_deliver(hub, u, h.seq, h.msg, h.bytes);
            else
                hub->stats[HS_DROP_DUPLICATE]++;
            free(h.msg);
            progress = true;
            break;
        }
    }
    if (u->held_count > 0 && u->xfer == NULL)
        stream_fetch(hub, u, HS_FILL_GAP);
}

/* Holds a live event for later; a full buffer drops it and asks for a refetch instead. */
static void stream_hold(struct hub *hub, struct hub_user *u, int64_t seq, const char *msg,
                        size_t bytes)
{
    for (size_t i = 0; i < u->held_count; i++) {
        if (u->held[i].seq == seq) {
            hub->stats[HS_DROP_DUPLICATE]++;
            return;
        }
    }
    char *copy = u->held_count < HUB_USER_BUFFER_MAX ? malloc(bytes + 1) : NULL;
    if (copy == NULL) {
        hub->stats[HS_DROP_BUFFER]++;
        u->refetch = true;
        return;
    }
    memcpy(copy, msg, bytes);
    copy[bytes] = '\0';
    u->held[u->held_count++] = (struct hub_held){.seq = seq, .msg = copy, .bytes = bytes};
}

/* A live event from the SUB for a tracked user. */
static void stream_offer(struct hub *hub, struct hub_user *u, int64_t seq, const char *msg,
                         size_t bytes)
{
    if (!u->synced && u->subs_count == 0) {
        u->synced = true; /* seen only through "*": the stream starts here */
        u->last_seq = seq - 1;
    }
    if (!u->synced) {
        stream_hold(hub, u, seq, msg, bytes); /* until a subscription gives a start */
        return;
    }
    if (seq <= u->last_seq) {
        hub->stats[HS_DROP_DUPLICATE]++;
        return;
    }
    if (seq == u->last_seq + 1 && u->held_count == 0) {
        stream_deliver(hub, u, seq, msg, bytes);
        return;
    }
    stream_hold(hub, u, seq, msg, bytes);
    stream_drain(hub, u);
}

static void stream_retry_later(struct hub *hub, struct hub_user *u)
{
    u->failures++;
    hub->stats[HS_FETCH_ERRORS]++;
    hub_arm(u->retry, hub_backoff_ms(u->failures));
}

/* Applies one fetched page to the stream. False when an event is malformed or the page is
 * not contiguous (the wallet never deletes events, so neither should happen): the caller
 * backs off instead of refetching at once. */
static bool stream_apply(struct hub *hub, struct hub_user *u, const struct hub_page *p)
{
    for (const cJSON *item = p->events->child; item != NULL; item = item->next) {
        int64_t seq = 0;
        size_t bytes = 0;
        char *msg = hub_item_msg(item, &seq, &bytes);
        if (msg != NULL && seq == u->last_seq + 1)
            stream_deliver(hub, u, seq, msg, bytes);
        free(msg);
        if (msg == NULL || seq > u->last_seq) {
            hub->stats[HS_DROP_MALFORMED]++;
            return false;
        }
    }
    if (p->count >= HUB_FETCH_LIMIT)
        u->refetch = true;
    return true;
}

static void stream_on_fetch(const struct curlev_result *res, void *arg)
{
    struct hub_user *u = arg;
    struct hub *hub = u->hub;
    u->xfer = NULL;
    assert(u->synced); /* user_reset cancels the fetch of a stream it unsyncs */
    struct hub_page p;
    if (hub_page_parse(res, &p) != PL_OK) {
        log_warn("wallet events fetch failed; retrying", "user=%s outcome=%d status=%ld", u->name,
                 (int)res->outcome, res->http_status);
        stream_retry_later(hub, u);
        return;
    }
    if (hub_epoch_differs(hub, p.epoch)) {
        char epoch[HUB_EPOCH_BYTES_MAX];
        pl_strlcpy(epoch, p.epoch, sizeof epoch);
        cJSON_Delete(p.root);
        hub_epoch_reset(hub, epoch);
        return;
    }
    bool ok = stream_apply(hub, u, &p);
    cJSON_Delete(p.root);
    if (!ok) {
        stream_retry_later(hub, u);
        return;
    }
    u->failures = 0;
    stream_drain(hub, u);
    if (u->refetch && u->xfer == NULL) {
        u->refetch = false;
        stream_fetch(hub, u, HS_FILL_GAP);
    }
}

/* Fetches after=last_seq for the stream (reason: the counter to bump). With a fetch in
 * flight it only asks for another one after it; while backing off, the retry will. */
static void stream_fetch(struct hub *hub, struct hub_user *u, enum hub_stat reason)
{
    assert(u->synced);
    if (u->xfer != NULL) {
        u->refetch = true;
        return;
    }
    if (evtimer_pending(u->retry, NULL))
        return;
    hub->stats[reason]++;
    int rc =
        hub_fetch_start(hub, u->name, u->last_seq, HUB_FETCH_LIMIT, stream_on_fetch, u, &u->xfer);
    if (rc != PL_OK)
        stream_retry_later(hub, u);
}

static void stream_on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct hub_user *u = arg;
    if (u->synced)
        stream_fetch(u->hub, u, HS_FILL_GAP);
}

/* ===================================================================== the SUB ====== */

static void hub_on_event(struct hub *hub, const struct zbus_frame *topic, const cJSON *o,
                         const struct zbus_frame *json)
{
    const char *user = NULL, *epoch = NULL;
    int64_t seq = 0;
    char expected[HUB_TOPIC_BYTES_MAX];
    if (json_get_string(o, "user", true, USER_HANDLE_CHARS_MAX, &user) != JSON_OK ||
        !ids_user_valid(user) || json_get_int64(o, "seq", true, &seq) != JSON_OK || seq < 1 ||
        json_get_string(o, "epoch", true, HUB_EPOCH_BYTES_MAX - 1, &epoch) != JSON_OK) {
        hub->stats[HS_DROP_MALFORMED]++;
        return;
    }
    if (hub_drop_injected(hub, user, seq)) {
        hub->stats[HS_DROP_INJECTED]++;
        return;
    }
    hub_topic(user, expected);
    size_t bytes = 0;
    char *msg = hub_event_msg(json->data, json->bytes, &bytes);
    if (msg == NULL || topic->bytes != strlen(expected) ||
        memcmp(topic->data, expected, topic->bytes) != 0) {
        hub->stats[HS_DROP_MALFORMED]++;
        free(msg);
        return;
    }
    if (hub_epoch_differs(hub, epoch))
        hub_epoch_reset(hub, epoch);
    struct hub_user *u = user_find(hub, user);
    if (u == NULL && hub->stars_count > 0)
        u = user_get(hub, user);
    if (u != NULL) {
        stream_offer(hub, u, seq, msg, bytes);
    } else if (hub->stars_count > 0) {
        hub->stats[HS_PASSTHROUGH]++; /* past HUB_USERS_MAX: "*" still sees it, unordered */
        for (struct hub_client *c = hub->stars; c != NULL; c = c->star_next)
            client_send(c, msg, bytes);
    }
    free(msg);
}

/* sys.heads {"epoch","heads":{user:head_seq}}: a head beyond a stream's last_seq means its
 * last event(s) were lost on the way (nothing later would reveal it). */
static void hub_on_heads(struct hub *hub, const cJSON *o)
{
    const char *epoch = NULL;
    const cJSON *heads = cJSON_GetObjectItemCaseSensitive(o, "heads");
    if (json_get_string(o, "epoch", true, HUB_EPOCH_BYTES_MAX - 1, &epoch) != JSON_OK ||
        !cJSON_IsObject(heads)) {
        hub->stats[HS_DROP_MALFORMED]++;
        return;
    }
    if (hub_epoch_differs(hub, epoch)) {
        hub_epoch_reset(hub, epoch);
        return;
    }
    int seen = 0;
    for (const cJSON *h = heads->child; h != NULL && seen < HUB_HEADS_USERS_MAX;
         h = h->next, seen++) {
        if (!cJSON_IsNumber(h) || h->string == NULL)
            continue;
        struct hub_user *u = user_find(hub, h->string);
        if (u != NULL && u->synced && u->xfer == NULL && h->valuedouble > (double)u->last_seq)
            stream_fetch(hub, u, HS_FILL_HEADS);
    }
}

/* The SUB was silent longer than heads allow: it reconnected (or the wallet restarted), and
 * whatever was published meanwhile is lost to it. */
static void hub_on_reconnect(struct hub *hub)
{
    log_info("events bus back after a silence: refetching subscribed users", "users=%zu",
             hub->users_count);
    for (struct hub_user *u = hub->users; u != NULL; u = u->next) {
        if (u->synced && u->subs_count > 0)
            stream_fetch(hub, u, HS_FILL_RECONNECT);
    }
}

/* The SUB's zbus_recv_fn: [topic][json]. */
static void hub_on_sub(const struct zbus_frame *frames, size_t frames_count, void *arg)
{
    struct hub *hub = arg;
    int64_t now_ms = pl_mono_ms();
    bool reconnected = hub->sub_last_ms > 0 && now_ms - hub->sub_last_ms > HUB_SUB_SILENCE_MS;
    hub->sub_last_ms = now_ms;
    cJSON *o = frames_count == 2 ? json_parse_object(frames[1].data, frames[1].bytes) : NULL;
    if (o == NULL) {
        hub->stats[HS_DROP_MALFORMED]++;
    } else if (frames[0].bytes == sizeof hub_heads_topic - 1 &&
               memcmp(frames[0].data, hub_heads_topic, frames[0].bytes) == 0) {
        hub_on_heads(hub, o);
    } else {
        hub_on_event(hub, &frames[0], o, &frames[1]);
    }
    cJSON_Delete(o);
    if (reconnected)
        hub_on_reconnect(hub);
}

/* ===================================================================== subscriptions == */

static void sub_on_timer(evutil_socket_t fd, short what, void *arg);
static void sub_on_fetch(const struct curlev_result *res, void *arg);

/* A subscription of c to u, linked into u's list; the SUB takes u's topic with the first. */
static struct hub_sub *sub_new(struct hub *hub, struct hub_client *c, struct hub_user *u)
{
    struct hub_sub *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->timer = evtimer_new(hub->ctx->base, sub_on_timer, s);
    if (s->timer == NULL) {
        free(s);
        return NULL;
    }
    s->client = c;
    s->user = u;
    s->next = u->subs;
    if (u->subs != NULL)
        u->subs->prev = s;
    u->subs = s;
    if (u->subs_count++ == 0) {
        char topic[HUB_TOPIC_BYTES_MAX];
        hub_topic(u->name, topic);
        if (zbus_subscribe(hub->sub, topic) != 0)
            log_error("SUB subscribe failed; heads will reveal the events", "user=%s", u->name);
    }
    hub->user_subs_count++;
    return s;
}

/* Cancels what s has in flight: its fetch, its timer, its page. */
static void sub_stop(struct hub *hub, struct hub_sub *s)
{
    curlev_cancel(hub->curl, s->xfer);
    s->xfer = NULL;
    evtimer_del(s->timer);
    cJSON_Delete(s->page);
    s->page = NULL;
    s->page_next = NULL;
}

/* Unlinks and frees s (the caller removes it from its client). The SUB drops the user's
 * topic with the last subscription, and the stream ends unless "*" clients follow it. */
static void sub_free(struct hub *hub, struct hub_sub *s)
{
    struct hub_user *u = s->user;
    sub_stop(hub, s);
    event_free(s->timer);
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        u->subs = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    assert(u->subs_count > 0 && hub->user_subs_count > 0);
    u->subs_count--;
    hub->user_subs_count--;
    free(s);
    if (u->subs_count > 0)
        return;
    char topic[HUB_TOPIC_BYTES_MAX];
    hub_topic(u->name, topic);
    zbus_unsubscribe(hub->sub, topic);
    if (hub->stars_count == 0)
        user_free(hub, u);
}

static void sub_retry_later(struct hub *hub, struct hub_sub *s)
{
    s->failures++;
    s->state = SUB_WAITING;
    hub->stats[HS_FETCH_ERRORS]++;
    hub_arm(s->timer, hub_backoff_ms(s->failures));
}

/* Starts the fetch its mode asks for: a snapshot, the client's `after`, or after sent_seq. */
static void sub_fetch(struct hub *hub, struct hub_sub *s)
{
    assert(s->xfer == NULL);
    assert(s->page == NULL);
    s->state = SUB_WAITING;
    if (s->client->dead)
        return;
    int64_t after = s->mode == SUB_SNAPSHOT ? HUB_SNAPSHOT_AFTER
                    : s->mode == SUB_RESUME ? s->after
                                            : s->sent_seq;
    int limit = s->mode == SUB_SNAPSHOT ? 1 : HUB_FETCH_LIMIT;
    int rc = hub_fetch_start(hub, s->user->name, after, limit, sub_on_fetch, s, &s->xfer);
    if (rc != PL_OK)
        sub_retry_later(hub, s);
}

/* Live from sent_seq on. The first subscription to go live gives a stream without a
 * starting point its start; every one refetches after=last_seq, because an event published
 * while this one was fetching may have been lost on the bus (docs/realtime.md). */
static void sub_go_live(struct hub *hub, struct hub_sub *s)
{
    struct hub_user *u = s->user;
    s->state = SUB_LIVE;
    if (!u->synced) {
        u->synced = true;
        u->last_seq = s->sent_seq;
    }
    stream_drain(hub, u);
    stream_fetch(hub, u, HS_FILL_LIVE);
}

/* Sends the page's events that continue sent_seq while the client's queue has room; then
 * fetches the rest, or goes live once the cursor has caught up with the stream. */
static void sub_pump(struct hub *hub, struct hub_sub *s)
{
    struct hub_client *c = s->client;
    while (s->page_next != NULL && !c->dead) {
        if (ws_conn_queued_bytes(c->conn) > HUB_REPLAY_QUEUE_BYTES_MAX) {
            s->state = SUB_PUMPING;
            hub_arm(s->timer, HUB_REPLAY_PACE_MS);
            return;
        }
        const cJSON *item = s->page_next;
        s->page_next = item->next;
        int64_t seq = 0;
        size_t bytes = 0;
        char *msg = hub_item_msg(item, &seq, &bytes);
        if (msg != NULL && seq == s->sent_seq + 1) {
            client_send(c, msg, bytes);
            s->sent_seq = seq;
            hub->stats[HS_EVENTS_REPLAY]++;
        }
        free(msg);
        if (msg == NULL || seq > s->sent_seq) { /* malformed, or not contiguous */
            hub->stats[HS_DROP_MALFORMED]++;
            sub_stop(hub, s);
            sub_retry_later(hub, s);
            return;
        }
    }
    if (c->dead)
        return;
    bool more = s->page_full;
    cJSON_Delete(s->page);
    s->page = NULL;
    struct hub_user *u = s->user;
    if (more || (u->synced && s->sent_seq < u->last_seq)) {
        s->mode = SUB_FILL;
        sub_fetch(hub, s);
        return;
    }
    sub_go_live(hub, s);
}

static void sub_on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct hub_sub *s = arg;
    struct hub *hub = s->client->hub;
    if (s->page != NULL)
        sub_pump(hub, s);
    else if (s->state == SUB_WAITING && s->xfer == NULL)
        sub_fetch(hub, s);
}

/* Whether the page answers the client's resume: the same epoch, an `after` the wallet has
 * reached, and the page starting right after it (else those events are no longer kept). */
static bool sub_resumable(const struct hub_sub *s, const struct hub_page *p)
{
    if (s->epoch[0] != '\0' && strcmp(s->epoch, p->epoch) != 0)
        return false;
    if (s->after > p->head_seq)
        return false;
    if (p->count == 0)
        return s->after == p->head_seq;
    int64_t first = 0;
    return json_get_int64(p->events->child, "seq", true, &first) == JSON_OK &&
           first == s->after + 1;
}

/* {"op":"subscribed","user","epoch","seq","balance_minor","recovered"}. */
static void sub_answer(struct hub *hub, struct hub_sub *s, const struct hub_page *p, bool recovered)
{
    if (s->mode == SUB_RESUME)
        hub->stats[recovered ? HS_REPLAY_RECOVERED : HS_REPLAY_SNAPSHOT]++;
    cJSON *o = cJSON_CreateObject();
    if (o != NULL) {
        cJSON_AddStringToObject(o, "op", "subscribed");
        cJSON_AddStringToObject(o, "user", s->user->name);
        cJSON_AddStringToObject(o, "epoch", p->epoch);
        cJSON_AddNumberToObject(o, "seq", (double)p->head_seq);
        cJSON_AddNumberToObject(o, "balance_minor", (double)p->balance_minor);
        cJSON_AddBoolToObject(o, "recovered", recovered);
    }
    client_send_json(s->client, o);
    cJSON_Delete(o);
}

static void client_drop_sub(struct hub_client *c, struct hub_sub *s);

/* A page for subscription s: answers a subscribe (snapshot or resume), or continues a fill. */
static void sub_on_fetch(const struct curlev_result *res, void *arg)
{
    struct hub_sub *s = arg;
    struct hub_client *c = s->client;
    struct hub *hub = c->hub;
    s->xfer = NULL;
    if (c->dead)
        return; /* on_closed follows and frees s */
    struct hub_page p;
    int rc = hub_page_parse(res, &p);
    if (rc == PL_ENOTFOUND) {
        client_error(c, HS_ERR_BAD_REQUEST, "unknown_user", "no such user", s->user->name);
        client_drop_sub(c, s);
        return;
    }
    if (rc != PL_OK) {
        log_warn("wallet events fetch failed; retrying", "user=%s outcome=%d status=%ld",
                 s->user->name, (int)res->outcome, res->http_status);
        sub_retry_later(hub, s);
        return;
    }
    if (hub_epoch_differs(hub, p.epoch)) {
        char epoch[HUB_EPOCH_BYTES_MAX];
        pl_strlcpy(epoch, p.epoch, sizeof epoch);
        cJSON_Delete(p.root);
        hub_epoch_reset(hub, epoch); /* restarts s too, with a snapshot */
        return;
    }
    s->failures = 0;
    bool replay = s->mode == SUB_FILL || (s->mode == SUB_RESUME && sub_resumable(s, &p));
    if (s->mode != SUB_FILL) {
        sub_answer(hub, s, &p, replay);
        s->sent_seq = replay ? s->after : p.head_seq;
    }
    if (!replay) {
        cJSON_Delete(p.root);
        sub_go_live(hub, s);
        return;
    }
    s->mode = SUB_FILL;
    s->page = p.root;
    s->page_next = p.events->child;
    s->page_full = p.count >= HUB_FETCH_LIMIT;
    s->state = SUB_PUMPING;
    sub_pump(hub, s);
}

/* A new wallet database: the seqs restarted. Every stream loses its start, every
 * subscription gets a fresh snapshot ("recovered":false); "*" clients just go on. */
static void hub_epoch_reset(struct hub *hub, const char *epoch)
{
    log_warn("the wallet's epoch changed (a new database): restarting every stream",
             "old=%s new=%s users=%zu", hub->epoch, epoch, hub->users_count);
    pl_strlcpy(hub->epoch, epoch, sizeof hub->epoch);
    hub->stats[HS_EPOCH_RESETS]++;
    for (struct hub_user *u = hub->users; u != NULL; u = u->next) {
        user_reset(hub, u);
        for (struct hub_sub *s = u->subs; s != NULL; s = s->next) {
            sub_stop(hub, s);
            s->mode = SUB_SNAPSHOT;
            s->failures = 0;
            sub_fetch(hub, s);
        }
    }
}

/* ===================================================================== clients ====== */

static void star_on(struct hub_client *c)
{
    struct hub *hub = c->hub;
    if (c->star)
        return;
    c->star = true;
    c->star_next = hub->stars;
    if (hub->stars != NULL)
        hub->stars->star_prev = c;
    hub->stars = c;
    if (hub->stars_count++ == 0 && zbus_subscribe(hub->sub, hub_all_topic) != 0)
        log_error("SUB subscribe failed", "topic=%s", hub_all_topic);
}

/* The last "*" client gone: the SUB drops "user." and users nobody names are forgotten. */
static void star_off(struct hub_client *c)
{
    struct hub *hub = c->hub;
    if (!c->star)
        return;
    c->star = false;
    if (c->star_prev != NULL)
        c->star_prev->star_next = c->star_next;
    else
        hub->stars = c->star_next;
    if (c->star_next != NULL)
        c->star_next->star_prev = c->star_prev;
    c->star_prev = c->star_next = NULL;
    assert(hub->stars_count > 0);
    if (--hub->stars_count > 0)
        return;
    zbus_unsubscribe(hub->sub, hub_all_topic);
    struct hub_user *next = NULL;
    for (struct hub_user *u = hub->users; u != NULL; u = next) {
        next = u->next;
        if (u->subs_count == 0)
            user_free(hub, u);
    }
}

static int client_sub_index(const struct hub_client *c, const char *user)
{
    for (size_t i = 0; i < c->subs_count; i++) {
        if (strcmp(c->subs[i]->user->name, user) == 0)
            return (int)i;
    }
    return -1;
}

static void client_drop_sub(struct hub_client *c, struct hub_sub *s)
{
    for (size_t i = 0; i < c->subs_count; i++) {
        if (c->subs[i] == s) {
            c->subs[i] = c->subs[--c->subs_count];
            break;
        }
    }
    sub_free(c->hub, s);
}

static void client_free(struct hub_client *c)
{
    while (c->subs_count > 0)
        client_drop_sub(c, c->subs[c->subs_count - 1]);
    star_off(c);
    free(c);
}

/* Subscribes c to user (token already checked); a second subscribe to the same user
 * replaces the first (a resume on the same connection). */
static void client_subscribe_user(struct hub_client *c, const char *user, int64_t after,
                                  const char *epoch)
{
    struct hub *hub = c->hub;
    int index = client_sub_index(c, user);
    if (index < 0 && c->subs_count >= HUB_CLIENT_SUBS_MAX) {
        client_error(c, HS_ERR_LIMIT, "too_many_subscriptions", "at most 16 users per connection",
                     user);
        return;
    }
    struct hub_user *u = user_get(hub, user);
    struct hub_sub *s = u != NULL ? sub_new(hub, c, u) : NULL;
    if (s == NULL) {
        if (u != NULL && u->subs_count == 0 && hub->stars_count == 0)
            user_free(hub, u);
        client_error(c, HS_ERR_LIMIT, "overloaded",
                     "this gateway follows too many users; try another one", user);
        return;
    }
    if (index >= 0) {
        struct hub_sub *old = c->subs[index];
        c->subs[index] = s;
        sub_free(hub, old); /* after s is linked: the topic stays subscribed */
    } else {
        c->subs[c->subs_count++] = s;
    }
    s->mode = after >= 0 ? SUB_RESUME : SUB_SNAPSHOT;
    s->after = after;
    pl_strlcpy(s->epoch, epoch != NULL ? epoch : "", sizeof s->epoch);
    sub_fetch(hub, s);
}

static void client_subscribe_all(struct hub_client *c)
{
    star_on(c);
    cJSON *o = cJSON_CreateObject();
    if (o != NULL) {
        cJSON_AddStringToObject(o, "op", "subscribed");
        cJSON_AddStringToObject(o, "user", "*");
        if (c->hub->epoch[0] != '\0')
            cJSON_AddStringToObject(o, "epoch", c->hub->epoch);
        else
            cJSON_AddNullToObject(o, "epoch");
        cJSON_AddNullToObject(o, "seq");
        cJSON_AddNullToObject(o, "balance_minor");
        cJSON_AddBoolToObject(o, "recovered", false);
    }
    client_send_json(c, o);
    cJSON_Delete(o);
}

/* {"op":"subscribe","user","token","epoch"?,"after"?}: validated, then authorized. */
static void client_subscribe(struct hub_client *c, const cJSON *o)
{
    const struct gateway_ctx *ctx = c->hub->ctx;
    const char *user = NULL, *token = NULL, *epoch = NULL;
    int64_t after = -1;
    if (json_get_string(o, "user", true, USER_HANDLE_CHARS_MAX, &user) != JSON_OK ||
        (strcmp(user, "*") != 0 && !ids_user_valid(user))) {
        client_error(c, HS_ERR_BAD_REQUEST, "bad_request",
                     "user must be a handle ([a-z0-9_]{1,32}) or \"*\"", NULL);
        return;
    }
    if (json_get_int64(o, "after", false, &after) != JSON_OK ||
        (cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(o, "after")) &&
         (after < 0 || after > HUB_AFTER_MAX)) ||
        json_get_string(o, "epoch", false, HUB_EPOCH_BYTES_MAX - 1, &epoch) != JSON_OK) {
        client_error(c, HS_ERR_BAD_REQUEST, "bad_request",
                     "after must be a seq (an integer >= 0) and epoch a string", user);
        return;
    }
    bool all = strcmp(user, "*") == 0;
    bool ok = json_get_string(o, "token", true, SIGN_TOKEN_BYTES_MAX, &token) == JSON_OK &&
              (all ? sign_equal(token, ctx->admin_token)
                   : sign_ws_token_verify(ctx->token_secret, token, user, pl_now_ms() / 1000));
    if (!ok) {
        client_error(c, HS_ERR_UNAUTHORIZED, "unauthorized",
                     all ? "\"*\" needs the admin token"
                         : "the token is not a valid ws_token for this user (or it expired)",
                     user);
        return;
    }
    if (all)
        client_subscribe_all(c);
    else
        client_subscribe_user(c, user, after, epoch);
}

/* {"op":"unsubscribe","user"} → {"op":"unsubscribed","user"} (also when not subscribed). */
static void client_unsubscribe(struct hub_client *c, const cJSON *o)
{
    const char *user = NULL;
    if (json_get_string(o, "user", true, USER_HANDLE_CHARS_MAX, &user) != JSON_OK ||
        (strcmp(user, "*") != 0 && !ids_user_valid(user))) {
        client_error(c, HS_ERR_BAD_REQUEST, "bad_request",
                     "user must be a handle ([a-z0-9_]{1,32}) or \"*\"", NULL);
        return;
    }
    if (strcmp(user, "*") == 0) {
        star_off(c);
    } else {
        int index = client_sub_index(c, user);
        if (index >= 0)
            client_drop_sub(c, c->subs[index]);
    }
    cJSON *r = cJSON_CreateObject();
    if (r != NULL) {
        cJSON_AddStringToObject(r, "op", "unsubscribed");
        cJSON_AddStringToObject(r, "user", user);
    }
    client_send_json(c, r);
    cJSON_Delete(r);
}

/* ===================================================================== ws callbacks === */

static void hub_on_open(struct ws_conn *conn, void *arg)
{
    struct hub *hub = arg;
    struct hub_client *c = calloc(1, sizeof *c);
    if (c == NULL) {
        ws_conn_set_arg(conn, NULL); /* on_closed then has nothing to free */
        ws_conn_close(conn, 1011, "out of memory");
        return;
    }
    c->hub = hub;
    c->conn = conn;
    ws_conn_set_arg(conn, c);
}

static void hub_on_text(struct ws_conn *conn, const char *msg, size_t bytes, void *arg)
{
    (void)conn;
    struct hub_client *c = arg;
    if (c == NULL || c->dead)
        return;
    cJSON *o = json_parse_object(msg, bytes);
    const char *op = NULL;
    if (o == NULL || json_get_string(o, "op", true, HUB_OP_CHARS_MAX, &op) != JSON_OK) {
        client_error(c, HS_ERR_BAD_REQUEST, "bad_request",
                     "expected a JSON object with \"op\": subscribe or unsubscribe", NULL);
    } else if (strcmp(op, "subscribe") == 0) {
        client_subscribe(c, o);
    } else if (strcmp(op, "unsubscribe") == 0) {
        client_unsubscribe(c, o);
    } else {
        client_error(c, HS_ERR_BAD_REQUEST, "bad_request",
                     "unknown op: use subscribe or unsubscribe", NULL);
    }
    cJSON_Delete(o);
}

static void hub_on_closed(struct ws_conn *conn, int code, void *arg)
{
    (void)conn;
    struct hub_client *c = arg;
    if (c == NULL)
        return;
    struct hub *hub = c->hub;
    enum hub_stat stat = code == 1000   ? HS_CLOSE_1000
                         : code == 1001 ? HS_CLOSE_1001
                         : code == 1006 ? HS_CLOSE_1006
                         : code == 1008 ? HS_CLOSE_1008
                                        : HS_CLOSE_OTHER;
    hub->stats[stat]++;
    if (code == 1008)
        log_info("ws client dropped as a slow consumer", "subs=%zu star=%d", c->subs_count,
                 (int)c->star);
    client_free(c);
}

static const struct ws_callbacks hub_conn_callbacks = {
    .on_text = hub_on_text,
    .on_closed = hub_on_closed,
};

/* ===================================================================== lifecycle ==== */

/* Forgets users seen only through "*" that went quiet (bounds memory on long runs). */
static void hub_on_sweep(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct hub *hub = arg;
    int64_t now_ms = pl_mono_ms();
    struct hub_user *next = NULL;
    for (struct hub_user *u = hub->users; u != NULL; u = next) {
        next = u->next;
        if (u->subs_count == 0 && u->xfer == NULL && now_ms - u->last_event_ms > HUB_USER_IDLE_MS)
            user_free(hub, u);
    }
}

int hub_new(struct gateway_ctx *ctx)
{
    assert(ctx->hub == NULL);
    assert(ctx->zctx != NULL);
    struct hub *hub = calloc(1, sizeof *hub);
    if (hub == NULL)
        return PL_ENOMEM;
    ctx->hub = hub;
    hub->ctx = ctx;
    hub->curl = curlev_new(ctx->base);
    hub->sweep = event_new(ctx->base, -1, EV_PERSIST, hub_on_sweep, hub);
    if (hub->curl == NULL || hub->sweep == NULL)
        return PL_ENOMEM;
    hub_arm(hub->sweep, HUB_SWEEP_MS);
    hub->sub = zbus_open(ctx->base, ctx->zctx, ZMQ_SUB, ctx->cfg.zmq_pub, false, 0, HUB_SUB_HWM,
                         hub_on_sub, hub);
    if (hub->sub == NULL)
        return PL_EIO;
    if (zbus_subscribe(hub->sub, hub_heads_topic) != 0) {
        log_error("SUB subscribe failed", "topic=%s", hub_heads_topic);
        return PL_EIO;
    }
    return PL_OK;
}

int hub_listen(struct gateway_ctx *ctx)
{
    struct hub *hub = ctx->hub;
    const struct gateway_config *cfg = &ctx->cfg;
    assert(hub != NULL && hub->server == NULL);
    hub->server = ws_server_new(ctx->base, cfg->bind, (int)cfg->ws_port, "/ws", cfg->allowed_origin,
                                (int)cfg->max_connections, &hub_conn_callbacks, hub_on_open, hub);
    if (hub->server == NULL) {
        log_error("cannot listen for WebSockets", "bind=%s port=%lld", cfg->bind,
                  (long long)cfg->ws_port);
        return PL_EIO;
    }
    return PL_OK;
}

void hub_free(struct gateway_ctx *ctx)
{
    struct hub *hub = ctx != NULL ? ctx->hub : NULL;
    if (hub == NULL)
        return;
    if (hub->server != NULL)
        ws_server_free(hub->server); /* every on_closed runs: clients and their subs go */
    assert(hub->stars == NULL && hub->user_subs_count == 0);
    while (hub->users != NULL)
        user_free(hub, hub->users);
    if (hub->sweep != NULL)
        event_free(hub->sweep);
    zbus_close(hub->sub);
    if (hub->curl != NULL)
        curlev_free(hub->curl);
    free(hub);
    ctx->hub = NULL;
}

/* ===================================================================== metrics ====== */

static void hub_zmq_counter(struct metrics *m, const char *direction, unsigned long now,
                            unsigned long *seen)
{
    char labels[64];
    int n = snprintf(labels, sizeof labels, "socket=\"sub\",direction=\"%s\"", direction);
    assert(n > 0 && (size_t)n < sizeof labels);
    assert(now >= *seen);
    metrics_counter_add(m, "paylab_zmq_messages_total", labels, now - *seen);
    *seen = now;
}

void hub_export_metrics(struct gateway_ctx *ctx)
{
    struct hub *hub = ctx->hub;
    struct metrics *m = ctx->metrics;
    if (hub == NULL)
        return;
    size_t conns = hub->server != NULL ? ws_server_connections(hub->server) : 0;
    metrics_gauge_set(m, "paylab_gateway_ws_connections", "", (double)conns);
    metrics_gauge_set(m, "paylab_gateway_ws_connections_max", "", (double)ctx->cfg.max_connections);
    metrics_gauge_set(m, "paylab_gateway_ws_subscriptions", "kind=\"user\"",
                      (double)hub->user_subs_count);
    metrics_gauge_set(m, "paylab_gateway_ws_subscriptions", "kind=\"all\"",
                      (double)hub->stars_count);
    metrics_gauge_set(m, "paylab_gateway_ws_users_tracked", "", (double)hub->users_count);
    metrics_gauge_set(m, "paylab_gateway_ws_fetches_in_flight", "",
                      (double)curlev_inflight(hub->curl));
    for (size_t i = 0; i < HS_COUNT; i++) {
        assert(hub->stats[i] >= hub->stats_reported[i]);
        metrics_counter_add(m, hub_stat_defs[i].name, hub_stat_defs[i].labels,
                            hub->stats[i] - hub->stats_reported[i]);
        hub->stats_reported[i] = hub->stats[i];
    }
    if (hub->sub != NULL) {
        hub_zmq_counter(m, "received", zbus_received_count(hub->sub), &hub->zmq_received_seen);
        hub_zmq_counter(m, "dropped", zbus_dropped_count(hub->sub), &hub->zmq_dropped_seen);
    }
}
