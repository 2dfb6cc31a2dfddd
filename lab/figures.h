/* figures.h: how the lab's writers (report, CSV/JSON, charts, terminal table) read and say a
 * cell's figures — durations for people, quantiles in ms, invariant names, a cell's label,
 * the horizons of a run's timing, display widths. Internal to lab/. */
#ifndef PAYLAB_LAB_FIGURES_H
#define PAYLAB_LAB_FIGURES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "lab.h"

/* Room for one duration ("12.4 s", "0.4 ms") or one count with its unit. */
#define FIG_TEXT_BYTES_MAX 32
/* The invariants `paylab verify` checks are numbered 1..FIG_INVARIANTS_COUNT. */
#define FIG_INVARIANTS_COUNT 6
_Static_assert(FIG_INVARIANTS_COUNT < 8, "lab_cell.breached has room for every invariant");

/* A duration given in µs, for people: "0.4 ms" and "3.2 ms" (one decimal below 10 ms),
 * "412 ms", and above 10 s "12.4 s". Returns buf. */
const char *fig_duration(int64_t us, char buf[FIG_TEXT_BYTES_MAX]);
/* Same, from milliseconds. */
const char *fig_duration_ms(int64_t ms, char buf[FIG_TEXT_BYTES_MAX]);
/* The value at quantile q (1: the exact max) of a µs histogram, in µs; 0 when empty. */
int64_t fig_quantile_us(const struct lab_hist *h, double q);

/* The short name of invariant i (1..FIG_INVARIANTS_COUNT): "wallet and bank agree";
 * "an invariant" for any other number. Static storage. */
const char *fig_invariant_name(int i);
/* "4, 5": the numbers of the invariants the cell breached, or "" when none. Returns buf. */
const char *fig_breached_list(const struct lab_cell *c, char *buf, size_t cap);
/* True when the cell breached invariant i (1..7). */
bool fig_breached(const struct lab_cell *c, int i);
/* True when the cell's figures are measurements: it applied and it ran. */
bool fig_measured(const struct lab_cell *c);

/* "lost-response (webhooks on)", or the bare scenario name for a single-case scenario. */
const char *fig_cell_label(const struct lab_cell *c, char *buf, size_t cap);
/* True when a and b are cells of the same scenario and case. */
bool fig_same_case(const struct lab_cell *a, const struct lab_cell *b);

/* The reconciliation horizon of a mode: its payment TTL + pending grace + 2 × reconcile. */
int64_t fig_horizon_ms(const struct lab_timing *t, enum lab_mode m);

/* Terminal columns s takes: UTF-8 code points (our symbols ✓ ✗ × are one column each). */
size_t fig_width(const char *s);
/* Writes s padded with spaces to width columns (right-aligned when right). */
void fig_pad(FILE *f, const char *s, size_t width, bool right);

/* n, then one or many: "1 request", "3 requests", "0 requests". Returns buf. */
const char *fig_count(int64_t n, const char *one, const char *many, char *buf, size_t cap);

#endif
