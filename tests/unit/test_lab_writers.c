/* test_lab_writers.c: the lab's writers on a synthetic run — report.md says what the figures
 * say (and changes when they change), results.csv has a row per cell with RFC 4180 quoting,
 * results.json parses and holds the figures exactly, the terminal table fits a projector,
 * the charts are drawn when gnuplot is there, and the helper runner obeys its time limit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "figures.h"
#include "lab.h"
#include "pl.h"
#include "child.h"

/* 2^53 + 1: a double cannot hold it, so it only survives as exact integer text. */
#define SEED_EXACT INT64_C(9007199254740993)
#define CELLS_COUNT 11

struct fixture {
    char dir[256];
    struct lab_results *r; /* ~60 MB of histograms: on the heap */
};

/* ---- the synthetic run ----------------------------------------------------------------- */

static void record_n(struct lab_hist *h, int64_t us, int n)
{
    for (int i = 0; i < n; i++)
        hist_record(h, us);
}

static struct lab_cell *add_cell(struct lab_results *r, const char *scenario, const char *label,
                                 enum lab_mode mode, const char *wait)
{
    assert_true(r->cells_count < LAB_CELLS_MAX);
    struct lab_cell *c = &r->cells[r->cells_count++];
    memset(c, 0, sizeof *c);
    pl_strlcpy(c->scenario, scenario, sizeof c->scenario);
    pl_strlcpy(c->case_label, label, sizeof c->case_label);
    pl_strlcpy(c->wait, wait, sizeof c->wait);
    c->mode = mode;
    c->applies = true;
    c->ran = true;
    c->invariants_held = true;
    c->ops = 20;
    c->horizon_ms = mode == LAB_MODE_ASYNC ? 9500 : 4500;
    return c;
}

/* A sync cell whose 20 clients were all answered succeeded after ms. */
static struct lab_cell *sync_cell(struct lab_results *r, const char *scenario, int64_t ms)
{
    struct lab_cell *c = add_cell(r, scenario, "", LAB_MODE_SYNC, "ws");
    c->ok = 20;
    c->final_succeeded = 20;
    c->settled_response = 20;
    c->bank_calls = 20;
    c->bank_payments_seen = 20;
    c->ws_messages = 40;
    c->ws_bytes = 9000;
    record_n(&c->client_latency_us, ms * 1000, 20);
    record_n(&c->time_to_final_us, ms * 1000, 20);
    return c;
}

/* An async cell: 202 in 3.2 ms for all 20, final 450 ms later by webhook. */
static struct lab_cell *async_cell(struct lab_results *r, const char *scenario, const char *wait)
{
    struct lab_cell *c = add_cell(r, scenario, "", LAB_MODE_ASYNC, wait);
    c->ok = 20;
    c->pending = 20;
    c->not_knowing_count = 20;
    c->final_succeeded = 20;
    c->settled_webhook = 20;
    c->bank_calls = 20;
    c->bank_payments_seen = 20;
    c->webhook_deliveries = 20;
    c->webhooks_applied = 20;
    record_n(&c->client_latency_us, 3200, 20);
    record_n(&c->time_to_final_us, 450000, 20);
    record_n(&c->not_knowing_us, 447000, 20);
    return c;
}

static void fill_manifest(struct lab_results *r)
{
    pl_strlcpy(r->manifest.version, "0.1.0", sizeof r->manifest.version);
    pl_strlcpy(r->manifest.commit, "f49f6da", sizeof r->manifest.commit);
    r->manifest.seed = SEED_EXACT;
    pl_strlcpy(r->manifest.arguments, "paylab lab --n 20 --out x|y", sizeof r->manifest.arguments);
    pl_strlcpy(r->manifest.machine, "Linux 6.1 x86_64, 2 cores", sizeof r->manifest.machine);
    pl_strlcpy(r->manifest.started_at, "2026-12-03T09:00:00Z", sizeof r->manifest.started_at);
    r->manifest.elapsed_ms = 95000;
    r->timing = (struct lab_timing){1000, 3000, 8000, 1000, 250};
    r->n = 20;
    r->concurrency = 4;
}

