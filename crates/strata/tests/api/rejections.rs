//! Rejections are audited off the request path (CONTRACT §7): queued, written in batches, and
//! under a flood the excess is counted and the count audited.

use serde_json::{Value, json};

use crate::helpers::{Setup, TestApp};

/// The admin key's id with a wrong secret: a real key, refused.
fn forged(app: &TestApp) -> String {
    let keyid_part = &app.admin_key[..("lp_live_".len() + 16)];
    format!("{keyid_part}_{}", "A".repeat(43))
}

async fn audit(app: &TestApp, event_type: &str) -> Vec<Value> {
    let log = app.get(&format!("/v1/audit-log?eventType={event_type}")).key(&app.admin_key).send().await;
    log.assert_status(200)["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_flood_past_the_queue_audits_what_fits_and_the_exact_count_dropped() {
    let app = TestApp::spawn_with(Setup { audit_queue: Some(5), ..Setup::default() }).await;
    let bad = forged(&app);
    for _ in 0..8 {
        app.get("/v1/whoami").key(&bad).send().await.assert_error(401, "UNAUTHENTICATED");
    }
    assert_eq!(audit(&app, "auth.rejected").await.len(), 5, "the queue held five");
    let dropped = audit(&app, "audit.rejections_dropped").await;
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0]["data"], json!({ "dropped": 3 }));
    assert_eq!(dropped[0]["actor"], "system");
    assert_eq!(dropped[0]["organizationId"], app.partner_org.as_str());
    // Counted once: the next flush has nothing more to say.
    app.get("/v1/whoami").key(&bad).send().await.assert_error(401, "UNAUTHENTICATED");
    assert_eq!(audit(&app, "audit.rejections_dropped").await.len(), 1);
    assert_eq!(audit(&app, "auth.rejected").await.len(), 6);
}

#[tokio::test]
async fn a_rejection_waits_for_the_flusher_and_is_written_in_one_batch() {
    let app = TestApp::spawn().await;
    let bad = forged(&app);
    for _ in 0..3 {
        app.get("/v1/whoami").key(&bad).send().await.assert_error(401, "UNAUTHENTICATED");
    }
    app.get("/v1/whoami").key("lp_live_0123456789abcdef_nope").send().await.assert_error(401, "UNAUTHENTICATED");
    // Three in the partner's org and one that named no real key.
    assert_eq!(app.strata.flush_rejections().await.unwrap(), 4);
    assert_eq!(app.strata.flush_rejections().await.unwrap(), 0);
    assert_eq!(audit(&app, "auth.rejected").await.len(), 3);
}

#[tokio::test]
async fn a_rejection_answers_while_the_database_fails_writes_and_is_audited_once_it_returns() {
    let app = TestApp::spawn().await;
    let strata::StoreBackend::Sqlite { dir } = &app.backend else {
        return crate::helpers::skip("the write fault injector is SQLite's");
    };
    let (child, read_only) = {
        let org = app.create_child("Acme").await;
        let (_, secret) = app.child_key(&org, &["content:read"]).await;
        (org, secret)
    };
    strata_store::faults::set_down(dir, true);
    app.get("/v1/whoami").key(&forged(&app)).send().await.assert_error(401, "UNAUTHENTICATED");
    app.get("/v1/audit-log").key(&read_only).send().await.assert_error(403, "FORBIDDEN_SCOPE");
    assert!(app.strata.flush_rejections().await.is_err(), "the flush fails while the database is down");
    strata_store::faults::set_down(dir, false);
    let rejected = audit(&app, "auth.rejected").await;
    assert_eq!(rejected.len(), 1, "kept in the queue through the failed flush");
    let denied = app.get("/v1/audit-log?eventType=auth.scope_denied").key(&app.admin_key).acting(&child).send().await;
    assert_eq!(denied.assert_status(200)["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn shutdown_writes_the_rejections_still_queued() {
    let mut app = TestApp::spawn().await;
    app.get("/v1/whoami").key(&forged(&app)).send().await.assert_error(401, "UNAUTHENTICATED");
    let stopped = app.strata.clone();
    app.restart().await;
    assert_eq!(stopped.flush_rejections().await.unwrap(), 0, "the stopping server wrote it");
    assert_eq!(audit(&app, "auth.rejected").await.len(), 1);
}
