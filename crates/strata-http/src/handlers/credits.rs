//! Credits: wallets, the ledger, allocation and the credit config.

use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Map, Value};
use strata_core::clock::Timestamp;
use strata_core::credits::{CREDIT_EVENT_TYPES, CreditConfigPatch, CreditEventFilter, credit_amount};
use strata_core::error::CoreError;
use strata_core::id::{OrgId, ProjectId};
use strata_core::metadata::Metadata;
use strata_core::service::Allocation;

use super::{only_fields, page_reply, page_request};
use crate::AppState;
use crate::error::HttpResult;
use crate::extract::{Auth, parse_json};
use crate::write::{Write, reply_response};

fn org_id(raw: &str) -> Result<OrgId, CoreError> {
    OrgId::parse_field(raw, "orgId")
}

/// `GET /v1/credits`.
pub async fn own(State(app): State<AppState>, caller: Auth) -> HttpResult {
    Ok(reply_response(app.strata.own_credits(&caller).await?))
}

/// `GET /v1/organizations/:orgId/credits`.
pub async fn child(State(app): State<AppState>, caller: Auth, Path(org): Path<String>) -> HttpResult {
    let org = org_id(&org)?;
    Ok(reply_response(app.strata.child_credits(&caller, org).await?))
}

/// The query of the credit ledger (`GET …/credits/events`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EventsQuery {
    project_id: Option<String>,
    event_type: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

fn event_filter(q: &EventsQuery) -> Result<CreditEventFilter, CoreError> {
    let event_type = match q.event_type.as_deref() {
        None => None,
        Some(t) if CREDIT_EVENT_TYPES.contains(&t) => Some(t.to_owned()),
        Some(_) => return Err(CoreError::validation("eventType", "must be usage, refund, grant, purchase, adjustment or allocation")),
    };
    Ok(CreditEventFilter {
        project_id: q.project_id.as_deref().map(|s| ProjectId::parse_field(s, "projectId")).transpose()?,
        event_type,
        since: q.since.as_deref().map(|s| Timestamp::parse_query(s, "since")).transpose()?,
        until: q.until.as_deref().map(|s| Timestamp::parse_query(s, "until")).transpose()?,
    })
}

/// `GET /v1/credits/events`.
pub async fn own_events(State(app): State<AppState>, caller: Auth<EventsQuery>) -> HttpResult {
    let q = &caller.query;
    let filter = event_filter(q)?;
    let page = page_request(&app, q.limit.as_deref(), q.cursor.as_deref(), "credit-events", 25, 100)?;
    Ok(reply_response(page_reply(app.strata.credit_events(&caller, None, &filter, page).await?)))
}

/// `GET /v1/organizations/:orgId/credits/events`.
pub async fn child_events(State(app): State<AppState>, caller: Auth<EventsQuery>, Path(org): Path<String>) -> HttpResult {
    let org = org_id(&org)?;
    let q = &caller.query;
    let filter = event_filter(q)?;
    let page = page_request(&app, q.limit.as_deref(), q.cursor.as_deref(), "credit-events", 25, 100)?;
    Ok(reply_response(page_reply(app.strata.credit_events(&caller, Some(org), &filter, page).await?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AllocateBody {
    credits: Value,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    metadata: Option<Value>,
}

/// `POST /v1/organizations/:orgId/credits/allocate` (Idempotency-Key required).
pub async fn allocate(State(app): State<AppState>, Path(org): Path<String>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run_keyed(app, |claim| async move {
        let org = org_id(&org)?;
        let b: AllocateBody = parse_json(&w.body)?;
        let credits = credit_amount("credits", &b.credits, 1)?;
        if b.description.as_ref().is_some_and(|d| d.chars().count() > 500) {
            return Err(CoreError::validation("description", "must be at most 500 characters"));
        }
        let req = Allocation { credits, description: b.description, metadata: Metadata::parse_create(b.metadata.as_ref(), "metadata")? };
        app.strata.allocate(&w.caller, org, req, claim.as_ref()).await
    })
    .await
}

/// `GET /v1/organizations/:orgId/credit-config`.
pub async fn config(State(app): State<AppState>, caller: Auth, Path(org): Path<String>) -> HttpResult {
    let org = org_id(&org)?;
    Ok(reply_response(app.strata.credit_config(&caller, org).await?))
}

/// Reads one config field: absent → unchanged, null → cleared, a number within `min..`.
fn config_field(obj: &Map<String, Value>, name: &str, min: i64) -> Result<Option<Option<i64>>, CoreError> {
    match obj.get(name) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(v) => credit_amount(name, v, min).map(|n| Some(Some(n))),
    }
}

/// `PATCH /v1/organizations/:orgId/credit-config`.
pub async fn update_config(State(app): State<AppState>, Path(org): Path<String>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, |claim| async move {
        let org = org_id(&org)?;
        let obj: Map<String, Value> = parse_json(&w.body)?;
        only_fields(&obj, &["monthlyCreditCap", "refillThreshold", "refillAmount"])?;
        let patch = CreditConfigPatch {
            monthly_credit_cap: config_field(&obj, "monthlyCreditCap", 0)?,
            refill_threshold: config_field(&obj, "refillThreshold", 0)?,
            refill_amount: config_field(&obj, "refillAmount", 1)?,
        };
        app.strata.update_credit_config(&w.caller, org, patch, claim.as_ref()).await
    })
    .await
}
