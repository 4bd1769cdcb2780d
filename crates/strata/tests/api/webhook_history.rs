//! Webhook delivery history (CONTRACT §6): attempts listed per delivery, replays written to the
//! event log, recovering an endpoint after an outage, and retention.

use std::time::Duration;

use serde_json::{Value, json};
use strata_workers::HttpSender;

use crate::helpers::TestApp;
use crate::webhooks::{Receiver, endpoint, pump};

async fn delivery(app: &TestApp, key: &str, id: &str) -> Value {
    app.get(&format!("/v1/webhook-deliveries/{id}")).key(key).send().await.assert_status(200).clone()
}

#[tokio::test]
async fn attempts_are_listed_newest_first_with_status_and_duration_after_a_500_a_timeout_and_a_200() {
    let app = TestApp::spawn().await;
    let (_, url) = Receiver::start(vec![500, 0, 200]).await;
    let (id, _) = endpoint(&app, &app.admin_key, None, json!({ "url": url, "events": ["organization.created"] })).await;
    let r = app.post(&format!("/v1/webhook-endpoints/{id}/test")).key(&app.admin_key).send().await;
    let dlv = r.assert_status(200)["deliveryId"].as_str().unwrap().to_owned();
    // A short request timeout, so the second attempt times out at once.
    let sender = HttpSender::with_timeout(false, true, Duration::from_millis(300));
    for wait in [1_000, 2_000, 0] {
        strata_workers::send_deliveries(&app.strata, &sender).await;
        app.clock.advance_ms(wait);
    }
    let d = delivery(&app, &app.admin_key, &dlv).await;
    assert_eq!(
        (d["id"].as_str(), d["status"].as_str(), d["endpointId"].as_str()),
        (Some(dlv.as_str()), Some("delivered"), Some(id.as_str()))
    );
    let attempts = d["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3, "{d}");
    let statuses: Vec<Value> = attempts.iter().map(|a| a["responseStatus"].clone()).collect();
    assert_eq!(statuses, vec![json!(200), Value::Null, json!(500)], "newest first");
    assert_eq!(attempts[0]["errorMessage"], Value::Null);
    assert_eq!(attempts[0]["responseBodyExcerpt"], "answered 200");
    assert_eq!(attempts[1]["errorMessage"], "timed out");
    assert!(attempts[1]["durationMs"].as_i64().unwrap() >= 300, "the timeout took the whole timeout: {}", attempts[1]);
    assert_eq!(attempts[2]["errorMessage"], "the endpoint answered 500");
    assert_eq!(attempts[2]["responseBodyExcerpt"], "answered 500");
    assert_eq!(attempts[2]["attemptedAt"], "2026-06-01T00:00:00.000Z");
    assert_eq!(attempts[0]["attemptedAt"], "2026-06-01T00:00:03.000Z", "attempts are stamped on the strata clock");
    for a in attempts {
        assert!(a["durationMs"].as_i64().unwrap() >= 0);
    }
    // Another tenant's delivery is not found; so is an unknown one; a bad id is 422.
    let (_, other) = app.other_partner("Other").await;
    app.get(&format!("/v1/webhook-deliveries/{dlv}")).key(&other).send().await.assert_error(404, "NOT_FOUND");
    let unknown = format!("dlv_{}", ulid::Ulid::new());
    app.get(&format!("/v1/webhook-deliveries/{unknown}")).key(&app.admin_key).send().await.assert_error(404, "NOT_FOUND");
    app.get("/v1/webhook-deliveries/nope").key(&app.admin_key).send().await.assert_error(422, "VALIDATION");
}

#[tokio::test]
async fn a_replayed_delivery_is_an_event_in_the_log_delivered_once_to_its_endpoint_only() {
    let app = TestApp::spawn().await;
    app.grant(&app.partner_org, 10_000).await;
    let child = app.create_child("Acme").await;
    let (rx_a, url_a) = Receiver::start(vec![]).await;
    let (rx_b, url_b) = Receiver::start(vec![]).await;
    let (a, _) =
        endpoint(&app, &app.admin_key, None, json!({ "url": url_a, "events": ["credits.allocated"], "scope": "all_children" })).await;
    endpoint(&app, &app.admin_key, None, json!({ "url": url_b, "events": ["credits.allocated"], "scope": "all_children" })).await;
    app.allocate(&child, 100).await.assert_status(201);
    pump(&app).await;
    let list = app.get(&format!("/v1/webhook-endpoints/{a}/deliveries")).key(&app.admin_key).send().await;
    let original = list.assert_status(200)["items"][0].clone();
    let r = app.post(&format!("/v1/webhook-deliveries/{}/replay", original["id"].as_str().unwrap())).key(&app.admin_key).send().await;
    let replay_id = r.assert_status(200)["replayDeliveryId"].as_str().unwrap().to_owned();
    assert_eq!(strata_workers::dispatch_events(&app.strata).await, 0, "the replay's event is never fanned out");
    pump(&app).await;
    assert_eq!((rx_a.seen().len(), rx_b.seen().len()), (2, 1), "one delivery: the replay, to its endpoint");
    let replay = delivery(&app, &app.admin_key, &replay_id).await;
    let event_id = replay["eventId"].as_str().unwrap();
    assert_ne!(event_id, original["eventId"].as_str().unwrap());
    // The event belongs to the child's log, like the original.
    let ev = app.get(&format!("/v1/events/{event_id}")).key(&app.admin_key).acting(&child).send().await;
    let ev = ev.assert_status(200);
    let orig_ev = app.get(&format!("/v1/events/{}", original["eventId"].as_str().unwrap())).key(&app.admin_key).acting(&child).send().await;
    let orig_ev = orig_ev.assert_status(200);
    assert_eq!(
        (ev["type"].as_str(), ev["createdAt"].clone(), ev["data"].clone()),
        (Some("credits.allocated"), orig_ev["createdAt"].clone(), orig_ev["data"].clone())
    );
    let body: Value = serde_json::from_str(&rx_a.seen()[1].1).unwrap();
    assert_eq!(
        (body["id"].as_str(), body["createdAt"].clone()),
        (Some(event_id), orig_ev["createdAt"].clone()),
        "the replay carries the event's createdAt"
    );
    assert_eq!(body["replayOf"], original["eventId"]);
}

#[tokio::test]
async fn recover_requeues_failed_and_abandoned_deliveries_since_a_time_idempotently() {
    let app = TestApp::spawn().await;
    let (rx, url) = Receiver::start(vec![400, 400]).await;
    let (id, _) = endpoint(&app, &app.admin_key, None, json!({ "url": url, "events": ["organization.created"] })).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let r = app.post(&format!("/v1/webhook-endpoints/{id}/test")).key(&app.admin_key).send().await;
        ids.push(r.assert_status(200)["deliveryId"].as_str().unwrap().to_owned());
        app.clock.advance_ms(60_000);
    }
    pump(&app).await;
    for d in &ids {
        assert_eq!(delivery(&app, &app.admin_key, d).await["status"], "failed");
    }
    // Only deliveries created since `since`: the second.
    let recover = |since: &str, key: &str| {
        app.post(&format!("/v1/webhook-endpoints/{id}/recover")).key(&app.admin_key).idem(key).json(&json!({ "since": since }))
    };
    let r = recover("2026-06-01T00:00:30Z", "recover-1").send().await;
    assert_eq!(r.assert_status(200), &json!({ "endpointId": id, "requeued": 1 }));
    let again = recover("2026-06-01T00:00:30Z", "recover-1").send().await;
    assert_eq!((again.status, again.header("idempotent-replayed"), &again.body), (200, Some("true"), &r.body));
    recover("2026-06-01T00:00:00Z", "recover-1").send().await.assert_error(409, "IDEMPOTENCY_CONFLICT");
    assert_eq!(pump(&app).await, 1);
    let d = delivery(&app, &app.admin_key, &ids[1]).await;
    assert_eq!((d["status"].as_str(), d["attempts"].as_array().unwrap().len()), (Some("delivered"), 2), "history keeps the failed attempt");
    assert_eq!(delivery(&app, &app.admin_key, &ids[0]).await["status"], "failed");
    assert_eq!(rx.seen().len(), 3);
    // Nothing left to recover since then; bad input and other tenants.
    let r = recover("2026-06-01T00:00:30Z", "recover-2").send().await;
    assert_eq!(r.assert_status(200)["requeued"], 0);
    let r = recover("2026-06-01T00:00:00+00:00", "recover-3").send().await;
    r.assert_error(422, "VALIDATION");
    assert_eq!(r.body["error"]["details"]["field"], "since");
    app.post(&format!("/v1/webhook-endpoints/{id}/recover"))
        .key(&app.admin_key)
        .json(&json!({}))
        .send()
        .await
        .assert_error(422, "VALIDATION");
    let (_, other) = app.other_partner("Other").await;
    let r =
        app.post(&format!("/v1/webhook-endpoints/{id}/recover")).key(&other).json(&json!({ "since": "2026-01-01T00:00:00Z" })).send().await;
    r.assert_error(404, "NOT_FOUND");
}

