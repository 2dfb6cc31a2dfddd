/* out.h: the CLI's output helpers: money and times for humans, aligned columns that count
 * display width (₹ and ✓ are one column, three bytes), typed reads of the services' JSON. */
#ifndef PAYLAB_CLI_OUT_H
#define PAYLAB_CLI_OUT_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "money.h"

#define OUT_TIME_BYTES_MAX 40

/* Formats minor units with money_format ("₹1,00,000.00") into buf; returns buf. */
const char *out_money(int64_t minor, char buf[MONEY_FORMAT_BYTES_MAX]);
/* Same with an explicit sign for a user's point of view: "+₹500.00", "-₹50.00". */
const char *out_money_signed(int64_t minor, char buf[MONEY_FORMAT_BYTES_MAX]);
/* Local time of a unix-ms timestamp: "21:30:00.123", or with_date "2026-11-25 21:30:00.123". */
const char *out_time(int64_t at_ms, bool with_date, char buf[OUT_TIME_BYTES_MAX]);

#define OUT_REASON_BYTES_MAX 512
/* text (a timeline reason) for people: each unix-ms timestamp in it (13 digits standing
 * alone, with the field name "expires_at_ms " before it dropped) becomes local time and its
 * offset from origin_ms: "deadline expires_at_ms 1796290117250" → "deadline 09:28:37.250
 * (+5000 ms)". Truncated to the buffer; returns buf. */
const char *out_reason(const char *text, int64_t origin_ms, char buf[OUT_REASON_BYTES_MAX]);

#define OUT_MS_BYTES_MAX 32
/* A duration given in µs, in ms for people: "0.4 ms" (one decimal below 10 ms), "12 ms". */
const char *out_ms_us(int64_t us, char buf[OUT_MS_BYTES_MAX]);

/* Number of terminal columns s takes (UTF-8 code points; our symbols are all one column). */
size_t out_width(const char *s);
/* Prints s padded with spaces to width columns (right-aligned when right), then gap spaces. */
void out_cell(FILE *f, const char *s, size_t width, bool right, size_t gap);

/* Borrowed string member, or fallback when absent / not a string. */
const char *out_str(const cJSON *o, const char *key, const char *fallback);
/* Integer member into *out; false (and *out untouched) when absent or not a number. */
bool out_int(const cJSON *o, const char *key, int64_t *out);

/* Prints obj as one line of JSON on stdout. */
void out_json(const cJSON *obj);

/* one when n is 1 (or -1), else many: "1 reference", "2 references", "0 references". */
const char *out_plural(int64_t n, const char *one, const char *many);

/* "top-up", "withdrawal", "transfer" for a transaction kind. */
const char *out_kind_label(const char *kind);

#endif
