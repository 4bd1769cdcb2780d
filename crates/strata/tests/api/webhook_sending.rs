//! The webhook sender under load and across a crash: attempts run concurrently with a bound per
//! endpoint, so an endpoint that never answers holds only its own slots; a delivery claimed by a
//! process that died is sent after the restart with its original event id.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use strata_core::service::SendSlots;
use strata_workers::Cadence;

use crate::helpers::TestApp;
use crate::webhooks::{Receiver, endpoint, pump};

/// An endpoint that accepts connections and never answers; counts the connections.
async fn blackhole() -> (Arc<AtomicUsize>, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}/hook", listener.local_addr().unwrap().port());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            open.push(socket);
        }
    });
    (accepted, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_never_answers_does_not_delay_another_endpoints_deliveries() {
    let app = TestApp::spawn().await;
    let (accepted, url_a) = blackhole().await;
    let (rx_b, url_b) = Receiver::start(vec![]).await;
    let (a, _) = endpoint(&app, &app.admin_key, None, json!({ "url": url_a, "events": ["organization.created"] })).await;
    let (b, _) = endpoint(&app, &app.admin_key, None, json!({ "url": url_b, "events": ["organization.created"] })).await;
    // 200 deliveries for each, A's first (they are due first).
    for ep in [&a, &b] {
        let pings = (0..200).map(|_| app.post(&format!("/v1/webhook-endpoints/{ep}/test")).key(&app.admin_key).send());
        for r in futures::future::join_all(pings).await {
            r.assert_status(200);
        }
    }
    let started = Instant::now();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let cadence = Cadence { wake_on_commit: true, webhooks: Duration::from_millis(50), ..Cadence::default() };
    let loops = strata_workers::spawn_webhooks(&app.strata, &cadence, stopped);

    let arrived = rx_b.wait_for(200, Duration::from_secs(9)).await;
    let elapsed = started.elapsed();
    assert_eq!(arrived, 200, "every B delivery arrives");
    assert!(elapsed < Duration::from_secs(10), "before A's first attempt could time out (took {elapsed:?})");
    let per_endpoint = app.strata.config.webhook_endpoint_concurrency;
    assert!(accepted.load(Ordering::SeqCst) <= per_endpoint, "A holds at most its own {per_endpoint} slots");
    // A's attempts are all still in flight: none has an outcome yet.
    let r = app.get(&format!("/v1/webhook-endpoints/{a}/deliveries?limit=100")).key(&app.admin_key).send().await;
    for d in r.assert_status(200)["items"].as_array().unwrap() {
        assert!(d["lastErrorMessage"].is_null() && d["status"] != "failed", "{d}");
    }
    let r = app.get(&format!("/v1/webhook-endpoints/{a}/deliveries?status=delivering&limit=100")).key(&app.admin_key).send().await;
    let held: HashSet<String> =
        r.assert_status(200)["items"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap().to_owned()).collect();
    assert!(!held.is_empty());
    // Shutting down does not wait for A's timeouts.
    let _ = stop.send(true);
    let shutdown = Instant::now();
    for l in loops {
        tokio::time::timeout(Duration::from_secs(8), l).await.expect("the loops stop within the grace period").unwrap();
    }
    assert!(shutdown.elapsed() < Duration::from_secs(5));
    // The attempts it cut are released: the next sender takes them at once (the clock has not
    // moved), not when their leases would have run out.
    let none = Default::default();
    let next = app.strata.claim_deliveries(SendSlots { free: 1_000, per_endpoint: usize::MAX, in_flight: &none }).await.unwrap();
    let retaken: HashSet<String> = next.iter().map(|p| p.delivery.id.to_string()).collect();
    assert!(held.is_subset(&retaken), "cut attempts still leased: {:?}", held.difference(&retaken).collect::<Vec<_>>());
}

#[tokio::test]
async fn after_a_crash_between_commit_and_delivery_every_event_is_delivered_with_its_original_id() {
    let mut app = TestApp::spawn().await;
    app.grant(&app.partner_org, 10_000).await;
    let child = app.create_child("Acme").await;
    let (rx, url) = Receiver::start(vec![]).await;
    endpoint(&app, &app.admin_key, None, json!({ "url": url, "events": ["credits.allocated"], "scope": "all_children" })).await;
    for _ in 0..3 {
        app.allocate(&child, 10).await.assert_status(201);
    }
    // The process dispatches and claims (the attempts are leased), then dies before sending; one
    // more event commits but is never dispatched.
    strata_workers::dispatch_events(&app.strata).await;
    let none = Default::default();
    let claimed = app.strata.claim_deliveries(SendSlots { free: 10, per_endpoint: 10, in_flight: &none }).await.unwrap();
    assert_eq!(claimed.len(), 3);
    drop(claimed);
    app.allocate(&child, 10).await.assert_status(201);
    app.restart().await;

    assert_eq!(pump(&app).await, 1, "the undispatched event goes out at once; the leased ones wait for their lease");
    app.clock.advance_ms(app.strata.config.webhook_timeout_ms + 5_000);
    assert_eq!(pump(&app).await, 3, "seconds after the restart, not a minute");
    let r = app.get("/v1/events?type=credits.allocated").key(&app.admin_key).acting(&child).send().await;
    let committed: HashSet<String> =
        r.assert_status(200)["items"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    let delivered: HashSet<String> = rx
        .seen()
        .iter()
        .map(|(h, body)| {
            let v: Value = serde_json::from_str(body).unwrap();
            assert_eq!(h["x-layers-event-id"].to_str().unwrap(), v["id"].as_str().unwrap());
            v["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(committed.len(), 4);
    assert_eq!(delivered, committed, "every committed event, with its original id");
}

/// Another process's commit reaches this one: a commit that writes events on one node is
/// announced through PostgreSQL (`pg_notify` by the publisher, after the commit) and heard on
/// every other node's `LISTEN` connection.
#[tokio::test]
async fn another_nodes_commit_wakes_this_node() {
    let app = TestApp::spawn().await;
    if app.strata.store.backend() != "postgres" {
        return; // One SQLite database has one process.
    }
    let other = strata_store::SqlStore::connect(&app.backend).await.unwrap();
    let mut heard = other.notifications().subscribe(strata_store::notify::EVENTS);
    // The other node's LISTEN connection starts in the background; commit until it hears one.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 0;
    loop {
        app.create_child(&format!("Announced {n}")).await;
        n += 1;
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(500), heard.recv()).await {
            break;
        }
        assert!(Instant::now() < deadline, "no commit was announced to the other node");
    }
}

/// Found by `strata drill chaos` on PostgreSQL: recording a batch of attempts locked its
/// deliveries in the batch's order while an archive abandoned the child's deliveries in table
/// order; the two deadlocked and the archive answered 500. Both now lock deliveries in id order.
/// The test holds the first delivery, lets the archive and a recording (its batch in reverse
/// order) queue behind it, then lets go: both must finish.
#[tokio::test]
async fn archiving_a_child_while_its_deliveries_are_recorded_does_not_deadlock() {
    use sqlx::{Connection, Executor};
    let app = TestApp::spawn().await;
    let strata::StoreBackend::Postgres { url } = app.backend.clone() else {
        return crate::helpers::skip("PostgreSQL only (STRATA_TEST_DATABASE_URL is not set)");
    };
    app.grant(&app.partner_org, 10_000).await;
    let child = app.create_child("Acme").await;
    let (_, hook) = Receiver::start(vec![]).await;
    endpoint(&app, &app.admin_key, None, json!({ "url": hook, "events": ["credits.allocated"], "scope": "all_children" })).await;
    for _ in 0..2 {
        app.allocate(&child, 10).await.assert_status(201);
    }
    strata_workers::dispatch_events(&app.strata).await;
    let none = Default::default();
    let claimed = app.strata.claim_deliveries(SendSlots { free: 10, per_endpoint: 10, in_flight: &none }).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let mut results = Vec::new();
    for p in claimed {
        results.push(app.strata.attempt(&strata_workers::HttpSender::new(false, true), p).await);
    }
    results.sort_by_key(|r| std::cmp::Reverse(r.delivery.id));
    let first = results[1].delivery.id.to_string();

    let mut holder = sqlx::PgConnection::connect(&url).await.unwrap();
    holder.execute("BEGIN").await.unwrap();
    let held = sqlx::query("SELECT id FROM webhook_deliveries WHERE id = $1 FOR UPDATE").bind(&first).fetch_all(&mut holder).await.unwrap();
    assert_eq!(held.len(), 1);
    let archive = reqwest::Client::new().delete(format!("{}/v1/organizations/{child}", app.base)).bearer_auth(&app.admin_key);
    let archive = tokio::spawn(async move { archive.send().await.map(|r| r.status().as_u16()) });
    crate::helpers::until_lock_waiters(&url, 1).await;
    let strata = app.strata.clone();
    let record = tokio::spawn(async move { strata.record_attempts(&results).await });
    crate::helpers::until_lock_waiters(&url, 2).await;
    holder.execute("COMMIT").await.unwrap();
    assert_eq!(archive.await.unwrap().unwrap(), 200, "the archive went through");
    assert!(record.await.unwrap().is_ok(), "the recording went through");
}

/// The recorder paces the sender: while outcomes cannot be written (here another session holds
/// the attempts table, as a saturated database would delay them), the sender claims no more
/// than its bound of unrecorded claims; once recording resumes, every delivery arrives once.
/// Before the bound, the long PostgreSQL chaos drill left 50,286 deliveries in `delivering`
/// with their outcomes queued, re-sent as their leases ran out (30,831 duplicates).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_recorder_holds_the_sender_to_its_bound_of_unrecorded_claims() {
    use sqlx::{Connection, Executor};
    let app = TestApp::spawn().await;
    let strata::StoreBackend::Postgres { url } = app.backend.clone() else {
        return crate::helpers::skip("PostgreSQL only (STRATA_TEST_DATABASE_URL is not set)");
    };
    let (rx, hook) = Receiver::start(vec![]).await;
    let (ep, _) = endpoint(&app, &app.admin_key, None, json!({ "url": hook, "events": ["organization.created"] })).await;
    for _ in 0..30 {
        app.post(&format!("/v1/webhook-endpoints/{ep}/test")).key(&app.admin_key).send().await.assert_status(200);
    }
    let mut holder = sqlx::PgConnection::connect(&url).await.unwrap();
    holder.execute("BEGIN").await.unwrap();
    holder.execute("LOCK TABLE webhook_delivery_attempts IN EXCLUSIVE MODE").await.unwrap();

    let bound = 5;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let bounds = strata_workers::SendBounds { concurrency: 8, per_endpoint: 8, unrecorded: bound };
    let sender = Arc::new(strata_workers::HttpSender::new(false, true));
    let workers = app.strata.for_workers();
    let loop_ = strata_workers::spawn_sender(workers, sender, bounds, Duration::from_millis(10), None, stopped);
    assert_eq!(rx.wait_for(bound, Duration::from_secs(10)).await, bound, "the first claims are sent");
    crate::helpers::until_lock_waiters(&url, 1).await;
    // The recorder is stuck behind the lock. A sender without the bound claims the rest within
    // milliseconds (it polls every 10 ms, the receiver answers at once); give it a second.
    let more = rx.wait_for(bound + 1, Duration::from_secs(1)).await;
    assert_eq!(more, bound, "no claim beyond the bound while its outcomes are unwritten");

    holder.execute("COMMIT").await.unwrap();
    assert_eq!(rx.wait_for(30, Duration::from_secs(20)).await, 30, "recording resumed, every delivery arrives");
    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(8), loop_).await.expect("the sender stops").unwrap();
    let ids: Vec<String> =
        rx.seen().iter().map(|(h, _)| h.get("webhook-id").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()).collect();
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 30, "each delivery sent once: {ids:?}");
}
