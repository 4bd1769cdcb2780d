//! Row ↔ domain conversions. Column lists live next to the mappers that read them.

use crate::query::Row;
use strata_core::apikey::{Env, Tier};
use strata_core::audit::{Actor, AuditEntry};
use strata_core::clock::Timestamp;
use strata_core::content::{Container, ContainerStatus, Job, JobStatus, Outcome};
use strata_core::credits::{Account, CreditConfig, CreditEvent, Transfer, TransferKind, TransferStatus, Wallet};
use strata_core::error::{CoreError, Result};
use strata_core::event::{Event, EventType};
use strata_core::id::{ApiKeyId, AuditId, ContainerId, DeliveryId, EndpointId, EventId, JobId, OrgId, PostId, ProjectId, RequestId, TxnId};
use strata_core::idempotency::{IdemRecord, Reply};
use strata_core::key::{ApiKey, KeyStatus};
use strata_core::metadata::Metadata;
use strata_core::org::{Org, OrgStatus};
use strata_core::post::{PostStatus, ScheduledPost};
use strata_core::project::{Project, ProjectStatus};
use strata_core::scope::Scopes;
use strata_core::webhook::{Delivery, DeliveryAttempt, DeliveryStatus, Endpoint, EndpointScope, EndpointStatus};

const ORG_FIELDS: [&str; 13] = [
    "seq",
    "id",
    "parent_id",
    "name",
    "status",
    "metadata",
    "billing_email",
    "access_revoked",
    "archived_at",
    "archive_reclaimed",
    "archive_revoked",
    "created_at",
    "updated_at",
];
const KEY_FIELDS: [&str; 17] = [
    "seq",
    "id",
    "org_id",
    "name",
    "env",
    "keyid",
    "secret_hash",
    "scopes",
    "tier",
    "status",
    "killed",
    "created_at",
    "last_used_at",
    "rotated_at",
    "revoked_at",
    "grace_until",
    "superseded_by",
];

pub(crate) const ORG_COLUMNS: &str = "seq, id, parent_id, name, status, metadata, billing_email, access_revoked, archived_at, archive_reclaimed, archive_revoked, created_at, updated_at";
pub(crate) const KEY_COLUMNS: &str = "seq, id, org_id, name, env, keyid, secret_hash, scopes, tier, status, killed, created_at, last_used_at, rotated_at, revoked_at, grace_until, superseded_by";
/// Key columns of the `k` alias, unrenamed.
pub(crate) const KEY_COLUMNS_K: &str = "k.seq, k.id, k.org_id, k.name, k.env, k.keyid, k.secret_hash, k.scopes, k.tier, k.status, k.killed, k.created_at, k.last_used_at, k.rotated_at, k.revoked_at, k.grace_until, k.superseded_by";
/// Org columns of the `o` alias, renamed `o_<column>`.
pub(crate) const ORG_COLUMNS_O: &str = "o.seq AS o_seq, o.id AS o_id, o.parent_id AS o_parent_id, o.name AS o_name, o.status AS o_status, o.metadata AS o_metadata, o.billing_email AS o_billing_email, o.access_revoked AS o_access_revoked, o.archived_at AS o_archived_at, o.archive_reclaimed AS o_archive_reclaimed, o.archive_revoked AS o_archive_revoked, o.created_at AS o_created_at, o.updated_at AS o_updated_at";
/// Wallet columns of the `w` alias, renamed `w_<column>`.
pub(crate) const WALLET_COLUMNS_W: &str = "w.org_id AS w_org_id, w.included_remaining AS w_included_remaining, w.prepaid_balance AS w_prepaid_balance, w.reserved AS w_reserved, w.used_this_period AS w_used_this_period, w.included_this_period AS w_included_this_period, w.period_start AS w_period_start, w.monthly_cap AS w_monthly_cap, w.refill_threshold AS w_refill_threshold, w.refill_amount AS w_refill_amount, w.updated_at AS w_updated_at, w.included_carryover AS w_included_carryover";
pub(crate) const AUDIT_COLUMNS: &str = "seq, id, event_type, occurred_at, request_id, org_id, project_id, api_key_id, actor, data";
pub(crate) const EVENT_COLUMNS: &str = "seq, id, event_type, org_id, project_id, data, created_at";
pub(crate) const PROJECT_COLUMNS: &str = "seq, id, org_id, name, status, customer_external_id, timezone, primary_language, owner_email, metadata, created_at, updated_at, archived_at";
pub(crate) const JOB_COLUMNS: &str = "id, org_id, project_id, api_key_id, status, format, variant_count, brief, reservation_id, reserved, planned_cost, fail_reason, test_mode, container_ids, started_at, finish_at, finished_at, error";
pub(crate) const CONTAINER_COLUMNS: &str = "id, job_id, org_id, project_id, format, status, assets, created_at";
pub(crate) const POST_COLUMNS: &str =
    "seq, id, org_id, project_id, container_id, platform, scheduled_for, status, published_at, canceled_at, created_at, updated_at";
