//! One database transaction behind the `Tx` port. In a write transaction on PostgreSQL, reads of
//! mutable rows take `FOR UPDATE` so concurrent writers queue on the row instead of losing updates.
//!
//! This module holds the transaction itself (its connection, what it announces at commit, the
//! rows a grouped write holds) and the helpers every aggregate uses; each aggregate's rows are
//! read and written in a module of their own, one per sub-trait of `Tx`: `orgs` (orgs and keys),
//! `ledger`, `logs` (idempotency, audit and event log), `content` (projects, jobs, posts),
//! `webhooks` and `settings`.

mod content;
mod ledger;
mod logs;
mod orgs;
mod settings;
mod webhooks;

use async_trait::async_trait;
use strata_core::clock::Timestamp;
use strata_core::credits::TransferKind;
use strata_core::error::Result;
use strata_core::store::{Owner, Tx};

use std::sync::Arc;

use strata_core::telemetry::LEDGER_TRANSFERS;

use crate::Dialect;
use crate::auth_cache::{AuthCache, AuthChange, BUMP_AUTH_VERSION};
use crate::conn::Conn;
use crate::held::HeldRows;
use crate::notify::{self, Hub};
use crate::query::{Q, Row};

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

    pub async fn ping(&mut self) -> Result<()> {
        Q::new("SELECT 1 AS one").fetch_optional(&mut self.conn).await.map(|_| ())
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
}
