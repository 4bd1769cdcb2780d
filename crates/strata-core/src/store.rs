//! The Store port: what the services need from a database, and nothing about how it is done.
//! Business rules never live behind this trait; backends only store and fetch.
//!
//! Reads of mutable rows inside a write transaction (`Store::write`) lock those rows until commit,
//! so a read-modify-write in a service is never a lost update on any backend.

use async_trait::async_trait;

use crate::audit::{AuditEntry, AuditFilter};
use crate::clock::Timestamp;
use crate::content::{Container, Job};
use crate::credits::{CreditEvent, CreditEventFilter, Transfer, Wallet};
use crate::cursor::PageRequest;
use crate::error::Result;
use crate::event::{Event, EventFilter, EventType};
use crate::id::{ApiKeyId, ContainerId, DeliveryId, EndpointId, EventId, JobId, OrgId, PostId, ProjectId, TxnId};
use crate::idempotency::{IdemRecord, Reply};
use crate::key::ApiKey;
use crate::ledger::LedgerBatch;
use crate::org::{Org, OrgFilter};
use crate::post::ScheduledPost;
use crate::project::{Project, ProjectFilter};
use crate::usage::{Bucket, UsageRow};
use crate::webhook::{Delivery, DeliveryAttempt, DeliveryStatus, Endpoint, EndpointStatus};

/// Work a committed write may have left for a background worker: the store wakes the matching
/// worker after the commit (in this process, and on PostgreSQL in every process sharing the
/// database), so it does not wait for its next poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Wake {
    /// New outbox events to turn into deliveries.
    Events,
    /// New or re-queued deliveries to send.
    Deliveries,
}

/// Whose rows a by-id read may return. A tenant's read finds only that tenant's rows, so
/// another tenant's id is simply not found and nothing of it is locked (CONTRACT §2: another
/// tenant's resource is indistinguishable from a missing one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// Rows of this org; for an org read, its direct children.
    Org(OrgId),
    /// Any row: for the operator's commands and the background workers, which act across
    /// tenants by design, and for rows found through an already scoped one.
    System,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `"sqlite"` or `"postgres"`.
    fn backend(&self) -> &'static str;

    /// A write transaction. On SQLite writers are serialized; on PostgreSQL rows read through it
    /// are locked (`FOR UPDATE`).
    async fn write(&self) -> Result<Box<dyn Tx>>;

    /// A write transaction committed together with this process's concurrent grouped writes
    /// (group commit): it runs inside a savepoint of a database transaction those writes share,
    /// so a failed or dropped one undoes only itself, and its `commit` returns once that shared
    /// transaction committed (if that commit fails, every write in it fails: 503 when the
    /// database could not be reached, else 500, and none of them is applied). Rows it locks stay
    /// locked until then, so a hot row (a partner's wallet) is locked once per batch, not once
    /// per write. For short writes that must not wait on anything another grouped write could
    /// hold (rows a batch holds are taken in the order its writes came, so a write of its own
    /// that takes two of them in the other order deadlocks with it). On PostgreSQL a batch waits
    /// at most 20 ms for a row another transaction holds, then the write fails with
    /// `CoreError::lock_busy` (nothing of it applied) and the service runs it with `write`, so a
    /// batch is never part of a deadlock. SQLite groups every write already; the default is
    /// `write`. Allocations use it.
    async fn write_grouped(&self) -> Result<Box<dyn Tx>> {
        self.write().await
    }

    /// A read-only transaction (a consistent snapshot where the backend gives one).
    async fn read(&self) -> Result<Box<dyn Tx>>;

    /// The wallet of `org` (none: no such org) as stored by every write committed before this
    /// call, for whoami's balance. PostgreSQL shares one statement among concurrent calls (read
    /// coalescing, strata-store's `coalesce`); SQLite reads it on its own.
    async fn current_wallet(&self, org: OrgId) -> Result<Option<Wallet>>;

    /// `Tx::child_summary` (`parent`'s direct child `id`, its wallet and project count), with
    /// `current_wallet`'s freshness and sharing.
    async fn current_child_summary(&self, parent: OrgId, id: OrgId) -> Result<Option<(Org, Wallet, i64)>>;

    /// The auth hot path: the key with this public keyid and its org, from the store's
    /// authorization cache when it holds them (no statement; the wallet is then `None`), else in
    /// one indexed read that brings the org's wallet along (for whoami). The org's
    /// `access_revoked` is the effective cut-off: its own, or its parent's (an operator's
    /// revocation of a partner holds for its children). A committed change to a key or an org
    /// holds for the next lookup in this process and within 1 s in every other one.
    async fn auth_lookup(&self, keyid: &str) -> Result<Option<(ApiKey, Org, Option<Wallet>)>>;

    /// Inserts an idempotency claim unless one exists, in a transaction of its own that need not
    /// wait for the disk; returns whether it was inserted. Relaxed durability is safe here: the
    /// claim matters only once the write's own transaction commits it complete, and that
    /// durable commit comes later in the log, so it makes the claim durable too; a claim lost in
    /// a crash took no effect and acknowledged nothing. (PostgreSQL: `synchronous_commit = off`;
    /// SQLite's group commit already shares one sync among concurrent writers.)
    async fn idem_claim_fresh(&self, rec: &IdemRecord) -> Result<bool>;

    /// Records when keys were last used (batched by the caller; never per request).
    async fn touch_keys(&self, used: &[(ApiKeyId, Timestamp)]) -> Result<()>;

    /// Whether the database answers.
    async fn ping(&self) -> Result<()>;

    /// The same database through connections of the background workers' own, where requests
    /// could otherwise take every connection (a pool) and starve them; `None` where they share.
    fn for_workers(&self) -> Option<std::sync::Arc<dyn Store>> {
        None
    }

    /// Notified after a committed transaction wrote work of this kind (one waiter per kind;
    /// a notification that finds no waiter is kept for the next one).
    fn wakeup(&self, kind: Wake) -> std::sync::Arc<tokio::sync::Notify>;
}

