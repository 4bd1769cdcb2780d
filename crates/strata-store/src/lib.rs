//! The SQLite and PostgreSQL backends of strata's Store port. One SQL implementation serves both
//! through sqlx's `Any` driver (statements use `$n` placeholders, which both engines accept);
//! each backend owns its migrations and its connection policy:
//!
//! - SQLite: WAL, `synchronous=FULL`, foreign keys on, one writer connection taking
//!   `BEGIN IMMEDIATE`, pooled readers.
//! - PostgreSQL: READ COMMITTED plus explicit row locks (`FOR UPDATE`) on every row a write
//!   transaction reads, so a read-modify-write is never a lost update.
#![forbid(unsafe_code)]

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
use strata_core::store::{Store, Tx};

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

pub struct SqlStore {
    writer: AnyPool,
    reader: AnyPool,
    dialect: Dialect,
}

pub(crate) fn db_err(e: sqlx::Error) -> CoreError {
    CoreError::internal(format!("database: {e}"))
}

impl SqlStore {
    /// Connects, applies the backend's migrations, and returns the store.
    pub async fn connect(backend: &Backend) -> Result<Self> {
        install_default_drivers();
        let store = match backend {
            Backend::Sqlite { dir } => Self::connect_sqlite(dir).await?,
            Backend::Postgres { url } => Self::connect_postgres(url).await?,
        };
        let migrator = match store.dialect {
            Dialect::Sqlite => sqlx::migrate!("migrations/sqlite"),
            Dialect::Postgres => sqlx::migrate!("migrations/postgres"),
        };
        migrator.run(&store.writer).await.map_err(|e| CoreError::internal(format!("migrations: {e}")))?;
        Ok(store)
    }

    async fn connect_sqlite(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| CoreError::internal(format!("cannot create {}: {e}", dir.display())))?;
        let url = format!("sqlite://{}?mode=rwc", dir.join("strata.db").display());
        let options = || {
            AnyPoolOptions::new().after_connect(|conn, _meta| {
                Box::pin(async move {
                    for pragma in [
                        "PRAGMA journal_mode = WAL",
                        "PRAGMA synchronous = FULL",
                        "PRAGMA foreign_keys = ON",
                        "PRAGMA busy_timeout = 10000",
                    ] {
                        conn.execute(pragma).await?;
                    }
                    Ok(())
                })
            })
        };
        // One writer: SQLite serializes writers anyway, and queueing them in the pool is cheaper
        // than letting them collide on the file lock.
        let writer = options().max_connections(1).acquire_timeout(Duration::from_secs(60)).connect(&url).await.map_err(db_err)?;
        let reader = options().max_connections(8).connect(&url).await.map_err(db_err)?;
        Ok(Self { writer, reader, dialect: Dialect::Sqlite })
    }

    async fn connect_postgres(url: &str) -> Result<Self> {
        let pool = AnyPoolOptions::new().max_connections(32).acquire_timeout(Duration::from_secs(30)).connect(url).await.map_err(db_err)?;
        Ok(Self { writer: pool.clone(), reader: pool, dialect: Dialect::Postgres })
    }

    /// Wraps the store for the services.
    pub fn into_port(self) -> Arc<dyn Store> {
        Arc::new(self)
    }
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        }
    }

    async fn write(&self) -> Result<Box<dyn Tx>> {
        let tx = match self.dialect {
            Dialect::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await,
            Dialect::Postgres => self.writer.begin().await,
        }
        .map_err(db_err)?;
        Ok(Box::new(SqlTx::new(tx, self.dialect, true)))
    }

    async fn read(&self) -> Result<Box<dyn Tx>> {
        let tx = self.reader.begin().await.map_err(db_err)?;
        Ok(Box::new(SqlTx::new(tx, self.dialect, false)))
    }

    async fn auth_lookup(&self, keyid: &str) -> Result<Option<(ApiKey, Org)>> {
        let sql = format!(
            "SELECT {}, {} FROM api_keys k JOIN organizations o ON o.id = k.org_id WHERE k.keyid = $1",
            rows::KEY_COLUMNS_K,
            rows::ORG_COLUMNS_O
        );
        let row = Q::new(&sql).str(keyid).fetch_optional(&self.reader).await?;
        row.map(|r| Ok((rows::key(&r, "")?, rows::org(&r, "o_")?))).transpose()
    }

    async fn touch_keys(&self, used: &[(ApiKeyId, Timestamp)]) -> Result<()> {
        let mut tx = match self.dialect {
            Dialect::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await,
            Dialect::Postgres => self.writer.begin().await,
        }
        .map_err(db_err)?;
        for (id, at) in used {
            Q::new("UPDATE api_keys SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)")
                .int(at.millis())
                .str(&id.uuid_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await.map_err(db_err)
    }

    async fn ping(&self) -> Result<()> {
        Q::new("SELECT 1").fetch_optional(&self.reader).await.map(|_| ())
    }
}
