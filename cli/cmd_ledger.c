/* cmd_ledger.c owns `paylab ledger`: a read-only look at wallet.db through its views —
 * balances (v_balances) and the most recent entries (v_ledger) — in aligned columns.
 * Must not: write to the database or talk to a service.
 * Invariant: balances and entries come from one read transaction (one snapshot). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ids.h"
#include "out.h"
#include "pl.h"
#include "rodb.h"

#define LEDGER_ENTRIES_DEFAULT 20
#define LEDGER_ENTRIES_MAX 1000
/* A terminal listing, not an export: past this many accounts, say how many were left out. */
#define LEDGER_BALANCES_MAX 200
#define LEDGER_ACCOUNT_BYTES_MAX 80
#define LEDGER_TEXT_BYTES_MAX 48

static const struct cli_opt ledger_opts[] = {
    {"user", "USER", "only USER's wallet account and the entries of its transactions"},
    {"db", "PATH", "the wallet database (default <data-dir>/wallet.db)"},
    {"limit", "N", "how many recent entries (1..1000, default 20)"},
};
enum { OPT_USER, OPT_DB, OPT_LIMIT };

static const struct cli_spec ledger_spec = {
    .usage = "ledger [--user USER] [--db PATH] [--limit N]",
    .summary = "Shows the wallet's double-entry ledger, read-only: every account's balance\n"
               "(v_balances) and the most recent entries (v_ledger). Safe while services run.",
    .pos_min = 0,
    .pos_max = 0,
    .opts = ledger_opts,
    .opts_count = PL_ARRAY_LEN(ledger_opts),
};

static const char *const balances_sql =
    "SELECT account, kind, COALESCE(owner, ''), balance_minor FROM v_balances "
    "WHERE ?1 IS NULL OR owner = ?1";
static const char *const total_sql =
    "SELECT COALESCE(SUM(balance_minor), 0), COUNT(*) FROM accounts";
static const char *const entries_sql =
    "SELECT * FROM (SELECT entry, transaction_id, kind, status, account, amount_minor, at "
    "FROM v_ledger WHERE ?1 IS NULL OR transaction_id IN "
    "(SELECT transaction_id FROM entries WHERE account_id = 'wallet:' || ?1) "
    "ORDER BY entry DESC LIMIT ?2) ORDER BY entry";

static void col(sqlite3_stmt *s, int i, char *out, size_t cap)
{
    db_column_copy(s, i, out, cap);
}

static void balance_row(cJSON *list, const char *account, const char *kind, int64_t balance)
{
    if (list != NULL) {
        cJSON *row = cJSON_CreateObject();
        cJSON_AddStringToObject(row, "account", account);
        cJSON_AddStringToObject(row, "kind", kind);
        cJSON_AddNumberToObject(row, "balance_minor", (double)balance);
        cJSON_AddItemToArray(list, row);
        return;
    }
    char money[MONEY_FORMAT_BYTES_MAX];
    printf("  ");
    out_cell(stdout, account, 40, false, 2);
    out_cell(stdout, kind, 9, false, 2);
    out_cell(stdout, out_money(balance, money), 18, true, 0);
    printf("\n");
}

/* Lists balances on stdout, or into report["balances"] when report is not NULL. */
static int print_balances(struct db *db, const char *user, cJSON *report)
{
    sqlite3_stmt *s = db_stmt(db, balances_sql);
    if (s == NULL || db_bind_text(s, 1, user) != SQLITE_OK) {
        return PL_EDB;
    }
    cJSON *list = report != NULL ? cJSON_AddArrayToObject(report, "balances") : NULL;
    if (report == NULL) {
        printf("Balances\n  ");
        out_cell(stdout, "ACCOUNT", 40, false, 2);
        out_cell(stdout, "KIND", 9, false, 2);
        out_cell(stdout, "BALANCE", 18, true, 0);
        printf("\n");
    }
    size_t rows = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        char account[LEDGER_ACCOUNT_BYTES_MAX], kind[LEDGER_TEXT_BYTES_MAX];
        col(s, 0, account, sizeof account);
        col(s, 1, kind, sizeof kind);
        if (++rows <= LEDGER_BALANCES_MAX) {
            balance_row(list, account, kind, sqlite3_column_int64(s, 3));
        }
    }
    if (rows > LEDGER_BALANCES_MAX && report == NULL) {
        printf("  … and %zu more %s (use --user USER)\n", rows - LEDGER_BALANCES_MAX,
               out_plural((int64_t)(rows - LEDGER_BALANCES_MAX), "account", "accounts"));
    }
    return rc == SQLITE_DONE ? 0 : PL_EDB;
}