static void fill(struct lab_results *r)
{
    memset(r, 0, sizeof *r);
    fill_manifest(r);

    /* 0, 1: the sync/async contrast under a slow bank */
    sync_cell(r, "bank-slow", 412);
    async_cell(r, "bank-slow", "ws");

    /* 2: n/a (poll-vs-ws is async only) */
    struct lab_cell *c = add_cell(r, "poll-vs-ws", "", LAB_MODE_SYNC, "poll:100");
    c->applies = false;
    /* 3, 4: polling against push */
    c = async_cell(r, "poll-vs-ws", "poll:100");
    c->polls_sent = 137;
    c->poll_bytes = 54321;
    hist_init(&c->time_to_final_us);
    record_n(&c->time_to_final_us, 520000, 20);
    c = async_cell(r, "poll-vs-ws", "ws");
    c->ws_messages = 40;
    c->ws_bytes = 12000;
    record_n(&c->push_delay_us, 1500, 40);

    /* 5: unknowns repaired by the reconciler; 6: a cell that failed to run */
    c = add_cell(r, "lost-response", "webhooks dropped", LAB_MODE_SYNC, "ws");
    c->ok = 14;
    c->unknown = 6;
    c->not_knowing_count = 6;
    c->settled_response = 14;
    c->settled_reconciler = 6;
    c->bank_calls = 38;
    c->bank_payments_seen = 20;
    record_n(&c->client_latency_us, 30000, 14);
    record_n(&c->client_latency_us, 1001000, 6);
    record_n(&c->time_to_final_us, 30000, 14);
    record_n(&c->time_to_final_us, 4200000, 6);
    record_n(&c->not_knowing_us, 3200000, 6);
    c = add_cell(r, "lost-response", "webhooks dropped", LAB_MODE_ASYNC, "ws");
    c->ran = false;
    pl_strlcpy(c->error, "bank-service did not start, \"port in use\"\nsee bank.log",
               sizeof c->error);

    /* 7: a break-it case that broke what it should; 8: one whose damage did not happen */
    c = async_cell(r, "unsafe-no-dedupe", "ws");
    c->breach_expected = 5;
    c->invariants_held = false;
    c->breached[5] = 1;
    c->double_credits = 3;
    c->duplicates_absorbed = 0;
    pl_strlcpy(c->breaches, "5 nothing credited twice (3 breaches)", sizeof c->breaches);
    c = sync_cell(r, "unsafe-timeout-is-failure", 35);
    c->breach_expected = 4;

    /* 9, 10: head-of-line blocking */
    c = sync_cell(r, "blocking-client", 205);
    record_n(&c->p2p_latency_us, 2000, 50);
    c->p2p_ok = 50;
    c = sync_cell(r, "blocking-client", 2100);
    c->mode = LAB_MODE_SYNC_BLOCKING;
    record_n(&c->p2p_latency_us, 1900000, 50);
    c->p2p_ok = 50;
    assert_int_equal(r->cells_count, CELLS_COUNT);
}

/* ---- files ----------------------------------------------------------------------------- */

static char *slurp(const char *dir, const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)size + 1);
    assert_non_null(buf);
    size_t got = fread(buf, 1, (size_t)size, f);
    fclose(f);
    buf[got] = '\0';
    if (len != NULL)
        *len = got;
    return buf;
}

