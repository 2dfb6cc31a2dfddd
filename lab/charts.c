/* charts.c owns the lab's charts: DIR/client-latency, time-to-final and settled-by, each as
 * SVG and as a PNG copy for word processors. It writes one self-contained gnuplot script,
 * DIR/charts.gp (data inline, file names relative, so `cd DIR && gnuplot charts.gp` redraws
 * them after a student edits it), and runs gnuplot on it through child.c.
 * Layout: one bar group per scenario and case (and wait style, when a case was learned in
 * more than one way), the modes side by side, a colour each; latency bars are the p50 with a
 * whisker up to the p99, on a log axis when the values span more than LOG_RATIO_MIN;
 * settled-by stacks response / webhook / reconciler, one bar per mode.
 * Must not: run a shell, or wait for gnuplot longer than CHARTS_TIMEOUT_MS.
 * Invariant: a cell that was not measured (n/a, not run) draws no bar; it is never a zero. */
#include "lab.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "figures.h"
#include "pl.h"
#include "child.h"

/* gnuplot draws these in well under a second; a minute means it hangs. */
#define CHARTS_TIMEOUT_MS 60000
/* Above this max/min ratio a linear axis would flatten the fast bars to nothing. */
#define LOG_RATIO_MIN 20.0
/* Sized for a projector: large type, wide enough for a label under every group. */
#define CHART_HEIGHT_PX_MIN 900
#define CHART_HEIGHT_PX_MAX 1400
/* The group labels run at 45° under the axis: each character takes this much height. */
#define CHART_PX_PER_LABEL_CHAR 15
#define CHART_WIDTH_PX_MIN 1400
#define CHART_WIDTH_PX_MAX 2400
#define CHART_PX_PER_BAR 40
#define CHART_FONT "DejaVu Sans,20"

static const char *const chart_names[] = {"client-latency", "time-to-final", "settled-by"};

/* Okabe-Ito colours: told apart with the common colour-vision deficiencies, and in print. */
static const char *const mode_colours[LAB_MODES_COUNT] = {"#0072B2", "#E69F00", "#CC79A7"};
static const char *const settle_names[3] = {"response", "webhook", "reconciler"};
static const char *const settle_colours[3] = {"#009E73", "#56B4E9", "#D55E00"};

struct chart_group {
    const struct lab_cell *first;                    /* names the group */
    const struct lab_cell *by_mode[LAB_MODES_COUNT]; /* NULL: no cell of that mode */
    bool show_wait;                                  /* the case was learned in more than one way */
    /* A bar position for each mode that applies here (a cell that did not run keeps its
     * empty place, so the gap shows), in mode order from base. */
    int slot_of[LAB_MODES_COUNT]; /* -1: no place */
    int slots;
    double base; /* x of the first place */
};

struct chart_layout {
    struct chart_group groups[LAB_CELLS_MAX];
    size_t groups_count;
    double x_end; /* right of the last group */
    int width_px, height_px;
};

/* ---- layout ---------------------------------------------------------------------------- */

static struct chart_group *group_of(struct chart_layout *L, const struct lab_cell *c)
{
    for (size_t g = 0; g < L->groups_count; g++) {
        const struct lab_cell *f = L->groups[g].first;
        if (fig_same_case(f, c) && strcmp(f->wait, c->wait) == 0)
            return &L->groups[g];
    }
    assert(L->groups_count < LAB_CELLS_MAX);
    struct chart_group *g = &L->groups[L->groups_count++];
    memset(g, 0, sizeof *g);
    g->first = c;
    return g;
}

/* Places the bars of group g from x; returns the x after it and its gap. */
static double group_place(struct chart_group *g, double x)
{
    g->slots = 0;
    g->base = x;
    for (int m = 0; m < LAB_MODES_COUNT; m++) {
        const struct lab_cell *c = g->by_mode[m];
        g->slot_of[m] = c != NULL && c->applies ? g->slots++ : -1;
    }
    int width = g->slots > 0 ? g->slots : 1; /* nothing applies: one empty place */
    return x + width + 1;
}

