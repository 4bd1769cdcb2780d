//! The authorization cache: what authenticating a key needs from the database (the key and its
//! org, with the parent's cut-off folded in), kept in the process so that a request usually
//! authenticates without a statement. Wallets are not in it: they change with money.
//!
//! Staying fresh (CONTRACT §2 holds at once):
//!
//! - In this process, a transaction that writes a key or an org invalidates what it touched when
//!   it commits (`tx/mod.rs`), before the write's response goes out: the next request reads afresh.
//! - Other processes, PostgreSQL: the same transaction sends `NOTIFY strata_auth` with the key
//!   and org ids, inside the transaction, so it goes out exactly when the change commits (the
//!   operator's command line included, which exits right after). Each process's `LISTEN`
//!   connection relays it here. While that connection is down the cache is bypassed; entries read
//!   before it was lost are not trusted after it is back (`Hub::listen_epoch`).
//! - Other processes, SQLite: a request asks `PRAGMA data_version` (has another connection
//!   committed?) and, when it moved, reads the `auth_version` setting that every transaction
//!   writing a key or an org increments; when that moved, the cache is dropped. A request within
//!   `LITE_CHECK_EVERY` of the last successful look trusts it; the first one after looks, and
//!   requests arriving meanwhile wait for that look rather than trust the cache. (Every request
//!   asking went through one connection under one lock, which cost SQLite's read routes about a
//!   fifth of their throughput, while the bound is 1 s.)
//! - A change nothing announced (a hand edit in SQL) holds after `MAX_AGE` at most.
//!
//! What depends on time (a rotated key's grace end) is checked per request against the cached
//! `grace_until`, never cached as a verdict. The secret's hash is cached, never the secret; the
//! hash is still compared on every request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use strata_core::id::{ApiKeyId, OrgId};
use strata_core::key::ApiKey;
use strata_core::org::Org;

/// Keys cached at most; past it, an arbitrary entry makes room.
const CAPACITY: usize = 16_384;
/// How long an entry is trusted without any announced change.
pub(crate) const MAX_AGE: Duration = Duration::from_secs(60);
/// Ids in one `NOTIFY` payload at most (PostgreSQL takes under 8000 bytes); more is "all".
const MAX_PAYLOAD_IDS: usize = 150;
/// The payload that drops every entry.
pub(crate) const ALL: &str = "*";

/// What a transaction changed that authentication reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AuthChange {
    /// A key's row.
    Key(ApiKeyId),
    /// An org's row: its own keys and its children's keys (a partner's cut-off holds for them).
    Org(OrgId),
}

impl AuthChange {
    /// The `NOTIFY` payload naming `changes` (`ALL` when too many to name).
    pub(crate) fn payload(changes: &[AuthChange]) -> String {
        if changes.len() > MAX_PAYLOAD_IDS {
            return ALL.to_owned();
        }
        let token = |c: &AuthChange| match c {
            AuthChange::Key(k) => format!("k:{}", k.uuid_string()),
            AuthChange::Org(o) => format!("o:{}", o.uuid_string()),
        };
        changes.iter().map(token).collect::<Vec<_>>().join(" ")
    }

    /// The changes a payload names; `None` for `ALL` or anything unreadable (drop everything).
    pub(crate) fn parse(payload: &str) -> Option<Vec<AuthChange>> {
        payload
            .split_whitespace()
            .map(|t| match t.split_once(':')? {
                ("k", id) => ApiKeyId::from_stored(id).ok().map(AuthChange::Key),
                ("o", id) => OrgId::from_stored(id).ok().map(AuthChange::Org),
                _ => None,
            })
            .collect()
    }

    fn touches(&self, e: &Entry) -> bool {
        match *self {
            AuthChange::Key(k) => e.key.id == k,
            AuthChange::Org(o) => e.home.id == o || e.home.parent_id == Some(o),
        }
    }
}

struct Entry {
    key: ApiKey,
    home: Org,
    /// The `LISTEN` connection's epoch when the entry was read (PostgreSQL; 0 on SQLite).
    epoch: u64,
    read_at: Instant,
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    /// Moves on every invalidation: a read that began before one is not stored.
    generation: u64,
}

/// The cache (see the module). Keyed by the key's public keyid.
#[derive(Default)]
pub(crate) struct AuthCache {
    state: Mutex<State>,
}

