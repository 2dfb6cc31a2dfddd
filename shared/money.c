/* money.c owns the text form of amounts: parsing "500.50" and printing "₹1,00,000.00".
 * Must not: use floating point anywhere, or decide whether an amount is allowed for a
 * payment (that is money_amount_valid's job at the edge).
 * Invariant: money_parse and money_format_plain round-trip every value in [0, MAX]. */
#include "money.h"

#include "pl.h"

#include <assert.h>
#include <string.h>

/* "₹" in UTF-8. */
#define MONEY_RUPEE_SIGN "\xE2\x82\xB9"
/* Enough for the 19 digits of |INT64_MIN| / 100 plus NUL. */
#define MONEY_DIGITS_BYTES_MAX 24

_Static_assert(MONEY_AMOUNT_MINOR_MAX % 100 == 0, "the maximum is whole rupees");

bool money_amount_valid(int64_t amount_minor)
{
    return amount_minor >= MONEY_AMOUNT_MINOR_MIN && amount_minor <= MONEY_AMOUNT_MINOR_MAX;
}

static bool money_is_digit(char c)
{
    return c >= '0' && c <= '9';
}

int money_parse(const char *s, int64_t *out_minor)
{
    assert(out_minor != NULL);
    if (s == NULL)
        return PL_EINVAL;
    size_t sign_bytes = strlen(MONEY_RUPEE_SIGN);
    if (strncmp(s, MONEY_RUPEE_SIGN, sign_bytes) == 0)
        s += sign_bytes;

    /* Syntax first, over the whole string, so "9999…9x" is EINVAL rather than ERANGE. */
    size_t int_digits = 0;
    while (money_is_digit(s[int_digits]))
        int_digits++;
    if (int_digits == 0)
        return PL_EINVAL;
    const char *p = s + int_digits;
    size_t frac_digits = 0;
    if (*p == '.') {
        p++;
        while (money_is_digit(p[frac_digits]))
            frac_digits++;
        if (frac_digits == 0 || frac_digits > 2)
            return PL_EINVAL;
        p += frac_digits;
    }
    if (*p != '\0')
        return PL_EINVAL;

    const int64_t rupees_max = MONEY_AMOUNT_MINOR_MAX / 100;
    int64_t rupees = 0;
    for (size_t i = 0; i < int_digits; i++) {
        rupees = rupees * 10 + (s[i] - '0');
        if (rupees > rupees_max)
            return PL_ERANGE; /* checked every digit: never overflows */
    }
    int64_t paise = 0;
    const char *frac = s + int_digits + 1;
    for (size_t i = 0; i < 2; i++) {
        paise = paise * 10 + (i < frac_digits ? frac[i] - '0' : 0);
    }
    int64_t minor = rupees * 100 + paise;
    if (minor > MONEY_AMOUNT_MINOR_MAX)
        return PL_ERANGE;
    *out_minor = minor;
    return PL_OK;
}

/* Writes the decimal digits of v (no sign) into out; returns their count. */
static size_t money_digits(uint64_t v, char out[MONEY_DIGITS_BYTES_MAX])
{
    char rev[MONEY_DIGITS_BYTES_MAX];
    size_t n = 0;
    do {
        rev[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0 && n < sizeof rev);
    for (size_t i = 0; i < n; i++)
        out[i] = rev[n - 1 - i];
    out[n] = '\0';
    return n;
}

static uint64_t money_abs(int64_t minor)
{
    /* Unsigned negation: |INT64_MIN| does not fit in int64_t. */
    return minor < 0 ? (uint64_t)0 - (uint64_t)minor : (uint64_t)minor;
}

/* Appends the len bytes of src to out at *n, or fails without writing past cap. */
static int money_put(char *out, size_t cap, size_t *n, const char *src, size_t len)
{
    if (*n + len + 1 > cap)
        return PL_ERANGE;
    memcpy(out + *n, src, len);
    *n += len;
    out[*n] = '\0';
    return PL_OK;
}

/* Shared body of both formatters: sign, optional symbol, digits (grouped or not), paise. */
static int money_format_impl(int64_t minor, bool human, char *out, size_t cap)
{
    assert(out != NULL);
    assert(cap > 0);
    out[0] = '\0';
    uint64_t u = money_abs(minor);
    char digits[MONEY_DIGITS_BYTES_MAX];
    size_t digits_count = money_digits(u / 100, digits);
    size_t n = 0;
    int rc = PL_OK;
    if (minor < 0)
        rc = money_put(out, cap, &n, "-", 1);
    if (rc == PL_OK && human)
        rc = money_put(out, cap, &n, MONEY_RUPEE_SIGN, 3);
    for (size_t i = 0; i < digits_count && rc == PL_OK; i++) {
        size_t left = digits_count - i; /* digits still to print, this one included */
        /* Indian grouping: a comma before the last three digits, then every two. */
        bool comma = human && i > 0 && left >= 3 && (left == 3 || (left - 3) % 2 == 0);
        if (comma)
            rc = money_put(out, cap, &n, ",", 1);
        if (rc == PL_OK)
            rc = money_put(out, cap, &n, &digits[i], 1);
    }
    char frac[4] = {'.', (char)('0' + (u % 100) / 10), (char)('0' + u % 10), '\0'};
    if (rc == PL_OK)
        rc = money_put(out, cap, &n, frac, 3);
    if (rc != PL_OK)
        out[0] = '\0';
    return rc;
}

int money_format(int64_t minor, char *out, size_t cap)
{
    return money_format_impl(minor, true, out, cap);
}

int money_format_plain(int64_t minor, char *out, size_t cap)
{
    return money_format_impl(minor, false, out, cap);
}
