//! One database transaction behind the `Tx` port. In a write transaction on PostgreSQL, reads of
//! mutable rows take `FOR UPDATE` so concurrent writers queue on the row instead of losing updates.

use async_trait::async_trait;
use strata_core::audit::{AuditEntry, AuditFilter};
use strata_core::clock::Timestamp;
use strata_core::content::{Container, Job, Outcome};
use strata_core::credits::{CreditEvent, CreditEventFilter, Transfer, TransferKind, Wallet};
use strata_core::cursor::PageRequest;
use strata_core::error::{CoreError, Result};
use strata_core::event::{Event, EventFilter, EventType};
use strata_core::id::{ApiKeyId, ContainerId, DeliveryId, EndpointId, EventId, JobId, OrgId, PostId, ProjectId, TxnId};
use strata_core::idempotency::{IdemRecord, Reply};
use strata_core::key::ApiKey;
use strata_core::ledger::{LedgerBatch, Posting, WalletChange};
use strata_core::org::{Org, OrgFilter};
use strata_core::post::ScheduledPost;
use strata_core::project::{Project, ProjectFilter};
use strata_core::store::{Owner, SealedColumn, SealedRow, SealedValue, Tx};
use strata_core::usage::{Bucket, UsageRow};
use strata_core::webhook::{Delivery, DeliveryAttempt, DeliveryStatus, Endpoint, EndpointStatus};

use std::sync::Arc;

use strata_core::telemetry::LEDGER_TRANSFERS;

use crate::Dialect;
use crate::auth_cache::{AuthCache, AuthChange, BUMP_AUTH_VERSION};
use crate::children;
use crate::conn::{Conn, Link};
use crate::deferred::{Claim, Guard, wallet_update};
use crate::held::HeldRows;
use crate::notify::{self, Hub};
use crate::query::{Q, ROWS_PER_INSERT, Row, shift_placeholders, values_placeholders};
use crate::rows::{
    self, ATTEMPT_COLUMNS, AUDIT_COLUMNS, CONTAINER_COLUMNS, CREDIT_EVENT_COLUMNS, DELIVERY_COLUMNS, ENDPOINT_COLUMNS, EVENT_COLUMNS,
    JOB_COLUMNS, KEY_COLUMNS, ORG_COLUMNS, POST_COLUMNS, PROJECT_COLUMNS, TRANSFER_COLUMNS, WALLET_COLUMNS,
};

pub(crate) struct SqlTx {
    pub(crate) conn: Conn,
    dialect: Dialect,
    write: bool,
    hub: Arc<Hub>,
    /// Channels to signal once this transaction commits (it wrote their kind of work).
    signals: Vec<&'static str>,
    /// Kinds of the transfers this transaction inserted, counted once it commits.
    transfers: Vec<TransferKind>,
    auth: Arc<AuthCache>,
    /// Keys and orgs this transaction wrote: announced with the commit (see `auth_cache`).
    auth_changes: Vec<AuthChange>,
    /// In a grouped write, the rows it locked: the batch's once it is released (see `held`).
    held: HeldRows,
}

impl SqlTx {
    pub fn new(conn: Conn, dialect: Dialect, write: bool, hub: Arc<Hub>, auth: Arc<AuthCache>) -> Self {
        Self {
            conn,
            dialect,
            write,
            hub,
            signals: Vec::new(),
            transfers: Vec::new(),
            auth,
            auth_changes: Vec::new(),
            held: HeldRows::default(),
        }
    }

    fn auth_changed(&mut self, change: AuthChange) {
        if !self.auth_changes.contains(&change) {
            self.auth_changes.push(change);
        }
    }

    /// A row of the batch this grouped write runs in, or one this write saw: `None` outside a
    /// grouped write or when neither holds it.
    fn held<T>(&mut self, pick: impl Fn(&HeldRows) -> Option<T>) -> Option<T> {
        let mine = pick(&self.held);
        mine.or_else(|| self.conn.batch_held().and_then(|b| pick(b)))
    }

    /// Notes a row this grouped write now holds locked.
    fn hold(&mut self, put: impl Fn(&mut HeldRows)) {
        if self.conn.batch_held().is_some() {
            put(&mut self.held);
        }
    }

    /// Forgets a row this write changes by a statement whose result it does not read back.
    fn forget(&mut self, drop: impl Fn(&mut HeldRows)) {
        drop(&mut self.held);
        if let Some(b) = self.conn.batch_held() {
            drop(b);
        }
    }

    fn signal_on_commit(&mut self, channel: &'static str) {
        if !self.signals.contains(&channel) {
            self.signals.push(channel);
        }
    }

    /// The row of `table` whose `column` is `key`, locked inside a write transaction.
    async fn one<T>(&mut self, columns: &str, table: &str, column: &str, key: &str, map: impl Fn(&Row) -> Result<T>) -> Result<Option<T>> {
        let sql = format!("SELECT {columns} FROM {table} WHERE {column} = $1{}", self.lock());
        let row = Q::new(&sql).str(key).fetch_optional(&mut self.conn).await?;
        row.map(|r| map(&r)).transpose()
    }

    /// `one`, seen by `owner`: a tenant's read also matches `owner_column`, so another tenant's
    /// row is not found and not locked.
    async fn owned<T>(
        &mut self,
        columns: &str,
        table: &str,
        key: &str,
        owner_column: &str,
        owner: Owner,
        map: impl Fn(&Row) -> Result<T>,
    ) -> Result<Option<T>> {
        let Owner::Org(org) = owner else {
            return self.one(columns, table, "id", key, map).await;
        };
        let sql = format!("SELECT {columns} FROM {table} WHERE id = $1 AND {owner_column} = $2{}", self.lock());
        let row = Q::new(&sql).str(key).str(&org.uuid_string()).fetch_optional(&mut self.conn).await?;
        row.map(|r| map(&r)).transpose()
    }

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

