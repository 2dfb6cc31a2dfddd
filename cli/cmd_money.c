/* cmd_money.c owns the commands that move money: `paylab topup`, `paylab withdraw` and
 * `paylab send`, with --key (Idempotency-Key), --mode (coupling) and --wait: poll:MS (poll
 * GET /v1/transactions/ID until final) or ws (subscribe on the gateway first, then wait for
 * the pushed final event; wait_ws.c). It turns the wallet's answer into one tidy line and
 * the exit code scripts rely on: 0 succeeded, 1 refused or failed, 3 no answer, 4 not final.
 * --json prints one object with the same keys whatever --wait says (print_json).
 * Must not: retry a money-moving POST by itself (a retry is the user's choice, with --key),
 * or infer an outcome the wallet did not state.
 * Invariant: the exit code follows the transaction's own status when the answer has one. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "client.h"
#include "ids.h"
#include "json.h"
#include "out.h"
#include "pl.h"
#include "wait_ws.h"

#define MONEY_PATH_BYTES_MAX 128
#define WAIT_INTERVAL_MS_MIN 10
#define WAIT_INTERVAL_MS_MAX 60000
/* Longer than the async reconciliation horizon with default flags (60 s TTL + 3 s grace +
 * 2 × 1 s), so a --wait ends with the final state unless faults are still on. */
#define WAIT_TIMEOUT_MS_DEFAULT 120000
/* A push needs no horizon of polls: the final event comes when the wallet settles. */
#define WAIT_WS_TIMEOUT_MS_DEFAULT 30000
#define WAIT_TIMEOUT_MS_MAX 3600000

enum { OPT_MODE, OPT_KEY, OPT_WAIT, OPT_WAIT_TIMEOUT, OPT_NOTE = OPT_MODE };

static const struct cli_opt bank_opts[] = {
    {"mode", "MODE", "sync (default), sync-blocking or async: how the wallet talks to the bank"},
    {"key", "K|auto", "Idempotency-Key to send (auto: a fresh one, printed with -v)"},
    {"wait", "ws|poll:MS",
     "until final: ws = the gateway pushes it; poll:MS = ask the wallet every MS ms"},
    {"wait-timeout-ms", "MS", "give up waiting after MS ms (exit 4; ws 30000, poll 120000)"},
};

static const struct cli_spec topup_spec = {
    .usage = "topup USER AMOUNT [--mode MODE] [--key K|auto] [--wait ws|poll:MS]",
    .summary = "Adds AMOUNT rupees (500, 500.5, 500.50) from USER's bank account to the wallet.",
    .pos_min = 2,
    .pos_max = 2,
    .opts = bank_opts,
    .opts_count = PL_ARRAY_LEN(bank_opts),
};

static const struct cli_spec withdraw_spec = {
    .usage = "withdraw USER AMOUNT [--mode MODE] [--key K|auto] [--wait ws|poll:MS]",
    .summary = "Moves AMOUNT rupees from USER's wallet back to USER's bank account.",
    .pos_min = 2,
    .pos_max = 2,
    .opts = bank_opts,
    .opts_count = PL_ARRAY_LEN(bank_opts),
};

static const struct cli_opt send_opts[] = {
    {"note", "TEXT", "a note for the payee, e.g. \"dinner\""},
    {"key", "K|auto", "Idempotency-Key to send (auto: a fresh one, printed with -v)"},
};

static const struct cli_spec send_spec = {
    .usage = "send FROM TO AMOUNT [--note TEXT] [--key K|auto]",
    .summary = "Pays AMOUNT rupees from FROM's wallet to TO's wallet (no bank involved).",
    .pos_min = 3,
    .pos_max = 3,
    .opts = send_opts,
    .opts_count = PL_ARRAY_LEN(send_opts),
};

/* One money-moving request, as the user asked for it. */
struct money_op {
    const char *path;  /* /v1/topups … */
    const char *label; /* "top-up" */
    const char *user;  /* the payer (or the user topping up) */
    const char *payee; /* send only */
    int64_t amount_minor;
    char key[IDEM_KEY_CHARS_MAX + 1]; /* "" when none */
    bool key_generated;
    long wait_interval_ms; /* 0: no polling */
    bool wait_ws;          /* --wait ws */
    long wait_timeout_ms;
};

