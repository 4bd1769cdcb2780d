//! Scheduled posts: a completed container published to a platform at a time. The scheduler
//! publishes what is due, except in a suspended org, whose posts wait for its resume.

use serde_json::json;

use super::tenancy::project_in;
use super::{Caller, Stamp, Strata};
use crate::clock::Timestamp;
use crate::content::ContainerStatus;
use crate::cursor::{Page, PageRequest};
use crate::error::{CoreError, Result};
use crate::event::EventType;
use crate::event_data::PostEventData;
use crate::id::{ContainerId, OrgId, PostId, ProjectId};
use crate::idempotency::IdemClaim;
use crate::org::OrgStatus;
use crate::post::{PostStatus, ScheduledPost};
use crate::project::ProjectStatus;
use crate::scope::Scope;
use crate::store::{Owner, Tx};
use crate::wire::PostView;

/// How far in the past `scheduledFor` may be (clock skew between partner and strata).
const PAST_TOLERANCE_MS: i64 = 60_000;

#[derive(Debug, Clone)]
pub struct NewPost {
    pub container_id: ContainerId,
    pub scheduled_for: Timestamp,
    pub platform: String,
}

impl Strata {
    /// `POST /v1/projects/:projectId/scheduled-posts`.
    #[tracing::instrument(level = "debug", name = "service.schedule_post", skip_all)]
    pub async fn schedule_post(&self, caller: &Caller, project: ProjectId, cmd: NewPost, idem: Option<&IdemClaim>) -> Result<PostView> {
        caller.require(Scope::ContentWrite).await?;
        caller.ensure_writable()?;
        let now = self.now();
        if cmd.scheduled_for.millis() < now.millis() - PAST_TOLERANCE_MS {
            return Err(CoreError::validation("scheduledFor", "must not be in the past"));
        }
        let mut tx = self.write_as(caller).await?;
        let p = project_in(tx.as_mut(), caller.org_id(), project).await?;
        if p.status == ProjectStatus::Archived {
            return Err(CoreError::conflict("the project is archived"));
        }
        let container = tx
            .container(Owner::Org(p.org_id), cmd.container_id)
            .await?
            .filter(|c| c.project_id == p.id)
            .ok_or(CoreError::not_found("container"))?;
        if container.status != ContainerStatus::Completed {
            return Err(CoreError::conflict_with(
                "only completed content can be scheduled",
                json!({ "containerId": container.id, "status": container.status.as_str() }),
            ));
        }
        let post = ScheduledPost {
            id: PostId::at(now.millis()),
            org_id: p.org_id,
            project_id: p.id,
            container_id: container.id,
            platform: cmd.platform,
            scheduled_for: cmd.scheduled_for,
            status: PostStatus::Scheduled,
            published_at: None,
            canceled_at: None,
            created_at: now,
            updated_at: now,
            seq: 0,
        };
        tx.insert_post(&post).await?;
        let view = PostView::from(&post);
        let mut stamp = caller.stamp();
        stamp.project_id = Some(p.id);
        tx.insert_audit(&self.audit_entry(stamp, "post.scheduled", json!({ "postId": post.id }))).await?;
        tx.insert_event(&self.event(EventType::PostScheduled, p.org_id, Some(p.id), PostEventData { post: PostView::from(&post) })).await?;
        self.finish(tx, idem, view).await
    }

    /// `GET /v1/projects/:projectId/scheduled-posts`.
    #[tracing::instrument(level = "debug", name = "service.list_posts", skip_all)]
    pub async fn list_posts(&self, caller: &Caller, project: ProjectId, page: PageRequest) -> Result<Page<PostView>> {
        caller.require(Scope::ContentRead).await?;
        let mut tx = self.store.read().await?;
        let p = project_in(tx.as_mut(), caller.org_id(), project).await?;
        let rows = tx.list_posts(p.org_id, p.id, page).await?;
        tx.commit().await?;
        Ok(Page::from_rows(rows, page, &self.secret, "posts", |p| p.seq).map(|p| PostView::from(&p)))
    }

    /// `DELETE /v1/projects/:projectId/scheduled-posts/:postId`: cancels; repeatable. A
    /// published post is 409.
    #[tracing::instrument(level = "debug", name = "service.cancel_post", skip_all)]
    pub async fn cancel_post(&self, caller: &Caller, project: ProjectId, id: PostId, idem: Option<&IdemClaim>) -> Result<PostView> {
        caller.require(Scope::ContentWrite).await?;
        caller.ensure_writable()?;
        let mut tx = self.write_as(caller).await?;
        let p = project_in(tx.as_mut(), caller.org_id(), project).await?;
        let mut post =
            tx.post(Owner::Org(p.org_id), id).await?.filter(|x| x.project_id == p.id).ok_or(CoreError::not_found("scheduled post"))?;
        match post.status {
            PostStatus::Scheduled => {
                let mut stamp = caller.stamp();
                stamp.project_id = Some(p.id);
                self.cancel_one(tx.as_mut(), &mut post, stamp).await?;
            }
            PostStatus::Canceled => {}
            done => {
                return Err(CoreError::conflict_with(format!("the post is {}", done.as_str()), json!({ "status": done.as_str() })));
            }
        }
        self.finish(tx, idem, PostView::from(&post)).await
    }

