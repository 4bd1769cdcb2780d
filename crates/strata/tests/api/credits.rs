//! Credits (CONTRACT §3): wallets, allocation, the credit config, the spend path, auto-refill,
//! caps, rollover and archive's reclaim. Every test ends by checking the ledger's invariants.

use serde_json::json;
use strata_core::clock::{HOUR_MS, MINUTE_MS, Timestamp};
use strata_core::credits::GrantKind;
use strata_core::service::SpendRequest;

use crate::helpers::TestApp;

fn spend(org: &str, cost: i64) -> SpendRequest {
    SpendRequest {
        org: org.parse().unwrap(),
        project: None,
        cost,
        format: "video_remix".into(),
        container_id: None,
        job_id: None,
        hold_ms: 0,
    }
}

async fn wallet(app: &TestApp, org: &str) -> serde_json::Value {
    let r = app.get(&format!("/v1/organizations/{org}/credits")).key(&app.admin_key).send().await;
    r.assert_status(200).clone()
}

#[tokio::test]
async fn quickstart_calls_3_and_4_fund_and_cap_a_child() {
    let app = TestApp::spawn().await;
    app.grant(&app.partner_org, 20_000).await;
    let org = app.create_child("Acme Coffee").await;
    let r = app
        .post(&format!("/v1/organizations/{org}/credits/allocate"))
        .key(&app.admin_key)
        .idem("alloc-1")
        .json(&json!({ "credits": 5000 }))
        .send()
        .await;
    let b = r.assert_status(201).clone();
    assert!(b["id"].as_str().unwrap().starts_with("txn_"));
    assert_eq!(b["organizationId"], org.as_str());
    assert_eq!((b["allocated"].as_i64(), b["balance"].as_i64(), b["available"].as_i64()), (Some(5000), Some(5000), Some(5000)));
    assert_eq!(b["description"], json!(null));
    assert_eq!(b["metadata"], json!({}));
    assert_eq!(b["created"], "2026-06-01T00:00:00.000Z");
    assert_eq!(b["replayed"], false);

    let r = app
        .patch(&format!("/v1/organizations/{org}/credit-config"))
        .key(&app.admin_key)
        .idem("cfg-1")
        .json(&json!({ "monthlyCreditCap": 5000, "refillThreshold": 1000, "refillAmount": 2000 }))
        .send()
        .await;
    assert_eq!(
        r.assert_status(200),
        &json!({
            "organizationId": org,
            "config": { "monthlyCreditCap": 5000, "refillThreshold": 1000, "refillAmount": 2000, "autoRefillEnabled": true },
            "balance": 5000, "available": 5000
        })
    );
    let summary = app.get(&format!("/v1/organizations/{org}")).key(&app.admin_key).send().await;
    let s = &summary.assert_status(200)["summary"];
    assert_eq!((s["balance"].as_i64(), s["available"].as_i64()), (Some(5000), Some(5000)));
    assert_eq!(s["creditConfig"]["autoRefillEnabled"], true);
    app.assert_ledger().await;
}

#[tokio::test]
async fn allocation_requires_an_idempotency_key_and_replays_with_the_same_transfer() {
    let app = TestApp::spawn().await;
    app.grant(&app.partner_org, 1000).await;
    let org = app.create_child("Acme").await;
    let path = format!("/v1/organizations/{org}/credits/allocate");
    let r = app.post(&path).key(&app.admin_key).json(&json!({ "credits": 100 })).send().await;
    r.assert_error(400, "IDEMPOTENCY_REQUIRED");
    let first = app.post(&path).key(&app.admin_key).idem("a").json(&json!({ "credits": 100 })).send().await;
    let again = app.post(&path).key(&app.admin_key).idem("a").json(&json!({ "credits": 100 })).send().await;
    assert_eq!(again.assert_status(201)["id"], first.assert_status(201)["id"]);
    assert_eq!(again.body["replayed"], true);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(wallet(&app, &org).await["balance"], 100, "moved exactly once");
    let own = app.get("/v1/credits").key(&app.admin_key).send().await;
    assert_eq!(own.assert_status(200)["prepaidBalance"], 900);
    app.assert_ledger().await;
}