static void layout_build(const struct lab_results *r, struct chart_layout *L)
{
    memset(L, 0, sizeof *L);
    for (size_t i = 0; i < r->cells_count; i++) {
        const struct lab_cell *c = &r->cells[i];
        assert(c->mode >= 0 && c->mode < LAB_MODES_COUNT);
        struct chart_group *g = group_of(L, c);
        if (g->by_mode[c->mode] == NULL)
            g->by_mode[c->mode] = c;
    }
    double x = 0.0;
    for (size_t g = 0; g < L->groups_count; g++) {
        for (size_t h = 0; h < L->groups_count; h++) {
            const struct lab_cell *a = L->groups[g].first, *b = L->groups[h].first;
            if (g != h && fig_same_case(a, b))
                L->groups[g].show_wait = true;
        }
        x = group_place(&L->groups[g], x);
    }
    L->x_end = x - 1.0;
    size_t label_chars = 0;
    for (size_t g = 0; g < L->groups_count; g++) {
        const struct lab_cell *c = L->groups[g].first;
        size_t n = strlen(c->scenario) + strlen(c->case_label) + strlen(c->wait) + 4;
        label_chars = n > label_chars ? n : label_chars;
    }
    long height = 700 + (long)label_chars * CHART_PX_PER_LABEL_CHAR;
    height = height < CHART_HEIGHT_PX_MIN ? CHART_HEIGHT_PX_MIN : height;
    L->height_px = (int)(height > CHART_HEIGHT_PX_MAX ? CHART_HEIGHT_PX_MAX : height);
    long width = 300 + (long)(x * CHART_PX_PER_BAR);
    width = width < CHART_WIDTH_PX_MIN ? CHART_WIDTH_PX_MIN : width;
    L->width_px = (int)(width > CHART_WIDTH_PX_MAX ? CHART_WIDTH_PX_MAX : width);
}

/* The x of group g's bar for mode m (which must have a place); its centre for m = -1. */
static double bar_x(const struct chart_layout *L, size_t g, int m)
{
    const struct chart_group *gr = &L->groups[g];
    if (m < 0)
        return gr->base + (gr->slots > 1 ? (gr->slots - 1) / 2.0 : 0.0);
    assert(gr->slot_of[m] >= 0);
    return gr->base + gr->slot_of[m];
}

/* ---- script text ----------------------------------------------------------------------- */

/* Writes s as a gnuplot double-quoted string body (\ and " escaped, newlines as \n). */
static void gp_text(FILE *f, const char *s)
{
    for (const char *p = s; *p != '\0'; p++) {
        if (*p == '\\' || *p == '"')
            fputc('\\', f);
        if (*p == '\n' || *p == '\r')
            fputs("\\n", f);
        else
            fputc(*p, f);
    }
}

/* "lost-response: webhooks dropped, poll:100" on one line: at an angle, a second line would
 * run into the next group's label. */
static void group_label(FILE *f, const struct chart_group *g)
{
    fputc('"', f);
    gp_text(f, g->first->scenario);
    const char *sep = ": ";
    if (g->first->case_label[0] != '\0') {
        fputs(sep, f);
        gp_text(f, g->first->case_label);
        sep = ", ";
    }
    if (g->show_wait) {
        fputs(sep, f);
        gp_text(f, g->first->wait);
    }
    fputc('"', f);
}

static void chart_preamble(FILE *f, const struct chart_layout *L, const char *title)
{
    fputs("reset\nset encoding utf8\nset title \"", f);
    gp_text(f, title);
    fputs(
        "\" font ',22'\nset style fill solid 0.9 border rgb '#333333'\nset boxwidth 0.85 absolute\n"
        "set key outside right top vertical samplen 2\nset grid ytics lc rgb '#cccccc'\n"
        "set xtics nomirror rotate by 45 right\nset ytics nomirror\nset border 3\n"
        "set lmargin 12\n",
        f);
    fprintf(f, "set xrange [-1:%g]\n", L->groups_count == 0 ? 1.0 : L->x_end);
    fputs("set xtics (", f);
    for (size_t g = 0; g < L->groups_count; g++) {
        fputs(g > 0 ? ", " : "", f);
        group_label(f, &L->groups[g]);
        fprintf(f, " %g", bar_x(L, g, -1));
    }
    fputs(")\n", f);
    if (L->groups_count == 0) {
        fputs("set label 1 \"no cell was measured\" at graph 0.5,0.5 center\n"
              "set yrange [0:1]\n",
              f);
    }
}