    async fn cancel_one(&self, tx: &mut dyn Tx, post: &mut ScheduledPost, stamp: Stamp) -> Result<()> {
        let now = self.now();
        post.status = PostStatus::Canceled;
        post.canceled_at = Some(now);
        post.updated_at = now;
        tx.update_post(post).await?;
        tx.insert_audit(&self.audit_entry(stamp, "post.canceled", json!({ "postId": post.id }))).await?;
        tx.insert_event(&self.event(
            EventType::PostCanceled,
            post.org_id,
            Some(post.project_id),
            PostEventData { post: PostView::from(&*post) },
        ))
        .await
    }

    /// Cancels every post still waiting in a project (or, with `project: None`, a whole org).
    pub(crate) async fn cancel_pending_posts(
        &self,
        tx: &mut dyn Tx,
        org: OrgId,
        project: Option<ProjectId>,
        stamp: Stamp,
    ) -> Result<usize> {
        let pending = tx.pending_posts(org, project).await?;
        for mut post in pending.clone() {
            let mut stamp = stamp;
            stamp.project_id = Some(post.project_id);
            self.cancel_one(tx, &mut post, stamp).await?;
        }
        Ok(pending.len())
    }

    /// The scheduler's step: publishes every post whose time has come, except in a suspended org
    /// (held until resume). Returns how many were published.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn publish_due_posts(&self) -> Result<usize> {
        let mut tx = self.store.read().await?;
        let due = tx.due_posts(self.now(), 500).await?;
        tx.commit().await?;
        let mut published = 0;
        for (id, org, project) in due {
            match self.publish_one(id, org, project).await {
                Ok(true) => published += 1,
                Ok(false) => {}
                Err(e) => crate::telemetry::background_failure("publish a scheduled post", Some(&id), &e),
            }
        }
        Ok(published)
    }

    /// Publishes `org`'s due post `id` of `project` (or cancels it if its project or org was
    /// archived). Locks in the order every other writer uses: org (for share, as a caller's write
    /// holds it, `write_as`), project, post. Taking the project first deadlocked against an
    /// archive, which locks the org, then its projects. A project's id is unique only within its
    /// org, so the project is read by (org, id).
    async fn publish_one(&self, id: PostId, org: OrgId, project: ProjectId) -> Result<bool> {
        let mut tx = self.store.write().await?;
        // Another node's step has it: it is theirs this time.
        if !tx.try_take_item(&format!("post:{id}")).await? {
            return Ok(false);
        }
        let org = tx.org_shared(Owner::System, org).await?.ok_or_else(|| CoreError::internal("a post's org is gone"))?;
        // A migration may have moved the project meanwhile: the next step takes it from there.
        let Some(project) = tx.project(org.id, project).await? else { return Ok(false) };
        let Some(mut post) =
            tx.post(Owner::Org(project.org_id), id).await?.filter(|p| p.status == PostStatus::Scheduled && p.project_id == project.id)
        else {
            return Ok(false);
        };
        let mut stamp = Stamp::system().in_org(post.org_id);
        stamp.project_id = Some(post.project_id);
        let published = match (org.status, project.status) {
            // Held: the org is suspended or cut off; it publishes after resume.
            (OrgStatus::Suspended, _) => return Ok(false),
            (OrgStatus::Active, _) if org.access_revoked => return Ok(false),
            (OrgStatus::Archived, _) | (_, ProjectStatus::Archived) => {
                self.cancel_one(tx.as_mut(), &mut post, stamp).await?;
                false
            }
            (OrgStatus::Active, ProjectStatus::Active) => {
                let now = self.now();
                post.status = PostStatus::Published;
                post.published_at = Some(now);
                post.updated_at = now;
                tx.update_post(&post).await?;
                tx.insert_audit(&self.audit_entry(stamp, "post.published", json!({ "postId": post.id }))).await?;
                let data = PostEventData { post: PostView::from(&post) };
                tx.insert_event(&self.event(EventType::PostPublished, post.org_id, Some(post.project_id), data)).await?;
                true
            }
        };
        tx.commit().await?;
        Ok(published)
    }
}
