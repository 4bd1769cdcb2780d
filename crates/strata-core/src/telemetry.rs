//! What strata measures and how it reports a failure nobody is waiting for. The metric names
//! live here, so every crate counts under the same name; counting goes through the `metrics`
//! facade, which costs next to nothing when no exporter is installed (tests, the command line).
//! No label ever holds a tenant value (org, key, project, endpoint or delivery id): label values
//! come from small fixed sets (route templates, reasons, kinds, outcomes).

use std::fmt::Display;

use crate::clock::Timestamp;
use crate::error::{CoreError, KillScope, chain};
use crate::service::{AttemptResult, SendOutcome};
use crate::webhook::DeliveryStatus;

/// Counter: requests answered, by `route` (the route template, `unmatched` for none), `method`
/// and `status`.
pub const HTTP_REQUESTS: &str = "strata_http_requests_total";
/// Histogram, seconds: time to answer a request, by `route` and `method`.
pub const HTTP_LATENCY: &str = "strata_http_request_duration_seconds";
/// Counter: requests refused at authentication, by `reason`.
pub const AUTH_FAILURES: &str = "strata_auth_failures_total";
/// Counter: requests refused by a rate limit, by endpoint `class` (`concurrent-jobs` for the
/// tier's cap on running jobs).
pub const RATE_LIMITED: &str = "strata_rate_limit_rejections_total";
/// Counter: rejections whose audit entry a full queue dropped (each drop is counted in the audit
/// log too, as `audit.rejections_dropped`).
pub const REJECTIONS_DROPPED: &str = "strata_audit_rejections_dropped_total";
/// Counter: writes answered from a stored reply (same Idempotency-Key, same request).
pub const IDEMPOTENT_REPLAYS: &str = "strata_idempotent_replays_total";
/// Counter: requests let through without a rate limit because the shared limiter (Redis) did not
/// answer (it fails open).
pub const RATE_LIMIT_FAIL_OPEN: &str = "strata_rate_limit_fail_open_total";
/// Counter: Idempotency-Key conflicts, by `reason` (`mismatch`: another request under the key;
/// `in_progress`: the first one has not finished).
pub const IDEMPOTENCY_CONFLICTS: &str = "strata_idempotency_conflicts_total";
/// Counter: ledger transfers committed, by `kind` (grant, purchase, included, allocation,
/// refill, reclaim, reservation, usage, expiry).
pub const LEDGER_TRANSFERS: &str = "strata_ledger_transfers_total";
/// Gauge, seconds: age of the oldest event waiting to be dispatched, as the dispatcher last saw
/// it (0 when none waits).
pub const OUTBOX_LAG: &str = "strata_outbox_lag_seconds";
/// Counter: webhook delivery attempts, by `outcome` (`success`, `http_4xx`, `http_5xx`,
/// `timeout`, `network_error`).
pub const WEBHOOK_ATTEMPTS: &str = "strata_webhook_attempts_total";
/// Counter: what recorded attempts made of their deliveries, by `outcome` (`delivered`,
/// `retrying`, `failed`).
pub const WEBHOOK_DELIVERIES: &str = "strata_webhook_deliveries_total";
/// Gauge: webhook attempts in flight (posted, no answer yet).
pub const WEBHOOK_IN_FLIGHT: &str = "strata_webhook_attempts_in_flight";
/// Gauge: database connections held, by `backend` and `pool`.
pub const DB_IN_USE: &str = "strata_db_connections_in_use";
/// Histogram, seconds: time waited for a database connection, by `backend` and `pool`.
pub const DB_ACQUIRE_WAIT: &str = "strata_db_acquire_wait_seconds";
/// Histogram, seconds: how long a database connection (or the group writer) was held once
/// taken, by `backend` and `pool`.
pub const DB_HOLD: &str = "strata_db_hold_seconds";
/// Histogram: write transactions committed together by one group commit (label `backend`).
pub const GROUP_COMMIT_BATCH: &str = "strata_group_commit_size";

