//! Cascades: the writes that reach across aggregates. Archiving a child revokes its keys,
//! reclaims its credits, cancels its scheduled posts and abandons its deliveries; archiving a
//! project cancels its posts; migrating moves projects into new children. Nothing else depends
//! on this module, so the services it calls never call back into it.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::json;

use super::tenancy::{child_of, project_in};
use super::{Caller, Strata};
use crate::error::{CoreError, Result};
use crate::event::EventType;
use crate::id::{OrgId, ProjectId};
use crate::idempotency::IdemClaim;
use crate::metadata::Metadata;
use crate::org::{Lifecycle, Org, Transition};
use crate::project::{Project, ProjectStatus};
use crate::scope::Scope;
use crate::wire::OrgView;

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArchivedView {
    id: OrgId,
    /// Always `archived`.
    #[schema(value_type = crate::org::OrgStatus)]
    status: &'static str,
    archived_at: Option<crate::clock::Timestamp>,
    /// Unspent, unreserved credits swept back to the parent.
    reclaimed_credits: i64,
    revoked_api_keys: i64,
}

/// What a lifecycle change answers: the org after a suspend or resume, the archive's summary
/// after an archive.
#[derive(Serialize)]
#[serde(untagged)]
pub enum LifecycleView {
    Org(OrgView),
    Archived(ArchivedView),
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArchivedProjectView {
    id: ProjectId,
    /// Always `archived`.
    #[schema(value_type = ProjectStatus)]
    status: &'static str,
    archived_at: Option<crate::clock::Timestamp>,
    canceled_scheduled_posts: usize,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigratedChild {
    id: OrgId,
    name: String,
    project_ids: Vec<ProjectId>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationView {
    projects_moved: usize,
    children_created: usize,
    children: Vec<MigratedChild>,
}

impl Strata {
    /// Suspend, resume or archive a child. Repeating a request in the state it leads to is a
    /// no-op that answers with the current state; archive is terminal.
    pub async fn change_child_lifecycle(
        &self,
        caller: &Caller,
        id: OrgId,
        req: Lifecycle,
        idem: Option<&IdemClaim>,
    ) -> Result<LifecycleView> {
        caller.require(Scope::OrgAdmin).await?;
        caller.ensure_writable()?;
        let mut tx = self.write_as(caller).await?;
        let mut org = child_of(tx.as_mut(), caller.org_id(), id).await?;
        let transition = org.status.apply(req)?;
        if let Transition::To(next) = transition {
            let now = self.now();
            org.status = next;
            org.updated_at = now;
            let (audit_type, event_type) = match req {
                Lifecycle::Suspend => ("organization.suspended", EventType::OrganizationSuspended),
                Lifecycle::Resume => ("organization.resumed", EventType::OrganizationResumed),
                Lifecycle::Archive => ("organization.archived", EventType::OrganizationArchived),
            };
            let mut detail = json!({ "organizationId": org.id.to_string() });
            if req == Lifecycle::Archive {
                let revoked = tx.revoke_org_keys(org.id, now).await?;
                let revoked = i64::try_from(revoked).unwrap_or(i64::MAX);
                let reclaimed = self.reclaim_on_archive(tx.as_mut(), &org).await?;
                let mut stamp = caller.stamp();
                stamp.org_id = Some(org.id);
                let canceled = self.cancel_pending_posts(tx.as_mut(), org.id, None, stamp).await?;
                // An archived org's pending deliveries are abandoned (CONTRACT §6).
                tx.abandon_deliveries(None, Some(org.id), now).await?;
                detail["canceledScheduledPosts"] = json!(canceled);
                org.archived_at = Some(now);
                org.archive_stats = Some((reclaimed, revoked));
                detail["revokedApiKeys"] = json!(revoked);
                detail["reclaimedCredits"] = json!(reclaimed);
            }
            tx.update_org(&org).await?;
            tx.insert_audit(&self.audit_entry(caller.stamp(), audit_type, detail)).await?;
            // A child's lifecycle events belong to the child's log: `data.organizationId` names
            // the customer, and the parent's firehose endpoint receives them.
            tx.insert_event(&self.event(
                event_type,
                org.id,
                None,
                crate::event_data::OrganizationEventData { organization: OrgView::from(&org) },
            ))
            .await?;
        }
        let answer = if req == Lifecycle::Archive {
            let (reclaimed, revoked) = org.archive_stats.unwrap_or((0, 0));
            LifecycleView::Archived(ArchivedView {
                id: org.id,
                status: "archived",
                archived_at: org.archived_at,
                reclaimed_credits: reclaimed,
                revoked_api_keys: revoked,
            })
        } else {
            LifecycleView::Org(OrgView::from(&org))
        };
        self.finish(tx, idem, answer).await
    }

    /// `DELETE /v1/projects/:projectId`: a soft archive that cancels the project's scheduled
    /// posts. Repeating it answers the archived state.
    #[tracing::instrument(level = "debug", name = "service.archive_project", skip_all)]
    pub async fn archive_project(&self, caller: &Caller, id: ProjectId, idem: Option<&IdemClaim>) -> Result<ArchivedProjectView> {
        caller.require(Scope::ProjectsWrite).await?;
        caller.ensure_writable()?;
        let mut tx = self.write_as(caller).await?;
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
        self.finish(tx, idem, view).await
    }

    /// `POST /v1/organizations/migrate`: moves flat projects into new child orgs, one per
    /// distinct name, all or nothing. A project with a running job stops the whole move.
    pub async fn migrate_projects(
        &self,
        caller: &Caller,
        mut mapping: Vec<(ProjectId, String)>,
        idem: Option<&IdemClaim>,
    ) -> Result<MigrationView> {
        // Lock projects in id order, so two overlapping migrations cannot deadlock.
        mapping.sort_by_key(|(id, _)| *id);
        caller.require(Scope::OrgAdmin).await?;
        caller.ensure_writable()?;
        if !caller.org.is_root() {
            return Err(CoreError::validation("mapping", "only a partner organization can migrate projects into child organizations"));
        }
        let mut tx = self.write_as(caller).await?;
        let mut by_name: BTreeMap<String, Vec<Project>> = BTreeMap::new();
        let mut busy = Vec::new();
        for (id, name) in mapping {
            let p = project_in(tx.as_mut(), caller.org_id(), id).await?;
            if tx.running_jobs_for_project(p.org_id, p.id).await? > 0 {
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
                let from = p.org_id;
                p.org_id = org.id;
                p.updated_at = now;
                tx.update_project(&p).await?;
                tx.move_project_rows(p.id, from, org.id).await?;
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
        self.finish(tx, idem, view).await
    }
}