#[tokio::test]
async fn allocation_beyond_the_parents_available_is_402_and_into_an_archived_child_409() {
    let app = TestApp::spawn().await;
    app.grant(&app.partner_org, 100).await;
    let org = app.create_child("Acme").await;
    let r = app.allocate(&org, 101).await;
    r.assert_error(402, "BILLING_EXHAUSTED");
    let gone = app.create_child("Gone").await;
    app.delete(&format!("/v1/organizations/{gone}")).key(&app.admin_key).send().await.assert_status(200);
    app.allocate(&gone, 10).await.assert_error(409, "CONFLICT");
    // A suspended child may still be funded.
    app.post(&format!("/v1/organizations/{org}/suspend")).key(&app.admin_key).send().await.assert_status(200);
    app.allocate(&org, 100).await.assert_status(201);
    for bad in [json!({"credits": 0}), json!({"credits": -5}), json!({"credits": 1.5}), json!({"credits": "10"}), json!({})] {
        let r = app.post(&format!("/v1/organizations/{org}/credits/allocate")).key(&app.admin_key).idem("bad").json(&bad).send().await;
        r.assert_error(422, "VALIDATION");
        assert_eq!(r.body["error"]["details"]["field"], "credits", "{bad}");
    }
    app.assert_ledger().await;
}

#[tokio::test]
async fn an_allocation_is_on_both_ledgers_with_its_transfer_id() {
    let app = TestApp::spawn().await;
    app.grant(&app.partner_org, 1000).await;
    let org = app.create_child("Acme").await;
    let r = app
        .post(&format!("/v1/organizations/{org}/credits/allocate"))
        .key(&app.admin_key)
        .idem("x")
        .json(&json!({ "credits": 300, "description": "June top-up", "metadata": { "invoice": "inv_1" } }))
        .send()
        .await;
    let txn = r.assert_status(201)["id"].as_str().unwrap().to_owned();
    assert_eq!(r.body["metadata"], json!({ "invoice": "inv_1" }));
    let parent = app.get("/v1/credits/events?eventType=allocation").key(&app.admin_key).send().await;
    let p = &parent.assert_status(200)["items"][0];
    assert_eq!((p["credits"].as_i64(), p["balanceAfterPrepaid"].as_i64()), (Some(-300), Some(700)));
    assert_eq!(p["metadata"]["transferId"], txn.as_str());
    assert_eq!(p["metadata"]["counterpartyOrgId"], org.as_str());
    assert_eq!(p["metadata"]["invoice"], "inv_1");
    let child = app.get(&format!("/v1/organizations/{org}/credits/events")).key(&app.admin_key).send().await;
    let c = &child.assert_status(200)["items"][0];
    assert_eq!((c["credits"].as_i64(), c["eventType"].as_str()), (Some(300), Some("allocation")));
    assert_eq!(c["metadata"]["transferId"], txn.as_str());
    assert_eq!(c["metadata"]["counterpartyOrgId"], app.partner_org.as_str());
    let events = app.get("/v1/events?type=credits.allocated").key(&app.admin_key).acting(&org).send().await;
    assert_eq!(events.assert_status(200)["items"][0]["data"]["transferId"], txn.as_str());
    app.assert_ledger().await;
}

