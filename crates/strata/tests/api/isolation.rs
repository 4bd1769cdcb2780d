//! The isolation matrix: every route of the organizations control plane, called by five kinds of
//! caller on five kinds of target, each cell asserting the exact status (and so the code).
//!
//! Callers: a = the parent's admin key, b = a parent key with `*` but not `org:admin`,
//! c = the child C1's own key (`*`), d = the sibling C2's key (`*`), e = another partner's admin.
//! Targets: 1 = the parent P itself, 2 = its child C1, 3 = its child C2 (C1's sibling),
//! 4 = Q1 (another partner's child), 5 = C3 (an archived child of P).
//! Routes with `:orgId` put the target in the path; the others send it as
//! `X-Layers-Organization` (which only an `org:admin` key may use, and which never names the
//! key's own org). The other placeholders name a resource of the target org: `{key}` a spare
//! key, `{prj}` a project, `{cnt}` a completed container, `{done}` a completed job, `{job}` a
//! running job, `{post}` a scheduled post, `{whe}` a webhook endpoint, `{dlv}` one of its
//! deliveries.

use serde_json::{Value, json};

use crate::helpers::{Call, TestApp};

/// (method, path, body, expected statuses: one row per caller a–e, one column per target 1–5)
const MATRIX: &[(&str, &str, &str, [&str; 5])] = &[
    // Routes addressed by :orgId.
    (
        "GET",
        "/v1/organizations/{org}",
        "",
        ["404 200 200 404 200", "403 403 403 403 403", "403 403 403 403 403", "403 403 403 403 403", "404 404 404 200 404"],
    ),
    (
        "PATCH",
        "/v1/organizations/{org}",
        r#"{"name":"Renamed"}"#,
        ["404 200 200 404 409", "403 403 403 403 403", "403 403 403 403 403", "403 403 403 403 403", "404 404 404 200 404"],
    ),
    (
        "POST",
        "/v1/organizations/{org}/suspend",
        "",
        ["404 200 200 404 409", "403 403 403 403 403", "403 403 403 403 403", "403 403 403 403 403", "404 404 404 200 404"],
    ),
    (
        "POST",
        "/v1/organizations/{org}/resume",
        "",
        ["404 200 200 404 409", "403 403 403 403 403", "403 403 403 403 403", "403 403 403 403 403", "404 404 404 200 404"],
    ),
    (
        "DELETE",
        "/v1/organizations/{org}",
        "",
        ["404 200 200 404 200", "403 403 403 403 403", "403 403 403 403 403", "403 403 403 403 403", "404 404 404 200 404"],
    ),
    (
        "POST",
        "/v1/organizations/{org}/api-keys",
        r#"{"name":"k","scopes":["content:read"]}"#,
        ["404 201 201 404 409", "403 403 403 403 403", "403 403 403 403 403", "403 403 403 403 403", "404 404 404 201 404"],
    ),
    (
        "GET",
        "/v1/organizations/{org}/api-keys",
        "",
        ["404 200 200 404 200", "403 403 403 403 403", "403 403 403 403 403", "403 403 403 403 403", "404 404 404 200 404"],
    ),
    (
        "POST",
        "/v1/organizations/{org}/api-keys/{key}/rotate",
        "",
        ["404 201 201 404 409", "403 403 403 403 403", "403 403 403 403 403", "403 403 403 403 403", "404 404 404 201 404"],
    ),
    (
        "DELETE",
        "/v1/organizations/{org}/api-keys/{key}",
        "",
        ["404 200 200 404 200", "403 403 403 403 403", "403 403 403 403 403", "403 403 403 403 403", "404 404 404 200 404"],
    ),
    // Routes acting in the org named by X-Layers-Organization.
    (
        "GET",
        "/v1/organizations",
        "",
        ["404 200 200 404 200", "403 403 403 403 403", "403 403 403 403 403", "403 403 403 403 403", "404 404 404 200 404"],
    ),
    (
        "POST",
        "/v1/organizations",
        r#"{"name":"Grandchild"}"#,
        ["404 422 422 404 409", "403 403 403 403 403", "403 403 403 403 403", "403 403 403 403 403", "404 404 404 422 404"],
    ),
    (
        "GET",
        "/v1/api-keys",
        "",
        ["404 200 200 404 200", "200 200 200 200 200", "200 200 200 200 200", "200 200 200 200 200", "404 404 404 200 404"],
    ),
    (
        "POST",
        "/v1/api-keys",
        r#"{"name":"k","scopes":["content:read"]}"#,
        ["404 201 201 404 409", "403 403 403 403 403", "403 403 403 403 403", "403 403 403 403 403", "404 404 404 201 404"],
    ),
    (
        "POST",
        "/v1/api-keys/{key}/rotate",
        "",
        ["404 200 200 404 409", "403 403 403 403 403", "403 403 403 403 403", "403 403 403 403 403", "404 404 404 200 404"],
    ),
    // Any key may kill a key of its own (acting) org; the header is ignored without org:admin.
    (
        "POST",
        "/v1/api-keys/{key}/kill",
        "",
        ["404 200 200 404 409", "200 404 404 404 404", "404 200 404 404 404", "404 404 200 404 404", "404 404 404 200 404"],
    ),
    // Webhook deliveries and recovery: visible only in the org that owns the endpoint.
    (
        "GET",
        "/v1/webhook-deliveries/{dlv}",
        "",
        ["404 200 200 404 200", "200 404 404 404 404", "404 200 404 404 404", "404 404 200 404 404", "404 404 404 200 404"],
    ),
    (
        "POST",
        "/v1/webhook-endpoints/{whe}/recover",
        r#"{"since":"2026-01-01T00:00:00Z"}"#,
        ["404 200 200 404 409", "200 404 404 404 404", "404 200 404 404 404", "404 404 200 404 404", "404 404 404 200 404"],
    ),
];

