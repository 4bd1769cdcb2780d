//! The contract's JSON shapes of domain objects. They are shared by HTTP responses and by event
//! payloads (a webhook delivers the same object a GET returns), which is why they live in core.

use serde::Serialize;
use serde_json::Value;

use crate::apikey::{Env, Tier};
use crate::audit::AuditEntry;
use crate::clock::Timestamp;
use crate::cursor::Page;
use crate::event::Event;
use crate::id::{ApiKeyId, OrgId};
use crate::key::ApiKey;
use crate::metadata::Metadata;
use crate::org::Org;
use crate::post::ScheduledPost;
use crate::project::Project;
use crate::scope::Scopes;

/// `internal` is the operator's tier and never shows in a partner-visible response.
pub fn public_tier(t: Tier) -> &'static str {
    match t {
        Tier::Internal => Tier::Partner.as_str(),
        other => other.as_str(),
    }
}

#[derive(Serialize, Debug, Clone, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrgView {
    pub id: OrgId,
    pub parent_organization_id: Option<OrgId>,
    pub name: String,
    #[schema(value_type = crate::org::OrgStatus)]
    pub status: &'static str,
    pub metadata: Metadata,
    pub billing_email: Option<String>,
    pub archived_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl From<&Org> for OrgView {
    fn from(o: &Org) -> Self {
        Self {
            id: o.id,
            parent_organization_id: o.parent_id,
            name: o.name.clone(),
            status: o.status.as_str(),
            metadata: o.metadata.clone(),
            billing_email: o.billing_email.clone(),
            archived_at: o.archived_at,
            created_at: o.created_at,
            updated_at: o.updated_at,
        }
    }
}

#[derive(Serialize, Debug, Clone, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyView {
    pub id: ApiKeyId,
    pub organization_id: OrgId,
    pub name: String,
    /// `lp_<env>_<keyid>`: the public, log-safe part of the key.
    pub prefix: String,
    pub env: Env,
    pub scopes: Scopes,
    #[schema(value_type = crate::schema::PublicTier)]
    pub rate_limit_tier: &'static str,
    #[schema(value_type = crate::key::KeyStatus)]
    pub status: &'static str,
    /// Whether the key was killed (`POST /v1/api-keys/:keyId/kill`): it still authenticates but
    /// every call but whoami answers 503 KILL_SWITCH until the operator lifts it. Independent of
    /// `status`, which says whether the key authenticates at all.
    pub kill_switch: bool,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub rotated_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub grace_until: Option<Timestamp>,
    pub superseded_by: Option<ApiKeyId>,
}

impl KeyView {
    /// The key as listed at `now`: a rotated key past its grace window reads as revoked.
    pub fn at(k: &ApiKey, now: Timestamp) -> Self {
        let mut v = Self::from(k);
        if k.grace_until.is_some_and(|g| now >= g) {
            v.status = crate::key::KeyStatus::Revoked.as_str();
        }
        v
    }
}

