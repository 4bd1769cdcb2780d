//! The webhook sender loop: many attempts in flight at once, under a global bound and a bound
//! per endpoint, so a slow or blackholed endpoint only ever holds its own slots. It claims only
//! what can start now (a free slot), makes each attempt in a task of its own, and hands the
//! outcomes to one recorder task that writes them in batches (one transaction per batch).
//!
//! The recorder paces the sender: at most `MAX_UNRECORDED` claims may wait for their outcome to
//! be written. An attempt frees its endpoint's slot when it ends, but its claim counts against
//! that bound until the recorder has written it. Without the bound, a recorder slowed by a busy
//! database falls ever further behind a sender that keeps claiming; the leases of claims whose
//! outcome is still queued run out, the next step sends them again, and the endpoint receives
//! most events twice while the backlog never drains (the long PostgreSQL chaos drill showed
//! 50,286 deliveries stuck in `delivering` and 30,831 duplicates before the bound).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use strata_core::Strata;
use strata_core::id::{DeliveryId, EndpointId};
use strata_core::service::{AttemptResult, SendSlots, WebhookSender};
use strata_core::telemetry::background_failure;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::{Id, JoinError, JoinHandle, JoinSet};

/// Outcomes written per recording transaction at most.
const RECORD_BATCH: usize = 512;
/// The default bound on claims whose outcome is not yet written (see the module): four
/// recording batches, which the recorder writes in a few transactions, well inside the shortest
/// lease (the attempt timeout plus 5 s).
pub const MAX_UNRECORDED: usize = 4 * RECORD_BATCH;
/// How long attempts still in flight at shutdown may finish before they are dropped (their
/// claims are released, so the next sender retries them at once).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Bounds of the sender loop.
#[derive(Clone, Copy, Debug)]
pub struct SendBounds {
    /// Attempts in flight at once, over all endpoints.
    pub concurrency: usize,
    /// Attempts in flight at once to one endpoint.
    pub per_endpoint: usize,
    /// Claims whose outcome the recorder has not yet written, at most (`MAX_UNRECORDED`).
    pub unrecorded: usize,
}

/// Starts the sender loop. It claims when woken (`wake`: a commit wrote deliveries), when an
/// attempt ends (a slot is free), and every `every` (retries coming due); it stops claiming when
/// `shutdown` turns true, lets attempts in flight finish for up to 2 s, records what finished,
/// releases the claims of the attempts it had to drop and returns.
pub fn spawn_sender(
    strata: Strata,
    sender: Arc<dyn WebhookSender>,
    bounds: SendBounds,
    every: Duration,
    wake: Option<Arc<Notify>>,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let (results, outcomes) = mpsc::unbounded_channel();
        let unrecorded = Arc::new(Semaphore::new(bounds.unrecorded.max(1)));
        let recorded = Arc::new(Notify::new());
        let recorder = tokio::spawn(record(strata.clone(), outcomes, recorded.clone()));
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut in_flight = InFlight::default();
        // The first poll comes one period after start (as in every loop: a test's manual clock is
        // never raced by a step it did not ask for).
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let wake = wake.unwrap_or_default();
        // Whether the last claim was held back by the bounds (so a freed slot has work waiting).
        let mut backlog = false;
        loop {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tick.tick() => {}
                // The recorder wrote a batch: claims held back by `MAX_UNRECORDED` may start.
                _ = recorded.notified(), if backlog => {}
                Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    in_flight.release(done);
                    if !backlog {
                        continue;
                    }
                }
                _ = shutdown.changed() => break,
            }
            // Claim until every slot is taken or nothing more can start now.
            loop {
                while let Some(done) = tasks.try_join_next_with_id() {
                    in_flight.release(done);
                }
                let free = bounds.concurrency.saturating_sub(tasks.len()).min(unrecorded.available_permits());
                if free == 0 {
                    backlog = true;
                    break;
                }
                let slots = SendSlots { free, per_endpoint: bounds.per_endpoint, in_flight: &in_flight.by_endpoint };
                let claimed = match strata.claim_deliveries(slots).await {
                    Ok(c) => c,
                    Err(e) => {
                        background_failure("claim deliveries", None, &e);
                        break;
                    }
                };
                let n = claimed.len();
                for p in claimed {
                    let claim = Claim { endpoint: p.delivery.endpoint_id, delivery: p.delivery.id, attempts: p.delivery.attempts };
                    // Only this loop takes permits, and it claimed no more than were available.
                    let permit = unrecorded.clone().try_acquire_owned().ok();
                    let (strata, sender, results) = (strata.clone(), sender.clone(), results.clone());
                    let task = tasks.spawn(async move {
                        let r = strata.attempt(sender.as_ref(), p).await;
                        // The recorder outlives every attempt task but the ones dropped at shutdown.
                        let _ = results.send((r, permit));
                    });
                    in_flight.take(task.id(), claim);
                }
                // Fewer than the free slots: all that was due and allowed is taken. Work may still
                // wait behind an endpoint's bound; a slot it frees then claims again.
                backlog = in_flight.by_endpoint.values().any(|n| *n >= bounds.per_endpoint) || unrecorded.available_permits() == 0;
                if n < free {
                    break;
                }
            }
        }
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while let Some(done) = tasks.join_next_with_id().await {
                in_flight.release(done);
            }
        })
        .await;
        tasks.abort_all();
        drop(results);
        let _ = recorder.await;
        // What is still held was cut short: due again now, for the next process.
        let cut: Vec<(DeliveryId, i64)> = in_flight.by_task.values().map(|c| (c.delivery, c.attempts)).collect();
        match strata.release_deliveries(&cut).await {
            Ok(n) if n > 0 => tracing::info!(worker = "webhook_sender", released = n, "released the claims of attempts cut short"),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, n = cut.len(), "could not release claims at shutdown; they are retried when their leases end")
            }
        }
        tracing::debug!(worker = "webhook_sender", "stopped");
    })
}

