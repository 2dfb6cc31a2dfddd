/* table.c owns the lab's summary table on the terminal: one line per cell with the most
 * telling figures, narrow enough for a projector, coloured only on a terminal.
 * Must not: print more than TABLE_COLUMNS_MAX columns a line, or colour a pipe or a file.
 * Invariant: a cell that was not measured shows n/a or why it did not run, never zeros. */
#include "lab.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "figures.h"
#include "pl.h"

/* A projector shows about this many columns in a readable font. */
#define TABLE_COLUMNS_MAX 120

#define RED "\033[31m"
#define GREEN "\033[32m"
#define YELLOW "\033[33m"
#define DIM "\033[2m"
#define BOLD "\033[1m"
#define RESET "\033[0m"

struct column {
    const char *group; /* the header's first line: what the figures below are of */
    const char *title;
    size_t width;
    bool right;
};

enum {
    COL_CELL,
    COL_MODE,
    COL_WAIT,
    COL_ANSWERS,
    COL_CLIENT_P50,
    COL_CLIENT_P99,
    COL_FINAL_P99,
    COL_SETTLED,
    COL_STUCK,
    COL_DOUBLE,
    COL_INVARIANTS,
    COLS_COUNT
};

static const struct column columns[COLS_COUNT] = {
    {"", "scenario", 30, false}, {"", "mode", 13, false},
    {"", "wait", 8, false},      {"answers", "ok/dec/err/unk", 14, true},
    {"client", "p50", 7, true},  {"", "p99", 7, true},
    {"final", "p99", 7, true},   {"settled", "r/w/c", 11, true},
    {"", "stuck", 5, true},      {"", "2×", 3, true},
    {"", "inv", 5, false},
};

/* One space between columns. */
static size_t table_width(void)
{
    size_t w = 0;
    for (size_t i = 0; i < COLS_COUNT; i++)
        w += columns[i].width + (i > 0 ? 1 : 0);
    return w;
}

/* s on one line (control characters as spaces) cut to width columns, ending in "…" when it
 * was longer. Returns buf. */
static const char *cut_to(const char *s, size_t width, char *buf, size_t cap)
{
    assert(width >= 1 && cap >= 8);
    bool cut = fig_width(s) > width;
    size_t bytes = 0, cols = 0;
    /* Room for one more UTF-8 character (4 bytes), the ellipsis (3) and the NUL. */
    while (s[bytes] != '\0' && cols + (cut ? 1 : 0) < width && bytes + 8 < cap) {
        buf[bytes] = (unsigned char)s[bytes] < 0x20 ? ' ' : s[bytes];
        bytes++;
        while ((s[bytes] & 0xC0) == 0x80) { /* the rest of a UTF-8 character */
            buf[bytes] = s[bytes];
            bytes++;
        }
        cols++;
    }
    snprintf(buf + bytes, cap - bytes, "%s", cut ? "…" : "");
    return buf;
}

/* Prints s in column i, coloured when colour is not NULL (padding stays uncoloured so the
 * columns line up whatever the escape bytes). */
static void put(size_t i, const char *s, const char *colour)
{
    assert(i < COLS_COUNT);
    char cut[LAB_TEXT_BYTES_MAX];
    const struct column *c = &columns[i];
    s = cut_to(s, c->width, cut, sizeof cut);
    if (i > 0)
        fputc(' ', stdout);
    size_t w = fig_width(s);
    size_t gap = w < c->width ? c->width - w : 0;
    if (c->right)
        printf("%*s", (int)gap, "");
    printf("%s%s%s", colour != NULL ? colour : "", s, colour != NULL ? RESET : "");
    if (!c->right && i + 1 < COLS_COUNT)
        printf("%*s", (int)gap, "");
}

static void print_header(bool tty)
{
    for (size_t i = 0; i < COLS_COUNT; i++) {
        /* A group title starts at its first column and may run over the next ones. */
        const char *g = columns[i].group;
        bool bold = tty && g[0] != '\0';
        printf("%s%s%-*s%s", i > 0 ? " " : "", bold ? BOLD : "", (int)columns[i].width, g,
               bold ? RESET : "");
    }
    fputc('\n', stdout);
    for (size_t i = 0; i < COLS_COUNT; i++)
        put(i, columns[i].title, tty ? BOLD : NULL);
    fputc('\n', stdout);
}

