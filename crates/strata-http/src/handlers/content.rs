//! Content generation, jobs, containers and scheduled posts.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use strata_core::clock::Timestamp;
use strata_core::content::FORMATS;
use strata_core::content::{JobView, StartedJob};
use strata_core::error::CoreError;
use strata_core::id::{ContainerId, JobId, PostId, ProjectId};
use strata_core::post::PLATFORMS;
use strata_core::schema::{Format, Platform};
use strata_core::service::{NewGeneration, NewPost};
use strata_core::wire::{ContainerView, PageView, PostView};
use utoipa::ToSchema;

use super::{PageQuery, no_fields, page_view};
use crate::AppState;
use crate::error::HttpResult;
use crate::extract::{Auth, Id, parse_json};
use crate::params::{ContainerPath, JobPath, PostListQuery, PostPath, ProjectPath};
use crate::write::{Write, json_response, reply_response};

/// What to make.
#[derive(Deserialize, serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Brief {
    #[serde(default)]
    #[schema(max_length = 2000)]
    topic: Option<String>,
    #[serde(default)]
    #[schema(max_length = 2000)]
    angle: Option<String>,
    #[serde(default)]
    #[schema(max_length = 2000)]
    cta: Option<String>,
    /// At most 20, of at most 500 characters each.
    #[serde(default)]
    #[schema(max_items = 20)]
    value_propositions: Option<Vec<String>>,
}

/// A generation to start.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = GenerateContent)]
struct GenerateBody {
    /// The job id to use (`job_<ULID>`); one is made when absent. Unique within the
    /// organization: 409 when it already has a job with this id. Another organization's use of
    /// the same id does not matter.
    #[serde(default)]
    #[schema(value_type = Option<JobId>)]
    id: Option<String>,
    /// `auto` when absent.
    #[serde(default)]
    #[schema(value_type = Option<Format>)]
    format: Option<String>,
    /// 1–5; 1 when absent.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 5)]
    variant_count: Option<i64>,
    #[serde(default)]
    brief: Option<Brief>,
}

fn brief_value(b: Option<Brief>) -> Result<Value, CoreError> {
    let Some(b) = b else { return Ok(Value::Object(Default::default())) };
    for (name, v) in [("brief.topic", &b.topic), ("brief.angle", &b.angle), ("brief.cta", &b.cta)] {
        if v.as_ref().is_some_and(|s| s.chars().count() > 2000) {
            return Err(CoreError::validation(name, "must be at most 2000 characters"));
        }
    }
    if b.value_propositions.as_ref().is_some_and(|v| v.len() > 20 || v.iter().any(|s| s.chars().count() > 500)) {
        return Err(CoreError::validation("brief.valuePropositions", "at most 20 entries of at most 500 characters"));
    }
    serde_json::to_value(&b).map_err(|e| CoreError::internal(e.to_string()))
}

/// Start a content generation.
///
/// Reserves `estimatedCreditsPerFormat[format] × variantCount` from `available` and starts a job;
/// poll it at `locationUrl`. Settling consumes the actual cost and releases the rest.
#[utoipa::path(post, path = "/v1/projects/{projectId}/content", tag = "Content", operation_id = "generateContent",
    security(("bearer" = ["content:write"])), params(ProjectPath),
    request_body(content = GenerateBody, example = json!({"format": "slideshow_remix", "variantCount": 2,
        "brief": {"topic": "Spring menu launch", "angle": "Seasonal", "cta": "Order ahead in the app", "valuePropositions": ["Fresh", "Local"]}})),
    responses(
        (status = 202, description = "The job, running.", body = StartedJob),
        (status = 402, description = "BILLING_EXHAUSTED: `available` cannot cover the reservation, or it would go over the monthly cap (`details.reason: \"monthly_cap\"`)."),
        (status = 409, description = "CONFLICT: the project is archived, or a job with this `id` exists; or IDEMPOTENCY_CONFLICT."),
        (status = 429, description = "RATE_LIMITED: the long-running bucket is empty, or the key's concurrent-jobs cap is reached."),
        (status = 503, description = "KILL_SWITCH: the key was killed, or the org is suspended or its access revoked (spending in a suspended org, by any key)."),
    ))]
pub async fn generate(State(app): State<AppState>, Id(project): Id<ProjectId>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, StatusCode::ACCEPTED, |claim| async move {
        let b: GenerateBody = parse_json(&w.body)?;
        let format = b.format.unwrap_or_else(|| "auto".to_owned());
        if !FORMATS.contains(&format.as_str()) {
            return Err(CoreError::validation("format", "must be auto, video_remix, slideshow_remix, ugc_remix or slideshow_builder"));
        }
        let variant_count = b.variant_count.unwrap_or(1);
        if !(1..=5).contains(&variant_count) {
            return Err(CoreError::validation("variantCount", "must be from 1 to 5"));
        }
        let cmd = NewGeneration {
            id: b.id.as_deref().map(|s| JobId::parse_field(s, "id")).transpose()?,
            format,
            variant_count,
            brief: brief_value(b.brief)?,
        };
        app.strata.start_generation(&w.caller, project, cmd, claim.as_ref()).await
    })
    .await
}

