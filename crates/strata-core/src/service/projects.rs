//! Projects (one per end-customer) and the migration of flat projects into child orgs. Every
//! project route is path-scoped: a project of another org is 404.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use super::{Caller, Strata};
use crate::cursor::{Page, PageRequest};
use crate::error::{CoreError, Result};
use crate::id::{OrgId, ProjectId};
use crate::idempotency::{IdemClaim, Reply};
use crate::metadata::Metadata;
use crate::org::Org;
use crate::project::{Project, ProjectFilter, ProjectStatus};
use crate::scope::Scope;
use crate::store::{Owner, Tx};
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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ArchivedProjectView {
    id: ProjectId,
    status: &'static str,
    archived_at: Option<crate::clock::Timestamp>,
    canceled_scheduled_posts: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MigratedChild {
    id: OrgId,
    name: String,
    project_ids: Vec<ProjectId>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MigrationView {
    projects_moved: usize,
    children_created: usize,
    children: Vec<MigratedChild>,
}

/// Loads a project of `org` (locked inside a write), or 404.
pub(crate) async fn project_in(tx: &mut dyn Tx, org: OrgId, id: ProjectId) -> Result<Project> {
    tx.project(Owner::Org(org), id).await?.ok_or(CoreError::not_found("project"))
}

fn external_id_taken() -> CoreError {
    CoreError::conflict_with("another project of this organization has that customerExternalId", json!({ "field": "customerExternalId" }))
}

impl Strata {
    /// `POST /v1/projects`.
    pub async fn create_project(&self, caller: &Caller, cmd: NewProject, idem: Option<&IdemClaim>) -> Result<Reply> {
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
        let mut tx = self.store.write().await?;
        // Project ids are unique across tenants today, so a taken id is checked everywhere.
        if tx.project(Owner::System, project.id).await?.is_some() {
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
        self.finish(tx, idem, Reply::json(201, &ProjectView::from(&project))).await
    }

    /// `GET /v1/projects`.
    pub async fn list_projects(&self, caller: &Caller, filter: &ProjectFilter, page: PageRequest) -> Result<Page<ProjectView>> {
        caller.require(Scope::ProjectsRead).await?;
        let mut tx = self.store.read().await?;
        let rows = tx.list_projects(caller.org_id(), filter, page).await?;
        tx.commit().await?;
        Ok(Page::from_rows(rows, page, &self.secret, "projects", |p| p.seq).map(|p| ProjectView::from(&p)))
    }

    /// `GET /v1/projects/:projectId`.
    pub async fn get_project(&self, caller: &Caller, id: ProjectId) -> Result<Reply> {
        caller.require(Scope::ProjectsRead).await?;
        let mut tx = self.store.read().await?;
        let p = project_in(tx.as_mut(), caller.org_id(), id).await?;
        tx.commit().await?;
        Ok(Reply::json(200, &ProjectView::from(&p)))
    }

    /// `PATCH /v1/projects/:projectId`.
    pub async fn update_project(&self, caller: &Caller, id: ProjectId, patch: ProjectPatch, idem: Option<&IdemClaim>) -> Result<Reply> {
        caller.require(Scope::ProjectsWrite).await?;
        caller.ensure_writable()?;
        let mut tx = self.store.write().await?;
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
        self.finish(tx, idem, Reply::json(200, &ProjectView::from(&p))).await
    }

    /// `DELETE /v1/projects/:projectId`: a soft archive that cancels the project's scheduled
    /// posts. Repeating it answers the archived state.
    pub async fn archive_project(&self, caller: &Caller, id: ProjectId, idem: Option<&IdemClaim>) -> Result<Reply> {
        caller.require(Scope::ProjectsWrite).await?;
        caller.ensure_writable()?;
        let mut tx = self.store.write().await?;
        let mut p = project_in(tx.as_mut(), caller.org_id(), id).await?;
        let mut canceled = 0;
        if p.status == ProjectStatus::Active {
            let now = self.now();
            let mut stamp = caller.stamp();
            stamp.project_id = Some(p.id);
            canceled = self.cancel_pending_posts(tx.as_mut(), p.org_id, Some(p.id), stamp).await?;
            p.status = ProjectStatus::Archived;
            p.archived_at = Some(now);
            p.updated_at = now;
            tx.update_project(&p).await?;
            tx.insert_audit(&self.audit_entry(stamp, "project.archived", json!({ "projectId": p.id, "canceledScheduledPosts": canceled })))
                .await?;
        }
        let view = ArchivedProjectView { id: p.id, status: "archived", archived_at: p.archived_at, canceled_scheduled_posts: canceled };
        self.finish(tx, idem, Reply::json(200, &view)).await
    }

    /// `POST /v1/organizations/migrate`: moves flat projects into new child orgs, one per
    /// distinct name, all or nothing. A project with a running job stops the whole move.
    pub async fn migrate_projects(
        &self,
        caller: &Caller,
        mut mapping: Vec<(ProjectId, String)>,
        idem: Option<&IdemClaim>,
    ) -> Result<Reply> {
        // Lock projects in id order, so two overlapping migrations cannot deadlock.
        mapping.sort_by_key(|(id, _)| *id);
        caller.require(Scope::OrgAdmin).await?;
        caller.ensure_writable()?;
        if !caller.org.is_root() {
            return Err(CoreError::validation("mapping", "only a partner organization can migrate projects into child organizations"));
        }
        let mut tx = self.store.write().await?;
        let mut by_name: BTreeMap<String, Vec<Project>> = BTreeMap::new();
        let mut busy = Vec::new();
        for (id, name) in mapping {
            let p = project_in(tx.as_mut(), caller.org_id(), id).await?;
            if tx.running_jobs_for_project(p.id).await? > 0 {
                busy.push(p.id.to_string());
            }
            by_name.entry(name).or_default().push(p);
        }
        if !busy.is_empty() {
            return Err(CoreError::conflict_with("some projects have running jobs; nothing was moved", json!({ "projectIds": busy })));
        }
        let now = self.now();
        let mut children = Vec::new();
        let mut moved = 0;
        for (name, projects) in by_name {
            let org = Org::new(Some(caller.org_id()), name.clone(), Metadata::default(), None, now);
            self.insert_new_org(tx.as_mut(), &org).await?;
            let mut ids = Vec::new();
            for mut p in projects {
                p.org_id = org.id;
                p.updated_at = now;
                tx.update_project(&p).await?;
                tx.move_project_rows(p.id, org.id).await?;
                ids.push(p.id);
            }
            moved += ids.len();
            tx.insert_audit(&self.audit_entry(
                caller.stamp(),
                "organization.migrated",
                json!({ "organizationId": org.id, "name": name, "projectIds": ids }),
            ))
            .await?;
            children.push(MigratedChild { id: org.id, name, project_ids: ids });
        }
        let view = MigrationView { projects_moved: moved, children_created: children.len(), children };
        self.finish(tx, idem, Reply::json(201, &view)).await
    }
}
