/* wsub.c owns the CLI's WebSocket subscription (docs/realtime.md): the connection to a gateway,
 * the subscribe message, reconnects and fail-over, and the seq bookkeeping that makes a
 * resumed stream whole.
 *
 * How a stream stays whole across a reconnect: the wallet numbers each user's events
 * 1, 2, 3 … within one database (its epoch). We remember the epoch and the last seq
 * delivered; a new connection subscribes with {"epoch", "after": last}, and the gateway
 * replays seq > last before the live events. Anything at or below last (a replay racing a
 * live copy, a re-publication after a wallet crash) is dropped here. When the gateway
 * answers "recovered": false (another epoch: the database was reset; or an `after` older
 * than the wallet keeps), we say so and start from its fresh snapshot. "*" has no single
 * seq and is not resumed: a gap per user is reported, duplicates are dropped.
 *
 * Reconnects: after a lost connection the same address is retried after a backoff
 * (250 ms doubling to 5 s, each delay drawn in [d/2, d]); an address that cannot be reached
 * hands over at once to the next one in the list, and a full round of failures waits a
 * backoff. Before the first subscription a full round of failures ends with exit 3.
 * Must not: block the loop while connected (tokens are fetched between connections only),
 * or deliver an event twice.
 * Invariant: exactly one of conn / dialing / retry timer is live, until on_ended. */
#include "wsub.h"

#include <event2/event.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "ids.h"
#include "json.h"
#include "out.h"
#include "pl.h"
#include "ws.h"

struct wsub_seq {
    char user[USER_HANDLE_CHARS_MAX + 1];
    int64_t seq;
};

struct wsub {
    struct event_base *base;
    struct wsub_config cfg;
    struct wsub_callbacks cb;
    void *arg;
    bool all; /* user "*" */
    char urls[WSUB_URLS_MAX][WSUB_URL_BYTES_MAX];
    size_t urls_count, url_index;
    size_t failures_count; /* connect failures in a row since the last subscription */
    char token[WSUB_TOKEN_BYTES_MAX];
    bool token_fetched;      /* from the wallet (so it can be fetched again) */
    int64_t token_expires_s; /* 0: unknown */
    bool token_stale;        /* the gateway refused it: fetch a new one first */
    struct ws_conn *conn;
    bool dialing;
    bool subscribed; /* the current connection got its reply */
    bool subscribed_once;
    bool stopping, ended;
    int stop_code;
    char stop_why[WSUB_WHY_BYTES_MAX];
    struct event *retry_timer, *reply_timer;
    int backoff_ms;
    char epoch[WSUB_EPOCH_BYTES_MAX];
    int64_t last_seq;      /* one user */
    int64_t head_seq;      /* from the last "subscribed": events ≤ it are replays */
    struct wsub_seq *seqs; /* "*" */
    size_t seqs_count;
    char last_error[WSUB_WHY_BYTES_MAX];
    char close_why[64]; /* why we closed the current connection ("" when the peer did) */
};

static void connect_now(struct wsub *w);

/* ---------------------------------------------------------------- addresses */

static int add_url(const char *s, size_t n, char *out)
{
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '/')) {
        n--;
    }
    if (n <= 5 || strncmp(s, "ws://", 5) != 0) {
        return PL_EINVAL;
    }
    bool has_path = memchr(s + 5, '/', n - 5) != NULL;
    int len = snprintf(out, WSUB_URL_BYTES_MAX, "%.*s%s", (int)n, s, has_path ? "" : "/ws");
    return len > 0 && len < WSUB_URL_BYTES_MAX ? 0 : PL_ERANGE;
}

size_t wsub_parse_urls(const char *list, char urls[][WSUB_URL_BYTES_MAX], size_t cap)
{
    size_t count = 0;
    const char *p = list;
    while (*p != '\0') {
        while (*p == ' ' || *p == ',') {
            p++;
        }
        size_t n = strcspn(p, ",");
        if (n == 0) {
            break;
        }
        if (count == cap || add_url(p, n, urls[count]) != 0) {
            fprintf(stderr,
                    "paylab: --gateway takes up to %zu ws://IP:PORT[/path] addresses, "
                    "comma-separated (not '%.*s')\n",
                    cap, (int)n, p);
            return 0;
        }
        count++;
        p += n;
    }
    if (count == 0) {
        fprintf(stderr, "paylab: --gateway is empty (e.g. ws://127.0.0.1:8083)\n");
    }
    return count;
}

