//! strata's background loops, run inside `strata serve`. Each loop calls a step function that a
//! test can call once on its own; the loop only adds the cadence and the shutdown.
#![forbid(unsafe_code)]

mod pool;
mod sender;

pub use pool::{MAX_UNRECORDED, SendBounds, spawn_sender};
pub use sender::HttpSender;

use std::future::Future;
use std::time::Duration;

use std::sync::Arc;

use strata_core::Strata;
use strata_core::store::Wake;
use strata_core::telemetry::background_failure;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

/// How often each loop runs.
#[derive(Clone, Debug)]
pub struct Cadence {
    pub key_usage_flush: Duration,
    /// Writing queued rejections to the audit log (also as soon as a batch's worth waits, when
    /// `wake_on_commit`).
    pub rejections_flush: Duration,
    pub idempotency_prune: Duration,
    /// Reservation expiry and period rollover.
    pub ledger: Duration,
    /// Ending content jobs and publishing scheduled posts.
    pub scheduler: Duration,
    /// Turning events into deliveries and sending them: the poll behind the wake-up on commit
    /// (deliveries coming due on the retry ladder are found by it).
    pub webhooks: Duration,
    /// Deleting webhook history past its retention period.
    pub retention: Duration,
    /// Whether the webhook dispatcher and sender also run as soon as a commit wrote their work
    /// (tests that step workers by hand turn this off).
    pub wake_on_commit: bool,
}

impl Default for Cadence {
    fn default() -> Self {
        Self {
            key_usage_flush: Duration::from_secs(5),
            rejections_flush: Duration::from_millis(500),
            idempotency_prune: Duration::from_secs(600),
            ledger: Duration::from_secs(30),
            scheduler: Duration::from_secs(1),
            webhooks: Duration::from_secs(1),
            retention: Duration::from_secs(300),
            wake_on_commit: true,
        }
    }
}

/// Writes the batched `lastUsedAt` stamps.
pub async fn flush_key_usage(strata: &Strata) -> usize {
    step("flush key usage", strata.flush_key_usage()).await
}

/// Writes the queued rejections to the audit log.
pub async fn flush_rejections(strata: &Strata) -> usize {
    step("flush rejections to the audit log", strata.flush_rejections()).await
}

/// Deletes idempotency records past their 24 h retention.
pub async fn prune_idempotency(strata: &Strata) -> u64 {
    step("prune idempotency records", strata.prune_idempotency()).await
}

/// Releases reservations past their timeout.
pub async fn expire_reservations(strata: &Strata) -> usize {
    step("expire reservations", strata.expire_reservations()).await
}

/// Rolls wallets into the current monthly period (expiring unused included credits).
pub async fn roll_over_periods(strata: &Strata) -> usize {
    step("roll wallets over into the new period", strata.roll_over_periods()).await
}

/// Ends content jobs whose time has come (settling their credits).
pub async fn advance_jobs(strata: &Strata) -> usize {
    step("advance jobs", strata.advance_jobs()).await
}

/// Publishes scheduled posts whose time has come (a suspended org's wait).
pub async fn publish_due_posts(strata: &Strata) -> usize {
    step("publish scheduled posts", strata.publish_due_posts()).await
}

/// Turns outbox events into deliveries.
pub async fn dispatch_events(strata: &Strata) -> usize {
    step("dispatch events", strata.dispatch_events()).await
}

/// Sends due deliveries.
pub async fn send_deliveries(strata: &Strata, sender: &dyn strata_core::service::WebhookSender) -> usize {
    step("send deliveries", strata.send_deliveries(sender)).await
}

/// Deletes terminal deliveries, their attempts and dispatched events past the retention period.
pub async fn purge_webhook_history(strata: &Strata) -> strata_core::service::Purged {
    step("purge webhook history", strata.purge_webhook_history()).await
}

/// Runs one step of background work: a failure is logged with its cause (the one way workers
/// report one, `background_failure`) and counts as nothing done; the next step tries again.
async fn step<T: Default>(what: &str, work: impl Future<Output = strata_core::Result<T>>) -> T {
    work.await.unwrap_or_else(|e| {
        background_failure(what, None, &e);
        T::default()
    })
}

