//! Authentication and the acting org: the hot path of every request. One indexed read (the key,
//! its org and the org's wallet), no write on success (`lastUsedAt` is batched). Every rejection
//! is audited, off the request path (see `rejections`).

use serde_json::json;

use super::{Stamp, Strata};
use crate::apikey::PresentedKey;
use crate::audit::Actor;
use crate::credits::Wallet;
use crate::error::{CoreError, KillScope, Result};
use crate::id::{OrgId, RequestId};
use crate::key::ApiKey;
use crate::org::{Org, OrgStatus};
use crate::ratelimit::{EndpointClass, RateInfo};
use crate::scope::Scope;
use crate::store::Owner;

/// The key a rejected request named, when it named a real one.
#[derive(Clone, Copy, Debug)]
struct KeyRef {
    id: crate::id::ApiKeyId,
    org: OrgId,
    tier: crate::apikey::Tier,
    /// The request proved it holds the live key (right secret, environment, not revoked), and
    /// was refused for something else (kill switch, acting org).
    live: bool,
}

/// What a request presented.
#[derive(Debug, Default, Clone, Copy)]
pub struct Credentials<'a> {
    /// The `Authorization` header, if any.
    pub authorization: Option<&'a str>,
    /// The `X-Layers-Organization` header, if any.
    pub acting_org: Option<&'a str>,
    /// Whether the route is `GET /v1/whoami`, which a killed or suspended key may still call.
    pub whoami: bool,
}

/// An authenticated caller and the org the request acts in.
#[derive(Clone)]
pub struct Caller {
    pub key: ApiKey,
    /// The key's own org.
    pub home: Org,
    /// The org the request acts in: `home`, or a direct child named by the header.
    pub org: Org,
    /// `home`'s wallet when it was read with the key (a lookup the authorization cache
    /// answered reads none); whoami shows it without another read.
    pub(crate) home_wallet: Option<Wallet>,
    pub request_id: RequestId,
    strata: Strata,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller").field("key", &self.key.id).field("org", &self.org.id).finish()
    }
}

impl Caller {
    pub fn org_id(&self) -> OrgId {
        self.org.id
    }

    pub fn acts_in_child(&self) -> bool {
        self.org.id != self.home.id
    }

    pub fn stamp(&self) -> Stamp {
        Stamp {
            actor: Actor::PartnerApi,
            request_id: Some(self.request_id),
            org_id: Some(self.org.id),
            project_id: None,
            api_key_id: Some(self.key.id),
        }
    }

    /// Requires a scope; a denial is audited and answered 403.
    pub async fn require(&self, scope: Scope) -> Result<()> {
        if self.key.scopes.allows(scope) {
            return Ok(());
        }
        self.strata.record_rejection(self.stamp(), "auth.scope_denied", json!({ "scope": scope.as_str() }));
        Err(CoreError::forbidden_scope(scope.as_str()))
    }

    /// Writes inside an archived org are 409 (reads still work).
    pub fn ensure_writable(&self) -> Result<()> {
        if self.org.status == OrgStatus::Archived {
            return Err(CoreError::conflict_with(
                "the organization is archived; it accepts no writes",
                json!({ "organizationId": self.org.id.to_string(), "status": "archived" }),
            ));
        }
        Ok(())
    }
}

impl Strata {
    /// Opens a write transaction for `caller`, re-checking inside it the child org the request
    /// acts in (its status was read at authentication, and an archive or suspension may have
    /// committed since) and holding it against such a change until commit. Acting in a child
    /// through `X-Layers-Organization`: archived is 409 (the parent keeps access to a suspended
    /// child). With the child's own key: archived is 401 (the archive revoked the key),
    /// suspended or cut off is 503 `KILL_SWITCH` (CONTRACT §2). A partner org's own status is
    /// changed only by the operator and is not re-checked here.
    pub(crate) async fn write_as(&self, caller: &Caller) -> Result<Box<dyn crate::store::Tx>> {
        self.write_as_in(caller, false).await
    }

    /// `write_as` through the group commit (`Store::write_grouped`) when `grouped`.
    pub(crate) async fn write_as_in(&self, caller: &Caller, grouped: bool) -> Result<Box<dyn crate::store::Tx>> {
        caller.ensure_writable()?;
        let mut tx = if grouped { self.store.write_grouped().await? } else { self.store.write().await? };
        if caller.org.is_root() {
            return Ok(tx);
        }
        let org = tx.org_shared(Owner::System, caller.org.id).await?.ok_or(CoreError::not_found("organization"))?;
        match (org.status, caller.acts_in_child()) {
            (OrgStatus::Archived, true) => {
                return Err(CoreError::conflict_with(
                    "the organization is archived; it accepts no writes",
                    json!({ "organizationId": org.id.to_string(), "status": "archived" }),
                ));
            }
            (OrgStatus::Archived, false) => return Err(CoreError::Unauthenticated { reason: "revoked" }),
            (OrgStatus::Suspended, false) => return Err(CoreError::KillSwitch { scope: KillScope::Organization }),
            (_, false) if org.access_revoked => return Err(CoreError::KillSwitch { scope: KillScope::Organization }),
            _ => {}
        }
        Ok(tx)
    }

