//! Content generation: starting a job reserves its estimated cost through the credit spend path;
//! the scheduler ends it when the engine says, posting the actual cost (or voiding on failure
//! or cancel) in the same transaction as the job's end and its events.

use serde_json::{Value, json};

use super::credits::{SpendRequest, ensure_can_spend};
use super::tenancy::project_in;
use super::{Caller, Stamp, Strata};
use crate::content::{
    Container, ContainerAssets, ContainerStatus, Job, JobError, JobResult, JobSpec, JobStatus, JobView, Outcome, StartedJob,
};
use crate::credits::estimated_cost;
use crate::error::{CoreError, Result};
use crate::event::EventType;
use crate::event_data::{ContentGeneratedData, JobEventData};
use crate::id::{ContainerId, JobId, OrgId, ProjectId};
use crate::idempotency::IdemClaim;
use crate::project::ProjectStatus;
use crate::scope::Scope;
use crate::store::{Owner, Tx};
use crate::wire::ContainerView;

/// A job the scheduler ends, named by its org and its id (a job's id is unique only per org).
#[derive(Clone, Copy)]
struct DueJob(OrgId, JobId);

impl std::fmt::Display for DueJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} of {}", self.1, self.0)
    }
}

#[derive(Debug, Clone)]
pub struct NewGeneration {
    pub id: Option<JobId>,
    pub format: String,
    pub variant_count: i64,
    pub brief: Value,
}

impl Strata {
    /// `POST /v1/projects/:projectId/content`: 202 with the job envelope.
    pub async fn start_generation(
        &self,
        caller: &Caller,
        project: ProjectId,
        cmd: NewGeneration,
        idem: Option<&IdemClaim>,
    ) -> Result<StartedJob> {
        caller.require(Scope::ContentWrite).await?;
        caller.ensure_writable()?;
        let mut tx = self.write_as(caller).await?;
        let p = project_in(tx.as_mut(), caller.org_id(), project).await?;
        if p.status == ProjectStatus::Archived {
            return Err(CoreError::conflict("the project is archived; reactivate it to generate content"));
        }
        ensure_can_spend(&caller.org)?;
        let now = self.now();
        if let Some(cap) = self.config.tier_limits.get(caller.key.tier).concurrent_jobs.map(|c| c as usize) {
            // Lock the key's row so two concurrent starts cannot both see room for one more.
            tx.key(Owner::Org(caller.key.org_id), caller.key.id).await?;
            let ends = tx.running_job_ends_for_key(caller.key.id).await?;
            if ends.len() >= cap {
                let soonest = ends.iter().min().copied().unwrap_or(now);
                let wait_ms = u64::try_from((soonest.millis() - now.millis()).max(1000)).unwrap_or(1000);
                let retry_after_secs = wait_ms.div_ceil(1000);
                crate::telemetry::rate_limited("concurrent-jobs");
                return Err(CoreError::RateLimited {
                    message: format!("this key already has {cap} jobs running, its tier's limit"),
                    retry_after_secs,
                    // The headers show the concurrent-jobs cap, free again when the soonest ends.
                    standing: crate::ratelimit::RateInfo::refused(
                        crate::ratelimit::EndpointClass::LongRunning,
                        u32::try_from(cap).unwrap_or(u32::MAX),
                        retry_after_secs,
                    ),
                });
            }
        }
        let id = cmd.id.unwrap_or_else(|| JobId::at(now.millis()));
        // A client may choose the id, so it is unique per org: another org's use of it is
        // invisible here, as it is on every read (CONTRACT §2).
        if tx.job(caller.org_id(), id).await?.is_some() {
            return Err(CoreError::conflict_with("a job with this id already exists", json!({ "field": "id" })));
        }
        let per_variant = estimated_cost(&cmd.format).ok_or_else(|| CoreError::validation("format", "is not a known format"))?;
        let test_mode = caller.key.env == crate::apikey::Env::Test;
        let reserved = if test_mode { 0 } else { per_variant * cmd.variant_count };
        let (duration, outcome) =
            self.engine.plan(&JobSpec { format: &cmd.format, variant_count: cmd.variant_count, brief: &cmd.brief, reserved });
        let container_ids: Vec<ContainerId> = (0..cmd.variant_count).map(|_| ContainerId::at(now.millis())).collect();
        let reservation_id = if test_mode {
            None
        } else {
            let req = SpendRequest {
                org: caller.org_id(),
                project: Some(p.id),
                cost: reserved,
                format: cmd.format.clone(),
                container_id: container_ids.first().map(ToString::to_string),
                job_id: Some(id.to_string()),
                // The reservation must outlive the job, or expiry would release it unpaid.
                hold_ms: duration,
            };
            Some(self.reserve_in(tx.as_mut(), &req).await?)
        };
        let job = Job {
            id,
            org_id: caller.org_id(),
            project_id: p.id,
            api_key_id: caller.key.id,
            status: JobStatus::Running,
            format: cmd.format.clone(),
            variant_count: cmd.variant_count,
            brief: cmd.brief,
            reservation_id,
            reserved,
            outcome,
            test_mode,
            container_ids: container_ids.clone(),
            started_at: now,
            finish_at: now.plus_ms(duration),
            finished_at: None,
            error: None,
        };
        tx.insert_job(&job).await?;
        for cid in &container_ids {
            let c = Container {
                id: *cid,
                job_id: id,
                org_id: caller.org_id(),
                project_id: p.id,
                format: cmd.format.clone(),
                status: ContainerStatus::Processing,
                assets: json!([]),
                created_at: now,
            };
            tx.insert_container(&c).await?;
        }
        let mut stamp = caller.stamp();
        stamp.project_id = Some(p.id);
        let detail = json!({ "jobId": id, "format": job.format, "variantCount": job.variant_count, "reservedCredits": reserved, "testMode": test_mode });
        tx.insert_audit(&self.audit_entry(stamp, "content.generation_started", detail)).await?;
        let envelope = StartedJob {
            job_id: id,
            kind: "content_generate",
            status: JobStatus::Running.as_str(),
            stage: job.stage(now),
            project_id: p.id,
            location_url: format!("/v1/jobs/{id}"),
            container_ids,
            started_at: now,
        };
        self.finish(tx, idem, envelope).await
    }

