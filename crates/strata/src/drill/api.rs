//! The drill's HTTP side: a client of the nodes that counts every request and its status, and
//! the webhook receiver that records every delivery it is sent.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use reqwest::Method;
use serde_json::Value;

use super::processes::Fail;

/// A response, read whole.
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn str(&self, pointer: &str) -> String {
        self.body.pointer(pointer).and_then(Value::as_str).unwrap_or_default().to_owned()
    }

    pub fn code(&self) -> String {
        self.str("/error/code")
    }
}

/// Counts of what was sent and what came back.
#[derive(Default)]
pub struct Tally {
    pub requests: u64,
    pub per_node: Vec<u64>,
    /// Responses by status.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests that got no HTTP response (connection refused or reset, timeout).
    pub transport_errors: u64,
    /// 5xx answers other than the kill switch's 503 (a suspended child refusing a generation).
    pub server_errors: u64,
    /// The first few 5xx answers and transport errors, for the report.
    pub samples: Vec<String>,
}

/// The nodes' base URLs and one shared HTTP client.
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    pub nodes: Arc<Vec<String>>,
    pub tally: Arc<Mutex<Tally>>,
}

/// One request to send. A clone is the same request: a retry sends the same Idempotency-Key.
#[derive(Clone)]
pub struct Req<'a> {
    pub node: usize,
    pub method: Method,
    pub path: String,
    pub key: &'a str,
    pub acting: Option<&'a str>,
    /// The Idempotency-Key, chosen when the request is made.
    pub idem: Option<String>,
    pub body: Option<Value>,
}

impl<'a> Req<'a> {
    pub fn get(node: usize, path: impl Into<String>, key: &'a str) -> Self {
        Req { node, method: Method::GET, path: path.into(), key, acting: None, idem: None, body: None }
    }

    /// A write with a fresh Idempotency-Key.
    pub fn write(node: usize, method: Method, path: impl Into<String>, key: &'a str, body: Option<Value>) -> Self {
        Req { node, method, path: path.into(), key, acting: None, idem: Some(ulid::Ulid::new().to_string()), body }
    }

    pub fn acting(mut self, org: &'a str) -> Self {
        self.acting = Some(org);
        self
    }
}

impl Api {
    pub fn new(nodes: Vec<String>) -> Result<Self, Fail> {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().map_err(|e| e.to_string())?;
        let tally = Tally { per_node: vec![0; nodes.len()], ..Tally::default() };
        Ok(Self { client, nodes: Arc::new(nodes), tally: Arc::new(Mutex::new(tally)) })
    }

    /// Polls `node` with `secret` on `path` every 20 ms until it answers 401; returns how long
    /// after `since` that was, or `None` once `give_up` has passed since then.
    pub async fn until_refused(&self, node: usize, path: &str, secret: &str, since: Instant, give_up: Duration) -> Option<Duration> {
        loop {
            if self.send(Req::get(node, path, secret)).await.map(|r| r.status) == Some(401) {
                return Some(since.elapsed());
            }
            if since.elapsed() > give_up {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends a request (node index modulo the number of nodes) and counts it. `None` when no
    /// HTTP response came back.
    pub async fn send(&self, r: Req<'_>) -> Option<Reply> {
        let node = r.node % self.nodes.len();
        let mut b = self.client.request(r.method.clone(), format!("{}{}", self.nodes[node], r.path)).bearer_auth(r.key);
        if let Some(org) = r.acting {
            b = b.header("X-Layers-Organization", org);
        }
        if let Some(idem) = &r.idem {
            b = b.header("Idempotency-Key", idem);
        }
        if let Some(body) = &r.body {
            b = b.json(body);
        }
        let result = async {
            let resp = b.send().await?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let raw = resp.bytes().await?;
            Ok::<_, reqwest::Error>(Reply { status, headers, body: serde_json::from_slice(&raw).unwrap_or(Value::Null) })
        }
        .await;
        let mut t = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        t.requests += 1;
        t.per_node[node] += 1;
        match result {
            Ok(reply) => {
                *t.statuses.entry(reply.status).or_default() += 1;
                if reply.status >= 500 && reply.code() != "KILL_SWITCH" {
                    t.server_errors += 1;
                    if t.samples.len() < 10 {
                        t.samples.push(format!("node {}: {} {} -> {} {}", node + 1, r.method, r.path, reply.status, reply.body));
                    }
                }
                Some(reply)
            }
            Err(e) => {
                t.transport_errors += 1;
                if t.samples.len() < 10 {
                    t.samples.push(format!("node {}: {} {} -> no response: {e}", node + 1, r.method, r.path));
                }
                None
            }
        }
    }
}

/// One delivery the receiver was sent.
#[derive(Clone, Debug)]
pub struct Receipt {
    pub event_id: String,
    pub event_type: String,
    /// Whether the receiver answered 2xx (a 503 asks for a retry, so a second copy is expected).
    pub accepted: bool,
    /// Milliseconds from the event's `createdAt` to its arrival here.
    pub lag_ms: Option<i64>,
    /// What follows `/hook/` in the URL the endpoint posted to (empty for `/hook`).
    pub tag: String,
    /// When it arrived.
    pub at: std::time::Instant,
}

/// The local webhook receiver: it answers 503 to every `fail_every`-th delivery (to exercise
/// retries across nodes) and 200 to the rest, and records each one.
#[derive(Clone, Default)]
pub struct Receiver {
    pub receipts: Arc<Mutex<Vec<Receipt>>>,
}

impl Receiver {
    /// Serves on a free 127.0.0.1 port until the process ends; returns the hook's URL
    /// (`…/hook`; `…/hook/<tag>` is recorded with its tag).
    pub async fn start(&self, fail_every: usize) -> Result<String, Fail> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| format!("cannot bind the receiver: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let receipts = self.receipts.clone();
        let record = move |tag: String, headers: HeaderMap, body: axum::body::Bytes| {
            let receipts = receipts.clone();
            async move {
                let event_id = headers.get("x-layers-event-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let event_type = body["type"].as_str().unwrap_or_default().to_owned();
                let rfc3339 = &time::format_description::well_known::Rfc3339;
                let created = body["createdAt"].as_str().and_then(|t| time::OffsetDateTime::parse(t, rfc3339).ok());
                let lag_ms = created.map(|t| ((time::OffsetDateTime::now_utc() - t).whole_milliseconds()) as i64);
                let mut r = receipts.lock().unwrap_or_else(|e| e.into_inner());
                let accepted = fail_every == 0 || !(r.len() + 1).is_multiple_of(fail_every);
                r.push(Receipt { event_id, event_type, accepted, lag_ms, tag, at: std::time::Instant::now() });
                if accepted { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }
            }
        };
        let tagged = record.clone();
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| record(String::new(), headers, body)))
            .route(
                "/hook/{*tag}",
                axum::routing::post(
                    move |axum::extract::Path(tag): axum::extract::Path<String>, headers: HeaderMap, body: axum::body::Bytes| {
                        tagged(tag, headers, body)
                    },
                ),
            );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(format!("http://{addr}/hook"))
    }

    pub fn snapshot(&self) -> Vec<Receipt> {
        self.receipts.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
