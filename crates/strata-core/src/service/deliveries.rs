//! Webhook deliveries as a partner sees them (CONTRACT §6): the list, one delivery with its
//! attempt history, replays, recovering an endpoint after an outage, and the retention sweep.

use serde::Serialize;
use serde_json::{Value, json};

use super::webhooks::{endpoint_in, endpoint_to_change};
use super::{Caller, Strata};
use crate::clock::Timestamp;
use crate::cursor::{Page, PageRequest};
use crate::error::{CoreError, Result};
use crate::event::{Event, EventType};
use crate::id::{DeliveryId, EndpointId, EventId};
use crate::idempotency::IdemClaim;
use crate::scope::Scope;
use crate::store::Tx;
use crate::webhook::{Delivery, DeliveryAttempt, DeliveryStatus, delivery_body};

/// Attempts shown with a delivery, newest first.
const ATTEMPTS_SHOWN: u32 = 100;
/// Rows deleted per retention transaction, and transactions per sweep step.
const PURGE_BATCH: u32 = 500;
const PURGE_BATCHES_PER_STEP: usize = 20;

/// The delivery object: `{id, endpointId, eventId, eventType, status, attempts (a count),
/// nextRetryAt, deliveredAt, abandonedAt, lastResponseStatus, lastResponseAt, lastErrorMessage,
/// createdAt}`.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    #[serde(flatten)]
    delivery: DeliveryFields,
    /// How many attempts were made.
    attempts: i64,
}

/// `GET /v1/webhook-deliveries/:deliveryId`: the delivery object whose `attempts` lists its
/// newest 100 attempts, newest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveryDetail {
    #[serde(flatten)]
    delivery: DeliveryFields,
    /// The newest 100 attempts, newest first.
    attempts: Vec<AttemptView>,
}

/// What every view of a delivery shows.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryFields {
    id: DeliveryId,
    endpoint_id: EndpointId,
    event_id: EventId,
    #[schema(value_type = crate::event::EventType)]
    event_type: &'static str,
    #[schema(value_type = DeliveryStatus)]
    status: &'static str,
    next_retry_at: Option<Timestamp>,
    delivered_at: Option<Timestamp>,
    abandoned_at: Option<Timestamp>,
    last_response_status: Option<i64>,
    last_response_at: Option<Timestamp>,
    last_error_message: Option<String>,
    created_at: Timestamp,
}

impl From<&Delivery> for DeliveryFields {
    fn from(d: &Delivery) -> Self {
        Self {
            id: d.id,
            endpoint_id: d.endpoint_id,
            event_id: d.event_id,
            event_type: d.event_type.as_str(),
            status: d.status.as_str(),
            next_retry_at: d.next_retry_at,
            delivered_at: d.delivered_at,
            abandoned_at: d.abandoned_at,
            last_response_status: d.last_response_status,
            last_response_at: d.last_response_at,
            last_error_message: d.last_error.clone(),
            created_at: d.created_at,
        }
    }
}

impl From<&Delivery> for DeliveryView {
    fn from(d: &Delivery) -> Self {
        Self { delivery: DeliveryFields::from(d), attempts: d.attempts }
    }
}

/// One attempt: `{attemptedAt, durationMs, responseStatus, errorMessage, responseBodyExcerpt}`
/// (`responseStatus` null when the endpoint never answered; the excerpt is at most 1 KiB).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptView {
    attempted_at: Timestamp,
    duration_ms: i64,
    response_status: Option<i64>,
    error_message: Option<String>,
    response_body_excerpt: Option<String>,
}

impl From<&DeliveryAttempt> for AttemptView {
    fn from(a: &DeliveryAttempt) -> Self {
        Self {
            attempted_at: a.attempted_at,
            duration_ms: a.duration_ms,
            response_status: a.response_status,
            error_message: a.error.clone(),
            response_body_excerpt: a.response_body_excerpt.clone(),
        }
    }
}

/// The answer to a replay: the new delivery of the same event under a new event id.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplayView {
    original_delivery_id: DeliveryId,
    replay_delivery_id: DeliveryId,
    scheduled_at: Option<Timestamp>,
}

