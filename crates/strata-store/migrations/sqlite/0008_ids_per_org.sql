-- A project's id and a job's id may be chosen by the client, so they are unique per
-- organization, not across tenants: another org's use of an id must be indistinguishable from
-- no use at all, on writes as on reads. Each is unique with its org, a job names its project by
-- (org, id), and the indexes that find a project's jobs, a job's containers and a project's
-- posts lead with the org. The reference follows a project that a migration moves into a child
-- (ON UPDATE CASCADE), so its jobs never point at an org the project has left.
--
-- SQLite cannot change a column's constraints in place: projects and jobs are rebuilt (new
-- table, copy, drop, rename, indexes again), inside the migration's transaction, with foreign
-- keys enforced. The new jobs table refers to the new projects table from the start, so every
-- copied job is checked against its project, no row ever refers to a dropped table, and the
-- renames carry the reference along. The AUTOINCREMENT counters (the list cursors' order) are
-- carried over as well.

CREATE TABLE projects_new (
    seq                  INTEGER PRIMARY KEY AUTOINCREMENT,
    id                   TEXT NOT NULL,
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
    archived_at          INTEGER,
    UNIQUE (org_id, id)
);
INSERT INTO projects_new (seq, id, org_id, name, status, customer_external_id, timezone, primary_language, owner_email,
                          metadata, created_at, updated_at, archived_at)
SELECT seq, id, org_id, name, status, customer_external_id, timezone, primary_language, owner_email,
       metadata, created_at, updated_at, archived_at
FROM projects;

CREATE TABLE jobs_new (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    id             TEXT NOT NULL,
    org_id         TEXT NOT NULL,
    project_id     TEXT NOT NULL,
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
    error          TEXT,
    UNIQUE (org_id, id),
    FOREIGN KEY (org_id, project_id) REFERENCES projects_new (org_id, id) ON UPDATE CASCADE
);
INSERT INTO jobs_new (seq, id, org_id, project_id, api_key_id, status, format, variant_count, brief, reservation_id, reserved,
                      planned_cost, fail_reason, test_mode, container_ids, started_at, finish_at, finished_at, error)
SELECT seq, id, org_id, project_id, api_key_id, status, format, variant_count, brief, reservation_id, reserved,
       planned_cost, fail_reason, test_mode, container_ids, started_at, finish_at, finished_at, error
FROM jobs;

DELETE FROM sqlite_sequence WHERE name IN ('projects_new', 'jobs_new');
INSERT INTO sqlite_sequence (name, seq) SELECT name || '_new', seq FROM sqlite_sequence WHERE name IN ('projects', 'jobs');

DROP TABLE jobs;
DROP TABLE projects;
ALTER TABLE projects_new RENAME TO projects;
ALTER TABLE jobs_new RENAME TO jobs;

CREATE INDEX projects_by_org ON projects (org_id, seq);
CREATE UNIQUE INDEX projects_by_external_id ON projects (org_id, customer_external_id) WHERE customer_external_id IS NOT NULL;
CREATE INDEX jobs_due ON jobs (status, finish_at);
CREATE INDEX jobs_by_key ON jobs (api_key_id, status);
CREATE INDEX jobs_by_project ON jobs (org_id, project_id, status);

DROP INDEX containers_by_job;
CREATE INDEX containers_by_job ON containers (org_id, job_id);
DROP INDEX scheduled_posts_by_project;
CREATE INDEX scheduled_posts_by_project ON scheduled_posts (org_id, project_id, seq);