/* Draws the plot commands in plot_text to NAME.svg, then the same to NAME.png. */
static void chart_outputs(FILE *f, const struct chart_layout *L, const char *name,
                          const char *plot_text)
{
    fprintf(f,
            "set terminal svg size %d,%d dynamic font '%s' noenhanced background '#ffffff'\n"
            "set output '%s.svg'\n%s\n"
            "set terminal pngcairo size %d,%d font '%s' noenhanced background '#ffffff'\n"
            "set output '%s.png'\nreplot\nunset output\n\n",
            L->width_px, L->height_px, CHART_FONT, name, plot_text, L->width_px, L->height_px,
            CHART_FONT, name);
}

/* ---- latency charts -------------------------------------------------------------------- */

static bool has_bar(const struct lab_cell *c, size_t hist_offset)
{
    if (c == NULL || !fig_measured(c))
        return false;
    const struct lab_hist *h = (const void *)((const char *)c + hist_offset);
    return h->count > 0;
}

static const struct lab_hist *hist_at(const struct lab_cell *c, size_t hist_offset)
{
    return (const void *)((const char *)c + hist_offset);
}

/* Datablocks $D<m>: "x p50_ms p99_ms" per measured cell of mode m. Gets the value range. */
static void latency_data(FILE *f, const struct chart_layout *L, size_t hist_offset, double *lo,
                         double *hi, bool drawn[LAB_MODES_COUNT])
{
    *lo = 0.0;
    *hi = 0.0;
    for (int m = 0; m < LAB_MODES_COUNT; m++) {
        drawn[m] = false;
        fprintf(f, "$D%d << EOD\n", m);
        for (size_t g = 0; g < L->groups_count; g++) {
            const struct lab_cell *c = L->groups[g].by_mode[m];
            if (!has_bar(c, hist_offset))
                continue;
            const struct lab_hist *h = hist_at(c, hist_offset);
            double p50 = (double)fig_quantile_us(h, 0.5) / 1000.0;
            double p99 = (double)fig_quantile_us(h, 0.99) / 1000.0;
            fprintf(f, "%g %.3f %.3f\n", bar_x(L, g, m), p50, p99);
            drawn[m] = true;
            if (p50 > 0.0 && (*lo == 0.0 || p50 < *lo))
                *lo = p50;
            if (p99 > *hi)
                *hi = p99;
        }
        fputs("EOD\n", f);
    }
}

static void latency_axis(FILE *f, double lo, double hi)
{
    if (hi <= 0.0) {
        fputs("set yrange [0:1]\n", f);
    } else if (lo > 0.0 && hi / lo >= LOG_RATIO_MIN) {
        fputs("set logscale y\nset ylabel \"ms (log scale)\"\n", f);
        fprintf(f, "set yrange [%g:%g]\n", lo / 2.0, hi * 2.0);
    } else {
        fputs("set ylabel \"ms\"\n", f);
        fprintf(f, "set yrange [0:%g]\n", hi * 1.15);
    }
}

