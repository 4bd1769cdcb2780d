//! List filters that may repeat: on every list route, `status`, `eventType` and `type` given
//! several times mean any of the values (the way the official Layers client sends an array
//! filter, `?status=active&status=suspended`), where before the last value silently won. A bad
//! value is 422 naming the parameter, and a repeated single-valued parameter (`limit`) is 422.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::webhooks::endpoint;

/// GET `path` as the partner's admin (inside `acting` when given) and return the page's items.
async fn items(app: &TestApp, path: &str, acting: Option<&str>) -> Vec<Value> {
    let mut call = app.get(path).key(&app.admin_key);
    if let Some(org) = acting {
        call = call.acting(org);
    }
    call.send().await.assert_status(200)["items"].as_array().unwrap().clone()
}

/// The distinct values of `field` over the items of `path`.
async fn values(app: &TestApp, path: &str, acting: Option<&str>, field: &str) -> BTreeSet<String> {
    items(app, path, acting).await.iter().map(|i| i[field].as_str().unwrap().to_owned()).collect()
}

fn set(values: &[&str]) -> BTreeSet<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

/// `path` answers 422 VALIDATION naming `field`.
async fn refused(app: &TestApp, path: &str, acting: Option<&str>, field: &str) {
    let mut call = app.get(path).key(&app.admin_key);
    if let Some(org) = acting {
        call = call.acting(org);
    }
    let r = call.send().await;
    r.assert_error(422, "VALIDATION");
    assert_eq!(r.body["error"]["details"]["field"], field, "{path}: {}", r.body);
}

#[tokio::test]
async fn organizations_in_any_of_two_statuses() {
    let app = TestApp::spawn().await;
    let a = app.create_child("a").await;
    let b = app.create_child("b").await;
    app.create_child("c").await;
    app.post(&format!("/v1/organizations/{a}/suspend")).key(&app.admin_key).send().await.assert_status(200);
    app.delete(&format!("/v1/organizations/{b}")).key(&app.admin_key).send().await.assert_status(200);
    let names = values(&app, "/v1/organizations?status=suspended&status=archived", None, "name").await;
    assert_eq!(names, set(&["a", "b"]));
    refused(&app, "/v1/organizations?status=active&status=deleted", None, "status").await;
    refused(&app, "/v1/organizations?limit=1&limit=2", None, "limit").await;
}

#[tokio::test]
async fn the_event_log_in_any_of_two_types() {
    let app = TestApp::spawn().await;
    let org = app.create_child("Acme").await;
    app.post(&format!("/v1/organizations/{org}/suspend")).key(&app.admin_key).send().await.assert_status(200);
    app.post(&format!("/v1/organizations/{org}/resume")).key(&app.admin_key).send().await.assert_status(200);
    let all = values(&app, "/v1/events?limit=100", Some(&org), "type").await;
    assert!(all.contains("organization.resumed"), "{all:?}");
    let two = values(&app, "/v1/events?type=organization.created&type=organization.suspended", Some(&org), "type").await;
    assert_eq!(two, set(&["organization.created", "organization.suspended"]));
    let one = values(&app, "/v1/events?type=organization.suspended", Some(&org), "type").await;
    assert_eq!(one, set(&["organization.suspended"]));
    refused(&app, "/v1/events?type=organization.created&type=job.started", Some(&org), "type").await;
    refused(&app, "/v1/events?limit=1&limit=2", Some(&org), "limit").await;
    refused(&app, "/v1/events?since=2026-01-01T00:00:00Z&since=2026-01-02T00:00:00Z", Some(&org), "since").await;
}

#[tokio::test]
async fn the_audit_log_in_any_of_two_event_types() {
    let app = TestApp::spawn().await;
    let org = app.create_child("Acme").await;
    app.child_key(&org, &["content:read"]).await;
    app.post(&format!("/v1/organizations/{org}/suspend")).key(&app.admin_key).send().await.assert_status(200);
    let path = "/v1/audit-log?eventType=organization.created&eventType=organization.suspended&limit=200";
    assert_eq!(values(&app, path, None, "eventType").await, set(&["organization.created", "organization.suspended"]));
    let one = values(&app, "/v1/audit-log?eventType=organization.suspended", None, "eventType").await;
    assert_eq!(one, set(&["organization.suspended"]));
    refused(&app, "/v1/audit-log?limit=1&limit=2", None, "limit").await;
    refused(&app, "/v1/audit-log?cursor=a&cursor=b", None, "cursor").await;
}

