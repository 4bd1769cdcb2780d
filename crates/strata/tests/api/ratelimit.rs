//! Rate limits (CONTRACT §1): per-key buckets by endpoint class and tier, reported on every
//! authenticated response, 429 with Retry-After when spent, refilled as the clock moves.

use serde_json::json;

use crate::helpers::TestApp;

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
