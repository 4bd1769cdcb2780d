//! API keys (CONTRACT §2): child keys with rotation grace, the caller's own keys, delegation rules.

use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test]
async fn quickstart_call_2_mints_a_child_key_shown_once() {
    let app = TestApp::spawn().await;
    let org = app.create_child("Acme Coffee").await;
    let r = app
        .post(&format!("/v1/organizations/{org}/api-keys"))
        .key(&app.admin_key)
        .idem("mint")
        .json(&json!({ "name": "acme-integration", "scopes": ["content:read", "content:write"] }))
        .send()
        .await;
    let b = r.assert_status(201);
    let key = &b["apiKey"];
    assert!(key["id"].as_str().unwrap().starts_with("key_"));
    assert_eq!(key["organizationId"], org.as_str());
    assert_eq!(key["name"], "acme-integration");
    assert_eq!(key["scopes"], json!(["content:read", "content:write"]));
    assert_eq!(key["status"], "active");
    assert_eq!(key["env"], "live");
    let secret = b["secret"].as_str().unwrap();
    assert!(secret.starts_with(key["prefix"].as_str().unwrap()));
    assert_eq!(b["warning"], "Store this secret now. It cannot be retrieved again. Rotate the key if it's lost.");
    // The child authenticates as itself.
    let who = app.get("/v1/whoami").key(secret).send().await;
    assert_eq!(who.assert_status(200)["organizationId"], org.as_str());
    assert_eq!(who.body["parentOrganizationId"], app.partner_org.as_str());
}

#[tokio::test]
async fn delegation_is_bounded_by_the_callers_scopes_and_never_org_admin() {
    let app = TestApp::spawn().await;
    let org = app.create_child("Acme").await;
    let path = format!("/v1/organizations/{org}/api-keys");
    let mint = |scopes: serde_json::Value| app.post(&path).key(&app.admin_key).json(&json!({ "name": "k", "scopes": scopes })).send();
    let r = mint(json!(["org:admin"])).await;
    r.assert_error(403, "FORBIDDEN_SCOPE");
    assert_eq!(r.body["error"]["details"]["scope"], "org:admin");
    mint(json!([])).await.assert_error(422, "VALIDATION");
    mint(json!(["content:delete"])).await.assert_error(422, "VALIDATION");
    mint(json!(["*"])).await.assert_status(201);
    // A narrower caller cannot hand out more than it holds.
    let narrow = app.post("/v1/api-keys").key(&app.admin_key).json(&json!({"name": "n", "scopes": ["org:admin"]})).send().await;
    let narrow = narrow.assert_status(201)["secret"].as_str().unwrap().to_owned();
    let ok = app.post(&path).key(&narrow).json(&json!({ "name": "k", "scopes": ["projects:read"] })).send().await;
    ok.assert_status(201);
    let own = app.post("/v1/api-keys").key(&app.admin_key).json(&json!({"name": "r", "scopes": ["projects:read"]})).send().await;
    let reader = own.assert_status(201)["secret"].as_str().unwrap().to_owned();
    let r = app.post("/v1/api-keys").key(&reader).json(&json!({"name": "x", "scopes": ["projects:read"]})).send().await;
    r.assert_error(403, "FORBIDDEN_SCOPE");
}

#[tokio::test]
async fn test_keys_are_on_the_sandbox_tier() {
    let app = TestApp::spawn().await;
    let org = app.create_child("Acme").await;
    let r = app
        .post(&format!("/v1/organizations/{org}/api-keys"))
        .key(&app.admin_key)
        .json(&json!({ "name": "sandbox", "scopes": ["content:read"], "env": "test" }))
        .send()
        .await;
    let b = r.assert_status(201);
    assert_eq!(b["apiKey"]["env"], "test");
    assert_eq!(b["apiKey"]["rateLimitTier"], "sandbox");
    assert!(b["secret"].as_str().unwrap().starts_with("lp_test_"));
    let who = app.get("/v1/whoami").key(b["secret"].as_str().unwrap()).send().await;
    assert_eq!(who.assert_status(200)["rateLimitTier"], "sandbox");
}

