//! Graceful shutdown (SIGTERM or Ctrl-C in `strata serve`): new connections are refused from the
//! signal on, requests in flight finish and are answered, a request still running at the drain
//! timeout is cut (never acknowledged), and no acknowledged write is lost.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;

use crate::helpers::{Served, TestApp, captured_logs, manual_cadence, serve_test_with};

/// Starts a second server on `app`'s database with this drain timeout; returns its base URL, the
/// trigger that plays the signal, and the running server.
async fn server(app: &TestApp, drain: Duration) -> Served {
    serve_test_with(app.strata.clone(), strata::ServeOptions { cadence: manual_cadence(), drain, ..Default::default() }).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_still_running_at_the_drain_timeout_is_cut_and_the_server_exits() {
    let app = TestApp::spawn().await;
    let (base, signal, served) = server(&app, Duration::from_millis(300)).await;
    // A request whose body never finishes arriving: its handler waits for the rest.
    let addr = base.trim_start_matches("http://");
    let mut stalled = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/projects HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\":",
        app.admin_key
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    // A complete request on another connection is answered meanwhile.
    let whoami = app.client.get(format!("{base}/v1/whoami")).bearer_auth(&app.admin_key).send().await.unwrap();
    assert_eq!(whoami.status(), 200);

    let signalled_at = Instant::now();
    signal.send(()).unwrap();
    let exited = tokio::time::timeout(Duration::from_secs(10), served).await.expect("serve returns after the drain timeout");
    exited.unwrap().unwrap();
    let took = signalled_at.elapsed();
    assert!(took < Duration::from_secs(5), "the stalled request holds the server only for the drain timeout (took {took:?})");
    assert!(captured_logs().contains("requests still in flight after the drain timeout were cut"));
    // From the signal on, nothing is accepted.
    let refused = reqwest::Client::new().get(format!("{base}/healthz")).timeout(Duration::from_secs(2)).send().await;
    assert!(refused.is_err(), "a connection after shutdown is refused");
    // The cut request left nothing behind.
    let r = app.get("/v1/projects").key(&app.admin_key).send().await;
    assert_eq!(r.assert_status(200)["items"].as_array().unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_acknowledged_before_a_shutdown_under_load_is_kept() {
    let app = TestApp::spawn().await;
    app.grant(&app.partner_org, 1_000_000).await;
    let child = app.create_child("Acme").await;
    let (base, signal, served) = server(&app, strata::DEFAULT_DRAIN).await;
    let acked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let enough = Arc::new(Notify::new());
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (base, key, child) = (base.clone(), app.admin_key.clone(), child.clone());
            let (acked, count, enough) = (acked.clone(), count.clone(), enough.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                loop {
                    let sent = http
                        .post(format!("{base}/v1/organizations/{child}/credits/allocate"))
                        .bearer_auth(&key)
                        .header("Idempotency-Key", ulid::Ulid::new().to_string())
                        .json(&json!({ "credits": 1 }))
                        .send()
                        .await;
                    let Ok(resp) = sent else { return }; // refused: the server is stopping
                    if resp.status() != 201 {
                        continue;
                    }
                    let Ok(body) = resp.json::<serde_json::Value>().await else { return };
                    acked.lock().unwrap().push(body["id"].as_str().unwrap().to_owned());
                    if count.fetch_add(1, Ordering::SeqCst) + 1 == 24 {
                        enough.notify_one();
                    }
                }
            })
        })
        .collect();
    enough.notified().await;
    signal.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(20), served).await.expect("serve drains and returns").unwrap().unwrap();
    for c in clients {
        tokio::time::timeout(Duration::from_secs(10), c).await.expect("clients stop once refused").unwrap();
    }

    // Every acknowledged allocation is in the child's ledger; the wallet holds what committed.
    let acked: HashSet<String> = acked.lock().unwrap().iter().cloned().collect();
    assert!(acked.len() >= 24);
    let mut recorded = HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = match &cursor {
            Some(c) => format!("/v1/organizations/{child}/credits/events?eventType=allocation&limit=100&cursor={c}"),
            None => format!("/v1/organizations/{child}/credits/events?eventType=allocation&limit=100"),
        };
        let r = app.get(&page).key(&app.admin_key).send().await;
        let b = r.assert_status(200);
        for e in b["items"].as_array().unwrap() {
            recorded.insert(e["metadata"]["transferId"].as_str().unwrap().to_owned());
        }
        match b["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert!(acked.is_subset(&recorded), "acknowledged but missing: {:?}", acked.difference(&recorded).collect::<Vec<_>>());
    let balance = app.get(&format!("/v1/organizations/{child}/credits")).key(&app.admin_key).send().await;
    assert_eq!(balance.assert_status(200)["balance"].as_u64().unwrap() as usize, recorded.len());
    app.assert_ledger().await;
}