static void latency_chart(FILE *f, const struct chart_layout *L, const char *name,
                          const char *title, size_t hist_offset)
{
    double lo, hi;
    bool drawn[LAB_MODES_COUNT];
    chart_preamble(f, L, title);
    latency_data(f, L, hist_offset, &lo, &hi, drawn);
    latency_axis(f, lo, hi);
    char plot[2048];
    size_t used = (size_t)snprintf(plot, sizeof plot, "plot ");
    bool any = false;
    for (int m = 0; m < LAB_MODES_COUNT && used < sizeof plot; m++) {
        if (!drawn[m])
            continue;
        /* The whisker is two vectors (p50 up to p99, and a cap): gnuplot's errorbar styles
         * mark the p50 with a point that reads as a data value on a projector. */
        used += (size_t)snprintf(plot + used, sizeof plot - used,
                                 "%s$D%d using 1:2 with boxes lc rgb '%s' title '%s', "
                                 "$D%d using 1:2:(0):($3-$2) with vectors nohead lc rgb "
                                 "'#222222' lw 2 notitle, $D%d using ($1-0.2):3:(0.4):(0) with "
                                 "vectors nohead lc rgb '#222222' lw 2 notitle",
                                 any ? ", " : "", m, mode_colours[m],
                                 lab_mode_name((enum lab_mode)m), m, m);
        any = true;
    }
    if (!any)
        snprintf(plot, sizeof plot, "plot NaN notitle");
    assert(used < sizeof plot);
    chart_outputs(f, L, name, plot);
}

/* ---- settled-by ------------------------------------------------------------------------ */

/* Datablocks $S<m>: "x response webhook reconciler". Returns the tallest stack. */
static int64_t settled_data(FILE *f, const struct chart_layout *L, bool drawn[LAB_MODES_COUNT])
{
    int64_t top = 0;
    for (int m = 0; m < LAB_MODES_COUNT; m++) {
        drawn[m] = false;
        fprintf(f, "$S%d << EOD\n", m);
        for (size_t g = 0; g < L->groups_count; g++) {
            const struct lab_cell *c = L->groups[g].by_mode[m];
            if (c == NULL || !fig_measured(c))
                continue;
            fprintf(f, "%g %lld %lld %lld\n", bar_x(L, g, m), (long long)c->settled_response,
                    (long long)c->settled_webhook, (long long)c->settled_reconciler);
            int64_t sum = c->settled_response + c->settled_webhook + c->settled_reconciler;
            top = sum > top ? sum : top;
            drawn[m] = true;
        }
        fputs("EOD\n", f);
    }
    return top;
}

static void settled_chart(FILE *f, const struct chart_layout *L)
{
    bool drawn[LAB_MODES_COUNT];
    chart_preamble(f, L, "Settled by: what closed each transaction (one bar per mode)");
    int64_t top = settled_data(f, L, drawn);
    /* Headroom for the mode names written above the bars; the key in stacking order. */
    fprintf(f, "set ylabel \"transactions\"\nset yrange [0:%g]\nset key invert\n",
            top > 0 ? (double)top * 1.6 : 1.0);
    /* Stacks drawn as overlaid boxes, the tallest (all three) first. */
    static const char *const heights[3] = {"($2)", "($2+$3)", "($2+$3+$4)"};
    char plot[4096];
    size_t used = (size_t)snprintf(plot, sizeof plot, "plot ");
    bool any = false, titled = false;
    for (int m = 0; m < LAB_MODES_COUNT && used < sizeof plot; m++) {
        if (!drawn[m])
            continue;
        for (int k = 2; k >= 0 && used < sizeof plot; k--) {
            /* The legend names the three colours once, at the first mode's bars. */
            char key[32] = "notitle";
            if (!titled)
                snprintf(key, sizeof key, "title '%s'", settle_names[k]);
            used += (size_t)snprintf(plot + used, sizeof plot - used,
                                     "%s$S%d using 1:%s with boxes lc rgb '%s' %s", any ? ", " : "",
                                     m, heights[k], settle_colours[k], key);
            any = true;
        }
        titled = true;
        /* Colours are the settlers here, so each bar is named by its mode. */
        if (used < sizeof plot) {
            used += (size_t)snprintf(plot + used, sizeof plot - used,
                                     ", $S%d using 1:($2+$3+$4):('%s') with labels rotate by 90 "
                                     "left offset 0,0.4 notitle",
                                     m, lab_mode_name((enum lab_mode)m));
        }
    }
    if (!any)
        snprintf(plot, sizeof plot, "plot NaN notitle");
    assert(used < sizeof plot);
    chart_outputs(f, L, "settled-by", plot);
}

/* ---- running gnuplot ------------------------------------------------------------------- */

