/* test_cli_output.c: what the paylab CLI prints for people and for scripts (docs/api.md, the
 * paylab CLI), against a live cluster with one gateway:
 *  (a) `faults set` refuses an unknown key by naming it and listing the real keys, refuses a
 *      bad value by naming the key and its range, and sends nothing in either case;
 *  (b) `watch` prints the event type and the transaction id on every event line;
 *  (c) `tx` prints local times and +N ms, never a raw unix-ms number; `--json` keeps them;
 *  (d) `history` shows who settled each transaction: response, webhook, reconciler;
 *  (e) `topup`/`withdraw --json` have the same keys with no --wait, --wait ws and --wait
 *      poll:MS, and for a refusal, with null where a field does not apply.
 * The reconciler's grace is long, so what settles an async top-up is its webhook. */
#include "e2e.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXIT_OK 0
#define EXIT_USAGE 2
#define EXIT_NOT_FINAL 4
/* A unix-ms timestamp printed for people would be 13 digits in a row. */
#define UNIX_MS_DIGITS 13
#define STDERR_BYTES_MAX (64 * 1024)
#define WATCH_TIMEOUT_MS "15000"

static const struct e2e_opts output_opts = {
    .gateways = 1,
    .pending_grace_ms = 15000,
};

/* ------------------------------------------------------------------ running paylab */

/* Reads what fd holds from its start, up to STDERR_BYTES_MAX; malloc'ed. */
static char *read_all(int fd)
{
    char *buf = malloc(STDERR_BYTES_MAX + 1);
    assert_non_null(buf);
    size_t len = 0;
    assert_true(lseek(fd, 0, SEEK_SET) == 0);
    for (;;) {
        ssize_t n = read(fd, buf + len, STDERR_BYTES_MAX - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    return buf;
}

/* Runs paylab with args; its stdout into *out and its stderr into *err (both malloc'ed, the
 * caller frees; either may be NULL). The child inherits our stderr, so it is pointed at a
 * file for the run. Returns the exit code. */
static int paylab_run(struct e2e *e, const char *const *args, char **out, char **err)
{
    char path[CLUSTER_PATH_BYTES_MAX + 32];
    snprintf(path, sizeof path, "%s/paylab-stderr.XXXXXX", e->c.dir);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fd, STDERR_FILENO) >= 0);
    char *captured = NULL;
    int rc = cluster_paylab(&e->c, args, &captured);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    char *text = read_all(fd);
    close(fd);
    unlink(path);
    if (err != NULL)
        *err = text;
    else
        free(text);
    if (out != NULL)
        *out = captured != NULL ? captured : calloc(1, 1);
    else
        free(captured);
    return rc;
}

/* Runs paylab with --json and parses its stdout as one JSON object (asserted). */
static cJSON *paylab_json(struct e2e *e, const char *const *args, int rc_expected)
{
    char *out = NULL;
    int rc = paylab_run(e, args, &out, NULL);
    cJSON *j = cJSON_Parse(out);
    if (j == NULL || rc != rc_expected)
        fail_msg("paylab %s %s: exit %d (expected %d), output: %s", args[0], args[1], rc,
                 rc_expected, out);
    free(out);
    return j;
}

static void expect_contains(const char *text, const char *needle)
{
    if (strstr(text, needle) == NULL)
        fail_msg("expected \"%s\" in:\n%s", needle, text);
}

/* The line of text that contains needle, copied into line (asserted present). */
static void line_with(const char *text, const char *needle, char *line, size_t cap)
{
    const char *at = strstr(text, needle);
    if (at == NULL)
        fail_msg("no line with \"%s\" in:\n%s", needle, text);
    const char *start = at;
    while (start > text && start[-1] != '\n')
        start--;
    size_t len = strcspn(start, "\n");
    assert_true(len < cap);
    memcpy(line, start, len);
    line[len] = '\0';
}

/* ------------------------------------------------------------------ (a) faults set */

static int64_t bank_fault_int(struct e2e *e, const char *key)
{
    struct e2e_resp r;
    e2e_bank(e, "GET", "/admin/faults", NULL, e->admin_token, &r);
    e2e_expect(&r, 200, NULL);
    int64_t v = e2e_int(r.json, key);
    e2e_resp_free(&r);
    return v;
}

