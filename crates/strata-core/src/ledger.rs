//! Posting: the one way wallet balances move (DESIGN "The ledger", TigerBeetle's model). A batch
//! of postings (new transfers, resolved reservations) becomes one signed change per wallet; the
//! services apply it to the wallets they hold, the store persists it under guards, and the
//! invariant check recomputes every balance from the transfers alone.

use std::collections::HashMap;

use crate::clock::Timestamp;
use crate::credits::{Account, CreditEvent, Transfer, TransferKind, TransferStatus, Wallet};
use crate::error::CoreError;
use crate::id::{OrgId, TxnId};

/// One change to the ledger.
#[derive(Clone, Debug)]
pub enum Posting {
    /// A new transfer. Posted: `amount` leaves the debit bucket and enters the credit bucket.
    /// Pending (a reservation, debit `Account::Wallet(org)`): `amount` is held as `reserved`.
    Transfer(Transfer),
    /// A pending reservation resolved as `Posted` or `Voided`: its hold is released. What it
    /// consumed is posted as usage transfers in the same batch.
    Resolve { id: TxnId, org_id: OrgId, amount: i64, status: TransferStatus },
}

/// The signed change a batch makes to one wallet, in credits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalletChange {
    pub org_id: OrgId,
    pub included: i64,
    pub prepaid: i64,
    pub reserved: i64,
    /// Usage posted in the current period.
    pub used: i64,
    /// Included credits granted in the current period.
    pub included_granted: i64,
}

impl WalletChange {
    /// No change to `org_id`'s wallet.
    pub fn zero(org_id: OrgId) -> Self {
        Self { org_id, included: 0, prepaid: 0, reserved: 0, used: 0, included_granted: 0 }
    }

    /// How the change moves the wallet's spendable credits (`balance − reserved`): negative for
    /// a debit.
    pub fn spendable(&self) -> i64 {
        self.included + self.prepaid - self.reserved
    }

    fn is_zero(&self) -> bool {
        *self == Self::zero(self.org_id)
    }
}

/// The wallet changes a batch of postings makes, one per wallet it touches: credits first,
/// then debits, each group by org id. Persisting them in this order locks a contended debit
/// (a partner wallet funding many children) last, so it is held for the least time.
///
/// Errors: a posted transfer that debits or credits the reservation account
/// (`Account::Wallet`), or a pending transfer that is not a reservation against one.
pub fn wallet_changes(postings: &[Posting]) -> Result<Vec<WalletChange>, CoreError> {
    let mut by_org: HashMap<OrgId, WalletChange> = HashMap::new();
    for p in postings {
        match p {
            Posting::Transfer(t) => match t.status {
                TransferStatus::Voided => {}
                TransferStatus::Pending => match (t.kind, t.debit) {
                    (TransferKind::Reservation, Account::Wallet(o)) => at(&mut by_org, o).reserved += t.amount,
                    _ => return Err(CoreError::internal(format!("{} is pending but is no reservation", t.id))),
                },
                TransferStatus::Posted => {
                    match t.debit {
                        Account::Included(o) => at(&mut by_org, o).included -= t.amount,
                        Account::Prepaid(o) => at(&mut by_org, o).prepaid -= t.amount,
                        Account::Wallet(_) => return Err(CoreError::internal(format!("{} posts from a reservation account", t.id))),
                        _ => {}
                    }
                    match t.credit {
                        Account::Included(o) => {
                            let c = at(&mut by_org, o);
                            c.included += t.amount;
                            if t.debit == Account::IncludedSource {
                                c.included_granted += t.amount;
                            }
                        }
                        Account::Prepaid(o) => at(&mut by_org, o).prepaid += t.amount,
                        Account::Wallet(_) => return Err(CoreError::internal(format!("{} posts into a reservation account", t.id))),
                        Account::Usage => {
                            if let Account::Included(o) | Account::Prepaid(o) = t.debit {
                                at(&mut by_org, o).used += t.amount;
                            }
                        }
                        _ => {}
                    }
                }
            },
            Posting::Resolve { org_id, amount, .. } => at(&mut by_org, *org_id).reserved -= amount,
        }
    }
    let mut changes: Vec<WalletChange> = by_org.into_values().filter(|c| !c.is_zero()).collect();
    changes.sort_by_key(|c| (c.spendable() < 0, c.org_id));
    Ok(changes)
}

