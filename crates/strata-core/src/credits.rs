//! The credit ledger's domain (CONTRACT §3, DESIGN "The ledger"): wallets with derived balances,
//! double-entry transfers between named accounts, the monthly period and its rollover, the
//! credit config, and the low-balance marks. Pure rules; the credits service applies them.

use serde::Serialize;
use serde_json::Value;

use crate::clock::Timestamp;
use crate::error::CoreError;
use crate::id::{OrgId, ProjectId, TxnId};

/// Credits per variant for each generation format (shown in `GET /v1/credits`).
pub const ESTIMATED_CREDITS_PER_FORMAT: [(&str, i64); 5] =
    [("slideshow_builder", 50), ("slideshow_remix", 50), ("video_remix", 120), ("ugc_remix", 120), ("auto", 120)];

/// The largest amount one request may move or set (an allocation, a cap, a refill, an operator
/// grant): far above any real wallet, far below overflow. The one place this bound lives.
/// A credit amount that came in from outside (a request body, an operator command): a whole
/// number from its floor (0, or 1 where zero means nothing) to [`Credits::MAX`]. The bounds live
/// here and nowhere else.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct Credits(i64);

impl Credits {
    /// The largest amount accepted anywhere (a trillion credits): far above any real wallet, far
    /// below where sums of amounts could overflow 64 bits.
    pub const MAX: i64 = 1_000_000_000_000;

    /// Reads an amount of at least 1. Anything else (zero, a fraction, a string, a number beyond
    /// the bound or beyond 64 bits) is 422 stating the bounds in the message and in
    /// `details.min` / `details.max`.
    pub fn positive(field: &str, value: &Value) -> Result<Self, CoreError> {
        Self::at_least(1, field, value)
    }

    /// Reads an amount of at least 0 (a cap or a threshold); out of bounds as for `positive`.
    pub fn non_negative(field: &str, value: &Value) -> Result<Self, CoreError> {
        Self::at_least(0, field, value)
    }

    fn at_least(min: i64, field: &str, value: &Value) -> Result<Self, CoreError> {
        value.as_i64().filter(|n| (min..=Self::MAX).contains(n)).map(Self).ok_or_else(|| CoreError::out_of_range(field, min, Self::MAX))
    }

    /// The amount, as the ledger counts it.
    pub fn get(self) -> i64 {
        self.0
    }
}

/// An amount from 0 to [`Credits::MAX`] (for callers holding a number already, such as tests).
impl TryFrom<i64> for Credits {
    type Error = CoreError;

    fn try_from(n: i64) -> Result<Self, CoreError> {
        Self::non_negative("credits", &Value::from(n))
    }
}

impl utoipa::PartialSchema for Credits {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, SchemaFormat, SchemaType, Type};
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::Integer))
            .format(Some(SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Int64)))
            .minimum(Some(0))
            .maximum(Some(Self::MAX as f64))
            .description(Some("Whole credits, at most 1,000,000,000,000; above it is 422 naming the maximum in `details.max`."))
            .into()
    }
}

impl utoipa::ToSchema for Credits {}

/// The schema of an amount read with `Credits::positive`.
pub struct PositiveCredits;

impl utoipa::PartialSchema for PositiveCredits {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        match <Credits as utoipa::PartialSchema>::schema() {
            utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::Object(mut o)) => {
                o.minimum = Some(1f64.into());
                utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::Object(o))
            }
            other => other,
        }
    }
}

impl utoipa::ToSchema for PositiveCredits {}

pub fn estimated_cost(format: &str) -> Option<i64> {
    ESTIMATED_CREDITS_PER_FORMAT.iter().find(|(f, _)| *f == format).map(|(_, c)| *c)
}

/// A ledger account. Wallets have two buckets; the outside world is five system accounts.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Account {
    Included(OrgId),
    Prepaid(OrgId),
    /// Where a reservation's pending amount is held against (a whole wallet).
    Wallet(OrgId),
    Grants,
    Purchases,
    IncludedSource,
    Usage,
    Expired,
    /// The operator's corrections (`strata credits adjust`): a positive adjustment creates
    /// credits from it, a negative one destroys credits into it.
    Adjustments,
}

