//! Usage reports (CONTRACT §3): buckets by UTC day or month that add up to the ledger and the
//! wallet, a parent's outgoing allocations negative, the same numbers as CSV, and the routes'
//! tenancy and validation.

use serde_json::{Value, json};
use strata_core::clock::{DAY_MS, HOUR_MS, Timestamp};
use strata_core::id::ProjectId;
use strata_core::service::SpendRequest;

use crate::helpers::{Resp, TestApp};

/// Reserves `cost` in `org` (for `project`, if any) and settles `actual` of it.
async fn spend(app: &TestApp, org: &str, project: Option<&str>, cost: i64, actual: i64) {
    let req = SpendRequest {
        org: org.parse().unwrap(),
        project: project.map(|p| ProjectId::parse_field(p, "projectId").unwrap()),
        cost,
        format: "video_remix".into(),
        container_id: None,
        job_id: None,
        hold_ms: 0,
    };
    let r = app.strata.reserve(req).await.unwrap();
    app.strata.settle(r, actual).await.unwrap();
}

async fn project_in(app: &TestApp, org: &str) -> String {
    let r = app.post("/v1/projects").key(&app.admin_key).acting(org).json(&json!({ "name": "Site", "timezone": "UTC" })).send().await;
    r.assert_status(201)["id"].as_str().unwrap().to_owned()
}

async fn report(app: &TestApp, path: &str) -> Value {
    app.get(path).key(&app.admin_key).send().await.assert_status(200).clone()
}

