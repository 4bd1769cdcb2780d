//! Projects (`/v1/projects…`) and the migration of flat projects into child orgs.

use std::collections::HashSet;

use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Map, Value};
use strata_core::error::CoreError;
use strata_core::id::ProjectId;
use strata_core::org::{parse_email, parse_name};
use strata_core::project::{ProjectFilter, ProjectStatus, parse_external_id, parse_language, parse_metadata, parse_timezone};
use strata_core::service::{NewProject, ProjectPatch};

use super::{nullable_string, only_fields, page_reply, page_request};
use crate::AppState;
use crate::error::HttpResult;
use crate::extract::{Auth, parse_json};
use crate::write::{Write, reply_response};

pub(crate) fn project_id(raw: &str) -> Result<ProjectId, CoreError> {
    ProjectId::parse_field(raw, "projectId")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateBody {
    #[serde(default)]
    id: Option<String>,
    name: String,
    timezone: String,
    #[serde(default)]
    customer_external_id: Option<String>,
    #[serde(default)]
    owner_email: Option<String>,
    #[serde(default)]
    primary_language: Option<String>,
    #[serde(default)]
    metadata: Option<Value>,
}

/// `POST /v1/projects`.
pub async fn create(State(app): State<AppState>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, |claim| async move {
        let b: CreateBody = parse_json(&w.body)?;
        let cmd = NewProject {
            id: b.id.as_deref().map(|s| ProjectId::parse_field(s, "id")).transpose()?,
            name: parse_name(&b.name, "name", 128)?,
            timezone: parse_timezone(&b.timezone, "timezone")?,
            customer_external_id: b.customer_external_id.as_deref().map(|s| parse_external_id(s, "customerExternalId")).transpose()?,
            owner_email: b.owner_email.as_deref().map(|s| parse_email(s, "ownerEmail")).transpose()?,
            primary_language: parse_language(b.primary_language.as_deref().unwrap_or("en"), "primaryLanguage")?,
            metadata: parse_metadata(b.metadata.as_ref(), "metadata")?,
        };
        app.strata.create_project(&w.caller, cmd, claim.as_ref()).await
    })
    .await
}

/// The query of `GET /v1/projects`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListQuery {
    status: Option<String>,
    search: Option<String>,
    customer_external_id: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// `GET /v1/projects`.
pub async fn list(State(app): State<AppState>, caller: Auth<ListQuery>) -> HttpResult {
    let q = &caller.query;
    let filter = ProjectFilter {
        status: q
            .status
            .as_deref()
            .map(|s| ProjectStatus::parse(s).ok_or_else(|| CoreError::validation("status", "must be active or archived")))
            .transpose()?,
        search: q.search.clone().filter(|s| !s.is_empty()),
        customer_external_id: q.customer_external_id.clone(),
    };
    let page = page_request(&app, q.limit.as_deref(), q.cursor.as_deref(), "projects", 25, 200)?;
    Ok(reply_response(page_reply(app.strata.list_projects(&caller, &filter, page).await?)))
}

/// `GET /v1/projects/:projectId`.
pub async fn get(State(app): State<AppState>, caller: Auth, Path(id): Path<String>) -> HttpResult {
    let id = project_id(&id)?;
    Ok(reply_response(app.strata.get_project(&caller, id).await?))
}

const READ_ONLY: [&str; 5] = ["id", "organizationId", "createdAt", "updatedAt", "archivedAt"];
const EDITABLE: [&str; 7] = ["name", "timezone", "customerExternalId", "ownerEmail", "primaryLanguage", "metadata", "status"];

fn parse_patch(obj: &Map<String, Value>) -> Result<ProjectPatch, CoreError> {
    if let Some(field) = READ_ONLY.iter().find(|f| obj.contains_key(**f)) {
        return Err(CoreError::ReadOnlyField { field: (*field).to_owned() });
    }
    only_fields(obj, &EDITABLE)?;
    let string = |name: &str| -> Result<Option<String>, CoreError> {
        match obj.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(CoreError::validation(name, "must be a string")),
        }
    };
    let reactivate = match obj.get("status") {
        None => false,
        Some(Value::String(s)) if s == "active" => true,
        Some(_) => return Err(CoreError::validation("status", "can only be set to \"active\" (archive with DELETE)")),
    };
    Ok(ProjectPatch {
        name: string("name")?.map(|s| parse_name(&s, "name", 128)).transpose()?,
        timezone: string("timezone")?.map(|s| parse_timezone(&s, "timezone")).transpose()?,
        customer_external_id: nullable_string(obj, "customerExternalId")?
            .map(|v| v.map(|s| parse_external_id(&s, "customerExternalId")).transpose())
            .transpose()?,
        owner_email: nullable_string(obj, "ownerEmail")?.map(|v| v.map(|s| parse_email(&s, "ownerEmail")).transpose()).transpose()?,
        primary_language: string("primaryLanguage")?.map(|s| parse_language(&s, "primaryLanguage")).transpose()?,
        metadata: obj.get("metadata").map(|m| parse_metadata(Some(m), "metadata")).transpose()?,
        reactivate,
    })
}

/// `PATCH /v1/projects/:projectId`.
pub async fn update(State(app): State<AppState>, Path(id): Path<String>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, |claim| async move {
        let id = project_id(&id)?;
        let obj: Map<String, Value> = parse_json(&w.body)?;
        let patch = parse_patch(&obj)?;
        app.strata.update_project(&w.caller, id, patch, claim.as_ref()).await
    })
    .await
}

/// `DELETE /v1/projects/:projectId`: soft archive.
pub async fn archive(State(app): State<AppState>, Path(id): Path<String>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, |claim| async move {
        let id = project_id(&id)?;
        super::no_fields(&w.body)?;
        app.strata.archive_project(&w.caller, id, claim.as_ref()).await
    })
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MigrateBody {
    mapping: Map<String, Value>,
}

/// `POST /v1/organizations/migrate`.
pub async fn migrate(State(app): State<AppState>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, |claim| async move {
        let b: MigrateBody = parse_json(&w.body)?;
        if b.mapping.is_empty() || b.mapping.len() > 1000 {
            return Err(CoreError::validation("mapping", "must map 1–1000 projects"));
        }
        let mut seen = HashSet::new();
        let mut mapping = Vec::with_capacity(b.mapping.len());
        for (k, v) in &b.mapping {
            let id = ProjectId::parse_field(k, "mapping")?;
            if !seen.insert(id) {
                return Err(CoreError::validation("mapping", format!("{id} appears twice")));
            }
            let name = v.as_str().ok_or_else(|| CoreError::validation("mapping", "values must be child organization names"))?;
            mapping.push((id, parse_name(name, "mapping", 128)?));
        }
        app.strata.migrate_projects(&w.caller, mapping, claim.as_ref()).await
    })
    .await
}