static bool exists_nonempty(const char *dir, const char *name)
{
    char path[512];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return stat(path, &st) == 0 && st.st_size > 0;
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);
    assert_non_null(fx);
    const char *tmp = getenv("TMPDIR");
    snprintf(fx->dir, sizeof fx->dir, "%s/paylab-writers-XXXXXX", tmp != NULL ? tmp : "/tmp");
    assert_non_null(mkdtemp(fx->dir));
    fx->r = calloc(1, sizeof *fx->r);
    assert_non_null(fx->r);
    fill(fx->r);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    DIR *d = opendir(fx->dir);
    if (d != NULL) {
        char path[512];
        for (struct dirent *e = readdir(d); e != NULL; e = readdir(d)) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(path, sizeof path, "%s/%s", fx->dir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(fx->dir);
    free(fx->r);
    free(fx);
    return 0;
}

/* ---- report.md ------------------------------------------------------------------------- */

/* The paragraph of the cell whose head is head ("**sync**, learning…"), up to its blank line,
 * within the section of scenario. Caller free()s. */
static char *paragraph(const char *report, const char *scenario, const char *head)
{
    char title[80];
    snprintf(title, sizeof title, "### %s\n", scenario);
    const char *s = strstr(report, title);
    assert_non_null(s);
    const char *p = strstr(s, head);
    assert_non_null(p);
    const char *end = strstr(p, "\n\n");
    size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
    char *out = malloc(n + 1);
    assert_non_null(out);
    memcpy(out, p, n);
    out[n] = '\0';
    return out;
}

static void assert_has(const char *text, const char *needle)
{
    if (strstr(text, needle) == NULL)
        fail_msg("missing \"%s\" in:\n%s", needle, text);
}

static void assert_lacks(const char *text, const char *needle)
{
    if (strstr(text, needle) != NULL)
        fail_msg("unexpected \"%s\" in:\n%s", needle, text);
}

static void test_report_manifest_and_table(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(lab_write_report(fx->r, fx->dir), 0);
    char *md = slurp(fx->dir, "report.md", NULL);
    assert_non_null(md);
    assert_has(md, "# paylab lab report");
    assert_has(md, "| seed | 9007199254740993 |");
    assert_has(md, "| commit | f49f6da |");
    assert_has(md, "--n 20 --out x\\|y"); /* a pipe must not split the table cell */
    assert_has(md, "4500 ms for sync");   /* 3000 + 1000 + 2 × 250 */
    assert_has(md, "9500 ms for async");
    /* the table: the header, n/a, the error, the figures */
    assert_has(md, "| bank-slow |  | sync | ws | 20 / 0 / 0 / 0 | 412 ms / 412 ms / 412 ms / "
                   "412 ms |");
    assert_has(md, "| poll-vs-ws |  | sync | poll:100 | n/a | n/a |");
    assert_has(md, "| not run: bank-service did not start, \"port in use\" see bank.log");
    assert_has(md, "✗ 5 nothing credited or paid out twice (expected: break-it)");
    /* every scenario once, with its claim */
    assert_has(md, "### bank-slow\n\n**Claim.** Strong coupling");
    assert_has(md, "#### Case: webhooks dropped");
    assert_non_null(strstr(md, "### lost-response"));
    assert_null(strstr(strstr(md, "### lost-response") + 1, "### lost-response"));
    free(md);
}

static void test_report_quotes_figures(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(lab_write_report(fx->r, fx->dir), 0);
    char *md = slurp(fx->dir, "report.md", NULL);
    assert_non_null(md);

    char *p = paragraph(md, "bank-slow", "**sync**");
    assert_has(p, "All 20 requests were answered ok.");
    assert_has(p, "In the end 20 succeeded.");
    assert_has(p, "p50 412 ms");
    assert_has(p, "about the 300 ms the bank was set to take");
    assert_has(p, "Every answer was final");
    assert_has(p, "Every invariant held.");
    assert_lacks(p, "stuck");
    free(p);
    p = paragraph(md, "bank-slow", "**async**");
    assert_has(p, "p50 3.2 ms");
    assert_has(p, "answered without waiting for the bank");
    assert_has(p, "20 clients got a first answer that was not final");
    assert_has(p, "longest 447 ms");
    assert_has(p, "All 20 requests were accepted as pending (202).");
    assert_has(p, "Transactions settled: 20 by a webhook.");
    free(p);
    p = paragraph(md, "bank-slow", "*Sync against async.*");
    assert_has(p, "Sync clients waited p50 412 ms for their answer while async clients had "
                  "theirs in 3.2 ms");
    assert_has(p, "No client in either mode got an error or an unknown.");
    free(p);

    p = paragraph(md, "lost-response", "**sync**");
    assert_has(p, "Of 20 requests, 14 were answered ok and 6 were told unknown.");
    assert_has(p, "6 clients were told unknown; afterwards the reconciler settled 6 "
                  "transactions and webhooks none, while the response itself settled 14.");
    assert_has(p, "waited out the wallet's 1000 ms bank timeout");
    assert_has(p, "Nothing was left pending or unknown once the horizon (4500 ms)");
    assert_lacks(p, "were stuck");
    free(p);
    p = paragraph(md, "lost-response", "**async**");
    assert_has(p, "could not run: bank-service did not start");
    free(p);
    p = paragraph(md, "poll-vs-ws", "**sync**");
    assert_has(p, "n/a");
    free(p);
    p = paragraph(md, "poll-vs-ws", "*Polling against push (async).*");
    assert_has(p, "Polling every 100 ms cost 137 requests (54.3 kB)");
    assert_has(p, "The push knew 70 ms sooner at the median.");
    free(p);

    p = paragraph(md, "unsafe-no-dedupe", "**async**");
    assert_has(p, "verify caught the damage this break-it case is built to show: invariant 5");
    assert_has(p, "3 top-ups or withdrawals were credited or paid out twice");
    free(p);
    p = paragraph(md, "unsafe-timeout-is-failure", "**sync**");
    assert_has(p, "built to break invariant 4 (wallet and bank agree), but every invariant "
                  "held: the damage did not happen in this run.");
    free(p);
    p = paragraph(md, "blocking-client", "*Sync against sync-blocking.*");
    assert_has(p, "took p99 2.0 ms beside sync and 1900 ms beside sync-blocking");
    assert_has(p, "the blocked event loop made them wait");
    free(p);
    free(md);
}

/* The text follows the figures: stuck, unknowns and the latency contrast change with them. */
static void test_report_changes_with_figures(void **state)
{
    struct fixture *fx = *state;
    struct lab_cell *lost = &fx->r->cells[5];
    lost->stuck = 2;
    struct lab_cell *slow = &fx->r->cells[0];
    hist_init(&slow->client_latency_us);
    record_n(&slow->client_latency_us, 3000, 20); /* sync now as fast as async */
    struct lab_cell *held = &fx->r->cells[8];
    held->invariants_held = false;
    held->breached[4] = 1;
    pl_strlcpy(held->breaches, "4 wallet and bank agree (2 breaches)", sizeof held->breaches);
    assert_int_equal(lab_write_report(fx->r, fx->dir), 0);
    char *md = slurp(fx->dir, "report.md", NULL);
    assert_non_null(md);

    char *p = paragraph(md, "lost-response", "**sync**");
    assert_has(p, "**2 transactions were stuck**: still pending or unknown after the "
                  "reconciliation horizon (4500 ms)");
    assert_lacks(p, "Nothing was left pending");
    free(p);
    p = paragraph(md, "bank-slow", "*Sync against async.*");
    assert_has(p, "in about the same time (p50 3.0 ms and 3.2 ms)");
    assert_lacks(p, "held each request open");
    free(p);
    p = paragraph(md, "bank-slow", "**sync**");
    assert_lacks(p, "the bank was set to take");
    free(p);
    p = paragraph(md, "unsafe-timeout-is-failure", "**sync**");
    assert_has(p, "verify caught the damage this break-it case is built to show: invariant 4 "
                  "(wallet and bank agree) failed.");
    assert_has(p, "4 wallet and bank agree (2 breaches)");
    free(p);
    free(md);
}

/* ---- results.csv ----------------------------------------------------------------------- */

/* Counts RFC 4180 records (CRLF-terminated, quotes may hold , " CR LF) and fields per record;
 * fails on a record whose field count differs from the header's. */
static size_t csv_records(const char *s, size_t *fields_out)
{
    size_t records = 0, fields = 1, header_fields = 0;
    bool quoted = false;
    for (const char *p = s; *p != '\0'; p++) {
        if (quoted) {
            if (*p == '"' && p[1] == '"')
                p++;
            else if (*p == '"')
                quoted = false;
        } else if (*p == '"') {
            quoted = true;
        } else if (*p == ',') {
            fields++;
        } else if (*p == '\r' && p[1] == '\n') {
            if (records == 0)
                header_fields = fields;
            assert_int_equal(fields, header_fields);
            records++;
            fields = 1;
            p++;
        }
    }
    assert_false(quoted);
    *fields_out = header_fields;
    return records;
}

static void test_csv(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(lab_write_csv(fx->r, fx->dir), 0);
    char *csv = slurp(fx->dir, "results.csv", NULL);
    assert_non_null(csv);
    size_t fields = 0;
    assert_int_equal(csv_records(csv, &fields), CELLS_COUNT + 1);
    assert_true(fields > 60);
    assert_int_equal(strncmp(csv, "scenario,case,mode,wait,applies,ran,error,", 42), 0);
    assert_has(csv, ",client_latency_p50_ms,client_latency_p95_ms,client_latency_p99_ms,"
                    "client_latency_max_ms,client_latency_samples,");
    /* the first cell's figures, and the quoting of an error with , " and a line break */
    assert_has(csv, "\r\nbank-slow,,sync,ws,true,true,,,0,");
    assert_has(csv, ",412.000,412.000,412.000,412.000,20,");
    assert_has(csv, "\"bank-service did not start, \"\"port in use\"\"\nsee bank.log\"");
    assert_has(csv, ",false,5 nothing credited twice (3 breaches),5,");
    /* an n/a cell: identity only, every figure empty */
    assert_has(csv, "\r\npoll-vs-ws,,sync,poll:100,false,true,,,0,,,,,");
    free(csv);
}

/* ---- results.json ---------------------------------------------------------------------- */

static double num(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v))
        fail_msg("%s is not a number", key);
    return v->valuedouble;
}