static void test_faults_set_names_unknown_keys(void **state)
{
    struct e2e *e = *state;
    char *err = NULL;
    e2e_start(e, &output_opts);

    /* A valid pair next to an unknown key: refused as a whole, nothing is sent. */
    const char *const unknown[] = {"faults", "set", "latency_ms=100", "latency=100", NULL};
    assert_int_equal(paylab_run(e, unknown, NULL, &err), EXIT_USAGE);
    expect_contains(err, "unknown fault key 'latency'");
    expect_contains(err, "did you mean latency_ms=100?");
    static const char *const keys[] = {"seed",
                                       "latency_ms",
                                       "latency_jitter_ms",
                                       "error_rate",
                                       "lost_response_rate",
                                       "down",
                                       "webhook_drop_rate",
                                       "webhook_duplicate_rate",
                                       "webhook_delay_ms",
                                       "webhook_delay_jitter_ms",
                                       "webhook_stop"};
    const char *list = strstr(err, "keys are ");
    assert_non_null(list);
    for (size_t i = 0; i < PL_ARRAY_LEN(keys); i++)
        expect_contains(list, keys[i]);
    assert_null(strstr(err, "true or false"));
    free(err);
    assert_int_equal(bank_fault_int(e, "latency_ms"), 0);

    /* The right key with a bad value: the key, what it takes, the value given. */
    static const struct {
        const char *pair, *message;
    } bad[] = {
        {"latency_ms=abc", "latency_ms takes an integer from 0 to 600000, not 'abc'"},
        {"latency_ms=600001", "latency_ms takes an integer from 0 to 600000, not '600001'"},
        {"error_rate=1.5", "error_rate takes a rate from 0 to 1"},
        {"down=yes", "down takes true or false, not 'yes'"},
        {"nonsense", "'nonsense' is not KEY=VALUE"},
    };
    for (size_t i = 0; i < PL_ARRAY_LEN(bad); i++) {
        const char *const args[] = {"faults", "set", bad[i].pair, NULL};
        assert_int_equal(paylab_run(e, args, NULL, &err), EXIT_USAGE);
        expect_contains(err, bad[i].message);
        free(err);
    }

    const char *const good[] = {"faults", "set", "latency_ms=100", "down=false", NULL};
    assert_int_equal(paylab_run(e, good, NULL, NULL), EXIT_OK);
    assert_int_equal(bank_fault_int(e, "latency_ms"), 100);
    e2e_finish(e);
}

/* ------------------------------------------------------------------ (b) watch */

struct watch_run {
    pthread_t thread;
    struct e2e *e;
    char *out;
    int rc;
};

static void *watch_thread(void *arg)
{
    struct watch_run *w = arg;
    const char *const args[] = {"watch",        "alice",          "--count", "3",
                                "--timeout-ms", WATCH_TIMEOUT_MS, NULL};
    w->rc = cluster_paylab(&w->e->c, args, &w->out);
    return NULL;
}

/* The gateway's count of user subscriptions, from its /metrics. */
static bool watch_subscribed(void *arg)
{
    struct e2e *e = arg;
    char url[CLUSTER_URL_BYTES_MAX + 16];
    long status = 0;
    char *body = NULL;
    snprintf(url, sizeof url, "%s/metrics", e->c.gateway_url[0]);
    if (cluster_http("GET", url, NULL, NULL, 2000, &status, &body) != 0)
        return false;
    static const char metric[] = "paylab_gateway_ws_subscriptions{kind=\"user\"} ";
    const char *at = status == 200 ? strstr(body, metric) : NULL;
    bool yes = at != NULL && strtoll(at + sizeof metric - 1, NULL, 10) >= 1;
    free(body);
    return yes;
}

