/* report.c owns DIR/report.md, the lab's teaching report: a title and the run's manifest
 * (what ran, where, with which timings and the horizons they give), the summary table with
 * one row per cell, then a section per scenario — its claim, what it set, the mechanism
 * behind it (lessons.c) and the paragraphs narrate.c writes from the measured figures.
 * Must not: state an outcome of its own; every figure it prints is the cell's as measured,
 * and a cell that did not apply or did not run shows n/a or its error, never zeros.
 * Invariant: scenarios and cases appear in the order of r->cells, each exactly once. */
#include "lab.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "figures.h"
#include "lessons.h"
#include "narrate.h"
#include "pl.h"

/* ---- manifest -------------------------------------------------------------------------- */

static void manifest_row(FILE *f, const char *key, const char *value)
{
    fprintf(f, "| %s | ", key);
    narrate_md(f, value[0] != '\0' ? value : "unknown", true);
    fputs(" |\n", f);
}

static void write_manifest(FILE *f, const struct lab_results *r)
{
    const struct lab_manifest *m = &r->manifest;
    char text[64], d[FIG_TEXT_BYTES_MAX];
    fputs("| run | |\n|---|---|\n", f);
    manifest_row(f, "version", m->version);
    manifest_row(f, "commit", m->commit);
    snprintf(text, sizeof text, "%lld", (long long)m->seed);
    manifest_row(f, "seed", text);
    manifest_row(f, "arguments", m->arguments);
    manifest_row(f, "machine", m->machine);
    manifest_row(f, "started (UTC)", m->started_at);
    manifest_row(f, "elapsed", fig_duration_ms(m->elapsed_ms, d));
    snprintf(text, sizeof text, "%d top-ups and withdrawals per cell, %d at a time", r->n,
             r->concurrency);
    manifest_row(f, "load", text);
    fputs("\n", f);
}

static void write_timing(FILE *f, const struct lab_timing *t)
{
    char a[FIG_TEXT_BYTES_MAX], b[FIG_TEXT_BYTES_MAX], c[FIG_TEXT_BYTES_MAX];
    char d[FIG_TEXT_BYTES_MAX], e[FIG_TEXT_BYTES_MAX];
    fprintf(f,
            "The wallet ran with a %s bank timeout, payment deadlines of %s (sync) and %s "
            "(async), a %s pending grace and its reconciler every %s.",
            fig_duration_ms(t->bank_timeout_ms, a), fig_duration_ms(t->payment_ttl_sync_ms, b),
            fig_duration_ms(t->payment_ttl_async_ms, c), fig_duration_ms(t->pending_grace_ms, d),
            fig_duration_ms(t->reconcile_ms, e));
    fprintf(f,
            " These give the reconciliation horizons (deadline + grace + 2 × reconcile): "
            "**%s for sync** and **%s for async**. Once the faults have stopped, nothing may "
            "stay pending or unknown longer than that; a transaction that does is *stuck*.\n\n",
            fig_duration_ms(fig_horizon_ms(t, LAB_MODE_SYNC), a),
            fig_duration_ms(fig_horizon_ms(t, LAB_MODE_ASYNC), b));
}

/* ---- summary table --------------------------------------------------------------------- */

static const char *const table_titles[] = {
    "scenario",
    "case",
    "mode",
    "wait",
    "ok / declined / errors / unknown",
    "client p50 / p95 / p99 / max",
    "final p50 / p99",
    "longest not knowing",
    "settled response / webhook / reconciler",
    "stuck",
    "double credits",
    "invariants",
    "bank calls",
    "webhook deliveries",
    "duplicates absorbed",
    "forged refused",
    "polls / WS messages",
    "P2P p99",
};
/* The first four titles name the cell; the rest are its figures. */
#define TABLE_NAME_COLUMNS 4

static void write_table_head(FILE *f)
{
    for (size_t i = 0; i < PL_ARRAY_LEN(table_titles); i++)
        fprintf(f, "| %s ", table_titles[i]);
    fputs("|\n", f);
    for (size_t i = 0; i < PL_ARRAY_LEN(table_titles); i++)
        fputs(i < TABLE_NAME_COLUMNS ? "|---" : "|--:", f);
    fputs("|\n", f);
}