static int parse_amount(const struct cli_spec *spec, const char *s, int64_t *out)
{
    if (money_parse(s, out) != 0 || !money_amount_valid(*out)) {
        return cli_usage_error(spec,
                               "'%s' is not an amount: rupees from 0.01 to "
                               "1,00,00,00,00,000, at most 2 decimals (500, 500.5, 500.50)",
                               s);
    }
    return 0;
}

static int parse_key(const struct cli_spec *spec, const char *s, struct money_op *op)
{
    if (s == NULL) {
        return 0;
    }
    if (strcmp(s, "auto") == 0) {
        op->key_generated = true;
        return ids_new("key_", op->key, sizeof op->key) == 0 ? 0 : CLI_EXIT_USAGE;
    }
    if (!ids_idem_key_valid(s)) {
        return cli_usage_error(spec, "--key takes 1 to 64 printable characters without spaces");
    }
    return pl_strlcpy(op->key, s, sizeof op->key) == 0 ? 0 : CLI_EXIT_USAGE;
}

static int parse_long(const char *s, long min, long max, long *out)
{
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || v < min || v > max) {
        return PL_EINVAL;
    }
    *out = v;
    return 0;
}

static int parse_wait(const struct cli_spec *spec, const struct cli_args *a, struct money_op *op)
{
    const char *w = a->opt[OPT_WAIT];
    op->wait_ws = w != NULL && strcmp(w, "ws") == 0;
    op->wait_timeout_ms = op->wait_ws ? WAIT_WS_TIMEOUT_MS_DEFAULT : WAIT_TIMEOUT_MS_DEFAULT;
    if (a->opt[OPT_WAIT_TIMEOUT] != NULL &&
        parse_long(a->opt[OPT_WAIT_TIMEOUT], 1, WAIT_TIMEOUT_MS_MAX, &op->wait_timeout_ms) != 0) {
        return cli_usage_error(spec, "--wait-timeout-ms takes 1..%d", WAIT_TIMEOUT_MS_MAX);
    }
    if (w == NULL || op->wait_ws) {
        return 0;
    }
    if (strncmp(w, "poll:", 5) != 0 ||
        parse_long(w + 5, WAIT_INTERVAL_MS_MIN, WAIT_INTERVAL_MS_MAX, &op->wait_interval_ms) != 0) {
        return cli_usage_error(spec, "--wait takes poll:MS (MS from %d to %d) or ws, not '%s'",
                               WAIT_INTERVAL_MS_MIN, WAIT_INTERVAL_MS_MAX, w);
    }
    return 0;
}

static int parse_mode(const struct cli_spec *spec, const char *s, const char **mode)
{
    *mode = s != NULL ? s : "sync";
    if (strcmp(*mode, "sync") == 0 || strcmp(*mode, "async") == 0 ||
        strcmp(*mode, "sync-blocking") == 0) {
        return 0;
    }
    return cli_usage_error(spec, "--mode takes sync, sync-blocking or async, not '%s'", *mode);
}

/* ---------------------------------------------------------------- the answer, for people */

static bool is_final(const char *status)
{
    return strcmp(status, "succeeded") == 0 || strcmp(status, "failed") == 0;
}

static int exit_code(long http_status, const char *status)
{
    if (strcmp(status, "succeeded") == 0) {
        return CLI_EXIT_OK;
    }
    if (strcmp(status, "pending") == 0 || strcmp(status, "unknown") == 0) {
        return CLI_EXIT_NOT_FINAL;
    }
    if (strcmp(status, "failed") == 0) {
        return CLI_EXIT_REFUSED;
    }
    if (http_status == 202 || http_status == 502 || http_status == 504) {
        return CLI_EXIT_NOT_FINAL;
    }
    return http_status >= 200 && http_status < 300 ? CLI_EXIT_OK : CLI_EXIT_REFUSED;
}