    fn job_view(&self, job: &Job, containers: &[Container]) -> JobView {
        let now = self.now();
        let result = (job.status == JobStatus::Completed).then(|| {
            let assets = containers.iter().map(|c| ContainerAssets { container_id: c.id, assets: c.assets.clone() }).collect();
            JobResult { container_ids: job.container_ids.clone(), assets }
        });
        let error = match job.status {
            JobStatus::Failed => Some(JobError { code: "GENERATION_FAILED", message: job.error.clone() }),
            _ => None,
        };
        JobView {
            job_id: job.id,
            kind: "content_generate",
            status: job.status.as_str(),
            stage: job.stage(now),
            progress: (job.progress(now) * 100.0).round() / 100.0,
            project_id: job.project_id,
            container_ids: job.container_ids.clone(),
            location_url: format!("/v1/jobs/{}", job.id),
            started_at: job.started_at,
            finished_at: job.finished_at,
            result,
            error,
        }
    }

    /// `GET /v1/jobs/:jobId`.
    #[tracing::instrument(level = "debug", name = "service.get_job", skip_all)]
    pub async fn get_job(&self, caller: &Caller, id: JobId) -> Result<JobView> {
        caller.require(Scope::JobsRead).await?;
        let mut tx = self.store.read().await?;
        let job = tx.job(caller.org_id(), id).await?.ok_or(CoreError::not_found("job"))?;
        let containers = tx.containers_of_job(job.org_id, id).await?;
        tx.commit().await?;
        Ok(self.job_view(&job, &containers))
    }

    /// `POST /v1/jobs/:jobId/cancel`: releases the reservation. A finished job is 409; a
    /// canceled one answers its state again.
    #[tracing::instrument(level = "debug", name = "service.cancel_job", skip_all)]
    pub async fn cancel_job(&self, caller: &Caller, id: JobId, idem: Option<&IdemClaim>) -> Result<JobView> {
        caller.require(Scope::ContentWrite).await?;
        caller.ensure_writable()?;
        let mut tx = self.write_as(caller).await?;
        let mut job = tx.job(caller.org_id(), id).await?.ok_or(CoreError::not_found("job"))?;
        match job.status {
            JobStatus::Running => {
                let mut stamp = caller.stamp();
                stamp.project_id = Some(job.project_id);
                self.end_job(tx.as_mut(), &mut job, JobStatus::Canceled, stamp).await?;
            }
            JobStatus::Canceled => {}
            done => {
                return Err(CoreError::conflict_with(
                    format!("the job is {}; only a running job can be canceled", done.as_str()),
                    json!({ "status": done.as_str() }),
                ));
            }
        }
        let containers = tx.containers_of_job(job.org_id, id).await?;
        let view = self.job_view(&job, &containers);
        self.finish(tx, idem, view).await
    }

