//! The services: every business rule of strata, written once. Each write opens one transaction
//! holding the effect, its audit entry, its events and its idempotency record, and commits them
//! together.

mod audit;
mod auth;
mod content;
mod credits;
mod deliveries;
mod dispatch;
mod events;
mod idempotency;
mod keys;
mod ledger;
mod lifecycle;
mod operator;
mod operator_views;
mod orgs;
mod posts;
mod projects;
mod rejections;
mod secrets;
mod tenancy;
mod usage;
mod webhooks;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

pub use crate::ledger::LedgerReport;
pub use auth::{Caller, Credentials};
pub use content::NewGeneration;
pub use credits::{
    Allocation, AllocationView, ConfigReplyView, ConfigView, CreditEventView, CreditsView, DEFAULT_RESERVATION_TIMEOUT_MS, PeriodView,
    SpendRequest, credits_view,
};
pub use deliveries::{AttemptView, DeliveryDetail, DeliveryFields, DeliveryView, Purged, RecoverView, ReplayView};
pub use dispatch::{AttemptResult, PreparedAttempt, SendOutcome, SendSlots, WebhookSender};
pub use idempotency::Claimed;
pub use keys::{DeletedView, KeyEnv, KilledView, MintedView, NewKey};
pub use lifecycle::{ArchivedProjectView, ArchivedView, LifecycleView, MigratedChild, MigrationView};
pub use operator::{NewPartner, PartnerCreated};
pub use operator_views::{OPERATOR_LIST_MAX, OrgDetail};
pub use orgs::{ChildView, NewChild, OrgPatch, OrgWithSummary, SummaryView, WhoamiView};
pub use posts::NewPost;
pub use projects::{NewProject, ProjectPatch};
pub use rejections::{DEFAULT_REJECTION_QUEUE, REJECTIONS_DROPPED};
pub use secrets::{ResealReport, SECRET_CHECK_SETTING, SecretFit, init_secret_check, secret_fit};
pub use usage::UsageQuery;
pub use webhooks::{CreatedEndpoint, DeletedEndpoint, EndpointPatch, EndpointView, NewEndpoint, RotatedSecret, TestPingView};

use crate::audit::{Actor, AuditEntry};
use crate::clock::{Clock, Timestamp};
use crate::content::{ContentEngine, FixtureEngine};
use crate::cursor::ServerSecret;
use crate::error::Result;
use crate::event::{Event, EventType};
use crate::id::{ApiKeyId, AuditId, EventId, OrgId, ProjectId, RequestId};
use crate::idempotency::{IdemClaim, Reply};
use crate::store::{Store, Tx};

const REPLY_PURPOSE: &str = "idempotent-reply";

/// Settings the services read.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// How long a rotated child key keeps working.
    pub rotation_grace_ms: i64,
    /// How long a reservation lives unless settled.
    pub reservation_timeout_ms: i64,
    /// How long the built-in content engine takes per job.
    pub job_duration_ms: i64,
    /// Development mode: webhook URLs may be http://localhost and loopback.
    pub dev_mode: bool,
    /// The operator allows webhook URLs on private networks.
    pub allow_private_webhooks: bool,
    /// The wait before each delivery attempt.
    pub retry_ladder_ms: Vec<i64>,
    /// Rate limits and concurrent-job caps by tier.
    pub tier_limits: crate::ratelimit::TierTable,
    /// How long one delivery attempt may take before it counts as timed out.
    pub webhook_timeout_ms: i64,
    /// Delivery attempts in flight at once, over all endpoints.
    pub webhook_concurrency: usize,
    /// Delivery attempts in flight at once to one endpoint.
    pub webhook_endpoint_concurrency: usize,
    /// How long terminal deliveries (with their attempts) and dispatched events are kept.
    pub webhook_retention_ms: i64,
    /// How long an unfinished idempotency claim blocks retries of its key before it is presumed
    /// dead (its process crashed) and a retry may take it over.
    pub idempotency_lease_ms: i64,
    /// How many rejections (refused authentications, scope denials, rate-limit hits) may wait
    /// for the audit flusher; past it they are dropped and counted (CONTRACT §7).
    pub rejection_queue_capacity: usize,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            rotation_grace_ms: crate::clock::DAY_MS,
            reservation_timeout_ms: credits::DEFAULT_RESERVATION_TIMEOUT_MS,
            job_duration_ms: 5_000,
            dev_mode: false,
            allow_private_webhooks: false,
            retry_ladder_ms: crate::webhook::DEFAULT_LADDER_SECS.iter().map(|s| s * 1000).collect(),
            tier_limits: Default::default(),
            webhook_timeout_ms: 10_000,
            webhook_concurrency: 512,
            webhook_endpoint_concurrency: 128,
            webhook_retention_ms: 30 * crate::clock::DAY_MS,
            idempotency_lease_ms: crate::idempotency::CLAIM_LEASE_MS,
            rejection_queue_capacity: DEFAULT_REJECTION_QUEUE,
        }
    }
}

