/* test_lab.c: runs `paylab lab` as a student would — the real binaries, every scenario of a
 * group in every mode it applies to, a small --n — and checks that the teaching contrasts
 * hold in the numbers the lab measured (results.json), that every safe scenario ends with
 * its invariants held and nothing stuck or doubled, that every break-it scenario is caught
 * by verify, and that the same seed repeats the same fault decisions.
 *
 * usage: test_lab GROUP   (core, webhooks, crashes, late, seed) — one ctest entry each, so
 * ctest -j runs them side by side. PAYLAB_BIN_DIR names the folder holding paylab. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* Small, so the whole lab fits in CI on two cores; large enough for every contrast. */
#define LAB_TEST_N "12"
#define LAB_TEST_CONCURRENCY "4"
#define LAB_TEST_ARGS_MAX 32

static const char *group;

/* ---------------------------------------------------------------- running the lab */

/* Runs paylab lab with the scenarios and extra flags (NULL-terminated) into a fresh folder;
 * returns the parsed results.json (caller cJSON_Delete()s) and *exit_out. */
static cJSON *run_lab(const char *const *scenarios, const char *const *extra, const char *seed,
                      int *exit_out)
{
    const char *bin = getenv("PAYLAB_BIN_DIR");
    char paylab[1024], out[256], path[320];
    assert_non_null(bin);
    snprintf(paylab, sizeof paylab, "%s/paylab", bin);
    const char *tmp = getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp";
    snprintf(out, sizeof out, "%s/paylab-labtest-XXXXXX", tmp);
    assert_non_null(mkdtemp(out));
    char *argv[LAB_TEST_ARGS_MAX];
    size_t n = 0;
    argv[n++] = paylab;
    argv[n++] = (char *)"lab";
    for (size_t i = 0; scenarios[i] != NULL; i++)
        argv[n++] = (char *)scenarios[i];
    const char *fixed[] = {"--n",    LAB_TEST_N, "--concurrency", LAB_TEST_CONCURRENCY,
                           "--seed", seed,       "--out",         out};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        argv[n++] = (char *)fixed[i];
    for (size_t i = 0; extra != NULL && extra[i] != NULL; i++)
        argv[n++] = (char *)extra[i];
    argv[n] = NULL;
    assert_true(n < LAB_TEST_ARGS_MAX);
    pid_t pid;
    assert_int_equal(posix_spawn(&pid, paylab, NULL, NULL, argv, environ), 0);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    *exit_out = WEXITSTATUS(status);
    snprintf(path, sizeof path, "%s/results.json", out);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        fail_msg("paylab lab exited %d without %s", *exit_out, path);
    static char text[4 * 1024 * 1024];
    size_t got = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[got] = '\0';
    cJSON *j = cJSON_Parse(text);
    assert_non_null(j);
    return j;
}

/* ---------------------------------------------------------------- reading results.json */

static const cJSON *cell(const cJSON *results, const char *scenario, const char *kase,
                         const char *mode, const char *wait)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(results, "cells"))
    {
        const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "scenario"));
        const char *k = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "case"));
        const char *m = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "mode"));
        const char *w = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "wait"));
        if (s != NULL && strcmp(s, scenario) == 0 && k != NULL && strcmp(k, kase) == 0 &&
            m != NULL && strcmp(m, mode) == 0 && (wait == NULL || strcmp(w, wait) == 0))
            return c;
    }
    fail_msg("no cell %s (%s) %s %s in results.json", scenario, kase, mode,
             wait != NULL ? wait : "");
    return NULL;
}

static int64_t num(const cJSON *c, const char *field)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, field);
    if (!cJSON_IsNumber(v))
        fail_msg("%s: no number %s", cJSON_GetStringValue(cJSON_GetObjectItem(c, "scenario")),
                 field);
    return (int64_t)v->valuedouble;
}

/* A histogram's figure in ms ("p50", "p99", "max"). */
static double ms(const cJSON *c, const char *hist, const char *q)
{
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(c, hist);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(h, q);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

static bool breached(const cJSON *c, int invariant)
{
    const cJSON *v;
    cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(c, "breached"))
    {
        if (cJSON_IsNumber(v) && (int)v->valuedouble == invariant)
            return true;
    }
    return false;
}

