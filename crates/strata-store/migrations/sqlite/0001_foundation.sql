-- Foundation: organizations, API keys, idempotency records, the audit log, the event log and
-- server settings. Times are milliseconds since the Unix epoch (UTC); flags are 0/1 integers;
-- `seq` orders rows for keyset pagination.

CREATE TABLE organizations (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    id                TEXT NOT NULL UNIQUE,
    parent_id         TEXT REFERENCES organizations(id),
    name              TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'archived')),
    metadata          TEXT NOT NULL DEFAULT '{}',
    billing_email     TEXT,
    access_revoked    INTEGER NOT NULL DEFAULT 0,
    archived_at       INTEGER,
    archive_reclaimed INTEGER,
    archive_revoked   INTEGER,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);
CREATE INDEX organizations_by_parent ON organizations (parent_id, seq);

CREATE TABLE api_keys (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,
    org_id        TEXT NOT NULL REFERENCES organizations(id),
    name          TEXT NOT NULL,
    env           TEXT NOT NULL CHECK (env IN ('live', 'test')),
    keyid         TEXT NOT NULL UNIQUE,
    secret_hash   TEXT NOT NULL,
    scopes        TEXT NOT NULL,
    tier          TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
    killed        INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER,
    rotated_at    INTEGER,
    revoked_at    INTEGER,
    grace_until   INTEGER,
    superseded_by TEXT
);
CREATE INDEX api_keys_by_org ON api_keys (org_id, seq);

CREATE TABLE idempotency_records (
    api_key_id  TEXT NOT NULL,
    idem_key    TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status      INTEGER,
    body        TEXT,
    created_at  INTEGER NOT NULL,
    lease_until INTEGER NOT NULL,
    PRIMARY KEY (api_key_id, idem_key)
);
CREATE INDEX idempotency_records_by_age ON idempotency_records (created_at);

CREATE TABLE audit_log (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    event_type  TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    request_id  TEXT,
    org_id      TEXT,
    project_id  TEXT,
    api_key_id  TEXT,
    actor       TEXT NOT NULL,
    data        TEXT NOT NULL
);
CREATE INDEX audit_log_by_org ON audit_log (org_id, seq);

CREATE TABLE events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    event_type TEXT NOT NULL,
    org_id     TEXT NOT NULL,
    project_id TEXT,
    data       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX events_by_org ON events (org_id, seq);

CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
