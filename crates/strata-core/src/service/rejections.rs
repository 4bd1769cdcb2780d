//! Rejections (refused authentications, kill-switch and acting-org refusals, scope denials,
//! rate-limit hits) recorded off the request path (CONTRACT §7): the request answers at once and
//! its audit entry waits in a bounded queue that a background flusher writes every half second
//! in multi-row batches. When the queue is full the entry is dropped and counted, per org, and
//! the next flush audits each count as an `audit.rejections_dropped` entry. The queue's capacity
//! per flush is therefore also the most rejections written per flush interval: a flood of bad
//! keys costs a counter increment per request, never a durable write per request.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use serde_json::json;

use super::{Stamp, Strata};
use crate::audit::{Actor, AuditEntry};
use crate::error::Result;
use crate::id::OrgId;

/// How many rejections may wait for the flusher before more are dropped (and counted): with a
/// flush every 500 ms, at most 2,000 rejection entries a second are written.
pub const DEFAULT_REJECTION_QUEUE: usize = 1_000;
/// The audit event type that records how many rejections a full queue dropped, with data
/// `{ "dropped": n }`.
pub const REJECTIONS_DROPPED: &str = "audit.rejections_dropped";
/// The most entries one flush transaction writes.
const BATCH: usize = 500;

/// The queue: entries waiting, and what was dropped since the last flush, by org (`None`: a
/// key that does not exist, so no org).
pub(crate) struct RejectionQueue {
    capacity: usize,
    state: Mutex<Waiting>,
    /// One flush at a time: a flush before a read waits for one already writing what it took.
    flushing: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Waiting {
    entries: Vec<AuditEntry>,
    dropped: HashMap<Option<OrgId>, u64>,
}

impl RejectionQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        Self { capacity, state: Mutex::default(), flushing: tokio::sync::Mutex::new(()) }
    }

    /// Queues `entry`, or counts it dropped when the queue is full. Never waits.
    fn push(&self, entry: AuditEntry) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if st.entries.len() >= self.capacity {
            *st.dropped.entry(entry.org_id).or_default() += 1;
            crate::telemetry::rejection_dropped();
            return;
        }
        st.entries.push(entry);
    }

    /// Takes up to a batch of entries and every drop count.
    fn take(&self) -> (Vec<AuditEntry>, HashMap<Option<OrgId>, u64>) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let n = st.entries.len().min(BATCH);
        (st.entries.drain(..n).collect(), std::mem::take(&mut st.dropped))
    }

    /// Puts back what a failed flush took, in front of what came since; what no longer fits is
    /// counted dropped.
    fn put_back(&self, mut entries: Vec<AuditEntry>, dropped: HashMap<Option<OrgId>, u64>) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        entries.append(&mut st.entries);
        for e in entries.drain(self.capacity.min(entries.len())..) {
            *st.dropped.entry(e.org_id).or_default() += 1;
            crate::telemetry::rejection_dropped();
        }
        st.entries = entries;
        for (org, n) in dropped {
            *st.dropped.entry(org).or_default() += n;
        }
    }

    fn len(&self) -> usize {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).entries.len()
    }
}

impl Strata {
    /// Queues the audit entry of a rejection (never waits on the database).
    pub(crate) fn record_rejection(&self, stamp: Stamp, event_type: &str, data: serde_json::Value) {
        self.rejections.push(self.audit_entry(stamp, event_type, data));
    }

    /// Writes the queued rejections, a batch per transaction, and one `audit.rejections_dropped`
    /// entry per org whose rejections a full queue dropped. Writes at most what was queued when
    /// it started (a flood cannot keep it going). Returns how many entries it wrote; on a
    /// failed write what it took goes back in the queue and the error is returned.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn flush_rejections(&self) -> Result<usize> {
        let q = &self.rejections;
        let _turn = q.flushing.lock().await;
        let mut budget = q.len();
        let mut written = 0;
        loop {
            let (entries, dropped) = q.take();
            if entries.is_empty() && dropped.is_empty() {
                return Ok(written);
            }
            let taken = entries.len();
            let counts = dropped.iter().map(|(org, n)| {
                let stamp = Stamp { actor: Actor::System, request_id: None, org_id: *org, project_id: None, api_key_id: None };
                self.audit_entry(stamp, REJECTIONS_DROPPED, json!({ "dropped": n }))
            });
            let batch: Vec<AuditEntry> = entries.iter().cloned().chain(counts).collect();
            let result = async {
                let mut tx = self.store.write().await?;
                tx.insert_audits(&batch).await?;
                tx.commit().await
            }
            .await;
            if let Err(e) = result {
                q.put_back(entries, dropped);
                return Err(e);
            }
            written += batch.len();
            budget = budget.saturating_sub(taken);
            if budget == 0 {
                return Ok(written);
            }
        }
    }
}
