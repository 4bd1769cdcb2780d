//! Child organizations: `/v1/organizations…`.

use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Map, Value};
use strata_core::error::CoreError;
use strata_core::id::OrgId;
use strata_core::metadata::{Metadata, MetadataPatch};
use strata_core::org::{Lifecycle, OrgFilter, OrgStatus, SearchPrefix, parse_email, parse_name};
use strata_core::service::{NewChild, OrgPatch};

use super::{no_fields, nullable_string, only_fields, page_reply, page_request};
use crate::AppState;
use crate::error::HttpResult;
use crate::extract::{Auth, parse_json};
use crate::write::{Write, reply_response};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateBody {
    name: String,
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(default)]
    billing_email: Option<String>,
}

fn org_id(raw: &str) -> Result<OrgId, CoreError> {
    OrgId::parse_field(raw, "orgId")
}

/// `POST /v1/organizations`.
pub async fn create(State(app): State<AppState>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, |claim| async move {
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

/// The query of `GET /v1/organizations`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListQuery {
    /// Any of these (the parameter may repeat).
    #[serde(default)]
    status: Vec<String>,
    /// `metadata.externalId`, exactly.
    external_id: Option<String>,
    /// A case-insensitive prefix of the name or of `metadata.externalId`.
    search: Option<String>,
    /// `summary`: each child with its summary.
    expand: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// `GET /v1/organizations`.
pub async fn list(State(app): State<AppState>, caller: Auth<ListQuery>) -> HttpResult {
    let q = &caller.query;
    let statuses = q
        .status
        .iter()
        .map(|s| OrgStatus::parse(s).ok_or_else(|| CoreError::validation("status", "must be active, suspended or archived")))
        .collect::<Result<_, _>>()?;
    let filter = OrgFilter { statuses, external_id: q.external_id.clone(), search: q.search.as_deref().and_then(SearchPrefix::new) };
    let summaries = match q.expand.as_deref() {
        None => false,
        Some("summary") => true,
        Some(_) => return Err(CoreError::validation("expand", "must be summary").into()),
    };
    let page = page_request(&app, q.limit.as_deref(), q.cursor.as_deref(), "orgs", 25, 200)?;
    Ok(reply_response(page_reply(app.strata.list_children(&caller, &filter, summaries, page).await?)))
}

/// `GET /v1/organizations/:orgId`.
pub async fn get(State(app): State<AppState>, caller: Auth, Path(id): Path<String>) -> HttpResult {
    let id = org_id(&id)?;
    Ok(reply_response(app.strata.get_child(&caller, id).await?))
}

/// `PATCH /v1/organizations/:orgId`.
pub async fn update(State(app): State<AppState>, Path(id): Path<String>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, |claim| async move {
        let id = org_id(&id)?;
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

async fn lifecycle(app: &AppState, id: String, w: &Write, req: Lifecycle) -> HttpResult {
    w.run(app, |claim| async move {
        let id = org_id(&id)?;
        no_fields(&w.body)?;
        app.strata.change_child_lifecycle(&w.caller, id, req, claim.as_ref()).await
    })
    .await
}

/// `POST /v1/organizations/:orgId/suspend`.
pub async fn suspend(State(app): State<AppState>, Path(id): Path<String>, w: Write) -> HttpResult {
    lifecycle(&app, id, &w, Lifecycle::Suspend).await
}

/// `POST /v1/organizations/:orgId/resume`.
pub async fn resume(State(app): State<AppState>, Path(id): Path<String>, w: Write) -> HttpResult {
    lifecycle(&app, id, &w, Lifecycle::Resume).await
}

/// `DELETE /v1/organizations/:orgId`: archive.
pub async fn archive(State(app): State<AppState>, Path(id): Path<String>, w: Write) -> HttpResult {
    lifecycle(&app, id, &w, Lifecycle::Archive).await
}
