/* client.c owns the CLI's HTTP exchanges: libcurl easy (the CLI is a blocking program) with a
 * capped body, explicit timeouts, the response headers the course shows, and the -v trace.
 * It does not use curlev_perform_blocking because that result carries no response headers,
 * and Idempotent-Replayed / traceparent are the point of -v. The CLI sends no traceparent:
 * the wallet starts each trace (docs/architecture.md); -v shows the one a service answers with.
 * Must not: print secrets (the Authorization header is never traced).
 * Invariant: every exchange ends with resp->outcome set and resp->body a valid C string. */
#include "client.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "json.h"
#include "out.h"
#include "pl.h"

#define CLIENT_HEADER_LINES_MAX 8
#define CLIENT_HEADER_LINE_BYTES_MAX 384

struct sink {
    char *buf;
    size_t len, cap;
    bool overflow;
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    struct sink *s = arg;
    size_t n = size * nmemb;
    if (s->len + n > CLIENT_BODY_BYTES_MAX) {
        s->overflow = true;
        return 0; /* curl fails the transfer with CURLE_WRITE_ERROR */
    }
    if (s->len + n + 1 > s->cap) {
        size_t cap = (s->len + n + 1) * 2;
        char *grown = realloc(s->buf, cap);
        if (grown == NULL) {
            return 0;
        }
        s->buf = grown;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, data, n);
    s->len += n;
    s->buf[s->len] = '\0';
    return n;
}

/* Copies the trimmed value of "Name: value\r\n" into out when the name matches. */
static void header_value(const char *line, size_t n, const char *name, char *out, size_t cap)
{
    size_t name_len = strlen(name);
    if (n <= name_len || line[name_len] != ':' || strncasecmp(line, name, name_len) != 0) {
        return;
    }
    size_t start = name_len + 1;
    while (start < n && line[start] == ' ') {
        start++;
    }
    size_t end = n;
    while (end > start &&
           (line[end - 1] == '\r' || line[end - 1] == '\n' || line[end - 1] == ' ')) {
        end--;
    }
    size_t len = end - start < cap - 1 ? end - start : cap - 1;
    memcpy(out, line + start, len);
    out[len] = '\0';
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
    struct client_resp *r = arg;
    size_t n = size * nmemb;
    char replayed[16] = "";
    header_value(data, n, "Idempotent-Replayed", replayed, sizeof replayed);
    if (replayed[0] != '\0') {
        r->replayed = strcasecmp(replayed, "true") == 0;
    }
    header_value(data, n, "traceparent", r->traceparent, sizeof r->traceparent);
    header_value(data, n, "Retry-After", r->retry_after, sizeof r->retry_after);
    return n;
}

static enum client_outcome outcome_of(CURLcode rc)
{
    switch (rc) {
    case CURLE_OK:
        return CLIENT_ANSWERED;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
        return CLIENT_REFUSED;
    case CURLE_OPERATION_TIMEDOUT:
        return CLIENT_TIMEOUT;
    default:
        return CLIENT_FAILED;
    }
}

/* The request headers; NULL when out of memory. Caller frees with curl_slist_free_all. */
static struct curl_slist *build_headers(const struct client_req *req)
{
    char line[CLIENT_HEADER_LINE_BYTES_MAX];
    struct curl_slist *h = curl_slist_append(NULL, "Accept: application/json");
    if (h != NULL && req->body != NULL) {
        h = curl_slist_append(h, "Content-Type: application/json");
    }
    if (h != NULL && req->idem_key != NULL) {
        snprintf(line, sizeof line, "Idempotency-Key: %s", req->idem_key);
        h = curl_slist_append(h, line);
    }
    if (h != NULL && req->bearer != NULL) {
        snprintf(line, sizeof line, "Authorization: Bearer %s", req->bearer);
        h = curl_slist_append(h, line);
    }
    return h;
}

