//! `strata bench webhooks`: commits allocations (at a chosen rate, or as fast as the clients go)
//! on a server whose firehose endpoints all post to one local receiver that answers 200 at once,
//! and measures, per event, the time from the allocation's 2xx to the arrival of its
//! `credits.allocated` delivery; then how long the deliveries take to drain after the load stops.
//! With `--backlog` the endpoints are paused during the load and resumed when it stops, which
//! measures how fast a backlog drains to one receiver (deliveries per second from the resume).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use strata_core::error::{CoreError, Result};
use tokio::sync::{Notify, Semaphore};

use crate::OpenOptions;
use crate::bench::{BenchArgs, Harness, err, ms, quantile};

/// How long the bench waits for a delivery after the previous one before it gives up.
const IDLE_LIMIT: Duration = Duration::from_secs(60);

/// What the receiver saw: each delivery's transfer id and when it arrived.
#[derive(Default)]
struct Arrivals {
    seen: Mutex<Vec<(String, Instant)>>,
    arrived: Notify,
}

async fn receiver(arrivals: Arc<Arrivals>) -> Result<String> {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let arrivals = arrivals.clone();
            async move {
                let at = Instant::now();
                let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                let txn = v["data"]["transferId"].as_str().unwrap_or_default().to_owned();
                if let Ok(mut s) = arrivals.seen.lock() {
                    s.push((txn, at));
                }
                arrivals.arrived.notify_one();
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(err)?;
    let url = format!("http://127.0.0.1:{}/hook", listener.local_addr().map_err(err)?.port());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

/// Sends one allocation; returns its transfer id and when its 2xx arrived.
async fn commit(h: &Harness, n: usize) -> Option<(String, Instant)> {
    let r = h.allocate(n, &format!("bench-wh-{n}")).await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    let at = Instant::now();
    let v: Value = r.json().await.ok()?;
    Some((v["id"].as_str()?.to_owned(), at))
}

async fn set_status(h: &Harness, endpoints: &[String], status: &str) -> Result<()> {
    for e in endpoints {
        let r = h
            .client
            .patch(format!("{}/v1/webhook-endpoints/{e}", h.base))
            .bearer_auth(&h.key)
            .json(&json!({ "status": status }))
            .send()
            .await
            .map_err(err)?;
        if !r.status().is_success() {
            return Err(CoreError::internal(format!("setting the endpoint {status}: {}", r.text().await.unwrap_or_default())));
        }
    }
    Ok(())
}

pub async fn run(opts: &OpenOptions, args: &BenchArgs) -> Result<String> {
    // The receiver listens on loopback.
    let mut opts = opts.clone();
    opts.core.dev_mode = true;
    let h = Arc::new(Harness::start(&opts, args).await?);
    let arrivals = Arc::new(Arrivals::default());
    let url = receiver(arrivals.clone()).await?;
    let mut endpoints = Vec::new();
    for _ in 0..args.endpoints.max(1) {
        let body = json!({ "url": url, "events": ["credits.allocated"], "scope": "all_children" });
        let r = h.client.post(format!("{}/v1/webhook-endpoints", h.base)).bearer_auth(&h.key).json(&body).send().await.map_err(err)?;
        if !r.status().is_success() {
            return Err(CoreError::internal(format!("creating the endpoint: {}", r.text().await.unwrap_or_default())));
        }
        let v: Value = r.json().await.map_err(err)?;
        endpoints.push(v["endpoint"]["id"].as_str().unwrap_or_default().to_owned());
    }
    if args.backlog {
        set_status(&h, &endpoints, "paused").await?;
    }

    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    if args.rate > 0 {
        // Paced: event n is sent at started + n / rate, at most `clients` in flight.
        let in_flight = Arc::new(Semaphore::new(args.clients.max(1)));
        let total = args.rate * args.seconds;
        for n in 0..total {
            tokio::time::sleep_until((started + Duration::from_secs_f64(n as f64 / args.rate as f64)).into()).await;
            let permit = in_flight.clone().acquire_owned().await.map_err(err)?;
            let h = h.clone();
            tasks.push(tokio::spawn(async move {
                let r = commit(&h, n as usize).await;
                drop(permit);
                r.into_iter().collect::<Vec<_>>()
            }));
        }
    } else {
        for c in 0..args.clients {
            let h = h.clone();
            let clients = args.clients;
            tasks.push(tokio::spawn(async move {
                let mut done = Vec::new();
                let mut n = c;
                while Instant::now() < deadline {
                    done.extend(commit(&h, n).await);
                    n += clients;
                }
                done
            }));
        }
    }
    let mut committed: HashMap<String, Instant> = HashMap::new();
    for t in tasks {
        committed.extend(t.await.map_err(err)?);
    }
    let mut load_end = Instant::now();
    if args.backlog {
        // Let the dispatcher turn every event into a (held) delivery first.
        tokio::time::sleep(Duration::from_secs(2)).await;
        load_end = Instant::now();
        set_status(&h, &endpoints, "active").await?;
    }

    // Wait for every delivery (one per event per endpoint), giving up after a minute of silence.
    let expected = committed.len() * args.endpoints.max(1);
    let count = || arrivals.seen.lock().map(|s| s.len()).unwrap_or(0);
    while count() < expected {
        if tokio::time::timeout(IDLE_LIMIT, arrivals.arrived.notified()).await.is_err() {
            break;
        }
    }
    let seen = arrivals.seen.lock().map(|s| s.clone()).unwrap_or_default();
    let h = Arc::into_inner(h).ok_or_else(|| CoreError::internal("a client outlived the run"))?;
    let strata = h.finish().await?;

    let mut latencies: Vec<Duration> =
        seen.iter().filter_map(|(txn, at)| committed.get(txn).map(|c| at.saturating_duration_since(*c))).collect();
    latencies.sort();
    let last = seen.iter().map(|(_, at)| *at).max().unwrap_or(load_end);
    let drain = last.saturating_duration_since(load_end);
    let from = if args.backlog { load_end } else { started };
    let span = last.saturating_duration_since(from).max(Duration::from_millis(1));
    Ok(format!(
        "scenario webhooks on {} ({}, {} endpoint(s), {} clients, {}s): {} events committed ({:.0}/s), {} of {} deliveries arrived, \
         {:.0} deliveries/s; drain after the load stopped {:.2} s; commit→delivery p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        strata.store.backend(),
        match (args.rate, args.backlog) {
            (0, false) => "max speed".to_owned(),
            (0, true) => "max speed, deliveries held until the load stopped".to_owned(),
            (r, false) => format!("{r} events/s"),
            (r, true) => format!("{r} events/s, deliveries held until the load stopped"),
        },
        args.endpoints.max(1),
        args.clients,
        args.seconds,
        committed.len(),
        committed.len() as f64 / load_end.saturating_duration_since(started).as_secs_f64(),
        seen.len(),
        expected,
        seen.len() as f64 / span.as_secs_f64(),
        drain.as_secs_f64(),
        ms(quantile(&latencies, 0.50)),
        ms(quantile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default()),
    ))
}