#[tokio::test]
async fn the_credit_config_is_both_or_neither_for_refill_and_null_clears() {
    let app = TestApp::spawn().await;
    let org = app.create_child("Acme").await;
    let path = format!("/v1/organizations/{org}/credit-config");
    let r = app.patch(&path).key(&app.admin_key).json(&json!({ "refillThreshold": 1000 })).send().await;
    r.assert_error(422, "VALIDATION");
    assert_eq!(r.body["error"]["details"]["code"], "REFILL_REQUIRES_THRESHOLD_AND_AMOUNT");
    app.patch(&path).key(&app.admin_key).json(&json!({ "refillThreshold": 1000, "refillAmount": 500 })).send().await.assert_status(200);
    let r = app.patch(&path).key(&app.admin_key).json(&json!({ "monthlyCreditCap": 900 })).send().await;
    assert_eq!(r.assert_status(200)["config"]["refillAmount"], 500, "omitted is unchanged");
    let r = app.patch(&path).key(&app.admin_key).json(&json!({ "refillAmount": null })).send().await;
    assert_eq!(r.body["error"]["details"]["code"], "REFILL_REQUIRES_THRESHOLD_AND_AMOUNT");
    let r = app
        .patch(&path)
        .key(&app.admin_key)
        .json(&json!({ "refillAmount": null, "refillThreshold": null, "monthlyCreditCap": null }))
        .send()
        .await;
    assert_eq!(
        r.assert_status(200)["config"],
        json!({ "monthlyCreditCap": null, "refillThreshold": null, "refillAmount": null, "autoRefillEnabled": false })
    );
    for bad in [
        json!({"refillAmount": 0, "refillThreshold": 1}),
        json!({"monthlyCreditCap": -1}),
        json!({"monthlyCreditCap": "5"}),
        json!({"cap": 5}),
    ] {
        app.patch(&path).key(&app.admin_key).json(&bad).send().await.assert_error(422, "VALIDATION");
    }
    let got = app.get(&path).key(&app.admin_key).send().await;
    assert_eq!(got.assert_status(200)["config"]["autoRefillEnabled"], false);
    app.assert_ledger().await;
}

#[tokio::test]
async fn the_wallet_shape_and_whoami_balance_follow_the_contract() {
    let app = TestApp::spawn().await;
    app.strata.grant_credits(app.partner_org.parse().unwrap(), 300, GrantKind::Included).await.unwrap();
    app.grant(&app.partner_org, 2240).await;
    let r = app.get("/v1/credits").key(&app.admin_key).send().await;
    assert_eq!(
        r.assert_status(200),
        &json!({
            "organizationId": app.partner_org, "balance": 2540, "available": 2540, "includedRemaining": 300,
            "prepaidBalance": 2240, "reservedCredits": 0, "includedThisPeriod": 300, "usedThisPeriod": 0,
            "currentPeriod": { "start": "2026-06-01T00:00:00.000Z", "end": "2026-07-01T00:00:00.000Z", "usedCredits": 0 },
            "billingStatus": "active",
            "estimatedCreditsPerFormat": { "slideshow_builder": 50, "slideshow_remix": 50, "video_remix": 120, "ugc_remix": 120, "auto": 120 }
        })
    );
    assert_eq!(app.get("/v1/whoami").key(&app.admin_key).send().await.body["creditBalance"], 2540);
    let org = app.create_child("Acme").await;
    let (_, reader) = app.child_key(&org, &["content:read"]).await;
    app.get("/v1/credits").key(&reader).send().await.assert_error(403, "FORBIDDEN_SCOPE");
    app.assert_ledger().await;
}