pub(crate) const ENDPOINT_COLUMNS: &str = "seq, id, org_id, project_id, url, description, status, events, scope, metadata, secret_sealed, previous_secret, previous_expires_at, created_at, updated_at, last_success_at, last_failure_at, consecutive_failures, start_seq";
pub(crate) const DELIVERY_COLUMNS: &str = "seq, id, endpoint_id, event_org_id, event_id, event_type, body, status, attempts, next_retry_at, delivered_at, abandoned_at, last_response_status, last_response_at, last_error, replay_of, created_at";
pub(crate) const ATTEMPT_COLUMNS: &str = "seq, delivery_id, attempted_at, duration_ms, response_status, error, response_body_excerpt";
pub(crate) const WALLET_COLUMNS: &str = "org_id, included_remaining, prepaid_balance, reserved, used_this_period, included_this_period, period_start, monthly_cap, refill_threshold, refill_amount, updated_at, included_carryover";
pub(crate) const TRANSFER_COLUMNS: &str =
    "id, org_id, debit_account, credit_account, amount, kind, status, pending_id, expires_at, metadata, created_at";
pub(crate) const CREDIT_EVENT_COLUMNS: &str = "seq, id, org_id, project_id, credits, event_type, format, container_id, workflow_id, balance_after_prepaid, usage_after_period, metadata, created_at";

fn col(prefix: &str, name: &str) -> String {
    format!("{prefix}{name}")
}

pub(crate) fn int(r: &Row, name: &str) -> Result<i64> {
    r.int(name)
}

fn opt_int(r: &Row, name: &str) -> Result<Option<i64>> {
    r.opt_int(name)
}

fn text(r: &Row, name: &str) -> Result<String> {
    r.text(name)
}

fn opt_text(r: &Row, name: &str) -> Result<Option<String>> {
    r.opt_text(name)
}

fn opt_ts(r: &Row, name: &str) -> Result<Option<Timestamp>> {
    Ok(opt_int(r, name)?.map(Timestamp))
}

fn corrupt(what: &str, v: &str) -> CoreError {
    CoreError::internal(format!("corrupt stored {what}: {v:?}"))
}

pub(crate) fn org(r: &Row, p: &str) -> Result<Org> {
    let c = |n: &str| col(p, n);
    debug_assert_eq!(ORG_FIELDS.len(), ORG_COLUMNS.split(',').count());
    let status = text(r, &c("status"))?;
    let reclaimed = opt_int(r, &c("archive_reclaimed"))?;
    let revoked = opt_int(r, &c("archive_revoked"))?;
    Ok(Org {
        seq: int(r, &c("seq"))?,
        id: OrgId::from_stored(&text(r, &c("id"))?)?,
        parent_id: opt_text(r, &c("parent_id"))?.map(|s| OrgId::from_stored(&s)).transpose()?,
        name: text(r, &c("name"))?,
        status: OrgStatus::parse(&status).ok_or_else(|| corrupt("org status", &status))?,
        metadata: Metadata::from_stored(&text(r, &c("metadata"))?),
        billing_email: opt_text(r, &c("billing_email"))?,
        access_revoked: int(r, &c("access_revoked"))? != 0,
        archived_at: opt_ts(r, &c("archived_at"))?,
        archive_stats: reclaimed.zip(revoked),
        created_at: Timestamp(int(r, &c("created_at"))?),
        updated_at: Timestamp(int(r, &c("updated_at"))?),
    })
}

