//! Webhook endpoints and deliveries (`/v1/webhook-endpoints…`, `/v1/webhook-deliveries…`).

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value};
use strata_core::clock::Timestamp;
use strata_core::error::CoreError;
use strata_core::event::EventType;
use strata_core::id::{DeliveryId, EndpointId, ProjectId};
use strata_core::metadata::{Metadata, MetadataPatch};
use strata_core::service::{
    CreatedEndpoint, DeletedEndpoint, DeliveryDetail, DeliveryView, EndpointPatch, EndpointView, NewEndpoint, RecoverView, ReplayView,
    RotatedSecret, TestPingView,
};
use strata_core::webhook::{DeliveryStatus, EndpointScope, EndpointStatus};
use strata_core::wire::PageView;
use utoipa::{IntoParams, ToSchema};

use super::{any_of, nullable_string, only_fields, page_request, page_view};
use crate::AppState;
use crate::error::HttpResult;
use crate::extract::{Auth, Id, parse_json};
use crate::params::{DeliveryPath, EndpointPath};
use crate::write::{Write, json_response};

fn parse_events(v: &Value) -> Result<Vec<EventType>, CoreError> {
    let list = v.as_array().ok_or_else(|| CoreError::validation("events", "must be a list of event types"))?;
    if list.is_empty() || list.len() > 50 {
        return Err(CoreError::validation("events", "must name 1–50 event types"));
    }
    let mut out = Vec::new();
    for e in list {
        let name = e.as_str().unwrap_or_default();
        let ty = EventType::parse(name).ok_or_else(|| {
            let catalog: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
            let hint = if name == "*" { "there is no wildcard: list the types to receive" } else { "not in the catalog" };
            CoreError::validation("events", format!("{e}: {hint}; the event types are {}", catalog.join(", ")))
        })?;
        if !out.contains(&ty) {
            out.push(ty);
        }
    }
    Ok(out)
}

fn parse_scope(v: &str) -> Result<EndpointScope, CoreError> {
    EndpointScope::parse(v).ok_or_else(|| CoreError::validation("scope", "must be own or all_children"))
}

fn parse_description(v: Option<String>) -> Result<Option<String>, CoreError> {
    match v {
        Some(d) if d.chars().count() > 500 => Err(CoreError::validation("description", "must be at most 500 characters")),
        other => Ok(other),
    }
}

/// A new webhook endpoint.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = CreateWebhookEndpoint)]
struct CreateBody {
    /// `https://…` (`http://localhost` or a loopback address only on a server in dev mode);
    /// private and link-local addresses are refused unless the operator allows them.
    #[schema(format = "uri")]
    url: String,
    /// 1–50 event types of the catalog.
    #[schema(value_type = Vec<EventType>, min_items = 1, max_items = 50)]
    events: Value,
    /// At most 500 characters.
    #[serde(default)]
    #[schema(max_length = 500)]
    description: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Metadata>)]
    metadata: Option<Value>,
    /// Only this project's events.
    #[serde(default)]
    #[schema(value_type = Option<ProjectId>)]
    project_id: Option<String>,
    /// `own` (the default) or `all_children` (the firehose; needs `org:admin`, else 403).
    #[serde(default)]
    #[schema(value_type = Option<EndpointScope>)]
    scope: Option<String>,
}

/// A change to an endpoint: only the fields sent change.
#[derive(ToSchema)]
#[schema(as = UpdateWebhookEndpoint)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[expect(dead_code, reason = "describes the body `update` reads as a map (absent and null differ)")]
struct UpdateBody {
    /// The new URL, under the same rules as at creation.
    #[schema(format = "uri", nullable = false)]
    url: Option<String>,
    /// Replaces the list.
    #[schema(min_items = 1, max_items = 50, nullable = false)]
    events: Option<Vec<EventType>>,
    /// `null` clears it.
    #[schema(max_length = 500)]
    description: Option<Option<String>>,
    metadata: Option<MetadataPatch>,
    /// `active` or `paused`; setting `active` on an `auto_paused` endpoint resets its failure
    /// count.
    #[schema(value_type = Option<EndpointStatus>, nullable = false)]
    status: Option<String>,
    #[schema(value_type = Option<EndpointScope>, nullable = false)]
    scope: Option<String>,
}

