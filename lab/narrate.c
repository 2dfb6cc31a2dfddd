/* narrate.c owns the report's measured text: what each cell of a case showed (who waited and
 * how long, what the user was told, what repaired it, whether the invariants held) and how
 * its modes and wait styles compare.
 * Must not: assume an outcome. Every sentence that says what happened is written under a
 * condition on the figures it quotes (a count > 0, one latency several times another), so
 * the text stays true whatever a run measured; the fixed explanations are in lessons.c.
 * Invariant: a cell that was not measured (n/a, not run) is described as such and never
 * compared. */
#include "narrate.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "figures.h"
#include "pl.h"

/* One latency is "several times" another above this ratio, and only when the gap is also
 * above NOTABLE_GAP_US (3 ms against 1 ms is noise a student should not be told about). */
#define NOTABLE_RATIO 3.0
#define NOTABLE_GAP_US 5000
/* A latency is "about" the bank's set latency within these bounds of it. */
#define ABOUT_LOW 0.7
#define ABOUT_HIGH 1.6
/* An async answer this fast came before any bank round trip could have. */
#define ASYNC_AT_ONCE_US 20000

/* The cells of one case, in r's order. */
struct case_cells {
    const struct lab_cell *c[LAB_CELLS_MAX];
    size_t count;
};

static const char *s_(int64_t n)
{
    return n == 1 ? "" : "s";
}

static const char *were(int64_t n)
{
    return n == 1 ? "was" : "were";
}

static int64_t q_us(const struct lab_hist *h, double q)
{
    return fig_quantile_us(h, q);
}

/* True when a is notably larger than b: NOTABLE_RATIO times and NOTABLE_GAP_US apart. */
static bool notably_above(int64_t a, int64_t b)
{
    return a - b > NOTABLE_GAP_US && (double)a > NOTABLE_RATIO * (double)b;
}

static const char *bytes_text(int64_t n, char buf[FIG_TEXT_BYTES_MAX])
{
    if (n < 10000)
        snprintf(buf, FIG_TEXT_BYTES_MAX, "%lld bytes", (long long)n);
    else if (n < 10000000)
        snprintf(buf, FIG_TEXT_BYTES_MAX, "%.1f kB", (double)n / 1e3);
    else
        snprintf(buf, FIG_TEXT_BYTES_MAX, "%.1f MB", (double)n / 1e6);
    return buf;
}

static bool sync_like(enum lab_mode m)
{
    return m == LAB_MODE_SYNC || m == LAB_MODE_SYNC_BLOCKING;
}

void narrate_md(FILE *f, const char *s, bool in_table)
{
    for (const char *p = s; *p != '\0'; p++) {
        if (*p == '\n' || *p == '\r') {
            fputc(' ', f);
            continue;
        }
        if (strchr("\\`*_[]<>|#", *p) != NULL && (*p != '|' || in_table))
            fputc('\\', f);
        fputc(*p, f);
    }
}

/* The bank latency the case sets (latency_ms=N in its faults), or 0. */
static int64_t set_latency_ms(const struct lab_case *kase)
{
    if (kase == NULL || kase->faults == NULL)
        return 0;
    for (const char *p = strstr(kase->faults, "latency_ms="); p != NULL;
         p = strstr(p + 1, "latency_ms=")) {
        if (p == kase->faults || p[-1] == ' ')
            return strtoll(p + strlen("latency_ms="), NULL, 10);
    }
    return 0;
}

/* ---- one cell -------------------------------------------------------------------------- */

/* Prints the parts whose count is not 0 as "a, b and c", each as count, glue, word
 * ("3 by a webhook"); a NULL glue is " was " or " were " as the count needs ("14 were
 * answered ok"). Returns how many it printed. */
static int say_list(FILE *f, const int64_t *counts, const char *const *words, int n,
                    const char *glue)
{
    int shown = 0, total = 0;
    for (int i = 0; i < n; i++)
        total += counts[i] != 0 ? 1 : 0;
    for (int i = 0; i < n; i++) {
        if (counts[i] == 0)
            continue;
        const char *sep = shown == 0 ? "" : shown == total - 1 ? " and " : ", ";
        fprintf(f, "%s%lld%s%s%s%s", sep, (long long)counts[i], glue != NULL ? glue : " ",
                glue != NULL ? "" : were(counts[i]), glue != NULL ? "" : " ", words[i]);
        shown++;
    }
    return shown;
}

