//! The API key format (CONTRACT §2, "Key format"): `lp_<env>_<keyid>_<secret>`. The keyid is the
//! public lookup handle; only a SHA-256 hash of the secret is stored, compared in constant time.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::CoreError;

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const KEYID_LEN: usize = 16;
const SECRET_LEN: usize = 43;

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Env {
    Live,
    Test,
}

impl Env {
    pub fn as_str(self) -> &'static str {
        match self {
            Env::Live => "live",
            Env::Test => "test",
        }
    }

    pub fn parse(s: &str) -> Option<Env> {
        match s {
            "live" => Some(Env::Live),
            "test" => Some(Env::Test),
            _ => None,
        }
    }
}

/// Rate-limit tiers (CONTRACT §1). `internal` is the operator's own and never shown to partners.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Sandbox,
    Standard,
    Pilot,
    Partner,
    Internal,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Sandbox => "sandbox",
            Tier::Standard => "standard",
            Tier::Pilot => "pilot",
            Tier::Partner => "partner",
            Tier::Internal => "internal",
        }
    }

    pub fn parse(s: &str) -> Option<Tier> {
        Some(match s {
            "sandbox" => Tier::Sandbox,
            "standard" => Tier::Standard,
            "pilot" => Tier::Pilot,
            "partner" => Tier::Partner,
            "internal" => Tier::Internal,
            _ => return None,
        })
    }
}

/// A full API key as shown once to its owner. `Debug` and `Display` redact it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(String);

impl SecretKey {
    /// The whole key, for the one response that shows it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

impl fmt::Display for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// What is stored for a freshly minted key: the public parts and the hash, never the secret.
#[derive(Debug, Clone)]
pub struct MintedKey {
    pub env: Env,
    pub keyid: String,
    pub secret_hash: String,
    pub secret: SecretKey,
}

impl MintedKey {
    pub fn generate(env: Env) -> Self {
        let mut rng = rand::rng();
        let mut keyid = String::with_capacity(KEYID_LEN);
        for _ in 0..KEYID_LEN {
            keyid.push(CROCKFORD[(rng.next_u32() % 32) as usize] as char);
        }
        let mut raw = [0u8; 32];
        rng.fill_bytes(&mut raw);
        let secret = URL_SAFE_NO_PAD.encode(raw);
        let full = format!("lp_{}_{}_{}", env.as_str(), keyid, secret);
        Self { env, secret_hash: hash_secret(&secret), keyid, secret: SecretKey(full) }
    }

    /// `lp_<env>_<keyid>`: the public prefix shown in listings.
    pub fn prefix(&self) -> String {
        prefix_of(self.env, &self.keyid)
    }
}

pub fn prefix_of(env: Env, keyid: &str) -> String {
    format!("lp_{}_{}", env.as_str(), keyid)
}

/// A presented bearer token split into its parts. Holds the secret only long enough to hash it.
pub struct PresentedKey {
    pub env: Env,
    pub keyid: String,
    secret: String,
}

impl fmt::Debug for PresentedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PresentedKey({}, ***)", prefix_of(self.env, &self.keyid))
    }
}

impl PresentedKey {
    pub fn parse(token: &str) -> Result<Self, CoreError> {
        let malformed = CoreError::Unauthenticated { reason: "malformed_key" };
        let rest = token.strip_prefix("lp_").ok_or(malformed)?;
        let (env, rest) = rest.split_once('_').ok_or(CoreError::Unauthenticated { reason: "malformed_key" })?;
        let env = Env::parse(env).ok_or(CoreError::Unauthenticated { reason: "malformed_key" })?;
        // The secret is base64url and may itself hold '_', so split by position, not by '_'.
        if rest.len() != KEYID_LEN + 1 + SECRET_LEN || rest.as_bytes()[KEYID_LEN] != b'_' {
            return Err(CoreError::Unauthenticated { reason: "malformed_key" });
        }
        let (keyid, secret) = (&rest[..KEYID_LEN], &rest[KEYID_LEN + 1..]);
        let keyid_ok = keyid.bytes().all(|b| CROCKFORD.contains(&b));
        let secret_ok = secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !keyid_ok || !secret_ok {
            return Err(CoreError::Unauthenticated { reason: "malformed_key" });
        }
        Ok(Self { env, keyid: keyid.to_owned(), secret: secret.to_owned() })
    }

    /// Constant-time check of the secret against a stored hash.
    pub fn matches(&self, stored_hash: &str) -> bool {
        let presented = hash_secret(&self.secret);
        presented.as_bytes().ct_eq(stored_hash.as_bytes()).into()
    }
}

fn hash_secret(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    let mut hex = String::with_capacity(64);
    for b in digest {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_key_parses_back_and_matches_its_hash() {
        let minted = MintedKey::generate(Env::Live);
        let full = minted.secret.expose();
        assert!(full.starts_with(&minted.prefix()));
        assert_eq!(full.len(), "lp_live_".len() + 16 + 1 + 43);
        let presented = PresentedKey::parse(full).unwrap();
        assert_eq!(presented.keyid, minted.keyid);
        assert!(presented.matches(&minted.secret_hash));
        assert!(!minted.secret_hash.contains(&presented.secret));
    }

    #[test]
    fn a_wrong_secret_does_not_match() {
        let a = MintedKey::generate(Env::Test);
        let b = MintedKey::generate(Env::Test);
        let forged = format!("{}_{}", a.prefix(), &b.secret.expose()[b.prefix().len() + 1..]);
        assert!(!PresentedKey::parse(&forged).unwrap().matches(&a.secret_hash));
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        let good = MintedKey::generate(Env::Live).secret.expose().to_owned();
        for bad in [
            "",
            "lp_live_",
            "sk_live_ABCDEFGHJKMNPQRS_xxx",
            &good.replace("lp_live_", "lp_prod_"),
            &good[..good.len() - 1],
            &format!("{good}x"),
            &good.replacen('_', "-", 3),
        ] {
            assert!(PresentedKey::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn secrets_redact_themselves() {
        let minted = MintedKey::generate(Env::Live);
        assert_eq!(format!("{}", minted.secret), "***");
        assert!(!format!("{minted:?}").contains(minted.secret.expose()));
    }
}
