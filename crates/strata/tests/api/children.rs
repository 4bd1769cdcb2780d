//! The children list (CONTRACT §2, `GET /v1/organizations`): `status` repeating, `externalId`,
//! `search` and `expand=summary`, each kept to the caller's own children.

use serde_json::{Value, json};
use strata_core::credits::GrantKind;
use strata_core::service::SpendRequest;

use strata::StoreBackend;

use crate::helpers::TestApp;

async fn child_with(app: &TestApp, name: &str, external_id: Option<&str>) -> String {
    let metadata = external_id.map_or(json!({}), |e| json!({ "externalId": e }));
    let r = app.post("/v1/organizations").key(&app.admin_key).json(&json!({ "name": name, "metadata": metadata })).send().await;
    r.assert_status(201)["id"].as_str().unwrap().to_owned()
}

/// The names a children-list query returns (one page of up to 200), newest first.
async fn names(app: &TestApp, query: &str) -> Vec<String> {
    let r = app.get(&format!("/v1/organizations?limit=200&{query}")).key(&app.admin_key).send().await;
    r.assert_status(200)["items"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn a_repeated_status_means_any_of_the_values() {
    let app = TestApp::spawn().await;
    let a = app.create_child("a").await;
    let b = app.create_child("b").await;
    app.create_child("c").await;
    app.post(&format!("/v1/organizations/{a}/suspend")).key(&app.admin_key).send().await.assert_status(200);
    app.delete(&format!("/v1/organizations/{b}")).key(&app.admin_key).send().await.assert_status(200);
    assert_eq!(names(&app, "status=active&status=suspended").await, ["c", "a"]);
    assert_eq!(names(&app, "status=archived&status=suspended").await, ["b", "a"]);
    assert_eq!(names(&app, "").await, ["c", "b", "a"]);
    let r = app.get("/v1/organizations?status=active&status=deleted").key(&app.admin_key).send().await;
    r.assert_error(422, "VALIDATION");
    assert_eq!(r.body["error"]["details"]["field"], "status");
}

#[tokio::test]
async fn external_id_matches_metadata_exactly_and_follows_edits() {
    let app = TestApp::spawn().await;
    let one = child_with(&app, "One", Some("cust-1")).await;
    child_with(&app, "Ten", Some("cust-10")).await;
    child_with(&app, "Upper", Some("CUST-1")).await;
    child_with(&app, "None", None).await;
    let (_, other_key) = app.other_partner("Rival").await;
    let r = app
        .post("/v1/organizations")
        .key(&other_key)
        .json(&json!({ "name": "Theirs", "metadata": { "externalId": "cust-1" } }))
        .send()
        .await;
    r.assert_status(201);

    assert_eq!(names(&app, "externalId=cust-1").await, ["One"]);
    assert_eq!(names(&app, "externalId=cust").await, Vec::<String>::new());
    // The form a client might guess for a metadata filter is refused, not ignored (issue 13).
    let r = app.get("/v1/organizations?metadata[externalId]=cust-1").key(&app.admin_key).send().await;
    r.assert_error(422, "VALIDATION");
    assert_eq!(r.body["error"]["details"]["field"], "metadata[externalId]");

    let patch = |metadata: Value| app.patch(&format!("/v1/organizations/{one}")).key(&app.admin_key).json(&json!({ "metadata": metadata }));
    patch(json!({ "externalId": "cust-2" })).send().await.assert_status(200);
    assert_eq!(names(&app, "externalId=cust-1").await, Vec::<String>::new());
    assert_eq!(names(&app, "externalId=cust-2").await, ["One"]);
    patch(json!({ "externalId": "" })).send().await.assert_status(200);
    assert_eq!(names(&app, "externalId=cust-2").await, Vec::<String>::new());
}

#[tokio::test]
async fn search_is_a_case_insensitive_prefix_of_the_name_or_the_external_id() {
    let app = TestApp::spawn().await;
    child_with(&app, "Acme Coffee", None).await;
    child_with(&app, "ACME Tea", Some("t-9")).await;
    child_with(&app, "Beta Acme", None).await;
    child_with(&app, "Zeta", Some("AcMe-7")).await;
    child_with(&app, "Ärzte Müller", None).await;
    child_with(&app, "100% Juice", Some("under_score")).await;

    assert_eq!(names(&app, "search=acme").await, ["Zeta", "ACME Tea", "Acme Coffee"]);
    assert_eq!(names(&app, "search=ACME%20t").await, ["ACME Tea"]);
    assert_eq!(names(&app, "search=%C3%A4RZ").await, ["Ärzte Müller"]);
    assert_eq!(names(&app, "search=t-").await, ["ACME Tea"]);
    // LIKE's wildcards mean nothing here.
    assert_eq!(names(&app, "search=100%25").await, ["100% Juice"]);
    assert_eq!(names(&app, "search=%25").await, Vec::<String>::new());
    assert_eq!(names(&app, "search=under_").await, ["100% Juice"]);
    assert_eq!(names(&app, "search=under%25").await, Vec::<String>::new());
    // An empty search is no filter; search combines with the other filters.
    assert_eq!(names(&app, "search=").await.len(), 6);
    assert_eq!(names(&app, "search=acme&externalId=t-9").await, ["ACME Tea"]);

    // Keyset paging through a search: newest first, no gaps, no repeats.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/organizations?search=acme&limit=1&cursor={c}"),
            None => "/v1/organizations?search=acme&limit=1".to_owned(),
        };
        let r = app.get(&path).key(&app.admin_key).send().await;
        let b = r.assert_status(200);
        seen.extend(b["items"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap().to_owned()));
        match b["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ["Zeta", "ACME Tea", "Acme Coffee"]);
}

#[tokio::test]
async fn expand_summary_gives_each_child_the_single_reads_summary_in_one_page() {
    let app = TestApp::spawn().await;
    app.grant(&app.partner_org, 10_000).await;
    let funded = app.create_child("Funded").await;
    let empty = app.create_child("Empty").await;
    app.allocate(&funded, 1000).await.assert_status(201);
    app.strata.grant_credits(funded.parse().unwrap(), 50, GrantKind::Included).await.unwrap();
    app.patch(&format!("/v1/organizations/{funded}/credit-config"))
        .key(&app.admin_key)
        .json(&json!({ "monthlyCreditCap": 800 }))
        .send()
        .await
        .assert_status(200);
    app.post("/v1/projects")
        .key(&app.admin_key)
        .acting(&funded)
        .json(&json!({ "name": "Site", "timezone": "UTC" }))
        .send()
        .await
        .assert_status(201);
    let spend = SpendRequest {
        org: funded.parse().unwrap(),
        project: None,
        cost: 120,
        format: "video_remix".into(),
        container_id: None,
        job_id: None,
        hold_ms: 0,
    };
    let r = app.strata.reserve(spend).await.unwrap();
    app.strata.settle(r, 100).await.unwrap();

    let list = app.get("/v1/organizations?expand=summary").key(&app.admin_key).send().await;
    let items = list.assert_status(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2);
    for item in &items {
        let id = item["id"].as_str().unwrap();
        let single = app.get(&format!("/v1/organizations/{id}")).key(&app.admin_key).send().await;
        assert_eq!(item, single.assert_status(200), "the list's item is the single read");
    }
    let f = &items[1]["summary"];
    assert_eq!(items[1]["id"], funded.as_str());
    assert_eq!(
        (f["projectCount"].as_i64(), f["balance"].as_i64(), f["available"].as_i64(), f["usedThisPeriod"].as_i64()),
        (Some(1), Some(950), Some(950), Some(100))
    );
    assert_eq!(f["creditConfig"]["monthlyCreditCap"], 800);
    assert_eq!(items[0]["id"], empty.as_str());
    assert_eq!(items[0]["summary"]["balance"], 0);
    // Without expand, no summary; an unknown expansion is refused.
    let plain = app.get("/v1/organizations").key(&app.admin_key).send().await;
    assert!(plain.body["items"][0].get("summary").is_none());
    let r = app.get("/v1/organizations?expand=wallet").key(&app.admin_key).send().await;
    r.assert_error(422, "VALIDATION");
    assert_eq!(r.body["error"]["details"]["field"], "expand");
}

#[tokio::test]
async fn orgs_written_before_the_search_keys_existed_are_found_after_a_restart() {
    let mut app = TestApp::spawn().await;
    child_with(&app, "Ökonom GmbH", Some("ÖK-1")).await;
    // As a database migrated from a release without the keys leaves them.
    let clear = "UPDATE organizations SET name_key = NULL, external_id = NULL, external_id_key = NULL; \
                 DELETE FROM settings WHERE name = 'org_search_keys_filled'";
    {
        use sqlx::{Connection, Executor};
        match &app.backend {
            StoreBackend::Sqlite { dir } => {
                let url = format!("sqlite://{}", dir.join("strata.db").display());
                sqlx::SqliteConnection::connect(&url).await.unwrap().execute(clear).await.unwrap();
            }
            StoreBackend::Postgres { url } => {
                sqlx::PgConnection::connect(url).await.unwrap().execute(clear).await.unwrap();
            }
        }
    }
    assert_eq!(names(&app, "search=%C3%B6k").await, Vec::<String>::new());
    app.restart().await;
    assert_eq!(names(&app, "search=%C3%B6k").await, ["Ökonom GmbH"]);
    assert_eq!(names(&app, "externalId=%C3%96K-1").await, ["Ökonom GmbH"]);
}
