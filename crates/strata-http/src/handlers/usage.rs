//! Usage reports: `GET /v1/credits/usage` and `GET /v1/organizations/:orgId/credits/usage`, as
//! JSON (one item per bucket) or, with `Accept: text/csv`, as CSV (one line per bucket and
//! project).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use strata_core::clock::Timestamp;
use strata_core::error::CoreError;
use strata_core::id::{OrgId, ProjectId};
use strata_core::idempotency::Reply;
use strata_core::service::UsageQuery;
use strata_core::usage::{Granularity, UsageReport, UsageSums};

use crate::AppState;
use crate::error::HttpResult;
use crate::extract::Auth;
use crate::write::reply_response;

/// The query of both usage routes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UsageParams {
    /// RFC 3339 ending in `Z`; default: the start of the current period.
    since: Option<String>,
    /// RFC 3339 ending in `Z`; default: now.
    until: Option<String>,
    /// `day` (default) or `month`.
    granularity: Option<String>,
    project_id: Option<String>,
}

impl UsageParams {
    fn parse(&self) -> Result<UsageQuery, CoreError> {
        let granularity = match self.granularity.as_deref() {
            None => Granularity::Day,
            Some(g) => Granularity::parse(g).ok_or_else(|| CoreError::validation("granularity", "must be day or month"))?,
        };
        Ok(UsageQuery {
            since: self.since.as_deref().map(|s| Timestamp::parse_query(s, "since")).transpose()?,
            until: self.until.as_deref().map(|s| Timestamp::parse_query(s, "until")).transpose()?,
            granularity,
            project_id: self.project_id.as_deref().map(|p| ProjectId::parse_field(p, "projectId")).transpose()?,
        })
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReportView {
    organization_id: OrgId,
    granularity: &'static str,
    since: Timestamp,
    until: Timestamp,
    items: Vec<BucketView>,
}

#[derive(Serialize)]
struct BucketView {
    start: Timestamp,
    end: Timestamp,
    #[serde(flatten)]
    sums: UsageSums,
}

/// `GET /v1/credits/usage`.
pub async fn own(State(app): State<AppState>, caller: Auth<UsageParams>, headers: HeaderMap) -> HttpResult {
    let (org, report) = app.strata.usage_report(&caller, None, &caller.query.parse()?).await?;
    Ok(render(org, &report, &headers))
}

/// `GET /v1/organizations/:orgId/credits/usage`.
pub async fn child(State(app): State<AppState>, caller: Auth<UsageParams>, Path(org): Path<String>, headers: HeaderMap) -> HttpResult {
    let org = OrgId::parse_field(&org, "orgId")?;
    let (org, report) = app.strata.usage_report(&caller, Some(org), &caller.query.parse()?).await?;
    Ok(render(org, &report, &headers))
}

/// CSV when the client asks for `text/csv`, JSON otherwise.
fn render(org: OrgId, report: &UsageReport, headers: &HeaderMap) -> Response {
    let wants_csv = headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|range| {
        let media = range.split(';').next().unwrap_or("").trim();
        media.eq_ignore_ascii_case("text/csv")
    });
    if wants_csv {
        let mut resp = Response::new(Body::from(csv(report)));
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
        return resp;
    }
    let view = ReportView {
        organization_id: org,
        granularity: report.granularity.as_str(),
        since: report.since,
        until: report.until,
        items: report.totals().into_iter().map(|(b, sums)| BucketView { start: b.start, end: b.end, sums }).collect(),
    };
    reply_response(Reply::json(200, &view))
}

/// The report as CSV: a header line, then one line per bucket and project (`UsageReport::lines`).
/// Every field is a timestamp, an id or an integer, so none needs quoting.
fn csv(report: &UsageReport) -> String {
    let mut out = String::from("start,end,projectId,used,refunded,allocated,refilled\n");
    for (b, project, s) in report.lines() {
        let project = project.map(|p| p.to_string()).unwrap_or_default();
        out.push_str(&format!("{},{},{project},{},{},{},{}\n", b.start, b.end, s.used, s.refunded, s.allocated, s.refilled));
    }
    out
}
