//! Opaque keyset cursors (CONTRACT §1, "Pagination"). A cursor names the last row seen by its
//! sequence number and the list it belongs to, sealed with a MAC so a tampered one is a 422.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::CoreError;

const MAC_LEN: usize = 12;

/// The server's secret: 32 bytes that seal cursors and values stored at rest (`seal.rs`).
/// During a rotation it also carries the previous secret, which still opens and verifies what
/// it sealed but never seals anything new.
#[derive(Clone)]
pub struct ServerSecret {
    key: [u8; 32],
    previous: Option<[u8; 32]>,
}

impl std::fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerSecret(***)")
    }
}

impl ServerSecret {
    pub fn from_bytes(b: [u8; 32]) -> Self {
        Self { key: b, previous: None }
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.key
    }

    /// The previous secret, during a rotation, as a secret of its own.
    pub fn previous(&self) -> Option<ServerSecret> {
        self.previous.map(ServerSecret::from_bytes)
    }

    /// This secret, still opening (and verifying) what `previous` sealed.
    pub fn with_previous(mut self, previous: &ServerSecret) -> Self {
        self.previous = Some(previous.key);
        self
    }

    /// This secret alone, without a previous one.
    pub fn current(&self) -> ServerSecret {
        ServerSecret::from_bytes(self.key)
    }

    pub fn generate() -> Self {
        Self::from_bytes(rand::random())
    }

    /// The secret as 64 lowercase hex characters (the form `STRATA_SECRET_KEY` takes).
    pub fn to_hex(&self) -> String {
        self.key.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        let s = s.trim();
        if s.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
            let hex = std::str::from_utf8(chunk).ok()?;
            out[i] = u8::from_str_radix(hex, 16).ok()?;
        }
        Some(Self::from_bytes(out))
    }

    fn mac(&self, data: &[u8]) -> [u8; MAC_LEN] {
        Self::mac_with(&self.key, data)
    }

    fn mac_with(key: &[u8; 32], data: &[u8]) -> [u8; MAC_LEN] {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length works for HMAC");
        m.update(b"strata.cursor.v1:");
        m.update(data);
        let full = m.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }

    /// Seals "the next page of list `kind` starts after row `seq`".
    pub fn encode_cursor(&self, kind: &str, seq: i64) -> String {
        let mut data = format!("{kind}:{seq}").into_bytes();
        let mac = self.mac(&data);
        data.extend_from_slice(&mac);
        URL_SAFE_NO_PAD.encode(data)
    }

    /// Opens a cursor of list `kind`; anything else is 422 naming `cursor`.
    pub fn decode_cursor(&self, kind: &str, token: &str) -> Result<i64, CoreError> {
        let bad = || CoreError::validation("cursor", "is not a valid cursor for this list");
        let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
        if raw.len() <= MAC_LEN {
            return Err(bad());
        }
        let (data, mac) = raw.split_at(raw.len() - MAC_LEN);
        let signed_by = |key: &[u8; 32]| bool::from(subtle::ConstantTimeEq::ct_eq(mac, &Self::mac_with(key, data)[..]));
        if !signed_by(&self.key) && !self.previous.as_ref().is_some_and(signed_by) {
            return Err(bad());
        }
        let text = std::str::from_utf8(data).map_err(|_| bad())?;
        let (k, seq) = text.rsplit_once(':').ok_or_else(bad)?;
        if k != kind {
            return Err(bad());
        }
        seq.parse().map_err(|_| bad())
    }
}

/// A page request after parsing: how many rows and after which sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    /// Rows strictly older (smaller seq) than this; `None` is the first page.
    pub before_seq: Option<i64>,
}

impl PageRequest {
    /// Parses `limit` (within `1..=max`, default `default`) and `cursor`.
    pub fn parse(
        secret: &ServerSecret,
        kind: &str,
        limit: Option<&str>,
        cursor: Option<&str>,
        default: u32,
        max: u32,
    ) -> Result<Self, CoreError> {
        let limit = match limit {
            None => default,
            Some(s) => match s.parse::<u32>() {
                Ok(n) if (1..=max).contains(&n) => n,
                _ => return Err(CoreError::validation("limit", format!("must be an integer from 1 to {max}"))),
            },
        };
        let before_seq = match cursor {
            None => None,
            Some(c) => Some(secret.decode_cursor(kind, c)?),
        };
        Ok(Self { limit, before_seq })
    }
}

/// One page of a list: the rows and, when more remain, the cursor for the next page.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows fetched newest first; the extra row only says
    /// whether a next page exists.
    pub fn from_rows(mut rows: Vec<T>, req: PageRequest, secret: &ServerSecret, kind: &str, seq_of: impl Fn(&T) -> i64) -> Self {
        let more = rows.len() > req.limit as usize;
        rows.truncate(req.limit as usize);
        let next_cursor = if more { rows.last().map(|r| secret.encode_cursor(kind, seq_of(r))) } else { None };
        Self { items: rows, next_cursor }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page { items: self.items.into_iter().map(f).collect(), next_cursor: self.next_cursor }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_only_for_its_own_list() {
        let s = ServerSecret::generate();
        let c = s.encode_cursor("orgs", 42);
        assert_eq!(s.decode_cursor("orgs", &c).unwrap(), 42);
        assert!(s.decode_cursor("keys", &c).is_err());
    }

    #[test]
    fn a_tampered_cursor_is_rejected() {
        let s = ServerSecret::generate();
        let c = s.encode_cursor("orgs", 42);
        let mut raw = URL_SAFE_NO_PAD.decode(&c).unwrap();
        raw[5] ^= 1;
        assert!(s.decode_cursor("orgs", &URL_SAFE_NO_PAD.encode(&raw)).is_err());
        assert!(s.decode_cursor("orgs", "not base64!").is_err());
        assert!(s.decode_cursor("orgs", "").is_err());
        assert!(ServerSecret::generate().decode_cursor("orgs", &c).is_err());
    }

    #[test]
    fn limits_are_bounded() {
        let s = ServerSecret::generate();
        assert_eq!(PageRequest::parse(&s, "x", None, None, 25, 200).unwrap().limit, 25);
        assert!(PageRequest::parse(&s, "x", Some("0"), None, 25, 200).is_err());
        assert!(PageRequest::parse(&s, "x", Some("201"), None, 25, 200).is_err());
        assert!(PageRequest::parse(&s, "x", Some("ten"), None, 25, 200).is_err());
    }

    #[test]
    fn secret_hex_round_trips() {
        let s = ServerSecret::generate();
        assert_eq!(ServerSecret::from_hex(&s.to_hex()).unwrap().key, s.key);
    }
}
