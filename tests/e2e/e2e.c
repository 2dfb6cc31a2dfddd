/* e2e.c: the helpers of e2e.h. Every wait polls a condition with a deadline through
 * cluster_wait_for; nothing sleeps in place of synchronisation. */
#include "e2e.h"

#include "pl.h"
#include "sign.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* The suite's wallet timings: a reconciliation horizon of about 2 s keeps it fast. */
#define E2E_BANK_TIMEOUT_MS_DEFAULT 300L
#define E2E_TTL_SYNC_MS_DEFAULT 1500L
#define E2E_RECONCILE_MS "100"
#define E2E_PENDING_GRACE_MS_DEFAULT 300L
#define E2E_TTL_ASYNC_MS_DEFAULT 20000L
/* A gateway answers 503 this soon when the wallet is silent (the bank then retries). */
#define E2E_ACK_TIMEOUT_MS "500"
/* Bank webhook rows listed per GET /admin/webhooks: more than any test makes. */
#define E2E_WEBHOOKS_LIST_MAX "500"

/* ------------------------------------------------------------------ lifecycle */

void e2e_filter_from_env(void)
{
    const char *pattern = getenv("E2E_TEST");
    if (pattern != NULL && pattern[0] != '\0')
        cmocka_set_test_filter(pattern);
}

int e2e_setup(void **state)
{
    struct e2e *e = calloc(1, sizeof *e);
    if (e == NULL)
        return -1;
    *state = e;
    return 0;
}

int e2e_teardown(void **state)
{
    struct e2e *e = *state;
    if (e->c.keep_dir) {
        fprintf(stderr, "e2e: test did not finish; logs: %s, %s\n", e->c.bank.log_path,
                e->c.wallet.log_path);
        for (int i = 0; i < CLUSTER_GATEWAYS_MAX; i++) {
            if (e->c.gateways[i].argv[0] != NULL)
                fprintf(stderr, "e2e: gateway %d log: %s\n", i, e->c.gateways[i].log_path);
        }
    }
    cluster_destroy(&e->c);
    free(e);
    return 0;
}

/* The wallet's numeric flags, printed into the caller's buffers. */
struct wallet_flags {
    char timeout[24], ttl[24], grace[24], ttl_async[24];
};

static void wallet_args(struct e2e *e, struct wallet_flags *f, const char *argv[16])
{
    snprintf(f->timeout, sizeof f->timeout, "%ld", e->opts.bank_timeout_ms);
    snprintf(f->ttl, sizeof f->ttl, "%ld", e->opts.payment_ttl_sync_ms);
    snprintf(f->grace, sizeof f->grace, "%ld", e->opts.pending_grace_ms);
    snprintf(f->ttl_async, sizeof f->ttl_async, "%ld", e->opts.payment_ttl_async_ms);
    const char *const a[] = {"--bank-timeout-ms",
                             f->timeout,
                             "--reconcile-ms",
                             E2E_RECONCILE_MS,
                             "--pending-grace-ms",
                             f->grace,
                             "--payment-ttl-sync-ms",
                             f->ttl,
                             "--payment-ttl-async-ms",
                             f->ttl_async,
                             NULL};
    _Static_assert(PL_ARRAY_LEN(a) <= 16, "fits argv");
    for (size_t i = 0; i < PL_ARRAY_LEN(a); i++)
        argv[i] = a[i];
}

static void opts_defaults(struct e2e *e, const struct e2e_opts *opts)
{
    if (opts != NULL)
        e->opts = *opts;
    if (e->opts.bank_timeout_ms == 0)
        e->opts.bank_timeout_ms = E2E_BANK_TIMEOUT_MS_DEFAULT;
    if (e->opts.payment_ttl_sync_ms == 0)
        e->opts.payment_ttl_sync_ms = E2E_TTL_SYNC_MS_DEFAULT;
    if (e->opts.pending_grace_ms == 0)
        e->opts.pending_grace_ms = E2E_PENDING_GRACE_MS_DEFAULT;
    if (e->opts.payment_ttl_async_ms == 0)
        e->opts.payment_ttl_async_ms = E2E_TTL_ASYNC_MS_DEFAULT;
    assert_in_range(e->opts.gateways, 0, CLUSTER_GATEWAYS_MAX);
}

void e2e_start(struct e2e *e, const struct e2e_opts *opts)
{
    struct wallet_flags flags;
    const char *argv[16];
    opts_defaults(e, opts);
    assert_int_equal(cluster_init(&e->c, NULL), 0);
    /* Until e2e_finish: a failing test leaves its logs and databases behind. */
    e->c.keep_dir = true;
    if (e->opts.gateways > 0)
        assert_int_equal(cluster_use_gateways(&e->c, e->opts.gateways), 0);
    assert_int_equal(cluster_start_bank(&e->c, NULL), 0);
    wallet_args(e, &flags, argv);
    assert_int_equal(cluster_start_wallet(&e->c, argv), 0);
    for (int i = 0; i < e->opts.gateways; i++)
        e2e_start_gateway(e, i);
    assert_int_equal(cluster_read_secret(&e->c, "bank_api_key", e->api_key, sizeof e->api_key), 0);
    assert_int_equal(
        cluster_read_secret(&e->c, "admin_token", e->admin_token, sizeof e->admin_token), 0);
    assert_int_equal(
        cluster_read_secret(&e->c, "webhook_secret", e->webhook_secret, sizeof e->webhook_secret),
        0);
}

void e2e_start_gateway(struct e2e *e, int index)
{
    assert_in_range(index, 0, CLUSTER_GATEWAYS_MAX - 1);
    if (e->c.gateways[index].argv[0] != NULL) {
        assert_int_equal(cluster_restart(&e->c, &e->c.gateways[index]), 0);
        return;
    }
    const char *const args[] = {"--ack-timeout-ms", E2E_ACK_TIMEOUT_MS, NULL};
    assert_int_equal(cluster_start_gateway(&e->c, index, args), 0);
}

void e2e_restart_wallet(struct e2e *e)
{
    assert_int_equal(cluster_restart(&e->c, &e->c.wallet), 0);
}

void e2e_restart_bank(struct e2e *e)
{
    assert_int_equal(cluster_restart(&e->c, &e->c.bank), 0);
}

