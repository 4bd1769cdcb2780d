//! The audit log and the event log.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use strata_core::audit::AuditFilter;
use strata_core::clock::Timestamp;
use strata_core::error::CoreError;
use strata_core::event::{EventFilter, EventType};
use strata_core::id::{ApiKeyId, EventId, ProjectId};
use strata_core::wire::{AuditView, EventView, PageView};
use utoipa::IntoParams;

use super::{any_of, page_request, page_view};
use crate::AppState;
use crate::error::HttpResult;
use crate::extract::{Auth, Id};
use crate::params::EventPath;
use crate::write::json_response;

fn time_window(since: Option<&str>, until: Option<&str>) -> Result<(Option<Timestamp>, Option<Timestamp>), CoreError> {
    let since = since.map(|s| Timestamp::parse_query(s, "since")).transpose()?;
    let until = until.map(|s| Timestamp::parse_query(s, "until")).transpose()?;
    Ok((since, until))
}

/// The query of `GET /v1/audit-log` (parsed strictly, and read by the OpenAPI document).
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct AuditQuery {
    /// Only entries of any of these types (e.g. `organization.created`; the parameter may repeat).
    #[serde(default)]
    #[param(value_type = Option<Vec<String>>, style = Form, explode)]
    event_type: Vec<String>,
    /// Only entries about this project.
    #[param(value_type = Option<ProjectId>)]
    project_id: Option<String>,
    /// Only entries made with this key.
    #[param(value_type = Option<ApiKeyId>)]
    api_key_id: Option<String>,
    /// From this instant on (must end in `Z`).
    #[param(value_type = Option<Timestamp>)]
    since: Option<String>,
    /// Before this instant (must end in `Z`).
    #[param(value_type = Option<Timestamp>)]
    until: Option<String>,
    /// Page size.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200, default = 50)]
    limit: Option<String>,
    /// The previous page's `nextCursor` (opaque; a tampered cursor is 422).
    #[param(min_length = 1)]
    cursor: Option<String>,
}

/// List the audit log.
///
/// Every write, rejected authentication, scope denial, rate-limit hit and kill-switch flip, newest
/// first. With `X-Layers-Organization`, the child's log.
#[utoipa::path(get, path = "/v1/audit-log", tag = "Logs", operation_id = "listAuditLog",
    security(("bearer" = ["audit:read"])), params(AuditQuery),
    responses((status = 200, description = "A page of audit entries.", body = PageView<AuditView>)))]
pub async fn audit_log(State(app): State<AppState>, caller: Auth<AuditQuery>) -> HttpResult {
    let q = &caller.query;
    let (since, until) = time_window(q.since.as_deref(), q.until.as_deref())?;
    let filter = AuditFilter {
        event_types: q.event_type.clone(),
        project_id: q.project_id.as_deref().map(|s| ProjectId::parse_field(s, "projectId")).transpose()?,
        api_key_id: q.api_key_id.as_deref().map(|s| ApiKeyId::parse_field(s, "apiKeyId")).transpose()?,
        since,
        until,
    };
    let page = page_request(&app, q.limit.as_deref(), q.cursor.as_deref(), "audit", 50, 200)?;
    json_response(StatusCode::OK, &page_view(app.strata.list_audit(&caller, &filter, page).await?))
}

/// The query of `GET /v1/events` (parsed strictly, and read by the OpenAPI document).
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only events of any of these types (the parameter may repeat).
    #[serde(default)]
    #[param(rename = "type", value_type = Option<Vec<EventType>>, inline, style = Form, explode)]
    r#type: Vec<String>,
    /// From this instant on (must end in `Z`).
    #[param(value_type = Option<Timestamp>)]
    since: Option<String>,
    /// Before this instant (must end in `Z`).
    #[param(value_type = Option<Timestamp>)]
    until: Option<String>,
    /// Page size.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100, default = 25)]
    limit: Option<String>,
    /// The previous page's `nextCursor` (opaque; a tampered cursor is 422).
    #[param(min_length = 1)]
    cursor: Option<String>,
}

/// List the event log.
///
/// The org's events, newest first: a partner can reconcile without a webhook. Each event's
/// `data` is described under `webhooks`.
#[utoipa::path(get, path = "/v1/events", tag = "Logs", operation_id = "listEvents",
    security(("bearer" = ["webhooks:read"])), params(EventsQuery),
    responses((status = 200, description = "A page of events.", body = PageView<EventView>)))]
pub async fn events(State(app): State<AppState>, caller: Auth<EventsQuery>) -> HttpResult {
    let q = &caller.query;
    let (since, until) = time_window(q.since.as_deref(), q.until.as_deref())?;
    let event_types = any_of(&q.r#type, "type", "an event type of the catalog", EventType::parse)?;
    let filter = EventFilter { event_types, since, until };
    let page = page_request(&app, q.limit.as_deref(), q.cursor.as_deref(), "events", 25, 100)?;
    json_response(StatusCode::OK, &page_view(app.strata.list_events(&caller, &filter, page).await?))
}

/// Read an event.
#[utoipa::path(get, path = "/v1/events/{eventId}", tag = "Logs", operation_id = "getEvent",
    security(("bearer" = ["webhooks:read"])), params(EventPath),
    responses((status = 200, description = "The event.", body = EventView)))]
pub async fn event(State(app): State<AppState>, caller: Auth, Id(id): Id<EventId>) -> HttpResult<Response> {
    json_response(StatusCode::OK, &app.strata.get_event(&caller, id).await?)
}
