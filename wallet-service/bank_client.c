/* bank_client.c owns what the wallet says to the bank and what the bank's answers mean:
 * the request bytes (URL, headers, JSON body) of payments, status queries, voids, account
 * openings and mandates, and the classification of an answer into a bank_verdict.
 * Must not: touch wallet.db, reply to clients, or start transfers (callers hand the
 * prepared curlev_request to curlev_start, or to curlev_perform_blocking in sync-blocking).
 * Invariant: every money-moving POST (payment, void) goes out on a fresh connection, so
 * CURLEV_REFUSED really means "never sent" (docs/architecture.md); only a 200 with a final status
 * whose reference and amount match ours is a definite answer — everything else is not. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ids.h"
#include "json.h"
#include "log.h"
#include "pl.h"
#include "wallet.h"

const char *bank_verdict_name(enum bank_verdict v)
{
    static const char *const names[] = {"succeeded", "failed",    "processing", "refused",
                                        "timeout",   "not_found", "mismatch",   "error"};
    assert((size_t)v < PL_ARRAY_LEN(names));
    return names[v];
}

/* ===================================================================== requests ===== */

/* Fills the parts every call shares: URL, auth, JSON content type, timeouts. */
static int bank_call_init(const struct wallet_ctx *ctx, struct bank_call *call, const char *method,
                          const char *path, bool fresh)
{
    memset(call, 0, sizeof *call);
    int n = snprintf(call->url, sizeof call->url, "%s%s", ctx->cfg.bank_url, path);
    if (n < 0 || (size_t)n >= sizeof call->url)
        return PL_ERANGE;
    n = snprintf(call->hdrs[0], BANK_HDR_BYTES_MAX, "Authorization: Bearer %s", ctx->bank_api_key);
    if (n < 0 || n >= BANK_HDR_BYTES_MAX)
        return PL_ERANGE;
    pl_strlcpy(call->hdrs[1], "Content-Type: application/json", BANK_HDR_BYTES_MAX);
    pl_strlcpy(call->hdrs[2], "Accept: application/json", BANK_HDR_BYTES_MAX);
    call->req.method = method;
    call->req.url = call->url;
    call->req.headers[0] = call->hdrs[0];
    call->req.headers[1] = call->hdrs[1];
    call->req.headers[2] = call->hdrs[2];
    call->req.timeout_ms = (long)ctx->cfg.bank_timeout_ms;
    call->req.connect_timeout_ms = (long)ctx->cfg.bank_timeout_ms;
    call->req.fresh_connect = fresh;
    return 0;
}

/* Prints obj as the call's body and frees obj. */
static int bank_call_body(struct bank_call *call, cJSON *obj)
{
    if (obj == NULL)
        return PL_ENOMEM;
    call->body = json_print(obj);
    cJSON_Delete(obj);
    if (call->body == NULL)
        return PL_ENOMEM;
    call->req.body = call->body;
    call->req.body_bytes = strlen(call->body);
    return 0;
}

int bank_payment_call(const struct wallet_ctx *ctx, const struct ledger_txn *t,
                      struct bank_call *call)
{
    assert(t->kind == TXN_KIND_TOPUP || t->kind == TXN_KIND_WITHDRAWAL);
    int rc = bank_call_init(ctx, call, "POST", "/v1/payments", true);
    if (rc != 0)
        return rc;
    snprintf(call->hdrs[3], BANK_HDR_BYTES_MAX, "Idempotency-Key: %s", t->id);
    char trace[TRACEPARENT_BYTES];
    if (ids_traceparent_child(t->traceparent, trace) != 0)
        return PL_EIO;
    snprintf(call->hdrs[4], BANK_HDR_BYTES_MAX, "traceparent: %s", trace);
    call->req.headers[3] = call->hdrs[3];
    call->req.headers[4] = call->hdrs[4];
    bool topup = t->kind == TXN_KIND_TOPUP;
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        return PL_ENOMEM;
    cJSON_AddStringToObject(o, "reference", t->id);
    cJSON_AddStringToObject(o, "debit_account", topup ? t->counterparty : ctx->cfg.nodal_account);
    cJSON_AddStringToObject(o, "credit_account", topup ? ctx->cfg.nodal_account : t->counterparty);
    cJSON_AddNumberToObject(o, "amount_minor", (double)t->amount_minor);
    cJSON_AddStringToObject(o, "currency", "INR");
    cJSON_AddStringToObject(o, "mode", t->mode == TXN_MODE_ASYNC ? "async" : "sync");
    cJSON_AddStringToObject(o, "notify_url", ctx->cfg.notify_url);
    cJSON_AddNumberToObject(o, "expires_at_ms", (double)t->expires_at_ms);
    cJSON_AddStringToObject(o, "wallet_epoch", ctx->epoch);
    return bank_call_body(call, o);
}