/* ---------------------------------------------------------------- helpers */

static void notice(const struct wsub *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void notice(const struct wsub *w, const char *fmt, ...)
{
    FILE *f = w->cfg.notices;
    if (f == NULL) {
        return;
    }
    char msg[WSUB_WHY_BYTES_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(f, "%s%s%s\n", w->cfg.dim ? "\033[2m" : "", msg, w->cfg.dim ? "\033[0m" : "");
    fflush(f);
}

static int jittered(int delay_ms)
{
    uint16_t r = 0;
    if (ids_random(&r, sizeof r) != 0) {
        return delay_ms;
    }
    return delay_ms / 2 + (int)(r % (uint16_t)(delay_ms / 2 + 1));
}

static void arm(struct event *ev, int delay_ms)
{
    struct timeval tv = {.tv_sec = delay_ms / 1000, .tv_usec = (delay_ms % 1000) * 1000};
    evtimer_add(ev, &tv);
}

static void end(struct wsub *w)
{
    if (w->ended) {
        return;
    }
    w->ended = true;
    evtimer_del(w->retry_timer);
    evtimer_del(w->reply_timer);
    w->cb.on_ended(w->stop_code, w->stop_why, w->arg);
    event_base_loopbreak(w->base);
}

void wsub_stop(struct wsub *w, int exit_code, const char *why)
{
    if (w->stopping || w->ended) {
        return;
    }
    w->stopping = true;
    w->stop_code = exit_code;
    pl_strlcpy(w->stop_why, why != NULL ? why : "", sizeof w->stop_why);
    evtimer_del(w->retry_timer);
    evtimer_del(w->reply_timer);
    if (w->conn != NULL) {
        ws_conn_close(w->conn, 1000, "bye"); /* on_closed ends it */
    } else if (!w->dialing) {
        end(w);
    } /* else: on_open / on_failed ends it (the dial cannot be cancelled) */
}

/* ---------------------------------------------------------------- tokens */

/* POST /v1/users/U/ws-token. CLI_CONTINUE, or an exit code (printed on stderr). */
static int fetch_token(struct wsub *w)
{
    char path[96];
    snprintf(path, sizeof path, "/v1/users/%s/ws-token", w->cfg.user);
    struct client_req req = {.method = "POST",
                             .base_url = w->cfg.cli->wallet_url,
                             .path = path,
                             .body = "{}",
                             .service = "wallet"};
    struct client_resp r;
    int rc = client_fetch(w->cfg.cli, &req, &r);
    if (rc != CLI_CONTINUE) {
        return rc;
    }
    int64_t expires = 0;
    out_int(r.json, "expires_at", &expires);
    if (pl_strlcpy(w->token, out_str(r.json, "token", ""), sizeof w->token) != 0 ||
        w->token[0] == '\0') {
        fprintf(stderr, "✗ the wallet answered %s without a usable token\n", path);
        rc = CLI_EXIT_REFUSED;
    }
    w->token_fetched = true;
    w->token_expires_s = expires;
    w->token_stale = false;
    client_free(&r);
    return rc;
}

static int load_token(struct wsub *w)
{
    if (w->cfg.token != NULL) {
        if (pl_strlcpy(w->token, w->cfg.token, sizeof w->token) != 0) {
            fprintf(stderr, "paylab: --token is too long\n");
            return CLI_EXIT_USAGE;
        }
        return CLI_CONTINUE;
    }
    if (w->all) {
        int rc = cli_admin_token(w->cfg.cli, w->token, sizeof w->token);
        return rc == 0 ? CLI_CONTINUE : rc;
    }
    return fetch_token(w);
}

/* Between connections only: a fetched token close to its expiry, or refused, is renewed
 * (a short blocking POST; nothing else is on this loop). A failure keeps the old one. */
static void refresh_token(struct wsub *w)
{
    int64_t now_s = pl_now_ms() / 1000;
    bool expiring = w->token_expires_s > 0 && w->token_expires_s - now_s < WSUB_TOKEN_MARGIN_S;
    if (!w->token_fetched || (!expiring && !w->token_stale)) {
        return;
    }
    if (fetch_token(w) != CLI_CONTINUE) {
        notice(w, "could not renew the ws_token from the wallet; trying the old one");
    }
}

/* ---------------------------------------------------------------- seqs */

/* The last seq slot of user ("*" mode), added when new; NULL when the table is full. */
static int64_t *seq_slot(struct wsub *w, const char *user)
{
    if (!w->all) {
        return &w->last_seq;
    }
    for (size_t i = 0; i < w->seqs_count; i++) {
        if (strcmp(w->seqs[i].user, user) == 0) {
            return &w->seqs[i].seq;
        }
    }
    if (w->seqs_count == WSUB_USERS_MAX || !ids_user_valid(user)) {
        return NULL;
    }
    struct wsub_seq *s = &w->seqs[w->seqs_count++];
    pl_strlcpy(s->user, user, sizeof s->user);
    s->seq = 0;
    return &s->seq;
}

/* The wallet's database changed under a live connection: its seqs start again. */
static void adopt_epoch(struct wsub *w, const char *epoch)
{
    if (w->epoch[0] != '\0') {
        notice(w, "the wallet's database was reset (new epoch): starting from a fresh "
                  "snapshot");
    }
    pl_strlcpy(w->epoch, epoch, sizeof w->epoch);
    w->last_seq = 0;
    w->head_seq = 0;
    w->seqs_count = 0;
}

static void on_event_message(struct wsub *w, const cJSON *msg, const char *raw, size_t bytes)
{
    const char *user = out_str(msg, "user", "");
    const char *epoch = out_str(msg, "epoch", "");
    int64_t seq = 0;
    if (!out_int(msg, "seq", &seq) || (!w->all && strcmp(user, w->cfg.user) != 0)) {
        return; /* not an event of ours */
    }
    if (epoch[0] != '\0' && strcmp(epoch, w->epoch) != 0) {
        adopt_epoch(w, epoch);
    }
    int64_t *last = seq_slot(w, user);
    if (last != NULL && seq <= *last) {
        return; /* a duplicate: already delivered */
    }
    if (last != NULL && *last > 0 && seq > *last + 1) {
        notice(w, "gap: %s's events %lld..%lld were not received%s", user, (long long)(*last + 1),
               (long long)(seq - 1), w->all ? " (paylab watch USER replays them)" : "");
    }
    if (last != NULL) {
        *last = seq;
    }
    w->cb.on_event(msg, raw, bytes, !w->all && seq <= w->head_seq, w->arg);
}

/* ---------------------------------------------------------------- protocol */

static void resumed_notice(struct wsub *w, const cJSON *reply, int64_t after)
{
    bool recovered = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "recovered"));
    const char *epoch = out_str(reply, "epoch", "");
    if (w->all) {
        notice(w,
               "reconnected via %s (every user: no replay, events while disconnected are "
               "not shown)",
               wsub_url(w));
    } else if (recovered) {
        notice(w, "reconnected via %s, resuming after seq %lld", wsub_url(w), (long long)after);
    } else if (strcmp(epoch, w->epoch) != 0) {
        notice(w,
               "reconnected via %s; the wallet's database was reset (new epoch): starting "
               "from a fresh snapshot",
               wsub_url(w));
    } else {
        notice(w,
               "reconnected via %s; the gateway could not replay after seq %lld: starting "
               "from a fresh snapshot",
               wsub_url(w), (long long)after);
    }
}

