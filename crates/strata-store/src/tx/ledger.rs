//! The ledger (`LedgerRows`): wallets move only by posted transfers, each with its ledger
//! entries; see `move_wallets` for how a batch is sent on each backend.

use async_trait::async_trait;
use strata_core::clock::Timestamp;
use strata_core::credits::{CreditEvent, CreditEventFilter, Transfer, Wallet};
use strata_core::cursor::PageRequest;
use strata_core::error::{CoreError, Result};
use strata_core::id::{OrgId, ProjectId, TxnId};
use strata_core::ledger::{LedgerBatch, Posting, WalletChange};
use strata_core::store::{LedgerRows, Owner};
use strata_core::usage::{Bucket, UsageRow};

use crate::Dialect;
use crate::conn::{Conn, Link};
use crate::deferred::{Guard, wallet_update};
use crate::query::{Q, shift_placeholders, values_placeholders};
use crate::rows::{self, CREDIT_EVENT_COLUMNS, TRANSFER_COLUMNS, WALLET_COLUMNS};

use super::{SqlTx, ts};
use crate::query::page;

impl SqlTx {
    async fn insert_transfer(&mut self, t: &Transfer) -> Result<()> {
        let q = Q::new(&format!("INSERT INTO transfers ({TRANSFER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"))
            .str(&t.id.uuid_string())
            .str(&t.org_id.uuid_string())
            .str(&t.debit.to_stored())
            .str(&t.credit.to_stored())
            .int(t.amount)
            .str(t.kind.as_str())
            .str(t.status.as_str())
            .opt_str(t.pending_id.map(|p| p.uuid_string()))
            .opt_int(ts(t.expires_at))
            .str(&t.metadata.to_string())
            .int(t.created_at.millis());
        self.conn.later(q).await
    }

