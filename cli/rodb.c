/* rodb.c owns how the CLI opens a service's database: read-only, never creating a file, with
 * a message that says what to do when it is missing.
 * Must not: write to a database (the connection is SQLITE_OPEN_READONLY).
 * Invariant: a report's reads sit inside one BEGIN … COMMIT on its connection. */
#include "rodb.h"

#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "pl.h"

bool rodb_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int rodb_open(struct db *db, const char *path, const char *what, const char *flag)
{
    if (!rodb_exists(path)) {
        fprintf(stderr,
                "paylab: no %s database at %s — start the services (scripts/demo.sh) or point "
                "%s at the %s.db of a running --data-dir\n",
                what, path, flag, what);
        return CLI_EXIT_USAGE;
    }
    if (access(path, R_OK) != 0) {
        fprintf(stderr, "paylab: cannot read %s (permissions?)\n", path);
        return CLI_EXIT_USAGE;
    }
    if (db_open(db, path, true) != 0) {
        fprintf(stderr, "paylab: cannot open %s read-only as a SQLite database\n", path);
        db_close(db);
        return CLI_EXIT_USAGE;
    }
    return 0;
}

int rodb_begin(struct db *db)
{
    sqlite3_stmt *s = db_stmt(db, "BEGIN");
    if (s == NULL || db_exec_stmt(s) != 0) {
        fprintf(stderr, "paylab: cannot start a read transaction: %s\n",
                sqlite3_errmsg(db->handle));
        return PL_EDB;
    }
    return 0;
}

void rodb_end(struct db *db)
{
    sqlite3_stmt *s = db_stmt(db, "COMMIT");
    if (s == NULL || db_exec_stmt(s) != 0) {
        sqlite3_stmt *r = db_stmt(db, "ROLLBACK");
        if (r != NULL) {
            db_exec_stmt(r);
        }
    }
}
