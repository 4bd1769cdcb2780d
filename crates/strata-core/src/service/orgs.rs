//! Child organizations: create, read, edit and the lifecycle (suspend, resume, archive), plus
//! whoami. Every route here acts on direct children of the caller's acting org; anything else is
//! 404 so existence never leaks.

use serde::Serialize;
use serde_json::json;

use super::credits::ConfigView;
use super::{Caller, Strata};
use crate::cursor::{Page, PageRequest};
use crate::error::{CoreError, Result};
use crate::event::EventType;
use crate::id::OrgId;
use crate::idempotency::{IdemClaim, Reply};
use crate::metadata::{Metadata, MetadataPatch};
use crate::org::{Lifecycle, Org, OrgStatus, Transition};
use crate::scope::Scope;
use crate::store::{Owner, Tx};
use crate::wire::{OrgView, public_tier};

#[derive(Debug, Clone)]
pub struct NewChild {
    pub name: String,
    pub metadata: Metadata,
    pub billing_email: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct OrgPatch {
    pub name: Option<String>,
    pub metadata: Option<MetadataPatch>,
    /// `Some(None)` clears the billing email.
    pub billing_email: Option<Option<String>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SummaryView {
    project_count: i64,
    balance: i64,
    available: i64,
    credit_config: ConfigView,
}

#[derive(Serialize)]
struct OrgWithSummary {
    #[serde(flatten)]
    org: OrgView,
    summary: SummaryView,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ArchivedView {
    id: OrgId,
    status: &'static str,
    archived_at: Option<crate::clock::Timestamp>,
    reclaimed_credits: i64,
    revoked_api_keys: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WhoamiView {
    organization_id: OrgId,
    workspace_id: OrgId,
    organization_name: String,
    parent_organization_id: Option<OrgId>,
    organization_status: &'static str,
    scopes: crate::scope::Scopes,
    rate_limit_tier: &'static str,
    kill_switch: bool,
    api_access_revoked: bool,
    api_key_id: crate::id::ApiKeyId,
    credit_balance: i64,
}

/// Loads a direct child of `parent` (locked inside a write transaction), or 404.
pub(crate) async fn child_of(tx: &mut dyn Tx, parent: OrgId, id: OrgId) -> Result<Org> {
    tx.org(Owner::Org(parent), id).await?.ok_or(CoreError::not_found("organization"))
}

impl Strata {
    /// Inserts a new org with its empty wallet and its `organization.created` event.
    pub(crate) async fn insert_new_org(&self, tx: &mut dyn Tx, org: &Org) -> Result<()> {
        tx.insert_org(org).await?;
        tx.insert_wallet(&crate::credits::Wallet::empty(org.id, org.created_at)).await?;
        tx.insert_event(&self.event(EventType::OrganizationCreated, org.id, None, json!({ "organization": OrgView::from(org) }))).await
    }

    /// `GET /v1/whoami`: answers for any valid key, even a killed or suspended one.
    pub async fn whoami(&self, caller: &Caller) -> Result<Reply> {
        let wallet = if caller.acts_in_child() {
            let mut tx = self.store.read().await?;
            let wallet = self.wallet_now(tx.as_mut(), caller.org_id()).await?;
            tx.commit().await?;
            wallet
        } else {
            super::credits::wallet_as_of(caller.home_wallet.clone(), self.now())
        };
        let view = WhoamiView {
            organization_id: caller.org.id,
            workspace_id: caller.org.id,
            organization_name: caller.org.name.clone(),
            parent_organization_id: caller.org.parent_id,
            organization_status: caller.org.status.as_str(),
            scopes: caller.key.scopes.clone(),
            rate_limit_tier: public_tier(caller.key.tier),
            kill_switch: caller.key.killed,
            api_access_revoked: caller.home.status != OrgStatus::Active || caller.home.access_revoked,
            api_key_id: caller.key.id,
            credit_balance: wallet.balance(),
        };
        Ok(Reply::json(200, &view))
    }

    pub async fn create_child(&self, caller: &Caller, cmd: NewChild, idem: Option<&IdemClaim>) -> Result<Reply> {
        caller.require(Scope::OrgAdmin).await?;
        caller.ensure_writable()?;
        if !caller.org.is_root() {
            return Err(CoreError::validation(
                "organization",
                "a child organization cannot create organizations; the hierarchy is one level deep",
            ));
        }
        let org = Org::new(Some(caller.org_id()), cmd.name, cmd.metadata, cmd.billing_email, self.now());
        let view = OrgView::from(&org);
        let mut tx = self.store.write().await?;
        self.insert_new_org(tx.as_mut(), &org).await?;
        tx.insert_audit(&self.audit_entry(
            caller.stamp(),
            "organization.created",
            json!({ "organizationId": org.id.to_string(), "name": org.name }),
        ))
        .await?;
        self.finish(tx, idem, Reply::json(201, &view)).await
    }

    pub async fn list_children(&self, caller: &Caller, status: Option<OrgStatus>, page: PageRequest) -> Result<Page<OrgView>> {
        caller.require(Scope::OrgAdmin).await?;
        let mut tx = self.store.read().await?;
        let rows = tx.list_orgs(Some(caller.org_id()), status, page).await?;
        tx.commit().await?;
        Ok(Page::from_rows(rows, page, &self.secret, "orgs", |o| o.seq).map(|o| OrgView::from(&o)))
    }

    pub async fn get_child(&self, caller: &Caller, id: OrgId) -> Result<Reply> {
        caller.require(Scope::OrgAdmin).await?;
        let mut tx = self.store.read().await?;
        let org = child_of(tx.as_mut(), caller.org_id(), id).await?;
        let wallet = self.wallet_now(tx.as_mut(), org.id).await?;
        let project_count = tx.count_projects(org.id).await?;
        tx.commit().await?;
        let summary = SummaryView {
            project_count,
            balance: wallet.balance(),
            available: wallet.available(),
            credit_config: ConfigView::from(wallet.config),
        };
        Ok(Reply::json(200, &OrgWithSummary { org: OrgView::from(&org), summary }))
    }

    pub async fn update_child(&self, caller: &Caller, id: OrgId, patch: OrgPatch, idem: Option<&IdemClaim>) -> Result<Reply> {
        caller.require(Scope::OrgAdmin).await?;
        caller.ensure_writable()?;
        let mut tx = self.store.write().await?;
        let mut org = child_of(tx.as_mut(), caller.org_id(), id).await?;
        if org.status == OrgStatus::Archived {
            return Err(CoreError::conflict("the organization is archived; it cannot be edited"));
        }
        if let Some(name) = patch.name {
            org.name = name;
        }
        if let Some(mp) = &patch.metadata {
            org.metadata = org.metadata.apply(mp, "metadata")?;
        }
        if let Some(email) = patch.billing_email {
            org.billing_email = email;
        }
        org.updated_at = self.now();
        tx.update_org(&org).await?;
        tx.insert_audit(&self.audit_entry(caller.stamp(), "organization.updated", json!({ "organizationId": org.id.to_string() }))).await?;
        self.finish(tx, idem, Reply::json(200, &OrgView::from(&org))).await
    }

    /// Suspend, resume or archive a child. Repeating a request in the state it leads to is a
    /// no-op that answers with the current state; archive is terminal.
    pub async fn change_child_lifecycle(&self, caller: &Caller, id: OrgId, req: Lifecycle, idem: Option<&IdemClaim>) -> Result<Reply> {
        caller.require(Scope::OrgAdmin).await?;
        caller.ensure_writable()?;
        let mut tx = self.store.write().await?;
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
            tx.insert_event(&self.event(event_type, org.id, None, json!({ "organization": OrgView::from(&org) }))).await?;
        }
        let reply = if req == Lifecycle::Archive {
            let (reclaimed, revoked) = org.archive_stats.unwrap_or((0, 0));
            Reply::json(
                200,
                &ArchivedView {
                    id: org.id,
                    status: "archived",
                    archived_at: org.archived_at,
                    reclaimed_credits: reclaimed,
                    revoked_api_keys: revoked,
                },
            )
        } else {
            Reply::json(200, &OrgView::from(&org))
        };
        self.finish(tx, idem, reply).await
    }
}
