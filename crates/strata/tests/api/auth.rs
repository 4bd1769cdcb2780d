//! Authentication, scopes, kill switches and the acting org (CONTRACT §2).

use serde_json::json;
use strata_core::clock::HOUR_MS;

use crate::helpers::TestApp;

#[tokio::test]
async fn whoami_describes_the_key_and_its_org() {
    let app = TestApp::spawn().await;
    let r = app.get("/v1/whoami").key(&app.admin_key).send().await;
    let b = r.assert_status(200);
    assert_eq!(b["organizationId"], app.partner_org);
    assert_eq!(b["workspaceId"], app.partner_org);
    assert_eq!(b["organizationName"], "Quinn's Coffee CRM");
    assert_eq!(b["parentOrganizationId"], json!(null));
    assert_eq!(b["organizationStatus"], "active");
    assert_eq!(b["scopes"], json!(["org:admin", "*"]));
    assert_eq!(b["rateLimitTier"], "partner");
    assert_eq!(b["killSwitch"], false);
    assert_eq!(b["apiAccessRevoked"], false);
    assert!(b["apiKeyId"].as_str().unwrap().starts_with("key_"));
    assert_eq!(b["creditBalance"], 0);
    assert!(r.header("x-request-id").unwrap().starts_with("req_"));
}

#[tokio::test]
async fn every_malformed_or_unknown_credential_is_401() {
    let app = TestApp::spawn().await;
    let key = app.admin_key.clone();
    let (env_and_id, secret) = key.split_at("lp_live_".len() + 16);
    let keyid = &env_and_id["lp_live_".len()..];
    let other_secret = {
        let (_, s) = app.child_key(&app.create_child("x").await, &["content:read"]).await;
        s[s.len() - 43..].to_owned()
    };
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no header", None),
        ("wrong scheme", Some(format!("Basic {key}"))),
        ("lowercase scheme", Some(format!("bearer {key}"))),
        ("token only", Some(key.clone())),
        ("malformed key", Some("Bearer lp_live_nope".into())),
        ("unknown keyid", Some(format!("Bearer lp_live_0000000000000000{secret}"))),
        ("wrong secret", Some(format!("Bearer lp_live_{keyid}_{other_secret}"))),
        ("env mismatch", Some(format!("Bearer lp_test_{keyid}{secret}"))),
    ];
    for (what, header) in cases {
        let mut call = app.get("/v1/whoami");
        if let Some(h) = &header {
            call = call.header("Authorization", h);
        }
        let r = call.send().await;
        assert_eq!((r.status, r.code()), (401, "UNAUTHENTICATED"), "{what}: {}", r.body);
        assert_eq!(r.body["error"]["requestId"].as_str(), r.header("x-request-id"), "{what}");
    }
}

#[tokio::test]
async fn a_revoked_key_is_401_at_once() {
    let app = TestApp::spawn().await;
    let org = app.create_child("Acme").await;
    let (id, secret) = app.child_key(&org, &["projects:read"]).await;
    app.get("/v1/api-keys").key(&secret).send().await.assert_status(200);
    app.delete(&format!("/v1/organizations/{org}/api-keys/{id}")).key(&app.admin_key).send().await.assert_status(200);
    app.get("/v1/api-keys").key(&secret).send().await.assert_error(401, "UNAUTHENTICATED");
    app.get("/v1/whoami").key(&secret).send().await.assert_error(401, "UNAUTHENTICATED");
}

#[tokio::test]
async fn a_killed_key_is_503_with_key_scope_except_on_whoami() {
    let app = TestApp::spawn().await;
    let org = app.create_child("Acme").await;
    let (id, secret) = app.child_key(&org, &["projects:read"]).await;
    let (_, other) = app.child_key(&org, &["content:read"]).await;
    // Any key of an org may kill any other key of the same org.
    let r = app.post(&format!("/v1/api-keys/{id}/kill")).key(&other).send().await;
    assert_eq!(r.assert_status(200)["killed"], true);
    let r = app.get("/v1/api-keys").key(&secret).send().await;
    r.assert_error(503, "KILL_SWITCH");
    assert_eq!(r.body["error"]["details"]["scope"], "key");
    let who = app.get("/v1/whoami").key(&secret).send().await;
    assert_eq!(who.assert_status(200)["killSwitch"], true);
    // Only the operator un-kills.
    app.strata.unkill_key(&id).await.unwrap();
    app.get("/v1/api-keys").key(&secret).send().await.assert_status(200);
}