#[tokio::test]
async fn a_reservation_lowers_available_and_settling_lowers_balance_by_the_actual_cost() {
    let app = TestApp::spawn().await;
    app.grant(&app.partner_org, 10_000).await;
    let org = app.create_child("Acme").await;
    app.strata.grant_credits(org.parse().unwrap(), 100, GrantKind::Included).await.unwrap();
    app.allocate(&org, 1000).await.assert_status(201);
    let r = app.strata.reserve(spend(&org, 240)).await.unwrap();
    let w = wallet(&app, &org).await;
    assert_eq!((w["balance"].as_i64(), w["available"].as_i64(), w["reservedCredits"].as_i64()), (Some(1100), Some(860), Some(240)));
    app.strata.settle(r, 200).await.unwrap();
    let w = wallet(&app, &org).await;
    assert_eq!((w["balance"].as_i64(), w["available"].as_i64(), w["reservedCredits"].as_i64()), (Some(900), Some(900), Some(0)));
    assert_eq!(
        (w["includedRemaining"].as_i64(), w["prepaidBalance"].as_i64(), w["usedThisPeriod"].as_i64()),
        (Some(0), Some(900), Some(200))
    );
    let usage = app.get(&format!("/v1/organizations/{org}/credits/events?eventType=usage")).key(&app.admin_key).send().await;
    let u = &usage.assert_status(200)["items"][0];
    assert_eq!((u["credits"].as_i64(), u["usageAfterPeriod"].as_i64(), u["format"].as_str()), (Some(-200), Some(200), Some("video_remix")));
    // Settling twice changes nothing; voiding releases everything.
    app.strata.settle(r, 200).await.unwrap();
    let v = app.strata.reserve(spend(&org, 500)).await.unwrap();
    app.strata.void(v).await.unwrap();
    assert_eq!(wallet(&app, &org).await["available"], 900);
    app.assert_ledger().await;
}

#[tokio::test]
async fn spending_beyond_available_or_the_cap_is_402_with_a_reason() {
    let app = TestApp::spawn().await;
    app.grant(&app.partner_org, 10_000).await;
    let org = app.create_child("Acme").await;
    app.allocate(&org, 1000).await.assert_status(201);
    let err = app.strata.reserve(spend(&org, 1001)).await.unwrap_err();
    assert_eq!(err.details()["reason"], "insufficient_credits");
    app.patch(&format!("/v1/organizations/{org}/credit-config"))
        .key(&app.admin_key)
        .json(&json!({ "monthlyCreditCap": 500 }))
        .send()
        .await
        .assert_status(200);
    let a = app.strata.reserve(spend(&org, 300)).await.unwrap();
    app.strata.settle(a, 250).await.unwrap();
    app.strata.reserve(spend(&org, 200)).await.unwrap();
    let err = app.strata.reserve(spend(&org, 51)).await.unwrap_err();
    assert_eq!((err.status(), err.details()["reason"].as_str()), (402, Some("monthly_cap")));
    app.strata.reserve(spend(&org, 50)).await.unwrap();
    app.assert_ledger().await;
}

#[tokio::test]
async fn spending_in_a_suspended_org_is_503_and_in_an_archived_one_409() {
    let app = TestApp::spawn().await;
    app.grant(&app.partner_org, 1000).await;
    let org = app.create_child("Acme").await;
    app.allocate(&org, 500).await.assert_status(201);
    app.post(&format!("/v1/organizations/{org}/suspend")).key(&app.admin_key).send().await.assert_status(200);
    let err = app.strata.reserve(spend(&org, 10)).await.unwrap_err();
    assert_eq!((err.status(), err.details()["scope"].as_str()), (503, Some("organization")));
    app.delete(&format!("/v1/organizations/{org}")).key(&app.admin_key).send().await.assert_status(200);
    assert_eq!(app.strata.reserve(spend(&org, 10)).await.unwrap_err().status(), 409);
    app.assert_ledger().await;
}

