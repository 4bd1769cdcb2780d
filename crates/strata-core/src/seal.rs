//! Encryption at rest for values strata must be able to read back: stored idempotent replies
//! (a replayed key mint returns its secret again) and webhook signing secrets. XChaCha20-Poly1305
//! under a key derived from the server secret; random 24-byte nonces. Everything sealed is listed
//! by `store::SealedColumn`, which `strata secret rotate` walks to re-seal under a new secret.

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::cursor::ServerSecret;
use crate::error::{CoreError, Result};

impl ServerSecret {
    fn cipher(key: &[u8; 32], purpose: &str) -> XChaCha20Poly1305 {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length works for HMAC");
        m.update(b"strata.seal.v1:");
        m.update(purpose.as_bytes());
        let key = m.finalize().into_bytes();
        XChaCha20Poly1305::new(&key)
    }

    /// A short public name for the secret (16 hex characters, a keyed hash of a fixed text):
    /// tells two secrets apart in a backup or a log without revealing either.
    pub fn fingerprint(&self) -> String {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(self.as_bytes()).expect("any key length works for HMAC");
        m.update(b"strata.fingerprint.v1");
        m.finalize().into_bytes()[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Encrypts `plain` for `purpose`; the result is printable (base64).
    pub fn seal(&self, purpose: &str, plain: &[u8]) -> String {
        let nonce_bytes: [u8; 24] = rand::random();
        let nonce = XNonce::from_slice(&nonce_bytes);
        let ct = Self::cipher(self.as_bytes(), purpose).encrypt(nonce, plain).expect("encryption of an in-memory buffer cannot fail");
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&ct);
        STANDARD_NO_PAD.encode(out)
    }

    /// Decrypts what `seal` made for `purpose` under this secret or, during a rotation, under the
    /// previous one. Internal error when neither opens it or it is not a sealed value.
    pub fn open(&self, purpose: &str, sealed: &str) -> Result<Vec<u8>> {
        match self.open_current(purpose, sealed) {
            Err(e) => match self.previous() {
                Some(prev) => prev.open_current(purpose, sealed).map_err(|_| e),
                None => Err(e),
            },
            ok => ok,
        }
    }

    /// Decrypts with this secret only (not the previous one).
    pub fn open_current(&self, purpose: &str, sealed: &str) -> Result<Vec<u8>> {
        let raw = STANDARD_NO_PAD.decode(sealed).map_err(|_| CoreError::internal("sealed value is not base64"))?;
        if raw.len() < 24 {
            return Err(CoreError::internal("sealed value is too short"));
        }
        let (nonce, ct) = raw.split_at(24);
        Self::cipher(self.as_bytes(), purpose)
            .decrypt(XNonce::from_slice(nonce), ct)
            .map_err(|_| CoreError::internal("sealed value does not open with this server secret"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_for_their_purpose_and_key() {
        let s = ServerSecret::generate();
        let sealed = s.seal("idem", b"lp_live_secret");
        assert!(!sealed.contains("lp_live"));
        assert_eq!(s.open("idem", &sealed).unwrap(), b"lp_live_secret");
        assert!(s.open("webhook", &sealed).is_err());
        assert!(ServerSecret::generate().open("idem", &sealed).is_err());
    }

    #[test]
    fn a_previous_secret_still_opens_what_it_sealed_but_never_seals() {
        let old = ServerSecret::generate();
        let sealed_old = old.seal("idem", b"before");
        let new = ServerSecret::generate().with_previous(&old);
        assert_eq!(new.open("idem", &sealed_old).unwrap(), b"before");
        assert!(new.open_current("idem", &sealed_old).is_err());
        let sealed_new = new.seal("idem", b"after");
        assert!(old.open("idem", &sealed_new).is_err(), "new values are sealed under the new secret");
        assert_eq!(new.current().open("idem", &sealed_new).unwrap(), b"after");
        let cursor = old.encode_cursor("keys", 7);
        assert_eq!(new.decode_cursor("keys", &cursor).unwrap(), 7);
        assert!(new.current().decode_cursor("keys", &cursor).is_err());
    }
}