static void test_watch_prints_type_and_id(void **state)
{
    struct e2e *e = *state;
    struct e2e_resp r;
    char id[64], line[1024];
    e2e_start(e, &output_opts);
    e2e_user_add(e, "alice");

    struct watch_run w = {.e = e};
    assert_int_equal(pthread_create(&w.thread, NULL, watch_thread, &w), 0);
    assert_true(cluster_wait_for(watch_subscribed, e, cluster_deadline_ms(10000)));
    assert_int_equal(e2e_topup(e, "alice", 12345, "sync", NULL, &r), 200);
    pl_strlcpy(id, e2e_str(r.json, "id"), sizeof id);
    e2e_resp_free(&r);
    assert_int_equal(pthread_join(w.thread, NULL), 0);
    assert_non_null(w.out);
    assert_int_equal(w.rc, EXIT_OK);

    /* pending, succeeded, then the balance: each line names its event and its transaction. */
    line_with(w.out, "pending", line, sizeof line);
    expect_contains(line, "transaction.updated");
    expect_contains(line, id);
    expect_contains(line, "top-up");
    expect_contains(line, "₹123.45");
    line_with(w.out, "balance ₹123.45", line, sizeof line);
    expect_contains(line, "balance.updated");
    expect_contains(line, id);
    expect_contains(line, "succeeded");
    int lines_with_id = 0;
    for (const char *p = strstr(w.out, id); p != NULL; p = strstr(p + 1, id))
        lines_with_id++;
    assert_int_equal(lines_with_id, 3);
    free(w.out);
    e2e_finish(e);
}

/* ------------------------------------------------------------------ (c) tx */

static bool is_word_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

/* True when text has a run of exactly UNIX_MS_DIGITS digits standing alone (the digits
 * inside an id such as bp_1234… are glued to a prefix, and do not count). */
static bool has_unix_ms(const char *text)
{
    for (const char *p = text; *p != '\0'; p++) {
        if ((p > text && is_word_char(p[-1])) || *p < '0' || *p > '9')
            continue;
        size_t n = strspn(p, "0123456789");
        if (n == UNIX_MS_DIGITS && !is_word_char(p[n]))
            return true;
        p += n - 1;
    }
    return false;
}

/* "HH:MM:SS.mmm" at the start of s. */
static bool is_clock(const char *s)
{
    static const char shape[] = "dd:dd:dd.ddd";
    for (size_t i = 0; i < sizeof shape - 1; i++) {
        bool digit = s[i] >= '0' && s[i] <= '9';
        if (shape[i] == 'd' ? !digit : s[i] != shape[i])
            return false;
    }
    return true;
}

static void test_tx_prints_times_people_read(void **state)
{
    struct e2e *e = *state;
    struct e2e_resp r;
    char id[64], line[1024];
    char *out = NULL;
    e2e_start(e, &output_opts);
    e2e_user_add(e, "alice");
    assert_int_equal(e2e_topup(e, "alice", 500, "sync", NULL, &r), 200);
    pl_strlcpy(id, e2e_str(r.json, "id"), sizeof id);
    e2e_resp_free(&r);

    const char *const tx[] = {"tx", id, NULL};
    assert_int_equal(paylab_run(e, tx, &out, NULL), EXIT_OK);
    if (has_unix_ms(out))
        fail_msg("a raw unix-ms number in:\n%s", out);
    expect_contains(out, "settled by    response");
    const char *timeline = strstr(out, "timeline\n");
    assert_non_null(timeline);
    /* The first step is +0 ms; every step starts with a local clock time. */
    line_with(timeline, "created", line, sizeof line);
    assert_true(is_clock(line + 2));
    expect_contains(line, " +0 ms ");
    line_with(timeline, "bank_call", line, sizeof line);
    assert_true(is_clock(line + 2));
    expect_contains(line, "deadline ");
    free(out);

    /* --json keeps the wallet's unix ms for scripts. */
    const char *const tx_json[] = {"tx", id, "--json", NULL};
    cJSON *j = paylab_json(e, tx_json, EXIT_OK);
    const cJSON *steps = cJSON_GetObjectItemCaseSensitive(j, "timeline");
    assert_true(cJSON_GetArraySize(steps) >= 2);
    assert_true(e2e_int(cJSON_GetArrayItem(steps, 0), "at_ms") > 1000000000000LL);
    assert_true(e2e_int(j, "created_at_ms") > 1000000000000LL);
    cJSON_Delete(j);
    e2e_finish(e);
}

/* ------------------------------------------------------------------ (d) history */

