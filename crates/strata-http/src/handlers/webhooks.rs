//! Webhook endpoints and deliveries (`/v1/webhook-endpoints…`, `/v1/webhook-deliveries…`).

use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Map, Value};
use strata_core::clock::Timestamp;
use strata_core::error::CoreError;
use strata_core::event::EventType;
use strata_core::id::{DeliveryId, EndpointId, ProjectId};
use strata_core::metadata::{Metadata, MetadataPatch};
use strata_core::service::{EndpointPatch, NewEndpoint};
use strata_core::webhook::{DeliveryStatus, EndpointScope, EndpointStatus};

use super::{nullable_string, only_fields, page_reply, page_request};
use crate::AppState;
use crate::error::HttpResult;
use crate::extract::{Auth, parse_json};
use crate::write::{Write, reply_response};

fn endpoint_id(raw: &str) -> Result<EndpointId, CoreError> {
    EndpointId::parse_field(raw, "endpointId")
}

fn parse_events(v: &Value) -> Result<Vec<EventType>, CoreError> {
    let list = v.as_array().ok_or_else(|| CoreError::validation("events", "must be a list of event types"))?;
    if list.is_empty() || list.len() > 50 {
        return Err(CoreError::validation("events", "must name 1–50 event types"));
    }
    let mut out = Vec::new();
    for e in list {
        let name = e.as_str().unwrap_or_default();
        let ty = EventType::parse(name).ok_or_else(|| CoreError::validation("events", format!("{e} is not an event type")))?;
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateBody {
    url: String,
    events: Value,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(default)]
    project_id: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

/// `POST /v1/webhook-endpoints`.
pub async fn create(State(app): State<AppState>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, |claim| async move {
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

/// The query of `GET /v1/webhook-endpoints`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListQuery {
    project_id: Option<String>,
    status: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// `GET /v1/webhook-endpoints`.
pub async fn list(State(app): State<AppState>, caller: Auth<ListQuery>) -> HttpResult {
    let q = &caller.query;
    let project = q.project_id.as_deref().map(|p| ProjectId::parse_field(p, "projectId")).transpose()?;
    let status = q
        .status
        .as_deref()
        .map(|s| EndpointStatus::parse(s).ok_or_else(|| CoreError::validation("status", "must be active, paused or auto_paused")))
        .transpose()?;
    let page = page_request(&app, q.limit.as_deref(), q.cursor.as_deref(), "endpoints", 25, 100)?;
    Ok(reply_response(page_reply(app.strata.list_endpoints(&caller, project, status, page).await?)))
}

/// `GET /v1/webhook-endpoints/:id`.
pub async fn get(State(app): State<AppState>, caller: Auth, Path(id): Path<String>) -> HttpResult {
    Ok(reply_response(app.strata.get_endpoint(&caller, endpoint_id(&id)?).await?))
}

/// `PATCH /v1/webhook-endpoints/:id`.
pub async fn update(State(app): State<AppState>, Path(id): Path<String>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, |claim| async move {
        let id = endpoint_id(&id)?;
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

/// `DELETE /v1/webhook-endpoints/:id`.
pub async fn delete(State(app): State<AppState>, Path(id): Path<String>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, |claim| async move {
        let id = endpoint_id(&id)?;
        super::no_fields(&w.body)?;
        app.strata.delete_endpoint(&w.caller, id, claim.as_ref()).await
    })
    .await
}

/// `POST /v1/webhook-endpoints/:id/rotate-secret`.
pub async fn rotate(State(app): State<AppState>, Path(id): Path<String>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, |claim| async move {
        let id = endpoint_id(&id)?;
        super::no_fields(&w.body)?;
        app.strata.rotate_endpoint_secret(&w.caller, id, claim.as_ref()).await
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestBody {
    #[serde(default)]
    payload: Option<Value>,
}

/// `POST /v1/webhook-endpoints/:id/test`.
pub async fn test(State(app): State<AppState>, Path(id): Path<String>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, |claim| async move {
        let id = endpoint_id(&id)?;
        let b: TestBody = parse_json(&w.body)?;
        app.strata.test_endpoint(&w.caller, id, b.payload, claim.as_ref()).await
    })
    .await
}

/// The query of `GET /v1/webhook-endpoints/:id/deliveries`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DeliveriesQuery {
    event_type: Option<String>,
    status: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// `GET /v1/webhook-endpoints/:id/deliveries`.
pub async fn deliveries(State(app): State<AppState>, caller: Auth<DeliveriesQuery>, Path(id): Path<String>) -> HttpResult {
    let id = endpoint_id(&id)?;
    let q = &caller.query;
    let event_type = match q.event_type.as_deref() {
        None => None,
        Some(t) => Some(EventType::parse(t).ok_or_else(|| CoreError::validation("eventType", "is not an event type"))?.as_str()),
    };
    let status = q
        .status
        .as_deref()
        .map(|s| {
            DeliveryStatus::parse(s)
                .ok_or_else(|| CoreError::validation("status", "must be pending, delivering, delivered, failed or abandoned"))
        })
        .transpose()?;
    let page = page_request(&app, q.limit.as_deref(), q.cursor.as_deref(), "deliveries", 25, 100)?;
    Ok(reply_response(page_reply(app.strata.list_deliveries(&caller, id, event_type, status, page).await?)))
}

/// `GET /v1/webhook-deliveries/:deliveryId`: the delivery with its attempts, newest first.
pub async fn delivery(State(app): State<AppState>, caller: Auth, Path(id): Path<String>) -> HttpResult {
    let id = DeliveryId::parse_field(&id, "deliveryId")?;
    Ok(reply_response(app.strata.get_delivery(&caller, id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecoverBody {
    since: String,
}

/// `POST /v1/webhook-endpoints/:id/recover` `{since}`: re-queues failed and abandoned deliveries.
pub async fn recover(State(app): State<AppState>, Path(id): Path<String>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, |claim| async move {
        let id = endpoint_id(&id)?;
        let b: RecoverBody = parse_json(&w.body)?;
        let since = Timestamp::parse_query(&b.since, "since")?;
        app.strata.recover_endpoint(&w.caller, id, since, claim.as_ref()).await
    })
    .await
}

/// `POST /v1/webhook-deliveries/:id/replay`.
pub async fn replay(State(app): State<AppState>, Path(id): Path<String>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, |claim| async move {
        let id = DeliveryId::parse_field(&id, "deliveryId")?;
        super::no_fields(&w.body)?;
        app.strata.replay_delivery(&w.caller, id, claim.as_ref()).await
    })
    .await
}
