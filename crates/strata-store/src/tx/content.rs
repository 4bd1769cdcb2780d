//! Projects, content jobs with their containers, and scheduled posts (`ProjectRows`,
//! `JobRows`, `PostRows`).

use async_trait::async_trait;
use strata_core::clock::Timestamp;
use strata_core::content::{Container, Job, Outcome};
use strata_core::cursor::PageRequest;
use strata_core::error::Result;
use strata_core::id::{ApiKeyId, ContainerId, JobId, OrgId, PostId, ProjectId};
use strata_core::post::ScheduledPost;
use strata_core::project::{Project, ProjectFilter};
use strata_core::store::{JobRows, Owner, PostRows, ProjectRows};

use crate::query::Q;
use crate::rows::{self, CONTAINER_COLUMNS, JOB_COLUMNS, POST_COLUMNS, PROJECT_COLUMNS};

use super::{SqlTx, bool_int, ts};
use crate::query::page;

/// Binds every column of a job, in `JOB_COLUMNS` order.
fn job_args(q: Q, j: &Job) -> Q {
    let (planned_cost, fail_reason) = match &j.outcome {
        Outcome::Complete { actual_cost } => (Some(*actual_cost), None),
        Outcome::Fail { reason } => (None, Some(reason.clone())),
    };
    let ids: Vec<String> = j.container_ids.iter().map(ToString::to_string).collect();
    q.str(&j.id.to_string())
        .str(&j.org_id.uuid_string())
        .str(&j.project_id.uuid_string())
        .str(&j.api_key_id.uuid_string())
        .str(j.status.as_str())
        .str(&j.format)
        .int(j.variant_count)
        .str(&j.brief.to_string())
        .opt_str(j.reservation_id.map(|r| r.uuid_string()))
        .int(j.reserved)
        .opt_int(planned_cost)
        .opt_str(fail_reason)
        .int(bool_int(j.test_mode))
        .str(&serde_json::Value::from(ids).to_string())
        .int(j.started_at.millis())
        .int(j.finish_at.millis())
        .opt_int(ts(j.finished_at))
        .opt_str(j.error.clone())
}

#[async_trait]
impl ProjectRows for SqlTx {
    async fn insert_project(&mut self, p: &Project) -> Result<()> {
        Q::new(&format!(
            "INSERT INTO projects ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            &PROJECT_COLUMNS["seq, ".len()..]
        ))
        .str(&p.id.uuid_string())
        .str(&p.org_id.uuid_string())
        .str(&p.name)
        .str(p.status.as_str())
        .opt_str(p.customer_external_id.clone())
        .str(&p.timezone)
        .str(&p.primary_language)
        .opt_str(p.owner_email.clone())
        .str(&p.metadata.to_string())
        .int(p.created_at.millis())
        .int(p.updated_at.millis())
        .opt_int(ts(p.archived_at))
        .execute(&mut self.conn)
        .await
        .map(|_| ())
    }

    async fn update_project(&mut self, p: &Project) -> Result<()> {
        Q::new(
            "UPDATE projects SET org_id = $2, name = $3, status = $4, customer_external_id = $5, timezone = $6, primary_language = $7, \
             owner_email = $8, metadata = $9, updated_at = $10, archived_at = $11 WHERE seq = $1",
        )
        .int(p.seq)
        .str(&p.org_id.uuid_string())
        .str(&p.name)
        .str(p.status.as_str())
        .opt_str(p.customer_external_id.clone())
        .str(&p.timezone)
        .str(&p.primary_language)
        .opt_str(p.owner_email.clone())
        .str(&p.metadata.to_string())
        .int(p.updated_at.millis())
        .opt_int(ts(p.archived_at))
        .execute(&mut self.conn)
        .await
        .map(|_| ())
    }

    async fn project(&mut self, org: OrgId, id: ProjectId) -> Result<Option<Project>> {
        self.owned(PROJECT_COLUMNS, "projects", &id.uuid_string(), "org_id", Owner::Org(org), rows::project).await
    }

    async fn project_by_external_id(&mut self, org: OrgId, external_id: &str) -> Result<Option<Project>> {
        let sql = format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE org_id = $1 AND customer_external_id = $2");
        let row = Q::new(&sql).str(&org.uuid_string()).str(external_id).fetch_optional(&mut self.conn).await?;
        row.map(|r| rows::project(&r)).transpose()
    }

