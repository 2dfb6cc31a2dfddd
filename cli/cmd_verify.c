/* cmd_verify.c owns `paylab verify`: it opens wallet.db read-only, ATTACHes bank.db (also
 * read-only: an attached database inherits the connection's flags), reads both in one read
 * transaction, runs the checks of verify_wallet.c / verify_bank.c and prints one line per
 * invariant of docs/ledger.md, the breaches under it, the conflicts (information, not a breach)
 * and a summary. Exit 0 when every invariant holds, 5 on any breach, 2 when a database is
 * missing or unreadable.
 * Must not: write to either database, or call a service (verify works on a stopped system).
 * Invariant: the wallet snapshot is taken before the bank's (see verify_bank.c for why). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "out.h"
#include "pl.h"
#include "rodb.h"
#include "verify.h"

#define VERIFY_MS_MAX 3600000L

static const struct cli_opt verify_opts[] = {
    {"wallet-db", "PATH", "the wallet database (default <data-dir>/wallet.db)"},
    {"bank-db", "PATH", "the bank database (default <data-dir>/bank.db when it exists)"},
    {"pending-grace-ms", "MS", "the wallet's --pending-grace-ms (default 3000)"},
    {"reconcile-ms", "MS", "the wallet's --reconcile-ms (default 1000)"},
    {"nodal-account", "ID", "the wallet company's account at the bank (default NODAL-PAYLAB)"},
};
enum { OPT_WALLET_DB, OPT_BANK_DB, OPT_GRACE, OPT_RECONCILE, OPT_NODAL };

static const struct cli_spec verify_spec = {
    .usage = "verify [--wallet-db PATH] [--bank-db PATH] [--pending-grace-ms MS] "
             "[--reconcile-ms MS] [--nodal-account ID]",
    .summary =
        "Checks the invariants of docs/ledger.md on the databases (read-only, safe while the\n"
        "services run): 1 balances sum to zero; 2 balances equal their entries and each\n"
        "transaction's entries sum to zero; 3 no wallet negative; 4 wallet and bank agree\n"
        "(needs the bank database); 5 no top-up credited twice, no withdrawal paid out\n"
        "twice; 6 nothing pending/unknown past its horizon. Exits 5 on any breach.",
    .pos_min = 0,
    .pos_max = 0,
    .opts = verify_opts,
    .opts_count = PL_ARRAY_LEN(verify_opts),
};

static const char *const names[VERIFY_INVARIANTS_COUNT + 1] = {
    "",
    "balances sum to zero",
    "every balance equals its entries; every transaction's entries sum to zero",
    "no wallet account is negative",
    "wallet and bank agree",
    "no top-up credited twice, no withdrawal paid out twice",
    "nothing pending or unknown beyond its horizon",
};

struct verify_paths {
    char wallet[CLI_PATH_BYTES_MAX];
    char bank[CLI_PATH_BYTES_MAX]; /* "" when there is no bank database to read */
};

static int parse_ms(const char *s, int64_t fallback, int64_t *out)
{
    *out = fallback;
    if (s == NULL) {
        return 0;
    }
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || v < 0 || v > VERIFY_MS_MAX) {
        return cli_usage_error(&verify_spec, "'%s' is not a duration in ms (0..%ld)", s,
                               VERIFY_MS_MAX);
    }
    *out = v;
    return 0;
}

