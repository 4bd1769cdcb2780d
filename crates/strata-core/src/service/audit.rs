//! Reading the audit log, and recording entries that stand alone (rejections and denials, which
//! have no other effect to share a transaction with).

use super::{Caller, Strata};
use crate::audit::{AuditEntry, AuditFilter};
use crate::cursor::{Page, PageRequest};
use crate::error::Result;
use crate::scope::Scope;
use crate::wire::AuditView;

impl Strata {
    /// Writes one entry in its own transaction. A failure is logged, not returned: the request it
    /// describes has already been answered.
    pub(crate) async fn record_audit(&self, entry: AuditEntry) {
        let result = async {
            let mut tx = self.store.write().await?;
            tx.insert_audit(&entry).await?;
            tx.commit().await
        }
        .await;
        if let Err(e) = result {
            let request_id = entry.request_id.map(tracing::field::display);
            tracing::error!(error = %crate::error::chain(&e), event_type = %entry.event_type, request_id, "could not write an audit entry");
        }
    }

    /// `GET /v1/audit-log`: the acting org's log, newest first.
    #[tracing::instrument(level = "debug", name = "service.list_audit", skip_all)]
    pub async fn list_audit(&self, caller: &Caller, filter: &AuditFilter, page: PageRequest) -> Result<Page<AuditView>> {
        caller.require(Scope::AuditRead).await?;
        let mut tx = self.store.read().await?;
        let rows = tx.list_audit(caller.org_id(), filter, page).await?;
        tx.commit().await?;
        Ok(Page::from_rows(rows, page, &self.secret, "audit", |a| a.seq).map(|a| AuditView::from(&a)))
    }
}