/* A sync top-up of amount with the bank's faults set to faults; its id into id_out. */
static void topup_with_faults(struct e2e *e, const char *faults, int64_t amount_minor,
                              char id_out[64])
{
    struct e2e_resp r;
    e2e_faults(e, "{\"clear\":true}");
    e2e_faults(e, faults);
    long status = e2e_topup(e, "alice", amount_minor, "sync", NULL, &r);
    assert_true(status == 200 || status == 504);
    pl_strlcpy(id_out, e2e_str(r.json, "id"), 64);
    e2e_resp_free(&r);
    cJSON_Delete(e2e_wait_final(e, id_out, E2E_SETTLE_TIMEOUT_MS));
}

static void test_history_shows_who_settled(void **state)
{
    struct e2e *e = *state;
    char ids[3][64], line[1024];
    char *out = NULL;
    static const char *const by[] = {"response", "webhook", "reconciler"};
    e2e_start(e, &output_opts);
    e2e_user_add(e, "alice");
    /* The bank answers; the bank never answers but its webhook comes; neither comes, so
     * the reconciler asks the bank. */
    topup_with_faults(e, "{}", 100, ids[0]);
    topup_with_faults(e, "{\"lost_response_rate\":1}", 200, ids[1]);
    topup_with_faults(e, "{\"lost_response_rate\":1,\"webhook_drop_rate\":1}", 300, ids[2]);
    e2e_faults(e, "{\"clear\":true}");
    for (size_t i = 0; i < PL_ARRAY_LEN(by); i++)
        e2e_expect_settled(e, ids[i], "succeeded", by[i], 2);

    const char *const history[] = {"history", "alice", NULL};
    assert_int_equal(paylab_run(e, history, &out, NULL), EXIT_OK);
    line_with(out, "CREATED", line, sizeof line);
    expect_contains(line, "SETTLED BY");
    for (size_t i = 0; i < PL_ARRAY_LEN(by); i++) {
        char word[32];
        line_with(out, ids[i], line, sizeof line);
        snprintf(word, sizeof word, "  %s  ", by[i]);
        expect_contains(line, word);
    }
    free(out);
    e2e_finish(e);
}

/* ------------------------------------------------------------------ (e) --json */

/* Asserts a and b have the same member names in the same order. */
static void expect_same_keys(const cJSON *a, const cJSON *b, const char *what)
{
    const cJSON *x = a != NULL ? a->child : NULL;
    const cJSON *y = b != NULL ? b->child : NULL;
    for (; x != NULL && y != NULL; x = x->next, y = y->next) {
        if (strcmp(x->string, y->string) != 0)
            fail_msg("%s: key %s where the other has %s", what, x->string, y->string);
    }
    if (x != NULL || y != NULL)
        fail_msg("%s: %s has a key the other lacks", what, x != NULL ? x->string : y->string);
}

static const cJSON *wait_of(const cJSON *j)
{
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(j, "wait");
    assert_true(cJSON_IsObject(w));
    return w;
}

