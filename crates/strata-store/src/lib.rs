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
mod pg_setup;
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
use crate::group::Group;
use crate::lane::PgLane;
use crate::lite::LiteDb;
use crate::notify::Hub;
use crate::pool_use::Pool;
use crate::query::Q;
use crate::tx::SqlTx;

pub use crate::lite::sqlite_backup;
pub use crate::pg_setup::{create_scratch_postgres, drop_scratch_postgres, redact_url};

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

/// The newest schema migration this binary ships, per backend: `(sqlite, postgres)`.
pub fn schema_versions() -> (i64, i64) {
    let newest = |m: sqlx::migrate::Migrator| m.iter().map(|m| m.version).max().unwrap_or(0);
    (newest(sqlx::migrate!("migrations/sqlite")), newest(sqlx::migrate!("migrations/postgres")))
}

/// Whether `backend` holds a strata database already (SQLite: `strata.db` in the directory;
/// PostgreSQL: the database exists and has strata's schema). Creates nothing.
pub async fn database_exists(backend: &Backend) -> Result<bool> {
    match backend {
        Backend::Sqlite { dir } => Ok(dir.join(SQLITE_FILE).exists()),
        Backend::Postgres { url } => pg_setup::schema_present(url).await,
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
        Backend::Sqlite { dir } => lite::read_only_int(&dir.join(SQLITE_FILE), SQL),
        Backend::Postgres { url } => pg_setup::read_int(url, SQL).await,
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
        Backend::Sqlite { dir } => Ok(ClockReference::NewestStored(lite::read_only_int(
            &dir.join(SQLITE_FILE),
            "SELECT MAX(t) AS v FROM (SELECT MAX(occurred_at) AS t FROM audit_log UNION ALL SELECT MAX(created_at) FROM events)",
        )?)),
        Backend::Postgres { url } => {
            let now = pg_setup::read_int(url, "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS v").await?;
            Ok(ClockReference::DatabaseNow(now.ok_or_else(|| CoreError::internal("PostgreSQL gave no clock_timestamp()"))?))
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
        lite::migrate(&path).await?;
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
        let pg_setup::Pools { requests: pool, relaxed, workers: worker_pool } = pg_setup::pools(url, timeouts).await?;
        let hub = Arc::new(Hub::default());
        let auth = Arc::new(AuthCache::default());
        // Subscribed before the listener starts, so no invalidation is missed.
        let invalidations = hub.subscribe(notify::AUTH);
        let listener = vec![
            spawn_auth_invalidator(invalidations, auth.clone()),
            hub.spawn_listener(url.to_owned()),
            hub.spawn_publisher(url.to_owned()),
        ];
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
