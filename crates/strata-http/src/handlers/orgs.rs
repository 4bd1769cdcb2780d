//! Child organizations: `/v1/organizations…`.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value};
use strata_core::error::CoreError;
use strata_core::id::OrgId;
use strata_core::metadata::{Metadata, MetadataPatch};
use strata_core::org::{Lifecycle, OrgFilter, OrgStatus, SearchPrefix, parse_email, parse_name};
use strata_core::service::{ArchivedView, ChildView, OrgWithSummary};
use strata_core::service::{NewChild, OrgPatch};
use strata_core::wire::{OrgView, PageView};
use utoipa::{IntoParams, ToSchema};

use super::{any_of, no_fields, nullable_string, only_fields, page_request, page_view};
use crate::AppState;
use crate::error::HttpResult;
use crate::extract::{Auth, Id, parse_json};
use crate::params::OrgPath;
use crate::write::{Write, json_response};

/// A new child organization.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = CreateOrganization)]
struct CreateBody {
    /// 1–128 characters.
    #[schema(min_length = 1, max_length = 128)]
    name: String,
    #[serde(default)]
    #[schema(value_type = Option<Metadata>)]
    metadata: Option<Value>,
    /// Where the child's invoices go.
    #[serde(default)]
    #[schema(format = Email)]
    billing_email: Option<String>,
}

/// A change to a child organization: only the fields sent change. `status` is not editable here
/// (422; use suspend, resume or DELETE).
#[derive(ToSchema)]
#[schema(as = UpdateOrganization)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[expect(dead_code, reason = "describes the body `update` reads as a map (absent and null differ)")]
struct UpdateBody {
    /// 1–128 characters.
    #[schema(min_length = 1, max_length = 128, nullable = false)]
    name: Option<String>,
    metadata: Option<MetadataPatch>,
    /// `null` clears it.
    #[schema(format = Email)]
    billing_email: Option<Option<String>>,
}

const ORG_EXAMPLE: &str = r#"{"id": "org_d4e5f6a7-8b9c-4d0e-9f2a-3b4c5d6e7f80", "parentOrganizationId": "org_2481fa5c-a404-44ed-a561-565392499abc",
  "name": "Acme Coffee", "status": "active", "metadata": {"externalId": "acme-coffee", "plan": "growth"}, "billingEmail": null,
  "archivedAt": null, "createdAt": "2026-06-01T14:30:00.000Z", "updatedAt": "2026-06-01T14:30:00.000Z"}"#;

/// Create a child organization.
///
/// Creates a child org (one per end-customer) under the caller's partner org, with an empty
/// wallet. A child cannot create children (the hierarchy is one level deep: 422).
#[utoipa::path(post, path = "/v1/organizations", tag = "Organizations", operation_id = "createOrganization",
    security(("bearer" = ["org:admin"])),
    request_body(content = CreateBody, example = json!({"name": "Acme Coffee", "metadata": {"externalId": "acme-coffee", "plan": "growth"}})),
    responses((status = 201, description = "The new child organization.", body = OrgView, example = json!(serde_json::from_str::<serde_json::Value>(ORG_EXAMPLE).unwrap_or_default()))))]
pub async fn create(State(app): State<AppState>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, StatusCode::CREATED, |claim| async move {
        let b: CreateBody = parse_json(&w.body)?;
        let cmd = NewChild {
            name: parse_name(&b.name, "name", 128)?,
            metadata: Metadata::parse_create(b.metadata.as_ref(), "metadata")?,
            billing_email: b.billing_email.as_deref().map(|e| parse_email(e, "billingEmail")).transpose()?,
        };
        app.strata.create_child(&w.caller, cmd, claim.as_ref()).await
    })
    .await
}

