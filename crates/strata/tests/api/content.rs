//! Content generation, jobs and scheduled posts (CONTRACT §5), and the end-to-end flow of the
//! issue: fund a child, generate until the cap, watch the wallet, refill, archive mid-job.

use serde_json::{Value, json};
use strata_core::clock::{HOUR_MS, SECOND_MS};

use crate::helpers::{Resp, TestApp};

/// A funded child with a project; returns (child, project).
async fn funded_project(app: &TestApp, credits: i64) -> (String, String) {
    app.grant(&app.partner_org, 100_000).await;
    let child = app.create_child("Acme").await;
    if credits > 0 {
        app.allocate(&child, credits).await.assert_status(201);
    }
    let r = app.post("/v1/projects").key(&app.admin_key).acting(&child).json(&json!({ "name": "Acme", "timezone": "UTC" })).send().await;
    (child, r.assert_status(201)["id"].as_str().unwrap().to_owned())
}

async fn generate(app: &TestApp, child: &str, project: &str, body: Value) -> Resp {
    app.post(&format!("/v1/projects/{project}/content")).key(&app.admin_key).acting(child).json(&body).send().await
}

async fn credits(app: &TestApp, org: &str) -> (i64, i64) {
    let b = app.get(&format!("/v1/organizations/{org}/credits")).key(&app.admin_key).send().await.body;
    (b["balance"].as_i64().unwrap(), b["available"].as_i64().unwrap())
}

/// Moves the clock past the engine's run time and lets the scheduler end what is due.
async fn finish_jobs(app: &TestApp) -> usize {
    app.clock.advance_ms(5 * SECOND_MS);
    strata_workers::advance_jobs(&app.strata).await
}

#[tokio::test]
async fn a_generation_reserves_runs_and_settles_the_actual_cost() {
    let app = TestApp::spawn().await;
    let (child, project) = funded_project(&app, 1000).await;
    let r = generate(
        &app,
        &child,
        &project,
        json!({ "format": "video_remix", "variantCount": 2, "brief": { "topic": "spring menu", "valuePropositions": ["fresh"] } }),
    )
    .await;
    let b = r.assert_status(202).clone();
    let job = b["jobId"].as_str().unwrap().to_owned();
    assert!(job.starts_with("job_"));
    assert_eq!(
        (b["kind"].as_str(), b["status"].as_str(), b["stage"].as_str()),
        (Some("content_generate"), Some("running"), Some("queued"))
    );
    assert_eq!(b["projectId"], project.as_str());
    assert_eq!(b["containerIds"].as_array().unwrap().len(), 2);
    assert_eq!(b["locationUrl"], format!("/v1/jobs/{job}"));
    assert_eq!(b["startedAt"], "2026-06-01T00:00:00.000Z");
    // Reserved: available drops by 2 × 120, balance does not.
    assert_eq!(credits(&app, &child).await, (1000, 760));
    app.clock.advance_ms(2 * SECOND_MS);
    let running = app.get(&format!("/v1/jobs/{job}")).key(&app.admin_key).acting(&child).send().await;
    let rb = running.assert_status(200);
    assert_eq!((rb["status"].as_str(), rb["progress"].as_f64(), rb["stage"].as_str()), (Some("running"), Some(0.4), Some("generating")));
    let etag = running.header("etag").unwrap().to_owned();
    let not_modified = app.get(&format!("/v1/jobs/{job}")).key(&app.admin_key).acting(&child).header("If-None-Match", &etag).send().await;
    assert_eq!(not_modified.status, 304);
    assert_eq!(finish_jobs(&app).await, 1);
    let done = app.get(&format!("/v1/jobs/{job}")).key(&app.admin_key).acting(&child).header("If-None-Match", &etag).send().await;
    let d = done.assert_status(200);
    assert_eq!((d["status"].as_str(), d["progress"].as_f64(), d["stage"].as_str()), (Some("completed"), Some(1.0), Some("done")));
    assert_eq!(d["finishedAt"], "2026-06-01T00:00:07.000Z");
    assert_eq!(d["result"]["containerIds"], b["containerIds"]);
    // Settled at the actual cost (2 × 100): the remainder is released.
    assert_eq!(credits(&app, &child).await, (800, 800));
    let usage =
        app.get(&format!("/v1/organizations/{child}/credits/events?eventType=usage&projectId={project}")).key(&app.admin_key).send().await;
    let u = &usage.assert_status(200)["items"][0];
    assert_eq!(
        (u["credits"].as_i64(), u["format"].as_str(), u["workflowId"].as_str()),
        (Some(-200), Some("video_remix"), Some(job.as_str()))
    );
    let container = b["containerIds"][0].as_str().unwrap();
    let c = app.get(&format!("/v1/projects/{project}/content/{container}")).key(&app.admin_key).acting(&child).send().await;
    let cb = c.assert_status(200);
    assert_eq!((cb["status"].as_str(), cb["format"].as_str()), (Some("completed"), Some("video_remix")));
    assert_eq!(cb["assets"][0]["type"], "video");
    let events = app.get("/v1/events?limit=100").key(&app.admin_key).acting(&child).send().await;
    let types: Vec<&str> = events.body["items"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types.iter().filter(|t| **t == "content.generated").count(), 2);
    assert_eq!(types.iter().filter(|t| **t == "job.completed").count(), 1);
    app.assert_ledger().await;
}

