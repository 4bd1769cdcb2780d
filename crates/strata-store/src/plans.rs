//! Query plans of the statements a workload ran, for the test that keeps hot paths indexed: it
//! records every statement the store runs (`start_recording`), drives the hot routes, then asks
//! the database how it would run each distinct statement (`explain_recorded`) and fails on a
//! scan of a table (`scanned_tables`). Recording costs one relaxed atomic load per statement
//! when off.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use strata_core::error::{CoreError, Result};

use crate::Backend;
use crate::error::db_err;
use crate::query::{Arg, Q};

static RECORDING: AtomicBool = AtomicBool::new(false);
static RECORDED: Mutex<Vec<(String, Vec<Arg>)>> = Mutex::new(Vec::new());

/// Starts recording every statement this process runs through a store (clearing earlier ones).
pub fn start_recording() {
    if let Ok(mut r) = RECORDED.lock() {
        r.clear();
    }
    RECORDING.store(true, Ordering::SeqCst);
}

/// Notes a statement about to run, when recording.
pub(crate) fn note(q: &Q) {
    if RECORDING.load(Ordering::Relaxed)
        && let Ok(mut r) = RECORDED.lock()
        && !r.iter().any(|(sql, _)| *sql == q.sql)
    {
        r.push((q.sql.clone(), q.args.clone()));
    }
}

/// One distinct statement and the plan the database would run it with (one line a node).
#[derive(Clone, Debug)]
pub struct Plan {
    pub sql: String,
    pub plan: Vec<String>,
}

/// Stops recording and explains each distinct recorded statement, with the arguments it first
/// ran with, on `backend`: PostgreSQL's `EXPLAIN` with `enable_seqscan = off` (so a sequential
/// scan in the plan means no index can serve the statement) after an `ANALYZE` (so the planner
/// weighs the indexes by the data the workload left, as it would on a live database), SQLite's
/// `EXPLAIN QUERY PLAN`.
pub async fn explain_recorded(backend: &Backend) -> Result<Vec<Plan>> {
    RECORDING.store(false, Ordering::SeqCst);
    let recorded = RECORDED.lock().map(|r| r.clone()).unwrap_or_default();
    let mut plans = Vec::with_capacity(recorded.len());
    match backend {
        Backend::Postgres { url } => {
            use sqlx::{Connection, Executor, Row};
            let mut conn = sqlx::PgConnection::connect(url).await.map_err(db_err)?;
            conn.execute("ANALYZE").await.map_err(db_err)?;
            conn.execute("SET enable_seqscan = off").await.map_err(db_err)?;
            for (sql, args) in recorded {
                let q = Q { sql: format!("EXPLAIN {sql}"), args };
                let rows = crate::pg::bind_pg(&q).fetch_all(&mut conn).await.map_err(db_err)?;
                let plan = rows.iter().map(|r| r.try_get::<String, _>(0).map_err(db_err)).collect::<Result<_>>()?;
                plans.push(Plan { sql, plan });
            }
        }
        Backend::Sqlite { dir } => {
            let conn = rusqlite::Connection::open(dir.join("strata.db")).map_err(crate::error::lite_err)?;
            for (sql, args) in recorded {
                let q = Q { sql: format!("EXPLAIN QUERY PLAN {sql}"), args };
                let rows = crate::lite::lite_fetch(&conn, &q)?;
                let plan = rows.iter().map(|r| r.text("detail")).collect::<Result<_>>()?;
                plans.push(Plan { sql, plan });
            }
        }
    }
    if plans.is_empty() {
        return Err(CoreError::internal("no statement was recorded"));
    }
    Ok(plans)
}

/// The tables a plan reads whole: PostgreSQL's `Seq Scan on t`, SQLite's `SCAN t` (with or
/// without an index: a full index scan grows with the table too). A subquery's rows, a
/// constant row or the rows of a `WITH` list the statement itself made (SQLite's
/// `CO-ROUTINE x` / `MATERIALIZE x`) are not tables.
pub fn scanned_tables(plan: &Plan) -> Vec<String> {
    let made: Vec<&str> = plan
        .plan
        .iter()
        .filter_map(|l| {
            let l = l.trim_start();
            l.strip_prefix("CO-ROUTINE ").or_else(|| l.strip_prefix("MATERIALIZE ")).and_then(|r| r.split_whitespace().next())
        })
        .collect();
    let mut out = Vec::new();
    for line in &plan.plan {
        let line = line.trim_start_matches([' ', '-', '>']);
        let table = line.strip_prefix("Seq Scan on ").or_else(|| line.strip_prefix("SCAN "));
        if let Some(rest) = table {
            let name = rest.split_whitespace().next().unwrap_or_default();
            if !name.is_empty() && name != "CONSTANT" && !name.starts_with('(') && !made.contains(&name) {
                out.push(name.to_owned());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(lines: &[&str]) -> Plan {
        Plan { sql: String::new(), plan: lines.iter().map(|l| (*l).to_owned()).collect() }
    }

    #[test]
    fn whole_table_reads_are_found_and_indexed_ones_are_not() {
        let pg = plan(&[
            "Nested Loop  (cost=0.57..16.62 rows=1 width=8)",
            "  ->  Index Scan using api_keys_keyid_key on api_keys k  (cost=0.28..8.29 rows=1 width=8)",
            "  ->  Seq Scan on wallets w  (cost=10000000000.00..10000000001.01 rows=1 width=8)",
            "Values Scan on \"*VALUES*\"  (cost=0.00..0.01 rows=1 width=8)",
        ]);
        assert_eq!(scanned_tables(&pg), ["wallets"]);
        let lite = plan(&[
            "SEARCH k USING INDEX sqlite_autoindex_api_keys_2 (keyid=?)",
            "SCAN organizations",
            "SCAN CONSTANT ROW",
            "SCAN (subquery-1)",
        ]);
        assert_eq!(scanned_tables(&lite), ["organizations"]);
        assert_eq!(scanned_tables(&plan(&["SCAN t USING INDEX t_seq"])), ["t"]);
        let with = plan(&["CO-ROUTINE buckets", "SCAN CONSTANT ROW", "SCAN buckets", "SEARCH e USING INDEX e_time (org_id=?)"]);
        assert!(scanned_tables(&with).is_empty());
    }
}