/// Create a webhook endpoint.
///
/// The signing secret is shown once. `scope: "all_children"` makes the firehose: this org's
/// events and every direct child's, each naming its org in `data.organizationId`.
#[utoipa::path(post, path = "/v1/webhook-endpoints", tag = "Webhooks", operation_id = "createWebhookEndpoint",
    security(("bearer" = ["webhooks:write"])),
    request_body(content = CreateBody, example = json!({"url": "https://quinns-crm.example.com/layers/webhooks",
        "events": ["content.generated", "post.published"], "scope": "all_children"})),
    responses(
        (status = 201, description = "The endpoint and its signing secret, shown once.", body = CreatedEndpoint),
        (status = 403, description = "FORBIDDEN_SCOPE: the key lacks `webhooks:write`, or `scope: \"all_children\"` without `org:admin`."),
    ))]
pub async fn create(State(app): State<AppState>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, StatusCode::CREATED, |claim| async move {
        let b: CreateBody = parse_json(&w.body)?;
        let cmd = NewEndpoint {
            url: b.url,
            events: parse_events(&b.events)?,
            description: parse_description(b.description)?,
            metadata: Metadata::parse_create(b.metadata.as_ref(), "metadata")?,
            project_id: b.project_id.as_deref().map(|p| ProjectId::parse_field(p, "projectId")).transpose()?,
            scope: b.scope.as_deref().map(parse_scope).transpose()?.unwrap_or(EndpointScope::Own),
        };
        app.strata.create_endpoint(&w.caller, cmd, claim.as_ref()).await
    })
    .await
}

/// The query of `GET /v1/webhook-endpoints` (parsed strictly, and read by the OpenAPI document).
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct ListQuery {
    /// Only endpoints of this project.
    #[param(value_type = Option<ProjectId>)]
    project_id: Option<String>,
    /// Only endpoints in any of these statuses (the parameter may repeat).
    #[serde(default)]
    #[param(value_type = Option<Vec<EndpointStatus>>, inline, style = Form, explode)]
    status: Vec<String>,
    /// Page size.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100, default = 25)]
    limit: Option<String>,
    /// The previous page's `nextCursor` (opaque; a tampered cursor is 422).
    #[param(min_length = 1)]
    cursor: Option<String>,
}

/// List webhook endpoints.
#[utoipa::path(get, path = "/v1/webhook-endpoints", tag = "Webhooks", operation_id = "listWebhookEndpoints",
    security(("bearer" = ["webhooks:read"])), params(ListQuery),
    responses((status = 200, description = "A page of endpoints, newest first.", body = PageView<EndpointView>)))]
pub async fn list(State(app): State<AppState>, caller: Auth<ListQuery>) -> HttpResult {
    let q = &caller.query;
    let project = q.project_id.as_deref().map(|p| ProjectId::parse_field(p, "projectId")).transpose()?;
    let statuses = any_of(&q.status, "status", "active, paused or auto_paused", EndpointStatus::parse)?;
    let page = page_request(&app, q.limit.as_deref(), q.cursor.as_deref(), "endpoints", 25, 100)?;
    json_response(StatusCode::OK, &page_view(app.strata.list_endpoints(&caller, project, &statuses, page).await?))
}

/// Read a webhook endpoint.
#[utoipa::path(get, path = "/v1/webhook-endpoints/{endpointId}", tag = "Webhooks", operation_id = "getWebhookEndpoint",
    security(("bearer" = ["webhooks:read"])), params(EndpointPath),
    responses((status = 200, description = "The endpoint.", body = EndpointView)))]
pub async fn get(State(app): State<AppState>, caller: Auth, Id(id): Id<EndpointId>) -> HttpResult {
    json_response(StatusCode::OK, &app.strata.get_endpoint(&caller, id).await?)
}

/// Update a webhook endpoint.
///
/// Changing a firehose endpoint, or making one, needs `org:admin`.
#[utoipa::path(patch, path = "/v1/webhook-endpoints/{endpointId}", tag = "Webhooks", operation_id = "updateWebhookEndpoint",
    security(("bearer" = ["webhooks:write"])), params(EndpointPath),
    request_body(content = UpdateBody, example = json!({"status": "active"})),
    responses((status = 200, description = "The endpoint after the change.", body = EndpointView)))]
