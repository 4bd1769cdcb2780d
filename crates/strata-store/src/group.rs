//! Group commit: concurrent write transactions of this process share one database transaction.
//!
//! One connection (SQLite's writer, or on PostgreSQL a connection taken from the pool for the
//! length of a batch) holds an open transaction, the batch. Each write transaction of the group
//! takes the connection in turn and runs inside a savepoint of the batch, so a write that fails
//! or is dropped undoes only itself. A write that finishes releases its savepoint into the batch
//! and waits for the batch's commit: if nobody is queued for the connection (or the batch is
//! full) it commits the batch itself; otherwise the next write continues the batch and the last
//! one commits. No timer adds latency: an idle writer commits at once. A write returns `Ok` only
//! once the batch holding it is durable; if the batch's commit fails, every write released into
//! it fails, and nothing of any of them is applied.
//!
//! Rows a write locks stay locked until its batch commits, so a hot row (a partner's wallet)
//! is locked once per batch instead of once per write.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use strata_core::error::{CoreError, Result};
use strata_core::telemetry::GROUP_COMMIT_BATCH;
use tokio::sync::{Mutex as AsyncMutex, watch};

use crate::pool_use::Held;

/// Transactions per batch at most, so a steady stream of writers still commits regularly.
const MAX_BATCH: usize = 128;
/// How often a watchdog looks at a batch whose committer may have gone away.
const ORPHAN_CHECK: Duration = Duration::from_millis(5);
/// Failed batch numbers remembered for late waiters.
const FAILED_MEMORY: usize = 4096;

/// The connection a group commits through.
#[async_trait]
pub(crate) trait BatchConn: Send + 'static {
    /// The backend label of the connection-use metrics (`"sqlite"`, `"postgres"`).
    const BACKEND: &'static str;
    /// The statement that opens a batch.
    const BEGIN: &'static str;
    /// Whether its statements await the network (PostgreSQL), so a commit could be cut short by
    /// a cancelled request and runs in a task of its own. SQLite's run in-thread to the end, and
    /// must: a task would leave the batch's write lock held until it ran, while another writer
    /// of the same file could block the thread in SQLite's busy handler (see `GroupWrite`'s drop).
    const COMMIT_IN_TASK: bool;
    /// Runs control statements (`BEGIN`, `SAVEPOINT w`, `RELEASE w`, `COMMIT`…), `;`-separated.
    async fn control(&mut self, sql: &str) -> Result<()>;
    /// Whether the database ended the open batch's transaction on its own (after a failure).
    fn batch_lost(&self) -> bool;
    /// Called when a batch ends, committed or not.
    fn batch_ended(&mut self) {}
}

pub(crate) struct WriterState<C> {
    pub(crate) conn: C,
    /// The open batch's number, if a batch is open.
    batch: Option<u64>,
    next_batch: u64,
    /// Transactions released into the open batch.
    released: usize,
}

pub(crate) struct Writer<C> {
    pub(crate) state: Arc<AsyncMutex<WriterState<C>>>,
    /// Writers queued for the connection.
    pub(crate) waiting: AtomicUsize,
    /// The newest committed (or failed) batch.
    committed: watch::Sender<u64>,
    /// Failed batches, and whether each failed because the database could not be reached.
    failed: Mutex<VecDeque<(u64, bool)>>,
    /// The newest batch a watchdog watches: one per batch is enough (it watches until the batch
    /// is closed), and one per released write cost a timer each every 5 ms, about a tenth of
    /// the process's CPU under 64 concurrent writers.
    watched: AtomicU64,
}

