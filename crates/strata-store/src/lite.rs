//! SQLite connections: one writer with group commit, and a few readers.
//!
//! Writers queue for the one writer connection (SQLite has one writer anyway). Each write
//! transaction runs inside a savepoint of a shared `BEGIN IMMEDIATE` batch; when the last writer
//! in the queue finishes (or the batch is full) the batch commits once, with one fsync, and every
//! transaction in it returns only then. A transaction that fails rolls back its own savepoint
//! and nothing else. Statements run in-thread on the connection: no hop per statement.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_core::error::{CoreError, Result};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard, watch};

use crate::conn::lite_err;

/// Transactions per batch at most, so a steady stream of writers still commits regularly.
const MAX_BATCH: usize = 128;
/// How often a watchdog looks at a batch whose committer may have gone away.
const ORPHAN_CHECK: Duration = Duration::from_millis(5);
/// Failed batch numbers remembered for late waiters.
const FAILED_MEMORY: usize = 4096;

fn open(path: &Path) -> Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path).map_err(lite_err)?;
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;").map_err(lite_err)?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(lite_err)?;
    conn.set_prepared_statement_cache_capacity(256);
    Ok(conn)
}

struct WriterState {
    conn: rusqlite::Connection,
    /// The open batch's number, if a batch is open.
    batch: Option<u64>,
    next_batch: u64,
    /// Transactions released into the open batch.
    released: usize,
}

struct Writer {
    state: Arc<AsyncMutex<WriterState>>,
    /// Writers queued for the connection.
    waiting: AtomicUsize,
    /// The newest committed (or failed) batch.
    committed: watch::Sender<u64>,
    failed: Mutex<VecDeque<u64>>,
}

impl Writer {
    /// Commits the open batch; publishes its outcome.
    fn commit_batch(&self, st: &mut WriterState) -> Result<()> {
        let Some(batch) = st.batch.take() else { return Ok(()) };
        st.released = 0;
        let result = st.conn.execute_batch("COMMIT").map_err(lite_err);
        if result.is_err() {
            let _ = st.conn.execute_batch("ROLLBACK");
            self.mark_failed(batch);
        }
        self.committed.send_replace(batch);
        result
    }

    fn mark_failed(&self, batch: u64) {
        if let Ok(mut f) = self.failed.lock() {
            f.push_back(batch);
            if f.len() > FAILED_MEMORY {
                f.pop_front();
            }
        }
    }

    /// After an error: if SQLite rolled the whole transaction back (disk full, I/O error…),
    /// the open batch is gone; fail it so no waiter reports success.
    fn check_batch_alive(&self, st: &mut WriterState) {
        if let Some(batch) = st.batch
            && st.conn.is_autocommit()
        {
            st.batch = None;
            st.released = 0;
            self.mark_failed(batch);
            self.committed.send_replace(batch);
        }
    }

    fn batch_failed(&self, batch: u64) -> bool {
        self.failed.lock().map(|f| f.contains(&batch)).unwrap_or(true)
    }
}

/// Counts a queued writer until it holds the connection. One that gives up while queued (its
/// request was cancelled) may have been the one expected to commit the open batch, so a
/// watchdog makes sure someone does.
struct Queued {
    writer: Arc<Writer>,
    acquired: bool,
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.writer.waiting.fetch_sub(1, Ordering::SeqCst);
        if !self.acquired {
            spawn_watchdog(self.writer.clone(), None);
        }
    }
}

/// Commits a batch nobody else will: once the writer is free and no writer is queued, an open
/// batch (`target`, or any when `None`) with released work is committed, an empty one closed.
fn spawn_watchdog(writer: Arc<Writer>, target: Option<u64>) {
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
                    let _ = writer.commit_batch(&mut st);
                    return;
                }
                Some(_) => {
                    let _ = st.conn.execute_batch("ROLLBACK");
                    st.batch = None;
                    return;
                }
            }
        }
    });
}

#[derive(Clone)]
pub(crate) struct LiteDb {
    writer: Arc<Writer>,
    readers: Arc<Vec<Arc<AsyncMutex<rusqlite::Connection>>>>,
    next_reader: Arc<AtomicUsize>,
    /// How long a write waits for the one writer before it answers 503 (`None`: as long as it
    /// takes).
    write_wait: Option<Duration>,
    /// The database file (for the test-only fault injector).
    path: std::path::PathBuf,
}

