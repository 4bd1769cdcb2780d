//! Writes deferred on a connection (`Conn::later`): what they are, and how they become SQL.
//! A wallet's deferred changes are summed into one update when they are sent, because one
//! PostgreSQL statement may not update one row twice (only one of the updates would take).

use std::collections::HashMap;

use strata_core::clock::Timestamp;
use strata_core::id::OrgId;
use strata_core::ledger::WalletChange;

use crate::query::Q;

/// A write whose outcome nothing waits for.
pub(crate) enum Later {
    /// An `INSERT INTO` or an `UPDATE`; a `counted` one must change exactly one row.
    Write { q: Q, counted: bool },
    /// A change to a wallet whose exact value the writer holds (its row locked by the batch):
    /// its bounds were checked against that value, and the table's CHECKs check them again.
    Wallet { change: WalletChange, at: Timestamp },
    /// The completion of an idempotency claim with its stored reply: it must change exactly
    /// one row (the claim taken at `token`, not yet completed).
    Claim(Claim),
}

/// See `Later::Claim`.
pub(crate) struct Claim {
    pub key_id: String,
    pub key: String,
    pub token: i64,
    pub status: i64,
    pub body: String,
}

impl Claim {
    /// The update completing this claim alone.
    pub fn update(&self) -> Q {
        Q::new(
            "UPDATE idempotency_records SET status = $3, body = $4 \
             WHERE api_key_id = $1 AND idem_key = $2 AND created_at = $5 AND status IS NULL",
        )
        .str(&self.key_id)
        .str(&self.key)
        .int(self.status)
        .str(&self.body)
        .int(self.token)
    }
}

/// One update completing every claim of `claims`.
fn complete_claims(claims: &[Claim]) -> Q {
    let q = Q::new(&format!(
        "UPDATE idempotency_records r SET status = v.status, body = v.body FROM (VALUES {}",
        crate::query::values_placeholders(claims.len(), 5)
    ));
    let q = claims.iter().fold(q, |q, c| q.str(&c.key_id).str(&c.key).int(c.status).str(&c.body).int(c.token));
    q.push(
        ") AS v (api_key_id, idem_key, status, body, created_at) WHERE r.api_key_id = v.api_key_id \
         AND r.idem_key = v.idem_key AND r.created_at = v.created_at AND r.status IS NULL",
    )
}

impl Later {
    /// The table it writes.
    pub fn table(&self) -> &str {
        match self {
            Later::Write { q, .. } => crate::query::written_table(q),
            Later::Wallet { .. } => "wallets",
            Later::Claim(_) => "idempotency_records",
        }
    }

    /// How many arguments it binds.
    pub fn args(&self) -> usize {
        match self {
            Later::Write { q, .. } => q.args.len(),
            Later::Wallet { .. } => 7,
            Later::Claim(_) => 5,
        }
    }

    pub fn counted(&self) -> bool {
        matches!(self, Later::Write { counted: true, .. } | Later::Claim(_))
    }
}

/// An insert's `INSERT INTO t (columns)` and its `(…), (…)` rows, when it is one of those.
fn insert_parts(q: &Q) -> Option<(&str, &str)> {
    let (head, rows) = q.sql.split_once(" VALUES ")?;
    (head.starts_with("INSERT INTO ") && rows.starts_with('(') && rows.ends_with(')')).then_some((head, rows))
}

/// The statements of `writes`, each with how many rows it must change (0: not counted), as
/// few as they can be: the rows of inserts into one table with the same columns become one
/// multi-row insert, the changes of one wallet one update, the claims one update; each at the
/// place of its first write (an insert's rows keep their order, so `seq` follows it).
pub(crate) fn render(writes: Vec<Later>) -> Vec<(Q, i64)> {
    enum Slot {
        Write(Q, i64),
        Insert(Q),
        Wallet(OrgId),
        Claims,
    }
    let mut slots: Vec<Slot> = Vec::with_capacity(writes.len());
    let mut inserts: HashMap<String, usize> = HashMap::new();
    let mut sums: HashMap<OrgId, (WalletChange, Timestamp)> = HashMap::new();
    let mut claims = Vec::new();
    for w in writes {
        match w {
            Later::Wallet { change, at } => match sums.get_mut(&change.org_id) {
                Some((sum, last)) => {
                    sum.included += change.included;
                    sum.prepaid += change.prepaid;
                    sum.reserved += change.reserved;
                    sum.used += change.used;
                    sum.included_granted += change.included_granted;
                    *last = (*last).max(at);
                }
                None => {
                    sums.insert(change.org_id, (change, at));
                    slots.push(Slot::Wallet(change.org_id));
                }
            },
            Later::Claim(c) => {
                if claims.is_empty() {
                    slots.push(Slot::Claims);
                }
                claims.push(c);
            }
            Later::Write { q, counted: false } if insert_parts(&q).is_some() => {
                let Some((head, rows)) = insert_parts(&q) else { continue };
                match inserts.get(head).map(|&i| &mut slots[i]) {
                    Some(Slot::Insert(merged)) if merged.args.len() + q.args.len() <= crate::query::MAX_ARGS => {
                        merged.sql = format!("{}, {}", merged.sql, crate::query::shift_placeholders(rows, merged.args.len()));
                        merged.args.extend(q.args);
                    }
                    _ => {
                        inserts.insert(head.to_owned(), slots.len());
                        slots.push(Slot::Insert(q));
                    }
                }
            }
            Later::Write { q, counted } => slots.push(Slot::Write(q, i64::from(counted))),
        }
    }
    slots
        .into_iter()
        .filter_map(|slot| match slot {
            Slot::Write(q, n) => Some((q, n)),
            Slot::Insert(q) => Some((q, 0)),
            Slot::Wallet(org) => sums.remove(&org).map(|(c, at)| (wallet_update(Q::new(""), &c, at, Guard::Checks), 0)),
            Slot::Claims => Some((complete_claims(&claims), claims.len() as i64)),
        })
        .collect()
}

