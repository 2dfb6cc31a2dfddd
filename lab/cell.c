/* cell.c owns one lab cell from start to end: a fresh cluster (bank, wallet, two gateways),
 * its users and their funding, the watchers, the scenario's faults and its action at the
 * scenario's moment, the load, then — faults cleared — the wait for the reconciliation
 * horizon, `paylab verify`, the services' counters and the wallet's own record of who
 * settled what, and the cluster's stop.
 * Must not: leave a process running (every path ends in cluster_destroy), or fill a figure
 * from anything but a measurement.
 * Invariant: the cell thread is the only one that starts, stops or restarts a service. */
#include "cell.h"

#include "pl.h"
#include "run.h"

#include <cjson/cJSON.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LAB_SLOW_SUBSCRIBERS 4
#define LAB_FUND_MINOR 200000
#define LAB_P2P_FUND_MINOR 100000
#define LAB_ARGS_MAX 32
#define LAB_WATCH_READY_MS 10000
#define LAB_MONITOR_MS 100
#define LAB_CATCHUP_MS 3000
/* How long past the horizon the lab waits for the bank's own processing payments (the longest
 * injected latency of the scenarios is 9.5 s). */
#define LAB_BANK_SETTLE_MS 12000

/* ---------------------------------------------------------------- service arguments */

/* Splits a space-separated flag list into args (borrowing into buf); returns the count. */
static size_t split_args(const char *text, char *buf, size_t cap, const char **args, size_t max)
{
    size_t n = 0;
    pl_strlcpy(buf, text != NULL ? text : "", cap);
    for (char *p = buf; *p != '\0' && n < max;) {
        while (*p == ' ')
            *p++ = '\0';
        if (*p == '\0')
            break;
        args[n++] = p;
        while (*p != '\0' && *p != ' ')
            p++;
    }
    return n;
}

struct svc_args {
    char nums[8][32];
    char split[LAB_TEXT_BYTES_MAX];
    const char *argv[LAB_ARGS_MAX + 1];
};

static void wallet_args(const struct lab_run *r, struct svc_args *a)
{
    const struct lab_timing *t = &r->cfg->timing;
    const char *names[] = {"--bank-timeout-ms",  "--payment-ttl-sync-ms", "--payment-ttl-async-ms",
                           "--pending-grace-ms", "--reconcile-ms",        "--id-seed"};
    int64_t values[] = {t->bank_timeout_ms,  t->payment_ttl_sync_ms, t->payment_ttl_async_ms,
                        t->pending_grace_ms, t->reconcile_ms,        r->cfg->seed};
    size_t n = 0;
    for (size_t i = 0; i < PL_ARRAY_LEN(names); i++) {
        snprintf(a->nums[i], sizeof a->nums[i], "%lld", (long long)values[i]);
        a->argv[n++] = names[i];
        a->argv[n++] = a->nums[i];
    }
    n += split_args(r->kase->wallet_args, a->split, sizeof a->split, a->argv + n, LAB_ARGS_MAX - n);
    a->argv[n] = NULL;
}

static void bank_args(const struct lab_run *r, struct svc_args *a)
{
    size_t n = 0;
    snprintf(a->nums[0], sizeof a->nums[0], "%lld", (long long)r->cfg->seed);
    a->argv[n++] = "--seed"; /* after the harness's own --seed: the last one wins */
    a->argv[n++] = a->nums[0];
    n += split_args(r->kase->bank_args, a->split, sizeof a->split, a->argv + n, LAB_ARGS_MAX - n);
    a->argv[n] = NULL;
}

/* ---------------------------------------------------------------- small exchanges */

static int post_json(struct lab_run *r, struct lab_http *h, const char *base, const char *path,
                     const char *body, const char *bearer, struct lab_reply *rep)
{
    char url[CLUSTER_URL_BYTES_MAX + 128], auth[LAB_SECRET_BYTES_MAX + 32];
    snprintf(url, sizeof url, "%s%s", base, path);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", bearer != NULL ? bearer : "");
    const char *const hdrs[] = {auth, NULL};
    (void)r;
    return lab_http_call(h, "POST", url, body, bearer != NULL ? hdrs : NULL, 15000, rep);
}

