//! The hot paths stay indexed as tables grow: every statement that whoami, reading an org,
//! allocating, listing children (with each filter and with summaries), reading the credit
//! ledger, a usage report and listing keys run is explained on the test's backend (PostgreSQL
//! with `enable_seqscan = off`, SQLite's `EXPLAIN QUERY PLAN`), and none may read a table
//! whole; the children list's filters and the usage report read their own indexes. Its own
//! test binary, so no other test's statements mix in.

#[path = "api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use helpers::TestApp;
use strata_store::plans;

#[tokio::test]
async fn hot_paths_never_scan_a_table() {
    let app = TestApp::spawn().await;
    app.grant(&app.partner_org, 1_000_000).await;
    let mut children = Vec::new();
    for i in 0..3 {
        children.push(app.create_child(&format!("plan-{i}")).await);
    }
    // Enough other children that a filter's own index beats reading every child of the parent.
    for i in 0..150 {
        app.create_child(&format!("other-{i}")).await;
    }
    app.allocate(&children[0], 10).await.assert_status(201);

    plans::start_recording();
    let child = &children[1];
    app.get("/v1/whoami").key(&app.admin_key).send().await.assert_status(200);
    app.get(&format!("/v1/organizations/{child}")).key(&app.admin_key).send().await.assert_status(200);
    app.allocate(child, 25).await.assert_status(201);
    app.get("/v1/organizations?limit=20").key(&app.admin_key).send().await.assert_status(200);
    app.get(&format!("/v1/organizations/{child}/credits/events")).key(&app.admin_key).send().await.assert_status(200);
    app.get(&format!("/v1/organizations/{child}/api-keys")).key(&app.admin_key).send().await.assert_status(200);
    for query in ["externalId=cust-1", "search=plan&expand=summary", "status=active&status=suspended&expand=summary"] {
        app.get(&format!("/v1/organizations?{query}")).key(&app.admin_key).send().await.assert_status(200);
    }
    app.clock.advance_ms(strata_core::clock::DAY_MS);
    app.get(&format!("/v1/organizations/{child}/credits/usage")).key(&app.admin_key).send().await.assert_status(200);
    let plans = plans::explain_recorded(&app.backend).await.unwrap();

    let mut offenders = Vec::new();
    for p in &plans {
        let scanned = plans::scanned_tables(p);
        if !scanned.is_empty() {
            offenders.push(format!("{}\n  scans {scanned:?}\n  plan: {}", p.sql, p.plan.join(" | ")));
        }
    }
    assert!(plans.len() >= 8, "too few statements recorded to mean anything: {plans:?}");
    assert!(offenders.is_empty(), "hot statements that read a whole table:\n{}", offenders.join("\n"));

    // Each filter is answered by the index made for it.
    let uses = |marker: &str, indexes: &[&str]| {
        let p = plans.iter().find(|p| p.sql.contains(marker)).unwrap_or_else(|| panic!("no statement with {marker:?} was recorded"));
        let plan = p.plan.join(" | ");
        for index in indexes {
            assert!(plan.contains(index), "{marker:?} should read {index}:\n{}\n  plan: {plan}", p.sql);
        }
    };
    uses("o.external_id = ", &["organizations_by_external_id"]);
    uses("o.name_key >= ", &["organizations_by_name_key", "organizations_by_external_id_key"]);
    uses("FROM buckets JOIN credit_events e", &["credit_events_by_org_time"]);
}