#[tokio::test]
async fn a_failed_or_canceled_job_releases_its_whole_reservation() {
    let app = TestApp::spawn().await;
    let (child, project) = funded_project(&app, 1000).await;
    let failing = generate(&app, &child, &project, json!({ "brief": { "topic": "[fail] this one" } })).await;
    let failing = failing.assert_status(202)["jobId"].as_str().unwrap().to_owned();
    let canceled = generate(&app, &child, &project, json!({ "format": "slideshow_builder" })).await;
    let canceled = canceled.assert_status(202)["jobId"].as_str().unwrap().to_owned();
    assert_eq!(credits(&app, &child).await, (1000, 830));
    let r = app.post(&format!("/v1/jobs/{canceled}/cancel")).key(&app.admin_key).acting(&child).send().await;
    assert_eq!(r.assert_status(200)["status"], "canceled");
    app.post(&format!("/v1/jobs/{canceled}/cancel")).key(&app.admin_key).acting(&child).send().await.assert_status(200);
    finish_jobs(&app).await;
    let f = app.get(&format!("/v1/jobs/{failing}")).key(&app.admin_key).acting(&child).send().await;
    assert_eq!(f.assert_status(200)["status"], "failed");
    assert_eq!(f.body["error"]["code"], "GENERATION_FAILED");
    assert_eq!(credits(&app, &child).await, (1000, 1000));
    app.post(&format!("/v1/jobs/{failing}/cancel")).key(&app.admin_key).acting(&child).send().await.assert_error(409, "CONFLICT");
    let events = app.get("/v1/events?type=job.failed").key(&app.admin_key).acting(&child).send().await;
    assert_eq!(events.body["items"].as_array().unwrap().len(), 1);
    let events = app.get("/v1/events?type=job.canceled").key(&app.admin_key).acting(&child).send().await;
    assert_eq!(events.body["items"].as_array().unwrap().len(), 1);
    app.assert_ledger().await;
}

#[tokio::test]
async fn a_short_wallet_or_the_cap_is_402_and_test_keys_burn_nothing() {
    let app = TestApp::spawn().await;
    let (child, project) = funded_project(&app, 100).await;
    let r = generate(&app, &child, &project, json!({ "format": "video_remix" })).await;
    r.assert_error(402, "BILLING_EXHAUSTED");
    assert_eq!(r.body["error"]["details"]["reason"], "insufficient_credits");
    app.allocate(&child, 1000).await.assert_status(201);
    app.patch(&format!("/v1/organizations/{child}/credit-config"))
        .key(&app.admin_key)
        .json(&json!({ "monthlyCreditCap": 200 }))
        .send()
        .await
        .assert_status(200);
    generate(&app, &child, &project, json!({ "format": "video_remix" })).await.assert_status(202);
    let r = generate(&app, &child, &project, json!({ "format": "video_remix" })).await;
    assert_eq!(r.body["error"]["details"]["reason"], "monthly_cap");
    // A test key: same envelope, no credits.
    let mint = app
        .post(&format!("/v1/organizations/{child}/api-keys"))
        .key(&app.admin_key)
        .json(&json!({ "name": "sandbox", "scopes": ["content:write", "jobs:read"], "env": "test" }))
        .send()
        .await;
    let test_key = mint.assert_status(201)["secret"].as_str().unwrap().to_owned();
    let before = credits(&app, &child).await;
    let r = app
        .post(&format!("/v1/projects/{project}/content"))
        .key(&test_key)
        .json(&json!({ "format": "ugc_remix", "variantCount": 5 }))
        .send()
        .await;
    let job = r.assert_status(202)["jobId"].as_str().unwrap().to_owned();
    assert_eq!(credits(&app, &child).await, before);
    finish_jobs(&app).await;
    let j = app.get(&format!("/v1/jobs/{job}")).key(&test_key).send().await;
    assert_eq!(j.assert_status(200)["status"], "completed");
    assert_eq!(credits(&app, &child).await.0, before.0 - 100, "only the live job's actual cost was spent");
    app.assert_ledger().await;
}

