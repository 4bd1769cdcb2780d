//! Conventions that hold on every route (CONTRACT §1): the envelope, request ids, body limits,
//! strict bodies and query parameters, id forms, pagination.

use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test]
async fn every_response_carries_a_request_id_and_errors_repeat_it() {
    let app = TestApp::spawn().await;
    for r in [
        app.get("/healthz").send().await,
        app.get("/readyz").send().await,
        app.get("/v1/whoami").key(&app.admin_key).send().await,
        app.get("/v1/nowhere").key(&app.admin_key).send().await,
        app.get("/v1/whoami").send().await,
    ] {
        let id = r.header("x-request-id").expect("x-request-id").to_owned();
        assert!(id.starts_with("req_") && id.len() == 30, "{id}");
        if r.status >= 400 {
            assert_eq!(r.body["error"]["requestId"], id.as_str());
            let code = r.code();
            assert!(!code.is_empty() && code.chars().all(|c| c.is_ascii_uppercase() || c == '_'));
            assert!(r.body["error"]["message"].is_string());
            assert!(r.body["error"]["details"].is_object());
        }
    }
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/healthz").send().await.assert_status(200)["status"], "ok");
    assert_eq!(app.get("/readyz").send().await.assert_status(200)["status"], "ready");
}

#[tokio::test]
async fn unknown_routes_and_methods_get_the_envelope() {
    let app = TestApp::spawn().await;
    app.get("/v1/nowhere").key(&app.admin_key).send().await.assert_error(404, "NOT_FOUND");
    app.call(reqwest::Method::PUT, "/v1/organizations").key(&app.admin_key).send().await.assert_error(405, "METHOD_NOT_ALLOWED");
}

#[tokio::test]
async fn a_body_over_one_mebibyte_is_413_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let big = format!(r#"{{"name": "A", "metadata": {{"k": "{}"}}}}"#, "x".repeat(1024 * 1024));
    let r = app.post("/v1/organizations").key(&app.admin_key).raw_body(big).send().await;
    r.assert_error(413, "PAYLOAD_TOO_LARGE");
    let list = app.get("/v1/organizations").key(&app.admin_key).send().await;
    assert_eq!(list.body["items"], json!([]));
}

#[tokio::test]
async fn unknown_and_mistyped_fields_are_422_naming_the_field() {
    let app = TestApp::spawn().await;
    let r = app.post("/v1/organizations").key(&app.admin_key).json(&json!({"name": "A", "colour": "red"})).send().await;
    r.assert_error(422, "VALIDATION");
    assert_eq!(r.body["error"]["details"]["field"], "colour");
    let r = app.post("/v1/organizations").key(&app.admin_key).json(&json!({"name": 7})).send().await;
    assert_eq!(r.body["error"]["details"]["field"], "name");
    let r = app.post("/v1/organizations").key(&app.admin_key).json(&json!({})).send().await;
    assert_eq!(r.body["error"]["details"]["field"], "name");
    let r = app.post("/v1/organizations").key(&app.admin_key).raw_body("{not json").send().await;
    r.assert_error(422, "VALIDATION");
}

#[tokio::test]
async fn ids_are_accepted_prefixed_or_bare_and_malformed_ones_are_422() {
    let app = TestApp::spawn().await;
    let org = app.create_child("Acme").await;
    let bare = org.trim_start_matches("org_");
    app.get(&format!("/v1/organizations/{org}")).key(&app.admin_key).send().await.assert_status(200);
    app.get(&format!("/v1/organizations/{bare}")).key(&app.admin_key).send().await.assert_status(200);
    let r = app.get("/v1/organizations/org_not-a-uuid").key(&app.admin_key).send().await;
    r.assert_error(422, "VALIDATION");
    assert_eq!(r.body["error"]["details"]["field"], "orgId");
    let unknown = "org_00000000-0000-4000-8000-000000000000";
    app.get(&format!("/v1/organizations/{unknown}")).key(&app.admin_key).send().await.assert_error(404, "NOT_FOUND");
    let wrong_kind = org.replace("org_", "prj_");
    app.get(&format!("/v1/organizations/{wrong_kind}")).key(&app.admin_key).send().await.assert_error(422, "VALIDATION");
}

#[tokio::test]
async fn lists_page_newest_first_without_gaps_or_repeats() {
    let app = TestApp::spawn().await;
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(app.create_child(&format!("c{i}")).await);
    }
    created.reverse();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/organizations?limit=3&cursor={c}"),
            None => "/v1/organizations?limit=3".to_owned(),
        };
        let r = app.get(&path).key(&app.admin_key).send().await;
        let b = r.assert_status(200);
        for item in b["items"].as_array().unwrap() {
            seen.push(item["id"].as_str().unwrap().to_owned());
        }
        match b["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, created);
}

#[tokio::test]
async fn a_tampered_cursor_or_bad_limit_is_422() {
    let app = TestApp::spawn().await;
    for i in 0..3 {
        app.create_child(&format!("c{i}")).await;
    }
    let r = app.get("/v1/organizations?limit=1").key(&app.admin_key).send().await;
    let cursor = r.body["nextCursor"].as_str().unwrap().to_owned();
    let mut tampered = cursor.clone().into_bytes();
    tampered[2] = if tampered[2] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let r = app.get(&format!("/v1/organizations?cursor={tampered}")).key(&app.admin_key).send().await;
    r.assert_error(422, "VALIDATION");
    assert_eq!(r.body["error"]["details"]["field"], "cursor");
    // A cursor of another list is not a cursor of this one.
    let r = app.get(&format!("/v1/events?cursor={cursor}")).key(&app.admin_key).send().await;
    r.assert_error(422, "VALIDATION");
    for bad in ["0", "201", "-1", "ten"] {
        let r = app.get(&format!("/v1/organizations?limit={bad}")).key(&app.admin_key).send().await;
        r.assert_error(422, "VALIDATION");
        assert_eq!(r.body["error"]["details"]["field"], "limit");
    }
}

