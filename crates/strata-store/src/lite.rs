//! SQLite connections: one writer with group commit, and a few readers.
//!
//! Writers queue for the one writer connection (SQLite has one writer anyway) and commit in
//! groups (see `group`): each write transaction runs inside a savepoint of a shared
//! `BEGIN IMMEDIATE` batch, committed once, with one fsync, for every transaction in it.
//! Statements run in-thread on the connection: no hop per statement. Every statement a
//! transaction sends on SQLite goes through here: `$n` placeholders rewritten to `?n`, typed
//! binds, and rows decoded into the neutral `Row`. The migrations (through sqlx's SQLite
//! driver), the command line's read-only checks and the online backup are here too; only the
//! cross-process `data_version` check (`auth_cache`) opens a rusqlite connection elsewhere.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use strata_core::error::{CoreError, Result};
use tokio::sync::Mutex as AsyncMutex;

use crate::error::{db_err, lite_err, lite_failed_at, migrate_err};
use crate::group::{BatchConn, Group, GroupWrite};
use crate::pool_use::Held;
use crate::query::{Arg, Cell, Q, Row};

fn open(path: &Path) -> Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path).map_err(lite_err)?;
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;").map_err(lite_err)?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(lite_err)?;
    conn.set_prepared_statement_cache_capacity(256);
    Ok(conn)
}

#[async_trait::async_trait]
impl BatchConn for rusqlite::Connection {
    const BACKEND: &'static str = "sqlite";
    const COMMIT_IN_TASK: bool = false;
    const BEGIN: &'static str = "BEGIN IMMEDIATE";

    async fn control(&mut self, sql: &str) -> Result<()> {
        self.execute_batch(sql).map_err(lite_err)
    }

    fn batch_lost(&self) -> bool {
        self.is_autocommit()
    }
}

#[derive(Clone)]
pub(crate) struct LiteDb {
    /// The one writer connection, group-committing.
    pub(crate) group: Group<rusqlite::Connection>,
    readers: Arc<Vec<Arc<AsyncMutex<rusqlite::Connection>>>>,
    next_reader: Arc<AtomicUsize>,
    /// The database file (for the test-only fault injector).
    path: std::path::PathBuf,
}