/* Sets the bank's faults from "k=v k=v" (numbers, true/false); "" clears them all. */
static int set_faults(struct lab_run *r, struct lab_http *h, const char *text)
{
    char buf[LAB_TEXT_BYTES_MAX], body[LAB_TEXT_BYTES_MAX * 2], url[CLUSTER_URL_BYTES_MAX + 32];
    char auth[LAB_SECRET_BYTES_MAX + 32];
    const char *pairs[16];
    size_t n = split_args(text, buf, sizeof buf, pairs, 16), used = 0;
    used += (size_t)snprintf(body, sizeof body, "{\"clear\":true");
    for (size_t i = 0; i < n && used < sizeof body; i++) {
        char *eq = strchr(pairs[i], '=');
        if (eq == NULL)
            return PL_EINVAL;
        *eq = '\0';
        used += (size_t)snprintf(body + used, sizeof body - used, ",\"%s\":%s", pairs[i], eq + 1);
    }
    if (used + 2 >= sizeof body)
        return PL_ERANGE;
    snprintf(body + used, sizeof body - used, "}");
    snprintf(url, sizeof url, "%s/admin/faults", r->c.bank_url);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", r->admin_token);
    const char *const hdrs[] = {auth, NULL};
    struct lab_reply rep;
    int rc = lab_http_call(h, "PUT", url, body, hdrs, 5000, &rep);
    if (rc == 0 && rep.status != 200) {
        snprintf(r->cell->error, sizeof r->cell->error,
                 "the bank refused the faults %.200s: %ld %.200s", body, rep.status, rep.body);
        rc = PL_EINVAL;
    }
    return rc;
}

/* Creates user (the wallet opens its bank account) and tops it up by amount, sync. */
static int add_user(struct lab_run *r, struct lab_http *h, const char *user, int64_t amount)
{
    char body[160];
    struct lab_reply rep;
    snprintf(body, sizeof body, "{\"user\":\"%s\"}", user);
    if (post_json(r, h, r->c.wallet_url, "/v1/users", body, NULL, &rep) != 0 || rep.status != 201) {
        snprintf(r->cell->error, sizeof r->cell->error, "could not create user %s: %ld %.300s",
                 user, rep.status, rep.status == 0 ? rep.error : rep.body);
        return PL_EIO;
    }
    snprintf(body, sizeof body, "{\"user\":\"%s\",\"amount_minor\":%lld,\"mode\":\"sync\"}", user,
             (long long)amount);
    if (post_json(r, h, r->c.wallet_url, "/v1/topups", body, NULL, &rep) != 0 ||
        rep.status != 200) {
        snprintf(r->cell->error, sizeof r->cell->error, "could not fund %s: %ld %.300s", user,
                 rep.status, rep.status == 0 ? rep.error : rep.body);
        return PL_EIO;
    }
    return 0;
}

static int read_epoch(struct lab_run *r, struct lab_http *h)
{
    char url[CLUSTER_URL_BYTES_MAX + 64];
    struct lab_reply rep;
    snprintf(url, sizeof url, "%s/v1/users/%s", r->c.wallet_url, r->users[0]);
    if (lab_http_call(h, "GET", url, NULL, NULL, 5000, &rep) != 0 || rep.status != 200)
        return PL_EIO;
    cJSON *j = cJSON_ParseWithLength(rep.body, rep.body_bytes);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "epoch");
    if (cJSON_IsString(e))
        pl_strlcpy(r->epoch, e->valuestring, sizeof r->epoch);
    cJSON_Delete(j);
    return 0;
}

/* ---------------------------------------------------------------- the cluster */

static int start_cluster(struct lab_run *r)
{
    struct svc_args wa, ba;
    int rc = cluster_init(&r->c, r->cfg->bin_dir[0] != '\0' ? r->cfg->bin_dir : NULL);
    if (rc == 0)
        rc = cluster_use_gateways(&r->c, 2);
    bank_args(r, &ba);
    wallet_args(r, &wa);
    if (rc == 0)
        rc = cluster_start_bank(&r->c, ba.argv);
    if (rc == 0)
        rc = cluster_start_wallet(&r->c, wa.argv);
    for (int i = 0; rc == 0 && i < 2; i++)
        rc = cluster_start_gateway(&r->c, i, NULL);
    if (rc == 0)
        rc = cluster_read_secret(&r->c, "admin_token", r->admin_token, sizeof r->admin_token);
    if (rc == 0)
        rc = cluster_read_secret(&r->c, "webhook_secret", r->webhook_secret,
                                 sizeof r->webhook_secret);
    if (rc != 0 && r->cell->error[0] == '\0')
        snprintf(r->cell->error, sizeof r->cell->error,
                 "the cluster did not start (logs in %.400s)", r->c.dir);
    return rc;
}