static void on_subscribed_message(struct wsub *w, const cJSON *reply)
{
    bool first = !w->subscribed_once;
    bool recovered = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(reply, "recovered"));
    const char *epoch = out_str(reply, "epoch", "");
    int64_t head = 0;
    bool has_head = out_int(reply, "seq", &head);
    evtimer_del(w->reply_timer);
    if (w->subscribed) { /* a second reply on the same connection: the gateway restarted it */
        notice(w, "the wallet's database was reset (new epoch): starting from a fresh snapshot");
    } else if (!first) {
        resumed_notice(w, reply, w->last_seq);
    }
    if (epoch[0] != '\0' && strcmp(epoch, w->epoch) != 0) {
        pl_strlcpy(w->epoch, epoch, sizeof w->epoch);
        w->seqs_count = 0;
    }
    if (has_head && (first || !recovered)) {
        w->last_seq = head; /* live from here: a fresh snapshot */
    }
    w->head_seq = has_head ? head : 0;
    w->subscribed = true;
    w->subscribed_once = true;
    w->failures_count = 0;
    w->backoff_ms = WSUB_BACKOFF_MS_MIN;
    w->cb.on_subscribed(reply, first, w->arg);
}

static void on_error_message(struct wsub *w, const cJSON *msg)
{
    const char *code = out_str(msg, "code", "error");
    const char *message = out_str(msg, "message", "");
    if (strcmp(code, "unauthorized") == 0 && w->token_fetched && !w->token_stale) {
        notice(w, "the gateway refused the ws_token (%s); fetching a new one", message);
        w->token_stale = true; /* the next connection fetches a fresh token */
        ws_conn_close(w->conn, 1000, "new token");
        return;
    }
    char why[WSUB_WHY_BYTES_MAX];
    snprintf(why, sizeof why, "the gateway at %s refused the subscription to %s: %s%s%s%s",
             wsub_url(w), w->cfg.user, code, message[0] != '\0' ? " — " : "", message,
             w->all && strcmp(code, "unauthorized") == 0
                 ? " (the admin token comes from --data-dir or $PAYLAB_ADMIN_TOKEN: pass the "
                   "services' --data-dir)"
                 : "");
    wsub_stop(w, CLI_EXIT_REFUSED, why);
}