impl<C: BatchConn> Writer<C> {
    /// Commits the open batch; publishes its outcome.
    async fn commit_batch(&self, st: &mut WriterState<C>) -> Result<()> {
        let Some(batch) = st.batch.take() else { return Ok(()) };
        let size = std::mem::take(&mut st.released);
        let result = st.conn.control("COMMIT").await;
        match &result {
            Err(e) => {
                let _ = st.conn.control("ROLLBACK").await;
                // A row of the batch's held elsewhere past the batch's lock timeout is as
                // retryable as a database out of reach.
                self.mark_failed(batch, matches!(e, CoreError::Unavailable { .. }) || e.is_lock_busy());
            }
            Ok(()) => metrics::histogram!(GROUP_COMMIT_BATCH, "backend" => C::BACKEND).record(size as f64),
        }
        st.conn.batch_ended();
        self.committed.send_replace(batch);
        result
    }

    fn mark_failed(&self, batch: u64, unavailable: bool) {
        if let Ok(mut f) = self.failed.lock() {
            f.push_back((batch, unavailable));
            if f.len() > FAILED_MEMORY {
                f.pop_front();
            }
        }
    }

    /// After an error: if the database rolled the whole transaction back (disk full, I/O error,
    /// a lost connection…), the open batch is gone; fail it so no waiter reports success.
    fn check_batch_alive(&self, st: &mut WriterState<C>) {
        if let Some(batch) = st.batch
            && st.conn.batch_lost()
        {
            st.batch = None;
            st.released = 0;
            st.conn.batch_ended();
            self.mark_failed(batch, true);
            self.committed.send_replace(batch);
        }
    }

    /// The error a write of a failed batch answers (`None`: the batch committed).
    fn batch_failure(&self, batch: u64) -> Option<CoreError> {
        let failed = match self.failed.lock() {
            Ok(f) => f.iter().find(|(b, _)| *b == batch).map(|(_, unavailable)| *unavailable),
            Err(_) => Some(false),
        };
        failed.map(|unavailable| {
            let cause = "the database transaction this write was committed in (a group commit) failed";
            if unavailable { CoreError::unavailable(cause) } else { CoreError::internal(cause) }
        })
    }

    /// After a transaction leaves the batch without joining it: commit what others released if
    /// nobody else will, or close an empty batch.
    async fn settle_idle(self: &Arc<Self>, st: &mut WriterState<C>) {
        if st.batch.is_none() {
            return;
        }
        if self.waiting.load(Ordering::SeqCst) > 0 {
            spawn_watchdog(self.clone(), st.batch);
            return;
        }
        if st.released > 0 {
            let _ = self.commit_batch(st).await;
        } else if st.batch.take().is_some() {
            let _ = st.conn.control("ROLLBACK").await;
            st.conn.batch_ended();
        }
    }
}

/// Counts a queued writer until it holds the connection. One that gives up while queued (its
/// request was cancelled) may have been the one expected to commit the open batch, so a
/// watchdog makes sure someone does.
struct Queued<C: BatchConn> {
    writer: Arc<Writer<C>>,
    acquired: bool,
}

impl<C: BatchConn> Drop for Queued<C> {
    fn drop(&mut self) {
        self.writer.waiting.fetch_sub(1, Ordering::SeqCst);
        if !self.acquired {
            spawn_watchdog(self.writer.clone(), None);
        }
    }
}

/// Commits a batch nobody else will: once the writer is free and no writer is queued, an open
/// batch (`target`, or any when `None`) with released work is committed, an empty one closed.
fn spawn_watchdog<C: BatchConn>(writer: Arc<Writer<C>>, target: Option<u64>) {
    if let Some(batch) = target
        && writer.watched.fetch_max(batch, Ordering::SeqCst) >= batch
    {
        return;
    }
    let Ok(handle) = tokio::runtime::Handle::try_current() else { return };
    handle.spawn(async move {
        loop {
            tokio::time::sleep(ORPHAN_CHECK).await;
            let Ok(mut st) = writer.state.clone().try_lock_owned() else { continue };
            match st.batch {
                None => return,
                Some(b) if target.is_some_and(|t| t != b) => return,
                Some(_) if writer.waiting.load(Ordering::SeqCst) > 0 => continue,
                Some(_) if st.released > 0 => {
                    let _ = writer.commit_batch(&mut st).await;
                    return;
                }
                Some(_) => {
                    let _ = st.conn.control("ROLLBACK").await;
                    st.batch = None;
                    st.conn.batch_ended();
                    return;
                }
            }
        }
    });
}

