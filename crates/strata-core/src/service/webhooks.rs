//! Webhooks: endpoints (with sealed signing secrets), the dispatcher that turns outbox events
//! into deliveries, and the sender step that signs and posts them with retries.

use std::collections::HashMap;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::{Value, json};

use super::tenancy::project_in;
use super::{Caller, Stamp, Strata};
use crate::clock::Timestamp;
use crate::cursor::{Page, PageRequest};
use crate::error::{CoreError, Result};
use crate::event::{Event, EventType};
use crate::id::{DeliveryId, EndpointId, EventId, OrgId, ProjectId};
use crate::idempotency::{IdemClaim, Reply};
use crate::metadata::{Metadata, MetadataPatch};
use crate::scope::Scope;
use crate::store::{Owner, Tx};
use crate::webhook::{
    AUTO_PAUSE_AFTER, Delivery, DeliveryStatus, Endpoint, EndpointScope, EndpointStatus, delivery_body, new_signing_secret,
    signature_headers,
};

pub(super) const SECRET_PURPOSE: &str = "webhook-secret";
/// How long a delivery attempt holds its claim; a crash mid-send retries after this.
const SEND_LEASE_MS: i64 = 60_000;
/// How long both secrets sign after a rotation.
const ROTATION_OVERLAP_MS: i64 = 24 * 60 * 60 * 1000;

#[derive(Debug, Clone)]
pub struct NewEndpoint {
    pub url: String,
    pub events: Vec<EventType>,
    pub description: Option<String>,
    pub metadata: Metadata,
    pub project_id: Option<ProjectId>,
    pub scope: EndpointScope,
}

#[derive(Debug, Clone, Default)]
pub struct EndpointPatch {
    pub url: Option<String>,
    pub events: Option<Vec<EventType>>,
    pub description: Option<Option<String>>,
    pub metadata: Option<MetadataPatch>,
    pub status: Option<EndpointStatus>,
    pub scope: Option<EndpointScope>,
}

/// How an HTTP attempt ended.
#[derive(Debug, Clone)]
pub enum SendOutcome {
    Status(u16),
    /// Timeout or network error.
    Error(String),
}

