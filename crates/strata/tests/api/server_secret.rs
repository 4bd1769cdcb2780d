//! The server secret (CONTRACT §9): `strata secret generate|export|rotate`, and PostgreSQL's
//! refusal to start without a secret from outside the database.

use std::process::Command;

use serde_json::json;
use strata::StoreBackend;
use strata_core::cursor::ServerSecret;

use crate::helpers::{Setup, TestApp, fresh_pg_database, skip};
use crate::webhooks::{Receiver, endpoint, pump, stripe_verifies};

/// Runs the real binary with `args`, none of the operator's `STRATA_*` settings inherited.
fn strata(args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    for (name, _) in std::env::vars() {
        if name.starts_with("STRATA_") {
            cmd.env_remove(name);
        }
    }
    let out = cmd.args(args).env("RUST_LOG", "warn").output().expect("run strata");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The flags naming a test app's database.
fn database_of(app: &TestApp) -> Vec<String> {
    match &app.backend {
        StoreBackend::Sqlite { dir } => vec!["--data-dir".into(), dir.display().to_string()],
        StoreBackend::Postgres { url } => vec!["--database-url".into(), url.clone()],
    }
}

fn pg_url() -> Option<String> {
    std::env::var("STRATA_TEST_DATABASE_URL").ok().filter(|u| !u.is_empty())
}

#[test]
fn generate_prints_a_new_secret_each_time_and_touches_no_database() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let (code, first, err) = strata(&["--data-dir", data, "secret", "generate"]);
    assert_eq!(code, 0, "{err}");
    let (_, second, _) = strata(&["--data-dir", data, "secret", "generate"]);
    for s in [&first, &second] {
        assert!(ServerSecret::from_hex(s.trim()).is_some(), "64 hex characters: {s:?}");
    }
    assert_ne!(first, second);
    assert!(!dir.path().join("data").exists(), "no database was opened");
}

#[test]
fn export_on_sqlite_says_the_secret_already_lives_in_its_own_file() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = strata(&["--data-dir", dir.path().to_str().unwrap(), "secret", "export"]);
    assert_ne!(code, 0);
    assert!(out.is_empty() && err.contains("server.key"), "{err}");
}

#[tokio::test]
async fn rotate_reseals_every_sealed_value_under_the_new_secret() {
    let app = TestApp::spawn().await;
    // One value of each sealed column: an endpoint's signing secret and, after a rotation of
    // it, its previous one; a stored idempotent reply holding a key's secret.
    let (rx, url) = Receiver::start(vec![]).await;
    let (endpoint_id, first_signing) =
        endpoint(&app, &app.admin_key, None, json!({ "url": url, "events": ["organization.created"] })).await;
    let rot = app.post(&format!("/v1/webhook-endpoints/{endpoint_id}/rotate-secret")).key(&app.admin_key).send().await;
    let second_signing = rot.assert_status(200)["signingSecret"].as_str().unwrap().to_owned();
    let child = app.create_child("Acme").await;
    let mint = || {
        app.post(&format!("/v1/organizations/{child}/api-keys"))
            .key(&app.admin_key)
            .idem("mint-once")
            .json(&json!({ "name": "ci", "scopes": ["projects:read"] }))
    };
    let minted = mint().send().await.assert_status(201)["secret"].as_str().unwrap().to_owned();

    let (old, new) = (app.secret(), ServerSecret::generate().to_hex());
    let db = database_of(&app);
    let db: Vec<&str> = db.iter().map(String::as_str).collect();
    // Without the previous secret there is nothing to open the stored values with.
    let (code, _, err) = strata(&[&db[..], &["--secret-key", &new, "secret", "rotate"]].concat());
    assert_ne!(code, 0);
    assert!(err.contains("--previous-secret-key"), "{err}");

    let rotate = [&db[..], &["--secret-key", &new, "--previous-secret-key", &old, "secret", "rotate"]].concat();
    let (code, out, err) = strata(&rotate);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("re-sealed 3 values under the new secret (0 already were"), "{out}");
    let (code, out, err) = strata(&rotate);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("re-sealed 0 values under the new secret (3 already were"), "a second run has nothing left to do: {out}");

    // A node holding only the new secret opens everything.
    let peer = app.peer(Some(new), Setup::default()).await;
    let replay = peer
        .post(&format!("/v1/organizations/{child}/api-keys"))
        .key(&app.admin_key)
        .idem("mint-once")
        .json(&json!({ "name": "ci", "scopes": ["projects:read"] }))
        .send()
        .await;
    assert_eq!(replay.assert_status(201)["secret"], minted.as_str());
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    peer.post(&format!("/v1/webhook-endpoints/{endpoint_id}/test")).key(&app.admin_key).json(&json!({})).send().await.assert_status(200);
    assert_eq!(pump(&peer).await, 1);
    let seen = rx.seen();
    let (headers, body) = seen.last().unwrap();
    let sig = headers["x-layers-signature"].to_str().unwrap();
    assert!(stripe_verifies(&second_signing, sig, body), "the current signing secret opens under the new server secret");
    assert!(stripe_verifies(&first_signing, sig, body), "so does the previous one, during its overlap");
}