/// One database transaction: what a service reads and writes, by aggregate (each sub-trait
/// below holds one aggregate's rows). Dropped without `commit`, it rolls back.
#[async_trait]
pub trait Tx:
    OrgRows
    + KeyRows
    + IdempotencyRows
    + AuditRows
    + EventRows
    + LedgerRows
    + ProjectRows
    + JobRows
    + PostRows
    + WebhookRows
    + SettingRows
    + Send
{
    async fn commit(self: Box<Self>) -> Result<()>;

    /// Takes a background step's item (`"post:<id>"`, …) for this transaction unless another
    /// transaction has it, without waiting: `false` means another node's step is on it and this
    /// one moves on. PostgreSQL: a transaction-scoped advisory lock (`pg_try_advisory_xact_lock`)
    /// on the item's name, taken before any row lock, so it never reorders the row locks every
    /// writer takes (org, then project or wallet, then the item); SQLite's one writer: always.
    /// The step still re-checks the item's state, which a step that took it before this
    /// transaction began may have changed.
    async fn try_take_item(&mut self, item: &str) -> Result<bool>;
}

/// Organizations: partners (root orgs) and their children. Part of `Tx`.
#[async_trait]
pub trait OrgRows: Send {
    // By-id reads take the `Owner` whose rows they may see.
    async fn insert_org(&mut self, org: &Org) -> Result<()>;
    async fn update_org(&mut self, org: &Org) -> Result<()>;
    /// An org read inside a write and held against a concurrent change (archive, suspension)
    /// until commit, without queueing concurrent writes that hold it the same way (PostgreSQL
    /// `FOR SHARE`; SQLite's single writer serializes anyway): the org a write acts in, or a
    /// child a write only needs to stay as it is (an allocation into it). Seen by
    /// `Owner::Org(parent)`, only a direct child of `parent`.
    async fn org_shared(&mut self, owner: Owner, id: OrgId) -> Result<Option<Org>>;
    /// An org; seen by `Owner::Org(parent)`, only a direct child of `parent`.
    async fn org(&mut self, owner: Owner, id: OrgId) -> Result<Option<Org>>;
    /// Newest first; `parent: None` lists root (partner) orgs.
    async fn list_orgs(&mut self, parent: Option<OrgId>, filter: &OrgFilter, page: PageRequest) -> Result<Vec<Org>>;
    /// `list_orgs` of `parent`'s children, each with its wallet and its project count (the
    /// children list's `expand=summary`), in one statement for the whole page.
    async fn list_child_summaries(&mut self, parent: OrgId, filter: &OrgFilter, page: PageRequest) -> Result<Vec<(Org, Wallet, i64)>>;
    async fn count_orgs(&mut self) -> Result<i64>;
    /// A direct child of `parent` with its wallet and its project count, in one read (the
    /// single-org read's `summary`).
    async fn child_summary(&mut self, parent: OrgId, id: OrgId) -> Result<Option<(Org, Wallet, i64)>>;
}

