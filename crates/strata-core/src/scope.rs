//! Scopes and their subset algebra (CONTRACT §2). `org:admin` is the deny-by-default control-plane
//! scope and implies every data scope; `*` is every data scope but never `org:admin`.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Serialize, Serializer};

use crate::error::CoreError;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Scope {
    OrgAdmin,
    ProjectsRead,
    ProjectsWrite,
    ContentRead,
    ContentWrite,
    JobsRead,
    CreditsRead,
    WebhooksRead,
    WebhooksWrite,
    AuditRead,
    /// `*`: every data scope.
    AllData,
}

impl Scope {
    pub const DATA: [Scope; 9] = [
        Scope::ProjectsRead,
        Scope::ProjectsWrite,
        Scope::ContentRead,
        Scope::ContentWrite,
        Scope::JobsRead,
        Scope::CreditsRead,
        Scope::WebhooksRead,
        Scope::WebhooksWrite,
        Scope::AuditRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::OrgAdmin => "org:admin",
            Scope::ProjectsRead => "projects:read",
            Scope::ProjectsWrite => "projects:write",
            Scope::ContentRead => "content:read",
            Scope::ContentWrite => "content:write",
            Scope::JobsRead => "jobs:read",
            Scope::CreditsRead => "credits:read",
            Scope::WebhooksRead => "webhooks:read",
            Scope::WebhooksWrite => "webhooks:write",
            Scope::AuditRead => "audit:read",
            Scope::AllData => "*",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Some(match s {
            "org:admin" => Scope::OrgAdmin,
            "projects:read" => Scope::ProjectsRead,
            "projects:write" => Scope::ProjectsWrite,
            "content:read" => Scope::ContentRead,
            "content:write" => Scope::ContentWrite,
            "jobs:read" => Scope::JobsRead,
            "credits:read" => Scope::CreditsRead,
            "webhooks:read" => Scope::WebhooksRead,
            "webhooks:write" => Scope::WebhooksWrite,
            "audit:read" => Scope::AuditRead,
            "*" => Scope::AllData,
            _ => return None,
        })
    }

    fn is_data(self) -> bool {
        !matches!(self, Scope::OrgAdmin | Scope::AllData)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The scopes a key holds, as granted (order-stable for display).
#[derive(Clone, PartialEq, Eq, Default, Debug)]
pub struct Scopes(BTreeSet<Scope>);

impl Scopes {
    pub fn new(scopes: impl IntoIterator<Item = Scope>) -> Self {
        Self(scopes.into_iter().collect())
    }

    /// Parses a request's scope list: 1–64 entries, each from the catalog.
    pub fn parse_request(list: &[String], field: &str) -> Result<Self, CoreError> {
        if list.is_empty() {
            return Err(CoreError::validation(field, "must name at least one scope"));
        }
        if list.len() > 64 {
            return Err(CoreError::validation(field, "must name at most 64 scopes"));
        }
        let mut set = BTreeSet::new();
        for s in list {
            let scope = Scope::parse(s).ok_or_else(|| CoreError::validation(field, format!("unknown scope {s:?}")))?;
            set.insert(scope);
        }
        Ok(Self(set))
    }

    /// Reads the stored space-separated form.
    pub fn from_stored(s: &str) -> Self {
        Self(s.split_whitespace().filter_map(Scope::parse).collect())
    }

    pub fn to_stored(&self) -> String {
        self.0.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
    }

    pub fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        self.0.iter().copied()
    }

    pub fn is_admin(&self) -> bool {
        self.0.contains(&Scope::OrgAdmin)
    }

    /// Whether a key with these scopes may do what `needed` guards.
    pub fn allows(&self, needed: Scope) -> bool {
        if self.0.contains(&needed) {
            return true;
        }
        match needed {
            Scope::OrgAdmin => false,
            Scope::AllData => self.is_admin() || Scope::DATA.iter().all(|s| self.0.contains(s)),
            data => {
                debug_assert!(data.is_data());
                self.is_admin() || self.0.contains(&Scope::AllData)
            }
        }
    }

    /// Whether every scope of `other` is allowed by these (the delegation rule).
    pub fn covers(&self, other: &Scopes) -> bool {
        other.iter().all(|s| self.allows(s))
    }

    /// The first requested scope these do not cover, to name it in a 403.
    pub fn first_uncovered(&self, other: &Scopes) -> Option<Scope> {
        other.iter().find(|s| !self.allows(*s))
    }
}

impl Serialize for Scopes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|x| x.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all() -> Vec<Scope> {
        let mut v = Scope::DATA.to_vec();
        v.push(Scope::OrgAdmin);
        v.push(Scope::AllData);
        v
    }

    #[test]
    fn admin_implies_every_data_scope_but_star_does_not_imply_admin() {
        let admin = Scopes::new([Scope::OrgAdmin]);
        let star = Scopes::new([Scope::AllData]);
        for s in Scope::DATA {
            assert!(admin.allows(s));
            assert!(star.allows(s));
        }
        assert!(admin.allows(Scope::AllData));
        assert!(!star.allows(Scope::OrgAdmin));
    }

    #[test]
    fn no_scopes_allow_nothing() {
        let none = Scopes::default();
        for s in all() {
            assert!(!none.allows(s));
        }
    }

    #[test]
    fn star_is_covered_only_by_every_data_scope() {
        let most = Scopes::new(Scope::DATA.iter().copied().skip(1));
        assert!(!most.allows(Scope::AllData));
        assert!(Scopes::new(Scope::DATA).allows(Scope::AllData));
    }

    #[test]
    fn unknown_and_empty_scope_lists_are_rejected() {
        assert!(Scopes::parse_request(&[], "scopes").is_err());
        assert!(Scopes::parse_request(&["content:delete".into()], "scopes").is_err());
        let ok = Scopes::parse_request(&["content:read".into(), "content:read".into()], "scopes").unwrap();
        assert_eq!(ok.to_stored(), "content:read");
    }

    proptest! {
        #[test]
        fn covers_is_reflexive_and_transitive(a in proptest::collection::vec(0usize..11, 0..6),
                                             b in proptest::collection::vec(0usize..11, 0..6),
                                             c in proptest::collection::vec(0usize..11, 0..6)) {
            let pick = |v: &Vec<usize>| Scopes::new(v.iter().map(|i| all()[*i]));
            let (a, b, c) = (pick(&a), pick(&b), pick(&c));
            prop_assert!(a.covers(&a));
            if a.covers(&b) && b.covers(&c) {
                prop_assert!(a.covers(&c));
            }
            prop_assert_eq!(Scopes::from_stored(&a.to_stored()), a);
        }
    }
}