fn at(by_org: &mut HashMap<OrgId, WalletChange>, org: OrgId) -> &mut WalletChange {
    by_org.entry(org).or_insert_with(|| WalletChange::zero(org))
}

impl Wallet {
    /// Applies a change (`change.org_id` must be this wallet's), refusing one that would take a
    /// bucket below zero or reserve more than the balance; the wallet is unchanged on refusal.
    pub fn apply(&mut self, change: &WalletChange, at: Timestamp) -> Result<(), CoreError> {
        let mut next = self.clone();
        next.included_remaining += change.included;
        next.prepaid_balance += change.prepaid;
        next.reserved += change.reserved;
        next.used_this_period += change.used;
        next.included_this_period += change.included_granted;
        next.updated_at = at;
        if change.org_id != self.org_id || !next.is_consistent() {
            return Err(CoreError::internal(format!("a ledger change would take the wallet of {} out of bounds", self.org_id)));
        }
        *self = next;
        Ok(())
    }

    /// No bucket below zero, nothing reserved beyond the balance (the store's CHECKs, too).
    pub fn is_consistent(&self) -> bool {
        self.included_remaining >= 0
            && self.prepaid_balance >= 0
            && self.reserved >= 0
            && self.used_this_period >= 0
            && self.balance() >= self.reserved
    }
}

/// What `available` was before `change` made the wallet `after`.
pub fn available_before(after: &Wallet, change: &WalletChange) -> i64 {
    (after.balance() - after.reserved - change.spendable()).max(0)
}

/// Applies a batch's changes to the wallets a service holds (those it does not hold are left
/// to the store).
pub fn apply_changes(wallets: &mut [&mut Wallet], changes: &[WalletChange], at: Timestamp) -> Result<(), CoreError> {
    for c in changes {
        if let Some(w) = wallets.iter_mut().find(|w| w.org_id == c.org_id) {
            w.apply(c, at)?;
        }
    }
    Ok(())
}

/// What the store persists in one go: the postings, the wallet changes they make, and the
/// ledger entries (`GET …/credits/events`) that describe them. The store stamps each entry with
/// its wallet's balances after the change (`balanceAfterPrepaid`, `usageAfterPeriod`).
#[derive(Clone, Debug)]
pub struct LedgerBatch {
    pub postings: Vec<Posting>,
    pub changes: Vec<WalletChange>,
    pub entries: Vec<CreditEvent>,
    pub at: Timestamp,
}

impl LedgerBatch {
    pub fn new(postings: Vec<Posting>, entries: Vec<CreditEvent>, at: Timestamp) -> Result<Self, CoreError> {
        let changes = wallet_changes(&postings)?;
        Ok(Self { postings, changes, entries, at })
    }
}

/// What the invariant check found; empty `violations` when the ledger is exactly right.
#[derive(Debug, Default)]
pub struct LedgerReport {
    pub violations: Vec<String>,
    pub wallets: usize,
    pub transfers: usize,
    pub created: i64,
    pub destroyed: i64,
    pub held: i64,
}

