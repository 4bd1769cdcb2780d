//! Projects (one per end-customer): create, list, read and edit (archiving and the migration
//! into child orgs are cascades, in `lifecycle.rs`). Every project route is path-scoped: a
//! project of another org is 404.

use serde_json::{Value, json};

use super::tenancy::project_in;
use super::{Caller, Strata};
use crate::cursor::{Page, PageRequest};
use crate::error::{CoreError, Result};
use crate::id::ProjectId;
use crate::idempotency::IdemClaim;
use crate::project::{Project, ProjectFilter, ProjectStatus};
use crate::scope::Scope;
use crate::wire::ProjectView;

#[derive(Debug, Clone)]
pub struct NewProject {
    pub id: Option<ProjectId>,
    pub name: String,
    pub timezone: String,
    pub customer_external_id: Option<String>,
    pub owner_email: Option<String>,
    pub primary_language: String,
    pub metadata: Value,
}

/// A PATCH: `None` leaves a field alone; `Some(None)` clears a nullable one.
#[derive(Debug, Clone, Default)]
pub struct ProjectPatch {
    pub name: Option<String>,
    pub timezone: Option<String>,
    pub customer_external_id: Option<Option<String>>,
    pub owner_email: Option<Option<String>>,
    pub primary_language: Option<String>,
    pub metadata: Option<Value>,
    /// `status: "active"`: reactivate an archived project.
    pub reactivate: bool,
}

fn external_id_taken() -> CoreError {
    CoreError::conflict_with("another project of this organization has that customerExternalId", json!({ "field": "customerExternalId" }))
}

impl Strata {
    /// `POST /v1/projects`.
    #[tracing::instrument(level = "debug", name = "service.create_project", skip_all)]
    pub async fn create_project(&self, caller: &Caller, cmd: NewProject, idem: Option<&IdemClaim>) -> Result<ProjectView> {
        caller.require(Scope::ProjectsWrite).await?;
        caller.ensure_writable()?;
        let now = self.now();
        let project = Project {
            id: cmd.id.unwrap_or_default(),
            org_id: caller.org_id(),
            name: cmd.name,
            status: ProjectStatus::Active,
            customer_external_id: cmd.customer_external_id,
            timezone: cmd.timezone,
            primary_language: cmd.primary_language,
            owner_email: cmd.owner_email,
            metadata: cmd.metadata,
            created_at: now,
            updated_at: now,
            archived_at: None,
            seq: 0,
        };
        let mut tx = self.write_as(caller).await?;
        // A client may choose the id, so it is unique per org: another org's use of it is
        // invisible here, as it is on every read (CONTRACT §2).
        if tx.project(project.org_id, project.id).await?.is_some() {
            return Err(CoreError::conflict_with("a project with this id already exists", json!({ "field": "id" })));
        }
        if let Some(ext) = &project.customer_external_id
            && tx.project_by_external_id(project.org_id, ext).await?.is_some()
        {
            return Err(external_id_taken());
        }
        tx.insert_project(&project).await?;
        let mut stamp = caller.stamp();
        stamp.project_id = Some(project.id);
        tx.insert_audit(&self.audit_entry(stamp, "project.created", json!({ "projectId": project.id, "name": project.name }))).await?;
        self.finish(tx, idem, ProjectView::from(&project)).await
    }

    /// `GET /v1/projects`.
    #[tracing::instrument(level = "debug", name = "service.list_projects", skip_all)]
    pub async fn list_projects(&self, caller: &Caller, filter: &ProjectFilter, page: PageRequest) -> Result<Page<ProjectView>> {
        caller.require(Scope::ProjectsRead).await?;
        let mut tx = self.store.read().await?;
        let rows = tx.list_projects(caller.org_id(), filter, page).await?;
        tx.commit().await?;
        Ok(Page::from_rows(rows, page, &self.secret, "projects", |p| p.seq).map(|p| ProjectView::from(&p)))
    }

    /// `GET /v1/projects/:projectId`.
    #[tracing::instrument(level = "debug", name = "service.get_project", skip_all)]
    pub async fn get_project(&self, caller: &Caller, id: ProjectId) -> Result<ProjectView> {
        caller.require(Scope::ProjectsRead).await?;
        let mut tx = self.store.read().await?;
        let p = project_in(tx.as_mut(), caller.org_id(), id).await?;
        tx.commit().await?;
        Ok(ProjectView::from(&p))
    }

    /// `PATCH /v1/projects/:projectId`.
    pub async fn update_project(
        &self,
        caller: &Caller,
        id: ProjectId,
        patch: ProjectPatch,
        idem: Option<&IdemClaim>,
    ) -> Result<ProjectView> {
        caller.require(Scope::ProjectsWrite).await?;
        caller.ensure_writable()?;
        let mut tx = self.write_as(caller).await?;
        let mut p = project_in(tx.as_mut(), caller.org_id(), id).await?;
        if let Some(Some(ext)) = &patch.customer_external_id
            && tx.project_by_external_id(p.org_id, ext).await?.is_some_and(|other| other.id != p.id)
        {
            return Err(external_id_taken());
        }
        let now = self.now();
        if let Some(v) = patch.name {
            p.name = v;
        }
        if let Some(v) = patch.timezone {
            p.timezone = v;
        }
        if let Some(v) = patch.customer_external_id {
            p.customer_external_id = v;
        }
        if let Some(v) = patch.owner_email {
            p.owner_email = v;
        }
        if let Some(v) = patch.primary_language {
            p.primary_language = v;
        }
        if let Some(v) = patch.metadata {
            p.metadata = v;
        }
        let reactivated = patch.reactivate && p.status == ProjectStatus::Archived;
        if reactivated {
            p.status = ProjectStatus::Active;
            p.archived_at = None;
        }
        p.updated_at = now;
        tx.update_project(&p).await?;
        let mut stamp = caller.stamp();
        stamp.project_id = Some(p.id);
        let what = if reactivated { "project.reactivated" } else { "project.updated" };
        tx.insert_audit(&self.audit_entry(stamp, what, json!({ "projectId": p.id }))).await?;
        self.finish(tx, idem, ProjectView::from(&p)).await
    }
}
