//! A property test of the ledger: random sequences of grant, allocate, reserve, post, void,
//! expire, config change, archive and period rollover, with every invariant checked after each
//! step and the monthly cap checked at every accepted reservation.

use proptest::prelude::*;
use strata_core::clock::DAY_MS;
use strata_core::credits::{CreditConfigPatch, GrantKind};
use strata_core::metadata::Metadata;
use strata_core::org::Lifecycle;
use strata_core::service::{Allocation, DEFAULT_RESERVATION_TIMEOUT_MS, SpendRequest};

use crate::helpers::TestApp;

#[derive(Clone, Debug)]
enum Op {
    Grant { org: usize, credits: i64, included: bool },
    Allocate { child: usize, credits: i64 },
    Reserve { org: usize, cost: i64 },
    Post { pick: usize, percent: i64 },
    Void { pick: usize },
    Expire,
    Config { child: usize, cap: Option<i64>, refill: Option<(i64, i64)> },
    Archive { child: usize },
    Rollover,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0..4usize, 1..3_000i64, any::<bool>()).prop_map(|(org, credits, included)| Op::Grant { org, credits, included }),
        1 => (0..3usize, 1..2_000i64).prop_map(|(child, credits)| Op::Allocate { child, credits }),
        4 => (0..4usize, 1..800i64).prop_map(|(org, cost)| Op::Reserve { org, cost }),
        3 => (any::<usize>(), 0..=100i64).prop_map(|(pick, percent)| Op::Post { pick, percent }),
        1 => (any::<usize>()).prop_map(|pick| Op::Void { pick }),
        1 => Just(Op::Expire),
        1 => (0..3usize, proptest::option::of(0..4_000i64), proptest::option::of((0..1_500i64, 1..1_500i64)))
            .prop_map(|(child, cap, refill)| Op::Config { child, cap, refill }),
        1 => (0..3usize).prop_map(|child| Op::Archive { child }),
        1 => Just(Op::Rollover),
    ]
}

async fn run(ops: Vec<Op>) {
    let app = TestApp::spawn().await;
    let caller = app.admin_caller().await;
    let mut orgs = vec![app.partner_org.parse().unwrap()];
    for i in 0..3 {
        orgs.push(app.create_child(&format!("c{i}")).await.parse().unwrap());
    }
    let mut pending = Vec::new();
    for (step, op) in ops.into_iter().enumerate() {
        match op.clone() {
            Op::Grant { org, credits, included } => {
                let kind = if included { GrantKind::Included } else { GrantKind::Grant };
                let _ = app.strata.grant_credits(orgs[org], credits, kind).await;
            }
            Op::Allocate { child, credits } => {
                let credits = strata_core::credits::Credits::try_from(credits).unwrap();
                let req = Allocation { credits, description: None, metadata: Metadata::default() };
                if let Err(e) = app.strata.allocate(&caller, orgs[child + 1], req, None).await {
                    assert!([402, 409].contains(&e.status()), "step {step} {op:?}: {e}");
                }
            }
            Op::Reserve { org, cost } => {
                let req = SpendRequest {
                    org: orgs[org],
                    project: None,
                    cost,
                    format: "auto".into(),
                    container_id: None,
                    job_id: None,
                    hold_ms: 0,
                };
                match app.strata.reserve(req).await {
                    Ok(id) => {
                        pending.push(id);
                        let mut tx = app.strata.store.read().await.unwrap();
                        let w = tx.wallet(orgs[org]).await.unwrap().unwrap();
                        tx.commit().await.unwrap();
                        if let Some(cap) = w.config.monthly_credit_cap {
                            assert!(w.used_this_period + w.reserved <= cap, "step {step}: a reservation went over the cap: {w:?}");
                        }
                    }
                    Err(e) => assert!([402, 409].contains(&e.status()), "step {step} {op:?}: {e}"),
                }
            }
            Op::Post { pick, percent } if !pending.is_empty() => {
                let id = pending.remove(pick % pending.len());
                let mut tx = app.strata.store.read().await.unwrap();
                let amount = tx.transfer(strata_core::store::Owner::System, id).await.unwrap().unwrap().amount;
                tx.commit().await.unwrap();
                app.strata.settle(id, amount * percent / 100).await.unwrap();
            }
            Op::Void { pick } if !pending.is_empty() => {
                let id = pending.remove(pick % pending.len());
                app.strata.void(id).await.unwrap();
            }
            Op::Post { .. } | Op::Void { .. } => {}
            Op::Expire => {
                app.clock.advance_ms(DEFAULT_RESERVATION_TIMEOUT_MS);
                app.strata.expire_reservations().await.unwrap();
            }
            Op::Config { child, cap, refill } => {
                let amount = |n: i64| strata_core::credits::Credits::try_from(n).unwrap();
                let patch = CreditConfigPatch {
                    monthly_credit_cap: Some(cap.map(amount)),
                    refill_threshold: Some(refill.map(|r| amount(r.0))),
                    refill_amount: Some(refill.map(|r| amount(r.1))),
                };
                if let Err(e) = app.strata.update_credit_config(&caller, orgs[child + 1], patch, None).await {
                    assert_eq!(e.status(), 409, "step {step} {op:?}: {e}");
                }
            }
            Op::Archive { child } => {
                app.strata.change_child_lifecycle(&caller, orgs[child + 1], Lifecycle::Archive, None).await.unwrap();
            }
            Op::Rollover => {
                app.clock.advance_ms(31 * DAY_MS);
                app.strata.roll_over_periods().await.unwrap();
            }
        }
        let report = app.strata.check_ledger().await.unwrap();
        assert!(report.violations.is_empty(), "after step {step} ({op:?}):\n{}", report.violations.join("\n"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_ledger_operations_keep_every_invariant(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(ops));
    }
}
