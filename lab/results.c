/* results.c owns the machine-readable results of a lab run: DIR/results.csv and
 * DIR/results.json, both written from one table of a cell's fields (`fields` below), so the
 * two files always carry the same figures under the same names.
 * Must not: interpret a figure (the report does), or round an integer: 64-bit counts are
 * printed as exact decimal text, durations as milliseconds with 3 decimals.
 * Invariant: every cell gives one CSV row and one JSON object, in the order of r->cells.
 *
 * results.json — what the lab's tests and coursework scripts parse:
 *
 *   {"manifest": {"version", "commit", "seed", "arguments", "machine", "started_at",
 *                 "elapsed_ms"},
 *    "timing":   {"bank_timeout_ms", "payment_ttl_sync_ms", "payment_ttl_async_ms",
 *                 "pending_grace_ms", "reconcile_ms",
 *                 "horizon_sync_ms", "horizon_async_ms"},   // TTL + grace + 2 × reconcile
 *    "n": 40, "concurrency": 8,
 *    "cells": [{
 *       "scenario": "bank-slow", "case": "" (a single-case scenario) or "webhooks on",
 *       "mode": "sync" | "async" | "sync-blocking", "wait": "ws" | "poll:MS",
 *       "applies": bool, "ran": bool, "error": "" or why it could not run,
 *       "faults": "what was set", "breach_expected": 0 or the invariant a break-it case
 *                                                     must show,
 *       then every figure — null when the cell did not apply or did not run:
 *       "duration_ms", "horizon_ms", "ops", "ok", "declined", "errors", "unknown", "pending",
 *       "client_retries", "client_latency_ms", "time_to_final_ms", "final_succeeded",
 *       "final_failed", "not_knowing_count", "not_knowing_ms", "settled_response",
 *       "settled_webhook", "settled_reconciler", "stuck", "double_credits", "conflicts",
 *       "invariants_held": bool, "breaches": "verify's text", "breached": [4, 5],
 *       "outcomes": each top-up's and withdrawal's final status and settler in the order
 *                   the wallet created them ("sr fc …": s/f/o succeeded, failed, open;
 *                   r/w/c/- response, webhook, reconciler, none) — the same --seed gives
 *                   the same ids, so the same faults, so the same string,
 *       "bank_calls", "bank_payments_seen", "webhook_deliveries", "webhooks_applied",
 *       "duplicates_absorbed", "forged_sent", "forged_refused", "forged_applied",
 *       "reconciler_actions", "polls_sent", "poll_bytes", "ws_messages", "ws_bytes",
 *       "push_delay_ms", "watcher_dupes", "watcher_gaps", "watcher_reorders",
 *       "watcher_failovers", "p2p_ok", "p2p_errors", "p2p_latency_ms", "kills", "restarts",
 *       "slow_subscribers", "slow_subscribers_dropped"}]}
 *
 * Counts are exact JSON integers. A histogram (the *_ms objects) is
 *   {"p50": 412.345, "p95": …, "p99": …, "max": …, "min": …, "mean": …, "count": 40}
 * in milliseconds with 3 decimals (recorded in µs; quantiles within 0.1 %, max exact).
 *
 * results.csv has one header row and one row per cell, the same fields in the same order;
 * a histogram becomes NAME_p50_ms, NAME_p95_ms, NAME_p99_ms, NAME_max_ms and NAME_samples
 * (its count: "NAME_count" would clash with not_knowing_count);
 * booleans are true/false; "breached" is "4 5"; a figure the cell did not measure is empty.
 * Quoting is RFC 4180 (CRLF rows, fields with , " CR LF quoted, " doubled). */
#include "lab.h"

#include <assert.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "figures.h"
#include "json.h"
#include "pl.h"

/* ---- the field table ------------------------------------------------------------------- */

enum field_kind {
    FIELD_TEXT,     /* char[] member */
    FIELD_MODE,     /* enum lab_mode */
    FIELD_BOOL,     /* bool member */
    FIELD_INT,      /* int member */
    FIELD_INT64,    /* int64_t member */
    FIELD_HIST,     /* struct lab_hist in µs, written in ms */
    FIELD_BREACHED, /* int breached[]: the numbers of the failed invariants */
};

struct field {
    const char *name; /* in the JSON and the CSV header */
    enum field_kind kind;
    size_t offset;
    bool figure; /* a measurement: null / empty when the cell was not measured */
};

#define ID(n, member, k)                                                                           \
    {                                                                                              \
        n, k, offsetof(struct lab_cell, member), false                                             \
    }
#define FIG(n, member, k)                                                                          \
    {                                                                                              \
        n, k, offsetof(struct lab_cell, member), true                                              \
    }
