/* test_db.c: opening, migrations, the statement cache, transactions and error mapping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "db.h"
#include "pl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const migrations[] = {
    "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
    " n INTEGER NOT NULL CHECK (n >= 0));",
    "ALTER TABLE t ADD COLUMN note TEXT; CREATE INDEX t_n ON t(n);",
};

struct fixture {
    char dir[64];
    char path[128];
    struct db db;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "/tmp/paylab-test-db-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/test.db", f->dir);
    assert_int_equal(db_open(&f->db, f->path, false), PL_OK);
    assert_int_equal(db_migrate(&f->db, migrations, PL_ARRAY_LEN(migrations)), PL_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    db_close(&f->db);
    char file[160];
    const char *suffixes[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < PL_ARRAY_LEN(suffixes); i++) {
        snprintf(file, sizeof file, "%s%s", f->path, suffixes[i]);
        unlink(file);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

static int64_t query_int(struct db *db, const char *sql)
{
    sqlite3_stmt *st = db_stmt(db, sql);
    assert_non_null(st);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return v;
}

static int insert(struct db *db, const char *name, int64_t n)
{
    sqlite3_stmt *st = db_stmt(db, "INSERT INTO t(name, n) VALUES (?, ?)");
    assert_non_null(st);
    assert_int_equal(db_bind_text(st, 1, name), PL_OK);
    sqlite3_bind_int64(st, 2, n);
    return db_exec_stmt(st);
}

static void test_open_pragmas(void **state)
{
    struct fixture *f = *state;
    sqlite3_stmt *st = db_stmt(&f->db, "PRAGMA journal_mode");
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_reset(st);
    assert_int_equal(query_int(&f->db, "PRAGMA synchronous"), 2); /* FULL */
    assert_int_equal(query_int(&f->db, "PRAGMA foreign_keys"), 1);
    assert_int_equal(query_int(&f->db, "PRAGMA busy_timeout"), DB_BUSY_TIMEOUT_MS);
}

static void test_migrate_idempotent(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(query_int(&f->db, "SELECT version FROM schema_version"), 2);
    assert_int_equal(db_migrate(&f->db, migrations, PL_ARRAY_LEN(migrations)), PL_OK);
    assert_int_equal(query_int(&f->db, "SELECT version FROM schema_version"), 2);
    assert_int_equal(query_int(&f->db, "SELECT count(*) FROM schema_version"), 1);
    /* reopening migrates nothing again */
    db_close(&f->db);
    assert_int_equal(db_open(&f->db, f->path, false), PL_OK);
    assert_int_equal(db_migrate(&f->db, migrations, PL_ARRAY_LEN(migrations)), PL_OK);
    assert_int_equal(query_int(&f->db, "SELECT version FROM schema_version"), 2);
}

static void test_migrate_failure_rolls_back(void **state)
{
    struct fixture *f = *state;
    const char *const more[] = {migrations[0], migrations[1],
                                "CREATE TABLE u(x); THIS IS NOT SQL;"};
    assert_int_equal(db_migrate(&f->db, more, 3), PL_EDB);
    assert_false(f->db.in_txn);
    assert_int_equal(query_int(&f->db, "SELECT version FROM schema_version"), 2);
    assert_int_equal(query_int(&f->db, "SELECT count(*) FROM sqlite_master WHERE name = 'u'"), 0);
}

static void test_stmt_cache(void **state)
{
    struct fixture *f = *state;
    static const char sql[] = "SELECT n FROM t WHERE name = ?";
    sqlite3_stmt *a = db_stmt(&f->db, sql);
    assert_non_null(a);
    assert_int_equal(db_bind_text(a, 1, "x"), PL_OK);
    char copy[sizeof sql];
    memcpy(copy, sql, sizeof sql);
    sqlite3_stmt *b = db_stmt(&f->db, copy); /* same text, another pointer */
    assert_ptr_equal(a, b);
    /* bindings were cleared: the parameter is NULL again */
    char *expanded = sqlite3_expanded_sql(b);
    assert_string_equal(expanded, "SELECT n FROM t WHERE name = NULL");
    sqlite3_free(expanded);
    assert_null(db_stmt(&f->db, "SELECT * FROM no_such_table"));
}

static void test_begin_commit_rollback(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(db_begin(&f->db), PL_OK);
    assert_true(f->db.in_txn);
    assert_int_equal(insert(&f->db, "a", 1), PL_OK);
    assert_int_equal(db_commit(&f->db), PL_OK);
    assert_false(f->db.in_txn);
    assert_int_equal(db_begin(&f->db), PL_OK);
    assert_int_equal(insert(&f->db, "b", 2), PL_OK);
    db_rollback(&f->db);
    assert_false(f->db.in_txn);
    db_rollback(&f->db); /* no transaction: a no-op */
    assert_int_equal(query_int(&f->db, "SELECT count(*) FROM t"), 1);
}

