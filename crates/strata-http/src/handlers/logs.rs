//! The audit log and the event log.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use strata_core::audit::AuditFilter;
use strata_core::clock::Timestamp;
use strata_core::error::CoreError;
use strata_core::event::{EventFilter, EventType};
use strata_core::id::{ApiKeyId, EventId, ProjectId};
use strata_core::wire::{AuditView, EventView, PageView};

use super::{page_request, page_view};
use crate::AppState;
use crate::error::HttpResult;
use crate::extract::{Auth, Id, QueryMap};
use crate::params::{AuditQuery, EventPath, EventsQuery};
use crate::write::json_response;

fn time_window(q: &QueryMap) -> Result<(Option<Timestamp>, Option<Timestamp>), CoreError> {
    let since = q.get("since").map(|s| Timestamp::parse_query(s, "since")).transpose()?;
    let until = q.get("until").map(|s| Timestamp::parse_query(s, "until")).transpose()?;
    Ok((since, until))
}

/// List the audit log.
///
/// Every write, rejected authentication, scope denial, rate-limit hit and kill-switch flip, newest
/// first. With `X-Layers-Organization`, the child's log.
#[utoipa::path(get, path = "/v1/audit-log", tag = "Logs", operation_id = "listAuditLog",
    security(("bearer" = ["audit:read"])), params(AuditQuery),
    responses((status = 200, description = "A page of audit entries.", body = PageView<AuditView>)))]
pub async fn audit_log(State(app): State<AppState>, caller: Auth, q: QueryMap) -> HttpResult {
    let (since, until) = time_window(&q)?;
    let filter = AuditFilter {
        event_type: q.get("eventType").map(str::to_owned),
        project_id: q.get("projectId").map(|s| ProjectId::parse_field(s, "projectId")).transpose()?,
        api_key_id: q.get("apiKeyId").map(|s| ApiKeyId::parse_field(s, "apiKeyId")).transpose()?,
        since,
        until,
    };
    let page = page_request(&app, &q, "audit", 50, 200)?;
    json_response(StatusCode::OK, &page_view(app.strata.list_audit(&caller, &filter, page).await?))
}

/// List the event log.
///
/// The org's events, newest first: a partner can reconcile without a webhook. Each event's
/// `data` is described under `webhooks`.
#[utoipa::path(get, path = "/v1/events", tag = "Logs", operation_id = "listEvents",
    security(("bearer" = ["webhooks:read"])), params(EventsQuery),
    responses((status = 200, description = "A page of events.", body = PageView<EventView>)))]
pub async fn events(State(app): State<AppState>, caller: Auth, q: QueryMap) -> HttpResult {
    let (since, until) = time_window(&q)?;
    let event_type = match q.get("type") {
        None => None,
        Some(t) => Some(EventType::parse(t).ok_or_else(|| CoreError::validation("type", format!("{t:?} is not an event type")))?),
    };
    let filter = EventFilter { event_type, since, until };
    let page = page_request(&app, &q, "events", 25, 100)?;
    json_response(StatusCode::OK, &page_view(app.strata.list_events(&caller, &filter, page).await?))
}

/// Read an event.
#[utoipa::path(get, path = "/v1/events/{eventId}", tag = "Logs", operation_id = "getEvent",
    security(("bearer" = ["webhooks:read"])), params(EventPath),
    responses((status = 200, description = "The event.", body = EventView)))]
pub async fn event(State(app): State<AppState>, caller: Auth, Id(id): Id<EventId>) -> HttpResult<Response> {
    json_response(StatusCode::OK, &app.strata.get_event(&caller, id).await?)
}
