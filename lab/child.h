/* child.h: runs a helper program (gnuplot, for the charts) to completion with a time limit,
 * without a shell. Internal to lab/. */
#ifndef PAYLAB_LAB_CHILD_H
#define PAYLAB_LAB_CHILD_H

#include <stdint.h>

/* Runs argv[0] (looked up on PATH) with argv, stdin from /dev/null and stdout and stderr
 * appended to log_path, and waits for it at most timeout_ms; past that it is SIGKILLed.
 * Returns 0 when it exited 0; PL_ENOTFOUND when argv[0] is not on PATH; PL_ERANGE when it
 * was killed for running too long; PL_EIO when it could not start, failed or died
 * (*exit_code gets its exit status, or 128 + the signal, or -1 when it never ran). */
int child_run(char *const argv[], const char *log_path, int64_t timeout_ms, int *exit_code);

#endif
