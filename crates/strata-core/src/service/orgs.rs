//! Child organizations: create, read and edit, plus whoami (the lifecycle and its cascades live
//! in `lifecycle.rs`). Every route here acts on direct children of the caller's acting org;
//! anything else is 404 so existence never leaks.

use serde::Serialize;
use serde_json::json;

use super::credits::ConfigView;
use super::tenancy::child_of;
use super::{Caller, Strata};
use crate::credits::Wallet;
use crate::cursor::{Page, PageRequest};
use crate::error::{CoreError, Result};
use crate::event::EventType;
use crate::id::OrgId;
use crate::idempotency::IdemClaim;
use crate::metadata::{Metadata, MetadataPatch};
use crate::org::{Org, OrgFilter, OrgStatus};
use crate::scope::Scope;
use crate::store::Tx;
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

/// A child's `summary` (the single-org read, and the children list with `expand=summary`):
/// the contract's `projectCount`, `balance`, `available` and `creditConfig` (which holds the
/// monthly cap), plus `usedThisPeriod`, the credits consumed this period, so a list shows usage
/// against the cap without a call per row.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SummaryView {
    project_count: i64,
    balance: i64,
    available: i64,
    used_this_period: i64,
    credit_config: ConfigView,
}

impl SummaryView {
    /// The summary of a child with this wallet (as stored) and project count, at `now`.
    fn of(wallet: Wallet, project_count: i64, now: crate::clock::Timestamp) -> Self {
        let wallet = super::credits::wallet_as_of(wallet, now);
        Self {
            project_count,
            balance: wallet.balance(),
            available: wallet.available(),
            used_this_period: wallet.used_this_period,
            credit_config: ConfigView::from(wallet.config),
        }
    }
}

/// The single-org read: the org object and its `summary`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct OrgWithSummary {
    #[serde(flatten)]
    org: OrgView,
    summary: SummaryView,
}

/// An org object, with its `summary` when one was asked for (`expand=summary`).
#[derive(Serialize, utoipa::ToSchema)]
pub struct ChildView {
    #[serde(flatten)]
    org: OrgView,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<SummaryView>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WhoamiView {
    organization_id: OrgId,
    /// The same as `organizationId` (Layers' name for it).
    workspace_id: OrgId,
    organization_name: String,
    parent_organization_id: Option<OrgId>,
    #[schema(value_type = crate::org::OrgStatus)]
    organization_status: &'static str,
    scopes: crate::scope::Scopes,
    #[schema(value_type = crate::schema::PublicTier)]
    rate_limit_tier: &'static str,
    /// True for a killed key: every other route answers 503 KILL_SWITCH.
    kill_switch: bool,
    /// True when the org is suspended or the operator revoked its access: every other route
    /// answers 503 KILL_SWITCH.
    api_access_revoked: bool,
    api_key_id: crate::id::ApiKeyId,
    credit_balance: i64,
}

impl Strata {
    /// Inserts a new org with its empty wallet and its `organization.created` event.
    pub(crate) async fn insert_new_org(&self, tx: &mut dyn Tx, org: &Org) -> Result<()> {
        tx.insert_org(org).await?;
        tx.insert_wallet(&crate::credits::Wallet::empty(org.id, org.created_at)).await?;
        tx.insert_event(&self.event(
            EventType::OrganizationCreated,
            org.id,
            None,
            crate::event_data::OrganizationEventData { organization: OrgView::from(org) },
        ))
        .await
    }

    /// `GET /v1/whoami`: answers for any valid key, even a killed or suspended one.
    #[tracing::instrument(level = "debug", name = "service.whoami", skip_all)]
    pub async fn whoami(&self, caller: &Caller) -> Result<WhoamiView> {
        let wallet = match &caller.home_wallet {
            Some(w) if !caller.acts_in_child() => super::credits::wallet_as_of(w.clone(), self.now()),
            _ => {
                let org = caller.org_id();
                let w = self.store.current_wallet(org).await?.ok_or_else(|| CoreError::internal(format!("org {org} has no wallet")))?;
                super::credits::wallet_as_of(w, self.now())
            }
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
        Ok(view)
    }

    #[tracing::instrument(level = "debug", name = "service.create_child", skip_all)]
    pub async fn create_child(&self, caller: &Caller, cmd: NewChild, idem: Option<&IdemClaim>) -> Result<OrgView> {
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
        let mut tx = self.write_as(caller).await?;
        self.insert_new_org(tx.as_mut(), &org).await?;
        tx.insert_audit(&self.audit_entry(
            caller.stamp(),
            "organization.created",
            json!({ "organizationId": org.id.to_string(), "name": org.name }),
        ))
        .await?;
        self.finish(tx, idem, view).await
    }

    /// `GET /v1/organizations`: the acting org's direct children matching `filter`, newest
    /// first; with `summaries`, each with its `summary`, read in the same statement.
    #[tracing::instrument(level = "debug", name = "service.list_children", skip_all)]
    pub async fn list_children(&self, caller: &Caller, filter: &OrgFilter, summaries: bool, page: PageRequest) -> Result<Page<ChildView>> {
        caller.require(Scope::OrgAdmin).await?;
        let mut tx = self.store.read().await?;
        let page = if summaries {
            let rows = tx.list_child_summaries(caller.org_id(), filter, page).await?;
            Page::from_rows(rows, page, &self.secret, "orgs", |(o, _, _)| o.seq).map(|(org, wallet, projects)| ChildView {
                org: OrgView::from(&org),
                summary: Some(SummaryView::of(wallet, projects, self.now())),
            })
        } else {
            let rows = tx.list_orgs(Some(caller.org_id()), filter, page).await?;
            Page::from_rows(rows, page, &self.secret, "orgs", |o| o.seq).map(|o| ChildView { org: OrgView::from(&o), summary: None })
        };
        tx.commit().await?;
        Ok(page)
    }

    #[tracing::instrument(level = "debug", name = "service.get_child", skip_all)]
    pub async fn get_child(&self, caller: &Caller, id: OrgId) -> Result<OrgWithSummary> {
        caller.require(Scope::OrgAdmin).await?;
        let (org, wallet, project_count) =
            self.store.current_child_summary(caller.org_id(), id).await?.ok_or(CoreError::not_found("organization"))?;
        Ok(OrgWithSummary { org: OrgView::from(&org), summary: SummaryView::of(wallet, project_count, self.now()) })
    }

    #[tracing::instrument(level = "debug", name = "service.update_child", skip_all)]
    pub async fn update_child(&self, caller: &Caller, id: OrgId, patch: OrgPatch, idem: Option<&IdemClaim>) -> Result<OrgView> {
        caller.require(Scope::OrgAdmin).await?;
        caller.ensure_writable()?;
        let mut tx = self.write_as(caller).await?;
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
        self.finish(tx, idem, OrgView::from(&org)).await
    }
}