#[tokio::test]
async fn a_suspended_orgs_keys_are_503_with_organization_scope() {
    let app = TestApp::spawn().await;
    let org = app.create_child("Acme").await;
    let (_, secret) = app.child_key(&org, &["projects:read"]).await;
    app.post(&format!("/v1/organizations/{org}/suspend")).key(&app.admin_key).send().await.assert_status(200);
    let r = app.get("/v1/api-keys").key(&secret).send().await;
    r.assert_error(503, "KILL_SWITCH");
    assert_eq!(r.body["error"]["details"]["scope"], "organization");
    let who = app.get("/v1/whoami").key(&secret).send().await;
    let b = who.assert_status(200);
    assert_eq!(b["apiAccessRevoked"], true);
    assert_eq!(b["organizationStatus"], "suspended");
    app.post(&format!("/v1/organizations/{org}/resume")).key(&app.admin_key).send().await.assert_status(200);
    app.get("/v1/api-keys").key(&secret).send().await.assert_status(200);
}

#[tokio::test]
async fn revoked_api_access_is_503_until_the_operator_restores_it() {
    let app = TestApp::spawn().await;
    let (org, key) = app.other_partner("Other").await;
    app.strata.set_org_access(org.parse().unwrap(), true).await.unwrap();
    let r = app.get("/v1/api-keys").key(&key).send().await;
    r.assert_error(503, "KILL_SWITCH");
    assert_eq!(r.body["error"]["details"]["scope"], "organization");
    assert_eq!(app.get("/v1/whoami").key(&key).send().await.assert_status(200)["apiAccessRevoked"], true);
    app.strata.set_org_access(org.parse().unwrap(), false).await.unwrap();
    app.get("/v1/api-keys").key(&key).send().await.assert_status(200);
}

/// The operator's revocation of a partner's access holds for its children: their own keys stop
/// too, and come back when the partner's access is restored.
#[tokio::test]
async fn revoking_a_partners_access_cuts_off_its_childrens_keys_too() {
    let app = TestApp::spawn().await;
    let child = app.create_child("Acme").await;
    let (_, child_key) = app.child_key(&child, &["projects:read"]).await;
    app.get("/v1/projects").key(&child_key).send().await.assert_status(200);
    app.strata.set_org_access(app.partner_org.parse().unwrap(), true).await.unwrap();
    let r = app.get("/v1/projects").key(&child_key).send().await;
    r.assert_error(503, "KILL_SWITCH");
    assert_eq!(r.body["error"]["details"]["scope"], "organization");
    assert_eq!(app.get("/v1/whoami").key(&child_key).send().await.assert_status(200)["apiAccessRevoked"], true);
    app.strata.set_org_access(app.partner_org.parse().unwrap(), false).await.unwrap();
    app.get("/v1/projects").key(&child_key).send().await.assert_status(200);
    assert_eq!(app.get("/v1/whoami").key(&child_key).send().await.assert_status(200)["apiAccessRevoked"], false);
}

#[tokio::test]
async fn a_rotated_child_key_works_until_its_grace_window_ends() {
    let app = TestApp::spawn().await;
    let org = app.create_child("Acme").await;
    let (id, old) = app.child_key(&org, &["projects:read"]).await;
    let r = app.post(&format!("/v1/organizations/{org}/api-keys/{id}/rotate")).key(&app.admin_key).send().await;
    let new = r.assert_status(201)["secret"].as_str().unwrap().to_owned();
    app.clock.advance_ms(24 * HOUR_MS - 1);
    app.get("/v1/whoami").key(&old).send().await.assert_status(200);
    app.clock.advance_ms(1);
    app.get("/v1/whoami").key(&old).send().await.assert_error(401, "UNAUTHENTICATED");
    app.get("/v1/whoami").key(&new).send().await.assert_status(200);
    let list = app.get(&format!("/v1/organizations/{org}/api-keys")).key(&app.admin_key).send().await;
    let old_view = list.body["items"].as_array().unwrap().iter().find(|k| k["id"] == id.as_str()).unwrap().clone();
    assert_eq!(old_view["status"], "revoked", "listed as revoked once its grace has passed");
}