pub(crate) fn key(r: &Row, p: &str) -> Result<ApiKey> {
    let c = |n: &str| col(p, n);
    debug_assert_eq!(KEY_FIELDS.len(), KEY_COLUMNS.split(',').count());
    let env = text(r, &c("env"))?;
    let tier = text(r, &c("tier"))?;
    let status = text(r, &c("status"))?;
    Ok(ApiKey {
        seq: int(r, &c("seq"))?,
        id: ApiKeyId::from_stored(&text(r, &c("id"))?)?,
        org_id: OrgId::from_stored(&text(r, &c("org_id"))?)?,
        name: text(r, &c("name"))?,
        env: Env::parse(&env).ok_or_else(|| corrupt("env", &env))?,
        keyid: text(r, &c("keyid"))?,
        secret_hash: text(r, &c("secret_hash"))?,
        scopes: Scopes::from_stored(&text(r, &c("scopes"))?),
        tier: Tier::parse(&tier).ok_or_else(|| corrupt("tier", &tier))?,
        status: KeyStatus::parse(&status).ok_or_else(|| corrupt("key status", &status))?,
        killed: int(r, &c("killed"))? != 0,
        created_at: Timestamp(int(r, &c("created_at"))?),
        last_used_at: opt_ts(r, &c("last_used_at"))?,
        rotated_at: opt_ts(r, &c("rotated_at"))?,
        revoked_at: opt_ts(r, &c("revoked_at"))?,
        grace_until: opt_ts(r, &c("grace_until"))?,
        superseded_by: opt_text(r, &c("superseded_by"))?.map(|s| ApiKeyId::from_stored(&s)).transpose()?,
    })
}

pub(crate) fn idem(r: &Row) -> Result<IdemRecord> {
    let status = opt_int(r, "status")?;
    let body = opt_text(r, "body")?;
    Ok(IdemRecord {
        api_key_id: ApiKeyId::from_stored(&text(r, "api_key_id")?)?,
        key: text(r, "idem_key")?,
        fingerprint: text(r, "fingerprint")?,
        reply: match (status, body) {
            (Some(s), Some(b)) => {
                Some(Reply { status: u16::try_from(s).map_err(|_| corrupt("reply status", &s.to_string()))?, body: b.into_bytes() })
            }
            _ => None,
        },
        created_at: Timestamp(int(r, "created_at")?),
        lease_until: Timestamp(int(r, "lease_until")?),
    })
}

pub(crate) fn audit(r: &Row) -> Result<AuditEntry> {
    let actor = text(r, "actor")?;
    Ok(AuditEntry {
        seq: int(r, "seq")?,
        id: AuditId::from_stored(&text(r, "id")?)?,
        event_type: text(r, "event_type")?,
        occurred_at: Timestamp(int(r, "occurred_at")?),
        request_id: opt_text(r, "request_id")?.map(|s| RequestId::from_stored(&s)).transpose()?,
        org_id: opt_text(r, "org_id")?.map(|s| OrgId::from_stored(&s)).transpose()?,
        project_id: opt_text(r, "project_id")?.map(|s| ProjectId::from_stored(&s)).transpose()?,
        api_key_id: opt_text(r, "api_key_id")?.map(|s| ApiKeyId::from_stored(&s)).transpose()?,
        actor: Actor::parse(&actor).ok_or_else(|| corrupt("actor", &actor))?,
        data: serde_json::from_str(&text(r, "data")?).map_err(|e| CoreError::internal(format!("audit data: {e}")))?,
    })
}

