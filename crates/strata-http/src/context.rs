//! The outermost middleware: gives every request its `req_` id and a tracing span (request id,
//! method, route template; the org and key once authenticated), logs one line per request
//! (never a header or a body; a 500 with its cause, once), counts it by route template, method
//! and status, finishes error envelopes and sets `X-Request-Id` on every response.
//!
//! The span is at `debug`: at `info` the subscriber's work for it cost a tenth of a whoami's
//! CPU, so by default only the request's own line (which repeats every field) is written.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::Map;
use strata_core::id::{ApiKeyId, OrgId, RequestId};
use strata_core::service::Caller;
use strata_core::telemetry::{HTTP_LATENCY, HTTP_REQUESTS};
use tracing::Instrument;
use tracing::field::Empty;

use crate::AppState;
use crate::error::PendingError;
use crate::extract::RateSlot;

/// Where the auth extractor leaves who the caller is, for the request's log line.
#[derive(Clone, Default)]
pub(crate) struct CallerSlot(Arc<OnceLock<(OrgId, ApiKeyId)>>);

/// Notes the authenticated caller of the request being served: in its log line and its span
/// (so every line logged inside the request carries them too). The org is the one the request
/// acts in. Never the secret.
pub(crate) fn note_caller(extensions: &axum::http::Extensions, caller: &Caller) {
    if let Some(slot) = extensions.get::<CallerSlot>() {
        let _ = slot.0.set((caller.org_id(), caller.key.id));
    }
    let span = tracing::Span::current();
    span.record("org_id", tracing::field::display(caller.org_id()));
    span.record("key_id", tracing::field::display(caller.key.id));
}

/// The error code of a response whose body was written elsewhere (a failure stored under an
/// Idempotency-Key and answered as it will be replayed), for the log line.
#[derive(Clone, Copy)]
pub(crate) struct ErrorCode(pub &'static str);

pub(crate) async fn request_context(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = RequestId::at(app.strata.now().millis());
    let method = req.method().clone();
    // The template (`/v1/organizations/{orgId}`), never the raw path, labels the metrics.
    let route = req.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let path = req.uri().path().to_owned();
    req.extensions_mut().insert(request_id);
    let slot = RateSlot::default();
    req.extensions_mut().insert(slot.clone());
    let caller = CallerSlot::default();
    req.extensions_mut().insert(caller.clone());
    let span = tracing::debug_span!("request", request_id = %request_id, method = %method, route, org_id = Empty, key_id = Empty);
    let mut resp = next.run(req).instrument(span).await;
    // A 429 carries the limit that refused it; any other answer to a live key, the bucket's
    // standing as the auth extractor left it.
    let refused = resp.extensions().get::<strata_core::ratelimit::RateInfo>().copied();
    let rate = refused.or_else(|| slot.0.lock().ok().and_then(|s| *s));
    if let Some(info) = rate {
        let h = resp.headers_mut();
        h.insert("x-ratelimit-endpoint-class", HeaderValue::from_static(info.class.as_str()));
        for (name, value) in [
            ("x-ratelimit-limit", u64::from(info.limit)),
            ("x-ratelimit-remaining", u64::from(info.remaining)),
            ("x-ratelimit-reset", info.reset_secs),
        ] {
            if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
                h.insert(name, v);
            }
        }
    }

    let pending = resp.extensions_mut().remove::<PendingError>().or_else(|| framework_error(&resp));
    let mut error_code = resp.extensions().get::<ErrorCode>().map(|c| c.0);
    let mut internal = None;
    if let Some(err) = pending {
        let status = resp.status();
        let mut headers = std::mem::take(resp.headers_mut());
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.remove(header::CONTENT_LENGTH);
        resp = Response::new(Body::from(err.body(request_id)));
        *resp.status_mut() = status;
        *resp.headers_mut() = headers;
        error_code = Some(err.code);
        internal = err.internal;
    }
    if let Ok(v) = HeaderValue::from_str(&request_id.to_string()) {
        resp.headers_mut().insert("x-request-id", v);
    }
    let status = resp.status();
    let elapsed = started.elapsed();
    let method = method_label(&method);
    metrics::counter!(HTTP_REQUESTS, "route" => route.to_owned(), "method" => method, "status" => status.as_u16().to_string()).increment(1);
    metrics::histogram!(HTTP_LATENCY, "route" => route.to_owned(), "method" => method).record(elapsed.as_secs_f64());

    let (org_id, key_id) =
        caller.0.get().map_or((None, None), |(o, k)| (Some(tracing::field::display(o)), Some(tracing::field::display(k))));
    let status = status.as_u16();
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    // A kill switch is the contract's answer for a suspended org or a killed key, not a fault.
    if status >= 500 && error_code != Some("KILL_SWITCH") {
        let cause = internal.as_ref().map(|i| i.cause.as_str());
        let location = internal.as_ref().map(|i| i.location.as_str());
        tracing::error!(
            request_id = %request_id, method, route, path, status, latency_ms, org_id, key_id, error_code, cause, location, "request"
        );
    } else {
        tracing::info!(request_id = %request_id, method, route, path, status, latency_ms, org_id, key_id, error_code, "request");
    }
    resp
}

/// The method as a label from a fixed set (a made-up method must not add a time series).
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Errors produced by the framework itself (unknown method, …) get the envelope too.
fn framework_error(resp: &Response) -> Option<PendingError> {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return None;
    }
    let is_json = resp.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json {
        return None;
    }
    let (code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => ("METHOD_NOT_ALLOWED", "This route does not accept that method."),
        StatusCode::NOT_FOUND => ("NOT_FOUND", "No such route."),
        StatusCode::PAYLOAD_TOO_LARGE => ("PAYLOAD_TOO_LARGE", "Request body exceeds the 1 MiB limit."),
        s if s.is_server_error() => ("INTERNAL", "An internal error occurred. It has been logged."),
        _ => ("BAD_REQUEST", "The request could not be read."),
    };
    Some(PendingError { code, message: message.to_owned(), details: Map::new(), internal: None })
}