#define I64(member) FIG(#member, member, FIELD_INT64)

static const struct field fields[] = {
    ID("scenario", scenario, FIELD_TEXT),
    ID("case", case_label, FIELD_TEXT),
    ID("mode", mode, FIELD_MODE),
    ID("wait", wait, FIELD_TEXT),
    ID("applies", applies, FIELD_BOOL),
    ID("ran", ran, FIELD_BOOL),
    ID("error", error, FIELD_TEXT),
    ID("faults", faults, FIELD_TEXT),
    ID("breach_expected", breach_expected, FIELD_INT),
    I64(duration_ms),
    I64(horizon_ms),
    I64(ops),
    I64(ok),
    I64(declined),
    I64(errors),
    I64(unknown),
    I64(pending),
    I64(client_retries),
    FIG("client_latency_ms", client_latency_us, FIELD_HIST),
    FIG("time_to_final_ms", time_to_final_us, FIELD_HIST),
    I64(final_succeeded),
    I64(final_failed),
    I64(not_knowing_count),
    FIG("not_knowing_ms", not_knowing_us, FIELD_HIST),
    I64(settled_response),
    I64(settled_webhook),
    I64(settled_reconciler),
    I64(stuck),
    I64(double_credits),
    I64(conflicts),
    FIG("invariants_held", invariants_held, FIELD_BOOL),
    FIG("breaches", breaches, FIELD_TEXT),
    FIG("breached", breached, FIELD_BREACHED),
    FIG("outcomes", outcomes, FIELD_TEXT),
    I64(bank_calls),
    I64(bank_payments_seen),
    I64(webhook_deliveries),
    I64(webhooks_applied),
    I64(duplicates_absorbed),
    I64(forged_sent),
    I64(forged_refused),
    I64(forged_applied),
    I64(reconciler_actions),
    I64(polls_sent),
    I64(poll_bytes),
    I64(ws_messages),
    I64(ws_bytes),
    FIG("push_delay_ms", push_delay_us, FIELD_HIST),
    I64(watcher_dupes),
    I64(watcher_gaps),
    I64(watcher_reorders),
    I64(watcher_failovers),
    I64(p2p_ok),
    I64(p2p_errors),
    FIG("p2p_latency_ms", p2p_latency_us, FIELD_HIST),
    I64(kills),
    I64(restarts),
    I64(slow_subscribers),
    I64(slow_subscribers_dropped),
};

/* The quantiles a histogram is written with, and their names. */
static const struct {
    const char *name;
    double q;
} quantiles[] = {{"p50", 0.5}, {"p95", 0.95}, {"p99", 0.99}, {"max", 1.0}};

static const void *member(const struct lab_cell *c, const struct field *f)
{
    return (const char *)c + f->offset;
}

/* Microseconds as milliseconds with exactly 3 decimals: "412.345" (no float rounding). */
static void us_to_ms_text(int64_t us, char buf[FIG_TEXT_BYTES_MAX])
{
    assert(us >= 0);
    snprintf(buf, FIG_TEXT_BYTES_MAX, "%lld.%03lld", (long long)(us / 1000),
             (long long)(us % 1000));
}

static int path_join(char *out, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    return n < 0 || (size_t)n >= cap ? PL_ERANGE : 0;
}

/* ---- CSV ------------------------------------------------------------------------------- */

/* Writes s as one RFC 4180 field: quoted when it holds a comma, a quote, CR or LF. */
static void csv_text(FILE *f, const char *s)
{
    if (strpbrk(s, ",\"\r\n") == NULL) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (const char *p = s; *p != '\0'; p++) {
        if (*p == '"')
            fputc('"', f);
        fputc(*p, f);
    }
    fputc('"', f);
}

static void csv_header(FILE *f)
{
    for (size_t i = 0; i < PL_ARRAY_LEN(fields); i++) {
        const char *sep = i > 0 ? "," : "";
        if (fields[i].kind != FIELD_HIST) {
            fprintf(f, "%s%s", sep, fields[i].name);
            continue;
        }
        /* "client_latency_ms" → client_latency_p50_ms … client_latency_count */
        size_t stem = strlen(fields[i].name) - strlen("_ms");
        for (size_t q = 0; q < PL_ARRAY_LEN(quantiles); q++) {
            fprintf(f, "%s%.*s_%s_ms", q > 0 ? "," : sep, (int)stem, fields[i].name,
                    quantiles[q].name);
        }
        fprintf(f, ",%.*s_samples", (int)stem, fields[i].name);
    }
    fputs("\r\n", f);
}

