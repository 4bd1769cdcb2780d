//! When the database goes away, or more requests arrive than the server admits, a request fails
//! fast with 503 SERVICE_UNAVAILABLE and `Retry-After` (CONTRACT §1) instead of hanging; nothing
//! is half-applied; and service resumes by itself when the database is back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use strata_core::clock::SystemClock;
use strata_store::DbTimeouts;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::helpers::{Resp, TestApp, serve_test_with};

/// A TCP proxy to PostgreSQL that the test can cut (every open connection dropped, new ones
/// refused at once) and restore, on a port of its own: never the machine's shared server.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    cut: Arc<Notify>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (up, cut) = (Arc::new(AtomicBool::new(true)), Arc::new(Notify::new()));
        let (up2, cut2) = (up.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: the connection closes at once
                }
                let (upstream, cut) = (upstream.clone(), cut2.clone());
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        () = cut.notified() => {}
                    }
                });
            }
        });
        Self { port, up, cut }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.notify_waiters();
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// Sends `req`; returns the response, read whole, and how long the answer took.
async fn call(req: reqwest::RequestBuilder) -> (Resp, Duration) {
    let started = Instant::now();
    let r = req.send().await.expect("the server answers");
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    let raw = r.bytes().await.unwrap().to_vec();
    let body = serde_json::from_slice(&raw).unwrap_or(serde_json::Value::Null);
    (Resp { status, headers, raw, body }, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_postgresql_is_a_fast_503_and_service_resumes_when_it_returns() {
    let Ok(base_url) = std::env::var("STRATA_TEST_DATABASE_URL") else {
        return crate::helpers::skip("PostgreSQL outage: STRATA_TEST_DATABASE_URL is not set");
    };
    let direct = crate::helpers::fresh_pg_database(&base_url).await;
    let mut parsed = url::Url::parse(&direct).unwrap();
    let upstream = format!("{}:{}", parsed.host_str().unwrap(), parsed.port().unwrap_or(5432));
    let proxy = Proxy::start(upstream).await;
    parsed.set_port(Some(proxy.port)).unwrap();
    let opts = strata::OpenOptions {
        backend: strata::StoreBackend::Postgres { url: parsed.to_string() },
        secret_hex: Some(strata_core::cursor::ServerSecret::generate().to_hex()),
        previous_secret_hex: None,
        core: Default::default(),
        db: DbTimeouts { acquire: Duration::from_secs(1), statement: Some(Duration::from_secs(2)) },
    };
    let strata = strata::open(&opts, Arc::new(SystemClock)).await.unwrap();
    let created = strata.bootstrap("Outage Co").await.unwrap().unwrap();
    strata.grant_credits(created.org.id, 1_000, strata_core::credits::GrantKind::Grant).await.unwrap();
    let key = created.secret.expose().to_owned();
    let (base, stop, served) = serve_test_with(strata.clone(), strata::ServeOptions::default()).await;
    let http = reqwest::Client::new();
    let create = |name: &str| http.post(format!("{base}/v1/organizations")).bearer_auth(&key).json(&json!({ "name": name }));
    let (r, _) = call(create("Before")).await;
    r.assert_status(201);

    proxy.cut();
    for attempt in 0..3 {
        let (r, took) = call(create(&format!("During {attempt}")).header("Idempotency-Key", format!("outage-{attempt}"))).await;
        r.assert_error(503, "SERVICE_UNAVAILABLE");
        assert!(took < Duration::from_secs(2), "failed in {took:?}, not within 2 s");
        assert_eq!(r.header("retry-after"), Some("1"));
        assert!(!r.body["error"]["message"].as_str().unwrap().contains("127.0.0.1"), "{}", r.body);
    }
    let (ready, took) = call(http.get(format!("{base}/readyz"))).await;
    assert_eq!(ready.status, 503);
    assert!(took < Duration::from_secs(2));
    let (health, _) = call(http.get(format!("{base}/healthz"))).await;
    assert_eq!(health.status, 200, "the process itself is up");

    proxy.restore();
    let back = Instant::now();
    loop {
        let (r, _) = call(http.get(format!("{base}/readyz"))).await;
        if r.status == 200 {
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(5), "not ready again within 5 s of the database returning");
        tokio::task::yield_now().await;
    }
    // A retry of a write that failed during the outage succeeds once, under its original key.
    let (r, _) = call(create("During 0").header("Idempotency-Key", "outage-0")).await;
    r.assert_status(201);
    let (again, _) = call(create("During 0").header("Idempotency-Key", "outage-0")).await;
    assert_eq!((again.status, again.header("idempotent-replayed")), (201, Some("true")));
    // Nothing was half-applied: the two children that answered 201, and nothing else.
    let (list, _) = call(http.get(format!("{base}/v1/organizations")).bearer_auth(&key)).await;
    let names: Vec<&str> = list.assert_status(200)["items"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["During 0", "Before"]);
    let report = strata.check_ledger().await.unwrap();
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    let _ = stop.send(());
    let _ = served.await;
}

#[tokio::test]
async fn a_sqlite_database_that_fails_writes_is_a_503_and_recovers() {
    let app = TestApp::spawn().await;
    let strata::StoreBackend::Sqlite { dir } = &app.backend else {
        return; // The PostgreSQL outage has its own test.
    };
    app.create_child("Before").await;
    strata_store::faults::set_down(dir, true);
    let r = app.post("/v1/organizations").key(&app.admin_key).idem("down-1").json(&json!({ "name": "During" })).send().await;
    r.assert_error(503, "SERVICE_UNAVAILABLE");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(app.get("/readyz").send().await.status, 503);
    strata_store::faults::set_down(dir, false);
    assert_eq!(app.get("/readyz").send().await.status, 200);
    // The key was not spent on the failure: the retry does the work once.
    let r = app.post("/v1/organizations").key(&app.admin_key).idem("down-1").json(&json!({ "name": "During" })).send().await;
    r.assert_status(201);
    let list = app.get("/v1/organizations").key(&app.admin_key).send().await;
    assert_eq!(list.assert_status(200)["items"].as_array().unwrap().len(), 2);
    app.assert_ledger().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_in_flight_bound_requests_are_shed_with_503_then_served_again() {
    let app = TestApp::spawn().await;
    let (base, stop, served) = serve_test_with(app.strata.clone(), strata::ServeOptions { max_in_flight: 2, ..Default::default() }).await;
    let addr = base.trim_start_matches("http://").to_owned();
    // Two requests whose bodies never finish hold both permits.
    let stall = || async {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST /v1/projects HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{",
            app.admin_key
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s
    };
    let mut stalled = vec![stall().await, stall().await];
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let shed = loop {
        let (r, took) = call(http.get(format!("{base}/v1/whoami")).bearer_auth(&app.admin_key)).await;
        if r.status == 503 {
            break (r, took);
        }
        // A probe that reached the server before a stalled request took its permit gets the
        // stalled request shed instead (under load, 4 runs in 40 were so): that one has its
        // answer; a new one takes its place, and takes the permit once the probe is done.
        for s in stalled.iter_mut() {
            let mut buf = [0u8; 64];
            if matches!(s.try_read(&mut buf), Ok(n) if n > 0) {
                *s = stall().await;
            }
        }
        if Instant::now() >= deadline {
            // Say whether a stalled request was answered early (its permit then came back).
            let early: Vec<String> = stalled
                .iter()
                .map(|s| {
                    let mut buf = [0u8; 512];
                    match s.try_read(&mut buf) {
                        Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
                        Err(e) => format!("no answer ({e})"),
                    }
                })
                .collect();
            panic!("never shed past the bound; the last answer: {} {}; the stalled requests: {early:?}", r.status, r.body);
        }
        tokio::task::yield_now().await;
    };
    let (r, took) = shed;
    r.assert_error(503, "SERVICE_UNAVAILABLE");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(r.header("x-request-id").is_some());
    assert!(took < Duration::from_millis(500), "a shed request is answered at once (took {took:?})");
    let (health, _) = call(http.get(format!("{base}/healthz"))).await;
    assert_eq!(health.status, 200, "health checks are never shed");
    // The stalled clients go away: their permits come back and requests are served again.
    drop(stalled);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (r, _) = call(http.get(format!("{base}/v1/whoami")).bearer_auth(&app.admin_key)).await;
        if r.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "service did not recover after the load went away");
        tokio::task::yield_now().await;
    }
    let _ = stop.send(());
    let _ = served.await;
}