static void trace_request(const struct cli *cli, const struct client_req *req,
                          const struct client_resp *r)
{
    if (!cli->verbose) {
        return;
    }
    fprintf(stderr, "> %s %s\n", req->method, r->url);
    if (req->idem_key != NULL) {
        fprintf(stderr, ">   Idempotency-Key: %s\n", req->idem_key);
    }
    if (req->body != NULL) {
        fprintf(stderr, ">   %s\n", req->body);
    }
}

static void trace_response(const struct cli *cli, const struct client_resp *r)
{
    if (!cli->verbose) {
        return;
    }
    if (r->outcome != CLIENT_ANSWERED) {
        fprintf(stderr, "< no answer after %lld ms: %s\n", (long long)r->elapsed_ms, r->error);
        return;
    }
    fprintf(stderr, "< %ld in %lld ms", r->status, (long long)r->elapsed_ms);
    if (r->replayed) {
        fprintf(stderr, "   Idempotent-Replayed: true");
    }
    if (r->traceparent[0] != '\0') {
        fprintf(stderr, "   traceparent: %s", r->traceparent);
    }
    if (r->retry_after[0] != '\0') {
        fprintf(stderr, "   Retry-After: %s", r->retry_after);
    }
    fprintf(stderr, "\n");
}

static void set_options(CURL *e, const struct client_req *req, struct curl_slist *headers,
                        struct sink *sink, struct client_resp *r, char *errbuf)
{
    curl_easy_setopt(e, CURLOPT_URL, r->url);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
    if (req->body != NULL) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(req->body));
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "paylab-cli/" PAYLAB_VERSION);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)CLIENT_TIMEOUT_MS);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)CLIENT_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, sink);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
}

static int build_url(const struct client_req *req, struct client_resp *r)
{
    size_t base_len = strlen(req->base_url);
    while (base_len > 0 && req->base_url[base_len - 1] == '/') {
        base_len--;
    }
    int n = snprintf(r->url, sizeof r->url, "%.*s%s", (int)base_len, req->base_url, req->path);
    return n < 0 || (size_t)n >= sizeof r->url ? PL_ERANGE : 0;
}

static void finish(struct client_resp *r, CURL *e, CURLcode rc, struct sink *sink,
                   const char *errbuf)
{
    r->outcome = outcome_of(rc);
    if (sink->overflow) {
        r->outcome = CLIENT_FAILED;
        pl_strlcpy(r->error, "answer larger than 1 MiB", sizeof r->error);
    } else if (rc != CURLE_OK) {
        pl_strlcpy(r->error, errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc), sizeof r->error);
    }
    if (r->outcome == CLIENT_ANSWERED) {
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
    }
    r->body = sink->buf != NULL ? sink->buf : calloc(1, 1);
    r->body_bytes = sink->buf != NULL ? sink->len : 0;
    if (r->outcome == CLIENT_ANSWERED && r->body_bytes > 0) {
        r->json = json_parse_object(r->body, r->body_bytes);
    }
}

int client_call(const struct cli *cli, const struct client_req *req, struct client_resp *resp)
{
    char errbuf[CURL_ERROR_SIZE] = "";
    struct sink sink = {0};
    memset(resp, 0, sizeof *resp);
    if (build_url(req, resp) != 0) {
        return PL_ERANGE;
    }
    CURL *e = curl_easy_init();
    struct curl_slist *headers = build_headers(req);
    if (e == NULL || headers == NULL) {
        curl_slist_free_all(headers);
        curl_easy_cleanup(e);
        return PL_ENOMEM;
    }
    set_options(e, req, headers, &sink, resp, errbuf);
    trace_request(cli, req, resp);
    int64_t start_ms = pl_mono_ms();
    CURLcode rc = curl_easy_perform(e);
    resp->elapsed_ms = pl_mono_ms() - start_ms;
    finish(resp, e, rc, &sink, errbuf);
    curl_slist_free_all(headers);
    curl_easy_cleanup(e);
    trace_response(cli, resp);
    return resp->body != NULL ? 0 : PL_ENOMEM;
}