void e2e_finish(struct e2e *e)
{
    assert_int_equal(cluster_verify(&e->c), 0);
    /* E2E_KEEP=1 keeps a passing test's directory too, to read its logs. */
    const char *keep = getenv("E2E_KEEP");
    e->c.keep_dir = keep != NULL && strcmp(keep, "1") == 0;
}

void e2e_new_key(struct e2e *e, char *out)
{
    snprintf(out, E2E_KEY_BYTES_MAX, "e2e-%ld-%u-%lld", (long)getpid(), ++e->key_seq,
             (long long)pl_now_us());
}

/* ------------------------------------------------------------------ HTTP */

/* Fills the parsed fields of r from r->raw. */
static void resp_parse(struct e2e_resp *r)
{
    char v[16];
    r->status = r->raw.status;
    r->json = cJSON_ParseWithLength(r->raw.body, r->raw.body_bytes);
    r->replayed =
        cluster_reply_header(&r->raw, "Idempotent-Replayed", v, sizeof v) && strcmp(v, "true") == 0;
}

void e2e_request(const char *method, const char *url, const char *body, size_t body_bytes,
                 const char *const *headers, struct e2e_resp *r)
{
    memset(r, 0, sizeof *r);
    int rc =
        cluster_http_full(method, url, body, body_bytes, headers, E2E_HTTP_TIMEOUT_MS, &r->raw);
    assert_int_equal(rc, 0);
    resp_parse(r);
}

void e2e_resp_free(struct e2e_resp *r)
{
    cJSON_Delete(r->json);
    cluster_reply_free(&r->raw);
    memset(r, 0, sizeof *r);
}

void e2e_wallet(struct e2e *e, const char *method, const char *path, const char *body,
                const char *idem_key, struct e2e_resp *r)
{
    char url[CLUSTER_URL_BYTES_MAX + 256], key[E2E_KEY_BYTES_MAX + 32];
    const char *headers[3] = {NULL, NULL, NULL};
    size_t n = 0;
    snprintf(url, sizeof url, "%s%s", e->c.wallet_url, path);
    if (body != NULL)
        headers[n++] = "Content-Type: application/json";
    if (idem_key != NULL) {
        snprintf(key, sizeof key, "Idempotency-Key: %s", idem_key);
        headers[n++] = key;
    }
    e2e_request(method, url, body, body != NULL ? strlen(body) : 0, headers, r);
}

void e2e_bank(struct e2e *e, const char *method, const char *path, const char *body,
              const char *bearer, struct e2e_resp *r)
{
    char url[CLUSTER_URL_BYTES_MAX + 256], auth[E2E_SECRET_BYTES_MAX + 32];
    const char *headers[3] = {NULL, NULL, NULL};
    size_t n = 0;
    snprintf(url, sizeof url, "%s%s", e->c.bank_url, path);
    if (body != NULL)
        headers[n++] = "Content-Type: application/json";
    if (bearer != NULL) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", bearer);
        headers[n++] = auth;
    }
    e2e_request(method, url, body, body != NULL ? strlen(body) : 0, headers, r);
}

/* ------------------------------------------------------------------ JSON */

const char *e2e_str(const cJSON *obj, const char *key)
{
    assert_non_null(obj);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsString(v))
        fail_msg("member \"%s\" is not a string", key);
    return v->valuestring;
}

int64_t e2e_int(const cJSON *obj, const char *key)
{
    assert_non_null(obj);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v))
        fail_msg("member \"%s\" is not a number", key);
    return (int64_t)v->valuedouble;
}

bool e2e_is_null(const cJSON *obj, const char *key)
{
    assert_non_null(obj);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (v == NULL)
        fail_msg("member \"%s\" is missing", key);
    return cJSON_IsNull(v);
}

const char *e2e_error_code(const struct e2e_resp *r)
{
    if (r->json == NULL)
        fail_msg("HTTP %ld body is not JSON: %.200s", r->status, r->raw.body);
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(r->json, "error");
    if (!cJSON_IsObject(err))
        fail_msg("HTTP %ld body has no error: %.300s", r->status, r->raw.body);
    return e2e_str(err, "code");
}

void e2e_expect(const struct e2e_resp *r, long status, const char *code)
{
    if (r->status != status) {
        fail_msg("expected HTTP %ld, got %ld: %.400s", status, r->status, r->raw.body);
    }
    if (code == NULL)
        return;
    const char *got = e2e_error_code(r);
    if (strcmp(got, code) != 0) {
        fail_msg("HTTP %ld: expected error %s, got %s: %.400s", status, code, got, r->raw.body);
    }
}

void e2e_expect_txn(const cJSON *t, const char *kind, const char *mode, const char *status,
                    int64_t amount_minor)
{
    assert_non_null(t);
    assert_int_equal(strncmp(e2e_str(t, "id"), "wtx_", 4), 0);
    assert_string_equal(e2e_str(t, "kind"), kind);
    if (mode != NULL)
        assert_string_equal(e2e_str(t, "mode"), mode);
    assert_string_equal(e2e_str(t, "status"), status);
    assert_int_equal(e2e_int(t, "amount_minor"), amount_minor);
    assert_string_equal(e2e_str(t, "currency"), "INR");
}

const char *e2e_expect_txn_error(const struct e2e_resp *r, long status, const char *code,
                                 const char *txn_status)
{
    e2e_expect(r, status, code);
    const char *id = e2e_str(r->json, "id");
    assert_int_equal(strncmp(id, "wtx_", 4), 0);
    assert_string_equal(e2e_str(r->json, "status"), txn_status);
    return id;
}

/* ------------------------------------------------------------------ domain */

void e2e_user_add(struct e2e *e, const char *user)
{
    char body[E2E_BODY_BYTES_MAX];
    struct e2e_resp r;
    snprintf(body, sizeof body, "{\"user\":\"%s\"}", user);
    e2e_wallet(e, "POST", "/v1/users", body, NULL, &r);
    e2e_expect(&r, 201, NULL);
    assert_string_equal(e2e_str(r.json, "user"), user);
    assert_int_equal(e2e_int(r.json, "balance_minor"), 0);
    assert_true(strlen(e2e_str(r.json, "ws_token")) > 0);
    e2e_resp_free(&r);
}