static void on_text(struct ws_conn *c, const char *msg, size_t bytes, void *arg)
{
    struct wsub *w = arg;
    (void)c;
    if (w->stopping) {
        return;
    }
    cJSON *o = json_parse_object(msg, bytes);
    const char *op = out_str(o, "op", "");
    if (strcmp(op, "event") == 0 && w->subscribed) {
        on_event_message(w, o, msg, bytes);
    } else if (strcmp(op, "subscribed") == 0) {
        on_subscribed_message(w, o);
    } else if (strcmp(op, "error") == 0) {
        on_error_message(w, o);
    }
    cJSON_Delete(o);
}

static int send_subscribe(struct wsub *w)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL) {
        return PL_ENOMEM;
    }
    cJSON_AddStringToObject(o, "op", "subscribe");
    cJSON_AddStringToObject(o, "user", w->cfg.user);
    cJSON_AddStringToObject(o, "token", w->token);
    if (w->subscribed_once && !w->all && w->epoch[0] != '\0') {
        cJSON_AddStringToObject(o, "epoch", w->epoch);
        cJSON_AddNumberToObject(o, "after", (double)w->last_seq);
    }
    char *s = json_print(o);
    cJSON_Delete(o);
    int rc = s != NULL ? ws_conn_send_text(w->conn, s, strlen(s)) : PL_ENOMEM;
    free(s);
    return rc;
}

/* ---------------------------------------------------------------- connection */

/* Picks the next attempt after a failure (connect_failed) or a lost connection. */
static void schedule_retry(struct wsub *w, bool connect_failed, const char *why)
{
    const char *url = wsub_url(w);
    pl_strlcpy(w->last_error, why, sizeof w->last_error);
    if (connect_failed) {
        w->failures_count++;
        w->url_index = (w->url_index + 1) % w->urls_count;
    }
    bool round_done = connect_failed && w->failures_count % w->urls_count == 0;
    if (round_done && !w->subscribed_once) {
        char msg[WSUB_WHY_BYTES_MAX];
        snprintf(msg, sizeof msg, "%s (%s)", w->cfg.cli->gateway_url, why);
        wsub_stop(w, CLI_EXIT_UNREACHABLE, msg);
        return;
    }
    if (connect_failed && !round_done) {
        notice(w, "%s unreachable (%s); trying %s", url, why, wsub_url(w));
        connect_now(w);
        return;
    }
    int delay_ms = jittered(w->backoff_ms);
    w->backoff_ms =
        w->backoff_ms * 2 > WSUB_BACKOFF_MS_MAX ? WSUB_BACKOFF_MS_MAX : w->backoff_ms * 2;
    if (connect_failed) {
        notice(w, "no gateway reachable (%s: %s); retrying in %d ms", url, why, delay_ms);
    } else {
        notice(w, "connection to %s lost (%s); reconnecting in %d ms", url, why, delay_ms);
    }
    arm(w->retry_timer, delay_ms);
}

static void on_open(struct ws_conn *c, void *arg)
{
    struct wsub *w = arg;
    w->dialing = false;
    w->conn = c;
    w->subscribed = false;
    w->close_why[0] = '\0';
    if (w->stopping) {
        ws_conn_close(c, 1000, "bye");
        return;
    }
    if (send_subscribe(w) != 0) {
        ws_conn_close(c, 1011, "cannot subscribe");
        return;
    }
    arm(w->reply_timer, WSUB_REPLY_TIMEOUT_MS);
}

