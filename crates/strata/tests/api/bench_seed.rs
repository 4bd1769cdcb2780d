//! `strata bench --orgs/--transfers` seeding: a small shape of other tenants seeded straight into
//! the database keeps the ledger's invariants, stays out of the partner's view, and a bench run
//! on a seeded scratch database serves its own key's reads without an error.

use strata::bench::{self, BenchArgs, Scenario};
use strata::bench_seed::{self, Shape};

use crate::helpers::TestApp;

#[tokio::test]
async fn a_seeded_database_keeps_the_ledger_and_each_tenant_to_itself() {
    let app = TestApp::spawn().await;
    let shape = Shape::new(400, 2_000);
    assert_eq!((shape.partners, shape.children), (20, 19));
    let now = strata_core::clock::Clock::now(&app.clock);
    let seeded = bench_seed::seed(&app.backend, shape, now).await.unwrap();
    // A purchase per partner, then allocations with an entry on each side.
    assert_eq!((seeded.orgs, seeded.keys, seeded.transfers, seeded.entries), (400, 800, 2_000, 20 + 2 * 1_980));

    let report = app.strata.check_ledger().await.unwrap();
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    assert_eq!((report.wallets, report.transfers), (401, 2_000));
    assert_eq!(report.created, report.held);

    let me = app.get("/v1/whoami").key(&app.admin_key).send().await;
    me.assert_status(200);
    let list = app.get("/v1/organizations?limit=20").key(&app.admin_key).send().await;
    list.assert_status(200);
    assert_eq!(list.body["items"].as_array().map(Vec::len), Some(0), "seeded orgs are other partners': {}", list.body);
}

#[tokio::test]
async fn a_bench_run_on_a_seeded_database_reads_through_its_own_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = strata::OpenOptions::sqlite(dir.path());
    if let Ok(url) = std::env::var("STRATA_TEST_DATABASE_URL")
        && !url.is_empty()
    {
        opts.backend = strata::StoreBackend::Postgres { url };
    }
    let args = BenchArgs {
        scenario: Scenario::ChildrenList,
        clients: 2,
        seconds: 1,
        children: 3,
        tier: "internal".into(),
        redis_url: None,
        rate: 0,
        endpoints: 1,
        backlog: false,
        orgs: Some(400),
        transfers: 2_000,
        then: vec![Scenario::Whoami],
    };
    let out = bench::run(&opts, args).await.unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("scenario children-list") && lines[1].starts_with("scenario whoami"), "{out}");
    assert!(lines.iter().all(|l| l.contains(" 0 errors") && l.contains("ledger invariants hold")), "{out}");
}