int64_t e2e_wallet_balance(struct e2e *e, const char *user)
{
    char path[128];
    struct e2e_resp r;
    snprintf(path, sizeof path, "/v1/users/%s", user);
    e2e_wallet(e, "GET", path, NULL, NULL, &r);
    e2e_expect(&r, 200, NULL);
    int64_t b = e2e_int(r.json, "balance_minor");
    e2e_resp_free(&r);
    return b;
}

int64_t e2e_bank_balance(struct e2e *e, const char *account)
{
    char path[160];
    struct e2e_resp r;
    snprintf(path, sizeof path, "/v1/accounts/%s", account);
    e2e_bank(e, "GET", path, NULL, e->api_key, &r);
    e2e_expect(&r, 200, NULL);
    assert_string_equal(e2e_str(r.json, "id"), account);
    int64_t b = e2e_int(r.json, "balance_minor");
    e2e_resp_free(&r);
    return b;
}

void e2e_faults(struct e2e *e, const char *json)
{
    struct e2e_resp r;
    e2e_bank(e, "PUT", "/admin/faults", json, e->admin_token, &r);
    e2e_expect(&r, 200, NULL);
    e2e_resp_free(&r);
}

static long money_post(struct e2e *e, const char *path, const char *user, int64_t amount_minor,
                       const char *mode, const char *key, struct e2e_resp *r)
{
    char body[E2E_BODY_BYTES_MAX], fresh[E2E_KEY_BYTES_MAX];
    if (key == NULL) {
        e2e_new_key(e, fresh);
        key = fresh;
    }
    snprintf(body, sizeof body, "{\"user\":\"%s\",\"amount_minor\":%lld,\"mode\":\"%s\"}", user,
             (long long)amount_minor, mode);
    e2e_wallet(e, "POST", path, body, key, r);
    return r->status;
}

long e2e_topup(struct e2e *e, const char *user, int64_t amount_minor, const char *mode,
               const char *key, struct e2e_resp *r)
{
    return money_post(e, "/v1/topups", user, amount_minor, mode, key, r);
}

long e2e_withdraw(struct e2e *e, const char *user, int64_t amount_minor, const char *mode,
                  const char *key, struct e2e_resp *r)
{
    return money_post(e, "/v1/withdrawals", user, amount_minor, mode, key, r);
}

long e2e_transfer(struct e2e *e, const char *from, const char *to, int64_t amount_minor,
                  struct e2e_resp *r)
{
    char body[E2E_BODY_BYTES_MAX], key[E2E_KEY_BYTES_MAX];
    e2e_new_key(e, key);
    snprintf(body, sizeof body, "{\"from\":\"%s\",\"to\":\"%s\",\"amount_minor\":%lld}", from, to,
             (long long)amount_minor);
    e2e_wallet(e, "POST", "/v1/transfers", body, key, r);
    return r->status;
}

cJSON *e2e_txn(struct e2e *e, const char *id)
{
    char path[160];
    struct e2e_resp r;
    snprintf(path, sizeof path, "/v1/transactions/%s", id);
    e2e_wallet(e, "GET", path, NULL, NULL, &r);
    e2e_expect(&r, 200, NULL);
    assert_string_equal(e2e_str(r.json, "id"), id);
    cJSON *t = r.json;
    r.json = NULL;
    e2e_resp_free(&r);
    return t;
}

struct txn_probe {
    struct e2e *e;
    const char *id;
    cJSON *txn;
};

static bool is_final(const char *status)
{
    return strcmp(status, "succeeded") == 0 || strcmp(status, "failed") == 0;
}

static bool txn_final_check(void *arg)
{
    struct txn_probe *p = arg;
    cJSON_Delete(p->txn);
    p->txn = e2e_txn(p->e, p->id);
    return is_final(e2e_str(p->txn, "status"));
}

cJSON *e2e_wait_final(struct e2e *e, const char *id, long timeout_ms)
{
    struct txn_probe p = {.e = e, .id = id, .txn = NULL};
    if (!cluster_wait_for(txn_final_check, &p, cluster_deadline_ms(timeout_ms))) {
        char *s = cJSON_PrintUnformatted(p.txn);
        fprintf(stderr, "e2e: %s not final after %ld ms: %s\n", id, timeout_ms, s);
        free(s);
        fail_msg("transaction %s not final in time", id);
    }
    return p.txn;
}

cJSON *e2e_bank_payment(struct e2e *e, const char *reference)
{
    char path[160];
    struct e2e_resp r;
    snprintf(path, sizeof path, "/v1/payments?reference=%s", reference);
    e2e_bank(e, "GET", path, NULL, e->api_key, &r);
    if (r.status == 404) {
        e2e_expect(&r, 404, "unknown_payment");
        e2e_resp_free(&r);
        return NULL;
    }
    e2e_expect(&r, 200, NULL);
    assert_string_equal(e2e_str(r.json, "reference"), reference);
    cJSON *p = r.json;
    r.json = NULL;
    e2e_resp_free(&r);
    return p;
}

struct pay_probe {
    struct e2e *e;
    const char *reference;
    bool want_final;
    cJSON *payment;
};

static bool pay_check(void *arg)
{
    struct pay_probe *p = arg;
    cJSON_Delete(p->payment);
    p->payment = e2e_bank_payment(p->e, p->reference);
    if (p->payment == NULL)
        return false;
    return !p->want_final || is_final(e2e_str(p->payment, "status"));
}

static cJSON *wait_payment(struct e2e *e, const char *reference, bool want_final, long timeout_ms)
{
    struct pay_probe p = {.e = e, .reference = reference, .want_final = want_final};
    if (!cluster_wait_for(pay_check, &p, cluster_deadline_ms(timeout_ms))) {
        fail_msg("bank payment %s not %s in time", reference, want_final ? "final" : "known");
    }
    return p.payment;
}

cJSON *e2e_wait_bank_payment(struct e2e *e, const char *reference, long timeout_ms)
{
    return wait_payment(e, reference, false, timeout_ms);
}

cJSON *e2e_wait_bank_final(struct e2e *e, const char *reference, long timeout_ms)
{
    return wait_payment(e, reference, true, timeout_ms);
}

int64_t e2e_wallet_db_int(struct e2e *e, const char *sql, const char *arg)
{
    char path[CLUSTER_PATH_BYTES_MAX + 16];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    snprintf(path, sizeof path, "%s/wallet.db", e->c.dir);
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 1000);
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        fail_msg("prepare %s: %s", sql, sqlite3_errmsg(db));
    if (arg != NULL)
        sqlite3_bind_text(st, 1, arg, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW)
        fail_msg("step %s: %s", sql, sqlite3_errmsg(db));
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