    /// Counts a request against the caller's rate limits; a refusal is audited.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn rate_limit(&self, caller: &Caller, class: EndpointClass) -> Result<Option<RateInfo>> {
        let limits = *self.config.tier_limits.get(caller.key.tier);
        match self.limiter.check(caller.key.id, &limits, class, self.now()).await {
            Ok(info) => Ok(info),
            Err(e) => {
                crate::telemetry::rate_limited(class.as_str());
                self.record_rejection(caller.stamp(), "rate_limit.hit", json!({ "class": class.as_str() }));
                Err(e)
            }
        }
    }

    /// Authenticates a request and resolves its acting org (CONTRACT §2).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn authenticate(&self, creds: Credentials<'_>, request_id: RequestId) -> Result<Caller> {
        self.authenticate_inner(creds, request_id).await.map_err(|(err, key)| self.refused(err, key, request_id))
    }

    /// `authenticate` for a request of `class`. When the live key's request is refused all the
    /// same (503 `KILL_SWITCH`, 404/422 from `X-Layers-Organization`), it counts against the
    /// key's bucket like any other, and comes back with its standing for the `X-RateLimit-*`
    /// headers (CONTRACT §1); a request that did not prove a live key has none.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn authenticate_for(
        &self,
        creds: Credentials<'_>,
        request_id: RequestId,
        class: EndpointClass,
    ) -> Result<Caller, (CoreError, Option<RateInfo>)> {
        match self.authenticate_inner(creds, request_id).await {
            Ok(caller) => Ok(caller),
            Err((err, key)) => {
                let rate = match key {
                    Some(k) if k.live => self.standing(k.id, k.tier, class).await,
                    _ => None,
                };
                Err((self.refused(err, key, request_id), rate))
            }
        }
    }

    /// Counts a refused request of a live key; its standing, or `None` when unlimited.
    async fn standing(&self, key: crate::id::ApiKeyId, tier: crate::apikey::Tier, class: EndpointClass) -> Option<RateInfo> {
        let limits = *self.config.tier_limits.get(tier);
        match self.limiter.check(key, &limits, class, self.now()).await {
            Ok(info) => info,
            Err(CoreError::RateLimited { standing, .. }) => Some(standing),
            Err(_) => None,
        }
    }

    /// Counts and audits a refused authentication (not a failure of strata's own).
    fn refused(&self, err: CoreError, key: Option<KeyRef>, request_id: RequestId) -> CoreError {
        crate::telemetry::auth_failed(&err);
        if !matches!(err, CoreError::Internal(_) | CoreError::Unavailable { .. }) {
            self.audit_rejection(&err, key, request_id);
        }
        err
    }

    async fn authenticate_inner(&self, creds: Credentials<'_>, request_id: RequestId) -> Result<Caller, (CoreError, Option<KeyRef>)> {
        let unauth = |reason| (CoreError::Unauthenticated { reason }, None);
        let header = creds.authorization.ok_or(unauth("missing_header"))?;
        let (scheme, token) = header.split_once(' ').ok_or(unauth("wrong_scheme"))?;
        if scheme != "Bearer" {
            return Err(unauth("wrong_scheme"));
        }
        let presented = PresentedKey::parse(token.trim()).map_err(|e| (e, None))?;
        let (key, home, home_wallet) =
            self.store.auth_lookup(&presented.keyid).await.map_err(|e| (e, None))?.ok_or(unauth("unknown_key"))?;
        let now = self.now();
        let found = KeyRef { id: key.id, org: key.org_id, tier: key.tier, live: false };
        let key_ref = Some(found);
        let reject = |reason| Err((CoreError::Unauthenticated { reason }, key_ref));
        if !presented.matches(&key.secret_hash) {
            return reject("wrong_secret");
        }
        if presented.env != key.env {
            return reject("env_mismatch");
        }
        if !key.is_live_at(now) {
            return reject(if key.grace_until.is_some_and(|g| now >= g) { "grace_expired" } else { "revoked" });
        }
        self.note_key_used(key.id, now);
        let key_ref = Some(KeyRef { live: true, ..found });
        if !creds.whoami {
            if key.killed {
                return Err((CoreError::KillSwitch { scope: KillScope::Key }, key_ref));
            }
            if home.status != OrgStatus::Active || home.access_revoked {
                return Err((CoreError::KillSwitch { scope: KillScope::Organization }, key_ref));
            }
        }
        let org = match creds.acting_org {
            Some(raw) if key.scopes.is_admin() => {
                let wanted = OrgId::parse_field(raw.trim(), "X-Layers-Organization").map_err(|e| (e, key_ref))?;
                // Only a direct child: the key's own org is not one (CONTRACT §2).
                let mut tx = self.store.read().await.map_err(|e| (e, None))?;
                let child = tx.org(Owner::Org(home.id), wanted).await.map_err(|e| (e, None))?;
                tx.commit().await.map_err(|e| (e, None))?;
                match child {
                    Some(c) if c.parent_id == Some(home.id) => c,
                    _ => return Err((CoreError::not_found("organization"), key_ref)),
                }
            }
            // The header is ignored for a key without org:admin.
            _ => home.clone(),
        };
        Ok(Caller { key, home, org, home_wallet, request_id, strata: self.clone() })
    }

    fn audit_rejection(&self, err: &CoreError, key: Option<KeyRef>, request_id: RequestId) {
        let (event_type, detail) = match err {
            CoreError::Unauthenticated { reason } => ("auth.rejected", json!({ "reason": reason })),
            CoreError::KillSwitch { scope: KillScope::Key } => ("auth.kill_switch", json!({ "scope": "key" })),
            CoreError::KillSwitch { scope: KillScope::Organization } => ("auth.kill_switch", json!({ "scope": "organization" })),
            CoreError::NotFound { .. } => ("auth.acting_org_not_found", json!({})),
            CoreError::Validation { .. } => ("auth.acting_org_malformed", json!({})),
            _ => return,
        };
        let stamp = Stamp {
            actor: Actor::PartnerApi,
            request_id: Some(request_id),
            org_id: key.map(|k| k.org),
            project_id: None,
            api_key_id: key.map(|k| k.id),
        };
        self.record_rejection(stamp, event_type, detail);
    }
}
