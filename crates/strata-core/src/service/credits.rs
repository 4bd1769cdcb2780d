//! Credits: wallets, allocation, the credit config, operator funding, the spend path
//! (reserve → post or void, with expiry), period rollover, archive's sweep, and the ledger's
//! invariant check. Every movement is a double-entry transfer written in one transaction with
//! the wallets it changes, its ledger entries, its events and its audit entry.

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::orgs::child_of;
use super::{Caller, Stamp, Strata};
use crate::clock::Timestamp;
use crate::credits::{
    Account, CreditConfig, CreditConfigPatch, CreditEvent, CreditEventFilter, ESTIMATED_CREDITS_PER_FORMAT, GrantKind, Transfer,
    TransferKind, TransferStatus, Wallet, crosses_below,
};
use crate::cursor::{Page, PageRequest};
use crate::error::{CoreError, KillScope, Result};
use crate::event::EventType;
use crate::id::{OrgId, ProjectId, TxnId};
use crate::idempotency::{IdemClaim, Reply};
use crate::metadata::Metadata;
use crate::org::{Org, OrgStatus};
use crate::scope::Scope;
use crate::store::Tx;

/// The largest single operator grant: far above any real wallet, far below overflow.
const MAX_GRANT: i64 = 1_000_000_000_000;

/// How long an unsettled reservation lives before it is released.
pub const DEFAULT_RESERVATION_TIMEOUT_MS: i64 = 60 * 60 * 1000;

/// `POST /v1/organizations/:orgId/credits/allocate`.
#[derive(Debug, Clone)]
pub struct Allocation {
    pub credits: i64,
    pub description: Option<String>,
    pub metadata: Metadata,
}

/// A spend the content engine asks for.
#[derive(Debug, Clone)]
pub struct SpendRequest {
    pub org: OrgId,
    pub project: Option<ProjectId>,
    pub cost: i64,
    pub format: String,
    pub container_id: Option<String>,
    pub job_id: Option<String>,
    /// How long the spend is expected to run; the reservation lives at least this long plus
    /// the configured timeout.
    pub hold_ms: i64,
}