/* "₹500.00 → alice (balance ₹500.00)" and its siblings, by kind. */
static void describe_move(const cJSON *t, const struct money_op *op, char *out, size_t cap)
{
    char amount[MONEY_FORMAT_BYTES_MAX], balance[MONEY_FORMAT_BYTES_MAX];
    int64_t amount_minor = op->amount_minor, balance_minor = 0;
    out_int(t, "amount_minor", &amount_minor);
    bool has_balance = out_int(t, "balance_minor", &balance_minor);
    out_money(amount_minor, amount);
    out_money(balance_minor, balance);
    const char *note = out_str(t, "note", NULL);
    if (op->payee != NULL) {
        snprintf(out, cap, "%s %s → %s%s%s%s", amount, op->user, op->payee,
                 note != NULL ? " \"" : "", note != NULL ? note : "", note != NULL ? "\"" : "");
    } else if (strcmp(op->label, "top-up") == 0) {
        snprintf(out, cap, "%s → %s", amount, op->user);
    } else {
        snprintf(out, cap, "%s %s → %s", amount, op->user, out_str(t, "counterparty", "the bank"));
    }
    if (has_balance) {
        size_t len = strlen(out);
        snprintf(out + len, cap - len, " (%s%sbalance %s)", op->payee != NULL ? op->user : "",
                 op->payee != NULL ? "'s " : "", balance);
    }
}

/* "(504 bank_timeout)", or "" for a plain 200. */
static void describe_status(const struct client_resp *r, char *out, size_t cap)
{
    const char *code = client_error_code(r);
    if (r->status == 200 || r->status == 201) {
        out[0] = '\0';
        return;
    }
    snprintf(out, cap, " (%ld%s%s)", r->status, code[0] != '\0' ? " " : "", code);
}

static void print_final_line(const struct money_op *op, const struct client_resp *r, const char *id,
                             const char *status, const char *suffix)
{
    char move[256], code[96];
    const char *message = client_error_message(r);
    const cJSON *t = r->json;
    describe_move(t, op, move, sizeof move);
    describe_status(r, code, sizeof code);
    /* A sync answer settled by another path is the lesson: say which. */
    const char *by = out_str(t, "settled_by", "response");
    char settled[48] = "";
    if (strcmp(by, "response") != 0) {
        snprintf(settled, sizeof settled, ", settled by the %s", by);
    }
    if (strcmp(status, "succeeded") == 0 && r->elapsed_ms < 0) { /* the suffix says when */
        printf("✓ %s %s succeeded: %s%s%s\n", op->label, id, move, settled, suffix);
        return;
    }
    if (strcmp(status, "succeeded") == 0) {
        printf("✓ %s %s succeeded: %s in %lld ms%s%s\n", op->label, id, move,
               (long long)r->elapsed_ms, settled, suffix);
        return;
    }
    const char *reason = message[0] != '\0' ? message : out_str(t, "failure_reason", "failed");
    const char *after = strcmp(op->label, "withdrawal") == 0
                            ? "the held money went back to the wallet"
                            : "no money moved";
    if (strcmp(client_error_code(r), "bank_unreachable") == 0) {
        after = "no money moved — is bank-service running?";
    }
    printf("✗ %s %s failed: %s%s; %s%s%s\n", op->label, id, reason, code, after, settled, suffix);
}

/* suffix, when not "", replaces the "check with" hint (a --wait says what happens next). */
static void print_open_line(const struct money_op *op, const struct client_resp *r, const char *id,
                            const char *status, const char *suffix)
{
    char code[96];
    describe_status(r, code, sizeof code);
    const char *message = client_error_message(r);
    if (strcmp(status, "pending") == 0 && suffix[0] != '\0') {
        printf("… %s %s pending: accepted in %lld ms%s%s\n", op->label, id,
               (long long)r->elapsed_ms, code, suffix);
        return;
    }
    if (suffix[0] != '\0') {
        printf("✗ %s %s %s: %s%s%s\n", op->label, id, status,
               message[0] != '\0' ? message : "the bank's answer is not known yet", code, suffix);
        return;
    }
    if (strcmp(status, "pending") == 0) {
        printf("… %s %s pending: accepted in %lld ms%s; the bank's answer comes by webhook — "
               "check with: paylab tx %s (or add --wait poll:200)\n",
               op->label, id, (long long)r->elapsed_ms, code, id);
        return;
    }
    bool told = strstr(message, "reconciler") != NULL; /* the wallet's message already says it */
    printf("✗ %s %s unknown: %s%s%s — check with: paylab tx %s\n", op->label, id,
           message[0] != '\0' ? message : "the bank's answer is not known yet", code,
           told ? "" : "; the reconciler will settle it", id);
}

