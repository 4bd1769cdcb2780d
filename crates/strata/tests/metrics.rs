//! `GET /metrics` after a short load through the real HTTP stack: every family strata documents
//! has samples, and no label carries a tenant's id. Its own test binary: the metrics recorder is
//! one per process, so no other test's traffic (or gauge) mixes in.

#[path = "api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use helpers::TestApp;
use serde_json::json;
use strata::StoreBackend;
use strata_workers::HttpSender;
use tokio::sync::{Semaphore, mpsc};

/// One sample of the exposition: its name, labels and value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses Prometheus's text format (the subset the exporter writes).
fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("a sample line: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("a numeric value: {line}"));
        let (name, mut rest) = match series.split_once('{') {
            Some((n, r)) => (n.to_owned(), r),
            None => (series.to_owned(), ""),
        };
        let mut labels = BTreeMap::new();
        while let Some((key, after)) = rest.split_once("=\"") {
            let key = key.trim_start_matches(',').to_owned();
            let mut v = String::new();
            let mut chars = after.char_indices();
            let mut end = after.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => v.push(chars.next().map_or('\\', |(_, c)| c)),
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => v.push(c),
                }
            }
            labels.insert(key, v);
            rest = &after[end..];
        }
        out.push(Sample { name, labels, value });
    }
    out
}

fn total(samples: &[Sample], name: &str) -> f64 {
    samples.iter().filter(|s| s.name == name).map(|s| s.value).sum()
}

fn label_values<'a>(samples: &'a [Sample], name: &str, label: &str) -> Vec<&'a str> {
    samples.iter().filter(|s| s.name == name).filter_map(|s| s.labels.get(label).map(String::as_str)).collect()
}