static const char *str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsString(v))
        fail_msg("%s is not a string", key);
    return v->valuestring;
}

static void test_json(void **state)
{
    struct fixture *fx = *state;
    assert_int_equal(lab_write_json(fx->r, fx->dir), 0);
    char *text = slurp(fx->dir, "results.json", NULL);
    assert_non_null(text);
    assert_has(text, "9007199254740993"); /* exact, not 9.00719925474099e+15 */
    cJSON *root = cJSON_Parse(text);
    assert_non_null(root);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "manifest");
    assert_string_equal(str(m, "commit"), "f49f6da");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(root, "timing");
    assert_int_equal((int)num(t, "horizon_sync_ms"), 4500);
    assert_int_equal((int)num(t, "horizon_async_ms"), 9500);
    assert_int_equal((int)num(root, "n"), 20);
    assert_int_equal((int)num(root, "concurrency"), 4);
    const cJSON *cells = cJSON_GetObjectItemCaseSensitive(root, "cells");
    assert_int_equal(cJSON_GetArraySize(cells), CELLS_COUNT);

    const cJSON *c0 = cJSON_GetArrayItem(cells, 0);
    assert_string_equal(str(c0, "scenario"), "bank-slow");
    assert_string_equal(str(c0, "mode"), "sync");
    assert_int_equal((int)num(c0, "ok"), 20);
    const cJSON *lat = cJSON_GetObjectItemCaseSensitive(c0, "client_latency_ms");
    assert_true(num(lat, "p50") >= 412.0 && num(lat, "p50") < 412.0 * 1.001);
    assert_true(num(lat, "max") == 412.0);
    assert_int_equal((int)num(lat, "count"), 20);
    const cJSON *async = cJSON_GetArrayItem(cells, 1);
    assert_true(num(cJSON_GetObjectItemCaseSensitive(async, "client_latency_ms"), "p99") < 3.3);
    assert_int_equal((int)num(async, "settled_webhook"), 20);

    const cJSON *na = cJSON_GetArrayItem(cells, 2);
    assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(na, "applies")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(na, "ok")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(na, "client_latency_ms")));
    const cJSON *failed = cJSON_GetArrayItem(cells, 6);
    assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(failed, "ran")));
    assert_has(str(failed, "error"), "\"port in use\"\nsee");

    const cJSON *broke = cJSON_GetArrayItem(cells, 7);
    assert_int_equal((int)num(broke, "breach_expected"), 5);
    assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(broke, "invariants_held")));
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(broke, "breached");
    assert_int_equal(cJSON_GetArraySize(list), 1);
    assert_int_equal((int)cJSON_GetArrayItem(list, 0)->valuedouble, 5);
    assert_int_equal((int)num(broke, "double_credits"), 3);
    cJSON_Delete(root);
    free(text);
}

