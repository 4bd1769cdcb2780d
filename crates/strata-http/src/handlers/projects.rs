//! Projects (`/v1/projects…`) and the migration of flat projects into child orgs.

use std::collections::HashSet;

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value};
use strata_core::error::CoreError;
use strata_core::id::ProjectId;
use strata_core::org::{parse_email, parse_name};
use strata_core::project::{ProjectFilter, ProjectStatus, parse_external_id, parse_language, parse_metadata, parse_timezone};
use strata_core::service::{ArchivedProjectView, MigrationView, NewProject, ProjectPatch};
use strata_core::wire::{PageView, ProjectView};
use utoipa::{IntoParams, ToSchema};

use super::{any_of, nullable_string, only_fields, page_request, page_view};
use crate::AppState;
use crate::error::HttpResult;
use crate::extract::{Auth, Id, parse_json};
use crate::params::ProjectPath;
use crate::write::{Write, json_response};

/// A new project.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(as = CreateProject)]
struct CreateBody {
    /// The id to give the project (`prj_<uuid>` or a bare UUID); one is made when absent.
    /// Unique within the organization: 409 when it already has a project with this id. Another
    /// organization's use of the same id does not matter.
    #[serde(default)]
    #[schema(value_type = Option<ProjectId>)]
    id: Option<String>,
    /// 1–128 characters.
    #[schema(min_length = 1, max_length = 128)]
    name: String,
    /// An IANA time zone name.
    #[schema(examples("America/Los_Angeles"))]
    timezone: String,
    /// Your id for the end-customer; unique per org (409).
    #[serde(default)]
    customer_external_id: Option<String>,
    /// The end-customer's contact.
    #[serde(default)]
    #[schema(format = Email)]
    owner_email: Option<String>,
    /// A BCP-47 language tag; `en` when absent.
    #[serde(default)]
    #[schema(examples("en"))]
    primary_language: Option<String>,
    /// An opaque JSON object of at most 8 KB.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
}

/// A change to a project: only the fields sent change. A read-only field (`id`,
/// `organizationId`, `createdAt`, `updatedAt`, `archivedAt`) is 400 VALIDATION with
/// `details.code: "READ_ONLY_FIELD"` (as Layers answers).
#[derive(ToSchema)]
#[schema(as = UpdateProject)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[expect(dead_code, reason = "describes the body `update` reads as a map (absent and null differ)")]
struct UpdateBody {
    /// 1–128 characters.
    #[schema(min_length = 1, max_length = 128, nullable = false)]
    name: Option<String>,
    /// An IANA time zone name.
    #[schema(nullable = false)]
    timezone: Option<String>,
    /// `null` clears it.
    customer_external_id: Option<Option<String>>,
    /// `null` clears it.
    #[schema(format = Email)]
    owner_email: Option<Option<String>>,
    /// A BCP-47 language tag.
    #[schema(nullable = false)]
    primary_language: Option<String>,
    /// Replaced whole.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
    /// Only `active`: reactivates an archived project (archive with DELETE).
    #[schema(value_type = Option<ProjectStatus>, nullable = false)]
    status: Option<String>,
}

/// Create a project.
///
/// One project per end-customer. With `X-Layers-Organization`, it is created inside that child.
#[utoipa::path(post, path = "/v1/projects", tag = "Projects", operation_id = "createProject",
    security(("bearer" = ["projects:write"])),
    request_body(content = CreateBody, example = json!({"name": "Acme Coffee", "timezone": "America/Los_Angeles"})),
    responses(
        (status = 201, description = "The new project.", body = ProjectView),
        (status = 409, description = "CONFLICT: another project of the org has that `customerExternalId` (or that `id`); or IDEMPOTENCY_CONFLICT."),
    ))]
pub async fn create(State(app): State<AppState>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, StatusCode::CREATED, |claim| async move {
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

/// The query of `GET /v1/projects` (parsed strictly, and read by the OpenAPI document).
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct ListQuery {
    /// Only projects in any of these statuses (the parameter may repeat).
    #[serde(default)]
    #[param(value_type = Option<Vec<ProjectStatus>>, inline, style = Form, explode)]
    status: Vec<String>,
    /// A case-insensitive prefix of the name.
    search: Option<String>,
    /// Exactly this `customerExternalId`.
    customer_external_id: Option<String>,
    /// Page size.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200, default = 25)]
    limit: Option<String>,
    /// The previous page's `nextCursor` (opaque; a tampered cursor is 422).
    #[param(min_length = 1)]
    cursor: Option<String>,
}

/// List projects.
#[utoipa::path(get, path = "/v1/projects", tag = "Projects", operation_id = "listProjects",
    security(("bearer" = ["projects:read"])), params(ListQuery),
    responses((status = 200, description = "A page of projects, newest first.", body = PageView<ProjectView>)))]
