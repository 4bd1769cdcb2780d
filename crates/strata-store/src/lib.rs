//! The SQLite and PostgreSQL backends of strata's Store port. One SQL text serves both
//! (statements use `$n` placeholders), run in-thread through rusqlite on SQLite and through
//! sqlx's native PostgreSQL driver on PostgreSQL; each backend owns its migrations and its
//! connection policy:
//!
//! - SQLite: WAL, `synchronous=FULL`, foreign keys on, one writer connection taking
//!   `BEGIN IMMEDIATE`, pooled readers.
//! - PostgreSQL: READ COMMITTED plus explicit row locks (`FOR UPDATE`) on every row a write
//!   transaction reads, so a read-modify-write is never a lost update.
#![forbid(unsafe_code)]

mod auth_cache;
mod children;
mod coalesce;
mod conn;
mod deferred;
mod error;
pub mod faults;
mod group;
mod held;
mod lane;
mod lite;
pub mod notify;
mod pg;
pub mod plans;
mod pool_use;
mod query;
#[cfg(test)]
mod round_trip_tests;
mod rows;
mod sealed;
mod tx;
#[cfg(test)]
mod upgrade_tests;
mod usage;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use strata_core::clock::Timestamp;
use strata_core::credits::Wallet;
use strata_core::error::{CoreError, Result};
use strata_core::id::{ApiKeyId, OrgId};
use strata_core::idempotency::IdemRecord;
use strata_core::key::ApiKey;
use strata_core::org::Org;
use strata_core::store::{IdempotencyRows, LedgerRows, OrgRows, SettingRows, Store, Tx, Wake};

use crate::auth_cache::{AuthCache, LiteWatch};
use crate::coalesce::PgReads;
use crate::conn::{Conn, Link};
use crate::error::{LAST_CONNECTION_LOSS, db_err, process_ms};
use crate::group::Group;
use crate::lane::PgLane;
use crate::lite::LiteDb;
use crate::notify::Hub;
use crate::pool_use::Pool;
use crate::query::Q;
use crate::tx::SqlTx;

/// Where the data lives.
#[derive(Clone, Debug)]
pub enum Backend {
    /// An embedded SQLite database in this directory (`strata.db`).
    Sqlite { dir: PathBuf },
    /// A PostgreSQL server.
    Postgres { url: String },
}

/// How long strata waits on its database before a request answers 503 SERVICE_UNAVAILABLE
/// instead of hanging (`serve --database-timeout-seconds`, `--statement-timeout-seconds`).
#[derive(Clone, Copy, Debug)]
pub struct DbTimeouts {
    /// Waiting for a PostgreSQL connection from the pool (and for the first one at start).
    pub acquire: Duration,
    /// One statement on PostgreSQL (`statement_timeout`), or the wait for SQLite's one writer;
    /// `None` leaves statements unbounded (the operator's own commands).
    pub statement: Option<Duration>,
}

