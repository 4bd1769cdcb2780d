//! Health checks, this API's OpenAPI document and `GET /v1/whoami`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use strata_core::service::WhoamiView;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::HttpResult;
use crate::extract::Auth;
use crate::write::json_response;

/// A health check's answer.
#[derive(Serialize, ToSchema)]
struct Health {
    /// `ok` (healthz), `ready` or `unavailable` (readyz).
    #[schema(examples("ok"))]
    status: &'static str,
}

fn health(status: StatusCode, word: &'static str) -> Response {
    (status, axum::Json(Health { status: word })).into_response()
}

/// Liveness.
///
/// 200 while the process is up. No key needed.
#[utoipa::path(get, path = "/healthz", tag = "Meta", operation_id = "healthz", security(()),
    responses((status = 200, description = "The process is up.", body = Health, example = json!({"status": "ok"}))))]
pub async fn healthz() -> Response {
    health(StatusCode::OK, "ok")
}

/// Readiness.
///
/// 200 when the database answers, 503 when it does not. No key needed.
#[utoipa::path(get, path = "/readyz", tag = "Meta", operation_id = "readyz", security(()),
    responses(
        (status = 200, description = "The database answers.", body = Health, example = json!({"status": "ready"})),
        (status = 503, description = "The database does not answer.", body = Health, example = json!({"status": "unavailable"})),
    ))]
pub async fn readyz(State(app): State<AppState>) -> Response {
    match app.strata.store.ping().await {
        Ok(()) => health(StatusCode::OK, "ready"),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            health(StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        }
    }
}

/// This document.
///
/// The OpenAPI 3.1 description of this API, generated from the server's code. No key needed.
#[utoipa::path(get, path = "/openapi.json", tag = "Meta", operation_id = "openapi", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document.", content_type = "application/json", body = Object)))]
pub async fn openapi_json() -> Response {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], crate::openapi::json()).into_response()
}

/// Who am I.
///
/// Resolves the key to its organization: the org's name and status, the key's scopes and tier,
/// and whether the key is killed or the org's API access revoked (then every other route answers
/// 503 KILL_SWITCH). Answers for any valid key, even a killed one or one of a suspended org.
#[utoipa::path(get, path = "/v1/whoami", tag = "Meta", operation_id = "whoami",
    responses((status = 200, description = "The caller's organization and key.", body = WhoamiView,
        example = json!({"organizationId": "org_2481fa5c-a404-44ed-a561-565392499abc", "workspaceId": "org_2481fa5c-a404-44ed-a561-565392499abc",
            "organizationName": "Quinn's Agency", "parentOrganizationId": null, "organizationStatus": "active", "scopes": ["org:admin", "*"],
            "rateLimitTier": "standard", "killSwitch": false, "apiAccessRevoked": false,
            "apiKeyId": "key_c2037bb9-354d-4662-96b7-97a28ad6b6e1", "creditBalance": 2540}))))]
pub async fn whoami(State(app): State<AppState>, caller: Auth) -> HttpResult {
    json_response(StatusCode::OK, &app.strata.whoami(&caller).await?)
}
