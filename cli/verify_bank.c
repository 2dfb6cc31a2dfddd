/* verify_bank.c owns invariant 4 of docs/ledger.md — the wallet and the bank agree — and the
 * bank's half of invariant 5 (one payment per reference). The wallet's top-ups and
 * withdrawals are joined to the bank's payments by reference (= the wallet transaction id),
 * counting only payments that carry this wallet database's epoch (or none: a void), so an
 * old bank.db is never compared with a fresh wallet.db.
 * Why the order of reads matters: the wallet snapshot is taken first, then the bank's. The
 * bank always decides before the wallet learns, so a payment final in the wallet snapshot
 * is final in the (later) bank snapshot too, and a wallet transaction missing from the
 * wallet snapshot can only have a bank payment created after snapshot_ms.
 * Must not: write, or treat a side that is still open within its horizon as a breach.
 * Invariant: every read runs in the caller's one read transaction. */
#include "verify.h"

#include <stdio.h>
#include <string.h>

#include "out.h"
#include "pl.h"

#define TEXT_BYTES_MAX 64

/* One wallet transaction and its bank payment (payment_id "" when the bank has none). */
struct pair {
    char id[TEXT_BYTES_MAX], kind[16], status[16];
    int64_t amount;
    char payment_id[TEXT_BYTES_MAX], p_status[16], p_reason[TEXT_BYTES_MAX];
    char debit[VERIFY_ACCOUNT_BYTES_MAX], credit[VERIFY_ACCOUNT_BYTES_MAX];
    int64_t p_amount, p_expires;
    bool voided;
};

static bool is_final(const char *status)
{
    return strcmp(status, "succeeded") == 0 || strcmp(status, "failed") == 0;
}

static int step_done(int rc)
{
    return rc == SQLITE_DONE ? 0 : PL_EDB;
}

static void read_pair(sqlite3_stmt *s, struct pair *p)
{
    db_column_copy(s, 0, p->id, sizeof p->id);
    db_column_copy(s, 1, p->kind, sizeof p->kind);
    db_column_copy(s, 2, p->status, sizeof p->status);
    p->amount = sqlite3_column_int64(s, 3);
    db_column_copy(s, 4, p->payment_id, sizeof p->payment_id);
    db_column_copy(s, 5, p->p_status, sizeof p->p_status);
    p->p_amount = sqlite3_column_int64(s, 6);
    p->voided = sqlite3_column_int64(s, 7) != 0;
    db_column_copy(s, 8, p->debit, sizeof p->debit);
    db_column_copy(s, 9, p->credit, sizeof p->credit);
    p->p_expires = sqlite3_column_int64(s, 10);
    db_column_copy(s, 11, p->p_reason, sizeof p->p_reason);
}

/* Both sides final: same status, same amount, the nodal account on the right side. */
static void compare_final(struct verify *v, const struct pair *p)
{
    char a[MONEY_FORMAT_BYTES_MAX], b[MONEY_FORMAT_BYTES_MAX];
    if (strcmp(p->status, p->p_status) != 0) {
        verify_breach(v, 4, p->id, "%s %s: the wallet says %s, the bank says %s%s%s (payment %s)",
                      out_kind_label(p->kind), p->id, p->status, p->p_status,
                      p->p_reason[0] != '\0' ? " / " : "", p->p_reason, p->payment_id);
        return;
    }
    if (p->voided) {
        return; /* a void has no amount and no accounts: the status is all there is */
    }
    if (p->amount != p->p_amount) {
        verify_breach(v, 4, p->id, "%s %s: the wallet has %s, the bank's payment %s has %s",
                      out_kind_label(p->kind), p->id, out_money(p->amount, a), p->payment_id,
                      out_money(p->p_amount, b));
    }
    bool topup = strcmp(p->kind, "topup") == 0;
    const char *nodal_side = topup ? p->credit : p->debit;
    if (strcmp(nodal_side, v->nodal) != 0) {
        verify_breach(v, 4, p->id,
                      "%s %s: the bank's payment %s moves %s → %s; expected the "
                      "nodal account %s as the %s",
                      out_kind_label(p->kind), p->id, p->payment_id, p->debit, p->credit, v->nodal,
                      topup ? "payee" : "payer");
    }
}