impl LiteDb {
    pub fn open(path: &Path, readers: usize, write_wait: Option<Duration>) -> Result<Self> {
        let writer = Writer {
            state: Arc::new(AsyncMutex::new(WriterState { conn: open(path)?, batch: None, next_batch: 1, released: 0 })),
            waiting: AtomicUsize::new(0),
            committed: watch::channel(0).0,
            failed: Mutex::new(VecDeque::new()),
        };
        let readers = (0..readers.max(1)).map(|_| open(path).map(|c| Arc::new(AsyncMutex::new(c)))).collect::<Result<Vec<_>>>()?;
        Ok(Self {
            writer: Arc::new(writer),
            readers: Arc::new(readers),
            next_reader: Arc::new(AtomicUsize::new(0)),
            write_wait,
            path: path.to_owned(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts a write transaction (a savepoint in the open batch).
    pub async fn write(&self) -> Result<LiteWrite> {
        crate::faults::check(&self.path)?;
        let w = &self.writer;
        w.waiting.fetch_add(1, Ordering::SeqCst);
        let mut queued = Queued { writer: w.clone(), acquired: false };
        let lock = w.state.clone().lock_owned();
        let mut guard = match self.write_wait {
            // Giving up drops `queued` unacquired: the watchdog commits what the batch holds.
            Some(wait) => tokio::time::timeout(wait, lock)
                .await
                .map_err(|_| CoreError::unavailable(format!("database: no turn at the SQLite writer within {} ms", wait.as_millis())))?,
            None => lock.await,
        };
        queued.acquired = true;
        drop(queued);
        w.check_batch_alive(&mut guard);
        if guard.batch.is_none() {
            guard.conn.execute_batch("BEGIN IMMEDIATE").map_err(lite_err)?;
            guard.batch = Some(guard.next_batch);
            guard.next_batch += 1;
        }
        if let Err(e) = guard.conn.execute_batch("SAVEPOINT w") {
            // Leave no half-open batch behind.
            if guard.released == 0 {
                let _ = guard.conn.execute_batch("ROLLBACK");
                guard.batch = None;
            }
            return Err(lite_err(e));
        }
        Ok(LiteWrite { guard: Some(guard), writer: self.writer.clone() })
    }

    /// A reader connection, in a deferred transaction (a consistent snapshot).
    pub async fn read(&self) -> Result<LiteRead> {
        let guard = self.reader().await;
        guard.execute_batch("BEGIN").map_err(lite_err)?;
        Ok(LiteRead { guard: Some(guard), in_tx: true })
    }

    /// A reader connection for a single statement.
    pub async fn read_one(&self) -> LiteRead {
        LiteRead { guard: Some(self.reader().await), in_tx: false }
    }

    async fn reader(&self) -> OwnedMutexGuard<rusqlite::Connection> {
        let n = self.readers.len();
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            if let Ok(g) = self.readers[(start + i) % n].clone().try_lock_owned() {
                return g;
            }
        }
        self.readers[start % n].clone().lock_owned().await
    }
}

/// A write transaction on the writer connection.
pub(crate) struct LiteWrite {
    guard: Option<OwnedMutexGuard<WriterState>>,
    writer: Arc<Writer>,
}

impl LiteWrite {
    pub fn conn(&self) -> &rusqlite::Connection {
        &self.guard.as_ref().expect("a live transaction holds the writer").conn
    }

    /// Releases the savepoint into the batch and returns once the batch is durable.
    pub async fn commit(mut self) -> Result<()> {
        let mut guard = self.guard.take().expect("a live transaction holds the writer");
        let released = guard.conn.execute_batch("RELEASE w").map_err(lite_err);
        if let Err(e) = released {
            let _ = guard.conn.execute_batch("ROLLBACK TO w; RELEASE w");
            self.writer.check_batch_alive(&mut guard);
            self.settle_idle(&mut guard);
            return Err(e);
        }
        guard.released += 1;
        let batch = guard.batch.expect("a released transaction is in a batch");
        if self.writer.waiting.load(Ordering::SeqCst) == 0 || guard.released >= MAX_BATCH {
            return self.writer.commit_batch(&mut guard);
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
        if self.writer.batch_failed(batch) { Err(CoreError::internal("the write batch failed to commit")) } else { Ok(()) }
    }

    /// After a transaction leaves the batch without joining it: commit what others released if
    /// nobody else will, or close an empty batch.
    fn settle_idle(&self, guard: &mut WriterState) {
        if guard.batch.is_none() {
            return;
        }
        if self.writer.waiting.load(Ordering::SeqCst) > 0 {
            spawn_watchdog(self.writer.clone(), guard.batch);
            return;
        }
        if guard.released > 0 {
            let _ = self.writer.commit_batch(guard);
        } else if guard.batch.take().is_some() {
            let _ = guard.conn.execute_batch("ROLLBACK");
        }
    }
}

impl Drop for LiteWrite {
    fn drop(&mut self) {
        // Not committed: undo this transaction's savepoint only.
        if let Some(mut guard) = self.guard.take() {
            let _ = guard.conn.execute_batch("ROLLBACK TO w; RELEASE w");
            self.writer.check_batch_alive(&mut guard);
            self.settle_idle(&mut guard);
        }
    }
}

/// A reader connection, optionally in a transaction.
pub(crate) struct LiteRead {
    guard: Option<OwnedMutexGuard<rusqlite::Connection>>,
    in_tx: bool,
}

impl LiteRead {
    pub fn conn(&self) -> &rusqlite::Connection {
        self.guard.as_ref().expect("a live reader")
    }

    pub fn finish(mut self) -> Result<()> {
        if self.in_tx {
            self.in_tx = false;
            self.conn().execute_batch("COMMIT").map_err(lite_err)?;
        }
        Ok(())
    }
}

impl Drop for LiteRead {
    fn drop(&mut self) {
        if let (true, Some(g)) = (self.in_tx, &self.guard) {
            let _ = g.execute_batch("ROLLBACK");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, LiteDb) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let db = LiteDb::open(&path, 2, None).unwrap();
        let w = db.writer.state.clone();
        w.try_lock().unwrap().conn.execute_batch("CREATE TABLE t (v INTEGER NOT NULL)").unwrap();
        (dir, db)
    }

    async fn count(db: &LiteDb) -> i64 {
        let r = db.read_one().await;
        r.conn().query_row("SELECT COUNT(*) FROM t", [], |row| row.get(0)).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_share_batches_and_a_failed_one_undoes_only_itself() {
        let (_dir, db) = db();
        let mut tasks = Vec::new();
        for i in 0..200i64 {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                let w = db.write().await.unwrap();
                w.conn().execute("INSERT INTO t (v) VALUES (?1)", [i]).unwrap();
                if i % 4 == 0 {
                    drop(w); // rolled back
                    false
                } else {
                    w.commit().await.unwrap();
                    true
                }
            }));
        }
        let mut committed = 0;
        for t in tasks {
            if t.await.unwrap() {
                committed += 1;
            }
        }
        assert_eq!(committed, 150);
        assert_eq!(count(&db).await, 150, "every committed write is durable and visible; no rolled-back one is");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancelled_queued_writer_does_not_strand_the_batch() {
        let (_dir, db) = db();
        let first = db.write().await.unwrap();
        first.conn().execute("INSERT INTO t (v) VALUES (1)", []).unwrap();
        // A second writer queues behind the first, then gives up.
        let db2 = db.clone();
        let queued = tokio::spawn(async move { db2.write().await.map(|_| ()) });
        while db.writer.waiting.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        queued.abort();
        let _ = queued.await;
        // The first commits and returns well within a generous bound.
        tokio::time::timeout(Duration::from_secs(5), first.commit()).await.expect("commit returned").unwrap();
        assert_eq!(count(&db).await, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_deferred_commit_completes_when_the_writer_it_deferred_to_vanishes() {
        let (_dir, db) = db();
        let first = db.write().await.unwrap();
        first.conn().execute("INSERT INTO t (v) VALUES (1)", []).unwrap();
        // A writer appears queued, so the commit defers to it…
        db.writer.waiting.fetch_add(1, Ordering::SeqCst);
        let committing = tokio::spawn(first.commit());
        while db.writer.state.clone().try_lock_owned().is_err() {
            tokio::task::yield_now().await;
        }
        // …and then vanishes without committing anything. The watchdog commits the batch (the
        // paused clock lets its timer fire at once; the timeout is only a generous bound).
        db.writer.waiting.fetch_sub(1, Ordering::SeqCst);
        tokio::time::timeout(Duration::from_secs(5), committing).await.expect("the commit returned").unwrap().unwrap();
        assert_eq!(count(&db).await, 1);
    }
}