static void test_money_json_has_one_shape(void **state)
{
    struct e2e *e = *state;
    e2e_start(e, &output_opts);
    e2e_user_add(e, "alice");

    const char *const none[] = {"topup", "alice", "1", "--mode", "async", "--json", NULL};
    const char *const ws[] = {"topup",  "alice", "2",      "--mode", "async",
                              "--wait", "ws",    "--json", NULL};
    const char *const poll[] = {"topup",  "alice",   "3",      "--mode", "async",
                                "--wait", "poll:50", "--json", NULL};
    const char *const sync[] = {"topup", "alice", "4", "--key", "auto", "--json", NULL};
    const char *const out[] = {"withdraw", "alice",   "1",      "--mode", "async",
                               "--wait",   "poll:50", "--json", NULL};
    const char *const refused[] = {"topup", "nobody", "1", "--json", NULL};
    cJSON *j_none = paylab_json(e, none, EXIT_NOT_FINAL);
    cJSON *j_ws = paylab_json(e, ws, EXIT_OK);
    cJSON *j_poll = paylab_json(e, poll, EXIT_OK);
    cJSON *j_sync = paylab_json(e, sync, EXIT_OK);
    cJSON *j_out = paylab_json(e, out, EXIT_OK);
    cJSON *j_refused = paylab_json(e, refused, 1);

    const cJSON *all[] = {j_ws, j_poll, j_sync, j_out, j_refused};
    for (size_t i = 0; i < PL_ARRAY_LEN(all); i++) {
        expect_same_keys(j_none, all[i], "top level");
        expect_same_keys(wait_of(j_none), wait_of(all[i]), "wait");
    }

    /* No wait: the 202 as answered; nothing about a wait. */
    assert_string_equal(e2e_str(j_none, "status"), "pending");
    assert_int_equal(e2e_int(j_none, "http_status"), 202);
    assert_true(e2e_is_null(j_none, "settled_by"));
    assert_true(e2e_is_null(j_none, "error"));
    assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(j_none, "final")));
    assert_string_equal(e2e_str(wait_of(j_none), "via"), "none");
    assert_true(e2e_is_null(wait_of(j_none), "final"));
    assert_true(e2e_is_null(wait_of(j_none), "elapsed_ms"));

    /* ws: the record after the push, settled_by included; the push's own figures. */
    assert_string_equal(e2e_str(j_ws, "status"), "succeeded");
    assert_string_equal(e2e_str(j_ws, "settled_by"), "webhook");
    assert_int_equal(e2e_int(j_ws, "http_status"), 202);
    assert_int_equal(strncmp(e2e_str(j_ws, "bank_payment_id"), "bp_", 3), 0);
    assert_string_equal(e2e_str(wait_of(j_ws), "via"), "ws");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(wait_of(j_ws), "final")));
    assert_true(e2e_int(wait_of(j_ws), "event_seq") > e2e_int(wait_of(j_ws), "head_seq"));
    assert_true(e2e_int(wait_of(j_ws), "push_us") >= 0);
    assert_true(e2e_is_null(wait_of(j_ws), "polls"));

    /* poll: the same record; polls instead of a gateway. */
    assert_string_equal(e2e_str(j_poll, "status"), "succeeded");
    assert_string_equal(e2e_str(j_poll, "settled_by"), "webhook");
    assert_string_equal(e2e_str(wait_of(j_poll), "via"), "poll");
    assert_true(e2e_int(wait_of(j_poll), "polls") >= 1);
    assert_int_equal(e2e_int(wait_of(j_poll), "interval_ms"), 50);
    assert_true(e2e_int(wait_of(j_poll), "elapsed_ms") >= e2e_int(j_poll, "elapsed_ms"));
    assert_true(e2e_is_null(wait_of(j_poll), "gateway"));

    /* sync with a key: final in the answer, the key echoed. */
    assert_string_equal(e2e_str(j_sync, "settled_by"), "response");
    assert_int_equal(strncmp(e2e_str(j_sync, "idempotency_key"), "key_", 4), 0);
    assert_string_equal(e2e_str(j_out, "kind"), "withdrawal");

    /* A refusal before any transaction: every transaction field null, the error kept. */
    assert_int_equal(e2e_int(j_refused, "http_status"), 404);
    assert_true(e2e_is_null(j_refused, "id"));
    assert_true(e2e_is_null(j_refused, "status"));
    const cJSON *error = cJSON_GetObjectItemCaseSensitive(j_refused, "error");
    assert_string_equal(e2e_str(error, "code"), "unknown_user");

    cJSON_Delete(e2e_wait_final(e, e2e_str(j_none, "id"), E2E_SETTLE_TIMEOUT_MS));
    cJSON_Delete(j_none);
    cJSON_Delete(j_ws);
    cJSON_Delete(j_poll);
    cJSON_Delete(j_sync);
    cJSON_Delete(j_out);
    cJSON_Delete(j_refused);
    e2e_finish(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_faults_set_names_unknown_keys, e2e_setup,
                                        e2e_teardown),
        cmocka_unit_test_setup_teardown(test_watch_prints_type_and_id, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_tx_prints_times_people_read, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_history_shows_who_settled, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_money_json_has_one_shape, e2e_setup, e2e_teardown),
    };
    e2e_filter_from_env();
    return cmocka_run_group_tests_name("e2e_cli_output", tests, NULL, NULL);
}
