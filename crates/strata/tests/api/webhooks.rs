//! Webhooks (CONTRACT §6): endpoints, the outbox dispatcher, signed deliveries verified the way
//! a receiver would (Stripe-style and Standard Webhooks), retries, holds and replays.

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use strata_workers::HttpSender;

use crate::helpers::TestApp;

/// A local receiver: records every request and answers with the next scripted status (200
/// once the script runs out) and a body naming it; a scripted 0 never answers.
#[derive(Clone, Default)]
pub(crate) struct Receiver {
    seen: Arc<Mutex<Vec<(HeaderMap, String)>>>,
    script: Arc<Mutex<Vec<u16>>>,
    arrived: Arc<tokio::sync::Notify>,
}

impl Receiver {
    pub(crate) async fn start(script: Vec<u16>) -> (Self, String) {
        let r = Receiver { seen: Arc::default(), script: Arc::new(Mutex::new(script)), arrived: Arc::default() };
        let state = r.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let state = state.clone();
                async move {
                    state.seen.lock().unwrap().push((headers, body));
                    state.arrived.notify_one();
                    let status = {
                        let mut script = state.script.lock().unwrap();
                        if script.is_empty() { 200 } else { script.remove(0) }
                    };
                    if status == 0 {
                        std::future::pending::<()>().await;
                    }
                    (StatusCode::from_u16(status).unwrap(), format!("answered {status}"))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://127.0.0.1:{}/hook", listener.local_addr().unwrap().port());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (r, url)
    }

    pub(crate) fn seen(&self) -> Vec<(HeaderMap, String)> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until `n` requests have arrived, or `within` has passed; returns how many arrived.
    pub(crate) async fn wait_for(&self, n: usize, within: std::time::Duration) -> usize {
        let _ = tokio::time::timeout(within, async {
            while self.seen.lock().unwrap().len() < n {
                self.arrived.notified().await;
            }
        })
        .await;
        self.seen.lock().unwrap().len()
    }
}

/// One dispatcher step and one sender step.
pub(crate) async fn pump(app: &TestApp) -> usize {
    strata_workers::dispatch_events(&app.strata).await;
    strata_workers::send_deliveries(&app.strata, &HttpSender::new(false, true)).await
}

/// Verifies `X-Layers-Signature` as Stripe's library does: HMAC-SHA256 keyed by the whole
/// `whsec_…` string over `"<t>.<body>"`, any `v1` matching.
pub(crate) fn stripe_verifies(secret: &str, header: &str, body: &str) -> bool {
    let t = header.split(',').find_map(|p| p.strip_prefix("t=")).unwrap();
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(format!("{t}.{body}").as_bytes());
    let expected: String = m.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    header.split(',').filter_map(|p| p.strip_prefix("v1=")).any(|v| v == expected)
}

/// Verifies `webhook-signature` as the Standard Webhooks libraries do.
fn standard_verifies(secret: &str, headers: &HeaderMap, body: &str) -> bool {
    let key = STANDARD.decode(&secret["whsec_".len()..]).unwrap();
    let id = headers["webhook-id"].to_str().unwrap();
    let t = headers["webhook-timestamp"].to_str().unwrap();
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap();
    m.update(format!("{id}.{t}.{body}").as_bytes());
    let expected = STANDARD.encode(m.finalize().into_bytes());
    headers["webhook-signature"].to_str().unwrap().split(' ').any(|s| s == format!("v1,{expected}"))
}

pub(crate) async fn endpoint(app: &TestApp, key: &str, acting: Option<&str>, body: Value) -> (String, String) {
    let mut call = app.post("/v1/webhook-endpoints").key(key).json(&body);
    if let Some(org) = acting {
        call = call.acting(org);
    }
    let r = call.send().await;
    let b = r.assert_status(201);
    (b["endpoint"]["id"].as_str().unwrap().to_owned(), b["signingSecret"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn quickstart_call_5_subscribes_the_firehose() {
    let app = TestApp::spawn().await;
    let r = app
        .post("/v1/webhook-endpoints")
        .key(&app.admin_key)
        .idem("hook-1")
        .json(&json!({ "url": "https://quinns-crm.example.com/layers/webhooks", "events": ["content.generated", "post.published"], "scope": "all_children" }))
        .send()
        .await;
    let b = r.assert_status(201);
    assert!(b["signingSecret"].as_str().unwrap().starts_with("whsec_"));
    let e = &b["endpoint"];
    assert!(e["id"].as_str().unwrap().starts_with("whe_"));
    assert_eq!((e["scope"].as_str(), e["status"].as_str(), e["apiVersion"].as_str()), (Some("all_children"), Some("active"), Some("v1")));
    assert_eq!(e["events"], json!(["content.generated", "post.published"]));
    assert_eq!(e["consecutiveFailureCount"], 0);
    let dump = app.database_dump().await;
    assert!(!dump.contains(&b["signingSecret"].as_str().unwrap()["whsec_".len()..]), "the signing secret is stored sealed");
    // The firehose needs org:admin; bad events and URLs are 422.
    let org = app.create_child("Acme").await;
    let (_, writer) = app.child_key(&org, &["webhooks:write"]).await;
    let r = app
        .post("/v1/webhook-endpoints")
        .key(&writer)
        .json(&json!({ "url": "https://a.example.com/h", "events": ["job.completed"], "scope": "all_children" }))
        .send()
        .await;
    r.assert_error(403, "FORBIDDEN_SCOPE");
    for (body, field) in [
        (json!({ "url": "https://a.example.com/h", "events": ["job.started"] }), "events"),
        (json!({ "url": "https://a.example.com/h", "events": [] }), "events"),
        (json!({ "url": "http://a.example.com/h", "events": ["job.completed"] }), "url"),
        (json!({ "url": "https://10.1.2.3/h", "events": ["job.completed"] }), "url"),
        (json!({ "url": "https://169.254.169.254/latest/meta-data", "events": ["job.completed"] }), "url"),
    ] {
        let r = app.post("/v1/webhook-endpoints").key(&app.admin_key).json(&body).send().await;
        r.assert_error(422, "VALIDATION");
        assert_eq!(r.body["error"]["details"]["field"], field);
    }
    // A wildcard is refused with the whole catalog, so the caller can list what it wants.
    let r = app
        .post("/v1/webhook-endpoints")
        .key(&app.admin_key)
        .json(&json!({ "url": "https://a.example.com/h", "events": ["*"] }))
        .send()
        .await;
    r.assert_error(422, "VALIDATION");
    let message = r.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("no wildcard"), "{message}");
    for ty in ["job.completed", "credits.allocated", "organization.archived", "api_key.revoked", "test.ping"] {
        assert!(message.contains(ty), "{ty} missing from: {message}");
    }
}

#[tokio::test]
async fn a_childs_events_reach_the_parents_firehose_signed_both_ways() {
    let app = TestApp::spawn().await;
    app.grant(&app.partner_org, 10_000).await;
    let (rx, url) = Receiver::start(vec![]).await;
    let (_, secret) =
        endpoint(&app, &app.admin_key, None, json!({ "url": url, "events": ["credits.allocated"], "scope": "all_children" })).await;
    let child = app.create_child("Acme").await;
    let txn = app.allocate(&child, 500).await.assert_status(201)["id"].as_str().unwrap().to_owned();
    assert_eq!(pump(&app).await, 1);
    let seen = rx.seen();
    assert_eq!(seen.len(), 1, "only the subscribed type, once");
    let (headers, body) = &seen[0];
    let v: Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["type"], "credits.allocated");
    assert_eq!(v["data"]["organizationId"], child.as_str(), "the firehose says which customer");
    assert_eq!(v["data"]["transferId"], txn.as_str());
    assert_eq!(headers["x-layers-event-id"].to_str().unwrap(), v["id"].as_str().unwrap());
    assert_eq!(headers["content-type"], "application/json");
    assert!(stripe_verifies(&secret, headers["x-layers-signature"].to_str().unwrap(), body));
    assert!(standard_verifies(&secret, headers, body));
    assert!(!stripe_verifies("whsec_AAAA", headers["x-layers-signature"].to_str().unwrap(), body));
    // Delivered once: another pump sends nothing.
    assert_eq!(pump(&app).await, 0);
}

#[tokio::test]
async fn failures_retry_on_the_ladder_and_a_client_error_fails_at_once() {
    let app = TestApp::spawn().await;
    let (rx, url) = Receiver::start(vec![503, 200]).await;
    let (id, _) = endpoint(&app, &app.admin_key, None, json!({ "url": url, "events": ["organization.created"] })).await;
    let r = app.post(&format!("/v1/webhook-endpoints/{id}/test")).key(&app.admin_key).send().await;
    let delivery = r.assert_status(200)["deliveryId"].as_str().unwrap().to_owned();
    assert_eq!(pump(&app).await, 1);
    let list = app.get(&format!("/v1/webhook-endpoints/{id}/deliveries")).key(&app.admin_key).send().await;
    let d = &list.assert_status(200)["items"][0];
    assert_eq!((d["id"].as_str(), d["status"].as_str(), d["attempts"].as_i64()), (Some(delivery.as_str()), Some("pending"), Some(1)));
    assert_eq!(d["lastResponseStatus"], 503);
    assert_eq!(pump(&app).await, 0, "not before the next rung");
    app.clock.advance_ms(1_000);
    assert_eq!(pump(&app).await, 1);
    let d = app.get(&format!("/v1/webhook-endpoints/{id}/deliveries")).key(&app.admin_key).send().await.body["items"][0].clone();
    assert_eq!((d["status"].as_str(), d["attempts"].as_i64()), (Some("delivered"), Some(2)));
    let seen = rx.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].0["x-layers-event-id"], seen[1].0["x-layers-event-id"], "the event id is stable across retries");
    // 400 is not retried.
    let (rx2, url2) = Receiver::start(vec![400]).await;
    let (id2, _) = endpoint(&app, &app.admin_key, None, json!({ "url": url2, "events": ["organization.created"] })).await;
    app.post(&format!("/v1/webhook-endpoints/{id2}/test")).key(&app.admin_key).send().await.assert_status(200);
    pump(&app).await;
    app.clock.advance_ms(10_000);
    pump(&app).await;
    assert_eq!(rx2.seen().len(), 1);
    let d = app.get(&format!("/v1/webhook-endpoints/{id2}/deliveries")).key(&app.admin_key).send().await.body["items"][0].clone();
    assert_eq!(d["status"], "failed");
}