/// The application: store, clock, secret and config. Cheap to clone.
#[derive(Clone)]
pub struct Strata {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub secret: ServerSecret,
    pub config: CoreConfig,
    pub engine: Arc<dyn ContentEngine>,
    key_usage: Arc<Mutex<HashMap<ApiKeyId, Timestamp>>>,
    limiter: Arc<dyn crate::ratelimit::RateLimiter>,
    rejections: Arc<rejections::RejectionQueue>,
}

/// Who did something and in which request, for the audit log.
#[derive(Clone, Copy, Debug)]
pub struct Stamp {
    pub actor: Actor,
    pub request_id: Option<RequestId>,
    pub org_id: Option<OrgId>,
    pub project_id: Option<ProjectId>,
    pub api_key_id: Option<ApiKeyId>,
}

impl Stamp {
    pub fn operator() -> Self {
        Self { actor: Actor::Operator, request_id: None, org_id: None, project_id: None, api_key_id: None }
    }

    pub fn system() -> Self {
        Self { actor: Actor::System, ..Self::operator() }
    }

    pub fn in_org(mut self, org: OrgId) -> Self {
        self.org_id = Some(org);
        self
    }
}

/// Runs a background step's items one after another, each in its own transaction (`run`): one
/// that fails is logged with `what` and the item, and left for the next step; it never blocks
/// the rest. `run` answers whether it acted on the item (`false`: another node's step has it,
/// or it no longer needs acting on). Returns how many it acted on.
pub(crate) async fn each_item<T, Fut>(items: Vec<T>, what: &str, run: impl Fn(T) -> Fut) -> usize
where
    T: std::fmt::Display + Copy,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let mut done = 0;
    for item in items {
        match run(item).await {
            Ok(acted) => done += usize::from(acted),
            Err(e) => crate::telemetry::background_failure(what, Some(&item), &e),
        }
    }
    done
}