static int setup_users(struct lab_run *r)
{
    struct lab_http h;
    int rc = lab_http_init(&h, &r->stop);
    static const char *const p2p[] = {"p2p_a", "p2p_b", "burst_a", "burst_b"};
    for (int i = 0; rc == 0 && i < r->clients_count; i++) {
        snprintf(r->users[i], sizeof r->users[i], "u%d", i);
        rc = add_user(r, &h, r->users[i], LAB_FUND_MINOR);
    }
    for (size_t i = 0; rc == 0 && i < PL_ARRAY_LEN(p2p); i++) {
        pl_strlcpy(r->p2p_users[i], p2p[i], sizeof r->p2p_users[i]);
        rc = add_user(r, &h, r->p2p_users[i], LAB_P2P_FUND_MINOR);
    }
    if (rc == 0)
        rc = read_epoch(r, &h);
    lab_http_free(&h);
    return rc;
}

/* ---------------------------------------------------------------- counters (/metrics) */

struct counters {
    int64_t bank_calls, outbox_sends, reconciler_actions;
    int64_t wh_applied, wh_duplicate, wh_ignored, wh_conflict;
    int64_t bank_payments, webhook_requests;
    int64_t slow_closes; /* gateway 0's slow-consumer drops (close code 1008) */
};

/* into -= base, field by field (the counters the setup itself caused). */
static void counters_sub(struct counters *into, const struct counters *base)
{
    int64_t *a = (int64_t *)into;
    const int64_t *b = (const int64_t *)base;
    for (size_t i = 0; i < sizeof *into / sizeof(int64_t); i++)
        a[i] -= b[i];
}

/* Sums every sample of metric name whose labels contain label (NULL: all). */
static int64_t metric_sum(const char *text, const char *name, const char *label)
{
    int64_t sum = 0;
    size_t len = strlen(name);
    for (const char *line = text; line != NULL && *line != '\0';) {
        const char *end = strchr(line, '\n');
        if (strncmp(line, name, len) == 0 && (line[len] == '{' || line[len] == ' ')) {
            const char *sp = memchr(line, ' ', end != NULL ? (size_t)(end - line) : strlen(line));
            bool match = label == NULL;
            if (label != NULL && sp != NULL) {
                char head[256];
                size_t hl =
                    (size_t)(sp - line) < sizeof head - 1 ? (size_t)(sp - line) : sizeof head - 1;
                memcpy(head, line, hl);
                head[hl] = '\0';
                match = strstr(head, label) != NULL;
            }
            if (match && sp != NULL)
                sum += strtoll(sp + 1, NULL, 10);
        }
        line = end != NULL ? end + 1 : NULL;
    }
    return sum;
}

enum scrape_kind { SCRAPE_WALLET, SCRAPE_BANK, SCRAPE_GATEWAY };

static void scrape(const char *base, struct counters *acc, enum scrape_kind kind)
{
    char url[CLUSTER_URL_BYTES_MAX + 16];
    long status = 0;
    char *body = NULL;
    snprintf(url, sizeof url, "%s/metrics", base);
    if (cluster_http("GET", url, NULL, NULL, 3000, &status, &body) != 0 || status != 200) {
        free(body);
        return;
    }
    if (kind == SCRAPE_GATEWAY) {
        acc->slow_closes += metric_sum(body, "paylab_gateway_ws_closes_total", "code=\"1008\"");
    } else if (kind == SCRAPE_WALLET) {
        acc->bank_calls += metric_sum(body, "paylab_bank_calls_total", NULL);
        acc->outbox_sends += metric_sum(body, "paylab_outbox_sends_total", NULL);
        acc->reconciler_actions += metric_sum(body, "paylab_reconciler_actions_total", NULL);
        acc->wh_applied += metric_sum(body, "paylab_webhooks_total", "result=\"applied\"");
        acc->wh_duplicate += metric_sum(body, "paylab_webhooks_total", "result=\"duplicate\"");
        acc->wh_ignored += metric_sum(body, "paylab_webhooks_total", "result=\"ignored\"");
        acc->wh_conflict += metric_sum(body, "paylab_webhooks_total", "result=\"conflict\"");
    } else {
        acc->bank_payments += metric_sum(body, "paylab_bank_payments_total", NULL);
        acc->webhook_requests += metric_sum(body, "paylab_bank_webhook_requests_total", NULL);
    }
    free(body);
}

/* ---------------------------------------------------------------- the action */

struct action_state {
    bool done;
    int slow_fds[LAB_SLOW_SUBSCRIBERS];
    int slow_count;
    pthread_t forger, burst;
    bool forger_started, burst_started;
};