static int parse_verify(struct cli *cli, int argc, char **argv, struct verify *v,
                        struct verify_paths *paths)
{
    struct cli_args a;
    int rc = cli_parse(cli, &verify_spec, argc, argv, &a);
    if (rc != CLI_CONTINUE) {
        return rc;
    }
    if (parse_ms(a.opt[OPT_GRACE], 3000, &v->grace_ms) != 0 ||
        parse_ms(a.opt[OPT_RECONCILE], 1000, &v->reconcile_ms) != 0) {
        return CLI_EXIT_USAGE;
    }
    const char *nodal = a.opt[OPT_NODAL] != NULL ? a.opt[OPT_NODAL] : "NODAL-PAYLAB";
    int n1 = a.opt[OPT_WALLET_DB] != NULL
                 ? snprintf(paths->wallet, sizeof paths->wallet, "%s", a.opt[OPT_WALLET_DB])
                 : snprintf(paths->wallet, sizeof paths->wallet, "%s/wallet.db", cli->data_dir);
    int n2 = a.opt[OPT_BANK_DB] != NULL
                 ? snprintf(paths->bank, sizeof paths->bank, "%s", a.opt[OPT_BANK_DB])
                 : snprintf(paths->bank, sizeof paths->bank, "%s/bank.db", cli->data_dir);
    if (n1 < 0 || n2 < 0 || (size_t)n1 >= sizeof paths->wallet ||
        (size_t)n2 >= sizeof paths->bank || pl_strlcpy(v->nodal, nodal, sizeof v->nodal) != 0) {
        return cli_usage_error(&verify_spec, "a path or the account id is too long");
    }
    if (a.opt[OPT_BANK_DB] == NULL && !rodb_exists(paths->bank)) {
        paths->bank[0] = '\0'; /* the default is optional; an explicit --bank-db is not */
    }
    return CLI_CONTINUE;
}

static int attach_bank(struct verify *v, const char *path)
{
    if (!rodb_exists(path) || access(path, R_OK) != 0) {
        fprintf(stderr,
                "paylab: no readable bank database at %s — start the services "
                "(scripts/demo.sh) or leave out --bank-db to skip invariant 4\n",
                path);
        return CLI_EXIT_USAGE;
    }
    sqlite3_stmt *s = db_stmt(v->db, "ATTACH DATABASE ?1 AS bank");
    if (s == NULL || db_bind_text(s, 1, path) != SQLITE_OK || db_exec_stmt(s) != 0) {
        fprintf(stderr, "paylab: cannot attach %s: %s\n", path, sqlite3_errmsg(v->db->handle));
        return CLI_EXIT_USAGE;
    }
    v->have_bank = true;
    return 0;
}

static int read_epoch(struct verify *v)
{
    sqlite3_stmt *s = db_stmt(v->db, "SELECT value FROM main.meta WHERE key = 'epoch'");
    if (s == NULL) {
        return PL_EDB;
    }
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        db_column_copy(s, 0, v->epoch, sizeof v->epoch);
        return 0;
    }
    return rc == SQLITE_DONE ? 0 : PL_EDB;
}

/* Conflicts are information: webhooks or answers that contradicted a final state. */
static int read_conflicts(struct verify *v, cJSON *report)
{
    sqlite3_stmt *s = db_stmt(v->db, "SELECT (SELECT COUNT(*) FROM main.conflicts), "
                                     "transaction_id, source, detail, created_at_ms "
                                     "FROM main.conflicts ORDER BY id DESC LIMIT ?1");
    if (s == NULL || sqlite3_bind_int(s, 1, VERIFY_CONFLICTS_SHOWN) != SQLITE_OK) {
        return PL_EDB;
    }
    cJSON *c = cJSON_AddObjectToObject(report, "conflicts");
    cJSON *recent = cJSON_AddArrayToObject(c, "recent");
    int64_t count = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        char txn[64], source[32], detail[256];
        count = sqlite3_column_int64(s, 0);
        db_column_copy(s, 1, txn, sizeof txn);
        db_column_copy(s, 2, source, sizeof source);
        db_column_copy(s, 3, detail, sizeof detail);
        cJSON *row = cJSON_CreateObject();
        cJSON_AddStringToObject(row, "transaction_id", txn);
        cJSON_AddStringToObject(row, "source", source);
        cJSON_AddStringToObject(row, "detail", detail);
        cJSON_AddNumberToObject(row, "created_at_ms", (double)sqlite3_column_int64(s, 4));
        cJSON_AddItemToArray(recent, row);
    }
    cJSON_AddNumberToObject(c, "count", (double)count);
    return rc == SQLITE_DONE ? 0 : PL_EDB;
}