/// A group of write transactions committing together through one connection.
pub(crate) struct Group<C> {
    pub(crate) writer: Arc<Writer<C>>,
    /// How long a write waits for its turn at the connection before it answers 503 (`None`: as
    /// long as it takes).
    wait: Option<Duration>,
}

impl<C> Clone for Group<C> {
    fn clone(&self) -> Self {
        Self { writer: self.writer.clone(), wait: self.wait }
    }
}

impl<C: BatchConn> Group<C> {
    pub fn new(conn: C, wait: Option<Duration>) -> Self {
        let writer = Writer {
            state: Arc::new(AsyncMutex::new(WriterState { conn, batch: None, next_batch: 1, released: 0 })),
            waiting: AtomicUsize::new(0),
            committed: watch::channel(0).0,
            failed: Mutex::new(VecDeque::new()),
            watched: AtomicU64::new(0),
        };
        Self { writer: Arc::new(writer), wait }
    }

    /// Starts a write transaction (a savepoint in the open batch, opening one if none is).
    pub async fn write(&self) -> Result<GroupWrite<C>> {
        let w = &self.writer;
        w.waiting.fetch_add(1, Ordering::SeqCst);
        let mut queued = Queued { writer: w.clone(), acquired: false };
        let asked = Instant::now();
        let lock = w.state.clone().lock_owned();
        let locked = match self.wait {
            // Giving up drops `queued` unacquired: the watchdog commits what the batch holds.
            Some(wait) => tokio::time::timeout(wait, lock).await.map_err(|_| {
                CoreError::unavailable(format!("database: no turn at the {} writer within {} ms", C::BACKEND, wait.as_millis()))
            })?,
            None => lock.await,
        };
        let mut guard = Held::new(C::BACKEND, locked, "writer", asked);
        queued.acquired = true;
        drop(queued);
        w.check_batch_alive(&mut guard);
        if guard.batch.is_none() && guard.conn.batch_lost() {
            // A batch's end that never finished (its commit was cut short): start afresh.
            guard.conn.batch_ended();
        }
        if guard.batch.is_none() {
            if let Err(e) = guard.conn.control(C::BEGIN).await {
                guard.conn.batch_ended();
                return Err(e);
            }
            guard.batch = Some(guard.next_batch);
            guard.next_batch += 1;
        }
        if let Err(e) = guard.conn.control("SAVEPOINT w").await {
            // Leave no half-open batch behind.
            w.check_batch_alive(&mut guard);
            if guard.released == 0 && guard.batch.take().is_some() {
                let _ = guard.conn.control("ROLLBACK").await;
                guard.conn.batch_ended();
            }
            return Err(e);
        }
        Ok(GroupWrite { guard: Some(guard), writer: self.writer.clone() })
    }
}

/// A write transaction of a group: a savepoint in the open batch, holding the connection.
pub(crate) struct GroupWrite<C: BatchConn> {
    guard: Option<Held<WriterState<C>>>,
    writer: Arc<Writer<C>>,
}

impl<C: BatchConn> GroupWrite<C> {
    pub fn conn(&self) -> &C {
        &self.guard.as_ref().expect("a live transaction holds the writer").conn
    }

    pub fn conn_mut(&mut self) -> &mut C {
        &mut self.guard.as_mut().expect("a live transaction holds the writer").conn
    }

