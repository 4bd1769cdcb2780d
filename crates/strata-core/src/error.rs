//! The one error type of the domain. Each variant names the status the HTTP layer gives it, so the
//! mapping to the contract's error envelope (CONTRACT §1) is read off this file.

use std::error::Error as StdError;
use std::fmt;
use std::panic::Location;

use serde_json::{Map, Value, json};

pub type Result<T, E = CoreError> = std::result::Result<T, E>;

/// Which subject a kill switch stopped: the key itself, or its organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillScope {
    Key,
    Organization,
}

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// 400 IDEMPOTENCY_REQUIRED: the route requires an `Idempotency-Key`.
    #[error("this request requires an Idempotency-Key header")]
    IdempotencyRequired,
    /// 400 VALIDATION: the body tries to set a read-only field (CONTRACT §4).
    #[error("{field} is read-only")]
    ReadOnlyField { field: String },
    /// 401 UNAUTHENTICATED. `reason` is for the audit log only, never the response.
    #[error("missing or invalid API key")]
    Unauthenticated { reason: &'static str },
    /// 402 BILLING_EXHAUSTED.
    #[error("{message}")]
    BillingExhausted { message: String, reason: &'static str },
    /// 403 FORBIDDEN_SCOPE.
    #[error("{message}")]
    ForbiddenScope { message: String, scope: String },
    /// 404 NOT_FOUND: absent or not visible to the caller.
    #[error("{what} not found")]
    NotFound { what: &'static str },
    /// 409 CONFLICT: an illegal state transition or a write into an archived org.
    #[error("{message}")]
    Conflict { message: String, details: Box<Map<String, Value>> },
    /// 409 IDEMPOTENCY_CONFLICT.
    #[error("{}", if *.in_progress { "a request with this Idempotency-Key is still in progress; retry later" } else { "this Idempotency-Key was already used for a different request" })]
    IdempotencyConflict { in_progress: bool },
    /// 413 PAYLOAD_TOO_LARGE.
    #[error("request body exceeds the 1 MiB limit")]
    PayloadTooLarge,
    /// 422 VALIDATION. `field` names the offending input; `code` refines it when useful;
    /// `bounds` are the allowed range of a number (`details.min`, `details.max`).
    #[error("{message}")]
    Validation { field: Option<String>, message: String, code: Option<&'static str>, bounds: Option<Box<(i64, i64)>> },
    /// 429 RATE_LIMITED. `standing` is the limit that refused, for the `X-RateLimit-*` headers
    /// (the class's bucket, the daily write cap or the concurrent-jobs cap: CONTRACT §1).
    #[error("{message}")]
    RateLimited { message: String, retry_after_secs: u64, standing: crate::ratelimit::RateInfo },
    /// 503 KILL_SWITCH.
    #[error("{}", match .scope { KillScope::Key => "this API key has been killed", KillScope::Organization => "API access for this organization is suspended" })]
    KillSwitch { scope: KillScope },
    /// 503 SERVICE_UNAVAILABLE: the database (or another dependency strata cannot work
    /// without) did not answer in time, or the server is shedding load. `cause` is logged, never
    /// shown; the answer carries `Retry-After`. Never stored as an idempotent reply.
    #[error("service unavailable: {cause}")]
    Unavailable { cause: String, retry_after_secs: u64 },
    /// 500 INTERNAL: a bug or a storage failure. Logged with its cause chain and the place it
    /// arose (see `InternalError`), never shown. Displayed with the whole chain, for the
    /// operator's command line.
    #[error("internal error: {}", chain(.0.as_ref()))]
    Internal(Box<InternalError>),
}

/// The start of `CoreError::lock_busy`'s cause.
const LOCK_BUSY: &str = "a row this write needs was held by another transaction past the lock timeout";

/// What went wrong inside: a sentence, the error that caused it (kept whole, so its own chain of
/// causes can be logged) and the source location where it was turned into a `CoreError`.
pub struct InternalError {
    message: String,
    source: Option<Box<dyn StdError + Send + Sync>>,
    location: &'static Location<'static>,
}

impl InternalError {
    /// Where the error was made (file and line).
    pub fn location(&self) -> &'static Location<'static> {
        self.location
    }
}

impl fmt::Display for InternalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for InternalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at {})", chain(self), self.location)
    }
}