static void check_pair(struct verify *v, const struct pair *p, size_t *compared)
{
    if (p->payment_id[0] == '\0') {
        if (strcmp(p->status, "succeeded") == 0) {
            verify_breach(v, 4, p->id,
                          "%s %s succeeded in the wallet, but the bank has no "
                          "payment with this reference",
                          out_kind_label(p->kind), p->id);
        }
        return;
    }
    if (!is_final(p->p_status)) {
        int64_t horizon = verify_horizon_ms(v, p->p_expires);
        if (v->now_ms > horizon) {
            verify_breach(v, 4, p->payment_id,
                          "the bank's payment %s (%s) is still %s %lld ms "
                          "past its horizon",
                          p->payment_id, p->id, p->p_status, (long long)(v->now_ms - horizon));
        }
        return;
    }
    if (!is_final(p->status)) {
        return; /* the wallet side is open: invariant 6 judges its horizon */
    }
    (*compared)++;
    compare_final(v, p);
}

static int check_references(struct verify *v)
{
    sqlite3_stmt *s = db_stmt(
        v->db, "SELECT t.id, t.kind, t.status, t.amount_minor, p.id, p.status, p.amount_minor, "
               "p.voided, p.debit_account, p.credit_account, p.expires_at_ms, p.failure_reason "
               "FROM main.transactions t LEFT JOIN bank.payments p ON p.reference = t.id "
               "AND (p.wallet_epoch = ?1 OR p.wallet_epoch IS NULL) "
               "WHERE t.kind IN ('topup', 'withdrawal') ORDER BY t.created_at_ms");
    if (s == NULL || db_bind_text(s, 1, v->epoch) != SQLITE_OK) {
        return PL_EDB;
    }
    size_t compared = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct pair p;
        read_pair(s, &p);
        check_pair(v, &p, &compared);
    }
    snprintf(v->inv[4].detail, sizeof v->inv[4].detail, "%zu %s final on both sides", compared,
             out_plural((int64_t)compared, "reference", "references"));
    return step_done(rc);
}

/* Payments of this epoch that moved (or may move) money for a reference the wallet does not
 * know, though it would have been in the wallet snapshot (created before snapshot_ms). */
static int check_orphans(struct verify *v)
{
    sqlite3_stmt *s = db_stmt(
        v->db, "SELECT p.id, p.reference, p.status FROM bank.payments p "
               "WHERE p.wallet_epoch = ?1 AND p.voided = 0 AND p.status <> 'failed' "
               "AND p.created_at_ms < ?2 "
               "AND NOT EXISTS (SELECT 1 FROM main.transactions t WHERE t.id = p.reference) "
               "ORDER BY p.created_at_ms");
    if (s == NULL || db_bind_text(s, 1, v->epoch) != SQLITE_OK ||
        sqlite3_bind_int64(s, 2, v->snapshot_ms) != SQLITE_OK) {
        return PL_EDB;
    }
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        char id[TEXT_BYTES_MAX], ref[TEXT_BYTES_MAX], status[16];
        db_column_copy(s, 0, id, sizeof id);
        db_column_copy(s, 1, ref, sizeof ref);
        db_column_copy(s, 2, status, sizeof status);
        verify_breach(v, 4, id,
                      "the bank's payment %s is %s for reference %s, which the "
                      "wallet does not know",
                      id, status, ref);
    }
    return step_done(rc);
}