/// Every entry of an org's credit ledger, oldest first.
async fn ledger(app: &TestApp, org: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/organizations/{org}/credits/events?limit=100");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let b = report(app, &path).await;
        out.extend(b["items"].as_array().unwrap().iter().cloned());
        match b["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    out.reverse();
    out
}

fn column(items: &Value, name: &str) -> Vec<i64> {
    items.as_array().unwrap().iter().map(|i| i[name].as_i64().unwrap()).collect()
}

#[tokio::test]
async fn day_buckets_add_up_to_the_ledger_and_the_wallets_usage() {
    let app = TestApp::spawn().await;
    app.grant(&app.partner_org, 100_000).await;
    let org = app.create_child("Acme").await;
    let site = project_in(&app, &org).await;
    // Day 1: fund 2000, spend 100 on the site and 30 at org level.
    app.allocate(&org, 2000).await.assert_status(201);
    spend(&app, &org, Some(&site), 120, 100).await;
    spend(&app, &org, None, 50, 30).await;
    // Day 3: turn on auto-refill and cross the threshold: one refill of 500.
    app.clock.advance_ms(2 * DAY_MS + 5 * HOUR_MS);
    app.patch(&format!("/v1/organizations/{org}/credit-config"))
        .key(&app.admin_key)
        .json(&json!({ "refillThreshold": 1800, "refillAmount": 500 }))
        .send()
        .await
        .assert_status(200);
    spend(&app, &org, Some(&site), 120, 120).await;
    app.allocate(&org, 300).await.assert_status(201);
    app.clock.advance_ms(HOUR_MS);

    let b = report(&app, &format!("/v1/organizations/{org}/credits/usage")).await;
    assert_eq!((b["organizationId"].as_str(), b["granularity"].as_str()), (Some(org.as_str()), Some("day")));
    assert_eq!((b["since"].as_str(), b["until"].as_str()), (Some("2026-06-01T00:00:00.000Z"), Some("2026-06-03T06:00:00.000Z")));
    let items = &b["items"];
    let starts: Vec<&str> = items.as_array().unwrap().iter().map(|i| i["start"].as_str().unwrap()).collect();
    assert_eq!(starts, ["2026-06-01T00:00:00.000Z", "2026-06-02T00:00:00.000Z", "2026-06-03T00:00:00.000Z"]);
    assert_eq!(items[2]["end"], "2026-06-03T06:00:00.000Z", "the last bucket is clipped to until");
    assert_eq!(column(items, "used"), [130, 0, 120]);
    assert_eq!(column(items, "allocated"), [2000, 0, 300]);
    assert_eq!(column(items, "refilled"), [0, 0, 500]);
    assert_eq!(column(items, "refunded"), [0, 0, 0]);

    // The same sums straight from the ledger, bucket by bucket, and the wallet's usage.
    let entries = ledger(&app, &org).await;
    for (i, item) in items.as_array().unwrap().iter().enumerate() {
        let (start, end) = (item["start"].as_str().unwrap(), item["end"].as_str().unwrap());
        let within: Vec<&Value> = entries.iter().filter(|e| (start..end).contains(&e["createdAt"].as_str().unwrap())).collect();
        let sum = |pred: &dyn Fn(&Value) -> bool| within.iter().filter(|e| pred(e)).map(|e| e["credits"].as_i64().unwrap()).sum::<i64>();
        assert_eq!(item["used"].as_i64().unwrap(), -sum(&|e| e["eventType"] == "usage"), "bucket {i}");
        assert_eq!(item["allocated"].as_i64().unwrap(), sum(&|e| e["eventType"] == "allocation" && e["metadata"]["trigger"] == "manual"));
        assert_eq!(
            item["refilled"].as_i64().unwrap(),
            sum(&|e| e["eventType"] == "allocation" && e["metadata"]["trigger"] == "auto_refill")
        );
    }
    let wallet = report(&app, &format!("/v1/organizations/{org}/credits")).await;
    assert_eq!(column(items, "used").iter().sum::<i64>(), wallet["usedThisPeriod"].as_i64().unwrap());

    // One project's report holds only its usage.
    let only = report(&app, &format!("/v1/organizations/{org}/credits/usage?projectId={site}")).await;
    assert_eq!(column(&only["items"], "used"), [100, 0, 120]);
    assert_eq!(column(&only["items"], "allocated"), [0, 0, 0]);
    // The child's own key reads the same report on the own route (credits:read).
    let (_, key) = app.child_key(&org, &["credits:read"]).await;
    let own = app.get("/v1/credits/usage").key(&key).send().await;
    assert_eq!(own.assert_status(200)["items"], *items);
    app.assert_ledger().await;
}

#[tokio::test]
async fn day_buckets_follow_the_clock_across_a_month_boundary() {
    let app = TestApp::spawn().await;
    app.grant(&app.partner_org, 10_000).await;
    let org = app.create_child("Acme").await;
    app.allocate(&org, 5000).await.assert_status(201);
    app.clock.set(Timestamp::parse_query("2026-06-30T23:30:00Z", "t").unwrap());
    spend(&app, &org, None, 50, 40).await;
    app.clock.set(Timestamp::parse_query("2026-07-01T00:30:00Z", "t").unwrap());
    spend(&app, &org, None, 50, 25).await;
    app.clock.set(Timestamp::parse_query("2026-07-02T12:00:00Z", "t").unwrap());

    let days = report(&app, &format!("/v1/organizations/{org}/credits/usage?since=2026-06-30T12:00:00Z&until=2026-07-02T00:00:00Z")).await;
    let spans: Vec<(&str, &str)> =
        days["items"].as_array().unwrap().iter().map(|i| (i["start"].as_str().unwrap(), i["end"].as_str().unwrap())).collect();
    assert_eq!(spans, [("2026-06-30T12:00:00.000Z", "2026-07-01T00:00:00.000Z"), ("2026-07-01T00:00:00.000Z", "2026-07-02T00:00:00.000Z")]);
    assert_eq!(column(&days["items"], "used"), [40, 25]);
    // By default a report covers the current period only: July's usage, day by day.
    let default = report(&app, &format!("/v1/organizations/{org}/credits/usage")).await;
    assert_eq!(default["since"], "2026-07-01T00:00:00.000Z");
    assert_eq!(column(&default["items"], "used"), [25, 0]);
    let wallet = report(&app, &format!("/v1/organizations/{org}/credits")).await;
    assert_eq!(wallet["usedThisPeriod"], 25);
    // By month, clipped to the range.
    let months = report(&app, &format!("/v1/organizations/{org}/credits/usage?granularity=month&since=2026-06-15T00:00:00Z")).await;
    let starts: Vec<&str> = months["items"].as_array().unwrap().iter().map(|i| i["start"].as_str().unwrap()).collect();
    assert_eq!(starts, ["2026-06-15T00:00:00.000Z", "2026-07-01T00:00:00.000Z"]);
    assert_eq!(months["items"][1]["end"], "2026-07-02T12:00:00.000Z");
    assert_eq!(column(&months["items"], "used"), [40, 25]);
    assert_eq!(column(&months["items"], "allocated"), [0, 0], "the allocation was on June 1, before since");
}

#[tokio::test]
async fn a_parents_report_shows_what_it_allocated_and_refilled_as_negative() {
    let app = TestApp::spawn().await;
    app.grant(&app.partner_org, 10_000).await;
    let a = app.create_child("A").await;
    let b = app.create_child("B").await;
    app.allocate(&a, 1000).await.assert_status(201);
    app.allocate(&b, 300).await.assert_status(201);
    app.patch(&format!("/v1/organizations/{a}/credit-config"))
        .key(&app.admin_key)
        .json(&json!({ "refillThreshold": 950, "refillAmount": 200 }))
        .send()
        .await
        .assert_status(200);
    spend(&app, &a, None, 100, 100).await;
    // Archiving B sweeps its 300 back: a reclaim, which is not an allocation.
    app.delete(&format!("/v1/organizations/{b}")).key(&app.admin_key).send().await.assert_status(200);
    app.clock.advance_ms(HOUR_MS);

    let own = report(&app, "/v1/credits/usage").await;
    assert_eq!(own["organizationId"], app.partner_org.as_str());
    assert_eq!(
        (column(&own["items"], "allocated"), column(&own["items"], "refilled"), column(&own["items"], "used")),
        (vec![-1300], vec![-200], vec![0])
    );
    let child = report(&app, &format!("/v1/organizations/{a}/credits/usage")).await;
    assert_eq!((column(&child["items"], "allocated"), column(&child["items"], "refilled")), (vec![1000], vec![200]));
    app.assert_ledger().await;
}

#[tokio::test]
async fn the_csv_has_a_line_per_bucket_and_project_that_adds_up_to_the_json() {
    let app = TestApp::spawn().await;
    app.grant(&app.partner_org, 10_000).await;
    let org = app.create_child("Acme").await;
    let site = project_in(&app, &org).await;
    let shop = project_in(&app, &org).await;
    app.allocate(&org, 3000).await.assert_status(201);
    spend(&app, &org, Some(&site), 120, 110).await;
    spend(&app, &org, Some(&shop), 120, 90).await;
    app.clock.advance_ms(2 * DAY_MS);
    spend(&app, &org, Some(&site), 50, 50).await;
    app.clock.advance_ms(HOUR_MS);

    let path = format!("/v1/organizations/{org}/credits/usage");
    let csv = app.get(&path).key(&app.admin_key).header("Accept", "text/csv").send().await;
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    let text = String::from_utf8(csv.raw.clone()).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("start,end,projectId,used,refunded,allocated,refilled"));
    let rows: Vec<Vec<String>> = lines.map(|l| l.split(',').map(str::to_owned).collect()).collect();
    assert!(rows.iter().all(|r| r.len() == 7), "{text}");
    let json = report(&app, &path).await;
    let items = json["items"].as_array().unwrap();
    // Every bucket appears; each bucket's lines add up to its JSON item.
    for item in items {
        let lines: Vec<&Vec<String>> = rows.iter().filter(|r| r[0] == item["start"].as_str().unwrap()).collect();
        assert!(!lines.is_empty(), "bucket {} missing from\n{text}", item["start"]);
        assert!(lines.iter().all(|r| r[1] == item["end"].as_str().unwrap()));
        for (col, name) in [(3, "used"), (4, "refunded"), (5, "allocated"), (6, "refilled")] {
            let sum: i64 = lines.iter().map(|r| r[col].parse::<i64>().unwrap()).sum();
            assert_eq!(sum, item[name].as_i64().unwrap(), "{name} of {}", item["start"]);
        }
    }
    let line = |start: &str, project: &str| rows.iter().find(|r| r[0] == start && r[2] == project).cloned();
    let day1 = "2026-06-01T00:00:00.000Z";
    assert_eq!(line(day1, "").map(|r| (r[3].clone(), r[5].clone())), Some(("0".into(), "3000".into())));
    assert_eq!(line(day1, &site).map(|r| r[3].clone()), Some("110".into()));
    assert_eq!(line(day1, &shop).map(|r| r[3].clone()), Some("90".into()));
    assert_eq!(line("2026-06-02T00:00:00.000Z", "").map(|r| r[3..].join(",")), Some("0,0,0,0".into()));
    assert_eq!(line("2026-06-03T00:00:00.000Z", &site).map(|r| r[3].clone()), Some("50".into()));
    // JSON stays the default, and errors stay JSON envelopes.
    let r = app.get(&format!("{path}?granularity=week")).key(&app.admin_key).header("Accept", "text/csv").send().await;
    r.assert_error(422, "VALIDATION");
}