    pub async fn ping(&mut self) -> Result<()> {
        Q::new("SELECT 1 AS one").fetch_optional(&mut self.conn).await.map(|_| ())
    }

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

    /// The row-lock suffix for a single-row read in this transaction.
    fn lock(&self) -> &'static str {
        if self.write && self.dialect == Dialect::Postgres { " FOR UPDATE" } else { "" }
    }

    /// The row-lock suffix for a background step's batch of rows: rows another transaction
    /// (another node's step) holds are left to it, not waited for.
    fn lock_free_rows(&self) -> &'static str {
        if self.write && self.dialect == Dialect::Postgres { " FOR UPDATE SKIP LOCKED" } else { "" }
    }
}

fn bool_int(b: bool) -> i64 {
    i64::from(b)
}

fn ts(t: Option<Timestamp>) -> Option<i64> {
    t.map(Timestamp::millis)
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

/// Binds a delivery's outcome columns: next_retry_at, delivered_at, abandoned_at,
/// last_response_status, last_response_at, last_error.
fn outcome_args(q: Q, d: &Delivery) -> Q {
    q.opt_int(ts(d.next_retry_at))
        .opt_int(ts(d.delivered_at))
        .opt_int(ts(d.abandoned_at))
        .opt_int(d.last_response_status)
        .opt_int(ts(d.last_response_at))
        .opt_str(d.last_error.clone())
}

/// Binds every column of an endpoint but `seq`, in `ENDPOINT_COLUMNS` order.
fn endpoint_args(q: Q, e: &Endpoint) -> Q {
    let events: Vec<&str> = e.events.iter().map(|t| t.as_str()).collect();
    q.str(&e.id.to_string())
        .str(&e.org_id.uuid_string())
        .opt_str(e.project_id.map(|p| p.uuid_string()))
        .str(&e.url)
        .opt_str(e.description.clone())
        .str(e.status.as_str())
        .str(&serde_json::Value::from(events).to_string())
        .str(e.scope.as_str())
        .str(&e.metadata.to_stored())
        .str(&e.secret_sealed)
        .opt_str(e.previous_secret_sealed.clone())
        .opt_int(ts(e.previous_expires_at))
        .int(e.created_at.millis())
        .int(e.updated_at.millis())
        .opt_int(ts(e.last_success_at))
        .opt_int(ts(e.last_failure_at))
        .int(e.consecutive_failures)
        .int(e.start_seq)
}

/// Binds every column of a job, in `JOB_COLUMNS` order.
fn job_args(q: Q, j: &Job) -> Q {
    let (planned_cost, fail_reason) = match &j.outcome {
        Outcome::Complete { actual_cost } => (Some(*actual_cost), None),
        Outcome::Fail { reason } => (None, Some(reason.clone())),
    };
    let ids: Vec<String> = j.container_ids.iter().map(ToString::to_string).collect();
    q.str(&j.id.to_string())
        .str(&j.org_id.uuid_string())
        .str(&j.project_id.uuid_string())
        .str(&j.api_key_id.uuid_string())
        .str(j.status.as_str())
        .str(&j.format)
        .int(j.variant_count)
        .str(&j.brief.to_string())
        .opt_str(j.reservation_id.map(|r| r.uuid_string()))
        .int(j.reserved)
        .opt_int(planned_cost)
        .opt_str(fail_reason)
        .int(bool_int(j.test_mode))
        .str(&serde_json::Value::from(ids).to_string())
        .int(j.started_at.millis())
        .int(j.finish_at.millis())
        .opt_int(ts(j.finished_at))
        .opt_str(j.error.clone())
}

/// Appends the keyset condition, the order and the limit (one extra row says "more").
/// Appends a keyset page, newest first, to a list's `WHERE`: rows before the cursor's `seq`,
/// one more than the limit (it says whether a next page exists).
pub(crate) fn page(q: Q, page: PageRequest) -> Q {
    let q = match page.before_seq {
        Some(s) => q.and_int(" AND seq < $?", s),
        None => q,
    };
    q.and_int(" ORDER BY seq DESC LIMIT $?", i64::from(page.limit) + 1)
}

#[async_trait]
impl Tx for SqlTx {
    #[tracing::instrument(level = "debug", name = "commit", skip_all)]
    async fn commit(self: Box<Self>) -> Result<()> {
        let SqlTx { mut conn, dialect, hub, signals, transfers, auth, auth_changes, held, .. } = *self;
        // Other processes hear of a key or org change with its commit, never before or without
        // it: PostgreSQL delivers a NOTIFY sent in a transaction when it commits; SQLite's
        // counter moves in the same commit. (A NOTIFY serializes committing transactions that
        // send one; only these rare ones do.)
        if !auth_changes.is_empty() {
            match dialect {
                Dialect::Postgres => {
                    Q::new("SELECT pg_notify($1, $2)")
                        .str(notify::AUTH)
                        .str(&AuthChange::payload(&auth_changes))
                        .execute(&mut conn)
                        .await?;
                }
                Dialect::Sqlite => {
                    Q::new(BUMP_AUTH_VERSION).execute(&mut conn).await?;
                }
            }
        }
        // What this write saw joins the batch's rows only past its last statement that can fail.
        if let Some(batch) = conn.batch_held() {
            batch.absorb(held);
        }
        let committed = conn.commit().await;
        // This process's next request reads afresh (whether or not the commit went through).
        if !auth_changes.is_empty() {
            auth.invalidate(&auth_changes);
        }
        committed?;
        for kind in transfers {
            metrics::counter!(LEDGER_TRANSFERS, "kind" => kind.as_str()).increment(1);
        }
        // This process's workers at once; other processes through the publisher (PostgreSQL).
        for channel in signals {
            hub.signal(channel, "");
            hub.publish(channel);
        }
        Ok(())
    }

    async fn try_take_item(&mut self, item: &str) -> Result<bool> {
        if self.dialect == Dialect::Sqlite {
            return Ok(true);
        }
        let row = Q::new("SELECT CAST(pg_try_advisory_xact_lock(hashtextextended($1, 0)) AS INT) AS taken")
            .str(item)
            .fetch_optional(&mut self.conn)
            .await?;
        Ok(row.map(|r| r.int("taken")).transpose()? == Some(1))
    }

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

    async fn idem_get(&mut self, key_id: ApiKeyId, key: &str) -> Result<Option<IdemRecord>> {
        let sql = format!(
            "SELECT api_key_id, idem_key, fingerprint, status, body, created_at, lease_until FROM idempotency_records WHERE api_key_id = $1 AND idem_key = $2{}",
            self.lock()
        );
        let row = Q::new(&sql).str(&key_id.uuid_string()).str(key).fetch_optional(&mut self.conn).await?;
        row.map(|r| rows::idem(&r)).transpose()
    }

    async fn idem_insert(&mut self, rec: &IdemRecord) -> Result<bool> {
        let n = Q::new(
            "INSERT INTO idempotency_records (api_key_id, idem_key, fingerprint, status, body, created_at, lease_until) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (api_key_id, idem_key) DO NOTHING",
        )
        .str(&rec.api_key_id.uuid_string())
        .str(&rec.key)
        .str(&rec.fingerprint)
        .opt_int(rec.reply.as_ref().map(|r| i64::from(r.status)))
        .opt_str(rec.reply.as_ref().map(|r| String::from_utf8_lossy(&r.body).into_owned()))
        .int(rec.created_at.millis())
        .int(rec.lease_until.millis())
        .execute(&mut self.conn)
        .await?;
        Ok(n == 1)
    }

    async fn idem_renew(&mut self, key_id: ApiKeyId, key: &str, created_at: Timestamp, lease_until: Timestamp) -> Result<()> {
        Q::new("UPDATE idempotency_records SET created_at = $3, lease_until = $4 WHERE api_key_id = $1 AND idem_key = $2")
            .str(&key_id.uuid_string())
            .str(key)
            .int(created_at.millis())
            .int(lease_until.millis())
            .execute(&mut self.conn)
            .await
            .map(|_| ())
    }

    async fn idem_complete(&mut self, key_id: ApiKeyId, key: &str, token: Timestamp, reply: &Reply) -> Result<u64> {
        let claim = Claim {
            key_id: key_id.uuid_string(),
            key: key.to_owned(),
            token: token.millis(),
            status: i64::from(reply.status),
            body: String::from_utf8_lossy(&reply.body).into_owned(),
        };
        self.conn.later_claim(claim).await
    }

    async fn idem_delete(&mut self, key_id: ApiKeyId, key: &str, token: Timestamp) -> Result<()> {
        Q::new("DELETE FROM idempotency_records WHERE api_key_id = $1 AND idem_key = $2 AND created_at = $3 AND status IS NULL")
            .str(&key_id.uuid_string())
            .str(key)
            .int(token.millis())
            .execute(&mut self.conn)
            .await
            .map(|_| ())
    }

    async fn idem_prune(&mut self, created_before: Timestamp) -> Result<u64> {
        let sql = format!(
            "DELETE FROM idempotency_records WHERE (api_key_id, idem_key) IN \
             (SELECT api_key_id, idem_key FROM idempotency_records WHERE created_at < $1{})",
            self.lock_free_rows()
        );
        Q::new(&sql).int(created_before.millis()).execute(&mut self.conn).await
    }

    async fn insert_audits(&mut self, entries: &[AuditEntry]) -> Result<()> {
        for chunk in entries.chunks(ROWS_PER_INSERT) {
            let mut q = Q::new(&format!(
                "INSERT INTO audit_log (id, event_type, occurred_at, request_id, org_id, project_id, api_key_id, actor, data) VALUES {}",
                values_placeholders(chunk.len(), 9)
            ));
            for a in chunk {
                q = q
                    .str(&a.id.to_string())
                    .str(&a.event_type)
                    .int(a.occurred_at.millis())
                    .opt_str(a.request_id.map(|r| r.to_string()))
                    .opt_str(a.org_id.map(|o| o.uuid_string()))
                    .opt_str(a.project_id.map(|p| p.uuid_string()))
                    .opt_str(a.api_key_id.map(|k| k.uuid_string()))
                    .str(a.actor.as_str())
                    .str(&a.data.to_string());
            }
            self.conn.later(q).await?;
        }
        Ok(())
    }

    async fn list_audit(&mut self, org: OrgId, f: &AuditFilter, req: PageRequest) -> Result<Vec<AuditEntry>> {
        let mut q = Q::new(&format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE org_id = $1")).str(&org.uuid_string());
        q = q.and_any_of("event_type", &f.event_types);
        if let Some(p) = f.project_id {
            q = q.and_str(" AND project_id = $?", &p.uuid_string());
        }
        if let Some(k) = f.api_key_id {
            q = q.and_str(" AND api_key_id = $?", &k.uuid_string());
        }
        if let Some(s) = f.since {
            q = q.and_int(" AND occurred_at >= $?", s.millis());
        }
        if let Some(u) = f.until {
            q = q.and_int(" AND occurred_at < $?", u.millis());
        }
        let rows = page(q, req).fetch_all(&mut self.conn).await?;
        rows.iter().map(rows::audit).collect()
    }

    async fn insert_event(&mut self, e: &Event) -> Result<()> {
        self.signal_on_commit(notify::EVENTS);
        let q = Q::new("INSERT INTO events (id, event_type, org_id, project_id, data, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .str(&e.id.to_string())
            .str(e.event_type.as_str())
            .str(&e.org_id.uuid_string())
            .opt_str(e.project_id.map(|p| p.uuid_string()))
            .str(&e.data.to_string())
            .int(e.created_at.millis());
        self.conn.later(q).await
    }

    async fn list_events(&mut self, org: OrgId, f: &EventFilter, req: PageRequest) -> Result<Vec<Event>> {
        let mut q = Q::new(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE org_id = $1")).str(&org.uuid_string());
        q = q.and_any_of("event_type", f.event_types.iter().map(|t| t.as_str()));
        if let Some(s) = f.since {
            q = q.and_int(" AND created_at >= $?", s.millis());
        }
        if let Some(u) = f.until {
            q = q.and_int(" AND created_at < $?", u.millis());
        }
        let rows = page(q, req).fetch_all(&mut self.conn).await?;
        rows.iter().map(rows::event).collect()
    }

    async fn event(&mut self, org: OrgId, id: EventId) -> Result<Option<Event>> {
        let row = Q::new(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = $1 AND org_id = $2"))
            .str(&id.to_string())
            .str(&org.uuid_string())
            .fetch_optional(&mut self.conn)
            .await?;
        row.map(|r| rows::event(&r)).transpose()
    }

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

    async fn insert_project(&mut self, p: &Project) -> Result<()> {
        Q::new(&format!(
            "INSERT INTO projects ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            &PROJECT_COLUMNS["seq, ".len()..]
        ))
        .str(&p.id.uuid_string())
        .str(&p.org_id.uuid_string())
        .str(&p.name)
        .str(p.status.as_str())
        .opt_str(p.customer_external_id.clone())
        .str(&p.timezone)
        .str(&p.primary_language)
        .opt_str(p.owner_email.clone())
        .str(&p.metadata.to_string())
        .int(p.created_at.millis())
        .int(p.updated_at.millis())
        .opt_int(ts(p.archived_at))
        .execute(&mut self.conn)
        .await
        .map(|_| ())
    }

    async fn update_project(&mut self, p: &Project) -> Result<()> {
        Q::new(
            "UPDATE projects SET org_id = $2, name = $3, status = $4, customer_external_id = $5, timezone = $6, primary_language = $7, \
             owner_email = $8, metadata = $9, updated_at = $10, archived_at = $11 WHERE seq = $1",
        )
        .int(p.seq)
        .str(&p.org_id.uuid_string())
        .str(&p.name)
        .str(p.status.as_str())
        .opt_str(p.customer_external_id.clone())
        .str(&p.timezone)
        .str(&p.primary_language)
        .opt_str(p.owner_email.clone())
        .str(&p.metadata.to_string())
        .int(p.updated_at.millis())
        .opt_int(ts(p.archived_at))
        .execute(&mut self.conn)
        .await
        .map(|_| ())
    }

    async fn project(&mut self, org: OrgId, id: ProjectId) -> Result<Option<Project>> {
        self.owned(PROJECT_COLUMNS, "projects", &id.uuid_string(), "org_id", Owner::Org(org), rows::project).await
    }

    async fn project_by_external_id(&mut self, org: OrgId, external_id: &str) -> Result<Option<Project>> {
        let sql = format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE org_id = $1 AND customer_external_id = $2");
        let row = Q::new(&sql).str(&org.uuid_string()).str(external_id).fetch_optional(&mut self.conn).await?;
        row.map(|r| rows::project(&r)).transpose()
    }

    async fn list_projects(&mut self, org: OrgId, f: &ProjectFilter, req: PageRequest) -> Result<Vec<Project>> {
        let mut q = Q::new(&format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE org_id = $1")).str(&org.uuid_string());
        q = q.and_any_of("status", f.statuses.iter().map(|s| s.as_str()));
        if let Some(e) = &f.customer_external_id {
            q = q.and_str(" AND customer_external_id = $?", e);
        }
        if let Some(term) = &f.search {
            // Escape LIKE's wildcards so the search is a plain substring match.
            let pattern = format!("%{}%", term.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
            q = q.and_str(" AND LOWER(name) LIKE $? ESCAPE '\\'", &pattern);
        }
        let rows = page(q, req).fetch_all(&mut self.conn).await?;
        rows.iter().map(rows::project).collect()
    }

    async fn count_projects(&mut self, org: OrgId) -> Result<i64> {
        let row =
            Q::new("SELECT COUNT(*) AS n FROM projects WHERE org_id = $1").str(&org.uuid_string()).fetch_optional(&mut self.conn).await?;
        Ok(row.map(|r| r.int("n")).transpose()?.unwrap_or(0))
    }

    async fn move_project_rows(&mut self, project: ProjectId, from: OrgId, to: OrgId) -> Result<()> {
        // The jobs have followed their project already (the reference cascades); this is a
        // no-op for them, kept so that every row of the project moves here whatever the schema.
        for table in ["jobs", "containers", "scheduled_posts"] {
            Q::new(&format!("UPDATE {table} SET org_id = $3 WHERE org_id = $2 AND project_id = $1"))
                .str(&project.uuid_string())
                .str(&from.uuid_string())
                .str(&to.uuid_string())
                .execute(&mut self.conn)
                .await?;
        }
        Ok(())
    }

    async fn insert_job(&mut self, j: &Job) -> Result<()> {
        let q = Q::new(&format!(
            "INSERT INTO jobs ({JOB_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
        ));
        job_args(q, j).execute(&mut self.conn).await.map(|_| ())
    }

    async fn update_job(&mut self, j: &Job) -> Result<()> {
        Q::new("UPDATE jobs SET status = $3, finished_at = $4, error = $5 WHERE id = $1 AND org_id = $2")
            .str(&j.id.to_string())
            .str(&j.org_id.uuid_string())
            .str(j.status.as_str())
            .opt_int(ts(j.finished_at))
            .opt_str(j.error.clone())
            .execute(&mut self.conn)
            .await
            .map(|_| ())
    }

    async fn job(&mut self, org: OrgId, id: JobId) -> Result<Option<Job>> {
        self.owned(JOB_COLUMNS, "jobs", &id.to_string(), "org_id", Owner::Org(org), rows::job).await
    }

    async fn due_jobs(&mut self, now: Timestamp, limit: u32) -> Result<Vec<(OrgId, JobId)>> {
        let rows = Q::new("SELECT org_id, id FROM jobs WHERE status = 'running' AND finish_at <= $1 ORDER BY finish_at LIMIT $2")
            .int(now.millis())
            .int(i64::from(limit))
            .fetch_all(&mut self.conn)
            .await?;
        rows.iter().map(|r| Ok((OrgId::from_stored(&r.text("org_id")?)?, JobId::from_stored(&r.text("id")?)?))).collect()
    }

    async fn running_job_ends_for_key(&mut self, key: ApiKeyId) -> Result<Vec<Timestamp>> {
        let rows = Q::new("SELECT finish_at FROM jobs WHERE api_key_id = $1 AND status = 'running'")
            .str(&key.uuid_string())
            .fetch_all(&mut self.conn)
            .await?;
        rows.iter().map(|r| r.int("finish_at").map(Timestamp)).collect()
    }

    async fn running_jobs_for_project(&mut self, org: OrgId, project: ProjectId) -> Result<i64> {
        let row = Q::new("SELECT COUNT(*) AS n FROM jobs WHERE org_id = $1 AND project_id = $2 AND status = 'running'")
            .str(&org.uuid_string())
            .str(&project.uuid_string())
            .fetch_optional(&mut self.conn)
            .await?;
        Ok(row.map(|r| r.int("n")).transpose()?.unwrap_or(0))
    }

    async fn insert_container(&mut self, c: &Container) -> Result<()> {
        Q::new(&format!("INSERT INTO containers ({CONTAINER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"))
            .str(&c.id.to_string())
            .str(&c.job_id.to_string())
            .str(&c.org_id.uuid_string())
            .str(&c.project_id.uuid_string())
            .str(&c.format)
            .str(c.status.as_str())
            .str(&c.assets.to_string())
            .int(c.created_at.millis())
            .execute(&mut self.conn)
            .await
            .map(|_| ())
    }

    async fn update_container(&mut self, c: &Container) -> Result<()> {
        Q::new("UPDATE containers SET status = $2, assets = $3 WHERE id = $1")
            .str(&c.id.to_string())
            .str(c.status.as_str())
            .str(&c.assets.to_string())
            .execute(&mut self.conn)
            .await
            .map(|_| ())
    }

    async fn container(&mut self, owner: Owner, id: ContainerId) -> Result<Option<Container>> {
        self.owned(CONTAINER_COLUMNS, "containers", &id.to_string(), "org_id", owner, rows::container).await
    }

    async fn containers_of_job(&mut self, org: OrgId, job: JobId) -> Result<Vec<Container>> {
        let rows = Q::new(&format!("SELECT {CONTAINER_COLUMNS} FROM containers WHERE org_id = $1 AND job_id = $2 ORDER BY seq"))
            .str(&org.uuid_string())
            .str(&job.to_string())
            .fetch_all(&mut self.conn)
            .await?;
        rows.iter().map(rows::container).collect()
    }

    async fn insert_post(&mut self, p: &ScheduledPost) -> Result<()> {
        Q::new(&format!(
            "INSERT INTO scheduled_posts ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            &POST_COLUMNS["seq, ".len()..]
        ))
        .str(&p.id.to_string())
        .str(&p.org_id.uuid_string())
        .str(&p.project_id.uuid_string())
        .str(&p.container_id.to_string())
        .str(&p.platform)
        .int(p.scheduled_for.millis())
        .str(p.status.as_str())
        .opt_int(ts(p.published_at))
        .opt_int(ts(p.canceled_at))
        .int(p.created_at.millis())
        .int(p.updated_at.millis())
        .execute(&mut self.conn)
        .await
        .map(|_| ())
    }

    async fn update_post(&mut self, p: &ScheduledPost) -> Result<()> {
        Q::new("UPDATE scheduled_posts SET status = $2, published_at = $3, canceled_at = $4, updated_at = $5 WHERE id = $1")
            .str(&p.id.to_string())
            .str(p.status.as_str())
            .opt_int(ts(p.published_at))
            .opt_int(ts(p.canceled_at))
            .int(p.updated_at.millis())
            .execute(&mut self.conn)
            .await
            .map(|_| ())
    }

    async fn post(&mut self, owner: Owner, id: PostId) -> Result<Option<ScheduledPost>> {
        self.owned(POST_COLUMNS, "scheduled_posts", &id.to_string(), "org_id", owner, rows::post).await
    }

    async fn list_posts(&mut self, org: OrgId, project: ProjectId, req: PageRequest) -> Result<Vec<ScheduledPost>> {
        let q = Q::new(&format!("SELECT {POST_COLUMNS} FROM scheduled_posts WHERE org_id = $1 AND project_id = $2"))
            .str(&org.uuid_string())
            .str(&project.uuid_string());
        let rows = page(q, req).fetch_all(&mut self.conn).await?;
        rows.iter().map(rows::post).collect()
    }

    async fn due_posts(&mut self, now: Timestamp, limit: u32) -> Result<Vec<(PostId, OrgId, ProjectId)>> {
        // Posts of a suspended or cut-off org wait; leaving them out keeps them from crowding
        // out everyone else's.
        let rows = Q::new(
            "SELECT p.id AS id, p.org_id AS org_id, p.project_id AS project_id FROM scheduled_posts p JOIN organizations o ON o.id = p.org_id \
             WHERE p.status = 'scheduled' AND p.scheduled_for <= $1 AND o.status <> 'suspended' AND o.access_revoked = 0 \
             ORDER BY p.scheduled_for LIMIT $2",
        )
        .int(now.millis())
        .int(i64::from(limit))
        .fetch_all(&mut self.conn)
        .await?;
        rows.iter()
            .map(|r| {
                let id = PostId::from_stored(&r.text("id")?)?;
                Ok((id, OrgId::from_stored(&r.text("org_id")?)?, ProjectId::from_stored(&r.text("project_id")?)?))
            })
            .collect()
    }

    async fn pending_posts(&mut self, org: OrgId, project: Option<ProjectId>) -> Result<Vec<ScheduledPost>> {
        let q = Q::new(&format!("SELECT {POST_COLUMNS} FROM scheduled_posts WHERE org_id = $1 AND status = 'scheduled'"))
            .str(&org.uuid_string());
        let q = match project {
            Some(p) => q.and_str(" AND project_id = $?", &p.uuid_string()),
            None => q,
        };
        let rows = q.push(" ORDER BY seq").fetch_all(&mut self.conn).await?;
        rows.iter().map(rows::post).collect()
    }

    async fn insert_endpoint(&mut self, e: &Endpoint) -> Result<()> {
        let q = Q::new(&format!(
            "INSERT INTO webhook_endpoints ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
            &ENDPOINT_COLUMNS["seq, ".len()..]
        ));
        endpoint_args(q, e).execute(&mut self.conn).await.map(|_| ())
    }

    async fn update_endpoint(&mut self, e: &Endpoint) -> Result<()> {
        let q = Q::new(
            "UPDATE webhook_endpoints SET org_id = $2, project_id = $3, url = $4, description = $5, status = $6, events = $7, scope = $8, \
             metadata = $9, secret_sealed = $10, previous_secret = $11, previous_expires_at = $12, created_at = $13, updated_at = $14, \
             last_success_at = $15, last_failure_at = $16, consecutive_failures = $17, start_seq = $18 WHERE id = $1",
        );
        endpoint_args(q, e).execute(&mut self.conn).await.map(|_| ())
    }

    async fn delete_endpoint(&mut self, id: EndpointId) -> Result<()> {
        Q::new("DELETE FROM webhook_endpoints WHERE id = $1").str(&id.to_string()).execute(&mut self.conn).await.map(|_| ())
    }

    async fn endpoint(&mut self, id: EndpointId) -> Result<Option<Endpoint>> {
        self.one(ENDPOINT_COLUMNS, "webhook_endpoints", "id", &id.to_string(), rows::endpoint).await
    }

    async fn list_endpoints(
        &mut self,
        org: OrgId,
        project: Option<ProjectId>,
        statuses: &[EndpointStatus],
        req: PageRequest,
    ) -> Result<Vec<Endpoint>> {
        let mut q = Q::new(&format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE org_id = $1")).str(&org.uuid_string());
        if let Some(p) = project {
            q = q.and_str(" AND project_id = $?", &p.uuid_string());
        }
        q = q.and_any_of("status", statuses.iter().map(|s| s.as_str()));
        let rows = page(q, req).fetch_all(&mut self.conn).await?;
        rows.iter().map(rows::endpoint).collect()
    }

    async fn endpoints_for_event(&mut self, org: OrgId, parent: Option<OrgId>) -> Result<Vec<Endpoint>> {
        let q = Q::new(&format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE org_id = $1")).str(&org.uuid_string());
        let q = match parent {
            Some(p) => q.and_str(" OR (org_id = $? AND scope = 'all_children')", &p.uuid_string()),
            None => q,
        };
        let rows = q.push(" ORDER BY seq").fetch_all(&mut self.conn).await?;
        rows.iter().map(rows::endpoint).collect()
    }

    async fn undispatched_events(&mut self, limit: u32) -> Result<Vec<Event>> {
        let rows = Q::new(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE dispatched = 0 ORDER BY seq LIMIT $1"))
            .int(i64::from(limit))
            .fetch_all(&mut self.conn)
            .await?;
        rows.iter().map(rows::event).collect()
    }

    async fn max_event_seq(&mut self) -> Result<i64> {
        let row = Q::new("SELECT COALESCE(MAX(seq), 0) AS n FROM events").fetch_optional(&mut self.conn).await?;
        Ok(row.map(|r| r.int("n")).transpose()?.unwrap_or(0))
    }

    async fn mark_dispatched(&mut self, ids: &[EventId]) -> Result<Vec<EventId>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        // Events another node's dispatcher is marking are skipped, not waited for: that node
        // dispatches them (or, if it rolls back, the next step does).
        let rows = Q::new("UPDATE events SET dispatched = 1 WHERE id IN (SELECT id FROM events WHERE dispatched = 0 AND id IN (")
            .list(&ids)
            .push(&format!("){}) RETURNING id", self.lock_free_rows()))
            .fetch_all(&mut self.conn)
            .await?;
        rows.iter().map(|r| EventId::from_stored(&r.text("id")?)).collect()
    }

    async fn insert_deliveries(&mut self, deliveries: &[Delivery]) -> Result<()> {
        const COLUMNS: usize = 16;
        // Well under both engines' limit on bound parameters per statement.
        const ROWS_PER_STATEMENT: usize = 500;
        if deliveries.is_empty() {
            return Ok(());
        }
        self.signal_on_commit(notify::DELIVERIES);
        for chunk in deliveries.chunks(ROWS_PER_STATEMENT) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| format!("({})", (1..=COLUMNS).map(|c| format!("${}", i * COLUMNS + c)).collect::<Vec<_>>().join(", ")))
                .collect();
            let mut q =
                Q::new(&format!("INSERT INTO webhook_deliveries ({}) VALUES {}", &DELIVERY_COLUMNS["seq, ".len()..], rows.join(", ")));
            for d in chunk {
                q = q
                    .str(&d.id.to_string())
                    .str(&d.endpoint_id.to_string())
                    .str(&d.event_org_id.uuid_string())
                    .str(&d.event_id.to_string())
                    .str(d.event_type.as_str())
                    .str(&d.body)
                    .str(d.status.as_str())
                    .int(d.attempts);
                q = outcome_args(q, d).opt_str(d.replay_of.map(|r| r.to_string())).int(d.created_at.millis());
            }
            q.execute(&mut self.conn).await?;
        }
        Ok(())
    }

    async fn delivery(&mut self, id: DeliveryId) -> Result<Option<Delivery>> {
        self.one(DELIVERY_COLUMNS, "webhook_deliveries", "id", &id.to_string(), rows::delivery).await
    }

    async fn list_deliveries(
        &mut self,
        endpoint: EndpointId,
        event_types: &[EventType],
        statuses: &[DeliveryStatus],
        req: PageRequest,
    ) -> Result<Vec<Delivery>> {
        let mut q = Q::new(&format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE endpoint_id = $1")).str(&endpoint.to_string());
        q = q.and_any_of("event_type", event_types.iter().map(|t| t.as_str()));
        q = q.and_any_of("status", statuses.iter().map(|s| s.as_str()));
        let rows = page(q, req).fetch_all(&mut self.conn).await?;
        rows.iter().map(rows::delivery).collect()
    }

    async fn due_deliveries(&mut self, now: Timestamp, exclude: &[EndpointId], limit: u32) -> Result<Vec<(DeliveryId, EndpointId)>> {
        let mut q = Q::new(
            "SELECT d.id AS id, d.endpoint_id AS endpoint_id FROM webhook_deliveries d \
             JOIN webhook_endpoints e ON e.id = d.endpoint_id \
             JOIN organizations o ON o.id = d.event_org_id \
             WHERE d.status IN ('pending', 'delivering') AND d.next_retry_at <= $1 AND e.status = 'active' \
             AND o.status <> 'suspended' AND o.access_revoked = 0 AND (o.status <> 'archived' OR e.org_id <> d.event_org_id)",
        )
        .int(now.millis());
        for e in exclude {
            q = q.and_str(" AND d.endpoint_id <> $?", &e.to_string());
        }
        let rows = q.and_int(" ORDER BY d.next_retry_at LIMIT $?", i64::from(limit)).fetch_all(&mut self.conn).await?;
        rows.iter().map(|r| Ok((DeliveryId::from_stored(&r.text("id")?)?, EndpointId::from_stored(&r.text("endpoint_id")?)?))).collect()
    }

    async fn claim_deliveries(&mut self, ids: &[DeliveryId], now: Timestamp, lease_until: Timestamp) -> Result<Vec<Delivery>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // Locked in id order, like every other write of several deliveries (see abandon_deliveries),
        // skipping rows another transaction holds instead of queueing on them: another node's
        // sender claiming the same due deliveries (they are its to send), or an archive or a
        // replay (the row comes back at the next step if it is still due).
        let lock = if self.lock().is_empty() { "" } else { " FOR UPDATE SKIP LOCKED" };
        let q = Q::new(
            "UPDATE webhook_deliveries SET status = 'delivering', attempts = attempts + 1, next_retry_at = $1 WHERE id IN \
             (SELECT id FROM webhook_deliveries WHERE status IN ('pending', 'delivering') AND next_retry_at <= $2 AND id IN (",
        )
        .int(lease_until.millis())
        .int(now.millis());
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let tail = format!(") ORDER BY id{lock}) RETURNING {DELIVERY_COLUMNS}");
        let rows = q.list(&ids).push(&tail).fetch_all(&mut self.conn).await?;
        rows.iter().map(rows::delivery).collect()
    }

    async fn finish_delivery(&mut self, d: &Delivery) -> Result<bool> {
        let q = Q::new(
            "UPDATE webhook_deliveries SET status = $2, next_retry_at = $3, delivered_at = $4, abandoned_at = $5, \
             last_response_status = $6, last_response_at = $7, last_error = $8 \
             WHERE id = $1 AND status = 'delivering' AND attempts = $9",
        )
        .str(&d.id.to_string())
        .str(d.status.as_str());
        let n = outcome_args(q, d).int(d.attempts).execute(&mut self.conn).await?;
        Ok(n == 1)
    }

    async fn release_deliveries(&mut self, claims: &[(DeliveryId, i64)], now: Timestamp) -> Result<u64> {
        let mut released = 0;
        for (id, attempts) in claims {
            released +=
                Q::new("UPDATE webhook_deliveries SET next_retry_at = $1 WHERE id = $2 AND status = 'delivering' AND attempts = $3")
                    .int(now.millis())
                    .str(&id.to_string())
                    .int(*attempts)
                    .execute(&mut self.conn)
                    .await?;
        }
        Ok(released)
    }

    async fn insert_attempts(&mut self, attempts: &[DeliveryAttempt]) -> Result<()> {
        for chunk in attempts.chunks(ROWS_PER_INSERT) {
            let mut q = Q::new(&format!(
                "INSERT INTO webhook_delivery_attempts ({}) VALUES {}",
                &ATTEMPT_COLUMNS["seq, ".len()..],
                values_placeholders(chunk.len(), 6)
            ));
            for a in chunk {
                q = q
                    .str(&a.delivery_id.to_string())
                    .int(a.attempted_at.millis())
                    .int(a.duration_ms)
                    .opt_int(a.response_status)
                    .opt_str(a.error.clone())
                    .opt_str(a.response_body_excerpt.clone());
            }
            q.execute(&mut self.conn).await?;
        }
        Ok(())
    }

    async fn list_attempts(&mut self, delivery: DeliveryId, limit: u32) -> Result<Vec<DeliveryAttempt>> {
        let rows =
            Q::new(&format!("SELECT {ATTEMPT_COLUMNS} FROM webhook_delivery_attempts WHERE delivery_id = $1 ORDER BY seq DESC LIMIT $2"))
                .str(&delivery.to_string())
                .int(i64::from(limit))
                .fetch_all(&mut self.conn)
                .await?;
        rows.iter().map(rows::attempt).collect()
    }

    async fn requeue_deliveries(&mut self, endpoint: EndpointId, since: Timestamp, now: Timestamp) -> Result<u64> {
        let n = Q::new(
            "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_retry_at = $3, abandoned_at = NULL \
             WHERE endpoint_id = $1 AND created_at >= $2 AND status IN ('failed', 'abandoned') \
             AND event_org_id NOT IN (SELECT id FROM organizations WHERE status = 'archived')",
        )
        .str(&endpoint.to_string())
        .int(since.millis())
        .int(now.millis())
        .execute(&mut self.conn)
        .await?;
        if n > 0 {
            self.signal_on_commit(notify::DELIVERIES);
        }
        Ok(n)
    }

    async fn purge_deliveries(&mut self, before: Timestamp, limit: u32) -> Result<u64> {
        let rows = Q::new(&format!(
            "SELECT id FROM webhook_deliveries WHERE status IN ('delivered', 'failed', 'abandoned') AND created_at < $1 \
             ORDER BY created_at LIMIT $2{}",
            self.lock_free_rows()
        ))
        .int(before.millis())
        .int(i64::from(limit))
        .fetch_all(&mut self.conn)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let ids = rows.iter().map(|r| r.text("id")).collect::<Result<Vec<_>>>()?;
        for table_column in ["webhook_delivery_attempts WHERE delivery_id", "webhook_deliveries WHERE id"] {
            Q::new(&format!("DELETE FROM {table_column} IN (")).list(&ids).push(")").execute(&mut self.conn).await?;
        }
        Ok(ids.len() as u64)
    }

    async fn abandon_orphaned_deliveries(&mut self, at: Timestamp, limit: u32) -> Result<u64> {
        // Locked in id order, like every other write of several deliveries (see abandon_deliveries).
        let sql = format!(
            "UPDATE webhook_deliveries SET status = 'abandoned', abandoned_at = $1, next_retry_at = NULL WHERE id IN \
             (SELECT d.id FROM webhook_deliveries d WHERE d.status = 'pending' \
             AND (NOT EXISTS (SELECT 1 FROM webhook_endpoints e WHERE e.id = d.endpoint_id) \
             OR EXISTS (SELECT 1 FROM webhook_endpoints e JOIN organizations o ON o.id = e.org_id \
             WHERE e.id = d.endpoint_id AND e.org_id = d.event_org_id AND o.status = 'archived')) \
             ORDER BY d.id LIMIT $2{})",
            self.lock_free_rows()
        );
        Q::new(&sql).int(at.millis()).int(i64::from(limit)).execute(&mut self.conn).await
    }

    async fn purge_events(&mut self, before: Timestamp, limit: u32) -> Result<u64> {
        Q::new(&format!(
            "DELETE FROM events WHERE seq IN (SELECT ev.seq FROM events ev WHERE ev.dispatched = 1 AND ev.created_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = ev.id AND d.status IN ('pending', 'delivering')) \
             ORDER BY ev.created_at LIMIT $2{})",
            self.lock_free_rows()
        ))
        .int(before.millis())
        .int(i64::from(limit))
        .execute(&mut self.conn)
        .await
    }

    async fn abandon_deliveries(&mut self, endpoint: Option<EndpointId>, event_org: Option<OrgId>, at: Timestamp) -> Result<u64> {
        let (column, value) = match (endpoint, event_org) {
            (Some(e), _) => ("endpoint_id", e.to_string()),
            (None, Some(o)) => ("event_org_id", o.uuid_string()),
            (None, None) => return Ok(0),
        };
        // The rows are locked in id order, the order the sender records attempts in: a bulk
        // UPDATE would lock them in table order and deadlock against it on PostgreSQL.
        let sql = format!(
            "UPDATE webhook_deliveries SET status = 'abandoned', abandoned_at = $1, next_retry_at = NULL WHERE id IN \
             (SELECT id FROM webhook_deliveries WHERE status IN ('pending', 'delivering') AND {column} = $2 ORDER BY id{})",
            self.lock()
        );
        Q::new(&sql).int(at.millis()).str(&value).execute(&mut self.conn).await
    }

    async fn setting(&mut self, name: &str) -> Result<Option<String>> {
        let row = Q::new("SELECT value FROM settings WHERE name = $1").str(name).fetch_optional(&mut self.conn).await?;
        row.map(|r| r.text("value")).transpose()
    }

    async fn setting_init(&mut self, name: &str, value: &str) -> Result<String> {
        Q::new("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .str(name)
            .str(value)
            .execute(&mut self.conn)
            .await?;
        self.setting(name).await.map(|v| v.unwrap_or_else(|| value.to_owned()))
    }

    async fn setting_remove(&mut self, name: &str, value: &str) -> Result<bool> {
        crate::sealed::setting_remove(&mut self.conn, name, value).await
    }

    async fn sealed_values(&mut self, column: SealedColumn, after: Option<&SealedRow>, limit: u32) -> Result<Vec<SealedValue>> {
        crate::sealed::values(&mut self.conn, column, after, limit).await
    }

    async fn replace_sealed(&mut self, column: SealedColumn, old: &SealedValue, new: &str) -> Result<bool> {
        crate::sealed::replace(&mut self.conn, column, old, new).await
    }
}
