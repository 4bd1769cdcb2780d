//! Credits as partners see them: wallet reads, the credit ledger, allocation, the credit config,
//! operator funding and the ledger's invariant check. Every movement is a batch of transfers
//! posted through `service/ledger.rs`, in one transaction with its ledger entries, its events
//! and its audit entry.

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::ledger::{EntryContext, after_of};
use super::tenancy::{child_held, child_of};
use super::{Caller, Stamp, Strata};
use crate::clock::Timestamp;
use crate::credits::{
    Account, CreditConfig, CreditConfigPatch, CreditEvent, CreditEventFilter, ESTIMATED_CREDITS_PER_FORMAT, GrantKind, TransferKind, Wallet,
};
use crate::cursor::{Page, PageRequest};
use crate::error::{CoreError, KillScope, Result};
use crate::event::EventType;
use crate::id::{OrgId, ProjectId, TxnId};
use crate::idempotency::IdemClaim;
use crate::ledger::{LedgerReport, Posting, WalletChange, available_before};
use crate::metadata::Metadata;
use crate::org::{Org, OrgStatus};
use crate::scope::Scope;
use crate::store::Tx;

/// How long an unsettled reservation lives before it is released.
pub const DEFAULT_RESERVATION_TIMEOUT_MS: i64 = 60 * 60 * 1000;

