/* cmd_query.c owns the read-only wallet queries: `paylab balance`, `paylab tx` (a transaction
 * and its timeline) and `paylab history`.
 * Must not: send anything but GET.
 * Invariant: every path segment sent is a validated handle or id (nothing needs escaping). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "client.h"
#include "ids.h"
#include "out.h"
#include "pl.h"

#define QUERY_PATH_BYTES_MAX 128
#define HISTORY_LIMIT_DEFAULT 20
#define HISTORY_LIMIT_MAX 200 /* the wallet's own cap for ?limit= */

static const struct cli_spec balance_spec = {
    .usage = "balance USER",
    .summary = "Prints USER's wallet balance.",
    .pos_min = 1,
    .pos_max = 1,
};

static const struct cli_spec tx_spec = {
    .usage = "tx ID",
    .summary = "Prints a transaction (wtx_…): its status, who settled it, and its timeline, one\n"
               "line per step: local time, ms since the first step, event, status, reason.\n"
               "--json prints the wallet's answer as it is (unix ms). Exits 0 whenever the\n"
               "transaction is found.",
    .pos_min = 1,
    .pos_max = 1,
};

static const struct cli_opt history_opts[] = {
    {"limit", "N", "how many transactions, newest first (1..200, default 20)"},
};
static const struct cli_spec history_spec = {
    .usage = "history USER [--limit N]",
    .summary = "Lists USER's transactions, newest first, with amounts seen from USER's side and\n"
               "who settled each: response (the bank's answer to the call; a transfer is settled\n"
               "in its own response), webhook or reconciler; — while not final.",
    .pos_min = 1,
    .pos_max = 1,
    .opts = history_opts,
    .opts_count = PL_ARRAY_LEN(history_opts),
};

static int get_json(struct cli *cli, const char *path, struct client_resp *r)
{
    struct client_req req = {
        .method = "GET", .base_url = cli->wallet_url, .path = path, .service = "wallet"};
    return client_fetch(cli, &req, r);
}

int cmd_balance(struct cli *cli, int argc, char **argv)
{
    struct cli_args a;
    int rc = cli_parse(cli, &balance_spec, argc, argv, &a);
    if (rc != CLI_CONTINUE) {
        return rc;
    }
    if (!ids_user_valid(a.pos[0])) {
        return cli_usage_error(&balance_spec, "'%s' is not a user handle", a.pos[0]);
    }
    char path[QUERY_PATH_BYTES_MAX];
    snprintf(path, sizeof path, "/v1/users/%s", a.pos[0]);
    struct client_resp r;
    rc = get_json(cli, path, &r);
    if (rc != CLI_CONTINUE) {
        return rc;
    }
    if (cli->json) {
        out_json(r.json);
    } else {
        char money[MONEY_FORMAT_BYTES_MAX];
        int64_t balance = 0;
        out_int(r.json, "balance_minor", &balance);
        printf("%s: %s  (bank account %s)\n", a.pos[0], out_money(balance, money),
               out_str(r.json, "bank_account", "?"));
    }
    client_free(&r);
    return CLI_EXIT_OK;
}

static void print_tx_header(const cJSON *t)
{
    char money[MONEY_FORMAT_BYTES_MAX], when[OUT_TIME_BYTES_MAX];
    int64_t amount = 0, created = 0, expires = 0;
    out_int(t, "amount_minor", &amount);
    out_int(t, "created_at_ms", &created);
    const char *kind = out_str(t, "kind", "?");
    bool p2p = strcmp(kind, "p2p") == 0;
    bool out_of_wallet = strcmp(kind, "withdrawal") == 0 || p2p;
    printf("%s  %s (%s)  %s  %s\n", out_str(t, "id", "?"), out_kind_label(kind),
           out_str(t, "mode", "?"), out_str(t, "status", "?"), out_money(amount, money));
    printf("  %-13s %s → %s%s\n", "from, to",
           out_of_wallet ? out_str(t, "user", "?") : out_str(t, "counterparty", "?"),
           out_of_wallet ? out_str(t, "counterparty", "?") : out_str(t, "user", "?"),
           p2p || out_of_wallet ? "" : " (wallet)");
    printf("  %-13s %s\n", "created", out_time(created, true, when));
    if (out_int(t, "expires_at_ms", &expires)) { /* transfers have no deadline (null) */
        printf("  %-13s %s (+%lld ms: the bank executes it by then or never)\n", "deadline",
               out_time(expires, true, when), (long long)(expires - created));
    }
    printf("  %-13s %s\n", "bank payment", out_str(t, "bank_payment_id", "—"));
    printf("  %-13s %s\n", "settled by", out_str(t, "settled_by", "—"));
    if (out_str(t, "failure_reason", NULL) != NULL) {
        printf("  %-13s %s\n", "failure", out_str(t, "failure_reason", ""));
    }
    if (out_str(t, "note", NULL) != NULL) {
        printf("  %-13s %s\n", "note", out_str(t, "note", ""));
    }
}

