/* rodb.h: the CLI's read-only access to the services' databases (`paylab ledger`, `verify`):
 * open with db_open(readonly) after a clear message for a missing file, and one read
 * transaction (BEGIN … COMMIT) around all the reads of one report, so the numbers printed
 * together come from one snapshot even while the services write. */
#ifndef PAYLAB_CLI_RODB_H
#define PAYLAB_CLI_RODB_H

#include <stdbool.h>

#include "db.h"

/* Opens path read-only. what ("wallet", "bank") and flag ("--db", "--wallet-db") shape the
 * message printed when the file is missing or unreadable. 0, or CLI_EXIT_USAGE (printed). */
int rodb_open(struct db *db, const char *path, const char *what, const char *flag);
/* BEGIN (deferred: a read transaction from the first SELECT on). 0 or PL_EDB (printed). */
int rodb_begin(struct db *db);
/* COMMIT of the read transaction (ROLLBACK if that fails); never fails for the caller. */
void rodb_end(struct db *db);
/* True when path names an existing file. */
bool rodb_exists(const char *path);

#endif