struct newest_txn_probe {
    struct e2e *e;
    const char *user;
    char *id_out;
};

static bool newest_txn_recorded(void *arg)
{
    struct newest_txn_probe *p = arg;
    struct e2e_resp r;
    char path[128];
    snprintf(path, sizeof path, "/v1/users/%s/transactions?limit=50", p->user);
    e2e_wallet(p->e, "GET", path, NULL, NULL, &r);
    e2e_expect(&r, 200, NULL);
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(r.json, "transactions");
    assert_true(cJSON_IsArray(list));
    bool found = cJSON_GetArraySize(list) > 0;
    if (found)
        pl_strlcpy(p->id_out, e2e_str(cJSON_GetArrayItem(list, 0), "id"), 64);
    e2e_resp_free(&r);
    return found;
}

void e2e_wait_newest_txn(struct e2e *e, const char *user, char id_out[64], long timeout_ms)
{
    struct newest_txn_probe p = {.e = e, .user = user, .id_out = id_out};
    if (!cluster_wait_for(newest_txn_recorded, &p, cluster_deadline_ms(timeout_ms))) {
        fail_msg("no transaction of %s recorded within %ld ms", user, timeout_ms);
    }
}

/* ------------------------------------------------------------------ background requests */

static void *bg_run(void *arg)
{
    struct e2e_bg *bg = arg;
    const char *headers[] = {"Content-Type: application/json", bg->key_header, NULL};
    bg->rc = cluster_http_full("POST", bg->url, bg->body, strlen(bg->body), headers,
                               E2E_HTTP_TIMEOUT_MS, &bg->reply);
    return NULL;
}

void e2e_bg_start(struct e2e_bg *bg, struct e2e *e, const char *path, const char *body,
                  const char *idem_key)
{
    memset(bg, 0, sizeof *bg);
    snprintf(bg->url, sizeof bg->url, "%s%s", e->c.wallet_url, path);
    assert_int_equal(pl_strlcpy(bg->body, body, sizeof bg->body), 0);
    snprintf(bg->key_header, sizeof bg->key_header, "Idempotency-Key: %s", idem_key);
    assert_int_equal(pthread_create(&bg->thread, NULL, bg_run, bg), 0);
}

void e2e_bg_join(struct e2e_bg *bg, struct e2e_resp *r)
{
    assert_int_equal(pthread_join(bg->thread, NULL), 0);
    assert_int_equal(bg->rc, 0);
    memset(r, 0, sizeof *r);
    r->raw = bg->reply;
    memset(&bg->reply, 0, sizeof bg->reply);
    resp_parse(r);
}

/* ------------------------------------------------------------------ snapshots */

void e2e_snapshot_take(struct e2e *e, struct e2e_snapshot *s)
{
    s->wallet_alice = e2e_wallet_balance(e, "alice");
    s->wallet_bob = e2e_wallet_balance(e, "bob");
    s->bank_alice = e2e_bank_balance(e, "HDFC-ALICE");
    s->bank_bob = e2e_bank_balance(e, "HDFC-BOB");
    s->bank_nodal = e2e_bank_balance(e, "NODAL-PAYLAB");
    s->transactions = e2e_wallet_db_int(e, "SELECT count(*) FROM transactions", NULL);
    s->entries = e2e_wallet_db_int(e, "SELECT count(*) FROM entries", NULL);
    s->users = e2e_wallet_db_int(e, "SELECT count(*) FROM users", NULL);
}

void e2e_snapshot_equal(const struct e2e_snapshot *a, const struct e2e_snapshot *b,
                        const char *what)
{
    if (memcmp(a, b, sizeof *a) == 0)
        return;
    fail_msg("%s changed state: wallet alice %lld→%lld bob %lld→%lld, bank alice %lld→%lld "
             "bob %lld→%lld nodal %lld→%lld, transactions %lld→%lld entries %lld→%lld "
             "users %lld→%lld",
             what, (long long)a->wallet_alice, (long long)b->wallet_alice, (long long)a->wallet_bob,
             (long long)b->wallet_bob, (long long)a->bank_alice, (long long)b->bank_alice,
             (long long)a->bank_bob, (long long)b->bank_bob, (long long)a->bank_nodal,
             (long long)b->bank_nodal, (long long)a->transactions, (long long)b->transactions,
             (long long)a->entries, (long long)b->entries, (long long)a->users,
             (long long)b->users);
}

/* ------------------------------------------------------------------ the async path */

char *e2e_webhook_body(const char *event_id, const char *status, const cJSON *payment,
                       int64_t amount_minor)
{
    char type[48];
    int64_t now_ms = pl_now_ms();
    snprintf(type, sizeof type, "payment.%s", status);
    cJSON *root = cJSON_CreateObject();
    assert_non_null(root);
    cJSON_AddStringToObject(root, "id", event_id);
    cJSON_AddStringToObject(root, "type", type);
    cJSON_AddNumberToObject(root, "created", (double)(now_ms / 1000));
    cJSON_AddNumberToObject(root, "created_ms", (double)now_ms);
    cJSON *data = cJSON_AddObjectToObject(root, "data");
    assert_non_null(data);
    cJSON_AddStringToObject(data, "payment_id", e2e_str(payment, "payment_id"));
    cJSON_AddStringToObject(data, "reference", e2e_str(payment, "reference"));
    cJSON_AddNumberToObject(data, "amount_minor", (double)amount_minor);
    cJSON_AddStringToObject(data, "currency", "INR");
    cJSON_AddStringToObject(data, "status", status);
    if (strcmp(status, "failed") == 0)
        cJSON_AddStringToObject(data, "failure_reason", "insufficient_funds");
    else
        cJSON_AddNullToObject(data, "failure_reason");
    cJSON_AddStringToObject(data, "wallet_epoch", e2e_str(payment, "wallet_epoch"));
    char *body = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    assert_non_null(body);
    return body;
}