#[tokio::test]
async fn auto_refill_fires_once_per_crossing_and_not_when_the_parent_is_short() {
    let app = TestApp::spawn().await;
    app.grant(&app.partner_org, 3000).await;
    let org = app.create_child("Acme").await;
    app.allocate(&org, 1200).await.assert_status(201);
    let cfg = format!("/v1/organizations/{org}/credit-config");
    app.patch(&cfg).key(&app.admin_key).json(&json!({ "refillThreshold": 1000, "refillAmount": 1000 })).send().await.assert_status(200);
    // 1200 → 1080: still above the threshold, no refill.
    app.strata.reserve(spend(&org, 120)).await.unwrap();
    assert_eq!(wallet(&app, &org).await["available"], 1080);
    // 1080 → 960 crosses below 1000: one refill of 1000 in the same transaction.
    app.strata.reserve(spend(&org, 120)).await.unwrap();
    let w = wallet(&app, &org).await;
    assert_eq!((w["available"].as_i64(), w["prepaidBalance"].as_i64()), (Some(1960), Some(2200)));
    let refills = app.get(&format!("/v1/organizations/{org}/credits/events?eventType=allocation")).key(&app.admin_key).send().await;
    let items = refills.assert_status(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["metadata"]["trigger"], "auto_refill");
    let ev = app.get("/v1/events?type=credits.refilled").key(&app.admin_key).acting(&org).send().await;
    assert_eq!(ev.assert_status(200)["items"].as_array().unwrap().len(), 1);
    // The parent has 800 left: the next crossing (1000 → 880) finds it short, and the spend
    // stands on the child's own wallet.
    for _ in 0..9 {
        app.strata.reserve(spend(&org, 120)).await.unwrap();
    }
    let w = wallet(&app, &org).await;
    assert_eq!(w["available"], 1960 - 9 * 120);
    assert_eq!(app.get("/v1/credits").key(&app.admin_key).send().await.body["prepaidBalance"], 800);
    let low = app.get("/v1/events?type=credits.low").key(&app.admin_key).acting(&org).send().await;
    assert_eq!(low.assert_status(200)["items"].as_array().unwrap().len(), 2, "one credits.low per crossing");
    app.assert_ledger().await;
}

#[tokio::test]
async fn archive_reclaims_unreserved_credits_and_settling_later_returns_the_rest() {
    let app = TestApp::spawn().await;
    app.grant(&app.partner_org, 5000).await;
    let org = app.create_child("Acme").await;
    app.allocate(&org, 5000).await.assert_status(201);
    let running = app.strata.reserve(spend(&org, 1800)).await.unwrap();
    let r = app.delete(&format!("/v1/organizations/{org}")).key(&app.admin_key).send().await;
    assert_eq!(r.assert_status(200)["reclaimedCredits"], 3200);
    assert_eq!(app.get("/v1/credits").key(&app.admin_key).send().await.body["prepaidBalance"], 3200);
    let w = wallet(&app, &org).await;
    assert_eq!((w["balance"].as_i64(), w["reservedCredits"].as_i64()), (Some(1800), Some(1800)));
    app.strata.settle(running, 1000).await.unwrap();
    let w = wallet(&app, &org).await;
    assert_eq!((w["balance"].as_i64(), w["reservedCredits"].as_i64()), (Some(0), Some(0)));
    assert_eq!(app.get("/v1/credits").key(&app.admin_key).send().await.body["prepaidBalance"], 4000);
    app.assert_ledger().await;
}

#[tokio::test]
async fn an_unsettled_reservation_expires_and_is_released() {
    let app = TestApp::spawn().await;
    app.grant(&app.partner_org, 1000).await;
    app.strata.reserve(spend(&app.partner_org, 600)).await.unwrap();
    app.clock.advance_ms(HOUR_MS - 1);
    assert_eq!(strata_workers::expire_reservations(&app.strata).await, 0);
    app.clock.advance_ms(1);
    assert_eq!(strata_workers::expire_reservations(&app.strata).await, 1);
    assert_eq!(app.get("/v1/credits").key(&app.admin_key).send().await.body["available"], 1000);
    app.assert_ledger().await;
}

