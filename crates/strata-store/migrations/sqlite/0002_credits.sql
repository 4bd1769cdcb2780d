-- Credits: one wallet per org with derived balances, the append-only double-entry transfers,
-- and the per-org ledger view partners read. CHECKs make a negative balance impossible even
-- if a rule were wrong.

CREATE TABLE wallets (
    org_id               TEXT PRIMARY KEY REFERENCES organizations(id),
    included_remaining   INTEGER NOT NULL DEFAULT 0 CHECK (included_remaining >= 0),
    prepaid_balance      INTEGER NOT NULL DEFAULT 0 CHECK (prepaid_balance >= 0),
    reserved             INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    used_this_period     INTEGER NOT NULL DEFAULT 0 CHECK (used_this_period >= 0),
    included_this_period INTEGER NOT NULL DEFAULT 0 CHECK (included_this_period >= 0),
    period_start         INTEGER NOT NULL,
    monthly_cap          INTEGER CHECK (monthly_cap >= 0),
    refill_threshold     INTEGER CHECK (refill_threshold >= 0),
    refill_amount        INTEGER CHECK (refill_amount > 0),
    updated_at           INTEGER NOT NULL,
    CHECK (included_remaining + prepaid_balance >= reserved)
);

CREATE TABLE transfers (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT NOT NULL UNIQUE,
    org_id         TEXT NOT NULL,
    debit_account  TEXT NOT NULL,
    credit_account TEXT NOT NULL,
    amount         INTEGER NOT NULL CHECK (amount > 0),
    kind           TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('pending', 'posted', 'voided')),
    pending_id     TEXT,
    expires_at     INTEGER,
    metadata       TEXT NOT NULL DEFAULT '{}',
    created_at     INTEGER NOT NULL,
    CHECK (debit_account <> credit_account)
);
CREATE INDEX transfers_by_org ON transfers (org_id, seq);
CREATE INDEX transfers_pending ON transfers (status, expires_at);

CREATE TABLE credit_events (
    seq                   INTEGER PRIMARY KEY AUTOINCREMENT,
    id                    TEXT NOT NULL UNIQUE,
    org_id                TEXT NOT NULL,
    project_id            TEXT,
    credits               INTEGER NOT NULL,
    event_type            TEXT NOT NULL,
    format                TEXT,
    container_id          TEXT,
    workflow_id           TEXT,
    balance_after_prepaid INTEGER NOT NULL,
    usage_after_period    INTEGER NOT NULL,
    metadata              TEXT NOT NULL DEFAULT '{}',
    created_at            INTEGER NOT NULL
);
CREATE INDEX credit_events_by_org ON credit_events (org_id, seq);

-- Every org existing before this migration gets an empty wallet; period 0 rolls over to the
-- current month on first use.
INSERT INTO wallets (org_id, period_start, updated_at)
SELECT id, 0, created_at FROM organizations;