static void print_refusal(const struct money_op *op, const struct client_resp *r)
{
    const char *code = client_error_code(r);
    const char *message = client_error_message(r);
    printf("✗ %s refused: %ld %s%s%s\n", op->label, r->status, code[0] != '\0' ? code : "error",
           message[0] != '\0' ? " — " : "", message);
    if (r->status == 409) {
        printf("  the first request with this key is still in flight: repeat shortly with the "
               "same --key\n");
    }
    if (r->retry_after[0] != '\0') {
        printf("  the wallet asks to retry after %s s\n", r->retry_after);
    }
}

/* ---------------------------------------------------------------- --json: one shape */

/* The transaction's fields in every --json answer, in this order, whatever --wait says;
 * null where the record lacks them (a refusal before any transaction: 404 unknown_user). */
static const char *const txn_fields[] = {"id",
                                         "kind",
                                         "mode",
                                         "status",
                                         "amount_minor",
                                         "currency",
                                         "user",
                                         "counterparty",
                                         "note",
                                         "bank_payment_id",
                                         "failure_reason",
                                         "settled_by",
                                         "expires_at_ms",
                                         "created_at_ms",
                                         "updated_at_ms",
                                         "balance_minor"};

/* What a --wait saw; via "none" (no --wait) leaves the rest unused. */
struct money_wait {
    const char *via;    /* "none", "ws" or "poll" */
    bool waited;        /* the first answer was open, so the wait ran */
    bool final;         /* ... and it saw the final state */
    int64_t elapsed_ms; /* from sending the request until then (or until it gave up) */
    int polls;
    long interval_ms;
    const char *gateway; /* ws: the gateway subscribed to, and its head seq then */
    int64_t head_seq;
    bool has_event; /* ws: the final event arrived */
    int64_t event_seq, push_us;
};

/* What the report needs besides the last record: the request's own answer, the wait. */
struct money_outcome {
    const struct client_resp *first;
    struct money_wait wait;
};

static void add_copy(cJSON *o, const char *key, const cJSON *v)
{
    cJSON_AddItemToObject(o, key, v != NULL ? cJSON_Duplicate(v, true) : cJSON_CreateNull());
}

static void add_int_or_null(cJSON *o, const char *key, bool has, int64_t v)
{
    if (has) {
        json_add_int64(o, key, v);
    } else {
        cJSON_AddNullToObject(o, key);
    }
}

static void add_str_or_null(cJSON *o, const char *key, const char *v)
{
    if (v != NULL) {
        cJSON_AddStringToObject(o, key, v);
    } else {
        cJSON_AddNullToObject(o, key);
    }
}

static cJSON *wait_json(const struct money_wait *w, long first_http_status)
{
    bool ws = strcmp(w->via, "ws") == 0, poll = strcmp(w->via, "poll") == 0;
    cJSON *o = cJSON_CreateObject();
    if (o == NULL) {
        return NULL;
    }
    cJSON_AddStringToObject(o, "via", w->via);
    if (w->waited) {
        cJSON_AddBoolToObject(o, "final", w->final);
    } else {
        cJSON_AddNullToObject(o, "final");
    }
    add_int_or_null(o, "elapsed_ms", w->waited, w->elapsed_ms);
    add_int_or_null(o, "polls", poll && w->waited, w->polls);
    add_int_or_null(o, "interval_ms", poll, w->interval_ms);
    add_str_or_null(o, "gateway", ws ? w->gateway : NULL);
    add_int_or_null(o, "head_seq", ws, w->head_seq);
    add_int_or_null(o, "event_seq", w->has_event, w->event_seq);
    add_int_or_null(o, "push_us", w->has_event, w->push_us);
    json_add_int64(o, "first_http_status", first_http_status);
    return o;
}

/* One object, the same keys in every case (docs/api.md): the transaction as last known,
 * then the request's own answer (status, error, replay, key, time), then the wait. */