#[tokio::test]
async fn retention_deletes_old_terminal_rows_and_keeps_events_with_pending_deliveries() {
    let app = TestApp::spawn().await;
    app.grant(&app.partner_org, 10_000).await;
    let (done_child, held_child) = (app.create_child("Done").await, app.create_child("Held").await);
    let (rx, url) = Receiver::start(vec![]).await;
    let (done_ep, _) = endpoint(&app, &app.admin_key, Some(&done_child), json!({ "url": url, "events": ["credits.allocated"] })).await;
    let (held_ep, _) = endpoint(&app, &app.admin_key, Some(&held_child), json!({ "url": url, "events": ["credits.allocated"] })).await;
    app.allocate(&done_child, 100).await.assert_status(201);
    app.allocate(&held_child, 100).await.assert_status(201);
    // The held endpoint is paused before its delivery goes out: it stays pending.
    let paused = app.patch(&format!("/v1/webhook-endpoints/{held_ep}")).key(&app.admin_key).acting(&held_child);
    paused.json(&json!({ "status": "paused" })).send().await.assert_status(200);
    pump(&app).await;
    assert_eq!(rx.seen().len(), 1);
    let first = |ep: &str, org: &str| {
        let (app, ep, org) = (&app, ep.to_owned(), org.to_owned());
        async move {
            let r = app.get(&format!("/v1/webhook-endpoints/{ep}/deliveries")).key(&app.admin_key).acting(&org).send().await;
            r.assert_status(200)["items"][0].clone()
        }
    };
    let (done_dlv, held_dlv) = (first(&done_ep, &done_child).await, first(&held_ep, &held_child).await);
    assert_eq!((done_dlv["status"].as_str(), held_dlv["status"].as_str()), (Some("delivered"), Some("pending")));

    // Nothing is old enough yet.
    assert_eq!(strata_workers::purge_webhook_history(&app.strata).await, Default::default());
    app.clock.advance_ms(31 * 24 * 3_600_000);
    app.allocate(&done_child, 100).await.assert_status(201);
    pump(&app).await;
    let fresh = first(&done_ep, &done_child).await;
    let purged = strata_workers::purge_webhook_history(&app.strata).await;
    assert_eq!(purged.deliveries, 1, "the old delivered one");
    assert!(purged.events >= 1);

    let event = |id: &Value, org: &str| app.get(&format!("/v1/events/{}", id.as_str().unwrap())).key(&app.admin_key).acting(org).send();
    event(&done_dlv["eventId"], &done_child).await.assert_error(404, "NOT_FOUND");
    event(&held_dlv["eventId"], &held_child).await.assert_status(200);
    event(&fresh["eventId"], &done_child).await.assert_status(200);
    let get = |d: &Value, org: &str| {
        app.get(&format!("/v1/webhook-deliveries/{}", d["id"].as_str().unwrap())).key(&app.admin_key).acting(org).send()
    };
    get(&done_dlv, &done_child).await.assert_error(404, "NOT_FOUND");
    get(&held_dlv, &held_child).await.assert_status(200);
    get(&fresh, &done_child).await.assert_status(200);
    // Once the held delivery goes out (and ends), the next sweep takes it and its event.
    app.patch(&format!("/v1/webhook-endpoints/{held_ep}"))
        .key(&app.admin_key)
        .acting(&held_child)
        .json(&json!({ "status": "active" }))
        .send()
        .await
        .assert_status(200);
    pump(&app).await;
    let purged = strata_workers::purge_webhook_history(&app.strata).await;
    assert_eq!(purged.deliveries, 1);
    event(&held_dlv["eventId"], &held_child).await.assert_error(404, "NOT_FOUND");
}