    /// Inserts a ledger entry, stamped with its wallet's balances after the change.
    async fn insert_credit_event(&mut self, e: &CreditEvent, after: &Wallet) -> Result<()> {
        let q = Q::new(&format!(
            "INSERT INTO credit_events ({ENTRY_COLUMNS}, balance_after_prepaid, usage_after_period) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ));
        self.conn.later(entry_args(q, e).int(after.prepaid_balance).int(after.used_this_period)).await
    }

    /// Moves wallets by their changes, guarded, in order, and inserts each one's ledger entries
    /// stamped with its balances after: `None` when a change would take a bucket below zero or
    /// reserve more than the balance (the transaction must then be rolled back: changes before
    /// the refused one may have been applied). On PostgreSQL all of it is one statement, so a
    /// wallet is locked from there to commit after one round trip: each guarded update is a
    /// `WITH` item that runs only if the one before it moved its wallet (which orders the row
    /// locks as the changes are ordered, the contended wallet last), each followed by the
    /// insert of its entries.
    async fn move_wallets(&mut self, changes: &[WalletChange], at: Timestamp, entries: &[CreditEvent]) -> Result<Option<Vec<Wallet>>> {
        let of = |c: &WalletChange| entries.iter().filter(|e| e.org_id == c.org_id).collect::<Vec<_>>();
        if self.dialect == Dialect::Sqlite {
            let mut after = Vec::with_capacity(changes.len());
            for c in changes {
                let update = wallet_update(Q::new(""), c, at, Guard::Where { after: None }).push(&format!(" RETURNING {WALLET_COLUMNS}"));
                let Some(row) = update.fetch_optional(&mut self.conn).await? else {
                    return Ok(None);
                };
                let w = rows::wallet(&row)?;
                for e in of(c) {
                    self.insert_credit_event(e, &w).await?;
                }
                after.push(w);
            }
            return Ok(Some(after));
        }
        // Every wallet held by this grouped write's batch: their values are exact (no other
        // transaction can change them), so the guard is decided here by the same rule
        // (`Wallet::apply`) and the updates travel with the next statement; the table's CHECKs
        // still refuse a wallet out of bounds.
        if let Some(mut after) = changes.iter().map(|c| self.held(|h| h.wallet(c.org_id))).collect::<Option<Vec<_>>>() {
            if after.iter_mut().zip(changes).any(|(w, c)| w.apply(c, at).is_err()) {
                return Ok(None);
            }
            for (w, c) in after.iter().zip(changes) {
                self.conn.later_wallet(*c, at).await?;
                for e in of(c) {
                    self.insert_credit_event(e, w).await?;
                }
                self.hold(|h| h.hold_wallet(w));
            }
            return Ok(Some(after));
        }
        let mut q = Q::new("");
        let mut items = Vec::with_capacity(changes.len() * 2);
        for (i, c) in changes.iter().enumerate() {
            q = wallet_update(q, c, at, Guard::Where { after: i.checked_sub(1).map(|p| format!("moved_{p}")) });
            items.push(format!("moved_{i} AS ({} RETURNING {WALLET_COLUMNS})", std::mem::take(&mut q.sql)));
            let mine = of(c);
            if mine.is_empty() {
                continue;
            }
            let values = shift_placeholders(&values_placeholders(mine.len(), ENTRY_ARITY), q.args.len());
            q = mine.into_iter().fold(q, entry_args);
            items.push(format!(
                "entries_{i} AS (INSERT INTO credit_events ({ENTRY_COLUMNS}, balance_after_prepaid, usage_after_period) \
                 SELECT v.*, m.prepaid_balance, m.used_this_period FROM moved_{i} m, (VALUES {values}) AS v({ENTRY_COLUMNS}))"
            ));
        }
        let results: Vec<String> = (0..changes.len()).map(|i| format!("SELECT {WALLET_COLUMNS} FROM moved_{i}")).collect();
        q.sql = format!("WITH {} {}", items.join(", "), results.join(" UNION ALL "));
        let rows = q.fetch_all(&mut self.conn).await?;
        if rows.len() != changes.len() {
            return Ok(None);
        }
        let moved = rows.iter().map(rows::wallet).collect::<Result<Vec<_>>>()?;
        let mut after = Vec::with_capacity(changes.len());
        for c in changes {
            let w = moved.iter().find(|w| w.org_id == c.org_id).ok_or_else(|| CoreError::internal("a moved wallet was not returned"))?;
            self.hold(|h| h.hold_wallet(w));
            after.push(w.clone());
        }
        Ok(Some(after))
    }
}

/// The columns of a ledger entry a service writes (the store adds the balances after).
const ENTRY_COLUMNS: &str = "id, org_id, project_id, credits, event_type, format, container_id, workflow_id, metadata, created_at";

const ENTRY_ARITY: usize = 10;

/// Binds a ledger entry, in `ENTRY_COLUMNS` order.
fn entry_args(q: Q, e: &CreditEvent) -> Q {
    q.str(&e.id)
        .str(&e.org_id.uuid_string())
        .opt_str(e.project_id.map(|p| p.uuid_string()))
        .int(e.credits)
        .str(e.event_type)
        .opt_str(e.format.clone())
        .opt_str(e.container_id.clone())
        .opt_str(e.workflow_id.clone())
        .str(&e.metadata.to_string())
        .int(e.created_at.millis())
}

/// Binds every column of a wallet, in `WALLET_COLUMNS` order.
fn wallet_args(q: Q, w: &Wallet) -> Q {
    q.str(&w.org_id.uuid_string())
        .int(w.included_remaining)
        .int(w.prepaid_balance)
        .int(w.reserved)
        .int(w.used_this_period)
        .int(w.included_this_period)
        .int(w.period_start.millis())
        .opt_int(w.config.monthly_credit_cap)
        .opt_int(w.config.refill_threshold)
        .opt_int(w.config.refill_amount)
        .int(w.updated_at.millis())
        .int(w.included_carryover)
}

#[async_trait]
impl LedgerRows for SqlTx {
    async fn insert_wallet(&mut self, w: &Wallet) -> Result<()> {
        let q = Q::new(&format!("INSERT INTO wallets ({WALLET_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"));
        wallet_args(q, w).execute(&mut self.conn).await.map(|_| ())
    }

    async fn wallet(&mut self, org: OrgId) -> Result<Option<Wallet>> {
        if let Some(w) = self.held(|h| h.wallet(org)) {
            return Ok(Some(w));
        }
        let w = self.one(WALLET_COLUMNS, "wallets", "org_id", &org.uuid_string(), rows::wallet).await?;
        if let Some(w) = &w {
            self.hold(|h| h.hold_wallet(w));
        }
        Ok(w)
    }

    async fn wallet_snapshot(&mut self, org: OrgId) -> Result<Option<Wallet>> {
        // A wallet the batch holds locked has no newer committed value than the batch's own.
        if let Some(w) = self.held(|h| h.wallet(org)) {
            return Ok(Some(w));
        }
        let row = Q::new(&format!("SELECT {WALLET_COLUMNS} FROM wallets WHERE org_id = $1"))
            .str(&org.uuid_string())
            .fetch_optional(&mut self.conn)
            .await?;
        row.map(|r| rows::wallet(&r)).transpose()
    }

    async fn update_wallet_terms(&mut self, w: &Wallet) -> Result<()> {
        self.forget(|h| h.forget_wallet(w.org_id));
        Q::new(
            "UPDATE wallets SET used_this_period = $2, included_this_period = $3, period_start = $4, monthly_cap = $5, \
             refill_threshold = $6, refill_amount = $7, updated_at = $8, included_carryover = $9 WHERE org_id = $1",
        )
        .str(&w.org_id.uuid_string())
        .int(w.used_this_period)
        .int(w.included_this_period)
        .int(w.period_start.millis())
        .opt_int(w.config.monthly_credit_cap)
        .opt_int(w.config.refill_threshold)
        .opt_int(w.config.refill_amount)
        .int(w.updated_at.millis())
        .int(w.included_carryover)
        .execute(&mut self.conn)
        .await
        .map(|_| ())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(postings = batch.postings.len()))]
    async fn post_transfers(&mut self, batch: &LedgerBatch) -> Result<Option<Vec<Wallet>>> {
        for p in &batch.postings {
            match p {
                Posting::Transfer(t) => {
                    self.insert_transfer(t).await?;
                    self.transfers.push(t.kind);
                }
                Posting::Resolve { id, status, .. } => {
                    let n = Q::new("UPDATE transfers SET status = $2 WHERE id = $1 AND status = 'pending'")
                        .str(&id.uuid_string())
                        .str(status.as_str())
                        .execute(&mut self.conn)
                        .await?;
                    if n != 1 {
                        return Err(CoreError::internal(format!("reservation {id} was already resolved")));
                    }
                }
            }
        }
        let Some(after) = self.move_wallets(&batch.changes, batch.at, &batch.entries).await? else {
            return Ok(None);
        };
        // Entries of wallets the batch did not move (none today) are stamped with their balances.
        for e in batch.entries.iter().filter(|e| !after.iter().any(|w| w.org_id == e.org_id)) {
            let w = self.wallet_snapshot(e.org_id).await?.ok_or_else(|| CoreError::internal(format!("org {} has no wallet", e.org_id)))?;
            self.insert_credit_event(e, &w).await?;
        }
        Ok(Some(after))
    }

    async fn transfer(&mut self, owner: Owner, id: TxnId) -> Result<Option<Transfer>> {
        self.owned(TRANSFER_COLUMNS, "transfers", &id.uuid_string(), "org_id", owner, rows::transfer).await
    }

    async fn expired_reservations(&mut self, now: Timestamp, limit: u32) -> Result<Vec<TxnId>> {
        let rows = Q::new("SELECT id FROM transfers WHERE status = 'pending' AND expires_at <= $1 ORDER BY expires_at LIMIT $2")
            .int(now.millis())
            .int(i64::from(limit))
            .fetch_all(&mut self.conn)
            .await?;
        rows.iter().map(|r| TxnId::from_stored(&r.text("id")?)).collect()
    }

    async fn stale_wallets(&mut self, period_start: Timestamp, limit: u32) -> Result<Vec<OrgId>> {
        let rows = Q::new("SELECT org_id FROM wallets WHERE period_start < $1 LIMIT $2")
            .int(period_start.millis())
            .int(i64::from(limit))
            .fetch_all(&mut self.conn)
            .await?;
        rows.iter().map(|r| OrgId::from_stored(&r.text("org_id")?)).collect()
    }

    async fn list_credit_events(&mut self, org: OrgId, f: &CreditEventFilter, req: PageRequest) -> Result<Vec<CreditEvent>> {
        let mut q = Q::new(&format!("SELECT {CREDIT_EVENT_COLUMNS} FROM credit_events WHERE org_id = $1")).str(&org.uuid_string());
        if let Some(p) = f.project_id {
            q = q.and_str(" AND project_id = $?", &p.uuid_string());
        }
        q = q.and_any_of("event_type", &f.event_types);
        if let Some(s) = f.since {
            q = q.and_int(" AND created_at >= $?", s.millis());
        }
        if let Some(u) = f.until {
            q = q.and_int(" AND created_at < $?", u.millis());
        }
        let rows = page(q, req).fetch_all(&mut self.conn).await?;
        rows.iter().map(rows::credit_event).collect()
    }

    async fn usage_report(&mut self, org: OrgId, buckets: &[Bucket], project: Option<ProjectId>) -> Result<Vec<UsageRow>> {
        crate::usage::report(&mut self.conn, self.dialect, org, buckets, project).await
    }

    async fn ledger_snapshot(&mut self) -> Result<(Vec<Wallet>, Vec<Transfer>)> {
        // Both reads must see one instant: on PostgreSQL that takes a REPEATABLE READ
        // transaction (SQLite's read transaction is already a snapshot).
        let mut snapshot = match self.conn.link() {
            Link::PgPool(pool) => {
                let (tx, in_use) = pool.begin().await?;
                let mut tx = Conn::from(Link::Pg(tx, in_use));
                Q::new("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(&mut tx).await?;
                Some(tx)
            }
            _ => None,
        };
        let conn = snapshot.as_mut().unwrap_or(&mut self.conn);
        let wallets = Q::new(&format!("SELECT {WALLET_COLUMNS} FROM wallets")).fetch_all(conn).await?;
        let transfers = Q::new(&format!("SELECT {TRANSFER_COLUMNS} FROM transfers ORDER BY seq")).fetch_all(conn).await?;
        if let Some(tx) = snapshot {
            tx.commit().await?;
        }
        Ok((wallets.iter().map(rows::wallet).collect::<Result<_>>()?, transfers.iter().map(rows::transfer).collect::<Result<_>>()?))
    }
}