static void print_json(const struct money_op *op, const cJSON *record,
                       const struct money_outcome *oc)
{
    const struct client_resp *first = oc->first;
    cJSON *o = cJSON_CreateObject();
    if (o == NULL) {
        fprintf(stderr, "paylab: out of memory\n");
        return;
    }
    for (size_t i = 0; i < PL_ARRAY_LEN(txn_fields); i++) {
        add_copy(o, txn_fields[i], cJSON_GetObjectItemCaseSensitive(record, txn_fields[i]));
    }
    cJSON_AddBoolToObject(o, "final", is_final(out_str(record, "status", "")));
    json_add_int64(o, "http_status", first->status);
    add_copy(o, "error", cJSON_GetObjectItemCaseSensitive(first->json, "error"));
    cJSON_AddBoolToObject(o, "replayed", first->replayed);
    add_str_or_null(o, "idempotency_key", op->key[0] != '\0' ? op->key : NULL);
    json_add_int64(o, "elapsed_ms", first->elapsed_ms);
    cJSON_AddItemToObject(o, "wait", wait_json(&oc->wait, first->status));
    out_json(o);
    cJSON_Delete(o);
}

/* Prints the answer r (human, or --json with oc) and returns the exit code. */
static int report(const struct cli *cli, const struct money_op *op, const struct client_resp *r,
                  const char *suffix, const struct money_outcome *oc)
{
    const char *status = out_str(r->json, "status", "");
    const char *id = out_str(r->json, "id", "");
    int rc = exit_code(r->status, status);
    if (cli->json) {
        print_json(op, r->json, oc);
        return rc;
    }
    if (id[0] != '\0' && is_final(status)) {
        print_final_line(op, r, id, status, suffix);
    } else if (id[0] != '\0' && status[0] != '\0') {
        print_open_line(op, r, id, status, suffix);
    } else {
        print_refusal(op, r);
    }
    if (r->replayed) {
        printf("  a replay: the wallet answered from its record of the first request "
               "(Idempotent-Replayed: true)\n");
    }
    if (op->key_generated && rc == CLI_EXIT_NOT_FINAL) {
        printf("  idempotency key %s: repeat with --key %s to get its current state\n", op->key,
               op->key);
    }
    return rc;
}

/* ---------------------------------------------------------------- --wait poll:MS */

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
        /* interrupted: sleep the rest */
    }
}

struct wait_result {
    int polls;
    int64_t elapsed_ms;
    bool final;
};

/* Polls GET /v1/transactions/ID until final or op->wait_timeout_ms. On CLI_CONTINUE *last
 * holds the last answer (caller frees); otherwise an exit code (the error is printed). */
static int poll_until_final(const struct cli *cli, const struct money_op *op, const char *id,
                            struct client_resp *last, struct wait_result *w)
{
    char path[MONEY_PATH_BYTES_MAX];
    snprintf(path, sizeof path, "/v1/transactions/%s", id);
    struct client_req req = {
        .method = "GET", .base_url = cli->wallet_url, .path = path, .service = "wallet"};
    int64_t start_ms = pl_mono_ms();
    memset(w, 0, sizeof *w);
    for (;;) {
        sleep_ms(op->wait_interval_ms);
        int rc = client_fetch(cli, &req, last);
        w->polls++;
        w->elapsed_ms = pl_mono_ms() - start_ms;
        if (rc != CLI_CONTINUE) {
            return rc;
        }
        w->final = is_final(out_str(last->json, "status", ""));
        if (w->final || w->elapsed_ms + op->wait_interval_ms > op->wait_timeout_ms) {
            return CLI_CONTINUE;
        }
        client_free(last);
    }
}