/* Stops p (sig), keeps it down for down_ms, starts it again; its counters are kept first. */
static void bounce(struct lab_run *r, struct cluster_proc *p, int sig, int64_t down_ms,
                   struct counters *acc)
{
    if (p == &r->c.wallet)
        scrape(r->c.wallet_url, acc, SCRAPE_WALLET);
    if (p == &r->c.bank)
        scrape(r->c.bank_url, acc, SCRAPE_BANK);
    if (p == &r->c.gateways[0])
        scrape(r->c.gateway_url[0], acc, SCRAPE_GATEWAY);
    cluster_stop(p, sig);
    r->cell->kills++;
    atomic_store(&r->gate_open, true);
    lab_pause_ms(r, down_ms);
    if (cluster_restart(&r->c, p) == 0)
        r->cell->restarts++;
    else
        snprintf(r->cell->error, sizeof r->cell->error, "%s did not restart", p->name);
}

static void act(struct lab_run *r, struct action_state *st, struct counters *acc)
{
    const struct lab_case *k = r->kase;
    st->done = true;
    /* The ops held at the gate go out while the action is in effect (the bank stopped, the
     * wallet dead): they are the ones that meet the fault. */
    switch (k->action) {
    case LAB_ACTION_STOP_BANK:
        bounce(r, &r->c.bank, SIGTERM, k->action_ms, acc);
        break;
    case LAB_ACTION_KILL_WALLET:
        bounce(r, &r->c.wallet, SIGKILL, k->action_ms, acc);
        break;
    case LAB_ACTION_KILL_GATEWAY:
        bounce(r, &r->c.gateways[0], SIGKILL, k->action_ms, acc);
        break;
    case LAB_ACTION_FORGE:
        st->forger_started = pthread_create(&st->forger, NULL, lab_forger_main, r) == 0;
        break;
    case LAB_ACTION_SLOW_SUBSCRIBERS:
        st->slow_count = LAB_SLOW_SUBSCRIBERS;
        r->cell->slow_subscribers = lab_slow_subscribers_open(r, st->slow_fds, st->slow_count);
        st->burst_started = pthread_create(&st->burst, NULL, lab_burst_main, r) == 0;
        break;
    case LAB_ACTION_NONE:
        break;
    }
    /* Forgeries and slow readers go on beside the rest of the load. */
    atomic_store(&r->gate_open, true);
}

static void act_end(struct lab_run *r, struct action_state *st)
{
    if (st->forger_started)
        pthread_join(st->forger, NULL);
    if (st->burst_started)
        pthread_join(st->burst, NULL);
    if (st->slow_count > 0)
        r->cell->slow_subscribers_dropped =
            lab_slow_subscribers_dropped(st->slow_fds, st->slow_count);
}

/* ---------------------------------------------------------------- after the load */

/* The id the wallet gives its n-th top-up or withdrawal under --id-seed seed (docs/api.md). */
static void seeded_id(int64_t seed, int n, char out[ID_BYTES_MAX])
{
    char text[48];
    snprintf(text, sizeof text, "%lld:%d", (long long)seed, n);
    if (ids_derived("wtx_", text, out) != 0)
        out[0] = '\0';
}

static char settled_letter(const char *by)
{
    if (strcmp(by, "response") == 0)
        return 'r';
    if (strcmp(by, "webhook") == 0)
        return 'w';
    return strcmp(by, "reconciler") == 0 ? 'c' : '-';
}

/* Fills cell->outcomes from wallet.db (see lab.h), walking the seeded ids in order. */
static void read_outcome_letters(sqlite3 *db, int64_t seed, struct lab_cell *cell)
{
    sqlite3_stmt *st = NULL;
    size_t used = 0;
    cell->outcomes[0] = '\0';
    if (sqlite3_prepare_v2(db,
                           "SELECT status, coalesce(settled_by, '') FROM transactions "
                           "WHERE id = ?1",
                           -1, &st, NULL) != SQLITE_OK)
        return;
    for (int n = 1; used + 4 < sizeof cell->outcomes; n++) {
        char id[ID_BYTES_MAX];
        seeded_id(seed, n, id);
        sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) != SQLITE_ROW)
            break;
        const char *status = (const char *)sqlite3_column_text(st, 0);
        char s = strcmp(status, "succeeded") == 0 ? 's' : strcmp(status, "failed") == 0 ? 'f' : 'o';
        char b = settled_letter((const char *)sqlite3_column_text(st, 1));
        used += (size_t)snprintf(cell->outcomes + used, sizeof cell->outcomes - used, "%s%c%c",
                                 used > 0 ? " " : "", s, b);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
}

