//! Webhook endpoints and their deliveries (CONTRACT §6): URL checks against SSRF, signing
//! secrets, the two signature schemes (Stripe-style `t=…,v1=…` and Standard Webhooks), and the
//! retry ladder.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::clock::Timestamp;
use crate::error::CoreError;
use crate::event::EventType;
use crate::id::{DeliveryId, EndpointId, EventId, OrgId, ProjectId};
use crate::metadata::Metadata;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum EndpointStatus {
    Active,
    Paused,
    AutoPaused,
}

impl EndpointStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointStatus::Active => "active",
            EndpointStatus::Paused => "paused",
            EndpointStatus::AutoPaused => "auto_paused",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "paused" => Some(Self::Paused),
            "auto_paused" => Some(Self::AutoPaused),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum EndpointScope {
    /// The endpoint's own org's events.
    Own,
    /// The firehose: the org's events and every direct child's.
    AllChildren,
}

impl EndpointScope {
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointScope::Own => "own",
            EndpointScope::AllChildren => "all_children",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "own" => Some(Self::Own),
            "all_children" => Some(Self::AllChildren),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Endpoint {
    pub id: EndpointId,
    pub org_id: OrgId,
    pub project_id: Option<ProjectId>,
    pub url: String,
    pub description: Option<String>,
    pub status: EndpointStatus,
    pub events: Vec<EventType>,
    pub scope: EndpointScope,
    pub metadata: Metadata,
    /// The signing secret, sealed (never stored in the clear).
    pub secret_sealed: String,
    /// During a rotation: the previous secret, sealed, and when it stops signing.
    pub previous_secret_sealed: Option<String>,
    pub previous_expires_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub last_success_at: Option<Timestamp>,
    pub last_failure_at: Option<Timestamp>,
    pub consecutive_failures: i64,
    /// The newest event when the endpoint was made; only later events reach it.
    pub start_seq: i64,
    pub seq: i64,
}

impl Endpoint {
    /// Whether an event of `ty` in `project` is one this endpoint asked for.
    pub fn wants(&self, ty: EventType, project: Option<ProjectId>) -> bool {
        self.events.contains(&ty) && self.project_id.is_none_or(|p| project == Some(p))
    }

