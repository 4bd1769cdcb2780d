//! Usage reports for partners' rebilling (CONTRACT §3): an org's own report (`credits:read`) or
//! a direct child's (`org:admin`; anything else is 404), computed by one grouped read.

use super::tenancy::child_of;
use super::{Caller, Strata};
use crate::clock::Timestamp;
use crate::error::Result;
use crate::id::{OrgId, ProjectId};
use crate::scope::Scope;
use crate::usage::{Granularity, UsageReport, buckets};

/// What a usage report covers; `None` takes the contract's default.
#[derive(Clone, Debug)]
pub struct UsageQuery {
    /// Default: the start of the current period (the UTC calendar month).
    pub since: Option<Timestamp>,
    /// Default: now.
    pub until: Option<Timestamp>,
    pub granularity: Granularity,
    pub project_id: Option<ProjectId>,
}

impl Strata {
    /// `GET /v1/credits/usage` (own, `org: None`) or `GET /v1/organizations/:orgId/credits/usage`.
    /// Returns the org the report is of and the report. 422 when `until` is before `since` or
    /// the range holds too many buckets.
    #[tracing::instrument(level = "debug", name = "service.usage_report", skip_all)]
    pub async fn usage_report(&self, caller: &Caller, org: Option<OrgId>, q: &UsageQuery) -> Result<(OrgId, UsageReport)> {
        caller.require(if org.is_some() { Scope::OrgAdmin } else { Scope::CreditsRead }).await?;
        let now = self.now();
        let since = q.since.unwrap_or(now.month_bounds().0);
        let until = q.until.unwrap_or(now);
        let cut = buckets(since, until, q.granularity)?;
        let mut tx = self.store.read().await?;
        let target = match org {
            Some(id) => child_of(tx.as_mut(), caller.org_id(), id).await?.id,
            None => caller.org_id(),
        };
        let rows = tx.usage_report(target, &cut, q.project_id).await?;
        tx.commit().await?;
        Ok((target, UsageReport::new(since, until, q.granularity, cut, rows)))
    }
}