pub async fn update(State(app): State<AppState>, Id(id): Id<EndpointId>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, StatusCode::OK, |claim| async move {
        let obj: Map<String, Value> = parse_json(&w.body)?;
        only_fields(&obj, &["url", "events", "description", "metadata", "status", "scope"])?;
        let string = |name: &str| match obj.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(CoreError::validation(name, "must be a string")),
        };
        let status = match string("status")?.as_deref() {
            None => None,
            Some("active") => Some(EndpointStatus::Active),
            Some("paused") => Some(EndpointStatus::Paused),
            Some(_) => return Err(CoreError::validation("status", "must be active or paused")),
        };
        let patch = EndpointPatch {
            url: string("url")?,
            events: obj.get("events").map(parse_events).transpose()?,
            description: nullable_string(&obj, "description")?.map(parse_description).transpose()?,
            metadata: obj.get("metadata").map(|m| MetadataPatch::parse(m, "metadata")).transpose()?,
            status,
            scope: string("scope")?.as_deref().map(parse_scope).transpose()?,
        };
        app.strata.update_endpoint(&w.caller, id, patch, claim.as_ref()).await
    })
    .await
}

/// Delete a webhook endpoint.
///
/// Its pending deliveries are abandoned.
#[utoipa::path(delete, path = "/v1/webhook-endpoints/{endpointId}", tag = "Webhooks", operation_id = "deleteWebhookEndpoint",
    security(("bearer" = ["webhooks:write"])), params(EndpointPath),
    responses((status = 200, description = "The endpoint is gone.", body = DeletedEndpoint)))]
pub async fn delete(State(app): State<AppState>, Id(id): Id<EndpointId>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, StatusCode::OK, |claim| async move {
        super::no_fields(&w.body)?;
        app.strata.delete_endpoint(&w.caller, id, claim.as_ref()).await
    })
    .await
}

/// Rotate an endpoint's signing secret.
///
/// For 24 hours both secrets sign every delivery (one `v1=` each).
#[utoipa::path(post, path = "/v1/webhook-endpoints/{endpointId}/rotate-secret", tag = "Webhooks", operation_id = "rotateWebhookSecret",
    security(("bearer" = ["webhooks:write"])), params(EndpointPath),
    responses((status = 200, description = "The new secret, shown once.", body = RotatedSecret)))]
pub async fn rotate(State(app): State<AppState>, Id(id): Id<EndpointId>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, StatusCode::OK, |claim| async move {
        super::no_fields(&w.body)?;
        app.strata.rotate_endpoint_secret(&w.caller, id, claim.as_ref()).await
    })
    .await
}

/// A test ping.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TestWebhookEndpoint)]
struct TestBody {
    /// Any JSON, delivered as `data.payload`.
    #[serde(default)]
    payload: Option<Value>,
}

/// Send a test ping.
///
/// A `test.ping` delivery to this endpoint, whatever its event filter.
#[utoipa::path(post, path = "/v1/webhook-endpoints/{endpointId}/test", tag = "Webhooks", operation_id = "testWebhookEndpoint",
    security(("bearer" = ["webhooks:write"])), params(EndpointPath),
    request_body(content = TestBody, example = json!({"payload": {"hello": "world"}})),
    responses((status = 200, description = "The ping's event and delivery.", body = TestPingView)))]
pub async fn test(State(app): State<AppState>, Id(id): Id<EndpointId>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, StatusCode::OK, |claim| async move {
        let b: TestBody = parse_json(&w.body)?;
        app.strata.test_endpoint(&w.caller, id, b.payload, claim.as_ref()).await
    })
    .await
}