/// The delivery an attempt task holds, as claimed.
#[derive(Clone, Copy)]
struct Claim {
    endpoint: EndpointId,
    delivery: DeliveryId,
    /// The attempt count the claim set: a release only touches the delivery while this claim
    /// still holds it.
    attempts: i64,
}

/// Which claim (and so which endpoint's slot) each attempt task holds.
#[derive(Default)]
struct InFlight {
    by_task: HashMap<Id, Claim>,
    by_endpoint: HashMap<EndpointId, usize>,
}

impl InFlight {
    fn take(&mut self, task: Id, claim: Claim) {
        self.by_task.insert(task, claim);
        *self.by_endpoint.entry(claim.endpoint).or_default() += 1;
    }

    /// Frees the slot of a task that ended, however it ended.
    fn release(&mut self, done: Result<(Id, ()), JoinError>) {
        let task = match done {
            Ok((id, ())) => id,
            Err(e) => e.id(),
        };
        let Some(claim) = self.by_task.remove(&task) else { return };
        if let Some(n) = self.by_endpoint.get_mut(&claim.endpoint) {
            *n -= 1;
            if *n == 0 {
                self.by_endpoint.remove(&claim.endpoint);
            }
        }
    }
}

/// Writes outcomes as they come, in batches; a batch that fails is retried one outcome at a time
/// (an outcome that still fails is logged, and its delivery is retried when its lease ends).
/// Each outcome's permit is returned once it is written (or given up), and `recorded` wakes the
/// sender.
async fn record(
    strata: Strata,
    mut outcomes: mpsc::UnboundedReceiver<(AttemptResult, Option<OwnedSemaphorePermit>)>,
    recorded: Arc<Notify>,
) {
    let mut queued = Vec::with_capacity(RECORD_BATCH);
    while outcomes.recv_many(&mut queued, RECORD_BATCH).await > 0 {
        let (batch, permits): (Vec<AttemptResult>, Vec<Option<OwnedSemaphorePermit>>) = queued.drain(..).unzip();
        if let Err(e) = strata.record_attempts(&batch).await {
            tracing::warn!(error = %strata_core::error::chain(&e), n = batch.len(), "recording a batch of attempts failed; recording them one by one");
            for r in &batch {
                if let Err(e) = strata.record_attempts(std::slice::from_ref(r)).await {
                    background_failure("record an attempt", Some(&r.delivery.id), &e);
                }
            }
        }
        drop(permits);
        recorded.notify_one();
    }
}