/// A pending delivery whose endpoint vanished (deleted while a dispatch was inserting it) is
/// abandoned by the retention step instead of staying pending forever; its event can then go.
#[tokio::test]
async fn retention_abandons_a_pending_delivery_whose_endpoint_is_gone() {
    let app = TestApp::spawn().await;
    app.grant(&app.partner_org, 1_000).await;
    let child = app.create_child("Orphan").await;
    let (_, url) = Receiver::start(vec![]).await;
    let (ep, _) = endpoint(&app, &app.admin_key, Some(&child), json!({ "url": url, "events": ["credits.allocated"] })).await;
    let paused = app.patch(&format!("/v1/webhook-endpoints/{ep}")).key(&app.admin_key).acting(&child);
    paused.json(&json!({ "status": "paused" })).send().await.assert_status(200);
    app.allocate(&child, 10).await.assert_status(201);
    pump(&app).await;
    let r = app.get(&format!("/v1/webhook-endpoints/{ep}/deliveries")).key(&app.admin_key).acting(&child).send().await;
    let id = strata_core::id::DeliveryId::parse_field(r.assert_status(200)["items"][0]["id"].as_str().unwrap(), "id").unwrap();
    // The endpoint row goes without the service's own abandonment: the race a dispatch can lose.
    let mut tx = app.strata.store.write().await.unwrap();
    tx.delete_endpoint(strata_core::id::EndpointId::parse_field(&ep, "id").unwrap()).await.unwrap();
    tx.commit().await.unwrap();
    let purged = strata_workers::purge_webhook_history(&app.strata).await;
    assert_eq!(purged.orphans, 1);
    let mut tx = app.strata.store.read().await.unwrap();
    let d = tx.delivery(id).await.unwrap().expect("kept, abandoned");
    assert_eq!(d.status.as_str(), "abandoned");
}

