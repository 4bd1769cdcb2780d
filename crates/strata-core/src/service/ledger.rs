//! The ledger's write path: building and posting batches of transfers (the only way a balance
//! moves), locking wallets and rolling their period over, the spend path (reserve → post or
//! void, with auto-refill and expiry), archive's sweep, and the background ledger steps.
//!
//! Locking: a transaction locks the child's org row, then the child's wallet, then (only where
//! it must read exact figures) the parent's wallet. A partner's wallet, which funds every child,
//! is otherwise read as last committed and moved last by a guarded update (`Tx::post_transfers`).

use serde_json::{Map, Value, json};

use super::{Stamp, Strata};
use crate::credits::{Account, CreditEvent, Transfer, TransferKind, TransferStatus, Wallet, crosses_below};
use crate::error::{CoreError, Result};
use crate::event::EventType;
use crate::id::{OrgId, ProjectId, TxnId};
use crate::ledger::{self, LedgerBatch, Posting, WalletChange};
use crate::metadata::Metadata;
use crate::org::{Org, OrgStatus};
use crate::service::credits::{SpendRequest, ensure_can_spend};
use crate::store::{Owner, Tx};

/// A wallet bucket's account constructor (`Account::Included` or `Account::Prepaid`).
type Bucket = fn(OrgId) -> Account;

/// Fields of a ledger entry beyond the movement itself.
#[derive(Default)]
pub(super) struct EntryContext {
    pub project_id: Option<ProjectId>,
    pub format: Option<String>,
    pub container_id: Option<String>,
    pub workflow_id: Option<String>,
}

/// The wallet of `org` after a posted batch, with the change the batch made to it.
pub(super) fn after_of(after: &[Wallet], batch: &LedgerBatch, org: OrgId) -> Option<(Wallet, WalletChange)> {
    let w = after.iter().find(|w| w.org_id == org)?;
    let c = batch.changes.iter().find(|c| c.org_id == org)?;
    Some((w.clone(), *c))
}

impl Strata {
    // ----- building and posting batches -----

