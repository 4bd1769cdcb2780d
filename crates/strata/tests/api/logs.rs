//! The audit log (CONTRACT §7) and the event log (CONTRACT §6).

use serde_json::json;
use strata_core::clock::HOUR_MS;

use crate::helpers::TestApp;

#[tokio::test]
async fn every_write_is_audited_with_key_org_and_request() {
    let app = TestApp::spawn().await;
    let r = app.post("/v1/organizations").key(&app.admin_key).json(&json!({"name": "Acme"})).send().await;
    let org = r.assert_status(201)["id"].as_str().unwrap().to_owned();
    let log = app.get("/v1/audit-log?eventType=organization.created").key(&app.admin_key).send().await;
    let items = log.assert_status(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    let e = &items[0];
    assert!(e["eventId"].as_str().unwrap().starts_with("aud_"));
    assert_eq!(e["requestId"].as_str(), r.header("x-request-id"));
    assert_eq!(e["organizationId"], app.partner_org.as_str());
    assert!(e["apiKeyId"].as_str().unwrap().starts_with("key_"));
    assert_eq!(e["actor"], "partner_api");
    assert_eq!(e["projectId"], json!(null));
    assert_eq!(e["data"]["organizationId"], org.as_str());
    assert_eq!(e["occurredAt"], "2026-06-01T00:00:00.000Z");
}

#[tokio::test]
async fn rejected_authentication_against_a_real_key_is_audited_in_its_org() {
    let app = TestApp::spawn().await;
    let keyid_part = &app.admin_key[..("lp_live_".len() + 16)];
    let forged = format!("{keyid_part}_{}", "A".repeat(43));
    let r = app.get("/v1/whoami").key(&forged).send().await;
    r.assert_error(401, "UNAUTHENTICATED");
    let log = app.get("/v1/audit-log?eventType=auth.rejected").key(&app.admin_key).send().await;
    let items = log.assert_status(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["data"]["reason"], "wrong_secret");
    assert_eq!(items[0]["requestId"].as_str(), r.header("x-request-id"));
}

#[tokio::test]
async fn the_operator_is_the_actor_of_operator_actions() {
    let app = TestApp::spawn().await;
    let log = app.get("/v1/audit-log?eventType=partner.created").key(&app.admin_key).send().await;
    let items = log.assert_status(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["actor"], "operator");
}

#[tokio::test]
async fn the_audit_log_filters_by_key_and_time() {
    let app = TestApp::spawn().await;
    app.create_child("one").await;
    app.clock.advance_ms(2 * HOUR_MS);
    app.create_child("two").await;
    let since = "2026-06-01T01:00:00Z";
    let r = app.get(&format!("/v1/audit-log?eventType=organization.created&since={since}")).key(&app.admin_key).send().await;
    assert_eq!(r.assert_status(200)["items"].as_array().unwrap().len(), 1);
    let r = app.get(&format!("/v1/audit-log?eventType=organization.created&until={since}")).key(&app.admin_key).send().await;
    assert_eq!(r.assert_status(200)["items"].as_array().unwrap().len(), 1);
    let unknown_key = "key_00000000-0000-4000-8000-000000000000";
    let r = app.get(&format!("/v1/audit-log?apiKeyId={unknown_key}")).key(&app.admin_key).send().await;
    assert_eq!(r.assert_status(200)["items"], json!([]));
}

#[tokio::test]
async fn a_parent_reads_a_childs_audit_log_with_the_header_and_not_without() {
    let app = TestApp::spawn().await;
    let org = app.create_child("Acme").await;
    app.child_key(&org, &["content:read"]).await;
    let own = app.get("/v1/audit-log?eventType=api_key.created").key(&app.admin_key).send().await;
    assert_eq!(own.assert_status(200)["items"], json!([]));
    let child = app.get("/v1/audit-log?eventType=api_key.created").key(&app.admin_key).acting(&org).send().await;
    assert_eq!(child.assert_status(200)["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn changes_append_events_readable_by_list_and_by_id() {
    let app = TestApp::spawn().await;
    let org = app.create_child("Acme").await;
    let r = app.get("/v1/events?type=organization.created").key(&app.admin_key).acting(&org).send().await;
    let items = r.assert_status(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    let e = &items[0];
    let id = e["id"].as_str().unwrap();
    assert!(id.starts_with("evt_") && id.len() == 30);
    assert_eq!(e["type"], "organization.created");
    assert_eq!(e["data"]["organizationId"], org.as_str());
    assert_eq!(e["data"]["organization"]["name"], "Acme");
    let one = app.get(&format!("/v1/events/{id}")).key(&app.admin_key).acting(&org).send().await;
    assert_eq!(one.assert_status(200)["id"], id);
    // Another org cannot see it.
    let (_, other) = app.other_partner("Other").await;
    app.get(&format!("/v1/events/{id}")).key(&other).send().await.assert_error(404, "NOT_FOUND");
    app.get("/v1/events/evt_nope").key(&other).send().await.assert_error(422, "VALIDATION");
    app.get("/v1/events?type=job.started").key(&other).send().await.assert_error(422, "VALIDATION");
}

#[tokio::test]
async fn key_and_lifecycle_changes_append_their_events() {
    let app = TestApp::spawn().await;
    let org = app.create_child("Acme").await;
    let (id, _) = app.child_key(&org, &["content:read"]).await;
    app.post(&format!("/v1/organizations/{org}/api-keys/{id}/rotate")).key(&app.admin_key).send().await.assert_status(201);
    app.delete(&format!("/v1/organizations/{org}/api-keys/{id}")).key(&app.admin_key).send().await.assert_status(200);
    for action in ["suspend", "resume"] {
        app.post(&format!("/v1/organizations/{org}/{action}")).key(&app.admin_key).send().await.assert_status(200);
    }
    app.delete(&format!("/v1/organizations/{org}")).key(&app.admin_key).send().await.assert_status(200);
    let r = app.get("/v1/events?limit=100").key(&app.admin_key).acting(&org).send().await;
    let mut types: Vec<String> =
        r.assert_status(200)["items"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap().to_owned()).collect();
    types.reverse();
    assert_eq!(
        types,
        [
            "organization.created",
            "api_key.created",
            "api_key.rotated",
            "api_key.revoked",
            "organization.suspended",
            "organization.resumed",
            "organization.archived"
        ]
    );
}