impl Default for DbTimeouts {
    /// Patient (30 s for a connection, statements unbounded): the operator's commands and the
    /// test suite; `serve` sets its own (2 s and 10 s unless configured).
    fn default() -> Self {
        Self { acquire: Duration::from_secs(30), statement: None }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

enum Db {
    Sqlite(LiteDb),
    /// The pool, a small pool whose sessions commit without waiting for the disk (for
    /// idempotency claims only; see `Store::idem_claim_fresh`), and the group commit of
    /// `Store::write_grouped` (its batches take a connection of `pool`).
    Postgres {
        pool: Pool,
        relaxed: Pool,
        group: Group<PgLane>,
        /// The hottest point reads, coalesced (see `coalesce`).
        reads: Arc<PgReads>,
    },
}

/// What a transaction is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    Read,
    /// A write transaction of its own (on PostgreSQL; SQLite groups every write).
    Write,
    /// A write committed in a group with concurrent ones (`Store::write_grouped`).
    Grouped,
}

pub struct SqlStore {
    db: Db,
    hub: Arc<Hub>,
    /// The PostgreSQL `LISTEN` and `NOTIFY` connections' tasks, ended with the store.
    listener: Vec<tokio::task::JoinHandle<()>>,
    /// On PostgreSQL, the same database through a small pool of the workers' own.
    workers: Option<Arc<dyn Store>>,
    /// The authorization cache (shared with `workers`, whose commits invalidate it too).
    auth: Arc<AuthCache>,
    /// SQLite: the per-request look for other processes' commits (see `auth_cache`).
    lite_watch: Option<Arc<LiteWatch>>,
}

impl Drop for SqlStore {
    fn drop(&mut self) {
        for task in self.listener.drain(..) {
            task.abort();
        }
    }
}

/// PostgreSQL connections of the background workers (beside the 32 that serve requests).
const WORKER_CONNECTIONS: u32 = 6;

/// PostgreSQL pool settings. sqlx pings a connection (a round trip) on every acquire by default,
/// which would double the round trips of a one-statement request; here a connection is pinged
/// before use only when it sat idle for a while, or since before the database was last found
/// unreachable (so after an outage each pooled connection is tested once, a broken one is
/// replaced, and requests succeed again as soon as the database is back).
fn pg_pool_options(max: u32, timeouts: DbTimeouts) -> PgPoolOptions {
    const PING_IF_IDLE_FOR: Duration = Duration::from_secs(30);
    PgPoolOptions::new().max_connections(max).acquire_timeout(timeouts.acquire).test_before_acquire(false).before_acquire(|conn, meta| {
        Box::pin(async move {
            let idle_ms = u64::try_from(meta.idle_for.as_millis()).unwrap_or(u64::MAX);
            let last_used = process_ms().saturating_sub(idle_ms);
            let outage_since = LAST_CONNECTION_LOSS.load(std::sync::atomic::Ordering::Relaxed) >= last_used;
            if meta.idle_for >= PING_IF_IDLE_FOR || outage_since {
                sqlx::Connection::ping(conn).await?;
            }
            Ok(true)
        })
    })
}

/// How long the command line's one-off reads (does a database exist, its schema, its clock)
/// wait for PostgreSQL to answer before saying it did not.
const COMMAND_CONNECT_WAIT: Duration = Duration::from_secs(5);

/// Opens one PostgreSQL connection before any pool is made, so that a server that cannot be
/// reached is a refusal naming the cause at once (connection refused, authentication failed, no
/// such database, no answer within `wait`, at least 1 s) rather than a pool's timeout. Returns
/// the parsed options (for the pools) and the connection.
async fn first_connection(url: &str, wait: Duration) -> Result<(sqlx::postgres::PgConnectOptions, sqlx::PgConnection)> {
    use sqlx::Connection;
    let where_ = redact_url(url);
    let options: sqlx::postgres::PgConnectOptions =
        url.parse().map_err(|e| refusal(format!("--database-url {where_} is not a PostgreSQL URL: {e}")))?;
    let wait = wait.max(Duration::from_secs(1));
    let conn = match tokio::time::timeout(wait, sqlx::PgConnection::connect_with(&options)).await {
        Err(_) => return Err(refusal(format!("PostgreSQL at {where_} did not answer within {} s", wait.as_secs()))),
        Ok(Err(e)) => {
            let why = match &e {
                sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                    "connection refused (is PostgreSQL running and listening there?)".to_owned()
                }
                sqlx::Error::Io(io) => format!("cannot connect: {io}"),
                sqlx::Error::Database(d) if d.code().as_deref() == Some("28P01") || d.code().as_deref() == Some("28000") => {
                    format!("authentication failed: {}", d.message())
                }
                sqlx::Error::Database(d) if d.code().as_deref() == Some("3D000") => {
                    format!("{} (create it, or point --database-url at another)", d.message())
                }
                other => other.to_string(),
            };
            return Err(refusal(format!("cannot open PostgreSQL at {where_}: {why}")));
        }
        Ok(Ok(conn)) => conn,
    };
    Ok((options, conn))
}