void e2e_webhook_post(struct e2e *e, int index, const char *event_id, int64_t timestamp_s,
                      const char *signed_body, const char *sent_body, const char *secret,
                      struct e2e_resp *r)
{
    char url[CLUSTER_URL_BYTES_MAX + 64], id_hdr[96], ts_hdr[64];
    char sig[SIGN_SIGNATURE_BYTES_MAX], sig_hdr[SIGN_SIGNATURE_BYTES_MAX + 32];
    const char *headers[5] = {"Content-Type: application/json", NULL, NULL, NULL, NULL};
    size_t n = 1;
    assert_in_range(index, 0, CLUSTER_GATEWAYS_MAX - 1);
    snprintf(url, sizeof url, "%s/v1/webhooks/bank", e->c.gateway_url[index]);
    if (event_id != NULL) {
        snprintf(id_hdr, sizeof id_hdr, "webhook-id: %s", event_id);
        headers[n++] = id_hdr;
    }
    snprintf(ts_hdr, sizeof ts_hdr, "webhook-timestamp: %lld", (long long)timestamp_s);
    headers[n++] = ts_hdr;
    if (secret != NULL) {
        assert_int_equal(sign_webhook(secret, event_id != NULL ? event_id : "", timestamp_s,
                                      signed_body, strlen(signed_body), sig, sizeof sig),
                         0);
        snprintf(sig_hdr, sizeof sig_hdr, "webhook-signature: %s", sig);
        headers[n++] = sig_hdr;
    }
    e2e_request("POST", url, sent_body, strlen(sent_body), headers, r);
}

void e2e_webhook_post_signed(struct e2e *e, int index, const char *event_id, const char *body,
                             struct e2e_resp *r)
{
    e2e_webhook_post(e, index, event_id, pl_now_ms() / 1000, body, body, e->webhook_secret, r);
}

void e2e_expect_result(const struct e2e_resp *r, const char *result)
{
    e2e_expect(r, 200, NULL);
    if (r->json == NULL)
        fail_msg("gateway 200 body is not JSON: %.200s", r->raw.body);
    assert_string_equal(e2e_str(r->json, "result"), result);
}

cJSON *e2e_bank_webhooks(struct e2e *e, const char *status, const cJSON **list)
{
    char path[128];
    struct e2e_resp r;
    snprintf(path, sizeof path, "/admin/webhooks?status=%s&limit=%s", status,
             E2E_WEBHOOKS_LIST_MAX);
    e2e_bank(e, "GET", path, NULL, e->admin_token, &r);
    e2e_expect(&r, 200, NULL);
    cJSON *root = r.json;
    r.json = NULL;
    e2e_resp_free(&r);
    *list = cJSON_GetObjectItemCaseSensitive(root, "webhooks");
    assert_true(cJSON_IsArray(*list));
    return root;
}

void e2e_bank_webhook_stats(struct e2e *e, const char *reference, struct e2e_webhook_stats *st)
{
    static const char *const statuses[] = {"pending", "delivered", "dead"};
    int64_t *counts[] = {&st->pending, &st->delivered, &st->dead};
    memset(st, 0, sizeof *st);
    for (size_t i = 0; i < PL_ARRAY_LEN(statuses); i++) {
        const cJSON *list = NULL;
        cJSON *root = e2e_bank_webhooks(e, statuses[i], &list);
        const cJSON *w = NULL;
        cJSON_ArrayForEach(w, list)
        {
            if (strcmp(e2e_str(w, "reference"), reference) != 0)
                continue;
            int64_t attempts = e2e_int(w, "attempts");
            (*counts[i])++;
            st->attempts += attempts;
            if (attempts > st->attempts_max)
                st->attempts_max = attempts;
        }
        cJSON_Delete(root);
    }
}

static bool webhooks_idle(void *arg)
{
    struct e2e *e = arg;
    const cJSON *list = NULL;
    cJSON *root = e2e_bank_webhooks(e, "pending", &list);
    bool idle = cJSON_GetArraySize(list) == 0;
    cJSON_Delete(root);
    return idle;
}

void e2e_wait_webhooks_idle(struct e2e *e, long timeout_ms)
{
    if (!cluster_wait_for(webhooks_idle, e, cluster_deadline_ms(timeout_ms)))
        fail_msg("the bank still has pending webhooks after %ld ms", timeout_ms);
}

static int64_t money_async(struct e2e *e, const char *path, const char *user, int64_t amount_minor,
                           char id_out[64])
{
    struct e2e_resp r;
    money_post(e, path, user, amount_minor, "async", NULL, &r);
    e2e_expect(&r, 202, NULL);
    e2e_expect_txn(r.json, strcmp(path, "/v1/topups") == 0 ? "topup" : "withdrawal", "async",
                   "pending", amount_minor);
    assert_int_equal(pl_strlcpy(id_out, e2e_str(r.json, "id"), 64), 0);
    int64_t elapsed_ms = r.raw.elapsed_ms;
    e2e_resp_free(&r);
    return elapsed_ms;
}

int64_t e2e_topup_async(struct e2e *e, const char *user, int64_t amount_minor, char id_out[64])
{
    return money_async(e, "/v1/topups", user, amount_minor, id_out);
}

int64_t e2e_withdraw_async(struct e2e *e, const char *user, int64_t amount_minor, char id_out[64])
{
    return money_async(e, "/v1/withdrawals", user, amount_minor, id_out);
}

struct all_final_probe {
    struct e2e *e;
    char (*ids)[64];
    size_t count, first_open;
};

static bool all_final_check(void *arg)
{
    struct all_final_probe *p = arg;
    for (; p->first_open < p->count; p->first_open++) {
        cJSON *t = e2e_txn(p->e, p->ids[p->first_open]);
        bool final = is_final(e2e_str(t, "status"));
        cJSON_Delete(t);
        if (!final)
            return false;
    }
    return true;
}

void e2e_wait_all_final(struct e2e *e, char ids[][64], size_t count, long timeout_ms)
{
    struct all_final_probe p = {.e = e, .ids = ids, .count = count, .first_open = 0};
    if (!cluster_wait_for(all_final_check, &p, cluster_deadline_ms(timeout_ms))) {
        cJSON *t = e2e_txn(e, ids[p.first_open]);
        char *s = cJSON_PrintUnformatted(t);
        fprintf(stderr, "e2e: %s not final after %ld ms: %s\n", ids[p.first_open], timeout_ms, s);
        free(s);
        cJSON_Delete(t);
        fail_msg("%zu of %zu transactions final in time", p.first_open, count);
    }
}

