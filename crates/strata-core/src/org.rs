//! Organizations and their lifecycle: `active` ⇄ `suspended`, either → `archived` (terminal).
//! The state machine lives here so every caller (API, operator, tests) applies the same rules.

use crate::clock::Timestamp;
use crate::error::CoreError;
use crate::id::OrgId;
use crate::metadata::Metadata;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum OrgStatus {
    Active,
    Suspended,
    Archived,
}

impl OrgStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrgStatus::Active => "active",
            OrgStatus::Suspended => "suspended",
            OrgStatus::Archived => "archived",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "suspended" => Some(Self::Suspended),
            "archived" => Some(Self::Archived),
            _ => None,
        }
    }
}

/// A lifecycle request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Lifecycle {
    Suspend,
    Resume,
    Archive,
}

/// The outcome of applying a lifecycle request to a state.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Transition {
    /// The state changes to this one; the change's effects (events, key revocation…) happen.
    To(OrgStatus),
    /// Already there: a no-op that answers with the current state.
    Unchanged,
}

impl OrgStatus {
    pub fn apply(self, req: Lifecycle) -> Result<Transition, CoreError> {
        use OrgStatus::*;
        match (self, req) {
            (Active, Lifecycle::Suspend) => Ok(Transition::To(Suspended)),
            (Suspended, Lifecycle::Resume) => Ok(Transition::To(Active)),
            (Active | Suspended, Lifecycle::Archive) => Ok(Transition::To(Archived)),
            (Suspended, Lifecycle::Suspend) | (Active, Lifecycle::Resume) | (Archived, Lifecycle::Archive) => Ok(Transition::Unchanged),
            (Archived, Lifecycle::Suspend | Lifecycle::Resume) => Err(CoreError::conflict_with(
                "the organization is archived; archival is terminal",
                serde_json::json!({ "status": "archived" }),
            )),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Org {
    pub id: OrgId,
    pub parent_id: Option<OrgId>,
    pub name: String,
    pub status: OrgStatus,
    pub metadata: Metadata,
    pub billing_email: Option<String>,
    /// Set by the operator (`strata orgs access --revoke`); blocks the org's own keys like a
    /// suspension, independent of `status`.
    pub access_revoked: bool,
    pub archived_at: Option<Timestamp>,
    /// What archiving did: (reclaimed credits, revoked keys), so a repeated archive answers the same.
    pub archive_stats: Option<(i64, i64)>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Insertion order, for keyset pagination.
    pub seq: i64,
}

impl Org {
    /// A new active org: a partner (`parent: None`) or a child.
    pub fn new(parent: Option<OrgId>, name: String, metadata: Metadata, billing_email: Option<String>, now: Timestamp) -> Self {
        Self {
            id: OrgId::new(),
            parent_id: parent,
            name,
            status: OrgStatus::Active,
            metadata,
            billing_email,
            access_revoked: false,
            archived_at: None,
            archive_stats: None,
            created_at: now,
            updated_at: now,
            seq: 0,
        }
    }

    pub fn is_root(&self) -> bool {
        self.parent_id.is_none()
    }

    /// `metadata.externalId`: the partner's own id for this customer, if it set one.
    pub fn external_id(&self) -> Option<&str> {
        self.metadata.get(EXTERNAL_ID_KEY)
    }
}

/// The metadata key partners keep their own customer id under (CONTRACT §2, children list).
pub const EXTERNAL_ID_KEY: &str = "externalId";

/// Filters of the children list (`GET /v1/organizations`); every one set must hold.
#[derive(Clone, Debug, Default)]
pub struct OrgFilter {
    /// Any of these statuses; empty means every status.
    pub statuses: Vec<OrgStatus>,
    /// `metadata.externalId` exactly.
    pub external_id: Option<String>,
    /// A prefix of the name or of `metadata.externalId`, compared as `search_key`s.
    pub search: Option<SearchPrefix>,
}

/// The form names and external ids are compared in for a case-insensitive prefix search: Unicode
/// lower case. Stored beside the value (computed here, never by the database, whose `lower()`
/// differs between engines), so both sides of a comparison are made the same way.
pub fn search_key(s: &str) -> String {
    s.to_lowercase()
}

/// A non-empty search prefix and the half-open range of `search_key`s that start with it, in
/// code point order (a byte-wise collation): `from <= k < until` exactly when `k` starts with
/// `from`, so an ordered index answers a prefix search with one range read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchPrefix {
    pub from: String,
    /// `None` when no string is greater than every string with the prefix (a prefix of only
    /// U+10FFFF characters).
    pub until: Option<String>,
}

impl SearchPrefix {
    /// The prefix of a search term; an empty term searches nothing (`None`).
    pub fn new(term: &str) -> Option<Self> {
        let from = search_key(term);
        if from.is_empty() {
            return None;
        }
        // The least string greater than every extension of `from`: drop trailing characters
        // that cannot be incremented, then increment the last one (skipping the surrogates).
        let mut chars: Vec<char> = from.chars().collect();
        let until = loop {
            let Some(last) = chars.pop() else { break None };
            let next = match last as u32 + 1 {
                0xD800 => Some('\u{E000}'),
                n => char::from_u32(n),
            };
            if let Some(next) = next {
                chars.push(next);
                break Some(chars.into_iter().collect());
            }
        };
        Some(Self { from, until })
    }
}

/// Validates an organization name: 1–128 characters after trimming.
pub fn parse_name(s: &str, field: &str, max: usize) -> Result<String, CoreError> {
    let t = s.trim();
    if t.is_empty() || t.chars().count() > max {
        return Err(CoreError::validation(field, format!("must be 1–{max} characters")));
    }
    Ok(t.to_owned())
}

/// A light check of an email address: one `@`, something on each side, no spaces, ≤ 254 chars.
pub fn parse_email(s: &str, field: &str) -> Result<String, CoreError> {
    let t = s.trim();
    let ok = t.len() <= 254
        && !t.contains(char::is_whitespace)
        && matches!(t.split_once('@'), Some((local, domain)) if !local.is_empty() && domain.contains('.') && !domain.contains('@') && !domain.starts_with('.') && !domain.ends_with('.'));
    if !ok {
        return Err(CoreError::validation(field, "must be an email address"));
    }
    Ok(t.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use OrgStatus::*;

    #[test]
    fn the_lifecycle_table_is_exactly_the_contracts() {
        let cases = [
            (Active, Lifecycle::Suspend, Some(Transition::To(Suspended))),
            (Active, Lifecycle::Resume, Some(Transition::Unchanged)),
            (Active, Lifecycle::Archive, Some(Transition::To(Archived))),
            (Suspended, Lifecycle::Suspend, Some(Transition::Unchanged)),
            (Suspended, Lifecycle::Resume, Some(Transition::To(Active))),
            (Suspended, Lifecycle::Archive, Some(Transition::To(Archived))),
            (Archived, Lifecycle::Suspend, None),
            (Archived, Lifecycle::Resume, None),
            (Archived, Lifecycle::Archive, Some(Transition::Unchanged)),
        ];
        for (from, req, want) in cases {
            match (from.apply(req), want) {
                (Ok(got), Some(w)) => assert_eq!(got, w, "{from:?} {req:?}"),
                (Err(e), None) => assert_eq!(e.status(), 409),
                (got, w) => panic!("{from:?} {req:?}: got {got:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn a_search_prefix_covers_exactly_the_keys_that_start_with_it() {
        let p = SearchPrefix::new("AcMe").unwrap();
        assert_eq!((p.from.as_str(), p.until.as_deref()), ("acme", Some("acmf")));
        let within = |k: &str| k >= p.from.as_str() && p.until.as_deref().is_none_or(|u| k < u);
        for k in ["acme", "acme corp", "acme\u{10FFFF}x"] {
            assert!(within(k), "{k}");
        }
        for k in ["acm", "acmf", "acn", "b", "Acme"] {
            assert!(!within(k), "{k}");
        }
        assert_eq!(SearchPrefix::new("a\u{10FFFF}").unwrap().until.as_deref(), Some("b"));
        assert_eq!(SearchPrefix::new("\u{D7FF}").unwrap().until.as_deref(), Some("\u{E000}"));
        assert_eq!(SearchPrefix::new("\u{10FFFF}").unwrap().until, None);
        assert_eq!(SearchPrefix::new("ÄRZTE").unwrap().from, "ärzte");
        assert!(SearchPrefix::new("").is_none());
    }

    #[test]
    fn names_and_emails_are_checked() {
        assert!(parse_name("  ", "name", 128).is_err());
        assert!(parse_name(&"x".repeat(129), "name", 128).is_err());
        assert_eq!(parse_name(" Acme ", "name", 128).unwrap(), "Acme");
        assert!(parse_email("ops@acme.example", "billingEmail").is_ok());
        for bad in ["ops", "@acme.example", "ops@acme", "o ps@acme.example", "ops@acme.example."] {
            assert!(parse_email(bad, "billingEmail").is_err(), "{bad}");
        }
    }
}
