-- Projects, content-generation jobs with their containers, and scheduled posts.

CREATE TABLE projects (
    seq                  INTEGER PRIMARY KEY AUTOINCREMENT,
    id                   TEXT NOT NULL UNIQUE,
    org_id               TEXT NOT NULL REFERENCES organizations(id),
    name                 TEXT NOT NULL,
    status               TEXT NOT NULL CHECK (status IN ('active', 'archived')),
    customer_external_id TEXT,
    timezone             TEXT NOT NULL,
    primary_language     TEXT NOT NULL,
    owner_email          TEXT,
    metadata             TEXT NOT NULL DEFAULT '{}',
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL,
    archived_at          INTEGER
);
CREATE INDEX projects_by_org ON projects (org_id, seq);
CREATE UNIQUE INDEX projects_by_external_id ON projects (org_id, customer_external_id) WHERE customer_external_id IS NOT NULL;

CREATE TABLE jobs (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT NOT NULL UNIQUE,
    org_id         TEXT NOT NULL,
    project_id     TEXT NOT NULL REFERENCES projects(id),
    api_key_id     TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'canceled')),
    format         TEXT NOT NULL,
    variant_count  INTEGER NOT NULL,
    brief          TEXT NOT NULL DEFAULT '{}',
    reservation_id TEXT,
    reserved       INTEGER NOT NULL,
    planned_cost   INTEGER,
    fail_reason    TEXT,
    test_mode      INTEGER NOT NULL,
    container_ids  TEXT NOT NULL,
    started_at     INTEGER NOT NULL,
    finish_at      INTEGER NOT NULL,
    finished_at    INTEGER,
    error          TEXT
);
CREATE INDEX jobs_due ON jobs (status, finish_at);
CREATE INDEX jobs_by_key ON jobs (api_key_id, status);
CREATE INDEX jobs_by_project ON jobs (project_id, status);

CREATE TABLE containers (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    job_id     TEXT NOT NULL,
    org_id     TEXT NOT NULL,
    project_id TEXT NOT NULL,
    format     TEXT NOT NULL,
    status     TEXT NOT NULL,
    assets     TEXT NOT NULL DEFAULT '[]',
    created_at INTEGER NOT NULL
);
CREATE INDEX containers_by_job ON containers (job_id);

CREATE TABLE scheduled_posts (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,
    org_id        TEXT NOT NULL,
    project_id    TEXT NOT NULL,
    container_id  TEXT NOT NULL,
    platform      TEXT NOT NULL,
    scheduled_for INTEGER NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('scheduled', 'published', 'failed', 'canceled')),
    published_at  INTEGER,
    canceled_at   INTEGER,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX scheduled_posts_due ON scheduled_posts (status, scheduled_for);
CREATE INDEX scheduled_posts_by_project ON scheduled_posts (project_id, seq);
CREATE INDEX scheduled_posts_by_org ON scheduled_posts (org_id, status);