/// The answer to a recover: how many deliveries went back on the ladder.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecoverView {
    endpoint_id: EndpointId,
    requeued: u64,
}

/// What a retention sweep deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Purged {
    pub deliveries: u64,
    pub events: u64,
    /// Pending deliveries abandoned because they can never be sent (their endpoint was deleted,
    /// or it is an archived org's own endpoint).
    pub orphans: u64,
}

/// Loads a delivery to an endpoint of `org`, or 404 (another org's delivery is not found).
async fn delivery_in(tx: &mut dyn Tx, org: crate::id::OrgId, id: DeliveryId) -> Result<Delivery> {
    let d = tx.delivery(id).await?.ok_or(CoreError::not_found("delivery"))?;
    match endpoint_in(tx, org, d.endpoint_id).await {
        Err(CoreError::NotFound { .. }) => Err(CoreError::not_found("delivery")),
        other => other.map(|_| d),
    }
}

impl Strata {
    /// `GET /v1/webhook-endpoints/:id/deliveries` (`webhooks:read`): newest first; 404 for an
    /// endpoint of another org.
    pub async fn list_deliveries(
        &self,
        caller: &Caller,
        id: EndpointId,
        event_types: &[EventType],
        statuses: &[DeliveryStatus],
        page: PageRequest,
    ) -> Result<Page<DeliveryView>> {
        caller.require(Scope::WebhooksRead).await?;
        let mut tx = self.store.read().await?;
        let e = endpoint_in(tx.as_mut(), caller.org_id(), id).await?;
        let rows = tx.list_deliveries(e.id, event_types, statuses, page).await?;
        tx.commit().await?;
        Ok(Page::from_rows(rows, page, &self.secret, "deliveries", |d| d.seq).map(|d| DeliveryView::from(&d)))
    }

    /// `GET /v1/webhook-deliveries/:deliveryId` (`webhooks:read`): the delivery object whose
    /// `attempts` is the list of its newest 100 attempts (`AttemptView`), newest first; 404 when
    /// its endpoint is not the caller's org's (the same rule as the delivery list).
    #[tracing::instrument(level = "debug", name = "service.get_delivery", skip_all)]
    pub async fn get_delivery(&self, caller: &Caller, id: DeliveryId) -> Result<DeliveryDetail> {
        caller.require(Scope::WebhooksRead).await?;
        let mut tx = self.store.read().await?;
        let d = delivery_in(tx.as_mut(), caller.org_id(), id).await?;
        let attempts = tx.list_attempts(d.id, ATTEMPTS_SHOWN).await?;
        tx.commit().await?;
        let body = DeliveryDetail { delivery: DeliveryFields::from(&d), attempts: attempts.iter().map(AttemptView::from).collect() };
        Ok(body)
    }