void e2e_expect_settled(struct e2e *e, const char *id, const char *status, const char *settled_by,
                        int64_t entries_count)
{
    cJSON *t = e2e_txn(e, id);
    assert_string_equal(e2e_str(t, "status"), status);
    if (settled_by != NULL)
        assert_string_equal(e2e_str(t, "settled_by"), settled_by);
    cJSON_Delete(t);
    assert_int_equal(
        e2e_wallet_db_int(e, "SELECT count(*) FROM entries WHERE transaction_id=?1", id),
        entries_count);
}

/* ------------------------------------------------------------------ WebSockets */

/* RFC 6455 §1.3: Sec-WebSocket-Accept = base64(SHA-1(key + this GUID)). */
#define E2E_WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
/* Events per page of GET /v1/users/{user}/events (the wallet's maximum). */
#define E2E_EVENTS_PAGE "500"

int e2e_tcp_connect(int port, int rcvbuf_bytes)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        fail_msg("socket: %s", strerror(errno));
    if (rcvbuf_bytes > 0)
        assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf_bytes, sizeof rcvbuf_bytes),
                         0);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        fail_msg("connect 127.0.0.1:%d: %s", port, strerror(errno));
    return fd;
}

/* Writes all of buf by deadline; false when the peer is gone or the deadline passed. */
static bool write_all(int fd, const void *buf, size_t len, int64_t deadline_ms)
{
    const unsigned char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return false;
        int64_t left = deadline_ms - pl_mono_ms();
        if (left <= 0)
            return false;
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        (void)poll(&pfd, 1, (int)left);
    }
    return true;
}

/* Reads once what is there (waiting up to wait_ms) into w->in. Returns bytes read, 0 when
 * nothing came in time, -1 at EOF or on an error (w->eof set). */
