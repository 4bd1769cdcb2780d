//! Settings removal and the sealed columns, for the server-secret commands (`strata secret
//! export` and `rotate`): where each sealed value lives, paged in key order, and a
//! compare-and-set replacement so a value changed meanwhile is never overwritten.

use strata_core::error::Result;
use strata_core::store::{SealedColumn, SealedRow, SealedValue};

use crate::conn::Conn;
use crate::query::Q;

/// Table, key columns (a second one where the key has two parts) and sealed column of each
/// `SealedColumn`.
fn place(column: SealedColumn) -> (&'static str, &'static str, Option<&'static str>, &'static str) {
    match column {
        SealedColumn::IdempotentReply => ("idempotency_records", "api_key_id", Some("idem_key"), "body"),
        SealedColumn::EndpointSecret => ("webhook_endpoints", "id", None, "secret_sealed"),
        SealedColumn::EndpointPreviousSecret => ("webhook_endpoints", "id", None, "previous_secret"),
    }
}

pub(crate) async fn setting_remove(conn: &mut Conn, name: &str, value: &str) -> Result<bool> {
    let n = Q::new("DELETE FROM settings WHERE name = $1 AND value = $2").str(name).str(value).execute(conn).await?;
    Ok(n == 1)
}

pub(crate) async fn values(conn: &mut Conn, column: SealedColumn, after: Option<&SealedRow>, limit: u32) -> Result<Vec<SealedValue>> {
    let (table, k1, k2, col) = place(column);
    let (a1, a2) = after.map_or(("", ""), |(a, b)| (a.as_str(), b.as_str()));
    let q = match k2 {
        Some(k2) => Q::new(&format!(
            "SELECT {k1} AS k1, {k2} AS k2, {col} AS v FROM {table} \
             WHERE {col} IS NOT NULL AND ({k1} > $1 OR ({k1} = $1 AND {k2} > $2)) ORDER BY {k1}, {k2} LIMIT {limit}"
        ))
        .str(a1)
        .str(a2),
        None => {
            Q::new(&format!("SELECT {k1} AS k1, {col} AS v FROM {table} WHERE {col} IS NOT NULL AND {k1} > $1 ORDER BY {k1} LIMIT {limit}"))
                .str(a1)
        }
    };
    let rows = q.fetch_all(conn).await?;
    rows.iter()
        .map(|r| {
            let second = if k2.is_some() { r.text("k2")? } else { String::new() };
            Ok(SealedValue { row: (r.text("k1")?, second), sealed: r.text("v")? })
        })
        .collect()
}

pub(crate) async fn replace(conn: &mut Conn, column: SealedColumn, old: &SealedValue, new: &str) -> Result<bool> {
    let (table, k1, k2, col) = place(column);
    let q = match k2 {
        Some(k2) => Q::new(&format!("UPDATE {table} SET {col} = $1 WHERE {col} = $2 AND {k1} = $3 AND {k2} = $4")),
        None => Q::new(&format!("UPDATE {table} SET {col} = $1 WHERE {col} = $2 AND {k1} = $3")),
    };
    let q = q.str(new).str(&old.sealed).str(&old.row.0);
    let q = if k2.is_some() { q.str(&old.row.1) } else { q };
    let n = q.execute(conn).await?;
    Ok(n == 1)
}
