//! Load shedding: a bound on API requests in flight. Past it a request is answered at once with
//! 503 SERVICE_UNAVAILABLE and `Retry-After` (CONTRACT §1), instead of queueing until every
//! request is slow. The health checks are never shed: an orchestrator must still see the process.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use strata_core::error::CoreError;

use crate::AppState;
use crate::error::HttpError;

/// Requests in flight at once when `serve --max-in-flight` is not given.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;

pub(crate) async fn shed(State(app): State<AppState>, req: Request, next: Next) -> Response {
    if matches!(req.uri().path(), "/healthz" | "/readyz") {
        return next.run(req).await;
    }
    match app.in_flight.clone().try_acquire_owned() {
        Ok(permit) => {
            let resp = next.run(req).await;
            drop(permit);
            resp
        }
        Err(_) => HttpError(CoreError::Unavailable {
            cause: format!("more than {} requests in flight", app.in_flight_limit()),
            retry_after_secs: 1,
        })
        .into_response(),
    }
}
