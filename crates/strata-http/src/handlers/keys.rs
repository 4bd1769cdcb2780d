//! API keys: a child's keys (`/v1/organizations/:orgId/api-keys…`) and the caller's own
//! (`/v1/api-keys…`).

use axum::extract::{Path, State};
use serde::Deserialize;
use strata_core::apikey::Env;
use strata_core::error::CoreError;
use strata_core::id::{ApiKeyId, OrgId};
use strata_core::org::parse_name;
use strata_core::scope::Scopes;
use strata_core::service::NewKey;

use super::{PageQuery, no_fields, page_reply};
use crate::AppState;
use crate::error::HttpResult;
use crate::extract::{Auth, parse_json};
use crate::write::{Write, reply_response};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MintBody {
    name: String,
    scopes: Vec<String>,
    #[serde(default)]
    env: Option<String>,
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

fn org_id(raw: &str) -> Result<OrgId, CoreError> {
    OrgId::parse_field(raw, "orgId")
}

fn key_id(raw: &str) -> Result<ApiKeyId, CoreError> {
    ApiKeyId::parse_field(raw, "keyId")
}

/// `POST /v1/organizations/:orgId/api-keys`.
pub async fn mint_child(State(app): State<AppState>, Path(org): Path<String>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, |claim| async move {
        let org = org_id(&org)?;
        let cmd = parse_mint(&w.body)?;
        app.strata.mint_child_key(&w.caller, org, cmd, claim.as_ref()).await
    })
    .await
}

/// `GET /v1/organizations/:orgId/api-keys`.
pub async fn list_child(State(app): State<AppState>, caller: Auth<PageQuery>, Path(org): Path<String>) -> HttpResult {
    let org = org_id(&org)?;
    let page = caller.query.page(&app, "keys", 25, 100)?;
    Ok(reply_response(page_reply(app.strata.list_child_keys(&caller, org, page).await?)))
}

/// `POST /v1/organizations/:orgId/api-keys/:keyId/rotate`.
pub async fn rotate_child(State(app): State<AppState>, Path((org, id)): Path<(String, String)>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, |claim| async move {
        let (org, id) = (org_id(&org)?, key_id(&id)?);
        no_fields(&w.body)?;
        app.strata.rotate_child_key(&w.caller, org, id, claim.as_ref()).await
    })
    .await
}

/// `DELETE /v1/organizations/:orgId/api-keys/:keyId`.
pub async fn revoke_child(State(app): State<AppState>, Path((org, id)): Path<(String, String)>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, |claim| async move {
        let (org, id) = (org_id(&org)?, key_id(&id)?);
        no_fields(&w.body)?;
        app.strata.revoke_child_key(&w.caller, org, id, claim.as_ref()).await
    })
    .await
}

/// `GET /v1/api-keys`.
pub async fn list_own(State(app): State<AppState>, caller: Auth<PageQuery>) -> HttpResult {
    let page = caller.query.page(&app, "keys", 25, 100)?;
    Ok(reply_response(page_reply(app.strata.list_own_keys(&caller, page).await?)))
}

/// `POST /v1/api-keys`.
pub async fn mint_own(State(app): State<AppState>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, |claim| async move {
        let cmd = parse_mint(&w.body)?;
        app.strata.mint_own_key(&w.caller, cmd, claim.as_ref()).await
    })
    .await
}

/// `POST /v1/api-keys/:keyId/rotate`.
pub async fn rotate_own(State(app): State<AppState>, Path(id): Path<String>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, |claim| async move {
        let id = key_id(&id)?;
        no_fields(&w.body)?;
        app.strata.rotate_own_key(&w.caller, id, claim.as_ref()).await
    })
    .await
}

/// `POST /v1/api-keys/:keyId/kill`.
pub async fn kill_own(State(app): State<AppState>, Path(id): Path<String>, w: Write) -> HttpResult {
    let (app, w) = (&app, &w);
    w.run(app, |claim| async move {
        let id = key_id(&id)?;
        no_fields(&w.body)?;
        app.strata.kill_own_key(&w.caller, id, claim.as_ref()).await
    })
    .await
}