static void csv_hist(FILE *f, const struct lab_hist *h, bool measured)
{
    char text[FIG_TEXT_BYTES_MAX];
    for (size_t q = 0; q < PL_ARRAY_LEN(quantiles); q++) {
        if (q > 0)
            fputc(',', f);
        if (measured && h->count > 0) {
            us_to_ms_text(fig_quantile_us(h, quantiles[q].q), text);
            fputs(text, f);
        }
    }
    if (measured)
        fprintf(f, ",%lld", (long long)h->count);
    else
        fputc(',', f);
}

/* "4 5": the failed invariants' numbers, space-separated (a spreadsheet keeps it one field). */
static void csv_breached(FILE *f, const struct lab_cell *c)
{
    const char *sep = "";
    for (int i = 1; (size_t)i < PL_ARRAY_LEN(c->breached); i++) {
        if (!fig_breached(c, i))
            continue;
        fprintf(f, "%s%d", sep, i);
        sep = " ";
    }
}

static void csv_field(FILE *f, const struct lab_cell *c, const struct field *fd)
{
    bool measured = !fd->figure || fig_measured(c);
    const void *m = member(c, fd);
    if (fd->kind == FIELD_HIST) {
        csv_hist(f, m, measured);
        return;
    }
    if (!measured)
        return;
    switch (fd->kind) {
    case FIELD_TEXT:
        csv_text(f, m);
        break;
    case FIELD_MODE:
        fputs(lab_mode_name(*(const enum lab_mode *)m), f);
        break;
    case FIELD_BOOL:
        fputs(*(const bool *)m ? "true" : "false", f);
        break;
    case FIELD_INT:
        fprintf(f, "%d", *(const int *)m);
        break;
    case FIELD_INT64:
        fprintf(f, "%lld", (long long)*(const int64_t *)m);
        break;
    case FIELD_BREACHED:
        csv_breached(f, c);
        break;
    case FIELD_HIST:
        break;
    }
}

int lab_write_csv(const struct lab_results *r, const char *dir)
{
    assert(r->cells_count <= LAB_CELLS_MAX);
    char path[LAB_PATH_BYTES_MAX + 32];
    if (path_join(path, sizeof path, dir, "results.csv") != 0)
        return PL_EIO;
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "lab: cannot write %s: %s\n", path, strerror(errno));
        return PL_EIO;
    }
    csv_header(f);
    for (size_t i = 0; i < r->cells_count; i++) {
        for (size_t k = 0; k < PL_ARRAY_LEN(fields); k++) {
            if (k > 0)
                fputc(',', f);
            csv_field(f, &r->cells[i], &fields[k]);
        }
        fputs("\r\n", f);
    }
    bool failed = ferror(f) != 0;
    if (fclose(f) != 0 || failed) {
        fprintf(stderr, "lab: writing %s failed\n", path);
        return PL_EIO;
    }
    return 0;
}

/* ---- JSON ------------------------------------------------------------------------------ */

/* Adds key: a number written as text (exact: cJSON would print it through a double). */
static bool add_raw(cJSON *o, const char *key, const char *text)
{
    return cJSON_AddRawToObject(o, key, text) != NULL;
}

static bool json_hist(cJSON *cell, const char *key, const struct lab_hist *h)
{
    cJSON *o = cJSON_AddObjectToObject(cell, key);
    if (o == NULL)
        return false;
    char text[FIG_TEXT_BYTES_MAX];
    bool ok = true;
    for (size_t q = 0; q < PL_ARRAY_LEN(quantiles); q++) {
        us_to_ms_text(fig_quantile_us(h, quantiles[q].q), text);
        ok = ok && add_raw(o, quantiles[q].name, text);
    }
    us_to_ms_text(h->min, text);
    ok = ok && add_raw(o, "min", text);
    us_to_ms_text(hist_mean(h), text);
    ok = ok && add_raw(o, "mean", text);
    return ok && json_add_int64(o, "count", h->count) != NULL;
}

static bool json_breached(cJSON *cell, const struct lab_cell *c)
{
    cJSON *list = cJSON_AddArrayToObject(cell, "breached");
    if (list == NULL)
        return false;
    for (int i = 1; (size_t)i < PL_ARRAY_LEN(c->breached); i++) {
        if (!fig_breached(c, i))
            continue;
        cJSON *n = cJSON_CreateNumber(i);
        if (n == NULL || !cJSON_AddItemToArray(list, n)) {
            cJSON_Delete(n);
            return false;
        }
    }
    return true;
}

