//! Issue 13's guard rails and backups: an operator's ordinary mistakes are refused with one line
//! saying what to do, instead of losing or polluting data. Driven through the real binary.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use strata::{OpenOptions, StoreBackend};
use strata_core::cursor::ServerSecret;

use crate::helpers::{TestApp, fresh_pg_database, serve_test, skip};
use crate::webhooks::{Receiver, endpoint, stripe_verifies};

/// Runs the real binary with `args` in `cwd` (default: this process's), none of the operator's
/// `STRATA_*` settings inherited.
fn strata_in(cwd: Option<&Path>, args: &[&str]) -> (i32, String, String) {
    let out = command(cwd).args(args).output().expect("run strata");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn strata(args: &[&str]) -> (i32, String, String) {
    strata_in(None, args)
}

fn command(cwd: Option<&Path>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    for (name, _) in std::env::vars() {
        if name.starts_with("STRATA_") {
            cmd.env_remove(name);
        }
    }
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    cmd.env("RUST_LOG", "warn");
    cmd
}

fn pg_url() -> Option<String> {
    std::env::var("STRATA_TEST_DATABASE_URL").ok().filter(|u| !u.is_empty())
}

/// Asserts a refusal: a non-zero exit and exactly one line on stderr holding every `needle`.
#[track_caller]
fn assert_refused((code, out, err): &(i32, String, String), needles: &[&str]) {
    assert_ne!(*code, 0, "refused: {out}{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    for n in needles {
        assert!(err.contains(n), "{n:?} in: {err}");
    }
}

/// A `strata serve` process, stopped (killed) when dropped.
struct Served {
    child: Child,
}

impl Served {
    /// Starts `strata serve` on a port of its own and waits (boundedly) for its listening line.
    fn start(args: &[&str]) -> Result<Served, (i32, String)> {
        Self::start_in(None, args)
    }

    fn start_in(cwd: Option<&Path>, args: &[&str]) -> Result<Served, (i32, String)> {
        let mut child = command(cwd)
            .args(args)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start strata serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    if line.starts_with("strata listening on ") {
                        return Ok(Served { child });
                    }
                }
                Err(_) => {
                    let out = child.wait_with_output().expect("strata serve ended");
                    return Err((out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned()));
                }
            }
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

// Finding 1: a strata.db restored without its server.key made a new key silently.
#[test]
fn a_database_opened_with_another_secret_is_refused_and_rotation_moves_the_check() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = data.to_str().unwrap();
    let (code, _, err) = strata(&["--data-dir", d, "partners", "create", "--name", "Acme"]);
    assert_eq!(code, 0, "{err}");
    let old_key = tmp.path().join("old.key");
    std::fs::rename(data.join("server.key"), &old_key).unwrap();

    // The database without its key: every command refuses, and no new key is made.
    assert_refused(&strata(&["--data-dir", d, "partners", "list"]), &["server.key is missing", "--secret-key-file"]);
    let served = Served::start(&["--data-dir", d]).err().expect("serve refuses");
    assert_ne!(served.0, 0);
    assert!(served.1.contains("server.key is missing"), "{}", served.1);
    assert!(!data.join("server.key").exists(), "no new key was made");
    // Another secret: refused, naming its fingerprint (never the secret).
    let other = ServerSecret::generate();
    let refused = strata(&["--data-dir", d, "--secret-key", &other.to_hex(), "partners", "list"]);
    assert_refused(&refused, &["does not open this database", &other.fingerprint()]);
    assert!(!refused.2.contains(&other.to_hex()));
    // The right one, from a file: opens.
    let old = old_key.to_str().unwrap();
    let (code, out, err) = strata(&["--data-dir", d, "--secret-key-file", old, "partners", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Acme"), "{out}");

    // A rotation moves the check value to the new secret: the old one alone no longer opens it.
    let new_key = tmp.path().join("new.key");
    std::fs::write(&new_key, ServerSecret::generate().to_hex()).unwrap();
    let new = new_key.to_str().unwrap();
    let (code, _, err) = strata(&["--data-dir", d, "--secret-key-file", new, "partners", "list"]);
    assert_ne!(code, 0, "the new secret alone is refused before the rotation: {err}");
    let (code, _, err) = strata(&["--data-dir", d, "--secret-key-file", new, "--previous-secret-key-file", old, "partners", "list"]);
    assert_eq!(code, 0, "during a rotation both open it: {err}");
    let (code, _, err) = strata(&["--data-dir", d, "--secret-key-file", new, "--previous-secret-key-file", old, "secret", "rotate"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = strata(&["--data-dir", d, "--secret-key-file", new, "partners", "list"]);
    assert_eq!(code, 0, "{err}");
    assert_refused(&strata(&["--data-dir", d, "--secret-key-file", old, "partners", "list"]), &["does not open this database"]);
}

// Finding 1, on a database made before check values existed: its sealed values decide.
#[tokio::test]
async fn a_database_without_a_check_value_is_judged_by_what_it_holds_sealed() {
    let app = TestApp::spawn().await;
    let (_rx, url) = Receiver::start(vec![]).await;
    endpoint(&app, &app.admin_key, None, json!({ "url": url, "events": ["organization.created"] })).await;
    remove_check_value(&app).await;
    let opts = |secret_hex: Option<String>| OpenOptions { backend: app.backend.clone(), secret_hex, ..OpenOptions::sqlite("unused") };
    let clock = Arc::new(app.clock.clone());
    let err = strata::open(&opts(Some(ServerSecret::generate().to_hex())), clock.clone()).await.err().expect("another secret is refused");
    assert!(err.to_string().contains("does not open this database"), "{err}");
    strata::open(&opts(Some(app.secret())), clock).await.expect("the right secret opens it, and writes the check value");
}

async fn remove_check_value(app: &TestApp) {
    use sqlx::Connection;
    let sql = "DELETE FROM settings WHERE name = 'secret_check'";
    match &app.backend {
        StoreBackend::Sqlite { dir } => {
            let url = format!("sqlite://{}", dir.join("strata.db").display());
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            assert_eq!(sqlx::query(sql).execute(&mut conn).await.unwrap().rows_affected(), 1);
        }
        StoreBackend::Postgres { url } => {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            assert_eq!(sqlx::query(sql).execute(&mut conn).await.unwrap().rows_affected(), 1);
        }
    }
}

// Finding 3: any command run from another directory made an empty ./strata-data.
#[test]
fn only_serve_makes_a_database_at_the_default_directory() {
    let cwd = tempfile::tempdir().unwrap();
    let here = Some(cwd.path());
    let looked = ["./strata-data", "--data-dir", "--database-url"];
    assert_refused(&strata_in(here, &["partners", "list"]), &looked);
    assert_refused(&strata_in(here, &["credits", "grant", "--org", "org_00000000-0000-4000-8000-000000000000", "--credits", "5"]), &looked);
    assert_refused(&strata_in(here, &["partners", "create", "--name", "Acme"]), &looked);
    assert_refused(&strata_in(here, &["backup", "--to", "b"]), &looked);
    assert!(!cwd.path().join("strata-data").exists(), "nothing was created");

    // An explicit directory: only `partners create` (and `restore`) may start a new database.
    assert_refused(&strata_in(here, &["--data-dir", "elsewhere", "partners", "list"]), &["elsewhere", "--data-dir"]);
    assert!(!cwd.path().join("elsewhere").exists());
    let (code, _, err) = strata_in(here, &["--data-dir", "elsewhere", "partners", "create", "--name", "Acme"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = strata_in(here, &["--data-dir", "elsewhere", "partners", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Acme"));
    // `serve` makes one at the default directory.
    let _served = Served::start_in(here, &[]).expect("serve starts");
    assert!(cwd.path().join("strata-data/strata.db").exists());
}

#[tokio::test]
async fn on_postgres_a_database_without_strata_is_not_initialised_by_a_listing() {
    let Some(base) = pg_url() else {
        skip("PostgreSQL only (STRATA_TEST_DATABASE_URL is not set)");
        return;
    };
    let url = fresh_pg_database(&base).await;
    let key = ServerSecret::generate().to_hex();
    assert_refused(
        &strata(&["--database-url", &url, "--secret-key", &key, "partners", "list"]),
        &["no strata database at", "--database-url"],
    );
    let (code, _, err) = strata(&["--database-url", &url, "--secret-key", &key, "partners", "create", "--name", "Acme"]);
    assert_eq!(code, 0, "an explicit URL may be initialised by partners create: {err}");
    let (code, out, err) = strata(&["--database-url", &url, "--secret-key", &key, "partners", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Acme"));
}

// Finding 4: a second serve started on the same directory; strata.db was 0644.
#[test]
fn one_serve_per_data_directory_while_the_command_line_and_backup_run_beside_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let d = data.to_str().unwrap();
    let first = Served::start(&["--data-dir", d]).expect("the first serve starts");
    let (code, err) = Served::start(&["--data-dir", d]).err().expect("a second serve is refused");
    assert_ne!(code, 0);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("already running") && err.contains("serve.lock"), "{err}");

    let (code, out, err) = strata(&["--data-dir", d, "partners", "list", "--json"]);
    assert_eq!(code, 0, "the command line runs beside the server: {err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap().as_array().unwrap().len(), 1);
    let backup = tmp.path().join("backup");
    let (code, _, err) = strata(&["--data-dir", d, "backup", "--to", backup.to_str().unwrap()]);
    assert_eq!(code, 0, "backup runs beside the server: {err}");

    #[cfg(unix)]
    {
        assert_eq!(mode(&data), 0o700);
        for f in ["strata.db", "strata.db-wal", "strata.db-shm", "server.key", "serve.lock"] {
            assert_eq!(mode(&data.join(f)), 0o600, "{f}");
        }
        assert_eq!(mode(&backup), 0o700);
        for f in ["strata.db", "server.key"] {
            assert_eq!(mode(&backup.join(f)), 0o600, "backup {f}");
        }
    }
    // The lock ends with the process, however it ends.
    drop(first);
    let _again = Served::start(&["--data-dir", d]).expect("serve starts once the first is gone");
}

// Finding 2: bench wrote a permanent funded partner into the configured database.
#[tokio::test]
async fn bench_never_touches_the_configured_database() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let bench = ["bench", "whoami", "--seconds", "1", "--clients", "2", "--children", "1"];
    let (code, out, err) = strata(&[&["--data-dir", data.to_str().unwrap()][..], &bench].concat());
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("on sqlite"), "{out}");
    assert!(!data.exists(), "the configured SQLite directory is untouched");

    let Some(base) = pg_url() else {
        skip("the PostgreSQL half needs STRATA_TEST_DATABASE_URL");
        return;
    };
    let url = fresh_pg_database(&base).await;
    let key = ServerSecret::generate().to_hex();
    let (code, _, err) = strata(&["--database-url", &url, "--secret-key", &key, "partners", "create", "--name", "Acme"]);
    assert_eq!(code, 0, "{err}");
    // The bench names its scratch database after its process id: look for that one only (other
    // runs may be benching on the same server meanwhile).
    let args: Vec<&str> = [&["--database-url", &url, "--secret-key", &key][..], &bench].concat();
    let child = command(None).args(&args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("on postgres"), "{stdout}");
    let (code, out, err) = strata(&["--database-url", &url, "--secret-key", &key, "partners", "list", "--json"]);
    assert_eq!(code, 0, "{err}");
    let partners: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(partners.as_array().unwrap().len(), 1, "no bench partner in the configured database: {partners}");
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&base).await.unwrap();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname LIKE $1")
        .bind(format!("strata\\_bench\\_{pid}\\_%"))
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, 0, "the scratch database strata_bench_{pid}_… was dropped");
}

// Backups: one taken under write load restores to a server whose ledger holds and whose
// webhooks deliver.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_under_write_load_restores_to_a_working_server() {
    let app = TestApp::spawn().await;
    let dir = match &app.backend {
        StoreBackend::Sqlite { dir } => dir.clone(),
        StoreBackend::Postgres { url } => {
            // PostgreSQL is backed up with pg_dump: the command says so, with the key's fingerprint.
            let secret = app.secret();
            let r = strata(&["--database-url", url, "--secret-key", &secret, "backup", "--to", "/nonexistent/b"]);
            assert_refused(&r, &["pg_dump", &ServerSecret::from_hex(&secret).unwrap().fingerprint()]);
            assert!(!r.1.contains(&secret) && !r.2.contains(&secret), "the secret is never printed");
            return;
        }
    };
    let (rx, url) = Receiver::start(vec![]).await;
    let (endpoint_id, signing) = endpoint(&app, &app.admin_key, None, json!({ "url": url, "events": ["organization.created"] })).await;
    app.grant(&app.partner_org, 1_000_000).await;
    let mut children = Vec::new();
    for i in 0..4 {
        children.push(app.create_child(&format!("child-{i}")).await);
    }

    // A few clients allocate as fast as they can while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let (progress, mut watch) = tokio::sync::watch::channel(0u64);
    let progress = Arc::new(progress);
    let mut clients = Vec::new();
    for child in children.clone() {
        let (client, base, key) = (app.client.clone(), app.base.clone(), app.admin_key.clone());
        let (stop, done, progress) = (stop.clone(), done.clone(), progress.clone());
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let r = client
                    .post(format!("{base}/v1/organizations/{child}/credits/allocate"))
                    .bearer_auth(&key)
                    .header("Idempotency-Key", ulid::Ulid::new().to_string())
                    .json(&json!({ "credits": 3 }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 201, "{}", r.text().await.unwrap_or_default());
                progress.send_replace(done.fetch_add(1, Ordering::SeqCst) + 1);
            }
        }));
    }
    watch.wait_for(|n| *n >= 20).await.unwrap();
    let at_start = done.load(Ordering::SeqCst);
    let backup = tempfile::tempdir().unwrap();
    let to = backup.path().join("b");
    let (d, t) = (dir.display().to_string(), to.display().to_string());
    let (code, out, err) = tokio::task::spawn_blocking(move || strata(&["--data-dir", &d, "backup", "--to", &t])).await.unwrap();
    let at_end = done.load(Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("server secret fingerprint") && !out.contains(&app.secret()), "{out}");
    assert!(at_end > at_start, "allocations went on during the backup ({at_start} → {at_end})");
    app.assert_ledger().await;

    // Restore into a new directory: its ledger check passes and it holds allocations.
    let restored = backup.path().join("restored");
    let r = restored.to_str().unwrap();
    let (code, _, err) = strata(&["--data-dir", r, "restore", "--from", to.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = strata(&["--data-dir", r, "ledger", "check", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert!(report["transfers"].as_u64().unwrap() > 20, "{report}");
    // Restoring again over it is refused: a live database is never overwritten.
    assert_refused(&strata(&["--data-dir", r, "restore", "--from", to.to_str().unwrap()]), &["already holds strata.db"]);
    let (code, _, err) = strata(&["--data-dir", dir.to_str().unwrap(), "restore", "--from", to.to_str().unwrap()]);
    assert!(code != 0 && err.contains("already holds"), "{err}");
    // So is a directory whose database was removed but whose write-ahead log was left behind.
    let stale = backup.path().join("stale");
    std::fs::create_dir(&stale).unwrap();
    std::fs::write(stale.join("strata.db-wal"), b"old frames").unwrap();
    assert_refused(
        &strata(&["--data-dir", stale.to_str().unwrap(), "restore", "--from", to.to_str().unwrap()]),
        &["already holds strata.db-wal"],
    );

    // The restored server opens the sealed signing secret and delivers, signed as before.
    let core = strata_core::service::CoreConfig { dev_mode: true, ..Default::default() };
    let opts = OpenOptions { core, ..OpenOptions::sqlite(&restored) };
    let server = strata::open(&opts, Arc::new(app.clock.clone())).await.expect("the restored database opens with its key");
    let (base, stop, _served) = serve_test(server.clone()).await;
    let r = app
        .client
        .post(format!("{base}/v1/webhook-endpoints/{endpoint_id}/test"))
        .bearer_auth(&app.admin_key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let before = rx.seen().len();
    strata_workers::dispatch_events(&server).await;
    let sent = strata_workers::send_deliveries(&server, &strata_workers::HttpSender::new(false, true)).await;
    assert!(sent >= 1, "the restored server delivers");
    let seen = rx.seen();
    assert!(seen.len() > before);
    let (headers, body) = seen.last().unwrap();
    assert!(stripe_verifies(&signing, headers["x-layers-signature"].to_str().unwrap(), body), "signed with the endpoint's secret");
    let _ = stop.send(());
}