/// API keys. Part of `Tx`.
#[async_trait]
pub trait KeyRows: Send {
    async fn insert_key(&mut self, key: &ApiKey) -> Result<()>;
    async fn update_key(&mut self, key: &ApiKey) -> Result<()>;
    async fn key(&mut self, owner: Owner, id: ApiKeyId) -> Result<Option<ApiKey>>;
    async fn key_by_keyid(&mut self, keyid: &str) -> Result<Option<ApiKey>>;
    async fn list_keys(&mut self, org: OrgId, page: PageRequest) -> Result<Vec<ApiKey>>;
    /// Revokes every active key of the org; returns how many.
    async fn revoke_org_keys(&mut self, org: OrgId, at: Timestamp) -> Result<u64>;
}

/// Idempotency claims and their stored replies. Part of `Tx`.
#[async_trait]
pub trait IdempotencyRows: Send {
    async fn idem_get(&mut self, key_id: ApiKeyId, key: &str) -> Result<Option<IdemRecord>>;
    /// Inserts a claim unless one exists; returns whether it was inserted.
    async fn idem_insert(&mut self, rec: &IdemRecord) -> Result<bool>;
    /// Takes over a dead claim (its lease ran out).
    async fn idem_renew(&mut self, key_id: ApiKeyId, key: &str, created_at: Timestamp, lease_until: Timestamp) -> Result<()>;
    /// Completes the claim taken at `token`; returns 0 when that claim is no longer held.
    async fn idem_complete(&mut self, key_id: ApiKeyId, key: &str, token: Timestamp, reply: &Reply) -> Result<u64>;
    /// Releases the claim taken at `token` (if still held).
    async fn idem_delete(&mut self, key_id: ApiKeyId, key: &str, token: Timestamp) -> Result<()>;
    async fn idem_prune(&mut self, created_before: Timestamp) -> Result<u64>;
}

/// The audit log. Part of `Tx`.
#[async_trait]
pub trait AuditRows: Send {
    async fn insert_audit(&mut self, entry: &AuditEntry) -> Result<()> {
        self.insert_audits(std::slice::from_ref(entry)).await
    }
    /// Inserts entries in multi-row statements (the rejection flusher's batches).
    async fn insert_audits(&mut self, entries: &[AuditEntry]) -> Result<()>;
    async fn list_audit(&mut self, org: OrgId, filter: &AuditFilter, page: PageRequest) -> Result<Vec<AuditEntry>>;
}

/// The event log, which is also the webhooks' outbox: events are inserted with the
/// change that made them and dispatched into deliveries afterwards. Part of `Tx`.
#[async_trait]
pub trait EventRows: Send {
    async fn insert_event(&mut self, event: &Event) -> Result<()>;
    async fn list_events(&mut self, org: OrgId, filter: &EventFilter, page: PageRequest) -> Result<Vec<Event>>;
    async fn event(&mut self, org: OrgId, id: EventId) -> Result<Option<Event>>;

    /// Events not yet turned into deliveries, oldest first.
    async fn undispatched_events(&mut self, limit: u32) -> Result<Vec<Event>>;
    /// Marks events dispatched; returns those this call marked (not another dispatcher: on
    /// PostgreSQL, events another transaction is marking are skipped, `FOR UPDATE SKIP LOCKED`).
    async fn mark_dispatched(&mut self, ids: &[EventId]) -> Result<Vec<EventId>>;
    /// The newest event's sequence number (0 when there is none).
    async fn max_event_seq(&mut self) -> Result<i64>;
    /// Deletes up to `limit` dispatched events created before `before` that have no pending
    /// delivery; returns how many.
    async fn purge_events(&mut self, before: Timestamp, limit: u32) -> Result<u64>;
}

