/* test_cli.c: the paylab CLI against a live cluster (docs/api.md): a top-up and its exit
 * codes (0 ok, 1 refused, 2 usage, 4 not final), faults set through the CLI, and `verify`
 * on the live databases (0) and on a copy whose ledger was tampered with (5). */
#include "e2e.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXIT_OK 0
#define EXIT_REFUSED 1
#define EXIT_USAGE 2
#define EXIT_NOT_FINAL 4
#define EXIT_BREACH 5

/* Runs paylab with args; returns the exit code and frees the output (printed on demand). */
static int paylab(struct e2e *e, const char *const *args, cJSON **json_out)
{
    char *out = NULL;
    int rc = cluster_paylab(&e->c, args, &out);
    if (json_out != NULL) {
        *json_out = out != NULL ? cJSON_Parse(out) : NULL;
        if (*json_out == NULL)
            fprintf(stderr, "paylab %s: not JSON: %s\n", args[0], out);
    }
    free(out);
    return rc;
}

/* Copies the live database at from into the new file to (sqlite3's online backup). */
static void copy_db(const char *from, const char *to)
{
    sqlite3 *src = NULL, *dst = NULL;
    assert_int_equal(sqlite3_open_v2(from, &src, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_open_v2(to, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL),
                     SQLITE_OK);
    sqlite3_busy_timeout(src, 1000);
    sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
    assert_non_null(b);
    assert_int_equal(sqlite3_backup_step(b, -1), SQLITE_DONE);
    assert_int_equal(sqlite3_backup_finish(b), SQLITE_OK);
    sqlite3_close(src);
    sqlite3_close(dst);
}

static void exec_sql(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    char *err = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK)
        fail_msg("%s: %s", sql, err != NULL ? err : "?");
    assert_int_equal(sqlite3_changes(db), 1);
    sqlite3_close(db);
}

static int verify_copy(struct e2e *e, const char *wallet_db, const char *bank_db)
{
    const char *const args[] = {"verify", "--wallet-db", wallet_db, "--bank-db", bank_db, NULL};
    return paylab(e, args, NULL);
}

static void test_cli_topup_and_exit_codes(void **state)
{
    struct e2e *e = *state;
    cJSON *json = NULL;
    e2e_start(e, NULL);
    e2e_user_add(e, "alice");

    const char *const topup[] = {"topup", "alice", "5.00", "--json", NULL};
    assert_int_equal(paylab(e, topup, &json), EXIT_OK);
    assert_non_null(json);
    cJSON_Delete(json);
    assert_int_equal(e2e_wallet_balance(e, "alice"), 500);

    /* ₹20,000 is more than HDFC-ALICE holds: the bank declines (402). */
    const char *const declined[] = {"topup", "alice", "20000", NULL};
    assert_int_equal(paylab(e, declined, NULL), EXIT_REFUSED);
    const char *const usage[] = {"topup", "alice", "5.001", NULL};
    assert_int_equal(paylab(e, usage, NULL), EXIT_USAGE);
    assert_int_equal(e2e_wallet_balance(e, "alice"), 500);

    const char *const slow[] = {"faults", "set", "latency_ms=800", NULL};
    assert_int_equal(paylab(e, slow, NULL), EXIT_OK);
    const char *const pending[] = {"topup", "alice", "1.50", "--json", NULL};
    assert_int_equal(paylab(e, pending, &json), EXIT_NOT_FINAL);
    cJSON_Delete(json);
    const char *const clear[] = {"faults", "clear", NULL};
    assert_int_equal(paylab(e, clear, NULL), EXIT_OK);
    char id[64];
    e2e_wait_newest_txn(e, "alice", id, 2000);
    cJSON *t = e2e_wait_final(e, id, E2E_SETTLE_TIMEOUT_MS);
    assert_string_equal(e2e_str(t, "status"), "succeeded");
    assert_int_equal(e2e_int(t, "amount_minor"), 150);
    cJSON_Delete(t);
    assert_int_equal(e2e_wallet_balance(e, "alice"), 650);

    const char *const verify[] = {"verify", NULL};
    assert_int_equal(paylab(e, verify, NULL), EXIT_OK);
    e2e_finish(e);
}

static void test_cli_verify_catches_tampering(void **state)
{
    struct e2e *e = *state;
    char live_wallet[CLUSTER_PATH_BYTES_MAX + 32], live_bank[CLUSTER_PATH_BYTES_MAX + 32];
    char copy_wallet[CLUSTER_PATH_BYTES_MAX + 32], copy_bank[CLUSTER_PATH_BYTES_MAX + 32];
    e2e_start(e, NULL);
    e2e_user_add(e, "alice");
    const char *const topup[] = {"topup", "alice", "5.00", "--json", NULL};
    assert_int_equal(paylab(e, topup, NULL), EXIT_OK);

    snprintf(live_wallet, sizeof live_wallet, "%s/wallet.db", e->c.dir);
    snprintf(live_bank, sizeof live_bank, "%s/bank.db", e->c.dir);
    snprintf(copy_wallet, sizeof copy_wallet, "%s/copy-wallet.db", e->c.dir);
    snprintf(copy_bank, sizeof copy_bank, "%s/copy-bank.db", e->c.dir);
    copy_db(live_wallet, copy_wallet);
    copy_db(live_bank, copy_bank);
    assert_int_equal(verify_copy(e, copy_wallet, copy_bank), EXIT_OK);

    /* One paisa appears from nowhere in alice's wallet. */
    exec_sql(copy_wallet,
             "UPDATE accounts SET balance_minor = balance_minor + 1 WHERE id = 'wallet:alice'");
    assert_int_equal(verify_copy(e, copy_wallet, copy_bank), EXIT_BREACH);
    e2e_finish(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cli_topup_and_exit_codes, e2e_setup, e2e_teardown),
        cmocka_unit_test_setup_teardown(test_cli_verify_catches_tampering, e2e_setup, e2e_teardown),
    };
    e2e_filter_from_env();
    return cmocka_run_group_tests_name("e2e_cli", tests, NULL, NULL);
}
