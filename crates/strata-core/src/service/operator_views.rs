//! The operator's reads and key actions (CONTRACT §9: `orgs list|show`, `partners show|rename`,
//! `keys list|show|kill|revoke`, `credits balance|history`, `audit`): any org, no caller, no
//! tenant scoping; every change is audited with `actor: "operator"`.

use serde_json::json;

use super::{Stamp, Strata};
use crate::audit::{AuditEntry, AuditFilter};
use crate::credits::{CreditEvent, CreditEventFilter, Wallet};
use crate::cursor::PageRequest;
use crate::error::{CoreError, Result};
use crate::event::EventType;
use crate::id::OrgId;
use crate::key::{ApiKey, KeyStatus};
use crate::org::{Org, OrgFilter, OrgStatus};
use crate::wire::KeyView;

/// The most rows one operator listing returns.
pub const OPERATOR_LIST_MAX: u32 = 1_000;

/// One org as the operator sees it: the org, its wallet and how many children it has.
#[derive(Debug)]
pub struct OrgDetail {
    pub org: Org,
    pub wallet: Wallet,
    pub children: usize,
}

impl Strata {
    /// Orgs newest first: the children of `parent`, or every partner (root) org without one;
    /// `status` filters; at most `limit` (1–1,000).
    pub async fn operator_orgs(&self, parent: Option<OrgId>, status: Option<OrgStatus>, limit: u32) -> Result<Vec<Org>> {
        let limit = limit.clamp(1, OPERATOR_LIST_MAX);
        let mut tx = self.store.read().await?;
        if let Some(p) = parent {
            super::tenancy::any_org(tx.as_mut(), p).await?;
        }
        let filter = OrgFilter { statuses: status.into_iter().collect(), ..OrgFilter::default() };
        let rows = tx.list_orgs(parent, &filter, PageRequest { limit, before_seq: None }).await?;
        tx.commit().await?;
        Ok(rows)
    }

    /// Any org with its wallet (rolled over to the current period as a read) and its number of
    /// children (up to 1,000 counted).
    pub async fn operator_org(&self, id: OrgId) -> Result<OrgDetail> {
        let mut tx = self.store.read().await?;
        let org = super::tenancy::any_org(tx.as_mut(), id).await?;
        let mut wallet = tx.wallet(id).await?.ok_or_else(|| CoreError::internal(format!("org {id} has no wallet")))?;
        wallet.roll_over(self.now());
        let children =
            tx.list_orgs(Some(id), &OrgFilter::default(), PageRequest { limit: OPERATOR_LIST_MAX, before_seq: None }).await?.len();
        tx.commit().await?;
        Ok(OrgDetail { org, wallet, children })
    }

    /// Renames a partner (root) org; a child is renamed by its partner through the API.
    pub async fn rename_partner(&self, id: OrgId, name: String) -> Result<Org> {
        let mut tx = self.store.write().await?;
        let mut org = super::tenancy::any_org(tx.as_mut(), id).await?;
        if org.parent_id.is_some() {
            return Err(CoreError::validation(
                "org",
                "is a child organization; its partner renames it with PATCH /v1/organizations/:orgId",
            ));
        }
        if org.name != name {
            let from = std::mem::replace(&mut org.name, name);
            org.updated_at = self.now();
            tx.update_org(&org).await?;
            tx.insert_audit(&self.audit_entry(
                Stamp::operator().in_org(id),
                "organization.renamed",
                json!({ "organizationId": id.to_string(), "from": from, "to": org.name }),
            ))
            .await?;
        }
        tx.commit().await?;
        Ok(org)
    }

    /// An org's keys, newest first (at most `limit`, 1–1,000), as listed at now.
    pub async fn operator_keys(&self, org: OrgId, limit: u32) -> Result<Vec<KeyView>> {
        let mut tx = self.store.read().await?;
        super::tenancy::any_org(tx.as_mut(), org).await?;
        let rows = tx.list_keys(org, PageRequest { limit: limit.clamp(1, OPERATOR_LIST_MAX), before_seq: None }).await?;
        tx.commit().await?;
        let now = self.now();
        Ok(rows.iter().map(|k| KeyView::at(k, now)).collect())
    }

