//! API keys: a child's keys (`/v1/organizations/:orgId/api-keys…`) and the caller's own
//! (`/v1/api-keys…`).

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use strata_core::apikey::Env;
use strata_core::error::CoreError;
use strata_core::id::{ApiKeyId, OrgId};
use strata_core::org::parse_name;
use strata_core::schema::ScopeName;
use strata_core::scope::Scopes;
use strata_core::service::{DeletedView, KilledView, MintedView, NewKey};
use strata_core::wire::{KeyView, PageView};
use utoipa::ToSchema;

use super::{PageQuery, no_fields, page_view};
use crate::AppState;
use crate::error::HttpResult;
use crate::extract::{Auth, Id, parse_json};
use crate::params::{KeyListQuery, KeyPath, OrgPath};
use crate::write::{Write, json_response};

/// A new API key.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateApiKey)]
struct MintBody {
    /// 1–120 characters.
    #[schema(min_length = 1, max_length = 120)]
    name: String,
    /// 1–64 scopes, a subset of the caller's (`org:admin` counts as holding every data scope).
    /// `org:admin` itself is never delegable to a child key (403).
    #[schema(value_type = Vec<ScopeName>, min_items = 1, max_items = 64)]
    scopes: Vec<String>,
    /// `live` (the default) or `test`.
    #[serde(default)]
    #[schema(value_type = Option<Env>)]
    env: Option<String>,
}

const MINT_EXAMPLE: &str = r#"{"name": "acme-integration", "scopes": ["content:read", "content:write"]}"#;

fn minted_example() -> serde_json::Value {
    serde_json::json!({
        "apiKey": {"id": "key_c2037bb9-354d-4662-96b7-97a28ad6b6e1", "organizationId": "org_d4e5f6a7-8b9c-4d0e-9f2a-3b4c5d6e7f80",
            "name": "acme-integration", "prefix": "lp_live_ABCDEFGHJKMNPQRS", "env": "live", "scopes": ["content:read", "content:write"],
            "rateLimitTier": "standard", "status": "active", "createdAt": "2026-06-01T14:31:00.000Z", "lastUsedAt": null,
            "rotatedAt": null, "revokedAt": null, "graceUntil": null, "supersededBy": null},
        "secret": "lp_live_ABCDEFGHJKMNPQRS_2Jx0bQm4Vd9pTq7LwS1nYk3Rf6Hc8Ze5Ua0Gi4Ot2Wy",
        "warning": "Store this secret now. It cannot be retrieved again. Rotate the key if it's lost."
    })
}

fn parse_mint(body: &[u8]) -> Result<NewKey, CoreError> {
    let b: MintBody = parse_json(body)?;
    let env = match b.env.as_deref() {
        None | Some("live") => Env::Live,
        Some("test") => Env::Test,
        Some(_) => return Err(CoreError::validation("env", "must be live or test")),
    };
    Ok(NewKey { name: parse_name(&b.name, "name", 120)?, scopes: Scopes::parse_request(&b.scopes, "scopes")?, env })
}

/// Mint a child's API key.
///
/// A key of the child org for the customer's own integration: it gets the `standard` tier
/// (`sandbox` for `env: "test"`). The secret is shown once; a replay with the same
/// Idempotency-Key returns the same secret.
#[utoipa::path(post, path = "/v1/organizations/{orgId}/api-keys", tag = "API keys", operation_id = "createChildApiKey",
    security(("bearer" = ["org:admin"])), params(OrgPath),
    request_body(content = MintBody, example = json!(serde_json::from_str::<serde_json::Value>(MINT_EXAMPLE).unwrap_or_default())),
    responses((status = 201, description = "The new key and its secret, shown once.", body = MintedView, example = json!(minted_example()))))]
pub async fn mint_child(State(app): State<AppState>, Id(org): Id<OrgId>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, StatusCode::CREATED, |claim| async move {
        let cmd = parse_mint(&w.body)?;
        app.strata.mint_child_key(&w.caller, org, cmd, claim.as_ref()).await
    })
    .await
}

/// List a child's API keys.
///
/// Masked: never the secret or its hash.
#[utoipa::path(get, path = "/v1/organizations/{orgId}/api-keys", tag = "API keys", operation_id = "listChildApiKeys",
    security(("bearer" = ["org:admin"])), params(OrgPath, KeyListQuery),
    responses((status = 200, description = "A page of the child's keys.", body = PageView<KeyView>)))]
pub async fn list_child(State(app): State<AppState>, caller: Auth<PageQuery>, Id(org): Id<OrgId>) -> HttpResult {
    let page = caller.query.page(&app, "keys", 25, 100)?;
    json_response(StatusCode::OK, &page_view(app.strata.list_child_keys(&caller, org, page).await?))
}