/// A delivery to an archived child's own endpoint that a dispatch inserted just after the
/// archive committed (it read the child's status before) is never sent; the retention step
/// abandons it (CONTRACT §6: an archived org's pending deliveries are abandoned) instead of
/// leaving it pending forever, while the parent's firehose copy of the same event still goes.
#[tokio::test]
async fn retention_abandons_a_pending_delivery_to_an_archived_childs_own_endpoint() {
    let app = TestApp::spawn().await;
    app.grant(&app.partner_org, 1_000).await;
    let child = app.create_child("Raced").await;
    let (_, url) = Receiver::start(vec![]).await;
    let (own, _) = endpoint(&app, &app.admin_key, Some(&child), json!({ "url": url, "events": ["credits.allocated"] })).await;
    let paused = app.patch(&format!("/v1/webhook-endpoints/{own}")).key(&app.admin_key).acting(&child);
    paused.json(&json!({ "status": "paused" })).send().await.assert_status(200);
    let firehose = json!({ "url": url, "events": ["credits.allocated"], "scope": "all_children" });
    let (hose, _) = endpoint(&app, &app.admin_key, None, firehose).await;
    let paused = app.patch(&format!("/v1/webhook-endpoints/{hose}")).key(&app.admin_key);
    paused.json(&json!({ "status": "paused" })).send().await.assert_status(200);
    app.allocate(&child, 10).await.assert_status(201);
    pump(&app).await;
    let r = app.get(&format!("/v1/webhook-endpoints/{own}/deliveries")).key(&app.admin_key).acting(&child).send().await;
    let id = strata_core::id::DeliveryId::parse_field(r.assert_status(200)["items"][0]["id"].as_str().unwrap(), "id").unwrap();
    // The child becomes archived without the archive's own abandonment: what the delivery looks
    // like when the dispatch that made it lost the race with the archive.
    let child_id = strata_core::id::OrgId::parse_field(&child, "id").unwrap();
    let mut tx = app.strata.store.write().await.unwrap();
    let mut org = tx.org_shared(strata_core::store::Owner::System, child_id).await.unwrap().unwrap();
    org.status = strata_core::org::OrgStatus::Archived;
    tx.update_org(&org).await.unwrap();
    tx.commit().await.unwrap();
    let purged = strata_workers::purge_webhook_history(&app.strata).await;
    assert_eq!(purged.orphans, 1, "the archived child's own pending delivery is abandoned");
    let mut tx = app.strata.store.read().await.unwrap();
    let d = tx.delivery(id).await.unwrap().expect("kept, abandoned");
    assert_eq!(d.status.as_str(), "abandoned");
    assert!(d.abandoned_at.is_some());
    drop(tx);
    let r = app.get(&format!("/v1/webhook-endpoints/{hose}/deliveries")).key(&app.admin_key).send().await;
    let items = r.assert_status(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["status"], "pending", "the parent's firehose copy still waits to be sent");
    // Nothing else is touched: a second sweep finds nothing.
    assert_eq!(strata_workers::purge_webhook_history(&app.strata).await.orphans, 0);
}

