/* client.h: one blocking HTTP exchange of the paylab CLI with a service, with the response
 * headers the course is about (Idempotent-Replayed, traceparent, Retry-After) and the -v
 * trace of each exchange on stderr. */
#ifndef PAYLAB_CLI_CLIENT_H
#define PAYLAB_CLI_CLIENT_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cli.h"
#include "ids.h"

/* The wallet waits --bank-timeout-ms (default 2000) for the bank; a sync-blocking wallet
 * may also be busy with others. Well above both, and still bounded. */
#define CLIENT_TIMEOUT_MS 15000
#define CLIENT_CONNECT_TIMEOUT_MS 3000
/* Every answer of the services is small; a bigger one is an error, not a growing buffer. */
#define CLIENT_BODY_BYTES_MAX (1024 * 1024)
#define CLIENT_HEADER_VALUE_BYTES_MAX 128

enum client_outcome {
    CLIENT_ANSWERED = 0, /* an HTTP response arrived, any status */
    CLIENT_REFUSED,      /* nobody listening at that address (or it does not resolve) */
    CLIENT_TIMEOUT,      /* no complete answer within CLIENT_TIMEOUT_MS */
    CLIENT_FAILED,       /* reset, garbage, a response over the cap, any other transport error */
};

struct client_req {
    const char *method; /* GET, POST, PUT */
    const char *base_url;
    const char *path;     /* "/v1/topups" */
    const char *body;     /* JSON, or NULL */
    const char *idem_key; /* Idempotency-Key, or NULL */
    const char *bearer;   /* Authorization: Bearer …, or NULL (never printed) */
    const char *service;  /* "wallet" or "bank", for messages */
};

struct client_resp {
    enum client_outcome outcome;
    long status; /* HTTP status; 0 unless ANSWERED */
    char *body;  /* malloc'ed, NUL-terminated (may be empty) */
    size_t body_bytes;
    cJSON *json;                                     /* the body parsed as a JSON object, or NULL */
    bool replayed;                                   /* Idempotent-Replayed: true */
    char traceparent[CLIENT_HEADER_VALUE_BYTES_MAX]; /* response header, or "" */
    char retry_after[CLIENT_HEADER_VALUE_BYTES_MAX];
    char url[CLI_URL_BYTES_MAX + 256];
    char error[256]; /* transport error text when not ANSWERED */
    int64_t elapsed_ms;
};

/* Runs one exchange (printing it on stderr when cli->verbose). Returns 0 with *resp filled,
 * whatever the outcome; PL_ENOMEM / PL_ERANGE for local failures. Free with client_free. */
int client_call(const struct cli *cli, const struct client_req *req, struct client_resp *resp);
void client_free(struct client_resp *resp);

/* Prints why no answer came ("cannot reach the wallet at … — is it running? …") on stderr
 * (and as a JSON error on stdout with --json). Returns CLI_EXIT_UNREACHABLE. */
int client_report_transport(const struct cli *cli, const struct client_req *req,
                            const struct client_resp *resp);

/* client_call for the exchanges that only report (queries, user add, faults): returns
 * CLI_CONTINUE when a 2xx JSON object arrived (resp filled; caller client_free()s), else
 * prints what went wrong (the service's error body verbatim with --json), frees resp and
 * returns the exit code: 3 no answer, 1 any refusal or error status. */
int client_fetch(const struct cli *cli, const struct client_req *req, struct client_resp *resp);
/* Prints "✗ the wallet refused: 404 unknown_user — no such user" on stderr (and the body on
 * stdout with --json). */
void client_report_refusal(const struct cli *cli, const struct client_req *req,
                           const struct client_resp *resp);

/* The error code / message of a service's error body ("" when absent); borrowed from resp. */
const char *client_error_code(const struct client_resp *resp);
const char *client_error_message(const struct client_resp *resp);

#endif