static void say_answers(FILE *f, const struct lab_cell *c)
{
    if (c->ops == 0) {
        fputs(" No request was sent.", f);
        return;
    }
    /* ok counts a 202 pending too: the answers are told apart for the reader. */
    int64_t pending = c->pending <= c->ok ? c->pending : 0;
    int64_t counts[] = {c->ok - pending, pending, c->declined, c->errors, c->unknown};
    static const char *const words[] = {"answered ok", "accepted as pending (202)", "declined",
                                        "answered with an error", "told unknown"};
    for (size_t i = 0; i < PL_ARRAY_LEN(counts); i++) {
        if (counts[i] == c->ops && c->ops == 1) {
            fprintf(f, " The one request was %s.", words[i]);
            return;
        }
        if (counts[i] == c->ops) {
            fprintf(f, " All %lld requests were %s.", (long long)c->ops, words[i]);
            return;
        }
    }
    fprintf(f, " Of %lld request%s, ", (long long)c->ops, s_(c->ops));
    int64_t answered = 0;
    for (size_t i = 0; i < PL_ARRAY_LEN(counts); i++)
        answered += counts[i];
    if (say_list(f, counts, words, (int)PL_ARRAY_LEN(counts), NULL) == 0)
        fputs("none got an answer", f);
    else if (answered < c->ops)
        fprintf(f, "; %lld got no answer at all", (long long)(c->ops - answered));
    fputs(".", f);
}

static void say_wait(FILE *f, const struct lab_cell *c, const struct lab_timing *t,
                     int64_t latency_ms)
{
    const struct lab_hist *h = &c->client_latency_us;
    if (h->count == 0)
        return;
    char p50[FIG_TEXT_BYTES_MAX], p99[FIG_TEXT_BYTES_MAX], max[FIG_TEXT_BYTES_MAX];
    int64_t p50_us = q_us(h, 0.5), p99_us = q_us(h, 0.99);
    fprintf(f, " Clients waited p50 %s, p99 %s (longest %s) for their first answer",
            fig_duration(p50_us, p50), fig_duration(p99_us, p99), fig_duration(h->max, max));
    if (sync_like(c->mode) && latency_ms > 0 && p50_us >= ABOUT_LOW * latency_ms * 1000 &&
        p50_us <= ABOUT_HIGH * latency_ms * 1000)
        fprintf(f, ", about the %lld ms the bank was set to take", (long long)latency_ms);
    if (sync_like(c->mode) && c->unknown > 0 && p99_us >= t->bank_timeout_ms * 900)
        fprintf(f, "; the slowest waited out the wallet's %lld ms bank timeout",
                (long long)t->bank_timeout_ms);
    if (c->mode == LAB_MODE_ASYNC && p50_us < ASYNC_AT_ONCE_US)
        fputs(": the wallet answered without waiting for the bank", f);
    fputs(".", f);
}

static void say_knowing(FILE *f, const struct lab_cell *c)
{
    char a[FIG_TEXT_BYTES_MAX], b[FIG_TEXT_BYTES_MAX];
    if (c->not_knowing_count > 0) {
        const struct lab_hist *h = &c->not_knowing_us;
        fprintf(f, " %lld client%s got a first answer that was not final (pending or unknown)",
                (long long)c->not_knowing_count, s_(c->not_knowing_count));
        if (h->count > 0)
            fprintf(f, " and went without knowing the outcome for p50 %s, longest %s",
                    fig_duration(q_us(h, 0.5), a), fig_duration(h->max, b));
        fputs(".", f);
    } else if (c->ops > 0 && c->errors == 0) {
        fputs(" Every answer was final: no client was left not knowing.", f);
    }
    const struct lab_hist *t = &c->time_to_final_us;
    if (t->count > 0) {
        fprintf(f, " The final state was known p50 %s, p99 %s after the request",
                fig_duration(q_us(t, 0.5), a), fig_duration(q_us(t, 0.99), b));
        if (t->count < c->ops)
            fprintf(f, " (for %lld of the %lld requests; the other clients never learned one)",
                    (long long)t->count, (long long)c->ops);
        fputs(".", f);
    }
    int64_t finals[] = {c->final_succeeded, c->final_failed};
    static const char *const words[] = {"succeeded", "failed"};
    if (finals[0] + finals[1] > 0) {
        fputs(" In the end ", f);
        say_list(f, finals, words, 2, " ");
        fputs(".", f);
    }
}

static const char *count_or_none(int64_t n, char buf[FIG_TEXT_BYTES_MAX])
{
    if (n == 0)
        return "none";
    snprintf(buf, FIG_TEXT_BYTES_MAX, "%lld", (long long)n);
    return buf;
}