/// `POST /v1/organizations/:orgId/credits/allocate`.
#[derive(Debug, Clone)]
pub struct Allocation {
    pub credits: crate::credits::Credits,
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

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PeriodView {
    start: Timestamp,
    end: Timestamp,
    used_credits: i64,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreditsView {
    organization_id: OrgId,
    balance: i64,
    available: i64,
    included_remaining: i64,
    prepaid_balance: i64,
    reserved_credits: i64,
    included_this_period: i64,
    used_this_period: i64,
    current_period: PeriodView,
    #[schema(value_type = crate::schema::BillingStatus)]
    billing_status: &'static str,
    /// Credits reserved per variant by format.
    #[schema(value_type = std::collections::BTreeMap<String, i64>, example = json!({"slideshow_builder": 50, "slideshow_remix": 50, "video_remix": 120, "ugc_remix": 120, "auto": 120}))]
    estimated_credits_per_format: Map<String, Value>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigView {
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

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigReplyView {
    organization_id: OrgId,
    config: ConfigView,
    /// The org's balance after the change.
    balance: i64,
    available: i64,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllocationView {
    id: TxnId,
    organization_id: OrgId,
    allocated: i64,
    balance: i64,
    available: i64,
    description: Option<String>,
    metadata: Metadata,
    created: Timestamp,
    /// True when this answer is the replay of an earlier request with the same Idempotency-Key.
    replayed: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreditEventView {
    event_id: String,
    project_id: Option<ProjectId>,
    /// Signed: what this event added to (or took from) the wallet.
    credits: i64,
    #[schema(value_type = crate::schema::CreditEventType)]
    event_type: &'static str,
    format: Option<String>,
    container_id: Option<String>,
    workflow_id: Option<String>,
    balance_after_prepaid: i64,
    usage_after_period: i64,
    /// Context: `transferId`, `counterpartyOrgId`, `trigger` (`manual` or `auto_refill`), …
    #[schema(value_type = Object)]
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
    let expired = w.roll_over(now);
    if expired > 0 {
        let expiry = WalletChange { included: -expired, ..WalletChange::zero(w.org_id) };
        // The expiry is what the next write posts; the wallet can always take it.
        w.apply(&expiry, now).unwrap_or(());
    }
    w
}

/// Prepaid credits a wallet can move to another: what is neither reserved nor included.
fn spendable_prepaid(w: &Wallet) -> i64 {
    w.available().min(w.prepaid_balance)
}

pub fn credits_view(w: &Wallet) -> CreditsView {
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

impl Strata {
    // ----- reading -----

    /// Reads an org's wallet; a missing wallet is a bug (every org gets one at creation).
    async fn read_wallet(&self, tx: &mut dyn Tx, org: OrgId) -> Result<Wallet> {
        let w = tx.wallet(org).await?.ok_or_else(|| CoreError::internal(format!("org {org} has no wallet")))?;
        Ok(wallet_as_of(w, self.now()))
    }

    /// `GET /v1/credits`.
    #[tracing::instrument(level = "debug", name = "service.own_credits", skip_all)]
    pub async fn own_credits(&self, caller: &Caller) -> Result<CreditsView> {
        caller.require(Scope::CreditsRead).await?;
        let mut tx = self.store.read().await?;
        let w = self.read_wallet(tx.as_mut(), caller.org_id()).await?;
        tx.commit().await?;
        Ok(credits_view(&w))
    }

    /// `GET /v1/organizations/:orgId/credits`.
    #[tracing::instrument(level = "debug", name = "service.child_credits", skip_all)]
    pub async fn child_credits(&self, caller: &Caller, org: OrgId) -> Result<CreditsView> {
        caller.require(Scope::OrgAdmin).await?;
        let mut tx = self.store.read().await?;
        let child = child_of(tx.as_mut(), caller.org_id(), org).await?;
        let w = self.read_wallet(tx.as_mut(), child.id).await?;
        tx.commit().await?;
        Ok(credits_view(&w))
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
    #[tracing::instrument(level = "debug", name = "service.credit_config", skip_all)]
    pub async fn credit_config(&self, caller: &Caller, org: OrgId) -> Result<ConfigReplyView> {
        caller.require(Scope::OrgAdmin).await?;
        let mut tx = self.store.read().await?;
        let child = child_of(tx.as_mut(), caller.org_id(), org).await?;
        let w = self.read_wallet(tx.as_mut(), child.id).await?;
        tx.commit().await?;
        Ok(config_reply(&w))
    }

    // ----- partner writes -----

    /// `POST /v1/organizations/:orgId/credits/allocate`: parent prepaid → child prepaid. The
    /// child's wallet is locked; the parent's (contended: it funds every child) is read as last
    /// committed and its debit is posted last, guarded, so it is locked only until commit.
    #[tracing::instrument(level = "debug", name = "service.allocate", skip_all)]
    pub async fn allocate(&self, caller: &Caller, org: OrgId, req: Allocation, idem: Option<&IdemClaim>) -> Result<AllocationView> {
        caller.require(Scope::OrgAdmin).await?;
        caller.ensure_writable()?;
        // Grouped: concurrent allocations of this process share a transaction and its commit, so
        // a hot wallet (one child funded by many requests, or the parent of many children) is
        // locked once per batch, not once per allocation. A row held elsewhere makes the grouped
        // attempt give up at once (nothing of it applied); it then runs alone and waits its turn.
        match self.allocate_in(caller, org, &req, idem, true).await {
            Err(e) if e.is_lock_busy() => self.allocate_in(caller, org, &req, idem, false).await,
            done => done,
        }
    }

    async fn allocate_in(
        &self,
        caller: &Caller,
        org: OrgId,
        req: &Allocation,
        idem: Option<&IdemClaim>,
        grouped: bool,
    ) -> Result<AllocationView> {
        // Built before the transaction: on PostgreSQL a grouped one holds its batch's connection,
        // which the batch's other allocations wait for.
        let (t, entries) = self.bucket_move(
            Account::Prepaid,
            caller.org_id(),
            org,
            req.credits.get(),
            TransferKind::Allocation,
            None,
            &req.metadata,
            req.description.as_deref(),
        );
        let mut stamp = caller.stamp();
        stamp.org_id = Some(caller.org_id());
        let audit = self.audit_entry(
            stamp,
            "credits.allocated",
            json!({ "transferId": t.id, "organizationId": org, "credits": req.credits.get() }),
        );
        let mut tx = self.write_as_in(caller, grouped).await?;
        // Held, not locked: allocations into one child do not queue on its org row; an archive
        // (which locks it) waits for them, and they for it.
        let child = child_held(tx.as_mut(), caller.org_id(), org).await?;
        if child.status == OrgStatus::Archived {
            return Err(CoreError::conflict("the organization is archived; it cannot receive credits"));
        }
        // Both wallets as last committed, not locked: the credit cannot be refused, the
        // parent's debit is guarded when posted. Neither row is locked before the posting, so
        // allocations into one child hold its wallet only from the posting to the commit.
        self.contended_wallet(tx.as_mut(), child.id).await?;
        let parent_w = match &caller.home_wallet {
            Some(w) if !caller.acts_in_child() && w.period_start >= self.now().month_bounds().0 => w.clone(),
            _ => self.contended_wallet(tx.as_mut(), caller.org_id()).await?,
        };
        let short = |spendable: i64| CoreError::BillingExhausted {
            message: format!("allocating {} credits needs that much available prepaid balance; you have {spendable}", req.credits.get()),
            reason: "insufficient_credits",
        };
        if req.credits.get() > spendable_prepaid(&parent_w) {
            return Err(short(spendable_prepaid(&parent_w)));
        }
        let batch = self.batch(vec![Posting::Transfer(t.clone())], entries.into(), &mut [])?;
        tx.insert_audit(&audit).await?;
        // The posting: the child's credit, then the contended debit (the parent's row is
        // locked from here to commit). `None`: the guard refused the parent's debit.
        let Some(after) = tx.post_transfers(&batch).await? else {
            // Another transaction spent the parent's credits since it was read.
            let now = tx.wallet_snapshot(caller.org_id()).await?.map_or(0, |w| spendable_prepaid(&w));
            return Err(short(now));
        };
        let (child_w, _) =
            after_of(&after, &batch, child.id).ok_or_else(|| CoreError::internal("an allocation did not move its child's wallet"))?;
        let view = AllocationView {
            id: t.id,
            organization_id: child.id,
            allocated: req.credits.get(),
            balance: child_w.balance(),
            available: child_w.available(),
            description: req.description.clone(),
            metadata: req.metadata.clone(),
            created: t.created_at,
            replayed: false,
        };
        // The event and the stored reply show the balances the posting left.
        let data = crate::event_data::CreditsMovedData {
            transfer_id: t.id,
            credits: req.credits.get(),
            from_organization_id: caller.org_id(),
            balance: child_w.balance(),
            available: child_w.available(),
        };
        tx.insert_event(&self.event(EventType::CreditsAllocated, child.id, None, data)).await?;
        self.complete_claim(tx.as_mut(), idem, &view).await?;
        if let Some((parent_after, change)) = after_of(&after, &batch, caller.org_id()) {
            self.note_low(tx.as_mut(), &parent_after, available_before(&parent_after, &change)).await?;
        }
        tx.commit().await?;
        Ok(view)
    }

    /// `PATCH /v1/organizations/:orgId/credit-config`.
    pub async fn update_credit_config(
        &self,
        caller: &Caller,
        org: OrgId,
        patch: CreditConfigPatch,
        idem: Option<&IdemClaim>,
    ) -> Result<ConfigReplyView> {
        caller.require(Scope::OrgAdmin).await?;
        caller.ensure_writable()?;
        let mut tx = self.write_as(caller).await?;
        let child = child_of(tx.as_mut(), caller.org_id(), org).await?;
        if child.status == OrgStatus::Archived {
            return Err(CoreError::conflict("the organization is archived; its credit config cannot change"));
        }
        let mut w = self.lock_wallet(tx.as_mut(), child.id).await?;
        let before = w.config;
        w.config = w.config.apply(patch)?;
        w.updated_at = self.now();
        tx.update_wallet_terms(&w).await?;
        let mut stamp = caller.stamp();
        stamp.org_id = Some(caller.org_id());
        tx.insert_audit(&self.audit_entry(
            stamp,
            "credits.config_updated",
            json!({ "organizationId": child.id, "from": before, "to": w.config }),
        ))
        .await?;
        self.finish(tx, idem, config_reply(&w)).await
    }

    // ----- operator -----

    /// `strata credits grant`: credits enter the system from an operator account.
    #[tracing::instrument(level = "debug", name = "service.grant_credits", skip_all)]
    pub async fn grant_credits(&self, org: OrgId, credits: i64, kind: GrantKind) -> Result<(TxnId, Wallet)> {
        let credits = crate::credits::Credits::positive("credits", &serde_json::json!(credits))?.get();
        let mut tx = self.store.write().await?;
        let target = super::tenancy::any_org(tx.as_mut(), org).await?;
        if target.status == OrgStatus::Archived {
            return Err(CoreError::conflict("the organization is archived"));
        }
        let (id, w) = self.grant_in(tx.as_mut(), org, credits, kind).await?;
        tx.commit().await?;
        Ok((id, w))
    }

    /// Funds a wallet from an operator account inside the caller's transaction; returns the
    /// transfer and the wallet after.
    pub(crate) async fn grant_in(&self, tx: &mut dyn Tx, org: OrgId, credits: i64, kind: GrantKind) -> Result<(TxnId, Wallet)> {
        let mut w = self.lock_wallet(tx, org).await?;
        let (source, dest, tkind, event_type, name) = match kind {
            GrantKind::Grant => (Account::Grants, Account::Prepaid(org), TransferKind::Grant, "grant", "grant"),
            GrantKind::Purchase => (Account::Purchases, Account::Prepaid(org), TransferKind::Purchase, "purchase", "purchase"),
            GrantKind::Included => (Account::IncludedSource, Account::Included(org), TransferKind::Included, "grant", "included"),
        };
        let t = self.transfer(org, source, dest, credits, tkind, json!({ "kind": name }));
        let entry = self.ledger_entry(org, credits, event_type, json!({ "kind": name, "transferId": t.id }), EntryContext::default());
        self.post_locked(tx, vec![Posting::Transfer(t.clone())], vec![entry], &mut [&mut w]).await?;
        tx.insert_audit(&self.audit_entry(
            Stamp::operator().in_org(org),
            "credits.granted",
            json!({ "transferId": t.id, "credits": credits, "kind": name }),
        ))
        .await?;
        Ok((t.id, w))
    }

    /// The operator's signed correction of a wallet (`strata credits adjust`, CONTRACT §3): a
    /// positive `credits` moves that many from `operator:adjustments` into the prepaid bucket; a
    /// negative one moves them out, prepaid first and then included, and never below the
    /// wallet's `available` (422 naming the most that can be taken). `reason` (1–500
    /// characters) is required and kept on the ledger entry and the audit entry. Returns the
    /// transfer ids and the wallet after.
    #[tracing::instrument(level = "debug", name = "service.adjust_credits", skip_all)]
    pub async fn adjust_credits(&self, org: OrgId, credits: i64, reason: &str) -> Result<(Vec<TxnId>, Wallet)> {
        let amount = crate::credits::Credits::positive("credits", &json!(credits.unsigned_abs()))?.get();
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > 500 {
            return Err(CoreError::validation("reason", "must say why, in 1 to 500 characters"));
        }
        let mut tx = self.store.write().await?;
        let target = super::tenancy::any_org(tx.as_mut(), org).await?;
        if target.status == OrgStatus::Archived {
            return Err(CoreError::conflict("the organization is archived"));
        }
        let mut w = self.lock_wallet(tx.as_mut(), org).await?;
        let meta = |t: &TxnId| json!({ "reason": reason, "transferId": t });
        let transfers = if credits > 0 {
            vec![self.transfer(
                org,
                Account::Adjustments,
                Account::Prepaid(org),
                amount,
                TransferKind::Adjustment,
                json!({ "reason": reason }),
            )]
        } else {
            if amount > w.available() {
                return Err(CoreError::out_of_range("credits", -w.available(), crate::credits::Credits::MAX));
            }
            let from_prepaid = amount.min(w.prepaid_balance);
            [(Account::Prepaid(org), from_prepaid), (Account::Included(org), amount - from_prepaid)]
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(bucket, n)| {
                    self.transfer(org, bucket, Account::Adjustments, n, TransferKind::Adjustment, json!({ "reason": reason }))
                })
                .collect()
        };
        let ids: Vec<TxnId> = transfers.iter().map(|t| t.id).collect();
        let sign = credits.signum();
        let entries =
            transfers.iter().map(|t| self.ledger_entry(org, sign * t.amount, "adjustment", meta(&t.id), EntryContext::default())).collect();
        self.post_locked(tx.as_mut(), transfers.into_iter().map(Posting::Transfer).collect(), entries, &mut [&mut w]).await?;
        tx.insert_audit(&self.audit_entry(
            Stamp::operator().in_org(org),
            "credits.adjusted",
            json!({ "transferIds": ids, "credits": credits, "reason": reason }),
        ))
        .await?;
        tx.commit().await?;
        Ok((ids, w))
    }

    /// Checks the ledger's invariants over every wallet and transfer (CONTRACT §3
    /// "Conservation"): each wallet equals the sum of its transfers, the sum of all wallets equals
    /// credits created minus destroyed, nothing is reserved beyond the balance, and period usage
    /// equals the period's usage transfers.
    #[tracing::instrument(level = "debug", name = "service.check_ledger", skip_all)]
    pub async fn check_ledger(&self) -> Result<LedgerReport> {
        let mut tx = self.store.read().await?;
        let (wallets, transfers) = tx.ledger_snapshot().await?;
        tx.commit().await?;
        Ok(crate::ledger::check(&wallets, &transfers))
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