impl From<&ApiKey> for KeyView {
    fn from(k: &ApiKey) -> Self {
        Self {
            id: k.id,
            organization_id: k.org_id,
            name: k.name.clone(),
            prefix: k.prefix(),
            env: k.env,
            scopes: k.scopes.clone(),
            rate_limit_tier: public_tier(k.tier),
            status: k.status.as_str(),
            kill_switch: k.killed,
            created_at: k.created_at,
            last_used_at: k.last_used_at,
            rotated_at: k.rotated_at,
            revoked_at: k.revoked_at,
            grace_until: k.grace_until,
            superseded_by: k.superseded_by,
        }
    }
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PageView<T: Serialize> {
    /// Newest first.
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

impl<T: Serialize> From<Page<T>> for PageView<T> {
    fn from(p: Page<T>) -> Self {
        Self { items: p.items, next_cursor: p.next_cursor }
    }
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditView {
    pub event_id: String,
    /// What was done, e.g. `organization.created`, `auth.rejected`, `rate_limit.hit`.
    pub event_type: String,
    pub occurred_at: Timestamp,
    pub request_id: Option<String>,
    pub organization_id: Option<OrgId>,
    pub project_id: Option<String>,
    pub api_key_id: Option<ApiKeyId>,
    #[schema(value_type = crate::audit::Actor)]
    pub actor: &'static str,
    /// What happened, by event type.
    pub data: Value,
}

impl From<&AuditEntry> for AuditView {
    fn from(a: &AuditEntry) -> Self {
        Self {
            event_id: a.id.to_string(),
            event_type: a.event_type.clone(),
            occurred_at: a.occurred_at,
            request_id: a.request_id.map(|r| r.to_string()),
            organization_id: a.org_id,
            project_id: a.project_id.map(|p| p.to_string()),
            api_key_id: a.api_key_id,
            actor: a.actor.as_str(),
            data: a.data.clone(),
        }
    }
}

/// An event as `GET /v1/events` shows it and as a webhook delivers it.
#[derive(Serialize, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    pub id: String,
    #[serde(rename = "type")]
    #[schema(value_type = crate::event::EventType)]
    pub event_type: &'static str,
    pub created_at: Timestamp,
    pub organization_id: OrgId,
    #[schema(value_type = Option<crate::id::ProjectId>)]
    pub project_id: Option<String>,
    /// The event's payload; always carries `organizationId`. Its fields per type are in the
    /// document's `webhooks`.
    pub data: Value,
}

impl From<&Event> for EventView {
    fn from(e: &Event) -> Self {
        Self {
            id: e.id.to_string(),
            event_type: e.event_type.as_str(),
            created_at: e.created_at,
            organization_id: e.org_id,
            project_id: e.project_id.map(|p| p.to_string()),
            data: e.data.clone(),
        }
    }
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectView {
    pub id: crate::id::ProjectId,
    pub organization_id: OrgId,
    pub name: String,
    #[schema(value_type = crate::project::ProjectStatus)]
    pub status: &'static str,
    pub customer_external_id: Option<String>,
    pub timezone: String,
    pub primary_language: String,
    pub owner_email: Option<String>,
    /// An opaque JSON object of at most 8 KB, replaced whole on PATCH.
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub archived_at: Option<Timestamp>,
}

impl From<&Project> for ProjectView {
    fn from(p: &Project) -> Self {
        Self {
            id: p.id,
            organization_id: p.org_id,
            name: p.name.clone(),
            status: p.status.as_str(),
            customer_external_id: p.customer_external_id.clone(),
            timezone: p.timezone.clone(),
            primary_language: p.primary_language.clone(),
            owner_email: p.owner_email.clone(),
            metadata: p.metadata.clone(),
            created_at: p.created_at,
            updated_at: p.updated_at,
            archived_at: p.archived_at,
        }
    }
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostView {
    pub id: crate::id::PostId,
    pub organization_id: OrgId,
    pub project_id: crate::id::ProjectId,
    pub container_id: crate::id::ContainerId,
    pub platform: String,
    pub scheduled_for: Timestamp,
    #[schema(value_type = crate::post::PostStatus)]
    pub status: &'static str,
    pub published_at: Option<Timestamp>,
    pub canceled_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl From<&ScheduledPost> for PostView {
    fn from(p: &ScheduledPost) -> Self {
        Self {
            id: p.id,
            organization_id: p.org_id,
            project_id: p.project_id,
            container_id: p.container_id,
            platform: p.platform.clone(),
            scheduled_for: p.scheduled_for,
            status: p.status.as_str(),
            published_at: p.published_at,
            canceled_at: p.canceled_at,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerView {
    pub id: crate::id::ContainerId,
    pub project_id: crate::id::ProjectId,
    pub job_id: crate::id::JobId,
    #[schema(value_type = crate::content::ContainerStatus)]
    pub status: &'static str,
    pub format: String,
    /// The generated assets (empty until the job completes).
    #[schema(value_type = Vec<Object>)]
    pub assets: Value,
    pub created_at: Timestamp,
}

impl From<&crate::content::Container> for ContainerView {
    fn from(c: &crate::content::Container) -> Self {
        Self {
            id: c.id,
            project_id: c.project_id,
            job_id: c.job_id,
            status: c.status.as_str(),
            format: c.format.clone(),
            assets: c.assets.clone(),
            created_at: c.created_at,
        }
    }
}