/* Counts the ops whose transaction wallet.db still holds open; fills settled-by figures when
 * final is true. */
static int64_t read_outcomes(struct lab_run *r, bool final)
{
    char path[CLUSTER_PATH_BYTES_MAX + 16];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int64_t open_count = 0;
    snprintf(path, sizeof path, "%s/wallet.db", r->c.dir);
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db,
                           "SELECT status, coalesce(settled_by, '') FROM transactions "
                           "WHERE id = ?1",
                           -1, &st, NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return -1;
    }
    sqlite3_busy_timeout(db, 1000);
    for (int i = 0; i < r->ops_count; i++) {
        const struct lab_op *op = &r->ops[i];
        if (op->txn_id[0] == '\0')
            continue;
        sqlite3_bind_text(st, 1, op->txn_id, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW) {
            const char *status = (const char *)sqlite3_column_text(st, 0);
            const char *by = (const char *)sqlite3_column_text(st, 1);
            bool is_final = strcmp(status, "succeeded") == 0 || strcmp(status, "failed") == 0;
            open_count += is_final ? 0 : 1;
            if (final && is_final) {
                r->cell->final_succeeded += status[0] == 's' ? 1 : 0;
                r->cell->final_failed += status[0] == 'f' ? 1 : 0;
                r->cell->settled_response += strcmp(by, "response") == 0 ? 1 : 0;
                r->cell->settled_webhook += strcmp(by, "webhook") == 0 ? 1 : 0;
                r->cell->settled_reconciler += strcmp(by, "reconciler") == 0 ? 1 : 0;
            }
        }
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    if (final)
        read_outcome_letters(db, r->cfg->seed, r->cell);
    if (final) {
        sqlite3_stmt *cs = NULL;
        if (sqlite3_prepare_v2(db, "SELECT count(*) FROM conflicts", -1, &cs, NULL) == SQLITE_OK &&
            sqlite3_step(cs) == SQLITE_ROW)
            r->cell->conflicts = sqlite3_column_int64(cs, 0);
        sqlite3_finalize(cs);
    }
    sqlite3_close(db);
    return open_count;
}