static int count_other_epochs(struct verify *v, cJSON *report)
{
    sqlite3_stmt *s = db_stmt(v->db, "SELECT COUNT(*) FROM bank.payments "
                                     "WHERE wallet_epoch IS NOT NULL AND wallet_epoch <> ?1");
    if (s == NULL || db_bind_text(s, 1, v->epoch) != SQLITE_OK || sqlite3_step(s) != SQLITE_ROW) {
        return PL_EDB;
    }
    cJSON_AddNumberToObject(report, "bank_payments_other_epochs",
                            (double)sqlite3_column_int64(s, 0));
    return 0;
}

/* All reads, in one read transaction, the wallet's first. */
static int run_checks(struct verify *v, cJSON *report)
{
    if (rodb_begin(v->db) != 0) {
        return PL_EDB;
    }
    v->now_ms = pl_now_ms();
    v->snapshot_ms = v->now_ms;
    int rc = read_epoch(v);
    if (rc == 0) {
        rc = verify_wallet(v);
    }
    if (rc == 0) {
        rc = read_conflicts(v, report);
    }
    if (rc == 0 && v->have_bank) {
        rc = verify_bank(v);
    }
    if (rc == 0 && v->have_bank) {
        rc = count_other_epochs(v, report);
    }
    if (rc != 0) {
        fprintf(stderr,
                "paylab: reading the databases failed: %s (are these paylab's wallet.db "
                "and bank.db, at the same version as this paylab?)\n",
                sqlite3_errmsg(v->db->handle));
    }
    rodb_end(v->db);
    return rc;
}