impl AuthCache {
    /// The key and org cached for `keyid`, if read under `epoch` less than `MAX_AGE` ago.
    pub(crate) fn get(&self, keyid: &str, epoch: u64) -> Option<(ApiKey, Org)> {
        let st = self.state.lock().ok()?;
        let e = st.entries.get(keyid)?;
        (e.epoch == epoch && e.read_at.elapsed() < MAX_AGE).then(|| (e.key.clone(), e.home.clone()))
    }

    /// The generation to hand back to `put` with a read that starts now.
    pub(crate) fn generation(&self) -> u64 {
        self.state.lock().map(|s| s.generation).unwrap_or(u64::MAX)
    }

    /// Stores what a read begun at `generation` found, unless something was invalidated since
    /// (the read may predate that change).
    pub(crate) fn put(&self, keyid: &str, key: &ApiKey, home: &Org, epoch: u64, generation: u64, read_at: Instant) {
        let Ok(mut st) = self.state.lock() else { return };
        if st.generation != generation {
            return;
        }
        if st.entries.len() >= CAPACITY
            && !st.entries.contains_key(keyid)
            && let Some(victim) = st.entries.keys().next().cloned()
        {
            st.entries.remove(&victim);
        }
        st.entries.insert(keyid.to_owned(), Entry { key: key.clone(), home: home.clone(), epoch, read_at });
    }

    /// Drops the entries `changes` touch.
    pub(crate) fn invalidate(&self, changes: &[AuthChange]) {
        if let Ok(mut st) = self.state.lock() {
            st.generation += 1;
            st.entries.retain(|_, e| !changes.iter().any(|c| c.touches(e)));
        }
    }

    /// Drops every entry.
    pub(crate) fn clear(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.generation += 1;
            st.entries.clear();
        }
    }

    /// Applies a payload heard on the `strata_auth` channel (`ALL`, `notify::LOST` or unreadable:
    /// everything).
    pub(crate) fn apply_payload(&self, payload: &str) {
        match AuthChange::parse(payload) {
            Some(changes) if !changes.is_empty() => self.invalidate(&changes),
            _ => self.clear(),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.state.lock().map(|s| s.entries.len()).unwrap_or(0)
    }
}

/// How often SQLite's look for other processes' commits runs at most (see the module): well
/// inside the 1 s bound.
pub(crate) const LITE_CHECK_EVERY: Duration = Duration::from_millis(50);

/// SQLite's check for commits by other processes (see the module).
pub(crate) struct LiteWatch {
    conn: Mutex<(rusqlite::Connection, i64, Option<String>)>,
    /// When the last successful look began, in microseconds since `opened`.
    looked_at: AtomicU64,
    opened: Instant,
}

/// The setting every transaction writing a key or an org increments (SQLite).
pub(crate) const AUTH_VERSION: &str = "auth_version";

/// Increments `AUTH_VERSION` (one statement for both dialects; only SQLite needs it).
pub(crate) const BUMP_AUTH_VERSION: &str = "INSERT INTO settings (name, value) VALUES ('auth_version', '1') \
     ON CONFLICT (name) DO UPDATE SET value = CAST(CAST(settings.value AS BIGINT) + 1 AS TEXT)";

impl LiteWatch {
    pub(crate) fn open(path: &std::path::Path) -> strata_core::error::Result<Self> {
        // Never writes; opened read-write all the same, as WAL readers best are.
        let conn = rusqlite::Connection::open(path).map_err(crate::error::lite_err)?;
        conn.busy_timeout(Duration::from_secs(1)).map_err(crate::error::lite_err)?;
        let (dv, v) = Self::read(&conn).map_err(crate::error::lite_err)?;
        Ok(Self { conn: Mutex::new((conn, dv, v)), looked_at: AtomicU64::new(0), opened: Instant::now() })
    }

    fn read(conn: &rusqlite::Connection) -> rusqlite::Result<(i64, Option<String>)> {
        use rusqlite::OptionalExtension;
        let dv = conn.query_row("PRAGMA data_version", [], |r| r.get(0))?;
        let v = conn.query_row("SELECT value FROM settings WHERE name = ?1", [AUTH_VERSION], |r| r.get(0)).optional()?;
        Ok((dv, v))
    }