/// Starts the webhook dispatcher and sender loops (see `spawn_sender`), with an HTTP sender
/// whose attempts time out after the configured request timeout.
pub fn spawn_webhooks(strata: &Strata, cadence: &Cadence, shutdown: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    let strata = &strata.for_workers();
    let c = &strata.config;
    let timeout = Duration::from_millis(u64::try_from(c.webhook_timeout_ms).unwrap_or(10_000));
    let sender = Arc::new(HttpSender::with_timeout(c.allow_private_webhooks, c.dev_mode, timeout));
    let bounds = SendBounds {
        concurrency: c.webhook_concurrency.max(1),
        per_endpoint: c.webhook_endpoint_concurrency.max(1),
        unrecorded: MAX_UNRECORDED,
    };
    let wake = |kind| cadence.wake_on_commit.then(|| strata.store.wakeup(kind));
    let dispatcher = spawn_loop_woken("webhook_dispatcher", cadence.webhooks, wake(Wake::Events), shutdown.clone(), {
        let s = strata.clone();
        move || {
            let s = s.clone();
            async move {
                // Full batches mean more is waiting: keep going.
                while dispatch_events(&s).await >= 500 {}
            }
        }
    });
    let sender = spawn_sender(strata.clone(), sender, bounds, cadence.webhooks, wake(Wake::Deliveries), shutdown);
    vec![dispatcher, sender]
}

/// Starts every loop; they stop when `shutdown` turns true, after one last step.
pub fn spawn_all(strata: &Strata, cadence: &Cadence, shutdown: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    let mut loops = spawn_webhooks(strata, cadence, shutdown.clone());
    let strata = &strata.for_workers();
    loops.extend([
        spawn_loop("key_usage_flush", cadence.key_usage_flush, shutdown.clone(), {
            let s = strata.clone();
            move || {
                let s = s.clone();
                async move {
                    flush_key_usage(&s).await;
                }
            }
        }),
        // On a fixed cadence, never woken early: the queue's capacity per interval bounds what a
        // flood of rejections writes (see strata_core::service::rejections).
        spawn_loop("rejections_flush", cadence.rejections_flush, shutdown.clone(), {
            let s = strata.clone();
            move || {
                let s = s.clone();
                async move {
                    flush_rejections(&s).await;
                }
            }
        }),
        spawn_loop("idempotency_prune", cadence.idempotency_prune, shutdown.clone(), {
            let s = strata.clone();
            move || {
                let s = s.clone();
                async move {
                    prune_idempotency(&s).await;
                }
            }
        }),
        spawn_loop("scheduler", cadence.scheduler, shutdown.clone(), {
            let s = strata.clone();
            move || {
                let s = s.clone();
                async move {
                    advance_jobs(&s).await;
                    publish_due_posts(&s).await;
                }
            }
        }),
        spawn_loop("webhook_retention", cadence.retention, shutdown.clone(), {
            let s = strata.clone();
            move || {
                let s = s.clone();
                async move {
                    purge_webhook_history(&s).await;
                }
            }
        }),
        spawn_loop("ledger", cadence.ledger, shutdown, {
            let s = strata.clone();
            move || {
                let s = s.clone();
                async move {
                    expire_reservations(&s).await;
                    roll_over_periods(&s).await;
                }
            }
        }),
    ]);
    loops
}

fn spawn_loop<F, Fut>(name: &'static str, every: Duration, shutdown: watch::Receiver<bool>, step: F) -> JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    spawn_loop_woken(name, every, None, shutdown, step)
}

/// A loop that also steps as soon as `wake` is notified.
fn spawn_loop_woken<F, Fut>(
    name: &'static str,
    every: Duration,
    wake: Option<Arc<Notify>>,
    mut shutdown: watch::Receiver<bool>,
    step: F,
) -> JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        // Without a wake-up, one that is never notified.
        let wake = wake.unwrap_or_default();
        // The first step comes one period after start, not at once: start-up stays quick, and a
        // test's manual clock is never raced by a step it did not ask for.
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let span = || tracing::info_span!("worker", worker = name);
            tokio::select! {
                _ = tick.tick() => step().instrument(span()).await,
                _ = wake.notified() => step().instrument(span()).await,
                _ = shutdown.changed() => {
                    step().instrument(span()).await;
                    tracing::debug!(worker = name, "stopped");
                    return;
                }
            }
        }
    })
}