/// How a wallet update keeps a wallet in bounds (no bucket below zero, nothing reserved beyond
/// the balance).
pub(crate) enum Guard {
    /// In its `WHERE`: the update changes nothing when the wallet would leave its bounds, or,
    /// with `after`, when the `WITH` item of that name moved no wallet.
    Where { after: Option<String> },
    /// By the table's CHECKs: a wallet out of bounds fails the statement (the caller has
    /// already applied the change to the wallet's exact value).
    Checks,
}

/// Appends to `q` the update of one wallet by `c` (its placeholders numbered after `q`'s
/// arguments), guarded as `guard` says.
pub(crate) fn wallet_update(q: Q, c: &WalletChange, at: Timestamp, guard: Guard) -> Q {
    let n = q.args.len();
    let p = |i: usize| format!("${}", n + i);
    let (id, inc, pre, res, used, granted, when) = (p(1), p(2), p(3), p(4), p(5), p(6), p(7));
    let guard = match guard {
        Guard::Where { after } => format!(
            " AND included_remaining + {inc} >= 0 AND prepaid_balance + {pre} >= 0 AND reserved + {res} >= 0 \
             AND used_this_period + {used} >= 0 AND included_remaining + {inc} + prepaid_balance + {pre} >= reserved + {res}{}",
            after.map(|a| format!(" AND EXISTS (SELECT 1 FROM {a})")).unwrap_or_default()
        ),
        Guard::Checks => String::new(),
    };
    q.push(&format!(
        "UPDATE wallets SET included_remaining = included_remaining + {inc}, prepaid_balance = prepaid_balance + {pre}, \
         reserved = reserved + {res}, used_this_period = used_this_period + {used}, \
         included_this_period = included_this_period + {granted}, updated_at = {when} WHERE org_id = {id}{guard}"
    ))
    .str(&c.org_id.uuid_string())
    .int(c.included)
    .int(c.prepaid)
    .int(c.reserved)
    .int(c.used)
    .int(c.included_granted)
    .int(at.millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wallets_changes_are_sent_as_one_update_where_its_first_change_was() {
        let (a, b) = (OrgId::new(), OrgId::new());
        let change = |org, prepaid| Later::Wallet { change: WalletChange { prepaid, ..WalletChange::zero(org) }, at: Timestamp(prepaid) };
        let event = Later::Write { q: Q::new("INSERT INTO events (id) VALUES ($1)").str("e"), counted: false };
        let out = render(vec![change(a, 5), event, change(b, -7), change(a, 3)]);
        let tables: Vec<&str> = out.iter().map(|(q, _)| crate::query::written_table(q)).collect();
        assert_eq!(tables, ["wallets", "events", "wallets"]);
        let prepaid_and_at = |q: &Q| (format!("{:?}", q.args[2]), format!("{:?}", q.args[6]));
        assert_eq!(
            prepaid_and_at(&out[0].0),
            (format!("{:?}", crate::query::Arg::Int(Some(8))), format!("{:?}", crate::query::Arg::Int(Some(5))))
        );
        assert_eq!(prepaid_and_at(&out[2].0).0, format!("{:?}", crate::query::Arg::Int(Some(-7))));
        assert!(!out[0].0.sql.contains(">= 0"), "bounds are the CHECKs' to enforce: {}", out[0].0.sql);
    }

    #[test]
    fn inserts_into_one_table_become_one_insert_and_claims_one_counted_update() {
        let event =
            |id: &str| Later::Write { q: Q::new("INSERT INTO events (id, data) VALUES ($1, $2)").str(id).str("{}"), counted: false };
        let claim = |key: &str| Later::Claim(Claim { key_id: "k".into(), key: key.into(), token: 1, status: 201, body: "b".into() });
        let audit = Later::Write { q: Q::new("INSERT INTO audit_log (id) VALUES ($1)").str("a"), counted: false };
        let out = render(vec![event("e1"), claim("c1"), audit, event("e2"), claim("c2")]);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].0.sql, "INSERT INTO events (id, data) VALUES ($1, $2), ($3, $4)");
        assert_eq!(out[0].0.args.len(), 4);
        assert!(format!("{:?}", out[0].0.args[2]).contains("e2"), "rows keep their order");
        assert!(out[1].0.sql.starts_with("UPDATE idempotency_records r SET"), "{}", out[1].0.sql);
        assert_eq!((out[1].1, out[1].0.args.len()), (2, 10), "two claims, each must change its row");
        assert_eq!(crate::query::written_table(&out[2].0), "audit_log");
    }
}