static void on_failed(const char *why, void *arg)
{
    struct wsub *w = arg;
    w->dialing = false;
    if (w->stopping) {
        end(w);
        return;
    }
    schedule_retry(w, true, why);
}

static void on_closed(struct ws_conn *c, int code, void *arg)
{
    struct wsub *w = arg;
    (void)c;
    bool had_reply = w->subscribed;
    w->conn = NULL;
    w->subscribed = false;
    evtimer_del(w->reply_timer);
    if (w->stopping) {
        end(w);
        return;
    }
    char why[96];
    snprintf(why, sizeof why, "%s%sclose code %d", w->close_why, w->close_why[0] ? ", " : "", code);
    /* Closed before any reply: the gateway took the connection but cannot serve it. */
    schedule_retry(w, !had_reply && !w->token_stale, why);
}

static const struct ws_client_callbacks client_cb = {
    .on_open = on_open,
    .on_failed = on_failed,
    .conn = {.on_text = on_text, .on_closed = on_closed},
};

/* Starts a dial to the current address. 0, or why it could not start in why. */
static int dial(struct wsub *w, char *why, size_t cap)
{
    int rc = ws_client_connect(w->base, wsub_url(w), NULL, &client_cb, w);
    if (rc == 0) {
        w->dialing = true;
        return 0;
    }
    snprintf(why, cap, "%s: %s", wsub_url(w),
             rc == PL_EINVAL ? "not a ws://IP:PORT/path address (host names other than "
                               "localhost are not resolved)"
                             : "cannot open a socket");
    return rc;
}

static void connect_now(struct wsub *w)
{
    char why[WSUB_WHY_BYTES_MAX];
    refresh_token(w);
    if (dial(w, why, sizeof why) != 0) {
        wsub_stop(w, CLI_EXIT_USAGE, why);
    }
}

static void on_retry_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    connect_now(arg);
}

static void on_reply_timer(evutil_socket_t fd, short what, void *arg)
{
    struct wsub *w = arg;
    (void)fd;
    (void)what;
    if (w->conn != NULL) {
        snprintf(w->close_why, sizeof w->close_why, "no answer to subscribe in %d ms",
                 WSUB_REPLY_TIMEOUT_MS);
        ws_conn_close(w->conn, 1000, "no reply");
    }
}

/* ---------------------------------------------------------------- lifetime */

struct wsub *wsub_new(struct event_base *base, const struct wsub_config *cfg,
                      const struct wsub_callbacks *cb, void *arg)
{
    struct wsub *w = calloc(1, sizeof *w);
    if (w == NULL) {
        return NULL;
    }
    *w = (struct wsub){.base = base, .cfg = *cfg, .cb = *cb, .arg = arg};
    w->all = strcmp(cfg->user, "*") == 0;
    w->backoff_ms = WSUB_BACKOFF_MS_MIN;
    w->retry_timer = evtimer_new(base, on_retry_timer, w);
    w->reply_timer = evtimer_new(base, on_reply_timer, w);
    w->seqs = w->all ? calloc(WSUB_USERS_MAX, sizeof *w->seqs) : NULL;
    if (w->retry_timer == NULL || w->reply_timer == NULL || (w->all && w->seqs == NULL)) {
        wsub_free(w);
        return NULL;
    }
    return w;
}

int wsub_start(struct wsub *w)
{
    w->urls_count = wsub_parse_urls(w->cfg.cli->gateway_url, w->urls, WSUB_URLS_MAX);
    if (w->urls_count == 0) {
        return CLI_EXIT_USAGE;
    }
    int rc = load_token(w);
    if (rc != CLI_CONTINUE) {
        return rc;
    }
    char why[WSUB_WHY_BYTES_MAX];
    if (dial(w, why, sizeof why) != 0) {
        fprintf(stderr, "paylab: --gateway %s\n", why);
        return CLI_EXIT_USAGE;
    }
    return CLI_CONTINUE;
}

void wsub_free(struct wsub *w)
{
    if (w == NULL) {
        return;
    }
    if (w->retry_timer != NULL) {
        event_free(w->retry_timer);
    }
    if (w->reply_timer != NULL) {
        event_free(w->reply_timer);
    }
    free(w->seqs);
    free(w);
}

const char *wsub_url(const struct wsub *w)
{
    return w->urls_count > 0 ? w->urls[w->url_index] : w->cfg.cli->gateway_url;
}

int64_t wsub_last_seq(const struct wsub *w)
{
    return w->last_seq;
}
