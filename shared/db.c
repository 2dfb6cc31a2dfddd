/* db.c owns the SQLite connection of a process: opening with the pragmas of docs/ledger.md,
 * migrations, the prepared-statement cache and BEGIN IMMEDIATE … COMMIT.
 * Must not: build SQL from values (prepared statements only), wait on a lock longer than
 * DB_BUSY_TIMEOUT_MS, or leave a transaction open on return to the loop (callers' duty,
 * checked by in_txn).
 * Invariant: db->in_txn is true exactly between a successful db_begin and the matching
 * db_commit / db_rollback; every statement handed out is reset with no bindings. */
#include "db.h"

#include "log.h"
#include "pl.h"

#include <assert.h>
#include <string.h>
#include <strings.h>

int db_rc(int sqlite_rc)
{
    switch (sqlite_rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW:
        return PL_OK;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return PL_EBUSY;
    case SQLITE_CONSTRAINT:
        return PL_ECONFLICT;
    default:
        return PL_EDB;
    }
}

/* Runs one fixed SQL text (pragmas, BEGIN/COMMIT, migrations). Returns the SQLite code. */
static int db_exec_sql(struct db *db, const char *sql)
{
    char *err = NULL;
    int rc = sqlite3_exec(db->handle, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK && (rc & 0xff) != SQLITE_BUSY) {
        log_error("sqlite exec failed", "error=\"%s\"", err != NULL ? err : sqlite3_errstr(rc));
    }
    sqlite3_free(err);
    return rc;
}

/* Sets journal_mode=WAL and checks that SQLite agreed. */
static int db_set_wal(struct db *db, const char *path)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2(db->handle, "PRAGMA journal_mode=WAL", -1, &stmt, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(stmt);
    bool wal =
        rc == SQLITE_ROW && strcasecmp((const char *)sqlite3_column_text(stmt, 0), "wal") == 0;
    sqlite3_finalize(stmt);
    if (!wal) {
        log_error("cannot switch the database to WAL", "path=\"%s\" error=\"%s\" fix=\"%s\"", path,
                  sqlite3_errmsg(db->handle),
                  "put the data dir on a local file system and stop other writers");
        return PL_EDB;
    }
    return PL_OK;
}

int db_open(struct db *db, const char *path, bool readonly)
{
    assert(db != NULL);
    assert(path != NULL);
    memset(db, 0, sizeof *db);
    int flags = (readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
                SQLITE_OPEN_NOMUTEX;
    int rc = sqlite3_open_v2(path, &db->handle, flags, NULL);
    if (rc != SQLITE_OK) {
        log_error("cannot open the database", "path=\"%s\" error=\"%s\" fix=\"%s\"", path,
                  db->handle != NULL ? sqlite3_errmsg(db->handle) : sqlite3_errstr(rc),
                  readonly ? "check the path (--db / --data-dir)"
                           : "check that the data dir exists and is writable");
        db_close(db);
        return PL_EDB;
    }
    sqlite3_extended_result_codes(db->handle, 1);
    rc = sqlite3_busy_timeout(db->handle, DB_BUSY_TIMEOUT_MS);
    if (rc == SQLITE_OK && !readonly && db_set_wal(db, path) != PL_OK)
        rc = SQLITE_ERROR;
    if (rc == SQLITE_OK)
        rc = db_exec_sql(db, "PRAGMA synchronous=FULL");
    if (rc == SQLITE_OK)
        rc = db_exec_sql(db, "PRAGMA foreign_keys=ON");
    if (rc != SQLITE_OK) {
        log_error("cannot configure the database", "path=\"%s\"", path);
        db_close(db);
        return PL_EDB;
    }
    return PL_OK;
}

void db_close(struct db *db)
{
    assert(db != NULL);
    for (size_t i = 0; i < db->stmts_count; i++) {
        sqlite3_finalize(db->stmts[i].stmt);
    }
    if (db->handle != NULL) {
        if (db->in_txn)
            sqlite3_exec(db->handle, "ROLLBACK", NULL, NULL, NULL);
        sqlite3_close_v2(db->handle);
    }
    memset(db, 0, sizeof *db);
}

/* Reads the stored schema version, creating the table (at version 0) on first use. */
static int db_schema_version(struct db *db, int *version)
{
    int rc = db_exec_sql(db, "CREATE TABLE IF NOT EXISTS schema_version("
                             "version INTEGER NOT NULL)");
    if (rc != SQLITE_OK)
        return db_rc(rc);
    sqlite3_stmt *stmt = db_stmt(db, "SELECT version FROM schema_version LIMIT 1");
    if (stmt == NULL)
        return PL_EDB;
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        *version = sqlite3_column_int(stmt, 0);
        sqlite3_reset(stmt);
        return PL_OK;
    }
    sqlite3_reset(stmt);
    if (rc != SQLITE_DONE)
        return db_rc(rc);
    *version = 0;
    return db_exec_stmt(db_stmt(db, "INSERT INTO schema_version(version) VALUES (0)"));
}

