/* wsub.h: the CLI's WebSocket subscription to the gateway (docs/realtime.md), shared by
 * `paylab watch` and `--wait ws`: one user (or "*") on the caller's event_base, with
 * reconnects (backoff 250 ms doubling to 5 s, with jitter), fail-over along the --gateway
 * list, resume by (epoch, after = last seq seen), and duplicates dropped by seq, so the
 * caller sees each event of a user at most once and in order. */
#ifndef PAYLAB_CLI_WSUB_H
#define PAYLAB_CLI_WSUB_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cli.h"

struct event_base;
struct wsub;

/* --gateway takes a short list: two gateways in the course, a few more are fine. */
#define WSUB_URLS_MAX 8
#define WSUB_URL_BYTES_MAX (CLI_URL_BYTES_MAX + 8)
/* Reconnect delays: the first retry is quick, a gateway down for long is asked every 5 s. */
#define WSUB_BACKOFF_MS_MIN 250
#define WSUB_BACKOFF_MS_MAX 5000
/* A connection that opened but got no "subscribed" in this long is closed and retried. */
#define WSUB_REPLY_TIMEOUT_MS 5000
/* A fetched ws_token is renewed before a reconnect when it expires within this long. */
#define WSUB_TOKEN_MARGIN_S 60
/* "*": the per-user last seqs remembered to drop duplicates (beyond: passed through). */
#define WSUB_USERS_MAX 4096
#define WSUB_TOKEN_BYTES_MAX 256
#define WSUB_EPOCH_BYTES_MAX 64
#define WSUB_WHY_BYTES_MAX 512

struct wsub_callbacks {
    /* Each "subscribed" reply (reply borrowed for the call); first for the very first one. */
    void (*on_subscribed)(const cJSON *reply, bool first, void *arg);
    /* An event not seen before. raw/raw_bytes: the message exactly as received; replayed when
     * its seq is at or below the head announced by the last "subscribed" (a resume). */
    void (*on_event)(const cJSON *event, const char *raw, size_t raw_bytes, bool replayed,
                     void *arg);
    /* The subscription is over, with exit_code (what wsub_stop was given; CLI_EXIT_UNREACHABLE
     * when no gateway answered before the first subscription; CLI_EXIT_REFUSED when the gateway
     * refused the token) and why ("" after a plain stop). The loop is broken after it. */
    void (*on_ended)(int exit_code, const char *why, void *arg);
};

struct wsub_config {
    const struct cli *cli; /* gateway list, wallet URL (tokens), data dir (admin token) */
    const char *user;      /* a handle, or "*" (every user: the admin token) */
    const char *token;     /* --token, or NULL: fetched from the wallet / the admin token */
    FILE *notices;         /* where "reconnected via …" lines go; NULL: nowhere */
    bool dim;              /* print notices dim (ANSI), for a terminal */
};

/* Splits --gateway ("ws://a:8083,ws://b:8085") into urls, appending /ws to a URL without a
 * path. Returns the count (≥ 1), or 0 after printing a usage error. */
size_t wsub_parse_urls(const char *list, char urls[][WSUB_URL_BYTES_MAX], size_t cap);

/* NULL when out of memory. cfg's strings must outlive the wsub. */
struct wsub *wsub_new(struct event_base *base, const struct wsub_config *cfg,
                      const struct wsub_callbacks *cb, void *arg);
/* Gets the token (a blocking POST /v1/users/U/ws-token unless given) and starts the first
 * connection; the caller then runs the loop. CLI_CONTINUE, or an exit code after printing
 * why (2 bad --gateway or no admin token, 1 unknown user, 3 wallet unreachable). */
int wsub_start(struct wsub *w);
/* Ends the subscription: closes the connection (1000) or lets a dial in flight finish, then
 * calls on_ended(exit_code, why). Idempotent; why may be NULL. */
void wsub_stop(struct wsub *w, int exit_code, const char *why);
/* Frees w (after on_ended, or before wsub_start). */
void wsub_free(struct wsub *w);
/* The address of the current (or last tried) gateway; borrowed from w. */
const char *wsub_url(const struct wsub *w);
/* The last seq seen for the user (the head at the first subscription, then each event's). */
int64_t wsub_last_seq(const struct wsub *w);

#endif