static void hist_cells(FILE *f, const struct lab_hist *h, const double *qs, size_t n)
{
    char d[FIG_TEXT_BYTES_MAX];
    fputs("| ", f);
    if (h->count == 0) {
        fputs("– ", f);
        return;
    }
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s%s", i > 0 ? " / " : "", fig_duration(fig_quantile_us(h, qs[i]), d));
    fputs(" ", f);
}

static void invariants_cell(FILE *f, const struct lab_cell *c)
{
    if (c->invariants_held) {
        fputs("| ✓ held ", f);
        return;
    }
    fputs("| ✗", f);
    bool any = false;
    for (int i = 1; (size_t)i < PL_ARRAY_LEN(c->breached); i++) {
        if (!fig_breached(c, i))
            continue;
        fprintf(f, "%s %d %s", any ? "," : "", i, fig_invariant_name(i));
        any = true;
    }
    if (!any)
        fputs(" breached", f);
    if (c->breach_expected != 0 && fig_breached(c, c->breach_expected))
        fputs(" (expected: break-it)", f);
    fputs(" ", f);
}

static void measured_cells(FILE *f, const struct lab_cell *c)
{
    static const double q4[] = {0.5, 0.95, 0.99, 1.0}, q2[] = {0.5, 0.99}, qmax[] = {1.0};
    char d[FIG_TEXT_BYTES_MAX];
    fprintf(f, "| %lld / %lld / %lld / %lld ", (long long)c->ok, (long long)c->declined,
            (long long)c->errors, (long long)c->unknown);
    hist_cells(f, &c->client_latency_us, q4, 4);
    hist_cells(f, &c->time_to_final_us, q2, 2);
    hist_cells(f, &c->not_knowing_us, qmax, 1);
    fprintf(f, "| %lld / %lld / %lld | %lld | %lld ", (long long)c->settled_response,
            (long long)c->settled_webhook, (long long)c->settled_reconciler, (long long)c->stuck,
            (long long)c->double_credits);
    invariants_cell(f, c);
    fprintf(f, "| %lld | %lld | %lld ", (long long)c->bank_calls, (long long)c->webhook_deliveries,
            (long long)c->duplicates_absorbed);
    if (c->forged_sent > 0)
        fprintf(f, "| %lld of %lld ", (long long)c->forged_refused, (long long)c->forged_sent);
    else
        fputs("| – ", f);
    fprintf(f, "| %lld / %lld ", (long long)c->polls_sent, (long long)c->ws_messages);
    if (c->p2p_latency_us.count > 0)
        fprintf(f, "| %s ", fig_duration(fig_quantile_us(&c->p2p_latency_us, 0.99), d));
    else
        fputs("| – ", f);
    fputs("|\n", f);
}

static void write_table_row(FILE *f, const struct lab_cell *c)
{
    const char *names[TABLE_NAME_COLUMNS] = {c->scenario, c->case_label, lab_mode_name(c->mode),
                                             c->wait};
    for (size_t i = 0; i < TABLE_NAME_COLUMNS; i++) {
        fputs("| ", f);
        narrate_md(f, names[i], true);
        fputs(" ", f);
    }
    size_t figures = PL_ARRAY_LEN(table_titles) - TABLE_NAME_COLUMNS;
    if (!c->applies) {
        for (size_t i = 0; i < figures; i++)
            fputs("| n/a ", f);
        fputs("|\n", f);
    } else if (!c->ran) {
        fputs("| not run: ", f);
        narrate_md(f, c->error[0] != '\0' ? c->error : "no reason recorded", true);
        for (size_t i = 1; i < figures; i++)
            fputs(" | ", f);
        fputs(" |\n", f);
    } else {
        measured_cells(f, c);
    }
}