static void test_constraints(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(insert(&f->db, "a", 1), PL_OK);
    assert_int_equal(insert(&f->db, "a", 2), PL_ECONFLICT);  /* UNIQUE */
    assert_int_equal(insert(&f->db, "c", -1), PL_ECONFLICT); /* CHECK */
    assert_int_equal(insert(&f->db, NULL, 1), PL_ECONFLICT); /* NOT NULL */
    assert_int_equal(db_rc(SQLITE_OK), PL_OK);
    assert_int_equal(db_rc(SQLITE_DONE), PL_OK);
    assert_int_equal(db_rc(SQLITE_BUSY), PL_EBUSY);
    assert_int_equal(db_rc(SQLITE_LOCKED), PL_EBUSY);
    assert_int_equal(db_rc(SQLITE_CONSTRAINT_UNIQUE), PL_ECONFLICT);
    assert_int_equal(db_rc(SQLITE_FULL), PL_EDB);
    assert_int_equal(db_rc(SQLITE_IOERR_FSYNC), PL_EDB);
}

static void test_busy(void **state)
{
    struct fixture *f = *state;
    struct db other;
    assert_int_equal(db_open(&other, f->path, false), PL_OK);
    assert_int_equal(db_begin(&other), PL_OK);
    assert_int_equal(insert(&other, "held", 1), PL_OK);
    int64_t start = pl_mono_ms();
    assert_int_equal(db_begin(&f->db), PL_EBUSY);
    assert_true(pl_mono_ms() - start < 500); /* busy_timeout is a few ms, not seconds */
    assert_false(f->db.in_txn);
    /* readers still read the last commit while the writer holds the lock */
    assert_int_equal(query_int(&f->db, "SELECT count(*) FROM t"), 0);
    assert_int_equal(db_commit(&other), PL_OK);
    assert_int_equal(db_begin(&f->db), PL_OK);
    db_rollback(&f->db);
    db_close(&other);
}

static void test_readonly(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(insert(&f->db, "a", 1), PL_OK);
    struct db ro;
    assert_int_equal(db_open(&ro, f->path, true), PL_OK);
    assert_int_equal(query_int(&ro, "SELECT count(*) FROM t"), 1);
    assert_int_not_equal(insert(&ro, "b", 1), PL_OK);
    db_close(&ro);
    struct db missing;
    char path[160];
    snprintf(path, sizeof path, "%s/none.db", f->dir);
    assert_int_equal(db_open(&missing, path, true), PL_EDB);
    db_close(&missing); /* safe after a failed open */
}

static void test_column_copy(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(insert(&f->db, "a-long-name", 1), PL_OK);
    sqlite3_stmt *st = db_stmt(&f->db, "SELECT name, note FROM t");
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    char out[8];
    db_column_copy(st, 0, out, sizeof out);
    assert_string_equal(out, "a-long-"); /* truncated, terminated */
    db_column_copy(st, 1, out, sizeof out);
    assert_string_equal(out, ""); /* NULL */
    sqlite3_reset(st);
}

static void test_query_int64(void **state)
{
    struct fixture *f = *state;
    int64_t v = -1;
    sqlite3_stmt *min = db_stmt(&f->db, "SELECT min(n) FROM t");
    assert_int_equal(db_query_int64(min, &v), PL_ENOTFOUND); /* min() over no rows is NULL */
    assert_int_equal(v, -1);
    assert_int_equal(insert(&f->db, "a", 7), PL_OK);
    assert_int_equal(insert(&f->db, "b", 3), PL_OK);
    assert_int_equal(db_query_int64(db_stmt(&f->db, "SELECT min(n) FROM t"), &v), PL_OK);
    assert_int_equal(v, 3);
    sqlite3_stmt *none = db_stmt(&f->db, "SELECT n FROM t WHERE name = 'zz'");
    assert_int_equal(db_query_int64(none, &v), PL_ENOTFOUND); /* no row at all */
    assert_int_equal(v, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_pragmas, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_failure_rolls_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stmt_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_query_int64, setup, teardown),
        cmocka_unit_test_setup_teardown(test_begin_commit_rollback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_constraints, setup, teardown),
        cmocka_unit_test_setup_teardown(test_busy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readonly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_column_copy, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