static void say_repair(FILE *f, const struct lab_cell *c)
{
    int64_t r = c->settled_response, w = c->settled_webhook, k = c->settled_reconciler;
    char a[FIG_TEXT_BYTES_MAX], b[FIG_TEXT_BYTES_MAX], d[FIG_TEXT_BYTES_MAX];
    if (c->unknown > 0) {
        fprintf(f,
                " %lld client%s %s told unknown; afterwards the reconciler settled %s "
                "transaction%s and webhooks %s, while the response itself settled %s.",
                (long long)c->unknown, s_(c->unknown), were(c->unknown), count_or_none(k, a), s_(k),
                count_or_none(w, b), count_or_none(r, d));
    } else if (r + w + k > 0) {
        int64_t counts[] = {r, w, k};
        static const char *const words[] = {"the response", "a webhook", "the reconciler"};
        fputs(" Transactions settled: ", f);
        say_list(f, counts, words, 3, " by ");
        fputs(".", f);
    } else if (c->ops > 0) {
        fputs(" No transaction was settled.", f);
    }
    if (c->mode == LAB_MODE_ASYNC && k > 0)
        fprintf(f,
                " For %lld transaction%s no webhook came in time and the reconciler had to "
                "ask the bank.",
                (long long)k, s_(k));
}

static void say_damage(FILE *f, const struct lab_cell *c)
{
    char h[FIG_TEXT_BYTES_MAX];
    if (c->stuck > 0)
        fprintf(f,
                " **%lld transaction%s %s stuck**: still pending or unknown after the "
                "reconciliation horizon (%s) had passed.",
                (long long)c->stuck, s_(c->stuck), were(c->stuck),
                fig_duration_ms(c->horizon_ms, h));
    else if (c->not_knowing_count > 0 || c->unknown > 0)
        fprintf(f, " Nothing was left pending or unknown once the horizon (%s) had passed.",
                fig_duration_ms(c->horizon_ms, h));
    if (c->double_credits > 0)
        fprintf(f, " **%lld top-up%s or withdrawal%s %s credited or paid out twice.**",
                (long long)c->double_credits, s_(c->double_credits), s_(c->double_credits),
                were(c->double_credits));
    if (c->conflicts > 0)
        fprintf(f,
                " The wallet recorded %lld conflict%s (an answer or webhook contradicting a "
                "final state, never applied).",
                (long long)c->conflicts, s_(c->conflicts));
}

static void say_plumbing(FILE *f, const struct lab_cell *c)
{
    fprintf(f,
            " The wallet made %lld call%s to the bank, which received %lld payment "
            "request%s",
            (long long)c->bank_calls, s_(c->bank_calls), (long long)c->bank_payments_seen,
            s_(c->bank_payments_seen));
    if (c->webhook_deliveries > 0)
        fprintf(f, "; the bank sent %lld webhook deliver%s and the wallet applied %lld",
                (long long)c->webhook_deliveries, c->webhook_deliveries == 1 ? "y" : "ies",
                (long long)c->webhooks_applied);
    if (c->duplicates_absorbed > 0)
        fprintf(f, ", absorbing %lld duplicate%s without effect", (long long)c->duplicates_absorbed,
                s_(c->duplicates_absorbed));
    fputs(".", f);
    if (c->forged_sent > 0) {
        fprintf(f, " %lld forged webhook%s %s posted: %lld refused, %lld applied",
                (long long)c->forged_sent, s_(c->forged_sent), were(c->forged_sent),
                (long long)c->forged_refused, (long long)c->forged_applied);
        fputs(c->forged_applied > 0 ? " — **a forgery got through**." : ".", f);
    }
    if (c->kills > 0 || c->restarts > 0 || c->client_retries > 0)
        fprintf(f,
                " The lab killed %lld process%s and restarted %lld; clients resent %lld "
                "request%s with the same key.",
                (long long)c->kills, c->kills == 1 ? "" : "es", (long long)c->restarts,
                (long long)c->client_retries, s_(c->client_retries));
}