int bank_query_call(const struct wallet_ctx *ctx, const char *reference, struct bank_call *call)
{
    char path[128];
    int n = snprintf(path, sizeof path, "/v1/payments?reference=%s", reference);
    if (n < 0 || (size_t)n >= sizeof path)
        return PL_ERANGE;
    return bank_call_init(ctx, call, "GET", path, false);
}

int bank_void_call(const struct wallet_ctx *ctx, const char *reference, struct bank_call *call)
{
    int rc = bank_call_init(ctx, call, "POST", "/v1/payments/void", true);
    if (rc != 0)
        return rc;
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        return PL_ENOMEM;
    cJSON_AddStringToObject(o, "reference", reference);
    return bank_call_body(call, o);
}

int bank_account_call(const struct wallet_ctx *ctx, const char *account, const char *owner,
                      struct bank_call *call)
{
    int rc = bank_call_init(ctx, call, "POST", "/v1/accounts", true);
    if (rc != 0)
        return rc;
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        return PL_ENOMEM;
    cJSON_AddStringToObject(o, "id", account);
    cJSON_AddStringToObject(o, "owner", owner);
    cJSON_AddNumberToObject(o, "opening_minor", (double)ctx->cfg.bank_opening_minor);
    return bank_call_body(call, o);
}

int bank_account_get_call(const struct wallet_ctx *ctx, const char *account, struct bank_call *call)
{
    char path[128];
    int n = snprintf(path, sizeof path, "/v1/accounts/%s", account);
    if (n < 0 || (size_t)n >= sizeof path)
        return PL_ERANGE;
    return bank_call_init(ctx, call, "GET", path, false);
}

int bank_mandate_call(const struct wallet_ctx *ctx, const char *account, struct bank_call *call)
{
    int rc = bank_call_init(ctx, call, "POST", "/v1/mandates", true);
    if (rc != 0)
        return rc;
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        return PL_ENOMEM;
    cJSON_AddStringToObject(o, "account", account);
    cJSON_AddStringToObject(o, "payee", ctx->cfg.nodal_account);
    return bank_call_body(call, o);
}

void bank_call_free(struct bank_call *call)
{
    free(call->body);
    call->body = NULL;
}

/* ===================================================================== answers ====== */

static void bank_error(struct bank_answer *out, const char *what)
{
    out->verdict = BANK_ERROR;
    snprintf(out->detail, sizeof out->detail,
             "%s; the bank may or may not have moved the money; the reconciler will ask", what);
}