    async fn list_projects(&mut self, org: OrgId, f: &ProjectFilter, req: PageRequest) -> Result<Vec<Project>> {
        let mut q = Q::new(&format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE org_id = $1")).str(&org.uuid_string());
        q = q.and_any_of("status", f.statuses.iter().map(|s| s.as_str()));
        if let Some(e) = &f.customer_external_id {
            q = q.and_str(" AND customer_external_id = $?", e);
        }
        if let Some(term) = &f.search {
            // Escape LIKE's wildcards so the search is a plain substring match.
            let pattern = format!("%{}%", term.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
            q = q.and_str(" AND LOWER(name) LIKE $? ESCAPE '\\'", &pattern);
        }
        let rows = page(q, req).fetch_all(&mut self.conn).await?;
        rows.iter().map(rows::project).collect()
    }

    async fn count_projects(&mut self, org: OrgId) -> Result<i64> {
        let row =
            Q::new("SELECT COUNT(*) AS n FROM projects WHERE org_id = $1").str(&org.uuid_string()).fetch_optional(&mut self.conn).await?;
        Ok(row.map(|r| r.int("n")).transpose()?.unwrap_or(0))
    }

    async fn move_project_rows(&mut self, project: ProjectId, from: OrgId, to: OrgId) -> Result<()> {
        // The jobs have followed their project already (the reference cascades); this is a
        // no-op for them, kept so that every row of the project moves here whatever the schema.
        for table in ["jobs", "containers", "scheduled_posts"] {
            Q::new(&format!("UPDATE {table} SET org_id = $3 WHERE org_id = $2 AND project_id = $1"))
                .str(&project.uuid_string())
                .str(&from.uuid_string())
                .str(&to.uuid_string())
                .execute(&mut self.conn)
                .await?;
        }
        Ok(())
    }
}

#[async_trait]
impl JobRows for SqlTx {
    async fn insert_job(&mut self, j: &Job) -> Result<()> {
        let q = Q::new(&format!(
            "INSERT INTO jobs ({JOB_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
        ));
        job_args(q, j).execute(&mut self.conn).await.map(|_| ())
    }

    async fn update_job(&mut self, j: &Job) -> Result<()> {
        Q::new("UPDATE jobs SET status = $3, finished_at = $4, error = $5 WHERE id = $1 AND org_id = $2")
            .str(&j.id.to_string())
            .str(&j.org_id.uuid_string())
            .str(j.status.as_str())
            .opt_int(ts(j.finished_at))
            .opt_str(j.error.clone())
            .execute(&mut self.conn)
            .await
            .map(|_| ())
    }

    async fn job(&mut self, org: OrgId, id: JobId) -> Result<Option<Job>> {
        self.owned(JOB_COLUMNS, "jobs", &id.to_string(), "org_id", Owner::Org(org), rows::job).await
    }

    async fn due_jobs(&mut self, now: Timestamp, limit: u32) -> Result<Vec<(OrgId, JobId)>> {
        let rows = Q::new("SELECT org_id, id FROM jobs WHERE status = 'running' AND finish_at <= $1 ORDER BY finish_at LIMIT $2")
            .int(now.millis())
            .int(i64::from(limit))
            .fetch_all(&mut self.conn)
            .await?;
        rows.iter().map(|r| Ok((OrgId::from_stored(&r.text("org_id")?)?, JobId::from_stored(&r.text("id")?)?))).collect()
    }

    async fn running_job_ends_for_key(&mut self, key: ApiKeyId) -> Result<Vec<Timestamp>> {
        let rows = Q::new("SELECT finish_at FROM jobs WHERE api_key_id = $1 AND status = 'running'")
            .str(&key.uuid_string())
            .fetch_all(&mut self.conn)
            .await?;
        rows.iter().map(|r| r.int("finish_at").map(Timestamp)).collect()
    }

    async fn running_jobs_for_project(&mut self, org: OrgId, project: ProjectId) -> Result<i64> {
        let row = Q::new("SELECT COUNT(*) AS n FROM jobs WHERE org_id = $1 AND project_id = $2 AND status = 'running'")
            .str(&org.uuid_string())
            .str(&project.uuid_string())
            .fetch_optional(&mut self.conn)
            .await?;
        Ok(row.map(|r| r.int("n")).transpose()?.unwrap_or(0))
    }

    async fn insert_container(&mut self, c: &Container) -> Result<()> {
        Q::new(&format!("INSERT INTO containers ({CONTAINER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"))
            .str(&c.id.to_string())
            .str(&c.job_id.to_string())
            .str(&c.org_id.uuid_string())
            .str(&c.project_id.uuid_string())
            .str(&c.format)
            .str(c.status.as_str())
            .str(&c.assets.to_string())
            .int(c.created_at.millis())
            .execute(&mut self.conn)
            .await
            .map(|_| ())
    }

    async fn update_container(&mut self, c: &Container) -> Result<()> {
        Q::new("UPDATE containers SET status = $2, assets = $3 WHERE id = $1")
            .str(&c.id.to_string())
            .str(c.status.as_str())
            .str(&c.assets.to_string())
            .execute(&mut self.conn)
            .await
            .map(|_| ())
    }

    async fn container(&mut self, owner: Owner, id: ContainerId) -> Result<Option<Container>> {
        self.owned(CONTAINER_COLUMNS, "containers", &id.to_string(), "org_id", owner, rows::container).await
    }

    async fn containers_of_job(&mut self, org: OrgId, job: JobId) -> Result<Vec<Container>> {
        let rows = Q::new(&format!("SELECT {CONTAINER_COLUMNS} FROM containers WHERE org_id = $1 AND job_id = $2 ORDER BY seq"))
            .str(&org.uuid_string())
            .str(&job.to_string())
            .fetch_all(&mut self.conn)
            .await?;
        rows.iter().map(rows::container).collect()
    }
}

#[async_trait]
impl PostRows for SqlTx {
    async fn insert_post(&mut self, p: &ScheduledPost) -> Result<()> {
        Q::new(&format!(
            "INSERT INTO scheduled_posts ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            &POST_COLUMNS["seq, ".len()..]
        ))
        .str(&p.id.to_string())
        .str(&p.org_id.uuid_string())
        .str(&p.project_id.uuid_string())
        .str(&p.container_id.to_string())
        .str(&p.platform)
        .int(p.scheduled_for.millis())
        .str(p.status.as_str())
        .opt_int(ts(p.published_at))
        .opt_int(ts(p.canceled_at))
        .int(p.created_at.millis())
        .int(p.updated_at.millis())
        .execute(&mut self.conn)
        .await
        .map(|_| ())
    }

    async fn update_post(&mut self, p: &ScheduledPost) -> Result<()> {
        Q::new("UPDATE scheduled_posts SET status = $2, published_at = $3, canceled_at = $4, updated_at = $5 WHERE id = $1")
            .str(&p.id.to_string())
            .str(p.status.as_str())
            .opt_int(ts(p.published_at))
            .opt_int(ts(p.canceled_at))
            .int(p.updated_at.millis())
            .execute(&mut self.conn)
            .await
            .map(|_| ())
    }

    async fn post(&mut self, owner: Owner, id: PostId) -> Result<Option<ScheduledPost>> {
        self.owned(POST_COLUMNS, "scheduled_posts", &id.to_string(), "org_id", owner, rows::post).await
    }

    async fn list_posts(&mut self, org: OrgId, project: ProjectId, req: PageRequest) -> Result<Vec<ScheduledPost>> {
        let q = Q::new(&format!("SELECT {POST_COLUMNS} FROM scheduled_posts WHERE org_id = $1 AND project_id = $2"))
            .str(&org.uuid_string())
            .str(&project.uuid_string());
        let rows = page(q, req).fetch_all(&mut self.conn).await?;
        rows.iter().map(rows::post).collect()
    }

    async fn due_posts(&mut self, now: Timestamp, limit: u32) -> Result<Vec<(PostId, OrgId, ProjectId)>> {
        // Posts of a suspended or cut-off org wait; leaving them out keeps them from crowding
        // out everyone else's.
        let rows = Q::new(
            "SELECT p.id AS id, p.org_id AS org_id, p.project_id AS project_id FROM scheduled_posts p JOIN organizations o ON o.id = p.org_id \
             WHERE p.status = 'scheduled' AND p.scheduled_for <= $1 AND o.status <> 'suspended' AND o.access_revoked = 0 \
             ORDER BY p.scheduled_for LIMIT $2",
        )
        .int(now.millis())
        .int(i64::from(limit))
        .fetch_all(&mut self.conn)
        .await?;
        rows.iter()
            .map(|r| {
                let id = PostId::from_stored(&r.text("id")?)?;
                Ok((id, OrgId::from_stored(&r.text("org_id")?)?, ProjectId::from_stored(&r.text("project_id")?)?))
            })
            .collect()
    }

    async fn pending_posts(&mut self, org: OrgId, project: Option<ProjectId>) -> Result<Vec<ScheduledPost>> {
        let q = Q::new(&format!("SELECT {POST_COLUMNS} FROM scheduled_posts WHERE org_id = $1 AND status = 'scheduled'"))
            .str(&org.uuid_string());
        let q = match project {
            Some(p) => q.and_str(" AND project_id = $?", &p.uuid_string()),
            None => q,
        };
        let rows = q.push(" ORDER BY seq").fetch_all(&mut self.conn).await?;
        rows.iter().map(rows::post).collect()
    }
}