/* Payments bank.db still holds as processing (-1 when it cannot be read). */
static int64_t bank_processing(const struct lab_run *r)
{
    char path[CLUSTER_PATH_BYTES_MAX + 16];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int64_t n = -1;
    snprintf(path, sizeof path, "%s/bank.db", r->c.dir);
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_busy_timeout(db, 1000) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "SELECT count(*) FROM payments WHERE status = 'processing'", -1, &st,
                           NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

/* Waits until every op's transaction is final or the horizon after the last answer passed;
 * what is still open then is stuck. Then, bounded, until the bank has nothing processing
 * either: a payment it would still execute (a bank ignoring deadlines) must have moved before
 * verify compares the two sides. */
static void wait_horizon(struct lab_run *r, int64_t last_answer_us)
{
    int64_t deadline_us = last_answer_us + (r->cell->horizon_ms + 1000) * 1000;
    int64_t open_count = 0;
    for (;;) {
        open_count = read_outcomes(r, false);
        if (open_count == 0 || lab_mono_us() >= deadline_us || atomic_load(&r->stop))
            break;
        lab_pause_ms(r, 100);
    }
    r->cell->stuck = open_count > 0 ? open_count : 0;
    int64_t bank_end_us = deadline_us + LAB_BANK_SETTLE_MS * 1000LL;
    while (bank_processing(r) > 0 && lab_mono_us() < bank_end_us && !atomic_load(&r->stop))
        lab_pause_ms(r, 100);
    read_outcomes(r, true);
}

/* Waits (bounded) until watcher w has seen each subject user's head seq; counts the rest. */
static void watcher_catch_up(struct lab_run *r)
{
    struct lab_http h;
    if (lab_http_init(&h, &r->stop) != 0)
        return;
    for (int i = 0; i < r->clients_count; i++) {
        char url[CLUSTER_URL_BYTES_MAX + 64];
        struct lab_reply rep;
        snprintf(url, sizeof url, "%s/v1/users/%s", r->c.wallet_url, r->users[i]);
        if (lab_http_call(&h, "GET", url, NULL, NULL, 5000, &rep) != 0 || rep.status != 200)
            continue;
        cJSON *j = cJSON_ParseWithLength(rep.body, rep.body_bytes);
        const cJSON *head = cJSON_GetObjectItemCaseSensitive(j, "head_seq");
        int64_t head_seq = cJSON_IsNumber(head) ? (int64_t)head->valuedouble : 0;
        cJSON_Delete(j);
        int64_t end_us = lab_mono_us() + LAB_CATCHUP_MS * 1000LL;
        for (int w = 0; w < 2; w++) {
            for (;;) {
                pthread_mutex_lock(&r->mu);
                int64_t last = r->seqs[w][i].last;
                pthread_mutex_unlock(&r->mu);
                if (last >= head_seq || lab_mono_us() >= end_us) {
                    if (last < head_seq && last > 0)
                        atomic_fetch_add(&r->watcher_gaps, head_seq - last);
                    break;
                }
                lab_pause_ms(r, 20);
            }
        }
    }
    lab_http_free(&h);
}

static void run_verify(struct lab_run *r)
{
    char grace[32], recon[32], wdb[CLUSTER_PATH_BYTES_MAX + 16], bdb[CLUSTER_PATH_BYTES_MAX + 16];
    snprintf(grace, sizeof grace, "%lld", (long long)r->cfg->timing.pending_grace_ms);
    snprintf(recon, sizeof recon, "%lld", (long long)r->cfg->timing.reconcile_ms);
    snprintf(wdb, sizeof wdb, "%s/wallet.db", r->c.dir);
    snprintf(bdb, sizeof bdb, "%s/bank.db", r->c.dir);
    const char *const args[] = {
        "--json", "verify",         "--wallet-db", wdb, "--bank-db", bdb, "--pending-grace-ms",
        grace,    "--reconcile-ms", recon,         NULL};
    char *out = NULL;
    int code = cluster_paylab(&r->c, args, &out);
    struct lab_cell *cell = r->cell;
    cell->invariants_held = code == 0;
    cJSON *j = out != NULL ? cJSON_Parse(out) : NULL;
    const cJSON *inv;
    size_t used = 0;
    cJSON_ArrayForEach(inv, cJSON_GetObjectItemCaseSensitive(j, "invariants"))
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(inv, "id");
        const cJSON *status = cJSON_GetObjectItemCaseSensitive(inv, "status");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(inv, "name");
        const cJSON *count = cJSON_GetObjectItemCaseSensitive(inv, "breach_count");
        if (!cJSON_IsNumber(id) || !cJSON_IsString(status) || strcmp(status->valuestring, "breach"))
            continue;
        int i = (int)id->valuedouble;
        int64_t n = cJSON_IsNumber(count) ? (int64_t)count->valuedouble : 1;
        if (i >= 1 && i < 8)
            cell->breached[i] = 1;
        if (i == 5)
            cell->double_credits = n;
        int w = snprintf(cell->breaches + used, sizeof cell->breaches - used, "%s%d %s (%lld)",
                         used > 0 ? "; " : "", i, cJSON_IsString(name) ? name->valuestring : "",
                         (long long)n);
        if (w > 0 && (size_t)w < sizeof cell->breaches - used)
            used += (size_t)w;
    }
    if (j == NULL && code != 0)
        snprintf(cell->breaches, sizeof cell->breaches, "paylab verify exited %d", code);
    cJSON_Delete(j);
    free(out);
}

/* ---------------------------------------------------------------- one cell */

static void merge_clients(struct lab_run *r, struct lab_client *cl, int count)
{
    for (int i = 0; i < count; i++) {
        hist_merge(&r->cell->client_latency_us, &cl[i].client_latency_us);
        hist_merge(&r->cell->time_to_final_us, &cl[i].time_to_final_us);
        hist_merge(&r->cell->not_knowing_us, &cl[i].not_knowing_us);
    }
    for (int i = 0; i < r->ops_count; i++) {
        const struct lab_op *op = &r->ops[i];
        if (op->sent_us == 0)
            continue;
        r->cell->ops++;
        if (op->http_status == 0) {
            r->cell->errors++;
        } else if (strcmp(op->status, "succeeded") == 0) {
            r->cell->ok++;
        } else if (strcmp(op->status, "pending") == 0) {
            r->cell->ok++;
            r->cell->pending++;
        } else if (strcmp(op->status, "failed") == 0) {
            r->cell->declined++;
        } else if (strcmp(op->status, "unknown") == 0) {
            r->cell->unknown++;
        } else {
            r->cell->errors++;
        }
        if (!op->answered_final && op->answered_us != 0)
            r->cell->not_knowing_count++;
    }
}