void client_free(struct client_resp *resp)
{
    cJSON_Delete(resp->json);
    free(resp->body);
    resp->json = NULL;
    resp->body = NULL;
}

static const char *error_field(const struct client_resp *resp, const char *key)
{
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(resp->json, "error");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(err, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

const char *client_error_code(const struct client_resp *resp)
{
    return error_field(resp, "code");
}

const char *client_error_message(const struct client_resp *resp)
{
    return error_field(resp, "message");
}

static void describe(const struct client_req *req, const struct client_resp *r, char *out,
                     size_t cap)
{
    const char *hint = strcmp(req->service, "wallet") == 0
                           ? "is it running? start it with scripts/demo.sh, or pass --wallet URL"
                           : "is bank-service running? or pass --bank URL";
    switch (r->outcome) {
    case CLIENT_REFUSED:
        snprintf(out, cap, "cannot reach the %s at %s — %s", req->service, req->base_url, hint);
        break;
    case CLIENT_TIMEOUT:
        snprintf(out, cap, "no answer from the %s at %s in %d ms (%s)", req->service, req->base_url,
                 CLIENT_TIMEOUT_MS, r->error);
        break;
    default:
        snprintf(out, cap, "the exchange with the %s at %s failed: %s", req->service, req->base_url,
                 r->error);
        break;
    }
}

int client_report_transport(const struct cli *cli, const struct client_req *req,
                            const struct client_resp *resp)
{
    char msg[768];
    describe(req, resp, msg, sizeof msg);
    fprintf(stderr, "✗ %s\n", msg);
    if (cli->json) {
        cJSON *o = cJSON_CreateObject();
        cJSON *err = cJSON_AddObjectToObject(o, "error");
        cJSON_AddStringToObject(err, "code",
                                resp->outcome == CLIENT_TIMEOUT ? "no_answer" : "unreachable");
        cJSON_AddStringToObject(err, "message", msg);
        char *s = json_print(o);
        if (s != NULL) {
            printf("%s\n", s);
        }
        free(s);
        cJSON_Delete(o);
    }
    return CLI_EXIT_UNREACHABLE;
}

void client_report_refusal(const struct cli *cli, const struct client_req *req,
                           const struct client_resp *resp)
{
    const char *code = client_error_code(resp);
    const char *message = client_error_message(resp);
    fprintf(stderr, "✗ the %s refused %s %s: %ld %s%s%s\n", req->service, req->method, req->path,
            resp->status, code[0] != '\0' ? code : "(no error code)",
            message[0] != '\0' ? " — " : "", message);
    if (resp->status == 401 && strcmp(req->service, "bank") == 0) {
        fprintf(stderr,
                "  the token in %s/secrets/ (or $PAYLAB_ADMIN_TOKEN) is not the bank's: "
                "pass the services' --data-dir\n",
                cli->data_dir);
    }
    if (resp->retry_after[0] != '\0') {
        fprintf(stderr, "  retry after %s s\n", resp->retry_after);
    }
    if (cli->json && resp->json != NULL) {
        out_json(resp->json);
    }
}

int client_fetch(const struct cli *cli, const struct client_req *req, struct client_resp *resp)
{
    if (client_call(cli, req, resp) != 0) {
        fprintf(stderr, "paylab: out of memory or URL too long\n");
        client_free(resp);
        return CLI_EXIT_USAGE;
    }
    if (resp->outcome != CLIENT_ANSWERED) {
        int rc = client_report_transport(cli, req, resp);
        client_free(resp);
        return rc;
    }
    if (resp->status >= 200 && resp->status < 300 && resp->json != NULL) {
        return CLI_CONTINUE;
    }
    if (resp->status >= 200 && resp->status < 300) {
        fprintf(stderr, "✗ the %s answered %ld with a body that is not a JSON object\n",
                req->service, resp->status);
    } else {
        client_report_refusal(cli, req, resp);
    }
    client_free(resp);
    return CLI_EXIT_REFUSED;
}
