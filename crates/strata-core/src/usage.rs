//! Usage reports (CONTRACT §3, "Usage reports"): an org's ledger summed by UTC day or month for
//! rebilling. The buckets are cut here; the database sums the entries of each in one grouped
//! read (`Tx::usage_report`).

use serde::Serialize;

use crate::clock::{DAY_MS, Timestamp};
use crate::error::CoreError;
use crate::id::ProjectId;

/// How a report's range is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granularity {
    /// UTC calendar days.
    Day,
    /// UTC calendar months.
    Month,
}

impl Granularity {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "day" => Some(Self::Day),
            "month" => Some(Self::Month),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Month => "month",
        }
    }

    /// The most buckets one report may hold: a year of days, ten years of months.
    pub fn max_buckets(self) -> usize {
        match self {
            Self::Day => 366,
            Self::Month => 120,
        }
    }

    /// The start of the bucket after the one holding `t`.
    fn next_boundary(self, t: Timestamp) -> Timestamp {
        match self {
            Self::Day => Timestamp((t.millis().div_euclid(DAY_MS) + 1) * DAY_MS),
            Self::Month => t.month_bounds().1,
        }
    }
}

/// One bucket: `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    pub start: Timestamp,
    pub end: Timestamp,
}

/// Cuts `[since, until)` into buckets aligned to UTC days or months, the first and last clipped
/// to the range, oldest first (none when the range is empty). `until` before `since` is 422; a
/// range of more than `max_buckets` is 422 stating the maximum in `details.max`.
pub fn buckets(since: Timestamp, until: Timestamp, granularity: Granularity) -> Result<Vec<Bucket>, CoreError> {
    if until < since {
        return Err(CoreError::validation("until", "must not be before since"));
    }
    let max = granularity.max_buckets();
    let mut out = Vec::new();
    let mut start = since;
    while start < until {
        if out.len() == max {
            return Err(CoreError::Validation {
                field: Some("until".into()),
                message: format!("until: a {} report holds at most {max} buckets; narrow since/until", granularity.as_str()),
                code: None,
                bounds: Some(Box::new((1, i64::try_from(max).unwrap_or(i64::MAX)))),
            });
        }
        let end = granularity.next_boundary(start).min(until);
        out.push(Bucket { start, end });
        start = end;
    }
    Ok(out)
}

/// The sums of one bucket's ledger entries of one project (`None`: org-level movements).
/// `used` and `refunded` are positive; `allocated` and `refilled` are signed (in minus out).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsageRow {
    /// Index into the report's buckets.
    pub bucket: usize,
    pub project_id: Option<ProjectId>,
    pub sums: UsageSums,
}

/// What a report counts (CONTRACT §3): `used` credits consumed by usage, `refunded` credits
/// refunded, `allocated` credits moved in by manual allocation minus credits moved out (a
/// parent's outgoing allocations are negative), `refilled` credits received by auto-refill
/// minus those a parent's wallet funded. Grants, purchases, included credits, expiries and
/// archive reclaims are in none of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UsageSums {
    /// Credits consumed by usage.
    pub used: i64,
    /// Credits refunded.
    pub refunded: i64,
    /// Credits moved in by manual allocation minus those moved out (a parent's outgoing
    /// allocations are negative).
    pub allocated: i64,
    /// Credits received by auto-refill (a parent's report shows the refills it paid as negative).
    pub refilled: i64,
}

impl UsageSums {
    fn add(&mut self, o: &UsageSums) {
        self.used += o.used;
        self.refunded += o.refunded;
        self.allocated += o.allocated;
        self.refilled += o.refilled;
    }
}

/// A computed report: every bucket (zero-filled where nothing moved) with its per-project rows.
#[derive(Clone, Debug)]
pub struct UsageReport {
    pub since: Timestamp,
    pub until: Timestamp,
    pub granularity: Granularity,
    pub buckets: Vec<Bucket>,
    /// The database's rows, by bucket then project (org-level first).
    pub rows: Vec<UsageRow>,
}

impl UsageReport {
    pub fn new(since: Timestamp, until: Timestamp, granularity: Granularity, buckets: Vec<Bucket>, mut rows: Vec<UsageRow>) -> Self {
        rows.sort_by_key(|r| (r.bucket, r.project_id));
        Self { since, until, granularity, buckets, rows }
    }