/// A webhook receiver whose answers wait for a permit (200 then); says when a request arrives.
async fn gated_receiver(permits: usize) -> (String, Arc<Semaphore>, mpsc::UnboundedReceiver<()>) {
    let gate = Arc::new(Semaphore::new(permits));
    let (arrived_tx, arrived) = mpsc::unbounded_channel();
    let g = gate.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let (gate, arrived) = (g.clone(), arrived_tx.clone());
            async move {
                let _ = arrived.send(());
                gate.acquire().await.expect("the gate stays open").forget();
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}/hook", listener.local_addr().unwrap().port());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, gate, arrived)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_short_load_every_metric_family_has_samples_and_no_label_holds_an_id() {
    let app = TestApp::spawn().await;
    let admin = app.admin_key.clone();

    // Reads and writes.
    app.get("/v1/whoami").key(&admin).send().await.assert_status(200);
    let child = app.create_child("Acme").await;
    app.get(&format!("/v1/organizations/{child}")).key(&admin).send().await.assert_status(200);
    // An authentication failure.
    app.get("/v1/whoami").key("lp_live_nothing").send().await.assert_error(401, "UNAUTHENTICATED");
    // An idempotent replay, then a conflict under the same key.
    let first = app.post("/v1/organizations").key(&admin).idem("metrics-1").json(&json!({ "name": "Idem" })).send().await;
    first.assert_status(201);
    let again = app.post("/v1/organizations").key(&admin).idem("metrics-1").json(&json!({ "name": "Idem" })).send().await;
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let other = app.post("/v1/organizations").key(&admin).idem("metrics-1").json(&json!({ "name": "Other" })).send().await;
    other.assert_error(409, "IDEMPOTENCY_CONFLICT");
    // An allocation and a generation.
    app.grant(&app.partner_org, 100_000).await;
    app.allocate(&child, 1_000).await.assert_status(201);
    let r = app.post("/v1/projects").key(&admin).acting(&child).json(&json!({ "name": "P", "timezone": "UTC" })).send().await;
    let project = r.assert_status(201)["id"].as_str().unwrap().to_owned();
    app.post(&format!("/v1/projects/{project}/content")).key(&admin).acting(&child).json(&json!({})).send().await.assert_status(202);
    // A rate-limit hit: a standard partner's 60 writes a minute, then one more.
    let (_, standard) = app.other_partner("Standard").await;
    for _ in 0..60 {
        app.patch("/v1/organizations/org_00000000-0000-4000-8000-000000000000").key(&standard).json(&json!({})).send().await;
    }
    app.post("/v1/organizations").key(&standard).json(&json!({ "name": "One too many" })).send().await.assert_error(429, "RATE_LIMITED");

    // A webhook delivered to a local receiver; then one held in flight by the receiver.
    let (url, gate, mut arrived) = gated_receiver(1).await;
    let body = json!({ "url": url, "events": ["organization.created"], "scope": "all_children" });
    app.post("/v1/webhook-endpoints").key(&admin).json(&body).send().await.assert_status(201);
    app.create_child("Delivered").await;
    strata_workers::dispatch_events(&app.strata).await;
    assert_eq!(strata_workers::send_deliveries(&app.strata, &HttpSender::new(false, true)).await, 1);
    app.create_child("Held").await;
    strata_workers::dispatch_events(&app.strata).await;
    let strata = app.strata.clone();
    let held = tokio::spawn(async move { strata_workers::send_deliveries(&strata, &HttpSender::new(false, true)).await });
    for _ in 0..2 {
        tokio::time::timeout(Duration::from_secs(10), arrived.recv()).await.expect("the receiver is reached").unwrap();
    }
    // An event left waiting two seconds when the dispatcher looks: the outbox lag.
    app.create_child("Waiting").await;
    app.clock.advance_ms(2_000);
    strata_workers::dispatch_events(&app.strata).await;

    // Scraped while a write transaction holds a connection and the attempt is still in flight.
    let tx = app.strata.store.write().await.unwrap();
    let scrape = app.client.get(format!("{}/metrics", app.base)).send().await.unwrap();
    assert_eq!(scrape.status(), 200);
    assert!(scrape.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = scrape.text().await.unwrap();
    drop(tx);
    gate.add_permits(1);
    assert_eq!(held.await.unwrap(), 1);

    let samples = parse(&text);
    let counters = [
        "strata_http_requests_total",
        "strata_auth_failures_total",
        "strata_rate_limit_rejections_total",
        "strata_idempotent_replays_total",
        "strata_idempotency_conflicts_total",
        "strata_ledger_transfers_total",
        "strata_webhook_attempts_total",
        "strata_webhook_deliveries_total",
    ];
    let gauges = ["strata_outbox_lag_seconds", "strata_webhook_attempts_in_flight", "strata_db_connections_in_use"];
    let mut histograms = vec!["strata_http_request_duration_seconds", "strata_db_acquire_wait_seconds"];
    // SQLite commits every write in groups; PostgreSQL none yet.
    if matches!(app.backend, StoreBackend::Sqlite { .. }) {
        histograms.push("strata_group_commit_size");
    }
    for name in counters.iter().chain(&gauges) {
        assert!(total(&samples, name) > 0.0, "{name} has no non-zero sample in:\n{text}");
        assert!(text.contains(&format!("# HELP {name} ")), "{name} is described");
    }
    for name in &histograms {
        assert!(total(&samples, &format!("{name}_count")) > 0.0, "{name} has no observation in:\n{text}");
        assert!(total(&samples, &format!("{name}_bucket")) > 0.0, "{name} is a histogram with buckets");
    }
    assert_eq!(total(&samples, "strata_outbox_lag_seconds"), 2.0, "the waiting event's age when the dispatcher looked");

    // Labels are route templates, reasons, kinds and outcomes.
    let routes = label_values(&samples, "strata_http_requests_total", "route");
    for template in ["/v1/whoami", "/v1/organizations/{orgId}", "/v1/projects/{projectId}/content"] {
        assert!(routes.contains(&template), "{template} in {routes:?}");
    }
    assert!(label_values(&samples, "strata_auth_failures_total", "reason").contains(&"malformed_key"));
    assert!(label_values(&samples, "strata_rate_limit_rejections_total", "class").contains(&"write-light"));
    let kinds = label_values(&samples, "strata_ledger_transfers_total", "kind");
    for kind in ["grant", "allocation", "reservation"] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    assert!(label_values(&samples, "strata_webhook_attempts_total", "outcome").contains(&"success"));
    assert!(label_values(&samples, "strata_webhook_deliveries_total", "outcome").contains(&"delivered"));
    let statuses = label_values(&samples, "strata_http_requests_total", "status");
    assert!(["200", "201", "401", "409", "429"].iter().all(|s| statuses.contains(s)), "{statuses:?}");

    // No label value is (or holds) an id: not the orgs', keys', projects', nor any other kind's.
    let prefixes = ["org_", "key_", "prj_", "txn_", "evt_", "req_", "aud_", "job_", "cnt_", "post_", "whe_", "dlv_", "lp_"];
    for s in &samples {
        for v in s.labels.values() {
            assert!(!prefixes.iter().any(|p| v.contains(p)), "{} has a label value that holds an id: {v}", s.name);
            assert!(!v.contains(&child) && !v.contains(&app.partner_org), "{} has a tenant's id: {v}", s.name);
        }
    }
}