impl Strata {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, secret: ServerSecret, config: CoreConfig) -> Self {
        let engine = Arc::new(FixtureEngine { duration_ms: config.job_duration_ms });
        let rejections = Arc::new(rejections::RejectionQueue::new(config.rejection_queue_capacity));
        Self {
            store,
            clock,
            secret,
            config,
            engine,
            key_usage: Arc::new(Mutex::new(HashMap::new())),
            limiter: Arc::new(crate::ratelimit::LocalLimiter::default()),
            rejections,
        }
    }

    /// Keeps the rate-limit buckets in `limiter` (in this process by default; Redis to share
    /// them between nodes).
    pub fn with_limiter(mut self, limiter: Arc<dyn crate::ratelimit::RateLimiter>) -> Self {
        self.limiter = limiter;
        self
    }

    /// This application as the background workers use it: on connections of their own where
    /// the store has them (see `Store::for_workers`).
    pub fn for_workers(&self) -> Self {
        match self.store.for_workers() {
            Some(store) => Self { store, ..self.clone() },
            None => self.clone(),
        }
    }

    /// Replaces the content engine (the built-in one is deterministic fixtures).
    pub fn with_engine(mut self, engine: Arc<dyn ContentEngine>) -> Self {
        self.engine = engine;
        self
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub(crate) fn audit_entry(&self, stamp: Stamp, event_type: &str, data: Value) -> AuditEntry {
        let now = self.now();
        AuditEntry {
            id: AuditId::at(now.millis()),
            event_type: event_type.to_owned(),
            occurred_at: now,
            request_id: stamp.request_id,
            org_id: stamp.org_id,
            project_id: stamp.project_id,
            api_key_id: stamp.api_key_id,
            actor: stamp.actor,
            data,
            seq: 0,
        }
    }

    /// Builds an event from its typed `data` (see `event_data`), which gets `organizationId`
    /// so a firehose receiver can route it.
    pub(crate) fn event(&self, ty: EventType, org: OrgId, project: Option<ProjectId>, data: impl serde::Serialize) -> Event {
        let now = self.now();
        // The payload types are plain structs of serialisable fields; they cannot fail.
        let mut data = serde_json::to_value(data).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut data {
            m.insert("organizationId".into(), Value::String(org.to_string()));
        }
        Event { id: EventId::at(now.millis()), event_type: ty, org_id: org, project_id: project, data, created_at: now, seq: 0 }
    }

    /// Commits a write with its idempotency record (when the request carried a key) and hands
    /// back its answer.
    pub(crate) async fn finish<T: serde::Serialize>(&self, mut tx: Box<dyn Tx>, idem: Option<&IdemClaim>, answer: T) -> Result<T> {
        self.complete_claim(tx.as_mut(), idem, &answer).await?;
        tx.commit().await?;
        Ok(answer)
    }

    /// Writes the answer into the request's idempotency claim inside the write's transaction,
    /// with the success status the claim carries.
    pub(crate) async fn complete_claim(&self, tx: &mut dyn Tx, idem: Option<&IdemClaim>, answer: &impl serde::Serialize) -> Result<()> {
        if let Some(claim) = idem {
            let reply = Reply::json(claim.status, answer)?;
            // Only the holder of the claim may complete it; a request that outlived its lease
            // was taken over, and its effect must not commit beside the retry's.
            if tx.idem_complete(claim.api_key_id, &claim.key, claim.token, &self.seal_reply(&reply)).await? != 1 {
                return Err(crate::error::CoreError::IdempotencyConflict { in_progress: true });
            }
        }
        Ok(())
    }

    /// Stored replies are encrypted: a key mint's reply holds a secret shown once.
    pub(crate) fn seal_reply(&self, reply: &Reply) -> Reply {
        Reply { status: reply.status, body: self.secret.seal(REPLY_PURPOSE, &reply.body).into_bytes() }
    }

    pub(crate) fn open_reply(&self, stored: Reply) -> Result<Reply> {
        let text = String::from_utf8(stored.body).map_err(|_| crate::error::CoreError::internal("stored reply is not text"))?;
        Ok(Reply { status: stored.status, body: self.secret.open(REPLY_PURPOSE, &text)? })
    }

    /// Notes that a key authenticated; flushed in batches by `flush_key_usage`.
    pub(crate) fn note_key_used(&self, key: ApiKeyId, at: Timestamp) {
        if let Ok(mut m) = self.key_usage.lock() {
            m.insert(key, at);
        }
    }

    /// Writes the batched `lastUsedAt` stamps; returns how many keys were touched.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn flush_key_usage(&self) -> Result<usize> {
        let batch: Vec<(ApiKeyId, Timestamp)> = match self.key_usage.lock() {
            Ok(mut m) => m.drain().collect(),
            Err(_) => return Ok(0),
        };
        if batch.is_empty() {
            return Ok(0);
        }
        self.store.touch_keys(&batch).await?;
        Ok(batch.len())
    }
}
