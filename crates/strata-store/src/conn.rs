//! The connection a transaction runs on: a PostgreSQL transaction through sqlx's native
//! PostgreSQL driver (prepared statements, cached per connection), or a SQLite connection held
//! in-thread (the group-committed writer or a reader). Statements are the same text on both;
//! only the binding and the decoding differ.

use std::sync::Arc;

use sqlx::postgres::{PgArguments, PgRow};
use sqlx::{Column, PgPool, Postgres, Row as _, Transaction, TypeInfo};
use strata_core::error::{CoreError, Result};

use crate::db_err;
use crate::lite::{LiteRead, LiteWrite};
use crate::query::{Arg, Cell, Q, Row};

pub(crate) enum Conn {
    Pg(Transaction<'static, Postgres>),
    /// A single statement on a pooled PostgreSQL connection, outside any transaction.
    PgPool(PgPool),
    LiteWrite(LiteWrite),
    LiteRead(LiteRead),
}

impl Conn {
    pub async fn execute(&mut self, q: &Q) -> Result<u64> {
        crate::plans::note(q);
        match self {
            Conn::Pg(tx) => bind_pg(q).execute(&mut **tx).await.map(|r| r.rows_affected()).map_err(db_err),
            Conn::PgPool(pool) => bind_pg(q).execute(&*pool).await.map(|r| r.rows_affected()).map_err(db_err),
            Conn::LiteWrite(w) => lite_execute(w.conn(), q),
            Conn::LiteRead(r) => lite_execute(r.conn(), q),
        }
    }

    pub async fn fetch_all(&mut self, q: &Q) -> Result<Vec<Row>> {
        crate::plans::note(q);
        match self {
            Conn::Pg(tx) => {
                let rows = bind_pg(q).fetch_all(&mut **tx).await.map_err(db_err)?;
                rows.iter().map(pg_row).collect()
            }
            Conn::PgPool(pool) => {
                let rows = bind_pg(q).fetch_all(&*pool).await.map_err(db_err)?;
                rows.iter().map(pg_row).collect()
            }
            Conn::LiteWrite(w) => lite_fetch(w.conn(), q),
            Conn::LiteRead(r) => lite_fetch(r.conn(), q),
        }
    }

    pub async fn commit(self) -> Result<()> {
        match self {
            Conn::Pg(tx) => tx.commit().await.map_err(db_err),
            Conn::PgPool(_) => Ok(()),
            Conn::LiteWrite(w) => w.commit().await,
            Conn::LiteRead(r) => r.finish(),
        }
    }
}

pub(crate) fn bind_pg(q: &Q) -> sqlx::query::Query<'_, Postgres, PgArguments> {
    let mut query = sqlx::query(&q.sql);
    for a in &q.args {
        query = match a {
            Arg::Int(v) => query.bind(*v),
            Arg::Str(v) => query.bind(v.as_deref()),
        };
    }
    query
}

/// Decodes a PostgreSQL row into the neutral row: integer columns (`INT2/4/8`) as integers,
/// everything else as text.
fn pg_row(r: &PgRow) -> Result<Row> {
    let names: Arc<[String]> = r.columns().iter().map(|c| c.name().to_owned()).collect();
    let mut cells = Vec::with_capacity(names.len());
    for (i, col) in r.columns().iter().enumerate() {
        let cell = match col.type_info().name() {
            "INT8" => r.try_get::<Option<i64>, _>(i).map_err(db_err)?.map_or(Cell::Null, Cell::Int),
            "INT4" => r.try_get::<Option<i32>, _>(i).map_err(db_err)?.map_or(Cell::Null, |v| Cell::Int(i64::from(v))),
            "INT2" => r.try_get::<Option<i16>, _>(i).map_err(db_err)?.map_or(Cell::Null, |v| Cell::Int(i64::from(v))),
            _ => r.try_get::<Option<String>, _>(i).map_err(db_err)?.map_or(Cell::Null, Cell::Text),
        };
        cells.push(cell);
    }
    Ok(Row { names, cells })
}

pub(crate) fn lite_err(e: rusqlite::Error) -> CoreError {
    if let rusqlite::Error::SqliteFailure(f, _) = &e {
        // SQLITE_CONSTRAINT_UNIQUE and SQLITE_CONSTRAINT_PRIMARYKEY.
        if f.extended_code == 2067 || f.extended_code == 1555 {
            return crate::unique_conflict();
        }
        // Busy or locked past the busy timeout, an I/O failure, a full disk, a file that cannot
        // be opened or written: the database is there but cannot answer now (503, retry).
        use rusqlite::ErrorCode as C;
        if matches!(
            f.code,
            C::DatabaseBusy | C::DatabaseLocked | C::SystemIoFailure | C::DiskFull | C::CannotOpen | C::ReadOnly | C::OutOfMemory
        ) {
            return CoreError::unavailable(format!("database: {e}"));
        }
    }
    CoreError::internal(format!("database: {e}"))
}

/// SQLite reads `$n` as a name; `?n` is the explicit index the arguments expect.
fn lite_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

fn lite_bind(stmt: &mut rusqlite::CachedStatement<'_>, q: &Q) -> Result<()> {
    for (i, a) in q.args.iter().enumerate() {
        match a {
            Arg::Int(v) => stmt.raw_bind_parameter(i + 1, v),
            Arg::Str(v) => stmt.raw_bind_parameter(i + 1, v),
        }
        .map_err(lite_err)?;
    }
    Ok(())
}

pub(crate) fn lite_execute(conn: &rusqlite::Connection, q: &Q) -> Result<u64> {
    let mut stmt = conn.prepare_cached(&lite_sql(&q.sql)).map_err(lite_err)?;
    lite_bind(&mut stmt, q)?;
    stmt.raw_execute().map(|n| n as u64).map_err(lite_err)
}

pub(crate) fn lite_fetch(conn: &rusqlite::Connection, q: &Q) -> Result<Vec<Row>> {
    let mut stmt = conn.prepare_cached(&lite_sql(&q.sql)).map_err(lite_err)?;
    lite_bind(&mut stmt, q)?;
    let names: Arc<[String]> = stmt.column_names().iter().map(|s| (*s).to_owned()).collect();
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(lite_err)? {
        let mut cells = Vec::with_capacity(names.len());
        for i in 0..names.len() {
            cells.push(match r.get_ref(i).map_err(lite_err)? {
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

#[cfg(test)]
mod tests {
    #[test]
    fn numbered_placeholders_become_explicit_indexes() {
        assert_eq!(super::lite_sql("UPDATE t SET a = $2 WHERE id = $1 AND b < $12"), "UPDATE t SET a = ?2 WHERE id = ?1 AND b < ?12");
        assert_eq!(super::lite_sql("SELECT '$' || x"), "SELECT '$' || x");
    }
}
