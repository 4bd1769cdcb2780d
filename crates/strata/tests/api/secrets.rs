//! Secrets are shown once and never stored or logged in plaintext.

use serde_json::json;

use crate::helpers::{TestApp, captured_logs};

#[tokio::test]
async fn no_secret_appears_in_the_database_or_in_any_log_line() {
    let app = TestApp::spawn().await;
    let org = app.create_child("Acme").await;
    let mut secrets = vec![app.admin_key.clone()];
    let path = format!("/v1/organizations/{org}/api-keys");
    // Minted with an Idempotency-Key, so the reply holding the secret is stored for replay.
    let r = app.post(&path).key(&app.admin_key).idem("mint").json(&json!({"name": "i", "scopes": ["content:read"]})).send().await;
    let b = r.assert_status(201).clone();
    secrets.push(b["secret"].as_str().unwrap().to_owned());
    let id = b["apiKey"]["id"].as_str().unwrap().to_owned();
    let r = app.post(&format!("{path}/{id}/rotate")).key(&app.admin_key).idem("rotate").send().await;
    let rotated = r.assert_status(201)["secret"].as_str().unwrap().to_owned();
    secrets.push(rotated.clone());
    let own = app.post("/v1/api-keys").key(&app.admin_key).json(&json!({"name": "ci", "scopes": ["projects:read"]})).send().await;
    let own_secret = own.assert_status(201)["secret"].as_str().unwrap().to_owned();
    let own_id = own.body["apiKey"]["id"].as_str().unwrap().to_owned();
    secrets.push(own_secret.clone());
    let again = app.post(&format!("/v1/api-keys/{own_id}/rotate")).key(&own_secret).idem("self-rotate").send().await;
    secrets.push(again.assert_status(200)["secret"].as_str().unwrap().to_owned());
    // Use them, including failures that get logged and audited.
    app.get("/v1/whoami").key(&rotated).send().await.assert_status(200);
    app.get("/v1/whoami").key(&own_secret).send().await.assert_error(401, "UNAUTHENTICATED");

    let dump = app.database_dump().await;
    let logs = captured_logs();
    assert!(logs.contains("request"), "the logs were captured");
    for s in &secrets {
        let secret_part = &s[s.len() - 43..];
        assert!(!dump.contains(secret_part), "a secret is stored in plaintext");
        assert!(!logs.contains(secret_part), "a secret was logged");
    }
}

#[tokio::test]
async fn listed_keys_never_show_a_secret_or_hash() {
    let app = TestApp::spawn().await;
    let r = app.get("/v1/api-keys").key(&app.admin_key).send().await;
    let key = r.assert_status(200)["items"][0].clone();
    let fields: Vec<&str> = key.as_object().unwrap().keys().map(String::as_str).collect();
    for f in [
        "id",
        "organizationId",
        "name",
        "prefix",
        "env",
        "scopes",
        "rateLimitTier",
        "status",
        "createdAt",
        "lastUsedAt",
        "rotatedAt",
        "revokedAt",
        "graceUntil",
        "supersededBy",
    ] {
        assert!(fields.contains(&f), "missing {f}");
    }
    assert!(!key.to_string().contains(&app.admin_key[app.admin_key.len() - 43..]));
    assert!(key["prefix"].as_str().unwrap().starts_with("lp_live_"));
    assert_eq!(key["prefix"].as_str().unwrap().len(), "lp_live_".len() + 16);
}