    /// Releases the savepoint into the batch and returns once the batch is durable.
    pub async fn commit(mut self) -> Result<()> {
        let mut guard = self.guard.take().expect("a live transaction holds the writer");
        if let Err(e) = guard.conn.control("RELEASE w").await {
            let _ = guard.conn.control("ROLLBACK TO w; RELEASE w").await;
            self.writer.check_batch_alive(&mut guard);
            self.writer.settle_idle(&mut guard).await;
            return Err(e);
        }
        guard.released += 1;
        let batch = guard.batch.expect("a released transaction is in a batch");
        if self.writer.waiting.load(Ordering::SeqCst) == 0 || guard.released >= MAX_BATCH {
            if !C::COMMIT_IN_TASK {
                return self.writer.commit_batch(&mut guard).await;
            }
            // In a task of its own: a commit half done when this request is cancelled would leave
            // the batch neither committed nor failed, and its other writes waiting for an answer
            // that a later batch's number would give them wrongly.
            let writer = self.writer.clone();
            let commit = tokio::spawn(async move {
                let mut guard = guard;
                writer.commit_batch(&mut guard).await
            });
            return commit.await.unwrap_or_else(|e| Err(CoreError::internal(format!("the group commit's task failed: {e}"))));
        }
        // Someone is queued: they continue the batch and the last one commits it. A watchdog
        // covers the case where they all go away, even if this request is cancelled too.
        let mut rx = self.writer.committed.subscribe();
        drop(guard);
        spawn_watchdog(self.writer.clone(), Some(batch));
        while *rx.borrow_and_update() < batch {
            if rx.changed().await.is_err() {
                return Err(CoreError::internal("the writer went away"));
            }
        }
        self.writer.batch_failure(batch).map_or(Ok(()), Err)
    }
}

