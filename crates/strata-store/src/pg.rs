//! PostgreSQL statements through sqlx's native driver: binding a `Q`'s typed arguments and
//! decoding a row into the neutral `Row` by column type: the code every statement a transaction
//! sends goes through. (Outside transactions: the pools, migrations and one-off checks are in
//! `pg_setup`, `LISTEN/NOTIFY` in `notify`, the group-commit lane's connection in `lane`.)

use std::sync::Arc;

use sqlx::postgres::{PgArguments, PgRow};
use sqlx::{Column, Postgres, Row as _, TypeInfo};
use strata_core::error::{CoreError, Result};

use crate::error::{db_err, db_failed};
use crate::query::{Arg, Cell, Q, Row};

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
pub(crate) fn pg_row(r: &PgRow) -> Result<Row> {
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

#[track_caller]
pub(crate) fn pg_failed(q: &Q, e: sqlx::Error) -> CoreError {
    db_failed(format!("database: {}", q.what()), e)
}