static int print_total(struct db *db, cJSON *report)
{
    sqlite3_stmt *s = db_stmt(db, total_sql);
    if (s == NULL || sqlite3_step(s) != SQLITE_ROW) {
        return PL_EDB;
    }
    int64_t total = sqlite3_column_int64(s, 0);
    int64_t accounts = sqlite3_column_int64(s, 1);
    if (report != NULL) {
        cJSON_AddNumberToObject(report, "total_minor", (double)total);
        cJSON_AddNumberToObject(report, "accounts", (double)accounts);
        return 0;
    }
    char money[MONEY_FORMAT_BYTES_MAX];
    printf("  ");
    out_cell(stdout, "total of all accounts", 40, false, 2);
    out_cell(stdout, "", 9, false, 2);
    out_cell(stdout, out_money(total, money), 18, true, 2);
    printf("%s\n", total == 0 ? "(sums to zero ✓)" : "(should be zero ✗ — run paylab verify)");
    return 0;
}

static void entry_header(void)
{
    printf("  ");
    out_cell(stdout, "ENTRY", 6, true, 2);
    out_cell(stdout, "AT (UTC)", 23, false, 2);
    out_cell(stdout, "TRANSACTION", 28, false, 2);
    out_cell(stdout, "KIND", 10, false, 2);
    out_cell(stdout, "STATUS", 9, false, 2);
    out_cell(stdout, "ACCOUNT", 24, false, 2);
    out_cell(stdout, "AMOUNT", 16, true, 0);
    printf("\n");
}

static void entry_row(sqlite3_stmt *s, cJSON *list)
{
    char txn[LEDGER_TEXT_BYTES_MAX], kind[LEDGER_TEXT_BYTES_MAX], status[LEDGER_TEXT_BYTES_MAX];
    char account[LEDGER_ACCOUNT_BYTES_MAX], at[LEDGER_TEXT_BYTES_MAX], id[24];
    char money[MONEY_FORMAT_BYTES_MAX];
    col(s, 1, txn, sizeof txn);
    col(s, 2, kind, sizeof kind);
    col(s, 3, status, sizeof status);
    col(s, 4, account, sizeof account);
    col(s, 6, at, sizeof at);
    int64_t amount = sqlite3_column_int64(s, 5);
    if (list != NULL) {
        cJSON *row = cJSON_CreateObject();
        cJSON_AddNumberToObject(row, "entry", (double)sqlite3_column_int64(s, 0));
        cJSON_AddStringToObject(row, "at", at);
        cJSON_AddStringToObject(row, "transaction_id", txn);
        cJSON_AddStringToObject(row, "kind", kind);
        cJSON_AddStringToObject(row, "status", status);
        cJSON_AddStringToObject(row, "account", account);
        cJSON_AddNumberToObject(row, "amount_minor", (double)amount);
        cJSON_AddItemToArray(list, row);
        return;
    }
    snprintf(id, sizeof id, "%lld", (long long)sqlite3_column_int64(s, 0));
    printf("  ");
    out_cell(stdout, id, 6, true, 2);
    out_cell(stdout, at, 23, false, 2);
    out_cell(stdout, txn, 28, false, 2);
    out_cell(stdout, out_kind_label(kind), 10, false, 2);
    out_cell(stdout, status, 9, false, 2);
    out_cell(stdout, account, 24, false, 2);
    out_cell(stdout, out_money_signed(amount, money), 16, true, 0);
    printf("\n");
}