static const char *label(const cJSON *c)
{
    static char buf[160];
    snprintf(buf, sizeof buf, "%s (%s) %s %s",
             cJSON_GetStringValue(cJSON_GetObjectItem(c, "scenario")),
             cJSON_GetStringValue(cJSON_GetObjectItem(c, "case")),
             cJSON_GetStringValue(cJSON_GetObjectItem(c, "mode")),
             cJSON_GetStringValue(cJSON_GetObjectItem(c, "wait")));
    return buf;
}

#define EXPECT(c, cond)                                                                            \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fail_msg("%s: expected %s", label(c), #cond);                                          \
    } while (0)

/* What every cell must show: it ran, every op got an answer, and — unless a teaching switch
 * is on — every invariant held, nothing stuck or doubled, no forgery applied. */
static void check_every_cell(const cJSON *results)
{
    const cJSON *c;
    int ran = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(results, "cells"))
    {
        if (!cJSON_IsTrue(cJSON_GetObjectItem(c, "applies")))
            continue;
        if (!cJSON_IsTrue(cJSON_GetObjectItem(c, "ran")))
            fail_msg("%s did not run: %s", label(c),
                     cJSON_GetStringValue(cJSON_GetObjectItem(c, "error")));
        ran++;
        EXPECT(c, num(c, "ops") > 0);
        EXPECT(c, num(c, "forged_applied") == 0);
        int expected = (int)num(c, "breach_expected");
        if (expected != 0) {
            EXPECT(c, breached(c, expected));
            continue;
        }
        if (!cJSON_IsTrue(cJSON_GetObjectItem(c, "invariants_held")))
            fail_msg("%s: invariants broke: %s", label(c),
                     cJSON_GetStringValue(cJSON_GetObjectItem(c, "breaches")));
        EXPECT(c, num(c, "stuck") == 0);
        EXPECT(c, num(c, "double_credits") == 0);
        EXPECT(c, num(c, "final_succeeded") + num(c, "final_failed") == num(c, "ops"));
        EXPECT(c, num(c, "watcher_gaps") == 0);
        EXPECT(c, num(c, "watcher_reorders") == 0);
    }
    assert_true(ran > 0);
}

/* ---------------------------------------------------------------- the groups */

static void test_core(void **state)
{
    (void)state;
    const char *const scenarios[] = {"baseline",  "bank-slow",     "bank-flaky",
                                     "bank-down", "lost-response", NULL};
    int code = 0;
    cJSON *r = run_lab(scenarios, NULL, "3", &code);
    check_every_cell(r);
    assert_int_equal(code, 0);

    const cJSON *b = cell(r, "baseline", "", "sync", "ws");
    EXPECT(b, num(b, "ok") == num(b, "ops") && num(b, "unknown") == 0);

    /* A slow bank: the sync client waits for it, the async one does not. */
    const cJSON *ss = cell(r, "bank-slow", "", "sync", "ws");
    const cJSON *sa = cell(r, "bank-slow", "", "async", "ws");
    EXPECT(ss, ms(ss, "client_latency_ms", "p50") >= 300.0);
    EXPECT(sa, ms(sa, "client_latency_ms", "p50") < 50.0);
    EXPECT(sa, ms(sa, "time_to_final_ms", "p50") >= 300.0);

    /* 5xx: sync callers are left unknown and closed by the reconciler; async retries. */
    const cJSON *fs = cell(r, "bank-flaky", "", "sync", "ws");
    const cJSON *fa = cell(r, "bank-flaky", "", "async", "ws");
    EXPECT(fs, num(fs, "unknown") > 0);
    EXPECT(fs, num(fs, "settled_reconciler") >= num(fs, "unknown"));
    EXPECT(fa, num(fa, "unknown") == 0 && num(fa, "final_succeeded") == num(fa, "ops"));

    /* A stopped bank: sync fails fast and definitely; async rides it out. */
    const cJSON *ds = cell(r, "bank-down", "", "sync", "ws");
    const cJSON *da = cell(r, "bank-down", "", "async", "ws");
    EXPECT(ds, num(ds, "kills") == 1 && num(ds, "restarts") == 1);
    EXPECT(ds, num(ds, "declined") > 0 && num(ds, "unknown") == 0);
    EXPECT(da, num(da, "declined") == 0 && num(da, "final_succeeded") == num(da, "ops"));

    /* A lost answer: rescued by the webhook when there is one, else only the reconciler. */
    const cJSON *lw = cell(r, "lost-response", "webhooks on", "sync", "ws");
    const cJSON *ld = cell(r, "lost-response", "webhooks dropped", "sync", "ws");
    EXPECT(lw, num(lw, "settled_webhook") > 0);
    EXPECT(lw, num(lw, "unknown") < num(lw, "settled_webhook"));
    EXPECT(ld, num(ld, "unknown") > 0);
    EXPECT(ld, num(ld, "settled_webhook") == 0);
    EXPECT(ld, num(ld, "settled_reconciler") == num(ld, "unknown"));
    cJSON_Delete(r);
}

