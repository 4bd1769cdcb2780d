//! Encryption at rest for values strata must be able to read back: stored idempotent replies
//! (a replayed key mint returns its secret again) and, later, webhook signing secrets.
//! XChaCha20-Poly1305 under a key derived from the server secret; random 24-byte nonces.

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::cursor::ServerSecret;
use crate::error::{CoreError, Result};

impl ServerSecret {
    fn cipher(&self, purpose: &str) -> XChaCha20Poly1305 {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(self.as_bytes()).expect("any key length works for HMAC");
        m.update(b"strata.seal.v1:");
        m.update(purpose.as_bytes());
        let key = m.finalize().into_bytes();
        XChaCha20Poly1305::new(&key)
    }

    /// Encrypts `plain` for `purpose`; the result is printable (base64).
    pub fn seal(&self, purpose: &str, plain: &[u8]) -> String {
        let nonce_bytes: [u8; 24] = rand::random();
        let nonce = XNonce::from_slice(&nonce_bytes);
        let ct = self.cipher(purpose).encrypt(nonce, plain).expect("encryption of an in-memory buffer cannot fail");
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&ct);
        STANDARD_NO_PAD.encode(out)
    }

    pub fn open(&self, purpose: &str, sealed: &str) -> Result<Vec<u8>> {
        let raw = STANDARD_NO_PAD.decode(sealed).map_err(|_| CoreError::internal("sealed value is not base64"))?;
        if raw.len() < 24 {
            return Err(CoreError::internal("sealed value is too short"));
        }
        let (nonce, ct) = raw.split_at(24);
        self.cipher(purpose)
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
}