/* Classifies a 2xx body that names a payment. */
static void bank_classify_payment(const cJSON *o, const struct ledger_txn *t, long http_status,
                                  struct bank_answer *out)
{
    const char *reference = NULL, *status = NULL, *pid = NULL, *reason = NULL;
    int64_t amount = -1;
    bool voided = false;
    if (json_get_string(o, "reference", true, ID_BYTES_MAX, &reference) != JSON_OK ||
        json_get_string(o, "status", true, 16, &status) != JSON_OK) {
        bank_error(out, "the bank's answer has no reference or status");
        return;
    }
    if (strcmp(reference, t->id) != 0) {
        bank_error(out, "the bank's answer names another reference");
        return;
    }
    if (json_get_string(o, "payment_id", false, ID_BYTES_MAX - 1, &pid) == JSON_OK && pid != NULL)
        pl_strlcpy(out->payment_id, pid, sizeof out->payment_id);
    if (json_get_string(o, "failure_reason", false, WALLET_FAILURE_BYTES_MAX - 1, &reason) ==
            JSON_OK &&
        reason != NULL)
        pl_strlcpy(out->failure_reason, reason, sizeof out->failure_reason);
    json_get_bool(o, "voided", false, &voided);
    json_get_int64(o, "amount_minor", false, &amount);
    out->voided = voided;
    if (strcmp(status, "processing") == 0) {
        out->verdict = BANK_PROCESSING;
        snprintf(out->detail, sizeof out->detail, "the bank says the payment is still processing");
        return;
    }
    bool succeeded = strcmp(status, "succeeded") == 0;
    if (!succeeded && strcmp(status, "failed") != 0) {
        bank_error(out, "the bank answered an unknown payment status");
        return;
    }
    /* A voided reference moved nothing and carries no amount of ours. */
    bool amount_ok = amount == t->amount_minor || (voided && !succeeded);
    if (!amount_ok) {
        out->verdict = BANK_MISMATCH;
        snprintf(out->detail, sizeof out->detail,
                 "the bank says %s for %lld paise, but the transaction is for %lld paise", status,
                 (long long)amount, (long long)t->amount_minor);
        return;
    }
    if (http_status != 200) {
        bank_error(out, "the bank answered a final status without HTTP 200");
        return;
    }
    out->verdict = succeeded ? BANK_SUCCEEDED : BANK_FAILED;
    snprintf(out->detail, sizeof out->detail, "the bank answered %s%s%s (%s) in %lld ms", status,
             succeeded ? "" : ": ", succeeded ? "" : (reason != NULL ? reason : "no reason"),
             out->payment_id[0] != '\0' ? out->payment_id : "no payment id",
             (long long)out->elapsed_ms);
}

void bank_classify(const struct curlev_result *res, const struct ledger_txn *t,
                   struct bank_answer *out)
{
    memset(out, 0, sizeof *out);
    out->http_status = res->http_status;
    out->elapsed_ms = res->elapsed_ms;
    switch (res->outcome) {
    case CURLEV_REFUSED:
        out->verdict = BANK_REFUSED;
        snprintf(out->detail, sizeof out->detail,
                 "the bank refused the connection; the request was never sent");
        return;
    case CURLEV_TIMEOUT:
        out->verdict = BANK_TIMEOUT;
        snprintf(out->detail, sizeof out->detail,
                 "no answer from the bank in %lld ms; the reconciler will ask",
                 (long long)res->elapsed_ms);
        return;
    case CURLEV_RESET:
        bank_error(out, "the bank closed the connection without an answer");
        return;
    case CURLEV_BAD:
        bank_error(out, "the bank's answer could not be read");
        return;
    case CURLEV_ANSWERED:
        break;
    }
    if (res->http_status == 404) {
        out->verdict = BANK_NOT_FOUND;
        snprintf(out->detail, sizeof out->detail, "the bank has no payment with this reference");
        return;
    }
    if (res->http_status < 200 || res->http_status > 299) {
        char what[64];
        snprintf(what, sizeof what, "the bank answered HTTP %ld", res->http_status);
        bank_error(out, what);
        return;
    }
    cJSON *o = json_parse_object(res->body != NULL ? res->body : "", res->body_bytes);
    if (o == NULL) {
        bank_error(out, "the bank answered something that is not a JSON object");
        return;
    }
    bank_classify_payment(o, t, res->http_status, out);
    cJSON_Delete(o);
}
