/* verify_wallet.c owns the wallet-side invariants of docs/ledger.md: 1 (balances sum to 0),
 * 2 (balances equal their entries; each transaction's entries sum to 0), 3 (no wallet or
 * payouts account negative), 5 (each transaction's postings match its kind and status: a
 * top-up credited once, a withdrawal paid out once) and 6 (nothing open past its horizon).
 * Must not: write (the connection is read-only) or stop at the first breach — a report
 * lists them all, up to VERIFY_BREACHES_SHOWN each.
 * Invariant: every read here runs inside the caller's one read transaction. */
#include "verify.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "out.h"
#include "pl.h"

#define TEXT_BYTES_MAX 64

void verify_breach(struct verify *v, int id, const char *subject, const char *fmt, ...)
{
    struct verify_invariant *inv = &v->inv[id];
    inv->breaches_count++;
    if (inv->breaches_count > VERIFY_BREACHES_SHOWN) {
        return;
    }
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "subject", subject);
    cJSON_AddStringToObject(b, "message", msg);
    cJSON_AddItemToArray(inv->breaches, b);
}

int64_t verify_horizon_ms(const struct verify *v, int64_t expires_at_ms)
{
    return expires_at_ms + v->grace_ms + 2 * v->reconcile_ms;
}

static int step_done(int rc)
{
    return rc == SQLITE_DONE ? 0 : PL_EDB;
}

static int check_sum_zero(struct verify *v)
{
    sqlite3_stmt *s =
        db_stmt(v->db, "SELECT COALESCE(SUM(balance_minor), 0), COUNT(*) FROM main.accounts");
    if (s == NULL || sqlite3_step(s) != SQLITE_ROW) {
        return PL_EDB;
    }
    int64_t total = sqlite3_column_int64(s, 0);
    snprintf(v->inv[1].detail, sizeof v->inv[1].detail, "%lld %s",
             (long long)sqlite3_column_int64(s, 1),
             out_plural(sqlite3_column_int64(s, 1), "account", "accounts"));
    if (total != 0) {
        char money[MONEY_FORMAT_BYTES_MAX];
        verify_breach(v, 1, "all accounts", "the balances sum to %s, expected ₹0.00",
                      out_money(total, money));
    }
    return 0;
}

static int check_balances_match_entries(struct verify *v)
{
    sqlite3_stmt *s =
        db_stmt(v->db, "SELECT id, balance_minor, sum_minor FROM (SELECT a.id, a.balance_minor, "
                       "(SELECT COALESCE(SUM(e.amount_minor), 0) FROM main.entries e "
                       "WHERE e.account_id = a.id) AS sum_minor FROM main.accounts a) "
                       "WHERE balance_minor <> sum_minor ORDER BY id");
    if (s == NULL) {
        return PL_EDB;
    }
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        char id[VERIFY_ACCOUNT_BYTES_MAX], bal[MONEY_FORMAT_BYTES_MAX], sum[MONEY_FORMAT_BYTES_MAX];
        db_column_copy(s, 0, id, sizeof id);
        verify_breach(v, 2, id, "%s has balance %s but its entries sum to %s", id,
                      out_money(sqlite3_column_int64(s, 1), bal),
                      out_money(sqlite3_column_int64(s, 2), sum));
    }
    return step_done(rc);
}

static int check_transactions_balance(struct verify *v)
{
    sqlite3_stmt *s = db_stmt(v->db, "SELECT transaction_id, SUM(amount_minor), COUNT(*) "
                                     "FROM main.entries GROUP BY transaction_id "
                                     "HAVING SUM(amount_minor) <> 0 ORDER BY transaction_id");
    if (s == NULL) {
        return PL_EDB;
    }
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        char id[TEXT_BYTES_MAX], sum[MONEY_FORMAT_BYTES_MAX];
        db_column_copy(s, 0, id, sizeof id);
        verify_breach(v, 2, id, "the %lld %s of %s sum%s to %s, expected ₹0.00",
                      (long long)sqlite3_column_int64(s, 2),
                      out_plural(sqlite3_column_int64(s, 2), "entry", "entries"), id,
                      sqlite3_column_int64(s, 2) == 1 ? "s" : "",
                      out_money(sqlite3_column_int64(s, 1), sum));
    }
    return step_done(rc);
}