impl Account {
    pub fn to_stored(self) -> String {
        match self {
            Account::Included(o) => format!("wallet:{}:included", o.uuid_string()),
            Account::Prepaid(o) => format!("wallet:{}:prepaid", o.uuid_string()),
            Account::Wallet(o) => format!("wallet:{}", o.uuid_string()),
            Account::Grants => "operator:grants".into(),
            Account::Purchases => "operator:purchases".into(),
            Account::IncludedSource => "operator:included".into(),
            Account::Usage => "usage".into(),
            Account::Expired => "expired".into(),
            Account::Adjustments => "operator:adjustments".into(),
        }
    }

    pub fn from_stored(s: &str) -> Result<Self, CoreError> {
        let bad = || CoreError::internal(format!("corrupt account {s:?}"));
        Ok(match s {
            "operator:grants" => Account::Grants,
            "operator:purchases" => Account::Purchases,
            "operator:included" => Account::IncludedSource,
            "usage" => Account::Usage,
            "expired" => Account::Expired,
            "operator:adjustments" => Account::Adjustments,
            _ => {
                let rest = s.strip_prefix("wallet:").ok_or_else(bad)?;
                match rest.split_once(':') {
                    None => Account::Wallet(OrgId::from_stored(rest)?),
                    Some((org, "included")) => Account::Included(OrgId::from_stored(org)?),
                    Some((org, "prepaid")) => Account::Prepaid(OrgId::from_stored(org)?),
                    _ => return Err(bad()),
                }
            }
        })
    }

    /// Where credits enter the system (their balances go negative by what was created).
    pub fn is_source(self) -> bool {
        matches!(self, Account::Grants | Account::Purchases | Account::IncludedSource)
    }

    /// Where credits leave the system.
    pub fn is_sink(self) -> bool {
        matches!(self, Account::Usage | Account::Expired)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TransferStatus {
    Pending,
    Posted,
    Voided,
}

impl TransferStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TransferStatus::Pending => "pending",
            TransferStatus::Posted => "posted",
            TransferStatus::Voided => "voided",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "posted" => Some(Self::Posted),
            "voided" => Some(Self::Voided),
            _ => None,
        }
    }
}

/// What a transfer is for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TransferKind {
    Grant,
    Purchase,
    Included,
    Allocation,
    Refill,
    Reclaim,
    Reservation,
    Usage,
    Expiry,
    Adjustment,
}

impl TransferKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TransferKind::Grant => "grant",
            TransferKind::Purchase => "purchase",
            TransferKind::Included => "included",
            TransferKind::Allocation => "allocation",
            TransferKind::Refill => "refill",
            TransferKind::Reclaim => "reclaim",
            TransferKind::Reservation => "reservation",
            TransferKind::Usage => "usage",
            TransferKind::Expiry => "expiry",
            TransferKind::Adjustment => "adjustment",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "grant" => Self::Grant,
            "purchase" => Self::Purchase,
            "included" => Self::Included,
            "allocation" => Self::Allocation,
            "refill" => Self::Refill,
            "reclaim" => Self::Reclaim,
            "reservation" => Self::Reservation,
            "usage" => Self::Usage,
            "expiry" => Self::Expiry,
            "adjustment" => Self::Adjustment,
            _ => return None,
        })
    }
}

/// One double-entry movement: `amount` leaves `debit` and enters `credit`. Append-only; a
/// pending transfer (a reservation) later becomes posted or voided.
#[derive(Clone, Debug)]
pub struct Transfer {
    pub id: TxnId,
    /// The org whose ledger this transfer is filed under (for listing and locking).
    pub org_id: OrgId,
    pub debit: Account,
    pub credit: Account,
    pub amount: i64,
    pub kind: TransferKind,
    pub status: TransferStatus,
    /// For a usage transfer: the reservation it settles.
    pub pending_id: Option<TxnId>,
    /// For a reservation: when it expires unless settled.
    pub expires_at: Option<Timestamp>,
    pub metadata: Value,
    pub created_at: Timestamp,
}

/// Spend governance of a wallet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreditConfig {
    pub monthly_credit_cap: Option<i64>,
    pub refill_threshold: Option<i64>,
    pub refill_amount: Option<i64>,
}