static int wait_and_report(const struct cli *cli, const struct money_op *op,
                           struct money_outcome *oc)
{
    const struct client_resp *first = oc->first;
    const char *id = out_str(first->json, "id", "");
    struct client_resp last;
    struct wait_result w;
    int rc = poll_until_final(cli, op, id, &last, &w);
    if (rc != CLI_CONTINUE) {
        return rc;
    }
    char suffix[128];
    snprintf(suffix, sizeof suffix, " — %s after %d poll%s, every %ld ms",
             w.final ? "final" : "still not final", w.polls, w.polls == 1 ? "" : "s",
             op->wait_interval_ms);
    last.elapsed_ms = first->elapsed_ms + w.elapsed_ms;
    oc->wait.waited = true;
    oc->wait.final = w.final;
    oc->wait.elapsed_ms = last.elapsed_ms;
    oc->wait.polls = w.polls;
    rc = report(cli, op, &last, suffix, oc);
    if (!w.final && !cli->json) {
        printf("… still %s after %lld ms: check later with: paylab tx %s\n",
               out_str(last.json, "status", "open"), (long long)w.elapsed_ms, id);
    }
    client_free(&last);
    return rc;
}

/* ---------------------------------------------------------------- --wait ws */

/* What the push told, for when the record cannot be read after it: the event's transaction
 * (status, amount…) with the fields fixed at creation from the first answer, and the user's
 * balance. No settled_by, no failure reason (`paylab tx ID` has them): nothing stale. */
static cJSON *final_json(const cJSON *first, const struct wait_ws_final *f, bool for_people)
{
    static const char *const kept[] = {"id",   "kind",         "mode", "amount_minor",
                                       "user", "counterparty", "note", "currency"};
    cJSON *t = cJSON_CreateObject();
    for (size_t i = 0; t != NULL && i < PL_ARRAY_LEN(kept); i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(first, kept[i]);
        if (v != NULL) {
            cJSON_AddItemToObject(t, kept[i], cJSON_Duplicate(v, true));
        }
    }
    if (t == NULL) {
        return NULL;
    }
    cJSON_AddStringToObject(t, "status", f->status);
    if (f->has_balance) {
        cJSON_AddNumberToObject(t, "balance_minor", (double)f->balance_minor);
    }
    if (for_people && strcmp(f->status, "failed") == 0) {
        char reason[128];
        snprintf(reason, sizeof reason, "declined or expired at the bank (paylab tx %s says why)",
                 out_str(first, "id", "ID"));
        cJSON_AddStringToObject(t, "failure_reason", reason);
    }
    return t;
}

/* The wallet's record of id once its final event has come (one GET, not a poll: the push
 * said it is final), so the report has every field, settled_by among them, as without
 * --wait. NULL when that GET fails (nothing printed); the caller keeps what the push told.
 * Caller cJSON_Delete()s. */
static cJSON *record_after_push(const struct cli *cli, const char *id)
{
    char path[MONEY_PATH_BYTES_MAX];
    snprintf(path, sizeof path, "/v1/transactions/%s", id);
    struct client_req req = {
        .method = "GET", .base_url = cli->wallet_url, .path = path, .service = "wallet"};
    struct client_resp r;
    if (client_call(cli, &req, &r) != 0) {
        return NULL;
    }
    cJSON *record = NULL;
    if (r.outcome == CLIENT_ANSWERED && r.status == 200 &&
        is_final(out_str(r.json, "status", ""))) {
        record = r.json;
        r.json = NULL;
    }
    client_free(&r);
    return record;
}

static void note_ws_wait(struct money_wait *mw, const struct wait_ws *ws,
                         const struct wait_ws_final *f, int64_t elapsed_ms)
{
    mw->waited = true;
    mw->final = f->final;
    mw->elapsed_ms = elapsed_ms;
    mw->head_seq = wait_ws_head_seq(ws);
    mw->gateway = wait_ws_url(ws);
    mw->has_event = f->final;
    mw->event_seq = f->seq;
    mw->push_us = f->push_us;
}

