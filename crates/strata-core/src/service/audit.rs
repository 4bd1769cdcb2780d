//! Reading the audit log. Entries are written with the change they record; rejections, which
//! have no change to share a transaction with, are queued and written in batches (`rejections`).

use super::{Caller, Strata};
use crate::audit::AuditFilter;
use crate::cursor::{Page, PageRequest};
use crate::error::Result;
use crate::scope::Scope;
use crate::wire::AuditView;

impl Strata {
    /// Writes the rejections still queued before a read of the log, so a rejection is in the
    /// next read this process serves. A failure is logged, not returned: the read goes on with
    /// what is written (the entries stay queued for the flusher).
    pub(crate) async fn flush_before_read(&self) {
        if let Err(e) = self.flush_rejections().await {
            crate::telemetry::background_failure("flush rejections before an audit read", None, &e);
        }
    }

    /// `GET /v1/audit-log`: the acting org's log, newest first.
    #[tracing::instrument(level = "debug", name = "service.list_audit", skip_all)]
    pub async fn list_audit(&self, caller: &Caller, filter: &AuditFilter, page: PageRequest) -> Result<Page<AuditView>> {
        caller.require(Scope::AuditRead).await?;
        self.flush_before_read().await;
        let mut tx = self.store.read().await?;
        let rows = tx.list_audit(caller.org_id(), filter, page).await?;
        tx.commit().await?;
        Ok(Page::from_rows(rows, page, &self.secret, "audit", |a| a.seq).map(|a| AuditView::from(&a)))
    }
}