int db_migrate(struct db *db, const char *const *migrations, size_t migrations_count)
{
    assert(db != NULL && db->handle != NULL);
    assert(migrations != NULL || migrations_count == 0);
    assert(!db->in_txn);
    int version = 0;
    if (db_begin(db) != PL_OK)
        return PL_EDB;
    int rc = db_schema_version(db, &version);
    if (rc == PL_OK)
        rc = db_commit(db);
    else
        db_rollback(db);
    if (rc != PL_OK || version < 0)
        return PL_EDB;
    for (size_t i = (size_t)version; i < migrations_count; i++) {
        rc = db_begin(db);
        if (rc == PL_OK)
            rc = db_rc(db_exec_sql(db, migrations[i]));
        sqlite3_stmt *bump =
            rc == PL_OK ? db_stmt(db, "UPDATE schema_version SET version = ?") : NULL;
        if (bump != NULL)
            sqlite3_bind_int64(bump, 1, (sqlite3_int64)(i + 1));
        if (rc == PL_OK)
            rc = bump != NULL ? db_exec_stmt(bump) : PL_EDB;
        if (rc == PL_OK)
            rc = db_commit(db);
        if (rc != PL_OK) {
            db_rollback(db);
            log_error("database migration failed", "migration=%zu", i + 1);
            return PL_EDB;
        }
        log_info("database migrated", "version=%zu", i + 1);
    }
    return PL_OK;
}

sqlite3_stmt *db_stmt(struct db *db, const char *sql)
{
    assert(db != NULL && db->handle != NULL);
    assert(sql != NULL);
    for (size_t i = 0; i < db->stmts_count; i++) {
        if (db->stmts[i].sql == sql || strcmp(db->stmts[i].sql, sql) == 0) {
            sqlite3_stmt *stmt = db->stmts[i].stmt;
            sqlite3_reset(stmt);
            sqlite3_clear_bindings(stmt);
            return stmt;
        }
    }
    if (db->stmts_count == DB_STMTS_MAX) {
        log_error("statement cache full", "max=%d fix=\"%s\"", DB_STMTS_MAX, "raise DB_STMTS_MAX");
        return NULL;
    }
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v3(db->handle, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, NULL);
    if (rc != SQLITE_OK) {
        log_error("sqlite prepare failed", "error=\"%s\"", sqlite3_errmsg(db->handle));
        sqlite3_finalize(stmt);
        return NULL;
    }
    db->stmts[db->stmts_count].sql = sql;
    db->stmts[db->stmts_count].stmt = stmt;
    db->stmts_count++;
    return stmt;
}

int db_begin(struct db *db)
{
    assert(db != NULL && db->handle != NULL);
    assert(!db->in_txn); /* nested transactions are a bug */
    int rc = db_rc(db_exec_sql(db, "BEGIN IMMEDIATE"));
    if (rc == PL_OK)
        db->in_txn = true;
    return rc;
}

int db_commit(struct db *db)
{
    assert(db != NULL && db->handle != NULL);
    assert(db->in_txn);
    int rc = db_rc(db_exec_sql(db, "COMMIT"));
    if (rc != PL_OK) {
        sqlite3_exec(db->handle, "ROLLBACK", NULL, NULL, NULL);
        log_warn("commit failed, rolled back", "error=%d", rc);
    }
    db->in_txn = false;
    return rc;
}

void db_rollback(struct db *db)
{
    assert(db != NULL);
    if (db->handle == NULL || !db->in_txn)
        return;
    if (sqlite3_get_autocommit(db->handle) == 0) {
        sqlite3_exec(db->handle, "ROLLBACK", NULL, NULL, NULL);
    }
    db->in_txn = false;
}

int db_exec_stmt(sqlite3_stmt *stmt)
{
    if (stmt == NULL)
        return PL_EDB;
    int rc = sqlite3_step(stmt);
    /* Drain RETURNING rows; bounded by what the statement itself produces. */
    while (rc == SQLITE_ROW)
        rc = sqlite3_step(stmt);
    sqlite3_reset(stmt); /* releases the statement's locks at once */
    return rc == SQLITE_DONE ? PL_OK : (db_rc(rc) == PL_OK ? PL_EDB : db_rc(rc));
}

int db_bind_text(sqlite3_stmt *stmt, int index, const char *s)
{
    assert(stmt != NULL);
    int rc = s == NULL ? sqlite3_bind_null(stmt, index)
                       : sqlite3_bind_text(stmt, index, s, -1, SQLITE_TRANSIENT);
    return db_rc(rc);
}

void db_column_copy(sqlite3_stmt *stmt, int col, char *out, size_t cap)
{
    assert(stmt != NULL);
    assert(out != NULL && cap > 0);
    const unsigned char *text = sqlite3_column_text(stmt, col);
    pl_strlcpy(out, text != NULL ? (const char *)text : "", cap);
}

int db_query_int64(sqlite3_stmt *stmt, int64_t *out)
{
    assert(stmt != NULL);
    int rc = sqlite3_step(stmt);
    bool found = rc == SQLITE_ROW && sqlite3_column_type(stmt, 0) != SQLITE_NULL;
    if (found)
        *out = sqlite3_column_int64(stmt, 0);
    sqlite3_reset(stmt);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_rc(rc);
    return found ? PL_OK : PL_ENOTFOUND;
}