/// Checks the ledger's invariants (CONTRACT §3 "Conservation"): each wallet bucket equals the sum
/// of its posted transfers, `reserved` equals the pending reservations, the period's usage equals
/// its usage transfers, nothing is reserved beyond the balance, and all wallets hold exactly what
/// was created minus what was destroyed.
pub fn check(wallets: &[Wallet], transfers: &[Transfer]) -> LedgerReport {
    let mut posted: HashMap<Account, i64> = HashMap::new();
    let mut pending: HashMap<OrgId, i64> = HashMap::new();
    let mut usage_since: Vec<(OrgId, Timestamp, i64)> = Vec::new();
    let mut old_pending: Vec<(OrgId, Timestamp, i64)> = Vec::new();
    let mut report = LedgerReport { wallets: wallets.len(), transfers: transfers.len(), ..Default::default() };
    // Credits the operator's adjustments (created, destroyed).
    let mut adjusted = (0_i64, 0_i64);
    for t in transfers {
        if t.amount <= 0 {
            report.violations.push(format!("{} has a non-positive amount", t.id));
        }
        if t.kind == TransferKind::Reservation {
            if t.status == TransferStatus::Pending {
                *pending.entry(t.org_id).or_default() += t.amount;
                old_pending.push((t.org_id, t.created_at, t.amount));
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
        if t.debit == Account::Adjustments {
            adjusted.0 += t.amount;
        } else if t.credit == Account::Adjustments {
            adjusted.1 += t.amount;
        }
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
        let held_from_before: i64 = old_pending.iter().filter(|(org, at, _)| *org == o && *at < w.period_start).map(|(_, _, a)| a).sum();
        if w.included_carryover > w.included_remaining || w.included_carryover > held_from_before {
            report.violations.push(format!(
                "{o}: carryover {} exceeds includedRemaining {} or the reservations made before the period ({held_from_before})",
                w.included_carryover, w.included_remaining
            ));
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
    // The operator's adjustments go both ways: out of the account creates, into it destroys.
    report.created += adjusted.0;
    report.destroyed += adjusted.1;
    if report.held != report.created - report.destroyed {
        report
            .violations
            .push(format!("wallets hold {} but {} were created and {} destroyed", report.held, report.created, report.destroyed));
    }
    report
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    const T0: Timestamp = Timestamp(1_780_272_000_000);

    fn transfer(debit: Account, credit: Account, amount: i64, kind: TransferKind, status: TransferStatus) -> Transfer {
        Transfer {
            id: TxnId::new(),
            org_id: OrgId::new(),
            debit,
            credit,
            amount,
            kind,
            status,
            pending_id: None,
            expires_at: None,
            metadata: Value::Null,
            created_at: T0,
        }
    }

    fn posted(debit: Account, credit: Account, amount: i64, kind: TransferKind) -> Posting {
        Posting::Transfer(transfer(debit, credit, amount, kind, TransferStatus::Posted))
    }

    #[test]
    fn an_allocation_credits_the_child_first_and_debits_the_parent_last() {
        let (parent, child) = (OrgId::new(), OrgId::new());
        let changes = wallet_changes(&[posted(Account::Prepaid(parent), Account::Prepaid(child), 70, TransferKind::Allocation)]).unwrap();
        assert_eq!(changes.len(), 2);
        assert_eq!((changes[0].org_id, changes[0].prepaid), (child, 70));
        assert_eq!((changes[1].org_id, changes[1].prepaid), (parent, -70));
    }

    #[test]
    fn a_reservation_holds_and_its_settlement_consumes_and_releases() {
        let o = OrgId::new();
        let hold = transfer(Account::Wallet(o), Account::Usage, 120, TransferKind::Reservation, TransferStatus::Pending);
        let mut w = Wallet::empty(o, T0);
        w.included_remaining = 50;
        w.prepaid_balance = 200;
        for c in wallet_changes(&[Posting::Transfer(hold.clone())]).unwrap() {
            w.apply(&c, T0).unwrap();
        }
        assert_eq!((w.reserved, w.available()), (120, 130));
        let settle = [
            posted(Account::Included(o), Account::Usage, 50, TransferKind::Usage),
            posted(Account::Prepaid(o), Account::Usage, 50, TransferKind::Usage),
            Posting::Resolve { id: hold.id, org_id: o, amount: 120, status: TransferStatus::Posted },
        ];
        for c in wallet_changes(&settle).unwrap() {
            w.apply(&c, T0).unwrap();
        }
        assert_eq!((w.included_remaining, w.prepaid_balance, w.reserved, w.used_this_period), (0, 150, 0, 100));
    }

    #[test]
    fn included_grants_count_toward_the_period() {
        let o = OrgId::new();
        let c = wallet_changes(&[posted(Account::IncludedSource, Account::Included(o), 500, TransferKind::Included)]).unwrap();
        assert_eq!((c[0].included, c[0].included_granted), (500, 500));
    }

    #[test]
    fn a_change_that_overdraws_is_refused_and_changes_nothing() {
        let o = OrgId::new();
        let mut w = Wallet::empty(o, T0);
        w.prepaid_balance = 10;
        w.reserved = 5;
        let c = wallet_changes(&[posted(Account::Prepaid(o), Account::Expired, 6, TransferKind::Expiry)]).unwrap();
        assert!(w.apply(&c[0], T0).is_err());
        assert_eq!(w.prepaid_balance, 10);
    }

    #[test]
    fn a_pending_transfer_that_is_no_reservation_is_refused() {
        let o = OrgId::new();
        let t = transfer(Account::Prepaid(o), Account::Usage, 1, TransferKind::Usage, TransferStatus::Pending);
        assert!(wallet_changes(&[Posting::Transfer(t)]).is_err());
    }
}