static size_t invariants_to_json(struct verify *v, cJSON *report)
{
    cJSON *list = cJSON_AddArrayToObject(report, "invariants");
    size_t broken = 0;
    for (int i = 1; i <= VERIFY_INVARIANTS_COUNT; i++) {
        struct verify_invariant *inv = &v->inv[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", i);
        cJSON_AddStringToObject(o, "name", inv->name);
        const char *status = inv->skipped ? "skipped" : inv->breaches_count > 0 ? "breach" : "ok";
        cJSON_AddStringToObject(o, "status", status);
        cJSON_AddStringToObject(o, "detail", inv->detail);
        cJSON_AddNumberToObject(o, "breach_count", (double)inv->breaches_count);
        cJSON_AddItemReferenceToObject(o, "breaches", inv->breaches);
        cJSON_AddItemToArray(list, o);
        broken += inv->breaches_count > 0 ? 1 : 0;
    }
    cJSON_AddBoolToObject(report, "ok", broken == 0);
    return broken;
}

static void print_invariant(const struct verify_invariant *inv)
{
    if (inv->skipped) {
        printf("– %d %s: skipped (%s)\n", inv->id, inv->name, inv->detail);
        return;
    }
    bool ok = inv->breaches_count == 0;
    printf("%s %d %s%s%s%s\n", ok ? "✓" : "✗", inv->id, inv->name, inv->detail[0] ? " (" : "",
           inv->detail, inv->detail[0] ? ")" : "");
    const cJSON *b;
    cJSON_ArrayForEach(b, inv->breaches)
    {
        printf("    %s\n", out_str(b, "message", ""));
    }
    if (inv->breaches_count > VERIFY_BREACHES_SHOWN) {
        printf("    … and %zu more (paylab verify --json lists the first %d)\n",
               inv->breaches_count - VERIFY_BREACHES_SHOWN, VERIFY_BREACHES_SHOWN);
    }
}

static void print_conflicts(const cJSON *report)
{
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(report, "conflicts");
    int64_t count = 0;
    if (!out_int(c, "count", &count) || count == 0) {
        return;
    }
    printf("ℹ %lld conflict%s recorded — answers or webhooks that contradicted a final state, "
           "never applied (not a breach by itself; invariant 4 decides)\n",
           (long long)count, count == 1 ? "" : "s");
    const cJSON *row;
    cJSON_ArrayForEach(row, cJSON_GetObjectItemCaseSensitive(c, "recent"))
    {
        char when[OUT_TIME_BYTES_MAX];
        int64_t at = 0;
        out_int(row, "created_at_ms", &at);
        printf("    %s  %s  %-10s %s\n", out_time(at, false, when),
               out_str(row, "transaction_id", "?"), out_str(row, "source", "?"),
               out_str(row, "detail", ""));
    }
}

static void print_human(const struct verify *v, const cJSON *report,
                        const struct verify_paths *paths, size_t broken)
{
    char when[OUT_TIME_BYTES_MAX];
    printf("paylab verify — wallet %s (epoch %s), bank %s, at %s\n", paths->wallet,
           v->epoch[0] != '\0' ? v->epoch : "?", v->have_bank ? paths->bank : "(none)",
           out_time(v->now_ms, false, when));
    for (int i = 1; i <= VERIFY_INVARIANTS_COUNT; i++) {
        print_invariant(&v->inv[i]);
    }
    int64_t other = 0;
    if (out_int(report, "bank_payments_other_epochs", &other) && other > 0) {
        printf("ℹ %lld bank payment%s from other wallet databases (another epoch) ignored\n",
               (long long)other, other == 1 ? "" : "s");
    }
    print_conflicts(report);
    size_t breaches = 0;
    for (int i = 1; i <= VERIFY_INVARIANTS_COUNT; i++) {
        breaches += v->inv[i].breaches_count;
    }
    if (broken == 0) {
        printf("✓ every invariant holds%s\n", v->have_bank ? "" : " (4 not checked: no bank db)");
    } else {
        printf("✗ %zu invariant%s broken, %zu breach%s — exit 5\n", broken, broken == 1 ? "" : "s",
               breaches, breaches == 1 ? "" : "es");
    }
}

static void init_verify(struct verify *v, struct db *db)
{
    memset(v, 0, sizeof *v);
    v->db = db;
    for (int i = 1; i <= VERIFY_INVARIANTS_COUNT; i++) {
        v->inv[i].id = i;
        v->inv[i].name = names[i];
        v->inv[i].breaches = cJSON_CreateArray();
    }
}

static void free_verify(struct verify *v)
{
    for (int i = 1; i <= VERIFY_INVARIANTS_COUNT; i++) {
        cJSON_Delete(v->inv[i].breaches);
    }
}

int cmd_verify(struct cli *cli, int argc, char **argv)
{
    struct db db = {0};
    struct verify v;
    struct verify_paths paths;
    init_verify(&v, &db);
    int rc = parse_verify(cli, argc, argv, &v, &paths);
    if (rc == CLI_CONTINUE) {
        rc = rodb_open(&db, paths.wallet, "wallet", "--wallet-db") != 0 ? CLI_EXIT_USAGE
                                                                        : CLI_CONTINUE;
    }
    if (rc == CLI_CONTINUE && paths.bank[0] != '\0') {
        rc = attach_bank(&v, paths.bank) != 0 ? CLI_EXIT_USAGE : CLI_CONTINUE;
    }
    cJSON *report = cJSON_CreateObject();
    if (rc == CLI_CONTINUE && (report == NULL || run_checks(&v, report) != 0)) {
        rc = CLI_EXIT_USAGE;
    }
    if (rc == CLI_CONTINUE) {
        v.inv[4].skipped = !v.have_bank;
        if (!v.have_bank) {
            snprintf(v.inv[4].detail, sizeof v.inv[4].detail, "no bank database: pass --bank-db");
        }
        cJSON_AddStringToObject(report, "wallet_db", paths.wallet);
        cJSON_AddStringToObject(report, "bank_db", v.have_bank ? paths.bank : "");
        cJSON_AddStringToObject(report, "epoch", v.epoch);
        cJSON_AddNumberToObject(report, "checked_at_ms", (double)v.now_ms);
        size_t broken = invariants_to_json(&v, report);
        if (cli->json) {
            out_json(report);
        } else {
            print_human(&v, report, &paths, broken);
        }
        rc = broken > 0 ? CLI_EXIT_BREACH : CLI_EXIT_OK;
    }
    cJSON_Delete(report);
    free_verify(&v);
    db_close(&db);
    return rc;
}
