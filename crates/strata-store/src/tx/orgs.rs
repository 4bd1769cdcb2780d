//! Organizations and their API keys (`OrgRows`, `KeyRows`).

use async_trait::async_trait;
use strata_core::clock::Timestamp;
use strata_core::credits::Wallet;
use strata_core::cursor::PageRequest;
use strata_core::error::Result;
use strata_core::id::{ApiKeyId, OrgId};
use strata_core::key::ApiKey;
use strata_core::org::{Org, OrgFilter};
use strata_core::store::{KeyRows, OrgRows, Owner};

use crate::Dialect;
use crate::auth_cache::AuthChange;
use crate::children;
use crate::query::Q;
use crate::rows::{self, KEY_COLUMNS, ORG_COLUMNS};

use super::{SqlTx, bool_int, ts};
use crate::query::page;

impl SqlTx {
    pub async fn touch_keys(&mut self, used: &[(ApiKeyId, Timestamp)]) -> Result<()> {
        for (id, at) in used {
            Q::new("UPDATE api_keys SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)")
                .int(at.millis())
                .str(&id.uuid_string())
                .execute(&mut self.conn)
                .await?;
        }
        Ok(())
    }
}

/// Binds every column of an org but `seq`, in `ORG_COLUMNS` order.
fn org_args(q: Q, o: &Org) -> Q {
    q.str(&o.id.uuid_string())
        .opt_str(o.parent_id.map(|p| p.uuid_string()))
        .str(&o.name)
        .str(o.status.as_str())
        .str(&o.metadata.to_stored())
        .opt_str(o.billing_email.clone())
        .int(bool_int(o.access_revoked))
        .opt_int(ts(o.archived_at))
        .opt_int(o.archive_stats.map(|s| s.0))
        .opt_int(o.archive_stats.map(|s| s.1))
        .int(o.created_at.millis())
        .int(o.updated_at.millis())
}

/// Binds every column of a key but `seq`, in `KEY_COLUMNS` order.
fn key_args(q: Q, k: &ApiKey) -> Q {
    q.str(&k.id.uuid_string())
        .str(&k.org_id.uuid_string())
        .str(&k.name)
        .str(k.env.as_str())
        .str(&k.keyid)
        .str(&k.secret_hash)
        .str(&k.scopes.to_stored())
        .str(k.tier.as_str())
        .str(k.status.as_str())
        .int(bool_int(k.killed))
        .int(k.created_at.millis())
        .opt_int(ts(k.last_used_at))
        .opt_int(ts(k.rotated_at))
        .opt_int(ts(k.revoked_at))
        .opt_int(ts(k.grace_until))
        .opt_str(k.superseded_by.map(|s| s.uuid_string()))
}

#[async_trait]
impl OrgRows for SqlTx {
    async fn insert_org(&mut self, o: &Org) -> Result<()> {
        let q = Q::new(&format!(
            "INSERT INTO organizations ({}, {}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            &ORG_COLUMNS["seq, ".len()..],
            children::SEARCH_KEY_COLUMNS.join(", ")
        ));
        children::bind_search_keys(org_args(q, o), o).execute(&mut self.conn).await.map(|_| ())
    }

    async fn update_org(&mut self, o: &Org) -> Result<()> {
        let q = Q::new(
            "UPDATE organizations SET parent_id = $2, name = $3, status = $4, metadata = $5, billing_email = $6, access_revoked = $7, \
             archived_at = $8, archive_reclaimed = $9, archive_revoked = $10, created_at = $11, updated_at = $12, \
             name_key = $13, external_id = $14, external_id_key = $15 WHERE id = $1",
        );
        self.auth_changed(AuthChange::Org(o.id));
        self.forget(|h| h.forget_org(o.id));
        children::bind_search_keys(org_args(q, o), o).execute(&mut self.conn).await.map(|_| ())
    }

    async fn org_shared(&mut self, owner: Owner, id: OrgId) -> Result<Option<Org>> {
        if let Some(found) = self.held(|h| h.org(owner, id)) {
            return Ok(found);
        }
        let share = if self.write && self.dialect == Dialect::Postgres { " FOR SHARE" } else { "" };
        let mut q = Q::new(&format!("SELECT {ORG_COLUMNS} FROM organizations WHERE id = $1")).str(&id.uuid_string());
        if let Owner::Org(parent) = owner {
            q = q.and_str(" AND parent_id = $?", &parent.uuid_string());
        }
        let row = q.push(share).fetch_optional(&mut self.conn).await?;
        let org = row.map(|r| rows::org(&r, "")).transpose()?;
        if let Some(o) = &org {
            self.hold(|h| h.hold_org(o));
        }
        Ok(org)
    }