/* ---- the terminal table ---------------------------------------------------------------- */

static char *capture_table(const struct lab_results *r, bool tty, const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/table.txt", dir);
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, STDOUT_FILENO);
    close(fd);
    lab_print_table(r, tty);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    return slurp(dir, "table.txt", NULL);
}

static void test_table(void **state)
{
    struct fixture *fx = *state;
    char *plain = capture_table(fx->r, false, fx->dir);
    assert_non_null(plain);
    assert_null(strchr(plain, '\033'));
    size_t lines = 0;
    for (char *line = plain, *nl; *line != '\0'; line = nl + 1) {
        nl = strchr(line, '\n');
        assert_non_null(nl);
        *nl = '\0';
        if (fig_width(line) > 120)
            fail_msg("wider than 120 columns: %s", line);
        lines++;
    }
    assert_int_equal(lines, 2 + CELLS_COUNT + 3);
    free(plain);

    char *tty = capture_table(fx->r, true, fx->dir);
    assert_non_null(tty);
    assert_has(tty, "\033[32m✓\033[0m");
    assert_has(tty, "✗5*"); /* the expected breach */
    assert_has(tty, "n/a");
    assert_has(tty, "not run: bank-service did not start");
    assert_has(tty, "14/0/6"); /* settled r/w/c of lost-response */
    free(tty);
}

