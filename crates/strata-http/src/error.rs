//! The error envelope (CONTRACT §1). A handler's error becomes a bare response carrying the
//! error's parts; the request-context middleware, which knows the request id, writes the body.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Map, Value};
use strata_core::error::{CoreError, chain};
use strata_core::id::RequestId;
use utoipa::ToSchema;

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
        let v = ErrorEnvelope { error: ErrorBody { code: self.code, message: &self.message, request_id, details: &self.details } };
        serde_json::to_vec(&v).unwrap_or_default()
    }
}

/// Every error code strata answers, with each HTTP status it comes with and when (CONTRACT §1): the contract's,
/// and two the framework itself produces (an unsupported method, a request it cannot read). The
/// OpenAPI document's `ErrorCode` schema lists them, and the API guide's error table is made
/// from that.
pub const ERROR_CODES: [(&str, u16, &str); 16] = [
    ("IDEMPOTENCY_REQUIRED", 400, "A route that requires `Idempotency-Key` got none (credit allocation)."),
    ("UNAUTHENTICATED", 401, "The key is missing, malformed, unknown, revoked or expired."),
    (
        "BILLING_EXHAUSTED",
        402,
        "The wallet cannot cover it: an allocation beyond the parent's `available`, a generation beyond `available` or beyond the monthly cap.",
    ),
    ("FORBIDDEN_SCOPE", 403, "The key lacks the route's scope (`details.scope`), or tried to delegate a scope it lacks or `org:admin`."),
    (
        "NOT_FOUND",
        404,
        "No such resource, or it is not visible to the caller: another tenant's resource is 404, never 403. Also an unknown route.",
    ),
    ("CONFLICT", 409, "An illegal state change (suspending an archived org, rotating a superseded key) or a write inside an archived org."),
    (
        "IDEMPOTENCY_CONFLICT",
        409,
        "The same `Idempotency-Key` with another request, or while the first request with it is still running (`details.reason: \"in_progress\"`).",
    ),
    ("PAYLOAD_TOO_LARGE", 413, "The body is over 1 MiB."),
    (
        "VALIDATION",
        422,
        "A bad field, id, cursor, limit, query parameter or header value; an unknown body field or query parameter; a single-valued query parameter given twice. `details.field` names it.",
    ),
    (
        "VALIDATION",
        400,
        "A read-only field of a project (such as `id`) in a PATCH body: `details.code` is `READ_ONLY_FIELD`, `details.field` names it.",
    ),
    (
        "RATE_LIMITED",
        429,
        "The class's bucket is empty, the daily write cap is reached, or the concurrent-jobs cap; carries `Retry-After`.",
    ),
    (
        "KILL_SWITCH",
        503,
        "The key was killed (`details.scope: \"key\"`), or its org is suspended or its API access revoked (`details.scope: \"organization\"`).",
    ),
    (
        "SERVICE_UNAVAILABLE",
        503,
        "The database did not answer in time or the server is shedding load; carries `Retry-After`, nothing was changed and nothing is stored under the Idempotency-Key.",
    ),
    ("INTERNAL", 500, "A bug; the body never leaks internals."),
    ("METHOD_NOT_ALLOWED", 405, "The route does not accept that method."),
    ("BAD_REQUEST", 400, "The request could not be read at all."),
];

/// The body of every 4xx and 5xx answer (CONTRACT §1).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"error": {"code": "NOT_FOUND", "message": "organization not found", "requestId": "req_01J0Z5Q6M8W3D2V7K9X4T1B6C5", "details": {}}}))]
pub struct ErrorEnvelope<'a> {
    pub error: ErrorBody<'a>,
}

/// What went wrong.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody<'a> {
    /// Stable, matches `^[A-Z][A-Z0-9_]{0,63}$`.
    #[schema(value_type = ErrorCode)]
    pub code: &'a str,
    /// A human sentence.
    pub message: &'a str,
    /// The request's id, as in `X-Request-Id`.
    pub request_id: RequestId,
    /// Structured context when there is some: `field` (the field, parameter or header at fault),
    /// `code`, `min`/`max`, `scope` (`key` or `organization` for KILL_SWITCH, the missing scope
    /// for FORBIDDEN_SCOPE), `reason` (`monthly_cap`, `in_progress`, …), `retryAfterSeconds`.
    #[schema(value_type = Object)]
    pub details: &'a Map<String, Value>,
}

/// The error code, one of [`ERROR_CODES`]; its description is the table of codes.
pub struct ErrorCode;

impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let mut description =
            String::from("The error code: stable, matches `^[A-Z][A-Z0-9_]{0,63}$`.\n\n| status | code | when |\n| --- | --- | --- |\n");
        for (code, status, when) in ERROR_CODES {
            description.push_str(&format!("| {status} | {code} | {when} |\n"));
        }
        let mut codes: Vec<&str> = Vec::new();
        for (code, _, _) in ERROR_CODES {
            if !codes.contains(&code) {
                codes.push(code);
            }
        }
        strata_core::schema::string_enum(codes, description.trim_end()).into()
    }
}

impl ToSchema for ErrorCode {}

/// The full error body for `e` in request `request_id` (used where it must be stored).
pub(crate) fn envelope(e: &CoreError, request_id: RequestId) -> Vec<u8> {
    PendingError::of(e).body(request_id)
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        // A 500 is not logged here: the request's one log line carries its cause (see `context`).
        // A 503 SERVICE_UNAVAILABLE's cause (which dependency, how) is logged once, here.
        if let CoreError::Unavailable { cause, .. } = &self.0 {
            tracing::warn!(cause = %cause, "service unavailable");
        }
        let status = StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = status.into_response();
        if let CoreError::RateLimited { retry_after_secs, .. } | CoreError::Unavailable { retry_after_secs, .. } = &self.0
            && let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        // A 429 shows the limit that refused it, whichever it was (see `context`).
        if let CoreError::RateLimited { standing, .. } = &self.0 {
            resp.extensions_mut().insert(*standing);
        }
        resp.extensions_mut().insert(PendingError::of(&self.0));
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_core::error::KillScope;

    #[test]
    fn every_code_the_server_answers_is_in_the_documented_list() {
        let errors = [
            CoreError::IdempotencyRequired,
            CoreError::BillingExhausted { message: "short".into(), reason: "insufficient_credits" },
            CoreError::RateLimited {
                message: "slow down".into(),
                retry_after_secs: 1,
                standing: strata_core::ratelimit::RateInfo::refused(strata_core::ratelimit::EndpointClass::ReadLight, 1, 1),
            },
            CoreError::Unauthenticated { reason: "unknown_key" },
            CoreError::forbidden_scope("org:admin"),
            CoreError::not_found("organization"),
            CoreError::conflict("archived"),
            CoreError::IdempotencyConflict { in_progress: true },
            CoreError::PayloadTooLarge,
            CoreError::validation("name", "is required"),
            CoreError::ReadOnlyField { field: "id".into() },
            CoreError::KillSwitch { scope: KillScope::Key },
            CoreError::internal("a bug"),
        ];
        for e in &errors {
            assert!(
                ERROR_CODES.iter().any(|c| (c.0, c.1) == (e.code(), e.status())),
                "{} with status {} is not in ERROR_CODES",
                e.code(),
                e.status()
            );
        }
    }
}