#[tokio::test]
async fn a_suspended_orgs_deliveries_wait_and_flow_on_resume() {
    let app = TestApp::spawn().await;
    app.grant(&app.partner_org, 10_000).await;
    let child = app.create_child("Acme").await;
    let (rx, url) = Receiver::start(vec![]).await;
    endpoint(&app, &app.admin_key, Some(&child), json!({ "url": url, "events": ["credits.allocated"] })).await;
    app.post(&format!("/v1/organizations/{child}/suspend")).key(&app.admin_key).send().await.assert_status(200);
    app.allocate(&child, 100).await.assert_status(201);
    assert_eq!(pump(&app).await, 0);
    assert!(rx.seen().is_empty(), "held while suspended");
    app.post(&format!("/v1/organizations/{child}/resume")).key(&app.admin_key).send().await.assert_status(200);
    assert_eq!(pump(&app).await, 1);
    assert_eq!(rx.seen().len(), 1);
}

#[tokio::test]
async fn replays_carry_a_new_event_id_and_replay_of_and_rotation_signs_with_both_secrets() {
    let app = TestApp::spawn().await;
    let (rx, url) = Receiver::start(vec![]).await;
    let (id, old_secret) = endpoint(&app, &app.admin_key, None, json!({ "url": url, "events": ["organization.created"] })).await;
    let r = app
        .post(&format!("/v1/webhook-endpoints/{id}/test"))
        .key(&app.admin_key)
        .json(&json!({ "payload": { "hello": "world" } }))
        .send()
        .await;
    let (event, delivery) = (r.body["eventId"].as_str().unwrap().to_owned(), r.body["deliveryId"].as_str().unwrap().to_owned());
    pump(&app).await;
    let rot = app.post(&format!("/v1/webhook-endpoints/{id}/rotate-secret")).key(&app.admin_key).send().await;
    let new_secret = rot.assert_status(200)["signingSecret"].as_str().unwrap().to_owned();
    assert_eq!(rot.body["previousSecretExpiresAt"], "2026-06-02T00:00:00.000Z");
    let r = app.post(&format!("/v1/webhook-deliveries/{delivery}/replay")).key(&app.admin_key).send().await;
    assert_eq!(r.assert_status(200)["originalDeliveryId"], delivery.as_str());
    pump(&app).await;
    let seen = rx.seen();
    assert_eq!(seen.len(), 2);
    let first: Value = serde_json::from_str(&seen[0].1).unwrap();
    assert_eq!((first["type"].as_str(), first["id"].as_str()), (Some("test.ping"), Some(event.as_str())));
    assert_eq!(first["data"]["payload"], json!({ "hello": "world" }));
    let (headers, body) = &seen[1];
    let replay: Value = serde_json::from_str(body).unwrap();
    assert_ne!(replay["id"], first["id"]);
    assert_eq!(replay["replayOf"], event.as_str());
    let sig = headers["x-layers-signature"].to_str().unwrap();
    assert!(stripe_verifies(&old_secret, sig, body) && stripe_verifies(&new_secret, sig, body), "both secrets sign during the overlap");
    assert!(standard_verifies(&new_secret, headers, body));
    // Another org can neither see the endpoint nor replay its deliveries.
    let (_, other) = app.other_partner("Other").await;
    app.get(&format!("/v1/webhook-endpoints/{id}")).key(&other).send().await.assert_error(404, "NOT_FOUND");
    app.post(&format!("/v1/webhook-deliveries/{delivery}/replay")).key(&other).send().await.assert_error(404, "NOT_FOUND");
}