static void say_watchers(FILE *f, const struct lab_cell *c)
{
    char a[FIG_TEXT_BYTES_MAX], b[FIG_TEXT_BYTES_MAX];
    int64_t bad = c->watcher_gaps + c->watcher_dupes + c->watcher_reorders;
    if (c->watcher_failovers > 0)
        fprintf(f, " The watchers failed over to the other gateway %lld time%s",
                (long long)c->watcher_failovers, s_(c->watcher_failovers));
    if (bad > 0)
        fprintf(f,
                "%s %lld gap%s, %lld repeated and %lld reordered event%s in the users' "
                "streams.",
                c->watcher_failovers > 0 ? "; they saw" : " The watchers saw",
                (long long)c->watcher_gaps, s_(c->watcher_gaps), (long long)c->watcher_dupes,
                (long long)c->watcher_reorders, s_(c->watcher_reorders));
    else if (c->watcher_failovers > 0)
        fputs(" and saw every user's events in order, with no gap and no repeat.", f);
    if (c->slow_subscribers > 0)
        fprintf(f,
                " %lld subscriber%s that never read %s connected; the gateway dropped %lld "
                "of them.",
                (long long)c->slow_subscribers, s_(c->slow_subscribers), were(c->slow_subscribers),
                (long long)c->slow_subscribers_dropped);
    if (c->polls_sent > 0)
        fprintf(f, " Polling cost %lld request%s (%s).", (long long)c->polls_sent,
                s_(c->polls_sent), bytes_text(c->poll_bytes, a));
    if (c->ws_messages > 0) {
        fprintf(f, " The WebSocket watchers received %lld event message%s (%s)",
                (long long)c->ws_messages, s_(c->ws_messages), bytes_text(c->ws_bytes, a));
        if (c->push_delay_us.count > 0)
            fprintf(f, ", p50 %s after the wallet committed them",
                    fig_duration(q_us(&c->push_delay_us, 0.5), b));
        fputs(".", f);
    }
    if (c->p2p_latency_us.count > 0)
        fprintf(f, " Unrelated users' P2P transfers took p50 %s, p99 %s",
                fig_duration(q_us(&c->p2p_latency_us, 0.5), a),
                fig_duration(q_us(&c->p2p_latency_us, 0.99), b));
    if (c->p2p_errors > 0)
        fprintf(f, "%s%lld P2P transfer%s failed", c->p2p_latency_us.count > 0 ? "; " : " ",
                (long long)c->p2p_errors, s_(c->p2p_errors));
    if (c->p2p_latency_us.count > 0 || c->p2p_errors > 0)
        fputs(".", f);
}

/* Names the invariants c breached other than skip: "4 (wallet and bank agree)". */
static void list_breached(FILE *f, const struct lab_cell *c, int skip)
{
    const char *sep = "";
    for (int i = 1; (size_t)i < PL_ARRAY_LEN(c->breached); i++) {
        if (i == skip || !fig_breached(c, i))
            continue;
        fprintf(f, "%s%d (%s)", sep, i, fig_invariant_name(i));
        sep = ", ";
    }
}

static bool breached_other(const struct lab_cell *c, int skip)
{
    for (int i = 1; (size_t)i < PL_ARRAY_LEN(c->breached); i++) {
        if (i != skip && fig_breached(c, i))
            return true;
    }
    return false;
}

static void say_breaches_text(FILE *f, const struct lab_cell *c)
{
    if (c->breaches[0] == '\0')
        return;
    fputs(" paylab verify reported: ", f);
    narrate_md(f, c->breaches, false);
    fputs(".", f);
}

static void say_invariants(FILE *f, const struct lab_cell *c)
{
    int want = c->breach_expected;
    const char *name = fig_invariant_name(want);
    if (c->invariants_held && want == 0) {
        fputs(" Every invariant held.", f);
    } else if (c->invariants_held) {
        fprintf(f,
                " This break-it case is built to break invariant %d (%s), but every "
                "invariant held: the damage did not happen in this run.",
                want, name);
    } else if (want != 0 && fig_breached(c, want)) {
        fprintf(f,
                " paylab verify caught the damage this break-it case is built to show: invariant "
                "%d (%s) failed.",
                want, name);
        if (breached_other(c, want)) {
            fputs(" Also failed: ", f);
            list_breached(f, c, want);
            fputs(".", f);
        }
        say_breaches_text(f, c);
    } else {
        fputs(" **Invariants failed**: ", f);
        list_breached(f, c, 0);
        if (!breached_other(c, 0))
            fputs("verify reported a breach", f);
        fputs(".", f);
        if (want != 0)
            fprintf(f,
                    " That is not the breach this break-it case is built to show "
                    "(invariant %d, %s), which did not happen in this run.",
                    want, name);
        say_breaches_text(f, c);
    }
}