    /// One key by its id or public prefix (see `find_key`), as listed at now.
    pub async fn operator_key(&self, handle: &str) -> Result<KeyView> {
        let mut tx = self.store.read().await?;
        let key = self.find_key(tx.as_mut(), handle).await?;
        tx.commit().await?;
        Ok(KeyView::at(&key, self.now()))
    }

    /// Kills a key (its next request answers 503 KILL_SWITCH; `keys unkill` lifts it).
    /// Idempotent.
    pub async fn operator_kill_key(&self, handle: &str) -> Result<ApiKey> {
        let mut tx = self.store.write().await?;
        let mut key = self.find_key(tx.as_mut(), handle).await?;
        if !key.killed {
            key.killed = true;
            tx.update_key(&key).await?;
            tx.insert_audit(&self.audit_entry(
                Stamp::operator().in_org(key.org_id),
                "api_key.killed",
                json!({ "keyId": key.id.to_string() }),
            ))
            .await?;
        }
        tx.commit().await?;
        Ok(key)
    }

    /// Revokes a key for good (its next request is 401), with its `api_key.revoked` event.
    /// Idempotent.
    pub async fn operator_revoke_key(&self, handle: &str) -> Result<ApiKey> {
        let mut tx = self.store.write().await?;
        let mut key = self.find_key(tx.as_mut(), handle).await?;
        if key.status == KeyStatus::Active {
            key.status = KeyStatus::Revoked;
            key.revoked_at = Some(self.now());
            tx.update_key(&key).await?;
            tx.insert_audit(&self.audit_entry(
                Stamp::operator().in_org(key.org_id),
                "api_key.revoked",
                json!({ "keyId": key.id.to_string() }),
            ))
            .await?;
            tx.insert_event(&self.event(EventType::ApiKeyRevoked, key.org_id, None, json!({ "apiKey": KeyView::from(&key) }))).await?;
        }
        tx.commit().await?;
        Ok(key)
    }

    /// Any org's wallet, rolled over to the current period as a read (nothing is written).
    pub async fn operator_wallet(&self, org: OrgId) -> Result<Wallet> {
        let mut tx = self.store.read().await?;
        super::tenancy::any_org(tx.as_mut(), org).await?;
        let mut w = tx.wallet(org).await?.ok_or_else(|| CoreError::internal(format!("org {org} has no wallet")))?;
        tx.commit().await?;
        w.roll_over(self.now());
        Ok(w)
    }

    /// Any org's credit ledger, newest first (at most `limit`, 1–1,000).
    pub async fn operator_credit_events(&self, org: OrgId, filter: &CreditEventFilter, limit: u32) -> Result<Vec<CreditEvent>> {
        let mut tx = self.store.read().await?;
        super::tenancy::any_org(tx.as_mut(), org).await?;
        let rows = tx.list_credit_events(org, filter, PageRequest { limit: limit.clamp(1, OPERATOR_LIST_MAX), before_seq: None }).await?;
        tx.commit().await?;
        Ok(rows)
    }

    /// Any org's audit log, newest first (at most `limit`, 1–1,000).
    pub async fn operator_audit(&self, org: OrgId, filter: &AuditFilter, limit: u32) -> Result<Vec<AuditEntry>> {
        self.flush_before_read().await;
        let mut tx = self.store.read().await?;
        super::tenancy::any_org(tx.as_mut(), org).await?;
        let rows = tx.list_audit(org, filter, PageRequest { limit: limit.clamp(1, OPERATOR_LIST_MAX), before_seq: None }).await?;
        tx.commit().await?;
        Ok(rows)
    }
}
