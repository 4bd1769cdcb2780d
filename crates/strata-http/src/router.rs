//! Every route of the API, in one place.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};

use crate::AppState;
use crate::context::request_context;
use crate::handlers::{content, credits, keys, logs, meta, orgs, projects, webhooks};

/// Request bodies above this are 413 (CONTRACT §1).
pub const BODY_LIMIT: usize = 1024 * 1024;

pub fn router(app: AppState) -> Router {
    Router::new()
        .route("/healthz", get(meta::healthz))
        .route("/readyz", get(meta::readyz))
        .route("/v1/whoami", get(meta::whoami))
        // The human API reference (`/docs` and its two scripts).
        .merge(crate::docs::routes())
        // Child organizations (org:admin).
        .route("/v1/organizations", post(orgs::create).get(orgs::list))
        .route("/v1/organizations/migrate", post(projects::migrate))
        .route("/v1/organizations/{orgId}", get(orgs::get).patch(orgs::update).delete(orgs::archive))
        .route("/v1/organizations/{orgId}/suspend", post(orgs::suspend))
        .route("/v1/organizations/{orgId}/resume", post(orgs::resume))
        .route("/v1/organizations/{orgId}/api-keys", post(keys::mint_child).get(keys::list_child))
        .route("/v1/organizations/{orgId}/api-keys/{keyId}", axum::routing::delete(keys::revoke_child))
        .route("/v1/organizations/{orgId}/api-keys/{keyId}/rotate", post(keys::rotate_child))
        // Credits.
        .route("/v1/credits", get(credits::own))
        .route("/v1/credits/events", get(credits::own_events))
        .route("/v1/organizations/{orgId}/credits", get(credits::child))
        .route("/v1/organizations/{orgId}/credits/events", get(credits::child_events))
        .route("/v1/organizations/{orgId}/credits/allocate", post(credits::allocate))
        .route("/v1/organizations/{orgId}/credit-config", get(credits::config).patch(credits::update_config))
        // The caller's own keys.
        .route("/v1/api-keys", get(keys::list_own).post(keys::mint_own))
        .route("/v1/api-keys/{keyId}/rotate", post(keys::rotate_own))
        .route("/v1/api-keys/{keyId}/kill", post(keys::kill_own))
        // Projects, content and scheduled posts.
        .route("/v1/projects", post(projects::create).get(projects::list))
        .route("/v1/projects/{projectId}", get(projects::get).patch(projects::update).delete(projects::archive))
        .route("/v1/projects/{projectId}/content", post(content::generate))
        .route("/v1/projects/{projectId}/content/{containerId}", get(content::container))
        .route("/v1/projects/{projectId}/scheduled-posts", post(content::schedule).get(content::posts))
        .route("/v1/projects/{projectId}/scheduled-posts/{postId}", axum::routing::delete(content::cancel_post))
        .route("/v1/jobs/{jobId}", get(content::job))
        .route("/v1/jobs/{jobId}/cancel", post(content::cancel))
        // Webhooks.
        .route("/v1/webhook-endpoints", post(webhooks::create).get(webhooks::list))
        .route("/v1/webhook-endpoints/{endpointId}", get(webhooks::get).patch(webhooks::update).delete(webhooks::delete))
        .route("/v1/webhook-endpoints/{endpointId}/rotate-secret", post(webhooks::rotate))
        .route("/v1/webhook-endpoints/{endpointId}/test", post(webhooks::test))
        .route("/v1/webhook-endpoints/{endpointId}/deliveries", get(webhooks::deliveries))
        .route("/v1/webhook-endpoints/{endpointId}/recover", post(webhooks::recover))
        .route("/v1/webhook-deliveries/{deliveryId}", get(webhooks::delivery))
        .route("/v1/webhook-deliveries/{deliveryId}/replay", post(webhooks::replay))
        // Logs.
        .route("/v1/audit-log", get(logs::audit_log))
        .route("/v1/events", get(logs::events))
        .route("/v1/events/{eventId}", get(logs::event))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(from_fn_with_state(app.clone(), request_context))
        .with_state(app)
}

async fn not_found() -> crate::error::HttpError {
    crate::error::HttpError(strata_core::error::CoreError::not_found("route"))
}
