//! Draining the outbox: the dispatcher step turns events into deliveries, and the sender's three
//! steps claim due deliveries (with a lease), make the signed HTTP attempts, and record their
//! outcomes (attempt history, the retry ladder, auto-pause). The workers crate runs them
//! concurrently; `send_deliveries` runs them once, in order, for tests.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use async_trait::async_trait;
use serde_json::json;

use super::webhooks::SECRET_PURPOSE;
use super::{Stamp, Strata};
use crate::clock::Timestamp;
use crate::error::Result;
use crate::event::{Event, EventType};
use crate::id::{DeliveryId, EndpointId, EventId, OrgId};
use crate::store::{Owner, Tx};
use crate::webhook::{
    Delivery, DeliveryAttempt, DeliveryStatus, Endpoint, EndpointScope, EndpointStatus, delivery_body, signature_headers,
};

/// How far past the request timeout a claim's lease runs: a crash mid-attempt is retried this
/// long after the attempt would have timed out, and a slow recording never lets a second sender
/// take a delivery whose attempt may still be running.
const LEASE_MARGIN_MS: i64 = 5_000;
/// Deliveries `send_deliveries` claims in one step.
const STEP_CLAIM: usize = 200;

/// How an HTTP attempt ended.
#[derive(Debug, Clone)]
pub enum SendOutcome {
    /// The endpoint answered: its status and the first KiB of its body.
    Response { status: u16, body_excerpt: String },
    /// Timeout or network error.
    Error(String),
}

/// Posts a signed delivery. The workers crate implements it over HTTP; tests may fake it.
#[async_trait]
pub trait WebhookSender: Send + Sync {
    async fn post(&self, url: &str, headers: Vec<(String, String)>, body: String) -> SendOutcome;
}

/// Room to start attempts now: `free` slots overall, at most `per_endpoint` in flight to one
/// endpoint, given those already in flight.
#[derive(Clone, Copy, Debug)]
pub struct SendSlots<'a> {
    pub free: usize,
    pub per_endpoint: usize,
    pub in_flight: &'a HashMap<EndpointId, usize>,
}

/// A claimed delivery, signed, ready to post.
#[derive(Debug)]
pub struct PreparedAttempt {
    /// The delivery as claimed (its `attempts` counts this attempt).
    pub delivery: Delivery,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub started_at: Timestamp,
}

/// An attempt made, to record.
#[derive(Debug)]
pub struct AttemptResult {
    /// The delivery as claimed (its body is not kept).
    pub delivery: Delivery,
    pub started_at: Timestamp,
    pub duration_ms: i64,
    pub outcome: SendOutcome,
}

