//! Health checks and `GET /v1/whoami`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::error::{HttpError, HttpResult};
use crate::extract::Auth;
use crate::write::reply_response;

/// `GET /healthz`: the process is up.
pub async fn healthz() -> Response {
    (StatusCode::OK, [("content-type", "application/json")], r#"{"status":"ok"}"#).into_response()
}

/// `GET /readyz`: the database answers.
pub async fn readyz(State(app): State<AppState>) -> Response {
    match app.strata.store.ping().await {
        Ok(()) => (StatusCode::OK, [("content-type", "application/json")], r#"{"status":"ready"}"#).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, [("content-type", "application/json")], r#"{"status":"unavailable"}"#).into_response()
        }
    }
}

/// `GET /v1/whoami`.
pub async fn whoami(State(app): State<AppState>, caller: Auth) -> HttpResult {
    app.strata.whoami(&caller).await.map(reply_response).map_err(HttpError)
}