/// Rotate a child's API key.
///
/// A new key (new id and secret, same scopes, env and tier) supersedes the old one, which keeps
/// working for 24 hours (`graceUntil`). Rotating a superseded, revoked or killed key is 409.
#[utoipa::path(post, path = "/v1/organizations/{orgId}/api-keys/{keyId}/rotate", tag = "API keys", operation_id = "rotateChildApiKey",
    security(("bearer" = ["org:admin"])), params(OrgPath, KeyPath),
    responses((status = 201, description = "The new key, its secret (shown once) and the superseded key as `previousKey`.", body = MintedView)))]
pub async fn rotate_child(State(app): State<AppState>, Id(org): Id<OrgId>, Id(id): Id<ApiKeyId>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, StatusCode::CREATED, |claim| async move {
        no_fields(&w.body)?;
        app.strata.rotate_child_key(&w.caller, org, id, claim.as_ref()).await
    })
    .await
}

/// Revoke a child's API key.
///
/// Immediate: the key's next use is 401. Revoking a revoked key answers it again.
#[utoipa::path(delete, path = "/v1/organizations/{orgId}/api-keys/{keyId}", tag = "API keys", operation_id = "revokeChildApiKey",
    security(("bearer" = ["org:admin"])), params(OrgPath, KeyPath),
    responses((status = 200, description = "The revoked key.", body = DeletedView)))]
pub async fn revoke_child(State(app): State<AppState>, Id(org): Id<OrgId>, Id(id): Id<ApiKeyId>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, StatusCode::OK, |claim| async move {
        no_fields(&w.body)?;
        app.strata.revoke_child_key(&w.caller, org, id, claim.as_ref()).await
    })
    .await
}

/// List the caller's org's keys.
///
/// Masked: never the secret or its hash. Any valid key may list its own org's keys.
#[utoipa::path(get, path = "/v1/api-keys", tag = "API keys", operation_id = "listApiKeys",
    params(KeyListQuery),
    responses((status = 200, description = "A page of the org's keys.", body = PageView<KeyView>)))]
pub async fn list_own(State(app): State<AppState>, caller: Auth<PageQuery>) -> HttpResult {
    let page = caller.query.page(&app, "keys", 25, 100)?;
    json_response(StatusCode::OK, &page_view(app.strata.list_own_keys(&caller, page).await?))
}

/// Mint a key of the caller's own org.
///
/// With a subset of the caller's scopes; the new key keeps the minting key's tier.
#[utoipa::path(post, path = "/v1/api-keys", tag = "API keys", operation_id = "createApiKey",
    security(("bearer" = ["org:admin"])),
    request_body(content = MintBody, example = json!(serde_json::from_str::<serde_json::Value>(MINT_EXAMPLE).unwrap_or_default())),
    responses((status = 201, description = "The new key and its secret, shown once.", body = MintedView, example = json!(minted_example()))))]
pub async fn mint_own(State(app): State<AppState>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, StatusCode::CREATED, |claim| async move {
        let cmd = parse_mint(&w.body)?;
        app.strata.mint_own_key(&w.caller, cmd, claim.as_ref()).await
    })
    .await
}

/// Rotate a key of the caller's org in place.
///
/// Same id, a new prefix and secret; the old secret stops working at once.
#[utoipa::path(post, path = "/v1/api-keys/{keyId}/rotate", tag = "API keys", operation_id = "rotateApiKey",
    params(KeyPath),
    responses(
        (status = 200, description = "The key and its new secret, shown once.", body = MintedView),
        (status = 403, description = "FORBIDDEN_SCOPE: rotating another key than the caller's own needs `org:admin`."),
    ))]
pub async fn rotate_own(State(app): State<AppState>, Id(id): Id<ApiKeyId>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, StatusCode::OK, |claim| async move {
        no_fields(&w.body)?;
        app.strata.rotate_own_key(&w.caller, id, claim.as_ref()).await
    })
    .await
}

/// Kill a key of the caller's org.
///
/// Any key of an org may kill any other key of the same org; the killed key answers 503
/// KILL_SWITCH (`details.scope: "key"`) from its very next request. Only the operator un-kills.
#[utoipa::path(post, path = "/v1/api-keys/{keyId}/kill", tag = "API keys", operation_id = "killApiKey",
    params(KeyPath),
    responses((status = 200, description = "The killed key.", body = KilledView)))]
pub async fn kill_own(State(app): State<AppState>, Id(id): Id<ApiKeyId>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, StatusCode::OK, |claim| async move {
        no_fields(&w.body)?;
        app.strata.kill_own_key(&w.caller, id, claim.as_ref()).await
    })
    .await
}