static ssize_t ws_fill(struct e2e_ws *w, int wait_ms)
{
    if (w->eof)
        return -1;
    if (wait_ms > 0) {
        struct pollfd pfd = {.fd = w->fd, .events = POLLIN};
        int pr = poll(&pfd, 1, wait_ms);
        if (pr == 0 || (pr < 0 && errno == EINTR))
            return 0;
    }
    if (w->in_cap - w->in_len < 16384) {
        size_t cap = w->in_cap == 0 ? 65536 : w->in_cap * 2;
        unsigned char *nb = realloc(w->in, cap);
        if (nb == NULL)
            return -1;
        w->in = nb;
        w->in_cap = cap;
    }
    ssize_t n = recv(w->fd, w->in + w->in_len, w->in_cap - w->in_len, MSG_DONTWAIT);
    if (n > 0) {
        w->in_len += (size_t)n;
        return n;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    w->eof = true;
    return -1;
}

/* Parses one frame from w->in: 1, 0 (incomplete), -1 (over E2E_WS_FRAME_BYTES_MAX). */
static int ws_parse(struct e2e_ws *w, struct e2e_ws_frame *f)
{
    const unsigned char *in = w->in;
    size_t hdr = 2;
    if (w->in_len < 2)
        return 0;
    uint64_t len = in[1] & 0x7f;
    if (len == 126) {
        if (w->in_len < 4)
            return 0;
        len = ((uint64_t)in[2] << 8) | in[3];
        hdr = 4;
    } else if (len == 127) {
        if (w->in_len < 10)
            return 0;
        len = 0;
        for (int i = 0; i < 8; i++)
            len = (len << 8) | in[2 + i];
        hdr = 10;
    }
    bool masked = (in[1] & 0x80) != 0;
    unsigned char mask[4] = {0, 0, 0, 0};
    if (masked) {
        if (w->in_len < hdr + 4)
            return 0;
        memcpy(mask, in + hdr, 4);
        hdr += 4;
    }
    if (len > E2E_WS_FRAME_BYTES_MAX)
        return -1;
    if (w->in_len < hdr + len)
        return 0;
    memset(f, 0, sizeof *f);
    f->fin = (in[0] & 0x80) != 0;
    f->rsv = (in[0] >> 4) & 0x7;
    f->opcode = in[0] & 0x0f;
    f->masked = masked;
    f->len = (size_t)len;
    f->payload = malloc(f->len + 1);
    if (f->payload == NULL)
        return -1;
    for (size_t i = 0; i < f->len; i++)
        f->payload[i] = in[hdr + i] ^ mask[i % 4];
    f->payload[f->len] = '\0';
    w->in_len -= hdr + f->len;
    memmove(w->in, w->in + hdr + f->len, w->in_len);
    return 1;
}

int e2e_ws_poll_frame(struct e2e_ws *w, struct e2e_ws_frame *f)
{
    int r = ws_parse(w, f);
    if (r != 0)
        return r;
    if (ws_fill(w, 0) < 0)
        return -1;
    r = ws_parse(w, f);
    return r;
}

int e2e_ws_read_frame(struct e2e_ws *w, int64_t deadline_ms, struct e2e_ws_frame *f)
{
    for (;;) {
        int r = ws_parse(w, f);
        if (r != 0)
            return r;
        int64_t left = deadline_ms - pl_mono_ms();
        if (left <= 0)
            return 0;
        if (ws_fill(w, (int)(left > 100 ? 100 : left)) < 0)
            return ws_parse(w, f) == 1 ? 1 : -1;
    }
}

void e2e_ws_frame_free(struct e2e_ws_frame *f)
{
    free(f->payload);
    memset(f, 0, sizeof *f);
}

int e2e_ws_close_code(const struct e2e_ws_frame *f)
{
    if (f->len < 2)
        return E2E_WS_NO_STATUS;
    return (f->payload[0] << 8) | f->payload[1];
}

int e2e_ws_send_frame(struct e2e_ws *w, unsigned b0, const void *payload, size_t len)
{
    unsigned char hdr[14];
    size_t n = 0;
    unsigned char mask[4];
    if (RAND_bytes(mask, sizeof mask) != 1)
        return -1;
    hdr[n++] = (unsigned char)b0;
    if (len < 126) {
        hdr[n++] = (unsigned char)(0x80 | len);
    } else if (len <= 0xffff) {
        hdr[n++] = 0x80 | 126;
        hdr[n++] = (unsigned char)(len >> 8);
        hdr[n++] = (unsigned char)len;
    } else {
        hdr[n++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            hdr[n++] = (unsigned char)((uint64_t)len >> (8 * i));
    }
    memcpy(hdr + n, mask, 4);
    n += 4;
    unsigned char *frame = malloc(n + len);
    if (frame == NULL)
        return -1;
    memcpy(frame, hdr, n);
    const unsigned char *p = payload;
    for (size_t i = 0; i < len; i++)
        frame[n + i] = p[i] ^ mask[i % 4];
    pthread_mutex_lock(&w->write_mu);
    bool ok = write_all(w->fd, frame, n + len, cluster_deadline_ms(E2E_WS_TIMEOUT_MS));
    pthread_mutex_unlock(&w->write_mu);
    free(frame);
    return ok ? 0 : -1;
}

void e2e_ws_send_text(struct e2e_ws *w, const char *text)
{
    assert_int_equal(e2e_ws_send_frame(w, E2E_WS_FIN | E2E_WS_TEXT, text, strlen(text)), 0);
}

/* Reads the answer's head into w->in until the blank line; its length, 0 when the peer
 * closed first (what came is left in w->in). */
static size_t ws_read_head(struct e2e_ws *w, int64_t deadline_ms)
{
    for (;;) {
        for (size_t i = 3; i < w->in_len; i++) {
            if (memcmp(w->in + i - 3, "\r\n\r\n", 4) == 0)
                return i + 1;
        }
        int64_t left = deadline_ms - pl_mono_ms();
        if (left <= 0 || w->in_len > E2E_WS_HEAD_BYTES_MAX)
            return 0;
        if (ws_fill(w, (int)(left > 100 ? 100 : left)) < 0)
            return 0;
    }
}

static long head_status(const char *head)
{
    /* "HTTP/1.1 101 Switching Protocols" */
    if (strncmp(head, "HTTP/1.", 7) != 0 || strlen(head) < 12)
        return 0;
    return strtol(head + 9, NULL, 10);
}

static struct e2e_ws *ws_alloc(int fd)
{
    struct e2e_ws *w = calloc(1, sizeof *w);
    assert_non_null(w);
    w->fd = fd;
    assert_int_equal(pthread_mutex_init(&w->write_mu, NULL), 0);
    return w;
}

static void ws_release(struct e2e_ws *w)
{
    close(w->fd);
    pthread_mutex_destroy(&w->write_mu);
    free(w->in);
    free(w);
}

long e2e_http_raw(int port, const char *request, size_t request_bytes, char *head, size_t cap)
{
    struct e2e_ws *w = ws_alloc(e2e_tcp_connect(port, 0));
    int64_t deadline = cluster_deadline_ms(E2E_WS_TIMEOUT_MS);
    head[0] = '\0';
    /* The peer may answer and close before it read everything: keep what it said. */
    (void)write_all(w->fd, request, request_bytes, deadline);
    size_t n = ws_read_head(w, deadline);
    if (n == 0)
        n = w->in_len;
    if (n >= cap)
        n = cap - 1;
    memcpy(head, w->in, n);
    head[n] = '\0';
    ws_release(w);
    return head_status(head);
}

/* The value of header name in a response head (case-insensitive name), trimmed. */
static bool head_header(const char *head, const char *name, char *out, size_t cap)
{
    struct cluster_reply r = {.headers = (char *)head};
    return cluster_reply_header(&r, name, out, cap);
}

struct e2e_ws *e2e_ws_connect(int port, const char *origin, int rcvbuf_bytes)
{
    unsigned char nonce[16];
    char key[32], request[512], origin_line[300] = "";
    assert_int_equal(RAND_bytes(nonce, sizeof nonce), 1);
    assert_int_equal(EVP_EncodeBlock((unsigned char *)key, nonce, sizeof nonce), 24);
    if (origin != NULL)
        snprintf(origin_line, sizeof origin_line, "Origin: %s\r\n", origin);
    int n = snprintf(request, sizeof request,
                     "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s\r\n",
                     port, key, origin_line);
    assert_true(n > 0 && (size_t)n < sizeof request);
    struct e2e_ws *w = ws_alloc(e2e_tcp_connect(port, rcvbuf_bytes));
    int64_t deadline = cluster_deadline_ms(E2E_WS_TIMEOUT_MS);
    assert_true(write_all(w->fd, request, (size_t)n, deadline));
    size_t head_len = ws_read_head(w, deadline);
    if (head_len == 0)
        fail_msg("no handshake answer from :%d (%zu bytes: %.200s)", port, w->in_len,
                 w->in_len > 0 ? (const char *)w->in : "");
    char head[E2E_WS_HEAD_BYTES_MAX + 1], v[128];
    memcpy(head, w->in, head_len);
    head[head_len] = '\0';
    w->in_len -= head_len;
    memmove(w->in, w->in + head_len, w->in_len);
    if (head_status(head) != 101)
        fail_msg("handshake with :%d answered %.300s", port, head);
    assert_true(head_header(head, "Upgrade", v, sizeof v));
    assert_int_equal(strcasecmp(v, "websocket"), 0);
    assert_true(head_header(head, "Connection", v, sizeof v));
    for (char *c = v; *c != '\0'; c++)
        *c = (char)tolower((unsigned char)*c);
    assert_non_null(strstr(v, "upgrade"));
    /* The accept key, computed here (not by shared/ws.c). */
    char concat[sizeof key + sizeof E2E_WS_GUID], expect[64];
    unsigned char sha[EVP_MAX_MD_SIZE];
    unsigned sha_len = 0;
    snprintf(concat, sizeof concat, "%s%s", key, E2E_WS_GUID);
    assert_int_equal(EVP_Digest(concat, strlen(concat), sha, &sha_len, EVP_sha1(), NULL), 1);
    EVP_EncodeBlock((unsigned char *)expect, sha, (int)sha_len);
    assert_true(head_header(head, "Sec-WebSocket-Accept", v, sizeof v));
    assert_string_equal(v, expect);
    return w;
}

void e2e_ws_free(struct e2e_ws *w, int code)
{
    if (w == NULL)
        return;
    if (code > 0 && !w->eof) {
        unsigned char payload[2] = {(unsigned char)(code >> 8), (unsigned char)code};
        (void)e2e_ws_send_frame(w, E2E_WS_FIN | E2E_WS_CLOSE, payload, sizeof payload);
    }
    ws_release(w);
}

/* Appends a fragment to a message being joined. */
static void msg_append(unsigned char **msg, size_t *len, const struct e2e_ws_frame *f)
{
    unsigned char *nb = realloc(*msg, *len + f->len + 1);
    assert_non_null(nb);
    memcpy(nb + *len, f->payload, f->len);
    *len += f->len;
    nb[*len] = '\0';
    *msg = nb;
}

cJSON *e2e_ws_recv_json(struct e2e_ws *w, long timeout_ms)
{
    int64_t deadline = cluster_deadline_ms(timeout_ms);
    unsigned char *msg = NULL;
    size_t len = 0;
    for (;;) {
        struct e2e_ws_frame f = {0};
        int r = e2e_ws_read_frame(w, deadline, &f);
        if (r == 0)
            fail_msg("no WebSocket message within %ld ms", timeout_ms);
        if (r < 0)
            fail_msg("the WebSocket connection ended while a message was awaited");
        if (f.opcode == E2E_WS_PING) {
            (void)e2e_ws_send_frame(w, E2E_WS_FIN | E2E_WS_PONG, f.payload, f.len);
        } else if (f.opcode == E2E_WS_CLOSE) {
            int code = e2e_ws_close_code(&f);
            e2e_ws_frame_free(&f);
            fail_msg("the server closed with %d while a message was awaited", code);
        } else if (f.opcode == E2E_WS_TEXT || f.opcode == E2E_WS_CONT) {
            msg_append(&msg, &len, &f);
            if (f.fin) {
                e2e_ws_frame_free(&f);
                cJSON *json = cJSON_ParseWithLength((const char *)msg, len);
                if (json == NULL)
                    fail_msg("a WebSocket message is not JSON: %.200s", msg);
                free(msg);
                return json;
            }
        } else if (f.opcode != E2E_WS_PONG) {
            fail_msg("unexpected WebSocket opcode %d", f.opcode);
        }
        e2e_ws_frame_free(&f);
    }
}

int e2e_ws_wait_close(struct e2e_ws *w, long timeout_ms, int *skipped)
{
    int64_t deadline = cluster_deadline_ms(timeout_ms);
    if (skipped != NULL)
        *skipped = 0;
    for (;;) {
        struct e2e_ws_frame f = {0};
        int r = e2e_ws_read_frame(w, deadline, &f);
        if (r == 0)
            fail_msg("the server did not close within %ld ms", timeout_ms);
        if (r < 0)
            return E2E_WS_ABNORMAL;
        if (f.opcode == E2E_WS_CLOSE) {
            int code = e2e_ws_close_code(&f);
            e2e_ws_frame_free(&f);
            return code;
        }
        if (skipped != NULL && f.opcode != E2E_WS_PING && f.opcode != E2E_WS_PONG)
            (*skipped)++;
        e2e_ws_frame_free(&f);
    }
}

void e2e_ws_subscribe(struct e2e_ws *w, const char *user, const char *token, const char *epoch,
                      int64_t after)
{
    cJSON *m = cJSON_CreateObject();
    assert_non_null(m);
    cJSON_AddStringToObject(m, "op", "subscribe");
    cJSON_AddStringToObject(m, "user", user);
    if (token != NULL)
        cJSON_AddStringToObject(m, "token", token);
    if (epoch != NULL)
        cJSON_AddStringToObject(m, "epoch", epoch);
    if (after >= 0)
        cJSON_AddNumberToObject(m, "after", (double)after);
    char *text = cJSON_PrintUnformatted(m);
    cJSON_Delete(m);
    assert_non_null(text);
    e2e_ws_send_text(w, text);
    free(text);
}

cJSON *e2e_ws_subscribe_ok(struct e2e_ws *w, const char *user, const char *token, const char *epoch,
                           int64_t after)
{
    e2e_ws_subscribe(w, user, token, epoch, after);
    cJSON *m = e2e_ws_recv_json(w, E2E_WS_TIMEOUT_MS);
    if (strcmp(e2e_str(m, "op"), "subscribed") != 0) {
        char *s = cJSON_PrintUnformatted(m);
        fail_msg("subscribe %s answered %s", user, s);
    }
    assert_string_equal(e2e_str(m, "user"), user);
    return m;
}

void e2e_ws_token(struct e2e *e, const char *user, char *out)
{
    char path[128];
    struct e2e_resp r;
    snprintf(path, sizeof path, "/v1/users/%s/ws-token", user);
    e2e_wallet(e, "POST", path, NULL, NULL, &r);
    e2e_expect(&r, 200, NULL);
    assert_true(e2e_int(r.json, "expires_at") > pl_now_ms() / 1000);
    assert_int_equal(pl_strlcpy(out, e2e_str(r.json, "token"), E2E_SECRET_BYTES_MAX), 0);
    e2e_resp_free(&r);
}

int64_t e2e_user_head(struct e2e *e, const char *user, char *epoch_out)
{
    char path[128];
    struct e2e_resp r;
    snprintf(path, sizeof path, "/v1/users/%s", user);
    e2e_wallet(e, "GET", path, NULL, NULL, &r);
    e2e_expect(&r, 200, NULL);
    if (epoch_out != NULL)
        assert_int_equal(pl_strlcpy(epoch_out, e2e_str(r.json, "epoch"), E2E_SECRET_BYTES_MAX), 0);
    int64_t head = e2e_int(r.json, "head_seq");
    e2e_resp_free(&r);
    return head;
}

cJSON *e2e_user_events(struct e2e *e, const char *user, int64_t after)
{
    cJSON *all = cJSON_CreateArray();
    assert_non_null(all);
    for (;;) {
        char path[160];
        struct e2e_resp r;
        snprintf(path, sizeof path, "/v1/users/%s/events?after=%lld&limit=%s", user,
                 (long long)after, E2E_EVENTS_PAGE);
        e2e_wallet(e, "GET", path, NULL, NULL, &r);
        e2e_expect(&r, 200, NULL);
        cJSON *list = cJSON_GetObjectItemCaseSensitive(r.json, "events");
        assert_true(cJSON_IsArray(list));
        int n = cJSON_GetArraySize(list);
        while (cJSON_GetArraySize(list) > 0) {
            cJSON *ev = cJSON_DetachItemFromArray(list, 0);
            assert_int_equal(e2e_int(ev, "seq"), after + 1);
            after++;
            cJSON_AddItemToArray(all, ev);
        }
        e2e_resp_free(&r);
        if (n == 0)
            return all;
    }
}