fn code_of(status: u16) -> Option<&'static str> {
    match status {
        401 => Some("UNAUTHENTICATED"),
        403 => Some("FORBIDDEN_SCOPE"),
        404 => Some("NOT_FOUND"),
        409 => Some("CONFLICT"),
        422 => Some("VALIDATION"),
        _ => None,
    }
}

/// What a target org holds besides its keys.
#[derive(Default, Clone)]
struct Fixture {
    prj: String,
    cnt: String,
    done: String,
    job: String,
    post: String,
    whe: String,
    dlv: String,
}

/// One world: P with C1, C2 and archived C3; Q with Q1; callers, and per target a spare key,
/// a funded wallet, a project with a completed and a running job, and a scheduled post.
struct World {
    app: TestApp,
    callers: [String; 5],
    targets: [String; 5],
    spare_keys: [String; 5],
    fixtures: Vec<Fixture>,
}

fn as_stocker<'a>(c: Call<'a>, key: &str, acting: Option<&str>) -> Call<'a> {
    match acting {
        Some(org) => c.key(key).acting(org),
        None => c.key(key),
    }
}

/// Gives `org` a project with a completed job (its container scheduled to post) and returns
/// the fixture; `key` acts in `org` (with the header when `acting`).
async fn stock(app: &TestApp, key: &str, acting: Option<&str>, fx: &mut Fixture) {
    let call = |c| as_stocker(c, key, acting);
    let r = call(app.post("/v1/projects")).json(&json!({ "name": "P", "timezone": "UTC" })).send().await;
    fx.prj = r.assert_status(201)["id"].as_str().unwrap().to_owned();
    let r = call(app.post(&format!("/v1/projects/{}/content", fx.prj))).json(&json!({})).send().await;
    let b = r.assert_status(202).clone();
    fx.done = b["jobId"].as_str().unwrap().to_owned();
    fx.cnt = b["containerIds"][0].as_str().unwrap().to_owned();
}

async fn stock_after_jobs(app: &TestApp, key: &str, acting: Option<&str>, fx: &mut Fixture) {
    let call = |c| as_stocker(c, key, acting);
    let post = json!({ "containerId": fx.cnt, "scheduledFor": "2026-06-02T00:00:00Z", "platform": "tiktok" });
    let r = call(app.post(&format!("/v1/projects/{}/scheduled-posts", fx.prj))).json(&post).send().await;
    fx.post = r.assert_status(201)["id"].as_str().unwrap().to_owned();
    let r = call(app.post(&format!("/v1/projects/{}/content", fx.prj))).json(&json!({})).send().await;
    fx.job = r.assert_status(202)["jobId"].as_str().unwrap().to_owned();
    let hook = json!({ "url": "https://hooks.example.com/x", "events": ["job.completed"] });
    let r = call(app.post("/v1/webhook-endpoints")).json(&hook).send().await;
    fx.whe = r.assert_status(201)["endpoint"]["id"].as_str().unwrap().to_owned();
    let r = call(app.post(&format!("/v1/webhook-endpoints/{}/test", fx.whe))).send().await;
    fx.dlv = r.assert_status(200)["deliveryId"].as_str().unwrap().to_owned();
}