    /// Whether the cache may be used now: clears it first if another process changed a key or
    /// an org since the last look. `false` (bypass) if the check itself fails.
    pub(crate) fn check(&self, cache: &AuthCache) -> bool {
        let every = u64::try_from(LITE_CHECK_EVERY.as_micros()).unwrap_or(u64::MAX);
        let since = |at: u64| self.micros().saturating_sub(at);
        if since(self.looked_at.load(Ordering::Acquire)) < every {
            return true;
        }
        // Due: look, one request at a time. A request that waited here while another looked
        // uses that look; none trusts the cache while a due look is still running.
        let Ok(mut watched) = self.conn.lock() else { return false };
        if since(self.looked_at.load(Ordering::Acquire)) < every {
            return true;
        }
        let started = self.micros();
        let looked = Self::look(&mut watched, cache);
        if looked {
            self.looked_at.store(started, Ordering::Release);
        }
        looked
    }

    fn micros(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// One look (see `check`) on the watch's connection and what it saw last; false when it
    /// failed.
    fn look(watched: &mut (rusqlite::Connection, i64, Option<String>), cache: &AuthCache) -> bool {
        let (conn, seen_dv, seen_v) = watched;
        let dv: i64 = match conn.query_row("PRAGMA data_version", [], |r| r.get(0)) {
            Ok(dv) => dv,
            Err(_) => return false,
        };
        if dv == *seen_dv {
            return true;
        }
        match Self::read(conn) {
            Ok((dv, v)) => {
                if v != *seen_v {
                    cache.clear();
                }
                *seen_dv = dv;
                *seen_v = v;
                true
            }
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_core::clock::Timestamp;

    fn org(parent: Option<OrgId>) -> Org {
        Org::new(parent, "o".into(), Default::default(), None, Timestamp(0))
    }

    fn key(org: OrgId) -> ApiKey {
        use strata_core::apikey::{Env, Tier};
        ApiKey {
            id: ApiKeyId::new(),
            org_id: org,
            name: "k".into(),
            env: Env::Live,
            keyid: "kid".into(),
            secret_hash: "00".into(),
            scopes: Default::default(),
            tier: Tier::Standard,
            status: strata_core::key::KeyStatus::Active,
            killed: false,
            created_at: Timestamp(0),
            last_used_at: None,
            rotated_at: None,
            revoked_at: None,
            grace_until: None,
            superseded_by: None,
            seq: 0,
        }
    }

    #[test]
    fn payloads_round_trip_and_too_many_ids_mean_all() {
        let changes = vec![AuthChange::Key(ApiKeyId::new()), AuthChange::Org(OrgId::new())];
        assert_eq!(AuthChange::parse(&AuthChange::payload(&changes)), Some(changes));
        let many: Vec<_> = (0..=MAX_PAYLOAD_IDS).map(|_| AuthChange::Org(OrgId::new())).collect();
        assert_eq!(AuthChange::payload(&many), ALL);
        assert_eq!(AuthChange::parse(ALL), None);
        assert_eq!(AuthChange::parse(crate::notify::LOST), None);
    }

    #[test]
    fn a_read_that_began_before_an_invalidation_is_not_stored() {
        let cache = AuthCache::default();
        let home = org(None);
        let key = key(home.id);
        let began = cache.generation();
        cache.invalidate(&[AuthChange::Key(key.id)]);
        cache.put("kid", &key, &home, 0, began, Instant::now());
        assert!(cache.get("kid", 0).is_none());
        cache.put("kid", &key, &home, 0, cache.generation(), Instant::now());
        assert!(cache.get("kid", 0).is_some());
        assert!(cache.get("kid", 1).is_none(), "an entry read under another LISTEN epoch is not trusted");
    }

    #[test]
    fn an_org_change_drops_its_keys_and_its_childrens_keys_only() {
        let cache = AuthCache::default();
        let partner = org(None);
        let child = org(Some(partner.id));
        let other = org(None);
        for (kid, o) in [("p", &partner), ("c", &child), ("x", &other)] {
            let key = key(o.id);
            cache.put(kid, &key, o, 0, cache.generation(), Instant::now());
        }
        cache.apply_payload(&AuthChange::payload(&[AuthChange::Org(partner.id)]));
        assert_eq!(cache.len(), 1);
        assert!(cache.get("x", 0).is_some());
        cache.apply_payload(crate::notify::LOST);
        assert_eq!(cache.len(), 0);
    }
}