/// The ledger: wallets, transfers and ledger entries. Part of `Tx`.
#[async_trait]
pub trait LedgerRows: Send {
    async fn insert_wallet(&mut self, wallet: &Wallet) -> Result<()>;
    /// The wallet, locked inside a write transaction.
    async fn wallet(&mut self, org: OrgId) -> Result<Option<Wallet>>;
    /// The wallet as last committed, never locked, even inside a write transaction: for a
    /// contended wallet whose change is guarded when the batch is posted.
    async fn wallet_snapshot(&mut self, org: OrgId) -> Result<Option<Wallet>>;
    /// Writes a wallet's terms: its credit config and its period (start and the period's
    /// counters). Never its balances: those move only through `post_transfers`.
    async fn update_wallet_terms(&mut self, wallet: &Wallet) -> Result<()>;
    /// Persists a ledger batch: inserts its new transfers, resolves its reservations (each must
    /// still be pending), and moves each wallet by its change in the batch's order, each move
    /// guarded so that no bucket goes below zero and nothing is reserved beyond the balance.
    /// Then inserts the batch's ledger entries, stamped with their wallet's balances after.
    /// Returns the changed wallets after, or `None` when a guard refused (another transaction
    /// spent the credits first); the caller then drops the transaction.
    async fn post_transfers(&mut self, batch: &LedgerBatch) -> Result<Option<Vec<Wallet>>>;
    async fn transfer(&mut self, owner: Owner, id: TxnId) -> Result<Option<Transfer>>;
    /// Pending reservations whose timeout has passed, oldest first.
    async fn expired_reservations(&mut self, now: Timestamp, limit: u32) -> Result<Vec<TxnId>>;
    /// Wallets still counting a period that started before `period_start`.
    async fn stale_wallets(&mut self, period_start: Timestamp, limit: u32) -> Result<Vec<OrgId>>;
    async fn list_credit_events(&mut self, org: OrgId, filter: &CreditEventFilter, page: PageRequest) -> Result<Vec<CreditEvent>>;
    /// The usage report's sums of `org`'s ledger entries (of `project` only, when given) in each
    /// of `buckets`, per bucket and project, in one grouped read. Buckets and projects where
    /// nothing counted have no row.
    async fn usage_report(&mut self, org: OrgId, buckets: &[Bucket], project: Option<ProjectId>) -> Result<Vec<UsageRow>>;
    /// Every wallet and every transfer, for the ledger's invariant checks.
    async fn ledger_snapshot(&mut self) -> Result<(Vec<Wallet>, Vec<Transfer>)>;
}

/// Projects. Part of `Tx`.
#[async_trait]
pub trait ProjectRows: Send {
    // A project's id and a job's id may be chosen by the client, so they are unique only
    // within an org (another org may hold the same one): every read, update and join by such
    // an id is keyed by (org, id), or by the row's `seq`, never by the id alone.
    async fn insert_project(&mut self, project: &Project) -> Result<()>;
    /// Writes every field of the row `project.seq`, including `org_id` (a migration moves
    /// projects; the project's jobs follow in the same statement).
    async fn update_project(&mut self, project: &Project) -> Result<()>;
    /// The project `id` of `org` (locked inside a write).
    async fn project(&mut self, org: OrgId, id: ProjectId) -> Result<Option<Project>>;
    async fn project_by_external_id(&mut self, org: OrgId, external_id: &str) -> Result<Option<Project>>;
    async fn list_projects(&mut self, org: OrgId, filter: &ProjectFilter, page: PageRequest) -> Result<Vec<Project>>;
    async fn count_projects(&mut self, org: OrgId) -> Result<i64>;
    /// Re-files the jobs, containers and posts of `from`'s project `project` under `to`.
    async fn move_project_rows(&mut self, project: ProjectId, from: OrgId, to: OrgId) -> Result<()>;
}