static int ws_wait_and_report(const struct cli *cli, const struct money_op *op,
                              struct money_outcome *oc, struct wait_ws *ws, int64_t start_ms)
{
    const struct client_resp *first = oc->first;
    const char *id = out_str(first->json, "id", "");
    struct wait_ws_final f;
    wait_ws_until_final(ws, id, start_ms + op->wait_timeout_ms, &f);
    int64_t elapsed_ms = (f.final ? f.received_mono_ms : pl_mono_ms()) - start_ms;
    note_ws_wait(&oc->wait, ws, &f, elapsed_ms);
    struct client_resp last = {.outcome = CLIENT_ANSWERED, .status = 200, .elapsed_ms = -1};
    last.json = f.final ? record_after_push(cli, id) : cJSON_Duplicate(first->json, true);
    if (f.final && last.json == NULL) {
        last.json = final_json(first->json, &f, !cli->json);
    }
    if (last.json == NULL) {
        fprintf(stderr, "paylab: out of memory\n");
        return CLI_EXIT_NOT_FINAL;
    }
    int rc = CLI_EXIT_NOT_FINAL;
    if (f.final) {
        char suffix[192], push[OUT_MS_BYTES_MAX];
        snprintf(suffix, sizeof suffix,
                 " — final via WebSocket %lld ms after the request; pushed %s after the "
                 "wallet's commit",
                 (long long)elapsed_ms, out_ms_us(f.push_us, push));
        rc = report(cli, op, &last, suffix, oc);
    } else if (cli->json) {
        print_json(op, last.json, oc);
    } else {
        const char *why = wait_ws_error(ws);
        printf("… %s %s still %s after %lld ms: no final event from %s%s%s — check later "
               "with: paylab tx %s\n",
               op->label, id, out_str(first->json, "status", "open"), (long long)elapsed_ms,
               wait_ws_url(ws), why[0] != '\0' ? " — " : "", why, id);
    }
    cJSON_Delete(last.json);
    return rc;
}

/* ---------------------------------------------------------------- the request */

static char *build_body(const struct money_op *op, const char *mode, const char *note)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL) {
        return NULL;
    }
    if (op->payee != NULL) {
        cJSON_AddStringToObject(o, "from", op->user);
        cJSON_AddStringToObject(o, "to", op->payee);
    } else {
        cJSON_AddStringToObject(o, "user", op->user);
    }
    cJSON_AddNumberToObject(o, "amount_minor", (double)op->amount_minor);
    cJSON_AddStringToObject(o, "currency", "INR");
    if (mode != NULL) {
        cJSON_AddStringToObject(o, "mode", mode);
    }
    if (note != NULL) {
        cJSON_AddStringToObject(o, "note", note);
    }
    char *s = json_print(o);
    cJSON_Delete(o);
    return s;
}

static void transport_hint(const struct money_op *op)
{
    if (op->key[0] != '\0') {
        fprintf(stderr,
                "  the %s may or may not be recorded: repeat with --key %s to find out "
                "(a replay never moves money twice)\n",
                op->label, op->key);
    } else {
        fprintf(stderr,
                "  the %s may or may not be recorded: check with: paylab history %s "
                "(next time pass --key auto, so a repeat is safe)\n",
                op->label, op->user);
    }
}

/* Sends the request. CLI_CONTINUE with *r (an answer, any status; caller client_free()s),
 * or an exit code after printing why no answer came. */
static int post(struct cli *cli, const struct money_op *op, const char *mode, const char *note,
                struct client_resp *r)
{
    char *body = build_body(op, mode, note);
    if (body == NULL) {
        return CLI_EXIT_USAGE;
    }
    struct client_req req = {.method = "POST",
                             .base_url = cli->wallet_url,
                             .path = op->path,
                             .body = body,
                             .idem_key = op->key[0] != '\0' ? op->key : NULL,
                             .service = "wallet"};
    int rc = client_call(cli, &req, r);
    free(body);
    if (rc != 0) {
        fprintf(stderr, "paylab: out of memory or URL too long\n");
        return CLI_EXIT_USAGE;
    }
    if (r->outcome != CLIENT_ANSWERED) {
        rc = client_report_transport(cli, &req, r);
        if (r->outcome != CLIENT_REFUSED) {
            transport_hint(op);
        }
        client_free(r);
        return rc;
    }
    return CLI_CONTINUE;
}