    /// Each bucket with its totals over every project, oldest first; a bucket where nothing
    /// moved is all zeros.
    pub fn totals(&self) -> Vec<(Bucket, UsageSums)> {
        let mut out: Vec<(Bucket, UsageSums)> = self.buckets.iter().map(|b| (*b, UsageSums::default())).collect();
        for r in &self.rows {
            if let Some((_, sums)) = out.get_mut(r.bucket) {
                sums.add(&r.sums);
            }
        }
        out
    }

    /// One line per bucket and project, oldest first, org-level movements (no project) first; a
    /// bucket where nothing moved has one org-level line of zeros, so every bucket appears.
    pub fn lines(&self) -> Vec<(Bucket, Option<ProjectId>, UsageSums)> {
        let mut out = Vec::new();
        for (i, b) in self.buckets.iter().enumerate() {
            let mut any = false;
            for r in self.rows.iter().filter(|r| r.bucket == i) {
                out.push((*b, r.project_id, r.sums));
                any = true;
            }
            if !any {
                out.push((*b, None, UsageSums::default()));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        Timestamp::parse_query(s, "t").unwrap()
    }

    fn shown(b: &[Bucket]) -> Vec<(String, String)> {
        b.iter().map(|b| (b.start.to_rfc3339(), b.end.to_rfc3339())).collect()
    }

    #[test]
    fn day_buckets_align_to_utc_midnight_and_clip_to_the_range() {
        let b = buckets(t("2026-05-30T12:00:00Z"), t("2026-06-01T06:30:00Z"), Granularity::Day).unwrap();
        assert_eq!(
            shown(&b),
            [
                ("2026-05-30T12:00:00.000Z".into(), "2026-05-31T00:00:00.000Z".into()),
                ("2026-05-31T00:00:00.000Z".into(), "2026-06-01T00:00:00.000Z".into()),
                ("2026-06-01T00:00:00.000Z".into(), "2026-06-01T06:30:00.000Z".into()),
            ]
        );
    }

    #[test]
    fn month_buckets_cross_the_year_and_clip_to_the_range() {
        let b = buckets(t("2026-11-15T00:00:00Z"), t("2027-01-01T00:00:00Z"), Granularity::Month).unwrap();
        assert_eq!(
            shown(&b),
            [
                ("2026-11-15T00:00:00.000Z".into(), "2026-12-01T00:00:00.000Z".into()),
                ("2026-12-01T00:00:00.000Z".into(), "2027-01-01T00:00:00.000Z".into()),
            ]
        );
    }

    #[test]
    fn a_backwards_or_too_long_range_is_refused_naming_the_limit() {
        assert_eq!(buckets(t("2026-06-01T00:00:00Z"), t("2026-06-01T00:00:00Z"), Granularity::Day).unwrap(), []);
        assert_eq!(buckets(t("2026-06-01T00:00:01Z"), t("2026-06-01T00:00:00Z"), Granularity::Day).unwrap_err().status(), 422);
        assert_eq!(buckets(t("2026-01-01T00:00:00Z"), t("2027-01-02T00:00:00Z"), Granularity::Day).unwrap().len(), 366);
        let err = buckets(t("2026-01-01T00:00:00Z"), t("2027-01-02T00:00:01Z"), Granularity::Day).unwrap_err();
        assert_eq!((err.status(), err.details()["max"].as_i64()), (422, Some(366)));
        let err = buckets(t("2016-01-01T00:00:00Z"), t("2026-01-01T00:00:01Z"), Granularity::Month).unwrap_err();
        assert_eq!(err.details()["max"].as_i64(), Some(120));
    }

    #[test]
    fn every_bucket_appears_in_totals_and_lines() {
        let b = buckets(t("2026-06-01T00:00:00Z"), t("2026-06-04T00:00:00Z"), Granularity::Day).unwrap();
        let p = ProjectId::new();
        let rows = vec![
            UsageRow { bucket: 1, project_id: Some(p), sums: UsageSums { used: 120, ..Default::default() } },
            UsageRow { bucket: 1, project_id: None, sums: UsageSums { allocated: 500, used: 5, ..Default::default() } },
        ];
        let report = UsageReport::new(b[0].start, b[2].end, Granularity::Day, b, rows);
        let totals: Vec<UsageSums> = report.totals().into_iter().map(|(_, s)| s).collect();
        assert_eq!(totals[0], UsageSums::default());
        assert_eq!(totals[1], UsageSums { used: 125, allocated: 500, ..Default::default() });
        let lines: Vec<(usize, Option<ProjectId>)> =
            report.lines().iter().map(|(b, p, _)| (report.buckets.iter().position(|x| x == b).unwrap(), *p)).collect();
        assert_eq!(lines, [(0, None), (1, None), (1, Some(p)), (2, None)]);
    }
}
