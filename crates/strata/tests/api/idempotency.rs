//! Idempotency-Key semantics (CONTRACT §1): replay, conflict, in-progress, failures, pruning.

use serde_json::json;
use strata_core::clock::HOUR_MS;
use strata_core::service::Claimed;

use crate::helpers::TestApp;

async fn child_count(app: &TestApp) -> usize {
    let r = app.get("/v1/organizations?limit=200").key(&app.admin_key).send().await;
    r.assert_status(200)["items"].as_array().unwrap().len()
}

#[tokio::test]
async fn a_replay_returns_the_same_status_and_bytes_with_the_replayed_header() {
    let app = TestApp::spawn().await;
    let body = json!({ "name": "Acme Coffee", "metadata": { "externalId": "acme-coffee" } });
    let first = app.post("/v1/organizations").key(&app.admin_key).idem("create-acme").json(&body).send().await;
    first.assert_status(201);
    assert_eq!(first.header("idempotent-replayed"), None);
    let again = app.post("/v1/organizations").key(&app.admin_key).idem("create-acme").json(&body).send().await;
    assert_eq!(again.status, 201);
    assert_eq!(again.raw, first.raw, "byte-identical body");
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_ne!(again.header("x-request-id"), first.header("x-request-id"), "each response has its own request id");
    assert_eq!(child_count(&app).await, 1);
}