static int write_script(const struct lab_results *r, const char *path)
{
    struct chart_layout *L = calloc(1, sizeof *L);
    if (L == NULL)
        return PL_ENOMEM;
    layout_build(r, L);
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "lab: cannot write %s: %s\n", path, strerror(errno));
        free(L);
        return PL_EIO;
    }
    fputs("# The lab's charts; redraw them with: gnuplot charts.gp (in this folder).\n", f);
    latency_chart(f, L, chart_names[0],
                  "Client latency: request to first answer (bar p50, whisker p99)",
                  offsetof(struct lab_cell, client_latency_us));
    latency_chart(f, L, chart_names[1],
                  "Time to final: request to final state known (bar p50, whisker p99)",
                  offsetof(struct lab_cell, time_to_final_us));
    settled_chart(f, L);
    free(L);
    bool failed = ferror(f) != 0;
    if (fclose(f) != 0 || failed) {
        fprintf(stderr, "lab: writing %s failed\n", path);
        return PL_EIO;
    }
    return 0;
}

/* Removes last run's charts so a file that is there afterwards is this run's. */
static int outputs_each(const char *dir, bool remove_them)
{
    static const char *const exts[] = {"svg", "png"};
    char path[LAB_PATH_BYTES_MAX + 64];
    for (size_t i = 0; i < PL_ARRAY_LEN(chart_names); i++) {
        for (size_t e = 0; e < PL_ARRAY_LEN(exts); e++) {
            snprintf(path, sizeof path, "%s/%s.%s", dir, chart_names[i], exts[e]);
            struct stat st;
            if (remove_them)
                unlink(path);
            else if (stat(path, &st) != 0 || st.st_size == 0)
                return PL_EIO;
        }
    }
    return 0;
}

/* gnuplot -e "cd 'DIR'" charts.gp: the script's names are relative to DIR. */
static int run_gnuplot(const char *dir, const char *log_path)
{
    char cd[LAB_PATH_BYTES_MAX * 2 + 16];
    size_t used = (size_t)snprintf(cd, sizeof cd, "cd '");
    for (const char *p = dir; *p != '\0' && used + 4 < sizeof cd; p++) {
        if (*p == '\'')
            cd[used++] = '\''; /* a single quote doubles inside '…' */
        cd[used++] = *p;
    }
    snprintf(cd + used, sizeof cd - used, "'");
    char *argv[] = {"gnuplot", "-e", cd, "charts.gp", NULL};
    int exit_code = 0;
    int rc = child_run(argv, log_path, CHARTS_TIMEOUT_MS, &exit_code);
    if (rc == PL_ENOTFOUND) {
        fprintf(stderr, "gnuplot not found: run scripts/setup (installs gnuplot-nox)\n");
    } else if (rc == PL_ERANGE) {
        fprintf(stderr, "lab: gnuplot ran longer than %d s and was stopped; see %s\n",
                CHARTS_TIMEOUT_MS / 1000, log_path);
        rc = PL_EIO;
    } else if (rc != 0) {
        fprintf(stderr, "lab: gnuplot failed (exit %d); see %s\n", exit_code, log_path);
        rc = PL_EIO;
    }
    return rc;
}

int lab_write_charts(const struct lab_results *r, const char *dir)
{
    assert(r->cells_count <= LAB_CELLS_MAX);
    char script[LAB_PATH_BYTES_MAX + 32], log_path[LAB_PATH_BYTES_MAX + 32];
    if (snprintf(script, sizeof script, "%s/charts.gp", dir) >= (int)sizeof script ||
        snprintf(log_path, sizeof log_path, "%s/charts.log", dir) >= (int)sizeof log_path)
        return PL_EIO;
    int rc = write_script(r, script);
    if (rc != 0)
        return rc == PL_ENOMEM ? PL_EIO : rc;
    outputs_each(dir, true);
    unlink(log_path);
    rc = run_gnuplot(dir, log_path);
    if (rc != 0)
        return rc;
    if (outputs_each(dir, false) != 0) {
        fprintf(stderr, "lab: gnuplot drew no charts in %s; see %s\n", dir, log_path);
        return PL_EIO;
    }
    unlink(log_path); /* nothing to look at when it worked */
    return 0;
}