    async fn org(&mut self, owner: Owner, id: OrgId) -> Result<Option<Org>> {
        self.owned(ORG_COLUMNS, "organizations", &id.uuid_string(), "parent_id", owner, |r| rows::org(r, "")).await
    }

    async fn list_orgs(&mut self, parent: Option<OrgId>, filter: &OrgFilter, req: PageRequest) -> Result<Vec<Org>> {
        children::list(&mut self.conn, parent, filter, req).await
    }

    async fn list_child_summaries(&mut self, parent: OrgId, filter: &OrgFilter, req: PageRequest) -> Result<Vec<(Org, Wallet, i64)>> {
        children::list_with_summaries(&mut self.conn, parent, filter, req).await
    }

    async fn child_summary(&mut self, parent: OrgId, id: OrgId) -> Result<Option<(Org, Wallet, i64)>> {
        let sql = format!(
            "SELECT {}, {}, (SELECT COUNT(*) FROM projects p WHERE p.org_id = o.id) AS project_count \
             FROM organizations o JOIN wallets w ON w.org_id = o.id WHERE o.id = $1 AND o.parent_id = $2",
            rows::ORG_COLUMNS_O,
            rows::WALLET_COLUMNS_W
        );
        let row = Q::new(&sql).str(&id.uuid_string()).str(&parent.uuid_string()).fetch_optional(&mut self.conn).await?;
        row.map(|r| Ok((rows::org(&r, "o_")?, rows::wallet_prefixed(&r, "w_")?, r.int("project_count")?))).transpose()
    }

    async fn count_orgs(&mut self) -> Result<i64> {
        let row = Q::new("SELECT COUNT(*) AS n FROM organizations").fetch_optional(&mut self.conn).await?;
        Ok(row.map(|r| r.int("n")).transpose()?.unwrap_or(0))
    }
}

#[async_trait]
impl KeyRows for SqlTx {
    async fn insert_key(&mut self, k: &ApiKey) -> Result<()> {
        let q = Q::new(&format!(
            "INSERT INTO api_keys ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
            &KEY_COLUMNS["seq, ".len()..]
        ));
        key_args(q, k).execute(&mut self.conn).await.map(|_| ())
    }

    async fn update_key(&mut self, k: &ApiKey) -> Result<()> {
        // last_used_at belongs to the batched usage flush: a stale in-memory value never moves
        // it backwards.
        let q = Q::new(
            "UPDATE api_keys SET org_id = $2, name = $3, env = $4, keyid = $5, secret_hash = $6, scopes = $7, tier = $8, status = $9, \
             killed = $10, created_at = $11, \
             last_used_at = CASE WHEN last_used_at IS NULL OR last_used_at < $12 THEN $12 ELSE last_used_at END, \
             rotated_at = $13, revoked_at = $14, grace_until = $15, superseded_by = $16 WHERE id = $1",
        );
        self.auth_changed(AuthChange::Key(k.id));
        key_args(q, k).execute(&mut self.conn).await.map(|_| ())
    }

    async fn key(&mut self, owner: Owner, id: ApiKeyId) -> Result<Option<ApiKey>> {
        self.owned(KEY_COLUMNS, "api_keys", &id.uuid_string(), "org_id", owner, |r| rows::key(r, "")).await
    }

    async fn key_by_keyid(&mut self, keyid: &str) -> Result<Option<ApiKey>> {
        self.one(KEY_COLUMNS, "api_keys", "keyid", keyid, |r| rows::key(r, "")).await
    }

    async fn list_keys(&mut self, org: OrgId, req: PageRequest) -> Result<Vec<ApiKey>> {
        let q = Q::new(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE org_id = $1")).str(&org.uuid_string());
        let rows = page(q, req).fetch_all(&mut self.conn).await?;
        rows.iter().map(|r| rows::key(r, "")).collect()
    }

    async fn revoke_org_keys(&mut self, org: OrgId, at: Timestamp) -> Result<u64> {
        self.auth_changed(AuthChange::Org(org));
        Q::new("UPDATE api_keys SET status = 'revoked', revoked_at = $2 WHERE org_id = $1 AND status = 'active'")
            .str(&org.uuid_string())
            .int(at.millis())
            .execute(&mut self.conn)
            .await
    }
}