static void test_webhooks(void **state)
{
    (void)state;
    const char *const scenarios[] = {"webhook-loss",    "webhook-dupes",    "webhook-reorder",
                                     "forged-webhooks", "unsafe-no-dedupe", NULL};
    int code = 0;
    cJSON *r = run_lab(scenarios, NULL, "5", &code);
    check_every_cell(r);
    assert_int_equal(code, 0); /* the break-it breach is expected, not a failure */

    const cJSON *la = cell(r, "webhook-loss", "", "async", "ws");
    EXPECT(la, num(la, "settled_reconciler") > 0);
    EXPECT(la, num(la, "settled_webhook") + num(la, "settled_reconciler") == num(la, "ops"));

    for (int m = 0; m < 2; m++) {
        const char *mode = m == 0 ? "sync" : "async";
        const cJSON *d = cell(r, "webhook-dupes", "", mode, "ws");
        EXPECT(d, num(d, "duplicates_absorbed") > 0 && num(d, "double_credits") == 0);
        const cJSON *f = cell(r, "forged-webhooks", "", mode, "ws");
        EXPECT(f, num(f, "forged_sent") > 0);
        EXPECT(f, num(f, "forged_refused") == num(f, "forged_sent"));
        EXPECT(f, num(f, "conflicts") == 0);
        /* Without the dedupe the same duplicates credit twice, and verify says so. */
        const cJSON *u = cell(r, "unsafe-no-dedupe", "", mode, "ws");
        EXPECT(u, breached(u, 5) && num(u, "double_credits") > 0);
    }
    cJSON_Delete(r);
}

static void test_crashes(void **state)
{
    (void)state;
    const char *const scenarios[] = {"wallet-crash", "gateway-crash", "slow-subscriber",
                                     "blocking-client", NULL};
    int code = 0;
    cJSON *r = run_lab(scenarios, NULL, "11", &code);
    check_every_cell(r);
    assert_int_equal(code, 0);
    for (int m = 0; m < 2; m++) {
        const char *mode = m == 0 ? "sync" : "async";
        const cJSON *w = cell(r, "wallet-crash", "", mode, "ws");
        EXPECT(w, num(w, "kills") == 1 && num(w, "restarts") == 1 && num(w, "errors") == 0);
        const cJSON *g = cell(r, "gateway-crash", "", mode, "ws");
        EXPECT(g, num(g, "kills") == 1 && num(g, "watcher_failovers") > 0);
        const cJSON *s = cell(r, "slow-subscriber", "", mode, "ws");
        EXPECT(s, num(s, "slow_subscribers") > 0);
        EXPECT(s, num(s, "slow_subscribers_dropped") == num(s, "slow_subscribers"));
    }
    /* Head-of-line blocking: unrelated P2P transfers wait behind a blocking bank call. */
    const cJSON *bs = cell(r, "blocking-client", "", "sync", "ws");
    const cJSON *bb = cell(r, "blocking-client", "", "sync-blocking", "ws");
    EXPECT(bb, ms(bb, "p2p_latency_ms", "p99") >= 5.0 * ms(bs, "p2p_latency_ms", "p99"));
    EXPECT(bb, ms(bb, "p2p_latency_ms", "p99") >= 150.0);
    cJSON_Delete(r);
}

