//! The checks' view of the drill's database, on either backend: rows read as text. The queries
//! are written once, in the SQL both backends speak (`CAST(… AS TEXT)`, `||`, `COALESCE`).

use std::path::Path;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, PgConnection, Row, SqliteConnection};

use super::processes::Fail;

/// One connection to the drill's database.
pub enum Db {
    Pg(PgConnection),
    /// Opened read-only beside the server's own writer.
    Sqlite(SqliteConnection),
}

impl Db {
    /// Opens `strata.db` read-only (it must exist: the server made it).
    pub async fn sqlite(path: &Path) -> Result<Self, Fail> {
        SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .disable_statement_logging()
            .connect()
            .await
            .map(Db::Sqlite)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))
    }

    /// Every row of `sql`, each column as text (NULL as `None`). Columns that are not text
    /// must be cast in the query.
    pub async fn rows(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, Fail> {
        fn texts<R: Row>(rows: Vec<R>) -> Result<Vec<Vec<Option<String>>>, sqlx::Error>
        where
            usize: sqlx::ColumnIndex<R>,
            for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        {
            rows.iter().map(|r| (0..r.len()).map(|i| r.try_get::<Option<String>, _>(i)).collect()).collect()
        }
        let result = match self {
            Db::Pg(c) => sqlx::query(sql).fetch_all(c).await.and_then(texts),
            Db::Sqlite(c) => sqlx::query(sql).fetch_all(c).await.and_then(texts),
        };
        result.map_err(|e| format!("{sql}: {e}"))
    }

    /// Rows of two text columns, the first non-null, as pairs.
    pub async fn pairs(&mut self, sql: &str) -> Result<Vec<(String, String)>, Fail> {
        Ok(self
            .rows(sql)
            .await?
            .into_iter()
            .map(|mut r| {
                let second = r.get_mut(1).and_then(Option::take).unwrap_or_default();
                (r.into_iter().next().flatten().unwrap_or_default(), second)
            })
            .collect())
    }

    /// The single integer `sql` selects (a `count(*)`).
    pub async fn count(&mut self, sql: &str) -> Result<i64, Fail> {
        let result = match self {
            Db::Pg(c) => sqlx::query(sql).fetch_one(c).await.and_then(|r| r.try_get::<i64, _>(0)),
            Db::Sqlite(c) => sqlx::query(sql).fetch_one(c).await.and_then(|r| r.try_get::<i64, _>(0)),
        };
        result.map_err(|e| format!("{sql}: {e}"))
    }
}
