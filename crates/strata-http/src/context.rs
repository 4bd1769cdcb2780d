//! The outermost middleware: gives every request its `req_` id, logs one line per request (never
//! a header or a body), finishes error envelopes and sets `X-Request-Id` on every response.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::Map;
use strata_core::id::RequestId;

use crate::AppState;
use crate::error::PendingError;
use crate::extract::RateSlot;

pub(crate) async fn request_context(State(app): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = RequestId::at(app.strata.now().millis());
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    req.extensions_mut().insert(request_id);
    let slot = RateSlot::default();
    req.extensions_mut().insert(slot.clone());
    let mut resp = next.run(req).await;
    let rate = slot.0.lock().ok().and_then(|s| *s);
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
    // A kill switch is the contract's answer for a suspended org or a killed key, not a fault.
    let expected = pending.as_ref().is_some_and(|e| e.code == "KILL_SWITCH");
    if let Some(err) = pending {
        let status = resp.status();
        let mut headers = std::mem::take(resp.headers_mut());
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.remove(header::CONTENT_LENGTH);
        resp = Response::new(Body::from(err.body(request_id)));
        *resp.status_mut() = status;
        *resp.headers_mut() = headers;
    }
    if let Ok(v) = HeaderValue::from_str(&request_id.to_string()) {
        resp.headers_mut().insert("x-request-id", v);
    }
    let status = resp.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    if status >= 500 && !expected {
        tracing::error!(request_id = %request_id, method = %method, path = %path, status, latency_ms, "request");
    } else {
        tracing::info!(request_id = %request_id, method = %method, path = %path, status, latency_ms, "request");
    }
    resp
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
    Some(PendingError { code, message: message.to_owned(), details: Map::new() })
}