#[tokio::test]
async fn child_keys_are_on_the_standard_tier_whatever_the_minting_keys_tier() {
    let app = TestApp::spawn().await;
    // The bootstrap partner's key is on the `partner` tier; an `internal` one mints alike.
    let (partner, internal) = app.other_partner("Operator's own").await;
    let key_id = app.get("/v1/whoami").key(&internal).send().await.assert_status(200)["apiKeyId"].as_str().unwrap().to_owned();
    app.strata.set_key_tier(&key_id, strata_core::apikey::Tier::Internal).await.unwrap();
    let child = app.post("/v1/organizations").key(&internal).json(&json!({ "name": "Acme" })).send().await;
    let child = child.assert_status(201)["id"].as_str().unwrap().to_owned();
    for (minter, org) in [(&app.admin_key, app.create_child("Beta").await), (&internal, child)] {
        let r = app
            .post(&format!("/v1/organizations/{org}/api-keys"))
            .key(minter)
            .json(&json!({ "name": "live", "scopes": ["content:read"] }))
            .send()
            .await;
        let b = r.assert_status(201);
        assert_eq!(b["apiKey"]["rateLimitTier"], "standard");
        let who = app.get("/v1/whoami").key(b["secret"].as_str().unwrap()).send().await;
        assert_eq!((who.status, who.header("x-ratelimit-limit")), (200, Some("120")));
    }
    let _ = partner;
}
#[tokio::test]
async fn rotating_a_child_key_links_old_and_new_and_rotates_once() {
    let app = TestApp::spawn().await;
    let org = app.create_child("Acme").await;
    let (id, _) = app.child_key(&org, &["content:read"]).await;
    let path = format!("/v1/organizations/{org}/api-keys/{id}/rotate");
    let r = app.post(&path).key(&app.admin_key).send().await;
    let b = r.assert_status(201).clone();
    let new_id = b["apiKey"]["id"].as_str().unwrap();
    assert_ne!(new_id, id);
    assert_eq!(b["apiKey"]["scopes"], json!(["content:read"]));
    assert_eq!(b["previousKey"]["id"], id.as_str());
    assert_eq!(b["previousKey"]["supersededBy"], new_id);
    assert_eq!(b["previousKey"]["rotatedAt"], "2026-06-01T00:00:00.000Z");
    assert_eq!(b["previousKey"]["graceUntil"], "2026-06-02T00:00:00.000Z");
    app.post(&path).key(&app.admin_key).send().await.assert_error(409, "CONFLICT");
    // A replay of the rotation returns the same new secret.
    let (id2, _) = app.child_key(&org, &["content:read"]).await;
    let path2 = format!("/v1/organizations/{org}/api-keys/{id2}/rotate");
    let a = app.post(&path2).key(&app.admin_key).idem("rot").send().await;
    let again = app.post(&path2).key(&app.admin_key).idem("rot").send().await;
    assert_eq!(a.assert_status(201)["secret"], again.assert_status(201)["secret"]);
}

#[tokio::test]
async fn revoked_and_killed_keys_cannot_be_rotated() {
    let app = TestApp::spawn().await;
    let org = app.create_child("Acme").await;
    let (revoked, _) = app.child_key(&org, &["content:read"]).await;
    let (killed, _) = app.child_key(&org, &["content:read"]).await;
    let r = app.delete(&format!("/v1/organizations/{org}/api-keys/{revoked}")).key(&app.admin_key).send().await;
    let b = r.assert_status(200);
    assert_eq!(b["deleted"], true);
    assert_eq!(b["apiKey"]["status"], "revoked");
    // Deleting again is idempotent.
    app.delete(&format!("/v1/organizations/{org}/api-keys/{revoked}")).key(&app.admin_key).send().await.assert_status(200);
    let k = app.post(&format!("/v1/api-keys/{killed}/kill")).key(&app.admin_key).acting(&org).send().await;
    assert_eq!(k.assert_status(200)["apiKey"]["killSwitch"], true);
    // A killed key is listed as killed (its status says it still authenticates, to answer 503).
    let list = app.get(&format!("/v1/organizations/{org}/api-keys")).key(&app.admin_key).send().await;
    let items = list.assert_status(200)["items"].as_array().unwrap().clone();
    let state = |id: &str| items.iter().find(|k| k["id"] == id).map(|k| (k["status"].clone(), k["killSwitch"].clone())).unwrap();
    assert_eq!(state(&killed), (serde_json::json!("active"), serde_json::json!(true)));
    assert_eq!(state(&revoked), (serde_json::json!("revoked"), serde_json::json!(false)));
    for id in [revoked, killed] {
        let r = app.post(&format!("/v1/organizations/{org}/api-keys/{id}/rotate")).key(&app.admin_key).send().await;
        r.assert_error(409, "CONFLICT");
    }
}

#[tokio::test]
async fn rotating_an_own_key_in_place_kills_the_old_secret_at_once() {
    let app = TestApp::spawn().await;
    let r = app.post("/v1/api-keys").key(&app.admin_key).json(&json!({"name": "ci", "scopes": ["projects:read"]})).send().await;
    let b = r.assert_status(201).clone();
    let (id, old) = (b["apiKey"]["id"].as_str().unwrap().to_owned(), b["secret"].as_str().unwrap().to_owned());
    let r = app.post(&format!("/v1/api-keys/{id}/rotate")).key(&app.admin_key).send().await;
    let rotated = r.assert_status(200);
    assert_eq!(rotated["apiKey"]["id"], id.as_str());
    assert_ne!(rotated["apiKey"]["prefix"], b["apiKey"]["prefix"]);
    let new = rotated["secret"].as_str().unwrap().to_owned();
    app.get("/v1/whoami").key(&old).send().await.assert_error(401, "UNAUTHENTICATED");
    assert_eq!(app.get("/v1/whoami").key(&new).send().await.assert_status(200)["apiKeyId"], id.as_str());
    // A non-admin key may rotate itself.
    let r = app.post(&format!("/v1/api-keys/{id}/rotate")).key(&new).send().await;
    r.assert_status(200);
}

#[tokio::test]
async fn own_keys_list_masked_and_mint_within_scopes() {
    let app = TestApp::spawn().await;
    let r = app.post("/v1/api-keys").key(&app.admin_key).json(&json!({"name": "second admin", "scopes": ["org:admin"]})).send().await;
    r.assert_status(201);
    let list = app.get("/v1/api-keys").key(&app.admin_key).send().await;
    let items = list.assert_status(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["name"], "second admin", "newest first");
    for k in &items {
        assert!(k.get("secret").is_none());
    }
}