    /// `GET /v1/projects/:projectId/content/:containerId`.
    #[tracing::instrument(level = "debug", name = "service.get_container", skip_all)]
    pub async fn get_container(&self, caller: &Caller, project: ProjectId, id: ContainerId) -> Result<ContainerView> {
        caller.require(Scope::ContentRead).await?;
        let mut tx = self.store.read().await?;
        project_in(tx.as_mut(), caller.org_id(), project).await?;
        let c = tx
            .container(Owner::Org(caller.org_id()), id)
            .await?
            .filter(|c| c.project_id == project)
            .ok_or(CoreError::not_found("container"))?;
        tx.commit().await?;
        Ok(ContainerView::from(&c))
    }

    /// Ends a running job as completed, failed or canceled: settles its reservation, updates its
    /// containers and appends its events, all in the caller's transaction.
    async fn end_job(&self, tx: &mut dyn Tx, job: &mut Job, end: JobStatus, stamp: Stamp) -> Result<()> {
        let now = self.now();
        let (container_status, consumed) = match (end, &job.outcome) {
            (JobStatus::Completed, Outcome::Complete { actual_cost }) => (ContainerStatus::Completed, Some(*actual_cost)),
            (JobStatus::Failed, _) => (ContainerStatus::Failed, None),
            _ => (ContainerStatus::Canceled, None),
        };
        if let Some(r) = job.reservation_id {
            self.settle_in(tx, r, consumed).await?;
        }
        let mut containers = tx.containers_of_job(job.org_id, job.id).await?;
        for (i, c) in containers.iter_mut().enumerate() {
            c.status = container_status;
            if end == JobStatus::Completed {
                c.assets = self.engine.assets(c.id, &c.format, i);
            }
            tx.update_container(c).await?;
        }
        job.status = end;
        job.finished_at = Some(now);
        if let (JobStatus::Failed, Outcome::Fail { reason }) = (end, &job.outcome) {
            job.error = Some(reason.clone());
        }
        tx.update_job(job).await?;
        let view = self.job_view(job, &containers);
        let event_type = match end {
            JobStatus::Completed => EventType::JobCompleted,
            JobStatus::Failed => EventType::JobFailed,
            _ => EventType::JobCanceled,
        };
        tx.insert_event(&self.event(event_type, job.org_id, Some(job.project_id), JobEventData { job: view })).await?;
        if end == JobStatus::Completed {
            for c in &containers {
                let data = ContentGeneratedData {
                    container_id: c.id,
                    job_id: job.id,
                    project_id: job.project_id,
                    format: c.format.clone(),
                    assets: c.assets.clone(),
                };
                tx.insert_event(&self.event(EventType::ContentGenerated, job.org_id, Some(job.project_id), data)).await?;
            }
        }
        let what = format!("job.{}", end.as_str());
        tx.insert_audit(&self.audit_entry(stamp, &what, json!({ "jobId": job.id, "consumedCredits": consumed.unwrap_or(0) }))).await
    }

    /// The scheduler's step: ends every running job whose time has come (up to 500 a step).
    /// A job that cannot be ended is logged and left for the next step; it never blocks others.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn advance_jobs(&self) -> Result<usize> {
        let mut tx = self.store.read().await?;
        let due = tx.due_jobs(self.now(), 500).await?;
        tx.commit().await?;
        let due = due.into_iter().map(|(org, id)| DueJob(org, id)).collect();
        Ok(super::each_item(due, "end a job", |DueJob(org, id)| self.advance_job(org, id)).await)
    }

    /// Ends `org`'s job `id` if it is still running and due. A job's id is unique only within
    /// its org, so the scheduler always names both. Returns whether this step ended it (not when another node's step has it, or had it).
    async fn advance_job(&self, org: OrgId, id: JobId) -> Result<bool> {
        let mut tx = self.store.write().await?;
        if !tx.try_take_item(&format!("job:{org}:{id}")).await? {
            return Ok(false);
        }
        let Some(mut job) = tx.job(org, id).await?.filter(|j| j.status == JobStatus::Running && j.finish_at <= self.now()) else {
            return Ok(false);
        };
        let end = match job.outcome {
            Outcome::Complete { .. } => JobStatus::Completed,
            Outcome::Fail { .. } => JobStatus::Failed,
        };
        let mut stamp = Stamp::system().in_org(job.org_id);
        stamp.project_id = Some(job.project_id);
        self.end_job(tx.as_mut(), &mut job, end, stamp).await?;
        tx.commit().await?;
        Ok(true)
    }
}