#[tokio::test]
async fn twenty_failures_in_a_row_auto_pause_an_endpoint_until_it_is_reactivated() {
    let app = TestApp::spawn().await;
    let (rx, url) = Receiver::start(vec![500; 40]).await;
    let (id, _) = endpoint(&app, &app.admin_key, None, json!({ "url": url, "events": ["organization.created"] })).await;
    for _ in 0..7 {
        app.post(&format!("/v1/webhook-endpoints/{id}/test")).key(&app.admin_key).send().await.assert_status(200);
    }
    for _ in 0..4 {
        pump(&app).await;
        app.clock.advance_ms(2_000);
    }
    let e = app.get(&format!("/v1/webhook-endpoints/{id}")).key(&app.admin_key).send().await;
    assert_eq!((e.body["status"].as_str(), e.body["consecutiveFailureCount"].as_i64()), (Some("auto_paused"), Some(20)));
    let attempts = rx.seen().len();
    pump(&app).await;
    assert_eq!(rx.seen().len(), attempts, "no attempts while auto-paused");
    let r = app.patch(&format!("/v1/webhook-endpoints/{id}")).key(&app.admin_key).json(&json!({ "status": "active" })).send().await;
    assert_eq!((r.body["status"].as_str(), r.body["consecutiveFailureCount"].as_i64()), (Some("active"), Some(0)));
}

