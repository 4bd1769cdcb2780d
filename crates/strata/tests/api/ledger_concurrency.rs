//! Many clients moving credits at once: allocations over HTTP (with one Idempotency-Key retried
//! concurrently) and spends through the service, with auto-refill on. Nothing may be lost,
//! duplicated, overdrawn or spent past the cap.

use std::sync::Arc;

use serde_json::json;
use strata_core::service::SpendRequest;

use crate::helpers::TestApp;

const CAP: i64 = 3_000;

#[tokio::test]
async fn sixty_four_concurrent_clients_keep_the_ledger_exact() {
    let app = Arc::new(TestApp::spawn().await);
    app.grant(&app.partner_org, 1_000_000).await;
    let mut children = Vec::new();
    for i in 0..3 {
        let org = app.create_child(&format!("child-{i}")).await;
        app.allocate(&org, 1_000).await.assert_status(201);
        let cfg = json!({ "monthlyCreditCap": CAP, "refillThreshold": 500, "refillAmount": 700 });
        app.patch(&format!("/v1/organizations/{org}/credit-config")).key(&app.admin_key).json(&cfg).send().await.assert_status(200);
        children.push(org);
    }
    let dup_ids = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..64usize {
        let app = app.clone();
        let child = children[i % 3].clone();
        let first = children[0].clone();
        let dup_ids = dup_ids.clone();
        tasks.push(tokio::spawn(async move {
            if i < 8 {
                // The same allocation, retried by eight clients at once.
                let r = app
                    .post(&format!("/v1/organizations/{first}/credits/allocate"))
                    .key(&app.admin_key)
                    .idem("the-one-retried-allocation")
                    .json(&json!({ "credits": 250 }))
                    .send()
                    .await;
                match r.status {
                    201 => dup_ids.lock().unwrap().push(r.body["id"].as_str().unwrap().to_owned()),
                    409 => assert_eq!(r.body["error"]["details"]["reason"], "in_progress"),
                    s => panic!("unexpected {s}: {}", r.body),
                }
            }
            for round in 0..4usize {
                match (i + round) % 4 {
                    0 | 1 => {
                        let r = app.allocate(&child, 40).await;
                        assert_eq!(r.status, 201, "{}", r.body);
                    }
                    _ => {
                        let req = SpendRequest {
                            org: child.parse().unwrap(),
                            project: None,
                            cost: 120,
                            format: "video_remix".into(),
                            container_id: None,
                            job_id: None,
                            hold_ms: 0,
                        };
                        match app.strata.reserve(req).await {
                            Ok(id) if round % 2 == 0 => app.strata.settle(id, 100).await.unwrap(),
                            Ok(id) => app.strata.void(id).await.unwrap(),
                            Err(e) => assert_eq!(e.status(), 402, "{e}"),
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let ids = dup_ids.lock().unwrap().clone();
    assert!(!ids.is_empty());
    assert!(ids.iter().all(|id| id == &ids[0]), "every success of the retried key names one transfer");
    let report = app.assert_ledger().await;
    assert_eq!(report.created, 1_000_000);
    let mut moved_once = 0;
    for child in &children {
        let w = app.get(&format!("/v1/organizations/{child}/credits")).key(&app.admin_key).send().await.body;
        assert!(w["available"].as_i64().unwrap() >= 0);
        assert!(w["usedThisPeriod"].as_i64().unwrap() + w["reservedCredits"].as_i64().unwrap() <= CAP, "cap held: {w}");
        let events =
            app.get(&format!("/v1/organizations/{child}/credits/events?limit=100&eventType=allocation")).key(&app.admin_key).send().await;
        moved_once += events.body["items"].as_array().unwrap().iter().filter(|e| e["metadata"]["transferId"] == ids[0].as_str()).count();
    }
    assert_eq!(moved_once, 1, "the retried allocation moved credits exactly once");
}

/// Allocations racing for the last of a parent's credits: the parent's debit is guarded where
/// it is posted, so exactly what was funded moves and every other allocation is 402, never an
/// overdraft or a 500.
#[tokio::test]
async fn allocations_racing_for_the_last_credits_never_overdraw_the_parent() {
    let app = Arc::new(TestApp::spawn().await);
    app.grant(&app.partner_org, 1_000).await;
    let mut children = Vec::new();
    for i in 0..4 {
        children.push(app.create_child(&format!("racer-{i}")).await);
    }
    let mut tasks = Vec::new();
    for i in 0..32usize {
        let app = app.clone();
        let child = children[i % 4].clone();
        tasks.push(tokio::spawn(async move { app.allocate(&child, 100).await }));
    }
    let (mut funded, mut refused) = (0, 0);
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            201 => funded += 1,
            402 => {
                assert_eq!(r.body["error"]["code"], "BILLING_EXHAUSTED", "{}", r.body);
                refused += 1;
            }
            s => panic!("unexpected {s}: {}", r.body),
        }
    }
    assert_eq!((funded, refused), (10, 22));
    let parent = app.get("/v1/credits").key(&app.admin_key).send().await;
    assert_eq!(parent.body["balance"], 0);
    app.assert_ledger().await;
}

/// Many concurrent allocations into one child of one parent, more than the parent can fund: on
/// PostgreSQL they commit in groups (several per database transaction), on SQLite through its
/// one writer. Exactly the funded ones land; each refused one is a stored 402; every answer,
/// success or refusal, is replayed as it was first given under its key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grouped_allocations_of_one_parent_land_exactly_the_funded_ones_and_replay_as_answered() {
    let app = Arc::new(TestApp::spawn().await);
    app.grant(&app.partner_org, 1_000).await;
    let child = app.create_child("the-one-child").await;
    let mut tasks = Vec::new();
    for i in 0..48usize {
        let app = app.clone();
        let child = child.clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("grouped-{i}");
            let path = format!("/v1/organizations/{child}/credits/allocate");
            let r = app.post(&path).key(&app.admin_key).idem(&key).json(&json!({ "credits": 30 })).send().await;
            (key, r)
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let funded: Vec<_> = answers.iter().filter(|(_, r)| r.status == 201).collect();
    let refused = answers.iter().filter(|(_, r)| r.status == 402).count();
    assert!(answers.iter().all(|(_, r)| r.status == 201 || r.status == 402), "only 201 or 402");
    // 1,000 credits fund 33 allocations of 30; the other 15 are refused.
    assert_eq!((funded.len(), refused), (33, 15));
    let child_w = app.get(&format!("/v1/organizations/{child}/credits")).key(&app.admin_key).send().await;
    assert_eq!(child_w.assert_status(200)["balance"], 990);
    let parent = app.get("/v1/credits").key(&app.admin_key).send().await;
    assert_eq!(parent.assert_status(200)["prepaidBalance"], 10);
    // Every funded allocation is one transfer on the child's ledger.
    let events =
        app.get(&format!("/v1/organizations/{child}/credits/events?limit=100&eventType=allocation")).key(&app.admin_key).send().await;
    let mut moved: Vec<String> = events.assert_status(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["metadata"]["transferId"].as_str().unwrap().to_owned())
        .collect();
    let mut ids: Vec<String> = funded.iter().map(|(_, r)| r.body["id"].as_str().unwrap().to_owned()).collect();
    moved.sort();
    ids.sort();
    assert_eq!(moved, ids, "the ledger holds exactly the answered transfers");
    // Each key's record: a retry answers what the first call answered.
    for (key, first) in &answers {
        let path = format!("/v1/organizations/{child}/credits/allocate");
        let again = app.post(&path).key(&app.admin_key).idem(key).json(&json!({ "credits": 30 })).send().await;
        assert_eq!(again.status, first.status, "{key}");
        assert_eq!(again.header("idempotent-replayed"), Some("true"), "{key}");
        if first.status == 201 {
            assert_eq!(again.body["id"], first.body["id"]);
            assert_eq!(again.body["replayed"], true);
        } else {
            assert_eq!(again.body["error"]["code"], "BILLING_EXHAUSTED");
        }
    }
    let report = app.assert_ledger().await;
    assert_eq!(report.created, 1_000);
}

/// Allocations run grouped (one transaction for a batch of them, see `Store::write_grouped`);
/// a batch never waits on another transaction for more than 20 ms, so one that finds the child
/// held (here, as by an archive in progress) gives up and runs alone, which waits for the row
/// as any transaction does and lands once it is free: never a 503, never a deadlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grouped_allocation_that_finds_its_child_held_runs_alone_and_lands() {
    use sqlx::{Connection, Executor};
    let app = TestApp::spawn().await;
    let strata::StoreBackend::Postgres { url } = app.backend.clone() else {
        return crate::helpers::skip("PostgreSQL only (STRATA_TEST_DATABASE_URL is not set)");
    };
    app.grant(&app.partner_org, 1_000).await;
    let child = app.create_child("Acme").await;
    let mut holder = sqlx::PgConnection::connect(&url).await.unwrap();
    holder.execute("BEGIN").await.unwrap();
    let bare = child.trim_start_matches("org_").to_owned();
    sqlx::query("SELECT id FROM organizations WHERE id = $1 FOR UPDATE").bind(&bare).fetch_one(&mut holder).await.unwrap();

    let call =
        app.post(&format!("/v1/organizations/{child}/credits/allocate")).key(&app.admin_key).idem("held-1").json(&json!({ "credits": 40 }));
    let release = async {
        // A session waiting on the row for 200 ms is no grouped attempt (those give up after
        // 20 ms): it is the allocation's attempt of its own.
        crate::helpers::until_lock_waiters_for(&url, 1, std::time::Duration::from_millis(200)).await;
        holder.execute("COMMIT").await.unwrap();
    };
    let (r, ()) = tokio::join!(call.send(), release);
    assert_eq!(r.assert_status(201)["balance"], 40, "{}", r.body);
    app.assert_ledger().await;
}