#[tokio::test]
async fn a_replayed_key_mint_returns_the_same_secret() {
    let app = TestApp::spawn().await;
    let org = app.create_child("Acme").await;
    let body = json!({ "name": "acme-integration", "scopes": ["content:read", "content:write"] });
    let path = format!("/v1/organizations/{org}/api-keys");
    let a = app.post(&path).key(&app.admin_key).idem("mint-1").json(&body).send().await;
    let b = app.post(&path).key(&app.admin_key).idem("mint-1").json(&body).send().await;
    assert_eq!(a.assert_status(201)["secret"], b.assert_status(201)["secret"]);
    let keys = app.get(&path).key(&app.admin_key).send().await;
    assert_eq!(keys.body["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_same_key_with_a_different_body_is_409_idempotency_conflict() {
    let app = TestApp::spawn().await;
    app.post("/v1/organizations").key(&app.admin_key).idem("k").json(&json!({"name": "A"})).send().await.assert_status(201);
    let r = app.post("/v1/organizations").key(&app.admin_key).idem("k").json(&json!({"name": "B"})).send().await;
    r.assert_error(409, "IDEMPOTENCY_CONFLICT");
    // Another path with the same key is a different request too.
    let org = app.create_child("C").await;
    let r = app.post(&format!("/v1/organizations/{org}/suspend")).key(&app.admin_key).idem("k").send().await;
    r.assert_error(409, "IDEMPOTENCY_CONFLICT");
}

#[tokio::test]
async fn keys_are_scoped_to_the_calling_api_key() {
    let app = TestApp::spawn().await;
    let (_, other) = app.other_partner("Other").await;
    app.post("/v1/organizations").key(&app.admin_key).idem("shared").json(&json!({"name": "A"})).send().await.assert_status(201);
    let r = app.post("/v1/organizations").key(&other).idem("shared").json(&json!({"name": "A"})).send().await;
    r.assert_status(201);
    assert_eq!(r.header("idempotent-replayed"), None);
}

#[tokio::test]
async fn a_key_still_in_progress_is_409_with_reason_in_progress() {
    let app = TestApp::spawn().await;
    // Hold a claim the way a slow first request would.
    let caller = app
        .strata
        .authenticate(
            strata_core::service::Credentials {
                authorization: Some(&format!("Bearer {}", app.admin_key)),
                acting_org: None,
                whoami: false,
            },
            strata_core::id::RequestId::at(0),
        )
        .await
        .unwrap();
    let body = json!({"name": "Slow"}).to_string();
    let fp = strata_core::idempotency::fingerprint("POST", "/v1/organizations", &app.partner_org, body.as_bytes());
    assert!(matches!(app.strata.idem_claim(&caller, "slow".into(), fp).await.unwrap(), Claimed::Proceed(_)));
    let r = app.post("/v1/organizations").key(&app.admin_key).idem("slow").raw_body(body.clone()).send().await;
    r.assert_error(409, "IDEMPOTENCY_CONFLICT");
    assert_eq!(r.body["error"]["details"]["reason"], "in_progress");
    // A claim whose holder died is taken over once its lease runs out.
    app.clock.advance_ms(61_000);
    app.post("/v1/organizations").key(&app.admin_key).idem("slow").raw_body(body).send().await.assert_status(201);
}

#[tokio::test]
async fn concurrent_requests_with_one_key_have_exactly_one_effect() {
    let app = TestApp::spawn().await;
    let body = json!({ "name": "Racer" });
    let calls = (0..16).map(|_| app.post("/v1/organizations").key(&app.admin_key).idem("race").json(&body).send());
    let results = futures::future::join_all(calls).await;
    let mut ids = std::collections::HashSet::new();
    for r in &results {
        match r.status {
            201 => {
                ids.insert(r.body["id"].as_str().unwrap().to_owned());
            }
            409 => {
                assert_eq!(r.code(), "IDEMPOTENCY_CONFLICT");
                assert_eq!(r.body["error"]["details"]["reason"], "in_progress");
            }
            s => panic!("unexpected {s}: {}", r.body),
        }
    }
    assert_eq!(ids.len(), 1, "every success names the one org created");
    assert_eq!(child_count(&app).await, 1);
}

#[tokio::test]
async fn a_failed_validation_stores_nothing() {
    let app = TestApp::spawn().await;
    let r = app.post("/v1/organizations").key(&app.admin_key).idem("v").json(&json!({"name": ""})).send().await;
    r.assert_error(422, "VALIDATION");
    assert_eq!(r.body["error"]["details"]["field"], "name");
    assert_eq!(child_count(&app).await, 0);
    // The key is free: a corrected request under it succeeds.
    app.post("/v1/organizations").key(&app.admin_key).idem("v").json(&json!({"name": "Fixed"})).send().await.assert_status(201);
    let dump = app.database_dump().await;
    assert!(!dump.contains("\"name\":\"\""));
}

#[tokio::test]
async fn a_business_failure_is_stored_and_replayed() {
    let app = TestApp::spawn().await;
    let org = app.create_child("Acme").await;
    app.delete(&format!("/v1/organizations/{org}")).key(&app.admin_key).send().await.assert_status(200);
    let path = format!("/v1/organizations/{org}/suspend");
    let first = app.post(&path).key(&app.admin_key).idem("s").send().await;
    first.assert_error(409, "CONFLICT");
    let again = app.post(&path).key(&app.admin_key).idem("s").send().await;
    assert_eq!(again.status, 409);
    assert_eq!(again.raw, first.raw);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
}

#[tokio::test]
async fn records_are_pruned_after_a_day() {
    let app = TestApp::spawn().await;
    let body = json!({"name": "Once"});
    app.post("/v1/organizations").key(&app.admin_key).idem("p").json(&body).send().await.assert_status(201);
    app.clock.advance_ms(23 * HOUR_MS);
    assert_eq!(strata_workers::prune_idempotency(&app.strata).await, 0);
    app.clock.advance_ms(2 * HOUR_MS);
    assert_eq!(strata_workers::prune_idempotency(&app.strata).await, 1);
    let r = app.post("/v1/organizations").key(&app.admin_key).idem("p").json(&body).send().await;
    r.assert_status(201);
    assert_eq!(r.header("idempotent-replayed"), None);
    assert_eq!(child_count(&app).await, 2);
}

#[tokio::test]
async fn a_malformed_idempotency_key_is_422() {
    let app = TestApp::spawn().await;
    let long = "x".repeat(256);
    let r = app.post("/v1/organizations").key(&app.admin_key).idem(&long).json(&json!({"name": "A"})).send().await;
    r.assert_error(422, "VALIDATION");
    assert_eq!(child_count(&app).await, 0);
}

#[tokio::test]
async fn a_request_that_outlived_its_claim_cannot_commit_a_second_effect() {
    let app = TestApp::spawn().await;
    let caller = app.admin_caller().await;
    let body = json!({"name": "Slow"}).to_string();
    let fp = strata_core::idempotency::fingerprint("POST", "/v1/organizations", &app.partner_org, body.as_bytes());
    let Claimed::Proceed(stale) = app.strata.idem_claim(&caller, "lease".into(), fp).await.unwrap() else { panic!("first claim") };
    // The first request stalls past its lease; a retry takes the claim over and succeeds.
    app.clock.advance_ms(61_000);
    app.post("/v1/organizations").key(&app.admin_key).idem("lease").raw_body(body.clone()).send().await.assert_status(201);
    // The stalled request finally finishes: its effect must not commit.
    let cmd = strata_core::service::NewChild { name: "Slow".into(), metadata: Default::default(), billing_email: None };
    let err = app.strata.create_child(&caller, cmd, Some(&stale)).await.unwrap_err();
    assert_eq!(err.code(), "IDEMPOTENCY_CONFLICT");
    assert_eq!(child_count(&app).await, 1);
}