static void copy_counters(struct lab_run *r, const struct counters *acc)
{
    struct lab_cell *c = r->cell;
    c->bank_calls = acc->bank_calls + acc->outbox_sends;
    c->bank_payments_seen = acc->bank_payments;
    c->webhook_deliveries = acc->webhook_requests;
    c->webhooks_applied = acc->wh_applied;
    c->duplicates_absorbed = acc->wh_duplicate + acc->wh_ignored;
    c->reconciler_actions = acc->reconciler_actions;
    /* The gateway's own count of slow consumers dropped, when it is higher than what the
     * slow subscribers could tell from their side (a close behind unread data). */
    if (acc->slow_closes > c->slow_subscribers_dropped)
        c->slow_subscribers_dropped =
            acc->slow_closes < c->slow_subscribers ? acc->slow_closes : c->slow_subscribers;
    c->polls_sent = atomic_load(&r->polls_sent);
    c->poll_bytes = atomic_load(&r->poll_bytes);
    c->ws_messages = atomic_load(&r->ws_messages);
    c->ws_bytes = atomic_load(&r->ws_bytes);
    c->client_retries = atomic_load(&r->client_retries);
    c->watcher_gaps = atomic_load(&r->watcher_gaps);
    c->watcher_reorders = atomic_load(&r->watcher_reorders);
    c->watcher_failovers = atomic_load(&r->watcher_resubscribes);
    c->forged_sent = atomic_load(&r->forged_sent);
    c->forged_refused = atomic_load(&r->forged_refused);
    c->forged_applied = atomic_load(&r->forged_applied);
    c->p2p_ok = atomic_load(&r->p2p_ok);
    c->p2p_errors = atomic_load(&r->p2p_errors);
    hist_merge(&c->p2p_latency_us, &r->p2p_latency_us);
}

static bool watchers_ready(struct lab_watcher *w)
{
    return atomic_load(&w[0].started) && atomic_load(&w[1].started);
}

/* Runs the load with its watchers, background P2P and the scenario's action. */
static void drive(struct lab_run *r, const struct lab_progress *prog, struct counters *acc)
{
    /* Each holds three histograms (~60 KB each): on the heap, not the stack. */
    struct lab_client *clients = calloc(LAB_CLIENTS_MAX, sizeof *clients);
    struct lab_watcher *watchers = calloc(2, sizeof *watchers);
    pthread_t ct[LAB_CLIENTS_MAX], wt[2], p2p;
    struct action_state st = {.done = false};
    if (clients == NULL || watchers == NULL) {
        free(clients);
        free(watchers);
        snprintf(r->cell->error, sizeof r->cell->error, "out of memory");
        return;
    }
    for (int i = 0; i < 2; i++) {
        watchers[i].run = r;
        watchers[i].index = i;
        hist_init(&watchers[i].push_delay_us);
        pthread_create(&wt[i], NULL, lab_watcher_main, &watchers[i]);
    }
    int64_t ready_end = lab_mono_us() + LAB_WATCH_READY_MS * 1000LL;
    while (!watchers_ready(watchers) && lab_mono_us() < ready_end && !atomic_load(&r->stop))
        lab_pause_ms(r, 10);
    if (!watchers_ready(watchers))
        snprintf(r->cell->error, sizeof r->cell->error,
                 "the WebSocket watchers did not all subscribe within %d ms: push figures are "
                 "incomplete",
                 LAB_WATCH_READY_MS);
    bool p2p_started = pthread_create(&p2p, NULL, lab_p2p_main, r) == 0;
    int64_t start_us = lab_mono_us();
    for (int i = 0; i < r->clients_count; i++) {
        clients[i].run = r;
        clients[i].index = i;
        pthread_create(&ct[i], NULL, lab_client_main, &clients[i]);
    }
    while (atomic_load(&r->ops_done) < r->ops_count && !atomic_load(&r->stop)) {
        if (prog->interrupted != NULL && *prog->interrupted)
            atomic_store(&r->stop, true);
        if (!st.done && r->kase->action != LAB_ACTION_NONE && atomic_load(&r->ops_sent) >= r->gate)
            act(r, &st, acc);
        if (prog->fn != NULL)
            prog->fn(prog->arg, atomic_load(&r->ops_done), r->ops_count,
                     (lab_mono_us() - start_us) / 1000);
        lab_pause_ms(r, LAB_MONITOR_MS);
    }
    for (int i = 0; i < r->clients_count; i++)
        pthread_join(ct[i], NULL);
    atomic_store(&r->load_done, true);
    if (p2p_started)
        pthread_join(p2p, NULL);
    act_end(r, &st);
    merge_clients(r, clients, r->clients_count);
    int64_t last_answer_us = start_us;
    for (int i = 0; i < r->ops_count; i++)
        last_answer_us =
            r->ops[i].answered_us > last_answer_us ? r->ops[i].answered_us : last_answer_us;
    struct lab_http h;
    if (lab_http_init(&h, &r->stop) == 0) {
        set_faults(r, &h, "");
        lab_http_free(&h);
    }
    wait_horizon(r, last_answer_us);
    r->cell->duration_ms = (lab_mono_us() - start_us) / 1000;
    watcher_catch_up(r);
    atomic_store(&r->stop, true);
    for (int i = 0; i < 2; i++) {
        pthread_join(wt[i], NULL);
        hist_merge(&r->cell->push_delay_us, &watchers[i].push_delay_us);
    }
    free(clients);
    free(watchers);
}