pub(crate) fn event(r: &Row) -> Result<Event> {
    let ty = text(r, "event_type")?;
    Ok(Event {
        seq: int(r, "seq")?,
        id: EventId::from_stored(&text(r, "id")?)?,
        event_type: EventType::parse(&ty).ok_or_else(|| corrupt("event type", &ty))?,
        org_id: OrgId::from_stored(&text(r, "org_id")?)?,
        project_id: opt_text(r, "project_id")?.map(|s| ProjectId::from_stored(&s)).transpose()?,
        data: serde_json::from_str(&text(r, "data")?).map_err(|e| CoreError::internal(format!("event data: {e}")))?,
        created_at: Timestamp(int(r, "created_at")?),
    })
}

/// A wallet from columns named `<p><column>`.
pub(crate) fn wallet_prefixed(r: &Row, p: &str) -> Result<Wallet> {
    let c = |n: &str| col(p, n);
    Ok(Wallet {
        org_id: OrgId::from_stored(&text(r, &c("org_id"))?)?,
        included_remaining: int(r, &c("included_remaining"))?,
        prepaid_balance: int(r, &c("prepaid_balance"))?,
        reserved: int(r, &c("reserved"))?,
        used_this_period: int(r, &c("used_this_period"))?,
        included_this_period: int(r, &c("included_this_period"))?,
        period_start: Timestamp(int(r, &c("period_start"))?),
        config: CreditConfig {
            monthly_credit_cap: opt_int(r, &c("monthly_cap"))?,
            refill_threshold: opt_int(r, &c("refill_threshold"))?,
            refill_amount: opt_int(r, &c("refill_amount"))?,
        },
        updated_at: Timestamp(int(r, &c("updated_at"))?),
        included_carryover: int(r, &c("included_carryover"))?,
    })
}

pub(crate) fn wallet(r: &Row) -> Result<Wallet> {
    wallet_prefixed(r, "")
}

pub(crate) fn transfer(r: &Row) -> Result<Transfer> {
    let kind = text(r, "kind")?;
    let status = text(r, "status")?;
    Ok(Transfer {
        id: TxnId::from_stored(&text(r, "id")?)?,
        org_id: OrgId::from_stored(&text(r, "org_id")?)?,
        debit: Account::from_stored(&text(r, "debit_account")?)?,
        credit: Account::from_stored(&text(r, "credit_account")?)?,
        amount: int(r, "amount")?,
        kind: TransferKind::parse(&kind).ok_or_else(|| corrupt("transfer kind", &kind))?,
        status: TransferStatus::parse(&status).ok_or_else(|| corrupt("transfer status", &status))?,
        pending_id: opt_text(r, "pending_id")?.map(|s| TxnId::from_stored(&s)).transpose()?,
        expires_at: opt_ts(r, "expires_at")?,
        metadata: serde_json::from_str(&text(r, "metadata")?).map_err(|e| CoreError::internal(format!("transfer metadata: {e}")))?,
        created_at: Timestamp(int(r, "created_at")?),
    })
}

pub(crate) fn credit_event(r: &Row) -> Result<CreditEvent> {
    let ty = text(r, "event_type")?;
    let event_type =
        strata_core::credits::CREDIT_EVENT_TYPES.iter().find(|t| **t == ty).copied().ok_or_else(|| corrupt("credit event type", &ty))?;
    Ok(CreditEvent {
        seq: int(r, "seq")?,
        id: text(r, "id")?,
        org_id: OrgId::from_stored(&text(r, "org_id")?)?,
        project_id: opt_text(r, "project_id")?.map(|s| ProjectId::from_stored(&s)).transpose()?,
        credits: int(r, "credits")?,
        event_type,
        format: opt_text(r, "format")?,
        container_id: opt_text(r, "container_id")?,
        workflow_id: opt_text(r, "workflow_id")?,
        balance_after_prepaid: int(r, "balance_after_prepaid")?,
        usage_after_period: int(r, "usage_after_period")?,
        metadata: serde_json::from_str(&text(r, "metadata")?).map_err(|e| CoreError::internal(format!("credit event metadata: {e}")))?,
        created_at: Timestamp(int(r, "created_at")?),
    })
}

