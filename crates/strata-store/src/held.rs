//! Rows a PostgreSQL group-commit batch holds, as the batch last saw them.
//!
//! A batch (see `group`) is one database transaction. Once a write of the batch has read an
//! organization `FOR SHARE`, or moved a wallet (an `UPDATE`, which locks the row), and released
//! its savepoint into the batch, the row stays locked until the batch commits: no other
//! transaction can change it, so its value as the batch last saw it is its value. Later writes
//! of the same batch read it from here instead of asking the database again; concurrent
//! allocations into one child then cost one round trip each for their reads instead of three.
//!
//! A write's own sightings count only once it releases its savepoint into the batch: a write
//! that rolls back to its savepoint gives back the locks it took, so what it saw is forgotten
//! with it. A write that changes a held row by any other statement drops the row from here.

use std::collections::HashMap;

use strata_core::credits::Wallet;
use strata_core::id::OrgId;
use strata_core::org::Org;
use strata_core::store::Owner;

/// Organizations held `FOR SHARE` and wallets held locked by one batch (or seen by one write of
/// it, until the write is released into the batch).
#[derive(Default)]
pub(crate) struct HeldRows {
    orgs: HashMap<OrgId, Org>,
    wallets: HashMap<OrgId, Wallet>,
}

impl HeldRows {
    /// The held organization `id` as `owner` sees it: `Some(None)` when it is held but belongs
    /// to another owner (the database would not find it either), `None` when it is not held.
    pub fn org(&self, owner: Owner, id: OrgId) -> Option<Option<Org>> {
        let o = self.orgs.get(&id)?;
        Some(match owner {
            Owner::System => Some(o.clone()),
            Owner::Org(parent) => (o.parent_id == Some(parent)).then(|| o.clone()),
        })
    }

    pub fn wallet(&self, org: OrgId) -> Option<Wallet> {
        self.wallets.get(&org).cloned()
    }

    pub fn hold_org(&mut self, o: &Org) {
        self.orgs.insert(o.id, o.clone());
    }

    pub fn hold_wallet(&mut self, w: &Wallet) {
        self.wallets.insert(w.org_id, w.clone());
    }

    pub fn forget_org(&mut self, id: OrgId) {
        self.orgs.remove(&id);
    }

    pub fn forget_wallet(&mut self, org: OrgId) {
        self.wallets.remove(&org);
    }

    /// Takes in what a write released into the batch saw.
    pub fn absorb(&mut self, released: HeldRows) {
        self.orgs.extend(released.orgs);
        self.wallets.extend(released.wallets);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_core::clock::Timestamp;
    use strata_core::metadata::Metadata;

    fn org(parent: Option<OrgId>) -> Org {
        Org::new(parent, "Acme".into(), Metadata::default(), None, Timestamp(0))
    }

    #[test]
    fn a_held_org_is_found_only_by_its_owner_or_the_system() {
        let parent = OrgId::new();
        let child = org(Some(parent));
        let mut held = HeldRows::default();
        assert!(held.org(Owner::System, child.id).is_none(), "nothing held yet");
        held.hold_org(&child);
        assert_eq!(held.org(Owner::Org(parent), child.id).flatten().map(|o| o.id), Some(child.id));
        assert_eq!(held.org(Owner::System, child.id).flatten().map(|o| o.id), Some(child.id));
        assert!(matches!(held.org(Owner::Org(OrgId::new()), child.id), Some(None)), "another tenant's: held, not found");
        held.forget_org(child.id);
        assert!(held.org(Owner::System, child.id).is_none());
    }
}
