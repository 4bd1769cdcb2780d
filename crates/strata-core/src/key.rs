//! The stored API key record and the status rules the auth path applies to it.

use crate::apikey::{Env, Tier, prefix_of};
use crate::clock::Timestamp;
use crate::id::{ApiKeyId, OrgId};
use crate::scope::Scopes;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum KeyStatus {
    Active,
    Revoked,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "revoked" => Some(Self::Revoked),
            _ => None,
        }
    }
}

#[derive(Clone)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub org_id: OrgId,
    pub name: String,
    pub env: Env,
    /// The public lookup handle; changes when the key is rotated in place.
    pub keyid: String,
    /// SHA-256 of the secret, hex. Never leaves the store and the auth check.
    pub secret_hash: String,
    pub scopes: Scopes,
    pub tier: Tier,
    pub status: KeyStatus,
    pub killed: bool,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub rotated_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    /// After a child-key rotation the old key works until then.
    pub grace_until: Option<Timestamp>,
    pub superseded_by: Option<ApiKeyId>,
    pub seq: i64,
}

impl std::fmt::Debug for ApiKey {
    /// Leaves out the secret's hash: nothing about the secret belongs in a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("id", &self.id)
            .field("org_id", &self.org_id)
            .field("prefix", &self.prefix())
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl ApiKey {
    pub fn prefix(&self) -> String {
        prefix_of(self.env, &self.keyid)
    }

    /// Whether the key still authenticates at `now` (killed keys do, to answer 503).
    pub fn is_live_at(&self, now: Timestamp) -> bool {
        self.status == KeyStatus::Active && self.grace_until.is_none_or(|g| now < g)
    }
}