/* The widest value of key over the steps ("bank_accepted", "outbox_expired"), so the column
 * never overflows whatever names the wallet adds. */
static size_t column_width(const cJSON *steps, const char *key, size_t min)
{
    size_t width = min;
    const cJSON *step;
    cJSON_ArrayForEach(step, steps)
    {
        size_t w = out_width(out_str(step, key, "?"));
        width = w > width ? w : width;
    }
    return width;
}

static void print_timeline(const cJSON *t)
{
    const cJSON *steps = cJSON_GetObjectItemCaseSensitive(t, "timeline");
    size_t event_width = column_width(steps, "event", 7);
    size_t status_width = column_width(steps, "status", 9);
    int64_t first_ms = 0;
    const cJSON *step;
    printf("timeline\n");
    cJSON_ArrayForEach(step, steps)
    {
        char when[OUT_TIME_BYTES_MAX], offset[32];
        int64_t at = 0;
        out_int(step, "at_ms", &at);
        if (first_ms == 0) {
            first_ms = at;
        }
        snprintf(offset, sizeof offset, "+%lld ms", (long long)(at - first_ms));
        printf("  ");
        out_cell(stdout, out_time(at, false, when), 12, false, 2);
        out_cell(stdout, offset, 10, true, 2);
        out_cell(stdout, out_str(step, "event", "?"), event_width, false, 2);
        out_cell(stdout, out_str(step, "status", "?"), status_width, false, 2);
        char reason[OUT_REASON_BYTES_MAX];
        printf("%s\n", out_reason(out_str(step, "reason", ""), first_ms, reason));
    }
}

int cmd_tx(struct cli *cli, int argc, char **argv)
{
    struct cli_args a;
    int rc = cli_parse(cli, &tx_spec, argc, argv, &a);
    if (rc != CLI_CONTINUE) {
        return rc;
    }
    if (!ids_valid("wtx_", a.pos[0])) {
        return cli_usage_error(&tx_spec, "'%s' is not a transaction id (wtx_ + 24 hex digits)",
                               a.pos[0]);
    }
    char path[QUERY_PATH_BYTES_MAX];
    snprintf(path, sizeof path, "/v1/transactions/%s", a.pos[0]);
    struct client_resp r;
    rc = get_json(cli, path, &r);
    if (rc != CLI_CONTINUE) {
        return rc;
    }
    if (cli->json) {
        out_json(r.json);
    } else {
        print_tx_header(r.json);
        print_timeline(r.json);
    }
    client_free(&r);
    return CLI_EXIT_OK;
}

/* The amount as USER sees it: money in is positive, money out negative. */
static int64_t signed_amount(const cJSON *t, const char *user)
{
    int64_t amount = 0;
    out_int(t, "amount_minor", &amount);
    const char *kind = out_str(t, "kind", "");
    if (strcmp(kind, "withdrawal") == 0) {
        return -amount;
    }
    if (strcmp(kind, "p2p") == 0 && strcmp(out_str(t, "user", ""), user) == 0) {
        return -amount;
    }
    return amount;
}