static int print_entries(struct db *db, const char *user, long limit, cJSON *report)
{
    sqlite3_stmt *s = db_stmt(db, entries_sql);
    if (s == NULL || db_bind_text(s, 1, user) != SQLITE_OK ||
        sqlite3_bind_int64(s, 2, limit) != SQLITE_OK) {
        return PL_EDB;
    }
    cJSON *list = report != NULL ? cJSON_AddArrayToObject(report, "entries") : NULL;
    if (report == NULL) {
        printf("\nRecent entries (last %ld%s%s, oldest first)\n", limit, user != NULL ? " of " : "",
               user != NULL ? user : "");
        entry_header();
    }
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        entry_row(s, list);
    }
    return rc == SQLITE_DONE ? 0 : PL_EDB;
}

static int parse_ledger(struct cli *cli, int argc, char **argv, struct cli_args *a, long *limit,
                        char *path, size_t cap)
{
    int rc = cli_parse(cli, &ledger_spec, argc, argv, a);
    if (rc != CLI_CONTINUE) {
        return rc;
    }
    if (a->opt[OPT_USER] != NULL && !ids_user_valid(a->opt[OPT_USER])) {
        return cli_usage_error(&ledger_spec, "'%s' is not a user handle", a->opt[OPT_USER]);
    }
    *limit = LEDGER_ENTRIES_DEFAULT;
    if (a->opt[OPT_LIMIT] != NULL) {
        char *end = NULL;
        *limit = strtol(a->opt[OPT_LIMIT], &end, 10);
        if (end == a->opt[OPT_LIMIT] || *end != '\0' || *limit < 1 || *limit > LEDGER_ENTRIES_MAX) {
            return cli_usage_error(&ledger_spec, "--limit takes 1..%d", LEDGER_ENTRIES_MAX);
        }
    }
    int n = a->opt[OPT_DB] != NULL ? snprintf(path, cap, "%s", a->opt[OPT_DB])
                                   : snprintf(path, cap, "%s/wallet.db", cli->data_dir);
    if (n < 0 || (size_t)n >= cap) {
        return cli_usage_error(&ledger_spec, "the database path is too long");
    }
    return CLI_CONTINUE;
}

int cmd_ledger(struct cli *cli, int argc, char **argv)
{
    struct cli_args a;
    struct db db = {0};
    char path[CLI_PATH_BYTES_MAX];
    long limit = 0;
    int rc = parse_ledger(cli, argc, argv, &a, &limit, path, sizeof path);
    if (rc != CLI_CONTINUE) {
        return rc;
    }
    if (rodb_open(&db, path, "wallet", "--db") != 0) {
        return CLI_EXIT_USAGE;
    }
    cJSON *report = cli->json ? cJSON_CreateObject() : NULL;
    if (report != NULL) {
        cJSON_AddStringToObject(report, "db", path);
    } else {
        printf("wallet ledger %s (read-only)\n\n", path);
    }
    const char *user = a.opt[OPT_USER];
    rc = rodb_begin(&db);
    if (rc == 0) {
        rc = print_balances(&db, user, report);
    }
    if (rc == 0 && user == NULL) {
        rc = print_total(&db, report);
    }
    if (rc == 0) {
        rc = print_entries(&db, user, limit, report);
    }
    if (rc != 0) {
        fprintf(stderr, "paylab: reading %s failed: %s (is it a wallet database?)\n", path,
                sqlite3_errmsg(db.handle));
    }
    rodb_end(&db);
    db_close(&db);
    if (report != NULL && rc == 0) {
        out_json(report);
    }
    cJSON_Delete(report);
    return rc == 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
}
