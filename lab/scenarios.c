/* scenarios.c owns the lab's scenario table: each scenario's fixed name (coursework cites
 * it), the lecture claim it shows, and exactly what it sets — bank faults, wallet or bank
 * flags, process kills — per case.
 * Must not: measure, or decide what a run "should" show (the report says what it saw).
 * Invariant: names are unique; every case applies to at least one mode. */
#include "lab.h"

#include <assert.h>
#include <string.h>

#define SYNC LAB_MODE_BIT(LAB_MODE_SYNC)
#define ASYNC LAB_MODE_BIT(LAB_MODE_ASYNC)
#define BLOCKING LAB_MODE_BIT(LAB_MODE_SYNC_BLOCKING)
#define BOTH (SYNC | ASYNC)

/* Faults are written as `paylab faults set` takes them. The lab's wallet runs with a 1 s bank
 * timeout, a 3 s sync and an 8 s async deadline, a 1 s pending grace and a 250 ms reconciler
 * (lab.c: lab_timing_default), so every latency below is chosen against those. */
static const struct lab_scenario scenarios[] = {
    {.name = "baseline",
     .claim = "With a healthy bank both couplings succeed: sync answers with the outcome, async "
              "answers at once and the outcome follows over the WebSocket.",
     .sets = "no faults",
     .expected_s = 8,
     .cases = {{.label = "", .faults = "", .modes = BOTH}},
     .cases_count = 1},
    {.name = "bank-slow",
     .claim = "Strong coupling makes the client wait for its slowest dependency; weak coupling "
              "answers at once and the wait moves to the background.",
     .sets = "latency_ms=300 latency_jitter_ms=200 (below the 1 s bank timeout)",
     .expected_s = 12,
     .cases = {{.label = "", .faults = "latency_ms=300 latency_jitter_ms=200", .modes = BOTH}},
     .cases_count = 1},
    {.name = "bank-flaky",
     .claim = "A 5xx is not a no: a sync caller is left unknown until the deadline lets the "
              "reconciler close it, while async retries the same request under the same key.",
     .sets = "error_rate=0.3 (the bank answers 500 before doing anything)",
     .expected_s = 14,
     .cases = {{.label = "", .faults = "error_rate=0.3", .modes = BOTH}},
     .cases_count = 1},
    {.name = "bank-down",
     .claim = "A refused connection is a definite 'not sent': sync fails fast with 503, async "
              "accepts, keeps the request in its outbox and sends it when the bank is back.",
     .sets = "the bank process is stopped (SIGTERM) after 30 % of the requests and restarted "
             "2 s later",
     .expected_s = 16,
     .cases = {{.label = "",
                .faults = "",
                .action = LAB_ACTION_STOP_BANK,
                .action_ms = 2000,
                .action_at = 0.3,
                .modes = BOTH}},
     .cases_count = 1},
    {.name = "lost-response",
     .claim = "A timeout is not a failure: the bank may have moved the money. The bank's webhook "
              "usually rescues a lost answer; without it only the reconciler can settle it.",
     .sets = "lost_response_rate=0.5 (the bank commits, then never answers); second case also "
             "webhook_drop_rate=1",
     .expected_s = 20,
     .cases = {{.label = "webhooks on", .faults = "lost_response_rate=0.5", .modes = BOTH},
               {.label = "webhooks dropped",
                .faults = "lost_response_rate=0.5 webhook_drop_rate=1",
                .modes = BOTH}},
     .cases_count = 2},
    {.name = "webhook-loss",
     .claim = "Webhooks arrive only because the bank retries them; when they keep getting lost, "
              "the reconciler asking the bank is the safety net.",
     .sets = "webhook_drop_rate=0.7 (each delivery attempt)",
     .expected_s = 12,
     .cases = {{.label = "", .faults = "webhook_drop_rate=0.7", .modes = BOTH}},
     .cases_count = 1},
    {.name = "webhook-dupes",
     .claim = "At-least-once delivery means duplicates; an idempotent receiver (webhook id + "
              "state guard) absorbs them: nothing is credited twice.",
     .sets = "webhook_duplicate_rate=1 (every delivery is sent twice, concurrently)",
     .expected_s = 10,
     .cases = {{.label = "", .faults = "webhook_duplicate_rate=1", .modes = BOTH}},
     .cases_count = 1},
    {.name = "webhook-reorder",
     .claim = "Webhooks come in any order; the state machine refuses a late 'processing' after "
              "'succeeded', so the final state is right whatever the order.",
     .sets = "webhook_delay_jitter_ms=300 (each attempt held 0-300 ms)",
     .expected_s = 10,
     .cases = {{.label = "", .faults = "webhook_delay_jitter_ms=300", .modes = BOTH}},
     .cases_count = 1},
    {.name = "forged-webhooks",
     .claim = "Anyone can POST to a webhook URL: the signature and the timestamp window refuse "
              "forgeries before they reach the ledger.",
     .sets = "no bank faults; the lab posts forged webhooks to both gateways (no signature, a "
             "wrong secret, a tampered body, a stale timestamp) for the clients' transactions",
     .expected_s = 10,
     .cases = {{.label = "", .faults = "", .action = LAB_ACTION_FORGE, .modes = BOTH}},
     .cases_count = 1},
    {.name = "wallet-crash",
     .claim = "Durable state survives kill -9: after a restart every accepted request finishes "
              "from the database and its outbox, and clients retrying with their key are safe.",
     .sets = "the wallet is SIGKILLed half way and restarted at once",
     .expected_s = 14,
     .cases = {{.label = "",
                .faults = "",
                .action = LAB_ACTION_KILL_WALLET,
                .action_ms = 0,
                .action_at = 0.5,
                .modes = BOTH}},
     .cases_count = 1},
    {.name = "gateway-crash",
     .claim = "Gateways are stateless: WebSocket clients fail over to the other one and resume "
              "by seq without missing or repeating an event; webhooks fail over too.",
     .sets = "gateway 1 of 2 is SIGKILLed half way and restarted 1 s later",
     .expected_s = 12,
     .cases = {{.label = "",
                .faults = "",
                .action = LAB_ACTION_KILL_GATEWAY,
                .action_ms = 1000,
                .action_at = 0.5,
                .modes = BOTH}},
     .cases_count = 1},
    {.name = "slow-subscriber",
     .claim = "A WebSocket client that stops reading is dropped, not waited for: the other "
              "watchers keep their latency.",
     .sets = "four WebSocket clients that never read subscribe to every user on gateway 1 while "
             "a burst of P2P transfers runs",
     .expected_s = 14,
     .cases = {{.label = "",
                .faults = "",
                .action = LAB_ACTION_SLOW_SUBSCRIBERS,
                .action_at = 0.0,
                .modes = BOTH}},
     .cases_count = 1},
    {.name = "blocking-client",
     .claim = "Blocking the event loop on a slow call stalls everyone: under sync-blocking, "
              "unrelated users' P2P transfers wait behind the bank.",
     .sets = "latency_ms=200; the same load in sync and sync-blocking mode",
     .expected_s = 14,
     .cases = {{.label = "",
                .faults = "latency_ms=200",
                .modes = SYNC | BLOCKING,
                .modes_forced = SYNC | BLOCKING}},
     .cases_count = 1},
    {.name = "late-success",
     .claim = "Only the bank's truth settles an unknown: the reconciler asks and the late webhook "
              "is a mere duplicate; a deadline checked where the money moves makes giving up "
              "safe.",
     .sets = "case 1: lost_response_rate=1 webhook_delay_ms=2500; case 2: latency_ms=9500 (past "
             "both deadlines)",
     .expected_s = 30,
     .cases =
         {{.label = "answer lost, webhook late",
           .faults = "lost_response_rate=1 webhook_delay_ms=2500",
           .modes = BOTH},
          {.label = "past its deadline", .faults = "latency_ms=9500", .modes = BOTH, .ops_max = 8}},
     .cases_count = 2},
    {.name = "poll-vs-ws",
     .claim = "Polling costs requests and bytes and still learns late; a WebSocket push arrives "
              "milliseconds after the commit.",
     .sets = "latency_ms=150; the same async top-ups learned by --wait poll:100 and by "
             "WebSocket push",
     .expected_s = 10,
     .cases = {{.label = "",
                .faults = "latency_ms=150",
                .modes = ASYNC,
                .modes_forced = ASYNC,
                .waits_forced = "poll:100,ws"}},
     .cases_count = 1},
    {.name = "unsafe-no-dedupe",
     .claim = "Break it: without the webhook-id check and the state guard, a duplicated webhook "
              "credits a top-up twice, and verify catches the money made.",
     .sets = "wallet --unsafe-no-dedupe; webhook_duplicate_rate=1",
     .expected_s = 10,
     .cases = {{.label = "",
                .faults = "webhook_duplicate_rate=1",
                .wallet_args = "--unsafe-no-dedupe",
                .modes = BOTH,
                .breach_expected = 5}},
     .cases_count = 1},
    {.name = "unsafe-timeout-is-failure",
     .claim = "Break it: treating a timeout as a failure makes the wallet say 'failed' where the "
              "bank moved the money; wallet and bank disagree.",
     .sets = "wallet --unsafe-timeout-is-failure; lost_response_rate=0.5 webhook_drop_rate=1",
     .expected_s = 8,
     .cases = {{.label = "",
                .faults = "lost_response_rate=0.5 webhook_drop_rate=1",
                .wallet_args = "--unsafe-timeout-is-failure",
                .modes = SYNC,
                .breach_expected = 4}},
     .cases_count = 1},
    {.name = "unsafe-ignore-expiry",
     .claim = "Break it: a bank that executes past the deadline turns the wallet's safe give-up "
              "into a lie: a success arrives after the wallet said failed.",
     .sets = "bank --unsafe-ignore-expiry; latency_ms=4500 (past the 3 s sync deadline)",
     .expected_s = 12,
     .cases = {{.label = "",
                .faults = "latency_ms=4500",
                .bank_args = "--unsafe-ignore-expiry",
                .modes = SYNC,
                .ops_max = 8,
                .breach_expected = 4}},
     .cases_count = 1},
};

const struct lab_scenario *lab_scenarios(size_t *count_out)
{
    *count_out = sizeof scenarios / sizeof scenarios[0];
    return scenarios;
}

const struct lab_scenario *lab_scenario_find(const char *name)
{
    for (size_t i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++) {
        assert(scenarios[i].cases_count >= 1 && scenarios[i].cases_count <= LAB_CASES_MAX);
        if (strcmp(scenarios[i].name, name) == 0)
            return &scenarios[i];
    }
    return NULL;
}

const char *lab_mode_name(enum lab_mode m)
{
    switch (m) {
    case LAB_MODE_SYNC:
        return "sync";
    case LAB_MODE_ASYNC:
        return "async";
    case LAB_MODE_SYNC_BLOCKING:
        return "sync-blocking";
    case LAB_MODES_COUNT:
        break;
    }
    return "?";
}