fn json(r: &Row, name: &str) -> Result<serde_json::Value> {
    serde_json::from_str(&text(r, name)?).map_err(|e| CoreError::internal(format!("column {name}: {e}")))
}

pub(crate) fn project(r: &Row) -> Result<Project> {
    let status = text(r, "status")?;
    Ok(Project {
        seq: int(r, "seq")?,
        id: ProjectId::from_stored(&text(r, "id")?)?,
        org_id: OrgId::from_stored(&text(r, "org_id")?)?,
        name: text(r, "name")?,
        status: ProjectStatus::parse(&status).ok_or_else(|| corrupt("project status", &status))?,
        customer_external_id: opt_text(r, "customer_external_id")?,
        timezone: text(r, "timezone")?,
        primary_language: text(r, "primary_language")?,
        owner_email: opt_text(r, "owner_email")?,
        metadata: json(r, "metadata")?,
        created_at: Timestamp(int(r, "created_at")?),
        updated_at: Timestamp(int(r, "updated_at")?),
        archived_at: opt_ts(r, "archived_at")?,
    })
}

pub(crate) fn job(r: &Row) -> Result<Job> {
    let status = text(r, "status")?;
    let outcome = match (opt_int(r, "planned_cost")?, opt_text(r, "fail_reason")?) {
        (_, Some(reason)) => Outcome::Fail { reason },
        (Some(actual_cost), None) => Outcome::Complete { actual_cost },
        (None, None) => return Err(corrupt("job outcome", "none")),
    };
    let ids: Vec<String> =
        serde_json::from_str(&text(r, "container_ids")?).map_err(|e| CoreError::internal(format!("container ids: {e}")))?;
    Ok(Job {
        id: JobId::from_stored(&text(r, "id")?)?,
        org_id: OrgId::from_stored(&text(r, "org_id")?)?,
        project_id: ProjectId::from_stored(&text(r, "project_id")?)?,
        api_key_id: ApiKeyId::from_stored(&text(r, "api_key_id")?)?,
        status: JobStatus::parse(&status).ok_or_else(|| corrupt("job status", &status))?,
        format: text(r, "format")?,
        variant_count: int(r, "variant_count")?,
        brief: json(r, "brief")?,
        reservation_id: opt_text(r, "reservation_id")?.map(|s| TxnId::from_stored(&s)).transpose()?,
        reserved: int(r, "reserved")?,
        outcome,
        test_mode: int(r, "test_mode")? != 0,
        container_ids: ids.iter().map(|s| ContainerId::from_stored(s)).collect::<Result<_>>()?,
        started_at: Timestamp(int(r, "started_at")?),
        finish_at: Timestamp(int(r, "finish_at")?),
        finished_at: opt_ts(r, "finished_at")?,
        error: opt_text(r, "error")?,
    })
}

pub(crate) fn container(r: &Row) -> Result<Container> {
    let status = text(r, "status")?;
    Ok(Container {
        id: ContainerId::from_stored(&text(r, "id")?)?,
        job_id: JobId::from_stored(&text(r, "job_id")?)?,
        org_id: OrgId::from_stored(&text(r, "org_id")?)?,
        project_id: ProjectId::from_stored(&text(r, "project_id")?)?,
        format: text(r, "format")?,
        status: ContainerStatus::parse(&status).ok_or_else(|| corrupt("container status", &status))?,
        assets: json(r, "assets")?,
        created_at: Timestamp(int(r, "created_at")?),
    })
}

pub(crate) fn post(r: &Row) -> Result<ScheduledPost> {
    let status = text(r, "status")?;
    Ok(ScheduledPost {
        seq: int(r, "seq")?,
        id: PostId::from_stored(&text(r, "id")?)?,
        org_id: OrgId::from_stored(&text(r, "org_id")?)?,
        project_id: ProjectId::from_stored(&text(r, "project_id")?)?,
        container_id: ContainerId::from_stored(&text(r, "container_id")?)?,
        platform: text(r, "platform")?,
        scheduled_for: Timestamp(int(r, "scheduled_for")?),
        status: PostStatus::parse(&status).ok_or_else(|| corrupt("post status", &status))?,
        published_at: opt_ts(r, "published_at")?,
        canceled_at: opt_ts(r, "canceled_at")?,
        created_at: Timestamp(int(r, "created_at")?),
        updated_at: Timestamp(int(r, "updated_at")?),
    })
}