    pub(super) fn transfer(
        &self,
        org: OrgId,
        debit: Account,
        credit: Account,
        amount: i64,
        kind: TransferKind,
        metadata: Value,
    ) -> Transfer {
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

    /// A ledger entry of `org`; the store stamps it with the wallet's balances after the batch.
    pub(super) fn ledger_entry(
        &self,
        org: OrgId,
        credits: i64,
        event_type: &'static str,
        metadata: Value,
        ctx: EntryContext,
    ) -> CreditEvent {
        CreditEvent {
            id: format!("cev_{}", ulid::Ulid::from_parts(u64::try_from(self.now().millis()).unwrap_or(0), rand::random())),
            org_id: org,
            project_id: ctx.project_id,
            credits,
            event_type,
            format: ctx.format,
            container_id: ctx.container_id,
            workflow_id: ctx.workflow_id,
            balance_after_prepaid: 0,
            usage_after_period: 0,
            metadata,
            created_at: self.now(),
            seq: 0,
        }
    }

    /// Builds a batch and moves the wallets the caller holds locked by its changes (the pure
    /// rule, `Wallet::apply`, refusing a change they cannot take). Wallets not held (a
    /// contended one) move only when the store posts the batch.
    pub(super) fn batch(&self, postings: Vec<Posting>, entries: Vec<CreditEvent>, locked: &mut [&mut Wallet]) -> Result<LedgerBatch> {
        let batch = LedgerBatch::new(postings, entries, self.now())?;
        ledger::apply_changes(locked, &batch.changes, batch.at)?;
        Ok(batch)
    }

    /// Builds and posts a batch that touches only wallets the caller holds locked: a guard can
    /// then never refuse, and one that does is a bug.
    pub(super) async fn post_locked(
        &self,
        tx: &mut dyn Tx,
        postings: Vec<Posting>,
        entries: Vec<CreditEvent>,
        locked: &mut [&mut Wallet],
    ) -> Result<LedgerBatch> {
        let batch = self.batch(postings, entries, locked)?;
        let after = tx.post_transfers(&batch).await?.ok_or_else(|| CoreError::internal("a locked wallet refused a ledger change"))?;
        debug_assert!(locked.iter().all(|w| after.iter().all(|a| a.org_id != w.org_id || a == &**w)), "store and core disagree");
        Ok(batch)
    }

    // ----- wallets -----

    /// Locks and loads a wallet inside a write, rolling its period over (and posting the expiry
    /// of its unused included credits) when a new month has begun.
    pub(super) async fn lock_wallet(&self, tx: &mut dyn Tx, org: OrgId) -> Result<Wallet> {
        let mut w = tx.wallet(org).await?.ok_or_else(|| CoreError::internal(format!("org {org} has no wallet")))?;
        let period_before = w.period_start;
        let expired = w.roll_over(self.now());
        if w.period_start != period_before {
            tx.update_wallet_terms(&w).await?;
        }
        if expired > 0 {
            self.expire_included(tx, &mut w, expired, json!({ "reason": "included_credits_expired", "period": period_before })).await?;
        }
        Ok(w)
    }

    /// Posts the expiry of `amount` included credits of a locked wallet, with its ledger entry
    /// (an `adjustment`; `reason` says why).
    async fn expire_included(&self, tx: &mut dyn Tx, w: &mut Wallet, amount: i64, mut reason: Value) -> Result<()> {
        let org = w.org_id;
        let t = self.transfer(org, Account::Included(org), Account::Expired, amount, TransferKind::Expiry, reason.clone());
        reason["transferId"] = json!(t.id);
        let entry = self.ledger_entry(org, -amount, "adjustment", reason, EntryContext::default());
        self.post_locked(tx, vec![Posting::Transfer(t)], vec![entry], &mut [w]).await?;
        Ok(())
    }

    /// A contended wallet (a partner's, which funds its children), read as last committed and
    /// not locked; its change is guarded when posted. One still in an old period is locked and
    /// rolled over instead (once a month).
    pub(super) async fn contended_wallet(&self, tx: &mut dyn Tx, org: OrgId) -> Result<Wallet> {
        let w = tx.wallet_snapshot(org).await?.ok_or_else(|| CoreError::internal(format!("org {org} has no wallet")))?;
        if w.period_start < self.now().month_bounds().0 {
            return self.lock_wallet(tx, org).await;
        }
        Ok(w)
    }

    /// A move of `amount` from one wallet's bucket to the same bucket of another
    /// (`bucket`: `Account::Prepaid` or `Account::Included`) and its two ledger entries
    /// (`from`'s first). The caller checks that `from` can cover it.
    #[expect(clippy::too_many_arguments, reason = "one movement, fully described")]
    pub(super) fn bucket_move(
        &self,
        bucket: Bucket,
        from: OrgId,
        to: OrgId,
        amount: i64,
        kind: TransferKind,
        trigger: Option<&str>,
        extra: &Metadata,
        description: Option<&str>,
    ) -> (Transfer, [CreditEvent; 2]) {
        let t = self.transfer(to, bucket(from), bucket(to), amount, kind, Value::Null);
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
        let entries = [
            self.ledger_entry(from, -amount, "allocation", side(to), EntryContext::default()),
            self.ledger_entry(to, amount, "allocation", side(from), EntryContext::default()),
        ];
        (Transfer { metadata: side(from), ..t }, entries)
    }

    /// Appends `credits.low` when a change took `available` from `before` below one of the
    /// wallet's marks.
    pub(super) async fn note_low(&self, tx: &mut dyn Tx, w: &Wallet, before: i64) -> Result<()> {
        let after = w.available();
        if let Some(mark) = w.config.low_marks().into_iter().find(|m| crosses_below(before, after, *m)) {
            let data = crate::event_data::CreditsLowData { available: after, balance: w.balance(), threshold: mark };
            tx.insert_event(&self.event(EventType::CreditsLow, w.org_id, None, data)).await?;
        }
        Ok(())
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
        // Held for share, as `write_as` holds it: a suspension or archive waits for this spend.
        let org = tx.org_shared(Owner::System, req.org).await?.ok_or(CoreError::not_found("organization"))?;
        ensure_can_spend(&org)?;
        let mut w = self.lock_wallet(tx, org.id).await?;
        if let Some(refusal) = w.reserve_refusal(req.cost) {
            return Err(refusal);
        }
        let before = w.available();
        let now = self.now();
        let mut hold = self.transfer(
            org.id,
            Account::Wallet(org.id),
            Account::Usage,
            req.cost,
            TransferKind::Reservation,
            json!({ "projectId": req.project, "format": req.format, "containerId": req.container_id, "jobId": req.job_id }),
        );
        hold.status = TransferStatus::Pending;
        hold.expires_at = Some(now.plus_ms(self.config.reservation_timeout_ms + req.hold_ms.max(0)));
        let id = hold.id;
        self.post_locked(tx, vec![Posting::Transfer(hold)], Vec::new(), &mut [&mut w]).await?;
        // `credits.low` reports the spend's own crossing, even when a refill then lifts it.
        self.note_low(tx, &w, before).await?;
        if let (Some(parent), Some(threshold), Some(amount)) = (org.parent_id, w.config.refill_threshold, w.config.refill_amount)
            && crosses_below(before, w.available(), threshold)
        {
            // A refill is rare (once per crossing): the parent is locked after the child, for
            // exact figures.
            let mut pw = self.lock_wallet(tx, parent).await?;
            if pw.available().min(pw.prepaid_balance) >= amount {
                let parent_before = pw.available();
                let (t, entries) = self.bucket_move(
                    Account::Prepaid,
                    parent,
                    org.id,
                    amount,
                    TransferKind::Refill,
                    Some("auto_refill"),
                    &Metadata::default(),
                    None,
                );
                self.post_locked(tx, vec![Posting::Transfer(t.clone())], entries.into(), &mut [&mut w, &mut pw]).await?;
                let data = crate::event_data::CreditsMovedData {
                    transfer_id: t.id,
                    credits: amount,
                    from_organization_id: parent,
                    balance: w.balance(),
                    available: w.available(),
                };
                tx.insert_event(&self.event(EventType::CreditsRefilled, org.id, None, data)).await?;
                tx.insert_audit(&self.audit_entry(
                    Stamp::system().in_org(org.id),
                    "credits.refilled",
                    json!({ "transferId": t.id, "credits": amount }),
                ))
                .await?;
                self.note_low(tx, &pw, parent_before).await?;
            }
        }
        Ok(id)
    }

    /// Posts a reservation's actual cost in its own transaction (see `settle_in`).
    pub async fn settle(&self, reservation: TxnId, actual: i64) -> Result<()> {
        let mut tx = self.store.write().await?;
        self.settle_in(tx.as_mut(), reservation, Some(actual)).await?;
        tx.commit().await
    }

    /// Releases a reservation whole in its own transaction (failure or cancel).
    pub async fn void(&self, reservation: TxnId) -> Result<()> {
        let mut tx = self.store.write().await?;
        self.settle_in(tx.as_mut(), reservation, None).await?;
        tx.commit().await
    }

    /// Settles a pending reservation inside the caller's transaction: `Some(actual)` consumes
    /// up to the reserved amount (included credits first) and releases the rest; `None`
    /// releases all. Settling a settled reservation changes nothing. In an archived org the
    /// released credits go to the parent. Returns whether the reservation was still pending.
    pub(crate) async fn settle_in(&self, tx: &mut dyn Tx, id: TxnId, actual: Option<i64>) -> Result<bool> {
        let r = tx.transfer(Owner::System, id).await?.ok_or(CoreError::not_found("reservation"))?;
        if r.kind != TransferKind::Reservation {
            return Err(CoreError::internal(format!("{id} is not a reservation")));
        }
        if r.status != TransferStatus::Pending {
            return Ok(false);
        }
        // Held for share, as `write_as` holds the acting org: a cancel in the same org, or the
        // scheduler ending the same job, never upgrades a share lock (a deadlock on PostgreSQL).
        let org = tx.org_shared(Owner::System, r.org_id).await?.ok_or(CoreError::not_found("organization"))?;
        let mut w = self.lock_wallet(tx, org.id).await?;
        let consumed = actual.unwrap_or(0).clamp(0, r.amount);
        let status = if consumed > 0 { TransferStatus::Posted } else { TransferStatus::Voided };
        let mut postings = Vec::new();
        // A reservation made before the wallet's current period may hold carried-over credits.
        let old = r.created_at < w.period_start;
        let (from_included, from_prepaid) = w.settlement_split(consumed, old);
        for (amount, account) in [(from_included, Account::Included(org.id)), (from_prepaid, Account::Prepaid(org.id))] {
            if amount > 0 {
                let mut t = self.transfer(org.id, account, Account::Usage, amount, TransferKind::Usage, json!({ "reservationId": id }));
                t.pending_id = Some(id);
                postings.push(Posting::Transfer(t));
            }
        }
        postings.push(Posting::Resolve { id, org_id: org.id, amount: r.amount, status });
        let mut entries = Vec::new();
        if consumed > 0 {
            let meta = json!({ "transferId": id, "reserved": r.amount, "released": r.amount - consumed });
            let ctx = EntryContext {
                project_id: r.metadata["projectId"].as_str().and_then(|s| ProjectId::parse_field(s, "projectId").ok()),
                format: r.metadata["format"].as_str().map(str::to_owned),
                container_id: r.metadata["containerId"].as_str().map(str::to_owned),
                workflow_id: r.metadata["jobId"].as_str().map(str::to_owned),
            };
            entries.push(self.ledger_entry(org.id, -consumed, "usage", meta, ctx));
        }
        self.post_locked(tx, postings, entries, &mut [&mut w]).await?;
        // Included credits carried over a rollover for this reservation never become
        // spendable: what the remaining reservations no longer need expires now.
        let carried = w.included_carryover;
        let expired = if old { w.settle_carryover(r.amount, from_included) } else { 0 };
        if w.included_carryover != carried {
            tx.update_wallet_terms(&w).await?;
        }
        if expired > 0 {
            self.expire_included(tx, &mut w, expired, json!({ "reason": "carryover_released", "reservationId": id })).await?;
        }
        if let (OrgStatus::Archived, Some(parent)) = (org.status, org.parent_id) {
            let mut pw = self.lock_wallet(tx, parent).await?;
            self.sweep(tx, &mut w, &mut pw).await?;
        }
        Ok(true)
    }

    /// Moves a child's unreserved balance to its parent, bucket to bucket (CONTRACT §2):
    /// included credits into the parent's included bucket, where they still expire at the
    /// parent's period end, prepaid into its prepaid. Returns how much moved. Both wallets are
    /// held locked.
    async fn sweep(&self, tx: &mut dyn Tx, child: &mut Wallet, parent: &mut Wallet) -> Result<i64> {
        let amount = child.available();
        if amount == 0 {
            return Ok(0);
        }
        let (c, p) = (child.org_id, parent.org_id);
        // Carried-over included credits back reservations; they never leave with the sweep.
        let from_included = child.free_included().min(amount);
        let from_prepaid = amount - from_included;
        let mut postings = Vec::new();
        let mut entries = Vec::new();
        let mut transfers = Vec::new();
        let buckets: [(i64, Bucket, &str); 2] =
            [(from_included, Account::Included, "included"), (from_prepaid, Account::Prepaid, "prepaid")];
        for (moved, bucket, name) in buckets {
            if moved > 0 {
                let (t, e) =
                    self.bucket_move(bucket, c, p, moved, TransferKind::Reclaim, Some("archive_reclaim"), &Metadata::default(), None);
                transfers.push(json!({ "transferId": t.id, "credits": moved, "bucket": name }));
                postings.push(Posting::Transfer(t));
                entries.extend(e);
            }
        }
        self.post_locked(tx, postings, entries, &mut [child, parent]).await?;
        tx.insert_audit(&self.audit_entry(
            Stamp::system().in_org(p),
            "credits.reclaimed",
            json!({ "organizationId": c, "credits": amount, "transfers": transfers }),
        ))
        .await?;
        Ok(amount)
    }

    /// Archive's sweep, inside the archive's transaction: returns the reclaimed credits.
    pub(crate) async fn reclaim_on_archive(&self, tx: &mut dyn Tx, child: &Org) -> Result<i64> {
        let parent = child.parent_id.ok_or_else(|| CoreError::internal("only a child org is archived"))?;
        let mut w = self.lock_wallet(tx, child.id).await?;
        let mut pw = self.lock_wallet(tx, parent).await?;
        self.sweep(tx, &mut w, &mut pw).await
    }

    // ----- background steps -----

    /// Releases reservations past their timeout (up to 500 a step); returns how many. One that
    /// fails is logged and retried next step, never blocking the rest.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn expire_reservations(&self) -> Result<usize> {
        let mut tx = self.store.read().await?;
        let due = tx.expired_reservations(self.now(), 500).await?;
        tx.commit().await?;
        Ok(super::each_item(due, "expire a reservation", |id| self.expire_reservation(id)).await)
    }

    /// Releases reservation `id` whole, unless another node's step has it; returns whether
    /// this step released it.
    async fn expire_reservation(&self, id: TxnId) -> Result<bool> {
        let mut tx = self.store.write().await?;
        if !tx.try_take_item(&format!("reservation:{id}")).await? {
            return Ok(false);
        }
        let released = self.settle_in(tx.as_mut(), id, None).await?;
        tx.commit().await?;
        Ok(released)
    }

    /// Rolls wallets still in an old period into the current one (up to 500 a step).
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn roll_over_periods(&self) -> Result<usize> {
        let start = self.now().month_bounds().0;
        let mut tx = self.store.read().await?;
        let stale = tx.stale_wallets(start, 500).await?;
        tx.commit().await?;
        let roll = |org| async move {
            let mut tx = self.store.write().await?;
            if !tx.try_take_item(&format!("wallet:{org}")).await? {
                return Ok(false);
            }
            self.lock_wallet(tx.as_mut(), org).await?;
            tx.commit().await?;
            Ok(true)
        };
        Ok(super::each_item(stale, "roll a wallet over", roll).await)
    }
}