    /// Applies recorded attempt outcomes (`true` = delivered), in the order they were recorded, to
    /// the endpoint's health: a success resets `consecutive_failures`; a failure counts only while
    /// the endpoint is active (attempts still in flight when it was paused do not), and the
    /// [`AUTO_PAUSE_AFTER`]-th failure in a row auto-pauses it (CONTRACT §6). Returns whether these
    /// outcomes auto-paused it.
    pub fn record_outcomes(&mut self, outcomes: &[bool], now: Timestamp) -> bool {
        let mut paused = false;
        for &delivered in outcomes {
            if delivered {
                self.last_success_at = Some(now);
                self.consecutive_failures = 0;
                continue;
            }
            self.last_failure_at = Some(now);
            if self.status == EndpointStatus::Active {
                self.consecutive_failures += 1;
                if self.consecutive_failures >= AUTO_PAUSE_AFTER {
                    self.status = EndpointStatus::AutoPaused;
                    paused = true;
                }
            }
        }
        paused
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DeliveryStatus {
    Pending,
    Delivering,
    Delivered,
    Failed,
    Abandoned,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivering => "delivering",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Abandoned => "abandoned",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "delivering" => Some(Self::Delivering),
            "delivered" => Some(Self::Delivered),
            "failed" => Some(Self::Failed),
            "abandoned" => Some(Self::Abandoned),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Delivery {
    pub id: DeliveryId,
    pub endpoint_id: EndpointId,
    /// The org whose event this is (a firehose endpoint receives its children's).
    pub event_org_id: OrgId,
    pub event_id: EventId,
    pub event_type: EventType,
    /// The exact body sent on every attempt.
    pub body: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub next_retry_at: Option<Timestamp>,
    pub delivered_at: Option<Timestamp>,
    pub abandoned_at: Option<Timestamp>,
    pub last_response_status: Option<i64>,
    pub last_response_at: Option<Timestamp>,
    pub last_error: Option<String>,
    pub replay_of: Option<DeliveryId>,
    pub created_at: Timestamp,
    pub seq: i64,
}

/// One HTTP attempt of a delivery, kept with it for `GET /v1/webhook-deliveries/:id`.
#[derive(Clone, Debug)]
pub struct DeliveryAttempt {
    pub delivery_id: DeliveryId,
    /// When the request started.
    pub attempted_at: Timestamp,
    /// From the start of the request to its answer or error, in milliseconds.
    pub duration_ms: i64,
    /// The HTTP status the endpoint answered, if it answered.
    pub response_status: Option<i64>,
    /// Why the attempt failed (timeout, network error, non-2xx status); `None` on a 2xx.
    pub error: Option<String>,
    /// The first KiB of the response body (cut at a UTF-8 boundary).
    pub response_body_excerpt: Option<String>,
    pub seq: i64,
}

/// How much of a response body an attempt keeps.
pub const RESPONSE_EXCERPT_BYTES: usize = 1024;

/// The error of an attempt that got no answer in time.
pub const TIMED_OUT: &str = "timed out";

/// The first `RESPONSE_EXCERPT_BYTES` of a body that are valid UTF-8.
pub fn response_excerpt(body: &[u8]) -> String {
    let head = &body[..body.len().min(RESPONSE_EXCERPT_BYTES)];
    match std::str::from_utf8(head) {
        Ok(s) => s.to_owned(),
        Err(e) => String::from_utf8_lossy(&head[..e.valid_up_to()]).into_owned(),
    }
}

/// The default retry ladder: the wait before each attempt (8 attempts).
pub const DEFAULT_LADDER_SECS: [i64; 8] = [0, 30, 60, 300, 900, 3_600, 21_600, 86_400];
/// Consecutive failures after which an endpoint is auto-paused.
pub const AUTO_PAUSE_AFTER: i64 = 20;

/// Parses `STRATA_WEBHOOK_RETRY_SCHEDULE` (e.g. `0s,1s,2s`, also `5m`, `1h`) into milliseconds.
pub fn parse_ladder(s: &str) -> Option<Vec<i64>> {
    let steps: Option<Vec<i64>> = s
        .split(',')
        .map(|p| {
            let p = p.trim();
            let (n, unit) = p.split_at(p.find(|c: char| !c.is_ascii_digit())?);
            let n: i64 = n.parse().ok()?;
            Some(
                n * match unit {
                    "ms" => 1,
                    "s" => 1_000,
                    "m" => 60_000,
                    "h" => 3_600_000,
                    _ => return None,
                },
            )
        })
        .collect();
    steps.filter(|v| !v.is_empty())
}

/// Checks an endpoint URL: https anywhere public; http only to loopback in dev mode; private,
/// link-local and metadata addresses only when the operator allows them.
pub fn check_url(raw: &str, dev: bool, allow_private: bool) -> Result<String, CoreError> {
    let bad = |why: &str| CoreError::validation("url", why.to_owned());
    if raw.len() > 2048 {
        return Err(bad("must be at most 2048 characters"));
    }
    let url = url::Url::parse(raw).map_err(|_| bad("must be an absolute https URL"))?;
    let host = url.host().ok_or_else(|| bad("must have a host"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not carry credentials"));
    }
    // The WHATWG parser has already percent-decoded the host, mapped it through IDNA (so
    // full-width and mixed-case letters are folded) and read every IPv4 spelling (`0x7f.1`,
    // `2130706433`, `127.0.0.1.`) as an address. What is left is DNS's root label: `localhost.`
    // names the same host as `localhost`, so the check reads the name without trailing dots.
    let ip = match host {
        url::Host::Ipv4(a) => Some(IpAddr::V4(a)),
        url::Host::Ipv6(a) => Some(IpAddr::V6(a)),
        url::Host::Domain(d) => {
            let name = d.trim_end_matches('.').to_ascii_lowercase();
            if name.is_empty() {
                return Err(bad("must have a host"));
            }
            (name == "localhost" || name.ends_with(".localhost")).then_some(IpAddr::V4(Ipv4Addr::LOCALHOST))
        }
    };
    let loopback = ip.is_some_and(|a| a.is_loopback());
    match url.scheme() {
        "https" => {}
        "http" if dev && loopback => {}
        "http" => return Err(bad("must use https (http is allowed only to localhost, in dev mode)")),
        _ => return Err(bad("must be an https URL")),
    }
    if let Some(a) = ip {
        let internal = is_internal(a);
        let allowed = allow_private || (dev && a.is_loopback());
        if internal && !allowed {
            return Err(bad("must not point at a private, loopback, link-local or metadata address"));
        }
    }
    Ok(url.to_string())
}

/// Addresses a webhook must not reach unless the operator allows it: private, loopback,
/// link-local, shared, benchmarking, reserved and multicast ranges, and IPv6 forms that embed an
/// IPv4 address (mapped, compatible, NAT64, 6to4), judged by the address they embed.
pub fn is_internal(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v) => {
            let [a, b, c, _] = v.octets();
            v.is_private()
                || v.is_loopback()
                || v.is_link_local()
                || v.is_unspecified()
                || v.is_broadcast()
                || v.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
                || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || a >= 240 // reserved
        }
        IpAddr::V6(v) => {
            let seg = v.segments();
            let embedded = |hi: u16, lo: u16| IpAddr::V4(Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8));
            v.is_loopback()
                || v.is_unspecified()
                || v.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00 // unique local
                || (seg[0] & 0xffc0) == 0xfe80 // link-local
                || (seg[0] & 0xffc0) == 0xfec0 // site-local
                || v.to_ipv4_mapped().is_some_and(|m| is_internal(IpAddr::V4(m)))
                || (seg[..6] == [0, 0, 0, 0, 0, 0] && is_internal(embedded(seg[6], seg[7]))) // IPv4-compatible
                || (seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] && is_internal(embedded(seg[6], seg[7]))) // NAT64
                || (seg[0] == 0x2002 && is_internal(embedded(seg[1], seg[2]))) // 6to4
                || v == Ipv6Addr::LOCALHOST
        }
    }
}

/// A fresh signing secret: `whsec_` and 32 random bytes, base64.
pub fn new_signing_secret() -> String {
    let raw: [u8; 32] = rand::random();
    format!("whsec_{}", STANDARD.encode(raw))
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length works for HMAC");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

/// The Stripe-style MAC: hex HMAC-SHA256 keyed by the whole `whsec_…` string over `"<t>.<body>"`.
pub fn stripe_mac(secret: &str, t: i64, body: &[u8]) -> String {
    hmac(secret.as_bytes(), &[t.to_string().as_bytes(), b".", body]).iter().map(|b| format!("{b:02x}")).collect()
}

/// The Standard Webhooks MAC: base64 HMAC-SHA256 keyed by the bytes after `whsec_` over
/// `"<id>.<t>.<body>"`.
pub fn standard_mac(secret: &str, id: &str, t: i64, body: &[u8]) -> String {
    let key = STANDARD.decode(secret.trim_start_matches("whsec_")).unwrap_or_default();
    STANDARD.encode(hmac(&key, &[id.as_bytes(), b".", t.to_string().as_bytes(), b".", body]))
}

/// The signature headers of one attempt, signed by every active secret.
pub fn signature_headers(secrets: &[String], event_id: &str, t: i64, body: &[u8]) -> (String, String) {
    let stripe = std::iter::once(format!("t={t}"))
        .chain(secrets.iter().map(|s| format!("v1={}", stripe_mac(s, t, body))))
        .collect::<Vec<_>>()
        .join(",");
    let standard = secrets.iter().map(|s| format!("v1,{}", standard_mac(s, event_id, t, body))).collect::<Vec<_>>().join(" ");
    (stripe, standard)
}

/// The delivered body: `{"id", "type", "createdAt", "data"}` (plus `replayOf` on a replay).
pub fn delivery_body(event_id: &str, ty: EventType, created_at: Timestamp, data: &Value, replay_of: Option<&str>) -> String {
    let mut body = serde_json::json!({ "id": event_id, "type": ty.as_str(), "createdAt": created_at, "data": data });
    if let Some(r) = replay_of {
        body["replayOf"] = Value::String(r.to_owned());
    }
    body.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(status: EndpointStatus, failures: i64) -> Endpoint {
        Endpoint {
            id: EndpointId::at(0),
            org_id: OrgId::new(),
            project_id: None,
            url: "https://example.com/hook".into(),
            description: None,
            status,
            events: vec![],
            scope: EndpointScope::Own,
            metadata: Default::default(),
            secret_sealed: String::new(),
            previous_secret_sealed: None,
            previous_expires_at: None,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
            last_success_at: None,
            last_failure_at: None,
            consecutive_failures: failures,
            start_seq: 0,
            seq: 0,
        }
    }

    #[test]
    fn outcomes_count_in_order_and_the_twentieth_failure_in_a_row_auto_pauses() {
        let now = Timestamp(5);
        // A success resets the count; only the failures after it remain.
        let mut e = endpoint(EndpointStatus::Active, 7);
        assert!(!e.record_outcomes(&[false, true, false, false], now));
        assert_eq!((e.consecutive_failures, e.status), (2, EndpointStatus::Active));
        assert_eq!((e.last_success_at, e.last_failure_at), (Some(now), Some(now)));
        // The 20th in a row pauses, and later failures of the batch no longer count.
        let mut e = endpoint(EndpointStatus::Active, AUTO_PAUSE_AFTER - 2);
        assert!(e.record_outcomes(&[false, false, false], now));
        assert_eq!((e.consecutive_failures, e.status), (AUTO_PAUSE_AFTER, EndpointStatus::AutoPaused));
        // A pause reached before a success in the same batch stays; the success resets the count.
        let mut e = endpoint(EndpointStatus::Active, AUTO_PAUSE_AFTER - 1);
        assert!(e.record_outcomes(&[false, true], now));
        assert_eq!((e.consecutive_failures, e.status), (0, EndpointStatus::AutoPaused));
        // Attempts in flight when the endpoint was paused by hand do not count.
        let mut e = endpoint(EndpointStatus::Paused, 3);
        assert!(!e.record_outcomes(&[false, false], now));
        assert_eq!((e.consecutive_failures, e.status), (3, EndpointStatus::Paused));
    }

    #[test]
    fn urls_are_checked_against_ssrf() {
        assert!(check_url("https://crm.example.com/hooks", false, false).is_ok());
        for bad in [
            "http://crm.example.com/hooks",
            "ftp://crm.example.com",
            "https://10.0.0.5/x",
            "https://169.254.169.254/latest",
            "https://[::1]/x",
            "https://127.0.0.1/x",
            "https://[64:ff9b::a9fe:a9fe]/x",
            "https://[2002:a00:1::]/x",
            "https://[::ffff:10.0.0.1]/x",
            "https://198.18.0.1/x",
            "https://240.0.0.1/x",
            "https://user:pw@crm.example.com/",
            "not a url",
        ] {
            assert!(check_url(bad, false, false).is_err(), "{bad}");
        }
        assert!(check_url("http://localhost:9000/hook", true, false).is_ok());
        assert!(check_url("http://LocalHost.:9000/hook", true, false).is_ok());
        assert!(check_url("https://crm.example.com./hooks", false, false).is_ok());
        assert!(check_url("http://127.0.0.1:9000/hook", true, false).is_ok());
        assert!(check_url("http://10.0.0.5/x", true, false).is_err());
        assert!(check_url("https://10.0.0.5/x", false, true).is_ok());
    }

    #[test]
    fn every_spelling_of_an_internal_host_is_refused() {
        // Each names loopback or a private address through a spelling a naive check misses:
        // the DNS root label, letter case, full-width letters (IDNA), percent-encoding, and the
        // hexadecimal, integer and short IPv4 forms.
        for bad in [
            "https://localhost./x",
            "https://LOCALHOST/x",
            "https://LocalHost../x",
            "https://api.localhost./x",
            "https://\u{ff4c}\u{ff4f}\u{ff43}\u{ff41}\u{ff4c}\u{ff48}\u{ff4f}\u{ff53}\u{ff54}/x",
            "https://%6c%6f%63%61%6c%68%6f%73%74/x",
            "https://127.0.0.1./x",
            "https://0x7f.1/x",
            "https://2130706433/x",
            "https://0177.0.0.1/x",
            "https://10.1/x",
            "https://[::ffff:127.0.0.1]/x",
            "https://./x",
        ] {
            let got = check_url(bad, false, false);
            assert!(got.is_err(), "{bad} was accepted as {got:?}");
        }
    }

    #[test]
    fn a_response_excerpt_is_one_kib_cut_at_a_character_boundary() {
        assert_eq!(response_excerpt(b"ok"), "ok");
        let long = "é".repeat(1000); // 2 bytes each
        let cut = response_excerpt(long.as_bytes());
        assert_eq!(cut.len(), RESPONSE_EXCERPT_BYTES);
        let odd = format!("a{long}");
        assert_eq!(response_excerpt(odd.as_bytes()).len(), RESPONSE_EXCERPT_BYTES - 1, "a split character is left out");
    }

    #[test]
    fn the_ladder_parses_units() {
        assert_eq!(parse_ladder("0s,1s,2s"), Some(vec![0, 1000, 2000]));
        assert_eq!(parse_ladder("5m, 1h, 250ms"), Some(vec![300_000, 3_600_000, 250]));
        assert_eq!(parse_ladder("soon"), None);
    }

    #[test]
    fn both_signature_schemes_verify_independently() {
        let secret = new_signing_secret();
        let body = br#"{"id":"evt_1"}"#;
        let (stripe, standard) = signature_headers(std::slice::from_ref(&secret), "evt_1", 1_700_000_000, body);
        assert_eq!(stripe, format!("t=1700000000,v1={}", stripe_mac(&secret, 1_700_000_000, body)));
        // Standard Webhooks: HMAC keyed by the decoded secret bytes.
        let key = STANDARD.decode(&secret["whsec_".len()..]).unwrap();
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap();
        m.update(b"evt_1.1700000000.");
        m.update(body);
        assert_eq!(standard, format!("v1,{}", STANDARD.encode(m.finalize().into_bytes())));
    }
}