/* The invariants column: ✓, or ✗ and the numbers that failed, "✗4*" when a break-it case
 * showed the breach it was built to show. */
static void put_invariants(const struct lab_cell *c, bool tty)
{
    char list[32], text[48];
    if (c->invariants_held) {
        put(COL_INVARIANTS, "✓", tty ? GREEN : NULL);
        return;
    }
    fig_breached_list(c, list, sizeof list);
    bool expected = c->breach_expected != 0 && fig_breached(c, c->breach_expected);
    snprintf(text, sizeof text, "✗%s%s", list, expected ? "*" : "");
    put(COL_INVARIANTS, text, tty ? (expected ? YELLOW : RED) : NULL);
}

static void put_count(size_t col, int64_t n, bool tty, const char *bad_colour)
{
    char text[FIG_TEXT_BYTES_MAX];
    snprintf(text, sizeof text, "%lld", (long long)n);
    put(col, text, tty && n > 0 ? bad_colour : NULL);
}

static void print_measured(const struct lab_cell *c, bool tty)
{
    char text[64], d[FIG_TEXT_BYTES_MAX];
    snprintf(text, sizeof text, "%lld/%lld/%lld/%lld", (long long)c->ok, (long long)c->declined,
             (long long)c->errors, (long long)c->unknown);
    put(COL_ANSWERS, text, tty && (c->errors > 0 || c->unknown > 0) ? YELLOW : NULL);
    put(COL_CLIENT_P50, fig_duration(fig_quantile_us(&c->client_latency_us, 0.5), d), NULL);
    put(COL_CLIENT_P99, fig_duration(fig_quantile_us(&c->client_latency_us, 0.99), d), NULL);
    put(COL_FINAL_P99, fig_duration(fig_quantile_us(&c->time_to_final_us, 0.99), d), NULL);
    snprintf(text, sizeof text, "%lld/%lld/%lld", (long long)c->settled_response,
             (long long)c->settled_webhook, (long long)c->settled_reconciler);
    put(COL_SETTLED, text, NULL);
    put_count(COL_STUCK, c->stuck, tty, RED);
    put_count(COL_DOUBLE, c->double_credits, tty, RED);
    put_invariants(c, tty);
}

static void print_row(const struct lab_cell *c, bool tty)
{
    char label[LAB_NAME_BYTES_MAX * 2 + 4];
    put(COL_CELL, fig_cell_label(c, label, sizeof label), NULL);
    put(COL_MODE, lab_mode_name(c->mode), NULL);
    put(COL_WAIT, c->wait, NULL);
    if (!c->applies) {
        put(COL_ANSWERS, "n/a", tty ? DIM : NULL);
    } else if (!c->ran) {
        /* The rest of the line is the error: as wide as the columns it replaces. */
        char text[LAB_TEXT_BYTES_MAX + 16];
        snprintf(text, sizeof text, "not run: %s", c->error);
        char cut[LAB_TEXT_BYTES_MAX + 16];
        size_t room = TABLE_COLUMNS_MAX - (columns[COL_CELL].width + columns[COL_MODE].width +
                                           columns[COL_WAIT].width + 3);
        printf(" %s%s%s", tty ? RED : "", cut_to(text, room, cut, sizeof cut), tty ? RESET : "");
    } else {
        print_measured(c, tty);
    }
    fputc('\n', stdout);
}

void lab_print_table(const struct lab_results *r, bool tty)
{
    _Static_assert(LAB_NAME_BYTES_MAX * 2 + 4 < LAB_TEXT_BYTES_MAX, "a label fits put()'s cut");
    assert(table_width() <= TABLE_COLUMNS_MAX);
    assert(r->cells_count <= LAB_CELLS_MAX);
    print_header(tty);
    for (size_t i = 0; i < r->cells_count; i++)
        print_row(&r->cells[i], tty);
    printf("%sanswers: the clients' first answers; client: request → first answer; final: "
           "request → final state known\n"
           "settled by r response, w webhook, c reconciler; stuck: open past the horizon; "
           "2×: double credits\n"
           "inv: ✓ every invariant held; ✗N invariant N failed (* the breach a break-it case "
           "is built to show)%s\n",
           tty ? DIM : "", tty ? RESET : "");
    fflush(stdout);
}
