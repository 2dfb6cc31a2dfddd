/* curlev.h: libcurl multi driven by the libevent loop (the hiperfifo pattern): one
 * persistent event per socket via curl_multi_assign, one evtimer for curl's timeout,
 * curl_multi_info_read drained after every action. Nothing here blocks, except
 * curlev_perform_blocking, which exists for the sync-blocking anti-pattern and the CLI. */
#ifndef PAYLAB_CURLEV_H
#define PAYLAB_CURLEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct curlev;
struct curlev_xfer;

/* Responses longer than this fail the transfer (CURLE_WRITE_ERROR, outcome CURLEV_BAD). */
#define CURLEV_RESPONSE_BYTES_MAX (1024 * 1024)
#define CURLEV_HEADERS_MAX 16
#define CURLEV_HEADER_BYTES_MAX 512
#define CURLEV_INFLIGHT_MAX 4096

enum curlev_outcome {
    CURLEV_ANSWERED = 0, /* an HTTP response arrived (any status) */
    CURLEV_REFUSED,      /* connect failed: nobody listening (definitely not sent) */
    CURLEV_TIMEOUT,      /* no complete answer within timeout_ms (may have been executed) */
    CURLEV_RESET,        /* connection closed or reset after sending (may have been executed) */
    CURLEV_BAD,          /* any other transport error, or a response over the cap */
};

struct curlev_request {
    const char *method; /* "GET", "POST", "PUT" */
    const char *url;
    const char *body; /* may be NULL; copied by curlev_start */
    size_t body_bytes;
    const char *headers[CURLEV_HEADERS_MAX + 1]; /* "Name: value", NULL-terminated */
    long timeout_ms;                             /* whole transfer, required > 0 */
    long connect_timeout_ms;                     /* required > 0 */
    bool fresh_connect; /* CURLOPT_FRESH_CONNECT + FORBID_REUSE: money-moving POSTs */
};

struct curlev_result {
    enum curlev_outcome outcome;
    long http_status; /* 0 unless ANSWERED */
    const char *body; /* NUL-terminated, borrowed during the callback only */
    size_t body_bytes;
    int64_t elapsed_ms;
    const char *error;     /* curl's message, borrowed during the callback only */
    int64_t retry_after_s; /* the answer's Retry-After in seconds (a date: seconds until it);
                              0 when absent or unparsable */
};

typedef void (*curlev_done_fn)(const struct curlev_result *res, void *arg);

/* NULL on failure. */
struct curlev *curlev_new(struct event_base *base);
/* Cancels every transfer in flight (their callbacks are not called) and frees. */
void curlev_free(struct curlev *c);

/* Starts a transfer; done(res, arg) is called exactly once from the loop, unless the
 * transfer is cancelled first. *xfer_out (may be NULL) identifies it until done runs.
 * PL_ENOMEM, PL_ERANGE (too many in flight or headers) or PL_EINVAL. */
int curlev_start(struct curlev *c, const struct curlev_request *req, curlev_done_fn done, void *arg,
                 struct curlev_xfer **xfer_out);
/* Cancels a transfer in flight; its callback is never called. */
void curlev_cancel(struct curlev *c, struct curlev_xfer *xfer);
/* Number of transfers in flight. */
size_t curlev_inflight(const struct curlev *c);

/* Runs req with curl_easy_perform and BLOCKS the caller until done (the sync-blocking
 * anti-pattern, and the CLI/tests). res->body is malloc'ed: free it with
 * curlev_result_free. 0, or PL_ENOMEM. */
int curlev_perform_blocking(const struct curlev_request *req, struct curlev_result *res);
void curlev_result_free(struct curlev_result *res);

#endif
