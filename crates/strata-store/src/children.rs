//! The children list (CONTRACT §2): its filters, each answered by an index under the parent
//! (`status` any of several, `externalId` exact, `search` a prefix of the name or of the external
//! id, see migration 0007), optionally with each child's wallet and project count in the same
//! statement; and the search keys stored beside each org row.

use strata_core::credits::Wallet;
use strata_core::cursor::PageRequest;
use strata_core::error::Result;
use strata_core::id::OrgId;
use strata_core::org::{Org, OrgFilter, search_key};

use crate::conn::Conn;
use crate::query::Q;
use crate::query::page;
use crate::rows::{self, ORG_COLUMNS, ORG_COLUMNS_O, WALLET_COLUMNS_W};

/// The columns derived from an org that the store keeps for the list's filters, in the order
/// `bind_search_keys` binds them.
pub(crate) const SEARCH_KEY_COLUMNS: [&str; 3] = ["name_key", "external_id", "external_id_key"];

/// Binds an org's derived columns (`SEARCH_KEY_COLUMNS`).
pub(crate) fn bind_search_keys(q: Q, o: &Org) -> Q {
    q.str(&search_key(&o.name)).opt_str(o.external_id().map(str::to_owned)).opt_str(o.external_id().map(search_key))
}

/// `head` (a `SELECT … FROM organizations o …`) `WHERE` the org is under `parent` (a root org
/// when `None`) and matches `f`. A search is written as two complete disjuncts, each the parent
/// and one key's prefix range, so each reads its own index.
fn filtered(head: &str, parent: Option<OrgId>, f: &OrgFilter) -> Q {
    let q = Q::new(&format!("{head} WHERE "));
    let parent_id = parent.map(|p| p.uuid_string());
    let under = |q: Q| match &parent_id {
        Some(p) => q.and_str("o.parent_id = $?", p),
        None => q.push("o.parent_id IS NULL"),
    };
    let mut q = match &f.search {
        None => under(q),
        Some(prefix) => {
            let mut q = q.push("(");
            for (i, key) in ["o.name_key", "o.external_id_key"].into_iter().enumerate() {
                q = under(q.push(if i == 0 { "(" } else { " OR (" }));
                q = q.and_str(&format!(" AND {key} >= $?"), &prefix.from);
                if let Some(until) = &prefix.until {
                    q = q.and_str(&format!(" AND {key} < $?"), until);
                }
                q = q.push(")");
            }
            q.push(")")
        }
    };
    q = q.and_any_of("o.status", f.statuses.iter().map(|s| s.as_str()));
    if let Some(e) = &f.external_id {
        q = q.and_str(" AND o.external_id = $?", e);
    }
    q
}

pub(crate) async fn list(conn: &mut Conn, parent: Option<OrgId>, f: &OrgFilter, req: PageRequest) -> Result<Vec<Org>> {
    let q = filtered(&format!("SELECT {ORG_COLUMNS} FROM organizations o"), parent, f);
    let rows = page(q, req).fetch_all(conn).await?;
    rows.iter().map(|r| rows::org(r, "")).collect()
}

pub(crate) async fn list_with_summaries(
    conn: &mut Conn,
    parent: OrgId,
    f: &OrgFilter,
    req: PageRequest,
) -> Result<Vec<(Org, Wallet, i64)>> {
    // `seq` (the page's order) is the org's: wallets have none.
    let head = format!(
        "SELECT {ORG_COLUMNS_O}, {WALLET_COLUMNS_W}, (SELECT COUNT(*) FROM projects p WHERE p.org_id = o.id) AS project_count \
         FROM organizations o JOIN wallets w ON w.org_id = o.id"
    );
    let q = filtered(&head, Some(parent), f);
    let rows = page(q, req).fetch_all(conn).await?;
    rows.iter().map(|r| Ok((rows::org(r, "o_")?, rows::wallet_prefixed(r, "w_")?, r.int("project_count")?))).collect()
}

/// Fills the search keys of org rows written before they existed (migration 0007), in batches;
/// returns how many rows it filled. Idempotent: two nodes starting together write the same
/// values.
pub(crate) async fn fill_search_keys(conn: &mut Conn) -> Result<u64> {
    let mut filled = 0;
    loop {
        let rows = Q::new(&format!("SELECT {ORG_COLUMNS} FROM organizations WHERE name_key IS NULL LIMIT 500")).fetch_all(conn).await?;
        if rows.is_empty() {
            return Ok(filled);
        }
        for r in &rows {
            let o = rows::org(r, "")?;
            let q = Q::new("UPDATE organizations SET name_key = $1, external_id = $2, external_id_key = $3 WHERE id = $4");
            bind_search_keys(q, &o).str(&o.id.uuid_string()).execute(conn).await?;
            filled += 1;
        }
    }
}