#[tokio::test]
async fn time_filters_must_end_in_z() {
    let app = TestApp::spawn().await;
    app.get("/v1/audit-log?since=2026-06-01T00:00:00Z").key(&app.admin_key).send().await.assert_status(200);
    let r = app.get("/v1/audit-log?since=2026-06-01T00:00:00%2B00:00").key(&app.admin_key).send().await;
    r.assert_error(422, "VALIDATION");
    assert_eq!(r.body["error"]["details"]["field"], "since");
}

#[tokio::test]
async fn an_unknown_query_parameter_is_422_naming_it_on_every_kind_of_route() {
    let app = TestApp::spawn().await;
    let child = app.create_child("Acme").await;
    let gets = [
        "/v1/whoami".to_owned(),
        "/v1/credits".to_owned(),
        format!("/v1/organizations/{child}"),
        "/v1/organizations".to_owned(),
        "/v1/credits/events".to_owned(),
        "/v1/api-keys".to_owned(),
        "/v1/projects".to_owned(),
        "/v1/webhook-endpoints".to_owned(),
        "/v1/audit-log".to_owned(),
        "/v1/events".to_owned(),
    ];
    for path in &gets {
        let r = app.get(&format!("{path}?colour=red")).key(&app.admin_key).send().await;
        r.assert_error(422, "VALIDATION");
        assert_eq!(r.body["error"]["details"]["field"], "colour", "{path}");
    }
    // Beside known parameters too: a list that takes `limit` still names the unknown one.
    let r = app.get("/v1/organizations?limit=5&colour=red").key(&app.admin_key).send().await;
    assert_eq!((r.status, r.body["error"]["details"]["field"].as_str()), (422, Some("colour")));
    // A route without a page refuses `limit` like any other parameter it does not take.
    let r = app.get("/v1/whoami?limit=5").key(&app.admin_key).send().await;
    assert_eq!((r.status, r.body["error"]["details"]["field"].as_str()), (422, Some("limit")));
    // Writes take no query parameters at all, and a refused one changes nothing.
    let r = app.post("/v1/organizations?dryRun=true").key(&app.admin_key).json(&json!({ "name": "Ghost" })).send().await;
    r.assert_error(422, "VALIDATION");
    assert_eq!(r.body["error"]["details"]["field"], "dryRun");
    let list = app.get("/v1/organizations").key(&app.admin_key).send().await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    let r = app.post(&format!("/v1/organizations/{child}/suspend?force=1")).key(&app.admin_key).send().await;
    r.assert_error(422, "VALIDATION");
    assert_eq!(app.get(&format!("/v1/organizations/{child}")).key(&app.admin_key).send().await.body["status"], "active");
    // Authentication still comes first.
    app.get("/v1/credits?colour=red").send().await.assert_error(401, "UNAUTHENTICATED");
}

#[tokio::test]
async fn a_repeated_single_valued_parameter_is_422_not_last_one_wins() {
    let app = TestApp::spawn().await;
    for query in
        ["limit=1&limit=2", "cursor=a&cursor=b", "since=2026-06-01T00:00:00Z&since=2026-06-02T00:00:00Z", "projectId=a&projectId=b"]
    {
        let field = query.split('=').next().unwrap();
        let r = app.get(&format!("/v1/credits/events?{query}")).key(&app.admin_key).send().await;
        r.assert_error(422, "VALIDATION");
        assert_eq!(r.body["error"]["details"]["field"], field, "{query}");
    }
    // A list filter (`status`, `eventType`, `type`) may repeat: see list_filters.rs. A search may not.
    let r = app.get("/v1/projects?search=a&search=b").key(&app.admin_key).send().await;
    r.assert_error(422, "VALIDATION");
    assert_eq!(r.body["error"]["details"]["field"], "search");
}

/// The README points only at files the repository holds (a user's clone has nothing else): every
/// relative path it names, in a Markdown link or in code, exists.
#[test]
fn every_file_the_readme_names_is_in_the_repository() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut named = Vec::new();
    for piece in readme.split(['`', '(', ')', ' ', '\n', '[', ']']) {
        let looks_like_a_file = piece.contains('/') || piece.ends_with(".md") || piece.ends_with(".json");
        let is_a_file = piece.rsplit('/').next().is_some_and(|last| last.contains('.') && !last.ends_with('.'));
        if looks_like_a_file
            && is_a_file
            && !piece.contains("://")
            && !piece.starts_with('/')
            && !piece.starts_with('$')
            && !piece.contains('*')
            && !piece.contains('…')
            && !piece.contains('<')
            && !piece.starts_with("target/")
            && !piece.starts_with("strata-data")
            && !piece.starts_with("./strata-data")
        {
            named.push(piece.trim_start_matches("./").to_owned());
        }
    }
    assert!(named.iter().any(|p| p == "docs/operations.md"), "the README's paths were not found at all: {named:?}");
    let missing: Vec<&String> = named.iter().filter(|p| !root.join(p).exists()).collect();
    assert!(missing.is_empty(), "README.md names files the repository lacks: {missing:?}");
    assert!(!readme.contains("../shared") && !readme.contains("CONTRACT.md"), "README points outside the repository");
}