#[tokio::test]
async fn the_tiers_concurrent_job_cap_is_429_with_retry_after() {
    let app = TestApp::spawn().await;
    let (child, project) = funded_project(&app, 0).await;
    let mint = app
        .post(&format!("/v1/organizations/{child}/api-keys"))
        .key(&app.admin_key)
        .json(&json!({ "name": "sandbox", "scopes": ["content:write"], "env": "test" }))
        .send()
        .await;
    let key = mint.assert_status(201)["secret"].as_str().unwrap().to_owned();
    for _ in 0..5 {
        app.post(&format!("/v1/projects/{project}/content")).key(&key).json(&json!({})).send().await.assert_status(202);
    }
    let r = app.post(&format!("/v1/projects/{project}/content")).key(&key).json(&json!({})).send().await;
    r.assert_error(429, "RATE_LIMITED");
    assert_eq!(r.header("retry-after"), Some("5"));
    // The headers show the cap that refused, not the long-running bucket (20 a minute).
    let shown = ["x-ratelimit-endpoint-class", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"].map(|h| r.header(h));
    assert_eq!(shown, [Some("long-running"), Some("5"), Some("0"), Some("5")]);
    finish_jobs(&app).await;
    app.post(&format!("/v1/projects/{project}/content")).key(&key).json(&json!({})).send().await.assert_status(202);
}

#[tokio::test]
async fn generation_input_is_validated() {
    let app = TestApp::spawn().await;
    let (child, project) = funded_project(&app, 1000).await;
    for (body, field) in [
        (json!({ "format": "hologram" }), "format"),
        (json!({ "variantCount": 6 }), "variantCount"),
        (json!({ "variantCount": 0 }), "variantCount"),
        (json!({ "brief": { "tone": "x" } }), "tone"),
        (json!({ "id": "job_nope" }), "id"),
    ] {
        let r = generate(&app, &child, &project, body.clone()).await;
        r.assert_error(422, "VALIDATION");
        assert!(r.body["error"]["details"]["field"].as_str().unwrap().contains(field), "{body}: {}", r.body);
    }
    assert_eq!(credits(&app, &child).await, (1000, 1000));
    let unknown = "prj_00000000-0000-4000-8000-000000000000";
    generate(&app, &child, unknown, json!({})).await.assert_error(404, "NOT_FOUND");
}

#[tokio::test]
async fn scheduled_posts_publish_on_time_and_can_be_canceled() {
    let app = TestApp::spawn().await;
    let (child, project) = funded_project(&app, 1000).await;
    let r = generate(&app, &child, &project, json!({ "format": "slideshow_remix", "variantCount": 2 })).await;
    let containers = r.assert_status(202)["containerIds"].clone();
    let (c1, c2) = (containers[0].as_str().unwrap().to_owned(), containers[1].as_str().unwrap().to_owned());
    let path = format!("/v1/projects/{project}/scheduled-posts");
    let body = |c: &str, when: &str| json!({ "containerId": c, "scheduledFor": when, "platform": "tiktok" });
    // Content still being generated cannot be scheduled.
    let r = app.post(&path).key(&app.admin_key).acting(&child).json(&body(&c1, "2026-06-01T12:00:00Z")).send().await;
    r.assert_error(409, "CONFLICT");
    finish_jobs(&app).await;
    let a = app.post(&path).key(&app.admin_key).acting(&child).json(&body(&c1, "2026-06-01T12:00:00Z")).send().await;
    let a = a.assert_status(201).clone();
    assert!(a["id"].as_str().unwrap().starts_with("post_"));
    assert_eq!((a["status"].as_str(), a["scheduledFor"].as_str()), (Some("scheduled"), Some("2026-06-01T12:00:00.000Z")));
    let b = app.post(&path).key(&app.admin_key).acting(&child).json(&body(&c2, "2026-06-01T13:00:00Z")).send().await;
    let b_id = b.assert_status(201)["id"].as_str().unwrap().to_owned();
    let r = app.delete(&format!("{path}/{b_id}")).key(&app.admin_key).acting(&child).send().await;
    assert_eq!(r.assert_status(200)["status"], "canceled");
    for (bad, field) in [
        (json!({ "containerId": c1, "scheduledFor": "2026-06-01T12:00:00+00:00", "platform": "tiktok" }), "scheduledFor"),
        (json!({ "containerId": c1, "scheduledFor": "2026-05-01T12:00:00Z", "platform": "tiktok" }), "scheduledFor"),
        (json!({ "containerId": c1, "scheduledFor": "2026-06-01T12:00:00Z", "platform": "myspace" }), "platform"),
    ] {
        let r = app.post(&path).key(&app.admin_key).acting(&child).json(&bad).send().await;
        r.assert_error(422, "VALIDATION");
        assert_eq!(r.body["error"]["details"]["field"], field);
    }
    app.clock.advance_ms(11 * HOUR_MS);
    assert_eq!(strata_workers::publish_due_posts(&app.strata).await, 0, "not yet");
    app.clock.advance_ms(HOUR_MS);
    assert_eq!(strata_workers::publish_due_posts(&app.strata).await, 1);
    let list = app.get(&path).key(&app.admin_key).acting(&child).send().await;
    let items = list.assert_status(200)["items"].as_array().unwrap().clone();
    let statuses: Vec<&str> = items.iter().map(|p| p["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["canceled", "published"]);
    assert_eq!(items[1]["publishedAt"], "2026-06-01T12:00:05.000Z");
    let r = app.delete(&format!("{path}/{}", a["id"].as_str().unwrap())).key(&app.admin_key).acting(&child).send().await;
    r.assert_error(409, "CONFLICT");
    let types: Vec<String> = app.get("/v1/events?limit=100").key(&app.admin_key).acting(&child).send().await.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .filter(|t| t.starts_with("post."))
        .collect();
    assert_eq!(types, ["post.published", "post.canceled", "post.scheduled", "post.scheduled"]);
}

#[tokio::test]
async fn suspension_stops_new_jobs_and_holds_posts_until_resume() {
    let app = TestApp::spawn().await;
    let (child, project) = funded_project(&app, 1000).await;
    let r = generate(&app, &child, &project, json!({})).await;
    let container = r.assert_status(202)["containerIds"][0].as_str().unwrap().to_owned();
    finish_jobs(&app).await;
    let post = json!({ "containerId": container, "scheduledFor": "2026-06-01T01:00:00Z", "platform": "instagram" });
    app.post(&format!("/v1/projects/{project}/scheduled-posts"))
        .key(&app.admin_key)
        .acting(&child)
        .json(&post)
        .send()
        .await
        .assert_status(201);
    app.post(&format!("/v1/organizations/{child}/suspend")).key(&app.admin_key).send().await.assert_status(200);
    // The parent, acting inside the suspended child, cannot spend there.
    let r = generate(&app, &child, &project, json!({})).await;
    r.assert_error(503, "KILL_SWITCH");
    assert_eq!(r.body["error"]["details"]["scope"], "organization");
    app.clock.advance_ms(2 * HOUR_MS);
    assert_eq!(strata_workers::publish_due_posts(&app.strata).await, 0, "held while suspended");
    app.post(&format!("/v1/organizations/{child}/resume")).key(&app.admin_key).send().await.assert_status(200);
    assert_eq!(strata_workers::publish_due_posts(&app.strata).await, 1, "released on resume");
    generate(&app, &child, &project, json!({})).await.assert_status(202);
}

/// A job already running when its org is suspended is not stranded with its reservation: it
/// finishes, settles at its actual cost and reports, while new work in the org is refused.
#[tokio::test]
async fn a_job_running_when_its_org_is_suspended_finishes_and_settles() {
    let app = TestApp::spawn().await;
    let (child, project) = funded_project(&app, 1000).await;
    let r = generate(&app, &child, &project, json!({ "format": "video_remix" })).await;
    let job = r.assert_status(202)["jobId"].as_str().unwrap().to_owned();
    assert_eq!(credits(&app, &child).await, (1000, 880), "120 reserved");
    app.post(&format!("/v1/organizations/{child}/suspend")).key(&app.admin_key).send().await.assert_status(200);
    generate(&app, &child, &project, json!({})).await.assert_error(503, "KILL_SWITCH");

    assert_eq!(finish_jobs(&app).await, 1, "the running job is advanced while its org is suspended");
    let done = app.get(&format!("/v1/organizations/{child}/credits/events?eventType=usage")).key(&app.admin_key).send().await;
    let usage = &done.assert_status(200)["items"][0];
    assert_eq!((usage["credits"].as_i64(), usage["workflowId"].as_str()), (Some(-100), Some(job.as_str())));
    // Settled at the actual cost (100 of the 120 held); nothing stays reserved.
    assert_eq!(credits(&app, &child).await, (900, 900));
    app.post(&format!("/v1/organizations/{child}/resume")).key(&app.admin_key).send().await.assert_status(200);
    let j = app.get(&format!("/v1/jobs/{job}")).key(&app.admin_key).acting(&child).send().await;
    assert_eq!(j.assert_status(200)["status"], "completed");
    let events = app.get("/v1/events?type=job.completed").key(&app.admin_key).acting(&child).send().await;
    assert_eq!(events.body["items"].as_array().unwrap().len(), 1, "its completion is an event, delivered on resume");
    app.assert_ledger().await;
}

#[tokio::test]
async fn archiving_a_project_or_its_org_cancels_its_scheduled_posts() {
    let app = TestApp::spawn().await;
    let (child, project) = funded_project(&app, 1000).await;
    let r = generate(&app, &child, &project, json!({ "variantCount": 2 })).await;
    let containers = r.assert_status(202)["containerIds"].clone();
    finish_jobs(&app).await;
    for c in containers.as_array().unwrap() {
        let post = json!({ "containerId": c, "scheduledFor": "2026-06-02T00:00:00Z", "platform": "youtube" });
        app.post(&format!("/v1/projects/{project}/scheduled-posts"))
            .key(&app.admin_key)
            .acting(&child)
            .json(&post)
            .send()
            .await
            .assert_status(201);
    }
    let r = app.delete(&format!("/v1/projects/{project}")).key(&app.admin_key).acting(&child).send().await;
    assert_eq!(r.assert_status(200)["canceledScheduledPosts"], 2);
    // A second project's posts go when the org is archived.
    let p2 = app.post("/v1/projects").key(&app.admin_key).acting(&child).json(&json!({ "name": "B", "timezone": "UTC" })).send().await;
    let p2 = p2.assert_status(201)["id"].as_str().unwrap().to_owned();
    let r = generate(&app, &child, &p2, json!({})).await;
    let c = r.assert_status(202)["containerIds"][0].clone();
    finish_jobs(&app).await;
    let post = json!({ "containerId": c, "scheduledFor": "2026-06-02T00:00:00Z", "platform": "youtube" });
    app.post(&format!("/v1/projects/{p2}/scheduled-posts")).key(&app.admin_key).acting(&child).json(&post).send().await.assert_status(201);
    app.delete(&format!("/v1/organizations/{child}")).key(&app.admin_key).send().await.assert_status(200);
    app.clock.advance_ms(2 * 24 * HOUR_MS);
    assert_eq!(strata_workers::publish_due_posts(&app.strata).await, 0);
    let canceled = app.get("/v1/events?type=post.canceled").key(&app.admin_key).acting(&child).send().await;
    assert_eq!(canceled.assert_status(200)["items"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn end_to_end_fund_cap_refill_and_archive_mid_job() {
    let app = TestApp::spawn().await;
    app.grant(&app.partner_org, 10_000).await;
    // Provision and fund a customer with a cap and auto-refill (quickstart calls 1, 3, 4).
    let child = app.create_child("Acme Coffee").await;
    app.allocate(&child, 1_000).await.assert_status(201);
    let cfg = json!({ "monthlyCreditCap": 1_500, "refillThreshold": 300, "refillAmount": 500 });
    app.patch(&format!("/v1/organizations/{child}/credit-config")).key(&app.admin_key).json(&cfg).send().await.assert_status(200);
    let r = app
        .post("/v1/projects")
        .key(&app.admin_key)
        .acting(&child)
        .json(&json!({ "name": "Acme", "timezone": "America/Los_Angeles" }))
        .send()
        .await;
    let project = r.assert_status(201)["id"].as_str().unwrap().to_owned();

    // Generate (video_remix: 120 reserved, 100 actual) until the cap answers 402.
    let mut started = 0;
    let mut expected_balance = 1_000;
    let mut refills_seen = 0;
    loop {
        let before = credits(&app, &child).await;
        let r = generate(&app, &child, &project, json!({ "format": "video_remix" })).await;
        if r.status == 402 {
            assert_eq!(r.body["error"]["details"]["reason"], "monthly_cap");
            break;
        }
        r.assert_status(202);
        started += 1;
        let after = credits(&app, &child).await;
        // At reserve: available drops by 120, balance does not, unless the crossing refilled.
        if after.0 == before.0 + 500 {
            refills_seen += 1;
            expected_balance += 500;
            assert_eq!(after.1, before.1 - 120 + 500);
        } else {
            assert_eq!(after, (before.0, before.1 - 120));
        }
        finish_jobs(&app).await;
        // At settle: balance drops by the actual 100 and available gets 20 back.
        expected_balance -= 100;
        let settled = credits(&app, &child).await;
        assert_eq!(settled, (expected_balance, after.1 + 20));
    }
    // Each settled job uses 100 of the 1,500 cap; the 15th would take 1,400 + 120 over it.
    assert_eq!(started, 14);
    assert!(refills_seen >= 1, "available crossed below 300 and the parent refilled 500");
    let refills = app.get("/v1/events?type=credits.refilled").key(&app.admin_key).acting(&child).send().await;
    assert_eq!(refills.body["items"].as_array().unwrap().len(), refills_seen, "one refill per crossing");

    // Lift the cap, start one more job, archive the child while it runs.
    app.patch(&format!("/v1/organizations/{child}/credit-config"))
        .key(&app.admin_key)
        .json(&json!({ "monthlyCreditCap": null }))
        .send()
        .await
        .assert_status(200);
    generate(&app, &child, &project, json!({ "format": "video_remix" })).await.assert_status(202);
    let (balance, available) = credits(&app, &child).await;
    let parent_before = app.get("/v1/credits").key(&app.admin_key).send().await.body["prepaidBalance"].as_i64().unwrap();
    let r = app.delete(&format!("/v1/organizations/{child}")).key(&app.admin_key).send().await;
    assert_eq!(r.assert_status(200)["reclaimedCredits"], available);
    assert_eq!(credits(&app, &child).await, (balance - available, 0));
    // When the job settles, its unused 20 go to the parent too.
    finish_jobs(&app).await;
    assert_eq!(credits(&app, &child).await, (0, 0));
    let parent_after = app.get("/v1/credits").key(&app.admin_key).send().await.body["prepaidBalance"].as_i64().unwrap();
    assert_eq!(parent_after, parent_before + available + 20);
    let report = app.assert_ledger().await;
    assert_eq!(report.destroyed, 15 * 100);
}

/// Cancels racing in one org, and the scheduler ending jobs beside them, never deadlock: every
/// write holds its org for share and no path upgrades that lock (on PostgreSQL six concurrent
/// cancels used to fail with "deadlock detected").
#[tokio::test]
async fn concurrent_cancels_in_one_org_all_succeed() {
    let app = TestApp::spawn().await;
    let (child, project) = funded_project(&app, 10_000).await;
    let mut jobs = Vec::new();
    for _ in 0..6 {
        let r = generate(&app, &child, &project, json!({ "format": "slideshow_builder" })).await;
        jobs.push(r.assert_status(202)["jobId"].as_str().unwrap().to_owned());
    }
    let cancels = jobs.iter().map(|j| app.post(&format!("/v1/jobs/{j}/cancel")).key(&app.admin_key).acting(&child).send());
    let (answers, _) = tokio::join!(futures::future::join_all(cancels), finish_jobs(&app));
    for r in answers {
        assert!(r.status == 200 || r.status == 409, "{} {}", r.status, r.body);
    }
    app.assert_ledger().await;
}

/// Found by `strata drill crash` on PostgreSQL: the scheduler publishing a post locked its
/// project, then its org, while archiving the child locks the org, then its projects (to cancel
/// their posts); the two deadlocked and one of them failed. The scheduler now takes the org
/// first, as every other writer does.
#[tokio::test]
async fn publishing_a_post_while_its_org_is_being_archived_does_not_deadlock() {
    use sqlx::{Connection, Executor};
    let app = TestApp::spawn().await;
    let strata::StoreBackend::Postgres { url } = app.backend.clone() else {
        return crate::helpers::skip("PostgreSQL only (STRATA_TEST_DATABASE_URL is not set)");
    };
    let (child, project) = funded_project(&app, 1000).await;
    let r = generate(&app, &child, &project, json!({})).await;
    let container = r.assert_status(202)["containerIds"][0].as_str().unwrap().to_owned();
    finish_jobs(&app).await;
    let post = json!({ "containerId": container, "scheduledFor": "2026-06-01T01:00:00Z", "platform": "instagram" });
    let path = format!("/v1/projects/{project}/scheduled-posts");
    app.post(&path).key(&app.admin_key).acting(&child).json(&post).send().await.assert_status(201);
    app.clock.advance_ms(2 * HOUR_MS);

    // An archive's first step: the child's row, for update.
    let mut archive = sqlx::PgConnection::connect(&url).await.unwrap();
    archive.execute("BEGIN").await.unwrap();
    let org_row = child.trim_start_matches("org_");
    let held = sqlx::query("SELECT id FROM organizations WHERE id = $1 FOR UPDATE").bind(org_row).fetch_all(&mut archive).await.unwrap();
    assert_eq!(held.len(), 1, "organizations are stored under their bare id");
    // The scheduler publishes the due post meanwhile.
    let strata = app.strata.clone();
    let publish = tokio::spawn(async move { strata_workers::publish_due_posts(&strata).await });
    crate::helpers::until_lock_waiters(&url, 1).await;
    // The archive goes on to lock the child's project.
    let project_row = project.trim_start_matches("prj_");
    let locked = sqlx::query("SELECT id FROM projects WHERE id = $1 FOR UPDATE").bind(project_row).fetch_all(&mut archive).await;
    assert_eq!(locked.map(|rows| rows.len()).map_err(|e| e.to_string()), Ok(1), "the archive was chosen as a deadlock victim");
    archive.execute("COMMIT").await.unwrap();
    assert_eq!(publish.await.unwrap(), 1, "the post was published once the archive's transaction ended");
}

/// Client-supplied ids are unique per org (issue 12, kind 3): the partner and its child each
/// give a project the same id and a generation the same job id. Both are accepted; each job
/// runs and settles on its own, with its own containers, posts and events; only a second use
/// in the same org is 409; and migrating the partner's project moves none of the child's rows.
#[tokio::test]
async fn the_same_client_ids_in_two_orgs_run_apart() {
    let app = TestApp::spawn().await;
    let (child, _) = funded_project(&app, 1000).await;
    let (pid, jid) = ("prj_0c5e2a3f-5d0e-4b7a-9a51-3f0d2c1b9e01", "job_01JDQ3ZK9X8V4T2R6N5M3H1G0F");
    // (acting org, format, variants): the partner's own org, then the child.
    let orgs = [(None, "video_remix", 2), (Some(child.as_str()), "slideshow_builder", 1)];
    let mut containers = Vec::new();
    for (org, format, variants) in orgs {
        let p = acting(app.post("/v1/projects").key(&app.admin_key), org).json(&json!({ "id": pid, "name": format, "timezone": "UTC" }));
        p.send().await.assert_status(201);
        let body = json!({ "id": jid, "format": format, "variantCount": variants });
        let r = acting(app.post(&format!("/v1/projects/{pid}/content")).key(&app.admin_key), org).json(&body).send().await;
        let b = r.assert_status(202);
        assert_eq!((b["jobId"].as_str(), b["projectId"].as_str()), (Some(jid), Some(pid)));
        let ids: Vec<String> = b["containerIds"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
        assert_eq!(ids.len(), variants);
        containers.push(ids);
    }
    let again = generate(&app, &child, pid, json!({ "id": jid })).await;
    again.assert_error(409, "CONFLICT");
    assert_eq!(again.body["error"]["details"]["field"], "id");
    assert_eq!(finish_jobs(&app).await, 2);
    for (i, (org, format, _)) in orgs.into_iter().enumerate() {
        let job = acting(app.get(&format!("/v1/jobs/{jid}")).key(&app.admin_key), org).send().await;
        let j = job.assert_status(200);
        assert_eq!((j["status"].as_str(), j["projectId"].as_str()), (Some("completed"), Some(pid)));
        assert_eq!(j["result"]["containerIds"], json!(containers[i]));
        let mine = &containers[i][0];
        let c = acting(app.get(&format!("/v1/projects/{pid}/content/{mine}")).key(&app.admin_key), org).send().await;
        assert_eq!((c.assert_status(200)["status"].as_str(), c.body["format"].as_str()), (Some("completed"), Some(format)));
        let theirs = &containers[1 - i][0];
        let c = acting(app.get(&format!("/v1/projects/{pid}/content/{theirs}")).key(&app.admin_key), org).send().await;
        c.assert_error(404, "NOT_FOUND");
        let post = json!({ "containerId": mine, "scheduledFor": "2026-06-01T12:00:00Z", "platform": "tiktok" });
        let r = acting(app.post(&format!("/v1/projects/{pid}/scheduled-posts")).key(&app.admin_key), org).json(&post).send().await;
        r.assert_status(201);
        let post = json!({ "containerId": theirs, "scheduledFor": "2026-06-01T12:00:00Z", "platform": "tiktok" });
        let r = acting(app.post(&format!("/v1/projects/{pid}/scheduled-posts")).key(&app.admin_key), org).json(&post).send().await;
        r.assert_error(404, "NOT_FOUND");
    }
    app.clock.advance_ms(12 * HOUR_MS);
    assert_eq!(strata_workers::publish_due_posts(&app.strata).await, 2);
    // The partner's wallet paid 2 × 100, the child's its one slideshow; nothing stays reserved.
    let (balance, available) = credits(&app, &child).await;
    assert!(balance < 1000 && balance == available, "the child settled its own job: {balance} {available}");
    let own = app.get("/v1/credits").key(&app.admin_key).send().await;
    let b = own.assert_status(200);
    assert_eq!((b["balance"].as_i64(), b["available"].as_i64()), (Some(100_000 - 1000 - 200), Some(100_000 - 1000 - 200)));
    for (i, (org, _, _)) in orgs.into_iter().enumerate() {
        let events = acting(app.get("/v1/events?limit=100").key(&app.admin_key), org).send().await;
        let items = events.assert_status(200)["items"].as_array().unwrap().clone();
        let of = |t: &str| items.iter().filter(|e| e["type"] == t).cloned().collect::<Vec<Value>>();
        let done = of("job.completed");
        assert_eq!(done.len(), 1);
        assert_eq!((done[0]["projectId"].as_str(), done[0]["data"]["job"]["jobId"].as_str()), (Some(pid), Some(jid)));
        assert_eq!(done[0]["data"]["job"]["containerIds"], json!(containers[i]));
        let mut generated: Vec<String> =
            of("content.generated").iter().map(|e| e["data"]["containerId"].as_str().unwrap().to_owned()).collect();
        generated.sort_unstable();
        let mut want = containers[i].clone();
        want.sort_unstable();
        assert_eq!(generated, want);
        let published = of("post.published");
        assert_eq!(published.len(), 1);
        assert_eq!(published[0]["data"]["post"]["containerId"], containers[i][0].as_str());
        let posts = acting(app.get(&format!("/v1/projects/{pid}/scheduled-posts")).key(&app.admin_key), org).send().await;
        let posts = posts.assert_status(200)["items"].as_array().unwrap().clone();
        assert_eq!(posts.len(), 1);
        assert_eq!(posts[0]["containerId"], containers[i][0].as_str());
    }
    // Migrating the partner's project moves its job, containers and post, and nothing of the child's.
    let r = app.post("/v1/organizations/migrate").key(&app.admin_key).json(&json!({ "mapping": { pid: "Moved" } })).send().await;
    let moved = r.assert_status(201)["children"][0]["id"].as_str().unwrap().to_owned();
    for (org, mine) in [(moved.as_str(), &containers[0]), (child.as_str(), &containers[1])] {
        let job = app.get(&format!("/v1/jobs/{jid}")).key(&app.admin_key).acting(org).send().await;
        assert_eq!(job.assert_status(200)["containerIds"], json!(mine));
        let c = app.get(&format!("/v1/projects/{pid}/content/{}", mine[0])).key(&app.admin_key).acting(org).send().await;
        c.assert_status(200);
        let posts = app.get(&format!("/v1/projects/{pid}/scheduled-posts")).key(&app.admin_key).acting(org).send().await;
        assert_eq!(posts.assert_status(200)["items"][0]["containerId"], mine[0].as_str());
    }
    app.assert_ledger().await;
}

/// The call acting in `org`, or in the key's own org.
fn acting<'a>(call: crate::helpers::Call<'a>, org: Option<&str>) -> crate::helpers::Call<'a> {
    match org {
        Some(o) => call.acting(o),
        None => call,
    }
}
