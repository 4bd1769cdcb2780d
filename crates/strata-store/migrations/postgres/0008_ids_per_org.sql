-- A project's id and a job's id may be chosen by the client, so they are unique per
-- organization, not across tenants: another org's use of an id must be indistinguishable from
-- no use at all, on writes as on reads. Each is unique with its org, a job names its project by
-- (org, id), and the indexes that find a project's jobs, a job's containers and a project's
-- posts lead with the org. The reference follows a project that a migration moves into a child
-- (ON UPDATE CASCADE), so its jobs never point at an org the project has left.

-- compat: upgrade to this migration with a stop, not one node at a time (docs/deploy.md): the
-- previous release updates a project or a job by its id alone, and once a node of this release
-- accepts an id another org uses, that id names two rows.
ALTER TABLE jobs DROP CONSTRAINT jobs_project_id_fkey;
ALTER TABLE jobs DROP CONSTRAINT jobs_id_key;
ALTER TABLE projects DROP CONSTRAINT projects_id_key;
ALTER TABLE projects ADD CONSTRAINT projects_org_id_id_key UNIQUE (org_id, id);
ALTER TABLE jobs ADD CONSTRAINT jobs_org_id_id_key UNIQUE (org_id, id);
ALTER TABLE jobs ADD CONSTRAINT jobs_project_fkey FOREIGN KEY (org_id, project_id) REFERENCES projects (org_id, id) ON UPDATE CASCADE;

-- compat: the replaced indexes serve the same reads, led by the org.
DROP INDEX jobs_by_project;
CREATE INDEX jobs_by_project ON jobs (org_id, project_id, status);
DROP INDEX containers_by_job;
CREATE INDEX containers_by_job ON containers (org_id, job_id);
DROP INDEX scheduled_posts_by_project;
CREATE INDEX scheduled_posts_by_project ON scheduled_posts (org_id, project_id, seq);