    /// `POST /v1/webhook-deliveries/:id/replay` (`webhooks:write`): the same event under a new
    /// event id, with `replayOf`, to the same endpoint only. The new event is written to the
    /// event log already dispatched (so `GET /v1/events/:eventId` answers it and the dispatcher
    /// never fans it out), with the original's `createdAt` and data. 404 as for `get_delivery`.
    #[tracing::instrument(level = "debug", name = "service.replay_delivery", skip_all)]
    pub async fn replay_delivery(&self, caller: &Caller, id: DeliveryId, idem: Option<&IdemClaim>) -> Result<ReplayView> {
        caller.require(Scope::WebhooksWrite).await?;
        caller.ensure_writable()?;
        // Lock the endpoint before the delivery. The sender never holds both (it records outcomes
        // and endpoint health in separate transactions), but an endpoint's deletion takes them in
        // this order too. A delivery never changes endpoint, so an unlocked read finds which one
        // to lock.
        let mut read = self.store.read().await?;
        let endpoint_id = delivery_in(read.as_mut(), caller.org_id(), id).await?.endpoint_id;
        read.commit().await?;
        let mut tx = self.write_as(caller).await?;
        let e = endpoint_in(tx.as_mut(), caller.org_id(), endpoint_id).await?;
        let original = delivery_in(tx.as_mut(), caller.org_id(), id).await?;
        let stored: Value = serde_json::from_str(&original.body).map_err(|e| CoreError::internal(format!("stored delivery body: {e}")))?;
        let source = tx.event(original.event_org_id, original.event_id).await?;
        let created_at = source
            .as_ref()
            .map(|ev| ev.created_at)
            .or_else(|| stored["createdAt"].as_str().and_then(|t| Timestamp::parse_query(t, "createdAt").ok()))
            .unwrap_or_else(|| self.now());
        let event = Event {
            id: EventId::at(self.now().millis()),
            event_type: original.event_type,
            org_id: original.event_org_id,
            project_id: source.and_then(|ev| ev.project_id),
            data: stored["data"].clone(),
            created_at,
            seq: 0,
        };
        tx.insert_event(&event).await?;
        tx.mark_dispatched(&[event.id]).await?;
        let replay_of = original.event_id.to_string();
        let body = delivery_body(&event.id.to_string(), event.event_type, created_at, &event.data, Some(&replay_of));
        let d = self.new_delivery(&e, event.org_id, event.id, event.event_type, body, Some(original.id));
        tx.insert_deliveries(std::slice::from_ref(&d)).await?;
        tx.insert_audit(&self.audit_entry(
            caller.stamp(),
            "webhook_delivery.replayed",
            json!({ "deliveryId": original.id, "replayDeliveryId": d.id }),
        ))
        .await?;
        let reply = ReplayView { original_delivery_id: original.id, replay_delivery_id: d.id, scheduled_at: d.next_retry_at };
        self.finish(tx, idem, reply).await
    }

    /// `POST /v1/webhook-endpoints/:id/recover` `{since}` (`webhooks:write`; a firehose
    /// endpoint needs `org:admin`): puts the endpoint's failed and abandoned deliveries created
    /// at or after `since` back on the first rung of the ladder, attempt count restarted (their
    /// attempt history stays). 200 `{endpointId, requeued}`; 404 for another org's endpoint.
    pub async fn recover_endpoint(
        &self,
        caller: &Caller,
        id: EndpointId,
        since: Timestamp,
        idem: Option<&IdemClaim>,
    ) -> Result<RecoverView> {
        caller.require(Scope::WebhooksWrite).await?;
        caller.ensure_writable()?;
        self.guard_firehose(caller, id).await?;
        let mut tx = self.write_as(caller).await?;
        let e = endpoint_to_change(tx.as_mut(), caller, id).await?;
        let due = self.now().plus_ms(self.config.retry_ladder_ms.first().copied().unwrap_or(0));
        let requeued = tx.requeue_deliveries(e.id, since, due).await?;
        tx.insert_audit(&self.audit_entry(
            caller.stamp(),
            "webhook_endpoint.recovered",
            json!({ "endpointId": e.id, "since": since, "requeued": requeued }),
        ))
        .await?;
        self.finish(tx, idem, RecoverView { endpoint_id: e.id, requeued }).await
    }

    /// The retention worker's step: deletes deliveries in a terminal status (with their
    /// attempts) and dispatched events created more than the retention period ago, 500 rows per
    /// transaction and at most 20 transactions of each per step. An event with a pending
    /// delivery is never deleted.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn purge_webhook_history(&self) -> Result<Purged> {
        let before = self.now().plus_ms(-self.config.webhook_retention_ms);
        let mut done = Purged::default();
        let mut tx = self.store.write().await?;
        done.orphans = tx.abandon_orphaned_deliveries(self.now(), PURGE_BATCH).await?;
        tx.commit().await?;
        // Deliveries first: an event goes once it has no pending delivery.
        for events in [false, true] {
            for _ in 0..PURGE_BATCHES_PER_STEP {
                let mut tx = self.store.write().await?;
                let n = if events { tx.purge_events(before, PURGE_BATCH).await? } else { tx.purge_deliveries(before, PURGE_BATCH).await? };
                tx.commit().await?;
                *(if events { &mut done.events } else { &mut done.deliveries }) += n;
                if n < u64::from(PURGE_BATCH) {
                    break;
                }
            }
        }
        Ok(done)
    }
}
