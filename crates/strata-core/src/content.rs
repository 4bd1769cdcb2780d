//! Content generation: jobs, their containers (one per variant), and the engine that runs them.
//! The built-in engine is deterministic: a job runs for a configured time and ends as its
//! inputs say, so the whole reserve → job → settle → events flow runs with no outside service.

use serde::Serialize;
use serde_json::{Value, json};

use crate::clock::Timestamp;
use crate::id::{ApiKeyId, ContainerId, JobId, OrgId, ProjectId, TxnId};

/// What `Job::stage` answers: where a running job is, or how it ended.
pub const STAGES: [&str; 7] = ["queued", "planning", "generating", "rendering", "done", "failed", "canceled"];

pub const FORMATS: [&str; 5] = ["auto", "video_remix", "slideshow_remix", "ugc_remix", "slideshow_builder"];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum JobStatus {
    Running,
    Completed,
    Failed,
    Canceled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Canceled => "canceled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "running" => Some(Self::Running),
            "completed" => Some(Self::Completed),
            "failed" => Some(Self::Failed),
            "canceled" => Some(Self::Canceled),
            _ => None,
        }
    }
}

/// How a job will end, decided by the engine when it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Completes, consuming this many credits (at most the reservation).
    Complete {
        actual_cost: i64,
    },
    Fail {
        reason: String,
    },
}

#[derive(Clone, Debug)]
pub struct Job {
    pub id: JobId,
    pub org_id: OrgId,
    pub project_id: ProjectId,
    pub api_key_id: ApiKeyId,
    pub status: JobStatus,
    pub format: String,
    pub variant_count: i64,
    pub brief: Value,
    /// The pending transfer holding the estimate; `None` for test-key jobs, which burn nothing.
    pub reservation_id: Option<TxnId>,
    pub reserved: i64,
    pub outcome: Outcome,
    pub test_mode: bool,
    pub container_ids: Vec<ContainerId>,
    pub started_at: Timestamp,
    pub finish_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub error: Option<String>,
}

impl Job {
    /// Progress 0..1 at `now`: elapsed over duration while running, 1 once ended.
    pub fn progress(&self, now: Timestamp) -> f64 {
        if self.status != JobStatus::Running {
            return if self.status == JobStatus::Completed { 1.0 } else { self.progress_at_end() };
        }
        let total = (self.finish_at.millis() - self.started_at.millis()).max(1) as f64;
        let done = (now.millis() - self.started_at.millis()).max(0) as f64;
        // A running job is never shown as done before it has been settled.
        (done / total).min(0.99)
    }

    fn progress_at_end(&self) -> f64 {
        let Some(end) = self.finished_at else { return 0.0 };
        let total = (self.finish_at.millis() - self.started_at.millis()).max(1) as f64;
        ((end.millis() - self.started_at.millis()).max(0) as f64 / total).min(1.0)
    }

    /// The stage a job is in at `now`.
    /// One of [`STAGES`].
    pub fn stage(&self, now: Timestamp) -> &'static str {
        match self.status {
            JobStatus::Completed => "done",
            JobStatus::Failed => "failed",
            JobStatus::Canceled => "canceled",
            JobStatus::Running => match self.progress(now) {
                p if p < 0.1 => "queued",
                p if p < 0.3 => "planning",
                p if p < 0.8 => "generating",
                _ => "rendering",
            },
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ContainerStatus {
    Queued,
    Processing,
    Completed,
    Failed,
    Canceled,
}

impl ContainerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerStatus::Queued => "queued",
            ContainerStatus::Processing => "processing",
            ContainerStatus::Completed => "completed",
            ContainerStatus::Failed => "failed",
            ContainerStatus::Canceled => "canceled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "queued" => Some(Self::Queued),
            "processing" => Some(Self::Processing),
            "completed" => Some(Self::Completed),
            "failed" => Some(Self::Failed),
            "canceled" => Some(Self::Canceled),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Container {
    pub id: ContainerId,
    pub job_id: JobId,
    pub org_id: OrgId,
    pub project_id: ProjectId,
    pub format: String,
    pub status: ContainerStatus,
    pub assets: Value,
    pub created_at: Timestamp,
}

/// What a job is asked to make.
#[derive(Clone, Debug)]
pub struct JobSpec<'a> {
    pub format: &'a str,
    pub variant_count: i64,
    pub brief: &'a Value,
    pub reserved: i64,
}

/// The content engine: decides at start how long a job runs and how it ends, and produces its
/// assets at the end. A real generator would implement this behind a queue.
pub trait ContentEngine: Send + Sync + 'static {
    fn plan(&self, spec: &JobSpec<'_>) -> (i64, Outcome);
    fn assets(&self, container: ContainerId, format: &str, variant: usize) -> Value;
}

/// The built-in deterministic engine.
#[derive(Clone, Debug)]
pub struct FixtureEngine {
    /// How long every job runs.
    pub duration_ms: i64,
}

/// Per-variant credits the fixture engine consumes: below the estimate, so settling returns
/// something.
fn actual_per_variant(format: &str) -> i64 {
    match format {
        "slideshow_builder" => 40,
        "slideshow_remix" => 45,
        "video_remix" => 100,
        "ugc_remix" => 110,
        _ => 100,
    }
}

impl ContentEngine for FixtureEngine {
    fn plan(&self, spec: &JobSpec<'_>) -> (i64, Outcome) {
        // A brief whose topic asks for failure fails: the engine's hook for exercising that path.
        let topic = spec.brief.get("topic").and_then(Value::as_str).unwrap_or("");
        if topic.contains("[fail]") {
            return (self.duration_ms, Outcome::Fail { reason: "the engine could not render this brief".into() });
        }
        let actual = (actual_per_variant(spec.format) * spec.variant_count).min(spec.reserved.max(0));
        (self.duration_ms, Outcome::Complete { actual_cost: actual })
    }