#[tokio::test]
async fn endpoints_list_patch_and_delete_abandoning_pending_deliveries() {
    let app = TestApp::spawn().await;
    let (_, url) = Receiver::start(vec![]).await;
    let (id, _) =
        endpoint(&app, &app.admin_key, None, json!({ "url": url, "events": ["organization.created"], "description": "CRM" })).await;
    let r = app
        .patch(&format!("/v1/webhook-endpoints/{id}"))
        .key(&app.admin_key)
        .json(&json!({ "events": ["job.completed", "job.failed"], "status": "paused", "description": null }))
        .send()
        .await;
    let b = r.assert_status(200);
    assert_eq!((b["status"].as_str(), b["description"].clone()), (Some("paused"), json!(null)));
    assert_eq!(b["events"], json!(["job.completed", "job.failed"]));
    let list = app.get("/v1/webhook-endpoints?status=paused").key(&app.admin_key).send().await;
    assert_eq!(list.assert_status(200)["items"].as_array().unwrap().len(), 1);
    let d = app.post(&format!("/v1/webhook-endpoints/{id}/test")).key(&app.admin_key).send().await;
    d.assert_status(200);
    let r = app.delete(&format!("/v1/webhook-endpoints/{id}")).key(&app.admin_key).send().await;
    assert_eq!(r.assert_status(200), &json!({ "id": id, "deleted": true }));
    app.get(&format!("/v1/webhook-endpoints/{id}")).key(&app.admin_key).send().await.assert_error(404, "NOT_FOUND");
    assert_eq!(pump(&app).await, 0);
}

