//! What only the operator does (CONTRACT §9): onboard partners, mint keys with any tier, change a
//! key's tier, un-kill a key, revoke or restore an org's API access. Every action is audited with
//! `actor: "operator"`.

use serde_json::json;

use super::keys::new_key;
use super::{Stamp, Strata};
use crate::apikey::{Env, SecretKey, Tier};
use crate::cursor::PageRequest;
use crate::error::{CoreError, Result};
use crate::event::EventType;
use crate::id::{ApiKeyId, OrgId};
use crate::key::ApiKey;
use crate::metadata::Metadata;
use crate::org::{Org, OrgStatus};
use crate::scope::{Scope, Scopes};
use crate::store::{Owner, Tx};
use crate::wire::KeyView;

#[derive(Debug, Clone)]
pub struct NewPartner {
    pub name: String,
    pub tier: Tier,
}

#[derive(Debug)]
pub struct PartnerCreated {
    pub org: Org,
    pub key: ApiKey,
    pub secret: SecretKey,
}

/// The setting whose first writer provisions the first partner (see `Strata::bootstrap`).
const BOOTSTRAP_SETTING: &str = "bootstrap";

impl Strata {
    /// Creates a partner (root) org with an `org:admin` + `*` key.
    pub async fn create_partner(&self, cmd: NewPartner) -> Result<PartnerCreated> {
        let mut tx = self.store.write().await?;
        let created = self.create_partner_in(tx.as_mut(), cmd).await?;
        tx.commit().await?;
        Ok(created)
    }

    async fn create_partner_in(&self, tx: &mut dyn Tx, cmd: NewPartner) -> Result<PartnerCreated> {
        let now = self.now();
        let org = Org::new(None, cmd.name, Metadata::default(), None, now);
        let scopes = Scopes::new([Scope::OrgAdmin, Scope::AllData]);
        let (key, minted) = new_key(org.id, "admin".into(), scopes, Env::Live, cmd.tier, now);
        self.insert_new_org(tx, &org).await?;
        tx.insert_key(&key).await?;
        let stamp = Stamp::operator().in_org(org.id);
        tx.insert_audit(&self.audit_entry(
            stamp,
            "partner.created",
            json!({ "organizationId": org.id.to_string(), "name": org.name, "apiKeyId": key.id.to_string() }),
        ))
        .await?;
        Ok(PartnerCreated { org, key, secret: minted.secret })
    }

    /// On an empty database, provisions the first partner. Returns it when it did. Of several
    /// nodes starting together on one empty database, exactly one provisions: each sees no org
    /// (PostgreSQL runs at READ COMMITTED), so each also claims the `bootstrap` setting with a
    /// token of its own; the others wait on that row's unique key until the first commits, then
    /// find someone else's token and provision nothing.
    pub async fn bootstrap(&self, name: &str) -> Result<Option<PartnerCreated>> {
        let mut tx = self.store.write().await?;
        if tx.count_orgs().await? > 0 {
            return Ok(None);
        }
        let token = uuid::Uuid::new_v4().to_string();
        if tx.setting_init(BOOTSTRAP_SETTING, &token).await? != token {
            return Ok(None);
        }
        let created = self.create_partner_in(tx.as_mut(), NewPartner { name: name.to_owned(), tier: Tier::Partner }).await?;
        tx.commit().await?;
        Ok(Some(created))
    }