static void print_history_row(const cJSON *t, const char *user)
{
    char when[OUT_TIME_BYTES_MAX], money[MONEY_FORMAT_BYTES_MAX], with[96];
    int64_t created = 0;
    out_int(t, "created_at_ms", &created);
    const char *kind = out_str(t, "kind", "?");
    bool payer = strcmp(out_str(t, "user", ""), user) == 0;
    if (strcmp(kind, "p2p") == 0) {
        snprintf(with, sizeof with, "%s %s", payer ? "to" : "from",
                 payer ? out_str(t, "counterparty", "?") : out_str(t, "user", "?"));
    } else {
        snprintf(with, sizeof with, "%s %s", strcmp(kind, "topup") == 0 ? "from" : "to",
                 out_str(t, "counterparty", "?"));
    }
    printf("  ");
    out_cell(stdout, out_time(created, true, when), 23, false, 2);
    out_cell(stdout, out_str(t, "id", "?"), 28, false, 2);
    out_cell(stdout, out_kind_label(kind), 10, false, 2);
    out_cell(stdout, out_str(t, "mode", "?"), 13, false, 2);
    out_cell(stdout, out_str(t, "status", "?"), 9, false, 2);
    out_cell(stdout, out_str(t, "settled_by", "—"), 10, false, 2);
    /* Only a succeeded transaction moved money: the others show the amount without a sign. */
    bool moved = strcmp(out_str(t, "status", ""), "succeeded") == 0;
    int64_t amount = signed_amount(t, user);
    out_cell(stdout,
             moved ? out_money_signed(amount, money)
                   : out_money(amount < 0 ? -amount : amount, money),
             14, true, 2);
    printf("%s\n", with);
}

static void print_history(const cJSON *body, const char *user)
{
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(body, "transactions");
    int count = cJSON_GetArraySize(list);
    printf("%s: %d transaction%s, newest first\n", user, count, count == 1 ? "" : "s");
    if (count == 0) {
        return;
    }
    printf("  ");
    out_cell(stdout, "CREATED", 23, false, 2);
    out_cell(stdout, "ID", 28, false, 2);
    out_cell(stdout, "KIND", 10, false, 2);
    out_cell(stdout, "MODE", 13, false, 2);
    out_cell(stdout, "STATUS", 9, false, 2);
    out_cell(stdout, "SETTLED BY", 10, false, 2);
    out_cell(stdout, "AMOUNT", 14, true, 2);
    printf("WITH\n");
    const cJSON *t;
    cJSON_ArrayForEach(t, list)
    {
        print_history_row(t, user);
    }
}

static int parse_limit(const struct cli_args *a, long *limit)
{
    *limit = HISTORY_LIMIT_DEFAULT;
    if (a->opt[0] == NULL) {
        return 0;
    }
    char *end = NULL;
    *limit = strtol(a->opt[0], &end, 10);
    if (end == a->opt[0] || *end != '\0' || *limit < 1 || *limit > HISTORY_LIMIT_MAX) {
        return cli_usage_error(&history_spec, "--limit takes 1..%d, not '%s'", HISTORY_LIMIT_MAX,
                               a->opt[0]);
    }
    return 0;
}

int cmd_history(struct cli *cli, int argc, char **argv)
{
    struct cli_args a;
    long limit = 0;
    int rc = cli_parse(cli, &history_spec, argc, argv, &a);
    if (rc != CLI_CONTINUE) {
        return rc;
    }
    if (!ids_user_valid(a.pos[0])) {
        return cli_usage_error(&history_spec, "'%s' is not a user handle", a.pos[0]);
    }
    if (parse_limit(&a, &limit) != 0) {
        return CLI_EXIT_USAGE;
    }
    char path[QUERY_PATH_BYTES_MAX];
    snprintf(path, sizeof path, "/v1/users/%s/transactions?limit=%ld", a.pos[0], limit);
    struct client_resp r;
    rc = get_json(cli, path, &r);
    if (rc != CLI_CONTINUE) {
        return rc;
    }
    if (cli->json) {
        out_json(r.json);
    } else {
        print_history(r.json, a.pos[0]);
    }
    client_free(&r);
    return CLI_EXIT_OK;
}