/* The wallet's external:bank mirrors the nodal account's movements for final transactions. */
static int check_nodal_vs_external(struct verify *v)
{
    sqlite3_stmt *s = db_stmt(
        v->db,
        "SELECT COALESCE(SUM(CASE WHEN p.credit_account = ?2 THEN p.amount_minor ELSE 0 END "
        "- CASE WHEN p.debit_account = ?2 THEN p.amount_minor ELSE 0 END), 0), "
        "(SELECT COALESCE(SUM(balance_minor), 0) FROM main.accounts WHERE id = 'external:bank') "
        "FROM bank.payments p JOIN main.transactions t ON t.id = p.reference "
        "WHERE p.status = 'succeeded' AND p.wallet_epoch = ?1 "
        "AND t.status IN ('succeeded', 'failed')");
    if (s == NULL || db_bind_text(s, 1, v->epoch) != SQLITE_OK ||
        db_bind_text(s, 2, v->nodal) != SQLITE_OK || sqlite3_step(s) != SQLITE_ROW) {
        return PL_EDB;
    }
    int64_t nodal = sqlite3_column_int64(s, 0);
    int64_t external = sqlite3_column_int64(s, 1);
    if (nodal != -external) {
        char a[MONEY_FORMAT_BYTES_MAX], b[MONEY_FORMAT_BYTES_MAX];
        verify_breach(v, 4, "external:bank",
                      "the bank's succeeded movements of %s for final wallet transactions sum to "
                      "%s, but -balance(external:bank) is %s",
                      v->nodal, out_money(nodal, a), out_money(-external, b));
    }
    return 0;
}

/* At the bank, the nodal account's balance is the sum of its succeeded movements. */
static int check_nodal_balance(struct verify *v)
{
    sqlite3_stmt *s =
        db_stmt(v->db, "SELECT (SELECT balance_minor FROM bank.accounts WHERE id = ?1), "
                       "COALESCE(SUM(CASE WHEN credit_account = ?1 THEN amount_minor ELSE 0 END "
                       "- CASE WHEN debit_account = ?1 THEN amount_minor ELSE 0 END), 0) "
                       "FROM bank.payments WHERE status = 'succeeded'");
    if (s == NULL || db_bind_text(s, 1, v->nodal) != SQLITE_OK || sqlite3_step(s) != SQLITE_ROW) {
        return PL_EDB;
    }
    if (sqlite3_column_type(s, 0) == SQLITE_NULL) {
        verify_breach(v, 4, v->nodal, "the bank has no account %s (another --nodal-account?)",
                      v->nodal);
        return 0;
    }
    int64_t balance = sqlite3_column_int64(s, 0);
    int64_t moved = sqlite3_column_int64(s, 1);
    if (balance != moved) {
        char a[MONEY_FORMAT_BYTES_MAX], b[MONEY_FORMAT_BYTES_MAX];
        verify_breach(v, 4, v->nodal,
                      "the bank's %s holds %s, but its succeeded payments sum to %s", v->nodal,
                      out_money(balance, a), out_money(moved, b));
    }
    size_t len = strlen(v->inv[4].detail);
    char m[MONEY_FORMAT_BYTES_MAX];
    snprintf(v->inv[4].detail + len, sizeof v->inv[4].detail - len, "; %s holds %s", v->nodal,
             out_money(balance, m));
    return 0;
}

/* UNIQUE(reference) makes this impossible at the bank; checked all the same. */
static int check_one_payment_per_reference(struct verify *v)
{
    sqlite3_stmt *s = db_stmt(v->db, "SELECT reference, COUNT(*) FROM bank.payments "
                                     "GROUP BY reference HAVING COUNT(*) > 1");
    if (s == NULL) {
        return PL_EDB;
    }
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        char ref[TEXT_BYTES_MAX];
        db_column_copy(s, 0, ref, sizeof ref);
        verify_breach(v, 5, ref, "the bank holds %lld payments for reference %s (at most one)",
                      (long long)sqlite3_column_int64(s, 1), ref);
    }
    return step_done(rc);
}

int verify_bank(struct verify *v)
{
    int rc = check_references(v);
    if (rc == 0) {
        rc = check_orphans(v);
    }
    if (rc == 0) {
        rc = check_nodal_vs_external(v);
    }
    if (rc == 0) {
        rc = check_nodal_balance(v);
    }
    if (rc == 0) {
        rc = check_one_payment_per_reference(v);
    }
    return rc;
}