/// Content jobs and the containers they make. Part of `Tx`.
#[async_trait]
pub trait JobRows: Send {
    async fn insert_job(&mut self, job: &Job) -> Result<()>;
    /// Writes the end of the job `job.id` of `job.org_id`.
    async fn update_job(&mut self, job: &Job) -> Result<()>;
    /// The job `id` of `org` (locked inside a write).
    async fn job(&mut self, org: OrgId, id: JobId) -> Result<Option<Job>>;
    /// Running jobs whose planned end has come, oldest first, each with its org.
    async fn due_jobs(&mut self, now: Timestamp, limit: u32) -> Result<Vec<(OrgId, JobId)>>;
    /// When each running job started by this key is planned to end.
    async fn running_job_ends_for_key(&mut self, key: ApiKeyId) -> Result<Vec<Timestamp>>;
    async fn running_jobs_for_project(&mut self, org: OrgId, project: ProjectId) -> Result<i64>;
    async fn insert_container(&mut self, container: &Container) -> Result<()>;
    async fn update_container(&mut self, container: &Container) -> Result<()>;
    async fn container(&mut self, owner: Owner, id: ContainerId) -> Result<Option<Container>>;
    /// The containers of `org`'s job `job`, in creation order.
    async fn containers_of_job(&mut self, org: OrgId, job: JobId) -> Result<Vec<Container>>;
}

/// Scheduled posts. Part of `Tx`.
#[async_trait]
pub trait PostRows: Send {
    async fn insert_post(&mut self, post: &ScheduledPost) -> Result<()>;
    async fn update_post(&mut self, post: &ScheduledPost) -> Result<()>;
    async fn post(&mut self, owner: Owner, id: PostId) -> Result<Option<ScheduledPost>>;
    async fn list_posts(&mut self, org: OrgId, project: ProjectId, page: PageRequest) -> Result<Vec<ScheduledPost>>;
    /// Scheduled posts whose time has come, oldest first, leaving out those of suspended or
    /// cut-off orgs (they wait), with each post's org and project.
    async fn due_posts(&mut self, now: Timestamp, limit: u32) -> Result<Vec<(PostId, OrgId, ProjectId)>>;
    /// Posts still waiting to publish, of a project or (with `project: None`) of a whole org.
    async fn pending_posts(&mut self, org: OrgId, project: Option<ProjectId>) -> Result<Vec<ScheduledPost>>;
}