/// Read a job.
///
/// Its `progress` (0..1), `stage`, terminal `status` and, once completed, its `result`. Answers
/// with an `ETag`; a request whose `If-None-Match` matches it is 304 with no body.
#[utoipa::path(get, path = "/v1/jobs/{jobId}", tag = "Content", operation_id = "getJob",
    security(("bearer" = ["jobs:read"])),
    params(JobPath, ("If-None-Match" = Option<String>, Header, description = "An `ETag` this job answered earlier: 304 while it still holds.")),
    responses(
        (status = 200, description = "The job.", body = JobView, headers(("ETag" = String, description = "The representation's tag."))),
        (status = 304, description = "Not modified since the `ETag` sent.", headers(("ETag" = String, description = "The representation's tag."))),
    ))]
pub async fn job(State(app): State<AppState>, caller: Auth, Id(id): Id<JobId>, headers: HeaderMap) -> HttpResult {
    let view = app.strata.get_job(&caller, id).await?;
    let body = serde_json::to_vec(&view).map_err(|e| CoreError::internal(e.to_string()))?;
    let digest = Sha256::digest(&body);
    let etag = format!("\"{}\"", digest.iter().take(12).map(|b| format!("{b:02x}")).collect::<String>());
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').map(|t| t.trim().trim_start_matches("W/")).any(|t| t == etag || t == "*"));
    let etag_value = HeaderValue::from_str(&etag).map_err(|e| CoreError::internal(e.to_string()))?;
    if matches {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag_value)]).into_response());
    }
    let mut resp: Response = reply_response(strata_core::idempotency::Reply { status: 200, body });
    resp.headers_mut().insert(header::ETAG, etag_value);
    Ok(resp)
}

/// Cancel a job.
///
/// Releases the job's reservation. A finished job is 409 (`details.status`); a canceled one
/// answers its state again.
#[utoipa::path(post, path = "/v1/jobs/{jobId}/cancel", tag = "Content", operation_id = "cancelJob",
    security(("bearer" = ["content:write"])), params(JobPath),
    responses((status = 200, description = "The job, canceled.", body = JobView)))]
pub async fn cancel(State(app): State<AppState>, Id(id): Id<JobId>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, StatusCode::OK, |claim| async move {
        no_fields(&w.body)?;
        app.strata.cancel_job(&w.caller, id, claim.as_ref()).await
    })
    .await
}

/// Read a content container.
///
/// One generated variant and its assets.
#[utoipa::path(get, path = "/v1/projects/{projectId}/content/{containerId}", tag = "Content", operation_id = "getContainer",
    security(("bearer" = ["content:read"])), params(ProjectPath, ContainerPath),
    responses((status = 200, description = "The container.", body = ContainerView)))]
pub async fn container(State(app): State<AppState>, caller: Auth, Id(project): Id<ProjectId>, Id(id): Id<ContainerId>) -> HttpResult {
    json_response(StatusCode::OK, &app.strata.get_container(&caller, project, id).await?)
}

/// A post to publish later.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = SchedulePost)]
struct PostBody {
    /// A container of this project.
    #[schema(value_type = ContainerId)]
    container_id: String,
    /// When to publish (must end in `Z`).
    #[schema(value_type = Timestamp)]
    scheduled_for: String,
    #[schema(value_type = Platform)]
    platform: String,
}

/// Schedule a post.
///
/// At `scheduledFor` the post is published (`post.published`) unless its org is suspended (held
/// until resume) or its project archived (canceled).
#[utoipa::path(post, path = "/v1/projects/{projectId}/scheduled-posts", tag = "Content", operation_id = "schedulePost",
    security(("bearer" = ["content:write"])), params(ProjectPath),
    request_body(content = PostBody),
    responses((status = 201, description = "The scheduled post.", body = PostView)))]
pub async fn schedule(State(app): State<AppState>, Id(project): Id<ProjectId>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, StatusCode::CREATED, |claim| async move {
        let b: PostBody = parse_json(&w.body)?;
        if !PLATFORMS.contains(&b.platform.as_str()) {
            return Err(CoreError::validation("platform", format!("must be one of {}", PLATFORMS.join(", "))));
        }
        let cmd = NewPost {
            container_id: ContainerId::parse_field(&b.container_id, "containerId")?,
            scheduled_for: Timestamp::parse_query(&b.scheduled_for, "scheduledFor")?,
            platform: b.platform,
        };
        app.strata.schedule_post(&w.caller, project, cmd, claim.as_ref()).await
    })
    .await
}

/// List a project's scheduled posts.
#[utoipa::path(get, path = "/v1/projects/{projectId}/scheduled-posts", tag = "Content", operation_id = "listScheduledPosts",
    security(("bearer" = ["content:read"])), params(ProjectPath, PostListQuery),
    responses((status = 200, description = "A page of posts, newest first.", body = PageView<PostView>)))]
pub async fn posts(State(app): State<AppState>, caller: Auth<PageQuery>, Id(project): Id<ProjectId>) -> HttpResult {
    let page = caller.query.page(&app, "posts", 25, 100)?;
    json_response(StatusCode::OK, &page_view(app.strata.list_posts(&caller, project, page).await?))
}

/// Cancel a scheduled post.
#[utoipa::path(delete, path = "/v1/projects/{projectId}/scheduled-posts/{postId}", tag = "Content", operation_id = "cancelScheduledPost",
    security(("bearer" = ["content:write"])), params(ProjectPath, PostPath),
    responses((status = 200, description = "The post, canceled.", body = PostView)))]
pub async fn cancel_post(State(app): State<AppState>, Id(project): Id<ProjectId>, Id(id): Id<PostId>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, StatusCode::OK, |claim| async move {
        no_fields(&w.body)?;
        app.strata.cancel_post(&w.caller, project, id, claim.as_ref()).await
    })
    .await
}