    /// Every partner org, newest first.
    pub async fn list_partners(&self) -> Result<Vec<Org>> {
        let mut tx = self.store.read().await?;
        let mut out = Vec::new();
        let mut before = None;
        loop {
            let page = PageRequest { limit: 200, before_seq: before };
            let rows = tx.list_orgs(None, &crate::org::OrgFilter::default(), page).await?;
            let done = rows.len() < 200;
            before = rows.last().map(|o| o.seq);
            out.extend(rows);
            if done {
                break;
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Mints a key for any org, with any scopes and tier (the operator's own tool).
    pub async fn operator_create_key(&self, org: OrgId, name: String, scopes: Scopes, tier: Tier, env: Env) -> Result<(ApiKey, SecretKey)> {
        let mut tx = self.store.write().await?;
        let target = super::tenancy::any_org(tx.as_mut(), org).await?;
        if target.status == OrgStatus::Archived {
            return Err(CoreError::conflict("the organization is archived"));
        }
        if scopes.is_admin() && target.parent_id.is_some() {
            return Err(CoreError::ForbiddenScope {
                message: "org:admin is never granted to a child organization's key".into(),
                scope: "org:admin".into(),
            });
        }
        let (key, minted) = new_key(org, name, scopes, env, tier, self.now());
        tx.insert_key(&key).await?;
        tx.insert_audit(&self.audit_entry(
            Stamp::operator().in_org(org),
            "api_key.created",
            json!({ "keyId": key.id.to_string(), "prefix": key.prefix(), "scopes": key.scopes }),
        ))
        .await?;
        tx.insert_event(&self.event(
            EventType::ApiKeyCreated,
            org,
            None,
            crate::event_data::ApiKeyEventData { api_key: KeyView::from(&key), previous_key: None },
        ))
        .await?;
        tx.commit().await?;
        Ok((key, minted.secret))
    }

    /// Finds a key by its id (`key_…` or bare UUID) or its public prefix (`lp_<env>_<keyid>`).
    pub(super) async fn find_key(&self, tx: &mut dyn Tx, handle: &str) -> Result<ApiKey> {
        let found = if let Some(rest) = handle.strip_prefix("lp_") {
            let keyid = rest.split('_').nth(1).unwrap_or_default();
            tx.key_by_keyid(keyid).await?
        } else {
            tx.key(Owner::System, ApiKeyId::parse_field(handle, "key")?).await?
        };
        found.ok_or(CoreError::not_found("API key"))
    }

    pub async fn set_key_tier(&self, handle: &str, tier: Tier) -> Result<ApiKey> {
        let mut tx = self.store.write().await?;
        let mut key = self.find_key(tx.as_mut(), handle).await?;
        let from = key.tier;
        key.tier = tier;
        tx.update_key(&key).await?;
        tx.insert_audit(&self.audit_entry(
            Stamp::operator().in_org(key.org_id),
            "api_key.tier_changed",
            json!({ "keyId": key.id.to_string(), "from": from.as_str(), "to": tier.as_str() }),
        ))
        .await?;
        tx.commit().await?;
        Ok(key)
    }

    pub async fn unkill_key(&self, handle: &str) -> Result<ApiKey> {
        let mut tx = self.store.write().await?;
        let mut key = self.find_key(tx.as_mut(), handle).await?;
        if key.killed {
            key.killed = false;
            tx.update_key(&key).await?;
            tx.insert_audit(&self.audit_entry(
                Stamp::operator().in_org(key.org_id),
                "api_key.unkilled",
                json!({ "keyId": key.id.to_string() }),
            ))
            .await?;
        }
        tx.commit().await?;
        Ok(key)
    }

    /// Revokes or restores an org's API access (its own keys answer 503 while revoked).
    pub async fn set_org_access(&self, org: OrgId, revoked: bool) -> Result<Org> {
        let mut tx = self.store.write().await?;
        let mut target = super::tenancy::any_org(tx.as_mut(), org).await?;
        if target.access_revoked != revoked {
            target.access_revoked = revoked;
            target.updated_at = self.now();
            tx.update_org(&target).await?;
            let what = if revoked { "organization.access_revoked" } else { "organization.access_restored" };
            tx.insert_audit(&self.audit_entry(Stamp::operator().in_org(org), what, json!({ "organizationId": org.to_string() }))).await?;
        }
        tx.commit().await?;
        Ok(target)
    }
}