static void say_cell_head(FILE *f, const struct lab_cell *c)
{
    fprintf(f, "**%s**, ", lab_mode_name(c->mode));
    if (strcmp(c->wait, "ws") == 0)
        fputs("learning the outcome by WebSocket push:", f);
    else if (strncmp(c->wait, "poll:", 5) == 0)
        fprintf(f, "learning the outcome by polling every %s ms:", c->wait + 5);
    else {
        narrate_md(f, c->wait, false);
        fputc(':', f);
    }
}

static void narrate_cell(FILE *f, const struct lab_results *r, const struct lab_cell *c,
                         int64_t latency_ms)
{
    say_cell_head(f, c);
    if (!c->applies) {
        fputs(" does not apply to this mode (n/a): nothing was measured.\n\n", f);
        return;
    }
    if (!c->ran) {
        fputs(" could not run: ", f);
        narrate_md(f, c->error[0] != '\0' ? c->error : "no reason recorded", false);
        fputs(". Nothing was measured.\n\n", f);
        return;
    }
    say_answers(f, c);
    say_wait(f, c, &r->timing, latency_ms);
    say_knowing(f, c);
    say_repair(f, c);
    say_damage(f, c);
    say_plumbing(f, c);
    say_watchers(f, c);
    say_invariants(f, c);
    fputs("\n\n", f);
}

/* ---- contrasts ------------------------------------------------------------------------- */

static void contrast_exposure(FILE *f, const struct lab_cell *s, const struct lab_cell *a)
{
    int64_t bs = s->errors + s->unknown, ba = a->errors + a->unknown;
    if (bs > 0 && ba == 0)
        fprintf(f,
                " The fault reached %lld sync client%s as an error or an unknown and no "
                "async client: async coupling absorbed it behind its 202.",
                (long long)bs, s_(bs));
    else if (ba > 0 && bs == 0)
        fprintf(f,
                " Here it was the async clients who saw errors or unknowns (%lld), and no "
                "sync client.",
                (long long)ba);
    else if (bs > 0)
        fprintf(f,
                " Both modes let it reach their clients: %lld sync and %lld async errors "
                "or unknowns.",
                (long long)bs, (long long)ba);
    else
        fputs(" No client in either mode got an error or an unknown.", f);
}

static void contrast_modes(FILE *f, const struct lab_cell *s, const struct lab_cell *a)
{
    char x[FIG_TEXT_BYTES_MAX], y[FIG_TEXT_BYTES_MAX];
    int64_t sp = q_us(&s->client_latency_us, 0.5), ap = q_us(&a->client_latency_us, 0.5);
    fputs("*Sync against async.*", f);
    if (notably_above(sp, ap))
        fprintf(f,
                " Sync clients waited p50 %s for their answer while async clients had "
                "theirs in %s: the sync wallet held each request open while the bank "
                "worked, the async wallet answered first and left the bank's work to the "
                "background.",
                fig_duration(sp, x), fig_duration(ap, y));
    else if (notably_above(ap, sp))
        fprintf(f,
                " Async clients waited longer for their first answer (p50 %s) than sync "
                "clients (%s).",
                fig_duration(ap, x), fig_duration(sp, y));
    else
        fprintf(f,
                " Sync and async clients got their first answer in about the same time "
                "(p50 %s and %s).",
                fig_duration(sp, x), fig_duration(ap, y));
    contrast_exposure(f, s, a);
    int64_t sf = q_us(&s->time_to_final_us, 0.99), af = q_us(&a->time_to_final_us, 0.99);
    if (s->time_to_final_us.count > 0 && a->time_to_final_us.count > 0) {
        fprintf(f, " Knowing the final state took p99 %s in sync and %s in async",
                fig_duration(sf, x), fig_duration(af, y));
        fputs(ap < sp && notably_above(af, sf)
                  ? ": async answered sooner, but its users learned the outcome later."
                  : ".",
              f);
    }
    fputs("\n\n", f);
}