static void write_table(FILE *f, const struct lab_results *r)
{
    fputs("## Summary\n\n", f);
    fputs("One row per cell: a scenario's case, run in one mode, its users learning the outcome "
          "by one wait style. *Client* is the time from a request to its first answer, *final* "
          "from the request to the final state being known to its client, *not knowing* from "
          "a non-final answer (pending, unknown) to the final state. *Stuck* counts "
          "transactions still open after the horizon. Times are in ms (s above 10 s).\n\n",
          f);
    write_table_head(f);
    for (size_t i = 0; i < r->cells_count; i++)
        write_table_row(f, &r->cells[i]);
    fputs("\n", f);
}

/* ---- per scenario ---------------------------------------------------------------------- */

/* True when cells[i] is the first of r's cells with its scenario (with_case: and case). */
static bool first_of(const struct lab_results *r, size_t i, bool with_case)
{
    const struct lab_cell *c = &r->cells[i];
    for (size_t j = 0; j < i; j++) {
        const struct lab_cell *o = &r->cells[j];
        if (with_case ? fig_same_case(o, c) : strcmp(o->scenario, c->scenario) == 0)
            return false;
    }
    return true;
}

static const struct lab_case *case_of(const struct lab_scenario *s, const char *label)
{
    for (size_t k = 0; s != NULL && k < s->cases_count; k++) {
        if (strcmp(s->cases[k].label, label) == 0)
            return &s->cases[k];
    }
    return NULL;
}

static void write_scenario(FILE *f, const struct lab_results *r, size_t first)
{
    const char *name = r->cells[first].scenario;
    const struct lab_scenario *s = lab_scenario_find(name);
    const char *lesson = lesson_for(name);
    fputs("### ", f);
    narrate_md(f, name, false);
    fputs("\n\n", f);
    if (s != NULL) {
        fputs("**Claim.** ", f);
        narrate_md(f, s->claim, false);
        fputs("\n\n**What it sets.** ", f);
        narrate_md(f, s->sets, false);
        fputs("\n\n", f);
    }
    if (lesson != NULL) {
        fputs("**Why.** ", f);
        narrate_md(f, lesson, false);
        fputs("\n\n", f);
    }
    for (size_t i = first; i < r->cells_count; i++) {
        const struct lab_cell *c = &r->cells[i];
        if (strcmp(c->scenario, name) != 0 || !first_of(r, i, true))
            continue;
        if (c->case_label[0] != '\0') {
            fputs("#### Case: ", f);
            narrate_md(f, c->case_label, false);
            fputs("\n\n", f);
        }
        narrate_case(f, r, case_of(s, c->case_label), name, c->case_label);
    }
}

static void write_document(FILE *f, const struct lab_results *r)
{
    fputs("# paylab lab report\n\n", f);
    fputs("Each scenario below was run on a fresh cluster (bank, wallet, two gateways) once per "
          "mode and wait style, measured from the outside by its clients and WebSocket "
          "watchers, then checked with verify after the reconciliation horizon.\n\n",
          f);
    write_manifest(f, r);
    write_timing(f, &r->timing);
    write_table(f, r);
    fputs("## Scenarios\n\n", f);
    if (r->cells_count == 0)
        fputs("No cell was run.\n", f);
    for (size_t i = 0; i < r->cells_count; i++) {
        if (first_of(r, i, false))
            write_scenario(f, r, i);
    }
}

int lab_write_report(const struct lab_results *r, const char *dir)
{
    assert(r->cells_count <= LAB_CELLS_MAX);
    char path[LAB_PATH_BYTES_MAX + 32];
    int n = snprintf(path, sizeof path, "%s/report.md", dir);
    if (n < 0 || (size_t)n >= sizeof path)
        return PL_EIO;
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "lab: cannot write %s: %s\n", path, strerror(errno));
        return PL_EIO;
    }
    write_document(f, r);
    bool failed = ferror(f) != 0;
    if (fclose(f) != 0 || failed) {
        fprintf(stderr, "lab: writing %s failed\n", path);
        return PL_EIO;
    }
    return 0;
}