/// Background steps run on every node; an item one node's step holds is skipped by the
/// others, not waited for (`Tx::try_take_item`), and taken by whichever step comes next.
#[tokio::test]
async fn an_expiry_another_node_holds_is_skipped_without_waiting_then_taken_next_step() {
    use sqlx::{Connection, Executor};
    let app = TestApp::spawn().await;
    let strata::StoreBackend::Postgres { url } = app.backend.clone() else {
        return crate::helpers::skip("PostgreSQL only (STRATA_TEST_DATABASE_URL is not set)");
    };
    app.grant(&app.partner_org, 1000).await;
    let id = app.strata.reserve(spend(&app.partner_org, 600)).await.unwrap();
    app.clock.advance_ms(HOUR_MS);
    // Another node's step, in the middle of expiring it.
    let mut other = sqlx::PgConnection::connect(&url).await.unwrap();
    other.execute("BEGIN").await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("reservation:{id}"))
        .execute(&mut other)
        .await
        .unwrap();
    // Returns at once (a wait would hang here: the other transaction stays open).
    assert_eq!(strata_workers::expire_reservations(&app.strata).await, 0);
    assert_eq!(app.get("/v1/credits").key(&app.admin_key).send().await.body["available"], 400);
    other.execute("ROLLBACK").await.unwrap();
    assert_eq!(strata_workers::expire_reservations(&app.strata).await, 1);
    assert_eq!(app.get("/v1/credits").key(&app.admin_key).send().await.body["available"], 1000);
    assert_eq!(strata_workers::expire_reservations(&app.strata).await, 0, "released once");
    app.assert_ledger().await;
}

#[tokio::test]
async fn included_credits_expire_at_rollover_and_usage_restarts() {
    let app = TestApp::spawn().await;
    let org = app.partner_org.clone();
    app.strata.grant_credits(org.parse().unwrap(), 500, GrantKind::Included).await.unwrap();
    app.grant(&org, 1000).await;
    let r = app.strata.reserve(spend(&org, 300)).await.unwrap();
    app.strata.settle(r, 300).await.unwrap();
    // Reserve ten minutes before the month ends; the rollover comes before the reservation's
    // one-hour timeout.
    app.clock.set(Timestamp::parse_query("2026-06-30T23:50:00Z", "t").unwrap());
    let held = app.strata.reserve(spend(&org, 100)).await.unwrap();
    app.clock.advance_ms(20 * MINUTE_MS);
    assert_eq!(strata_workers::roll_over_periods(&app.strata).await, 1);
    let w = app.get("/v1/credits").key(&app.admin_key).send().await;
    let b = w.assert_status(200);
    // The 200 included credits left expire (the prepaid balance covers the reservation).
    assert_eq!(
        (b["includedRemaining"].as_i64(), b["usedThisPeriod"].as_i64(), b["prepaidBalance"].as_i64()),
        (Some(0), Some(0), Some(1000))
    );
    assert_eq!(b["currentPeriod"]["start"], "2026-07-01T00:00:00.000Z");
    let adj = app.get("/v1/credits/events?eventType=adjustment").key(&app.admin_key).send().await;
    assert_eq!(adj.assert_status(200)["items"][0]["credits"], -200);
    app.strata.settle(held, 100).await.unwrap();
    let report = app.assert_ledger().await;
    assert_eq!((report.created, report.destroyed, report.held), (1500, 600, 900));
}

#[tokio::test]
async fn rollover_keeps_the_included_credits_a_reservation_still_needs() {
    let app = TestApp::spawn().await;
    let org = app.partner_org.clone();
    app.strata.grant_credits(org.parse().unwrap(), 500, GrantKind::Included).await.unwrap();
    app.clock.set(Timestamp::parse_query("2026-06-30T23:50:00Z", "t").unwrap());
    let held = app.strata.reserve(spend(&org, 120)).await.unwrap();
    app.clock.advance_ms(20 * MINUTE_MS);
    let b = app.get("/v1/credits").key(&app.admin_key).send().await.body;
    assert_eq!((b["includedRemaining"].as_i64(), b["available"].as_i64()), (Some(120), Some(0)), "reads show the new period at once");
    strata_workers::roll_over_periods(&app.strata).await;
    app.strata.settle(held, 120).await.unwrap();
    let b = app.get("/v1/credits").key(&app.admin_key).send().await.body;
    assert_eq!((b["balance"].as_i64(), b["usedThisPeriod"].as_i64()), (Some(0), Some(120)));
    app.assert_ledger().await;
}