/// A database URL as it may be printed: without its password.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "the --database-url given".to_owned(),
    }
}

/// An operator's mistake or a refusal to start: one line saying what to do (never "internal").
fn refusal(message: String) -> CoreError {
    CoreError::Validation { field: None, message, code: None, bounds: None }
}

/// The newest schema migration this binary ships, per backend: `(sqlite, postgres)`.
pub fn schema_versions() -> (i64, i64) {
    let newest = |m: sqlx::migrate::Migrator| m.iter().map(|m| m.version).max().unwrap_or(0);
    (newest(sqlx::migrate!("migrations/sqlite")), newest(sqlx::migrate!("migrations/postgres")))
}

/// Says what to do when the schema cannot be brought to this binary's version: a database
/// migrated by a newer release is refused (this binary would misread it), never rolled back.
fn migrate_err(migrator: &sqlx::migrate::Migrator, e: sqlx::migrate::MigrateError) -> CoreError {
    use sqlx::migrate::MigrateError;
    let newest = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    CoreError::internal(match e {
        MigrateError::VersionMissing(v) => format!(
            "the database was migrated by a newer strata (schema migration {v}; this binary knows migrations up to {newest}): \
             run that release or a newer one, or restore a backup taken before the upgrade"
        ),
        MigrateError::VersionMismatch(v) => {
            format!("schema migration {v} in the database differs from the one this binary ships: the database was made by another build")
        }
        other => format!("migrations: {other}"),
    })
}

/// Whether `backend` holds a strata database already (SQLite: `strata.db` in the directory;
/// PostgreSQL: the database exists and has strata's schema). Creates nothing.
pub async fn database_exists(backend: &Backend) -> Result<bool> {
    match backend {
        Backend::Sqlite { dir } => Ok(dir.join(SQLITE_FILE).exists()),
        Backend::Postgres { url } => {
            use sqlx::Connection;
            let (_, mut conn) = first_connection(url, COMMAND_CONNECT_WAIT).await?;
            let row = sqlx::query("SELECT to_regclass('public._sqlx_migrations') IS NOT NULL AS present")
                .fetch_one(&mut conn)
                .await
                .map_err(db_err)?;
            let present: bool = sqlx::Row::try_get(&row, "present").map_err(db_err)?;
            let _ = conn.close().await;
            Ok(present)
        }
    }
}

/// The newest schema migration applied to the database (`None`: it holds no strata schema).
/// Reads only; applies nothing.
pub async fn schema_applied(backend: &Backend) -> Result<Option<i64>> {
    const SQL: &str = "SELECT MAX(version) AS v FROM _sqlx_migrations WHERE success";
    if !database_exists(backend).await? {
        return Ok(None);
    }
    match backend {
        Backend::Sqlite { dir } => {
            let conn = rusqlite::Connection::open_with_flags(dir.join(SQLITE_FILE), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .map_err(error::lite_err)?;
            conn.query_row(SQL, [], |r| r.get::<_, Option<i64>>(0)).map_err(error::lite_err)
        }
        Backend::Postgres { url } => {
            let (_, mut conn) = first_connection(url, COMMAND_CONNECT_WAIT).await?;
            let row = sqlx::query(SQL).fetch_one(&mut conn).await.map_err(db_err)?;
            let _ = sqlx::Connection::close(conn).await;
            sqlx::Row::try_get::<Option<i64>, _>(&row, "v").map_err(db_err)
        }
    }
}

/// What the server's clock can be checked against: PostgreSQL's own clock, or (SQLite, one
/// machine) the newest timestamp strata stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockReference {
    /// The database server's `clock_timestamp()`, in Unix milliseconds.
    DatabaseNow(i64),
    /// The newest audit entry or event stored, in Unix milliseconds (`None`: nothing stored).
    NewestStored(Option<i64>),
}

