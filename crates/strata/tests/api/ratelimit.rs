//! Rate limits (CONTRACT §1): per-key buckets by endpoint class and tier, reported on every
//! authenticated response, 429 with Retry-After when spent, refilled as the clock moves.

use serde_json::json;

use crate::helpers::{Resp, Setup, TestApp};

/// The four `X-RateLimit-*` headers of a response, class first.
fn standing(r: &Resp) -> [Option<&str>; 4] {
    ["x-ratelimit-endpoint-class", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"].map(|h| r.header(h))
}

#[tokio::test]
async fn responses_report_the_class_and_what_remains() {
    let app = TestApp::spawn().await;
    let (_, key) = app.other_partner("Standard").await;
    let r = app.get("/v1/whoami").key(&key).send().await;
    assert_eq!(r.header("x-ratelimit-endpoint-class"), Some("read-light"));
    assert_eq!(r.header("x-ratelimit-limit"), Some("120"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("119"));
    assert_eq!(r.header("x-ratelimit-reset"), Some("1"));
    let w = app.post("/v1/organizations").key(&key).json(&json!({ "name": "A" })).send().await;
    assert_eq!((w.header("x-ratelimit-endpoint-class"), w.header("x-ratelimit-limit")), (Some("write-light"), Some("60")));
    // Errors carry them too.
    let e = app.get("/v1/organizations/org_nope").key(&key).send().await;
    assert_eq!(e.header("x-ratelimit-remaining"), Some("118"));
}

#[tokio::test]
async fn a_spent_bucket_is_429_with_retry_after_and_refills_with_time() {
    let app = TestApp::spawn().await;
    let (_, key) = app.other_partner("Standard").await;
    for _ in 0..60 {
        app.patch("/v1/organizations/org_00000000-0000-4000-8000-000000000000")
            .key(&key)
            .json(&json!({}))
            .send()
            .await
            .assert_error(404, "NOT_FOUND");
    }
    let r = app.post("/v1/organizations").key(&key).json(&json!({ "name": "One too many" })).send().await;
    r.assert_error(429, "RATE_LIMITED");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!((r.header("x-ratelimit-remaining"), r.header("x-ratelimit-endpoint-class")), (Some("0"), Some("write-light")));
    // Reads are still allowed; nothing was created.
    let list = app.get("/v1/organizations").key(&key).send().await;
    assert_eq!(list.assert_status(200)["items"], json!([]));
    let audit = app.get("/v1/audit-log?eventType=rate_limit.hit").key(&key).send().await;
    assert_eq!(audit.assert_status(200)["items"].as_array().unwrap().len(), 1);
    app.clock.advance_ms(1_000);
    app.post("/v1/organizations").key(&key).json(&json!({ "name": "Now" })).send().await.assert_status(201);
}

#[tokio::test]
async fn starting_a_job_counts_as_long_running() {
    let app = TestApp::spawn().await;
    let r = app.post("/v1/projects").key(&app.admin_key).json(&json!({ "name": "P", "timezone": "UTC" })).send().await;
    let project = r.assert_status(201)["id"].as_str().unwrap().to_owned();
    app.grant(&app.partner_org, 1_000).await;
    let r = app.post(&format!("/v1/projects/{project}/content")).key(&app.admin_key).json(&json!({})).send().await;
    r.assert_status(202);
    assert_eq!((r.header("x-ratelimit-endpoint-class"), r.header("x-ratelimit-limit")), (Some("long-running"), Some("300")));
}

#[tokio::test]
async fn refusals_of_a_live_key_carry_its_standing_and_count_against_its_bucket() {
    let app = TestApp::spawn().await;
    let (_, key) = app.other_partner("Standard").await;
    let child = {
        let r = app.post("/v1/organizations").key(&key).json(&json!({ "name": "Acme" })).send().await;
        r.assert_status(201)["id"].as_str().unwrap().to_owned()
    };
    let unknown = "org_00000000-0000-4000-8000-000000000000";
    let r = app.get("/v1/organizations").key(&key).acting(unknown).send().await;
    r.assert_error(404, "NOT_FOUND");
    assert_eq!(standing(&r), [Some("read-light"), Some("120"), Some("119"), Some("1")]);
    let r = app.get("/v1/organizations").key(&key).acting("not-an-id").send().await;
    r.assert_error(422, "VALIDATION");
    assert_eq!(standing(&r)[2], Some("118"), "counted like any other request");
    let mint = app.post(&format!("/v1/organizations/{child}/api-keys")).key(&key);
    let minted = mint.json(&json!({ "name": "ro", "scopes": ["content:read"] })).send().await;
    let read_only = minted.assert_status(201)["secret"].as_str().unwrap().to_owned();
    let r = app.get("/v1/audit-log").key(&read_only).send().await;
    r.assert_error(403, "FORBIDDEN_SCOPE");
    assert_eq!(standing(&r)[..2], [Some("read-light"), Some("120")]);
    app.delete(&format!("/v1/organizations/{child}")).key(&key).send().await.assert_status(200);
    let r = app.post("/v1/projects").key(&key).acting(&child).json(&json!({ "name": "P", "timezone": "UTC" })).send().await;
    r.assert_error(409, "CONFLICT");
    assert_eq!(standing(&r)[..2], [Some("write-light"), Some("60")]);
    app.strata.operator_kill_key(&key).await.unwrap();
    let r = app.get("/v1/organizations").key(&key).send().await;
    r.assert_error(503, "KILL_SWITCH");
    assert_eq!(standing(&r)[..3], [Some("read-light"), Some("120"), Some("117")]);
}

#[tokio::test]
async fn a_request_that_proves_no_live_key_has_no_standing() {
    let app = TestApp::spawn().await;
    let forged = format!("{}_{}", &app.admin_key[..("lp_live_".len() + 16)], "A".repeat(43));
    for key in [forged.as_str(), "lp_live_nope"] {
        let r = app.get("/v1/whoami").key(key).send().await;
        r.assert_error(401, "UNAUTHENTICATED");
        assert_eq!(standing(&r), [None; 4], "{key}");
    }
    let r = app.get("/v1/whoami").send().await;
    assert_eq!(standing(&r), [None; 4]);
}

#[tokio::test]
async fn the_daily_write_cap_429_shows_the_cap_and_the_time_to_midnight() {
    let tiers = r#"{"standard": {"readsPerMinute": 120, "writesPerMinute": 60, "longRunningPerMinute": 20, "dailyWrites": 2, "concurrentJobs": 10}}"#;
    let tier_limits = Some(strata_core::ratelimit::TierTable::default().with_overrides(tiers).unwrap());
    let app = TestApp::spawn_with(Setup { tier_limits, ..Setup::default() }).await;
    let (_, key) = app.other_partner("Standard").await;
    for name in ["A", "B"] {
        app.post("/v1/organizations").key(&key).json(&json!({ "name": name })).send().await.assert_status(201);
    }
    app.clock.advance_ms(1_000);
    let r = app.post("/v1/organizations").key(&key).json(&json!({ "name": "C" })).send().await;
    r.assert_error(429, "RATE_LIMITED");
    // Not the minute's bucket (60, with 58 left): the daily cap, free again at 00:00 UTC.
    assert_eq!(standing(&r), [Some("write-light"), Some("2"), Some("0"), Some("86399")]);
    assert_eq!(r.header("retry-after"), Some("86399"));
}