#[tokio::test]
async fn credit_event_filters_work_and_are_validated() {
    let app = TestApp::spawn().await;
    app.grant(&app.partner_org, 100).await;
    app.clock.advance_ms(HOUR_MS);
    app.grant(&app.partner_org, 200).await;
    let r = app.get("/v1/credits/events?eventType=grant&since=2026-06-01T00:30:00Z").key(&app.admin_key).send().await;
    let items = r.assert_status(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["credits"], 200);
    assert!(items[0]["eventId"].as_str().unwrap().starts_with("cev_"));
    let r = app.get("/v1/credits/events?until=2026-06-01T00:30:00Z").key(&app.admin_key).send().await;
    assert_eq!(r.assert_status(200)["items"].as_array().unwrap().len(), 1);
    app.get("/v1/credits/events?eventType=bonus").key(&app.admin_key).send().await.assert_error(422, "VALIDATION");
    app.get("/v1/credits/events?limit=101").key(&app.admin_key).send().await.assert_error(422, "VALIDATION");
    app.assert_ledger().await;
}

/// Archive returns each bucket to the same bucket of the parent (CONTRACT §2): included credits
/// stay included (they expire at the parent's period end), prepaid stays prepaid, and
/// `reclaimedCredits` counts both.
#[tokio::test]
async fn archive_returns_included_to_included_and_prepaid_to_prepaid() {
    let app = TestApp::spawn().await;
    app.grant(&app.partner_org, 1000).await;
    let org = app.create_child("Acme").await;
    app.allocate(&org, 700).await.assert_status(201);
    app.strata.grant_credits(org.parse().unwrap(), 400, GrantKind::Included).await.unwrap();
    let r = app.delete(&format!("/v1/organizations/{org}")).key(&app.admin_key).send().await;
    assert_eq!(r.assert_status(200)["reclaimedCredits"], 1100);
    let parent = app.get("/v1/credits").key(&app.admin_key).send().await;
    assert_eq!(
        (parent.body["prepaidBalance"].as_i64(), parent.body["includedRemaining"].as_i64()),
        (Some(1000), Some(400)),
        "{}",
        parent.body
    );
    app.assert_ledger().await;
    // The reclaimed included credits expire with the parent's period, as its own would.
    app.clock.advance_ms(31 * 24 * HOUR_MS);
    strata_workers::roll_over_periods(&app.strata).await;
    let parent = app.get("/v1/credits").key(&app.admin_key).send().await;
    assert_eq!((parent.body["prepaidBalance"].as_i64(), parent.body["includedRemaining"].as_i64()), (Some(1000), Some(0)));
    app.assert_ledger().await;
}

/// Grants `org` 500 included credits, reserves 120 ten minutes before June ends and rolls the
/// wallet into July: 380 expire, 120 are carried over for the reservation it returns.
async fn reserve_across_rollover(app: &TestApp, org: &str) -> strata_core::id::TxnId {
    app.strata.grant_credits(org.parse().unwrap(), 500, GrantKind::Included).await.unwrap();
    app.clock.set(Timestamp::parse_query("2026-06-30T23:50:00Z", "t").unwrap());
    let held = app.strata.reserve(spend(org, 120)).await.unwrap();
    app.clock.advance_ms(20 * MINUTE_MS);
    strata_workers::roll_over_periods(&app.strata).await;
    held
}

