//! Credits: wallets, the ledger, allocation and the credit config.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value};
use strata_core::clock::Timestamp;
use strata_core::credits::{CREDIT_EVENT_TYPES, CreditConfigPatch, CreditEventFilter, Credits, PositiveCredits};
use strata_core::error::CoreError;
use strata_core::id::{OrgId, ProjectId};
use strata_core::metadata::Metadata;
use strata_core::service::{Allocation, AllocationView, ConfigReplyView, CreditEventView, CreditsView};
use strata_core::wire::PageView;
use utoipa::{IntoParams, ToSchema};

use super::{any_of, only_fields, page_request, page_view};
use crate::AppState;
use crate::error::HttpResult;
use crate::extract::{Auth, Id, parse_json};
use crate::params::OrgPath;
use crate::write::{Write, json_response};

/// Read the caller's wallet.
///
/// `balance` = `includedRemaining` + `prepaidBalance`; `available` = `balance` − `reservedCredits`
/// (gate spending on it). Periods are calendar months, UTC.
#[utoipa::path(get, path = "/v1/credits", tag = "Credits", operation_id = "getCredits",
    security(("bearer" = ["credits:read"])),
    responses((status = 200, description = "The wallet.", body = CreditsView)))]
pub async fn own(State(app): State<AppState>, caller: Auth) -> HttpResult {
    json_response(StatusCode::OK, &app.strata.own_credits(&caller).await?)
}

/// Read a child's wallet.
#[utoipa::path(get, path = "/v1/organizations/{orgId}/credits", tag = "Credits", operation_id = "getChildCredits",
    security(("bearer" = ["org:admin"])), params(OrgPath),
    responses((status = 200, description = "The child's wallet.", body = CreditsView)))]
pub async fn child(State(app): State<AppState>, caller: Auth, Id(org): Id<OrgId>) -> HttpResult {
    json_response(StatusCode::OK, &app.strata.child_credits(&caller, org).await?)
}

/// The query of the credit ledger (`GET …/credits/events`; parsed strictly, and read by the
/// OpenAPI document).
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct EventsQuery {
    /// Only events of this project.
    #[param(value_type = Option<ProjectId>)]
    project_id: Option<String>,
    /// Only events of any of these kinds (the parameter may repeat).
    #[serde(default)]
    #[param(value_type = Option<Vec<strata_core::schema::CreditEventType>>, inline, style = Form, explode)]
    event_type: Vec<String>,
    /// From this instant on (inclusive; must end in `Z`).
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

fn event_filter(q: &EventsQuery) -> Result<CreditEventFilter, CoreError> {
    let event_types = any_of(&q.event_type, "eventType", "usage, refund, grant, purchase, adjustment or allocation", |t| {
        CREDIT_EVENT_TYPES.contains(&t).then(|| t.to_owned())
    })?;
    Ok(CreditEventFilter {
        project_id: q.project_id.as_deref().map(|s| ProjectId::parse_field(s, "projectId")).transpose()?,
        event_types,
        since: q.since.as_deref().map(|s| Timestamp::parse_query(s, "since")).transpose()?,
        until: q.until.as_deref().map(|s| Timestamp::parse_query(s, "until")).transpose()?,
    })
}

/// List the caller's credit ledger.
///
/// Every movement of the wallet, newest first, with its signed `credits`.
#[utoipa::path(get, path = "/v1/credits/events", tag = "Credits", operation_id = "listCreditEvents",
    security(("bearer" = ["credits:read"])), params(EventsQuery),
    responses((status = 200, description = "A page of ledger events.", body = PageView<CreditEventView>)))]
pub async fn own_events(State(app): State<AppState>, caller: Auth<EventsQuery>) -> HttpResult {
    let q = &caller.query;
    let filter = event_filter(q)?;
    let page = page_request(&app, q.limit.as_deref(), q.cursor.as_deref(), "credit-events", 25, 100)?;
    json_response(StatusCode::OK, &page_view(app.strata.credit_events(&caller, None, &filter, page).await?))
}

/// List a child's credit ledger.
#[utoipa::path(get, path = "/v1/organizations/{orgId}/credits/events", tag = "Credits", operation_id = "listChildCreditEvents",
    security(("bearer" = ["org:admin"])), params(OrgPath, EventsQuery),
    responses((status = 200, description = "A page of the child's ledger events.", body = PageView<CreditEventView>)))]
pub async fn child_events(State(app): State<AppState>, caller: Auth<EventsQuery>, Id(org): Id<OrgId>) -> HttpResult {
    let q = &caller.query;
    let filter = event_filter(q)?;
    let page = page_request(&app, q.limit.as_deref(), q.cursor.as_deref(), "credit-events", 25, 100)?;
    json_response(StatusCode::OK, &page_view(app.strata.credit_events(&caller, Some(org), &filter, page).await?))
}

/// Credits to move from the caller's prepaid balance into a child's.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = AllocateCredits)]
struct AllocateBody {
    /// A whole number of credits above zero; above the largest accepted value is 422 naming it in
    /// `details.max`.
    #[schema(value_type = PositiveCredits)]
    credits: Value,
    /// At most 500 characters.
    #[serde(default)]
    #[schema(max_length = 500)]
    description: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Metadata>)]
    metadata: Option<Value>,
}