static int check_not_negative(struct verify *v)
{
    sqlite3_stmt *s = db_stmt(v->db, "SELECT id, balance_minor FROM main.accounts "
                                     "WHERE kind IN ('wallet', 'payouts') AND balance_minor < 0 "
                                     "ORDER BY id");
    if (s == NULL) {
        return PL_EDB;
    }
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        char id[VERIFY_ACCOUNT_BYTES_MAX], bal[MONEY_FORMAT_BYTES_MAX];
        db_column_copy(s, 0, id, sizeof id);
        verify_breach(v, 3, id, "%s is at %s; it may never go below ₹0.00", id,
                      out_money(sqlite3_column_int64(s, 1), bal));
    }
    return step_done(rc);
}

/* One transaction's postings, summed per account it may touch. */
struct postings {
    char id[TEXT_BYTES_MAX], kind[16], status[16], user[TEXT_BYTES_MAX];
    int64_t amount, entries, external, wallet, payouts, payee;
};

static bool is_open(const char *status)
{
    return strcmp(status, "pending") == 0 || strcmp(status, "unknown") == 0;
}

/* The postings docs/ledger.md prescribes for each kind and status. */
static bool postings_ok(const struct postings *p)
{
    int64_t a = p->amount;
    bool succeeded = strcmp(p->status, "succeeded") == 0;
    bool no_entries = p->entries == 0;
    if (strcmp(p->kind, "topup") == 0) {
        return succeeded ? p->entries == 2 && p->external == -a && p->wallet == a : no_entries;
    }
    if (strcmp(p->kind, "p2p") == 0) {
        return succeeded ? p->entries == 2 && p->wallet == -a && p->payee == a : no_entries;
    }
    if (succeeded) { /* hold, then settlement */
        return p->entries == 4 && p->wallet == -a && p->payouts == 0 && p->external == a;
    }
    if (is_open(p->status)) { /* the hold only */
        return p->entries == 2 && p->wallet == -a && p->payouts == a && p->external == 0;
    }
    /* failed: nothing posted, or a hold and its return */
    return (p->entries == 0 || p->entries == 4) && p->wallet == 0 && p->payouts == 0 &&
           p->external == 0;
}

/* What postings_ok wanted, in words. */
static const char *expected_postings(const struct postings *p)
{
    bool succeeded = strcmp(p->status, "succeeded") == 0;
    if (strcmp(p->kind, "topup") == 0) {
        return succeeded ? "expected external:bank -a, wallet +a" : "expected no entries";
    }
    if (strcmp(p->kind, "p2p") == 0) {
        return succeeded ? "expected payer -a, payee +a" : "expected no entries";
    }
    if (succeeded) {
        return "expected the hold (wallet -a, payouts +a) and the payout (payouts -a, "
               "external:bank +a)";
    }
    return is_open(p->status) ? "expected the hold only (wallet -a, payouts +a)"
                              : "expected nothing, or the hold and its return";
}

static void postings_breach(struct verify *v, const struct postings *p)
{
    char amount[MONEY_FORMAT_BYTES_MAX], w[MONEY_FORMAT_BYTES_MAX], x[MONEY_FORMAT_BYTES_MAX];
    char h[MONEY_FORMAT_BYTES_MAX], what[96] = "its postings do not match";
    out_money(p->amount, amount);
    if (strcmp(p->kind, "topup") == 0 && p->wallet > p->amount) {
        int64_t n = p->wallet / p->amount;
        snprintf(what, sizeof what, "credited %lld %s", (long long)n,
                 out_plural(n, "time", "times"));
    } else if (strcmp(p->kind, "withdrawal") == 0 && p->external > p->amount) {
        int64_t n = p->external / p->amount;
        snprintf(what, sizeof what, "paid out %lld %s", (long long)n,
                 out_plural(n, "time", "times"));
    }
    verify_breach(v, 5, p->id,
                  "%s %s (%s, a = %s): %s — %lld %s: wallet:%s %s, external:bank %s, "
                  "payouts:in_flight %s; %s",
                  out_kind_label(p->kind), p->id, p->status, amount, what, (long long)p->entries,
                  out_plural(p->entries, "entry", "entries"), p->user,
                  out_money_signed(p->wallet, w), out_money_signed(p->external, x),
                  out_money_signed(p->payouts, h), expected_postings(p));
}