/// What the invariant check found; empty when the ledger is exactly right.
#[derive(Debug, Default)]
pub struct LedgerReport {
    pub violations: Vec<String>,
    pub wallets: usize,
    pub transfers: usize,
    pub created: i64,
    pub destroyed: i64,
    pub held: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PeriodView {
    start: Timestamp,
    end: Timestamp,
    used_credits: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreditsView {
    organization_id: OrgId,
    balance: i64,
    available: i64,
    included_remaining: i64,
    prepaid_balance: i64,
    reserved_credits: i64,
    included_this_period: i64,
    used_this_period: i64,
    current_period: PeriodView,
    billing_status: &'static str,
    estimated_credits_per_format: Map<String, Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConfigView {
    monthly_credit_cap: Option<i64>,
    refill_threshold: Option<i64>,
    refill_amount: Option<i64>,
    auto_refill_enabled: bool,
}

impl From<CreditConfig> for ConfigView {
    fn from(c: CreditConfig) -> Self {
        Self {
            monthly_credit_cap: c.monthly_credit_cap,
            refill_threshold: c.refill_threshold,
            refill_amount: c.refill_amount,
            auto_refill_enabled: c.auto_refill_enabled(),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConfigReplyView {
    organization_id: OrgId,
    config: ConfigView,
    balance: i64,
    available: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AllocationView {
    id: TxnId,
    organization_id: OrgId,
    allocated: i64,
    balance: i64,
    available: i64,
    description: Option<String>,
    metadata: Metadata,
    created: Timestamp,
    replayed: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreditEventView {
    event_id: String,
    project_id: Option<ProjectId>,
    credits: i64,
    event_type: &'static str,
    format: Option<String>,
    container_id: Option<String>,
    workflow_id: Option<String>,
    balance_after_prepaid: i64,
    usage_after_period: i64,
    metadata: Value,
    created_at: Timestamp,
}

impl From<&CreditEvent> for CreditEventView {
    fn from(e: &CreditEvent) -> Self {
        Self {
            event_id: e.id.clone(),
            project_id: e.project_id,
            credits: e.credits,
            event_type: e.event_type,
            format: e.format.clone(),
            container_id: e.container_id.clone(),
            workflow_id: e.workflow_id.clone(),
            balance_after_prepaid: e.balance_after_prepaid,
            usage_after_period: e.usage_after_period,
            metadata: e.metadata.clone(),
            created_at: e.created_at,
        }
    }
}

/// A wallet as shown at `now` (a stale period reads as already rolled over).
pub(crate) fn wallet_as_of(mut w: Wallet, now: Timestamp) -> Wallet {
    w.roll_over(now);
    w
}

fn credits_view(w: &Wallet) -> CreditsView {
    let (start, end) = w.period_start.month_bounds();
    CreditsView {
        organization_id: w.org_id,
        balance: w.balance(),
        available: w.available(),
        included_remaining: w.included_remaining,
        prepaid_balance: w.prepaid_balance,
        reserved_credits: w.reserved,
        included_this_period: w.included_this_period,
        used_this_period: w.used_this_period,
        current_period: PeriodView { start, end, used_credits: w.used_this_period },
        billing_status: w.billing_status(),
        estimated_credits_per_format: ESTIMATED_CREDITS_PER_FORMAT.iter().map(|(f, c)| ((*f).to_owned(), json!(c))).collect(),
    }
}

/// Fields of a ledger entry beyond the movement itself.
#[derive(Default)]
struct EntryContext {
    project_id: Option<ProjectId>,
    format: Option<String>,
    container_id: Option<String>,
    workflow_id: Option<String>,
}

impl Strata {
    // ----- reading -----

    /// Reads an org's wallet; a missing wallet is a bug (every org gets one at creation).
    async fn read_wallet(&self, tx: &mut dyn Tx, org: OrgId) -> Result<Wallet> {
        let w = tx.wallet(org).await?.ok_or_else(|| CoreError::internal(format!("org {org} has no wallet")))?;
        Ok(wallet_as_of(w, self.now()))
    }

    /// The wallet of `org` as of now, for summaries (org read, whoami).
    pub(crate) async fn wallet_now(&self, tx: &mut dyn Tx, org: OrgId) -> Result<Wallet> {
        self.read_wallet(tx, org).await
    }

    /// `GET /v1/credits`.
    pub async fn own_credits(&self, caller: &Caller) -> Result<Reply> {
        caller.require(Scope::CreditsRead).await?;
        let mut tx = self.store.read().await?;
        let w = self.read_wallet(tx.as_mut(), caller.org_id()).await?;
        tx.commit().await?;
        Ok(Reply::json(200, &credits_view(&w)))
    }

    /// `GET /v1/organizations/:orgId/credits`.
    pub async fn child_credits(&self, caller: &Caller, org: OrgId) -> Result<Reply> {
        caller.require(Scope::OrgAdmin).await?;
        let mut tx = self.store.read().await?;
        let child = child_of(tx.as_mut(), caller.org_id(), org).await?;
        let w = self.read_wallet(tx.as_mut(), child.id).await?;
        tx.commit().await?;
        Ok(Reply::json(200, &credits_view(&w)))
    }

    /// `GET /v1/credits/events` (own, `org: None`) or `GET /v1/organizations/:orgId/credits/events`.
    pub async fn credit_events(
        &self,
        caller: &Caller,
        org: Option<OrgId>,
        filter: &CreditEventFilter,
        page: PageRequest,
    ) -> Result<Page<CreditEventView>> {
        caller.require(if org.is_some() { Scope::OrgAdmin } else { Scope::CreditsRead }).await?;
        let mut tx = self.store.read().await?;
        let target = match org {
            Some(id) => child_of(tx.as_mut(), caller.org_id(), id).await?.id,
            None => caller.org_id(),
        };
        let rows = tx.list_credit_events(target, filter, page).await?;
        tx.commit().await?;
        Ok(Page::from_rows(rows, page, &self.secret, "credit-events", |e| e.seq).map(|e| CreditEventView::from(&e)))
    }

    /// `GET /v1/organizations/:orgId/credit-config`.
    pub async fn credit_config(&self, caller: &Caller, org: OrgId) -> Result<Reply> {
        caller.require(Scope::OrgAdmin).await?;
        let mut tx = self.store.read().await?;
        let child = child_of(tx.as_mut(), caller.org_id(), org).await?;
        let w = self.read_wallet(tx.as_mut(), child.id).await?;
        tx.commit().await?;
        Ok(Reply::json(200, &config_reply(&w)))
    }

    // ----- writing helpers -----

    /// Locks and loads a wallet inside a write, rolling its period over (and recording the
    /// expiry) when a new month has begun.
    async fn lock_wallet(&self, tx: &mut dyn Tx, org: OrgId) -> Result<Wallet> {
        let mut w = tx.wallet(org).await?.ok_or_else(|| CoreError::internal(format!("org {org} has no wallet")))?;
        let now = self.now();
        let period_before = w.period_start;
        let expired = w.roll_over(now);
        if expired > 0 {
            let t = self.transfer(
                org,
                Account::Included(org),
                Account::Expired,
                expired,
                TransferKind::Expiry,
                json!({ "period": period_before }),
            );
            tx.insert_transfer(&t).await?;
            let entry = self.ledger_entry(
                &w,
                -expired,
                "adjustment",
                json!({ "reason": "included_credits_expired", "transferId": t.id }),
                EntryContext::default(),
            );
            tx.insert_credit_event(&entry).await?;
        }
        if w.period_start != period_before {
            tx.update_wallet(&w).await?;
        }
        Ok(w)
    }

    /// Locks two wallets in a fixed order (by id) so concurrent transfers never deadlock.
    async fn lock_pair(&self, tx: &mut dyn Tx, a: OrgId, b: OrgId) -> Result<(Wallet, Wallet)> {
        if a <= b {
            let wa = self.lock_wallet(tx, a).await?;
            let wb = self.lock_wallet(tx, b).await?;
            Ok((wa, wb))
        } else {
            let wb = self.lock_wallet(tx, b).await?;
            let wa = self.lock_wallet(tx, a).await?;
            Ok((wa, wb))
        }
    }

    fn transfer(&self, org: OrgId, debit: Account, credit: Account, amount: i64, kind: TransferKind, metadata: Value) -> Transfer {
        Transfer {
            id: TxnId::new(),
            org_id: org,
            debit,
            credit,
            amount,
            kind,
            status: TransferStatus::Posted,
            pending_id: None,
            expires_at: None,
            metadata,
            created_at: self.now(),
        }
    }

    fn ledger_entry(&self, w: &Wallet, credits: i64, event_type: &'static str, metadata: Value, ctx: EntryContext) -> CreditEvent {
        CreditEvent {
            id: format!("cev_{}", ulid::Ulid::from_parts(u64::try_from(self.now().millis()).unwrap_or(0), rand::random())),
            org_id: w.org_id,
            project_id: ctx.project_id,
            credits,
            event_type,
            format: ctx.format,
            container_id: ctx.container_id,
            workflow_id: ctx.workflow_id,
            balance_after_prepaid: w.prepaid_balance,
            usage_after_period: w.used_this_period,
            metadata,
            created_at: self.now(),
            seq: 0,
        }
    }

    /// Moves `amount` from one wallet's prepaid balance to another's, recording both sides.
    /// The caller has checked that `from` can cover it.
    #[expect(clippy::too_many_arguments, reason = "one movement, fully described")]
    async fn move_prepaid(
        &self,
        tx: &mut dyn Tx,
        from: &mut Wallet,
        to: &mut Wallet,
        amount: i64,
        kind: TransferKind,
        trigger: Option<&str>,
        extra: &Metadata,
        description: Option<&str>,
    ) -> Result<Transfer> {
        let t = self.transfer(to.org_id, Account::Prepaid(from.org_id), Account::Prepaid(to.org_id), amount, kind, Value::Null);
        from.prepaid_balance -= amount;
        to.prepaid_balance += amount;
        from.updated_at = self.now();
        to.updated_at = self.now();
        let side = |counterparty: OrgId| {
            let mut m: Map<String, Value> = match serde_json::to_value(extra) {
                Ok(Value::Object(m)) => m,
                _ => Map::new(),
            };
            // System keys are written last so partner metadata can never pose as them.
            m.insert("transferId".into(), json!(t.id));
            m.insert("counterpartyOrgId".into(), json!(counterparty));
            m.insert("trigger".into(), json!(trigger.unwrap_or("manual")));
            if let Some(d) = description {
                m.insert("description".into(), json!(d));
            }
            Value::Object(m)
        };
        let t = Transfer { metadata: side(from.org_id), ..t };
        tx.insert_transfer(&t).await?;
        tx.insert_credit_event(&self.ledger_entry(from, -amount, "allocation", side(to.org_id), EntryContext::default())).await?;
        tx.insert_credit_event(&self.ledger_entry(to, amount, "allocation", side(from.org_id), EntryContext::default())).await?;
        Ok(t)
    }

    /// Appends `credits.low` when this change took `available` below one of the wallet's marks.
    async fn note_low(&self, tx: &mut dyn Tx, w: &Wallet, before: i64) -> Result<()> {
        let after = w.available();
        if let Some(mark) = w.config.low_marks().into_iter().find(|m| crosses_below(before, after, *m)) {
            let data = json!({ "available": after, "balance": w.balance(), "threshold": mark });
            tx.insert_event(&self.event(EventType::CreditsLow, w.org_id, None, data)).await?;
        }
        Ok(())
    }

    // ----- partner writes -----

    /// `POST /v1/organizations/:orgId/credits/allocate`: parent prepaid → child prepaid.
    pub async fn allocate(&self, caller: &Caller, org: OrgId, req: Allocation, idem: Option<&IdemClaim>) -> Result<Reply> {
        caller.require(Scope::OrgAdmin).await?;
        caller.ensure_writable()?;
        let mut tx = self.store.write().await?;
        let child = child_of(tx.as_mut(), caller.org_id(), org).await?;
        if child.status == OrgStatus::Archived {
            return Err(CoreError::conflict("the organization is archived; it cannot receive credits"));
        }
        let (mut parent_w, mut child_w) = self.lock_pair(tx.as_mut(), caller.org_id(), child.id).await?;
        let spendable = parent_w.available().min(parent_w.prepaid_balance);
        if req.credits > spendable {
            return Err(CoreError::BillingExhausted {
                message: format!("allocating {} credits needs that much available prepaid balance; you have {spendable}", req.credits),
                reason: "insufficient_credits",
            });
        }
        let before = parent_w.available();
        let t = self
            .move_prepaid(
                tx.as_mut(),
                &mut parent_w,
                &mut child_w,
                req.credits,
                TransferKind::Allocation,
                None,
                &req.metadata,
                req.description.as_deref(),
            )
            .await?;
        tx.update_wallet(&parent_w).await?;
        tx.update_wallet(&child_w).await?;
        self.note_low(tx.as_mut(), &parent_w, before).await?;
        let view = AllocationView {
            id: t.id,
            organization_id: child.id,
            allocated: req.credits,
            balance: child_w.balance(),
            available: child_w.available(),
            description: req.description.clone(),
            metadata: req.metadata.clone(),
            created: t.created_at,
            replayed: false,
        };
        let mut stamp = caller.stamp();
        stamp.org_id = Some(caller.org_id());
        tx.insert_audit(&self.audit_entry(
            stamp,
            "credits.allocated",
            json!({ "transferId": t.id, "organizationId": child.id, "credits": req.credits }),
        ))
        .await?;
        let data = json!({ "transferId": t.id, "credits": req.credits, "fromOrganizationId": caller.org_id(), "balance": child_w.balance(), "available": child_w.available() });
        tx.insert_event(&self.event(EventType::CreditsAllocated, child.id, None, data)).await?;
        self.finish(tx, idem, Reply::json(201, &view)).await
    }

    /// `PATCH /v1/organizations/:orgId/credit-config`.
    pub async fn update_credit_config(
        &self,
        caller: &Caller,
        org: OrgId,
        patch: CreditConfigPatch,
        idem: Option<&IdemClaim>,
    ) -> Result<Reply> {
        caller.require(Scope::OrgAdmin).await?;
        caller.ensure_writable()?;
        let mut tx = self.store.write().await?;
        let child = child_of(tx.as_mut(), caller.org_id(), org).await?;
        if child.status == OrgStatus::Archived {
            return Err(CoreError::conflict("the organization is archived; its credit config cannot change"));
        }
        let mut w = self.lock_wallet(tx.as_mut(), child.id).await?;
        let before = w.config;
        w.config = w.config.apply(patch)?;
        w.updated_at = self.now();
        tx.update_wallet(&w).await?;
        let mut stamp = caller.stamp();
        stamp.org_id = Some(caller.org_id());
        tx.insert_audit(&self.audit_entry(
            stamp,
            "credits.config_updated",
            json!({ "organizationId": child.id, "from": before, "to": w.config }),
        ))
        .await?;
        self.finish(tx, idem, Reply::json(200, &config_reply(&w))).await
    }

    // ----- operator -----

    /// `strata credits grant`: credits enter the system from an operator account.
    pub async fn grant_credits(&self, org: OrgId, credits: i64, kind: GrantKind) -> Result<(TxnId, Wallet)> {
        if !(1..=MAX_GRANT).contains(&credits) {
            return Err(CoreError::validation("credits", format!("must be a positive integer up to {MAX_GRANT}")));
        }
        let mut tx = self.store.write().await?;
        let target = tx.org(org).await?.ok_or(CoreError::not_found("organization"))?;
        if target.status == OrgStatus::Archived {
            return Err(CoreError::conflict("the organization is archived"));
        }
        let id = self.grant_in(tx.as_mut(), org, credits, kind).await?;
        let w = self.lock_wallet(tx.as_mut(), org).await?;
        tx.commit().await?;
        Ok((id, w))
    }

    pub(crate) async fn grant_in(&self, tx: &mut dyn Tx, org: OrgId, credits: i64, kind: GrantKind) -> Result<TxnId> {
        let mut w = self.lock_wallet(tx, org).await?;
        let (source, dest, tkind, event_type, name) = match kind {
            GrantKind::Grant => (Account::Grants, Account::Prepaid(org), TransferKind::Grant, "grant", "grant"),
            GrantKind::Purchase => (Account::Purchases, Account::Prepaid(org), TransferKind::Purchase, "purchase", "purchase"),
            GrantKind::Included => (Account::IncludedSource, Account::Included(org), TransferKind::Included, "grant", "included"),
        };
        let t = self.transfer(org, source, dest, credits, tkind, json!({ "kind": name }));
        match kind {
            GrantKind::Included => {
                w.included_remaining += credits;
                w.included_this_period += credits;
            }
            _ => w.prepaid_balance += credits,
        }
        w.updated_at = self.now();
        tx.insert_transfer(&t).await?;
        tx.update_wallet(&w).await?;
        tx.insert_credit_event(&self.ledger_entry(
            &w,
            credits,
            event_type,
            json!({ "kind": name, "transferId": t.id }),
            EntryContext::default(),
        ))
        .await?;
        tx.insert_audit(&self.audit_entry(
            Stamp::operator().in_org(org),
            "credits.granted",
            json!({ "transferId": t.id, "credits": credits, "kind": name }),
        ))
        .await?;
        Ok(t.id)
    }

    // ----- the spend path -----

    /// Reserves `cost` in its own transaction (see `reserve_in`).
    pub async fn reserve(&self, req: SpendRequest) -> Result<TxnId> {
        let mut tx = self.store.write().await?;
        let id = self.reserve_in(tx.as_mut(), &req).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Reserves a generation's estimated cost inside the caller's transaction: `available`
    /// drops, `balance` does not. Refuses with 503 in a suspended org, 409 in an archived one,
    /// 402 when the wallet or the monthly cap cannot cover it. When the spend takes a child's
    /// `available` below its refill threshold, the refill happens in the same transaction.
    pub async fn reserve_in(&self, tx: &mut dyn Tx, req: &SpendRequest) -> Result<TxnId> {
        if req.cost <= 0 {
            return Err(CoreError::validation("cost", "must be positive"));
        }
        let org = tx.org(req.org).await?.ok_or(CoreError::not_found("organization"))?;
        ensure_can_spend(&org)?;
        // Lock the parent too (in id order) when a refill may follow.
        let (mut w, mut parent) = match org.parent_id {
            Some(p) => {
                let (w, pw) = self.lock_pair(tx, org.id, p).await?;
                (w, Some(pw))
            }
            None => (self.lock_wallet(tx, org.id).await?, None),
        };
        if let Some(refusal) = w.reserve_refusal(req.cost) {
            return Err(refusal);
        }
        let before = w.available();
        let now = self.now();
        let mut t = self.transfer(
            org.id,
            Account::Wallet(org.id),
            Account::Usage,
            req.cost,
            TransferKind::Reservation,
            json!({ "projectId": req.project, "format": req.format, "containerId": req.container_id, "jobId": req.job_id }),
        );
        t.status = TransferStatus::Pending;
        t.expires_at = Some(now.plus_ms(self.config.reservation_timeout_ms + req.hold_ms.max(0)));
        w.reserved += req.cost;
        w.updated_at = now;
        tx.insert_transfer(&t).await?;
        // `credits.low` reports the spend's own crossing, even when a refill then lifts it.
        self.note_low(tx, &w, before).await?;
        if let (Some(pw), Some(threshold), Some(amount)) = (parent.as_mut(), w.config.refill_threshold, w.config.refill_amount)
            && crosses_below(before, w.available(), threshold)
            && pw.available().min(pw.prepaid_balance) >= amount
        {
            let parent_before = pw.available();
            let refill =
                self.move_prepaid(tx, pw, &mut w, amount, TransferKind::Refill, Some("auto_refill"), &Metadata::default(), None).await?;
            tx.update_wallet(pw).await?;
            let data = json!({ "transferId": refill.id, "credits": amount, "fromOrganizationId": pw.org_id, "balance": w.balance(), "available": w.available() });
            tx.insert_event(&self.event(EventType::CreditsRefilled, org.id, None, data)).await?;
            tx.insert_audit(&self.audit_entry(
                Stamp::system().in_org(org.id),
                "credits.refilled",
                json!({ "transferId": refill.id, "credits": amount }),
            ))
            .await?;
            self.note_low(tx, pw, parent_before).await?;
        }
        tx.update_wallet(&w).await?;
        Ok(t.id)
    }

    /// Posts a reservation's actual cost in its own transaction (see `settle_in`).
    pub async fn settle(&self, reservation: TxnId, actual: i64) -> Result<()> {
        let mut tx = self.store.write().await?;
        self.settle_in(tx.as_mut(), reservation, Some(actual), EntryContext::default()).await?;
        tx.commit().await
    }

    /// Releases a reservation whole in its own transaction (failure or cancel).
    pub async fn void(&self, reservation: TxnId) -> Result<()> {
        let mut tx = self.store.write().await?;
        self.settle_in(tx.as_mut(), reservation, None, EntryContext::default()).await?;
        tx.commit().await
    }

    /// Settles a reservation inside the caller's transaction (see `settle_in`).
    pub(crate) async fn settle_reservation_in(&self, tx: &mut dyn Tx, id: TxnId, actual: Option<i64>) -> Result<()> {
        self.settle_in(tx, id, actual, EntryContext::default()).await
    }

    /// Settles a pending reservation: `Some(actual)` consumes up to the reserved amount
    /// (included credits first) and releases the rest; `None` releases all. Settling a settled
    /// reservation changes nothing. In an archived org the released credits go to the parent.
    async fn settle_in(&self, tx: &mut dyn Tx, id: TxnId, actual: Option<i64>, ctx: EntryContext) -> Result<()> {
        let r = tx.transfer(id).await?.ok_or(CoreError::not_found("reservation"))?;
        if r.kind != TransferKind::Reservation {
            return Err(CoreError::internal(format!("{id} is not a reservation")));
        }
        if r.status != TransferStatus::Pending {
            return Ok(());
        }
        let org = tx.org(r.org_id).await?.ok_or(CoreError::not_found("organization"))?;
        let (mut w, mut parent) = match (org.status, org.parent_id) {
            (OrgStatus::Archived, Some(p)) => {
                let (w, pw) = self.lock_pair(tx, org.id, p).await?;
                (w, Some(pw))
            }
            _ => (self.lock_wallet(tx, org.id).await?, None),
        };
        let consumed = actual.unwrap_or(0).clamp(0, r.amount);
        w.reserved -= r.amount;
        if consumed > 0 {
            let (from_included, from_prepaid) = w.consumption_split(consumed);
            for (amount, account) in [(from_included, Account::Included(org.id)), (from_prepaid, Account::Prepaid(org.id))] {
                if amount > 0 {
                    let mut t = self.transfer(org.id, account, Account::Usage, amount, TransferKind::Usage, json!({ "reservationId": id }));
                    t.pending_id = Some(id);
                    tx.insert_transfer(&t).await?;
                }
            }
            w.included_remaining -= from_included;
            w.prepaid_balance -= from_prepaid;
            w.used_this_period += consumed;
        }
        w.updated_at = self.now();
        tx.set_transfer_status(id, if consumed > 0 { TransferStatus::Posted } else { TransferStatus::Voided }).await?;
        if consumed > 0 {
            let meta = json!({ "transferId": id, "reserved": r.amount, "released": r.amount - consumed });
            let ctx = EntryContext {
                project_id: ctx
                    .project_id
                    .or_else(|| r.metadata["projectId"].as_str().and_then(|s| ProjectId::parse_field(s, "projectId").ok())),
                format: ctx.format.or_else(|| r.metadata["format"].as_str().map(str::to_owned)),
                container_id: ctx.container_id.or_else(|| r.metadata["containerId"].as_str().map(str::to_owned)),
                workflow_id: ctx.workflow_id.or_else(|| r.metadata["jobId"].as_str().map(str::to_owned)),
            };
            tx.insert_credit_event(&self.ledger_entry(&w, -consumed, "usage", meta, ctx)).await?;
        }
        if let Some(pw) = parent.as_mut() {
            self.sweep(tx, &mut w, pw).await?;
            tx.update_wallet(pw).await?;
        }
        tx.update_wallet(&w).await
    }

    /// Moves a child's unreserved balance to its parent's prepaid balance; returns how much.
    async fn sweep(&self, tx: &mut dyn Tx, child: &mut Wallet, parent: &mut Wallet) -> Result<i64> {
        let amount = child.available();
        if amount == 0 {
            return Ok(0);
        }
        // Included credits leave the child as well: the parent receives them as prepaid.
        let (from_included, _) = child.consumption_split(amount);
        if from_included > 0 {
            let t = self.transfer(
                child.org_id,
                Account::Included(child.org_id),
                Account::Prepaid(child.org_id),
                from_included,
                TransferKind::Reclaim,
                json!({ "reason": "archive_reclaim" }),
            );
            tx.insert_transfer(&t).await?;
            child.included_remaining -= from_included;
            child.prepaid_balance += from_included;
        }
        let meta = Metadata::default();
        let t = self.move_prepaid(tx, child, parent, amount, TransferKind::Reclaim, Some("archive_reclaim"), &meta, None).await?;
        tx.insert_audit(&self.audit_entry(
            Stamp::system().in_org(parent.org_id),
            "credits.reclaimed",
            json!({ "transferId": t.id, "organizationId": child.org_id, "credits": amount }),
        ))
        .await?;
        Ok(amount)
    }

    /// Archive's sweep, inside the archive's transaction: returns the reclaimed credits.
    pub(crate) async fn reclaim_on_archive(&self, tx: &mut dyn Tx, child: &Org) -> Result<i64> {
        let parent = child.parent_id.ok_or_else(|| CoreError::internal("only a child org is archived"))?;
        let (mut w, mut pw) = self.lock_pair(tx, child.id, parent).await?;
        let reclaimed = self.sweep(tx, &mut w, &mut pw).await?;
        tx.update_wallet(&w).await?;
        tx.update_wallet(&pw).await?;
        Ok(reclaimed)
    }

    // ----- background steps -----

    /// Releases reservations past their timeout (up to 500 a step); returns how many. One that
    /// fails is logged and retried next step, never blocking the rest.
    pub async fn expire_reservations(&self) -> Result<usize> {
        let mut tx = self.store.read().await?;
        let due = tx.expired_reservations(self.now(), 500).await?;
        tx.commit().await?;
        let mut done = 0;
        for id in due {
            let result = async {
                let mut tx = self.store.write().await?;
                self.settle_in(tx.as_mut(), id, None, EntryContext::default()).await?;
                tx.commit().await
            }
            .await;
            match result {
                Ok(()) => done += 1,
                Err(e) => tracing::error!(error = %e, reservation = %id, "could not expire a reservation"),
            }
        }
        Ok(done)
    }

    /// Rolls wallets still in an old period into the current one (up to 500 a step).
    pub async fn roll_over_periods(&self) -> Result<usize> {
        let start = self.now().month_bounds().0;
        let mut tx = self.store.read().await?;
        let stale = tx.stale_wallets(start, 500).await?;
        tx.commit().await?;
        let mut done = 0;
        for org in stale {
            let result = async {
                let mut tx = self.store.write().await?;
                self.lock_wallet(tx.as_mut(), org).await?;
                tx.commit().await
            }
            .await;
            match result {
                Ok(()) => done += 1,
                Err(e) => tracing::error!(error = %e, org = %org, "could not roll a wallet over"),
            }
        }
        Ok(done)
    }

    /// Checks the ledger's invariants over every wallet and transfer (CONTRACT §3
    /// "Conservation"): each wallet equals the sum of its transfers, the sum of all wallets equals
    /// credits created minus destroyed, nothing is reserved beyond the balance, and period usage
    /// equals the period's usage transfers.
    pub async fn check_ledger(&self) -> Result<LedgerReport> {
        let mut tx = self.store.read().await?;
        let (wallets, transfers) = tx.ledger_snapshot().await?;
        tx.commit().await?;
        Ok(ledger_report(&wallets, &transfers))
    }
}

fn config_reply(w: &Wallet) -> ConfigReplyView {
    ConfigReplyView { organization_id: w.org_id, config: ConfigView::from(w.config), balance: w.balance(), available: w.available() }
}

/// Spending is refused in a suspended (503) or archived (409) org, whoever asks.
pub(crate) fn ensure_can_spend(org: &Org) -> Result<()> {
    match org.status {
        OrgStatus::Suspended => Err(CoreError::KillSwitch { scope: KillScope::Organization }),
        OrgStatus::Archived => Err(CoreError::conflict("the organization is archived; it cannot spend credits")),
        OrgStatus::Active if org.access_revoked => Err(CoreError::KillSwitch { scope: KillScope::Organization }),
        OrgStatus::Active => Ok(()),
    }
}

fn ledger_report(wallets: &[Wallet], transfers: &[Transfer]) -> LedgerReport {
    use std::collections::HashMap;
    let mut posted: HashMap<Account, i64> = HashMap::new();
    let mut pending: HashMap<OrgId, i64> = HashMap::new();
    let mut usage_since: Vec<(OrgId, Timestamp, i64)> = Vec::new();
    let mut report = LedgerReport { wallets: wallets.len(), transfers: transfers.len(), ..Default::default() };
    for t in transfers {
        if t.amount <= 0 {
            report.violations.push(format!("{} has a non-positive amount", t.id));
        }
        if t.kind == TransferKind::Reservation {
            if t.status == TransferStatus::Pending {
                *pending.entry(t.org_id).or_default() += t.amount;
            }
            continue;
        }
        if t.status != TransferStatus::Posted {
            report.violations.push(format!(
                "{} ({}) is {} but only reservations are ever pending",
                t.id,
                t.kind.as_str(),
                t.status.as_str()
            ));
            continue;
        }
        *posted.entry(t.debit).or_default() -= t.amount;
        *posted.entry(t.credit).or_default() += t.amount;
        if t.credit == Account::Usage
            && let Account::Included(o) | Account::Prepaid(o) = t.debit
        {
            usage_since.push((o, t.created_at, t.amount));
        }
    }
    for w in wallets {
        let o = w.org_id;
        let inc = posted.get(&Account::Included(o)).copied().unwrap_or(0);
        let pre = posted.get(&Account::Prepaid(o)).copied().unwrap_or(0);
        let res = pending.get(&o).copied().unwrap_or(0);
        if inc != w.included_remaining {
            report.violations.push(format!("{o}: includedRemaining {} but its transfers sum to {inc}", w.included_remaining));
        }
        if pre != w.prepaid_balance {
            report.violations.push(format!("{o}: prepaidBalance {} but its transfers sum to {pre}", w.prepaid_balance));
        }
        if res != w.reserved {
            report.violations.push(format!("{o}: reserved {} but its pending reservations sum to {res}", w.reserved));
        }
        if w.balance() < w.reserved {
            report.violations.push(format!("{o}: reserved {} exceeds balance {}", w.reserved, w.balance()));
        }
        let used: i64 = usage_since.iter().filter(|(org, at, _)| *org == o && *at >= w.period_start).map(|(_, _, a)| a).sum();
        if used != w.used_this_period {
            report.violations.push(format!("{o}: usedThisPeriod {} but the period's usage transfers sum to {used}", w.used_this_period));
        }
        report.held += w.balance();
    }
    report.created = posted.iter().filter(|(a, _)| a.is_source()).map(|(_, v)| -v).sum();
    report.destroyed = posted.iter().filter(|(a, _)| a.is_sink()).map(|(_, v)| v).sum();
    if report.held != report.created - report.destroyed {
        report
            .violations
            .push(format!("wallets hold {} but {} were created and {} destroyed", report.held, report.created, report.destroyed));
    }
    report
}