/// Included credits kept through a rollover for an in-flight reservation expire as soon as the
/// reservation no longer needs them: voided, or settled below its hold. They never become
/// spendable, in between or after.
#[tokio::test]
async fn carried_over_included_credits_expire_when_their_reservation_releases_them() {
    for (actual, expect_used) in [(None, 0), (Some(30), 30)] {
        let app = TestApp::spawn().await;
        let org = app.partner_org.clone();
        let held = reserve_across_rollover(&app, &org).await;
        // New money arrives in the new period; only it is spendable.
        app.grant(&org, 50).await;
        let b = app.get("/v1/credits").key(&app.admin_key).send().await.body;
        assert_eq!((b["includedRemaining"].as_i64(), b["available"].as_i64()), (Some(120), Some(50)), "{b}");
        match actual {
            None => app.strata.void(held).await.unwrap(),
            Some(a) => app.strata.settle(held, a).await.unwrap(),
        }
        let b = app.get("/v1/credits").key(&app.admin_key).send().await.body;
        assert_eq!(
            (b["includedRemaining"].as_i64(), b["available"].as_i64(), b["usedThisPeriod"].as_i64()),
            (Some(0), Some(50), Some(expect_used)),
            "the carried-over remainder expired instead of becoming spendable: {b}"
        );
        let adj = app.get("/v1/credits/events?eventType=adjustment").key(&app.admin_key).send().await;
        assert_eq!(adj.assert_status(200)["items"][0]["credits"], -(120 - expect_used), "{}", adj.body);
        app.assert_ledger().await;
    }
}

/// Every amount states its bounds when it is out of them, in the message and in `details`, and
/// the bound is one constant (`Credits::MAX`) for allocations, the credit config and grants.
#[tokio::test]
async fn out_of_range_amounts_state_their_bounds() {
    let app = TestApp::spawn().await;
    let org = app.create_child("Acme").await;
    for bad in [json!(9_223_372_036_854_775_807_i64), json!(0), json!(-5), json!(1.5), json!(1e30), json!("100"), json!(null)] {
        let r = app
            .post(&format!("/v1/organizations/{org}/credits/allocate"))
            .key(&app.admin_key)
            .idem(&format!("bad-{bad}"))
            .json(&json!({ "credits": bad }))
            .send()
            .await;
        r.assert_error(422, "VALIDATION");
        let e = &r.body["error"];
        assert_eq!(e["message"], "credits: must be an integer from 1 to 1000000000000", "{bad}: {e}");
        assert_eq!(
            (e["details"]["field"].as_str(), e["details"]["min"].as_i64(), e["details"]["max"].as_i64()),
            (Some("credits"), Some(1), Some(1_000_000_000_000))
        );
    }
    let r = app
        .patch(&format!("/v1/organizations/{org}/credit-config"))
        .key(&app.admin_key)
        .json(&json!({ "monthlyCreditCap": 1_000_000_000_001_i64 }))
        .send()
        .await;
    r.assert_error(422, "VALIDATION");
    assert_eq!(
        (r.body["error"]["details"]["min"].as_i64(), r.body["error"]["details"]["max"].as_i64()),
        (Some(0), Some(1_000_000_000_000))
    );
    let err = app.strata.grant_credits(app.partner_org.parse().unwrap(), 0, GrantKind::Purchase).await.unwrap_err();
    assert_eq!(err.details()["max"], 1_000_000_000_000_i64);
}

/// Carried-over included credits back only the reservations made before the rollover: a
/// reservation of the new period never draws on them, and voiding the old one expires them even
/// while new reservations are open.
#[tokio::test]
async fn carried_over_credits_never_back_a_reservation_of_the_new_period() {
    let app = TestApp::spawn().await;
    let org = app.partner_org.clone();
    let old = reserve_across_rollover(&app, &org).await;
    app.grant(&org, 1000).await;
    let new = app.strata.reserve(spend(&org, 1000)).await.unwrap();
    app.strata.void(old).await.unwrap();
    let b = app.get("/v1/credits").key(&app.admin_key).send().await.body;
    assert_eq!((b["includedRemaining"].as_i64(), b["available"].as_i64()), (Some(0), Some(0)), "{b}");
    app.strata.settle(new, 1000).await.unwrap();
    let b = app.get("/v1/credits").key(&app.admin_key).send().await.body;
    assert_eq!((b["balance"].as_i64(), b["usedThisPeriod"].as_i64()), (Some(0), Some(1000)), "{b}");
    app.assert_ledger().await;
}