impl Strata {
    /// The dispatcher's step: turns outbox events into one delivery per matching endpoint (the
    /// event org's own endpoints, and its parent's firehoses). Returns how many events. A batch
    /// shares one transaction (the dispatcher must not cost the writer a commit per event); if
    /// the batch fails, its events are retried one by one so a bad one cannot hold up the rest.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn dispatch_events(&self) -> Result<usize> {
        let mut tx = self.store.read().await?;
        let events = tx.undispatched_events(500).await?;
        crate::telemetry::outbox_lag(self.now(), events.first().map(|e| e.created_at));
        // Each org's endpoints and status, read before the write opens and without locking the
        // org: on PostgreSQL allocations hold their child org's row while they queue for the
        // parent's wallet, and a dispatcher waiting on those rows would fall seconds behind. An
        // org archived between this read and the commit may so get deliveries to its own
        // endpoints; the sender never sends those (see `due_deliveries`).
        let mut targets = HashMap::new();
        for event in &events {
            if let Entry::Vacant(slot) = targets.entry(event.org_id) {
                slot.insert(Self::targets_of(tx.as_mut(), event.org_id).await?);
            }
        }
        tx.commit().await?;
        if events.is_empty() {
            return Ok(0);
        }
        let batch = async {
            let mut tx = self.store.write().await?;
            self.dispatch_in(tx.as_mut(), &events, &mut targets).await?;
            tx.commit().await
        };
        if batch.await.is_ok() {
            return Ok(events.len());
        }
        let mut done = 0;
        for event in &events {
            let one = async {
                let mut tx = self.store.write().await?;
                self.dispatch_in(tx.as_mut(), std::slice::from_ref(event), &mut HashMap::new()).await?;
                tx.commit().await
            };
            match one.await {
                Ok(()) => done += 1,
                Err(e) => crate::telemetry::background_failure("dispatch an event", Some(&event.id), &e),
            }
        }
        Ok(done)
    }

    /// Whether an org is archived, and the endpoints that may receive its events.
    async fn targets_of(tx: &mut dyn Tx, org_id: OrgId) -> Result<(bool, Vec<Endpoint>)> {
        let org = tx.org_shared(Owner::System, org_id).await?;
        let archived = org.as_ref().is_some_and(|o| o.status == crate::org::OrgStatus::Archived);
        let parent = org.and_then(|o| o.parent_id);
        Ok((archived, tx.endpoints_for_event(org_id, parent).await?))
    }

    /// Dispatches events; `targets` caches each org's candidate endpoints. An archived org's
    /// events reach only its parent's firehose (its own endpoints are done).
    async fn dispatch_in(&self, tx: &mut dyn Tx, events: &[Event], targets: &mut HashMap<OrgId, (bool, Vec<Endpoint>)>) -> Result<()> {
        // Claim the events first, so two dispatchers never both deliver one.
        let ids: Vec<EventId> = events.iter().map(|e| e.id).collect();
        let mine: HashSet<EventId> = tx.mark_dispatched(&ids).await?.into_iter().collect();
        let mut deliveries = Vec::new();
        for event in events.iter().filter(|e| mine.contains(&e.id) && e.event_type != EventType::TestPing) {
            if let Entry::Vacant(slot) = targets.entry(event.org_id) {
                slot.insert(Self::targets_of(tx, event.org_id).await?);
            }
            let Some((archived, candidates)) = targets.get(&event.org_id) else { continue };
            let body = delivery_body(&event.id.to_string(), event.event_type, event.created_at, &event.data, None);
            for e in candidates {
                let own = e.org_id == event.org_id;
                let reaches = ((own && !archived) || (!own && e.scope == EndpointScope::AllChildren)) && event.seq > e.start_seq;
                if reaches && e.wants(event.event_type, event.project_id) {
                    deliveries.push(self.new_delivery(e, event.org_id, event.id, event.event_type, body.clone(), None));
                }
            }
        }
        tx.insert_deliveries(&deliveries).await
    }

    /// Releases the claims of attempts cut short at shutdown (`(delivery, attempts)` as claimed):
    /// they become due now, for whichever sender runs next. Returns how many were released.
    pub async fn release_deliveries(&self, claims: &[(DeliveryId, i64)]) -> Result<u64> {
        if claims.is_empty() {
            return Ok(0);
        }
        let mut tx = self.store.write().await?;
        let n = tx.release_deliveries(claims, self.now()).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// The sender's first step: claims due deliveries that can start now (within `slots`,
    /// oldest due first) and signs them with every active secret of their endpoint. The claim
    /// counts the attempt and leases the delivery from now until a little past the request
    /// timeout, so no other sender takes it meanwhile and a crash retries it when the lease ends.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn claim_deliveries(&self, slots: SendSlots<'_>) -> Result<Vec<PreparedAttempt>> {
        if slots.free == 0 {
            return Ok(Vec::new());
        }
        let now = self.now();
        let full: Vec<EndpointId> = slots.in_flight.iter().filter(|(_, n)| **n >= slots.per_endpoint).map(|(e, _)| *e).collect();
        let window = u32::try_from(slots.free.saturating_mul(2).saturating_add(32).min(1_000)).unwrap_or(1_000);
        let mut tx = self.store.read().await?;
        let due = tx.due_deliveries(now, &full, window).await?;
        let mut taken: HashMap<EndpointId, usize> = HashMap::new();
        let mut ids = Vec::new();
        for (d, e) in due {
            if ids.len() == slots.free {
                break;
            }
            let n = taken.entry(e).or_insert_with(|| slots.in_flight.get(&e).copied().unwrap_or(0));
            if *n < slots.per_endpoint {
                *n += 1;
                ids.push((d, e));
            }
        }
        let mut endpoints: HashMap<EndpointId, (Endpoint, Vec<String>)> = HashMap::new();
        for e in taken.keys() {
            let Some(endpoint) = tx.endpoint(*e).await?.filter(|x| x.status == EndpointStatus::Active) else { continue };
            match self.signing_secrets(&endpoint, now) {
                Ok(secrets) => {
                    endpoints.insert(*e, (endpoint, secrets));
                }
                Err(err) => crate::telemetry::background_failure("open an endpoint's signing secret", Some(e), &err),
            }
        }
        tx.commit().await?;
        let ids: Vec<_> = ids.into_iter().filter(|(_, e)| endpoints.contains_key(e)).map(|(d, _)| d).collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.store.write().await?;
        let claimed = tx.claim_deliveries(&ids, now, now.plus_ms(self.config.webhook_timeout_ms + LEASE_MARGIN_MS)).await?;
        tx.commit().await?;
        let t = now.unix_seconds();
        Ok(claimed
            .into_iter()
            .filter_map(|d| {
                let (endpoint, secrets) = endpoints.get(&d.endpoint_id)?;
                let event_id = d.event_id.to_string();
                let (stripe, standard) = signature_headers(secrets, &event_id, t, d.body.as_bytes());
                let headers = vec![
                    ("Content-Type".to_owned(), "application/json".to_owned()),
                    ("User-Agent".to_owned(), "strata-webhooks/1".to_owned()),
                    ("X-Layers-Event-Id".to_owned(), event_id.clone()),
                    ("X-Layers-Signature".to_owned(), stripe),
                    ("webhook-id".to_owned(), event_id),
                    ("webhook-timestamp".to_owned(), t.to_string()),
                    ("webhook-signature".to_owned(), standard),
                ];
                Some(PreparedAttempt { url: endpoint.url.clone(), headers, started_at: now, delivery: d })
            })
            .collect())
    }

    /// The secrets that sign for an endpoint at `now`: the current one, and the previous one
    /// during a rotation's overlap (skipped, not fatal, if it will not open).
    fn signing_secrets(&self, endpoint: &Endpoint, now: Timestamp) -> Result<Vec<String>> {
        let mut secrets = vec![String::from_utf8(self.secret.open(SECRET_PURPOSE, &endpoint.secret_sealed)?).unwrap_or_default()];
        if let (Some(prev), Some(until)) = (&endpoint.previous_secret_sealed, endpoint.previous_expires_at)
            && now < until
            && let Ok(p) = self.secret.open(SECRET_PURPOSE, prev)
        {
            secrets.push(String::from_utf8(p).unwrap_or_default());
        }
        Ok(secrets)
    }

    /// The sender's second step: makes one HTTP attempt (no database work).
    #[tracing::instrument(level = "debug", skip_all, fields(delivery_id = %p.delivery.id, attempt = p.delivery.attempts))]
    pub async fn attempt(&self, sender: &dyn WebhookSender, mut p: PreparedAttempt) -> AttemptResult {
        let started = Instant::now();
        let body = std::mem::take(&mut p.delivery.body);
        let in_flight = crate::telemetry::AttemptInFlight::start();
        let outcome = sender.post(&p.url, p.headers, body).await;
        drop(in_flight);
        let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let result = AttemptResult { delivery: p.delivery, started_at: p.started_at, duration_ms, outcome };
        crate::telemetry::attempt_made(&result);
        result
    }

    /// The sender's third step: records a batch of attempts in one transaction. Each attempt
    /// joins the delivery's history; its outcome is written only if its claim still holds the
    /// delivery (it was not abandoned or re-claimed meanwhile): 2xx delivered; timeout, network
    /// error, 5xx, 408 and 429 back on the ladder (or failed past its end); other 4xx failed at
    /// once. Returns how many outcomes were written.
    ///
    /// The endpoints' health (counts, auto-pause at the 20th failure in a row) follows in a
    /// second, short transaction that locks only the endpoint rows: a firehose endpoint is one
    /// row every batch touches, and holding it for the whole batch made it the queue every
    /// recorder and replay waited in (docs/reliability.md). A crash between the two commits
    /// loses at most one batch's count, never an outcome.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn record_attempts(&self, results: &[AttemptResult]) -> Result<usize> {
        if results.is_empty() {
            return Ok(0);
        }
        let now = self.now();
        let mut tx = self.store.write().await?;
        let mut written = 0;
        let mut attempts = Vec::with_capacity(results.len());
        // Outcomes each endpoint saw, in the order they were recorded.
        let mut health: BTreeMap<EndpointId, Vec<bool>> = BTreeMap::new();
        // Deliveries are locked in id order, as an archive abandoning them locks them.
        let mut results: Vec<&AttemptResult> = results.iter().collect();
        results.sort_by_key(|r| r.delivery.id);
        for r in results {
            let (status, error, retryable, excerpt) = match &r.outcome {
                SendOutcome::Response { status, body_excerpt } => {
                    let ok = (200..300).contains(status);
                    let error = (!ok).then(|| format!("the endpoint answered {status}"));
                    (Some(i64::from(*status)), error, *status >= 500 || *status == 408 || *status == 429, Some(body_excerpt.clone()))
                }
                SendOutcome::Error(e) => (None, Some(e.clone()), true, None),
            };
            attempts.push(DeliveryAttempt {
                delivery_id: r.delivery.id,
                attempted_at: r.started_at,
                duration_ms: r.duration_ms,
                response_status: status,
                error: error.clone(),
                response_body_excerpt: excerpt,
                seq: 0,
            });
            let mut d = r.delivery.clone();
            d.last_response_status = status;
            d.last_response_at = status.map(|_| now);
            d.last_error = error.clone();
            if error.is_none() {
                d.status = DeliveryStatus::Delivered;
                d.delivered_at = Some(now);
                d.next_retry_at = None;
            } else {
                match usize::try_from(d.attempts).ok().and_then(|a| self.config.retry_ladder_ms.get(a)) {
                    Some(wait) if retryable => {
                        d.status = DeliveryStatus::Pending;
                        d.next_retry_at = Some(now.plus_ms(*wait));
                    }
                    _ => {
                        d.status = DeliveryStatus::Failed;
                        d.next_retry_at = None;
                    }
                }
            }
            if !tx.finish_delivery(&d).await? {
                continue;
            }
            written += 1;
            crate::telemetry::delivery_recorded(d.status);
            health.entry(d.endpoint_id).or_default().push(error.is_none());
        }
        tx.insert_attempts(&attempts).await?;
        tx.commit().await?;
        if let Err(e) = self.record_endpoint_health(&health, now).await {
            crate::telemetry::background_failure("record endpoint health", None, &e);
        }
        Ok(written)
    }

    /// Applies a batch's outcomes to each endpoint's health, locking the endpoints in id order
    /// (two recorders never deadlock) and nothing else; an auto-pause is audited with it.
    async fn record_endpoint_health(&self, health: &BTreeMap<EndpointId, Vec<bool>>, now: Timestamp) -> Result<()> {
        if health.is_empty() {
            return Ok(());
        }
        let mut tx = self.store.write().await?;
        for (id, outcomes) in health {
            let Some(mut endpoint) = tx.endpoint(*id).await? else { continue };
            if endpoint.record_outcomes(outcomes, now) {
                let stamp = Stamp::system().in_org(endpoint.org_id);
                tx.insert_audit(&self.audit_entry(stamp, "webhook_endpoint.auto_paused", json!({ "endpointId": endpoint.id }))).await?;
            }
            tx.update_endpoint(&endpoint).await?;
        }
        tx.commit().await
    }

    /// One sender step, for tests and tools: claims up to 200 due deliveries (no per-endpoint
    /// bound), makes their attempts one after another, and records them. Returns how many
    /// attempts were made.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn send_deliveries(&self, sender: &dyn WebhookSender) -> Result<usize> {
        let none = HashMap::new();
        let claimed = self.claim_deliveries(SendSlots { free: STEP_CLAIM, per_endpoint: usize::MAX, in_flight: &none }).await?;
        let mut results = Vec::with_capacity(claimed.len());
        for p in claimed {
            results.push(self.attempt(sender, p).await);
        }
        self.record_attempts(&results).await?;
        Ok(results.len())
    }
}
