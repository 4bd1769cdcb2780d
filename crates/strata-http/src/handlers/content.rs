//! Content generation, jobs, containers and scheduled posts.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use strata_core::clock::Timestamp;
use strata_core::content::FORMATS;
use strata_core::error::CoreError;
use strata_core::id::{ContainerId, JobId, PostId};
use strata_core::post::PLATFORMS;
use strata_core::service::{NewGeneration, NewPost};

use super::projects::project_id;
use super::{PageQuery, no_fields, page_reply};
use crate::AppState;
use crate::error::HttpResult;
use crate::extract::{Auth, parse_json};
use crate::write::{Write, reply_response};

#[derive(Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Brief {
    #[serde(default)]
    topic: Option<String>,
    #[serde(default)]
    angle: Option<String>,
    #[serde(default)]
    cta: Option<String>,
    #[serde(default)]
    value_propositions: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct GenerateBody {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
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

/// `POST /v1/projects/:projectId/content`: 202 with the job envelope.
pub async fn generate(State(app): State<AppState>, Path(project): Path<String>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, |claim| async move {
        let project = project_id(&project)?;
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

/// `GET /v1/jobs/:jobId`, with an `ETag`; a matching `If-None-Match` is 304.
pub async fn job(State(app): State<AppState>, caller: Auth, Path(id): Path<String>, headers: HeaderMap) -> HttpResult {
    let id = JobId::parse_field(&id, "jobId")?;
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

/// `POST /v1/jobs/:jobId/cancel`.
pub async fn cancel(State(app): State<AppState>, Path(id): Path<String>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, |claim| async move {
        let id = JobId::parse_field(&id, "jobId")?;
        no_fields(&w.body)?;
        app.strata.cancel_job(&w.caller, id, claim.as_ref()).await
    })
    .await
}

/// `GET /v1/projects/:projectId/content/:containerId`.
pub async fn container(State(app): State<AppState>, caller: Auth, Path((project, id)): Path<(String, String)>) -> HttpResult {
    let project = project_id(&project)?;
    let id = ContainerId::parse_field(&id, "containerId")?;
    Ok(reply_response(app.strata.get_container(&caller, project, id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PostBody {
    container_id: String,
    scheduled_for: String,
    platform: String,
}

/// `POST /v1/projects/:projectId/scheduled-posts`.
pub async fn schedule(State(app): State<AppState>, Path(project): Path<String>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, |claim| async move {
        let project = project_id(&project)?;
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

/// `GET /v1/projects/:projectId/scheduled-posts`.
pub async fn posts(State(app): State<AppState>, caller: Auth<PageQuery>, Path(project): Path<String>) -> HttpResult {
    let project = project_id(&project)?;
    let page = caller.query.page(&app, "posts", 25, 100)?;
    Ok(reply_response(page_reply(app.strata.list_posts(&caller, project, page).await?)))
}

/// `DELETE /v1/projects/:projectId/scheduled-posts/:postId`.
pub async fn cancel_post(State(app): State<AppState>, Path((project, id)): Path<(String, String)>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, |claim| async move {
        let project = project_id(&project)?;
        let id = PostId::parse_field(&id, "postId")?;
        no_fields(&w.body)?;
        app.strata.cancel_post(&w.caller, project, id, claim.as_ref()).await
    })
    .await
}