/// Counts a refused authentication under its reason.
pub fn auth_failed(err: &CoreError) {
    let reason = match err {
        CoreError::Unauthenticated { reason } => reason,
        CoreError::KillSwitch { scope: KillScope::Key } => "key_killed",
        CoreError::KillSwitch { scope: KillScope::Organization } => "organization_cut_off",
        CoreError::NotFound { .. } => "acting_org_not_found",
        CoreError::Validation { .. } => "acting_org_malformed",
        _ => return,
    };
    metrics::counter!(AUTH_FAILURES, "reason" => reason).increment(1);
}

/// Counts a request refused by a rate limit of `class`.
pub(crate) fn rate_limited(class: &'static str) {
    metrics::counter!(RATE_LIMITED, "class" => class).increment(1);
}

/// Counts a rejection a full audit queue dropped.
pub(crate) fn rejection_dropped() {
    metrics::counter!(REJECTIONS_DROPPED).increment(1);
}

pub(crate) fn idempotent_replay() {
    metrics::counter!(IDEMPOTENT_REPLAYS).increment(1);
}

pub(crate) fn idempotency_conflict(in_progress: bool) {
    metrics::counter!(IDEMPOTENCY_CONFLICTS, "reason" => if in_progress { "in_progress" } else { "mismatch" }).increment(1);
}

/// Sets the outbox lag from the oldest waiting event's creation time (`None`: nothing waits).
pub(crate) fn outbox_lag(now: Timestamp, oldest: Option<Timestamp>) {
    let ms = oldest.map_or(0, |t| (now.millis() - t.millis()).max(0));
    metrics::gauge!(OUTBOX_LAG).set(ms as f64 / 1000.0);
}

/// Counts one webhook attempt made and logs it when it failed: the endpoint, the delivery, the
/// event, which attempt and the status or error. Never the URL, a header, a secret or the body.
pub(crate) fn attempt_made(r: &AttemptResult) {
    let outcome = match &r.outcome {
        SendOutcome::Response { status, .. } if (200..300).contains(status) => "success",
        SendOutcome::Response { status, .. } if *status >= 500 => "http_5xx",
        SendOutcome::Response { .. } => "http_4xx",
        SendOutcome::Error(e) if e == crate::webhook::TIMED_OUT => "timeout",
        SendOutcome::Error(_) => "network_error",
    };
    metrics::counter!(WEBHOOK_ATTEMPTS, "outcome" => outcome).increment(1);
    if outcome == "success" {
        return;
    }
    let d = &r.delivery;
    let (status, error) = match &r.outcome {
        SendOutcome::Response { status, .. } => (Some(*status), None),
        SendOutcome::Error(e) => (None, Some(e.as_str())),
    };
    tracing::warn!(
        endpoint_id = %d.endpoint_id,
        delivery_id = %d.id,
        event_id = %d.event_id,
        attempt = d.attempts,
        status,
        error,
        outcome,
        duration_ms = r.duration_ms,
        "webhook delivery attempt failed"
    );
}

/// Counts what a recorded attempt made of its delivery.
pub(crate) fn delivery_recorded(status: DeliveryStatus) {
    let outcome = match status {
        DeliveryStatus::Delivered => "delivered",
        DeliveryStatus::Failed => "failed",
        _ => "retrying",
    };
    metrics::counter!(WEBHOOK_DELIVERIES, "outcome" => outcome).increment(1);
}

/// Holds one webhook attempt in the in-flight gauge until dropped (however the attempt ends).
pub(crate) struct AttemptInFlight(());

impl AttemptInFlight {
    pub(crate) fn start() -> Self {
        metrics::gauge!(WEBHOOK_IN_FLIGHT).increment(1.0);
        Self(())
    }
}

impl Drop for AttemptInFlight {
    fn drop(&mut self) {
        metrics::gauge!(WEBHOOK_IN_FLIGHT).decrement(1.0);
    }
}

/// Logs a failure of background work that no caller will see: what was being done (`what`,
/// a phrase like "dispatch an event"), the item it was done to if any, the error with its chain
/// of causes, and for an internal error where it arose. The one way workers report a failure.
pub fn background_failure(what: &str, item: Option<&dyn Display>, err: &CoreError) {
    let location = err.as_internal().map(|i| tracing::field::display(i.location()));
    let item = item.map(tracing::field::display);
    tracing::error!(error = %chain(err), location, item, "could not {what}");
}