/* ---- charts ---------------------------------------------------------------------------- */

static bool gnuplot_on_path(void)
{
    const char *path = getenv("PATH");
    char buf[4096], probe[4200];
    if (path == NULL || strlen(path) >= sizeof buf)
        return false;
    pl_strlcpy(buf, path, sizeof buf);
    for (char *dir = buf, *end; dir != NULL; dir = end != NULL ? end + 1 : NULL) {
        end = strchr(dir, ':');
        if (end != NULL)
            *end = '\0';
        snprintf(probe, sizeof probe, "%s/gnuplot", dir[0] != '\0' ? dir : ".");
        if (access(probe, X_OK) == 0)
            return true;
    }
    return false;
}

static void test_charts(void **state)
{
    struct fixture *fx = *state;
    int rc = lab_write_charts(fx->r, fx->dir);
    if (!gnuplot_on_path()) {
        assert_int_equal(rc, PL_ENOTFOUND);
        skip();
    }
    assert_int_equal(rc, 0);
    const char *names[] = {"client-latency.svg", "client-latency.png", "time-to-final.svg",
                           "time-to-final.png",  "settled-by.svg",     "settled-by.png"};
    for (size_t i = 0; i < PL_ARRAY_LEN(names); i++) {
        if (!exists_nonempty(fx->dir, names[i]))
            fail_msg("no %s", names[i]);
    }
    char *svg = slurp(fx->dir, "settled-by.svg", NULL);
    assert_has(svg, "<svg");
    assert_has(svg, "reconciler");
    free(svg);
    assert_true(exists_nonempty(fx->dir, "charts.gp"));
    assert_false(exists_nonempty(fx->dir, "charts.log"));
}