/// Reads the clock reference of the database (see `ClockReference`).
pub async fn clock_reference(backend: &Backend) -> Result<ClockReference> {
    match backend {
        Backend::Sqlite { dir } => {
            let conn = rusqlite::Connection::open_with_flags(dir.join(SQLITE_FILE), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .map_err(error::lite_err)?;
            let newest = conn
                .query_row(
                    "SELECT MAX(t) FROM (SELECT MAX(occurred_at) AS t FROM audit_log UNION ALL SELECT MAX(created_at) FROM events)",
                    [],
                    |r| r.get::<_, Option<i64>>(0),
                )
                .map_err(error::lite_err)?;
            Ok(ClockReference::NewestStored(newest))
        }
        Backend::Postgres { url } => {
            let (_, mut conn) = first_connection(url, COMMAND_CONNECT_WAIT).await?;
            let row = sqlx::query("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS now")
                .fetch_one(&mut conn)
                .await
                .map_err(db_err)?;
            let _ = sqlx::Connection::close(conn).await;
            Ok(ClockReference::DatabaseNow(sqlx::Row::try_get::<i64, _>(&row, "now").map_err(db_err)?))
        }
    }
}

/// The SQLite database's file name in its data directory.
pub const SQLITE_FILE: &str = "strata.db";

/// Creates `dir` (owner-only, 0700) if it is missing, and an empty owner-only (0600)
/// `strata.db` in it, so SQLite's own files (`-wal`, `-shm`), which take the database file's
/// mode, are owner-only too. Returns the database's path.
pub fn create_sqlite_files(dir: &Path) -> Result<PathBuf> {
    let io = |what: &Path, e: std::io::Error| CoreError::internal_from(format!("cannot create {}", what.display()), e);
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| io(dir, e))?;
    let path = dir.join(SQLITE_FILE);
    match owner_only_file(&path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(&path, e)),
    }
    Ok(path)
}

/// Creates a new file readable and writable by its owner only (0600); fails if it exists.
pub fn owner_only_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)
}

/// Copies the SQLite database `src` into the new file `dst` with SQLite's online backup API:
/// one consistent snapshot (a single read transaction, so a server writing meanwhile neither
/// waits nor shows up half-way), including what is still in the WAL. `dst` must not exist; it
/// is created owner-only.
pub fn sqlite_backup(src: &Path, dst: &Path) -> Result<()> {
    owner_only_file(dst).map_err(|e| CoreError::internal_from(format!("cannot create {}", dst.display()), e))?;
    let copied = copy_sqlite(src, dst);
    if copied.is_err() {
        let _ = std::fs::remove_file(dst);
    }
    copied
}