impl LiteDb {
    pub fn open(path: &Path, readers: usize, write_wait: Option<Duration>) -> Result<Self> {
        let readers = (0..readers.max(1)).map(|_| open(path).map(|c| Arc::new(AsyncMutex::new(c)))).collect::<Result<Vec<_>>>()?;
        Ok(Self {
            group: Group::new(open(path)?, write_wait),
            readers: Arc::new(readers),
            next_reader: Arc::new(AtomicUsize::new(0)),
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
        self.group.write().await
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

    async fn reader(&self) -> Held<rusqlite::Connection> {
        let asked = Instant::now();
        let n = self.readers.len();
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            if let Ok(g) = self.readers[(start + i) % n].clone().try_lock_owned() {
                return Held::new("sqlite", g, "readers", asked);
            }
        }
        Held::new("sqlite", self.readers[start % n].clone().lock_owned().await, "readers", asked)
    }
}

/// A write transaction on the writer connection.
pub(crate) type LiteWrite = GroupWrite<rusqlite::Connection>;

/// A reader connection, optionally in a transaction.
pub(crate) struct LiteRead {
    guard: Option<Held<rusqlite::Connection>>,
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

/// A failed statement: the error keeps the statement's kind and table (never its arguments).
#[track_caller]
fn lite_failed(q: &Q, e: rusqlite::Error) -> CoreError {
    lite_failed_at(format!("database: {}", q.what()), e)
}

/// SQLite reads `$n` as a name; `?n` is the explicit index the arguments expect. Byte by byte:
/// an ASCII byte replaced by another leaves the text valid UTF-8.
fn lite_sql(sql: &str) -> String {
    let mut out = sql.as_bytes().to_vec();
    for i in 0..out.len().saturating_sub(1) {
        if out[i] == b'$' && out[i + 1].is_ascii_digit() {
            out[i] = b'?';
        }
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn lite_bind(stmt: &mut rusqlite::CachedStatement<'_>, q: &Q) -> Result<()> {
    for (i, a) in q.args.iter().enumerate() {
        match a {
            Arg::Int(v) => stmt.raw_bind_parameter(i + 1, v),
            Arg::Str(v) => stmt.raw_bind_parameter(i + 1, v),
        }
        .map_err(|e| lite_failed(q, e))?;
    }
    Ok(())
}

pub(crate) fn lite_execute(conn: &rusqlite::Connection, q: &Q) -> Result<u64> {
    let mut stmt = conn.prepare_cached(&lite_sql(&q.sql)).map_err(|e| lite_failed(q, e))?;
    lite_bind(&mut stmt, q)?;
    stmt.raw_execute().map(|n| n as u64).map_err(|e| lite_failed(q, e))
}

pub(crate) fn lite_fetch(conn: &rusqlite::Connection, q: &Q) -> Result<Vec<Row>> {
    let mut stmt = conn.prepare_cached(&lite_sql(&q.sql)).map_err(|e| lite_failed(q, e))?;
    lite_bind(&mut stmt, q)?;
    let names: Arc<[String]> = stmt.column_names().iter().map(|s| (*s).to_owned()).collect();
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(|e| lite_failed(q, e))? {
        let mut cells = Vec::with_capacity(names.len());
        for i in 0..names.len() {
            cells.push(match r.get_ref(i).map_err(|e| lite_failed(q, e))? {
                rusqlite::types::ValueRef::Null => Cell::Null,
                rusqlite::types::ValueRef::Integer(v) => Cell::Int(v),
                rusqlite::types::ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
                other => return Err(CoreError::internal(format!("unexpected SQLite value {other:?}"))),
            });
        }
        out.push(Row { names: names.clone(), cells });
    }
    Ok(out)
}

/// Applies the SQLite migrations through sqlx, on a connection of their own, before serving
/// starts.
pub(crate) async fn migrate(path: &Path) -> Result<()> {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(10));
    let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await.map_err(db_err)?;
    let migrator = sqlx::migrate!("migrations/sqlite");
    migrator.run(&pool).await.map_err(|e| migrate_err(&migrator, e))?;
    pool.close().await;
    Ok(())
}

/// One integer (the first column of the first row, possibly NULL) that `sql` reads from the
/// database at `path`, opened read-only: the command line's one-off checks, which never write.
pub(crate) fn read_only_int(path: &Path, sql: &str) -> Result<Option<i64>> {
    let conn = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(lite_err)?;
    conn.query_row(sql, [], |r| r.get::<_, Option<i64>>(0)).map_err(lite_err)
}

/// Copies the SQLite database `src` into the new file `dst` with SQLite's online backup API:
/// one consistent snapshot (a single read transaction, so a server writing meanwhile neither
/// waits nor shows up half-way), including what is still in the WAL. `dst` must not exist; it
/// is created owner-only.
pub fn sqlite_backup(src: &Path, dst: &Path) -> Result<()> {
    crate::owner_only_file(dst).map_err(|e| CoreError::internal_from(format!("cannot create {}", dst.display()), e))?;
    let copied = copy_sqlite(src, dst);
    if copied.is_err() {
        let _ = std::fs::remove_file(dst);
    }
    copied
}

fn copy_sqlite(src: &Path, dst: &Path) -> Result<()> {
    use rusqlite::OpenFlags;
    let source =
        rusqlite::Connection::open_with_flags(src, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX).map_err(lite_err)?;
    source.busy_timeout(Duration::from_secs(10)).map_err(lite_err)?;
    let mut target = rusqlite::Connection::open(dst).map_err(lite_err)?;
    {
        let backup = rusqlite::backup::Backup::new(&source, &mut target).map_err(lite_err)?;
        // Every page in one step: one read transaction, one snapshot. Busy only while another
        // connection holds an exclusive lock (a checkpoint truncating the WAL): try again.
        let mut busy = 0;
        loop {
            match backup.step(-1).map_err(lite_err)? {
                rusqlite::backup::StepResult::Done => break,
                rusqlite::backup::StepResult::More => {}
                _ if busy < 200 => {
                    busy += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                _ => return Err(CoreError::internal("the database stayed locked for 10 s; no backup was taken")),
            }
        }
    }
    let check: String = target.query_row("PRAGMA integrity_check", [], |r| r.get(0)).map_err(lite_err)?;
    if check != "ok" {
        return Err(CoreError::internal(format!("the copy in {} fails SQLite's integrity check: {check}", dst.display())));
    }
    target.close().map_err(|(_, e)| lite_err(e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, LiteDb) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let db = LiteDb::open(&path, 2, None).unwrap();
        let w = db.group.writer.state.clone();
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
        while db.group.writer.waiting.load(Ordering::SeqCst) == 0 {
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
        db.group.writer.waiting.fetch_add(1, Ordering::SeqCst);
        let committing = tokio::spawn(first.commit());
        while db.group.writer.state.clone().try_lock_owned().is_err() {
            tokio::task::yield_now().await;
        }
        // …and then vanishes without committing anything. The watchdog commits the batch (the
        // paused clock lets its timer fire at once; the timeout is only a generous bound).
        db.group.writer.waiting.fetch_sub(1, Ordering::SeqCst);
        tokio::time::timeout(Duration::from_secs(5), committing).await.expect("the commit returned").unwrap().unwrap();
        assert_eq!(count(&db).await, 1);
    }

    #[test]
    fn numbered_placeholders_become_explicit_indexes() {
        assert_eq!(super::lite_sql("UPDATE t SET a = $2 WHERE id = $1 AND b < $12"), "UPDATE t SET a = ?2 WHERE id = ?1 AND b < ?12");
        assert_eq!(super::lite_sql("SELECT '$' || x"), "SELECT '$' || x");
    }
}
