//! The usage report's one grouped read: an org's ledger entries summed per bucket and project.
//! The buckets come in as a `VALUES` list, joined to the entries by time through the
//! `credit_events (org_id, created_at)` index, so the database reads only the report's range.

use strata_core::error::Result;
use strata_core::id::{OrgId, ProjectId};
use strata_core::usage::{Bucket, UsageRow, UsageSums};

use crate::Dialect;
use crate::conn::Conn;
use crate::query::Q;

/// A ledger entry's `metadata.trigger` (`manual`, `auto_refill`, `archive_reclaim` on allocation
/// entries), read as text in each dialect.
fn trigger(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => "json_extract(e.metadata, '$.trigger')",
        Dialect::Postgres => "(e.metadata::jsonb ->> 'trigger')",
    }
}

pub(crate) async fn report(
    conn: &mut Conn,
    dialect: Dialect,
    org: OrgId,
    buckets: &[Bucket],
    project: Option<ProjectId>,
) -> Result<Vec<UsageRow>> {
    if buckets.is_empty() {
        return Ok(Vec::new());
    }
    let trigger = trigger(dialect);
    let mut q = Q::new("WITH buckets (n, lo, hi) AS (VALUES ");
    for (i, b) in buckets.iter().enumerate() {
        let n = i64::try_from(i).unwrap_or(i64::MAX);
        q = q
            .push(if i == 0 { "(" } else { ", (" })
            .and_int("$?", n)
            .and_int(", $?", b.start.millis())
            .and_int(", $?", b.end.millis())
            .push(")");
    }
    // SUM of BIGINT is NUMERIC on PostgreSQL: cast back to an integer.
    q = q.push(&format!(
        ") SELECT buckets.n AS bucket, e.project_id AS project_id, \
         CAST(SUM(CASE WHEN e.event_type = 'usage' THEN -e.credits ELSE 0 END) AS BIGINT) AS used, \
         CAST(SUM(CASE WHEN e.event_type = 'refund' THEN e.credits ELSE 0 END) AS BIGINT) AS refunded, \
         CAST(SUM(CASE WHEN e.event_type = 'allocation' AND {trigger} = 'manual' THEN e.credits ELSE 0 END) AS BIGINT) AS allocated, \
         CAST(SUM(CASE WHEN e.event_type = 'allocation' AND {trigger} = 'auto_refill' THEN e.credits ELSE 0 END) AS BIGINT) AS refilled \
         FROM buckets JOIN credit_events e ON e.created_at >= buckets.lo AND e.created_at < buckets.hi "
    ));
    q = q.and_str("WHERE e.org_id = $? AND e.event_type IN ('usage', 'refund', 'allocation')", &org.uuid_string());
    if let Some(p) = project {
        q = q.and_str(" AND e.project_id = $?", &p.uuid_string());
    }
    q = q.push(" GROUP BY buckets.n, e.project_id");
    let rows = q.fetch_all(conn).await?;
    rows.iter()
        .map(|r| {
            Ok(UsageRow {
                bucket: usize::try_from(r.int("bucket")?).unwrap_or(usize::MAX),
                project_id: r.opt_text("project_id")?.map(|p| ProjectId::from_stored(&p)).transpose()?,
                sums: UsageSums {
                    used: r.int("used")?,
                    refunded: r.int("refunded")?,
                    allocated: r.int("allocated")?,
                    refilled: r.int("refilled")?,
                },
            })
        })
        .collect()
}
