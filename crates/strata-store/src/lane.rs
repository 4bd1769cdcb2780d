//! PostgreSQL's group-commit connection (see `group`): one connection taken from the pool for
//! the length of a batch, and what it saves round trips with.
//!
//! - A write's savepoint is sent only before the write's first statement. A write that sends
//!   none (an allocation whose rows the batch already holds: `held`, every write of it deferred,
//!   `Conn::later`) needs none: nothing of it reaches the database before it is released.
//! - A released write's deferred writes wait in the lane and go, all of them in one statement,
//!   before the next statement of another write or before the batch's `COMMIT`. That statement
//!   checks the count of every counted write (an idempotency claim completed): one that changed
//!   no row fails the statement, and with it the batch, so nothing of any write in it commits.
//! - A released savepoint's `RELEASE` goes with the next control statement.

use sqlx::Postgres;
use sqlx::pool::PoolConnection;
use strata_core::error::{CoreError, Result};

use crate::deferred::{Later, render};
use crate::error::db_err;
use crate::group::BatchConn;
use crate::held::HeldRows;
use crate::pg::bind_pg;
use crate::pool_use::{InUse, Pool};
use crate::query::writes_only;

/// Where the savepoint of the write holding the lane stands.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Savepoint {
    /// No write holds the lane, or the one that does has released its savepoint.
    None,
    /// Asked for, not sent: the write has sent no statement yet.
    Wanted,
    Open,
}

/// The connection of PostgreSQL's group commit: taken from the pool when a batch begins and
/// given back when it ends, so an idle group holds none.
pub(crate) struct PgLane {
    pool: Pool,
    conn: Option<(PoolConnection<Postgres>, InUse)>,
    /// A statement of the lane's own failed, or was cut short: the batch's transaction cannot
    /// be trusted to commit, and its connection is closed when the batch ends.
    lost: bool,
    /// A write released its savepoint; the `RELEASE` goes with the next control statement (the
    /// next write's `SAVEPOINT`). `COMMIT` releases it anyway.
    release_pending: bool,
    savepoint: Savepoint,
    /// Deferred writes of released writes, not yet sent.
    released: Vec<Later>,
    /// Rows the open batch holds locked, as it last saw them.
    pub(crate) held: HeldRows,
}

impl PgLane {
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            conn: None,
            lost: false,
            release_pending: false,
            savepoint: Savepoint::None,
            released: Vec::new(),
            held: HeldRows::default(),
        }
    }

    /// The connection of the open batch.
    pub(crate) fn pg(&mut self) -> Result<&mut sqlx::PgConnection> {
        match &mut self.conn {
            Some((conn, _)) => Ok(&mut **conn),
            None => Err(CoreError::internal("a group write ran outside its batch")),
        }
    }

    /// Takes the deferred writes of the write being released into the batch.
    pub(crate) fn release_writes(&mut self, writes: Vec<Later>) {
        self.released.extend(writes);
    }

    /// Readies the lane for a statement of the write holding it: the writes released before
    /// it are sent, then its savepoint, if it has none open yet.
    pub(crate) async fn before_statement(&mut self) -> Result<()> {
        if self.savepoint == Savepoint::Wanted {
            self.send_released().await?;
            let sql = if std::mem::take(&mut self.release_pending) { "RELEASE w; SAVEPOINT w" } else { "SAVEPOINT w" };
            self.send(sql).await?;
            self.savepoint = Savepoint::Open;
        }
        Ok(())
    }

    /// Sends the released writes in one statement, checking the counted ones.
    async fn send_released(&mut self) -> Result<()> {
        if self.released.is_empty() {
            return Ok(());
        }
        // Taken before the sends: until they all succeed the batch counts as lost (a send cut
        // short by a cancelled request leaves it so), and a lost batch never commits.
        let writes = writes_only(render(std::mem::take(&mut self.released)));
        self.lost = true;
        for (q, expected) in writes {
            crate::plans::note(&q);
            let conn = self.pg()?;
            let sent = bind_pg(&q)
                .persistent(false)
                .fetch_one(conn)
                .await
                .and_then(|row| sqlx::Row::try_get::<i64, _>(&row, 0))
                .map_err(|e| crate::error::db_failed("database: the writes of a group-commit batch".to_owned(), e))?;
            if sent != expected {
                // A claim completed in the batch was taken over (its request outlived its
                // lease): the batch must not commit; every write in it answers 503.
                return Err(CoreError::unavailable("an idempotency claim of a group-commit batch was taken over; retry"));
            }
        }
        self.lost = false;
        Ok(())
    }

    /// Sends control statements (`;`-separated, no arguments: the simple protocol runs them in
    /// one round trip).
    async fn send(&mut self, sql: &str) -> Result<()> {
        if self.conn.is_none() {
            self.conn = Some(self.pool.acquire().await?);
        }
        // Lost until it answers: a send cut short by a cancelled request leaves it so.
        let was_lost = std::mem::replace(&mut self.lost, true);
        let conn = self.pg()?;
        sqlx::Executor::execute(conn, sql).await.map_err(db_err)?;
        self.lost = was_lost;
        Ok(())
    }
}

#[async_trait::async_trait]
impl BatchConn for PgLane {
    const BACKEND: &'static str = "postgres";
    const COMMIT_IN_TASK: bool = true;
    /// A batch waits at most 20 ms for a row another transaction holds; past it the write
    /// fails with `CoreError::lock_busy` and its service runs it alone. A batch holds the rows of
    /// every write already in it, so waiting longer could close a cycle with a transaction that
    /// holds one row the batch wants and wants one the batch holds (an archive: the child's org,
    /// then the parent's wallet).
    const BEGIN: &'static str = "BEGIN; SET LOCAL lock_timeout = '20ms'";

    async fn control(&mut self, sql: &str) -> Result<()> {
        match sql {
            "SAVEPOINT w" => {
                self.savepoint = Savepoint::Wanted;
                Ok(())
            }
            "RELEASE w" => {
                self.release_pending |= self.savepoint == Savepoint::Open;
                self.savepoint = Savepoint::None;
                Ok(())
            }
            // A write that sent nothing has nothing to undo.
            "ROLLBACK TO w; RELEASE w" => match std::mem::replace(&mut self.savepoint, Savepoint::None) {
                Savepoint::Open => self.send(sql).await,
                _ => Ok(()),
            },
            "COMMIT" => {
                self.send_released().await?;
                self.send("COMMIT").await
            }
            "ROLLBACK" => {
                self.released.clear();
                self.send("ROLLBACK").await
            }
            s if s == Self::BEGIN => self.send(s).await,
            // Any other statement (the tests') is a statement of the write holding the lane.
            other => {
                self.before_statement().await?;
                self.send(other).await
            }
        }
    }

    fn batch_lost(&self) -> bool {
        self.lost
    }

    fn batch_ended(&mut self) {
        if self.lost
            && let Some((conn, _)) = &mut self.conn
        {
            // Its transaction may still be open (or aborted): closed, never given back to the
            // pool, so nothing of the batch can commit later on another transaction's COMMIT.
            conn.close_on_drop();
        }
        self.conn = None;
        self.lost = false;
        self.release_pending = false;
        self.savepoint = Savepoint::None;
        self.released.clear();
        self.held = HeldRows::default();
    }
}
