//! Extractors: the authenticated caller, the Idempotency-Key, strict JSON bodies and query maps.
//! Each turns raw request parts into domain types or an error in the envelope.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::Method;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use strata_core::error::CoreError;
use strata_core::id::RequestId;
use strata_core::ratelimit::{EndpointClass, RateInfo};
use strata_core::service::{Caller, Credentials};

use crate::AppState;
use crate::error::HttpError;

/// The authenticated caller of a route. Every route but the health checks takes one.
pub struct Auth(pub Caller);

impl Deref for Auth {
    type Target = Caller;
    fn deref(&self) -> &Caller {
        &self.0
    }
}

pub(crate) fn request_id(parts: &Parts) -> RequestId {
    parts.extensions.get::<RequestId>().copied().unwrap_or_else(|| RequestId::at(0))
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, HttpError> {
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        let creds = Credentials {
            authorization: header("authorization"),
            acting_org: header("x-layers-organization"),
            whoami: parts.uri.path() == "/v1/whoami",
        };
        // A header that is present but not visible ASCII is as malformed as a bad value.
        if parts.headers.get("authorization").is_some() && creds.authorization.is_none() {
            return Err(CoreError::Unauthenticated { reason: "malformed_header" }.into());
        }
        let caller = app.strata.authenticate(creds, request_id(parts)).await?;
        let class = endpoint_class(&parts.method, parts.uri.path());
        let slot = parts.extensions.get::<RateSlot>().cloned();
        let outcome = app.strata.rate_limit(&caller, class).await;
        let info = match &outcome {
            Ok(info) => *info,
            Err(CoreError::RateLimited { retry_after_secs, .. }) => app
                .strata
                .config
                .tier_limits
                .get(caller.key.tier)
                .per_minute(class)
                .map(|limit| RateInfo { class, limit, remaining: 0, reset_secs: *retry_after_secs }),
            Err(_) => None,
        };
        if let (Some(slot), Some(info)) = (slot, info)
            && let Ok(mut s) = slot.0.lock()
        {
            *s = Some(info);
        }
        outcome?;
        Ok(Auth(caller))
    }
}

/// Where the auth extractor leaves the request's rate-limit standing for the response headers.
#[derive(Clone, Default)]
pub(crate) struct RateSlot(pub Arc<Mutex<Option<RateInfo>>>);

/// The contract's endpoint classes: GET reads; a POST that starts a job is long-running;
/// every other write is write-light.
fn endpoint_class(method: &Method, path: &str) -> EndpointClass {
    if method == Method::GET || method == Method::HEAD {
        EndpointClass::ReadLight
    } else if method == Method::POST && path.starts_with("/v1/projects/") && path.ends_with("/content") {
        EndpointClass::LongRunning
    } else {
        EndpointClass::WriteLight
    }
}

/// The `Idempotency-Key` header, validated.
pub struct IdemKey(pub Option<String>);

impl FromRequestParts<AppState> for IdemKey {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _app: &AppState) -> Result<Self, HttpError> {
        match parts.headers.get("idempotency-key") {
            None => Ok(IdemKey(None)),
            Some(v) => {
                let s = v.to_str().map_err(|_| CoreError::validation("Idempotency-Key", "must be visible ASCII"))?;
                Ok(IdemKey(Some(strata_core::idempotency::parse_key(s)?)))
            }
        }
    }
}

impl OptionalFromRequestParts<AppState> for IdemKey {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Option<Self>, HttpError> {
        <IdemKey as FromRequestParts<AppState>>::from_request_parts(parts, app).await.map(Some)
    }
}

/// Query parameters as a map; a repeated parameter keeps its last value.
pub struct QueryMap(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for QueryMap {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _s: &S) -> Result<Self, HttpError> {
        let q = parts.uri.query().unwrap_or("");
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(q).map_err(|_| CoreError::validation("query", "is not a valid query string"))?;
        Ok(QueryMap(pairs.into_iter().collect()))
    }
}

impl QueryMap {
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }
}

/// Parses a JSON body strictly: an unknown field is a 422 naming it. An empty body is `{}`.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, CoreError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { body };
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = inner.to_string();
        if let Some(rest) = msg.strip_prefix("unknown field `") {
            let name = rest.split('`').next().unwrap_or("");
            let field = if path == "." || path.is_empty() { name.to_owned() } else { path.clone() };
            return CoreError::validation(&field, "is not a known field");
        }
        if let Some(rest) = msg.strip_prefix("missing field `") {
            let name = rest.split('`').next().unwrap_or("");
            let field = if path == "." || path.is_empty() { name.to_owned() } else { format!("{path}.{name}") };
            return CoreError::validation(&field, "is required");
        }
        if inner.is_syntax() || inner.is_eof() {
            return CoreError::Validation { field: None, message: "The body is not valid JSON.".into(), code: None, bounds: None };
        }
        let field = if path == "." { "body".to_owned() } else { path };
        let detail = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
        CoreError::validation(&field, detail)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
    }

    fn field_of(e: CoreError) -> Option<String> {
        match e {
            CoreError::Validation { field, .. } => field,
            _ => None,
        }
    }

    #[test]
    fn an_unknown_field_is_named() {
        let e = parse_json::<Body>(br#"{"name": "a", "colour": "red"}"#).unwrap_err();
        assert_eq!(field_of(e).as_deref(), Some("colour"));
    }

    #[test]
    fn a_wrong_type_names_the_field() {
        let e = parse_json::<Body>(br#"{"name": 5}"#).unwrap_err();
        assert_eq!(field_of(e).as_deref(), Some("name"));
    }

    #[test]
    fn broken_json_is_a_validation_error() {
        assert_eq!(parse_json::<Body>(b"{").unwrap_err().code(), "VALIDATION");
    }
}

/// A typed id from the path parameter its type names (`orgId`, `keyId`, `projectId`, …). A
/// prefixed or bare id parses; a malformed one is 422 VALIDATION naming the parameter.
pub struct Id<T>(pub T);

/// An id type a path parameter carries, and the parameter's name.
pub trait PathParam: Sized {
    const NAME: &'static str;
    fn parse(raw: &str) -> Result<Self, CoreError>;
}

macro_rules! path_params {
    ($($ty:ty => $name:literal),* $(,)?) => {$(
        impl PathParam for $ty {
            const NAME: &'static str = $name;
            fn parse(raw: &str) -> Result<Self, CoreError> {
                <$ty>::parse_field(raw, $name)
            }
        }
    )*};
}

path_params! {
    strata_core::id::OrgId => "orgId",
    strata_core::id::ApiKeyId => "keyId",
    strata_core::id::ProjectId => "projectId",
    strata_core::id::ContainerId => "containerId",
    strata_core::id::PostId => "postId",
    strata_core::id::JobId => "jobId",
    strata_core::id::EndpointId => "endpointId",
    strata_core::id::DeliveryId => "deliveryId",
    strata_core::id::EventId => "eventId",
}

impl<S: Send + Sync, T: PathParam> FromRequestParts<S> for Id<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        let unreadable = || CoreError::validation(T::NAME, "is not valid UTF-8 once percent-decoded");
        let params = axum::extract::RawPathParams::from_request_parts(parts, state).await.map_err(|_| unreadable())?;
        let raw = params
            .iter()
            .find(|(name, _)| *name == T::NAME)
            .map(|(_, value)| value)
            .ok_or_else(|| CoreError::internal(format!("the route has no path parameter {}", T::NAME)))?;
        T::parse(raw).map(Id).map_err(HttpError)
    }
}
