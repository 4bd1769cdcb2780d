//! Every route of the API, in one place. Each handler is registered through utoipa-axum's
//! `routes!`, which reads the method and path from the handler's `#[utoipa::path]`: the route map
//! and the OpenAPI document (`crate::openapi`) are built from this one list and cannot drift.
//! Register a new route here with `.routes(routes!(handler))`, never with axum's bare `route`.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::context::request_context;
use crate::docs;
use crate::handlers::{content, credits, keys, logs, meta, orgs, projects, usage, webhooks};

/// Request bodies above this are 413 (CONTRACT §1).
pub const BODY_LIMIT: usize = 1024 * 1024;

/// The routes with their OpenAPI descriptions, before state and middleware.
pub(crate) fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(meta::healthz))
        .routes(routes!(meta::readyz))
        .routes(routes!(meta::openapi_json))
        .routes(routes!(meta::whoami))
        // The human API reference and its renderer's two files.
        .routes(routes!(docs::page))
        .routes(routes!(docs::asset))
        // Child organizations (org:admin).
        .routes(routes!(orgs::create, orgs::list))
        .routes(routes!(projects::migrate))
        .routes(routes!(orgs::get, orgs::update, orgs::archive))
        .routes(routes!(orgs::suspend))
        .routes(routes!(orgs::resume))
        .routes(routes!(keys::mint_child, keys::list_child))
        .routes(routes!(keys::revoke_child))
        .routes(routes!(keys::rotate_child))
        // Credits.
        .routes(routes!(credits::own))
        .routes(routes!(credits::own_events))
        .routes(routes!(usage::own))
        .routes(routes!(credits::child))
        .routes(routes!(credits::child_events))
        .routes(routes!(usage::child))
        .routes(routes!(credits::allocate))
        .routes(routes!(credits::config, credits::update_config))
        // The caller's own keys.
        .routes(routes!(keys::list_own, keys::mint_own))
        .routes(routes!(keys::rotate_own))
        .routes(routes!(keys::kill_own))
        // Projects, content and scheduled posts.
        .routes(routes!(projects::create, projects::list))
        .routes(routes!(projects::get, projects::update, projects::archive))
        .routes(routes!(content::generate))
        .routes(routes!(content::container))
        .routes(routes!(content::schedule, content::posts))
        .routes(routes!(content::cancel_post))
        .routes(routes!(content::job))
        .routes(routes!(content::cancel))
        // Webhooks.
        .routes(routes!(webhooks::create, webhooks::list))
        .routes(routes!(webhooks::get, webhooks::update, webhooks::delete))
        .routes(routes!(webhooks::rotate))
        .routes(routes!(webhooks::test))
        .routes(routes!(webhooks::deliveries))
        .routes(routes!(webhooks::recover))
        .routes(routes!(webhooks::delivery))
        .routes(routes!(webhooks::replay))
        // Logs.
        .routes(routes!(logs::audit_log))
        .routes(routes!(logs::events))
        .routes(routes!(logs::event))
}

pub fn router(app: AppState) -> Router {
    let (routes, _) = api_routes().split_for_parts();
    routes
        // Not API routes (HTML and its assets), so not in the OpenAPI document.
        .merge(crate::console::routes())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(from_fn_with_state(app.clone(), crate::shed::shed))
        .layer(from_fn_with_state(app.clone(), request_context))
        .with_state(app)
}

async fn not_found() -> crate::error::HttpError {
    crate::error::HttpError(strata_core::error::CoreError::not_found("route"))
}

#[cfg(test)]
mod tests {
    /// Routes registered around `routes!` would be served but missing from the OpenAPI document
    /// (the integration suite's route walk can only see documented paths).
    #[test]
    fn every_route_is_registered_through_the_openapi_router() {
        let source = include_str!("router.rs");
        let code = source.split("#[cfg(test)]").next().unwrap_or(source);
        // The pages that are not API routes (the console, the API reference) are merged whole.
        let code = code.replace(".merge(crate::console::routes())", "").replace(".merge(crate::docs::routes())", "");
        for bypass in [".route(", ".route_service(", ".nest(", ".nest_service(", ".merge("] {
            assert!(!code.contains(bypass), "router.rs registers a route with `{bypass}`: use `.routes(routes!(handler))`");
        }
    }
}
