//! The one error type of the domain. Each variant names the status the HTTP layer gives it, so the
//! mapping to the contract's error envelope (CONTRACT §1) is read off this file.

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
    /// 429 RATE_LIMITED.
    #[error("{message}")]
    RateLimited { message: String, retry_after_secs: u64 },
    /// 503 KILL_SWITCH.
    #[error("{}", match .scope { KillScope::Key => "this API key has been killed", KillScope::Organization => "API access for this organization is suspended" })]
    KillSwitch { scope: KillScope },
    /// 503 SERVICE_UNAVAILABLE: the database (or another dependency strata cannot work
    /// without) did not answer in time, or the server is shedding load. `cause` is logged, never
    /// shown; the answer carries `Retry-After`. Never stored as an idempotent reply.
    #[error("service unavailable: {cause}")]
    Unavailable { cause: String, retry_after_secs: u64 },
    /// 500 INTERNAL: a bug or a storage failure. The message is logged, never shown.
    #[error("internal error: {0}")]
    Internal(String),
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

    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal(message.into())
    }

    /// A dependency that did not answer (the database, mostly): 503 with `Retry-After: 1`.
    pub fn unavailable(cause: impl Into<String>) -> Self {
        Self::Unavailable { cause: cause.into(), retry_after_secs: 1 }
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
            CoreError::RateLimited { message: "x".into(), retry_after_secs: 1 },
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
}