impl CreditConfig {
    pub fn auto_refill_enabled(&self) -> bool {
        self.refill_threshold.is_some() && self.refill_amount.is_some()
    }

    /// The available levels below which the wallet is "low" (CONTRACT §6 `credits.low`).
    pub fn low_marks(&self) -> Vec<i64> {
        let mut marks = Vec::new();
        if let Some(t) = self.refill_threshold {
            marks.push(t);
        }
        if let Some(cap) = self.monthly_credit_cap {
            marks.push(cap / 10);
        }
        marks
    }
}

/// A change to the credit config: each field `None` = unchanged, `Some(None)` = cleared.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CreditConfigPatch {
    pub monthly_credit_cap: Option<Option<Credits>>,
    pub refill_threshold: Option<Option<Credits>>,
    pub refill_amount: Option<Option<Credits>>,
}

impl CreditConfig {
    /// Applies a patch; the result must have both refill fields or neither.
    pub fn apply(self, p: CreditConfigPatch) -> Result<Self, CoreError> {
        let out = CreditConfig {
            monthly_credit_cap: p.monthly_credit_cap.map_or(self.monthly_credit_cap, |v| v.map(Credits::get)),
            refill_threshold: p.refill_threshold.map_or(self.refill_threshold, |v| v.map(Credits::get)),
            refill_amount: p.refill_amount.map_or(self.refill_amount, |v| v.map(Credits::get)),
        };
        if out.refill_threshold.is_some() != out.refill_amount.is_some() {
            return Err(CoreError::validation_code(
                if out.refill_threshold.is_some() { "refillAmount" } else { "refillThreshold" },
                "refillThreshold and refillAmount must be set together or both be null",
                "REFILL_REQUIRES_THRESHOLD_AND_AMOUNT",
            ));
        }
        Ok(out)
    }
}

/// An org's wallet with its derived balances, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wallet {
    pub org_id: OrgId,
    pub included_remaining: i64,
    pub prepaid_balance: i64,
    pub reserved: i64,
    pub used_this_period: i64,
    pub included_this_period: i64,
    /// The start of the period `used_this_period` and `included_this_period` count.
    pub period_start: Timestamp,
    pub config: CreditConfig,
    pub updated_at: Timestamp,
    /// Included credits of an ended period kept only to back in-flight reservations (part of
    /// `included_remaining`, never more than `reserved`): consumed first when those reservations
    /// settle, expired as soon as they no longer need them, never spendable.
    pub included_carryover: i64,
}

impl Wallet {
    pub fn empty(org_id: OrgId, now: Timestamp) -> Self {
        Self {
            org_id,
            included_remaining: 0,
            prepaid_balance: 0,
            reserved: 0,
            used_this_period: 0,
            included_this_period: 0,
            period_start: now.month_bounds().0,
            config: CreditConfig::default(),
            updated_at: now,
            included_carryover: 0,
        }
    }

    pub fn balance(&self) -> i64 {
        self.included_remaining + self.prepaid_balance
    }

    /// Spendable now: the balance net of reservations, never below 0.
    pub fn available(&self) -> i64 {
        (self.balance() - self.reserved).max(0)
    }

    /// Brings the wallet into the period of `now`: the period's counters restart. Returns the
    /// included credits that expire with the old period (unused, except what in-flight
    /// reservations still need), which the caller posts as an expiry transfer; zero when the
    /// period is current or nothing expires. What is kept becomes `included_carryover`.
    pub fn roll_over(&mut self, now: Timestamp) -> i64 {
        let current = now.month_bounds().0;
        if self.period_start >= current {
            return 0;
        }
        let expired = self.included_remaining.min(self.available());
        self.included_carryover = self.included_remaining - expired;
        self.used_this_period = 0;
        self.included_this_period = 0;
        self.period_start = current;
        self.updated_at = now;
        expired
    }

    /// Included credits that may leave the wallet other than by its reservations' consumption:
    /// all but the carryover.
    pub fn free_included(&self) -> i64 {
        self.included_remaining - self.included_carryover
    }