static void test_late(void **state)
{
    (void)state;
    const char *const scenarios[] = {"late-success", "poll-vs-ws", "unsafe-timeout-is-failure",
                                     "unsafe-ignore-expiry", NULL};
    int code = 0;
    cJSON *r = run_lab(scenarios, NULL, "13", &code);
    check_every_cell(r);
    assert_int_equal(code, 0);

    /* The answer lost and the webhook late: the reconciler settles from the bank's truth and
     * the late webhook is a mere duplicate. */
    const cJSON *ls = cell(r, "late-success", "answer lost, webhook late", "sync", "ws");
    EXPECT(ls, num(ls, "unknown") == num(ls, "ops"));
    EXPECT(ls, num(ls, "settled_reconciler") == num(ls, "ops"));
    EXPECT(ls, num(ls, "final_succeeded") == num(ls, "ops"));
    EXPECT(ls, num(ls, "duplicates_absorbed") > 0);
    /* Past the deadline: expired at the bank, nothing moved (verify's invariant 4 held). */
    for (int m = 0; m < 2; m++) {
        const cJSON *p =
            cell(r, "late-success", "past its deadline", m == 0 ? "sync" : "async", "ws");
        EXPECT(p, num(p, "final_failed") == num(p, "ops"));
    }

    const cJSON *pp = cell(r, "poll-vs-ws", "", "async", "poll:100");
    const cJSON *pw = cell(r, "poll-vs-ws", "", "async", "ws");
    EXPECT(pp, num(pp, "polls_sent") >= num(pp, "ops"));
    EXPECT(pw, num(pw, "polls_sent") == 0 && num(pw, "ws_messages") > 0);
    EXPECT(pp, ms(pp, "time_to_final_ms", "p50") >= ms(pw, "time_to_final_ms", "p50"));

    EXPECT(cell(r, "unsafe-timeout-is-failure", "", "sync", "ws"),
           breached(cell(r, "unsafe-timeout-is-failure", "", "sync", "ws"), 4));
    EXPECT(cell(r, "unsafe-ignore-expiry", "", "sync", "ws"),
           breached(cell(r, "unsafe-ignore-expiry", "", "sync", "ws"), 4));
    cJSON_Delete(r);
}

/* The first letter of each "sr fc …" pair of an outcomes string. */
static void status_letters(const char *outcomes, char *out, size_t cap)
{
    size_t n = 0, len = strlen(outcomes);
    for (size_t i = 0; i < len && n + 1 < cap; i += 3)
        out[n++] = outcomes[i];
    out[n] = '\0';
}

/* The same seed: the same ids, so the same fault decisions, so the same outcomes. */
static void test_seed(void **state)
{
    (void)state;
    const char *const scenarios[] = {"bank-flaky", NULL};
    const char *const extra[] = {"--modes", "sync", NULL};
    int code = 0;
    cJSON *a = run_lab(scenarios, extra, "21", &code);
    assert_int_equal(code, 0);
    cJSON *b = run_lab(scenarios, extra, "21", &code);
    assert_int_equal(code, 0);
    const cJSON *ca = cell(a, "bank-flaky", "", "sync", "ws");
    const cJSON *cb = cell(b, "bank-flaky", "", "sync", "ws");
    const char *oa = cJSON_GetStringValue(cJSON_GetObjectItem(ca, "outcomes"));
    const char *ob = cJSON_GetStringValue(cJSON_GetObjectItem(cb, "outcomes"));
    assert_non_null(oa);
    assert_non_null(ob);
    assert_true(strlen(oa) > 0);
    /* Compare what the faults decided — each payment's final status, in creation order —
     * not who settled it: on a loaded machine a payment the bank executed may time out and
     * be settled by its webhook instead of the answer, with the same status. */
    char sa[1024], sb[1024];
    status_letters(oa, sa, sizeof sa);
    status_letters(ob, sb, sizeof sb);
    assert_string_equal(sa, sb);
    /* Some payments met the fault (failed: the bank answered 500 and did nothing) and some
     * did not: the string carries decisions. */
    assert_non_null(strchr(sa, 'f'));
    assert_non_null(strchr(sa, 's'));
    cJSON_Delete(a);
    cJSON_Delete(b);
}

int main(int argc, char **argv)
{
    group = argc > 1 ? argv[1] : "core";
    const struct CMUnitTest all[] = {
        cmocka_unit_test(test_core),    cmocka_unit_test(test_webhooks),
        cmocka_unit_test(test_crashes), cmocka_unit_test(test_late),
        cmocka_unit_test(test_seed),
    };
    const char *names[] = {"core", "webhooks", "crashes", "late", "seed"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(group, names[i]) == 0)
            return _cmocka_run_group_tests(names[i], &all[i], 1, NULL, NULL);
    }
    fprintf(stderr, "test_lab: unknown group %s (core, webhooks, crashes, late, seed)\n", group);
    return 2;
}
