-- bank.db, migration 2: the webhook outbox (docs/api.md, docs/decisions.md).
-- An event is written in the same transaction as the change it announces (the insert of an
-- async payment: payment.processing; the balance change: payment.succeeded / .failed), so
-- an event exists if and only if its change committed. A delivery is one attempt sequence of
-- one event to the payment's notify_url; POST /admin/webhooks/redeliver adds another
-- delivery of the same event (same webhook-id).

CREATE TABLE webhook_events (
    id         TEXT PRIMARY KEY,                   -- evt_..., the webhook-id header
    payment_id TEXT NOT NULL REFERENCES payments (id),
    type       TEXT NOT NULL CHECK (type IN ('payment.processing', 'payment.succeeded',
                                             'payment.failed')),
    body       TEXT NOT NULL,                      -- the JSON body, byte for byte as sent
    created_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX webhook_events_payment ON webhook_events (payment_id, created_ms);

-- leased = 1 while an attempt is under way (the sender holds it in memory). At startup every
-- lease is dropped and its delivery is due at once: a restart resumes what was in flight
-- (at least once). attempts counts attempts started, so a crash uses one up.
CREATE TABLE webhook_deliveries (
    id                 INTEGER PRIMARY KEY,
    event_id           TEXT NOT NULL REFERENCES webhook_events (id),
    status             TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts           INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at_ms INTEGER NOT NULL,
    leased             INTEGER NOT NULL DEFAULT 0,
    last_error         TEXT,                       -- why the last attempt failed
    last_status        INTEGER,                    -- HTTP status of the last answer, if any
    last_url           TEXT,                       -- where the last attempt went
    created_ms         INTEGER NOT NULL,
    updated_ms         INTEGER NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at_ms)
    WHERE status = 'pending' AND leased = 0;
CREATE INDEX webhook_deliveries_status ON webhook_deliveries (status, id);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);

-- For people with sqlite3: every delivery with its event and payment.
CREATE VIEW v_webhooks AS
    SELECT d.id AS delivery, e.id AS event, e.type, p.reference, d.status, d.attempts,
           d.next_attempt_at_ms, d.last_status, d.last_error, d.last_url
    FROM webhook_deliveries d
    JOIN webhook_events e ON e.id = d.event_id
    JOIN payments p ON p.id = e.payment_id
    ORDER BY d.id;