/// The credit config: a number sets, `null` clears, an omitted field is unchanged.
#[derive(ToSchema)]
#[schema(as = UpdateCreditConfig)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[expect(dead_code, reason = "describes the body `update_config` reads as a map (absent and null differ)")]
struct ConfigBody {
    /// The credits the org may consume in one period; a generation over it is 402.
    #[schema(value_type = Option<Credits>)]
    monthly_credit_cap: Option<Option<i64>>,
    /// Refill when `available` drops below this. Set together with `refillAmount`, or neither
    /// (else 422, `details.code: "REFILL_REQUIRES_THRESHOLD_AND_AMOUNT"`).
    #[schema(value_type = Option<Credits>)]
    refill_threshold: Option<Option<i64>>,
    /// Credits moved from the parent per refill.
    #[schema(value_type = Option<PositiveCredits>)]
    refill_amount: Option<Option<i64>>,
}

/// Allocate credits to a child.
///
/// Moves credits out of the caller's prepaid balance into the child's, recorded on both ledgers
/// as `allocation` events sharing `metadata.transferId`. `balance` and `available` are the
/// child's after the move. The Idempotency-Key is required: a replay returns the same `txn_` id
/// with `"replayed": true`.
#[utoipa::path(post, path = "/v1/organizations/{orgId}/credits/allocate", tag = "Credits", operation_id = "allocateCredits",
    security(("bearer" = ["org:admin"])),
    params(OrgPath, ("Idempotency-Key" = String, Header, description = "Required.")),
    request_body(content = AllocateBody, example = json!({"credits": 5000})),
    responses(
        (status = 201, description = "The transfer and the child's wallet after it.", body = AllocationView,
            example = json!({"id": "txn_7f3a2b1c-9d8e-4f0a-b1c2-3d4e5f6a7b8c", "organizationId": "org_d4e5f6a7-8b9c-4d0e-9f2a-3b4c5d6e7f80",
                "allocated": 5000, "balance": 5000, "available": 5000, "description": null, "metadata": {},
                "created": "2026-06-03T18:14:02.187Z", "replayed": false})),
        (status = 400, description = "IDEMPOTENCY_REQUIRED: no Idempotency-Key."),
        (status = 402, description = "BILLING_EXHAUSTED: the caller's prepaid balance cannot cover it."),
        (status = 409, description = "CONFLICT: the child is archived; or IDEMPOTENCY_CONFLICT."),
    ))]
pub async fn allocate(State(app): State<AppState>, Id(org): Id<OrgId>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run_keyed(app, StatusCode::CREATED, |claim| async move {
        let b: AllocateBody = parse_json(&w.body)?;
        let credits = Credits::positive("credits", &b.credits)?;
        if b.description.as_ref().is_some_and(|d| d.chars().count() > 500) {
            return Err(CoreError::validation("description", "must be at most 500 characters"));
        }
        let req = Allocation { credits, description: b.description, metadata: Metadata::parse_create(b.metadata.as_ref(), "metadata")? };
        app.strata.allocate(&w.caller, org, req, claim.as_ref()).await
    })
    .await
}

/// Read a child's credit config.
#[utoipa::path(get, path = "/v1/organizations/{orgId}/credit-config", tag = "Credits", operation_id = "getCreditConfig",
    security(("bearer" = ["org:admin"])), params(OrgPath),
    responses((status = 200, description = "The config and the child's wallet.", body = ConfigReplyView)))]
pub async fn config(State(app): State<AppState>, caller: Auth, Id(org): Id<OrgId>) -> HttpResult {
    json_response(StatusCode::OK, &app.strata.credit_config(&caller, org).await?)
}

/// Reads one config field: absent → unchanged, null → cleared, else an amount `read` accepts.
fn config_field(
    obj: &Map<String, Value>,
    name: &str,
    read: fn(&str, &Value) -> Result<Credits, CoreError>,
) -> Result<Option<Option<Credits>>, CoreError> {
    match obj.get(name) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(v) => read(name, v).map(|n| Some(Some(n))),
    }
}

/// Set a child's cap and auto-refill.
///
/// Caps the child's monthly spend and tops it up from the caller's wallet whenever its
/// `available` drops below `refillThreshold` (one refill per crossing, in the same transaction as
/// the spend that crossed it). `autoRefillEnabled` is derived: both refill fields set.
#[utoipa::path(patch, path = "/v1/organizations/{orgId}/credit-config", tag = "Credits", operation_id = "updateCreditConfig",
    security(("bearer" = ["org:admin"])), params(OrgPath),
    request_body(content = ConfigBody, example = json!({"monthlyCreditCap": 5000, "refillThreshold": 1000, "refillAmount": 2000})),
    responses((status = 200, description = "The config after the change and the child's wallet.", body = ConfigReplyView,
        example = json!({"organizationId": "org_d4e5f6a7-8b9c-4d0e-9f2a-3b4c5d6e7f80",
            "config": {"monthlyCreditCap": 5000, "refillThreshold": 1000, "refillAmount": 2000, "autoRefillEnabled": true},
            "balance": 5000, "available": 5000}))))]
pub async fn update_config(State(app): State<AppState>, Id(org): Id<OrgId>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, StatusCode::OK, |claim| async move {
        let obj: Map<String, Value> = parse_json(&w.body)?;
        only_fields(&obj, &["monthlyCreditCap", "refillThreshold", "refillAmount"])?;
        let patch = CreditConfigPatch {
            monthly_credit_cap: config_field(&obj, "monthlyCreditCap", Credits::non_negative)?,
            refill_threshold: config_field(&obj, "refillThreshold", Credits::non_negative)?,
            refill_amount: config_field(&obj, "refillAmount", Credits::positive)?,
        };
        app.strata.update_credit_config(&w.caller, org, patch, claim.as_ref()).await
    })
    .await
}
