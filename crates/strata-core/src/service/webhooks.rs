//! Webhook endpoints (CONTRACT §6): create, read, change and delete them, rotate their sealed
//! signing secrets, and send a test ping. Deliveries live in `deliveries.rs`; the dispatcher and
//! the sender steps in `dispatch.rs`.

use serde::Serialize;
use serde_json::{Value, json};

use super::tenancy::project_in;
use super::{Caller, Strata};
use crate::clock::Timestamp;
use crate::cursor::{Page, PageRequest};
use crate::error::{CoreError, Result};
use crate::event::EventType;
use crate::id::{DeliveryId, EndpointId, EventId, OrgId, ProjectId};
use crate::idempotency::IdemClaim;
use crate::metadata::{Metadata, MetadataPatch};
use crate::scope::Scope;
use crate::store::Tx;
use crate::webhook::{Delivery, DeliveryStatus, Endpoint, EndpointScope, EndpointStatus, delivery_body, new_signing_secret};

pub(super) const SECRET_PURPOSE: &str = "webhook-secret";
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

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointView {
    id: EndpointId,
    organization_id: OrgId,
    project_id: Option<ProjectId>,
    url: String,
    description: Option<String>,
    #[schema(value_type = EndpointStatus)]
    status: &'static str,
    #[schema(value_type = Vec<EventType>)]
    events: Vec<&'static str>,
    #[schema(value_type = EndpointScope)]
    scope: &'static str,
    metadata: Metadata,
    /// Always `v1`.
    #[schema(value_type = String, examples("v1"))]
    api_version: &'static str,
    created_at: Timestamp,
    updated_at: Timestamp,
    last_success_at: Option<Timestamp>,
    last_failure_at: Option<Timestamp>,
    consecutive_failure_count: i64,
}

/// A new endpoint and its signing secret, shown once.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedEndpoint {
    endpoint: EndpointView,
    /// `whsec_…`: shown only here.
    signing_secret: String,
}

/// The answer to deleting an endpoint.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeletedEndpoint {
    id: EndpointId,
    /// Always true.
    deleted: bool,
}

/// A new signing secret; the previous one also signs until `previousSecretExpiresAt`.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RotatedSecret {
    endpoint_id: EndpointId,
    /// `whsec_…`: shown only here.
    signing_secret: String,
    previous_secret_expires_at: Option<Timestamp>,
    warning: &'static str,
}

/// The `test.ping` event and its delivery.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestPingView {
    event_id: EventId,
    delivery_id: DeliveryId,
    scheduled_at: Option<Timestamp>,
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

/// Loads an endpoint of `org` (locked inside a write), or 404.
pub(super) async fn endpoint_in(tx: &mut dyn Tx, org: OrgId, id: EndpointId) -> Result<Endpoint> {
    match tx.endpoint(id).await? {
        Some(e) if e.org_id == org => Ok(e),
        _ => Err(CoreError::not_found("webhook endpoint")),
    }
}

/// Loads an endpoint for a change: a firehose (`all_children`) endpoint is the org:admin's alone.
/// (The audited check runs before the write opens, in `guard_firehose`; this one only catches an
/// endpoint that became a firehose in between, since auditing here would wait on the writer
/// this transaction holds.)
pub(super) async fn endpoint_to_change(tx: &mut dyn Tx, caller: &Caller, id: EndpointId) -> Result<Endpoint> {
    let e = endpoint_in(tx, caller.org_id(), id).await?;
    if e.scope == EndpointScope::AllChildren && !caller.key.scopes.allows(Scope::OrgAdmin) {
        return Err(CoreError::forbidden_scope(Scope::OrgAdmin.as_str()));
    }
    Ok(e)
}