#[tokio::test]
async fn another_tenants_org_is_404_and_bad_parameters_are_422_naming_them() {
    let app = TestApp::spawn().await;
    let mine = app.create_child("Mine").await;
    let (other_partner, other_key) = app.other_partner("Rival").await;
    let r = app.post("/v1/organizations").key(&other_key).json(&json!({ "name": "Theirs" })).send().await;
    let theirs = r.assert_status(201)["id"].as_str().unwrap().to_owned();
    for org in [theirs.as_str(), other_partner.as_str(), app.partner_org.as_str(), "org_00000000-0000-4000-8000-000000000000"] {
        let r = app.get(&format!("/v1/organizations/{org}/credits/usage")).key(&app.admin_key).send().await;
        r.assert_error(404, "NOT_FOUND");
    }
    let field_of = |r: &Resp| r.body["error"]["details"]["field"].as_str().map(str::to_owned);
    let base = format!("/v1/organizations/{mine}/credits/usage");
    for (query, field) in [
        ("granularity=week", "granularity"),
        ("since=2026-06-01T00:00:00%2B00:00", "since"),
        ("until=yesterday", "until"),
        ("foo=1", "foo"),
        ("since=2026-06-01T00:00:00Z&since=2026-06-02T00:00:00Z", "since"),
        ("granularity=day&granularity=month", "granularity"),
        ("projectId=nope", "projectId"),
        ("since=2026-06-02T00:00:00Z&until=2026-06-01T00:00:00Z", "until"),
    ] {
        let r = app.get(&format!("{base}?{query}")).key(&app.admin_key).send().await;
        r.assert_error(422, "VALIDATION");
        assert_eq!(field_of(&r).as_deref(), Some(field), "{query}");
    }
    // At most a year of days and ten years of months, the maximum stated.
    let r = app.get(&format!("{base}?since=2025-05-01T00:00:00Z&until=2026-06-01T00:00:00Z")).key(&app.admin_key).send().await;
    r.assert_error(422, "VALIDATION");
    assert_eq!(r.body["error"]["details"]["max"], 366);
    let r = app
        .get(&format!("{base}?granularity=month&since=2025-05-01T00:00:00Z&until=2026-06-01T00:00:00Z"))
        .key(&app.admin_key)
        .send()
        .await;
    assert_eq!(r.assert_status(200)["items"].as_array().unwrap().len(), 13);
    // The scopes of the credits routes: credits:read for one's own, org:admin for a child's.
    let (_, reader) = app.child_key(&mine, &["content:read"]).await;
    app.get("/v1/credits/usage").key(&reader).send().await.assert_error(403, "FORBIDDEN_SCOPE");
    let (_, credits) = app.child_key(&mine, &["credits:read"]).await;
    app.get("/v1/credits/usage").key(&credits).send().await.assert_status(200);
}
