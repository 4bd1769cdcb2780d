//! Idempotency records (CONTRACT §1): a claim taken before the work, completed with the response in
//! the same transaction as the work's effect, replayed verbatim on a retry.

use sha2::{Digest, Sha256};

use crate::clock::Timestamp;
use crate::id::ApiKeyId;

/// How long an unfinished claim blocks retries before it is presumed dead (its process crashed),
/// by default (`CoreConfig::idempotency_lease_ms`).
pub const CLAIM_LEASE_MS: i64 = 60_000;
/// How long records are kept before pruning.
pub const RETENTION_MS: i64 = 24 * 60 * 60 * 1000;

/// A response as stored and replayed: status and exact body bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    /// `body` serialised as JSON, answered with `status`.
    pub fn json(status: u16, body: &impl serde::Serialize) -> Result<Self, crate::error::CoreError> {
        let body = serde_json::to_vec(body).map_err(|e| crate::error::CoreError::internal(format!("serialising a reply: {e}")))?;
        Ok(Self { status, body })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdemRecord {
    pub api_key_id: ApiKeyId,
    pub key: String,
    pub fingerprint: String,
    /// `None` while the first request is still running.
    pub reply: Option<Reply>,
    pub created_at: Timestamp,
    pub lease_until: Timestamp,
}

/// A claim held by the request now running; passed down so the effect's transaction completes it.
#[derive(Clone, Debug)]
pub struct IdemClaim {
    pub api_key_id: ApiKeyId,
    pub key: String,
    pub fingerprint: String,
    /// When this claim was taken: a request whose claim was taken over (its lease ran out)
    /// finds the token changed and may not complete it.
    pub token: Timestamp,
    /// The status the HTTP layer answers a success with (200 unless it says otherwise): the
    /// reply stored inside the effect's transaction carries it.
    pub status: u16,
}

impl IdemClaim {
    /// This claim, for a request whose success is answered with `status`.
    pub fn answering(mut self, status: u16) -> Self {
        self.status = status;
        self
    }
}

/// The identity of a request: method, path, acting org and body. Same key + other fingerprint
/// is a conflict.
pub fn fingerprint(method: &str, path: &str, acting_org: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    for part in [method.as_bytes(), path.as_bytes(), acting_org.as_bytes()] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.update(body);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Validates the header value: 1–255 visible ASCII characters.
pub fn parse_key(raw: &str) -> Result<String, crate::error::CoreError> {
    if raw.is_empty() || raw.len() > 255 || !raw.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(crate::error::CoreError::validation("Idempotency-Key", "must be 1–255 visible ASCII characters"));
    }
    Ok(raw.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_separate_their_parts() {
        assert_ne!(fingerprint("POST", "/a", "org_1", b"x"), fingerprint("POST", "/ao", "rg_1", b"x"));
        assert_eq!(fingerprint("POST", "/a", "o", b"{}"), fingerprint("POST", "/a", "o", b"{}"));
        assert_ne!(fingerprint("POST", "/a", "o", b"{}"), fingerprint("POST", "/a", "o", b"{ }"));
    }
}
