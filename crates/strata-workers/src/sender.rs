//! The HTTP side of webhook delivery: a reqwest client with a timeout, no redirects, and a DNS
//! resolver that refuses private, loopback and link-local addresses (a public name that
//! resolves inward is the classic SSRF) unless the operator or dev mode allows them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use strata_core::service::{SendOutcome, WebhookSender};
use strata_core::webhook::{RESPONSE_EXCERPT_BYTES, TIMED_OUT, is_internal, response_excerpt};

struct GuardedResolver {
    allow_private: bool,
    allow_loopback: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let (allow_private, allow_loopback) = (self.allow_private, self.allow_loopback);
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let ok: Vec<SocketAddr> =
                addrs.into_iter().filter(|a| allow_private || !is_internal(a.ip()) || (allow_loopback && a.ip().is_loopback())).collect();
            if ok.is_empty() {
                return Err("the webhook host resolves only to addresses strata may not reach".into());
            }
            Ok(Box::new(ok.into_iter()) as Addrs)
        })
    }
}

/// Posts deliveries over HTTP(S). One client serves every endpoint, so connections to an
/// endpoint are kept alive and reused between its deliveries.
pub struct HttpSender {
    client: reqwest::Client,
}

impl HttpSender {
    /// A sender whose attempts time out after 10 s.
    pub fn new(allow_private: bool, dev_mode: bool) -> Self {
        Self::with_timeout(allow_private, dev_mode, Duration::from_secs(10))
    }

    /// A sender whose attempts time out after `timeout` (connecting, sending and reading the
    /// answer's first KiB).
    pub fn with_timeout(allow_private: bool, dev_mode: bool, timeout: Duration) -> Self {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve the host itself, around the guard.
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver { allow_private, allow_loopback: dev_mode }))
            .build()
            .expect("the webhook HTTP client builds (rustls, no platform dependencies)");
        Self { client }
    }
}

#[async_trait]
impl WebhookSender for HttpSender {
    async fn post(&self, url: &str, headers: Vec<(String, String)>, body: String) -> SendOutcome {
        let mut req = self.client.post(url).body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let failed = |e: reqwest::Error| {
            if e.is_timeout() {
                SendOutcome::Error(TIMED_OUT.into())
            } else {
                SendOutcome::Error(format!(
                    "could not reach the endpoint: {}",
                    std::error::Error::source(&e).map_or_else(|| e.to_string(), ToString::to_string)
                ))
            }
        };
        let mut resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return failed(e),
        };
        let status = resp.status().as_u16();
        // Read the answer's first KiB only; a body read to its end lets the connection be reused.
        let mut head = Vec::new();
        while head.len() < RESPONSE_EXCERPT_BYTES {
            match resp.chunk().await {
                Ok(Some(c)) => head.extend_from_slice(&c),
                Ok(None) => break,
                // The status is the answer; a body cut short does not change it.
                Err(_) => break,
            }
        }
        SendOutcome::Response { status, body_excerpt: response_excerpt(&head) }
    }
}