static bool json_field(cJSON *o, const struct lab_cell *c, const struct field *fd)
{
    const void *m = member(c, fd);
    if (fd->figure && !fig_measured(c))
        return cJSON_AddNullToObject(o, fd->name) != NULL;
    switch (fd->kind) {
    case FIELD_TEXT:
        return cJSON_AddStringToObject(o, fd->name, m) != NULL;
    case FIELD_MODE:
        return cJSON_AddStringToObject(o, fd->name, lab_mode_name(*(const enum lab_mode *)m)) !=
               NULL;
    case FIELD_BOOL:
        return cJSON_AddBoolToObject(o, fd->name, *(const bool *)m) != NULL;
    case FIELD_INT:
        return json_add_int64(o, fd->name, *(const int *)m) != NULL;
    case FIELD_INT64:
        return json_add_int64(o, fd->name, *(const int64_t *)m) != NULL;
    case FIELD_HIST:
        return json_hist(o, fd->name, m);
    case FIELD_BREACHED:
        return json_breached(o, c);
    }
    return false;
}

static bool json_manifest(cJSON *root, const struct lab_results *r)
{
    const struct lab_manifest *m = &r->manifest;
    cJSON *o = cJSON_AddObjectToObject(root, "manifest");
    return o != NULL && cJSON_AddStringToObject(o, "version", m->version) != NULL &&
           cJSON_AddStringToObject(o, "commit", m->commit) != NULL &&
           json_add_int64(o, "seed", m->seed) != NULL &&
           cJSON_AddStringToObject(o, "arguments", m->arguments) != NULL &&
           cJSON_AddStringToObject(o, "machine", m->machine) != NULL &&
           cJSON_AddStringToObject(o, "started_at", m->started_at) != NULL &&
           json_add_int64(o, "elapsed_ms", m->elapsed_ms) != NULL;
}

static bool json_timing(cJSON *root, const struct lab_timing *t)
{
    cJSON *o = cJSON_AddObjectToObject(root, "timing");
    return o != NULL && json_add_int64(o, "bank_timeout_ms", t->bank_timeout_ms) != NULL &&
           json_add_int64(o, "payment_ttl_sync_ms", t->payment_ttl_sync_ms) != NULL &&
           json_add_int64(o, "payment_ttl_async_ms", t->payment_ttl_async_ms) != NULL &&
           json_add_int64(o, "pending_grace_ms", t->pending_grace_ms) != NULL &&
           json_add_int64(o, "reconcile_ms", t->reconcile_ms) != NULL &&
           json_add_int64(o, "horizon_sync_ms", fig_horizon_ms(t, LAB_MODE_SYNC)) != NULL &&
           json_add_int64(o, "horizon_async_ms", fig_horizon_ms(t, LAB_MODE_ASYNC)) != NULL;
}

/* The whole document as a cJSON tree; NULL on allocation failure. Caller cJSON_Delete()s. */
static cJSON *results_tree(const struct lab_results *r)
{
    cJSON *root = cJSON_CreateObject();
    if (root == NULL)
        return NULL;
    bool ok = json_manifest(root, r) && json_timing(root, &r->timing) &&
              json_add_int64(root, "n", r->n) != NULL &&
              json_add_int64(root, "concurrency", r->concurrency) != NULL;
    cJSON *cells = ok ? cJSON_AddArrayToObject(root, "cells") : NULL;
    for (size_t i = 0; cells != NULL && i < r->cells_count; i++) {
        cJSON *o = cJSON_CreateObject();
        if (o == NULL || !cJSON_AddItemToArray(cells, o)) {
            cJSON_Delete(o);
            cells = NULL;
            break;
        }
        for (size_t k = 0; k < PL_ARRAY_LEN(fields) && cells != NULL; k++) {
            if (!json_field(o, &r->cells[i], &fields[k]))
                cells = NULL;
        }
    }
    if (cells == NULL) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

int lab_write_json(const struct lab_results *r, const char *dir)
{
    assert(r->cells_count <= LAB_CELLS_MAX);
    char path[LAB_PATH_BYTES_MAX + 32];
    if (path_join(path, sizeof path, dir, "results.json") != 0)
        return PL_EIO;
    int rc = PL_ENOMEM;
    FILE *f = NULL;
    char *text = NULL;
    cJSON *root = results_tree(r);
    if (root == NULL)
        goto done;
    /* Formatted: a person opens this file too, and the size is a few hundred kB at most. */
    text = cJSON_Print(root);
    if (text == NULL)
        goto done;
    rc = PL_EIO;
    f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "lab: cannot write %s: %s\n", path, strerror(errno));
        goto done;
    }
    size_t len = strlen(text);
    bool written = fwrite(text, 1, len, f) == len && fputc('\n', f) != EOF;
    int closed = fclose(f);
    f = NULL;
    if (!written || closed != 0) {
        fprintf(stderr, "lab: writing %s failed\n", path);
        goto done;
    }
    rc = 0;
done:
    if (f != NULL)
        fclose(f);
    cJSON_free(text);
    cJSON_Delete(root);
    return rc;
}