/* Reports the answer, after waiting for the final state when asked to and still open. */
static int after_answer(const struct cli *cli, const struct money_op *op,
                        const struct client_resp *r, struct wait_ws *ws, int64_t start_ms)
{
    const char *status = out_str(r->json, "status", "");
    bool open = strcmp(status, "pending") == 0 || strcmp(status, "unknown") == 0;
    bool has_id = out_str(r->json, "id", NULL) != NULL;
    struct money_outcome oc = {.first = r};
    oc.wait.via = ws != NULL ? "ws" : op->wait_interval_ms > 0 ? "poll" : "none";
    oc.wait.interval_ms = op->wait_interval_ms;
    if (ws != NULL) {
        oc.wait.gateway = wait_ws_url(ws);
        oc.wait.head_seq = wait_ws_head_seq(ws);
    }
    if (open && has_id && (op->wait_interval_ms > 0 || ws != NULL)) {
        char waiting[96];
        snprintf(waiting, sizeof waiting, " — waiting for the final state %s%ld ms",
                 ws != NULL ? "pushed over the WebSocket, up to " : "by polling every ",
                 ws != NULL ? op->wait_timeout_ms : op->wait_interval_ms);
        if (!cli->json) {
            report(cli, op, r, waiting, &oc);
        }
        return ws != NULL ? ws_wait_and_report(cli, op, &oc, ws, start_ms)
                          : wait_and_report(cli, op, &oc);
    }
    return report(cli, op, r,
                  ws != NULL && has_id ? " (final in the answer: no push to wait for)" : "", &oc);
}

static int run(struct cli *cli, const struct money_op *op, const char *mode, const char *note)
{
    struct wait_ws *ws = NULL;
    if (op->wait_ws) { /* subscribed before the request, so its final event cannot be missed */
        int rc = wait_ws_open(cli, op->user, &ws);
        if (rc != CLI_CONTINUE) {
            return rc;
        }
    }
    int64_t start_ms = pl_mono_ms();
    struct client_resp r;
    int rc = post(cli, op, mode, note, &r);
    if (rc == CLI_CONTINUE) {
        rc = after_answer(cli, op, &r, ws, start_ms);
        client_free(&r);
    }
    wait_ws_close(ws);
    return rc;
}

/* topup and withdraw share everything but the path and the label. */
static int bank_command(struct cli *cli, const struct cli_spec *spec, const char *path,
                        const char *label, int argc, char **argv)
{
    struct cli_args a;
    struct money_op op = {.path = path, .label = label};
    const char *mode = NULL;
    int rc = cli_parse(cli, spec, argc, argv, &a);
    if (rc != CLI_CONTINUE) {
        return rc;
    }
    op.user = a.pos[0];
    if (!ids_user_valid(op.user)) {
        return cli_usage_error(spec, "'%s' is not a user handle ([a-z0-9_], 1 to 32)", op.user);
    }
    if (parse_amount(spec, a.pos[1], &op.amount_minor) != 0 ||
        parse_mode(spec, a.opt[OPT_MODE], &mode) != 0 ||
        parse_key(spec, a.opt[OPT_KEY], &op) != 0 || parse_wait(spec, &a, &op) != 0) {
        return CLI_EXIT_USAGE;
    }
    return run(cli, &op, mode, NULL);
}

int cmd_topup(struct cli *cli, int argc, char **argv)
{
    return bank_command(cli, &topup_spec, "/v1/topups", "top-up", argc, argv);
}

int cmd_withdraw(struct cli *cli, int argc, char **argv)
{
    return bank_command(cli, &withdraw_spec, "/v1/withdrawals", "withdrawal", argc, argv);
}

int cmd_send(struct cli *cli, int argc, char **argv)
{
    struct cli_args a;
    struct money_op op = {.path = "/v1/transfers", .label = "transfer"};
    int rc = cli_parse(cli, &send_spec, argc, argv, &a);
    if (rc != CLI_CONTINUE) {
        return rc;
    }
    op.user = a.pos[0];
    op.payee = a.pos[1];
    if (!ids_user_valid(op.user) || !ids_user_valid(op.payee)) {
        return cli_usage_error(&send_spec, "FROM and TO are user handles ([a-z0-9_], 1 to 32)");
    }
    if (parse_amount(&send_spec, a.pos[2], &op.amount_minor) != 0 ||
        parse_key(&send_spec, a.opt[OPT_KEY], &op) != 0) {
        return CLI_EXIT_USAGE;
    }
    return run(cli, &op, NULL, a.opt[OPT_NOTE]);
}
