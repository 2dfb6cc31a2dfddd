/* wait_ws.h: `--wait ws` of `paylab topup` / `withdraw`: subscribe to the user's events on
 * the gateway BEFORE the request is sent (so nothing can be missed), then wait on the CLI's
 * own event_base for the final transaction.updated of the transaction the request made. */
#ifndef PAYLAB_CLI_WAIT_WS_H
#define PAYLAB_CLI_WAIT_WS_H

#include <stdbool.h>
#include <stdint.h>

#include "cli.h"

struct wait_ws;

struct wait_ws_final {
    bool final;       /* a final transaction.updated arrived */
    char status[16];  /* succeeded | failed */
    bool has_balance; /* balance_minor is the event's */
    int64_t balance_minor;
    int64_t seq;
    int64_t received_mono_ms; /* pl_mono_ms() when it arrived */
    int64_t push_us;          /* arrival (wall clock) − the event's ts_us (the commit) */
};

/* Gets a ws_token for user, connects and subscribes, running the loop until the gateway
 * answers "subscribed". CLI_CONTINUE with *out (free with wait_ws_close), or an exit code
 * after printing why: 3 "cannot reach the gateway at …; try --wait poll:200", 1 a refused
 * token or unknown user, 2 a bad --gateway. */
int wait_ws_open(const struct cli *cli, const char *user, struct wait_ws **out);
/* Runs the loop until the final transaction.updated of txn_id, or until deadline_mono_ms
 * (pl_mono_ms clock), or until the subscription ends. Fills *res (res->final false then). */
void wait_ws_until_final(struct wait_ws *w, const char *txn_id, int64_t deadline_mono_ms,
                         struct wait_ws_final *res);
/* The gateway address subscribed to, and its head seq when the subscription started. */
const char *wait_ws_url(const struct wait_ws *w);
int64_t wait_ws_head_seq(const struct wait_ws *w);
/* Why the subscription ended early ("" while it is alive); borrowed from w. */
const char *wait_ws_error(const struct wait_ws *w);
/* Closes the connection (1000, running the loop until it is closed) and frees w; NULL is ok. */
void wait_ws_close(struct wait_ws *w);

#endif
