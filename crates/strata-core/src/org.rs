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