    /// After a reservation made before this period settled (its hold of `amount` released,
    /// `from_included` consumed): the carryover backed up to `amount` of it; what of that it did
    /// not consume must expire, never backing a reservation of the new period. Returns the
    /// credits to expire now; the carryover drops by what backed this reservation.
    pub fn settle_carryover(&mut self, amount: i64, from_included: i64) -> i64 {
        let backed = self.included_carryover.min(amount);
        self.included_carryover -= backed;
        backed - from_included.min(backed)
    }

    /// How a settlement of `amount` splits over the buckets: included first, then prepaid. A
    /// reservation of the current period never draws on the carryover (`old_reservation`
    /// false); one made before the rollover draws on it first.
    pub fn settlement_split(&self, amount: i64, old_reservation: bool) -> (i64, i64) {
        let included = if old_reservation { self.included_remaining } else { self.free_included() };
        let from_included = included.min(amount);
        (from_included, amount - from_included)
    }

    /// Splits a consumption of `amount` over the buckets: included first, then prepaid.
    pub fn consumption_split(&self, amount: i64) -> (i64, i64) {
        let from_included = self.included_remaining.min(amount);
        (from_included, amount - from_included)
    }

    /// Why a reservation of `cost` cannot be made, if it cannot.
    pub fn reserve_refusal(&self, cost: i64) -> Option<CoreError> {
        if cost > self.available() {
            return Some(CoreError::BillingExhausted {
                message: format!("this generation needs {cost} credits; {} are available", self.available()),
                reason: "insufficient_credits",
            });
        }
        if let Some(cap) = self.config.monthly_credit_cap
            && self.used_this_period + self.reserved + cost > cap
        {
            return Some(CoreError::BillingExhausted {
                message: format!(
                    "this generation would take the period's spend to {} credits, over the monthly cap of {cap}",
                    self.used_this_period + self.reserved + cost
                ),
                reason: "monthly_cap",
            });
        }
        None
    }

    /// `active`, `low` (below a low mark) or `exhausted` (nothing available): one of
    /// [`BILLING_STATUSES`].
    pub fn billing_status(&self) -> &'static str {
        let available = self.available();
        if available == 0 {
            "exhausted"
        } else if self.config.low_marks().iter().any(|m| available < *m) {
            "low"
        } else {
            "active"
        }
    }
}

/// What `Wallet::billing_status` answers.
pub const BILLING_STATUSES: [&str; 3] = ["active", "low", "exhausted"];

/// Whether moving from `before` to `after` available crosses below `mark`.
pub fn crosses_below(before: i64, after: i64, mark: i64) -> bool {
    before >= mark && after < mark
}

/// The ledger view of a balance change (`GET /v1/credits/events`).
#[derive(Clone, Debug)]
pub struct CreditEvent {
    pub id: String,
    pub org_id: OrgId,
    pub project_id: Option<ProjectId>,
    pub credits: i64,
    pub event_type: &'static str,
    pub format: Option<String>,
    pub container_id: Option<String>,
    pub workflow_id: Option<String>,
    pub balance_after_prepaid: i64,
    pub usage_after_period: i64,
    pub metadata: Value,
    pub created_at: Timestamp,
    pub seq: i64,
}

pub const CREDIT_EVENT_TYPES: [&str; 6] = ["usage", "refund", "grant", "purchase", "adjustment", "allocation"];

/// Filters of the credit ledger listing.
#[derive(Clone, Debug, Default)]
pub struct CreditEventFilter {
    pub project_id: Option<ProjectId>,
    /// Any of these kinds (of `CREDIT_EVENT_TYPES`); empty means every kind.
    pub event_types: Vec<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

/// How the operator funds a wallet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantKind {
    Grant,
    Purchase,
    Included,
}