static void test_charts_without_gnuplot(void **state)
{
    struct fixture *fx = *state;
    char *saved = strdup(getenv("PATH") != NULL ? getenv("PATH") : "/usr/bin:/bin");
    assert_non_null(saved);
    setenv("PATH", fx->dir, 1); /* a folder with no gnuplot in it */
    int rc = lab_write_charts(fx->r, fx->dir);
    setenv("PATH", saved, 1);
    free(saved);
    assert_int_equal(rc, PL_ENOTFOUND);
}

/* ---- edges: nothing to write, nowhere to write ----------------------------------------- */

static void test_empty_run(void **state)
{
    struct fixture *fx = *state;
    fx->r->cells_count = 0;
    assert_int_equal(lab_write_report(fx->r, fx->dir), 0);
    assert_int_equal(lab_write_csv(fx->r, fx->dir), 0);
    assert_int_equal(lab_write_json(fx->r, fx->dir), 0);
    char *csv = slurp(fx->dir, "results.csv", NULL);
    size_t fields = 0;
    assert_int_equal(csv_records(csv, &fields), 1);
    free(csv);
    char *md = slurp(fx->dir, "report.md", NULL);
    assert_has(md, "No cell was run.");
    free(md);
    if (gnuplot_on_path()) {
        assert_int_equal(lab_write_charts(fx->r, fx->dir), 0);
        assert_true(exists_nonempty(fx->dir, "client-latency.png"));
    }
}

static void test_unwritable_dir(void **state)
{
    struct fixture *fx = *state;
    char missing[300];
    snprintf(missing, sizeof missing, "%s/no/such/folder", fx->dir);
    assert_int_equal(lab_write_report(fx->r, missing), PL_EIO);
    assert_int_equal(lab_write_csv(fx->r, missing), PL_EIO);
    assert_int_equal(lab_write_json(fx->r, missing), PL_EIO);
    assert_int_equal(lab_write_charts(fx->r, missing), PL_EIO); /* its script has no home */
}

/* ---- child ------------------------------------------------------------------------------ */

static void test_child(void **state)
{
    struct fixture *fx = *state;
    char log_path[300];
    snprintf(log_path, sizeof log_path, "%s/child.log", fx->dir);
    int code = 0;
    char *ok[] = {"true", NULL};
    assert_int_equal(child_run(ok, log_path, 5000, &code), 0);
    assert_int_equal(code, 0);
    char *fails[] = {"false", NULL};
    assert_int_equal(child_run(fails, log_path, 5000, &code), PL_EIO);
    assert_int_equal(code, 1);
    char *missing[] = {"paylab-no-such-program", NULL};
    assert_int_equal(child_run(missing, log_path, 5000, &code), PL_ENOTFOUND);
    /* past its limit a child is killed, and the call returns soon after */
    char *slow[] = {"sleep", "10", NULL};
    int64_t start = pl_mono_ms();
    assert_int_equal(child_run(slow, log_path, 200, &code), PL_ERANGE);
    assert_true(pl_mono_ms() - start < 3000);
    /* output goes to the log */
    char *echo[] = {"echo", "to the log", NULL};
    assert_int_equal(child_run(echo, log_path, 5000, &code), 0);
    char *log = slurp(fx->dir, "child.log", NULL);
    assert_has(log, "to the log");
    free(log);
}

/* PAYLAB_WRITERS_OUT=DIR keeps every output of the synthetic run in DIR to look at. */
static void test_sample_outputs(void **state)
{
    struct fixture *fx = *state;
    const char *out = getenv("PAYLAB_WRITERS_OUT");
    if (out == NULL)
        skip();
    assert_int_equal(lab_write_report(fx->r, out), 0);
    assert_int_equal(lab_write_csv(fx->r, out), 0);
    assert_int_equal(lab_write_json(fx->r, out), 0);
    int rc = lab_write_charts(fx->r, out);
    assert_true(rc == 0 || rc == PL_ENOTFOUND);
    lab_print_table(fx->r, true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_report_manifest_and_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_report_quotes_figures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_report_changes_with_figures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_csv, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_charts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_charts_without_gnuplot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unwritable_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sample_outputs, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
