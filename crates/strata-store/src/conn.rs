//! The connection a transaction runs on: a PostgreSQL transaction through sqlx's native
//! PostgreSQL driver (prepared statements, cached per connection), or a SQLite connection held
//! in-thread (the group-committed writer or a reader). Statements are the same text on both;
//! only the binding and the decoding differ (`pg` and `lite` hold each driver's code).

use sqlx::{Postgres, Transaction};
use strata_core::error::{CoreError, Result};

use crate::deferred::{Claim, Later, render};
use crate::error::db_err;
use crate::group::GroupWrite;
use crate::held::HeldRows;
use crate::lane::PgLane;
use crate::lite::{LiteRead, LiteWrite, lite_execute, lite_fetch};
use crate::pg::{bind_pg, pg_failed, pg_row};
use crate::pool_use::{InUse, Pool};
use crate::query::{Q, Row, fuse, mentions, writes_only, written_table};

/// A connection and the writes deferred on it (see `Conn::later`).
pub(crate) struct Conn {
    link: Link,
    /// Writes of a PostgreSQL transaction not yet sent: they travel with the next statement.
    later: Vec<Later>,
}

pub(crate) enum Link {
    /// A PostgreSQL transaction, and its connection's place in the in-use count.
    Pg(Transaction<'static, Postgres>, InUse),
    /// A single statement on a pooled PostgreSQL connection, outside any transaction.
    PgPool(Pool),
    /// A PostgreSQL write transaction of this process's group commit (a savepoint of its batch).
    PgGroup(GroupWrite<PgLane>),
    LiteWrite(LiteWrite),
    LiteRead(LiteRead),
}

impl From<Link> for Conn {
    fn from(link: Link) -> Self {
        Self { link, later: Vec::new() }
    }
}

impl Conn {
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// The rows this connection's group-commit batch holds (PostgreSQL's grouped writes only).
    pub fn batch_held(&mut self) -> Option<&mut HeldRows> {
        match &mut self.link {
            Link::PgGroup(w) => Some(&mut w.conn_mut().held),
            _ => None,
        }
    }

    /// Runs a write whose outcome nothing waits for (an insert of an audit entry, an event, a
    /// transfer; the update of a wallet whose value the caller already knows): inside a
    /// PostgreSQL transaction it is deferred and sent with the transaction's next statement, as
    /// a data-modifying `WITH` of it (one round trip for both), or before the commit; elsewhere
    /// it runs now. A statement that names a table a deferred write writes sends the deferred
    /// ones first, so every statement sees the transaction's own writes. A deferred write that
    /// fails fails the statement it travels with; either way the transaction does not commit.
    pub async fn later(&mut self, q: Q) -> Result<()> {
        // Their text is renumbered and merged as plain statements: no quoted literal (a `$n` in
        // it would be renumbered too), nothing after an insert's rows.
        debug_assert!(
            !written_table(&q).is_empty()
                && !q.sql.contains(['\'', '"'])
                && !q.sql.contains(" ON CONFLICT")
                && !q.sql.contains(" RETURNING"),
            "only a plain INSERT INTO … VALUES or UPDATE is deferred: {}",
            q.sql
        );
        self.defer(Later::Write { q, counted: false }).await
    }

    /// Defers the change of a wallet whose exact value the grouped write holds (see
    /// `deferred::Later::Wallet`); it is sent like `later`'s writes.
    pub async fn later_wallet(&mut self, change: strata_core::ledger::WalletChange, at: strata_core::clock::Timestamp) -> Result<()> {
        self.defer(Later::Wallet { change, at }).await
    }

    /// Queues `write` inside a PostgreSQL transaction; elsewhere runs it now.
    async fn defer(&mut self, write: Later) -> Result<()> {
        if let Link::Pg(..) | Link::PgGroup(_) = self.link {
            self.later.push(write);
            return Ok(());
        }
        for (q, _) in render(vec![write]) {
            self.execute(&q).await?;
        }
        Ok(())
    }

    /// Completes an idempotency claim (its update must change exactly one row) and returns how
    /// many rows it changed. In a grouped PostgreSQL write it is deferred like `later`
    /// and answers 1: the count is checked when it is sent (with the write's next statement, or
    /// with its batch's commit), and a row it did not change fails that statement or the whole
    /// batch, so nothing of the write commits.
    pub async fn later_claim(&mut self, claim: Claim) -> Result<u64> {
        match self.link {
            Link::PgGroup(_) => {
                self.later.push(Later::Claim(claim));
                Ok(1)
            }
            _ => self.execute(&claim.update()).await,
        }
    }