#[tokio::test]
async fn serve_on_postgres_without_a_secret_refuses_with_one_line_saying_how_to_make_one() {
    let Some(base) = pg_url() else {
        skip("PostgreSQL only (STRATA_TEST_DATABASE_URL is not set)");
        return;
    };
    let url = fresh_pg_database(&base).await;
    let (code, out, err) = strata(&["--database-url", &url, "serve", "--listen", "127.0.0.1:0"]);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("STRATA_SECRET_KEY") && err.contains("--secret-key-file") && err.contains("strata secret generate"), "{err}");
    let key = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key.path(), ServerSecret::generate().to_hex()).unwrap();
    let (code, _, err) =
        strata(&["--database-url", &url, "--secret-key-file", key.path().to_str().unwrap(), "partners", "create", "--name", "A"]);
    assert_eq!(code, 0, "{err}");
}

#[tokio::test]
async fn export_moves_a_secret_the_database_holds_out_of_it_once() {
    use sqlx::{Connection, Row};
    let Some(base) = pg_url() else {
        skip("PostgreSQL only (STRATA_TEST_DATABASE_URL is not set)");
        return;
    };
    let url = fresh_pg_database(&base).await;
    let held = ServerSecret::generate().to_hex();
    let (code, _, err) = strata(&["--database-url", &url, "--secret-key", &held, "partners", "create", "--name", "A"]);
    assert_eq!(code, 0, "migrated: {err}");
    // What strata before this change left: the secret in the settings table.
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("INSERT INTO settings (name, value) VALUES ('server_secret', $1)").bind(&held).execute(&mut conn).await.unwrap();

    let (code, _, err) = strata(&["--database-url", &url, "--secret-key", &held, "partners", "list"]);
    assert_eq!(code, 1);
    assert!(err.contains("strata secret export"), "a database holding its secret is refused until it is moved out: {err}");

    let (code, out, err) = strata(&["--database-url", &url, "secret", "export"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), held, "printed once, alone on stdout");
    assert!(err.contains("no longer in the database"), "{err}");
    let left = sqlx::query("SELECT count(*) AS n FROM settings WHERE name = 'server_secret'").fetch_one(&mut conn).await.unwrap();
    assert_eq!(left.get::<i64, _>("n"), 0);

    let key = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key.path(), &out).unwrap();
    let (code, _, err) = strata(&["--database-url", &url, "--secret-key-file", key.path().to_str().unwrap(), "partners", "list"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = strata(&["--database-url", &url, "secret", "export"]);
    assert_ne!(code, 0);
    assert!(out.is_empty() && err.contains("nothing to export"), "{err}");
}