impl Strata {
    /// Requires org:admin (audited) to change a firehose endpoint, before any write opens.
    pub(super) async fn guard_firehose(&self, caller: &Caller, id: EndpointId) -> Result<()> {
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

    pub(super) fn new_delivery(
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
    #[tracing::instrument(level = "debug", name = "service.create_endpoint", skip_all)]
    pub async fn create_endpoint(&self, caller: &Caller, cmd: NewEndpoint, idem: Option<&IdemClaim>) -> Result<CreatedEndpoint> {
        caller.require(Scope::WebhooksWrite).await?;
        if cmd.scope == EndpointScope::AllChildren {
            caller.require(Scope::OrgAdmin).await?;
        }
        caller.ensure_writable()?;
        let url = self.check_endpoint_url(&cmd.url)?;
        let mut tx = self.write_as(caller).await?;
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
        let body = CreatedEndpoint { endpoint: EndpointView::from(&endpoint), signing_secret: secret };
        self.finish(tx, idem, body).await
    }

    pub async fn list_endpoints(
        &self,
        caller: &Caller,
        project: Option<ProjectId>,
        statuses: &[EndpointStatus],
        page: PageRequest,
    ) -> Result<Page<EndpointView>> {
        caller.require(Scope::WebhooksRead).await?;
        let mut tx = self.store.read().await?;
        let rows = tx.list_endpoints(caller.org_id(), project, statuses, page).await?;
        tx.commit().await?;
        Ok(Page::from_rows(rows, page, &self.secret, "endpoints", |e| e.seq).map(|e| EndpointView::from(&e)))
    }

    #[tracing::instrument(level = "debug", name = "service.get_endpoint", skip_all)]
    pub async fn get_endpoint(&self, caller: &Caller, id: EndpointId) -> Result<EndpointView> {
        caller.require(Scope::WebhooksRead).await?;
        let mut tx = self.store.read().await?;
        let e = endpoint_in(tx.as_mut(), caller.org_id(), id).await?;
        tx.commit().await?;
        Ok(EndpointView::from(&e))
    }

    pub async fn update_endpoint(
        &self,
        caller: &Caller,
        id: EndpointId,
        patch: EndpointPatch,
        idem: Option<&IdemClaim>,
    ) -> Result<EndpointView> {
        caller.require(Scope::WebhooksWrite).await?;
        if patch.scope == Some(EndpointScope::AllChildren) {
            caller.require(Scope::OrgAdmin).await?;
        }
        caller.ensure_writable()?;
        let url = patch.url.as_deref().map(|u| self.check_endpoint_url(u)).transpose()?;
        self.guard_firehose(caller, id).await?;
        let mut tx = self.write_as(caller).await?;
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
        self.finish(tx, idem, EndpointView::from(&e)).await
    }

    /// `DELETE /v1/webhook-endpoints/:id`: its pending deliveries are abandoned.
    #[tracing::instrument(level = "debug", name = "service.delete_endpoint", skip_all)]
    pub async fn delete_endpoint(&self, caller: &Caller, id: EndpointId, idem: Option<&IdemClaim>) -> Result<DeletedEndpoint> {
        caller.require(Scope::WebhooksWrite).await?;
        caller.ensure_writable()?;
        self.guard_firehose(caller, id).await?;
        let mut tx = self.write_as(caller).await?;
        let e = endpoint_to_change(tx.as_mut(), caller, id).await?;
        tx.abandon_deliveries(Some(e.id), None, self.now()).await?;
        tx.delete_endpoint(e.id).await?;
        tx.insert_audit(&self.audit_entry(caller.stamp(), "webhook_endpoint.deleted", json!({ "endpointId": e.id }))).await?;
        self.finish(tx, idem, DeletedEndpoint { id: e.id, deleted: true }).await
    }

    /// `POST /v1/webhook-endpoints/:id/rotate-secret`: both secrets sign for 24 h.
    #[tracing::instrument(level = "debug", name = "service.rotate_endpoint_secret", skip_all)]
    pub async fn rotate_endpoint_secret(&self, caller: &Caller, id: EndpointId, idem: Option<&IdemClaim>) -> Result<RotatedSecret> {
        caller.require(Scope::WebhooksWrite).await?;
        caller.ensure_writable()?;
        self.guard_firehose(caller, id).await?;
        let mut tx = self.write_as(caller).await?;
        let mut e = endpoint_to_change(tx.as_mut(), caller, id).await?;
        let now = self.now();
        let secret = new_signing_secret();
        e.previous_secret_sealed = Some(std::mem::replace(&mut e.secret_sealed, self.secret.seal(SECRET_PURPOSE, secret.as_bytes())));
        e.previous_expires_at = Some(now.plus_ms(ROTATION_OVERLAP_MS));
        e.updated_at = now;
        tx.update_endpoint(&e).await?;
        tx.insert_audit(&self.audit_entry(caller.stamp(), "webhook_endpoint.secret_rotated", json!({ "endpointId": e.id }))).await?;
        let body = RotatedSecret {
            endpoint_id: e.id,
            signing_secret: secret,
            previous_secret_expires_at: e.previous_expires_at,
            warning: "Store this secret now. It cannot be retrieved again. The previous secret also signs deliveries until previousSecretExpiresAt.",
        };
        self.finish(tx, idem, body).await
    }

    /// `POST /v1/webhook-endpoints/:id/test`: a `test.ping` delivery, whatever the filter.
    pub async fn test_endpoint(
        &self,
        caller: &Caller,
        id: EndpointId,
        payload: Option<Value>,
        idem: Option<&IdemClaim>,
    ) -> Result<TestPingView> {
        caller.require(Scope::WebhooksWrite).await?;
        caller.ensure_writable()?;
        self.guard_firehose(caller, id).await?;
        let mut tx = self.write_as(caller).await?;
        let e = endpoint_to_change(tx.as_mut(), caller, id).await?;
        let event = self.event(EventType::TestPing, caller.org_id(), None, crate::event_data::TestPingData { endpoint_id: e.id, payload });
        tx.insert_event(&event).await?;
        tx.mark_dispatched(&[event.id]).await?;

        let body = delivery_body(&event.id.to_string(), event.event_type, event.created_at, &event.data, None);
        let d = self.new_delivery(&e, event.org_id, event.id, event.event_type, body, None);
        tx.insert_deliveries(std::slice::from_ref(&d)).await?;
        let reply = TestPingView { event_id: event.id, delivery_id: d.id, scheduled_at: d.next_retry_at };
        self.finish(tx, idem, reply).await
    }
}