static int check_postings(struct verify *v)
{
    sqlite3_stmt *s = db_stmt(
        v->db,
        "SELECT t.id, t.kind, t.status, t.user, t.amount_minor, COUNT(e.id), "
        "COALESCE(SUM(CASE WHEN e.account_id = 'external:bank' THEN e.amount_minor END), 0), "
        "COALESCE(SUM(CASE WHEN e.account_id = 'wallet:' || t.user THEN e.amount_minor END), 0), "
        "COALESCE(SUM(CASE WHEN e.account_id = 'payouts:in_flight' THEN e.amount_minor END), 0), "
        "COALESCE(SUM(CASE WHEN t.kind = 'p2p' AND e.account_id = 'wallet:' || t.counterparty "
        "THEN e.amount_minor END), 0) "
        "FROM main.transactions t LEFT JOIN main.entries e ON e.transaction_id = t.id "
        "GROUP BY t.id ORDER BY t.created_at_ms");
    if (s == NULL) {
        return PL_EDB;
    }
    int rc;
    size_t count = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct postings p;
        db_column_copy(s, 0, p.id, sizeof p.id);
        db_column_copy(s, 1, p.kind, sizeof p.kind);
        db_column_copy(s, 2, p.status, sizeof p.status);
        db_column_copy(s, 3, p.user, sizeof p.user);
        p.amount = sqlite3_column_int64(s, 4);
        p.entries = sqlite3_column_int64(s, 5);
        p.external = sqlite3_column_int64(s, 6);
        p.wallet = sqlite3_column_int64(s, 7);
        p.payouts = sqlite3_column_int64(s, 8);
        p.payee = sqlite3_column_int64(s, 9);
        count++;
        if (p.amount > 0 && !postings_ok(&p)) {
            postings_breach(v, &p);
        }
    }
    snprintf(v->inv[5].detail, sizeof v->inv[5].detail, "%zu %s", count,
             out_plural((int64_t)count, "transaction", "transactions"));
    return step_done(rc);
}

static int check_horizon(struct verify *v)
{
    sqlite3_stmt *s =
        db_stmt(v->db, "SELECT id, kind, mode, status, expires_at_ms, created_at_ms "
                       "FROM main.transactions "
                       "WHERE status IN ('pending', 'unknown') ORDER BY created_at_ms");
    if (s == NULL) {
        return PL_EDB;
    }
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        char id[TEXT_BYTES_MAX], kind[16], mode[16], status[16];
        db_column_copy(s, 0, id, sizeof id);
        db_column_copy(s, 1, kind, sizeof kind);
        db_column_copy(s, 2, mode, sizeof mode);
        db_column_copy(s, 3, status, sizeof status);
        int64_t expires = sqlite3_column_type(s, 4) == SQLITE_NULL
                              ? sqlite3_column_int64(s, 5) + VERIFY_TTL_FALLBACK_MS
                              : sqlite3_column_int64(s, 4);
        int64_t horizon = verify_horizon_ms(v, expires);
        if (v->now_ms <= horizon) {
            v->in_flight_count++;
            continue;
        }
        verify_breach(v, 6, id,
                      "%s %s (%s) is still %s %lld ms past its horizon (deadline + "
                      "grace %lld ms + 2 × reconcile %lld ms) — is the reconciler "
                      "running? are faults still on?",
                      out_kind_label(kind), id, mode, status, (long long)(v->now_ms - horizon),
                      (long long)v->grace_ms, (long long)v->reconcile_ms);
    }
    snprintf(v->inv[6].detail, sizeof v->inv[6].detail, "%zu in flight within their horizon",
             v->in_flight_count);
    return step_done(rc);
}

int verify_wallet(struct verify *v)
{
    int rc = check_sum_zero(v);
    if (rc == 0) {
        rc = check_balances_match_entries(v);
    }
    if (rc == 0) {
        rc = check_transactions_balance(v);
    }
    if (rc == 0) {
        rc = check_not_negative(v);
    }
    if (rc == 0) {
        rc = check_postings(v);
    }
    if (rc == 0) {
        rc = check_horizon(v);
    }
    return rc;
}