/// The query of `GET /v1/organizations` (parsed strictly; the OpenAPI document reads the same
/// struct).
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct ListQuery {
    /// Only children in any of these statuses (the parameter may repeat).
    #[serde(default)]
    #[param(value_type = Option<Vec<OrgStatus>>, inline, style = Form, explode)]
    status: Vec<String>,
    /// Exactly this `metadata.externalId`.
    external_id: Option<String>,
    /// A case-insensitive prefix of the name or of `metadata.externalId`.
    search: Option<String>,
    /// `summary`: each child with its `summary`, from the same read.
    #[param(pattern = "^summary$")]
    expand: Option<String>,
    /// Page size.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200, default = 25)]
    limit: Option<String>,
    /// The previous page's `nextCursor` (opaque; a tampered cursor is 422).
    #[param(min_length = 1)]
    cursor: Option<String>,
}

/// List child organizations.
///
/// The caller's direct children, newest first, filtered by status (any of several), by
/// `metadata.externalId` exactly, or by a case-insensitive prefix of the name or the external id;
/// `expand=summary` adds each child's `summary` from the same read.
#[utoipa::path(get, path = "/v1/organizations", tag = "Organizations", operation_id = "listOrganizations",
    security(("bearer" = ["org:admin"])), params(ListQuery),
    responses((status = 200, description = "A page of child organizations.", body = PageView<ChildView>)))]
pub async fn list(State(app): State<AppState>, caller: Auth<ListQuery>) -> HttpResult {
    let q = &caller.query;
    let statuses = any_of(&q.status, "status", "active, suspended or archived", OrgStatus::parse)?;
    let filter = OrgFilter { statuses, external_id: q.external_id.clone(), search: q.search.as_deref().and_then(SearchPrefix::new) };
    let summaries = match q.expand.as_deref() {
        None => false,
        Some("summary") => true,
        Some(_) => return Err(CoreError::validation("expand", "must be summary").into()),
    };
    let page = page_request(&app, q.limit.as_deref(), q.cursor.as_deref(), "orgs", 25, 200)?;
    json_response(StatusCode::OK, &page_view(app.strata.list_children(&caller, &filter, summaries, page).await?))
}

/// Read a child organization.
///
/// The child with a `summary`: its project count, `balance` (gross wallet), `available` (net of
/// reservations: gate spending on it) and credit config.
#[utoipa::path(get, path = "/v1/organizations/{orgId}", tag = "Organizations", operation_id = "getOrganization",
    security(("bearer" = ["org:admin"])), params(OrgPath),
    responses((status = 200, description = "The child organization and its summary.", body = OrgWithSummary,
        example = json!({"id": "org_d4e5f6a7-8b9c-4d0e-9f2a-3b4c5d6e7f80", "parentOrganizationId": "org_2481fa5c-a404-44ed-a561-565392499abc",
            "name": "Acme Coffee", "status": "active", "metadata": {"externalId": "acme-coffee"}, "billingEmail": null, "archivedAt": null,
            "createdAt": "2026-06-01T14:30:00.000Z", "updatedAt": "2026-06-01T14:30:00.000Z",
            "summary": {"projectCount": 1, "balance": 5000, "available": 5000,
                "creditConfig": {"monthlyCreditCap": 5000, "refillThreshold": 1000, "refillAmount": 2000, "autoRefillEnabled": true}}}))))]
pub async fn get(State(app): State<AppState>, caller: Auth, Id(id): Id<OrgId>) -> HttpResult {
    json_response(StatusCode::OK, &app.strata.get_child(&caller, id).await?)
}

/// Update a child organization.
///
/// Changes the name, merges metadata key by key, sets or clears the billing email. An archived
/// child cannot be edited (409).
#[utoipa::path(patch, path = "/v1/organizations/{orgId}", tag = "Organizations", operation_id = "updateOrganization",
    security(("bearer" = ["org:admin"])), params(OrgPath),
    request_body(content = UpdateBody, example = json!({"metadata": {"plan": "scale"}, "billingEmail": "billing@acme-coffee.example"})),
    responses((status = 200, description = "The child organization after the change.", body = OrgView)))]