    /// The statement to send for `q`: itself, or itself carrying the deferred writes (which
    /// are then taken). Deferred writes to a table `q` names, or whose count is checked, are
    /// sent on their own first.
    async fn carrying(&mut self, q: &Q) -> Result<Option<Q>> {
        if let Link::PgGroup(w) = &mut self.link {
            w.conn_mut().before_statement().await?;
        }
        if self.later.is_empty() {
            return Ok(None);
        }
        let args: usize = self.later.iter().map(Later::args).sum();
        if args + q.args.len() > crate::query::MAX_ARGS || self.later.iter().any(|l| l.counted() || mentions(&q.sql, l.table())) {
            self.flush().await?;
            return Ok(None);
        }
        Ok(Some(fuse(q, render(std::mem::take(&mut self.later)))))
    }

    /// Sends the deferred writes (one statement), if any; a counted one that changed no row
    /// fails it (`IdempotencyConflict`: the claim was taken over).
    pub async fn flush(&mut self) -> Result<()> {
        if self.later.is_empty() {
            return Ok(());
        }
        for (q, expected) in writes_only(render(std::mem::take(&mut self.later))) {
            let rows = self.run_all(&q).await?;
            if rows.first().map(|r| r.int("counted")).transpose()? != Some(expected) {
                return Err(CoreError::IdempotencyConflict { in_progress: true });
            }
        }
        Ok(())
    }

    pub async fn execute(&mut self, q: &Q) -> Result<u64> {
        match self.carrying(q).await? {
            Some(fused) => self.run(&fused).await,
            None => self.run(q).await,
        }
    }

    pub async fn fetch_all(&mut self, q: &Q) -> Result<Vec<Row>> {
        match self.carrying(q).await? {
            Some(fused) => self.run_all(&fused).await,
            None => self.run_all(q).await,
        }
    }

    #[tracing::instrument(level = "debug", name = "statement", skip_all, fields(sql = %q.what()))]
    async fn run(&mut self, q: &Q) -> Result<u64> {
        crate::plans::note(q);
        match &mut self.link {
            Link::Pg(tx, _) => bind_pg(q).execute(&mut **tx).await.map(|r| r.rows_affected()).map_err(|e| pg_failed(q, e)),
            Link::PgPool(pool) => {
                let (mut conn, _in_use) = pool.acquire().await?;
                bind_pg(q).execute(&mut *conn).await.map(|r| r.rows_affected()).map_err(|e| pg_failed(q, e))
            }
            Link::PgGroup(w) => bind_pg(q).execute(w.conn_mut().pg()?).await.map(|r| r.rows_affected()).map_err(|e| pg_failed(q, e)),
            Link::LiteWrite(w) => lite_execute(w.conn(), q),
            Link::LiteRead(r) => lite_execute(r.conn(), q),
        }
    }

    #[tracing::instrument(level = "debug", name = "statement", skip_all, fields(sql = %q.what()))]
    async fn run_all(&mut self, q: &Q) -> Result<Vec<Row>> {
        crate::plans::note(q);
        match &mut self.link {
            Link::Pg(tx, _) => {
                let rows = bind_pg(q).fetch_all(&mut **tx).await.map_err(|e| pg_failed(q, e))?;
                rows.iter().map(pg_row).collect()
            }
            Link::PgPool(pool) => {
                let (mut conn, _in_use) = pool.acquire().await?;
                let rows = bind_pg(q).fetch_all(&mut *conn).await.map_err(|e| pg_failed(q, e))?;
                rows.iter().map(pg_row).collect()
            }
            Link::PgGroup(w) => {
                let rows = bind_pg(q).fetch_all(w.conn_mut().pg()?).await.map_err(|e| pg_failed(q, e))?;
                rows.iter().map(pg_row).collect()
            }
            Link::LiteWrite(w) => lite_fetch(w.conn(), q),
            Link::LiteRead(r) => lite_fetch(r.conn(), q),
        }
    }

    pub async fn commit(mut self) -> Result<()> {
        if let Link::PgGroup(w) = &mut self.link {
            // Released into the batch, they go with its next statement or its commit.
            w.conn_mut().release_writes(std::mem::take(&mut self.later));
        }
        self.flush().await?;
        match self.link {
            Link::Pg(tx, _in_use) => tx.commit().await.map_err(db_err),
            Link::PgPool(_) => Ok(()),
            Link::PgGroup(w) => w.commit().await,
            Link::LiteWrite(w) => w.commit().await,
            Link::LiteRead(r) => r.finish(),
        }
    }
}

/// Running a statement on a transaction's connection (deferred writes travel with it).
impl Q {
    pub async fn execute(&self, conn: &mut Conn) -> Result<u64> {
        conn.execute(self).await
    }

    pub async fn fetch_optional(&self, conn: &mut Conn) -> Result<Option<Row>> {
        Ok(conn.fetch_all(self).await?.into_iter().next())
    }

    pub async fn fetch_all(&self, conn: &mut Conn) -> Result<Vec<Row>> {
        conn.fetch_all(self).await
    }
}