static void contrast_blocking(FILE *f, const struct lab_cell *s, const struct lab_cell *b)
{
    char x[FIG_TEXT_BYTES_MAX], y[FIG_TEXT_BYTES_MAX];
    fputs("*Sync against sync-blocking.*", f);
    int64_t sp = q_us(&s->client_latency_us, 0.5), bp = q_us(&b->client_latency_us, 0.5);
    fprintf(f, " Clients waited p50 %s in sync and %s in sync-blocking", fig_duration(sp, x),
            fig_duration(bp, y));
    fputs(notably_above(bp, sp) ? ": the blocking wallet served them one after another." : ".", f);
    if (s->p2p_latency_us.count > 0 && b->p2p_latency_us.count > 0) {
        int64_t s99 = q_us(&s->p2p_latency_us, 0.99), b99 = q_us(&b->p2p_latency_us, 0.99);
        fprintf(f,
                " Unrelated users' P2P transfers took p99 %s beside sync and %s beside "
                "sync-blocking",
                fig_duration(s99, x), fig_duration(b99, y));
        fputs(notably_above(b99, s99) ? ": the blocked event loop made them wait behind the bank."
                                      : ": no head-of-line blocking showed in this run.",
              f);
    } else {
        fputs(" No P2P transfers were measured beside both, so head-of-line blocking cannot "
              "be compared here.",
              f);
    }
    fputs("\n\n", f);
}

static void contrast_waits(FILE *f, const struct lab_cell *p, const struct lab_cell *w)
{
    char x[FIG_TEXT_BYTES_MAX], y[FIG_TEXT_BYTES_MAX], z[FIG_TEXT_BYTES_MAX];
    int64_t pp = q_us(&p->time_to_final_us, 0.5), wp = q_us(&w->time_to_final_us, 0.5);
    fprintf(f,
            "*Polling against push (%s).* Polling every %s ms cost %lld request%s (%s) "
            "and the final state was known p50 %s after the request;",
            lab_mode_name(p->mode), p->wait + 5, (long long)p->polls_sent, s_(p->polls_sent),
            bytes_text(p->poll_bytes, x), fig_duration(pp, y));
    fprintf(f, " by WebSocket the watchers received %lld message%s (%s) and knew it p50 %s.",
            (long long)w->ws_messages, s_(w->ws_messages), bytes_text(w->ws_bytes, x),
            fig_duration(wp, z));
    if (p->time_to_final_us.count > 0 && w->time_to_final_us.count > 0) {
        if (pp > wp)
            fprintf(f, " The push knew %s sooner at the median.", fig_duration(pp - wp, x));
        else
            fputs(" Polling learned no later than the push in this run.", f);
    }
    fputs("\n\n", f);
}

static const struct lab_cell *find(const struct case_cells *cc, enum lab_mode m, const char *wait,
                                   bool poll)
{
    for (size_t i = 0; i < cc->count; i++) {
        const struct lab_cell *c = cc->c[i];
        if (!fig_measured(c) || c->mode != m)
            continue;
        bool is_poll = strncmp(c->wait, "poll:", 5) == 0;
        if (wait != NULL ? strcmp(c->wait, wait) == 0 : is_poll == poll)
            return c;
    }
    return NULL;
}

static void narrate_contrasts(FILE *f, const struct case_cells *cc)
{
    for (size_t i = 0; i < cc->count; i++) {
        const struct lab_cell *s = cc->c[i];
        if (!fig_measured(s) || s->mode != LAB_MODE_SYNC)
            continue;
        const struct lab_cell *a = find(cc, LAB_MODE_ASYNC, s->wait, false);
        const struct lab_cell *b = find(cc, LAB_MODE_SYNC_BLOCKING, s->wait, false);
        if (a != NULL)
            contrast_modes(f, s, a);
        if (b != NULL)
            contrast_blocking(f, s, b);
    }
    for (int m = 0; m < LAB_MODES_COUNT; m++) {
        const struct lab_cell *p = find(cc, (enum lab_mode)m, NULL, true);
        const struct lab_cell *w = find(cc, (enum lab_mode)m, "ws", false);
        if (p != NULL && w != NULL)
            contrast_waits(f, p, w);
    }
}

void narrate_case(FILE *f, const struct lab_results *r, const struct lab_case *kase,
                  const char *scenario, const char *case_label)
{
    struct case_cells *cc = calloc(1, sizeof *cc);
    if (cc == NULL) {
        fputs("(out of memory: no text for this case)\n\n", f);
        return;
    }
    for (size_t i = 0; i < r->cells_count; i++) {
        const struct lab_cell *c = &r->cells[i];
        if (strcmp(c->scenario, scenario) == 0 && strcmp(c->case_label, case_label) == 0)
            cc->c[cc->count++] = c;
    }
    assert(cc->count <= LAB_CELLS_MAX);
    int64_t latency_ms = set_latency_ms(kase);
    for (size_t i = 0; i < cc->count; i++)
        narrate_cell(f, r, cc->c[i], latency_ms);
    narrate_contrasts(f, cc);
    free(cc);
}
