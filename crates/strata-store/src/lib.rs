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

mod conn;
mod lite;
pub mod notify;
pub mod plans;
mod query;
mod rows;
mod sealed;
mod tx;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use strata_core::clock::Timestamp;
use strata_core::credits::Wallet;
use strata_core::error::{CoreError, Result};
use strata_core::id::ApiKeyId;
use strata_core::idempotency::IdemRecord;
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
    /// The pool, and a small pool whose sessions commit without waiting for the disk (for
    /// idempotency claims only; see `Store::idem_claim_fresh`).
    Postgres {
        pool: PgPool,
        relaxed: PgPool,
    },
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

/// PostgreSQL pool settings. sqlx pings a connection (a round trip) on every acquire by default,
/// which would double the round trips of a one-statement request; here only a connection idle
/// for a while is pinged before use, and a broken one is dropped and replaced.
fn pg_pool_options(max: u32) -> PgPoolOptions {
    const PING_IF_IDLE_FOR: Duration = Duration::from_secs(30);
    PgPoolOptions::new().max_connections(max).acquire_timeout(Duration::from_secs(30)).test_before_acquire(false).before_acquire(
        |conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IF_IDLE_FOR {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        },
    )
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

pub(crate) fn unique_conflict() -> CoreError {
    CoreError::conflict("a record with the same unique key already exists")
}

impl SqlStore {
    /// Connects, applies the backend's migrations, and returns the store.
    pub async fn connect(backend: &Backend) -> Result<Self> {
        match backend {
            Backend::Sqlite { dir } => Self::connect_sqlite(dir).await,
            Backend::Postgres { url } => Self::connect_postgres(url).await,
        }
    }

    async fn connect_sqlite(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| CoreError::internal(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join("strata.db");
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
        Ok(Self { db: Db::Sqlite(LiteDb::open(&path, 4)?), hub: Arc::default(), listener: None, workers: None })
    }

    async fn connect_postgres(url: &str) -> Result<Self> {
        let pool = pg_pool_options(32).connect(url).await.map_err(db_err)?;
        // sqlx holds a PostgreSQL advisory lock while it migrates, so N nodes starting together
        // migrate once; the others wait, then find nothing to apply.
        let migrator = sqlx::migrate!("migrations/postgres");
        migrator.run(&pool).await.map_err(|e| migrate_err(&migrator, e))?;
        let relaxed = pg_pool_options(8)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    sqlx::Executor::execute(conn, "SET synchronous_commit = off").await?;
                    Ok(())
                })
            })
            .connect(url)
            .await
            .map_err(db_err)?;
        let hub = Arc::new(Hub::default());
        let listener = Some(hub.spawn_listener(url.to_owned()));
        // Requests waiting on a row lock hold their connections; the outbox must not wait
        // behind them for one.
        let worker_pool = pg_pool_options(WORKER_CONNECTIONS).connect_lazy(url).map_err(db_err)?;
        let workers: Arc<dyn Store> = Arc::new(Self {
            db: Db::Postgres { pool: worker_pool, relaxed: relaxed.clone() },
            hub: hub.clone(),
            listener: None,
            workers: None,
        });
        Ok(Self { db: Db::Postgres { pool, relaxed }, hub, listener, workers: Some(workers) })
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
            Db::Postgres { pool, .. } if write => (Conn::Pg(pool.begin().await.map_err(db_err)?), Dialect::Postgres),
            // Under READ COMMITTED a read-only transaction buys no consistency across
            // statements, only two round trips: reads go straight to the pool.
            Db::Postgres { pool, .. } => (Conn::PgPool(pool.clone()), Dialect::Postgres),
        };
        Ok(SqlTx::new(conn, dialect, write, self.hub.clone()))
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

    async fn write(&self) -> Result<Box<dyn Tx>> {
        Ok(Box::new(self.begin(true).await?))
    }

    async fn read(&self) -> Result<Box<dyn Tx>> {
        Ok(Box::new(self.begin(false).await?))
    }

    async fn auth_lookup(&self, keyid: &str) -> Result<Option<(ApiKey, Org, Wallet)>> {
        let sql = format!(
            "SELECT {}, {}, {} FROM api_keys k JOIN organizations o ON o.id = k.org_id JOIN wallets w ON w.org_id = o.id \
             WHERE k.keyid = $1",
            rows::KEY_COLUMNS_K,
            rows::ORG_COLUMNS_O,
            rows::WALLET_COLUMNS_W
        );
        let q = Q::new(&sql).str(keyid);
        let row = match &self.db {
            Db::Sqlite(db) => q.fetch_optional(&mut Conn::LiteRead(db.read_one().await)).await?,
            Db::Postgres { pool, .. } => q.fetch_optional(&mut Conn::PgPool(pool.clone())).await?,
        };
        row.map(|r| Ok((rows::key(&r, "")?, rows::org(&r, "o_")?, rows::wallet_prefixed(&r, "w_")?))).transpose()
    }

    async fn idem_claim_fresh(&self, rec: &IdemRecord) -> Result<bool> {
        let mut tx = match &self.db {
            Db::Sqlite(db) => SqlTx::new(Conn::LiteWrite(db.write().await?), Dialect::Sqlite, true, self.hub.clone()),
            Db::Postgres { relaxed, .. } => SqlTx::new(Conn::PgPool(relaxed.clone()), Dialect::Postgres, false, self.hub.clone()),
        };
        let inserted = tx.idem_insert(rec).await?;
        Tx::commit(Box::new(tx)).await?;
        Ok(inserted)
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
