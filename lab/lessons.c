/* lessons.c owns the fixed teaching prose of the report: per scenario, what its fault means
 * and why sync and async coupling differ under it.
 * Must not: say what happened in a run — no outcome, count or latency is claimed here; the
 * report's measured sentences come from narrate.c, conditioned on the figures.
 * Invariant: every name is one of the scenario table's (lab_scenario_find finds it). */
#include "lessons.h"

#include <stddef.h>
#include <string.h>

#include "pl.h"

static const struct {
    const char *scenario;
    const char *text;
} lessons[] = {
    {"baseline",
     "Nothing is wrong here, so this is the yardstick for every other scenario. A sync client "
     "pays for a round trip to the bank inside its own request. An async client pays only for "
     "the wallet writing the request down, then learns the outcome when the bank's signed "
     "webhook arrives and the wallet pushes it over the WebSocket."},
    {"bank-slow",
     "The bank is slow but still answers before the wallet's bank timeout. In sync mode the "
     "wallet holds each client's request open until the bank answers, so the bank's latency "
     "becomes the client's latency. In async mode the wallet has already answered 202; the "
     "outbox and the webhook do the waiting, and the client's wait moves to the moment the "
     "outcome arrives."},
    {"bank-flaky",
     "A 500 from the bank says nothing about the money: for all the wallet knows, the bank may "
     "have acted. A sync wallet cannot retry inside the client's request, so it answers unknown "
     "and leaves the transaction to the reconciler, which asks the bank. An async wallet's "
     "outbox resends the same request under the same Idempotency-Key, which the bank executes "
     "at most once."},
    {"bank-down",
     "With the bank process stopped, connections to it are refused, and a refused fresh "
     "connection proves the request was never sent. So a sync wallet can answer failed (503) at "
     "once, with no doubt left to resolve. An async wallet accepts the request anyway, keeps it "
     "in its outbox and retries with backoff; once the bank is back the outbox delivers it and "
     "the webhook brings the outcome."},
    {"lost-response",
     "The bank moves the money and then its answer is lost on the way back. To the wallet this "
     "looks exactly like a slow bank: after its bank timeout it cannot know whether the money "
     "moved, so a sync client is told unknown. Two things can settle such a transaction: the "
     "bank's webhook, which still reports the real outcome, and, when webhooks are dropped "
     "too, the reconciler asking the bank for the payment by its reference. An async client "
     "never waited for that answer in the first place."},
    {"webhook-loss",
     "Most webhook delivery attempts are dropped. The bank retries each delivery with backoff, "
     "so a webhook usually gets through in the end; when the retries have not got through by "
     "the time the wallet's pending grace is over, the reconciler asks the bank instead. Sync "
     "mode hardly depends on webhooks: the answer itself settles the transaction."},
    {"webhook-dupes",
     "Every webhook is delivered twice, at the same time. The wallet remembers the id of every "
     "webhook it has applied, and its state machine lets a transaction leave pending or "
     "unknown only once, so the second copy must change nothing: it is counted as a "
     "duplicate."},
    {"webhook-reorder",
     "Each webhook attempt is held back for a random time, so a payment's 'processing' and "
     "'succeeded' webhooks can arrive in either order. The state machine accepts only moves "
     "out of pending or unknown, so a late 'processing' after 'succeeded' changes nothing."},
    {"forged-webhooks",
     "A webhook URL is public: anybody can post to it. The gateway checks each webhook's "
     "signature over its id, timestamp and body with the shared secret, and refuses a "
     "timestamp outside its window, so a forged, tampered or replayed webhook is turned away "
     "before it can reach the ledger."},
    {"wallet-crash",
     "The wallet is killed with SIGKILL, with no chance to clean up, and started again. "
     "Everything it accepted is in its database and every bank call it still owes is in its "
     "outbox, so the restarted wallet carries on from there. A client that got no answer "
     "resends with the same Idempotency-Key, which returns the original transaction instead "
     "of making a second one."},
    {"gateway-crash",
     "One of the two gateways is killed and comes back a second later. Gateways keep no "
     "state: the WebSocket watchers reconnect to the other gateway and resume each user's "
     "stream from the last seq they saw, and the bank's webhook deliveries fail over to the "
     "other gateway too."},
    {"slow-subscriber",
     "A few WebSocket clients subscribe to every user and then never read. A gateway that "
     "waited for them would fill its memory and delay everyone else, so it caps each "
     "connection's queue and drops a client that falls that far behind."},
    {"blocking-client",
     "In sync-blocking mode the wallet makes its bank call with curl_easy_perform on the event "
     "loop, the labelled anti-pattern: while one request waits for the slow bank, the loop "
     "serves nobody, so unrelated users' P2P transfers, which never touch the bank, queue "
     "behind it. Plain sync mode makes the same call through libcurl multi and keeps serving "
     "while it waits."},
    {"late-success",
     "In the first case the bank moves the money, but its answers are lost and its webhooks "
     "are held back past the wallet's pending grace. The reconciler asks the bank, which knows "
     "the truth, and settles each transaction from it; when the held webhook finally arrives "
     "the transaction is already final and the webhook is only a duplicate. In the second "
     "case the bank is so slow that payments reach the point of moving money after their "
     "deadline; the bank checks the deadline right there and expires them without moving "
     "money, which is what makes it safe for the wallet to give up."},
    {"poll-vs-ws",
     "The same async top-ups are learned two ways. A polling client asks GET "
     "/v1/transactions/ID every interval until the answer is final: every ask costs a request "
     "and its bytes, and the outcome is seen up to one interval late. A WebSocket client is "
     "sent the event when the wallet commits it, through the bus and a gateway."},
    {"unsafe-no-dedupe",
     "A break-it case. The wallet runs with --unsafe-no-dedupe, which turns off both the "
     "webhook-id check and the state guard, and every webhook is delivered twice. Each copy "
     "can then post the top-up's credit again, making money the bank never sent; invariant 5 "
     "(nothing credited twice) is there to catch that."},
    {"unsafe-timeout-is-failure",
     "A break-it case. The wallet treats a timeout as a failure instead of unknown. Half of "
     "the bank's answers are lost after it has moved the money and webhooks are dropped, so "
     "nothing corrects the wallet: it says failed where the bank says succeeded, which "
     "invariant 4 (wallet and bank agree) is there to catch."},
    {"unsafe-ignore-expiry",
     "A break-it case. The wallet gives up on a payment whose deadline has passed, counting on "
     "the bank to refuse it from then on. This bank runs with --unsafe-ignore-expiry and "
     "executes such payments anyway, so a success can follow the wallet's failed, which "
     "invariant 4 (wallet and bank agree) is there to catch."},
};

const char *lesson_for(const char *scenario)
{
    for (size_t i = 0; i < PL_ARRAY_LEN(lessons); i++) {
        if (strcmp(lessons[i].scenario, scenario) == 0)
            return lessons[i].text;
    }
    return NULL;
}