async fn world() -> World {
    let app = TestApp::spawn().await;
    let admin = app.admin_key.clone();
    let mint_own = |key: String, scopes: Value, acting: Option<String>| {
        let app = &app;
        async move {
            let mut call = app.post("/v1/api-keys").key(&key).json(&json!({ "name": "k", "scopes": scopes }));
            if let Some(org) = &acting {
                call = call.acting(org);
            }
            let b = call.send().await.assert_status(201).clone();
            (b["apiKey"]["id"].as_str().unwrap().to_owned(), b["secret"].as_str().unwrap().to_owned())
        }
    };
    let (_, parent_data_key) = mint_own(admin.clone(), json!(["*"]), None).await;
    let (p_spare, _) = mint_own(admin.clone(), json!(["content:read"]), None).await;
    app.grant(&app.partner_org, 100_000).await;
    let c1 = app.create_child("C1").await;
    let c2 = app.create_child("C2").await;
    let c3 = app.create_child("C3").await;
    for c in [&c1, &c2, &c3] {
        app.allocate(c, 10_000).await.assert_status(201);
    }
    let (_, c1_key) = app.child_key(&c1, &["*"]).await;
    let (_, c2_key) = app.child_key(&c2, &["*"]).await;
    let (c1_spare, _) = app.child_key(&c1, &["content:read"]).await;
    let (c2_spare, _) = app.child_key(&c2, &["content:read"]).await;
    let (c3_spare, _) = app.child_key(&c3, &["content:read"]).await;
    let (q_org, q_admin) = app.other_partner("Q").await;
    app.grant(&q_org, 100_000).await;
    let r = app.post("/v1/organizations").key(&q_admin).json(&json!({"name": "Q1"})).send().await;
    let q1 = r.assert_status(201)["id"].as_str().unwrap().to_owned();
    let r = app
        .post(&format!("/v1/organizations/{q1}/credits/allocate"))
        .key(&q_admin)
        .idem("fund-q1")
        .json(&json!({ "credits": 10_000 }))
        .send()
        .await;
    r.assert_status(201);
    let (q1_spare, _) = mint_own(q_admin.clone(), json!(["content:read"]), Some(q1.clone())).await;
    // Who stocks each target: (key, acting-org header).
    let stockers: [(&str, Option<&str>); 5] =
        [(&admin, None), (&admin, Some(&c1)), (&admin, Some(&c2)), (&q_admin, Some(&q1)), (&admin, Some(&c3))];
    let mut fixtures = vec![Fixture::default(); 5];
    for (i, (key, acting)) in stockers.iter().enumerate() {
        stock(&app, key, *acting, &mut fixtures[i]).await;
    }
    app.clock.advance_ms(5_000);
    strata_workers::advance_jobs(&app.strata).await;
    for (i, (key, acting)) in stockers.iter().enumerate() {
        stock_after_jobs(&app, key, *acting, &mut fixtures[i]).await;
    }
    app.delete(&format!("/v1/organizations/{c3}")).key(&admin).send().await.assert_status(200);
    World {
        callers: [admin, parent_data_key, c1_key, c2_key, q_admin],
        targets: [app.partner_org.clone(), c1, c2, q1, c3],
        spare_keys: [p_spare, c1_spare, c2_spare, q1_spare, c3_spare],
        fixtures,
        app,
    }
}

#[tokio::test]
async fn every_route_answers_every_caller_and_target_exactly_as_the_contract_says() {
    let mut failures = Vec::new();
    for (method, template, body, rows) in MATRIX {
        // A fresh world per route; callers run non-admins first so the admin's writes come last.
        let w = world().await;
        for caller in [1usize, 2, 3, 4, 0] {
            let expected: Vec<u16> = rows[caller].split_whitespace().map(|s| s.parse().unwrap()).collect();
            for (target, &want) in expected.iter().enumerate() {
                let fx = &w.fixtures[target];
                let fill = |t: &str| {
                    t.replace("{org}", &w.targets[target])
                        .replace("{key}", &w.spare_keys[target])
                        .replace("{prj}", &fx.prj)
                        .replace("{cnt}", &fx.cnt)
                        .replace("{done}", &fx.done)
                        .replace("{job}", &fx.job)
                        .replace("{post}", &fx.post)
                        .replace("{whe}", &fx.whe)
                        .replace("{dlv}", &fx.dlv)
                };
                let path = fill(template);
                let mut call = w.app.call(method.parse().unwrap(), &path).key(&w.callers[caller]).idem(&ulid::Ulid::new().to_string());
                if !template.contains("{org}") {
                    call = call.acting(&w.targets[target]);
                }
                if !body.is_empty() {
                    call = call.raw_body(fill(body));
                }
                let r = call.send().await;
                let code_ok = code_of(want).is_none_or(|c| r.code() == c);
                if r.status != want || !code_ok {
                    failures.push(format!(
                        "{method} {template} caller {} target {}: want {want}, got {} {}",
                        ['a', 'b', 'c', 'd', 'e'][caller],
                        target + 1,
                        r.status,
                        r.body
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} cells differ:\n{}", failures.len(), failures.join("\n"));
}
