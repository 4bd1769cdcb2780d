//! Logs support can use: one line per request naming its org, key and error code; a 500 logged
//! once, with its request id and its cause, and nothing of it in the response; every failed
//! webhook attempt logged with its endpoint, delivery and status. Read from what the server
//! logged in this test process (`captured_logs`), one JSON object per line.

use serde_json::{Value, json};
use strata::StoreBackend;

use crate::helpers::{TestApp, captured_logs};
use crate::webhooks::{Receiver, endpoint, pump};

/// Every logged line that mentions `needle`, parsed.
fn lines_with(needle: &str) -> Vec<Value> {
    captured_logs().lines().filter(|l| l.contains(needle)).map(|l| serde_json::from_str(l).expect("a JSON log line")).collect()
}

/// Runs `sql` on the test's database directly, behind strata's back.
async fn tamper(app: &TestApp, sql: &str) {
    use sqlx::{Connection, Executor};
    match &app.backend {
        StoreBackend::Sqlite { dir } => {
            let url = format!("sqlite://{}", dir.join("strata.db").display());
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            conn.execute(sql).await.unwrap();
        }
        StoreBackend::Postgres { url } => {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            conn.execute(sql).await.unwrap();
        }
    }
}

#[tokio::test]
async fn a_500_is_logged_once_with_its_request_id_and_cause_and_the_caller_sees_none_of_it() {
    let app = TestApp::spawn().await;
    let (id, _) = endpoint(&app, &app.admin_key, None, json!({ "url": "https://hooks.example.com/h", "events": ["job.completed"] })).await;
    // A row strata cannot read back: its event list is no longer JSON.
    tamper(&app, "UPDATE webhook_endpoints SET events = 'not json'").await;

    let r = app.get(&format!("/v1/webhook-endpoints/{id}")).key(&app.admin_key).send().await;

    r.assert_error(500, "INTERNAL");
    let request_id = r.header("x-request-id").unwrap().to_owned();
    assert_eq!(r.body["error"]["requestId"], request_id.as_str());
    assert_eq!(r.body["error"]["message"], "An internal error occurred. It has been logged.");
    assert_eq!(r.body["error"]["details"], json!({}));
    let raw = String::from_utf8_lossy(&r.raw);
    for leaked in ["endpoint events", "expected", "rows.rs", "database"] {
        assert!(!raw.contains(leaked), "the response leaks {leaked:?}: {raw}");
    }
    let lines = lines_with(&request_id);
    let with_cause: Vec<&Value> = lines.iter().filter(|l| l.to_string().contains("endpoint events")).collect();
    assert_eq!(with_cause.len(), 1, "one line carries the cause: {lines:#?}");
    let line = with_cause[0];
    assert_eq!(line["level"], "ERROR");
    let f = &line["fields"];
    assert_eq!(
        (f["request_id"].as_str(), f["status"].as_u64(), f["error_code"].as_str()),
        (Some(request_id.as_str()), Some(500), Some("INTERNAL"))
    );
    let cause = f["cause"].as_str().unwrap();
    assert!(cause.starts_with("endpoint events: expected"), "the cause chain, down to the JSON error: {cause}");
    assert!(f["location"].as_str().unwrap().contains("rows.rs"), "where the error arose: {line}");
    assert_eq!(f["route"], "/v1/webhook-endpoints/{endpointId}");
    let errors = lines.iter().filter(|l| l["level"] == "ERROR").count();
    assert_eq!(errors, 1, "the 500 is logged once: {lines:#?}");
}

#[tokio::test]
async fn the_request_line_names_the_org_the_key_and_the_error_code() {
    let app = TestApp::spawn().await;
    let child = app.create_child("Acme").await;
    let (key_id, secret) = app.child_key(&child, &["content:read"]).await;

    let r = app.get("/v1/organizations").key(&secret).send().await;
    r.assert_error(403, "FORBIDDEN_SCOPE");
    let ok = app.get("/v1/whoami").key(&secret).send().await;
    ok.assert_status(200);

    for (resp, code) in [(&r, Some("FORBIDDEN_SCOPE")), (&ok, None)] {
        let request_id = resp.header("x-request-id").unwrap();
        let lines: Vec<Value> = lines_with(request_id).into_iter().filter(|l| l["fields"]["message"] == "request").collect();
        assert_eq!(lines.len(), 1, "one line per request");
        let f = &lines[0]["fields"];
        assert_eq!(f["org_id"], child.as_str());
        assert_eq!(f["key_id"], key_id.as_str());
        assert_eq!(f["error_code"].as_str(), code);
        assert!(f["latency_ms"].as_f64().is_some() && f["method"] == "GET");
    }
    assert!(!captured_logs().contains(&secret), "never the secret");
}

#[tokio::test]
async fn a_failed_webhook_attempt_is_logged_with_its_endpoint_delivery_and_status() {
    let app = TestApp::spawn().await;
    let (rx, url) = Receiver::start(vec![503]).await;
    let (endpoint_id, signing_secret) =
        endpoint(&app, &app.admin_key, None, json!({ "url": url, "events": ["organization.created"], "scope": "all_children" })).await;
    app.create_child("Acme").await;

    assert_eq!(pump(&app).await, 1);

    let (_, body) = rx.seen().pop().unwrap();
    let lines: Vec<Value> =
        lines_with(&endpoint_id).into_iter().filter(|l| l["fields"]["message"] == "webhook delivery attempt failed").collect();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let f = &lines[0]["fields"];
    assert_eq!((f["status"].as_u64(), f["attempt"].as_i64(), f["outcome"].as_str()), (Some(503), Some(1), Some("http_5xx")));
    assert!(f["delivery_id"].as_str().unwrap().starts_with("dlv_"));
    assert!(f["event_id"].as_str().unwrap().starts_with("evt_"));
    let line = lines[0].to_string();
    assert!(!line.contains(&signing_secret["whsec_".len()..]) && !line.contains(&url), "no secret, no URL: {line}");
    let event_id = f["event_id"].as_str().unwrap();
    assert!(body.contains(event_id) && !line.contains(&body), "not the body: {line}");
}