/// Found by `strata drill crash` on PostgreSQL: a replay locked the delivery, then its endpoint,
/// while the sender recording an attempt locks the endpoint, then the delivery; the two
/// deadlocked and the replay answered 500. Here the test holds the endpoint's lock as the
/// sender does, lets the replay block, then updates the delivery as the sender does.
#[tokio::test]
async fn a_replay_racing_the_recording_of_an_attempt_does_not_deadlock() {
    use sqlx::{Connection, Executor};
    let app = TestApp::spawn().await;
    let strata::StoreBackend::Postgres { url } = app.backend.clone() else {
        return crate::helpers::skip("PostgreSQL only (STRATA_TEST_DATABASE_URL is not set)");
    };
    let (_, hook) = Receiver::start(vec![]).await;
    let (id, _) = endpoint(&app, &app.admin_key, None, json!({ "url": hook, "events": ["organization.created"] })).await;
    let r = app.post(&format!("/v1/webhook-endpoints/{id}/test")).key(&app.admin_key).send().await;
    let dlv = r.assert_status(200)["deliveryId"].as_str().unwrap().to_owned();

    let mut sender = sqlx::PgConnection::connect(&url).await.unwrap();
    sender.execute("BEGIN").await.unwrap();
    let locked = sqlx::query("SELECT id FROM webhook_endpoints WHERE id = $1 FOR UPDATE").bind(&id).fetch_all(&mut sender).await.unwrap();
    assert_eq!(locked.len(), 1, "the endpoint row is stored under its prefixed id");
    let call = reqwest::Client::new().post(format!("{}/v1/webhook-deliveries/{dlv}/replay", app.base)).bearer_auth(&app.admin_key);
    let replay = tokio::spawn(async move { call.send().await.map(|r| r.status().as_u16()) });
    // Wait until the replay is blocked on a lock the test holds.
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'";
    let mut blocked = 0i64;
    for _ in 0..500 {
        let mut probe = sqlx::PgConnection::connect(&url).await.unwrap();
        blocked = sqlx::query_scalar(waiting).fetch_one(&mut probe).await.unwrap();
        if blocked > 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(blocked, 1, "the replay waits for the endpoint's lock");
    let updated = sqlx::query("UPDATE webhook_deliveries SET attempts = attempts WHERE id = $1").bind(&dlv).execute(&mut sender).await;
    assert!(updated.is_ok(), "the sender's side was chosen as a deadlock victim: {updated:?}");
    sender.execute("COMMIT").await.unwrap();
    assert_eq!(replay.await.unwrap().unwrap(), 200, "the replay went through once the sender committed");
}
