//! The authorization cache (CONTRACT §2 holds at once): every change to a key or an org holds at
//! the next request on the process that made it, and within 1 s on another process (a second
//! server on the same database, or the operator's command line beside a running server).

use std::time::{Duration, Instant};

use serde_json::json;
use strata::StoreBackend;

use crate::helpers::{Setup, TestApp, skip};

/// Requests `path` with `key` on `app` until it answers `status`, for at most 1 s (the bound
/// other processes are held to); panics with the last answer otherwise.
async fn within_a_second(app: &TestApp, path: &str, key: &str, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let r = app.get(path).key(key).send().await;
        if r.status == status {
            return;
        }
        assert!(Instant::now() < deadline, "{path} still answers {} after 1 s (wanted {status}): {}", r.status, r.body);
        tokio::task::yield_now().await;
    }
}

/// Limits out of reach: the polls of `within_a_second` (many a millisecond while another
/// process's change has not reached this one) must not spend a standard key's reads.
fn unlimited() -> Setup {
    let huge = r#"{"readsPerMinute": 1000000000, "writesPerMinute": 1000000000, "longRunningPerMinute": 1000000000, "dailyWrites": 1000000000, "concurrentJobs": 1000}"#;
    let json = format!(r#"{{"standard": {huge}, "partner": {huge}, "internal": {huge}}}"#);
    Setup { tier_limits: Some(strata_core::ratelimit::TierTable::default().with_overrides(&json).unwrap()), ..Setup::default() }
}

/// Sends `path` twice with `key` (the second answer comes from the cache) and checks both.
async fn warm(app: &TestApp, path: &str, key: &str) {
    for _ in 0..2 {
        app.get(path).key(key).send().await.assert_status(200);
    }
}

#[tokio::test]
async fn every_authorization_change_holds_at_the_next_request_on_the_same_process() {
    let app = TestApp::spawn().await;
    let org = app.create_child("Acme").await;
    let (id, secret) = app.child_key(&org, &["projects:read"]).await;
    let (_, other) = app.child_key(&org, &["projects:read"]).await;

    // Kill (by a key of the same org) and the operator's un-kill.
    warm(&app, "/v1/api-keys", &secret).await;
    app.post(&format!("/v1/api-keys/{id}/kill")).key(&other).send().await.assert_status(200);
    app.get("/v1/api-keys").key(&secret).send().await.assert_error(503, "KILL_SWITCH");
    app.strata.unkill_key(&id).await.unwrap();
    app.get("/v1/api-keys").key(&secret).send().await.assert_status(200);

    // Tier change: whoami shows it at once.
    warm(&app, "/v1/whoami", &secret).await;
    app.strata.set_key_tier(&id, strata_core::apikey::Tier::Pilot).await.unwrap();
    assert_eq!(app.get("/v1/whoami").key(&secret).send().await.assert_status(200)["rateLimitTier"], "pilot");

    // Suspend and resume the org.
    warm(&app, "/v1/api-keys", &secret).await;
    app.post(&format!("/v1/organizations/{org}/suspend")).key(&app.admin_key).send().await.assert_status(200);
    app.get("/v1/api-keys").key(&secret).send().await.assert_error(503, "KILL_SWITCH");
    app.post(&format!("/v1/organizations/{org}/resume")).key(&app.admin_key).send().await.assert_status(200);
    app.get("/v1/api-keys").key(&secret).send().await.assert_status(200);

    // The operator's cut-off of the partner holds for the partner's key and its child's key.
    warm(&app, "/v1/api-keys", &app.admin_key).await;
    let partner = app.partner_org.parse().unwrap();
    app.strata.set_org_access(partner, true).await.unwrap();
    app.get("/v1/api-keys").key(&app.admin_key).send().await.assert_error(503, "KILL_SWITCH");
    app.get("/v1/api-keys").key(&secret).send().await.assert_error(503, "KILL_SWITCH");
    app.strata.set_org_access(partner, false).await.unwrap();
    app.get("/v1/api-keys").key(&app.admin_key).send().await.assert_status(200);
    app.get("/v1/api-keys").key(&secret).send().await.assert_status(200);

    // Rotation: the old key works through its grace (evaluated per request from the cached
    // end, on the controllable clock), then not.
    warm(&app, "/v1/api-keys", &secret).await;
    let r = app.post(&format!("/v1/organizations/{org}/api-keys/{id}/rotate")).key(&app.admin_key).send().await;
    let new_secret = r.assert_status(201)["secret"].as_str().unwrap().to_owned();
    app.get("/v1/api-keys").key(&secret).send().await.assert_status(200);
    app.clock.advance_ms(24 * 3_600_000 - 1);
    app.get("/v1/api-keys").key(&secret).send().await.assert_status(200);
    app.clock.advance_ms(1);
    app.get("/v1/api-keys").key(&secret).send().await.assert_error(401, "UNAUTHENTICATED");

    // Revoke, then archive (which revokes the org's keys).
    warm(&app, "/v1/api-keys", &other).await;
    let other_id = app.get("/v1/whoami").key(&other).send().await.body["apiKeyId"].as_str().unwrap().to_owned();
    app.delete(&format!("/v1/organizations/{org}/api-keys/{other_id}")).key(&app.admin_key).send().await.assert_status(200);
    app.get("/v1/api-keys").key(&other).send().await.assert_error(401, "UNAUTHENTICATED");
    warm(&app, "/v1/api-keys", &new_secret).await;
    app.delete(&format!("/v1/organizations/{org}")).key(&app.admin_key).send().await.assert_status(200);
    app.get("/v1/api-keys").key(&new_secret).send().await.assert_error(401, "UNAUTHENTICATED");
}

#[tokio::test]
async fn whoami_from_the_cache_shows_the_balance_as_it_is_now() {
    let app = TestApp::spawn().await;
    app.grant(&app.partner_org, 1_000).await;
    warm(&app, "/v1/whoami", &app.admin_key).await;
    let child = app.create_child("Acme").await;
    app.allocate(&child, 300).await.assert_status(201);
    let who = app.get("/v1/whoami").key(&app.admin_key).send().await;
    assert_eq!(who.assert_status(200)["creditBalance"], 700);
}

#[tokio::test]
async fn a_change_on_another_node_holds_within_a_second() {
    let app = TestApp::spawn_with(unlimited()).await;
    let peer = app.peer(None, unlimited()).await;
    let org = app.create_child("Acme").await;
    let (id, secret) = app.child_key(&org, &["projects:read"]).await;
    warm(&peer, "/v1/api-keys", &secret).await;

    app.post(&format!("/v1/api-keys/{id}/kill")).key(&app.admin_key).acting(&org).send().await.assert_status(200);
    within_a_second(&peer, "/v1/api-keys", &secret, 503).await;
    app.strata.unkill_key(&id).await.unwrap();
    within_a_second(&peer, "/v1/api-keys", &secret, 200).await;

    app.post(&format!("/v1/organizations/{org}/suspend")).key(&app.admin_key).send().await.assert_status(200);
    within_a_second(&peer, "/v1/api-keys", &secret, 503).await;
    app.post(&format!("/v1/organizations/{org}/resume")).key(&app.admin_key).send().await.assert_status(200);
    within_a_second(&peer, "/v1/api-keys", &secret, 200).await;

    warm(&peer, "/v1/api-keys", &app.admin_key).await;
    app.strata.set_org_access(app.partner_org.parse().unwrap(), true).await.unwrap();
    within_a_second(&peer, "/v1/api-keys", &app.admin_key, 503).await;
    within_a_second(&peer, "/v1/api-keys", &secret, 503).await;
    app.strata.set_org_access(app.partner_org.parse().unwrap(), false).await.unwrap();
    within_a_second(&peer, "/v1/api-keys", &secret, 200).await;

    app.delete(&format!("/v1/organizations/{org}/api-keys/{id}")).key(&app.admin_key).send().await.assert_status(200);
    within_a_second(&peer, "/v1/api-keys", &secret, 401).await;
    drop(peer);
}

/// The operator's command line is another process; it exits right after its change.
#[tokio::test]
async fn the_command_line_beside_a_running_server_holds_within_a_second() {
    let app = TestApp::spawn_with(unlimited()).await;
    let org = app.create_child("Acme").await;
    let (id, secret) = app.child_key(&org, &["projects:read"]).await;
    let where_: Vec<String> = match &app.backend {
        StoreBackend::Sqlite { dir } => vec!["--data-dir".into(), dir.display().to_string()],
        StoreBackend::Postgres { url } => vec!["--database-url".into(), url.clone(), "--secret-key".into(), app.secret()],
    };
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(&where_)
            .args(args)
            .env_remove("STRATA_DATABASE_URL")
            .env_remove("STRATA_SECRET_KEY")
            .output()
            .expect("run strata");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    warm(&app, "/v1/api-keys", &secret).await;
    cli(&["keys", "kill", "--key", &id]);
    within_a_second(&app, "/v1/api-keys", &secret, 503).await;
    cli(&["keys", "unkill", "--key", &id]);
    within_a_second(&app, "/v1/api-keys", &secret, 200).await;
    cli(&["orgs", "access", "--org", &app.partner_org, "--revoke"]);
    within_a_second(&app, "/v1/api-keys", &secret, 503).await;
    cli(&["orgs", "access", "--org", &app.partner_org, "--restore"]);
    within_a_second(&app, "/v1/api-keys", &secret, 200).await;
    cli(&["keys", "tier", "--key", &id, "--tier", "partner"]);
    let deadline = Instant::now() + Duration::from_secs(1);
    while app.get("/v1/whoami").key(&secret).send().await.body["rateLimitTier"] != json!("partner") {
        assert!(Instant::now() < deadline, "the tier change did not hold within 1 s");
        tokio::task::yield_now().await;
    }
    cli(&["keys", "revoke", "--key", &id]);
    within_a_second(&app, "/v1/api-keys", &secret, 401).await;
}

/// A change nothing announces (a hand edit in SQL) is not seen while the `LISTEN` connection
/// holds; once that connection is lost, nothing cached before is trusted.
#[tokio::test]
async fn losing_the_listen_connection_drops_what_the_cache_holds() {
    let app = TestApp::spawn().await;
    let StoreBackend::Postgres { url } = app.backend.clone() else {
        return skip("PostgreSQL only: SQLite has no LISTEN connection");
    };
    let org = app.create_child("Acme").await;
    let (id, secret) = app.child_key(&org, &["projects:read"]).await;
    warm(&app, "/v1/api-keys", &secret).await;
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let bare = id.trim_start_matches("key_");
    sqlx::query("UPDATE api_keys SET killed = 1 WHERE id = $1").bind(bare).execute(&mut conn).await.unwrap();
    // Unannounced: the cached facts still answer.
    app.get("/v1/api-keys").key(&secret).send().await.assert_status(200);
    let ended: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%') t",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(ended >= 1, "no LISTEN session found");
    within_a_second(&app, "/v1/api-keys", &secret, 503).await;
}
