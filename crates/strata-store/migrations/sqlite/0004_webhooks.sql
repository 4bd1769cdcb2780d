-- Webhooks: endpoints with sealed signing secrets, deliveries, and the outbox mark on events.

ALTER TABLE events ADD COLUMN dispatched INTEGER NOT NULL DEFAULT 0;
CREATE INDEX events_undispatched ON events (dispatched, seq);

CREATE TABLE webhook_endpoints (
    seq                   INTEGER PRIMARY KEY AUTOINCREMENT,
    id                    TEXT NOT NULL UNIQUE,
    org_id                TEXT NOT NULL REFERENCES organizations(id),
    project_id            TEXT,
    url                   TEXT NOT NULL,
    description           TEXT,
    status                TEXT NOT NULL CHECK (status IN ('active', 'paused', 'auto_paused')),
    events                TEXT NOT NULL,
    scope                 TEXT NOT NULL CHECK (scope IN ('own', 'all_children')),
    metadata              TEXT NOT NULL DEFAULT '{}',
    secret_sealed         TEXT NOT NULL,
    previous_secret       TEXT,
    previous_expires_at   INTEGER,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    last_success_at       INTEGER,
    last_failure_at       INTEGER,
    consecutive_failures  INTEGER NOT NULL DEFAULT 0,
    -- Only events after the endpoint's creation reach it.
    start_seq             INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX webhook_endpoints_by_org ON webhook_endpoints (org_id, seq);

CREATE TABLE webhook_deliveries (
    seq                  INTEGER PRIMARY KEY AUTOINCREMENT,
    id                   TEXT NOT NULL UNIQUE,
    endpoint_id          TEXT NOT NULL,
    event_org_id         TEXT NOT NULL,
    event_id             TEXT NOT NULL,
    event_type           TEXT NOT NULL,
    body                 TEXT NOT NULL,
    status               TEXT NOT NULL CHECK (status IN ('pending', 'delivering', 'delivered', 'failed', 'abandoned')),
    attempts             INTEGER NOT NULL DEFAULT 0,
    next_retry_at        INTEGER,
    delivered_at         INTEGER,
    abandoned_at         INTEGER,
    last_response_status INTEGER,
    last_response_at     INTEGER,
    last_error           TEXT,
    replay_of            TEXT,
    created_at           INTEGER NOT NULL
);
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, seq);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_retry_at);
