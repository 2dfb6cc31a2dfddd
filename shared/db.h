/* db.h: SQLite helpers. Open with the pragmas of docs/ledger.md (WAL, synchronous=FULL,
 * foreign_keys=ON, busy_timeout ≤ 5 ms so nothing blocks the loop), migrations tracked in
 * schema_version, a cache of prepared statements keyed by their SQL text, and
 * BEGIN IMMEDIATE … COMMIT transactions. SQL only through prepared statements. */
#ifndef PAYLAB_DB_H
#define PAYLAB_DB_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

/* A statement cache this size holds every statement a service uses. */
#define DB_STMTS_MAX 128
#define DB_BUSY_TIMEOUT_MS 5

struct db {
    sqlite3 *handle;
    bool in_txn;
    size_t stmts_count;
    struct {
        const char *sql; /* the caller's static string; compared by pointer, then by text */
        sqlite3_stmt *stmt;
    } stmts[DB_STMTS_MAX];
};

/* Opens (creating if needed, unless readonly) the database at path with the pragmas above.
 * readonly opens with SQLITE_OPEN_READONLY (used by `paylab ledger` / `verify`); it still
 * reads a WAL database while a service writes it. 0, PL_EDB (logged with what to do). */
int db_open(struct db *db, const char *path, bool readonly);
/* Finalizes every cached statement and closes. Safe on a zeroed struct. */
void db_close(struct db *db);

/* Applies migrations[i] (SQL scripts, may hold many statements) for every i ≥ the stored
 * schema_version, each in its own transaction together with the version bump. 0 or PL_EDB. */
int db_migrate(struct db *db, const char *const *migrations, size_t migrations_count);

/* Returns the cached prepared statement for sql, reset and with bindings cleared; NULL on
 * a prepare error (logged). sql must be a string that lives as long as db (a literal). */
sqlite3_stmt *db_stmt(struct db *db, const char *sql);

/* BEGIN IMMEDIATE. PL_EBUSY when another writer holds the lock past busy_timeout. */
int db_begin(struct db *db);
/* COMMIT; PL_EBUSY or PL_EDB on failure (the transaction is then rolled back). */
int db_commit(struct db *db);
/* ROLLBACK if a transaction is open; never fails from the caller's point of view. */
void db_rollback(struct db *db);

/* Maps an SQLite result code to PL_OK / PL_EBUSY / PL_ECONFLICT (constraint) / PL_EDB. */
int db_rc(int sqlite_rc);
/* Runs a statement that returns no rows (step to DONE); maps via db_rc. */
int db_exec_stmt(sqlite3_stmt *stmt);
/* Binds text (SQLITE_TRANSIENT) or NULL when s is NULL. */
int db_bind_text(sqlite3_stmt *stmt, int index, const char *s);
/* Steps a prepared, bound statement that yields one integer column in one row (a count, a
 * min(), a max()) and resets it. 0 with *out set; PL_ENOTFOUND when there is no row or the
 * value is NULL (min() over nothing); PL_EBUSY / PL_EDB otherwise. */
int db_query_int64(sqlite3_stmt *stmt, int64_t *out);
/* Copies column text into out (empty string for NULL). */
void db_column_copy(sqlite3_stmt *stmt, int col, char *out, size_t cap);

#endif