fn copy_sqlite(src: &Path, dst: &Path) -> Result<()> {
    use rusqlite::OpenFlags;
    let source = rusqlite::Connection::open_with_flags(src, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(crate::error::lite_err)?;
    source.busy_timeout(Duration::from_secs(10)).map_err(crate::error::lite_err)?;
    let mut target = rusqlite::Connection::open(dst).map_err(crate::error::lite_err)?;
    {
        let backup = rusqlite::backup::Backup::new(&source, &mut target).map_err(crate::error::lite_err)?;
        // Every page in one step: one read transaction, one snapshot. Busy only while another
        // connection holds an exclusive lock (a checkpoint truncating the WAL): try again.
        let mut busy = 0;
        loop {
            match backup.step(-1).map_err(crate::error::lite_err)? {
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
    let check: String = target.query_row("PRAGMA integrity_check", [], |r| r.get(0)).map_err(crate::error::lite_err)?;
    if check != "ok" {
        return Err(CoreError::internal(format!("the copy in {} fails SQLite's integrity check: {check}", dst.display())));
    }
    target.close().map_err(|(_, e)| crate::error::lite_err(e))?;
    Ok(())
}

/// Creates an empty PostgreSQL database next to the one `url` names (same server and
/// credentials), for a scratch run; returns its URL.
pub async fn create_scratch_postgres(url: &str, prefix: &str) -> Result<String> {
    use sqlx::{Connection, Executor};
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let name = format!("{prefix}_{}_{nanos}", std::process::id());
    let mut conn = sqlx::PgConnection::connect(url).await.map_err(db_err)?;
    conn.execute(format!("CREATE DATABASE \"{name}\"").as_str())
        .await
        .map_err(|e| CoreError::internal_from("cannot create a scratch database next to the configured one", e))?;
    let _ = conn.close().await;
    Ok(with_database(url, &name))
}

/// Drops a database `create_scratch_postgres` made (`scratch` is its URL), connecting through
/// `url`.
pub async fn drop_scratch_postgres(url: &str, scratch: &str) -> Result<()> {
    use sqlx::{Connection, Executor};
    let name = database_name(scratch);
    let mut conn = sqlx::PgConnection::connect(url).await.map_err(db_err)?;
    // The run's pools close as they are dropped; give their sessions a moment to end (dropping a
    // database with sessions still closing makes PostgreSQL wait for each), then force the rest.
    for _ in 0..50 {
        let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
            .bind(&name)
            .fetch_one(&mut conn)
            .await
            .map_err(db_err)?;
        if sessions == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    conn.execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str()).await.map_err(db_err)?;
    let _ = conn.close().await;
    Ok(())
}

fn split_url(url: &str) -> (&str, &str, &str) {
    let (body, query) = url.split_once('?').unwrap_or((url, ""));
    let (head, name) = body.rsplit_once('/').unwrap_or((body, ""));
    (head, name, query)
}

fn database_name(url: &str) -> String {
    split_url(url).1.to_owned()
}

fn with_database(url: &str, name: &str) -> String {
    let (head, _, query) = split_url(url);
    if query.is_empty() { format!("{head}/{name}") } else { format!("{head}/{name}?{query}") }
}

impl SqlStore {
    /// Connects, applies the backend's migrations (and fills in what a migration leaves to
    /// the application), and returns the store (`DbTimeouts::default()`).
    pub async fn connect(backend: &Backend) -> Result<Self> {
        Self::connect_with(backend, DbTimeouts::default()).await
    }

    /// As `connect`, with these timeouts.
    pub async fn connect_with(backend: &Backend, timeouts: DbTimeouts) -> Result<Self> {
        let store = match backend {
            Backend::Sqlite { dir } => Self::connect_sqlite(dir, timeouts).await?,
            Backend::Postgres { url } => Self::connect_postgres(url, timeouts).await?,
        };
        // Once per database (the setting marks it done), not a read of every org at each start.
        const SEARCH_KEYS_FILLED: &str = "org_search_keys_filled";
        let mut tx = store.begin(Access::Write).await?;
        if tx.setting(SEARCH_KEYS_FILLED).await?.is_none() {
            let filled = children::fill_search_keys(&mut tx.conn).await?;
            tx.setting_init(SEARCH_KEYS_FILLED, "0007").await?;
            if filled > 0 {
                tracing::info!(organizations = filled, "filled in the search keys of organizations written before migration 0007");
            }
        }
        Tx::commit(Box::new(tx)).await?;
        Ok(store)
    }

    async fn connect_sqlite(dir: &Path, timeouts: DbTimeouts) -> Result<Self> {
        let path = create_sqlite_files(dir)?;
        // Migrations run through sqlx, on a connection of their own, before serving starts.
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await.map_err(db_err)?;
        let migrator = sqlx::migrate!("migrations/sqlite");
        migrator.run(&pool).await.map_err(|e| migrate_err(&migrator, e))?;
        pool.close().await;
        Ok(Self {
            db: Db::Sqlite(LiteDb::open(&path, 4, timeouts.statement)?),
            hub: Arc::default(),
            listener: Vec::new(),
            workers: None,
            auth: Arc::default(),
            lite_watch: Some(Arc::new(LiteWatch::open(&path)?)),
        })
    }

    async fn connect_postgres(url: &str, timeouts: DbTimeouts) -> Result<Self> {
        let (mut options, first) = first_connection(url, timeouts.acquire).await?;
        let _ = sqlx::Connection::close(first).await;
        if let Some(t) = timeouts.statement {
            options = options.options([("statement_timeout", format!("{}ms", t.as_millis()))]);
        }
        let pool = Pool::new(pg_pool_options(32, timeouts).connect_with(options.clone()).await.map_err(db_err)?, "requests");
        // sqlx holds a PostgreSQL advisory lock while it migrates, so N nodes starting together
        // migrate once; the others wait, then find nothing to apply.
        let migrator = sqlx::migrate!("migrations/postgres");
        migrator.run(&pool.pool).await.map_err(|e| migrate_err(&migrator, e))?;
        let relaxed = pg_pool_options(8, timeouts)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    sqlx::Executor::execute(conn, "SET synchronous_commit = off").await?;
                    Ok(())
                })
            })
            .connect_with(options.clone())
            .await
            .map_err(db_err)?;
        let relaxed = Pool::new(relaxed, "relaxed");
        let hub = Arc::new(Hub::default());
        let auth = Arc::new(AuthCache::default());
        // Subscribed before the listener starts, so no invalidation is missed.
        let invalidations = hub.subscribe(notify::AUTH);
        let listener = vec![
            spawn_auth_invalidator(invalidations, auth.clone()),
            hub.spawn_listener(url.to_owned()),
            hub.spawn_publisher(url.to_owned()),
        ];
        // Requests waiting on a row lock hold their connections; the outbox must not wait
        // behind them for one.
        let worker_pool = Pool::new(pg_pool_options(WORKER_CONNECTIONS, timeouts).connect_lazy_with(options), "workers");
        let worker_group = Group::new(PgLane::new(worker_pool.clone()), Some(timeouts.acquire));
        let workers: Arc<dyn Store> = Arc::new(Self {
            db: Db::Postgres {
                reads: Arc::new(PgReads::new(&worker_pool)),
                pool: worker_pool,
                relaxed: relaxed.clone(),
                group: worker_group,
            },
            hub: hub.clone(),
            listener: Vec::new(),
            workers: None,
            auth: auth.clone(),
            lite_watch: None,
        });
        // A write waits for its turn at the group as long as it would for a connection.
        let group = Group::new(PgLane::new(pool.clone()), Some(timeouts.acquire));
        let reads = Arc::new(PgReads::new(&pool));
        Ok(Self { db: Db::Postgres { pool, relaxed, group, reads }, hub, listener, workers: Some(workers), auth, lite_watch: None })
    }

    /// This process's notification channels (see `notify`): wake-ups after commits, and
    /// payloads other processes sent through PostgreSQL.
    pub fn notifications(&self) -> Arc<Hub> {
        self.hub.clone()
    }

    /// Whether the authorization cache may answer now, and under which epoch (see
    /// `auth_cache`): on PostgreSQL while the `LISTEN` connection is up; on SQLite after the
    /// look for other processes' commits.
    fn auth_cache_epoch(&self) -> Option<u64> {
        match &self.lite_watch {
            Some(watch) => watch.check(&self.auth).then_some(0),
            None => self.hub.listen_epoch(),
        }
    }

    /// Wraps the store for the services.
    pub fn into_port(self) -> Arc<dyn Store> {
        Arc::new(self)
    }

    async fn begin(&self, access: Access) -> Result<SqlTx> {
        let write = access != Access::Read;
        let (conn, dialect) = match &self.db {
            // SQLite's one writer always commits in groups.
            Db::Sqlite(db) if write => (Conn::from(Link::LiteWrite(db.write().await?)), Dialect::Sqlite),
            Db::Sqlite(db) => (Conn::from(Link::LiteRead(db.read().await?)), Dialect::Sqlite),
            Db::Postgres { group, .. } if access == Access::Grouped => (Conn::from(Link::PgGroup(group.write().await?)), Dialect::Postgres),
            Db::Postgres { pool, .. } if write => {
                let (tx, in_use) = pool.begin().await?;
                (Conn::from(Link::Pg(tx, in_use)), Dialect::Postgres)
            }
            // Under READ COMMITTED a read-only transaction buys no consistency across
            // statements, only two round trips: reads go straight to the pool.
            Db::Postgres { pool, .. } => (Conn::from(Link::PgPool(pool.clone())), Dialect::Postgres),
        };
        Ok(SqlTx::new(conn, dialect, write, self.hub.clone(), self.auth.clone()))
    }
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> &'static str {
        match self.db {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres { .. } => "postgres",
        }
    }

    #[tracing::instrument(level = "debug", name = "store.write", skip_all)]
    async fn write(&self) -> Result<Box<dyn Tx>> {
        Ok(Box::new(self.begin(Access::Write).await?))
    }

    #[tracing::instrument(level = "debug", name = "store.write_grouped", skip_all)]
    async fn write_grouped(&self) -> Result<Box<dyn Tx>> {
        Ok(Box::new(self.begin(Access::Grouped).await?))
    }

    #[tracing::instrument(level = "debug", name = "store.read", skip_all)]
    async fn read(&self) -> Result<Box<dyn Tx>> {
        Ok(Box::new(self.begin(Access::Read).await?))
    }

    async fn current_wallet(&self, org: OrgId) -> Result<Option<Wallet>> {
        match &self.db {
            Db::Postgres { reads, .. } => reads.wallets.get(org).await,
            Db::Sqlite(_) => {
                let mut tx = self.begin(Access::Read).await?;
                let w = tx.wallet(org).await?;
                Tx::commit(Box::new(tx)).await?;
                Ok(w)
            }
        }
    }

    async fn current_child_summary(&self, parent: OrgId, id: OrgId) -> Result<Option<(Org, Wallet, i64)>> {
        match &self.db {
            // Fetched by id alone, so concurrent reads of different parents share a statement;
            // another parent's child is then "not found", as with the scoped statement.
            Db::Postgres { reads, .. } => Ok(reads.summaries.get(id).await?.filter(|(o, _, _)| o.parent_id == Some(parent))),
            Db::Sqlite(_) => {
                let mut tx = self.begin(Access::Read).await?;
                let s = tx.child_summary(parent, id).await?;
                Tx::commit(Box::new(tx)).await?;
                Ok(s)
            }
        }
    }

    #[tracing::instrument(level = "debug", name = "store.auth_lookup", skip_all)]
    async fn auth_lookup(&self, keyid: &str) -> Result<Option<(ApiKey, Org, Option<Wallet>)>> {
        let epoch = self.auth_cache_epoch();
        if let Some(epoch) = epoch
            && let Some((key, home)) = self.auth.get(keyid, epoch)
        {
            return Ok(Some((key, home, None)));
        }
        let (generation, read_at) = (self.auth.generation(), std::time::Instant::now());
        let sql = format!(
            "SELECT {}, {}, {}, COALESCE(p.access_revoked, 0) AS parent_access_revoked \
             FROM api_keys k JOIN organizations o ON o.id = k.org_id JOIN wallets w ON w.org_id = o.id \
             LEFT JOIN organizations p ON p.id = o.parent_id \
             WHERE k.keyid = $1",
            rows::KEY_COLUMNS_K,
            rows::ORG_COLUMNS_O,
            rows::WALLET_COLUMNS_W
        );
        let q = Q::new(&sql).str(keyid);
        let row = match &self.db {
            Db::Sqlite(db) => q.fetch_optional(&mut Conn::from(Link::LiteRead(db.read_one().await))).await?,
            Db::Postgres { pool, .. } => q.fetch_optional(&mut Conn::from(Link::PgPool(pool.clone()))).await?,
        };
        row.map(|r| {
            let mut home = rows::org(&r, "o_")?;
            // The operator's cut-off of a partner holds for its children (CONTRACT §2).
            home.access_revoked |= rows::int(&r, "parent_access_revoked")? != 0;
            let key = rows::key(&r, "")?;
            if let Some(epoch) = epoch {
                self.auth.put(keyid, &key, &home, epoch, generation, read_at);
            }
            Ok((key, home, Some(rows::wallet_prefixed(&r, "w_")?)))
        })
        .transpose()
    }

    #[tracing::instrument(level = "debug", name = "store.idem_claim_fresh", skip_all)]
    async fn idem_claim_fresh(&self, rec: &IdemRecord) -> Result<bool> {
        let mut tx = match &self.db {
            Db::Sqlite(db) => {
                SqlTx::new(Conn::from(Link::LiteWrite(db.write().await?)), Dialect::Sqlite, true, self.hub.clone(), self.auth.clone())
            }
            Db::Postgres { relaxed, .. } => {
                SqlTx::new(Conn::from(Link::PgPool(relaxed.clone())), Dialect::Postgres, false, self.hub.clone(), self.auth.clone())
            }
        };
        let inserted = tx.idem_insert(rec).await?;
        Tx::commit(Box::new(tx)).await?;
        Ok(inserted)
    }

    #[tracing::instrument(level = "debug", name = "store.touch_keys", skip_all)]
    async fn touch_keys(&self, used: &[(ApiKeyId, Timestamp)]) -> Result<()> {
        let mut tx = self.begin(Access::Write).await?;
        tx.touch_keys(used).await?;
        Tx::commit(Box::new(tx)).await
    }

    #[tracing::instrument(level = "debug", name = "store.ping", skip_all)]
    async fn ping(&self) -> Result<()> {
        if let Db::Sqlite(db) = &self.db {
            faults::check(db.path())?;
        }
        let mut tx = self.begin(Access::Read).await?;
        tx.ping().await?;
        Tx::commit(Box::new(tx)).await
    }

    fn for_workers(&self) -> Option<Arc<dyn Store>> {
        self.workers.clone()
    }

    fn wakeup(&self, kind: Wake) -> Arc<tokio::sync::Notify> {
        self.hub.wakeup(notify::channel_of(kind))
    }
}

/// Applies the invalidations other processes send (and `notify::LOST`) to `cache`, until the
/// returned task is aborted. Falling behind drops everything.
fn spawn_auth_invalidator(mut heard: tokio::sync::broadcast::Receiver<String>, cache: Arc<AuthCache>) -> tokio::task::JoinHandle<()> {
    use tokio::sync::broadcast::error::RecvError;
    tokio::spawn(async move {
        loop {
            match heard.recv().await {
                Ok(payload) => cache.apply_payload(&payload),
                Err(RecvError::Lagged(_)) => cache.clear(),
                Err(RecvError::Closed) => return,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_schema_newer_than_the_binary_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let backend = Backend::Sqlite { dir: dir.path().to_owned() };
        drop(SqlStore::connect(&backend).await.unwrap());
        let conn = rusqlite::Connection::open(dir.path().join("strata.db")).unwrap();
        conn.execute(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (9999, 'from the future', 1, x'00', 0)",
            [],
        )
        .unwrap();
        drop(conn);
        let err = SqlStore::connect(&backend).await.err().expect("a newer schema must be refused").to_string();
        assert!(err.contains("migrated by a newer strata") && err.contains("9999"), "{err}");
    }
}