static int run_init(struct lab_run *r, const struct lab_config *cfg, const struct lab_case *k,
                    enum lab_mode mode, const char *wait, struct lab_cell *cell)
{
    memset(r, 0, sizeof *r);
    r->cfg = cfg;
    r->kase = k;
    r->mode = mode;
    r->cell = cell;
    pl_strlcpy(r->wait, wait, sizeof r->wait);
    r->poll_ms = strncmp(wait, "poll:", 5) == 0 ? (int)strtol(wait + 5, NULL, 10) : 0;
    r->clients_count = cfg->concurrency;
    r->ops_count = k->ops_max > 0 && k->ops_max < cfg->n ? k->ops_max : cfg->n;
    /* Ops from the gate on wait for the scenario's action: a kill or an outage then meets
     * the load whatever the machine's speed. */
    r->gate = k->action != LAB_ACTION_NONE ? (int)(k->action_at * r->ops_count) : r->ops_count;
    atomic_store(&r->gate_open, k->action == LAB_ACTION_NONE);
    r->ops = calloc((size_t)r->ops_count, sizeof *r->ops);
    r->seen = calloc(LAB_SEEN_SLOTS, sizeof *r->seen);
    hist_init(&r->p2p_latency_us);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->seen_cv, NULL);
    return r->ops != NULL && r->seen != NULL ? 0 : PL_ENOMEM;
}

static void run_free(struct lab_run *r)
{
    free(r->ops);
    free(r->seen);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->seen_cv);
}

int64_t lab_horizon_ms(const struct lab_timing *t, enum lab_mode mode)
{
    int64_t ttl = mode == LAB_MODE_ASYNC ? t->payment_ttl_async_ms : t->payment_ttl_sync_ms;
    return ttl + t->pending_grace_ms + 2 * t->reconcile_ms;
}

int lab_cell_run(const struct lab_config *cfg, const struct lab_case *k, enum lab_mode mode,
                 const char *wait, struct lab_cell *cell, const struct lab_progress *prog)
{
    struct lab_run *r = malloc(sizeof *r); /* large (the histograms): on the heap */
    struct counters acc = {0};
    cell->horizon_ms = lab_horizon_ms(&cfg->timing, mode);
    if (r == NULL)
        return PL_ENOMEM;
    int rc = run_init(r, cfg, k, mode, wait, cell);
    if (rc == 0)
        rc = start_cluster(r);
    if (rc == 0)
        rc = setup_users(r);
    struct lab_http h;
    if (rc == 0 && lab_http_init(&h, &r->stop) == 0) {
        rc = set_faults(r, &h, k->faults);
        lab_http_free(&h);
    }
    struct counters base = {0};
    if (rc == 0) {
        scrape(r->c.wallet_url, &base, SCRAPE_WALLET);
        scrape(r->c.bank_url, &base, SCRAPE_BANK);
        drive(r, prog, &acc);
        scrape(r->c.wallet_url, &acc, SCRAPE_WALLET);
        scrape(r->c.bank_url, &acc, SCRAPE_BANK);
        scrape(r->c.gateway_url[0], &acc, SCRAPE_GATEWAY);
        counters_sub(&acc, &base);
        copy_counters(r, &acc);
        run_verify(r);
        cell->ran = !(prog->interrupted != NULL && *prog->interrupted);
    }
    bool unexpected = cell->ran && !cell->invariants_held && k->breach_expected == 0;
    r->c.keep_dir = cfg->keep || unexpected || rc != 0;
    if (r->c.dir[0] != '\0') {
        if (r->c.keep_dir)
            fprintf(stderr, "lab: the cell's data and logs are kept in %s\n", r->c.dir);
        cluster_destroy(&r->c);
    }
    run_free(r);
    free(r);
    return rc;
}
