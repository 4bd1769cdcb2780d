//! The SQLite and PostgreSQL backends of strata's Store port. One SQL implementation serves both
//! through sqlx's `Any` driver (statements use `$n` placeholders, which both engines accept);
//! each backend owns its migrations and its connection policy:
//!
//! - SQLite: WAL, `synchronous=FULL`, foreign keys on, one writer connection taking
//!   `BEGIN IMMEDIATE`, pooled readers.
//! - PostgreSQL: READ COMMITTED plus explicit row locks (`FOR UPDATE`) on every row a write
//!   transaction reads, so a read-modify-write is never a lost update.
#![forbid(unsafe_code)]

mod conn;
mod lite;
pub mod notify;
mod query;
mod rows;
mod tx;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor};
use strata_core::clock::Timestamp;
use strata_core::error::{CoreError, Result};
use strata_core::id::ApiKeyId;
use strata_core::key::ApiKey;
use strata_core::org::Org;
use strata_core::store::{Store, Tx, Wake};

use crate::conn::Conn;
use crate::lite::LiteDb;
use crate::notify::Hub;
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

enum Db {
    Sqlite(LiteDb),
    Postgres(AnyPool),
}

pub struct SqlStore {
    db: Db,
    hub: Arc<Hub>,
    /// The PostgreSQL `LISTEN` connection's task, ended with the store.
    listener: Option<tokio::task::JoinHandle<()>>,
    /// On PostgreSQL, the same database through a small pool of the workers' own.
    workers: Option<Arc<dyn Store>>,
}

impl Drop for SqlStore {
    fn drop(&mut self) {
        if let Some(l) = self.listener.take() {
            l.abort();
        }
    }
}

/// PostgreSQL connections of the background workers (beside the 32 that serve requests).
const WORKER_CONNECTIONS: u32 = 6;

pub(crate) fn db_err(e: sqlx::Error) -> CoreError {
    // A unique index lost a race (two creates with one id or one customerExternalId): the
    // loser hears what a check before the insert would have told it.
    if e.as_database_error().and_then(|d| d.code()).is_some_and(|c| c == "23505" || c == "2067" || c == "1555") {
        return unique_conflict();
    }
    CoreError::internal(format!("database: {e}"))
}

pub(crate) fn unique_conflict() -> CoreError {
    CoreError::conflict("a record with the same unique key already exists")
}

impl SqlStore {
    /// Connects, applies the backend's migrations, and returns the store.
    pub async fn connect(backend: &Backend) -> Result<Self> {
        install_default_drivers();
        match backend {
            Backend::Sqlite { dir } => Self::connect_sqlite(dir).await,
            Backend::Postgres { url } => Self::connect_postgres(url).await,
        }
    }

    async fn connect_sqlite(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| CoreError::internal(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join("strata.db");
        // Migrations run through sqlx, on a connection of their own, before serving starts.
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(db_err)?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await.map_err(|e| CoreError::internal(format!("migrations: {e}")))?;
        pool.close().await;
        Ok(Self { db: Db::Sqlite(LiteDb::open(&path, 4)?), hub: Arc::default(), listener: None, workers: None })
    }

    async fn connect_postgres(url: &str) -> Result<Self> {
        let pool = AnyPoolOptions::new().max_connections(32).acquire_timeout(Duration::from_secs(30)).connect(url).await.map_err(db_err)?;
        sqlx::migrate!("migrations/postgres").run(&pool).await.map_err(|e| CoreError::internal(format!("migrations: {e}")))?;
        let hub = Arc::new(Hub::default());
        let listener = Some(hub.spawn_listener(url.to_owned()));
        // Requests waiting on a row lock hold their connections; the outbox must not wait
        // behind them for one.
        let worker_pool = AnyPoolOptions::new().max_connections(WORKER_CONNECTIONS).connect_lazy(url).map_err(db_err)?;
        let workers: Arc<dyn Store> = Arc::new(Self { db: Db::Postgres(worker_pool), hub: hub.clone(), listener: None, workers: None });
        Ok(Self { db: Db::Postgres(pool), hub, listener, workers: Some(workers) })
    }

    /// This process's notification channels (see `notify`): wake-ups after commits, and
    /// payloads other processes sent through PostgreSQL.
    pub fn notifications(&self) -> Arc<Hub> {
        self.hub.clone()
    }

    /// Wraps the store for the services.
    pub fn into_port(self) -> Arc<dyn Store> {
        Arc::new(self)
    }

    async fn begin(&self, write: bool) -> Result<SqlTx> {
        let (conn, dialect) = match &self.db {
            Db::Sqlite(db) if write => (Conn::LiteWrite(db.write().await?), Dialect::Sqlite),
            Db::Sqlite(db) => (Conn::LiteRead(db.read().await?), Dialect::Sqlite),
            Db::Postgres(pool) if write => (Conn::Pg(pool.begin().await.map_err(db_err)?), Dialect::Postgres),
            // Under READ COMMITTED a read-only transaction buys no consistency across
            // statements, only two round trips: reads go straight to the pool.
            Db::Postgres(pool) => (Conn::PgPool(pool.clone()), Dialect::Postgres),
        };
        Ok(SqlTx::new(conn, dialect, write, self.hub.clone()))
    }
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> &'static str {
        match self.db {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    async fn write(&self) -> Result<Box<dyn Tx>> {
        Ok(Box::new(self.begin(true).await?))
    }

    async fn read(&self) -> Result<Box<dyn Tx>> {
        Ok(Box::new(self.begin(false).await?))
    }

    async fn auth_lookup(&self, keyid: &str) -> Result<Option<(ApiKey, Org)>> {
        let sql = format!(
            "SELECT {}, {} FROM api_keys k JOIN organizations o ON o.id = k.org_id WHERE k.keyid = $1",
            rows::KEY_COLUMNS_K,
            rows::ORG_COLUMNS_O
        );
        let q = Q::new(&sql).str(keyid);
        let row = match &self.db {
            Db::Sqlite(db) => q.fetch_optional(&mut Conn::LiteRead(db.read_one().await)).await?,
            Db::Postgres(pool) => q.fetch_optional(&mut Conn::PgPool(pool.clone())).await?,
        };
        row.map(|r| Ok((rows::key(&r, "")?, rows::org(&r, "o_")?))).transpose()
    }

    async fn touch_keys(&self, used: &[(ApiKeyId, Timestamp)]) -> Result<()> {
        let mut tx = self.begin(true).await?;
        tx.touch_keys(used).await?;
        Tx::commit(Box::new(tx)).await
    }

    async fn ping(&self) -> Result<()> {
        let mut tx = self.begin(false).await?;
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