impl<C: BatchConn> Drop for GroupWrite<C> {
    fn drop(&mut self) {
        // Not committed: undo this transaction's savepoint only, holding the connection until
        // it is undone (so no other write sees it).
        let Some(mut guard) = self.guard.take() else { return };
        let writer = self.writer.clone();
        let undo = async move {
            let _ = guard.conn.control("ROLLBACK TO w; RELEASE w").await;
            writer.check_batch_alive(&mut guard);
            writer.settle_idle(&mut guard).await;
        };
        // Undone at once where the connection answers in-thread (SQLite: nothing in the undo
        // waits). Left to a task, the batch's write lock would stay held until that task ran,
        // and another writer on the same database file, blocked in SQLite's busy handler on this
        // very thread, would wait for it in vain ("database is locked"). Where the undo awaits
        // the network (PostgreSQL), its rest runs as a task.
        let mut undo = Box::pin(undo);
        if undo.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())).is_ready() {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => drop(handle.spawn(undo)),
            Err(_) => {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    rt.block_on(undo);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = "CREATE TABLE t (v INTEGER NOT NULL); CREATE TABLE p (id INTEGER PRIMARY KEY); \
                          CREATE TABLE c (pid INTEGER NOT NULL REFERENCES p (id) DEFERRABLE INITIALLY DEFERRED)";

    /// Two writes in one batch; the second leaves a dangling row that a deferred foreign key
    /// refuses only at `COMMIT`. Both fail, and nothing of either is applied.
    async fn a_failed_batch_commit_fails_every_write_in_it<C: BatchConn>(group: Group<C>) {
        let mut setup = group.write().await.unwrap();
        setup.conn_mut().control(SCHEMA).await.unwrap();
        setup.commit().await.unwrap();

        let mut first = group.write().await.unwrap();
        first.conn_mut().control("INSERT INTO t (v) VALUES (1)").await.unwrap();
        let g = group.clone();
        let second = tokio::spawn(async move {
            let mut w = g.write().await?;
            w.conn_mut().control("INSERT INTO c (pid) VALUES (42)").await?;
            w.commit().await
        });
        while group.writer.waiting.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // Someone is queued, so the first leaves the commit to the second: one batch.
        let first = first.commit().await.expect_err("the batch holding the first write failed to commit");
        let second = second.await.unwrap().expect_err("the write that broke the batch fails too");
        assert_eq!((first.status(), second.status()), (500, 500), "{first}; {second}");

        let mut check = group.write().await.unwrap();
        check.conn_mut().control("INSERT INTO p (id) SELECT 42 WHERE (SELECT COUNT(*) FROM t) = 0").await.unwrap();
        check.conn_mut().control("INSERT INTO c (pid) VALUES (42)").await.unwrap();
        // Succeeds only if `t` was empty (else `p` has no 42 and the deferred key refuses).
        check.commit().await.expect("nothing of the failed batch was applied");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_a_failed_batch_commit_fails_every_write_in_it() {
        let dir = tempfile::tempdir().unwrap();
        let conn = rusqlite::Connection::open(dir.path().join("t.db")).unwrap();
        conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        a_failed_batch_commit_fails_every_write_in_it(Group::new(conn, None)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_a_failed_batch_commit_fails_every_write_in_it() {
        use sqlx::{Connection, Executor};
        let Ok(base) = std::env::var("STRATA_TEST_DATABASE_URL") else {
            return; // PostgreSQL only: STRATA_TEST_DATABASE_URL is not set.
        };
        let name = format!("strata_t_group_{}", std::process::id());
        let mut admin = sqlx::PgConnection::connect(&base).await.unwrap();
        admin.execute(format!("DROP DATABASE IF EXISTS {name}").as_str()).await.unwrap();
        admin.execute(format!("CREATE DATABASE {name}").as_str()).await.unwrap();
        let (head, _) = base.split('?').next().unwrap().rsplit_once('/').unwrap();
        let pool = sqlx::postgres::PgPoolOptions::new().max_connections(2).connect(&format!("{head}/{name}")).await.unwrap();
        a_failed_batch_commit_fails_every_write_in_it(Group::new(
            crate::lane::PgLane::new(crate::pool_use::Pool::new(pool.clone(), "t")),
            None,
        ))
        .await;
        // A batch whose released writes include a claim that changes no row (it was taken over)
        // fails whole with 503, and its connection, whose transaction holds the batch's other
        // writes, is closed, never given back to the pool where a later COMMIT would land them.
        // Here the writes go before the next write's first statement, which fails with them.
        let group = Group::new(crate::lane::PgLane::new(crate::pool_use::Pool::new(pool.clone(), "t")), None);
        let mut first = group.write().await.unwrap();
        first.conn_mut().control("DELETE FROM c").await.unwrap();
        first.conn_mut().release_writes(vec![
            crate::deferred::Later::Write { q: crate::query::Q::new("INSERT INTO t (v) VALUES ($1)").int(7), counted: false },
            crate::deferred::Later::Write { q: crate::query::Q::new("UPDATE t SET v = $1 WHERE v = 999").int(8), counted: true },
        ]);
        let g = group.clone();
        let second = tokio::spawn(async move {
            let mut w = g.write().await?;
            w.conn_mut().control("SELECT 1").await
        });
        while group.writer.waiting.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let first = first.commit().await.expect_err("a claim that changed no row fails the batch");
        let second = second.await.unwrap().expect_err("the statement the writes went with fails");
        assert_eq!((first.status(), second.status()), (503, 503), "{first}; {second}");
        for _ in 0..2 {
            let mut conn = pool.acquire().await.unwrap();
            let open: Option<i64> =
                sqlx::query_scalar("SELECT CAST(txid_current_if_assigned() AS BIGINT)").fetch_one(&mut *conn).await.unwrap();
            assert_eq!(open, None, "a pooled connection still holds the failed batch's transaction");
        }
        let mut check = group.write().await.unwrap();
        check.conn_mut().control("INSERT INTO p (id) SELECT 7 WHERE (SELECT COUNT(*) FROM t WHERE v = 7) = 0").await.unwrap();
        check.commit().await.unwrap();
        let landed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM p WHERE id = 7").fetch_one(&pool).await.unwrap();
        assert_eq!(landed, 1, "nothing of the failed batch was applied");
        pool.close().await;
        let _ = admin.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await;
    }
}