#[tokio::test]
async fn a_missing_scope_is_403_naming_it_and_is_audited() {
    let app = TestApp::spawn().await;
    let org = app.create_child("Acme").await;
    let (key_id, secret) = app.child_key(&org, &["content:read"]).await;
    let r = app.get("/v1/audit-log").key(&secret).send().await;
    r.assert_error(403, "FORBIDDEN_SCOPE");
    assert_eq!(r.body["error"]["details"]["scope"], "audit:read");
    let log =
        app.get(&format!("/v1/audit-log?eventType=auth.scope_denied&apiKeyId={key_id}")).key(&app.admin_key).acting(&org).send().await;
    let items = log.assert_status(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["requestId"].as_str(), r.header("x-request-id"));
    assert_eq!(items[0]["data"]["scope"], "audit:read");
}

#[tokio::test]
async fn a_key_without_scopes_is_denied_everywhere_it_needs_one() {
    let app = TestApp::spawn().await;
    let (org, _) = app.other_partner("Other").await;
    let (_, secret) = app
        .strata
        .operator_create_key(
            org.parse().unwrap(),
            "bare".into(),
            strata_core::scope::Scopes::default(),
            strata_core::apikey::Tier::Standard,
            strata_core::apikey::Env::Live,
        )
        .await
        .unwrap();
    app.get("/v1/audit-log").key(secret.expose()).send().await.assert_error(403, "FORBIDDEN_SCOPE");
    app.get("/v1/organizations").key(secret.expose()).send().await.assert_error(403, "FORBIDDEN_SCOPE");
}

#[tokio::test]
async fn the_acting_org_header_works_for_admins_only_and_only_on_direct_children() {
    let app = TestApp::spawn().await;
    let child = app.create_child("Acme").await;
    let (_, other_admin) = app.other_partner("Other").await;
    let foreign_child = {
        let r = app.post("/v1/organizations").key(&other_admin).json(&json!({"name": "Theirs"})).send().await;
        r.assert_status(201)["id"].as_str().unwrap().to_owned()
    };
    // Admin + own child: the request runs inside the child.
    let r = app.get("/v1/whoami").key(&app.admin_key).acting(&child).send().await;
    assert_eq!(r.assert_status(200)["organizationId"], child.as_str());
    // Bare UUID form works too.
    let bare = child.trim_start_matches("org_");
    app.get("/v1/whoami").key(&app.admin_key).acting(bare).send().await.assert_status(200);
    // Not a direct child: 404; malformed: 422.
    app.get("/v1/whoami").key(&app.admin_key).acting(&foreign_child).send().await.assert_error(404, "NOT_FOUND");
    app.get("/v1/whoami").key(&app.admin_key).acting("org_nope").send().await.assert_error(422, "VALIDATION");
    // A non-admin key's header is ignored.
    let (_, reader) = app.child_key(&child, &["content:read"]).await;
    let r = app.get("/v1/whoami").key(&reader).acting(&foreign_child).send().await;
    assert_eq!(r.assert_status(200)["organizationId"], child.as_str());
}

#[tokio::test]
async fn last_used_at_is_recorded_in_batches() {
    let app = TestApp::spawn().await;
    let org = app.create_child("Acme").await;
    let (id, secret) = app.child_key(&org, &["content:read"]).await;
    app.get("/v1/whoami").key(&secret).send().await.assert_status(200);
    let path = format!("/v1/organizations/{org}/api-keys");
    let find = |b: &serde_json::Value| b["items"].as_array().unwrap().iter().find(|k| k["id"] == id.as_str()).unwrap().clone();
    let before = app.get(&path).key(&app.admin_key).send().await;
    assert_eq!(find(&before.body)["lastUsedAt"], json!(null), "no write on the request path");
    assert!(strata_workers::flush_key_usage(&app.strata).await >= 1);
    let after = app.get(&path).key(&app.admin_key).send().await;
    assert_eq!(find(&after.body)["lastUsedAt"], "2026-06-01T00:00:00.000Z");
}
