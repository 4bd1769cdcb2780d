//! The audit log and the event log.

use axum::extract::{Path, State};
use axum::response::Response;
use serde::Deserialize;
use strata_core::audit::AuditFilter;
use strata_core::clock::Timestamp;
use strata_core::error::CoreError;
use strata_core::event::{EventFilter, EventType};
use strata_core::id::{ApiKeyId, EventId, ProjectId};
use strata_core::idempotency::Reply;

use super::{page_reply, page_request};
use crate::AppState;
use crate::error::HttpResult;
use crate::extract::Auth;
use crate::write::reply_response;

fn time_window(since: Option<&str>, until: Option<&str>) -> Result<(Option<Timestamp>, Option<Timestamp>), CoreError> {
    let since = since.map(|s| Timestamp::parse_query(s, "since")).transpose()?;
    let until = until.map(|s| Timestamp::parse_query(s, "until")).transpose()?;
    Ok((since, until))
}

/// The query of `GET /v1/audit-log`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuditQuery {
    event_type: Option<String>,
    project_id: Option<String>,
    api_key_id: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// `GET /v1/audit-log`.
pub async fn audit_log(State(app): State<AppState>, caller: Auth<AuditQuery>) -> HttpResult {
    let q = &caller.query;
    let (since, until) = time_window(q.since.as_deref(), q.until.as_deref())?;
    let filter = AuditFilter {
        event_type: q.event_type.clone(),
        project_id: q.project_id.as_deref().map(|s| ProjectId::parse_field(s, "projectId")).transpose()?,
        api_key_id: q.api_key_id.as_deref().map(|s| ApiKeyId::parse_field(s, "apiKeyId")).transpose()?,
        since,
        until,
    };
    let page = page_request(&app, q.limit.as_deref(), q.cursor.as_deref(), "audit", 50, 200)?;
    Ok(reply_response(page_reply(app.strata.list_audit(&caller, &filter, page).await?)))
}

/// The query of `GET /v1/events`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    r#type: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// `GET /v1/events`.
pub async fn events(State(app): State<AppState>, caller: Auth<EventsQuery>) -> HttpResult {
    let q = &caller.query;
    let (since, until) = time_window(q.since.as_deref(), q.until.as_deref())?;
    let event_type = match q.r#type.as_deref() {
        None => None,
        Some(t) => Some(EventType::parse(t).ok_or_else(|| CoreError::validation("type", format!("{t:?} is not an event type")))?),
    };
    let filter = EventFilter { event_type, since, until };
    let page = page_request(&app, q.limit.as_deref(), q.cursor.as_deref(), "events", 25, 100)?;
    Ok(reply_response(page_reply(app.strata.list_events(&caller, &filter, page).await?)))
}

/// `GET /v1/events/:eventId`.
pub async fn event(State(app): State<AppState>, caller: Auth, Path(id): Path<String>) -> HttpResult<Response> {
    let id = EventId::parse_field(&id, "eventId")?;
    Ok(reply_response(Reply::json(200, &app.strata.get_event(&caller, id).await?)))
}
