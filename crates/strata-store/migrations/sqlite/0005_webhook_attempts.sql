-- Webhook delivery attempts (one row per HTTP attempt, kept with its delivery) and the indexes
-- the retention sweep and the replay/recover paths read through.

CREATE TABLE webhook_delivery_attempts (
    seq                   INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id           TEXT NOT NULL,
    attempted_at          INTEGER NOT NULL,
    duration_ms           INTEGER NOT NULL,
    response_status       INTEGER,
    error                 TEXT,
    response_body_excerpt TEXT
);
CREATE INDEX webhook_delivery_attempts_by_delivery ON webhook_delivery_attempts (delivery_id, seq);

-- Retention: whether an event still has a pending delivery, and old terminal deliveries.
CREATE INDEX webhook_deliveries_by_event ON webhook_deliveries (event_id);
CREATE INDEX webhook_deliveries_by_created ON webhook_deliveries (created_at);
CREATE INDEX events_by_created ON events (created_at);
