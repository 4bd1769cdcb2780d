//! Extractors: the authenticated caller with its route's query parameters, the Idempotency-Key
//! and strict JSON bodies. Each turns raw request parts into domain types or an error in the
//! envelope.

use std::ops::Deref;
use std::sync::{Arc, Mutex};

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::Method;
use axum::http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use strata_core::error::CoreError;
use strata_core::id::RequestId;
use strata_core::ratelimit::{EndpointClass, RateInfo};
use strata_core::service::{Caller, Credentials};

use crate::AppState;
use crate::error::HttpError;

/// The authenticated caller of a route and the route's query parameters `Q`, parsed strictly
/// (see `parse_query`). Every route but the health checks takes one, so a route declares its
/// query parameters in exactly one place, its `Q`; plain `Auth` (and every write, through
/// `Write`) accepts none, and an unknown parameter can never be silently ignored.
pub struct Auth<Q = NoQuery> {
    pub caller: Caller,
    pub query: Q,
}

impl<Q> Deref for Auth<Q> {
    type Target = Caller;
    fn deref(&self) -> &Caller {
        &self.caller
    }
}

/// The query of a route that takes no query parameters: any parameter is 422 naming it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoQuery {}

pub(crate) fn request_id(parts: &Parts) -> RequestId {
    parts.extensions.get::<RequestId>().copied().unwrap_or_else(|| RequestId::at(0))
}

impl<Q: DeserializeOwned + Send> FromRequestParts<AppState> for Auth<Q> {
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
            let err = CoreError::Unauthenticated { reason: "malformed_header" };
            strata_core::telemetry::auth_failed(&err);
            return Err(err.into());
        }
        let class = endpoint_class(&parts.method, parts.uri.path());
        // Every answer to a live key carries its rate-limit standing (CONTRACT §1): a refused
        // authentication of one (kill switch, acting org) too; a 429 carries the limit that
        // refused it (see `context`).
        let note = |info: Option<RateInfo>| {
            if let (Some(slot), Some(info)) = (parts.extensions.get::<RateSlot>(), info)
                && let Ok(mut s) = slot.0.lock()
            {
                *s = Some(info);
            }
        };
        let caller = match app.strata.authenticate_for(creds, request_id(parts), class).await {
            Ok(caller) => caller,
            Err((err, rate)) => {
                note(rate);
                return Err(err.into());
            }
        };
        crate::context::note_caller(&parts.extensions, &caller);
        note(app.strata.rate_limit(&caller, class).await?);
        let query = parse_query(parts.uri.query().unwrap_or(""))?;
        Ok(Auth { caller, query })
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

/// Parses a query string into a route's parameter struct `Q` (CONTRACT §1): a parameter `Q`
/// does not declare (`#[serde(deny_unknown_fields)]`) is 422 naming it in `details.field`; a
/// parameter given twice is 422 unless its field is a list (`Vec<String>`, "any of these
/// values"). Fields are raw strings; handlers parse them into domain types, naming the field.
pub fn parse_query<Q: DeserializeOwned>(query: &str) -> Result<Q, CoreError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query).map_err(|_| CoreError::validation("query", "is not a valid query string"))?;
    let de = serde_html_form::Deserializer::from_bytes(query.as_bytes());
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let msg = e.into_inner().to_string();
        if let Some(rest) = msg.strip_prefix("unknown field `") {
            let name = rest.split('`').next().unwrap_or("");
            return CoreError::validation(name, "is not a known query parameter for this route");
        }
        if pairs.iter().filter(|(k, _)| *k == path).count() > 1 {
            return CoreError::validation(&path, "must be given at most once");
        }
        let field = if path == "." { "query".to_owned() } else { path };
        CoreError::validation(&field, msg)
    })
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
        let detail = msg.split(" at line ").next().unwrap_or(&msg);
        CoreError::validation(&field, plain_type_error(detail))
    })
}

/// Says serde's "invalid type: integer `5`, expected a string" (or "…, expected i64") in the
/// API's words, "must be a string (got integer 5)", so no Rust type name reaches a partner.
fn plain_type_error(detail: &str) -> String {
    let parsed = detail
        .strip_prefix("invalid type: ")
        .or_else(|| detail.strip_prefix("invalid value: "))
        .and_then(|rest| rest.rsplit_once(", expected "));
    let Some((got, expected)) = parsed else { return detail.to_owned() };
    let wanted = match expected.trim() {
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "an integer",
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a non-negative integer",
        "f32" | "f64" => "a number",
        "a sequence" => "a list",
        "a map" => "an object",
        e if e.starts_with("struct ") || e.starts_with("a map") => "an object",
        e if e.starts_with("a ") || e.starts_with("an ") => e,
        _ => "of another type",
    };
    format!("must be {wanted} (got {})", got.replace('`', ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug)]
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

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct ListQuery {
        #[serde(default)]
        status: Vec<String>,
        external_id: Option<String>,
        limit: Option<String>,
    }

    #[test]
    fn a_list_parameter_may_repeat_and_keeps_every_value() {
        let q: ListQuery = parse_query("status=active&externalId=a%2Bb&status=suspended&limit=").unwrap();
        assert_eq!(q.status, ["active", "suspended"]);
        assert_eq!((q.external_id.as_deref(), q.limit.as_deref()), (Some("a+b"), Some("")));
        let none: ListQuery = parse_query("").unwrap();
        assert!(none.status.is_empty() && none.external_id.is_none());
    }

    #[test]
    fn an_unknown_or_repeated_single_parameter_is_named() {
        let unknown = parse_query::<ListQuery>("status=active&metadata%5BexternalId%5D=x").unwrap_err();
        assert_eq!(field_of(unknown).as_deref(), Some("metadata[externalId]"));
        let repeated = parse_query::<ListQuery>("limit=5&limit=6").unwrap_err();
        assert_eq!(field_of(repeated).as_deref(), Some("limit"));
        assert_eq!(field_of(parse_query::<NoQuery>("x=1").unwrap_err()).as_deref(), Some("x"));
        parse_query::<NoQuery>("").unwrap();
    }

    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Typed {
        count: Option<i64>,
        size: Option<u32>,
        tags: Option<Vec<String>>,
        inner: Option<Body>,
    }

    fn message_of(e: CoreError) -> String {
        e.public_message()
    }

    #[test]
    fn a_type_mismatch_is_said_without_rust_type_names() {
        for (body, says) in [
            (r#"{"count": "x"}"#, "count: must be an integer (got string \"x\")"),
            (r#"{"size": -1}"#, "size: must be a non-negative integer (got integer -1)"),
            (r#"{"tags": "x"}"#, "tags: must be a list (got string \"x\")"),
            (r#"{"inner": 5}"#, "inner: must be an object (got integer 5)"),
        ] {
            let m = message_of(parse_json::<Typed>(body.as_bytes()).unwrap_err());
            assert_eq!(m, says, "{body}");
            for rust in ["i64", "u32", "Vec", "struct", "`"] {
                assert!(!m.contains(rust), "{m}");
            }
        }
        assert_eq!(message_of(parse_json::<Body>(br#"{"name": 5}"#).unwrap_err()), "name: must be a string (got integer 5)");
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
