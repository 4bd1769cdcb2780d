//! Usage reports: `GET /v1/credits/usage` and `GET /v1/organizations/:orgId/credits/usage`, as
//! JSON (one item per bucket) or, with `Accept: text/csv`, as CSV (one line per bucket and
//! project).

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use strata_core::clock::Timestamp;
use strata_core::error::CoreError;
use strata_core::id::{OrgId, ProjectId};
use strata_core::service::UsageQuery;
use strata_core::usage::{Granularity, UsageReport, UsageSums};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::HttpResult;
use crate::extract::{Auth, Id};
use crate::params::OrgPath;
use crate::write::json_response;

/// The query of both usage routes (parsed strictly, and read by the OpenAPI document).
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct UsageParams {
    /// From this instant (RFC 3339 ending in `Z`); default: the start of the current period.
    #[param(value_type = Option<Timestamp>)]
    since: Option<String>,
    /// Until this instant (RFC 3339 ending in `Z`); default: now.
    #[param(value_type = Option<Timestamp>)]
    until: Option<String>,
    /// `day` (default) or `month`: buckets aligned to UTC days or calendar months.
    #[param(pattern = "^(day|month)$")]
    granularity: Option<String>,
    /// Only this project's movements.
    #[param(value_type = Option<ProjectId>)]
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

/// A usage report: one item per bucket, oldest first, every bucket present (zeros where nothing
/// moved).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = UsageReport)]
struct ReportView {
    organization_id: OrgId,
    granularity: &'static str,
    since: Timestamp,
    until: Timestamp,
    items: Vec<BucketView>,
}

/// One bucket: a UTC day or month, clipped to the report's `since` and `until`.
#[derive(Serialize, ToSchema)]
#[schema(as = UsageBucket)]
struct BucketView {
    start: Timestamp,
    end: Timestamp,
    #[serde(flatten)]
    sums: UsageSums,
}

/// Report the caller's usage.
///
/// Credits used, refunded, allocated and refilled per UTC day or month, computed in the database
/// (for rebilling). With `Accept: text/csv`, the same as CSV: `start,end,projectId,used,refunded,allocated,refilled`,
/// one line per bucket and project (org-level movements with an empty `projectId`).
#[utoipa::path(get, path = "/v1/credits/usage", tag = "Credits", operation_id = "getUsage",
    security(("bearer" = ["credits:read"])), params(UsageParams),
    responses((status = 200, description = "The usage report.", content(
        (ReportView = "application/json"),
        (String = "text/csv", example = "start,end,projectId,used,refunded,allocated,refilled\n2026-06-01T00:00:00.000Z,2026-06-02T00:00:00.000Z,,200,0,5000,0\n")))))]
pub async fn own(State(app): State<AppState>, caller: Auth<UsageParams>, headers: HeaderMap) -> HttpResult {
    let (org, report) = app.strata.usage_report(&caller, None, &caller.query.parse()?).await?;
    render(org, &report, &headers)
}

/// Report a child's usage.
///
/// As the caller's own report, for a direct child; another org's is 404.
#[utoipa::path(get, path = "/v1/organizations/{orgId}/credits/usage", tag = "Credits", operation_id = "getChildUsage",
    security(("bearer" = ["org:admin"])), params(OrgPath, UsageParams),
    responses((status = 200, description = "The child's usage report.", content(
        (ReportView = "application/json"),
        (String = "text/csv")))))]
pub async fn child(State(app): State<AppState>, caller: Auth<UsageParams>, Id(org): Id<OrgId>, headers: HeaderMap) -> HttpResult {
    let (org, report) = app.strata.usage_report(&caller, Some(org), &caller.query.parse()?).await?;
    render(org, &report, &headers)
}

/// CSV when the client asks for `text/csv`, JSON otherwise.
fn render(org: OrgId, report: &UsageReport, headers: &HeaderMap) -> HttpResult {
    let wants_csv = headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|range| {
        let media = range.split(';').next().unwrap_or("").trim();
        media.eq_ignore_ascii_case("text/csv")
    });
    if wants_csv {
        let mut resp = Response::new(Body::from(csv(report)));
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
        return Ok(resp);
    }
    let view = ReportView {
        organization_id: org,
        granularity: report.granularity.as_str(),
        since: report.since,
        until: report.until,
        items: report.totals().into_iter().map(|(b, sums)| BucketView { start: b.start, end: b.end, sums }).collect(),
    };
    json_response(StatusCode::OK, &view)
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