pub async fn list(State(app): State<AppState>, caller: Auth<ListQuery>) -> HttpResult {
    let q = &caller.query;
    let filter = ProjectFilter {
        statuses: any_of(&q.status, "status", "active or archived", ProjectStatus::parse)?,
        search: q.search.clone().filter(|s| !s.is_empty()),
        customer_external_id: q.customer_external_id.clone(),
    };
    let page = page_request(&app, q.limit.as_deref(), q.cursor.as_deref(), "projects", 25, 200)?;
    json_response(StatusCode::OK, &page_view(app.strata.list_projects(&caller, &filter, page).await?))
}

/// Read a project.
///
/// A project of another org is 404.
#[utoipa::path(get, path = "/v1/projects/{projectId}", tag = "Projects", operation_id = "getProject",
    security(("bearer" = ["projects:read"])), params(ProjectPath),
    responses((status = 200, description = "The project.", body = ProjectView)))]
pub async fn get(State(app): State<AppState>, caller: Auth, Id(id): Id<ProjectId>) -> HttpResult {
    json_response(StatusCode::OK, &app.strata.get_project(&caller, id).await?)
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

/// Update a project.
///
/// `status: "active"` reactivates an archived project.
#[utoipa::path(patch, path = "/v1/projects/{projectId}", tag = "Projects", operation_id = "updateProject",
    security(("bearer" = ["projects:write"])), params(ProjectPath),
    request_body(content = UpdateBody, example = json!({"ownerEmail": "owner@acme-coffee.example"})),
    responses(
        (status = 200, description = "The project after the change.", body = ProjectView),
        (status = 400, description = "VALIDATION: a read-only field was sent (`details.code: \"READ_ONLY_FIELD\"`)."),
    ))]
pub async fn update(State(app): State<AppState>, Id(id): Id<ProjectId>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, StatusCode::OK, |claim| async move {
        let obj: Map<String, Value> = parse_json(&w.body)?;
        let patch = parse_patch(&obj)?;
        app.strata.update_project(&w.caller, id, patch, claim.as_ref()).await
    })
    .await
}

/// Archive a project.
///
/// A soft archive that cancels the project's scheduled posts; repeating it answers the archived
/// state.
#[utoipa::path(delete, path = "/v1/projects/{projectId}", tag = "Projects", operation_id = "archiveProject",
    security(("bearer" = ["projects:write"])), params(ProjectPath),
    responses((status = 200, description = "The archived project.", body = ArchivedProjectView)))]
pub async fn archive(State(app): State<AppState>, Id(id): Id<ProjectId>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, StatusCode::OK, |claim| async move {
        super::no_fields(&w.body)?;
        app.strata.archive_project(&w.caller, id, claim.as_ref()).await
    })
    .await
}

/// Which child each project moves into.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = MigrateProjects)]
struct MigrateBody {
    /// Project id → child organization name (1–1000 projects). Each distinct name becomes one new
    /// child.
    #[schema(value_type = std::collections::BTreeMap<String, String>)]
    mapping: Map<String, Value>,
}

/// Move flat projects into new child organizations.
///
/// All or nothing: each distinct name becomes one new child holding its projects. A project with
/// a running job rejects the whole call (409, `details.projectIds`).
#[utoipa::path(post, path = "/v1/organizations/migrate", tag = "Organizations", operation_id = "migrateProjects",
    security(("bearer" = ["org:admin"])),
    request_body(content = MigrateBody, example = json!({"mapping": {"prj_3f9a1c2e-5b7d-4e8f-9a0b-1c2d3e4f5a6b": "Acme Coffee"}})),
    responses((status = 201, description = "The children created and the projects moved.", body = MigrationView)))]
pub async fn migrate(State(app): State<AppState>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, StatusCode::CREATED, |claim| async move {
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