impl StdError for InternalError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn StdError + 'static))
    }
}

/// An error and its causes, outermost first, joined by `": "` (a cause whose text its parent
/// already ends with is not repeated).
pub fn chain(e: &dyn StdError) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

impl CoreError {
    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::Validation { field: Some(field.to_owned()), message: format!("{field}: {message}"), code: None, bounds: None }
    }

    /// A number outside `min..=max` (or no integer at all): the message and `details` state the
    /// bounds.
    pub fn out_of_range(field: &str, min: i64, max: i64) -> Self {
        Self::Validation {
            field: Some(field.to_owned()),
            message: format!("{field}: must be an integer from {min} to {max}"),
            code: None,
            bounds: Some(Box::new((min, max))),
        }
    }

    pub fn validation_code(field: &str, message: impl Into<String>, code: &'static str) -> Self {
        let message = message.into();
        Self::Validation { field: Some(field.to_owned()), message: format!("{field}: {message}"), code: Some(code), bounds: None }
    }

    pub fn not_found(what: &'static str) -> Self {
        Self::NotFound { what }
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict { message: message.into(), details: Box::default() }
    }

    pub fn conflict_with(message: impl Into<String>, details: Value) -> Self {
        let details = match details {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        Self::Conflict { message: message.into(), details: Box::new(details) }
    }

    pub fn forbidden_scope(scope: impl Into<String>) -> Self {
        let scope = scope.into();
        Self::ForbiddenScope { message: format!("this API key lacks the {scope} scope"), scope }
    }

    /// A 500 with no underlying error (a broken invariant); remembers where it was made.
    #[track_caller]
    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal(Box::new(InternalError { message: message.into(), source: None, location: Location::caller() }))
    }

    /// A 500 caused by `source` (a database or decoding error…): `message` says what was being
    /// done; the cause is kept whole and the place this was called is remembered.
    #[track_caller]
    pub fn internal_from(message: impl Into<String>, source: impl StdError + Send + Sync + 'static) -> Self {
        Self::Internal(Box::new(InternalError { message: message.into(), source: Some(Box::new(source)), location: Location::caller() }))
    }

    /// The internal cause of a 500, `None` for any other error.
    pub fn as_internal(&self) -> Option<&InternalError> {
        match self {
            Self::Internal(e) => Some(e),
            _ => None,
        }
    }

    /// A dependency that did not answer (the database, mostly): 503 with `Retry-After: 1`.
    pub fn unavailable(cause: impl Into<String>) -> Self {
        Self::Unavailable { cause: cause.into(), retry_after_secs: 1 }
    }

    /// The 503 of a grouped write (`Store::write_grouped`) that found a row held by another
    /// transaction past its batch's lock timeout: the batch never waits on another transaction
    /// for long (so it can never be part of a deadlock), and the service runs the write again in
    /// a transaction of its own, which waits as any other.
    pub fn lock_busy(detail: impl std::fmt::Display) -> Self {
        Self::unavailable(format!("{LOCK_BUSY}: {detail}"))
    }

    /// Whether this is `lock_busy`.
    pub fn is_lock_busy(&self) -> bool {
        matches!(self, Self::Unavailable { cause, .. } if cause.starts_with(LOCK_BUSY))
    }

    pub fn status(&self) -> u16 {
        match self {
            Self::IdempotencyRequired | Self::ReadOnlyField { .. } => 400,
            Self::Unauthenticated { .. } => 401,
            Self::BillingExhausted { .. } => 402,
            Self::ForbiddenScope { .. } => 403,
            Self::NotFound { .. } => 404,
            Self::Conflict { .. } | Self::IdempotencyConflict { .. } => 409,
            Self::PayloadTooLarge => 413,
            Self::Validation { .. } => 422,
            Self::RateLimited { .. } => 429,
            Self::KillSwitch { .. } | Self::Unavailable { .. } => 503,
            Self::Internal(_) => 500,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::IdempotencyRequired => "IDEMPOTENCY_REQUIRED",
            Self::Unauthenticated { .. } => "UNAUTHENTICATED",
            Self::BillingExhausted { .. } => "BILLING_EXHAUSTED",
            Self::ForbiddenScope { .. } => "FORBIDDEN_SCOPE",
            Self::NotFound { .. } => "NOT_FOUND",
            Self::Conflict { .. } => "CONFLICT",
            Self::IdempotencyConflict { .. } => "IDEMPOTENCY_CONFLICT",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::Validation { .. } | Self::ReadOnlyField { .. } => "VALIDATION",
            Self::RateLimited { .. } => "RATE_LIMITED",
            Self::KillSwitch { .. } => "KILL_SWITCH",
            Self::Unavailable { .. } => "SERVICE_UNAVAILABLE",
            Self::Internal(_) => "INTERNAL",
        }
    }

    /// The sentence shown to the caller. Internal errors never show their cause.
    pub fn public_message(&self) -> String {
        match self {
            Self::Internal(_) => "An internal error occurred. It has been logged.".to_owned(),
            Self::Unavailable { retry_after_secs, .. } => {
                format!(
                    "The service is temporarily unavailable; nothing was changed. Retry in {retry_after_secs} s with the same Idempotency-Key."
                )
            }
            other => other.to_string(),
        }
    }

    /// The envelope's `details` object.
    pub fn details(&self) -> Map<String, Value> {
        let value = match self {
            Self::Validation { field, code, bounds, .. } => {
                let mut m = Map::new();
                if let Some(f) = field {
                    m.insert("field".into(), json!(f));
                }
                if let Some(c) = code {
                    m.insert("code".into(), json!(c));
                }
                if let Some(b) = bounds {
                    m.insert("min".into(), json!(b.0));
                    m.insert("max".into(), json!(b.1));
                }
                return m;
            }
            Self::ForbiddenScope { scope, .. } => json!({ "scope": scope }),
            Self::ReadOnlyField { field } => json!({ "field": field, "code": "READ_ONLY_FIELD" }),
            Self::BillingExhausted { reason, .. } => json!({ "reason": reason }),
            Self::IdempotencyConflict { in_progress: true } => json!({ "reason": "in_progress" }),
            Self::RateLimited { retry_after_secs, .. } | Self::Unavailable { retry_after_secs, .. } => {
                json!({ "retryAfterSeconds": retry_after_secs })
            }
            Self::KillSwitch { scope } => json!({
                "scope": match scope { KillScope::Key => "key", KillScope::Organization => "organization" }
            }),
            Self::Conflict { details, .. } => return (**details).clone(),
            _ => return Map::new(),
        };
        match value {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    /// A business failure is stored under its Idempotency-Key and replayed (CONTRACT §1); any
    /// other failure releases the key so the client can correct and retry.
    pub fn is_replayable(&self) -> bool {
        matches!(self, Self::BillingExhausted { .. } | Self::Conflict { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_matches_the_contract_pattern() {
        let all = [
            CoreError::IdempotencyRequired,
            CoreError::Unauthenticated { reason: "x" },
            CoreError::BillingExhausted { message: "x".into(), reason: "x" },
            CoreError::forbidden_scope("org:admin"),
            CoreError::not_found("organization"),
            CoreError::conflict("x"),
            CoreError::IdempotencyConflict { in_progress: false },
            CoreError::PayloadTooLarge,
            CoreError::validation("name", "x"),
            CoreError::RateLimited {
                message: "x".into(),
                retry_after_secs: 1,
                standing: crate::ratelimit::RateInfo::refused(crate::ratelimit::EndpointClass::ReadLight, 1, 1),
            },
            CoreError::KillSwitch { scope: KillScope::Key },
            CoreError::unavailable("x"),
            CoreError::internal("x"),
        ];
        for e in all {
            let code = e.code();
            assert!(code.len() <= 64 && code.chars().next().unwrap().is_ascii_uppercase());
            assert!(code.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'));
        }
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        for e in [CoreError::internal("connection refused to 10.0.0.3"), CoreError::unavailable("connection refused to 10.0.0.3")] {
            assert!(!e.public_message().contains("10.0.0.3"));
        }
    }

    #[test]
    fn an_internal_error_keeps_its_cause_chain_and_where_it_was_made() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let line = line!() + 1;
        let e = CoreError::internal_from("database: SELECT 1", io);
        let inner = e.as_internal().expect("an internal error");
        assert_eq!(chain(&e), "internal error: database: SELECT 1: connection refused");
        assert_eq!((inner.location().file(), inner.location().line()), (file!(), line));
        assert!(CoreError::not_found("x").as_internal().is_none());
    }
}
