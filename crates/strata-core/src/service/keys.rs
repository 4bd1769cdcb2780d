//! API keys: a child's keys (minted, rotated with a grace window, revoked by the parent) and the
//! caller's own keys (minted, rotated in place, killed). Secrets are shown once and stored hashed.

use serde::Serialize;
use serde_json::json;

use super::tenancy::{child_of, key_of};
use super::{Caller, Strata};
use crate::apikey::{Env, MintedKey, Tier};
use crate::clock::Timestamp;
use crate::cursor::{Page, PageRequest};
use crate::error::{CoreError, Result};
use crate::event::EventType;
use crate::event_data::ApiKeyEventData;
use crate::id::{ApiKeyId, OrgId};
use crate::idempotency::IdemClaim;
use crate::key::{ApiKey, KeyStatus};
use crate::org::OrgStatus;
use crate::scope::{Scope, Scopes};
use crate::store::Tx;
use crate::wire::KeyView;

pub const SECRET_WARNING: &str = "Store this secret now. It cannot be retrieved again. Rotate the key if it's lost.";

/// Which environment a new key is for.
pub type KeyEnv = Env;

#[derive(Debug, Clone)]
pub struct NewKey {
    pub name: String,
    pub scopes: Scopes,
    pub env: Env,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MintedView {
    api_key: KeyView,
    /// `lp_<env>_<keyid>_<secret>`: shown only here (and in a replay of this request).
    secret: String,
    warning: &'static str,
    /// The key this one supersedes (a child key's rotation only).
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_key: Option<KeyView>,
}

impl MintedView {
    fn of(key: &ApiKey, secret: &crate::apikey::SecretKey, previous: Option<&ApiKey>) -> Self {
        Self {
            api_key: KeyView::from(key),
            secret: secret.expose().to_owned(),
            warning: SECRET_WARNING,
            previous_key: previous.map(KeyView::from),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeletedView {
    api_key: KeyView,
    /// Always true.
    deleted: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KilledView {
    api_key: KeyView,
    /// Always true.
    killed: bool,
}

/// Builds a new key row (and its secret) for `org`.
pub(crate) fn new_key(org: OrgId, name: String, scopes: Scopes, env: Env, tier: Tier, now: Timestamp) -> (ApiKey, MintedKey) {
    let minted = MintedKey::generate(env);
    let key = ApiKey {
        id: ApiKeyId::new(),
        org_id: org,
        name,
        env,
        keyid: minted.keyid.clone(),
        secret_hash: minted.secret_hash.clone(),
        scopes,
        tier: if env == Env::Test { Tier::Sandbox } else { tier },
        status: KeyStatus::Active,
        killed: false,
        created_at: now,
        last_used_at: None,
        rotated_at: None,
        revoked_at: None,
        grace_until: None,
        superseded_by: None,
        seq: 0,
    };
    (key, minted)
}

fn ensure_rotatable(key: &ApiKey) -> Result<()> {
    let state = if key.status == KeyStatus::Revoked {
        "revoked"
    } else if key.superseded_by.is_some() {
        "superseded"
    } else if key.killed {
        "killed"
    } else {
        return Ok(());
    };
    Err(CoreError::conflict_with(
        format!("the key is {state} and cannot be rotated"),
        json!({ "keyId": key.id.to_string(), "state": state }),
    ))
}

impl Strata {
    /// The scope rules for a new key: never `org:admin` for a child, always within the caller's.
    fn check_delegation(&self, caller: &Caller, requested: &Scopes, for_child: bool) -> Result<()> {
        if requested.is_admin() && for_child {
            return Err(CoreError::ForbiddenScope {
                message: "org:admin can never be delegated to a child organization's key".into(),
                scope: Scope::OrgAdmin.as_str().into(),
            });
        }
        if let Some(missing) = caller.key.scopes.first_uncovered(requested) {
            return Err(CoreError::ForbiddenScope {
                message: format!("a new key's scopes must be a subset of yours; you lack {missing}"),
                scope: missing.as_str().into(),
            });
        }
        Ok(())
    }

    /// Inserts a freshly minted key with its audit entry and event.
    async fn insert_minted(&self, tx: &mut dyn Tx, caller: &Caller, key: &ApiKey) -> Result<()> {
        tx.insert_key(key).await?;
        let mut stamp = caller.stamp();
        stamp.org_id = Some(key.org_id);
        tx.insert_audit(&self.audit_entry(
            stamp,
            "api_key.created",
            json!({ "keyId": key.id.to_string(), "prefix": key.prefix(), "scopes": key.scopes }),
        ))
        .await?;
        tx.insert_event(&self.event(
            EventType::ApiKeyCreated,
            key.org_id,
            None,
            ApiKeyEventData { api_key: KeyView::from(key), previous_key: None },
        ))
        .await
    }

    /// A child key's tier (CONTRACT §2): `standard` whatever the minting key's tier (`new_key`
    /// makes a test key `sandbox`); only the operator changes it (`strata keys tier`).
    fn child_tier() -> Tier {
        Tier::Standard
    }

    /// `POST /v1/organizations/:orgId/api-keys`.
    #[tracing::instrument(level = "debug", name = "service.mint_child_key", skip_all)]
    pub async fn mint_child_key(&self, caller: &Caller, org: OrgId, cmd: NewKey, idem: Option<&IdemClaim>) -> Result<MintedView> {
        caller.require(Scope::OrgAdmin).await?;
        caller.ensure_writable()?;
        let mut tx = self.write_as(caller).await?;
        let child = child_of(tx.as_mut(), caller.org_id(), org).await?;
        self.check_delegation(caller, &cmd.scopes, true)?;
        if child.status == OrgStatus::Archived {
            return Err(CoreError::conflict("the organization is archived; it cannot get new keys"));
        }
        let (key, minted) = new_key(child.id, cmd.name, cmd.scopes, cmd.env, Self::child_tier(), self.now());
        self.insert_minted(tx.as_mut(), caller, &key).await?;
        let view = MintedView::of(&key, &minted.secret, None);
        self.finish(tx, idem, view).await
    }

    /// `GET /v1/organizations/:orgId/api-keys`.
    #[tracing::instrument(level = "debug", name = "service.list_child_keys", skip_all)]
    pub async fn list_child_keys(&self, caller: &Caller, org: OrgId, page: PageRequest) -> Result<Page<KeyView>> {
        caller.require(Scope::OrgAdmin).await?;
        let mut tx = self.store.read().await?;
        let child = child_of(tx.as_mut(), caller.org_id(), org).await?;
        let rows = tx.list_keys(child.id, page).await?;
        tx.commit().await?;
        let now = self.now();
        Ok(Page::from_rows(rows, page, &self.secret, "keys", |k| k.seq).map(|k| KeyView::at(&k, now)))
    }

    /// `POST /v1/organizations/:orgId/api-keys/:keyId/rotate`: a new key; the old one keeps
    /// working for the grace window.
    #[tracing::instrument(level = "debug", name = "service.rotate_child_key", skip_all)]
    pub async fn rotate_child_key(&self, caller: &Caller, org: OrgId, id: ApiKeyId, idem: Option<&IdemClaim>) -> Result<MintedView> {
        caller.require(Scope::OrgAdmin).await?;
        caller.ensure_writable()?;
        let mut tx = self.write_as(caller).await?;
        let child = child_of(tx.as_mut(), caller.org_id(), org).await?;
        let mut old = key_of(tx.as_mut(), child.id, id).await?;
        if child.status == OrgStatus::Archived {
            return Err(CoreError::conflict("the organization is archived; its keys cannot be rotated"));
        }
        ensure_rotatable(&old)?;
        let now = self.now();
        let (mut key, minted) = new_key(child.id, old.name.clone(), old.scopes.clone(), old.env, old.tier, now);
        key.tier = old.tier;
        old.rotated_at = Some(now);
        old.superseded_by = Some(key.id);
        old.grace_until = Some(now.plus_ms(self.config.rotation_grace_ms));
        tx.insert_key(&key).await?;
        tx.update_key(&old).await?;
        let mut stamp = caller.stamp();
        stamp.org_id = Some(child.id);
        tx.insert_audit(&self.audit_entry(
            stamp,
            "api_key.rotated",
            json!({ "keyId": old.id.to_string(), "newKeyId": key.id.to_string(), "graceUntil": old.grace_until }),
        ))
        .await?;
        tx.insert_event(&self.event(
            EventType::ApiKeyRotated,
            child.id,
            None,
            ApiKeyEventData { api_key: KeyView::from(&key), previous_key: Some(KeyView::from(&old)) },
        ))
        .await?;
        let view = MintedView::of(&key, &minted.secret, Some(&old));
        self.finish(tx, idem, view).await
    }

    /// `DELETE /v1/organizations/:orgId/api-keys/:keyId`: revoked at once; repeatable.
    #[tracing::instrument(level = "debug", name = "service.revoke_child_key", skip_all)]
    pub async fn revoke_child_key(&self, caller: &Caller, org: OrgId, id: ApiKeyId, idem: Option<&IdemClaim>) -> Result<DeletedView> {
        caller.require(Scope::OrgAdmin).await?;
        caller.ensure_writable()?;
        let mut tx = self.write_as(caller).await?;
        let child = child_of(tx.as_mut(), caller.org_id(), org).await?;
        let mut key = key_of(tx.as_mut(), child.id, id).await?;
        if key.status == KeyStatus::Active {
            key.status = KeyStatus::Revoked;
            key.revoked_at = Some(self.now());
            tx.update_key(&key).await?;
            let mut stamp = caller.stamp();
            stamp.org_id = Some(child.id);
            tx.insert_audit(&self.audit_entry(stamp, "api_key.revoked", json!({ "keyId": key.id.to_string() }))).await?;
            tx.insert_event(&self.event(
                EventType::ApiKeyRevoked,
                child.id,
                None,
                ApiKeyEventData { api_key: KeyView::from(&key), previous_key: None },
            ))
            .await?;
        }
        self.finish(tx, idem, DeletedView { api_key: KeyView::from(&key), deleted: true }).await
    }

    /// `GET /v1/api-keys`: the acting org's keys, masked. Any valid key of the org may list them.
    #[tracing::instrument(level = "debug", name = "service.list_own_keys", skip_all)]
    pub async fn list_own_keys(&self, caller: &Caller, page: PageRequest) -> Result<Page<KeyView>> {
        let mut tx = self.store.read().await?;
        let rows = tx.list_keys(caller.org_id(), page).await?;
        tx.commit().await?;
        let now = self.now();
        Ok(Page::from_rows(rows, page, &self.secret, "keys", |k| k.seq).map(|k| KeyView::at(&k, now)))
    }

    /// `POST /v1/api-keys`: another key of the acting org, within the caller's scopes.
    #[tracing::instrument(level = "debug", name = "service.mint_own_key", skip_all)]
    pub async fn mint_own_key(&self, caller: &Caller, cmd: NewKey, idem: Option<&IdemClaim>) -> Result<MintedView> {
        caller.require(Scope::OrgAdmin).await?;
        caller.ensure_writable()?;
        self.check_delegation(caller, &cmd.scopes, caller.acts_in_child())?;
        let tier = if caller.acts_in_child() { Self::child_tier() } else { caller.key.tier };
        let (key, minted) = new_key(caller.org_id(), cmd.name, cmd.scopes, cmd.env, tier, self.now());
        let mut tx = self.write_as(caller).await?;
        self.insert_minted(tx.as_mut(), caller, &key).await?;
        let view = MintedView::of(&key, &minted.secret, None);
        self.finish(tx, idem, view).await
    }

    /// `POST /v1/api-keys/:keyId/rotate`: same id, new secret; the old secret is dead at once.
    /// An admin key may rotate any key of its org; any key may rotate itself.
    #[tracing::instrument(level = "debug", name = "service.rotate_own_key", skip_all)]
    pub async fn rotate_own_key(&self, caller: &Caller, id: ApiKeyId, idem: Option<&IdemClaim>) -> Result<MintedView> {
        if caller.key.id != id {
            caller.require(Scope::OrgAdmin).await?;
        }
        caller.ensure_writable()?;
        let mut tx = self.write_as(caller).await?;
        let mut key = key_of(tx.as_mut(), caller.org_id(), id).await?;
        ensure_rotatable(&key)?;
        let now = self.now();
        let minted = MintedKey::generate(key.env);
        key.keyid = minted.keyid.clone();
        key.secret_hash = minted.secret_hash.clone();
        key.rotated_at = Some(now);
        tx.update_key(&key).await?;
        tx.insert_audit(&self.audit_entry(caller.stamp(), "api_key.rotated", json!({ "keyId": key.id.to_string(), "inPlace": true })))
            .await?;
        tx.insert_event(&self.event(
            EventType::ApiKeyRotated,
            key.org_id,
            None,
            ApiKeyEventData { api_key: KeyView::from(&key), previous_key: None },
        ))
        .await?;
        let view = MintedView::of(&key, &minted.secret, None);
        self.finish(tx, idem, view).await
    }

    /// `POST /v1/api-keys/:keyId/kill`: any key of an org may kill any key of the same org.
    #[tracing::instrument(level = "debug", name = "service.kill_own_key", skip_all)]
    pub async fn kill_own_key(&self, caller: &Caller, id: ApiKeyId, idem: Option<&IdemClaim>) -> Result<KilledView> {
        caller.ensure_writable()?;
        let mut tx = self.write_as(caller).await?;
        let mut key = key_of(tx.as_mut(), caller.org_id(), id).await?;
        if !key.killed {
            key.killed = true;
            tx.update_key(&key).await?;
            tx.insert_audit(&self.audit_entry(caller.stamp(), "api_key.killed", json!({ "keyId": key.id.to_string() }))).await?;
        }
        self.finish(tx, idem, KilledView { api_key: KeyView::from(&key), killed: true }).await
    }
}