impl GrantKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "grant" => Some(Self::Grant),
            "purchase" => Some(Self::Purchase),
            "included" => Some(Self::Included),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wallet(included: i64, prepaid: i64, reserved: i64) -> Wallet {
        let mut w = Wallet::empty(OrgId::new(), Timestamp(1_780_272_000_000));
        w.included_remaining = included;
        w.prepaid_balance = prepaid;
        w.reserved = reserved;
        w
    }

    #[test]
    fn available_is_balance_net_of_reservations() {
        let w = wallet(100, 400, 120);
        assert_eq!(w.balance(), 500);
        assert_eq!(w.available(), 380);
    }

    #[test]
    fn consumption_takes_included_first() {
        assert_eq!(wallet(100, 400, 0).consumption_split(150), (100, 50));
        assert_eq!(wallet(100, 400, 0).consumption_split(60), (60, 0));
    }

    #[test]
    fn rollover_expires_included_but_keeps_what_reservations_need() {
        let mut w = wallet(300, 0, 120);
        w.used_this_period = 50;
        let next_month = Timestamp(1_780_272_000_000 + 31 * crate::clock::DAY_MS);
        assert_eq!(w.roll_over(next_month), 180);
        assert_eq!((w.included_remaining, w.used_this_period), (300, 0), "the caller posts the expiry");
        assert_eq!(w.roll_over(next_month), 0, "once per period");
    }

    #[test]
    fn carried_over_included_credits_are_released_only_to_expire() {
        let mut w = wallet(300, 0, 120);
        let next_month = Timestamp(1_780_272_000_000 + 31 * crate::clock::DAY_MS);
        assert_eq!(w.roll_over(next_month), 180);
        w.included_remaining -= 180;
        assert_eq!(w.included_carryover, 120);
        // A reservation of the new period never draws on the carryover.
        w.prepaid_balance = 100;
        assert_eq!(w.settlement_split(50, false), (0, 50));
        // The old reservation settles for 30 (consumed from the carryover) and releases 90.
        assert_eq!(w.settlement_split(30, true), (30, 0));
        w.included_remaining -= 30;
        assert_eq!(w.settle_carryover(120, 30), 90, "what it did not consume expires");
        assert_eq!(w.included_carryover, 0);
    }

    #[test]
    fn the_cap_counts_usage_and_reservations() {
        let mut w = wallet(0, 10_000, 1_000);
        w.used_this_period = 3_000;
        w.config.monthly_credit_cap = Some(5_000);
        assert!(w.reserve_refusal(1_000).is_none());
        match w.reserve_refusal(1_001) {
            Some(CoreError::BillingExhausted { reason, .. }) => assert_eq!(reason, "monthly_cap"),
            other => panic!("{other:?}"),
        }
        match wallet(0, 10, 0).reserve_refusal(11) {
            Some(CoreError::BillingExhausted { reason, .. }) => assert_eq!(reason, "insufficient_credits"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refill_fields_are_both_or_neither() {
        let base = CreditConfig::default();
        let one = CreditConfigPatch { refill_threshold: Some(Some(Credits(1000))), ..Default::default() };
        match base.apply(one) {
            Err(CoreError::Validation { code, .. }) => assert_eq!(code, Some("REFILL_REQUIRES_THRESHOLD_AND_AMOUNT")),
            other => panic!("{other:?}"),
        }
        let both = CreditConfigPatch {
            refill_threshold: Some(Some(Credits(1000))),
            refill_amount: Some(Some(Credits(2000))),
            ..Default::default()
        };
        let set = base.apply(both).unwrap();
        assert!(set.auto_refill_enabled());
        let clear_one = CreditConfigPatch { refill_amount: Some(None), ..Default::default() };
        assert!(set.apply(clear_one).is_err());
        let clear_both = CreditConfigPatch { refill_amount: Some(None), refill_threshold: Some(None), ..Default::default() };
        assert!(!set.apply(clear_both).unwrap().auto_refill_enabled());
    }

    #[test]
    fn accounts_round_trip_through_storage() {
        let o = OrgId::new();
        for a in [Account::Included(o), Account::Prepaid(o), Account::Wallet(o), Account::Grants, Account::Usage, Account::Expired] {
            assert_eq!(Account::from_stored(&a.to_stored()).unwrap(), a);
        }
    }

    #[test]
    fn crossing_is_from_at_or_above_to_below() {
        assert!(crosses_below(1000, 999, 1000));
        assert!(!crosses_below(999, 500, 1000));
        assert!(!crosses_below(2000, 1000, 1000));
    }
}