pub(crate) fn endpoint(r: &Row) -> Result<Endpoint> {
    let status = text(r, "status")?;
    let scope = text(r, "scope")?;
    let events: Vec<String> =
        serde_json::from_str(&text(r, "events")?).map_err(|e| CoreError::internal(format!("endpoint events: {e}")))?;
    Ok(Endpoint {
        seq: int(r, "seq")?,
        id: EndpointId::from_stored(&text(r, "id")?)?,
        org_id: OrgId::from_stored(&text(r, "org_id")?)?,
        project_id: opt_text(r, "project_id")?.map(|s| ProjectId::from_stored(&s)).transpose()?,
        url: text(r, "url")?,
        description: opt_text(r, "description")?,
        status: EndpointStatus::parse(&status).ok_or_else(|| corrupt("endpoint status", &status))?,
        events: events.iter().map(|e| EventType::parse(e).ok_or_else(|| corrupt("event type", e))).collect::<Result<_>>()?,
        scope: EndpointScope::parse(&scope).ok_or_else(|| corrupt("endpoint scope", &scope))?,
        metadata: Metadata::from_stored(&text(r, "metadata")?),
        secret_sealed: text(r, "secret_sealed")?,
        previous_secret_sealed: opt_text(r, "previous_secret")?,
        previous_expires_at: opt_ts(r, "previous_expires_at")?,
        created_at: Timestamp(int(r, "created_at")?),
        updated_at: Timestamp(int(r, "updated_at")?),
        last_success_at: opt_ts(r, "last_success_at")?,
        last_failure_at: opt_ts(r, "last_failure_at")?,
        consecutive_failures: int(r, "consecutive_failures")?,
        start_seq: int(r, "start_seq")?,
    })
}

pub(crate) fn delivery(r: &Row) -> Result<Delivery> {
    let status = text(r, "status")?;
    let ty = text(r, "event_type")?;
    Ok(Delivery {
        seq: int(r, "seq")?,
        id: DeliveryId::from_stored(&text(r, "id")?)?,
        endpoint_id: EndpointId::from_stored(&text(r, "endpoint_id")?)?,
        event_org_id: OrgId::from_stored(&text(r, "event_org_id")?)?,
        event_id: EventId::from_stored(&text(r, "event_id")?)?,
        event_type: EventType::parse(&ty).ok_or_else(|| corrupt("event type", &ty))?,
        body: text(r, "body")?,
        status: DeliveryStatus::parse(&status).ok_or_else(|| corrupt("delivery status", &status))?,
        attempts: int(r, "attempts")?,
        next_retry_at: opt_ts(r, "next_retry_at")?,
        delivered_at: opt_ts(r, "delivered_at")?,
        abandoned_at: opt_ts(r, "abandoned_at")?,
        last_response_status: opt_int(r, "last_response_status")?,
        last_response_at: opt_ts(r, "last_response_at")?,
        last_error: opt_text(r, "last_error")?,
        replay_of: opt_text(r, "replay_of")?.map(|s| DeliveryId::from_stored(&s)).transpose()?,
        created_at: Timestamp(int(r, "created_at")?),
    })
}

pub(crate) fn attempt(r: &Row) -> Result<DeliveryAttempt> {
    Ok(DeliveryAttempt {
        seq: int(r, "seq")?,
        delivery_id: DeliveryId::from_stored(&text(r, "delivery_id")?)?,
        attempted_at: Timestamp(int(r, "attempted_at")?),
        duration_ms: int(r, "duration_ms")?,
        response_status: opt_int(r, "response_status")?,
        error: opt_text(r, "error")?,
        response_body_excerpt: opt_text(r, "response_body_excerpt")?,
    })
}