/// Posts a signed delivery. The workers crate implements it over HTTP; tests may fake it.
#[async_trait]
pub trait WebhookSender: Send + Sync {
    async fn post(&self, url: &str, headers: Vec<(String, String)>, body: String) -> SendOutcome;
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointView {
    id: EndpointId,
    organization_id: OrgId,
    project_id: Option<ProjectId>,
    url: String,
    description: Option<String>,
    status: &'static str,
    events: Vec<&'static str>,
    scope: &'static str,
    metadata: Metadata,
    api_version: &'static str,
    created_at: Timestamp,
    updated_at: Timestamp,
    last_success_at: Option<Timestamp>,
    last_failure_at: Option<Timestamp>,
    consecutive_failure_count: i64,
}

impl From<&Endpoint> for EndpointView {
    fn from(e: &Endpoint) -> Self {
        Self {
            id: e.id,
            organization_id: e.org_id,
            project_id: e.project_id,
            url: e.url.clone(),
            description: e.description.clone(),
            status: e.status.as_str(),
            events: e.events.iter().map(|t| t.as_str()).collect(),
            scope: e.scope.as_str(),
            metadata: e.metadata.clone(),
            api_version: "v1",
            created_at: e.created_at,
            updated_at: e.updated_at,
            last_success_at: e.last_success_at,
            last_failure_at: e.last_failure_at,
            consecutive_failure_count: e.consecutive_failures,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    id: DeliveryId,
    endpoint_id: EndpointId,
    event_id: EventId,
    event_type: &'static str,
    status: &'static str,
    attempts: i64,
    next_retry_at: Option<Timestamp>,
    delivered_at: Option<Timestamp>,
    abandoned_at: Option<Timestamp>,
    last_response_status: Option<i64>,
    last_response_at: Option<Timestamp>,
    last_error_message: Option<String>,
    created_at: Timestamp,
}

impl From<&Delivery> for DeliveryView {
    fn from(d: &Delivery) -> Self {
        Self {
            id: d.id,
            endpoint_id: d.endpoint_id,
            event_id: d.event_id,
            event_type: d.event_type.as_str(),
            status: d.status.as_str(),
            attempts: d.attempts,
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

/// Loads an endpoint of `org` (locked inside a write), or 404.
async fn endpoint_in(tx: &mut dyn Tx, org: OrgId, id: EndpointId) -> Result<Endpoint> {
    match tx.endpoint(id).await? {
        Some(e) if e.org_id == org => Ok(e),
        _ => Err(CoreError::not_found("webhook endpoint")),
    }
}

/// Loads an endpoint for a change: a firehose (`all_children`) endpoint is the org:admin's alone.
/// (The audited check runs before the write opens, in `guard_firehose`; this one only catches an
/// endpoint that became a firehose in between, since auditing here would wait on the writer
/// this transaction holds.)
async fn endpoint_to_change(tx: &mut dyn Tx, caller: &Caller, id: EndpointId) -> Result<Endpoint> {
    let e = endpoint_in(tx, caller.org_id(), id).await?;
    if e.scope == EndpointScope::AllChildren && !caller.key.scopes.allows(Scope::OrgAdmin) {
        return Err(CoreError::forbidden_scope(Scope::OrgAdmin.as_str()));
    }
    Ok(e)
}

impl Strata {
    /// Requires org:admin (audited) to change a firehose endpoint, before any write opens.
    async fn guard_firehose(&self, caller: &Caller, id: EndpointId) -> Result<()> {
        let mut tx = self.store.read().await?;
        let e = tx.endpoint(id).await?.filter(|e| e.org_id == caller.org_id());
        tx.commit().await?;
        if e.is_some_and(|e| e.scope == EndpointScope::AllChildren) {
            caller.require(Scope::OrgAdmin).await?;
        }
        Ok(())
    }

    fn check_endpoint_url(&self, url: &str) -> Result<String> {
        crate::webhook::check_url(url, self.config.dev_mode, self.config.allow_private_webhooks)
    }

    fn new_delivery(
        &self,
        endpoint: &Endpoint,
        event_org: OrgId,
        event_id: EventId,
        ty: EventType,
        body: String,
        replay_of: Option<DeliveryId>,
    ) -> Delivery {
        let now = self.now();
        Delivery {
            id: DeliveryId::at(now.millis()),
            endpoint_id: endpoint.id,
            event_org_id: event_org,
            event_id,
            event_type: ty,
            body,
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_retry_at: Some(now.plus_ms(self.config.retry_ladder_ms.first().copied().unwrap_or(0))),
            delivered_at: None,
            abandoned_at: None,
            last_response_status: None,
            last_response_at: None,
            last_error: None,
            replay_of,
            created_at: now,
            seq: 0,
        }
    }

    /// `POST /v1/webhook-endpoints`: 201 with the signing secret, shown once.
    pub async fn create_endpoint(&self, caller: &Caller, cmd: NewEndpoint, idem: Option<&IdemClaim>) -> Result<Reply> {
        caller.require(Scope::WebhooksWrite).await?;
        if cmd.scope == EndpointScope::AllChildren {
            caller.require(Scope::OrgAdmin).await?;
        }
        caller.ensure_writable()?;
        let url = self.check_endpoint_url(&cmd.url)?;
        let mut tx = self.store.write().await?;
        if let Some(p) = cmd.project_id {
            project_in(tx.as_mut(), caller.org_id(), p).await?;
        }
        let now = self.now();
        let secret = new_signing_secret();
        let start_seq = tx.max_event_seq().await?;
        let endpoint = Endpoint {
            id: EndpointId::at(now.millis()),
            org_id: caller.org_id(),
            project_id: cmd.project_id,
            url,
            description: cmd.description,
            status: EndpointStatus::Active,
            events: cmd.events,
            scope: cmd.scope,
            metadata: cmd.metadata,
            secret_sealed: self.secret.seal(SECRET_PURPOSE, secret.as_bytes()),
            previous_secret_sealed: None,
            previous_expires_at: None,
            created_at: now,
            updated_at: now,
            last_success_at: None,
            last_failure_at: None,
            consecutive_failures: 0,
            start_seq,
            seq: 0,
        };
        tx.insert_endpoint(&endpoint).await?;
        tx.insert_audit(&self.audit_entry(
            caller.stamp(),
            "webhook_endpoint.created",
            json!({ "endpointId": endpoint.id, "url": endpoint.url }),
        ))
        .await?;
        let body = json!({ "endpoint": EndpointView::from(&endpoint), "signingSecret": secret });
        self.finish(tx, idem, Reply::json(201, &body)).await
    }

    pub async fn list_endpoints(
        &self,
        caller: &Caller,
        project: Option<ProjectId>,
        status: Option<EndpointStatus>,
        page: PageRequest,
    ) -> Result<Page<EndpointView>> {
        caller.require(Scope::WebhooksRead).await?;
        let mut tx = self.store.read().await?;
        let rows = tx.list_endpoints(caller.org_id(), project, status, page).await?;
        tx.commit().await?;
        Ok(Page::from_rows(rows, page, &self.secret, "endpoints", |e| e.seq).map(|e| EndpointView::from(&e)))
    }

    pub async fn get_endpoint(&self, caller: &Caller, id: EndpointId) -> Result<Reply> {
        caller.require(Scope::WebhooksRead).await?;
        let mut tx = self.store.read().await?;
        let e = endpoint_in(tx.as_mut(), caller.org_id(), id).await?;
        tx.commit().await?;
        Ok(Reply::json(200, &EndpointView::from(&e)))
    }

    pub async fn update_endpoint(&self, caller: &Caller, id: EndpointId, patch: EndpointPatch, idem: Option<&IdemClaim>) -> Result<Reply> {
        caller.require(Scope::WebhooksWrite).await?;
        if patch.scope == Some(EndpointScope::AllChildren) {
            caller.require(Scope::OrgAdmin).await?;
        }
        caller.ensure_writable()?;
        let url = patch.url.as_deref().map(|u| self.check_endpoint_url(u)).transpose()?;
        self.guard_firehose(caller, id).await?;
        let mut tx = self.store.write().await?;
        let mut e = endpoint_to_change(tx.as_mut(), caller, id).await?;
        if let Some(u) = url {
            e.url = u;
        }
        if let Some(ev) = patch.events {
            e.events = ev;
        }
        if let Some(d) = patch.description {
            e.description = d;
        }
        if let Some(m) = &patch.metadata {
            e.metadata = e.metadata.apply(m, "metadata")?;
        }
        if let Some(s) = patch.scope {
            e.scope = s;
        }
        if let Some(s) = patch.status {
            // Re-activating an auto-paused endpoint starts its failure count afresh.
            if s == EndpointStatus::Active && e.status == EndpointStatus::AutoPaused {
                e.consecutive_failures = 0;
            }
            e.status = s;
        }
        e.updated_at = self.now();
        tx.update_endpoint(&e).await?;
        tx.insert_audit(&self.audit_entry(caller.stamp(), "webhook_endpoint.updated", json!({ "endpointId": e.id }))).await?;
        self.finish(tx, idem, Reply::json(200, &EndpointView::from(&e))).await
    }

    /// `DELETE /v1/webhook-endpoints/:id`: its pending deliveries are abandoned.
    pub async fn delete_endpoint(&self, caller: &Caller, id: EndpointId, idem: Option<&IdemClaim>) -> Result<Reply> {
        caller.require(Scope::WebhooksWrite).await?;
        caller.ensure_writable()?;
        self.guard_firehose(caller, id).await?;
        let mut tx = self.store.write().await?;
        let e = endpoint_to_change(tx.as_mut(), caller, id).await?;
        tx.abandon_deliveries(Some(e.id), None, self.now()).await?;
        tx.delete_endpoint(e.id).await?;
        tx.insert_audit(&self.audit_entry(caller.stamp(), "webhook_endpoint.deleted", json!({ "endpointId": e.id }))).await?;
        self.finish(tx, idem, Reply::json(200, &json!({ "id": e.id, "deleted": true }))).await
    }

    /// `POST /v1/webhook-endpoints/:id/rotate-secret`: both secrets sign for 24 h.
    pub async fn rotate_endpoint_secret(&self, caller: &Caller, id: EndpointId, idem: Option<&IdemClaim>) -> Result<Reply> {
        caller.require(Scope::WebhooksWrite).await?;
        caller.ensure_writable()?;
        self.guard_firehose(caller, id).await?;
        let mut tx = self.store.write().await?;
        let mut e = endpoint_to_change(tx.as_mut(), caller, id).await?;
        let now = self.now();
        let secret = new_signing_secret();
        e.previous_secret_sealed = Some(std::mem::replace(&mut e.secret_sealed, self.secret.seal(SECRET_PURPOSE, secret.as_bytes())));
        e.previous_expires_at = Some(now.plus_ms(ROTATION_OVERLAP_MS));
        e.updated_at = now;
        tx.update_endpoint(&e).await?;
        tx.insert_audit(&self.audit_entry(caller.stamp(), "webhook_endpoint.secret_rotated", json!({ "endpointId": e.id }))).await?;
        let body = json!({
            "endpointId": e.id,
            "signingSecret": secret,
            "previousSecretExpiresAt": e.previous_expires_at,
            "warning": "Store this secret now. It cannot be retrieved again. The previous secret also signs deliveries until previousSecretExpiresAt.",
        });
        self.finish(tx, idem, Reply::json(200, &body)).await
    }

    /// `POST /v1/webhook-endpoints/:id/test`: a `test.ping` delivery, whatever the filter.
    pub async fn test_endpoint(&self, caller: &Caller, id: EndpointId, payload: Option<Value>, idem: Option<&IdemClaim>) -> Result<Reply> {
        caller.require(Scope::WebhooksWrite).await?;
        caller.ensure_writable()?;
        self.guard_firehose(caller, id).await?;
        let mut tx = self.store.write().await?;
        let e = endpoint_to_change(tx.as_mut(), caller, id).await?;
        let event = self.event(
            EventType::TestPing,
            caller.org_id(),
            None,
            json!({ "endpointId": e.id, "payload": payload.unwrap_or(Value::Null) }),
        );
        tx.insert_event(&event).await?;
        tx.mark_dispatched(event.id).await?;

        let body = delivery_body(&event.id.to_string(), event.event_type, event.created_at, &event.data, None);
        let d = self.new_delivery(&e, event.org_id, event.id, event.event_type, body, None);
        tx.insert_delivery(&d).await?;
        let reply = json!({ "eventId": event.id, "deliveryId": d.id, "scheduledAt": d.next_retry_at });
        self.finish(tx, idem, Reply::json(200, &reply)).await
    }

    /// `GET /v1/webhook-endpoints/:id/deliveries`.
    pub async fn list_deliveries(
        &self,
        caller: &Caller,
        id: EndpointId,
        event_type: Option<&str>,
        status: Option<DeliveryStatus>,
        page: PageRequest,
    ) -> Result<Page<DeliveryView>> {
        caller.require(Scope::WebhooksRead).await?;
        let mut tx = self.store.read().await?;
        let e = endpoint_in(tx.as_mut(), caller.org_id(), id).await?;
        let rows = tx.list_deliveries(e.id, event_type, status, page).await?;
        tx.commit().await?;
        Ok(Page::from_rows(rows, page, &self.secret, "deliveries", |d| d.seq).map(|d| DeliveryView::from(&d)))
    }

    /// `POST /v1/webhook-deliveries/:id/replay`: the same event under a new id, with `replayOf`.
    pub async fn replay_delivery(&self, caller: &Caller, id: DeliveryId, idem: Option<&IdemClaim>) -> Result<Reply> {
        caller.require(Scope::WebhooksWrite).await?;
        caller.ensure_writable()?;
        let mut tx = self.store.write().await?;
        let original = tx.delivery(id).await?.ok_or(CoreError::not_found("delivery"))?;
        let e = match endpoint_in(tx.as_mut(), caller.org_id(), original.endpoint_id).await {
            Err(CoreError::NotFound { .. }) => return Err(CoreError::not_found("delivery")),
            other => other?,
        };
        let new_event = EventId::at(self.now().millis());
        let mut body: Value =
            serde_json::from_str(&original.body).map_err(|e| CoreError::internal(format!("stored delivery body: {e}")))?;
        body["id"] = json!(new_event);
        body["replayOf"] = json!(original.event_id);
        let d = self.new_delivery(&e, original.event_org_id, new_event, original.event_type, body.to_string(), Some(original.id));
        tx.insert_delivery(&d).await?;
        tx.insert_audit(&self.audit_entry(
            caller.stamp(),
            "webhook_delivery.replayed",
            json!({ "deliveryId": original.id, "replayDeliveryId": d.id }),
        ))
        .await?;
        let reply = json!({ "originalDeliveryId": original.id, "replayDeliveryId": d.id, "scheduledAt": d.next_retry_at });
        self.finish(tx, idem, Reply::json(200, &reply)).await
    }

    /// The dispatcher's step: turns outbox events into one delivery per matching endpoint (the
    /// event org's own endpoints, and its parent's firehoses). Returns how many events. A batch
    /// shares one transaction (the dispatcher must not cost the writer a commit per event); if
    /// the batch fails, its events are retried one by one so a bad one cannot hold up the rest.
    pub async fn dispatch_events(&self) -> Result<usize> {
        let mut tx = self.store.read().await?;
        let events = tx.undispatched_events(500).await?;
        tx.commit().await?;
        if events.is_empty() {
            return Ok(0);
        }
        let batch = async {
            let mut tx = self.store.write().await?;
            let mut targets: HashMap<OrgId, (bool, Vec<Endpoint>)> = HashMap::new();
            for event in &events {
                self.dispatch_in(tx.as_mut(), event, &mut targets).await?;
            }
            tx.commit().await
        };
        if batch.await.is_ok() {
            return Ok(events.len());
        }
        let mut done = 0;
        for event in &events {
            let one = async {
                let mut tx = self.store.write().await?;
                self.dispatch_in(tx.as_mut(), event, &mut HashMap::new()).await?;
                tx.commit().await
            };
            match one.await {
                Ok(()) => done += 1,
                Err(e) => tracing::error!(error = %e, event = %event.id, "could not dispatch an event"),
            }
        }
        Ok(done)
    }

    /// Dispatches one event; `targets` caches each org's candidate endpoints within a batch.
    /// An archived org's events reach only its parent's firehose (its own endpoints are done).
    async fn dispatch_in(&self, tx: &mut dyn Tx, event: &Event, targets: &mut HashMap<OrgId, (bool, Vec<Endpoint>)>) -> Result<()> {
        // Claim the event first, so two dispatchers never both deliver it.
        if !tx.mark_dispatched(event.id).await? {
            return Ok(());
        }
        if let std::collections::hash_map::Entry::Vacant(slot) = targets.entry(event.org_id) {
            let org = tx.org(Owner::System, event.org_id).await?;
            let archived = org.as_ref().is_some_and(|o| o.status == crate::org::OrgStatus::Archived);
            let parent = org.and_then(|o| o.parent_id);
            slot.insert((archived, tx.endpoints_for_event(event.org_id, parent).await?));
        }
        let (archived, candidates) = targets.get(&event.org_id).cloned().unwrap_or_default();
        if event.event_type == EventType::TestPing {
            return Ok(());
        }
        let body = delivery_body(&event.id.to_string(), event.event_type, event.created_at, &event.data, None);
        for e in candidates {
            let own = e.org_id == event.org_id;
            let reaches = ((own && !archived) || (!own && e.scope == EndpointScope::AllChildren)) && event.seq > e.start_seq;
            if reaches && e.wants(event.event_type, event.project_id) {
                let d = self.new_delivery(&e, event.org_id, event.id, event.event_type, body.clone(), None);
                tx.insert_delivery(&d).await?;
            }
        }
        Ok(())
    }

    /// The sender's step: signs and posts every due delivery, records the outcome, schedules
    /// retries on the ladder and auto-pauses an endpoint after 20 failures in a row.
    pub async fn send_deliveries(&self, sender: &dyn WebhookSender) -> Result<usize> {
        let mut tx = self.store.read().await?;
        let due = tx.due_deliveries(self.now(), 200).await?;
        tx.commit().await?;
        let mut sent = 0;
        for id in due {
            match self.send_one(sender, id).await {
                Ok(true) => sent += 1,
                Ok(false) => {}
                Err(e) => tracing::error!(error = %e, delivery = %id, "could not send a delivery"),
            }
        }
        Ok(sent)
    }

    async fn send_one(&self, sender: &dyn WebhookSender, id: DeliveryId) -> Result<bool> {
        // Claim: the attempt is counted and leased before it is made, atomically, so two senders
        // never both make it and a crash retries after the lease (at least once).
        let now = self.now();
        let mut tx = self.store.write().await?;
        if !tx.claim_delivery(id, now, now.plus_ms(SEND_LEASE_MS)).await? {
            return Ok(false);
        }
        let d = tx.delivery(id).await?.ok_or_else(|| CoreError::internal("a claimed delivery vanished"))?;
        let Some(endpoint) = tx.endpoint(d.endpoint_id).await?.filter(|e| e.status == EndpointStatus::Active) else { return Ok(false) };
        tx.commit().await?;

        let mut secrets = vec![String::from_utf8(self.secret.open(SECRET_PURPOSE, &endpoint.secret_sealed)?).unwrap_or_default()];
        if let (Some(prev), Some(until)) = (&endpoint.previous_secret_sealed, endpoint.previous_expires_at)
            && now < until
        {
            // A previous secret that will not open is skipped, not fatal: the current one signs.
            if let Ok(p) = self.secret.open(SECRET_PURPOSE, prev) {
                secrets.push(String::from_utf8(p).unwrap_or_default());
            }
        }
        let t = now.unix_seconds();
        let event_id = serde_json::from_str::<Value>(&d.body).ok().and_then(|b| b["id"].as_str().map(str::to_owned)).unwrap_or_default();
        let (stripe, standard) = signature_headers(&secrets, &event_id, t, d.body.as_bytes());
        let headers = vec![
            ("Content-Type".to_owned(), "application/json".to_owned()),
            ("User-Agent".to_owned(), "strata-webhooks/1".to_owned()),
            ("X-Layers-Event-Id".to_owned(), event_id.clone()),
            ("X-Layers-Signature".to_owned(), stripe),
            ("webhook-id".to_owned(), event_id),
            ("webhook-timestamp".to_owned(), t.to_string()),
            ("webhook-signature".to_owned(), standard),
        ];
        let outcome = sender.post(&endpoint.url, headers, d.body.clone()).await;

        let now = self.now();
        let mut tx = self.store.write().await?;
        // Record the outcome only if this attempt still owns the delivery (not abandoned or
        // re-claimed meanwhile).
        let Some(mut d) = tx.delivery(id).await?.filter(|cur| cur.status == DeliveryStatus::Delivering && cur.attempts == d.attempts)
        else {
            return Ok(true);
        };
        let Some(mut endpoint) = tx.endpoint(d.endpoint_id).await? else { return Ok(true) };
        let (status, error, retryable) = match &outcome {
            SendOutcome::Status(s) if (200..300).contains(s) => (Some(i64::from(*s)), None, false),
            SendOutcome::Status(s) => {
                (Some(i64::from(*s)), Some(format!("the endpoint answered {s}")), *s >= 500 || *s == 408 || *s == 429)
            }
            SendOutcome::Error(e) => (None, Some(e.clone()), true),
        };
        d.last_response_status = status;
        d.last_response_at = status.map(|_| now);
        d.last_error = error.clone();
        if error.is_none() {
            d.status = DeliveryStatus::Delivered;
            d.delivered_at = Some(now);
            d.next_retry_at = None;
            endpoint.last_success_at = Some(now);
            endpoint.consecutive_failures = 0;
        } else {
            let ladder = &self.config.retry_ladder_ms;
            match usize::try_from(d.attempts).ok().and_then(|a| ladder.get(a)) {
                Some(wait) if retryable => {
                    d.status = DeliveryStatus::Pending;
                    d.next_retry_at = Some(now.plus_ms(*wait));
                }
                _ => {
                    d.status = DeliveryStatus::Failed;
                    d.next_retry_at = None;
                }
            }
            endpoint.last_failure_at = Some(now);
            endpoint.consecutive_failures += 1;
            if endpoint.consecutive_failures >= AUTO_PAUSE_AFTER && endpoint.status == EndpointStatus::Active {
                endpoint.status = EndpointStatus::AutoPaused;
                let stamp = Stamp::system().in_org(endpoint.org_id);
                tx.insert_audit(&self.audit_entry(stamp, "webhook_endpoint.auto_paused", json!({ "endpointId": endpoint.id }))).await?;
            }
        }
        tx.update_delivery(&d).await?;
        tx.update_endpoint(&endpoint).await?;
        tx.commit().await?;
        Ok(true)
    }
}