pub async fn update(State(app): State<AppState>, Id(id): Id<OrgId>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, StatusCode::OK, |claim| async move {
        let obj: Map<String, Value> = parse_json(&w.body)?;
        if obj.contains_key("status") {
            return Err(CoreError::validation("status", "is not editable here; use suspend, resume or DELETE"));
        }
        only_fields(&obj, &["name", "metadata", "billingEmail"])?;
        let name = match obj.get("name") {
            None => None,
            Some(Value::String(s)) => Some(parse_name(s, "name", 128)?),
            Some(_) => return Err(CoreError::validation("name", "must be a string")),
        };
        let patch = OrgPatch {
            name,
            metadata: obj.get("metadata").map(|v| MetadataPatch::parse(v, "metadata")).transpose()?,
            billing_email: nullable_string(&obj, "billingEmail")?
                .map(|e| e.map(|s| parse_email(&s, "billingEmail")).transpose())
                .transpose()?,
        };
        app.strata.update_child(&w.caller, id, patch, claim.as_ref()).await
    })
    .await
}

async fn lifecycle(app: &AppState, id: OrgId, w: &Write, req: Lifecycle) -> HttpResult {
    w.run(app, StatusCode::OK, |claim| async move {
        no_fields(&w.body)?;
        app.strata.change_child_lifecycle(&w.caller, id, req, claim.as_ref()).await
    })
    .await
}

/// Suspend a child organization.
///
/// The kill switch for a customer: its own keys get 503 KILL_SWITCH (whoami still answers), no
/// generation starts, its webhook deliveries and scheduled work hold. Suspending a suspended org
/// answers its state; an archived one is 409.
#[utoipa::path(post, path = "/v1/organizations/{orgId}/suspend", tag = "Organizations", operation_id = "suspendOrganization",
    security(("bearer" = ["org:admin"])), params(OrgPath),
    responses((status = 200, description = "The child organization, suspended.", body = OrgView)))]
pub async fn suspend(State(app): State<AppState>, Id(id): Id<OrgId>, w: Write) -> HttpResult {
    lifecycle(&app, id, &w, Lifecycle::Suspend).await
}

/// Resume a child organization.
///
/// Lifts a suspension; held deliveries and scheduled work flow again. Resuming an active org
/// answers its state; an archived one is 409.
#[utoipa::path(post, path = "/v1/organizations/{orgId}/resume", tag = "Organizations", operation_id = "resumeOrganization",
    security(("bearer" = ["org:admin"])), params(OrgPath),
    responses((status = 200, description = "The child organization, active.", body = OrgView)))]
pub async fn resume(State(app): State<AppState>, Id(id): Id<OrgId>, w: Write) -> HttpResult {
    lifecycle(&app, id, &w, Lifecycle::Resume).await
}

/// Archive a child organization.
///
/// Offboards a customer atomically: revokes every key of the child, sweeps its unspent,
/// unreserved credits back to the parent (`reclaimedCredits`), cancels its scheduled posts,
/// abandons its pending deliveries and moves it to the terminal `archived`. Archiving an archived
/// org answers its terminal state.
#[utoipa::path(delete, path = "/v1/organizations/{orgId}", tag = "Organizations", operation_id = "archiveOrganization",
    security(("bearer" = ["org:admin"])), params(OrgPath),
    responses((status = 200, description = "The archived organization.", body = ArchivedView,
        example = json!({"id": "org_d4e5f6a7-8b9c-4d0e-9f2a-3b4c5d6e7f80", "status": "archived", "archivedAt": "2026-06-02T13:00:00.000Z",
            "reclaimedCredits": 3200, "revokedApiKeys": 2}))))]
pub async fn archive(State(app): State<AppState>, Id(id): Id<OrgId>, w: Write) -> HttpResult {
    lifecycle(&app, id, &w, Lifecycle::Archive).await
}
