//! The operator command line (CONTRACT §9), run as the real binary against its own database.

use std::process::Command;

use serde_json::Value;

fn strata(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("STRATA_DATABASE_URL")
        .env_remove("STRATA_SECRET_KEY")
        .output()
        .expect("run strata");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn partners_keys_and_access_work_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = strata(dir.path(), &["partners", "create", "--name", "Acme Platform", "--tier", "pilot", "--json"]);
    assert_eq!(code, 0, "{err}");
    let created: Value = serde_json::from_str(out.trim()).unwrap();
    let org = created["organizationId"].as_str().unwrap().to_owned();
    assert!(org.starts_with("org_"));
    assert!(created["apiKey"].as_str().unwrap().starts_with("lp_live_"));

    let (code, out, _) = strata(dir.path(), &["partners", "list", "--json"]);
    assert_eq!(code, 0);
    let list: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(list[0]["id"], org.as_str());

    let (code, out, err) =
        strata(dir.path(), &["keys", "create", "--org", &org, "--scopes", "projects:read,content:write", "--env", "test", "--json"]);
    assert_eq!(code, 0, "{err}");
    let key: Value = serde_json::from_str(out.trim()).unwrap();
    assert!(key["apiKey"].as_str().unwrap().starts_with("lp_test_"));
    let key_id = key["apiKeyId"].as_str().unwrap().to_owned();

    let (code, _, err) = strata(dir.path(), &["keys", "tier", "--key", &key_id, "--tier", "partner"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = strata(dir.path(), &["keys", "unkill", "--key", &key_id]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = strata(dir.path(), &["orgs", "access", "--org", &org, "--revoke"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = strata(dir.path(), &["orgs", "access", "--org", &org, "--restore"]);
    assert_eq!(code, 0, "{err}");
}

fn json_of(dir: &std::path::Path, args: &[&str]) -> Value {
    let (code, out, err) = strata(dir, args);
    assert_eq!(code, 0, "strata {args:?}: {err}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("strata {args:?} printed no JSON ({e}): {out}"))
}

/// Finding 5 of the operator issue: the command line lists, shows, kills and revokes keys, lists
/// and shows orgs, renames a partner, reads and adjusts the ledger, and reads the audit log; a
/// killed key shows as killed.
#[test]
fn the_operator_reads_and_corrects_everything_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let created = json_of(p, &["partners", "create", "--name", "Acme Platform", "--credits", "1000", "--json"]);
    let org = created["organizationId"].as_str().unwrap().to_owned();
    let key = json_of(p, &["keys", "create", "--org", &org, "--scopes", "projects:read", "--json"]);
    let key_id = key["apiKeyId"].as_str().unwrap().to_owned();

    // Keys: list, kill (shown as killed, still active), show by prefix, revoke.
    assert_eq!(json_of(p, &["keys", "list", "--org", &org, "--json"]).as_array().unwrap().len(), 2);
    let killed = json_of(p, &["keys", "kill", "--key", &key_id, "--json"]);
    assert_eq!((killed["status"].as_str(), killed["killSwitch"].as_bool()), (Some("active"), Some(true)));
    let prefix = killed["prefix"].as_str().unwrap().to_owned();
    assert_eq!(json_of(p, &["keys", "show", "--key", &prefix, "--json"])["id"], key_id.as_str());
    let revoked = json_of(p, &["keys", "revoke", "--key", &key_id, "--json"]);
    assert_eq!(revoked["status"], "revoked");
    let (code, out, _) = strata(p, &["keys", "list", "--org", &org]);
    assert_eq!(code, 0);
    assert!(out.lines().any(|l| l.starts_with(&key_id) && l.contains("revoked") && l.contains("KILLED")), "{out}");

    // Orgs and partners.
    let (code, _, err) = strata(p, &["partners", "rename", "--org", &org, "--name", "Acme Platform GmbH"]);
    assert_eq!(code, 0, "{err}");
    let shown = json_of(p, &["partners", "show", "--org", &org, "--json"]);
    assert_eq!((shown["name"].as_str(), shown["children"].as_u64()), (Some("Acme Platform GmbH"), Some(0)));
    assert_eq!(shown["credits"]["balance"], 1000);
    let listed = json_of(p, &["orgs", "list", "--status", "active", "--json"]);
    assert_eq!(listed[0]["id"], org.as_str());
    assert_eq!(json_of(p, &["orgs", "list", "--parent", &org, "--json"]).as_array().unwrap().len(), 0);

    // Credits: a signed adjustment each way, never below available; the ledger stays whole.
    let up = json_of(p, &["credits", "adjust", "--org", &org, "--credits", "250", "--reason", "goodwill for the outage", "--json"]);
    assert_eq!(up["balance"], 1250);
    let down = json_of(p, &["credits", "adjust", "--org", &org, "--credits", "-1200", "--reason", "duplicate grant", "--json"]);
    assert_eq!((down["balance"].as_i64(), down["available"].as_i64()), (Some(50), Some(50)));
    let (code, _, err) = strata(p, &["credits", "adjust", "--org", &org, "--credits", "-51", "--reason", "too much"]);
    assert_ne!(code, 0);
    assert!(err.contains("credits") && err.contains("-50"), "{err}");
    let (code, _, err) = strata(p, &["credits", "adjust", "--org", &org, "--credits", "5", "--reason", " "]);
    assert_ne!(code, 0);
    assert!(err.contains("reason"), "{err}");
    assert_eq!(json_of(p, &["credits", "balance", "--org", &org, "--json"])["balance"], 50);
    let history = json_of(p, &["credits", "history", "--org", &org, "--event-type", "adjustment", "--json"]);
    let deltas: Vec<i64> = history.as_array().unwrap().iter().map(|e| e["credits"].as_i64().unwrap()).collect();
    assert_eq!(deltas, vec![-1200, 250]);
    assert_eq!(history[0]["metadata"]["reason"], "duplicate grant");
    let check = json_of(p, &["ledger", "check", "--json"]);
    assert_eq!(check["ok"], true, "{check}");
    assert_eq!((check["created"].as_i64(), check["destroyed"].as_i64()), (Some(1250), Some(1200)));

    // The audit log, filtered.
    let audit = json_of(p, &["audit", "--org", &org, "--event-type", "credits.adjusted", "--json"]);
    assert_eq!(audit.as_array().unwrap().len(), 2);
    assert_eq!(audit[0]["actor"], "operator");
    let (code, out, _) = strata(p, &["audit", "--org", &org]);
    assert_eq!(code, 0);
    for what in ["api_key.killed", "api_key.revoked", "organization.renamed", "credits.adjusted"] {
        assert!(out.contains(what), "{what} missing from: {out}");
    }

    let version = json_of(p, &["version", "--json"]);
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));
    assert!(version["schema"]["sqlite"].as_i64().unwrap() > 0);
}

#[test]
fn bad_operator_input_fails_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = strata(dir.path(), &["partners", "create", "--name", "Acme"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = strata(dir.path(), &["partners", "create", "--name", "A", "--tier", "gold"]);
    assert_ne!(code, 0);
    assert!(err.contains("tier"), "{err}");
    let (code, _, err) = strata(dir.path(), &["keys", "create", "--org", "org_nope", "--scopes", "projects:read"]);
    assert_ne!(code, 0);
    assert!(err.contains("org"), "{err}");
    let (code, _, _) = strata(dir.path(), &["orgs", "access", "--org", "org_00000000-0000-4000-8000-000000000000", "--revoke"]);
    assert_ne!(code, 0);
}

/// Finding 7 of the operator issue: an unreachable PostgreSQL is named at once (it used to hang
/// for 30 s, then say "pool timed out").
#[test]
fn an_unreachable_postgresql_is_one_clear_line_at_once() {
    for (url, says) in [
        ("postgres://postgres@127.0.0.1:1/postgres", "connection refused"),
        ("postgres://postgres:hunter2@127.0.0.1:1/postgres", "connection refused"),
    ] {
        let started = std::time::Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["--database-url", url, "partners", "list"])
            .env("STRATA_SECRET_KEY", "00".repeat(32))
            .output()
            .expect("run strata");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(says) && err.contains("127.0.0.1:1"), "{err}");
        assert!(!err.contains("hunter2") && !err.contains("internal"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "took {:?}", started.elapsed());
    }
}

/// `strata doctor` reports each check on one line and exits 1 when one fails.
#[test]
fn doctor_names_each_failure_with_one_line_and_a_non_zero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    // No database yet.
    let (code, out, _) = strata(p, &["doctor"]);
    assert_eq!(code, 1);
    assert!(out.lines().any(|l| l.starts_with("FAIL  database: no strata database")), "{out}");

    json_of(p, &["partners", "create", "--name", "Acme Platform", "--json"]);
    let checks = json_of(p, &["doctor", "--json"]);
    let outcome = |name: &str| checks.as_array().unwrap().iter().find(|c| c["check"] == name).map(|c| c["outcome"].clone()).unwrap();
    for name in ["database", "migrations", "secret", "disk", "clock"] {
        assert_eq!(outcome(name), "ok", "{checks}");
    }
    assert_eq!(outcome("redis"), "skip");

    let (code, out, _) = strata(p, &["doctor", "--redis-url", "redis://127.0.0.1:1"]);
    assert_eq!(code, 1);
    assert!(out.lines().any(|l| l.starts_with("FAIL  redis:")), "{out}");

    // A server.key that is not the one the database was made with.
    std::fs::write(p.join("server.key"), "ab".repeat(32)).unwrap();
    let (code, out, _) = strata(p, &["doctor"]);
    assert_eq!(code, 1);
    let line = out.lines().find(|l| l.contains("secret:")).unwrap();
    assert!(line.starts_with("FAIL") && line.contains("does not open"), "{out}");
}

/// `serve --bootstrap-key-file` writes the first admin key to an owner-only file, never to the
/// output.
#[test]
fn serve_writes_the_first_admin_key_to_a_file_when_asked() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("admin.key");
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["serve", "--listen", "127.0.0.1:0", "--bootstrap-key-file"])
        .arg(&key_file)
        .env_remove("STRATA_DATABASE_URL")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start strata serve");
    let mut printed = Vec::new();
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let listening = line.starts_with("strata listening");
        printed.push(line);
        if listening {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let key = std::fs::read_to_string(&key_file).expect("the key file").trim().to_owned();
    assert!(key.starts_with("lp_live_"), "{key}");
    assert!(printed.iter().all(|l| !l.contains(&key)), "the key was printed: {printed:?}");
    assert!(printed.iter().any(|l| l.contains("written to")), "{printed:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    }
}

#[test]
fn a_malformed_retry_schedule_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = strata(dir.path(), &["--webhook-retry-schedule", "soon", "partners", "list"]);
    assert_eq!(code, 2);
    assert!(err.contains("STRATA_WEBHOOK_RETRY_SCHEDULE"), "{err}");
}

#[test]
fn malformed_tier_limits_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = strata(dir.path(), &["--tier-limits", r#"{"gold": {}}"#, "partners", "list"]);
    assert_eq!(code, 2);
    assert!(err.contains("STRATA_TIER_LIMITS"), "{err}");
    let (code, _, err) =
        strata(dir.path(), &["--tier-limits", r#"{"standard": {"readsPerMinute": 240}}"#, "partners", "create", "--name", "A"]);
    assert_eq!(code, 0, "{err}");
}