/// Webhook endpoints, deliveries and delivery attempts. Part of `Tx`.
#[async_trait]
pub trait WebhookRows: Send {
    async fn insert_endpoint(&mut self, endpoint: &Endpoint) -> Result<()>;
    async fn update_endpoint(&mut self, endpoint: &Endpoint) -> Result<()>;
    async fn delete_endpoint(&mut self, id: EndpointId) -> Result<()>;
    async fn endpoint(&mut self, id: EndpointId) -> Result<Option<Endpoint>>;
    async fn list_endpoints(
        &mut self,
        org: OrgId,
        project: Option<ProjectId>,
        statuses: &[EndpointStatus],
        page: PageRequest,
    ) -> Result<Vec<Endpoint>>;
    /// Endpoints that may receive an event of `org`: its own, and its parent's firehoses.
    async fn endpoints_for_event(&mut self, org: OrgId, parent: Option<OrgId>) -> Result<Vec<Endpoint>>;
    async fn insert_deliveries(&mut self, deliveries: &[Delivery]) -> Result<()>;
    async fn delivery(&mut self, id: DeliveryId) -> Result<Option<Delivery>>;
    async fn list_deliveries(
        &mut self,
        endpoint: EndpointId,
        event_types: &[EventType],
        statuses: &[DeliveryStatus],
        page: PageRequest,
    ) -> Result<Vec<Delivery>>;
    /// Pending deliveries due at `now` (and claims whose lease ran out) to active endpoints other
    /// than `exclude`, whose event's org is neither suspended nor cut off (nor archived, for the
    /// org's own endpoints), oldest first, with their endpoint.
    async fn due_deliveries(&mut self, now: Timestamp, exclude: &[EndpointId], limit: u32) -> Result<Vec<(DeliveryId, EndpointId)>>;
    /// Claims those of `ids` still due at `now` for one attempt each: counts the attempt and
    /// leases the delivery until `lease_until`, atomically, so no other sender takes it. Returns
    /// the claimed deliveries as they are after the claim.
    async fn claim_deliveries(&mut self, ids: &[DeliveryId], now: Timestamp, lease_until: Timestamp) -> Result<Vec<Delivery>>;
    /// Writes an attempt's outcome onto a claimed delivery, only if the claim that made the
    /// attempt still holds it (`delivering` with the same attempt count); false when it does not.
    async fn finish_delivery(&mut self, delivery: &Delivery) -> Result<bool>;
    /// Ends the lease of claims whose attempt was cut short (the process is stopping): each
    /// delivery still held by that claim (`delivering` with the same attempt count) becomes due
    /// at `now`, so the next sender retries it at once instead of when the lease would have run
    /// out. Returns how many were released.
    async fn release_deliveries(&mut self, claims: &[(DeliveryId, i64)], now: Timestamp) -> Result<u64>;
    async fn insert_attempts(&mut self, attempts: &[DeliveryAttempt]) -> Result<()>;
    /// A delivery's attempts, newest first, at most `limit`.
    async fn list_attempts(&mut self, delivery: DeliveryId, limit: u32) -> Result<Vec<DeliveryAttempt>>;
    /// Puts an endpoint's failed and abandoned deliveries created at or after `since` back on the
    /// ladder's first rung, due at `now` (not those of an archived org's events); returns how many.
    async fn requeue_deliveries(&mut self, endpoint: EndpointId, since: Timestamp, now: Timestamp) -> Result<u64>;
    /// Deletes up to `limit` deliveries in a terminal status created before `before`, with their
    /// attempts; returns how many deliveries.
    async fn purge_deliveries(&mut self, before: Timestamp, limit: u32) -> Result<u64>;
    /// Abandons up to `limit` pending deliveries that can never be sent: their endpoint no longer
    /// exists (deleted while a dispatch was inserting its deliveries), or it is an archived org's
    /// own endpoint receiving that org's events (dispatched while the archive committed; CONTRACT
    /// §6: an archived org's pending deliveries are abandoned). Returns how many. Without this
    /// they would never be sent and never purged.
    async fn abandon_orphaned_deliveries(&mut self, at: Timestamp, limit: u32) -> Result<u64>;
    /// Abandons every pending delivery of an endpoint, or of an org's events; returns how many.
    async fn abandon_deliveries(&mut self, endpoint: Option<EndpointId>, event_org: Option<OrgId>, at: Timestamp) -> Result<u64>;
}

/// Server settings and the values sealed under the server secret. Part of `Tx`.
#[async_trait]
pub trait SettingRows: Send {
    async fn setting(&mut self, name: &str) -> Result<Option<String>>;
    /// Stores the value unless the name is set; returns the value in force.
    async fn setting_init(&mut self, name: &str, value: &str) -> Result<String>;
    /// Removes the setting if it still holds `value`; returns whether it did.
    async fn setting_remove(&mut self, name: &str, value: &str) -> Result<bool>;
    /// Up to `limit` values of `column` (rows where it is set), in row order after `after`
    /// (`None`: from the first row).
    async fn sealed_values(&mut self, column: SealedColumn, after: Option<&SealedRow>, limit: u32) -> Result<Vec<SealedValue>>;
    /// Replaces one sealed value if its row still holds `old.sealed`; returns whether it did.
    async fn replace_sealed(&mut self, column: SealedColumn, old: &SealedValue, new: &str) -> Result<bool>;
}

/// A column whose values are sealed under the server secret (`ServerSecret::seal`): every place
/// `strata secret rotate` re-seals. A new sealed column must be added here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SealedColumn {
    /// Stored idempotent replies (`idempotency_records.body`).
    IdempotentReply,
    /// Webhook signing secrets (`webhook_endpoints.secret_sealed`).
    EndpointSecret,
    /// The signing secret before an endpoint's last rotation (`webhook_endpoints.previous_secret`).
    EndpointPreviousSecret,
}

impl SealedColumn {
    pub const ALL: [SealedColumn; 3] = [SealedColumn::IdempotentReply, SealedColumn::EndpointSecret, SealedColumn::EndpointPreviousSecret];
}

/// The key of a row holding a sealed value: two parts (the second is empty where the key has
/// one), ordered as the store pages them.
pub type SealedRow = (String, String);

/// One sealed value and the row holding it.
#[derive(Clone, Debug)]
pub struct SealedValue {
    pub row: SealedRow,
    pub sealed: String,
}
