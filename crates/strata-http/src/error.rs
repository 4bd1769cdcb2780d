//! The error envelope (CONTRACT §1). A handler's error becomes a bare response carrying the
//! error's parts; the request-context middleware, which knows the request id, writes the body.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use strata_core::error::{CoreError, chain};
use strata_core::id::RequestId;

/// A handler error: any `CoreError`, answered in the envelope.
#[derive(Debug)]
pub struct HttpError(pub CoreError);

pub type HttpResult<T = Response> = Result<T, HttpError>;

impl From<CoreError> for HttpError {
    fn from(e: CoreError) -> Self {
        Self(e)
    }
}

/// The parts of an error waiting for the request id.
#[derive(Clone, Debug)]
pub(crate) struct PendingError {
    pub code: &'static str,
    pub message: String,
    pub details: Map<String, Value>,
    /// For a 500, what the request's log line says of it (never the response).
    pub internal: Option<InternalCause>,
}

/// An internal error as logged: its chain of causes and where it arose.
#[derive(Clone, Debug)]
pub(crate) struct InternalCause {
    pub cause: String,
    pub location: String,
}

impl PendingError {
    pub fn of(e: &CoreError) -> Self {
        let internal = e.as_internal().map(|i| InternalCause { cause: chain(i), location: i.location().to_string() });
        Self { code: e.code(), message: e.public_message(), details: e.details(), internal }
    }

    pub fn body(&self, request_id: RequestId) -> Vec<u8> {
        let v = json!({ "error": {
            "code": self.code,
            "message": self.message,
            "requestId": request_id.to_string(),
            "details": self.details,
        }});
        serde_json::to_vec(&v).unwrap_or_default()
    }
}

/// The full error body for `e` in request `request_id` (used where it must be stored).
pub(crate) fn envelope(e: &CoreError, request_id: RequestId) -> Vec<u8> {
    PendingError::of(e).body(request_id)
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        // Not logged here: the request's one log line carries the cause (see `context`).
        let status = StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = status.into_response();
        if let CoreError::RateLimited { retry_after_secs, .. } = &self.0
            && let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp.extensions_mut().insert(PendingError::of(&self.0));
        resp
    }
}