#[tokio::test]
async fn only_an_admin_may_change_a_firehose_endpoint() {
    let app = TestApp::spawn().await;
    let (id, _) = endpoint(
        &app,
        &app.admin_key,
        None,
        json!({ "url": "https://crm.example.com/h", "events": ["job.completed"], "scope": "all_children" }),
    )
    .await;
    let r = app
        .post("/v1/api-keys")
        .key(&app.admin_key)
        .json(&json!({ "name": "hooks", "scopes": ["webhooks:write", "webhooks:read"] }))
        .send()
        .await;
    let writer = r.assert_status(201)["secret"].as_str().unwrap().to_owned();
    app.get(&format!("/v1/webhook-endpoints/{id}")).key(&writer).send().await.assert_status(200);
    let repoint = json!({ "url": "https://attacker.example.com/h" });
    app.patch(&format!("/v1/webhook-endpoints/{id}")).key(&writer).json(&repoint).send().await.assert_error(403, "FORBIDDEN_SCOPE");
    app.post(&format!("/v1/webhook-endpoints/{id}/rotate-secret")).key(&writer).send().await.assert_error(403, "FORBIDDEN_SCOPE");
    app.delete(&format!("/v1/webhook-endpoints/{id}")).key(&writer).send().await.assert_error(403, "FORBIDDEN_SCOPE");
}

#[tokio::test]
async fn a_delivery_is_claimed_once_and_an_archived_orgs_own_endpoints_get_nothing_more() {
    let app = TestApp::spawn().await;
    app.grant(&app.partner_org, 10_000).await;
    let child = app.create_child("Acme").await;
    let (rx_own, own_url) = Receiver::start(vec![]).await;
    let (rx_fire, fire_url) = Receiver::start(vec![]).await;
    endpoint(&app, &app.admin_key, Some(&child), json!({ "url": own_url, "events": ["credits.allocated", "organization.archived"] })).await;
    endpoint(&app, &app.admin_key, None, json!({ "url": fire_url, "events": ["organization.archived"], "scope": "all_children" })).await;
    app.allocate(&child, 100).await.assert_status(201);
    // Two senders at once: the delivery goes out exactly once.
    strata_workers::dispatch_events(&app.strata).await;
    let sender = HttpSender::new(false, true);
    let (a, b) = tokio::join!(app.strata.send_deliveries(&sender), app.strata.send_deliveries(&sender));
    assert_eq!(a.unwrap() + b.unwrap(), 1);
    assert_eq!(rx_own.seen().len(), 1);
    // After the archive, the child's own endpoint hears nothing; the parent's firehose does.
    app.delete(&format!("/v1/organizations/{child}")).key(&app.admin_key).send().await.assert_status(200);
    pump(&app).await;
    assert_eq!(rx_own.seen().len(), 1);
    let fire = rx_fire.seen();
    assert_eq!(fire.len(), 1);
    assert!(fire[0].1.contains("organization.archived"));
}
