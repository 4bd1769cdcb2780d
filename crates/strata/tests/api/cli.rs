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