#[tokio::test]
async fn both_credit_ledgers_in_any_of_two_kinds() {
    let app = TestApp::spawn().await;
    let child = app.create_child("Acme").await;
    app.grant(&app.partner_org, 10_000).await;
    app.grant(&child, 300).await;
    app.allocate(&child, 2_000).await.assert_status(201);
    for path in [format!("/v1/organizations/{child}/credits/events"), "/v1/credits/events".to_owned()] {
        let both = items(&app, &format!("{path}?eventType=grant&eventType=allocation"), None).await;
        let kinds: BTreeSet<String> = both.iter().map(|e| e["eventType"].as_str().unwrap().to_owned()).collect();
        assert_eq!(kinds, set(&["allocation", "grant"]), "{path}");
        let grants = items(&app, &format!("{path}?eventType=grant"), None).await;
        let allocations = items(&app, &format!("{path}?eventType=allocation"), None).await;
        assert_eq!(both.len(), grants.len() + allocations.len(), "{path}: the union of the two");
        // A kind with no rows adds nothing.
        assert_eq!(items(&app, &format!("{path}?eventType=grant&eventType=refund"), None).await.len(), grants.len(), "{path}");
        refused(&app, &format!("{path}?eventType=grant&eventType=gift"), None, "eventType").await;
        refused(&app, &format!("{path}?limit=1&limit=2"), None, "limit").await;
    }
}

#[tokio::test]
async fn projects_in_any_of_two_statuses() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for name in ["a", "b", "c"] {
        let r = app.post("/v1/projects").key(&app.admin_key).json(&json!({ "name": name, "timezone": "UTC" })).send().await;
        ids.push(r.assert_status(201)["id"].as_str().unwrap().to_owned());
    }
    app.delete(&format!("/v1/projects/{}", ids[0])).key(&app.admin_key).send().await.assert_status(200);
    assert_eq!(values(&app, "/v1/projects?status=archived", None, "name").await, set(&["a"]));
    assert_eq!(values(&app, "/v1/projects?status=active&status=archived", None, "name").await, set(&["a", "b", "c"]));
    refused(&app, "/v1/projects?status=active&status=deleted", None, "status").await;
    refused(&app, "/v1/projects?limit=1&limit=2", None, "limit").await;
}

#[tokio::test]
async fn webhook_endpoints_in_any_of_two_statuses_and_deliveries_of_any_of_two_types() {
    let app = TestApp::spawn().await;
    let url = "https://hooks.example.com/layers";
    let events = json!(["organization.created", "organization.suspended"]);
    let (a, _) = endpoint(&app, &app.admin_key, None, json!({ "url": url, "events": events, "scope": "all_children" })).await;
    let (b, _) = endpoint(&app, &app.admin_key, None, json!({ "url": url, "events": events })).await;
    app.patch(&format!("/v1/webhook-endpoints/{b}"))
        .key(&app.admin_key)
        .json(&json!({ "status": "paused" }))
        .send()
        .await
        .assert_status(200);
    let ids = |v: &[Value]| v.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect::<BTreeSet<_>>();
    assert_eq!(ids(&items(&app, "/v1/webhook-endpoints?status=paused", None).await), set(&[&b]));
    assert_eq!(ids(&items(&app, "/v1/webhook-endpoints?status=auto_paused&status=paused", None).await), set(&[&b]));
    assert_eq!(ids(&items(&app, "/v1/webhook-endpoints?status=active&status=paused", None).await), set(&[&a, &b]));
    refused(&app, "/v1/webhook-endpoints?status=active&status=gone", None, "status").await;
    refused(&app, "/v1/webhook-endpoints?limit=1&limit=2", None, "limit").await;

    // Endpoint A's deliveries: organization.created, organization.suspended and a test.ping, none
    // sent yet (nothing pumps them).
    let org = app.create_child("Acme").await;
    app.post(&format!("/v1/organizations/{org}/suspend")).key(&app.admin_key).send().await.assert_status(200);
    strata_workers::dispatch_events(&app.strata).await;
    app.post(&format!("/v1/webhook-endpoints/{a}/test")).key(&app.admin_key).send().await.assert_status(200);
    let deliveries = format!("/v1/webhook-endpoints/{a}/deliveries");
    let all = values(&app, &deliveries, None, "eventType").await;
    assert_eq!(all, set(&["organization.created", "organization.suspended", "test.ping"]));
    let two = values(&app, &format!("{deliveries}?eventType=test.ping&eventType=organization.created"), None, "eventType").await;
    assert_eq!(two, set(&["organization.created", "test.ping"]));
    assert_eq!(items(&app, &format!("{deliveries}?status=delivered"), None).await.len(), 0);
    assert_eq!(items(&app, &format!("{deliveries}?status=delivered&status=pending"), None).await.len(), 3);
    refused(&app, &format!("{deliveries}?eventType=test.ping&eventType=job.started"), None, "eventType").await;
    refused(&app, &format!("{deliveries}?status=pending&status=lost"), None, "status").await;
    refused(&app, &format!("{deliveries}?limit=1&limit=2"), None, "limit").await;
}