/// The query of `GET /v1/webhook-endpoints/:id/deliveries` (parsed strictly, and read by the
/// OpenAPI document).
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct DeliveriesQuery {
    /// Only deliveries of any of these event types (the parameter may repeat).
    #[serde(default)]
    #[param(value_type = Option<Vec<EventType>>, inline, style = Form, explode)]
    event_type: Vec<String>,
    /// Only deliveries in any of these statuses (the parameter may repeat).
    #[serde(default)]
    #[param(value_type = Option<Vec<DeliveryStatus>>, inline, style = Form, explode)]
    status: Vec<String>,
    /// Page size.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100, default = 25)]
    limit: Option<String>,
    /// The previous page's `nextCursor` (opaque; a tampered cursor is 422).
    #[param(min_length = 1)]
    cursor: Option<String>,
}

/// List an endpoint's deliveries.
#[utoipa::path(get, path = "/v1/webhook-endpoints/{endpointId}/deliveries", tag = "Webhooks", operation_id = "listDeliveries",
    security(("bearer" = ["webhooks:read"])), params(EndpointPath, DeliveriesQuery),
    responses((status = 200, description = "A page of deliveries, newest first.", body = PageView<DeliveryView>)))]
pub async fn deliveries(State(app): State<AppState>, caller: Auth<DeliveriesQuery>, Id(id): Id<EndpointId>) -> HttpResult {
    let q = &caller.query;
    let event_types = any_of(&q.event_type, "eventType", "an event type of the catalog", EventType::parse)?;
    let statuses = any_of(&q.status, "status", "pending, delivering, delivered, failed or abandoned", DeliveryStatus::parse)?;
    let page = page_request(&app, q.limit.as_deref(), q.cursor.as_deref(), "deliveries", 25, 100)?;
    json_response(StatusCode::OK, &page_view(app.strata.list_deliveries(&caller, id, &event_types, &statuses, page).await?))
}

/// Read a delivery with its attempts.
///
/// The delivery object whose `attempts` lists its newest 100 attempts, newest first.
#[utoipa::path(get, path = "/v1/webhook-deliveries/{deliveryId}", tag = "Webhooks", operation_id = "getDelivery",
    security(("bearer" = ["webhooks:read"])), params(DeliveryPath),
    responses((status = 200, description = "The delivery and its attempts.", body = DeliveryDetail)))]
pub async fn delivery(State(app): State<AppState>, caller: Auth, Id(id): Id<DeliveryId>) -> HttpResult {
    json_response(StatusCode::OK, &app.strata.get_delivery(&caller, id).await?)
}

/// Which deliveries to re-queue.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RecoverDeliveries)]
struct RecoverBody {
    /// Failed and abandoned deliveries created at or after this instant (must end in `Z`).
    #[schema(value_type = Timestamp)]
    since: String,
}

/// Re-queue failed deliveries.
///
/// Puts the endpoint's failed and abandoned deliveries created since `since` back on the first
/// rung of the retry ladder.
#[utoipa::path(post, path = "/v1/webhook-endpoints/{endpointId}/recover", tag = "Webhooks", operation_id = "recoverDeliveries",
    security(("bearer" = ["webhooks:write"])), params(EndpointPath),
    request_body(content = RecoverBody, example = json!({"since": "2026-06-01T00:00:00.000Z"})),
    responses((status = 200, description = "How many deliveries were re-queued.", body = RecoverView)))]
pub async fn recover(State(app): State<AppState>, Id(id): Id<EndpointId>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, StatusCode::OK, |claim| async move {
        let b: RecoverBody = parse_json(&w.body)?;
        let since = Timestamp::parse_query(&b.since, "since")?;
        app.strata.recover_endpoint(&w.caller, id, since, claim.as_ref()).await
    })
    .await
}

/// Replay a delivery.
///
/// The same event, under a new event id with top-level `replayOf`, to the same endpoint only.
#[utoipa::path(post, path = "/v1/webhook-deliveries/{deliveryId}/replay", tag = "Webhooks", operation_id = "replayDelivery",
    security(("bearer" = ["webhooks:write"])), params(DeliveryPath),
    responses((status = 200, description = "The new delivery.", body = ReplayView)))]
pub async fn replay(State(app): State<AppState>, Id(id): Id<DeliveryId>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, StatusCode::OK, |claim| async move {
        super::no_fields(&w.body)?;
        app.strata.replay_delivery(&w.caller, id, claim.as_ref()).await
    })
    .await
}
