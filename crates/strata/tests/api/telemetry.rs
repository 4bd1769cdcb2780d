//! Logs support can use: one line per request naming its org, key and error code; a 500 logged
//! once, with its request id and its cause, and nothing of it in the response; every failed
//! webhook attempt logged with its endpoint, delivery and status. Read from what the server
//! logged in this test process (`captured_logs`), one JSON object per line. And the real
//! binary's `--log-format` and `--metrics-listen`. (The metric families: tests/metrics.rs.)

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use strata::StoreBackend;
use tokio::io::{AsyncBufReadExt, BufReader};

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

/// Starts `strata serve` on a fresh data directory with `args`; returns the child, the API's and
/// the metrics' base URLs (from its standard output) and its standard error.
async fn serve_binary(
    dir: &std::path::Path,
    args: &[&str],
) -> (tokio::process::Child, String, String, tokio::io::Lines<BufReader<tokio::process::ChildStderr>>) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(args)
        .env_remove("STRATA_DATABASE_URL")
        .env_remove("STRATA_SECRET_KEY")
        .env_remove("STRATA_LOG_FORMAT")
        .env_remove("STRATA_METRICS_LISTEN")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run strata serve");
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut api, mut metrics) = (None, None);
    while api.is_none() || metrics.is_none() {
        let line = tokio::time::timeout(Duration::from_secs(30), stdout.next_line()).await.expect("serve starts").unwrap().expect("a line");
        if let Some(rest) = line.strip_prefix("strata listening on ") {
            api = rest.split_whitespace().next().map(str::to_owned);
        }
        if let Some(rest) = line.strip_prefix("metrics: ") {
            metrics = rest.strip_suffix("/metrics").map(str::to_owned);
        }
    }
    let stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    (child, api.unwrap(), metrics.unwrap(), stderr)
}

/// The next line on `stderr` containing `needle`.
async fn stderr_line(stderr: &mut tokio::io::Lines<BufReader<tokio::process::ChildStderr>>, needle: &str) -> String {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let line = stderr.next_line().await.unwrap().expect("the server is still running");
            if line.contains(needle) {
                return line;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no log line with {needle:?}"))
}

#[tokio::test]
async fn serve_logs_text_when_asked_and_answers_metrics_only_on_its_metrics_listener() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, api, metrics, mut stderr) =
        serve_binary(dir.path(), &["--log-format", "text", "--metrics-listen", "127.0.0.1:0"]).await;
    assert_ne!(api, metrics, "a listener of its own");
    let client = reqwest::Client::new();

    assert_eq!(client.get(format!("{api}/healthz")).send().await.unwrap().status(), 200);
    let line = stderr_line(&mut stderr, "/healthz").await;
    assert!(!line.starts_with('{') && line.contains("INFO") && line.contains("request_id=req_"), "a text line: {line}");
    let scrape = client.get(format!("{metrics}/metrics")).send().await.unwrap();
    assert_eq!(scrape.status(), 200);
    let text = scrape.text().await.unwrap();
    let healthz = text.lines().find(|l| l.starts_with("strata_http_requests_total{") && l.contains("route=\"/healthz\""));
    assert!(healthz.is_some_and(|l| l.contains("status=\"200\"") && l.ends_with(" 1")), "{text}");
    let on_api = client.get(format!("{api}/metrics")).send().await.unwrap();
    assert_eq!(on_api.status(), 404, "not on the API listener");
    child.kill().await.unwrap();
}

#[tokio::test]
async fn serve_logs_json_lines_by_default_and_answers_metrics_beside_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, api, metrics, mut stderr) = serve_binary(dir.path(), &[]).await;
    assert_eq!(api, metrics);
    // The start line names the build, the database, the address and what is on.
    let start: Value = serde_json::from_str(&stderr_line(&mut stderr, "\"listening\"").await).expect("a JSON line");
    let f = &start["fields"];
    assert_eq!(f["version"], env!("CARGO_PKG_VERSION"));
    assert!(f["database"].as_str().unwrap().ends_with("strata.db"), "{start}");
    assert_eq!(f["addr"].as_str().map(|a| format!("http://{a}")), Some(api.clone()));
    assert_eq!((f["backend"].as_str(), f["shared_rate_limits"].as_bool(), f["dev"].as_bool()), (Some("sqlite"), Some(false), Some(false)));
    assert_eq!(f["max_in_flight"], 1024);
    let client = reqwest::Client::new();

    assert_eq!(client.get(format!("{api}/healthz")).send().await.unwrap().status(), 200);
    let line: Value = serde_json::from_str(&stderr_line(&mut stderr, "/healthz").await).expect("a JSON line");
    assert_eq!((line["fields"]["route"].as_str(), line["fields"]["status"].as_u64()), (Some("/healthz"), Some(200)));
    let scrape = client.get(format!("{api}/metrics")).send().await.unwrap();
    assert_eq!(scrape.status(), 200);
    assert!(scrape.text().await.unwrap().contains("# TYPE strata_http_requests_total counter"));
    child.kill().await.unwrap();
}
