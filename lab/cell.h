/* cell.h: running one lab cell (cell.c) — a scenario's case in one mode and wait style, on a
 * cluster of its own. Internal to lab/. */
#ifndef PAYLAB_LAB_CELL_H
#define PAYLAB_LAB_CELL_H

#include <signal.h>
#include <stdint.h>

#include "lab.h"

struct lab_progress {
    /* Called about ten times a second while the load runs (may be NULL). */
    void (*fn)(void *arg, int done, int total, int64_t elapsed_ms);
    void *arg;
    volatile sig_atomic_t *interrupted; /* set by SIGINT / SIGTERM: stop the cell */
};

/* The reconciliation horizon of mode: its deadline + the pending grace + 2 reconciler ticks. */
int64_t lab_horizon_ms(const struct lab_timing *t, enum lab_mode mode);

/* Runs case k of a scenario in mode with wait style wait ("ws", "poll:MS"), filling cell
 * (whose names, mode and wait the caller has set). The cluster is gone when it returns.
 * 0 when the cell ran (its figures say how it went); a negative PL_E* with cell->error set
 * when it could not be set up. */
int lab_cell_run(const struct lab_config *cfg, const struct lab_case *k, enum lab_mode mode,
                 const char *wait, struct lab_cell *cell, const struct lab_progress *prog);

#endif