    fn assets(&self, container: ContainerId, format: &str, variant: usize) -> Value {
        let kind = if format.starts_with("slideshow") { "slideshow" } else { "video" };
        let base = format!("https://assets.strata.invalid/{container}");
        match kind {
            "slideshow" => json!([
                { "type": "image", "url": format!("{base}/slide-1.png"), "width": 1080, "height": 1920 },
                { "type": "image", "url": format!("{base}/slide-2.png"), "width": 1080, "height": 1920 },
                { "type": "caption", "text": format!("Variant {}", variant + 1) },
            ]),
            _ => json!([
                { "type": "video", "url": format!("{base}/video.mp4"), "durationSeconds": 15, "width": 1080, "height": 1920 },
                { "type": "thumbnail", "url": format!("{base}/thumb.jpg") },
                { "type": "caption", "text": format!("Variant {}", variant + 1) },
            ]),
        }
    }
}

/// The job as `GET /v1/jobs/:jobId` shows it.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    pub job_id: JobId,
    /// Always `content_generate`.
    #[schema(value_type = String, examples("content_generate"))]
    pub kind: &'static str,
    #[schema(value_type = JobStatus)]
    pub status: &'static str,
    #[schema(value_type = crate::schema::JobStage)]
    pub stage: &'static str,
    /// From 0 to 1, two decimals.
    #[schema(minimum = 0, maximum = 1)]
    pub progress: f64,
    pub project_id: ProjectId,
    pub container_ids: Vec<ContainerId>,
    /// Where to poll the job: `/v1/jobs/<jobId>`.
    pub location_url: String,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// Set once the job completed.
    pub result: Option<JobResult>,
    /// Set when the job failed.
    pub error: Option<JobError>,
}

/// A completed job's output.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobResult {
    pub container_ids: Vec<ContainerId>,
    pub assets: Vec<ContainerAssets>,
}

/// One container's assets in a job's result.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerAssets {
    pub container_id: ContainerId,
    #[schema(value_type = Vec<Object>)]
    pub assets: Value,
}

/// Why a job failed.
#[derive(Serialize, utoipa::ToSchema)]
pub struct JobError {
    /// `GENERATION_FAILED`.
    #[schema(value_type = String, examples("GENERATION_FAILED"))]
    pub code: &'static str,
    pub message: Option<String>,
}

/// The answer to starting a generation (202): the job, running.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StartedJob {
    pub job_id: JobId,
    /// Always `content_generate`.
    #[schema(value_type = String, examples("content_generate"))]
    pub kind: &'static str,
    /// Always `running`.
    #[schema(value_type = JobStatus)]
    pub status: &'static str,
    #[schema(value_type = crate::schema::JobStage)]
    pub stage: &'static str,
    pub project_id: ProjectId,
    pub container_ids: Vec<ContainerId>,
    /// Where to poll the job: `/v1/jobs/<jobId>`.
    pub location_url: String,
    pub started_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixture_engine_is_deterministic_and_never_costs_more_than_reserved() {
        let e = FixtureEngine { duration_ms: 5000 };
        let brief = json!({ "topic": "spring menu" });
        let spec = JobSpec { format: "video_remix", variant_count: 3, brief: &brief, reserved: 360 };
        assert_eq!(e.plan(&spec), (5000, Outcome::Complete { actual_cost: 300 }));
        assert_eq!(e.plan(&spec), e.plan(&spec));
        let failing = json!({ "topic": "[fail] please" });
        assert!(matches!(e.plan(&JobSpec { brief: &failing, ..spec }).1, Outcome::Fail { .. }));
    }
}
