/* money.h: amounts are int64_t counts of minor units (paise). Never a float (docs/api.md). */
#ifndef PAYLAB_MONEY_H
#define PAYLAB_MONEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The largest amount one payment may move: ₹10,000,000,000.00. */
#define MONEY_AMOUNT_MINOR_MAX 1000000000000LL
#define MONEY_AMOUNT_MINOR_MIN 1LL
/* "-₹" + 19 digits + separators + ".00" + NUL fits. */
#define MONEY_FORMAT_BYTES_MAX 48

/* True when 1 <= amount_minor <= 10^12. */
bool money_amount_valid(int64_t amount_minor);

/* Parses a human amount in rupees: "500", "500.5", "500.50", "0.01" (optionally with a
 * leading "₹"), into minor units. Rejects (PL_EINVAL) empty strings, signs, spaces, more
 * than two decimals, a lone ".", "5.", ".5", exponents, grouping commas, and anything above
 * MONEY_AMOUNT_MINOR_MAX (PL_ERANGE). Zero parses (0) — validity is money_amount_valid's job. */
int money_parse(const char *s, int64_t *out_minor);

/* Formats minor units as "₹500.50", "₹0.05", "-₹12.00", with Indian digit grouping
 * ("₹1,00,000.00"). Returns PL_ERANGE if cap is too small (use MONEY_FORMAT_BYTES_MAX). */
int money_format(int64_t minor, char *out, size_t cap);

/* Formats without the symbol or grouping: "500.50", "-12.00" (for --json and CSV). */
int money_format_plain(int64_t minor, char *out, size_t cap);

#endif
